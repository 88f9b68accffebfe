//! PCI Express enhanced configuration access (ECAM): config space of every function mapped in
//! MMIO, `offset = bus << 20 | device << 15 | function << 12 | register`.
//!
//! Accesses must be 1, 2 or 4 bytes and naturally aligned; others read all-ones and are dropped,
//! as are accesses to absent functions and buses.

use std::sync::{Arc, Mutex};

use super::bdf::PciBdf;
use super::bus::PciBus;
use crate::bus::{BusDevice, lock};

/// Size of the ECAM window for `buses` buses.
pub const fn ecam_size(buses: u16) -> u64 {
    (buses as u64) << 20
}

/// The ECAM window, to be put on the MMIO bus at the MCFG base address.
#[derive(Debug)]
pub struct PciConfigMmio {
    bus: Arc<Mutex<PciBus>>,
}

impl PciConfigMmio {
    /// Config access through ECAM to `bus`.
    pub fn new(bus: Arc<Mutex<PciBus>>) -> Self {
        Self { bus }
    }

    fn decode(offset: u64) -> Option<(PciBdf, u16)> {
        let bus = u8::try_from(offset >> 20).ok()?;
        let devfn = (offset >> 12) as u8;
        Some((PciBdf::from_devfn(0, bus, devfn), (offset & 0xfff) as u16))
    }
}

impl BusDevice for PciConfigMmio {
    fn read(&mut self, _base: u64, offset: u64, data: &mut [u8]) {
        match Self::decode(offset) {
            Some((bdf, reg)) => lock(&self.bus).read_config(bdf, reg, data),
            None => data.fill(0xff),
        }
    }

    fn write(&mut self, _base: u64, offset: u64, data: &[u8]) {
        if let Some((bdf, reg)) = Self::decode(offset) {
            lock(&self.bus).write_config(bdf, reg, data);
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

    fn setup() -> (
        PciConfigMmio,
        Arc<Mutex<TestPciFunction>>,
        Arc<RecordingBarRelocation>,
    ) {
        let sink = Arc::new(RecordingBarRelocation::new());
        let mut bus = PciBus::new(sink.clone());
        let id = PciIdentity {
            vendor_id: 0x1b36,
            device_id: 0x0010,
            ..PciIdentity::default()
        };
        let bar = PciBar {
            index: 0,
            size: 0x4000,
            kind: BarKind::Memory64,
            prefetchable: false,
        };
        let dev = Arc::new(Mutex::new(TestPciFunction::new(&id, &[bar])));
        bus.add_function("00:02.1".parse().unwrap(), dev.clone())
            .unwrap();
        (PciConfigMmio::new(Arc::new(Mutex::new(bus))), dev, sink)
    }

    fn ecam(bus: u64, dev: u64, func: u64, reg: u64) -> u64 {
        bus << 20 | dev << 15 | func << 12 | reg
    }

    fn read(mmio: &mut PciConfigMmio, offset: u64, len: usize) -> u32 {
        let mut data = [0u8; 4];
        mmio.read(0xe000_0000, offset, &mut data[..len]);
        u32::from_le_bytes(data)
    }

    #[test]
    fn offsets_decode_to_bus_device_function_register() {
        let (mut mmio, _dev, _sink) = setup();
        assert_eq!(read(&mut mmio, ecam(0, 0, 0, 0), 4), 0x29c0_8086);
        assert_eq!(read(&mut mmio, ecam(0, 2, 1, 0), 4), 0x0010_1b36);
        assert_eq!(read(&mut mmio, ecam(0, 2, 1, 2), 2), 0x0010);
        assert_eq!(read(&mut mmio, ecam(0, 2, 1, 1), 1), 0x1b);
        // The host bridge's slot does not alias other functions.
        assert_eq!(read(&mut mmio, ecam(0, 2, 0, 0), 4), u32::MAX);
    }

    #[test]
    fn extended_config_space_is_reachable() {
        let (mut mmio, dev, _sink) = setup();
        lock(&dev)
            .config_mut()
            .add_extended_capability(0x1b, 1, &[0x04, 0x10, 0, 0])
            .unwrap();
        assert_eq!(read(&mut mmio, ecam(0, 2, 1, 0x100), 4), 0x0001_001b);
        assert_eq!(read(&mut mmio, ecam(0, 2, 1, 0x104), 2), 0x1004);
    }

    #[test]
    fn absent_buses_devices_and_bad_accesses_read_all_ones() {
        let (mut mmio, _dev, _sink) = setup();
        assert_eq!(read(&mut mmio, ecam(1, 2, 1, 0), 4), u32::MAX);
        assert_eq!(read(&mut mmio, ecam(0, 31, 7, 0), 4), u32::MAX);
        assert_eq!(read(&mut mmio, ecam(0, 2, 1, 2), 4), u32::MAX);
        assert_eq!(read(&mut mmio, ecam(0, 2, 1, 1), 2), 0xffff);
        let mut eight = [0u8; 8];
        mmio.read(0, ecam(0, 2, 1, 0), &mut eight);
        assert_eq!(eight, [0xff; 8]);
        // Past 256 buses is past the window.
        assert_eq!(read(&mut mmio, ecam(256, 0, 0, 0), 4), u32::MAX);
    }

    #[test]
    fn writes_reach_the_function_and_report_bar_changes() {
        let (mut mmio, dev, sink) = setup();
        lock(&dev).set_bar_address(0, 0x40_0000_0000).unwrap();
        mmio.write(0, ecam(0, 2, 1, 4), &[0x06]);
        assert_eq!(lock(&dev).config().command(), 0x06);
        // Move the 64-bit BAR: one report, after the upper half.
        mmio.write(0, ecam(0, 2, 1, 0x10), &0x8000_0000u32.to_le_bytes());
        mmio.write(0, ecam(0, 2, 1, 0x14), &0x41u32.to_le_bytes());
        let changes: Vec<BarChange> = sink.take().into_iter().map(|(_, c)| c).collect();
        assert_eq!(changes.len(), 2);
        assert!(matches!(changes[0], BarChange::Mapped(r) if r.base == 0x40_0000_0000));
        assert!(matches!(changes[1], BarChange::Moved(m) if m.new_base == 0x41_8000_0000));
        // A misaligned write is dropped.
        mmio.write(0, ecam(0, 2, 1, 5), &[0, 0]);
        assert_eq!(lock(&dev).config().command(), 0x06);
    }

    #[test]
    fn linux_style_bar_probe_unmaps_then_restores_the_same_range() {
        let (mut mmio, dev, sink) = setup();
        lock(&dev).set_bar_address(0, 0x40_0000_0000).unwrap();
        mmio.write(0, ecam(0, 2, 1, 4), &[0x02]);
        sink.take();
        // __pci_read_base: turn decoding off, size each half, restore, turn decoding back on.
        mmio.write(0, ecam(0, 2, 1, 4), &[0x00, 0x00]);
        let mut sizes = [0u32; 2];
        for (half, size) in sizes.iter_mut().enumerate() {
            let reg = 0x10 + 4 * half as u64;
            let orig = read(&mut mmio, ecam(0, 2, 1, reg), 4);
            mmio.write(0, ecam(0, 2, 1, reg), &u32::MAX.to_le_bytes());
            *size = read(&mut mmio, ecam(0, 2, 1, reg), 4);
            mmio.write(0, ecam(0, 2, 1, reg), &orig.to_le_bytes());
        }
        mmio.write(0, ecam(0, 2, 1, 4), &[0x02, 0x00]);
        assert_eq!(sizes, [0xffff_c004, 0xffff_ffff]);
        let changes: Vec<BarChange> = sink.take().into_iter().map(|(_, c)| c).collect();
        assert!(matches!(
            changes.as_slice(),
            [BarChange::Unmapped(a), BarChange::Mapped(b)] if a == b && b.base == 0x40_0000_0000
        ));
    }
}
