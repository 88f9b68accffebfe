//! The DSDT: the PCI host bridge `\_SB.PCI0` (ECAM segment 0, its windows and the INTx routing
//! of bus 0), the ECAM reservation `\_SB.MBRD`, COM1 `\_SB.COM1`, and the `\_S5` soft-off
//! sleep type the power-off device accepts.

use acpi_tables::aml::{
    AddressSpace, AddressSpaceCacheable, Device, EISAName, IO, Interrupt, Memory32Fixed, Name,
    Package, Path, ResourceTemplate, ZERO,
};
use acpi_tables::sdt::Sdt;
use acpi_tables::{Aml, AmlSink};

use super::{OEM_ID, OEM_REVISION, OEM_TABLE_ID};
use crate::layout::{
    ACPI_S5_SLP_TYP, COM1_GSI, COM1_PORT, MMIO32_SIZE, MMIO32_START, MMIO64_SIZE, MMIO64_START,
    PCI_BUS_COUNT, PCI_CONFIG_IO_PORT, PCI_CONFIG_IO_SIZE, PCI_DEVICES_PER_BUS, PCI_ECAM_SIZE,
    PCI_ECAM_START, PCI_INTX_PINS, PIO_WINDOW_SIZE, PIO_WINDOW_START, pci_intx_gsi,
};

/// DSDT revision 2: AML integers are 64-bit.
const DSDT_REVISION: u8 = 2;
/// Table header length.
const HEADER_LEN: u32 = 36;
/// Ports of a 16550 UART.
const COM_PORT_LEN: u8 = 8;

/// The DSDT table with its AML.
pub(super) fn dsdt() -> Sdt {
    let mut dsdt = Sdt::new(
        *b"DSDT",
        HEADER_LEN,
        DSDT_REVISION,
        OEM_ID,
        OEM_TABLE_ID,
        OEM_REVISION,
    );
    let mut aml = Vec::new();
    pci_host_bridge(&mut aml);
    ecam_reservation(&mut aml);
    com1(&mut aml);
    s5(&mut aml);
    dsdt.append_slice(&aml);
    dsdt
}

/// `\_SB.PCI0`: a PCI Express root bridge for segment 0 decoding every bus, with the CF8/CFC
/// configuration ports, the PCI I/O window, both MMIO windows, and a `_PRT` that routes each
/// slot's INTA..INTD on bus 0 to I/O APIC inputs by [`pci_intx_gsi`].
fn pci_host_bridge(sink: &mut dyn AmlSink) {
    let last_bus = PCI_BUS_COUNT - 1;
    let bus_range = AddressSpace::<u16>::new_bus_number(0, last_bus);
    let config_ports = IO::new(
        PCI_CONFIG_IO_PORT,
        PCI_CONFIG_IO_PORT,
        1,
        PCI_CONFIG_IO_SIZE as u8,
    );
    let pio_window = AddressSpace::<u16>::new_io(
        PIO_WINDOW_START,
        PIO_WINDOW_START + (PIO_WINDOW_SIZE - 1),
        None,
    );
    let mmio32_window = AddressSpace::<u32>::new_memory(
        AddressSpaceCacheable::NotCacheable,
        true,
        MMIO32_START as u32,
        (MMIO32_START + MMIO32_SIZE - 1) as u32,
        None,
    );
    let mmio64_window = AddressSpace::<u64>::new_memory(
        AddressSpaceCacheable::NotCacheable,
        true,
        MMIO64_START,
        MMIO64_START + MMIO64_SIZE - 1,
        None,
    );
    let crs = ResourceTemplate::new(vec![
        &bus_range,
        &config_ports,
        &pio_window,
        &mmio32_window,
        &mmio64_window,
    ]);

    let routes: Vec<PrtEntry> = (0..PCI_DEVICES_PER_BUS)
        .flat_map(|device| (0..PCI_INTX_PINS).map(move |pin| PrtEntry { device, pin }))
        .collect();
    let prt_entries: Vec<&dyn Aml> = routes.iter().map(|route| route as &dyn Aml).collect();
    let prt = Package::new(prt_entries);

    Device::new(
        Path::new("\\_SB_.PCI0"),
        vec![
            &Name::new("_HID".into(), &EISAName::new("PNP0A08")),
            &Name::new("_CID".into(), &EISAName::new("PNP0A03")),
            &Name::new("_SEG".into(), &ZERO),
            &Name::new("_UID".into(), &ZERO),
            &Name::new("_BBN".into(), &ZERO),
            &Name::new("_CRS".into(), &crs),
            &Name::new("_PRT".into(), &prt),
        ],
    )
    .to_aml_bytes(sink);
}

/// One `_PRT` entry: `Package { (device << 16) | 0xffff, pin, Zero, gsi }` (source Zero: the
/// pin is wired straight to the global system interrupt).
struct PrtEntry {
    device: u8,
    pin: u8,
}

impl Aml for PrtEntry {
    fn to_aml_bytes(&self, sink: &mut dyn AmlSink) {
        let address = (u32::from(self.device) << 16) | 0xffff;
        let gsi = pci_intx_gsi(self.device, self.pin);
        Package::new(vec![&address, &self.pin, &ZERO, &gsi]).to_aml_bytes(sink);
    }
}

/// `\_SB.MBRD`: a motherboard resource device reserving the ECAM window, where Linux looks to
/// trust the MCFG's window.
fn ecam_reservation(sink: &mut dyn AmlSink) {
    let ecam = Memory32Fixed::new(true, PCI_ECAM_START as u32, PCI_ECAM_SIZE as u32);
    Device::new(
        Path::new("\\_SB_.MBRD"),
        vec![
            &Name::new("_HID".into(), &EISAName::new("PNP0C02")),
            &Name::new("_UID".into(), &ZERO),
            &Name::new("_CRS".into(), &ResourceTemplate::new(vec![&ecam])),
        ],
    )
    .to_aml_bytes(sink);
}

/// `\_SB.COM1`: the 16550 UART at 0x3f8 on ISA IRQ 4 (edge, active high).
fn com1(sink: &mut dyn AmlSink) {
    let ports = IO::new(COM1_PORT, COM1_PORT, 1, COM_PORT_LEN);
    let irq = Interrupt::new(true, true, false, false, COM1_GSI);
    Device::new(
        Path::new("\\_SB_.COM1"),
        vec![
            &Name::new("_HID".into(), &EISAName::new("PNP0501")),
            &Name::new("_UID".into(), &ZERO),
            &Name::new("_CRS".into(), &ResourceTemplate::new(vec![&ports, &irq])),
        ],
    )
    .to_aml_bytes(sink);
}

/// `\_S5`: `Package { SLP_TYPa, SLP_TYPb, 0, 0 }`, the values OSPM writes to PM1a/PM1b_CNT
/// with SLP_EN to power off.
fn s5(sink: &mut dyn AmlSink) {
    let slp_typ = ACPI_S5_SLP_TYP as u8;
    Name::new(
        "\\_S5_".into(),
        &Package::new(vec![&slp_typ, &slp_typ, &ZERO, &ZERO]),
    )
    .to_aml_bytes(sink);
}
