//! The ACPI tables as a guest finds them: walked from the RSDP in guest memory, checksums and
//! structure checked, then each decompiled with `iasl -d` (Debian acpica-tools) and the text
//! compared with the machine layout.

mod boot_images;

use std::collections::BTreeMap;
use std::process::Command;

use boot_images::*;
use vm_memory::GuestMemoryMmap;
use vmm::acpi::{AcpiError, create_acpi_tables};
use vmm::layout::{
    ACPI_PM1A_CNT_PORT, ACPI_PM1A_EVT_PORT, ACPI_SCI_IRQ, APIC_START, IOAPIC_START, MMIO32_SIZE,
    MMIO32_START, MMIO64_SIZE, MMIO64_START, PCI_ECAM_START, PIO_WINDOW_SIZE, PIO_WINDOW_START,
    RSDP_START, pci_intx_gsi,
};

const RAM: u64 = 64 << 20;

fn checksum(bytes: &[u8]) -> u8 {
    bytes.iter().fold(0u8, |sum, b| sum.wrapping_add(*b))
}

/// Reads a table at `addr` whose header gives its length, checking its checksum.
fn table_at(mem: &GuestMemoryMmap, addr: u64) -> Vec<u8> {
    let len = read_u32(mem, addr + 4) as usize;
    assert!(len >= 36, "table at {addr:#x} has length {len}");
    let bytes = read_bytes(mem, addr, len);
    assert_eq!(
        checksum(&bytes),
        0,
        "checksum of {}",
        String::from_utf8_lossy(&bytes[..4])
    );
    bytes
}

/// Every table reachable from the RSDP, by signature (the RSDP too, as "RSDP").
fn extract_tables(mem: &GuestMemoryMmap) -> BTreeMap<String, Vec<u8>> {
    let rsdp = read_bytes(mem, RSDP_START, 36);
    assert_eq!(&rsdp[..8], b"RSD PTR ");
    assert_eq!(checksum(&rsdp[..20]), 0, "RSDP checksum");
    assert_eq!(checksum(&rsdp), 0, "RSDP extended checksum");
    assert_eq!(rsdp[15], 2, "revision 2: XSDT");
    assert_eq!(
        u32::from_le_bytes(rsdp[20..24].try_into().unwrap()),
        36,
        "length"
    );
    let xsdt_addr = u64::from_le_bytes(rsdp[24..32].try_into().unwrap());
    let xsdt = table_at(mem, xsdt_addr);
    assert_eq!(&xsdt[..4], b"XSDT");

    let mut tables = BTreeMap::new();
    for entry in xsdt[36..].chunks(8) {
        let addr = u64::from_le_bytes(entry.try_into().unwrap());
        let table = table_at(mem, addr);
        tables.insert(String::from_utf8(table[..4].to_vec()).unwrap(), table);
    }
    let fadt = tables["FACP"].clone();
    let dsdt_addr = u64::from_le_bytes(fadt[140..148].try_into().unwrap());
    let dsdt = table_at(mem, dsdt_addr);
    assert_eq!(&dsdt[..4], b"DSDT");
    tables.insert("DSDT".into(), dsdt);
    let facs_addr = u64::from_le_bytes(fadt[132..140].try_into().unwrap());
    assert_eq!(facs_addr % 64, 0, "FACS 64-byte aligned");
    let facs = read_bytes(mem, facs_addr, 64);
    assert_eq!(&facs[..4], b"FACS");
    tables.insert("FACS".into(), facs);
    tables.insert("XSDT".into(), xsdt);
    tables.insert("RSDP".into(), rsdp);
    tables
}

/// `iasl -d` of one table; the decompiled text without comment-only lines' noise.
fn decompile(name: &str, table: &[u8]) -> String {
    let dir = scratch_dir(&format!("acpi-{name}"));
    let dat = dir.join(format!("{}.dat", name.to_lowercase()));
    std::fs::write(&dat, table).unwrap();
    let output = match Command::new("iasl")
        .arg("-d")
        .arg(&dat)
        .current_dir(&dir)
        .output()
    {
        Ok(output) => output,
        Err(err) => panic!("iasl not runnable ({err}): run scripts/setup to install acpica-tools"),
    };
    assert!(
        output.status.success(),
        "iasl -d {name}: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    let text = std::fs::read_to_string(dat.with_extension("dsl")).expect("iasl wrote the .dsl");
    let _ = std::fs::remove_dir_all(&dir);
    text
}

/// The value after the colon of the first field line `name : value` of a decompiled table.
fn field(text: &str, name: &str) -> String {
    fields(text, name)
        .into_iter()
        .next()
        .unwrap_or_else(|| panic!("no field {name:?} in:\n{text}"))
}

/// The values of every field line `name : value`.
fn fields<'a>(text: &'a str, name: &'a str) -> Vec<String> {
    text.lines()
        .filter(|line| line.contains(&format!("{name} : ")))
        .map(|line| line.split(" : ").nth(1).unwrap().trim().to_string())
        .collect()
}

fn tables_for(vcpus: u32) -> BTreeMap<String, Vec<u8>> {
    let mem = guest_memory(RAM);
    let addrs = create_acpi_tables(&mem, vcpus).expect("write ACPI tables");
    assert_eq!(addrs.rsdp.0, RSDP_START);
    extract_tables(&mem)
}

#[test]
fn xsdt_lists_fadt_madt_and_mcfg_with_valid_checksums() {
    let tables = tables_for(1);
    let names: Vec<&str> = tables.keys().map(String::as_str).collect();
    assert_eq!(
        names,
        ["APIC", "DSDT", "FACP", "FACS", "MCFG", "RSDP", "XSDT"]
    );
}

#[test]
fn mcfg_maps_segment_0_buses_0_to_255_at_the_ecam_base() {
    let text = decompile("MCFG", &tables_for(1)["MCFG"]);
    assert_eq!(
        field(&text, "Base Address"),
        format!("{PCI_ECAM_START:016X}")
    );
    assert_eq!(field(&text, "Segment Group Number"), "0000");
    assert_eq!(field(&text, "Start Bus Number"), "00");
    assert_eq!(field(&text, "End Bus Number"), "FF");
}

#[test]
fn madt_has_one_enabled_local_apic_per_vcpu_the_ioapic_and_the_overrides() {
    let vcpus = 3;
    let text = decompile("APIC", &tables_for(vcpus)["APIC"]);
    assert_eq!(
        field(&text, "Local Apic Address"),
        format!("{APIC_START:08X}")
    );
    assert_eq!(field(&text, "PC-AT Compatibility"), "1");
    let apic_ids = fields(&text, "Local Apic ID");
    assert_eq!(apic_ids, ["00", "01", "02"]);
    assert_eq!(fields(&text, "Processor Enabled"), ["1", "1", "1"]);
    assert_eq!(fields(&text, "I/O Apic ID").len(), 1);
    assert!(
        fields(&text, "Address").contains(&format!("{IOAPIC_START:08X}")),
        "{text}"
    );
    // Interrupt source overrides: (source, GSI, polarity, trigger).
    let sources = fields(&text, "Source");
    let interrupts = fields(&text, "Interrupt");
    let polarity = fields(&text, "Polarity");
    let trigger = fields(&text, "Trigger Mode");
    // "Interrupt" also matches the I/O APIC's GSI base (first); the overrides follow.
    assert_eq!(sources, ["00", "09"]);
    assert_eq!(
        interrupts[1..3],
        ["00000002", &format!("{ACPI_SCI_IRQ:08X}")]
    );
    assert_eq!(polarity[..2], ["0", "3"], "IRQ0 conforms; SCI active low");
    assert_eq!(trigger[..2], ["0", "3"], "IRQ0 conforms; SCI level");
}

#[test]
fn fadt_describes_the_pm1a_blocks_and_the_sci_of_a_full_acpi_platform() {
    let tables = tables_for(1);
    let text = decompile("FACP", &tables["FACP"]);
    assert_eq!(field(&text, "SCI Interrupt"), format!("{ACPI_SCI_IRQ:04X}"));
    assert_eq!(
        field(&text, "PM1A Event Block Address"),
        format!("{ACPI_PM1A_EVT_PORT:08X}")
    );
    assert_eq!(
        field(&text, "PM1A Control Block Address"),
        format!("{ACPI_PM1A_CNT_PORT:08X}")
    );
    assert_eq!(field(&text, "PM1 Event Block Length"), "04");
    assert_eq!(field(&text, "PM1 Control Block Length"), "02");
    assert_eq!(field(&text, "Hardware Reduced (V5)"), "0");
    assert_eq!(
        field(&text, "SMI Command Port"),
        "00000000",
        "always in ACPI mode"
    );
    let addresses = fields(&text, "Address");
    assert!(
        addresses.contains(&format!("{ACPI_PM1A_EVT_PORT:016X}")),
        "X_PM1a_EVT_BLK"
    );
    assert!(
        addresses.contains(&format!("{ACPI_PM1A_CNT_PORT:016X}")),
        "X_PM1a_CNT_BLK"
    );
}

/// The `(address, pin, source, gsi)` entries of the `_PRT` in decompiled ASL.
fn prt_entries(dsdt: &str) -> Vec<(u32, u32, u32, u32)> {
    let start = dsdt.find("Name (_PRT").expect("a _PRT");
    let body = &dsdt[start..];
    let end = body.find("\n        })").expect("end of _PRT");
    let value = |token: &str| -> u32 {
        match token {
            "Zero" => 0,
            "One" => 1,
            hex => u32::from_str_radix(hex.trim_start_matches("0x"), 16).unwrap(),
        }
    };
    body[..end]
        .split("Package (0x04)")
        .skip(1)
        .map(|package| {
            let values: Vec<u32> = package
                .split(|c: char| c == ',' || c.is_whitespace() || c == '{' || c == '}')
                .filter(|token| !token.is_empty())
                .map(value)
                .collect();
            assert_eq!(values.len(), 4, "{package}");
            (values[0], values[1], values[2], values[3])
        })
        .collect()
}

#[test]
fn dsdt_has_the_pci_host_bridge_with_the_layouts_windows_and_intx_routing() {
    let text = decompile("DSDT", &tables_for(1)["DSDT"]);
    assert!(text.contains("Device (\\_SB.PCI0)"), "{text}");
    assert!(
        text.contains("Name (_HID, EisaId (\"PNP0A08\")"),
        "PCI Express root"
    );
    assert!(
        text.contains("Name (_CID, EisaId (\"PNP0A03\")"),
        "PCI compatible"
    );
    assert!(text.contains("Name (_SEG, Zero)"));
    assert!(text.contains("Name (_BBN, Zero)"));
    let crs_lines = |kind: &str| -> Vec<String> {
        let at = text
            .find(kind)
            .unwrap_or_else(|| panic!("no {kind} in _CRS"));
        text[at..].lines().take(7).map(str::to_string).collect()
    };
    let range = |lines: &[String], what: &str| -> String {
        let line = lines.iter().find(|l| l.contains(what)).unwrap();
        line.trim().split(',').next().unwrap().to_string()
    };
    let bus = crs_lines("WordBusNumber");
    assert_eq!(range(&bus, "Range Minimum"), "0x0000");
    assert_eq!(range(&bus, "Range Maximum"), "0x00FF");
    let cf8 = crs_lines("IO (Decode16,\n                0x0CF8");
    assert_eq!(range(&cf8, "Length"), "0x08");
    let pio = crs_lines("WordIO");
    assert_eq!(
        range(&pio, "Range Minimum"),
        format!("0x{PIO_WINDOW_START:04X}")
    );
    assert_eq!(
        range(&pio, "Range Maximum"),
        format!("0x{:04X}", PIO_WINDOW_START + (PIO_WINDOW_SIZE - 1))
    );
    let mmio32 = crs_lines("DWordMemory");
    assert_eq!(
        range(&mmio32, "Range Minimum"),
        format!("0x{MMIO32_START:08X}")
    );
    assert_eq!(range(&mmio32, "Length"), format!("0x{MMIO32_SIZE:08X}"));
    let mmio64 = crs_lines("QWordMemory");
    assert_eq!(
        range(&mmio64, "Range Minimum"),
        format!("0x{MMIO64_START:016X}")
    );
    assert_eq!(range(&mmio64, "Length"), format!("0x{MMIO64_SIZE:016X}"));

    let prt = prt_entries(&text);
    assert_eq!(prt.len(), 32 * 4, "every slot and pin of bus 0");
    for device in 0..32u8 {
        for pin in 0..4u8 {
            let expected = (
                (u32::from(device) << 16) | 0xffff,
                u32::from(pin),
                0,
                pci_intx_gsi(device, pin),
            );
            assert!(prt.contains(&expected), "no _PRT entry {expected:x?}");
        }
    }
}

#[test]
fn dsdt_has_com1_the_ecam_reservation_and_s5() {
    let text = decompile("DSDT", &tables_for(1)["DSDT"]);
    let com1 = &text[text.find("Device (\\_SB.COM1)").expect("COM1")..];
    assert!(com1.contains("EisaId (\"PNP0501\")"));
    assert!(com1.contains("0x03F8,             // Range Minimum"));
    assert!(com1.contains("0x00000004,"), "IRQ 4");
    let mbrd = &text[text.find("Device (\\_SB.MBRD)").expect("MBRD")..];
    assert!(mbrd.contains("EisaId (\"PNP0C02\")"));
    assert!(mbrd.contains(&format!("0x{PCI_ECAM_START:08X},         // Address Base")));
    let s5 = &text[text.find("Name (\\_S5, Package (0x04)").expect("_S5")..];
    let values: Vec<&str> = s5
        .lines()
        .skip(2)
        .take(2)
        .map(|l| l.trim().trim_end_matches(',').trim())
        .collect();
    assert_eq!(values, ["0x05", "0x05"], "SLP_TYPa/b = 5");
}

#[test]
fn vcpu_counts_outside_what_the_madt_holds_are_refused_before_writing() {
    let mem = guest_memory(RAM);
    for count in [0, 255, 1000] {
        let err = create_acpi_tables(&mem, count).expect_err("bad vCPU count");
        assert!(
            matches!(err, AcpiError::VcpuCount { count: c } if c == count),
            "{err}"
        );
    }
    assert_eq!(first_nonzero(&mem, 0, 1 << 20), None, "nothing written");
    let max = create_acpi_tables(&mem, u32::from(vmm::acpi::MAX_VCPUS));
    assert!(max.is_ok(), "{max:?}");
}

#[test]
fn memory_without_the_bios_area_is_refused() {
    let mem =
        GuestMemoryMmap::<()>::from_ranges(&[(vm_memory::GuestAddress(0), 0x8_0000)]).unwrap();
    let err = create_acpi_tables(&mem, 1).expect_err("no BIOS area");
    assert!(matches!(err, AcpiError::NoMemory { .. }), "{err}");
}
