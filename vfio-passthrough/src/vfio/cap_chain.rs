//! VFIO capability chains: the `struct vfio_info_cap_header { u16 id; u16 version; u32 next; }`
//! lists that follow `vfio_region_info`, `vfio_iommu_type1_info` and friends.
//!
//! One codec for every reply that carries a chain, written like the kernel's
//! `vfio_info_cap_add` (each capability padded to 8 bytes, `next` offsets from the start of the
//! reply) and read as untrusted input (offsets inside the buffer, the chain moving forward).

use crate::errno::Errno;

/// Size of `struct vfio_info_cap_header`.
pub const CAP_HEADER_SIZE: usize = 8;

/// Little-endian field readers over untrusted bytes: `None` past the end.
pub(crate) fn le_u16(b: &[u8], at: usize) -> Option<u16> {
    Some(u16::from_le_bytes(
        b.get(at..at.checked_add(2)?)?.try_into().ok()?,
    ))
}

/// See [`le_u16`].
pub(crate) fn le_u32(b: &[u8], at: usize) -> Option<u32> {
    Some(u32::from_le_bytes(
        b.get(at..at.checked_add(4)?)?.try_into().ok()?,
    ))
}

/// See [`le_u16`].
pub(crate) fn le_u64(b: &[u8], at: usize) -> Option<u64> {
    Some(u64::from_le_bytes(
        b.get(at..at.checked_add(8)?)?.try_into().ok()?,
    ))
}

/// One capability found in a chain.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct RawCap {
    /// Capability id.
    pub id: u16,
    /// Capability version.
    pub version: u16,
    /// Offset of the capability's body (after its header) in the reply.
    pub body: usize,
}

/// Walks the chain starting at `first` in a reply whose fixed header is `header_size` bytes.
/// `EINVAL` for an offset inside the header or past the buffer, a chain that does not move
/// forward, or more than 64 capabilities.
pub(crate) fn walk(buf: &[u8], first: usize, header_size: usize) -> Result<Vec<RawCap>, Errno> {
    let bad = Errno::EINVAL;
    let mut caps = Vec::new();
    let mut at = first;
    while at != 0 {
        if at < header_size || caps.len() >= 64 {
            return Err(bad);
        }
        let id = le_u16(buf, at).ok_or(bad)?;
        let version = le_u16(buf, at + 2).ok_or(bad)?;
        let next = le_u32(buf, at + 4).ok_or(bad)? as usize;
        caps.push(RawCap {
            id,
            version,
            body: at + CAP_HEADER_SIZE,
        });
        if next != 0 && next <= at {
            return Err(bad);
        }
        at = next;
    }
    Ok(caps)
}

/// Builds a chain to be placed right after a `header_size`-byte reply header.
#[derive(Debug, Default)]
pub(crate) struct ChainBuilder {
    bytes: Vec<u8>,
    starts: Vec<usize>,
}

impl ChainBuilder {
    /// Appends a capability; the body is padded so the next one is 8-byte aligned.
    pub fn push(&mut self, id: u16, version: u16, body: &[u8]) {
        self.starts.push(self.bytes.len());
        self.bytes.extend_from_slice(&id.to_le_bytes());
        self.bytes.extend_from_slice(&version.to_le_bytes());
        self.bytes.extend_from_slice(&0u32.to_le_bytes());
        self.bytes.extend_from_slice(body);
        self.bytes.resize(self.bytes.len().next_multiple_of(8), 0);
    }

    /// The chain with `next` offsets counted from the start of the reply.
    pub fn finish(mut self, header_size: usize) -> Vec<u8> {
        for pair in self.starts.windows(2) {
            let next = (header_size + pair[1]) as u32;
            self.bytes[pair[0] + 4..pair[0] + 8].copy_from_slice(&next.to_le_bytes());
        }
        self.bytes
    }
}

/// How a reply with a chain goes back to a caller buffer of `argsz` bytes, as the kernel does
/// it: the chain is copied only if it fits, else `argsz` is raised to the size needed and
/// `cap_offset` stays 0; the reply is flagged as having capabilities either way.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct ChainPlacement {
    /// The `argsz` to report.
    pub argsz: usize,
    /// The `cap_offset` to report (0 when the chain is not copied).
    pub cap_offset: u32,
    /// Whether the chain exists at all (the reply's CAPS flag).
    pub has_caps: bool,
}

/// Decides [`ChainPlacement`] for a chain of `chain_len` bytes after a `header_size` header.
pub(crate) fn place(argsz: usize, header_size: usize, chain_len: usize) -> ChainPlacement {
    if chain_len == 0 {
        return ChainPlacement {
            argsz,
            cap_offset: 0,
            has_caps: false,
        };
    }
    let needed = header_size + chain_len;
    if argsz >= needed {
        ChainPlacement {
            argsz,
            cap_offset: header_size as u32,
            has_caps: true,
        }
    } else {
        ChainPlacement {
            argsz: needed,
            cap_offset: 0,
            has_caps: true,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn built_chains_walk_back_in_order_with_aligned_bodies() {
        let mut b = ChainBuilder::default();
        b.push(3, 1, &7u32.to_le_bytes());
        b.push(1, 1, &[0u8; 24]);
        let mut buf = vec![0u8; 16];
        buf.extend(b.finish(16));
        let caps = walk(&buf, 16, 16).unwrap();
        assert_eq!(
            caps,
            vec![
                RawCap {
                    id: 3,
                    version: 1,
                    body: 24
                },
                RawCap {
                    id: 1,
                    version: 1,
                    body: 40
                }
            ]
        );
    }

    #[test]
    fn placement_copies_only_what_fits() {
        assert_eq!(
            place(100, 24, 40),
            ChainPlacement {
                argsz: 100,
                cap_offset: 24,
                has_caps: true
            }
        );
        assert_eq!(
            place(30, 24, 40),
            ChainPlacement {
                argsz: 64,
                cap_offset: 0,
                has_caps: true
            }
        );
        assert_eq!(
            place(30, 24, 0),
            ChainPlacement {
                argsz: 30,
                cap_offset: 0,
                has_caps: false
            }
        );
    }

    #[test]
    fn backward_or_inside_header_offsets_are_rejected() {
        let mut b = ChainBuilder::default();
        b.push(1, 1, &[]);
        let mut buf = vec![0u8; 16];
        buf.extend(b.finish(16));
        buf[16 + 4..16 + 8].copy_from_slice(&16u32.to_le_bytes());
        assert_eq!(walk(&buf, 16, 16), Err(Errno::EINVAL));
        assert_eq!(walk(&buf, 8, 16), Err(Errno::EINVAL));
        assert_eq!(walk(&buf, 4000, 16), Err(Errno::EINVAL));
    }
}
