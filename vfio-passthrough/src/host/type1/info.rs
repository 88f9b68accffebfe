//! `VFIO_IOMMU_GET_INFO`'s reply: `struct vfio_iommu_type1_info` and its capability chain,
//! encoded (by backends that build it) and parsed (by everyone who reads it).

use crate::errno::Errno;
use crate::vfio::cap_chain::{ChainBuilder, RawCap, le_u32, le_u64, place, walk};

/// `VFIO_IOMMU_INFO_PGSIZES`.
pub const VFIO_IOMMU_INFO_PGSIZES: u32 = 1 << 0;
/// `VFIO_IOMMU_INFO_CAPS`.
pub const VFIO_IOMMU_INFO_CAPS: u32 = 1 << 1;
/// `VFIO_IOMMU_TYPE1_INFO_CAP_IOVA_RANGE`.
pub const CAP_IOVA_RANGE: u16 = 1;
/// `VFIO_IOMMU_TYPE1_INFO_CAP_MIGRATION`.
pub const CAP_MIGRATION: u16 = 2;
/// `VFIO_IOMMU_TYPE1_INFO_DMA_AVAIL`.
pub const CAP_DMA_AVAIL: u16 = 3;
/// Size of `struct vfio_iommu_type1_info` (the header before the capabilities).
pub const INFO_SIZE: usize = 24;
/// `minsz` of `VFIO_IOMMU_GET_INFO` (through `iova_pgsizes`).
pub const INFO_MINSZ: usize = 16;

/// One capability of the chain.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Type1InfoCap {
    /// Usable IOVA ranges, inclusive `(start, end)` pairs.
    IovaRange(Vec<(u64, u64)>),
    /// Dirty logging: supported page sizes and the largest bitmap accepted.
    Migration {
        /// Reserved flags.
        flags: u32,
        /// Page sizes a dirty bitmap may use (the smallest IOMMU page only).
        pgsize_bitmap: u64,
        /// Largest bitmap in bytes.
        max_dirty_bitmap_size: u64,
    },
    /// Mappings still available.
    DmaAvail(u32),
    /// A capability this parser does not know.
    Unknown {
        /// Its id.
        id: u16,
        /// Its version.
        version: u16,
    },
}

/// The decoded reply.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Type1Info {
    /// `argsz` as returned: the size needed for the whole reply.
    pub argsz: u32,
    /// `VFIO_IOMMU_INFO_*`.
    pub flags: u32,
    /// Supported IOMMU page sizes.
    pub iova_pgsizes: u64,
    /// Offset of the first capability, 0 if none were returned.
    pub cap_offset: u32,
    /// The capabilities returned, in chain order.
    pub caps: Vec<Type1InfoCap>,
}

impl Type1InfoCap {
    fn encode(&self, chain: &mut ChainBuilder) {
        let mut body = Vec::new();
        let (id, version) = match self {
            Type1InfoCap::IovaRange(ranges) => {
                body.extend_from_slice(&(ranges.len() as u32).to_le_bytes());
                body.extend_from_slice(&0u32.to_le_bytes());
                for (s, e) in ranges {
                    body.extend_from_slice(&s.to_le_bytes());
                    body.extend_from_slice(&e.to_le_bytes());
                }
                (CAP_IOVA_RANGE, 1)
            }
            Type1InfoCap::Migration {
                flags,
                pgsize_bitmap,
                max_dirty_bitmap_size,
            } => {
                body.extend_from_slice(&flags.to_le_bytes());
                body.extend_from_slice(&0u32.to_le_bytes());
                body.extend_from_slice(&pgsize_bitmap.to_le_bytes());
                body.extend_from_slice(&max_dirty_bitmap_size.to_le_bytes());
                (CAP_MIGRATION, 1)
            }
            Type1InfoCap::DmaAvail(avail) => {
                body.extend_from_slice(&avail.to_le_bytes());
                (CAP_DMA_AVAIL, 1)
            }
            Type1InfoCap::Unknown { id, version } => (*id, *version),
        };
        chain.push(id, version, &body);
    }

    fn decode(buf: &[u8], cap: RawCap) -> Option<Self> {
        let body = cap.body;
        Some(match cap.id {
            CAP_IOVA_RANGE => {
                let n = le_u32(buf, body)? as usize;
                let mut ranges = Vec::with_capacity(n.min(1024));
                for i in 0..n {
                    let r = body + 8 + i * 16;
                    ranges.push((le_u64(buf, r)?, le_u64(buf, r + 8)?));
                }
                Type1InfoCap::IovaRange(ranges)
            }
            CAP_MIGRATION => Type1InfoCap::Migration {
                flags: le_u32(buf, body)?,
                pgsize_bitmap: le_u64(buf, body + 8)?,
                max_dirty_bitmap_size: le_u64(buf, body + 16)?,
            },
            CAP_DMA_AVAIL => Type1InfoCap::DmaAvail(le_u32(buf, body)?),
            id => Type1InfoCap::Unknown {
                id,
                version: cap.version,
            },
        })
    }
}

impl Type1Info {
    /// Parses a reply. A malformed chain (an offset outside the buffer, a loop) is `EINVAL`:
    /// the data came from a backend and must not be trusted blindly.
    pub fn parse(buf: &[u8]) -> Result<Self, Errno> {
        let bad = Errno::EINVAL;
        let argsz = le_u32(buf, 0).ok_or(bad)?;
        let flags = le_u32(buf, 4).ok_or(bad)?;
        let iova_pgsizes = le_u64(buf, 8).ok_or(bad)?;
        let cap_offset = if buf.len() >= INFO_SIZE {
            le_u32(buf, 16).ok_or(bad)?
        } else {
            0
        };
        let caps = walk(buf, cap_offset as usize, INFO_SIZE)?
            .into_iter()
            .map(|cap| Type1InfoCap::decode(buf, cap).ok_or(bad))
            .collect::<Result<_, _>>()?;
        Ok(Self {
            argsz,
            flags,
            iova_pgsizes,
            cap_offset,
            caps,
        })
    }

    /// Encodes the reply the way the kernel does for a caller buffer of `argsz` bytes: the
    /// capability chain is copied only if it fits, else `argsz` is raised to the size needed and
    /// `cap_offset` stays 0 (CAPS is flagged either way). Returns the bytes to copy to the caller: the
    /// header's first `min(argsz, 24)` bytes (at least `minsz`), then the chain if it fits.
    pub fn encode(flags: u32, iova_pgsizes: u64, caps: &[Type1InfoCap], argsz: usize) -> Vec<u8> {
        let mut builder = ChainBuilder::default();
        for cap in caps {
            cap.encode(&mut builder);
        }
        let chain = builder.finish(INFO_SIZE);
        let placement = place(argsz, INFO_SIZE, chain.len());
        let flags = if placement.has_caps {
            flags | VFIO_IOMMU_INFO_CAPS
        } else {
            flags
        };
        let mut out = Vec::with_capacity(INFO_SIZE + chain.len());
        out.extend_from_slice(&(placement.argsz as u32).to_le_bytes());
        out.extend_from_slice(&flags.to_le_bytes());
        out.extend_from_slice(&iova_pgsizes.to_le_bytes());
        out.extend_from_slice(&placement.cap_offset.to_le_bytes());
        out.extend_from_slice(&0u32.to_le_bytes());
        out.truncate(argsz.clamp(INFO_MINSZ, INFO_SIZE));
        if placement.cap_offset != 0 {
            out.extend_from_slice(&chain);
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample_caps() -> Vec<Type1InfoCap> {
        vec![
            Type1InfoCap::Migration {
                flags: 0,
                pgsize_bitmap: 4096,
                max_dirty_bitmap_size: 256 << 20,
            },
            Type1InfoCap::DmaAvail(65535),
            Type1InfoCap::IovaRange(vec![(0, 0xfedf_ffff), (0xfef0_0000, (1 << 48) - 1)]),
        ]
    }

    #[test]
    fn reply_with_room_round_trips_every_capability() {
        let bytes = Type1Info::encode(VFIO_IOMMU_INFO_PGSIZES, 0x4000_1000, &sample_caps(), 4096);
        let info = Type1Info::parse(&bytes).unwrap();
        assert_eq!(info.flags, VFIO_IOMMU_INFO_PGSIZES | VFIO_IOMMU_INFO_CAPS);
        assert_eq!(info.cap_offset as usize, INFO_SIZE);
        assert_eq!(info.caps, sample_caps());
        // With room, the kernel leaves the caller's argsz alone.
        assert_eq!(info.argsz, 4096);
        // Migration (32 bytes) and DMA_AVAIL (12, padded to 16) before the IOVA ranges.
        assert_eq!(bytes.len(), INFO_SIZE + 32 + 16 + 16 + 2 * 16);
    }

    #[test]
    fn reply_without_room_flags_caps_and_asks_for_more() {
        let bytes = Type1Info::encode(VFIO_IOMMU_INFO_PGSIZES, 0x1000, &sample_caps(), INFO_SIZE);
        let info = Type1Info::parse(&bytes).unwrap();
        assert_eq!(info.cap_offset, 0);
        assert!(info.caps.is_empty());
        assert_ne!(info.flags & VFIO_IOMMU_INFO_CAPS, 0);
        let full = Type1Info::encode(VFIO_IOMMU_INFO_PGSIZES, 0x1000, &sample_caps(), 4096);
        assert_eq!(info.argsz as usize, full.len());
        assert_eq!(bytes.len(), INFO_SIZE);
    }

    #[test]
    fn looping_or_out_of_range_chains_are_rejected() {
        let mut bytes = Type1Info::encode(0, 0x1000, &sample_caps(), 4096);
        // Point the first capability's `next` back at itself.
        bytes[INFO_SIZE + 4..INFO_SIZE + 8].copy_from_slice(&(INFO_SIZE as u32).to_le_bytes());
        assert_eq!(Type1Info::parse(&bytes), Err(Errno::EINVAL));
        let mut bytes = Type1Info::encode(0, 0x1000, &sample_caps(), 4096);
        bytes[16..20].copy_from_slice(&9999u32.to_le_bytes());
        assert_eq!(Type1Info::parse(&bytes), Err(Errno::EINVAL));
    }
}
