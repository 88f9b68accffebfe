//! What a range invalidation covers, as `iommu_hwpt_vtd_s1_invalidate` or a PASID-based IOTLB
//! invalidation descriptor describes it.

/// Size of the pages `npages` counts.
pub const INVALIDATION_PAGE_BYTES: u64 = 4096;

/// `IOMMU_VTD_INV_FLAGS_LEAF`.
pub const INV_FLAGS_LEAF: u32 = 1 << 0;

/// Errors decoding an `iommu_hwpt_vtd_s1_invalidate` entry; each matches a refusal of Linux 6.12
/// `intel_nested_cache_invalidate_user`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum RangeInvalidationError {
    /// Flag bits other than `IOMMU_VTD_INV_FLAGS_LEAF`, or a non-zero `__reserved` (the kernel
    /// answers `EOPNOTSUPP`).
    #[error("Invalidation flags {flags:#x} / reserved {reserved:#x} are not supported")]
    Unsupported {
        /// The flags given.
        flags: u32,
        /// The reserved field given.
        reserved: u32,
    },
    /// `addr` is not 4 KiB aligned (the kernel answers `EINVAL`).
    #[error("Invalidation address {addr:#x} is not 4 KiB aligned")]
    UnalignedAddress {
        /// The address given.
        addr: u64,
    },
    /// `npages` is `u64::MAX` ("everything") but `addr` is not 0 (the kernel answers `EINVAL`).
    #[error("Invalidation of all pages must start at 0, not {addr:#x}")]
    AllPagesFromNonZero {
        /// The address given.
        addr: u64,
    },
}

/// A range of input addresses to invalidate, and whether paging-structure caches go too.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct RangeInvalidation {
    /// First address; cached entries overlapping `[addr, addr + npages * 4 KiB)` are dropped.
    pub addr: u64,
    /// Number of 4 KiB pages. `u64::MAX` with `addr` 0 covers everything; 0 covers nothing.
    pub npages: u64,
    /// Only leaf translations need to go (`IOMMU_VTD_INV_FLAGS_LEAF`, the VT-d IH hint): cached
    /// non-leaf entries in the range are kept, as hardware may keep them.
    pub leaf_only: bool,
}

impl RangeInvalidation {
    /// Everything, paging structures included.
    pub const ALL: RangeInvalidation = RangeInvalidation {
        addr: 0,
        npages: u64::MAX,
        leaf_only: false,
    };

    /// Decodes one `iommu_hwpt_vtd_s1_invalidate` entry, refusing what Linux refuses.
    pub fn from_hwpt_vtd_s1(
        addr: u64,
        npages: u64,
        flags: u32,
        reserved: u32,
    ) -> Result<Self, RangeInvalidationError> {
        if flags & !INV_FLAGS_LEAF != 0 || reserved != 0 {
            return Err(RangeInvalidationError::Unsupported { flags, reserved });
        }
        if addr % INVALIDATION_PAGE_BYTES != 0 {
            return Err(RangeInvalidationError::UnalignedAddress { addr });
        }
        if npages == u64::MAX && addr != 0 {
            return Err(RangeInvalidationError::AllPagesFromNonZero { addr });
        }
        Ok(RangeInvalidation {
            addr,
            npages,
            leaf_only: flags & INV_FLAGS_LEAF != 0,
        })
    }

    /// The inclusive address range covered, or `None` for an empty one. Ranges running past the
    /// top of the address space stop there.
    pub fn bounds(&self) -> Option<(u64, u64)> {
        if self.npages == 0 {
            return None;
        }
        let end =
            u128::from(self.addr) + u128::from(self.npages) * u128::from(INVALIDATION_PAGE_BYTES);
        let last = u64::try_from(end - 1).unwrap_or(u64::MAX);
        Some((self.addr, last))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn decoding_refuses_what_the_kernel_refuses() {
        assert_eq!(
            RangeInvalidation::from_hwpt_vtd_s1(0x1000, 1, 2, 0),
            Err(RangeInvalidationError::Unsupported {
                flags: 2,
                reserved: 0
            })
        );
        assert_eq!(
            RangeInvalidation::from_hwpt_vtd_s1(0x1000, 1, 0, 1),
            Err(RangeInvalidationError::Unsupported {
                flags: 0,
                reserved: 1
            })
        );
        assert_eq!(
            RangeInvalidation::from_hwpt_vtd_s1(0x1200, 1, 0, 0),
            Err(RangeInvalidationError::UnalignedAddress { addr: 0x1200 })
        );
        assert_eq!(
            RangeInvalidation::from_hwpt_vtd_s1(0x1000, u64::MAX, 0, 0),
            Err(RangeInvalidationError::AllPagesFromNonZero { addr: 0x1000 })
        );
        assert_eq!(
            RangeInvalidation::from_hwpt_vtd_s1(0x1000, 2, INV_FLAGS_LEAF, 0),
            Ok(RangeInvalidation {
                addr: 0x1000,
                npages: 2,
                leaf_only: true
            })
        );
    }

    #[test]
    fn bounds_are_inclusive_and_saturate_at_the_top() {
        let two = RangeInvalidation {
            addr: 0x1000,
            npages: 2,
            leaf_only: false,
        };
        assert_eq!(two.bounds(), Some((0x1000, 0x2fff)));
        assert_eq!(RangeInvalidation::ALL.bounds(), Some((0, u64::MAX)));
        let none = RangeInvalidation { npages: 0, ..two };
        assert_eq!(none.bounds(), None);
    }
}
