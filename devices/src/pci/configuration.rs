//! A PCI Express function's configuration space: 4 KiB of registers with per-bit write rules.
//!
//! Every dword has a *writable* mask (bits the guest may set or clear) and a *write-1-to-clear*
//! mask (bits the device sets and the guest clears by writing 1). Everything else is read-only to
//! the guest; the device model changes it through [`PciConfiguration::set_register`].
//!
//! # Access rules
//!
//! Guest accesses are 1, 2 or 4 bytes wide and naturally aligned (a word at an even offset, a
//! dword at a multiple of 4), inside the 4 KiB space. Mechanism #1 and ECAM never produce anything
//! else from a well-behaved guest. Any other access (unaligned, 3 or 8 bytes, past the end) is
//! treated as a master abort: a read returns all-ones, a write is dropped and changes nothing.
//!
//! BAR handling lives in [`bar`](super::bar), the capability list and the MSI/MSI-X hookup in
//! [`capability`](super::capability); they extend [`PciConfiguration`] from there.

use super::bar::{BarChange, NUM_BAR_SLOTS, PciBar};
use super::capability::CapabilityLayout;
use super::msi::{MsiCapability, MsiModeChange};
use super::msix::{MsixConfig, MsixControlChange};

/// Size of a PCI Express configuration space.
pub const PCI_CONFIG_SPACE_SIZE: usize = 4096;
/// Size of the conventional PCI part (reachable through mechanism #1 at 0xCF8).
pub const PCI_CONVENTIONAL_CONFIG_SIZE: usize = 256;
const NUM_REGS: usize = PCI_CONFIG_SPACE_SIZE / 4;

/// Offset of the vendor ID (16 bits).
pub const PCI_VENDOR_ID: u16 = 0x00;
/// Offset of the device ID (16 bits).
pub const PCI_DEVICE_ID: u16 = 0x02;
/// Offset of the command register (16 bits).
pub const PCI_COMMAND: u16 = 0x04;
/// Offset of the status register (16 bits).
pub const PCI_STATUS: u16 = 0x06;
/// Offset of the revision ID (8 bits); the class code follows in the same dword.
pub const PCI_REVISION_ID: u16 = 0x08;
/// Offset of the cache line size (8 bits).
pub const PCI_CACHE_LINE_SIZE: u16 = 0x0c;
/// Offset of the header type (8 bits; bit 7 flags a multi-function device).
pub const PCI_HEADER_TYPE: u16 = 0x0e;
/// Offset of the subsystem vendor ID (16 bits).
pub const PCI_SUBSYSTEM_VENDOR_ID: u16 = 0x2c;
/// Offset of the subsystem ID (16 bits).
pub const PCI_SUBSYSTEM_ID: u16 = 0x2e;
/// Offset of the capabilities pointer (8 bits).
pub const PCI_CAPABILITY_LIST: u16 = 0x34;
/// Offset of the interrupt line (8 bits, scratch for the guest's IRQ routing).
pub const PCI_INTERRUPT_LINE: u16 = 0x3c;
/// Offset of the interrupt pin (8 bits).
pub const PCI_INTERRUPT_PIN: u16 = 0x3d;

/// Command register: respond to I/O space accesses.
pub const PCI_COMMAND_IO: u16 = 0x0001;
/// Command register: respond to memory space accesses.
pub const PCI_COMMAND_MEMORY: u16 = 0x0002;
/// Command register: the function may master the bus (DMA).
pub const PCI_COMMAND_MASTER: u16 = 0x0004;
/// Command register: parity error response.
pub const PCI_COMMAND_PARITY: u16 = 0x0040;
/// Command register: SERR# enable.
pub const PCI_COMMAND_SERR: u16 = 0x0100;
/// Command register: INTx emulation disable.
pub const PCI_COMMAND_INTX_DISABLE: u16 = 0x0400;
/// The command bits a PCI Express function implements as read-write; the rest are read-only 0
/// (special cycles, memory-write-and-invalidate, VGA snoop, stepping and fast back-to-back are
/// hardwired to 0 on PCIe).
const COMMAND_WRITABLE: u16 = PCI_COMMAND_IO
    | PCI_COMMAND_MEMORY
    | PCI_COMMAND_MASTER
    | PCI_COMMAND_PARITY
    | PCI_COMMAND_SERR
    | PCI_COMMAND_INTX_DISABLE;

/// Status register: INTx is asserted (read-only, set by the device).
pub const PCI_STATUS_INTERRUPT: u16 = 0x0008;
/// Status register: the capabilities list is present (read-only).
pub const PCI_STATUS_CAP_LIST: u16 = 0x0010;
/// Status register: master data parity error (write-1-to-clear).
pub const PCI_STATUS_MASTER_PARITY: u16 = 0x0100;
/// Status register: signaled target abort (write-1-to-clear).
pub const PCI_STATUS_SIG_TARGET_ABORT: u16 = 0x0800;
/// Status register: received target abort (write-1-to-clear).
pub const PCI_STATUS_REC_TARGET_ABORT: u16 = 0x1000;
/// Status register: received master abort (write-1-to-clear).
pub const PCI_STATUS_REC_MASTER_ABORT: u16 = 0x2000;
/// Status register: signaled system error (write-1-to-clear).
pub const PCI_STATUS_SIG_SYSTEM_ERROR: u16 = 0x4000;
/// Status register: detected parity error (write-1-to-clear).
pub const PCI_STATUS_DETECTED_PARITY: u16 = 0x8000;
const STATUS_W1C: u16 = PCI_STATUS_MASTER_PARITY
    | PCI_STATUS_SIG_TARGET_ABORT
    | PCI_STATUS_REC_TARGET_ABORT
    | PCI_STATUS_REC_MASTER_ABORT
    | PCI_STATUS_SIG_SYSTEM_ERROR
    | PCI_STATUS_DETECTED_PARITY;

/// Header type bit: the device has more than one function.
pub const PCI_HEADER_TYPE_MULTI_FUNCTION: u8 = 0x80;

/// A class code: base class, subclass, programming interface.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct PciClassCode {
    /// Base class (0x06 bridge, 0x02 network, 0x01 storage, ...).
    pub class: u8,
    /// Subclass within the base class (0x00 host bridge under class 0x06, ...).
    pub subclass: u8,
    /// Programming interface.
    pub prog_if: u8,
}

/// The identification fields of a type 0 header.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct PciIdentity {
    /// Vendor ID.
    pub vendor_id: u16,
    /// Device ID.
    pub device_id: u16,
    /// Subsystem vendor ID.
    pub subsystem_vendor_id: u16,
    /// Subsystem ID.
    pub subsystem_id: u16,
    /// Revision ID.
    pub revision_id: u8,
    /// Class code.
    pub class_code: PciClassCode,
}

/// The legacy interrupt pin a function uses.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[repr(u8)]
pub enum PciInterruptPin {
    /// The function uses no INTx pin.
    #[default]
    None = 0,
    /// INTA#.
    IntA = 1,
    /// INTB#.
    IntB = 2,
    /// INTC#.
    IntC = 3,
    /// INTD#.
    IntD = 4,
}

/// What a guest write to configuration space changed beyond the registers themselves.
#[must_use]
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ConfigWriteEffects {
    /// BARs that started or stopped decoding or moved; the owner of the MMIO/PIO buses applies
    /// them in order.
    pub bar_changes: Vec<BarChange>,
    /// The MSI capability's enable state or vector count changed.
    pub msi: Option<MsiModeChange>,
    /// The MSI-X enable or function-mask bit changed.
    pub msix: Option<MsixControlChange>,
}

/// A function's configuration space with a type 0 header.
#[derive(Debug)]
pub struct PciConfiguration {
    regs: Box<[u32; NUM_REGS]>,
    writable: Box<[u32; NUM_REGS]>,
    w1c: Box<[u32; NUM_REGS]>,
    /// The BAR layout, by BAR index (6 is the expansion ROM).
    pub(super) bars: [Option<PciBar>; NUM_BAR_SLOTS],
    /// Where each BAR was last reported as decoding (see [`BarChange`]).
    pub(super) decoded: [Option<u64>; NUM_BAR_SLOTS],
    /// 64-bit BARs whose lower half was written and whose upper half has not been yet.
    pub(super) upper_half_pending: [bool; NUM_BAR_SLOTS],
    pub(super) caps: CapabilityLayout,
    pub(super) msi: Option<(u16, MsiCapability)>,
    pub(super) msix: Option<(u16, MsixConfig)>,
}

impl PciConfiguration {
    /// Creates a configuration space with a type 0 header carrying `id`, the command register
    /// cleared (no decoding, no bus mastering), no BARs and no capabilities.
    pub fn new(id: &PciIdentity) -> Self {
        let mut config = Self {
            regs: Box::new([0; NUM_REGS]),
            writable: Box::new([0; NUM_REGS]),
            w1c: Box::new([0; NUM_REGS]),
            bars: [None; NUM_BAR_SLOTS],
            decoded: [None; NUM_BAR_SLOTS],
            upper_half_pending: [false; NUM_BAR_SLOTS],
            caps: CapabilityLayout::default(),
            msi: None,
            msix: None,
        };
        config.set_register(0, u32::from(id.device_id) << 16 | u32::from(id.vendor_id));
        let class = id.class_code;
        config.set_register(
            2,
            u32::from_be_bytes([class.class, class.subclass, class.prog_if, id.revision_id]),
        );
        config.set_register(
            11,
            u32::from(id.subsystem_id) << 16 | u32::from(id.subsystem_vendor_id),
        );
        config.set_masks(1, u32::from(COMMAND_WRITABLE), u32::from(STATUS_W1C) << 16);
        // Cache line size is a read-write scratch byte; latency timer is read-only 0 on PCIe.
        config.set_masks(3, 0x0000_00ff, 0);
        // Interrupt line is read-write scratch; pin, min_gnt and max_lat are read-only.
        config.set_masks(15, 0x0000_00ff, 0);
        config
    }

    /// The identification fields as currently set.
    pub fn identity(&self) -> PciIdentity {
        let r2 = self.regs[2].to_be_bytes();
        PciIdentity {
            vendor_id: self.regs[0] as u16,
            device_id: (self.regs[0] >> 16) as u16,
            subsystem_vendor_id: self.regs[11] as u16,
            subsystem_id: (self.regs[11] >> 16) as u16,
            revision_id: r2[3],
            class_code: PciClassCode {
                class: r2[0],
                subclass: r2[1],
                prog_if: r2[2],
            },
        }
    }

    /// Reads `data.len()` bytes at `offset` as the guest sees them (see the module's access
    /// rules).
    pub fn read(&self, offset: u16, data: &mut [u8]) {
        if !access_ok(offset, data.len()) {
            log::debug!(
                "config read of {} bytes at {offset:#x} is not an aligned 1/2/4-byte access",
                data.len()
            );
            data.fill(0xff);
            return;
        }
        let shift = (offset % 4) * 8;
        let value = self.regs[usize::from(offset / 4)] >> shift;
        data.copy_from_slice(&value.to_le_bytes()[..data.len()]);
        self.read_capability_models(offset, data);
    }

    /// Reads the dword register `reg_idx` (offset `4 * reg_idx`) as the guest sees it; all-ones
    /// past the end of the space.
    pub fn read_register(&self, reg_idx: usize) -> u32 {
        let mut data = [0xff; 4];
        if reg_idx < NUM_REGS {
            self.read((reg_idx * 4) as u16, &mut data);
        }
        u32::from_le_bytes(data)
    }

    /// Applies a guest write of `data` at `offset`: writable bits take the new value,
    /// write-1-to-clear bits written as 1 are cleared, read-only bits keep their value. Returns
    /// what the write changed beyond the registers (BAR decoding, MSI, MSI-X).
    pub fn write(&mut self, offset: u16, data: &[u8]) -> ConfigWriteEffects {
        if !access_ok(offset, data.len()) {
            log::debug!(
                "config write of {} bytes at {offset:#x} is not an aligned 1/2/4-byte access; dropped",
                data.len()
            );
            return ConfigWriteEffects::default();
        }
        let reg_idx = usize::from(offset / 4);
        let shift = (offset % 4) * 8;
        let mut bytes = [0u8; 4];
        bytes[..data.len()].copy_from_slice(data);
        let value = u32::from_le_bytes(bytes) << shift;
        let covered = width_mask(data.len()) << shift;
        let writable = self.writable[reg_idx] & covered;
        let cleared = self.w1c[reg_idx] & covered & value;
        self.regs[reg_idx] = (self.regs[reg_idx] & !writable & !cleared) | (value & writable);

        let (msi, msix) = self.write_capability_models(offset, data);
        let bar_changes = self.bar_register_written(reg_idx, covered);
        ConfigWriteEffects {
            bar_changes,
            msi,
            msix,
        }
    }

    /// Sets dword register `reg_idx` as the device (not the guest) sees fit, ignoring the write
    /// masks. Out-of-range indices are a caller bug and are ignored.
    pub fn set_register(&mut self, reg_idx: usize, value: u32) {
        debug_assert!(reg_idx < NUM_REGS, "config register {reg_idx} out of range");
        if let Some(r) = self.regs.get_mut(reg_idx) {
            *r = value;
        }
    }

    /// Sets which bits of dword register `reg_idx` the guest may write (`writable`) and which it
    /// clears by writing 1 (`w1c`). A bit in both is treated as write-1-to-clear.
    pub fn set_masks(&mut self, reg_idx: usize, writable: u32, w1c: u32) {
        debug_assert!(reg_idx < NUM_REGS, "config register {reg_idx} out of range");
        if reg_idx < NUM_REGS {
            self.writable[reg_idx] = writable & !w1c;
            self.w1c[reg_idx] = w1c;
        }
    }

    /// The `(writable, w1c)` masks of dword register `reg_idx`.
    pub fn masks(&self, reg_idx: usize) -> (u32, u32) {
        match reg_idx < NUM_REGS {
            true => (self.writable[reg_idx], self.w1c[reg_idx]),
            false => (0, 0),
        }
    }

    /// Sets one byte as the device, ignoring the write masks.
    pub(super) fn set_byte(&mut self, offset: u16, value: u8) {
        let idx = usize::from(offset / 4);
        let shift = (offset % 4) * 8;
        self.regs[idx] = (self.regs[idx] & !(0xff << shift)) | (u32::from(value) << shift);
    }

    /// Reads dword `reg_idx` of the register file, without capability models.
    pub(super) fn raw_reg(&self, reg_idx: usize) -> u32 {
        self.regs[reg_idx]
    }

    /// Reads one byte of the register file, without capability models.
    pub(super) fn byte(&self, offset: u16) -> u8 {
        (self.regs[usize::from(offset / 4)] >> ((offset % 4) * 8)) as u8
    }

    /// The command register.
    pub fn command(&self) -> u16 {
        self.regs[1] as u16
    }

    /// The status register.
    pub fn status(&self) -> u16 {
        (self.regs[1] >> 16) as u16
    }

    /// Sets status bits as the device: e.g. [`PCI_STATUS_INTERRUPT`] while INTx is asserted, or an
    /// error bit the guest later clears by writing 1.
    pub fn set_status_bits(&mut self, bits: u16, on: bool) {
        let bits = u32::from(bits) << 16;
        match on {
            true => self.regs[1] |= bits,
            false => self.regs[1] &= !bits,
        }
    }

    /// The interrupt line byte the guest wrote (its IRQ routing note).
    pub fn interrupt_line(&self) -> u8 {
        self.regs[15] as u8
    }

    /// Sets the interrupt pin the function reports.
    pub fn set_interrupt_pin(&mut self, pin: PciInterruptPin) {
        self.set_byte(PCI_INTERRUPT_PIN, pin as u8);
    }

    /// The interrupt pin the function reports.
    pub fn interrupt_pin(&self) -> u8 {
        self.byte(PCI_INTERRUPT_PIN)
    }

    /// Sets or clears the multi-function bit of the header type.
    pub fn set_multi_function(&mut self, on: bool) {
        let ht = self.byte(PCI_HEADER_TYPE) & !PCI_HEADER_TYPE_MULTI_FUNCTION;
        let bit = if on {
            PCI_HEADER_TYPE_MULTI_FUNCTION
        } else {
            0
        };
        self.set_byte(PCI_HEADER_TYPE, ht | bit);
    }
}

/// True for a 1, 2 or 4-byte naturally aligned access inside the space.
pub(super) fn access_ok(offset: u16, len: usize) -> bool {
    matches!(len, 1 | 2 | 4)
        && usize::from(offset) % len == 0
        && usize::from(offset) + len <= PCI_CONFIG_SPACE_SIZE
}

fn width_mask(len: usize) -> u32 {
    match len {
        1 => 0xff,
        2 => 0xffff,
        _ => 0xffff_ffff,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn identity() -> PciIdentity {
        PciIdentity {
            vendor_id: 0x1af4,
            device_id: 0x1041,
            subsystem_vendor_id: 0x1af4,
            subsystem_id: 0x0001,
            revision_id: 0x02,
            class_code: PciClassCode {
                class: 0x02,
                subclass: 0x00,
                prog_if: 0x01,
            },
        }
    }

    fn read(config: &PciConfiguration, offset: u16, len: usize) -> u32 {
        let mut data = [0u8; 4];
        config.read(offset, &mut data[..len]);
        u32::from_le_bytes(data)
    }

    fn write(config: &mut PciConfiguration, offset: u16, len: usize, value: u32) {
        let effects = config.write(offset, &value.to_le_bytes()[..len]);
        assert_eq!(effects, ConfigWriteEffects::default());
    }

    #[test]
    fn header_fields_read_back_at_every_width() {
        let config = PciConfiguration::new(&identity());
        assert_eq!(read(&config, 0, 4), 0x1041_1af4);
        assert_eq!(read(&config, PCI_DEVICE_ID, 2), 0x1041);
        assert_eq!(read(&config, 1, 1), 0x1a);
        assert_eq!(read(&config, PCI_REVISION_ID, 4), 0x0200_0102);
        assert_eq!(read(&config, 0x0b, 1), 0x02);
        assert_eq!(read(&config, PCI_SUBSYSTEM_ID, 2), 0x0001);
        assert_eq!(config.identity(), identity());
    }

    #[test]
    fn identification_registers_ignore_guest_writes() {
        let mut config = PciConfiguration::new(&identity());
        write(&mut config, 0, 4, 0xdead_beef);
        write(&mut config, PCI_REVISION_ID, 4, 0);
        write(&mut config, PCI_SUBSYSTEM_VENDOR_ID, 4, 0);
        write(&mut config, PCI_HEADER_TYPE, 1, 0x80);
        assert_eq!(config.identity(), identity());
        assert_eq!(read(&config, PCI_HEADER_TYPE, 1), 0);
    }

    #[test]
    fn command_register_keeps_only_implemented_bits() {
        let mut config = PciConfiguration::new(&identity());
        write(&mut config, PCI_COMMAND, 2, 0xffff);
        assert_eq!(config.command(), 0x0547);
        write(&mut config, PCI_COMMAND, 1, 0x00);
        assert_eq!(config.command(), 0x0500);
    }

    #[test]
    fn status_error_bits_clear_on_write_one_and_survive_write_zero() {
        let mut config = PciConfiguration::new(&identity());
        config.set_status_bits(
            PCI_STATUS_REC_MASTER_ABORT | PCI_STATUS_DETECTED_PARITY | PCI_STATUS_INTERRUPT,
            true,
        );
        write(&mut config, PCI_STATUS, 2, 0);
        assert_eq!(config.status(), 0xa008);
        write(
            &mut config,
            PCI_STATUS,
            2,
            u32::from(PCI_STATUS_REC_MASTER_ABORT),
        );
        assert_eq!(config.status(), 0x8008);
        // The interrupt status bit is read-only: writing 1 does not clear it.
        write(&mut config, PCI_STATUS, 2, 0xffff);
        assert_eq!(config.status(), 0x0008);
    }

    #[test]
    fn dword_write_to_command_does_not_clear_status_it_writes_as_zero() {
        let mut config = PciConfiguration::new(&identity());
        config.set_status_bits(PCI_STATUS_SIG_SYSTEM_ERROR, true);
        write(&mut config, PCI_COMMAND, 4, u32::from(PCI_COMMAND_MASTER));
        assert_eq!(config.status(), PCI_STATUS_SIG_SYSTEM_ERROR);
        assert_eq!(config.command(), PCI_COMMAND_MASTER);
    }

    #[test]
    fn interrupt_line_is_scratch_and_pin_is_read_only() {
        let mut config = PciConfiguration::new(&identity());
        config.set_interrupt_pin(PciInterruptPin::IntA);
        write(&mut config, PCI_INTERRUPT_LINE, 2, 0xff0b);
        assert_eq!(config.interrupt_line(), 0x0b);
        assert_eq!(config.interrupt_pin(), 1);
        assert_eq!(read(&config, PCI_INTERRUPT_LINE, 4), 0x0000_010b);
    }

    #[test]
    fn unaligned_and_odd_width_accesses_abort() {
        let mut config = PciConfiguration::new(&identity());
        assert_eq!(read(&config, 1, 2), 0xffff);
        assert_eq!(read(&config, 2, 4), 0xffff_ffff);
        let mut three = [0u8; 3];
        config.read(0, &mut three);
        assert_eq!(three, [0xff; 3]);
        let mut past_end = [0u8; 4];
        config.read(0x1000, &mut past_end);
        assert_eq!(past_end, [0xff; 4]);
        write(&mut config, PCI_INTERRUPT_LINE - 1, 2, 0x0b00);
        assert_eq!(config.interrupt_line(), 0);
        let effects = config.write(PCI_INTERRUPT_LINE, &[1, 0, 0, 0, 0, 0, 0, 0]);
        assert_eq!(effects, ConfigWriteEffects::default());
        assert_eq!(config.interrupt_line(), 0);
    }

    #[test]
    fn device_masks_make_extended_space_writable() {
        let mut config = PciConfiguration::new(&identity());
        config.set_masks(0x200 / 4, 0x0000_ffff, 0xff00_0000);
        config.set_register(0x200 / 4, 0xff00_0000);
        write(&mut config, 0x200, 4, 0x0f12_3456);
        assert_eq!(config.read_register(0x200 / 4), 0xf000_3456);
        assert_eq!(config.masks(0x200 / 4), (0x0000_ffff, 0xff00_0000));
        assert_eq!(config.read_register(NUM_REGS), 0xffff_ffff);
    }

    #[test]
    fn multi_function_bit_is_set_by_the_device() {
        let mut config = PciConfiguration::new(&identity());
        config.set_multi_function(true);
        assert_eq!(read(&config, PCI_HEADER_TYPE, 1), 0x80);
        config.set_multi_function(false);
        assert_eq!(read(&config, PCI_HEADER_TYPE, 1), 0x00);
    }
}
