//! The config space the guest sees: virtual registers layered over the device's own.
//!
//! Built from the device's config space when the passthrough device is created: the header
//! fields the VMM owns (BARs, ROM BAR, interrupt line and pin, header type, capability pointer),
//! the capability list the guest may see (see the `capabilities` module) and the
//! MSI / MSI-X models are virtual; identification, status and most capability fields are read
//! from the device at every access. Which bits of a guest write reach the device is decided bit
//! by bit ([`ConfigPolicy`]); a write that changes nothing the device should see never reaches
//! it, and one that does is narrowed to the bytes concerned (a dword write to PCIe device
//! control and status writes only device control, so the status' write-1-to-clear bits are not
//! written back).
//!
//! # Header
//!
//! | offset | field | guest reads | guest writes |
//! |---|---|---|---|
//! | 0x00 | vendor, device | device | dropped |
//! | 0x04 | command | I/O, memory, INTx-disable virtual; rest device | I/O, memory, bus master, parity, SERR, INTx-disable forwarded; I/O and memory also drive BAR decoding |
//! | 0x06 | status | device, capability-list bit virtual | dropped (as through vfio-pci) |
//! | 0x08 | revision, class | device | dropped |
//! | 0x0c | cache line, latency timer | device | forwarded |
//! | 0x0e | header type | virtual (single function) | dropped |
//! | 0x0f | BIST | device | dropped |
//! | 0x10-0x27, 0x30 | BARs, ROM BAR | virtual (sizing, placement) | virtual |
//! | 0x28, 0x2c | CardBus CIS, subsystem | device | dropped |
//! | 0x34 | capability pointer | virtual | dropped |
//! | 0x3c | interrupt line, pin, min grant, max latency | virtual (pin INTA# when INTx is wired, else 0) | line only, virtual |
//!
//! The pin is INTA# whatever pin the host function uses: the VMM wires one INTx GSI for the slot
//! (the one its ACPI `_PRT` gives INTA# of that slot).

use std::ops::Range;
use std::sync::Arc;

use devices::pci::configuration::{
    PCI_COMMAND_INTX_DISABLE, PCI_COMMAND_IO, PCI_COMMAND_MASTER, PCI_COMMAND_MEMORY,
    PCI_COMMAND_PARITY, PCI_COMMAND_SERR, PCI_STATUS_CAP_LIST,
};
use devices::pci::{
    BarChange, MsiCapability, MsiModeChange, MsixConfig, MsixControlChange, PciConfiguration,
};

use super::capabilities::{CapabilityPlan, EXP_DEVCTL_BCR_FLR, set_byte};
use super::discovery::{CONFIG_SPACE_SIZE, DeviceLayout};
use super::error::VfioPciError;
use super::policy::ConfigPolicy;
use crate::vfio::{VFIO_PCI_CONFIG_REGION_INDEX, VfioDevice};

/// Command bits the guest may set in the virtual register.
const COMMAND_WRITABLE: u32 = (PCI_COMMAND_IO
    | PCI_COMMAND_MEMORY
    | PCI_COMMAND_MASTER
    | PCI_COMMAND_PARITY
    | PCI_COMMAND_SERR
    | PCI_COMMAND_INTX_DISABLE) as u32;
/// Command bits served from the virtual register: decoding (which the VMM's buses follow) and
/// INTx disable (which vfio-pci virtualizes too).
const COMMAND_VIRTUAL: u32 =
    (PCI_COMMAND_IO | PCI_COMMAND_MEMORY | PCI_COMMAND_INTX_DISABLE) as u32;
const HEADER_TYPE: u16 = 0x0e;
const HEADER_TYPE_MULTI_FUNCTION: u8 = 0x80;
const INTERRUPT_REG: usize = 0x3c / 4;
const PCIE_DEVCTL: u16 = 0x08;

/// What a guest config write changed beyond the registers.
#[derive(Debug, Default)]
pub(super) struct ConfigWriteOutcome {
    /// BAR decoding changes, for the VMM's buses.
    pub bar_changes: Vec<BarChange>,
    /// The MSI enable state or vector count changed.
    pub msi: Option<MsiModeChange>,
    /// The MSI-X enable or function-mask bit changed.
    pub msix: Option<MsixControlChange>,
    /// The guest initiated a function level reset.
    pub flr: bool,
}

/// The guest's view of the device's config space.
#[derive(Debug)]
pub(super) struct VirtualConfig {
    name: String,
    device: Arc<dyn VfioDevice>,
    regs: PciConfiguration,
    policy: ConfigPolicy,
    msi: Option<(u16, MsiCapability)>,
    msix: Option<(u16, MsixConfig)>,
    /// Offset of PCIe device control, whose FLR bit resets the device.
    devctl: Option<u16>,
}

impl VirtualConfig {
    /// Builds the virtual config space of a device as it was discovered, with the MSI and MSI-X
    /// models (their vectors routed through the VMM's interrupt groups) and INTx if wired.
    pub fn new(
        name: &str,
        device: Arc<dyn VfioDevice>,
        layout: &DeviceLayout,
        plan: &CapabilityPlan,
        msi: Option<MsiCapability>,
        msix: Option<MsixConfig>,
        intx: bool,
    ) -> Result<Self, VfioPciError> {
        let mut regs = PciConfiguration::new(&layout.identity());
        let mut policy = ConfigPolicy::default();
        regs.set_masks(1, COMMAND_WRITABLE, 0);
        policy.passthrough(0x00, 4);
        policy.set(0x04, 2, COMMAND_VIRTUAL, COMMAND_WRITABLE);
        policy.set(0x06, 2, u32::from(PCI_STATUS_CAP_LIST), 0);
        policy.passthrough(0x08, 4);
        policy.set(0x0c, 2, 0, 0xffff);
        policy.passthrough(0x0f, 1);
        policy.passthrough(0x28, 8);
        set_byte(
            &mut regs,
            HEADER_TYPE,
            layout.config[usize::from(HEADER_TYPE)] & !HEADER_TYPE_MULTI_FUNCTION,
        );
        let pin = u32::from(intx) << 8;
        regs.set_register(
            INTERRUPT_REG,
            (layout.config_dword(0x3c) & 0xffff_0000) | pin,
        );
        for bar in &layout.bars {
            regs.add_bar(*bar).map_err(|source| VfioPciError::Bar {
                device: name.to_string(),
                index: bar.index,
                source,
            })?;
        }
        plan.apply(layout, &mut regs, &mut policy);

        let next_of = |offset: u16| {
            let i = plan.standard.iter().position(|c| c.offset == offset);
            i.and_then(|i| plan.standard.get(i + 1))
                .map_or(0, |c| c.offset as u8)
        };
        let msi = match (plan.msi(), msi) {
            (Some((offset, _)), Some(mut model)) => {
                model.set_next(next_of(offset));
                Some((offset, model))
            }
            _ => None,
        };
        let msix = match (plan.msix(), msix) {
            (Some((offset, _)), Some(mut model)) => {
                model.set_next(next_of(offset));
                Some((offset, model))
            }
            _ => None,
        };
        Ok(Self {
            name: name.to_string(),
            device,
            regs,
            policy,
            msi,
            msix,
            devctl: plan.pcie().map(|c| c + PCIE_DEVCTL),
        })
    }

    /// The virtual registers (BARs, command, identity).
    pub fn regs(&self) -> &PciConfiguration {
        &self.regs
    }

    /// The virtual registers, mutable (to place BARs).
    pub fn regs_mut(&mut self) -> &mut PciConfiguration {
        &mut self.regs
    }

    /// The MSI model and its offset.
    pub fn msi(&self) -> Option<(u16, &MsiCapability)> {
        self.msi.as_ref().map(|(o, m)| (*o, m))
    }

    /// The MSI-X model and its offset.
    pub fn msix(&self) -> Option<(u16, &MsixConfig)> {
        self.msix.as_ref().map(|(o, m)| (*o, m))
    }

    /// The MSI-X model, mutable (for table accesses).
    pub fn msix_mut(&mut self) -> Option<&mut MsixConfig> {
        self.msix.as_mut().map(|(_, m)| m)
    }

    /// Disables MSI and MSI-X in the models, which masks every vector in the interrupt groups,
    /// so that a new config space can take over the groups cleanly.
    pub fn quiesce(&mut self) {
        if let Some((_, msi)) = &mut self.msi {
            let _ = msi.write(2, &[0, 0]);
        }
        if let Some((_, msix)) = &mut self.msix {
            let _ = msix.write_capability(3, &[0]);
        }
    }

    /// A guest read of `data.len()` bytes at `offset`. Anything but an aligned 1, 2 or 4-byte
    /// access inside the space reads all-ones and touches nothing.
    pub fn read(&self, offset: u16, data: &mut [u8]) {
        let len = data.len();
        if !access_ok(offset, len) {
            data.fill(0xff);
            return;
        }
        let mut buf = [0u8; 4];
        self.regs.read(offset, &mut buf[..len]);
        let mut value = u32::from_le_bytes(buf);
        let virt = self.policy.virt_mask(offset, len);
        let full = width_mask(len);
        if virt & full != full {
            let device = self.read_device(offset, len);
            value = (value & virt) | (device & !virt);
        }
        data.copy_from_slice(&value.to_le_bytes()[..len]);
        if let Some((cap, msi)) = &self.msi {
            if let Some((range, at)) = overlap(offset, len, *cap, msi.len()) {
                msi.read(at, &mut data[range]);
            }
        }
        if let Some((cap, msix)) = &self.msix {
            if let Some((range, at)) = overlap(offset, len, *cap, msix.len()) {
                msix.read_capability(at, &mut data[range]);
            }
        }
    }

    /// A guest write of `data` at `offset`: virtual bits change here, device-writable bits are
    /// written to the device. Anything but an aligned 1, 2 or 4-byte access is dropped.
    pub fn write(&mut self, offset: u16, data: &[u8]) -> ConfigWriteOutcome {
        let len = data.len();
        if !access_ok(offset, len) {
            log::debug!(
                "{}: config write of {len} bytes at {offset:#x} is not an aligned 1/2/4-byte access; dropped",
                self.name
            );
            return ConfigWriteOutcome::default();
        }
        let mut outcome = ConfigWriteOutcome {
            bar_changes: self.regs.write(offset, data).bar_changes,
            ..ConfigWriteOutcome::default()
        };
        if let Some((cap, msi)) = &mut self.msi {
            if let Some((range, at)) = overlap(offset, len, *cap, msi.len()) {
                outcome.msi = msi.write(at, &data[range]);
            }
        }
        if let Some((cap, msix)) = &mut self.msix {
            if let Some((range, at)) = overlap(offset, len, *cap, msix.len()) {
                outcome.msix = msix.write_capability(at, &data[range]);
            }
        }
        if let Some(devctl) = self.devctl {
            let flr_byte = devctl + 1;
            let flr_bit = (EXP_DEVCTL_BCR_FLR >> 8) as u8;
            if (offset..offset + len as u16).contains(&flr_byte) {
                outcome.flr = data[usize::from(flr_byte - offset)] & flr_bit != 0;
            }
        }
        let mask = self.policy.dev_write_mask(offset, len);
        if mask != 0 {
            self.write_device(offset, data, mask);
        }
        outcome
    }

    /// Reads `len` bytes of the device's config space; all-ones if the device fails.
    fn read_device(&self, offset: u16, len: usize) -> u32 {
        let mut buf = [0xffu8; 4];
        match self.device.region_read(
            VFIO_PCI_CONFIG_REGION_INDEX,
            u64::from(offset),
            &mut buf[..len],
        ) {
            Ok(n) if n == len => {}
            Ok(n) => {
                log::warn!(
                    "{}: short config read at {offset:#x} ({n} of {len} bytes)",
                    self.name
                );
                buf = [0xff; 4];
            }
            Err(e) => {
                log::warn!(
                    "{}: config read of {len} bytes at {offset:#x} failed: {e}",
                    self.name
                );
                buf = [0xff; 4];
            }
        }
        u32::from_le_bytes(buf)
    }

    /// Writes the `mask` bits of a guest write to the device, as naturally aligned accesses
    /// covering only the bytes that have such bits; bits outside `mask` keep the device's value.
    fn write_device(&mut self, offset: u16, data: &[u8], mask: u32) {
        let mask_bytes = mask.to_le_bytes();
        let mut pos = 0;
        while pos < data.len() {
            if mask_bytes[pos] == 0 {
                pos += 1;
                continue;
            }
            let mut end = pos;
            while end < data.len() && mask_bytes[end] != 0 {
                end += 1;
            }
            let mut p = pos;
            while p < end {
                let at = offset + p as u16;
                let width = [4usize, 2, 1]
                    .into_iter()
                    .find(|w| usize::from(at) % w == 0 && p + w <= end)
                    .unwrap_or(1);
                self.merge_into_device(at, &data[p..p + width], &mask_bytes[p..p + width]);
                p += width;
            }
            pos = end;
        }
    }

    fn merge_into_device(&self, offset: u16, data: &[u8], mask: &[u8]) {
        let len = data.len();
        let mut bytes = [0u8; 4];
        bytes[..len].copy_from_slice(data);
        let mut value = u32::from_le_bytes(bytes);
        let mut m = [0u8; 4];
        m[..len].copy_from_slice(mask);
        let m = u32::from_le_bytes(m);
        if m != width_mask(len) {
            let current = self.read_device(offset, len);
            value = (current & !m) | (value & m);
        }
        let out = value.to_le_bytes();
        match self
            .device
            .region_write(VFIO_PCI_CONFIG_REGION_INDEX, u64::from(offset), &out[..len])
        {
            Ok(n) if n == len => {}
            Ok(n) => log::warn!(
                "{}: short config write at {offset:#x} ({n} of {len} bytes)",
                self.name
            ),
            Err(e) => log::warn!(
                "{}: config write of {len} bytes at {offset:#x} failed: {e}",
                self.name
            ),
        }
    }
}

/// True for a 1, 2 or 4-byte naturally aligned access inside the space.
fn access_ok(offset: u16, len: usize) -> bool {
    matches!(len, 1 | 2 | 4)
        && usize::from(offset) % len == 0
        && usize::from(offset) + len <= CONFIG_SPACE_SIZE
}

fn width_mask(len: usize) -> u32 {
    match len {
        1 => 0xff,
        2 => 0xffff,
        _ => u32::MAX,
    }
}

/// The part of an access `[offset, offset + len)` that falls in a model-backed capability at
/// `cap` of `cap_len` bytes: the range within the access's data, and the offset within the
/// capability where it starts.
fn overlap(offset: u16, len: usize, cap: u16, cap_len: usize) -> Option<(Range<usize>, u16)> {
    let start = usize::from(offset).max(usize::from(cap));
    let end = (usize::from(offset) + len).min(usize::from(cap) + cap_len);
    (start < end).then(|| {
        (
            start - usize::from(offset)..end - usize::from(offset),
            (start - usize::from(cap)) as u16,
        )
    })
}
