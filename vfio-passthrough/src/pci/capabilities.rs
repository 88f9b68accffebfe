//! Which of the device's capabilities the guest sees, and how each field of them behaves.
//!
//! # The allow-list
//!
//! Capabilities keep their offsets on the device (drivers sometimes hard-code them); the guest
//! sees a subset of them, linked by rewritten `next` pointers.
//!
//! Standard capabilities exposed:
//! - **Power management** (0x01): the guest may change the power state (forwarded; the kernel
//!   traps and performs it); PME is hidden (PME_Support reads 0, PME_En and PME_Status are
//!   virtual 0) because a guest cannot receive PME events from a passed-through function.
//! - **MSI** (0x05) and **MSI-X** (0x11): fully virtual, served by the `devices` models; the host
//!   side follows through `VFIO_DEVICE_SET_IRQS`. Hidden if the device cannot signal that IRQ
//!   index through an eventfd.
//! - **PCI Express** (0x10): read from the device. Device control is forwarded except phantom
//!   functions, Max_Payload_Size and Max_Read_Request_Size (fabric-wide settings the host owns,
//!   as vfio-pci keeps them) and Initiate FLR, which is virtual (reads 0) and performs a
//!   `VFIO_DEVICE_RESET`, as vfio-pci does. Device control 2 is forwarded except ARI forwarding
//!   (set by the host). Everything else, the status registers included, is read-only (their
//!   error bits are the host's to clear, as through vfio-pci).
//! - **Vendor specific** (0x09): read and written through, as vfio-pci does, since only the
//!   vendor's driver knows what its fields mean.
//!
//! Hidden: everything else (PCI-X, VPD, AGP, slot numbering, hot-plug, bridge subsystem, AF, ...):
//! they either describe the host topology or let the guest reset or reconfigure the function
//! behind our back.
//!
//! Extended capabilities: the device's own are all hidden, as vfio-pci hides them: PASID (the
//! host IOMMU driver owns it and enabled it at probe), ATS and PRI (the host IOMMU owns
//! translation and page requests), SR-IOV (VFs belong to the host), AER (the host handles errors
//! and reports them through the ERR interrupt), and every other one. A hidden first extended
//! capability leaves a placeholder header at 0x100 (ID 0, version 0) whose `next` skips it, as
//! vfio-pci does.
//!
//! **PASID** (0x1b) is then *synthesized*, as the vSVA series and QEMU do, when the VMM passes
//! the host IOMMU's [`PasidSupport`] for the device and the device has extended configuration
//! space: an 8-byte capability in the first free dword-aligned space from 0x100 (0x100 itself,
//! since nothing else is exposed there), its capability register built from the IOMMU's report
//! and its control register virtual (the guest's enables are kept, never forwarded; the host
//! enabled PASID when it bound the device).

use devices::pci::configuration::PCI_STATUS_CAP_LIST;
use devices::pci::{
    BarKind, CapabilityEntry, MsiCapabilityConfig, MsixLayout, PciConfiguration, walk_capabilities,
    walk_extended_capabilities,
};

use super::discovery::DeviceLayout;
use super::error::VfioPciError;
use super::pasid::PasidSupport;
use super::policy::ConfigPolicy;
use crate::vfio::{VFIO_PCI_MSI_IRQ_INDEX, VFIO_PCI_MSIX_IRQ_INDEX};

/// Power management capability ID.
pub const CAP_ID_PM: u8 = 0x01;
/// MSI capability ID.
pub const CAP_ID_MSI: u8 = 0x05;
/// Vendor-specific capability ID.
pub const CAP_ID_VNDR: u8 = 0x09;
/// PCI Express capability ID.
pub const CAP_ID_EXP: u8 = 0x10;
/// MSI-X capability ID.
pub const CAP_ID_MSIX: u8 = 0x11;
/// PASID extended capability ID.
pub const EXT_CAP_ID_PASID: u16 = 0x1b;

const CAP_LIST_POINTER: u16 = 0x34;
const STANDARD_END: u16 = 0x100;
const EXTENDED_START: u16 = 0x100;

const PM_CAP_PME_MASK: u32 = 0xf800;
const PM_CTRL_STATE_MASK: u32 = 0x0003;
const PM_CTRL_PME_ENABLE: u32 = 0x0100;
const PM_CTRL_PME_STATUS: u32 = 0x8000;

const EXP_FLAGS_VERS: u16 = 0x000f;
const EXP_FLAGS_TYPE_SHIFT: u16 = 4;
const EXP_TYPE_RC_END: u16 = 0x9;
const EXP_DEVCTL: u16 = 0x08;
const EXP_DEVCTL2: u16 = 0x28;
const EXP_DEVCTL_PAYLOAD: u32 = 0x00e0;
const EXP_DEVCTL_PHANTOM: u32 = 0x0200;
const EXP_DEVCTL_READRQ: u32 = 0x7000;
/// Device control: Initiate Function Level Reset.
pub const EXP_DEVCTL_BCR_FLR: u32 = 0x8000;
const EXP_DEVCTL2_ARI: u32 = 0x0020;

/// The version of the synthesized PASID capability.
const PASID_CAP_VERSION: u8 = 1;
/// The PASID capability: header, capability register (16 bits), control register (16 bits).
const PASID_CAP_LEN: u16 = 8;
/// The end of PCI Express configuration space.
const CONFIG_SPACE_END: u16 = 0x1000;

/// What an exposed capability is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum CapKind {
    PowerManagement,
    Msi(MsiCapabilityConfig),
    Msix(MsixLayout),
    PciExpress,
    VendorSpecific,
    /// A PASID capability the VMM synthesized (not the device's).
    VirtualPasid(PasidSupport),
}

/// A capability the guest sees.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct Capability {
    /// Capability ID.
    pub id: u16,
    /// Offset in config space (the device's own).
    pub offset: u16,
    /// Length in bytes, header included.
    pub len: u16,
    /// Version (extended capabilities only).
    pub version: u8,
    /// What it is.
    pub kind: CapKind,
}

/// The capabilities the guest sees and those it does not.
#[derive(Debug, Clone, Default)]
pub(super) struct CapabilityPlan {
    /// Standard capabilities exposed, in the device's list order.
    pub standard: Vec<Capability>,
    /// Extended capabilities exposed (only synthesized ones), in offset order.
    pub extended: Vec<Capability>,
    /// Capabilities hidden from the guest (logged at start).
    pub hidden: Vec<CapabilityEntry>,
}

impl CapabilityPlan {
    /// Sorts the device's capabilities into exposed and hidden, checking that the exposed ones
    /// fit and do not overlap, and adds a virtual PASID capability for `pasid` if the device has
    /// extended configuration space.
    pub fn new(
        layout: &DeviceLayout,
        name: &str,
        pasid: Option<PasidSupport>,
    ) -> Result<Self, VfioPciError> {
        let config = &layout.config;
        let byte = |o: u16| config.get(usize::from(o)).copied().unwrap_or(0);
        let word = |o: u16| u16::from_le_bytes([byte(o), byte(o + 1)]);
        let invalid = |entry: CapabilityEntry, reason| VfioPciError::InvalidCapability {
            device: name.to_string(),
            id: entry.id,
            offset: entry.offset,
            reason,
        };
        let mut plan = Self::default();
        for entry in walk_capabilities(byte) {
            let c = entry.offset;
            let found = match entry.id as u8 {
                CAP_ID_PM => Some((CapKind::PowerManagement, 8)),
                CAP_ID_MSI => layout.usable_irq(VFIO_PCI_MSI_IRQ_INDEX).map(|irq| {
                    let mut cfg = MsiCapabilityConfig::from_message_control(word(c + 2));
                    // The guest may enable no more vectors than the host can.
                    while cfg.max_vectors > irq.count && cfg.max_vectors > 1 {
                        cfg.max_vectors /= 2;
                    }
                    (CapKind::Msi(cfg), cfg.len() as u16)
                }),
                CAP_ID_MSIX => layout.usable_irq(VFIO_PCI_MSIX_IRQ_INDEX).map(|_| {
                    let dword = |o: u16| layout.config_dword(usize::from(o));
                    let msix = MsixLayout::from_capability(word(c + 2), dword(c + 4), dword(c + 8));
                    (CapKind::Msix(msix), 12)
                }),
                CAP_ID_EXP => Some((CapKind::PciExpress, pcie_len(word(c + 2)))),
                CAP_ID_VNDR => {
                    let len = u16::from(byte(c + 2));
                    if len < 3 {
                        return Err(invalid(entry, "vendor capability shorter than its header"));
                    }
                    Some((CapKind::VendorSpecific, len))
                }
                _ => None,
            };
            let Some((kind, len)) = found else {
                plan.hidden.push(entry);
                continue;
            };
            if c + len > STANDARD_END {
                return Err(invalid(entry, "capability runs past standard config space"));
            }
            plan.standard.push(Capability {
                id: entry.id,
                offset: c,
                len,
                version: 0,
                kind,
            });
        }
        if config.len() > usize::from(EXTENDED_START) {
            let dword = |o: u16| layout.config_dword(usize::from(o));
            // A placeholder (ID 0) left by the host for a capability it hides is not one.
            plan.hidden.extend(
                walk_extended_capabilities(dword)
                    .into_iter()
                    .filter(|entry| entry.id != 0),
            );
        }
        if let Some(support) = pasid {
            match plan.free_extended_space(config.len(), PASID_CAP_LEN) {
                Some(offset) => plan.extended.push(Capability {
                    id: EXT_CAP_ID_PASID,
                    offset,
                    len: PASID_CAP_LEN,
                    version: PASID_CAP_VERSION,
                    kind: CapKind::VirtualPasid(support),
                }),
                None => log::info!(
                    "{name}: the host IOMMU supports PASIDs for the device, but it has no \
                     extended configuration space to show a PASID capability in"
                ),
            }
        }
        for list in [&plan.standard, &plan.extended] {
            let mut sorted: Vec<_> = list.iter().collect();
            sorted.sort_by_key(|c| c.offset);
            for pair in sorted.windows(2) {
                if pair[0].offset + pair[0].len > pair[1].offset {
                    let entry = CapabilityEntry {
                        id: pair[1].id,
                        offset: pair[1].offset,
                        version: pair[1].version,
                    };
                    return Err(invalid(entry, "capability overlaps the one before it"));
                }
            }
        }
        if let Some((_, msix)) = plan.msix() {
            check_msix_placement(layout, name, msix)?;
        }
        Ok(plan)
    }

    /// The lowest dword-aligned offset from 0x100 where `len` bytes overlap no exposed
    /// extended capability, inside a config space of `config_len` bytes.
    fn free_extended_space(&self, config_len: usize, len: u16) -> Option<u16> {
        let end = CONFIG_SPACE_END.min(u16::try_from(config_len).unwrap_or(CONFIG_SPACE_END));
        let mut taken: Vec<(u16, u16)> = self
            .extended
            .iter()
            .map(|c| (c.offset, c.offset + c.len))
            .collect();
        taken.sort_unstable();
        let mut at = EXTENDED_START;
        for (start, stop) in taken {
            if at + len <= start {
                break;
            }
            at = at.max(stop.next_multiple_of(4));
        }
        (at + len <= end).then_some(at)
    }

    /// The exposed MSI capability: its offset and shape.
    pub fn msi(&self) -> Option<(u16, MsiCapabilityConfig)> {
        self.standard.iter().find_map(|c| match c.kind {
            CapKind::Msi(cfg) => Some((c.offset, cfg)),
            _ => None,
        })
    }

    /// The exposed MSI-X capability: its offset and table layout.
    pub fn msix(&self) -> Option<(u16, MsixLayout)> {
        self.standard.iter().find_map(|c| match c.kind {
            CapKind::Msix(layout) => Some((c.offset, layout)),
            _ => None,
        })
    }

    /// The offset of the exposed PCI Express capability.
    pub fn pcie(&self) -> Option<u16> {
        self.standard
            .iter()
            .find(|c| c.kind == CapKind::PciExpress)
            .map(|c| c.offset)
    }

    /// Writes the exposed capabilities (with rewritten links) into the virtual registers and
    /// sets how each of their fields behaves.
    pub fn apply(
        &self,
        layout: &DeviceLayout,
        regs: &mut PciConfiguration,
        policy: &mut ConfigPolicy,
    ) {
        for (i, cap) in self.standard.iter().enumerate() {
            let next = self.standard.get(i + 1).map_or(0, |n| n.offset as u8);
            copy_bytes(layout, regs, cap.offset, cap.len);
            set_byte(regs, cap.offset + 1, next);
            standard_policy(cap, regs, policy);
        }
        let first = self.standard.first().map_or(0, |c| c.offset as u8);
        set_byte(regs, CAP_LIST_POINTER, first);
        regs.set_status_bits(PCI_STATUS_CAP_LIST, first != 0);

        if let Some(first) = self.extended.first() {
            if first.offset != EXTENDED_START {
                regs.set_register(
                    usize::from(EXTENDED_START / 4),
                    u32::from(first.offset) << 20,
                );
            }
        }
        for (i, cap) in self.extended.iter().enumerate() {
            let next = self.extended.get(i + 1).map_or(0, |n| n.offset);
            let header =
                u32::from(cap.id) | (u32::from(cap.version) << 16) | (u32::from(next) << 20);
            regs.set_register(usize::from(cap.offset / 4), header);
            if let CapKind::VirtualPasid(support) = cap.kind {
                // Capability register from the IOMMU's report, control register 0; both virtual
                // (the policy's default), the control's enables guest-writable.
                let reg = usize::from(cap.offset / 4) + 1;
                regs.set_register(reg, u32::from(support.capability_register()));
                regs.set_masks(reg, u32::from(support.control_writable()) << 16, 0);
            }
        }
    }
}

/// The length of a PCI Express capability, by version and device type (as vfio-pci sizes it).
fn pcie_len(flags: u16) -> u16 {
    let rc_end = (flags >> EXP_FLAGS_TYPE_SHIFT) & 0xf == EXP_TYPE_RC_END;
    match (flags & EXP_FLAGS_VERS, rc_end) {
        (1, true) => 0x0c,
        (1, false) => 0x14,
        (_, true) => 0x2c,
        (_, false) => 0x34,
    }
}

/// The fields of an exposed standard capability, after its (virtual) ID and next bytes.
fn standard_policy(cap: &Capability, regs: &mut PciConfiguration, policy: &mut ConfigPolicy) {
    let c = cap.offset;
    match cap.kind {
        CapKind::PowerManagement => {
            policy.passthrough(c + 2, usize::from(cap.len) - 2);
            // PMC: PME_Support reads as no state can signal PME.
            policy.set(c + 2, 2, PM_CAP_PME_MASK, 0);
            // PMCSR: the power state is forwarded; PME_En / PME_Status are virtual zeros.
            policy.set(
                c + 4,
                2,
                PM_CTRL_PME_ENABLE | PM_CTRL_PME_STATUS,
                PM_CTRL_STATE_MASK,
            );
            clear_bits(regs, c + 2, PM_CAP_PME_MASK as u16);
            clear_bits(
                regs,
                c + 4,
                (PM_CTRL_PME_ENABLE | PM_CTRL_PME_STATUS) as u16,
            );
        }
        // Served by the MSI / MSI-X models.
        CapKind::Msi(_) | CapKind::Msix(_) => {}
        CapKind::PciExpress => {
            policy.passthrough(c + 2, usize::from(cap.len) - 2);
            let fabric = EXP_DEVCTL_PHANTOM | EXP_DEVCTL_PAYLOAD | EXP_DEVCTL_READRQ;
            policy.set(
                c + EXP_DEVCTL,
                2,
                EXP_DEVCTL_BCR_FLR,
                0xffff & !(fabric | EXP_DEVCTL_BCR_FLR),
            );
            clear_bits(regs, c + EXP_DEVCTL, EXP_DEVCTL_BCR_FLR as u16);
            if cap.len > EXP_DEVCTL2 {
                policy.set(c + EXP_DEVCTL2, 2, 0, 0xffff & !EXP_DEVCTL2_ARI);
            }
        }
        CapKind::VendorSpecific => {
            policy.passthrough(c + 2, usize::from(cap.len) - 2);
            for at in c + 3..c + cap.len {
                policy.set(at, 1, 0, 0xff);
            }
        }
        // Only ever an extended capability.
        CapKind::VirtualPasid(_) => {}
    }
}

/// Checks that the MSI-X table and PBA lie inside memory BARs of the device.
fn check_msix_placement(
    layout: &DeviceLayout,
    name: &str,
    msix: MsixLayout,
) -> Result<(), VfioPciError> {
    for (what, bir, offset, len) in [
        ("table", msix.table_bir, msix.table_offset, msix.table_len()),
        ("PBA", msix.pba_bir, msix.pba_offset, msix.pba_len()),
    ] {
        let inside = layout.bar(usize::from(bir)).is_some_and(|bar| {
            matches!(bar.kind, BarKind::Memory32 | BarKind::Memory64)
                && u64::from(offset) + len <= bar.size
        });
        if !inside {
            return Err(VfioPciError::MsixOutsideBar {
                device: name.to_string(),
                what,
                bir,
                offset,
                len,
            });
        }
    }
    Ok(())
}

/// Copies `len` bytes of the device's initial config at `offset` into the virtual registers.
fn copy_bytes(layout: &DeviceLayout, regs: &mut PciConfiguration, offset: u16, len: u16) {
    for at in offset..offset + len {
        set_byte(
            regs,
            at,
            layout.config.get(usize::from(at)).copied().unwrap_or(0),
        );
    }
}

/// Sets one byte of the virtual registers, as the device.
pub(super) fn set_byte(regs: &mut PciConfiguration, offset: u16, value: u8) {
    let idx = usize::from(offset / 4);
    let shift = (offset % 4) * 8;
    let old = regs.read_register(idx);
    regs.set_register(idx, (old & !(0xff << shift)) | (u32::from(value) << shift));
}

fn clear_bits(regs: &mut PciConfiguration, offset: u16, bits: u16) {
    for (i, b) in bits.to_le_bytes().into_iter().enumerate() {
        let at = offset + i as u16;
        let idx = usize::from(at / 4);
        let shift = (at % 4) * 8;
        let old = regs.read_register(idx);
        regs.set_register(idx, old & !(u32::from(b) << shift));
    }
}
