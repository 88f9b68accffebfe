//! The VT-d-like IOMMU profile: its capability registers and the Intel driver's checks.
//!
//! The registers are composed so that every feature the profile offers is advertised the way
//! `drivers/iommu/intel` reads it (`iommu.h`): scalable mode (`ECAP.SMTS`) under nesting
//! (`ECAP.NEST`), dirty tracking (`ECAP.SLADS` with `ECAP.SMPWC`) and PASID (`ECAP.PASID`,
//! `ECAP.PSS` = width - 1); second-level large pages in `CAP.SLLPS`; a 48-bit, 4-level address
//! width (`CAP.SAGAW` bit 2, `CAP.MGAW` = 47); supervisor requests (`ECAP.SRS`) but no extended
//! access flag (`ECAP.EAFS`) and no 5-level first stage (`CAP.FL5LP`).

use crate::errno::Errno;
use crate::host::iommufd::uapi::{
    HwptVtdS1, HwptVtdS1Invalidate, IOMMU_VTD_INV_FLAGS_LEAF, IOMMU_VTD_S1_EAFE, IOMMU_VTD_S1_SRE,
};

/// Configuration of a VT-d-like IOMMU.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct VtdIommu {
    /// Second-level 2 MiB pages.
    pub pages_2m: bool,
    /// Second-level (and first-level) 1 GiB pages.
    pub pages_1g: bool,
    /// Second-level access/dirty bits (`IOMMU_HWPT_ALLOC_DIRTY_TRACKING`).
    pub dirty_tracking: bool,
    /// Nested translation (`IOMMU_HWPT_ALLOC_NEST_PARENT`, `IOMMU_HWPT_DATA_VTD_S1`).
    pub nesting: bool,
    /// PASID width in bits, 0 without PASID support (at most 20).
    pub max_pasid_log2: u8,
}

impl Default for VtdIommu {
    /// A current server IOMMU: 2 MiB and 1 GiB pages, dirty tracking, nesting, 20-bit PASIDs.
    fn default() -> Self {
        VtdIommu {
            pages_2m: true,
            pages_1g: true,
            dirty_tracking: true,
            nesting: true,
            max_pasid_log2: 20,
        }
    }
}

/// The input address width of the profile.
pub const VTD_ADDRESS_WIDTH: u32 = 48;
/// The interrupt (MSI) window every device behind the IOMMU reserves.
pub const VTD_MSI_WINDOW: (u64, u64) = (0xfee0_0000, 0xfeef_ffff);
/// `IOMMU_HW_INFO_VTD_ERRATA_772415_SPR17`, which the 6.12 driver always reports.
pub const IOMMU_HW_INFO_VTD_ERRATA_772415_SPR17: u32 = 1;

impl VtdIommu {
    /// The capability register (`CAP_REG`).
    pub fn cap_reg(&self) -> u64 {
        let nd = 6u64; // 64K domain ids
        let sagaw = 1u64 << 2; // 4-level tables (48 bits)
        let mgaw = (VTD_ADDRESS_WIDTH as u64 - 1) << 16;
        let zlr = 1u64 << 22;
        let fro = 0x22u64 << 24; // fault recording registers at 0x220
        let sllps = (self.pages_2m as u64 | (self.pages_1g as u64) << 1) << 34;
        let psi = 1u64 << 39;
        let nfr = 7u64 << 40; // 8 fault recording registers
        let mamv = 0x12u64 << 48;
        let drain = (1u64 << 54) | (1 << 55);
        let fl1gp = (self.pages_1g as u64) << 56;
        let esrtps = (1u64 << 62) | (1 << 63);
        nd | (sagaw << 8) | mgaw | zlr | fro | sllps | psi | nfr | mamv | drain | fl1gp | esrtps
    }

    /// The extended capability register (`ECAP_REG`).
    pub fn ecap_reg(&self) -> u64 {
        let mut e = 1u64 // C: coherent page walks
            | 1 << 1 // QI
            | 1 << 2 // DT: device TLBs
            | 1 << 3 // IR
            | 1 << 4 // EIM
            | 1 << 6 // PT
            | 1 << 7 // SC: snoop control
            | 0x50 << 8 // IRO: IOTLB registers at 0x500
            | 0xf << 20 // MHMV
            | 1 << 31 // SRS: supervisor requests
            | 1 << 43 // SMTS: scalable mode
            | 1 << 46 // SLTS
            | 1 << 47 // FLTS
            | 1 << 48; // SMPWC
        if self.nesting {
            e |= 1 << 26;
        }
        if self.dirty_tracking {
            e |= 1 << 45; // SLADS
        }
        if self.max_pasid_log2 > 0 {
            e |= 1 << 40; // PASID
            e |= ((self.max_pasid_log2.min(20) as u64 - 1) & 0x1f) << 35; // PSS
            e |= 1 << 29; // PRS: page requests
        }
        e
    }

    /// Page sizes a domain of this IOMMU can map.
    pub fn pgsize_bitmap(&self) -> u64 {
        let mut p = 4096u64;
        if self.pages_2m {
            p |= 2 << 20;
        }
        if self.pages_1g {
            p |= 1 << 30;
        }
        p
    }
}

/// `intel_pasid_setup_nested`'s checks of the first-stage configuration, run when a device is
/// attached to a nested HWPT: `EINVAL` for an address width other than 48 (57 needs
/// `CAP.FL5LP`, which the profile lacks), for `SRE` without `ECAP.SRS`, or `EAFE` without
/// `ECAP.EAFS`. The driver does not check the other flag bits or `__reserved` (6.12).
pub(crate) fn check_s1_attach(iommu: &VtdIommu, s1: &HwptVtdS1) -> Result<(), Errno> {
    let cap = iommu.cap_reg();
    let ecap = iommu.ecap_reg();
    match s1.addr_width {
        48 => {}
        57 if (cap >> 60) & 1 != 0 => {}
        _ => return Err(Errno::EINVAL),
    }
    if s1.flags & IOMMU_VTD_S1_SRE != 0 && (ecap >> 31) & 1 == 0 {
        return Err(Errno::EINVAL);
    }
    if s1.flags & IOMMU_VTD_S1_EAFE != 0 && (ecap >> 34) & 1 == 0 {
        return Err(Errno::EINVAL);
    }
    Ok(())
}

/// `intel_nested_cache_invalidate_user`'s per-entry checks: unknown flags or a non-zero
/// `__reserved` -> `EOPNOTSUPP`; an address that is not 4 KiB aligned, or `npages == u64::MAX`
/// with a non-zero address -> `EINVAL`.
pub(crate) fn check_s1_invalidation(inv: &HwptVtdS1Invalidate) -> Result<(), Errno> {
    if inv.flags & !IOMMU_VTD_INV_FLAGS_LEAF != 0 || inv.reserved != 0 {
        return Err(Errno::EOPNOTSUPP);
    }
    if inv.addr & 0xfff != 0 || (inv.npages == u64::MAX && inv.addr != 0) {
        return Err(Errno::EINVAL);
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ecap_bit(e: u64, bit: u32) -> bool {
        (e >> bit) & 1 == 1
    }

    #[test]
    fn registers_advertise_what_the_profile_offers() {
        let full = VtdIommu::default();
        let (cap, ecap) = (full.cap_reg(), full.ecap_reg());
        assert_eq!(((cap >> 16) & 0x3f) + 1, 48, "MGAW");
        assert_eq!((cap >> 8) & 0x1f, 0b100, "SAGAW: 4-level");
        assert_eq!((cap >> 34) & 0xf, 0b11, "SLLPS: 2M and 1G");
        assert!(
            ecap_bit(ecap, 43) && ecap_bit(ecap, 26),
            "scalable mode + nesting"
        );
        assert!(ecap_bit(ecap, 45) && ecap_bit(ecap, 48), "SLADS + SMPWC");
        assert!(ecap_bit(ecap, 40));
        assert_eq!((ecap >> 35) & 0x1f, 19, "PSS = width - 1");

        let bare = VtdIommu {
            pages_2m: false,
            pages_1g: false,
            dirty_tracking: false,
            nesting: false,
            max_pasid_log2: 0,
        };
        let (cap, ecap) = (bare.cap_reg(), bare.ecap_reg());
        assert_eq!((cap >> 34) & 0xf, 0);
        assert!(!ecap_bit(cap, 56));
        assert!(!ecap_bit(ecap, 26) && !ecap_bit(ecap, 45) && !ecap_bit(ecap, 40));
        assert_eq!(bare.pgsize_bitmap(), 4096);
    }

    #[test]
    fn first_stage_configs_are_checked_like_the_intel_driver() {
        let iommu = VtdIommu::default();
        let s1 = |flags, addr_width| HwptVtdS1 {
            flags,
            pgtbl_addr: 0x1000,
            addr_width,
            reserved: 0,
        };
        assert_eq!(check_s1_attach(&iommu, &s1(0, 48)), Ok(()));
        assert_eq!(check_s1_attach(&iommu, &s1(0, 57)), Err(Errno::EINVAL));
        assert_eq!(check_s1_attach(&iommu, &s1(0, 39)), Err(Errno::EINVAL));
        assert_eq!(check_s1_attach(&iommu, &s1(IOMMU_VTD_S1_SRE, 48)), Ok(()));
        assert_eq!(
            check_s1_attach(&iommu, &s1(IOMMU_VTD_S1_EAFE, 48)),
            Err(Errno::EINVAL)
        );
    }

    #[test]
    fn invalidations_are_checked_like_the_intel_driver() {
        let inv = |addr, npages, flags, reserved| HwptVtdS1Invalidate {
            addr,
            npages,
            flags,
            reserved,
        };
        assert_eq!(check_s1_invalidation(&inv(0, u64::MAX, 0, 0)), Ok(()));
        assert_eq!(check_s1_invalidation(&inv(0x1000, 4, 1, 0)), Ok(()));
        assert_eq!(
            check_s1_invalidation(&inv(0x1000, u64::MAX, 0, 0)),
            Err(Errno::EINVAL)
        );
        assert_eq!(
            check_s1_invalidation(&inv(0x1001, 1, 0, 0)),
            Err(Errno::EINVAL)
        );
        assert_eq!(
            check_s1_invalidation(&inv(0x1000, 1, 2, 0)),
            Err(Errno::EOPNOTSUPP)
        );
        assert_eq!(
            check_s1_invalidation(&inv(0x1000, 1, 0, 1)),
            Err(Errno::EOPNOTSUPP)
        );
    }
}
