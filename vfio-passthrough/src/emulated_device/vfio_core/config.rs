//! [`VfioConfig`]: the configuration region (index 7) as vfio-pci virtualizes a device's
//! physical configuration space (`drivers/vfio/pci/vfio_pci_config.c`).
//!
//! Every byte belongs to the header, a capability, or nothing; each has *virtualized* bits
//! (served from a shadow copy, `vconfig`) and *writable* bits (the rest go to the device or are
//! dropped). What this reproduces, rule for rule:
//!
//! * accesses are cut into naturally aligned 1/2/4-byte pieces that never span two
//!   capabilities; an access reaching past the end of the space is `EFAULT`;
//! * header: IDs and interrupt pin read-only, BARs and the ROM BAR fully virtualized (sizing
//!   works, absent BARs read 0), capability pointer and the status capability-list bit
//!   virtualized, INTx-disable virtualized and turned into INTx masking, the memory-enable bit
//!   remembered for the BAR access check, interrupt line scratch;
//! * MSI: flags, address and data virtualized (enable only while MSI is in use through
//!   `SET_IRQS`, the vector count capped to what was allocated), mask bits written through;
//! * MSI-X: read from the device, writes dropped (MSI-X is enabled through `SET_IRQS`);
//! * PCI Express: read from the device; device control and control 2 writable (no phantom
//!   functions, no ARI), function-level reset through the FLR bit;
//! * capabilities vfio-pci hides (among them PASID and every extended capability it does not
//!   know) are unlinked; a hidden first extended capability leaves a placeholder header that
//!   only links to the next one;
//! * bytes outside every capability pass straight to the device.
//!
//! Capabilities other than MSI, MSI-X and PCI Express are hidden (vfio-pci exposes a few more,
//! e.g. power management and vendor-specific ones; the emulated models have none).

use devices::pci::PciConfiguration;

use super::irqs::IrqRouter;
use super::phys_irq::{MSI_FLAGS_ENABLE, MSI_FLAGS_QMASK, MSI_FLAGS_QSIZE, PhysMsi};
use crate::errno::Errno;

/// `PCI_STD_HEADER_SIZEOF`.
const HEADER_SIZE: u16 = 64;
/// `PCI_CFG_SPACE_SIZE`.
const CONVENTIONAL_SIZE: u16 = 256;
/// `PCI_CFG_SPACE_EXP_SIZE`.
const EXPRESS_SIZE: u16 = 4096;

const PCI_COMMAND: u16 = 0x04;
const PCI_STATUS: u16 = 0x06;
const PCI_CAPABILITY_LIST: u16 = 0x34;
const PCI_INTERRUPT_LINE: u16 = 0x3c;
const PCI_INTERRUPT_PIN: u16 = 0x3d;
const PCI_ROM_ADDRESS: u16 = 0x30;
const COMMAND_IO: u16 = 0x1;
const COMMAND_MEMORY: u16 = 0x2;
const COMMAND_INTX_DISABLE: u16 = 0x400;
const STATUS_CAP_LIST: u16 = 0x10;

const CAP_ID_MSI: u8 = 0x05;
const CAP_ID_EXP: u8 = 0x10;
const CAP_ID_MSIX: u8 = 0x11;
const MSIX_CAP_LEN: u16 = 12;
const EXP_DEVCAP: u16 = 0x04;
const EXP_DEVCTL: u16 = 0x08;
const EXP_DEVCTL2: u16 = 0x28;
const EXP_DEVCAP_FLR: u32 = 0x1000_0000;
const EXP_DEVCTL_BCR_FLR: u16 = 0x8000;
const EXP_DEVCTL_PAYLOAD: u16 = 0x00e0;
const EXP_DEVCTL_READRQ: u16 = 0x7000;
const EXP_DEVCTL_PHANTOM: u16 = 0x0200;
const EXP_DEVCTL2_ARI: u16 = 0x0020;
const EXP_FLAGS_VERS: u16 = 0x000f;
const EXP_FLAGS_TYPE: u16 = 0x00f0;
const EXP_TYPE_RC_END: u16 = 0x9;

/// What a byte of configuration space belongs to, and so how it is accessed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Owner {
    /// The type 0 header.
    Basic,
    /// The MSI capability at `start`.
    Msi { start: u16 },
    /// The MSI-X capability at `start`.
    Msix { start: u16 },
    /// The PCI Express capability at `start`.
    Exp { start: u16 },
    /// The placeholder left for a hidden first extended capability.
    HiddenAnchor { start: u16 },
    /// No capability: raw access to the device.
    Unassigned,
}

impl Owner {
    fn start(self, pos: u16) -> u16 {
        match self {
            Owner::Basic => 0,
            Owner::Msi { start }
            | Owner::Msix { start }
            | Owner::Exp { start }
            | Owner::HiddenAnchor { start } => start,
            Owner::Unassigned => pos,
        }
    }
}

/// What a configuration write did beyond the registers.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ConfigWriteOutcome {
    /// The user asked for a function-level reset (PCI Express FLR bit).
    pub flr: bool,
    /// The physical MSI mask register was written.
    pub msi_mask_written: bool,
    /// Some bits reached the device's configuration space.
    pub physical_written: bool,
}

/// A BAR as the virtual BAR registers report it.
#[derive(Debug, Clone, Copy)]
struct VirtBar {
    size: u64,
    flags: u32,
    is64: bool,
}

/// The virtualized configuration space of one device.
#[derive(Debug)]
pub struct VfioConfig {
    size: u16,
    vconfig: Vec<u8>,
    virt: Vec<u8>,
    write: Vec<u8>,
    owner: Vec<Owner>,
    bars: [Option<VirtBar>; 7],
    bardirty: bool,
    msi: Option<PhysMsi>,
}

impl VfioConfig {
    /// Builds the virtual view of `phys` as `vfio_config_init` does at open.
    pub fn new(phys: &PciConfiguration) -> Self {
        let is_express = phys.find_capability(CAP_ID_EXP).is_some();
        let size = if is_express {
            EXPRESS_SIZE
        } else {
            CONVENTIONAL_SIZE
        };
        let n = usize::from(size);
        let mut cfg = VfioConfig {
            size,
            vconfig: vec![0; n],
            virt: vec![0; n],
            write: vec![0; n],
            owner: vec![Owner::Unassigned; n],
            bars: [None; 7],
            bardirty: true,
            msi: PhysMsi::find(phys),
        };
        for b in phys.bars() {
            let flags = match b.kind {
                devices::pci::BarKind::Io => 0x1,
                devices::pci::BarKind::Memory64 => 0x4 | if b.prefetchable { 0x8 } else { 0 },
                devices::pci::BarKind::Memory32 => {
                    if b.prefetchable {
                        0x8
                    } else {
                        0
                    }
                }
                devices::pci::BarKind::Rom => 0,
            };
            if let Some(slot) = cfg.bars.get_mut(b.index) {
                *slot = Some(VirtBar {
                    size: b.size,
                    flags,
                    is64: b.kind.is_64bit(),
                });
            }
        }
        for o in &mut cfg.owner[..usize::from(HEADER_SIZE)] {
            *o = Owner::Basic;
        }
        cfg.fill(phys, 0, HEADER_SIZE);
        cfg.basic_perms();
        cfg.init_caps(phys);
        if is_express {
            cfg.init_ecaps(phys);
        }
        cfg
    }

    /// Size of the region: 4 KiB for PCI Express functions, 256 bytes otherwise.
    pub fn size(&self) -> u16 {
        self.size
    }

    /// Whether the user has memory decoding enabled (`__vfio_pci_memory_enabled`): BAR
    /// accesses fail with `EIO` while it is off.
    pub fn memory_enabled(&self) -> bool {
        self.vword(PCI_COMMAND) & COMMAND_MEMORY != 0
    }

    /// Whether the user has INTx disabled in the virtual command register.
    pub fn intx_disabled(&self) -> bool {
        self.vword(PCI_COMMAND) & COMMAND_INTX_DISABLE != 0
    }

    fn vword(&self, at: u16) -> u16 {
        let a = usize::from(at);
        u16::from_le_bytes([self.vconfig[a], self.vconfig[a + 1]])
    }

    fn set_vword(&mut self, at: u16, v: u16) {
        let a = usize::from(at);
        self.vconfig[a..a + 2].copy_from_slice(&v.to_le_bytes());
    }

    fn fill(&mut self, phys: &PciConfiguration, start: u16, len: u16) {
        for at in start..start.saturating_add(len).min(self.size) {
            let mut b = [0u8];
            phys.read(at, &mut b);
            self.vconfig[usize::from(at)] = b[0];
        }
    }

    fn perm(&mut self, at: u16, width: usize, virt: u32, write: u32) {
        let a = usize::from(at);
        // A capability a model placed at the very end of the space loses what does not fit.
        let width = width.min(self.virt.len().saturating_sub(a));
        self.virt[a..a + width].copy_from_slice(&virt.to_le_bytes()[..width]);
        self.write[a..a + width].copy_from_slice(&write.to_le_bytes()[..width]);
    }

    /// `init_pci_cap_basic_perm`.
    fn basic_perms(&mut self) {
        self.perm(0x00, 2, 0xffff, 0);
        self.perm(0x02, 2, 0xffff, 0);
        self.perm(PCI_COMMAND, 2, u32::from(COMMAND_INTX_DISABLE), 0xffff);
        self.perm(PCI_STATUS, 2, u32::from(STATUS_CAP_LIST), 0);
        self.perm(0x0c, 1, 0, 0xff);
        self.perm(0x0d, 1, 0, 0xff);
        self.perm(0x0f, 1, 0, 0xff);
        for bar in 0..6 {
            self.perm(0x10 + 4 * bar, 4, u32::MAX, u32::MAX);
        }
        self.perm(PCI_ROM_ADDRESS, 4, u32::MAX, u32::MAX);
        self.perm(PCI_CAPABILITY_LIST, 1, 0xff, 0);
        self.perm(PCI_INTERRUPT_LINE, 1, 0xff, 0xff);
        self.perm(PCI_INTERRUPT_PIN, 1, 0xff, 0);
    }

    /// `vfio_cap_init`: walks the standard list, keeps the capabilities vfio-pci exposes and
    /// unlinks the others.
    fn init_caps(&mut self, phys: &PciConfiguration) {
        let mut prev = PCI_CAPABILITY_LIST;
        let mut kept = 0;
        let caps = phys.capabilities();
        // Each kept capability links to the next *listed* one; hidden ones are skipped by
        // rewriting the previous next pointer.
        let next_of = |at: u16| -> u8 {
            let mut b = [0u8];
            phys.read(at + 1, &mut b);
            b[0]
        };
        let first = {
            let mut b = [0u8];
            phys.read(PCI_CAPABILITY_LIST, &mut b);
            b[0]
        };
        self.vconfig[usize::from(PCI_CAPABILITY_LIST)] = first;
        for cap in caps {
            let pos = cap.offset;
            let next = next_of(pos);
            let (owner, len) = match cap.id as u8 {
                CAP_ID_MSI => match self.msi {
                    Some(m) if m.offset == pos => (Owner::Msi { start: pos }, m.size()),
                    _ => (Owner::Unassigned, 0),
                },
                CAP_ID_MSIX => (Owner::Msix { start: pos }, MSIX_CAP_LEN),
                CAP_ID_EXP => (Owner::Exp { start: pos }, exp_len(phys, pos)),
                _ => (Owner::Unassigned, 0),
            };
            if len == 0 {
                log::debug!("config: hiding capability {:#x} at {pos:#x}", cap.id);
                self.vconfig[usize::from(prev)] = next;
                continue;
            }
            let end = (pos + len).min(CONVENTIONAL_SIZE);
            for o in &mut self.owner[usize::from(pos)..usize::from(end)] {
                *o = owner;
            }
            self.fill(phys, pos, end - pos);
            match owner {
                Owner::Msi { .. } => self.msi_perms(pos),
                Owner::Exp { .. } => self.exp_perms(pos),
                _ => self.perm(pos + 1, 1, 0xff, 0),
            }
            prev = pos + 1;
            kept += 1;
        }
        if kept == 0 {
            let status = self.vword(PCI_STATUS) & !STATUS_CAP_LIST;
            self.set_vword(PCI_STATUS, status);
        }
    }

    /// `init_pci_cap_msi_perm`.
    fn msi_perms(&mut self, pos: u16) {
        let Some(msi) = self.msi else { return };
        let flags = u16::from_le_bytes([
            self.vconfig[usize::from(pos + 2)],
            self.vconfig[usize::from(pos + 3)],
        ]);
        self.perm(pos + 1, 1, 0xff, 0);
        self.perm(pos + 2, 1, 0xff, 0xff);
        self.perm(pos + 4, 4, u32::MAX, u32::MAX);
        let is64 = flags & super::phys_irq::MSI_FLAGS_64BIT != 0;
        if is64 {
            self.perm(pos + 8, 4, u32::MAX, u32::MAX);
            self.perm(pos + 0x0c, 2, 0xffff, 0xffff);
        } else {
            self.perm(pos + 8, 2, 0xffff, 0xffff);
        }
        if let (Some(mask), Some(pending)) = (msi.mask_offset(), msi.pending_offset()) {
            self.perm(mask, 4, 0, u32::MAX);
            self.perm(pending, 4, 0, u32::MAX);
        }
    }

    /// `init_pci_cap_exp_perm`.
    fn exp_perms(&mut self, pos: u16) {
        self.perm(pos + 1, 1, 0xff, 0);
        self.perm(
            pos + EXP_DEVCTL,
            2,
            u32::from(EXP_DEVCTL_BCR_FLR | EXP_DEVCTL_PAYLOAD | EXP_DEVCTL_READRQ),
            u32::from(!EXP_DEVCTL_PHANTOM),
        );
        self.perm(pos + EXP_DEVCTL2, 2, 0, u32::from(!EXP_DEVCTL2_ARI));
    }

    /// `vfio_ecap_init`: vfio-pci knows none of the emulated models' extended capabilities
    /// (PASID is "not yet"), so all are hidden; a hidden first one leaves its placeholder.
    fn init_ecaps(&mut self, phys: &PciConfiguration) {
        let ecaps = phys.extended_capabilities();
        let Some(first) = ecaps.first() else { return };
        if first.offset != CONVENTIONAL_SIZE {
            return;
        }
        // Every capability is hidden: the placeholder at 0x100 keeps only a next pointer, which
        // is the next *shown* capability, of which there is none.
        let pos = first.offset;
        for o in &mut self.owner[usize::from(pos)..usize::from(pos + 4)] {
            *o = Owner::HiddenAnchor { start: pos };
        }
        self.vconfig[usize::from(pos)..usize::from(pos + 4)].fill(0);
        log::debug!(
            "config: hiding {} extended capabilities (vfio-pci does not expose them)",
            ecaps.len()
        );
    }

    /// `vfio_bar_fixup`: the virtual BARs hold what the user wrote, cut to the BAR's size, with
    /// the BAR's type bits; absent BARs read 0.
    fn bar_fixup(&mut self) {
        if !self.bardirty {
            return;
        }
        let mut i = 0;
        while i < 6 {
            let at = usize::from(0x10 + 4 * i as u16);
            let mut v = u32::from_le_bytes(self.vconfig[at..at + 4].try_into().unwrap_or([0; 4]));
            match self.bars[i] {
                None => {
                    self.vconfig[at..at + 4].fill(0);
                    i += 1;
                }
                Some(bar) => {
                    let mask = !(bar.size - 1);
                    v &= mask as u32;
                    v |= bar.flags;
                    self.vconfig[at..at + 4].copy_from_slice(&v.to_le_bytes());
                    if bar.is64 && i + 1 < 6 {
                        let hi_at = at + 4;
                        let mut hi = u32::from_le_bytes(
                            self.vconfig[hi_at..hi_at + 4].try_into().unwrap_or([0; 4]),
                        );
                        hi &= (mask >> 32) as u32;
                        self.vconfig[hi_at..hi_at + 4].copy_from_slice(&hi.to_le_bytes());
                        i += 2;
                    } else {
                        i += 1;
                    }
                }
            }
        }
        let rom_at = usize::from(PCI_ROM_ADDRESS);
        match self.bars[6] {
            Some(rom) => {
                let mask = (!(rom.size - 1) as u32) | 1;
                let v = u32::from_le_bytes(
                    self.vconfig[rom_at..rom_at + 4]
                        .try_into()
                        .unwrap_or([0; 4]),
                ) & mask;
                self.vconfig[rom_at..rom_at + 4].copy_from_slice(&v.to_le_bytes());
            }
            None => self.vconfig[rom_at..rom_at + 4].fill(0),
        }
        self.bardirty = false;
    }

    /// The length of the aligned piece of an access at `pos` (`vfio_config_do_rw`).
    fn chunk(&self, pos: u16, count: usize) -> usize {
        let owner = self.owner[usize::from(pos)];
        let mut same = 1;
        while (usize::from(pos) + same) % 4 != 0
            && usize::from(pos) + same < usize::from(self.size)
            && self.owner[usize::from(pos) + same] == owner
        {
            same += 1;
        }
        let count = count.min(same);
        if count >= 4 && pos % 4 == 0 {
            4
        } else if count >= 2 && pos % 2 == 0 {
            2
        } else {
            1
        }
    }

    fn check(&self, pos: u64, len: usize) -> Result<u16, Errno> {
        match pos.checked_add(len as u64) {
            Some(end) if pos < u64::from(self.size) && end <= u64::from(self.size) => {
                Ok(pos as u16)
            }
            _ => Err(Errno::EFAULT),
        }
    }

    /// A `pread` of the configuration region.
    pub fn read(
        &mut self,
        phys: &PciConfiguration,
        irq: &IrqRouter,
        pos: u64,
        buf: &mut [u8],
    ) -> Result<usize, Errno> {
        let mut at = self.check(pos, buf.len())?;
        let mut done = 0;
        while done < buf.len() {
            let n = self.chunk(at, buf.len() - done);
            self.read_piece(phys, irq, at, &mut buf[done..done + n]);
            done += n;
            at += n as u16;
        }
        Ok(done)
    }

    fn read_piece(&mut self, phys: &PciConfiguration, irq: &IrqRouter, pos: u16, out: &mut [u8]) {
        let owner = self.owner[usize::from(pos)];
        let offset = pos - owner.start(pos);
        match owner {
            Owner::Basic => {
                if (0x10..0x28).contains(&pos)
                    || (PCI_ROM_ADDRESS..PCI_ROM_ADDRESS + 4).contains(&pos)
                {
                    self.bar_fixup();
                }
                self.default_read(phys, pos, out);
            }
            Owner::Msi { start } => {
                let at = usize::from(start + 2);
                let flags = u16::from_le_bytes([self.vconfig[at], self.vconfig[at + 1]]);
                let flags = (flags & !MSI_FLAGS_QMASK) | (irq.msi_qmax() << 1);
                self.vconfig[at..at + 2].copy_from_slice(&flags.to_le_bytes());
                self.default_read(phys, pos, out);
            }
            Owner::Msix { .. } | Owner::Exp { .. } | Owner::HiddenAnchor { .. } => {
                phys.read(pos, out);
                let p = usize::from(pos);
                if pos >= CONVENTIONAL_SIZE {
                    if offset < 4 {
                        out.copy_from_slice(&self.vconfig[p..p + out.len()]);
                    }
                } else if offset == 0 && out.len() > 1 {
                    out[..2].copy_from_slice(&self.vconfig[p..p + 2]);
                } else if offset == 1 {
                    out[0] = self.vconfig[p];
                }
            }
            Owner::Unassigned => phys.read(pos, out),
        }
    }

    /// `vfio_default_config_read`: virtualized bits from the shadow, the others from the
    /// device.
    fn default_read(&self, phys: &PciConfiguration, pos: u16, out: &mut [u8]) {
        let p = usize::from(pos);
        let n = out.len();
        out.copy_from_slice(&self.vconfig[p..p + n]);
        if self.virt[p..p + n].iter().any(|v| *v != 0xff) {
            let mut hw = vec![0u8; n];
            phys.read(pos, &mut hw);
            for i in 0..n {
                let v = self.virt[p + i];
                out[i] = (hw[i] & !v) | (out[i] & v);
            }
        }
    }

    /// A `pwrite` of the configuration region.
    pub fn write(
        &mut self,
        phys: &mut PciConfiguration,
        irq: &IrqRouter,
        pos: u64,
        data: &[u8],
    ) -> Result<(usize, ConfigWriteOutcome), Errno> {
        let mut at = self.check(pos, data.len())?;
        let mut done = 0;
        let mut outcome = ConfigWriteOutcome::default();
        while done < data.len() {
            let n = self.chunk(at, data.len() - done);
            self.write_piece(phys, irq, at, &data[done..done + n], &mut outcome);
            done += n;
            at += n as u16;
        }
        Ok((done, outcome))
    }

    fn write_piece(
        &mut self,
        phys: &mut PciConfiguration,
        irq: &IrqRouter,
        pos: u16,
        data: &[u8],
        outcome: &mut ConfigWriteOutcome,
    ) {
        let owner = self.owner[usize::from(pos)];
        let offset = pos - owner.start(pos);
        match owner {
            Owner::Basic => self.basic_write(phys, irq, pos, data, outcome),
            Owner::Msi { start } => {
                self.default_write(phys, pos, data, outcome);
                if let Some(mask) = self.msi.and_then(|m| m.mask_offset()) {
                    if pos >= mask && pos < mask + 4 {
                        outcome.msi_mask_written = true;
                    }
                }
                let flags_at = start + 2;
                if offset <= 2 && usize::from(offset) + data.len() >= 2 {
                    let mut flags = self.vword(flags_at);
                    if !irq.msi_active() {
                        flags &= !MSI_FLAGS_ENABLE;
                    }
                    let qmax = irq.msi_qmax();
                    if (flags & MSI_FLAGS_QSIZE) >> 4 > qmax {
                        flags = (flags & !MSI_FLAGS_QSIZE) | (qmax << 4);
                    }
                    self.set_vword(flags_at, flags);
                    let _ = phys.write(flags_at, &flags.to_le_bytes());
                    outcome.physical_written = true;
                }
            }
            Owner::Exp { start } => {
                self.default_write(phys, pos, data, outcome);
                let ctl_at = start + EXP_DEVCTL;
                let ctl = self.vword(ctl_at);
                if ctl & EXP_DEVCTL_BCR_FLR != 0 {
                    self.set_vword(ctl_at, ctl & !EXP_DEVCTL_BCR_FLR);
                    let devcap = phys.read_register(usize::from((start + EXP_DEVCAP) / 4));
                    if devcap & EXP_DEVCAP_FLR != 0 {
                        outcome.flr = true;
                    }
                }
            }
            // Read-only to the user (MSI-X is driven by SET_IRQS) or hidden.
            Owner::Msix { .. } | Owner::HiddenAnchor { .. } => {}
            Owner::Unassigned => {
                let _ = phys.write(pos, data);
                outcome.physical_written = true;
            }
        }
    }

    /// `vfio_default_config_write`: writable virtualized bits to the shadow, writable
    /// physical bits to the device (read-modify-write), the rest dropped.
    fn default_write(
        &mut self,
        phys: &mut PciConfiguration,
        pos: u16,
        data: &[u8],
        outcome: &mut ConfigWriteOutcome,
    ) {
        let p = usize::from(pos);
        let n = data.len();
        let write = &self.write[p..p + n];
        if write.iter().all(|w| *w == 0) {
            return;
        }
        let virt = &self.virt[p..p + n];
        let mut to_hw = false;
        for i in 0..n {
            let wv = write[i] & virt[i];
            self.vconfig[p + i] = (self.vconfig[p + i] & !wv) | (data[i] & wv);
            to_hw |= write[i] & !virt[i] != 0;
        }
        if to_hw {
            let mut hw = vec![0u8; n];
            phys.read(pos, &mut hw);
            for i in 0..n {
                let wp = self.write[p + i] & !self.virt[p + i];
                hw[i] = (hw[i] & !wp) | (data[i] & wp);
            }
            let _ = phys.write(pos, &hw);
            outcome.physical_written = true;
        }
    }

    /// `vfio_basic_config_write`.
    fn basic_write(
        &mut self,
        phys: &mut PciConfiguration,
        irq: &IrqRouter,
        pos: u16,
        data: &[u8],
        outcome: &mut ConfigWriteOutcome,
    ) {
        self.default_write(phys, pos, data, outcome);
        if pos == PCI_COMMAND {
            // The memory and I/O enables are remembered in the shadow for the BAR access
            // check, although reads still come from the device.
            let mut raw = [0u8; 2];
            raw[..data.len().min(2)].copy_from_slice(&data[..data.len().min(2)]);
            let new = u16::from_le_bytes(raw);
            let mask = COMMAND_MEMORY | COMMAND_IO;
            let cmd = (self.vword(PCI_COMMAND) & !mask) | (new & mask);
            self.set_vword(PCI_COMMAND, cmd);
        }
        if pos == PCI_COMMAND || pos == PCI_COMMAND + 1 {
            irq.set_virq_disabled(self.intx_disabled());
        }
        if (0x10..0x28).contains(&pos) || (PCI_ROM_ADDRESS..PCI_ROM_ADDRESS + 4).contains(&pos) {
            self.bardirty = true;
        }
    }
}

/// The length vfio-pci gives a PCI Express capability (`vfio_cap_len`).
fn exp_len(phys: &PciConfiguration, pos: u16) -> u16 {
    let flags = (phys.read_register(usize::from(pos / 4)) >> 16) as u16;
    let rc_end = (flags & EXP_FLAGS_TYPE) >> 4 == EXP_TYPE_RC_END;
    match (flags & EXP_FLAGS_VERS == 1, rc_end) {
        (true, true) => 0x0c,
        (true, false) => 0x14,
        (false, true) => 0x2c,
        (false, false) => 0x34,
    }
}
