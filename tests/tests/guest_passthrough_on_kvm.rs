//! The test guest (`guest/`) under KVM with emulated DMA engines passed through
//! (`--device vfio=emulated:dma-engine`): it finds each on PCI bus 0, maps its BARs, programs
//! MSI-X, runs a copy through the device's DMA (translated by the emulated host's IOMMU into
//! guest RAM), takes the interrupt, checks the bytes, and reports `guest: PASS`.

use std::time::Duration;

use vmm::acpi::create_acpi_tables;
use vmm::assembly::DeviceConfig;
use vmm::loader::load_kernel_from_paths;
use vmm::machine::{Machine, MachineConfig};
use vmm::passthrough::{DeviceArg, HostIommu, assign_ids};
use vmm::platform::{SerialCapture, SerialSink};
use vmm::power::ExitReason;

const GUEST_ELF: &str = env!("TEST_GUEST_ELF");

/// Not a timing assertion: the guest finishes in well under a second; this turns a hung guest
/// into a failure instead of a hung test run.
const SAFETY_LIMIT: Duration = Duration::from_secs(120);

/// Boots the test guest with `devices` (`--device` values) and returns its serial output, after
/// checking it powered off.
fn boot_guest(devices: &[&str]) -> String {
    boot_guest_on(devices, HostIommu::Auto)
}

/// Like [`boot_guest`], with the devices on the `host_iommu` backend.
fn boot_guest_on(devices: &[&str], host_iommu: HostIommu) -> String {
    let args = devices
        .iter()
        .map(|d| DeviceArg::parse(d).expect("valid --device value"))
        .collect();
    let serial = SerialCapture::new();
    let config = MachineConfig {
        memory_size: 64 << 20,
        vcpus: 1,
        devices: DeviceConfig {
            passthrough: assign_ids(args).expect("distinct ids"),
            host_iommu,
            ..DeviceConfig::new(SerialSink::Capture(serial.clone()))
        },
    };
    let mut machine = Machine::new(&config).expect("KVM machine with passthrough devices");
    let memory = machine.core().ram().memory();
    let entry = load_kernel_from_paths(memory, GUEST_ELF.as_ref(), "", None).expect("load guest");
    create_acpi_tables(memory, 1).expect("ACPI tables");
    machine.boot(entry).unwrap();
    machine.start().unwrap();
    let reason = machine.wait(Some(SAFETY_LIMIT));
    machine.stop();
    let out = serial.text();
    assert_eq!(reason, Some(ExitReason::PowerOff), "serial output: {out}");
    out
}

#[test]
#[cfg_attr(not(host_has_kvm), ignore = "needs /dev/kvm")]
fn guest_drives_one_passed_through_dma_engine_and_passes() {
    let out = boot_guest(&["vfio=emulated:dma-engine"]);
    let lines: Vec<&str> = out.lines().collect();
    assert!(lines.contains(&"guest: pci: 1 dma-engine(s)"), "{out}");
    assert!(
        lines.contains(&"guest: dev 00:01.0: ok: copied 256 bytes, msi-x vector 0x40"),
        "{out}"
    );
    assert_eq!(lines.last(), Some(&"guest: PASS"), "{out}");
}

#[test]
#[cfg_attr(not(host_has_kvm), ignore = "needs /dev/kvm")]
fn guest_drives_two_passed_through_dma_engines_and_passes() {
    let out = boot_guest(&[
        "vfio=emulated:dma-engine,id=dma0",
        "vfio=emulated:dma-engine,id=dma1",
    ]);
    let lines: Vec<&str> = out.lines().collect();
    assert!(lines.contains(&"guest: pci: 2 dma-engine(s)"), "{out}");
    for line in [
        "guest: dev 00:01.0: ok: copied 256 bytes, msi-x vector 0x40",
        "guest: dev 00:02.0: ok: copied 256 bytes, msi-x vector 0x41",
    ] {
        assert!(lines.contains(&line), "expected {line:?} in {out}");
    }
    assert_eq!(lines.last(), Some(&"guest: PASS"), "{out}");
}

#[test]
#[cfg_attr(not(host_has_kvm), ignore = "needs /dev/kvm")]
fn guest_passes_with_dma_engines_in_the_emulated_type1_container() {
    let out = boot_guest_on(
        &["vfio=emulated:dma-engine", "vfio=emulated:dma-engine"],
        HostIommu::Container,
    );
    let lines: Vec<&str> = out.lines().collect();
    for line in [
        "guest: dev 00:01.0: ok: copied 256 bytes, msi-x vector 0x40",
        "guest: dev 00:02.0: ok: copied 256 bytes, msi-x vector 0x41",
    ] {
        assert!(lines.contains(&line), "expected {line:?} in {out}");
    }
    assert_eq!(lines.last(), Some(&"guest: PASS"), "{out}");
}
