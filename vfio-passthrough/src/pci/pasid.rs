//! The PASID capability the guest sees: synthesized by the VMM from what the host IOMMU reports,
//! as the vSVA series and QEMU do.
//!
//! vfio-pci never shows the device's own PASID capability to userspace (the host IOMMU driver
//! owns it and enables PASID when it probes the device), so a guest can only learn that the
//! device does PASIDs from a capability the VMM makes up. The VMM builds one from
//! `IOMMU_GET_HW_INFO` for the bound device: `out_max_pasid_log2` (non-zero only when both the
//! device and its IOMMU support PASIDs) and the `IOMMU_HW_CAP_PCI_PASID_EXEC` /
//! `IOMMU_HW_CAP_PCI_PASID_PRIV` capabilities. Its control register is virtual: the guest's
//! enables are remembered, never forwarded, because the host enabled PASID already.

use crate::host::iommufd::uapi::{
    HwInfo, IOMMU_HW_CAP_PCI_PASID_EXEC, IOMMU_HW_CAP_PCI_PASID_PRIV,
};

/// The widest PASID the PCI Express PASID capability can describe (20 bits).
pub const MAX_PASID_WIDTH: u8 = 20;

/// PASID capability register: Execute Permission Supported.
pub(super) const PASID_CAP_EXEC: u16 = 1 << 1;
/// PASID capability register: Privileged Mode Supported.
pub(super) const PASID_CAP_PRIV: u16 = 1 << 2;
/// PASID capability register: Max PASID Width, bits 8..=12.
const PASID_CAP_WIDTH_SHIFT: u16 = 8;
/// PASID control register: PASID Enable.
pub(super) const PASID_CTRL_ENABLE: u16 = 1 << 0;
/// PASID control register: Execute Permission Enable.
pub(super) const PASID_CTRL_EXEC: u16 = 1 << 1;
/// PASID control register: Privileged Mode Enable.
pub(super) const PASID_CTRL_PRIV: u16 = 1 << 2;

/// What the host IOMMU supports for the device's PASIDs: the shape of the PASID capability the
/// guest is shown.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PasidSupport {
    /// PASID width in bits (1 to 20; wider reports are capped at 20).
    pub max_pasid_log2: u8,
    /// Requests with the execute permission are supported.
    pub execute: bool,
    /// Privileged-mode requests are supported.
    pub privileged: bool,
}

impl PasidSupport {
    /// The support `IOMMU_GET_HW_INFO` reported, or `None` if the device cannot use PASIDs
    /// (`out_max_pasid_log2` is 0, as kernels before 6.12 always report).
    pub fn from_hw_info(info: &HwInfo) -> Option<Self> {
        (info.out_max_pasid_log2 > 0).then(|| Self {
            max_pasid_log2: info.out_max_pasid_log2.min(MAX_PASID_WIDTH),
            execute: info.out_capabilities & IOMMU_HW_CAP_PCI_PASID_EXEC != 0,
            privileged: info.out_capabilities & IOMMU_HW_CAP_PCI_PASID_PRIV != 0,
        })
    }

    /// The PASID capability register.
    pub(super) fn capability_register(&self) -> u16 {
        let mut reg = u16::from(self.max_pasid_log2.min(MAX_PASID_WIDTH)) << PASID_CAP_WIDTH_SHIFT;
        if self.execute {
            reg |= PASID_CAP_EXEC;
        }
        if self.privileged {
            reg |= PASID_CAP_PRIV;
        }
        reg
    }

    /// The bits of the PASID control register the guest may set: enable, and execute and
    /// privileged mode where supported.
    pub(super) fn control_writable(&self) -> u16 {
        let mut bits = PASID_CTRL_ENABLE;
        if self.execute {
            bits |= PASID_CTRL_EXEC;
        }
        if self.privileged {
            bits |= PASID_CTRL_PRIV;
        }
        bits
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hw_info_without_a_pasid_width_means_no_capability() {
        assert_eq!(PasidSupport::from_hw_info(&HwInfo::default()), None);
    }

    #[test]
    fn width_and_permissions_come_from_hw_info() {
        let info = HwInfo {
            out_max_pasid_log2: 20,
            out_capabilities: IOMMU_HW_CAP_PCI_PASID_EXEC,
            ..HwInfo::default()
        };
        let s = PasidSupport::from_hw_info(&info).unwrap();
        assert_eq!(
            s,
            PasidSupport {
                max_pasid_log2: 20,
                execute: true,
                privileged: false
            }
        );
        assert_eq!(s.capability_register(), 0x1402);
        assert_eq!(s.control_writable(), 0x3);
    }

    #[test]
    fn a_width_beyond_pcie_is_capped() {
        let info = HwInfo {
            out_max_pasid_log2: 31,
            out_capabilities: IOMMU_HW_CAP_PCI_PASID_PRIV,
            ..HwInfo::default()
        };
        let s = PasidSupport::from_hw_info(&info).unwrap();
        assert_eq!(s.max_pasid_log2, 20);
        assert_eq!(s.capability_register(), 0x1404);
        assert_eq!(s.control_writable(), 0x5);
    }
}
