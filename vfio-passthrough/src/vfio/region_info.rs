//! `VFIO_DEVICE_GET_REGION_INFO`'s reply: `struct vfio_region_info` and its capability chain,
//! encoded by backends that build it and parsed by everyone who reads it.
//!
//! The bytes come from a backend (the kernel, or a device model) and are checked as untrusted
//! input: offsets must stay inside the buffer, the chain must move forward, areas must fit the
//! region.

use crate::errno::Errno;
use crate::vfio::cap_chain::{ChainBuilder, RawCap, le_u32, le_u64, place, walk};

use super::uapi::VFIO_REGION_INFO_FLAG_CAPS;

/// `VFIO_REGION_INFO_CAP_SPARSE_MMAP`.
pub const CAP_SPARSE_MMAP: u16 = 1;
/// `VFIO_REGION_INFO_CAP_TYPE`.
pub const CAP_TYPE: u16 = 2;
/// `VFIO_REGION_INFO_CAP_MSIX_MAPPABLE`.
pub const CAP_MSIX_MAPPABLE: u16 = 3;
/// Size of `struct vfio_region_info`.
pub const REGION_INFO_SIZE: usize = 32;

/// One capability of a region.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RegionCap {
    /// Only these `(offset, size)` sub-ranges of the region may be mmapped.
    SparseMmap(Vec<(u64, u64)>),
    /// Device-specific region type (index >= 9).
    Type {
        /// `VFIO_REGION_TYPE_*`.
        region_type: u32,
        /// Subtype.
        subtype: u32,
    },
    /// The MSI-X table may be mmapped (header only).
    MsixMappable,
    /// A capability this parser does not know.
    Unknown {
        /// Its id.
        id: u16,
        /// Its version.
        version: u16,
    },
}

/// A region as the device describes it.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct RegionInfo {
    /// `VFIO_REGION_INFO_FLAG_*`.
    pub flags: u32,
    /// Region index.
    pub index: u32,
    /// Size in bytes (0: the region is not implemented).
    pub size: u64,
    /// Offset of the region in the device file (for pread/pwrite/mmap).
    pub offset: u64,
    /// Capabilities, in chain order.
    pub caps: Vec<RegionCap>,
}

impl RegionInfo {
    /// The mmap-able `(offset, size)` parts of the region: the sparse areas if the region has
    /// that capability, the whole region if it is mmap-able without one, nothing otherwise.
    pub fn mmap_areas(&self) -> Vec<(u64, u64)> {
        if self.flags & super::uapi::VFIO_REGION_INFO_FLAG_MMAP == 0 {
            return Vec::new();
        }
        for cap in &self.caps {
            if let RegionCap::SparseMmap(areas) = cap {
                return areas.iter().copied().filter(|(_, s)| *s != 0).collect();
            }
        }
        vec![(0, self.size)]
    }

    /// The device-specific type of the region, if it has one.
    pub fn region_type(&self) -> Option<(u32, u32)> {
        self.caps.iter().find_map(|c| match c {
            RegionCap::Type {
                region_type,
                subtype,
            } => Some((*region_type, *subtype)),
            _ => None,
        })
    }

    /// Parses a reply buffer. `EINVAL` for a malformed chain or sparse areas outside the
    /// region; a buffer too small for the chain (`cap_offset` 0) parses with no capabilities.
    pub fn parse(buf: &[u8]) -> Result<Self, Errno> {
        let bad = Errno::EINVAL;
        let flags = le_u32(buf, 4).ok_or(bad)?;
        let index = le_u32(buf, 8).ok_or(bad)?;
        let cap_offset = le_u32(buf, 12).ok_or(bad)? as usize;
        let size = le_u64(buf, 16).ok_or(bad)?;
        let offset = le_u64(buf, 24).ok_or(bad)?;
        let caps = if flags & VFIO_REGION_INFO_FLAG_CAPS != 0 {
            walk(buf, cap_offset, REGION_INFO_SIZE)?
                .into_iter()
                .map(|cap| RegionCap::decode(buf, cap, size).ok_or(bad))
                .collect::<Result<_, _>>()?
        } else {
            Vec::new()
        };
        Ok(Self {
            flags,
            index,
            size,
            offset,
            caps,
        })
    }

    /// Encodes the reply the kernel gives a caller buffer of `argsz` bytes: the capability
    /// chain is copied only if it fits, else `argsz` is raised to the size needed and
    /// `cap_offset` stays 0 (CAPS is flagged either way). Returns the bytes to copy back.
    pub fn encode(&self, argsz: usize) -> Vec<u8> {
        let mut builder = ChainBuilder::default();
        for cap in &self.caps {
            cap.encode(&mut builder);
        }
        let chain = builder.finish(REGION_INFO_SIZE);
        let placement = place(argsz, REGION_INFO_SIZE, chain.len());
        let flags = if placement.has_caps {
            self.flags | VFIO_REGION_INFO_FLAG_CAPS
        } else {
            self.flags
        };
        let mut out = Vec::with_capacity(REGION_INFO_SIZE + chain.len());
        out.extend_from_slice(&(placement.argsz as u32).to_le_bytes());
        out.extend_from_slice(&flags.to_le_bytes());
        out.extend_from_slice(&self.index.to_le_bytes());
        out.extend_from_slice(&placement.cap_offset.to_le_bytes());
        out.extend_from_slice(&self.size.to_le_bytes());
        out.extend_from_slice(&self.offset.to_le_bytes());
        if placement.cap_offset != 0 {
            out.extend_from_slice(&chain);
        }
        out
    }
}

impl RegionCap {
    fn encode(&self, chain: &mut ChainBuilder) {
        let mut body = Vec::new();
        let (id, version) = match self {
            RegionCap::SparseMmap(areas) => {
                body.extend_from_slice(&(areas.len() as u32).to_le_bytes());
                body.extend_from_slice(&0u32.to_le_bytes());
                for (off, len) in areas {
                    body.extend_from_slice(&off.to_le_bytes());
                    body.extend_from_slice(&len.to_le_bytes());
                }
                (CAP_SPARSE_MMAP, 1)
            }
            RegionCap::Type {
                region_type,
                subtype,
            } => {
                body.extend_from_slice(&region_type.to_le_bytes());
                body.extend_from_slice(&subtype.to_le_bytes());
                (CAP_TYPE, 1)
            }
            RegionCap::MsixMappable => (CAP_MSIX_MAPPABLE, 1),
            RegionCap::Unknown { id, version } => (*id, *version),
        };
        chain.push(id, version, &body);
    }

    /// Decodes one capability of a region of `region_size` bytes; `None` if it is truncated or
    /// describes a sparse area outside the region.
    fn decode(buf: &[u8], cap: RawCap, region_size: u64) -> Option<Self> {
        let body = cap.body;
        Some(match cap.id {
            CAP_SPARSE_MMAP => {
                let n = le_u32(buf, body)? as usize;
                let mut areas = Vec::with_capacity(n.min(64));
                for i in 0..n {
                    let a = body + 8 + i * 16;
                    let (off, len) = (le_u64(buf, a)?, le_u64(buf, a + 8)?);
                    if off.checked_add(len)? > region_size {
                        return None;
                    }
                    areas.push((off, len));
                }
                RegionCap::SparseMmap(areas)
            }
            CAP_TYPE => RegionCap::Type {
                region_type: le_u32(buf, body)?,
                subtype: le_u32(buf, body + 4)?,
            },
            CAP_MSIX_MAPPABLE => RegionCap::MsixMappable,
            id => RegionCap::Unknown {
                id,
                version: cap.version,
            },
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::vfio::uapi::*;

    fn bar_with_msix_hole() -> RegionInfo {
        RegionInfo {
            flags: VFIO_REGION_INFO_FLAG_READ
                | VFIO_REGION_INFO_FLAG_WRITE
                | VFIO_REGION_INFO_FLAG_MMAP,
            index: 2,
            size: 0x20_0000,
            offset: 2 << 40,
            caps: vec![RegionCap::SparseMmap(vec![
                (0, 0x10_0000),
                (0x10_2000, 0xf_e000),
            ])],
        }
    }

    #[test]
    fn sparse_areas_round_trip_and_exclude_the_msix_pages() {
        let info = bar_with_msix_hole();
        let parsed = RegionInfo::parse(&info.encode(4096)).unwrap();
        assert_eq!(
            parsed.flags & VFIO_REGION_INFO_FLAG_CAPS,
            VFIO_REGION_INFO_FLAG_CAPS
        );
        assert_eq!(
            parsed.mmap_areas(),
            vec![(0, 0x10_0000), (0x10_2000, 0xf_e000)]
        );
    }

    #[test]
    fn small_buffer_yields_no_caps_and_the_size_needed() {
        let info = bar_with_msix_hole();
        let bytes = info.encode(REGION_INFO_SIZE);
        let parsed = RegionInfo::parse(&bytes).unwrap();
        assert!(parsed.caps.is_empty());
        assert_eq!(
            u32::from_le_bytes(bytes[0..4].try_into().unwrap()) as usize,
            info.encode(4096).len()
        );
    }

    #[test]
    fn sparse_area_past_the_region_is_rejected() {
        let mut info = bar_with_msix_hole();
        info.caps = vec![RegionCap::SparseMmap(vec![(0x1f_f000, 0x2000)])];
        assert_eq!(RegionInfo::parse(&info.encode(4096)), Err(Errno::EINVAL));
        info.caps = vec![RegionCap::SparseMmap(vec![(u64::MAX, 2)])];
        assert_eq!(RegionInfo::parse(&info.encode(4096)), Err(Errno::EINVAL));
    }

    #[test]
    fn truncated_or_looping_chains_are_rejected() {
        let info = bar_with_msix_hole();
        let bytes = info.encode(4096);
        assert_eq!(RegionInfo::parse(&bytes[..40]), Err(Errno::EINVAL));
        let mut looped = RegionInfo {
            caps: vec![
                RegionCap::MsixMappable,
                RegionCap::Type {
                    region_type: 3,
                    subtype: 1,
                },
            ],
            ..info
        }
        .encode(4096);
        let first_next = REGION_INFO_SIZE + 4;
        looped[first_next..first_next + 4]
            .copy_from_slice(&(REGION_INFO_SIZE as u32).to_le_bytes());
        assert_eq!(RegionInfo::parse(&looped), Err(Errno::EINVAL));
    }

    #[test]
    fn mmap_flag_without_sparse_cap_maps_the_whole_region() {
        let info = RegionInfo {
            caps: vec![],
            ..bar_with_msix_hole()
        };
        assert_eq!(info.mmap_areas(), vec![(0, 0x20_0000)]);
        let trapped = RegionInfo {
            flags: VFIO_REGION_INFO_FLAG_READ,
            ..info
        };
        assert!(trapped.mmap_areas().is_empty());
    }
}
