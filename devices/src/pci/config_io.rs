//! PCI configuration mechanism #1: the address register at 0xCF8 and the data window at 0xCFC.
//!
//! The address register is a dword: bit 31 enables the window, bits 23:16 pick the bus, 15:11
//! the device, 10:8 the function, 7:2 the dword register; bits 1:0 and 30:24 read as 0. Only
//! dword accesses reach it; other accesses to 0xCF8..0xCFB are not configuration accesses (0xCF9
//! is a chipset reset register elsewhere) and read all-ones / are dropped here. The data window
//! 0xCFC..0xCFF takes byte, word and dword accesses naturally aligned within it; byte `n` of the
//! window is config offset `register + n`. With the enable bit clear the window reads all-ones.

use std::sync::{Arc, Mutex};

use super::bdf::PciBdf;
use super::bus::PciBus;
use crate::bus::{BusDevice, lock};

/// I/O port of the address register.
pub const PCI_CONFIG_ADDRESS_PORT: u16 = 0xcf8;
/// Length of the port range the device claims (address register and data window).
pub const PCI_CONFIG_IO_LEN: u64 = 8;

const ENABLE: u32 = 0x8000_0000;
const ADDRESS_WRITABLE: u32 = ENABLE | 0x00ff_fffc;

/// The mechanism #1 ports, to be put on the PIO bus at 0xCF8 for 8 bytes.
#[derive(Debug)]
pub struct PciConfigIo {
    bus: Arc<Mutex<PciBus>>,
    address: u32,
}

impl PciConfigIo {
    /// Config access through ports to `bus`.
    pub fn new(bus: Arc<Mutex<PciBus>>) -> Self {
        Self { bus, address: 0 }
    }

    /// The function and config offset the data window byte `n` reaches, if the window is
    /// enabled and the access of `len` bytes is aligned inside it.
    fn target(&self, n: u64, len: usize) -> Option<(PciBdf, u16)> {
        let aligned = matches!(len, 1 | 2 | 4) && n % len as u64 == 0 && n + len as u64 <= 4;
        if !aligned || self.address & ENABLE == 0 {
            return None;
        }
        let bus = (self.address >> 16) as u8;
        let devfn = (self.address >> 8) as u8;
        let register = (self.address & 0xfc) as u16;
        Some((PciBdf::from_devfn(0, bus, devfn), register + n as u16))
    }
}

impl BusDevice for PciConfigIo {
    fn read(&mut self, _base: u64, offset: u64, data: &mut [u8]) {
        match offset {
            0 if data.len() == 4 => data.copy_from_slice(&self.address.to_le_bytes()),
            4..8 => match self.target(offset - 4, data.len()) {
                Some((bdf, reg)) => lock(&self.bus).read_config(bdf, reg, data),
                None => data.fill(0xff),
            },
            _ => data.fill(0xff),
        }
    }

    fn write(&mut self, _base: u64, offset: u64, data: &[u8]) {
        match offset {
            0 if data.len() == 4 => {
                let value = u32::from_le_bytes([data[0], data[1], data[2], data[3]]);
                self.address = value & ADDRESS_WRITABLE;
            }
            4..8 => {
                if let Some((bdf, reg)) = self.target(offset - 4, data.len()) {
                    lock(&self.bus).write_config(bdf, reg, data);
                }
            }
            _ => log::debug!(
                "PCI config port write of {} bytes at {:#x} ignored",
                data.len(),
                u64::from(PCI_CONFIG_ADDRESS_PORT) + offset
            ),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::pci::bar::{BarChange, BarKind, PciBar};
    use crate::pci::configuration::PciIdentity;
    use crate::pci::device::PciDevice;
    use crate::test_utils::{RecordingBarRelocation, TestPciFunction};

    const ADDRESS: u64 = 0;
    const DATA: u64 = 4;

    fn setup() -> (
        PciConfigIo,
        Arc<Mutex<TestPciFunction>>,
        Arc<RecordingBarRelocation>,
    ) {
        let sink = Arc::new(RecordingBarRelocation::new());
        let mut bus = PciBus::new(sink.clone());
        let id = PciIdentity {
            vendor_id: 0x1af4,
            device_id: 0x1042,
            ..PciIdentity::default()
        };
        let bar = PciBar {
            index: 1,
            size: 0x40,
            kind: BarKind::Io,
            prefetchable: false,
        };
        let dev = Arc::new(Mutex::new(TestPciFunction::new(&id, &[bar])));
        bus.add_function("00:03.0".parse().unwrap(), dev.clone())
            .unwrap();
        (PciConfigIo::new(Arc::new(Mutex::new(bus))), dev, sink)
    }

    fn select(io: &mut PciConfigIo, bus: u32, dev: u32, func: u32, reg: u32) {
        let value = 0x8000_0000 | bus << 16 | dev << 11 | func << 8 | reg;
        io.write(0xcf8, ADDRESS, &value.to_le_bytes());
    }

    fn read(io: &mut PciConfigIo, offset: u64, len: usize) -> u32 {
        let mut data = [0u8; 4];
        io.read(0xcf8, offset, &mut data[..len]);
        u32::from_le_bytes(data)
    }

    #[test]
    fn address_register_latches_with_reserved_bits_clear() {
        let (mut io, _dev, _sink) = setup();
        io.write(0xcf8, ADDRESS, &0xffff_ffffu32.to_le_bytes());
        assert_eq!(read(&mut io, ADDRESS, 4), 0x80ff_fffc);
        // Linux's probe: a byte write to 0xCFB is not an address register access.
        io.write(0xcf8, 3, &[0x01]);
        assert_eq!(read(&mut io, ADDRESS, 4), 0x80ff_fffc);
        io.write(0xcf8, ADDRESS, &0x8000_0000u32.to_le_bytes());
        assert_eq!(read(&mut io, ADDRESS, 4), 0x8000_0000);
        assert_eq!(read(&mut io, ADDRESS, 2), 0xffff);
    }

    #[test]
    fn data_window_reads_the_selected_function_at_every_width() {
        let (mut io, _dev, _sink) = setup();
        select(&mut io, 0, 0, 0, 0);
        assert_eq!(read(&mut io, DATA, 4), 0x29c0_8086);
        select(&mut io, 0, 3, 0, 0);
        assert_eq!(read(&mut io, DATA, 4), 0x1042_1af4);
        assert_eq!(read(&mut io, DATA + 2, 2), 0x1042);
        assert_eq!(read(&mut io, DATA + 3, 1), 0x10);
        assert_eq!(read(&mut io, DATA + 1, 1), 0x1a);
    }

    #[test]
    fn absent_functions_and_a_disabled_window_read_all_ones() {
        let (mut io, _dev, _sink) = setup();
        select(&mut io, 0, 4, 0, 0);
        assert_eq!(read(&mut io, DATA, 4), u32::MAX);
        select(&mut io, 0, 3, 1, 0);
        assert_eq!(read(&mut io, DATA, 2), 0xffff);
        select(&mut io, 1, 3, 0, 0);
        assert_eq!(read(&mut io, DATA, 4), u32::MAX);
        io.write(0xcf8, ADDRESS, &(3u32 << 11).to_le_bytes());
        assert_eq!(read(&mut io, DATA, 4), u32::MAX);
    }

    #[test]
    fn accesses_that_straddle_the_window_are_dropped() {
        let (mut io, dev, _sink) = setup();
        select(&mut io, 0, 3, 0, 0x3c);
        assert_eq!(read(&mut io, DATA + 1, 2), 0xffff);
        assert_eq!(read(&mut io, DATA + 2, 4), u32::MAX);
        io.write(0xcf8, DATA + 3, &[0x0b, 0x0b]);
        io.write(0xcf8, DATA + 1, &[0x0b, 0x0b]);
        assert_eq!(lock(&dev).config().interrupt_line(), 0);
    }

    #[test]
    fn writes_reach_the_function_and_report_bar_changes() {
        let (mut io, dev, sink) = setup();
        lock(&dev).set_bar_address(1, 0xc040).unwrap();
        // Interrupt line through a byte write at 0xCFC for register 0x3c.
        select(&mut io, 0, 3, 0, 0x3c);
        io.write(0xcf8, DATA, &[0x0b]);
        assert_eq!(lock(&dev).config().interrupt_line(), 0x0b);
        // I/O decode through a word write at 0xCFC for register 0x04.
        select(&mut io, 0, 3, 0, 0x04);
        io.write(0xcf8, DATA, &1u16.to_le_bytes());
        let changes = sink.take();
        assert!(matches!(
            changes.as_slice(),
            [(bdf, BarChange::Mapped(r))] if bdf.to_string() == "0000:00:03.0" && r.base == 0xc040 && r.kind == BarKind::Io
        ));
    }

    #[test]
    fn register_offset_plus_window_byte_selects_the_config_byte() {
        let (mut io, dev, _sink) = setup();
        // Register 0x3c, byte 1 of the window: the interrupt pin (read-only) at 0x3d.
        lock(&dev)
            .config_mut()
            .set_interrupt_pin(crate::pci::PciInterruptPin::IntB);
        select(&mut io, 0, 3, 0, 0x3c);
        assert_eq!(read(&mut io, DATA + 1, 1), 2);
    }
}
