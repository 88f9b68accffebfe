//! The MADT ("APIC"): one enabled local APIC per vCPU, the I/O APIC, and the ISA interrupt
//! source overrides (the PIT's IRQ 0 on GSI 2, the SCI level triggered and active low).
//!
//! Built on `acpi_tables`' generic [`Sdt`]: its `MADT` builder cannot set the MADT flags
//! (PCAT_COMPAT) and has no interrupt source override or local APIC NMI structures.

use acpi_tables::Aml;
use acpi_tables::madt::{EnabledStatus, IoApic, ProcessorLocalApic};
use acpi_tables::sdt::Sdt;

use super::{OEM_ID, OEM_REVISION, OEM_TABLE_ID};
use crate::layout::{ACPI_SCI_IRQ, APIC_START, IOAPIC_START};

/// MADT revision (ACPI 6.x).
const MADT_REVISION: u8 = 5;
/// MADT header: the table header plus the local APIC address and the flags.
const MADT_HEADER_LEN: u32 = 44;
/// MADT flag: the machine also has dual 8259 PICs (KVM's irqchip emulates them), which the
/// guest must mask.
const PCAT_COMPAT: u32 = 1;
/// The I/O APIC's id (KVM's in-kernel I/O APIC resets its ID register to 0).
const IOAPIC_ID: u8 = 0;
/// Interrupt source override structure: type 2, 10 bytes.
const TYPE_INTERRUPT_SOURCE_OVERRIDE: u8 = 2;
/// Local APIC NMI structure: type 4, 6 bytes.
const TYPE_LOCAL_APIC_NMI: u8 = 4;
/// MPS INTI flags: polarity active high (bits 0..1 = 01), trigger edge (bits 2..3 = 01).
pub(super) const INTI_CONFORMS: u16 = 0;
/// MPS INTI flags: polarity active low (11) and level triggered (11 << 2).
pub(super) const INTI_ACTIVE_LOW_LEVEL: u16 = 0b11 | (0b11 << 2);
/// MPS INTI flags: active high, edge triggered.
const INTI_ACTIVE_HIGH_EDGE: u16 = 0b01 | (0b01 << 2);

/// The MADT for `vcpus` vCPUs (APIC ids and ACPI processor uids 0..vcpus).
pub(super) fn madt(vcpus: u8) -> Sdt {
    let mut madt = Sdt::new(
        *b"APIC",
        MADT_HEADER_LEN,
        MADT_REVISION,
        OEM_ID,
        OEM_TABLE_ID,
        OEM_REVISION,
    );
    madt.write_u32(36, APIC_START as u32);
    madt.write_u32(40, PCAT_COMPAT);
    for id in 0..vcpus {
        append(
            &mut madt,
            &ProcessorLocalApic::new(id, id, EnabledStatus::Enabled),
        );
    }
    append(&mut madt, &IoApic::new(IOAPIC_ID, IOAPIC_START as u32, 0));
    // The PIT's IRQ 0 is wired to I/O APIC input 2, as on every PC.
    madt.append_slice(&interrupt_source_override(0, 2, INTI_CONFORMS));
    madt.append_slice(&interrupt_source_override(
        ACPI_SCI_IRQ as u8,
        ACPI_SCI_IRQ,
        INTI_ACTIVE_LOW_LEVEL,
    ));
    // LINT1 of every local APIC is the NMI input.
    madt.append_slice(&local_apic_nmi(0xff, INTI_ACTIVE_HIGH_EDGE, 1));
    madt
}

fn append(madt: &mut Sdt, structure: &dyn Aml) {
    let mut bytes = Vec::new();
    structure.to_aml_bytes(&mut bytes);
    madt.append_slice(&bytes);
}

/// ISA `source` IRQ delivered on `gsi` with MPS INTI `flags`.
fn interrupt_source_override(source: u8, gsi: u32, flags: u16) -> [u8; 10] {
    let mut entry = [0u8; 10];
    entry[0] = TYPE_INTERRUPT_SOURCE_OVERRIDE;
    entry[1] = 10;
    entry[2] = 0; // bus: ISA
    entry[3] = source;
    entry[4..8].copy_from_slice(&gsi.to_le_bytes());
    entry[8..10].copy_from_slice(&flags.to_le_bytes());
    entry
}

/// The NMI on local interrupt `lint` of processor `uid` (0xff: all).
fn local_apic_nmi(uid: u8, flags: u16, lint: u8) -> [u8; 6] {
    let mut entry = [0u8; 6];
    entry[0] = TYPE_LOCAL_APIC_NMI;
    entry[1] = 6;
    entry[2] = uid;
    entry[3..5].copy_from_slice(&flags.to_le_bytes());
    entry[5] = lint;
    entry
}
