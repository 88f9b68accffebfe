//! What an emulated type1 container and its groups are configured with: the driver's module
//! parameters ([`Type1Config`]) and the IOMMU behind a group ([`GroupIommu`]).

use crate::host::emulated::{Geometry, VTD_MSI_WINDOW, VtdIommu};

/// `dma_entry_limit`'s default: `U16_MAX` mappings per container.
pub const DEFAULT_DMA_ENTRY_LIMIT: u32 = 65535;

/// The `vfio_iommu_type1` module parameters the emulation honours.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Type1Config {
    /// `dma_entry_limit`: mappings per container (`DMA_AVAIL` starts here; `ENOSPC` past it).
    /// Read when `VFIO_SET_IOMMU` opens the driver, as the kernel reads it.
    pub dma_entry_limit: u32,
}

impl Default for Type1Config {
    fn default() -> Self {
        Type1Config {
            dma_entry_limit: DEFAULT_DMA_ENTRY_LIMIT,
        }
    }
}

/// The VT-d-like IOMMU an emulated group sits behind, as the type1 driver sees it through the
/// Intel driver: a paging domain of `address_width` bits, the page sizes of `vtd`, the
/// interrupt window reserved, and snooping enforced only if the IOMMU can (`ECAP.SC`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct GroupIommu {
    /// Page sizes (and the rest of the hardware description).
    pub vtd: VtdIommu,
    /// The domain's address width in bits (`gaw`): the aperture is `[0, 2^width - 1]`.
    /// Values above 64 are taken as 64.
    pub address_width: u8,
    /// The IOMMU can force snooping (`ECAP.SC`): the domain enforces cache coherency and
    /// `VFIO_DMA_CC_IOMMU` reads 1.
    pub snoop_control: bool,
}

impl Default for GroupIommu {
    /// The emulated host's VT-d profile: 48-bit, 4 KiB/2 MiB/1 GiB pages, snoop control.
    fn default() -> Self {
        GroupIommu {
            vtd: VtdIommu::default(),
            address_width: 48,
            snoop_control: true,
        }
    }
}

impl GroupIommu {
    /// QEMU 7.2's `intel-iommu` with its defaults, as the kernel lab boots it: 39-bit
    /// (`aw-bits=39`), 2 MiB and 1 GiB second-level pages (`CAP.SLLPS`), no snoop control.
    pub fn qemu_intel_iommu() -> Self {
        GroupIommu {
            vtd: VtdIommu::default(),
            address_width: 39,
            snoop_control: false,
        }
    }

    /// The same IOMMU with an address width of `bits`.
    pub fn with_address_width(mut self, bits: u8) -> Self {
        self.address_width = bits;
        self
    }

    /// The last IOVA of the aperture (`__DOMAIN_MAX_ADDR(gaw)`).
    pub fn aperture_last(&self) -> u64 {
        match self.address_width {
            0 => 0,
            w if w >= 64 => u64::MAX,
            w => (1u64 << w) - 1,
        }
    }

    /// The geometry of a second-stage domain allocated for a device behind this IOMMU.
    pub fn geometry(&self) -> Geometry {
        Geometry {
            pgsize_bitmap: self.vtd.pgsize_bitmap(),
            aperture_start: 0,
            aperture_last: self.aperture_last(),
        }
    }

    /// The group's reserved regions (`iommu_get_group_resv_regions`, inclusive): the
    /// interrupt window (`IOMMU_RESV_MSI`).
    pub fn reserved_regions(&self) -> Vec<(u64, u64)> {
        vec![VTD_MSI_WINDOW]
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_aperture_follows_the_address_width_without_overflow() {
        assert_eq!(
            GroupIommu::qemu_intel_iommu().aperture_last(),
            (1 << 39) - 1
        );
        assert_eq!(
            GroupIommu::default().geometry().aperture_last,
            (1 << 48) - 1
        );
        let wide = GroupIommu::default().with_address_width(64);
        assert_eq!(wide.aperture_last(), u64::MAX);
        assert_eq!(wide.with_address_width(200).aperture_last(), u64::MAX);
        assert_eq!(wide.with_address_width(0).aperture_last(), 0);
        assert_eq!(GroupIommu::default().geometry().granule(), 4096);
    }
}
