//! ACPI tables for the guest: RSDP -> XSDT -> FADT (-> DSDT, FACS), MADT, MCFG.
//!
//! Built with rust-vmm's `acpi_tables` (table builders and the AML encoder) and written into
//! the BIOS area at [`RSDP_START`], where Linux and our test guest scan for the RSDP. The tables
//! describe the machine of [`crate::layout`]: the PM1a ports of the power-off device, the local
//! APICs and the I/O APIC, the ECAM window and the PCI host bridge's windows.

mod dsdt;
mod fadt;
mod madt;

use acpi_tables::Aml;
use acpi_tables::facs::FACS;
use acpi_tables::mcfg::MCFG;
use acpi_tables::rsdp::Rsdp;
use acpi_tables::xsdt::XSDT;
use vm_memory::{Bytes, GuestAddress, GuestMemoryBackend, GuestMemoryMmap};

use crate::layout::{ACPI_TABLES_START, BIOS_END, PCI_BUS_COUNT, PCI_ECAM_START, RSDP_START};

/// OEM id in every table header.
pub const OEM_ID: [u8; 6] = *b"PTVMM ";
/// OEM table id in every table header.
pub const OEM_TABLE_ID: [u8; 8] = *b"PTVMMACP";
/// OEM revision in every table header.
pub const OEM_REVISION: u32 = 1;
/// The most vCPUs the MADT describes: xAPIC ids are 8-bit and 0xff is the broadcast id.
pub const MAX_VCPUS: u8 = 254;

/// Tables are 16-byte aligned; the FACS must be 64-byte aligned.
const TABLE_ALIGN: u64 = 16;
const FACS_ALIGN: u64 = 64;

/// Why the ACPI tables could not be written.
#[derive(Debug, thiserror::Error)]
pub enum AcpiError {
    /// The vCPU count is 0 or above what the MADT can describe.
    #[error("cannot describe {count} vCPUs in the MADT: 1 to {MAX_VCPUS} are supported")]
    VcpuCount {
        /// The count asked for.
        count: u32,
    },
    /// The tables do not fit in the BIOS area.
    #[error("the ACPI tables need [{start:#x}, {end:#x}), past the BIOS area's end {BIOS_END:#x}")]
    TooLarge {
        /// Where the tables start.
        start: u64,
        /// Where they would end.
        end: u64,
    },
    /// Guest memory does not cover the BIOS area.
    #[error("guest memory has no RAM over [{start:#x}, {end:#x}) for the ACPI tables")]
    NoMemory {
        /// First byte needed.
        start: u64,
        /// End of what is needed.
        end: u64,
    },
    /// Writing a table failed.
    #[error("cannot write the {table} table at {addr:#x}: {source}")]
    GuestMemory {
        /// The table's signature.
        table: &'static str,
        /// Where it was written.
        addr: u64,
        /// The error from vm-memory.
        source: vm_memory::GuestMemoryError,
    },
}

/// Where each table went, for the boot structures, logs and tests.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AcpiTableAddresses {
    /// The RSDP (always [`RSDP_START`]).
    pub rsdp: GuestAddress,
    /// The XSDT.
    pub xsdt: GuestAddress,
    /// The FADT ("FACP").
    pub fadt: GuestAddress,
    /// The DSDT.
    pub dsdt: GuestAddress,
    /// The FACS.
    pub facs: GuestAddress,
    /// The MADT ("APIC").
    pub madt: GuestAddress,
    /// The MCFG.
    pub mcfg: GuestAddress,
}

/// Lays out the tables from [`ACPI_TABLES_START`] on.
struct TableWriter {
    next: u64,
    tables: Vec<(&'static str, u64, Vec<u8>)>,
}

impl TableWriter {
    fn add(&mut self, name: &'static str, align: u64, table: &dyn Aml) -> GuestAddress {
        let mut bytes = Vec::new();
        table.to_aml_bytes(&mut bytes);
        let addr = self.next.next_multiple_of(align);
        self.next = addr + bytes.len() as u64;
        self.tables.push((name, addr, bytes));
        GuestAddress(addr)
    }
}

/// Builds the tables for `vcpu_count` vCPUs and writes them into `guest_mem`'s BIOS area.
///
/// Nothing is written unless every table fits and guest memory covers the area.
pub fn create_acpi_tables(
    guest_mem: &GuestMemoryMmap,
    vcpu_count: u32,
) -> Result<AcpiTableAddresses, AcpiError> {
    let vcpus = u8::try_from(vcpu_count)
        .ok()
        .filter(|&count| (1..=MAX_VCPUS).contains(&count))
        .ok_or(AcpiError::VcpuCount { count: vcpu_count })?;

    let mut writer = TableWriter {
        next: ACPI_TABLES_START,
        tables: Vec::new(),
    };
    let dsdt = writer.add("DSDT", TABLE_ALIGN, &dsdt::dsdt());
    let facs = writer.add("FACS", FACS_ALIGN, &FACS::new());
    let fadt = writer.add("FACP", TABLE_ALIGN, &fadt::fadt(dsdt, facs));
    let madt = writer.add("APIC", TABLE_ALIGN, &madt::madt(vcpus));
    let mut mcfg_table = MCFG::new(OEM_ID, OEM_TABLE_ID, OEM_REVISION);
    mcfg_table.add_ecam(PCI_ECAM_START, 0, 0, (PCI_BUS_COUNT - 1) as u8);
    let mcfg = writer.add("MCFG", TABLE_ALIGN, &mcfg_table);
    let mut xsdt_table = XSDT::new(OEM_ID, OEM_TABLE_ID, OEM_REVISION);
    for table in [fadt, madt, mcfg] {
        xsdt_table.add_entry(table.0);
    }
    let xsdt = writer.add("XSDT", TABLE_ALIGN, &xsdt_table);
    let mut rsdp = Vec::new();
    Rsdp::new(OEM_ID, xsdt.0).to_aml_bytes(&mut rsdp);
    writer.tables.push(("RSDP", RSDP_START, rsdp));

    if writer.next > BIOS_END {
        return Err(AcpiError::TooLarge {
            start: ACPI_TABLES_START,
            end: writer.next,
        });
    }
    if !guest_mem.check_range(
        GuestAddress(RSDP_START),
        (writer.next - RSDP_START) as usize,
    ) {
        return Err(AcpiError::NoMemory {
            start: RSDP_START,
            end: writer.next,
        });
    }
    for (table, addr, bytes) in &writer.tables {
        guest_mem
            .write_slice(bytes, GuestAddress(*addr))
            .map_err(|source| AcpiError::GuestMemory {
                table,
                addr: *addr,
                source,
            })?;
    }
    Ok(AcpiTableAddresses {
        rsdp: GuestAddress(RSDP_START),
        xsdt,
        fadt,
        dsdt,
        facs,
        madt,
        mcfg,
    })
}
