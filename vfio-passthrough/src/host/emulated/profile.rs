//! IOMMU hardware profiles: what the IOMMU behind an emulated device can do, and the driver
//! behaviour that follows (`domain_alloc_user`, `attach_dev`, `hw_info`).
//!
//! Two drivers are modelled: the kernel's selftest mock IOMMU (`selftest.c`) and a VT-d-like
//! IOMMU (`drivers/iommu/intel`). A domain belongs to the driver that allocated it; devices of
//! another driver cannot attach to it (`EINVAL`, as `__iommu_attach_group` checks the owner).

use crate::errno::Errno;
use crate::host::iommufd::uapi::{
    IOMMU_HW_CAP_DIRTY_TRACKING, IOMMU_HW_INFO_TYPE_INTEL_VTD, IOMMU_HWPT_ALLOC_DIRTY_TRACKING,
    IOMMU_HWPT_ALLOC_NEST_PARENT, IOMMU_HWPT_DATA_VTD_S1,
};
use crate::host::iommufd::{
    IOMMU_HW_INFO_TYPE_SELFTEST, IOMMU_HWPT_DATA_SELFTEST, MOCK_APERTURE_LAST, MOCK_APERTURE_START,
    MOCK_FLAGS_DEVICE_HUGE_IOVA, MOCK_FLAGS_DEVICE_NO_DIRTY,
};

use super::vtd::{IOMMU_HW_INFO_VTD_ERRATA_772415_SPR17, VTD_MSI_WINDOW, VtdIommu};

/// `MOCK_IO_PAGE_SIZE`: the mock domain's page, half a CPU page.
pub const MOCK_IO_PAGE_SIZE: u64 = super::PAGE_SIZE / 2;
/// `MOCK_HUGE_PAGE_SIZE`: the mock domain's huge page (with `MOCK_FLAGS_DEVICE_HUGE_IOVA`).
pub const MOCK_HUGE_PAGE_SIZE: u64 = 512 * MOCK_IO_PAGE_SIZE;
/// `IOMMU_HW_INFO_SELFTEST_REGVAL`: `test_reg` of the mock's hw_info.
pub const IOMMU_HW_INFO_SELFTEST_REGVAL: u32 = 0xdead_beef;
/// Number of entries of a mock nested domain's IOTLB.
pub const MOCK_NESTED_DOMAIN_IOTLB_NUM: usize = 4;

/// The IOMMU an emulated device sits behind.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum IommuProfile {
    /// The selftest mock IOMMU, with `MOCK_FLAGS_DEVICE_*` flags.
    Mock {
        /// `MOCK_FLAGS_DEVICE_NO_DIRTY` / `MOCK_FLAGS_DEVICE_HUGE_IOVA`.
        flags: u32,
    },
    /// A VT-d-like IOMMU.
    Vtd(VtdIommu),
}

/// The driver a domain belongs to (`domain->owner`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Driver {
    /// The selftest mock driver.
    Mock,
    /// The Intel VT-d driver.
    Vtd,
}

/// The geometry of a paging domain.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Geometry {
    /// Page sizes the domain maps (`pgsize_bitmap`); the lowest is its granule.
    pub pgsize_bitmap: u64,
    /// First IOVA the domain translates.
    pub aperture_start: u64,
    /// Last IOVA the domain translates.
    pub aperture_last: u64,
}

impl Geometry {
    /// The smallest page (`1 << __ffs(pgsize_bitmap)`).
    pub fn granule(&self) -> u64 {
        1 << self.pgsize_bitmap.trailing_zeros()
    }
}

/// What `IOMMU_GET_HW_INFO` reports for a device.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct HwInfoData {
    pub(crate) data_type: u32,
    pub(crate) data: Vec<u8>,
    pub(crate) capabilities: u64,
    pub(crate) max_pasid_log2: u8,
}

impl IommuProfile {
    /// A plain selftest mock device (`IOMMU_TEST_OP_MOCK_DOMAIN`).
    pub const MOCK: Self = IommuProfile::Mock { flags: 0 };

    /// The owning driver.
    pub fn driver(&self) -> Driver {
        match self {
            IommuProfile::Mock { .. } => Driver::Mock,
            IommuProfile::Vtd(_) => Driver::Vtd,
        }
    }

    /// `device_iommu_capable(IOMMU_CAP_DIRTY_TRACKING)`.
    pub fn dirty_capable(&self) -> bool {
        match self {
            IommuProfile::Mock { flags } => flags & MOCK_FLAGS_DEVICE_NO_DIRTY == 0,
            IommuProfile::Vtd(v) => v.dirty_supported(),
        }
    }

    /// PASID width of the device (0: no PASID).
    pub fn max_pasid_log2(&self) -> u8 {
        match self {
            IommuProfile::Mock { .. } => 0,
            IommuProfile::Vtd(v) => v.pasid_width(),
        }
    }

    /// The geometry of a paging domain allocated for this device.
    pub fn geometry(&self) -> Geometry {
        match self {
            IommuProfile::Mock { flags } => Geometry {
                pgsize_bitmap: MOCK_IO_PAGE_SIZE
                    | if flags & MOCK_FLAGS_DEVICE_HUGE_IOVA != 0 {
                        MOCK_HUGE_PAGE_SIZE
                    } else {
                        0
                    },
                aperture_start: MOCK_APERTURE_START,
                aperture_last: MOCK_APERTURE_LAST,
            },
            IommuProfile::Vtd(v) => Geometry {
                pgsize_bitmap: v.pgsize_bitmap(),
                aperture_start: 0,
                aperture_last: (1u64 << v.width()) - 1,
            },
        }
    }

    /// The device's reserved regions (`iommu_get_resv_regions`, inclusive ranges).
    pub fn reserved_regions(&self) -> Vec<(u64, u64)> {
        match self {
            IommuProfile::Mock { .. } => Vec::new(),
            IommuProfile::Vtd(_) => vec![VTD_MSI_WINDOW],
        }
    }

    /// `ops->hw_info` plus what the core adds.
    pub(crate) fn hw_info(&self) -> HwInfoData {
        let capabilities = if self.dirty_capable() {
            IOMMU_HW_CAP_DIRTY_TRACKING
        } else {
            0
        };
        match self {
            IommuProfile::Mock { .. } => {
                let mut data = Vec::with_capacity(8);
                data.extend_from_slice(&0u32.to_le_bytes());
                data.extend_from_slice(&IOMMU_HW_INFO_SELFTEST_REGVAL.to_le_bytes());
                HwInfoData {
                    data_type: IOMMU_HW_INFO_TYPE_SELFTEST,
                    data,
                    capabilities,
                    max_pasid_log2: 0,
                }
            }
            IommuProfile::Vtd(v) => {
                let info = crate::host::iommufd::uapi::HwInfoVtd {
                    flags: IOMMU_HW_INFO_VTD_ERRATA_772415_SPR17,
                    reserved: 0,
                    cap_reg: v.cap_reg(),
                    ecap_reg: v.ecap_reg(),
                };
                HwInfoData {
                    data_type: IOMMU_HW_INFO_TYPE_INTEL_VTD,
                    data: info.to_bytes().to_vec(),
                    capabilities,
                    max_pasid_log2: self.max_pasid_log2(),
                }
            }
        }
    }

    /// `domain_alloc_user` for a paging domain: `EOPNOTSUPP` for flags the driver does not
    /// take (`NEST_PARENT` without nesting, `DIRTY_TRACKING` without dirty tracking) or for
    /// driver data. `flags` has already been checked against the core's valid set.
    pub(crate) fn check_paging_alloc(&self, flags: u32, has_data: bool) -> Result<(), Errno> {
        if flags & !(IOMMU_HWPT_ALLOC_NEST_PARENT | IOMMU_HWPT_ALLOC_DIRTY_TRACKING) != 0 {
            return Err(Errno::EOPNOTSUPP);
        }
        let nest = flags & IOMMU_HWPT_ALLOC_NEST_PARENT != 0;
        let dirty = flags & IOMMU_HWPT_ALLOC_DIRTY_TRACKING != 0;
        if let IommuProfile::Vtd(v) = self
            && nest
            && !v.nesting_supported()
        {
            return Err(Errno::EOPNOTSUPP);
        }
        if has_data || (dirty && !self.dirty_capable()) {
            return Err(Errno::EOPNOTSUPP);
        }
        Ok(())
    }

    /// The driver's checks of a nested allocation before its data is parsed: the driver must
    /// offer nesting and `data_type` must be its stage-1 type (`EOPNOTSUPP`).
    pub(crate) fn check_nested_type(&self, data_type: u32) -> Result<(), Errno> {
        let (supported, wanted) = match self {
            IommuProfile::Mock { .. } => (true, IOMMU_HWPT_DATA_SELFTEST),
            IommuProfile::Vtd(v) => (v.nesting_supported(), IOMMU_HWPT_DATA_VTD_S1),
        };
        if !supported || data_type != wanted {
            return Err(Errno::EOPNOTSUPP);
        }
        Ok(())
    }

    /// `attach_dev` of a paging domain: a dirty-tracking domain cannot take a device whose
    /// IOMMU cannot track dirty pages (`EINVAL`).
    pub(crate) fn check_attach(&self, domain_dirty: bool) -> Result<(), Errno> {
        if domain_dirty && !self.dirty_capable() {
            return Err(Errno::EINVAL);
        }
        Ok(())
    }
}

/// `__iommu_copy_struct_from_user` for driver data of `size` bytes whose first version was
/// `min` bytes: `EINVAL` when the user length is below `min` or above `size`.
pub(crate) fn check_data_len(len: usize, min: usize, size: usize) -> Result<(), Errno> {
    if len < min || len > size {
        return Err(Errno::EINVAL);
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mock_geometry_matches_the_selftest_domain() {
        let g = IommuProfile::MOCK.geometry();
        assert_eq!(g.granule(), 2048);
        assert_eq!(
            (g.aperture_start, g.aperture_last),
            (1 << 24, (1 << 31) - 1)
        );
        let huge = IommuProfile::Mock {
            flags: MOCK_FLAGS_DEVICE_HUGE_IOVA,
        };
        assert_eq!(huge.geometry().pgsize_bitmap, 2048 | (1 << 20));
    }

    #[test]
    fn dirty_tracking_follows_the_device_flags() {
        let no_dirty = IommuProfile::Mock {
            flags: MOCK_FLAGS_DEVICE_NO_DIRTY,
        };
        assert!(IommuProfile::MOCK.dirty_capable());
        assert!(!no_dirty.dirty_capable());
        assert_eq!(
            no_dirty.check_paging_alloc(IOMMU_HWPT_ALLOC_DIRTY_TRACKING, false),
            Err(Errno::EOPNOTSUPP)
        );
        assert_eq!(no_dirty.check_attach(true), Err(Errno::EINVAL));
        assert_eq!(no_dirty.hw_info().capabilities, 0);
        assert_eq!(
            IommuProfile::MOCK.hw_info().capabilities,
            IOMMU_HW_CAP_DIRTY_TRACKING
        );
    }

    #[test]
    fn vtd_profile_reports_its_registers_and_reserves_the_msi_window() {
        let p = IommuProfile::Vtd(VtdIommu::default());
        let info = p.hw_info();
        assert_eq!(info.data_type, IOMMU_HW_INFO_TYPE_INTEL_VTD);
        assert_eq!(info.data.len(), 24);
        assert_eq!(info.max_pasid_log2, 20);
        assert_eq!(p.reserved_regions(), vec![(0xfee0_0000, 0xfeef_ffff)]);
        assert_eq!(p.geometry().granule(), 4096);
        let no_nest = IommuProfile::Vtd(VtdIommu {
            nesting: false,
            ..VtdIommu::default()
        });
        assert_eq!(
            no_nest.check_paging_alloc(IOMMU_HWPT_ALLOC_NEST_PARENT, false),
            Err(Errno::EOPNOTSUPP)
        );
        assert_eq!(
            no_nest.check_nested_type(IOMMU_HWPT_DATA_VTD_S1),
            Err(Errno::EOPNOTSUPP)
        );
    }

    #[test]
    fn qemu_legacy_vtd_offers_a_39_bit_domain_and_nothing_scalable() {
        let p = IommuProfile::Vtd(VtdIommu::QEMU_LEGACY);
        assert_eq!(p.geometry().aperture_last, (1 << 39) - 1);
        assert!(!p.dirty_capable());
        assert_eq!(p.hw_info().capabilities, 0);
        assert_eq!(p.hw_info().max_pasid_log2, 0);
        for flags in [
            IOMMU_HWPT_ALLOC_NEST_PARENT,
            IOMMU_HWPT_ALLOC_DIRTY_TRACKING,
        ] {
            assert_eq!(p.check_paging_alloc(flags, false), Err(Errno::EOPNOTSUPP));
        }
        assert_eq!(p.check_paging_alloc(0, false), Ok(()));
    }
}
