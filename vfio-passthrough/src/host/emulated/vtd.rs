//! The VT-d-like IOMMU profile: its capability registers and the Intel driver's checks.
//!
//! The registers are composed so that every feature the profile offers is advertised the way
//! `drivers/iommu/intel` reads it (`iommu.h`): scalable mode (`ECAP.SMTS`) under nesting
//! (`ECAP.NEST`), dirty tracking (`ECAP.SLADS` with `ECAP.SMPWC`) and PASID (`ECAP.PASID`,
//! `ECAP.PSS` = width - 1); second-level large pages in `CAP.SLLPS`; the address width in
//! `CAP.MGAW` and the matching table depth in `CAP.SAGAW` (39 bits: 3 levels, 48: 4, 57: 5);
//! supervisor requests (`ECAP.SRS`) but no extended access flag (`ECAP.EAFS`) and no 5-level
//! first stage (`CAP.FL5LP`).
//!
//! Without scalable mode (an IOMMU in legacy mode, such as QEMU's `intel-iommu` without
//! `x-scalable-mode`) the driver offers none of nesting, dirty tracking and PASID, whatever the
//! other fields say: 6.12 gates each on `sm_supported()`.

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
    /// Scalable-mode translation (`ECAP.SMTS`); nesting, dirty tracking and PASID need it.
    pub scalable_mode: bool,
    /// Input address width in bits (`CAP.MGAW + 1`): 39, 48 or 57. Paging domains translate
    /// `[0, 2^address_width)`.
    pub address_width: u8,
}

impl Default for VtdIommu {
    /// [`VtdIommu::DEFAULT`].
    fn default() -> Self {
        Self::DEFAULT
    }
}

/// The input address width of the default profile.
pub const VTD_ADDRESS_WIDTH: u32 = 48;
/// The interrupt (MSI) window every device behind the IOMMU reserves.
pub const VTD_MSI_WINDOW: (u64, u64) = (0xfee0_0000, 0xfeef_ffff);
/// `IOMMU_HW_INFO_VTD_ERRATA_772415_SPR17`, which the 6.12 driver always reports.
pub const IOMMU_HW_INFO_VTD_ERRATA_772415_SPR17: u32 = 1;

impl VtdIommu {
    /// A current server IOMMU: 2 MiB and 1 GiB pages, dirty tracking, nesting, 20-bit PASIDs,
    /// scalable mode, 48-bit addresses.
    pub const DEFAULT: VtdIommu = VtdIommu {
        pages_2m: true,
        pages_1g: true,
        dirty_tracking: true,
        nesting: true,
        max_pasid_log2: 20,
        scalable_mode: true,
        address_width: VTD_ADDRESS_WIDTH as u8,
    };

    /// QEMU 7.2's `intel-iommu` as the kernel lab runs it (legacy mode, the default 39-bit
    /// address width): 2 MiB and 1 GiB second-level pages (`CAP.SLLPS`), and no scalable mode,
    /// hence no nesting, dirty tracking or PASID (measured in the lab's devices boot).
    pub const QEMU_LEGACY: VtdIommu = VtdIommu {
        pages_2m: true,
        pages_1g: true,
        dirty_tracking: false,
        nesting: false,
        max_pasid_log2: 0,
        scalable_mode: false,
        address_width: 39,
    };

    /// Nested translation as the driver offers it (`nested_supported()`).
    pub fn nesting_supported(&self) -> bool {
        self.scalable_mode && self.nesting
    }

    /// Dirty tracking as the driver offers it (`ssads_supported()`).
    pub fn dirty_supported(&self) -> bool {
        self.scalable_mode && self.dirty_tracking
    }

    /// The PASID width the driver offers (0: none; `pasid_supported()`, at most 20 bits).
    pub fn pasid_width(&self) -> u8 {
        if self.scalable_mode {
            self.max_pasid_log2.min(20)
        } else {
            0
        }
    }

    /// The input address width in bits, one of 39, 48 and 57 (another value in the field is
    /// taken as the next one up, capped at 57).
    pub fn width(&self) -> u32 {
        match self.address_width {
            0..=39 => 39,
            40..=48 => 48,
            _ => 57,
        }
    }

    /// The capability register (`CAP_REG`).
    pub fn cap_reg(&self) -> u64 {
        let nd = 6u64; // 64K domain ids
        // SAGAW bit 1: 3-level (39 bits), bit 2: 4-level (48), bit 3: 5-level (57).
        let sagaw = 1u64 << ((self.width() - 30) / 9);
        let mgaw = (u64::from(self.width()) - 1) << 16;
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
            | 0xf << 20; // MHMV
        if self.scalable_mode {
            e |= 1 << 31 // SRS: supervisor requests
                | 1 << 43 // SMTS: scalable mode
                | 1 << 46 // SLTS
                | 1 << 47 // FLTS
                | 1 << 48; // SMPWC
        }
        if self.nesting_supported() {
            e |= 1 << 26;
        }
        if self.dirty_supported() {
            e |= 1 << 45; // SLADS
        }
        let pasid = self.pasid_width();
        if pasid > 0 {
            e |= 1 << 40; // PASID
            e |= ((u64::from(pasid) - 1) & 0x1f) << 35; // PSS
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
            ..VtdIommu::default()
        };
        let (cap, ecap) = (bare.cap_reg(), bare.ecap_reg());
        assert_eq!((cap >> 34) & 0xf, 0);
        assert!(!ecap_bit(cap, 56));
        assert!(!ecap_bit(ecap, 26) && !ecap_bit(ecap, 45) && !ecap_bit(ecap, 40));
        assert_eq!(bare.pgsize_bitmap(), 4096);
    }

    #[test]
    fn legacy_mode_hides_every_scalable_mode_feature() {
        // Features asked for but not backed by scalable mode are not offered.
        let legacy = VtdIommu {
            scalable_mode: false,
            ..VtdIommu::default()
        };
        let ecap = legacy.ecap_reg();
        for (bit, name) in [(43, "SMTS"), (26, "NEST"), (45, "SLADS"), (40, "PASID")] {
            assert!(!ecap_bit(ecap, bit), "{name} advertised in legacy mode");
        }
        assert!(!legacy.nesting_supported() && !legacy.dirty_supported());
        assert_eq!(legacy.pasid_width(), 0);

        let qemu = VtdIommu::QEMU_LEGACY;
        let cap = qemu.cap_reg();
        assert_eq!(((cap >> 16) & 0x3f) + 1, 39, "MGAW");
        assert_eq!((cap >> 8) & 0x1f, 0b10, "SAGAW: 3-level");
        let wide = VtdIommu {
            address_width: 57,
            ..VtdIommu::default()
        };
        assert_eq!((wide.cap_reg() >> 8) & 0x1f, 0b1000, "SAGAW: 5-level");
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
