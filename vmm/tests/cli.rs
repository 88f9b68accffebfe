//! The `vmm` binary as a user runs it: bad arguments give one line on stderr and a non-zero
//! status, never a panic; a small ELF guest boots and its serial output lands in a file; the
//! test guest passes with an emulated DMA engine passed through.

mod common;

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use vmm_sys_util::tempdir::TempDir;

fn vmm(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_vmm"))
        .args(args)
        // As a user debugging would have it: a panic would print a backtrace.
        .env("RUST_BACKTRACE", "1")
        .output()
        .expect("run the vmm binary")
}

/// The one stderr line of a failed run, after checking it is one line, says who speaks, and
/// comes with the expected status and no panic.
fn one_error_line(out: &Output, status: i32) -> String {
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(status), "stderr: {stderr}");
    assert!(!stderr.contains("panicked"), "{stderr}");
    assert_eq!(stderr.lines().count(), 1, "{stderr:?}");
    assert!(stderr.starts_with("vmm: "), "{stderr}");
    stderr.trim_end().to_string()
}

fn temp_dir() -> TempDir {
    TempDir::new_with_prefix("/tmp/vmm-cli-test-").expect("temporary directory")
}

fn write_file(dir: &Path, name: &str, bytes: &[u8]) -> PathBuf {
    let path = dir.join(name);
    std::fs::write(&path, bytes).expect("write test file");
    path
}

/// An existing file that is no kernel, for tests that must get past the file check.
fn some_file() -> String {
    env!("CARGO_BIN_EXE_vmm").to_string()
}

#[test]
fn missing_kernel_option_is_a_usage_error() {
    let line = one_error_line(&vmm(&[]), 2);
    assert!(line.contains("--kernel"), "{line}");
}

#[test]
fn nonexistent_kernel_file_is_named() {
    let line = one_error_line(&vmm(&["--kernel", "/nonexistent/vmlinux"]), 1);
    assert_eq!(
        line,
        "vmm: cannot open the kernel image /nonexistent/vmlinux: No such file or directory (os \
         error 2)"
    );
}

#[test]
fn malformed_memory_size_is_a_usage_error() {
    let line = one_error_line(&vmm(&["--kernel", &some_file(), "--memory", "12X"]), 2);
    assert!(line.contains("'12X' is not a size"), "{line}");
}

#[test]
fn zero_cpus_is_a_usage_error() {
    let line = one_error_line(&vmm(&["--kernel", &some_file(), "--cpus", "0"]), 2);
    assert!(line.contains("the machine supports 1 to 254"), "{line}");
}

#[test]
fn memory_beyond_the_layout_is_refused_with_the_limit() {
    let line = one_error_line(&vmm(&["--kernel", &some_file(), "--memory", "64G"]), 1);
    assert_eq!(
        line,
        "vmm: guest memory size 64 GiB is too large: the layout holds at most 63 GiB (RAM must \
         end below the 64-bit PCI window)"
    );
}

#[test]
fn memory_not_a_whole_number_of_pages_is_refused() {
    let line = one_error_line(&vmm(&["--kernel", &some_file(), "--memory", "4097K"]), 1);
    assert!(
        line.contains("not a multiple of the 4096-byte page size"),
        "{line}"
    );
}

#[test]
fn unknown_serial_sink_is_a_usage_error() {
    let line = one_error_line(&vmm(&["--kernel", &some_file(), "--serial", "tcp"]), 2);
    assert!(
        line.contains("expected stdout, null or file=<PATH>"),
        "{line}"
    );
}

#[test]
fn help_documents_every_option_and_exits_zero() {
    let out = vmm(&["--help"]);
    assert_eq!(out.status.code(), Some(0));
    let help = String::from_utf8_lossy(&out.stdout);
    for option in [
        "--kernel",
        "--initramfs",
        "--cmdline",
        "--memory",
        "--cpus",
        "--serial",
        "--device",
        "--host-iommu",
        "--log-level",
        "Exit status",
    ] {
        assert!(help.contains(option), "--help lacks {option}");
    }
    for grammar in [
        "vfio=<SPEC>[,id=<NAME>]",
        "emulated:dma-engine[,pasid=on|off]",
        "emulated:mailbox",
        "/sys/bus/pci/devices/<BDF>",
        "/dev/vfio/devices/vfio<N>",
        "auto:",
        "iommufd:",
        "container:",
    ] {
        assert!(help.contains(grammar), "--help lacks {grammar}");
    }
}

#[test]
fn unknown_emulated_model_is_a_usage_error_naming_it() {
    let line = one_error_line(
        &vmm(&["--kernel", &some_file(), "--device", "vfio=emulated:gpu"]),
        2,
    );
    assert!(
        line.contains("unknown emulated model 'gpu' (known: dma-engine, mailbox)"),
        "{line}"
    );
}

#[test]
fn unknown_device_type_or_spec_is_a_usage_error() {
    for (value, expected) in [
        ("virtio=net", "'virtio=net' is not a device"),
        ("vfio=gpu0", "'gpu0' is not a device spec"),
        (
            "vfio=emulated:dma-engine,pasid=maybe",
            "'pasid=maybe' is not valid",
        ),
        (
            "vfio=emulated:mailbox,id=a/b",
            "device id 'a/b' is not valid",
        ),
    ] {
        let line = one_error_line(&vmm(&["--kernel", &some_file(), "--device", value]), 2);
        assert!(line.contains(expected), "{value}: {line}");
    }
}

#[test]
fn duplicate_device_ids_are_a_usage_error() {
    let line = one_error_line(
        &vmm(&[
            "--kernel",
            &some_file(),
            "--device",
            "vfio=emulated:dma-engine,id=dma",
            "--device",
            "vfio=emulated:dma-engine,id=dma",
        ]),
        2,
    );
    assert_eq!(
        line,
        "vmm: device id 'dma' is used by more than one --device (see vmm --help)"
    );
}

#[test]
fn unknown_host_iommu_backend_is_a_usage_error() {
    let line = one_error_line(&vmm(&["--kernel", &some_file(), "--host-iommu", "vtd"]), 2);
    assert!(line.contains("'vtd'"), "{line}");
    assert!(line.contains("auto, iommufd, container"), "{line}");
}

#[test]
fn missing_host_device_is_named_before_kvm_is_touched() {
    let line = one_error_line(
        &vmm(&[
            "--kernel",
            &some_file(),
            "--device",
            "vfio=/sys/bus/pci/devices/0000:7f:1f.7,id=nic",
        ]),
        1,
    );
    assert_eq!(
        line,
        "vmm: passthrough device nic: /sys/bus/pci/devices/0000:7f:1f.7: no such device"
    );
}

#[test]
fn host_device_not_bound_to_vfio_pci_is_refused_with_its_driver() {
    // Any PCI device of this machine bound to another driver.
    let bound = std::fs::read_dir("/sys/bus/pci/devices")
        .into_iter()
        .flatten()
        .flatten()
        .map(|e| e.path())
        .find_map(|dev| {
            let driver = std::fs::read_link(dev.join("driver")).ok()?;
            let driver = driver.file_name()?.to_string_lossy().into_owned();
            (driver != "vfio-pci").then_some((dev, driver))
        });
    let Some((dev, driver)) = bound else {
        eprintln!("skipped: this machine has no PCI device bound to a driver other than vfio-pci");
        return;
    };
    let spec = format!("vfio={}", dev.display());
    let line = one_error_line(&vmm(&["--kernel", &some_file(), "--device", &spec]), 1);
    assert_eq!(
        line,
        format!(
            "vmm: passthrough device vfio0: {}: bound to {driver}, not vfio-pci",
            dev.display()
        )
    );
}

#[test]
fn host_without_dev_kvm_gets_one_clear_line() {
    // A private mount namespace with an empty /dev stands in for a host without KVM.
    let probe = Command::new("unshare")
        .args(["-m", "sh", "-c", "mount -t tmpfs tmpfs /dev"])
        .output();
    if !probe.is_ok_and(|o| o.status.success()) {
        eprintln!("skipped: cannot hide /dev/kvm here (needs unshare -m and mount privileges)");
        return;
    }
    let script = format!(
        "mount -t tmpfs tmpfs /dev && exec {} --kernel {}",
        env!("CARGO_BIN_EXE_vmm"),
        some_file()
    );
    let out = Command::new("unshare")
        .args(["-m", "sh", "-c", &script])
        .output()
        .unwrap();
    let line = one_error_line(&out, 1);
    assert!(line.starts_with("vmm: failed to open /dev/kvm"), "{line}");
}

#[test]
fn non_elf_kernel_is_refused_by_name() {
    let dir = temp_dir();
    let kernel = write_file(dir.as_path(), "kernel.txt", b"not a kernel");
    let line = one_error_line(&vmm(&["--kernel", kernel.to_str().unwrap()]), 1);
    assert!(line.contains("kernel.txt"), "{line}");
    assert!(line.contains("neither an ELF file"), "{line}");
}

fn boot(elf: &[u8]) -> (Output, String) {
    let dir = temp_dir();
    let kernel = write_file(dir.as_path(), "guest.elf", elf);
    let serial = dir.as_path().join("serial.txt");
    let out = vmm(&[
        "--kernel",
        kernel.to_str().unwrap(),
        "--memory",
        "16M",
        "--serial",
        &format!("file={}", serial.display()),
    ]);
    let text = std::fs::read_to_string(&serial).unwrap_or_default();
    (out, text)
}

#[test]
#[cfg_attr(not(host_has_kvm), ignore = "needs /dev/kvm")]
fn elf_guest_boots_in_long_mode_and_powers_off_with_status_zero() {
    let (out, serial) = boot(&common::elf_image(
        &common::linux64_hello(),
        common::ENTRY,
        false,
    ));
    assert_eq!(out.status.code(), Some(0), "{out:?}");
    assert_eq!(serial, "long mode: hello\n");
    assert!(
        out.stderr.is_empty(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
#[cfg_attr(not(host_has_kvm), ignore = "needs /dev/kvm")]
fn elf_guest_with_a_pvh_note_boots_through_pvh() {
    let (out, serial) = boot(&common::elf_image(
        &common::pvh_hello(),
        common::ENTRY,
        true,
    ));
    assert_eq!(out.status.code(), Some(0), "{out:?}");
    assert_eq!(serial, "pvh: hello\n");
}

#[test]
#[cfg_attr(not(host_has_kvm), ignore = "needs /dev/kvm")]
fn guest_triple_fault_is_status_four_with_one_line() {
    // ud2 with an empty IDT.
    let (out, _) = boot(&common::elf_image(&[0x0f, 0x0b], common::ENTRY, false));
    assert_eq!(one_error_line(&out, 4), "vmm: vCPU 0 triple-faulted");
}

#[test]
#[cfg_attr(not(host_has_kvm), ignore = "needs /dev/kvm")]
fn guest_reset_is_status_three() {
    // mov al, 0xfe; out 0x64, al; hlt
    let (out, _) = boot(&common::elf_image(
        &[0xb0, 0xfe, 0xe6, 0x64, 0xf4],
        common::ENTRY,
        false,
    ));
    assert_eq!(one_error_line(&out, 3), "vmm: guest requested a reset");
}

#[test]
#[cfg_attr(not(host_has_kvm), ignore = "needs /dev/kvm")]
fn test_guest_passes_with_an_emulated_dma_engine_passed_through() {
    let dir = temp_dir();
    let serial = dir.as_path().join("serial.txt");
    let out = vmm(&[
        "--kernel",
        common::test_guest::test_guest_elf().to_str().unwrap(),
        "--memory",
        "64M",
        "--device",
        "vfio=emulated:dma-engine",
        "--serial",
        &format!("file={}", serial.display()),
    ]);
    let text = std::fs::read_to_string(&serial).unwrap_or_default();
    assert_eq!(out.status.code(), Some(0), "{out:?}\nserial: {text}");
    assert!(
        out.stderr.is_empty(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let lines: Vec<&str> = text.lines().collect();
    assert!(
        lines.contains(&"guest: dev 00:01.0: ok: copied 256 bytes, msi-x vector 0x40"),
        "{text}"
    );
    assert_eq!(lines.last(), Some(&"guest: PASS"), "{text}");
}
