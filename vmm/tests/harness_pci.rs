//! PCI through the harness: the host bridge through both config mechanisms, a device's BARs
//! placed in the layout's windows, decoding when the guest enables them, following the guest
//! when it moves them, and never taking over another device's range.

use std::sync::{Arc, Mutex};

use devices::pci::{BarKind, PciBar, PciBdf, PciClassCode, PciIdentity, SharedPciDevice};
use devices::test_utils::TestPciFunction;
use vmm::harness::Harness;
use vmm::layout::{COM1_PORT, MMIO32_START, MMIO64_START, PCI_ECAM_START, PIO_WINDOW_START};

const PCI_CONFIG_ADDRESS: u16 = 0xcf8;
const PCI_CONFIG_DATA: u16 = 0xcfc;
/// Config registers.
const COMMAND: u64 = 0x04;
const BAR0: u64 = 0x10;
const BAR1: u64 = 0x14;
const BAR2: u64 = 0x18;
const COMMAND_IO: u32 = 1 << 0;
const COMMAND_MEMORY: u32 = 1 << 1;

fn harness() -> Harness {
    Harness::new(16 << 20).expect("harness")
}

/// A function like QEMU's edu device: a 4 KiB 32-bit memory BAR 0, a 16-byte I/O BAR 1 and a
/// 64-bit memory BAR 2.
fn test_function() -> SharedPciDevice {
    let id = PciIdentity {
        vendor_id: 0x1234,
        device_id: 0x11e8,
        subsystem_vendor_id: 0,
        subsystem_id: 0,
        revision_id: 0,
        class_code: PciClassCode {
            class: 0xff,
            subclass: 0,
            prog_if: 0,
        },
    };
    let bars = [
        PciBar {
            index: 0,
            size: 0x1000,
            kind: BarKind::Memory32,
            prefetchable: false,
        },
        PciBar {
            index: 1,
            size: 0x10,
            kind: BarKind::Io,
            prefetchable: false,
        },
        PciBar {
            index: 2,
            size: 0x4000,
            kind: BarKind::Memory64,
            prefetchable: true,
        },
    ];
    Arc::new(Mutex::new(TestPciFunction::new(&id, &bars)))
}

fn ecam(bdf: PciBdf, reg: u64) -> u64 {
    PCI_ECAM_START + (u64::from(bdf.device()) << 15) + (u64::from(bdf.function()) << 12) + reg
}

fn config_read32(h: &Harness, bdf: PciBdf, reg: u64) -> u32 {
    let mut v = [0u8; 4];
    h.mmio_read(ecam(bdf, reg), &mut v);
    u32::from_le_bytes(v)
}

fn config_write32(h: &Harness, bdf: PciBdf, reg: u64, value: u32) {
    h.mmio_write(ecam(bdf, reg), &value.to_le_bytes());
}

fn read32(h: &Harness, addr: u64) -> u32 {
    let mut v = [0u8; 4];
    h.mmio_read(addr, &mut v);
    u32::from_le_bytes(v)
}

#[test]
fn host_bridge_answers_on_cf8_and_on_ecam() {
    let h = harness();
    // Enable bit, bus 0, device 0, function 0, register 0.
    h.pio_write(PCI_CONFIG_ADDRESS, &0x8000_0000u32.to_le_bytes());
    let mut id = [0u8; 4];
    h.pio_read(PCI_CONFIG_DATA, &mut id);
    // Intel Q35 host bridge: vendor 0x8086, device 0x29c0.
    assert_eq!(u32::from_le_bytes(id), 0x29c0_8086);
    assert_eq!(
        config_read32(&h, PciBdf::from_devfn(0, 0, 0), 0),
        0x29c0_8086
    );
    // An empty slot reads all-ones.
    assert_eq!(
        config_read32(&h, PciBdf::from_devfn(0, 0, 5 << 3), 0),
        u32::MAX
    );
}

#[test]
fn added_device_gets_bars_in_the_layout_windows() {
    let h = harness();
    let bdf = h.core().pci().add_device(test_function()).unwrap();
    assert_eq!((bdf.device(), bdf.function()), (1, 0));
    assert_eq!(config_read32(&h, bdf, 0), 0x11e8_1234);
    assert_eq!(config_read32(&h, bdf, BAR0), MMIO32_START as u32);
    // I/O BAR: bit 0 set.
    assert_eq!(
        config_read32(&h, bdf, BAR1),
        u32::from(PIO_WINDOW_START) | 1
    );
    // 64-bit prefetchable BAR: type bits 0b1100 in the low register, high half in the next.
    assert_eq!(config_read32(&h, bdf, BAR2), (MMIO64_START as u32) | 0xc);
    assert_eq!(
        config_read32(&h, bdf, BAR2 + 4),
        (MMIO64_START >> 32) as u32
    );
}

#[test]
fn bars_decode_only_once_the_guest_enables_them() {
    let h = harness();
    let bdf = h.core().pci().add_device(test_function()).unwrap();
    h.mmio_write(MMIO32_START + 0x10, &7u32.to_le_bytes());
    assert_eq!(
        read32(&h, MMIO32_START + 0x10),
        u32::MAX,
        "not decoding yet"
    );

    config_write32(&h, bdf, COMMAND, COMMAND_MEMORY | COMMAND_IO);
    h.mmio_write(MMIO32_START + 0x10, &7u32.to_le_bytes());
    assert_eq!(read32(&h, MMIO32_START + 0x10), 7);
    h.mmio_write(MMIO64_START + 0x3ffc, &9u32.to_le_bytes());
    assert_eq!(read32(&h, MMIO64_START + 0x3ffc), 9);
    h.pio_write(PIO_WINDOW_START + 3, &[0x5a]);
    assert_eq!(h.pio_read8(PIO_WINDOW_START + 3), 0x5a);
}

#[test]
fn moved_bar_follows_the_guest() {
    let h = harness();
    let bdf = h.core().pci().add_device(test_function()).unwrap();
    config_write32(&h, bdf, COMMAND, COMMAND_MEMORY);
    h.mmio_write(MMIO32_START + 0x20, &0x1122_3344u32.to_le_bytes());
    let new_base = MMIO32_START + 0x10_0000;
    config_write32(&h, bdf, BAR0, new_base as u32);
    assert_eq!(read32(&h, MMIO32_START + 0x20), u32::MAX);
    assert_eq!(read32(&h, new_base + 0x20), 0x1122_3344);
}

#[test]
fn bar_placed_over_com1_does_not_decode_and_leaves_com1_working() {
    let h = harness();
    let bdf = h.core().pci().add_device(test_function()).unwrap();
    // The guest puts the 16-byte I/O BAR at 0x3f0..0x400, over COM1 (0x3f8..0x400).
    config_write32(&h, bdf, BAR1, 0x3f0);
    config_write32(&h, bdf, COMMAND, COMMAND_IO);
    assert_eq!(h.pio_read8(0x3f0), 0xff, "the BAR does not decode");
    h.pio_write(COM1_PORT, b"x");
    assert_eq!(h.serial_output(), "x");
    // Moved clear of COM1, it decodes, and COM1 keeps its ports.
    config_write32(&h, bdf, BAR1, 0xc100);
    h.pio_write(0xc101, &[0x42]);
    assert_eq!(h.pio_read8(0xc101), 0x42);
    h.pio_write(COM1_PORT, b"y");
    assert_eq!(h.serial_output(), "xy");
}

#[test]
fn removed_device_leaves_the_buses_and_frees_its_bar_space() {
    let h = harness();
    let pci = h.core().pci();
    let bdf = pci.add_device(test_function()).unwrap();
    config_write32(&h, bdf, COMMAND, COMMAND_MEMORY);
    pci.remove_device(bdf).unwrap();
    assert_eq!(read32(&h, MMIO32_START), u32::MAX);
    assert_eq!(config_read32(&h, bdf, 0), u32::MAX);
    let again = pci.add_device(test_function()).unwrap();
    assert_eq!(again, bdf);
    assert_eq!(config_read32(&h, again, BAR0), MMIO32_START as u32);
}
