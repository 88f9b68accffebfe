//! The test guest (`guest/`) on the KVM machine, loaded and described exactly as `vmm --kernel`
//! does it: it finds the ACPI tables and ECAM the machine advertises, scans PCI bus 0 through
//! ECAM, and powers off through PM1a_CNT.

use std::time::Duration;

use vmm::acpi::create_acpi_tables;
use vmm::assembly::DeviceConfig;
use vmm::layout::{ACPI_PM1A_CNT_PORT, PCI_ECAM_START, RSDP_START};
use vmm::loader::load_kernel_from_paths;
use vmm::machine::{Machine, MachineConfig};
use vmm::platform::{SerialCapture, SerialSink};
use vmm::power::ExitReason;

const GUEST_ELF: &str = env!("TEST_GUEST_ELF");

/// Not a timing assertion: the guest finishes in well under a second; this turns a hung guest
/// into a failure instead of a hung test run.
const SAFETY_LIMIT: Duration = Duration::from_secs(120);

#[test]
#[cfg_attr(not(host_has_kvm), ignore = "needs /dev/kvm")]
fn test_guest_finds_acpi_and_ecam_scans_pci_and_powers_off_under_kvm() {
    let serial = SerialCapture::new();
    let mut machine = Machine::new(&MachineConfig {
        memory_size: 64 << 20,
        vcpus: 1,
        devices: DeviceConfig::new(SerialSink::Capture(serial.clone())),
    })
    .expect("KVM machine");
    let memory = machine.core().ram().memory();
    let entry = load_kernel_from_paths(memory, GUEST_ELF.as_ref(), "", None).expect("load guest");
    create_acpi_tables(memory, 1).expect("ACPI tables");
    machine.boot(entry).unwrap();
    machine.start().unwrap();
    let reason = machine.wait(Some(SAFETY_LIMIT));
    machine.stop();
    let out = serial.text();
    assert_eq!(reason, Some(ExitReason::PowerOff), "serial output: {out}");
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(lines.first(), Some(&"guest: start"), "{out}");
    let acpi = format!(
        "guest: acpi: rsdp {RSDP_START:#x} ecam {PCI_ECAM_START:#x} buses 0-255 pm1a_cnt \
         {ACPI_PM1A_CNT_PORT:#x}"
    );
    assert!(lines.contains(&acpi.as_str()), "expected {acpi:?} in {out}");
    assert!(
        lines
            .iter()
            .any(|l| l.starts_with("guest: pci: ") && l.ends_with(" dma-engine(s)")),
        "{out}"
    );
}
