//! Group `vmm`: our VMM (`/bin/vmm`, built statically into the initramfs) boots the test guest
//! (`/lab/test-guest`) under the lab kernel's KVM (nested SVM under TCG) with QEMU's `edu` passed
//! through from the real kernel (`--device vfio=/sys/bus/pci/devices/<edu>`): VFIO, iommufd and
//! intel-iommu of Linux 6.12 underneath, our passthrough device, interrupt routing and DMA
//! mapping on top. The guest does a DMA round trip with the edu and reports `guest: PASS`.
//! Kernel only (devices boot): the emulated devices take the same path in the host tests.

use std::fs;
use std::path::Path;
use std::process::{Command, Stdio};
use std::thread;
use std::time::{Duration, Instant};

use super::kernel_support::{Check, ensure};
use crate::lab::case::Case;
use crate::lab::outcome::{Boot, Outcome};
use crate::lab::sysfs::SysRoot;

/// Where the initramfs puts our VMM.
pub const VMM: &str = "/bin/vmm";
/// Where the initramfs puts the test guest.
pub const GUEST: &str = "/lab/test-guest";
/// Where the guest's COM1 goes.
const SERIAL_LOG: &str = "/tmp/vmm-edu-serial.log";
/// Where the VMM's own messages go (a file: a pipe nobody reads could fill and stall it).
const VMM_LOG: &str = "/tmp/vmm-edu.log";
/// A safety limit, not a timing assertion: under TCG every L2 instruction is emulated and each
/// exit crosses two hypervisors; the edu completes each DMA 100 ms after it starts.
const SAFETY_LIMIT: Duration = Duration::from_secs(240);

/// The group's cases for a boot.
pub fn cases(boot: Boot) -> Vec<Case> {
    if boot != Boot::Devices {
        return Vec::new();
    }
    vec![Case::kernel_only("edu-passthrough-guest-dma", || {
        Outcome::from_result(edu_passthrough_guest())
    })]
}

fn edu_passthrough_guest() -> Check {
    let edu = SysRoot::system().edu().map_err(|e| e.to_string())?;
    for file in [VMM, GUEST] {
        ensure(Path::new(file).is_file(), || {
            format!("{file} is not in the initramfs")
        })?;
    }
    let device = format!("vfio=/sys/bus/pci/devices/{}", edu.bdf);
    let args = [
        "--kernel",
        GUEST,
        "--memory",
        "64M",
        "--device",
        device.as_str(),
        "--serial",
        &format!("file={SERIAL_LOG}"),
    ];
    let log = fs::File::create(VMM_LOG).map_err(|e| format!("creating {VMM_LOG}: {e}"))?;
    let log2 = log
        .try_clone()
        .map_err(|e| format!("dup of {VMM_LOG}: {e}"))?;
    let start = Instant::now();
    let mut child = Command::new(VMM)
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::from(log))
        .stderr(Stdio::from(log2))
        .spawn()
        .map_err(|e| format!("starting {VMM}: {e}"))?;
    let status = loop {
        match child.try_wait() {
            Ok(Some(status)) => break status,
            Ok(None) if start.elapsed() < SAFETY_LIMIT => thread::sleep(Duration::from_millis(100)),
            Ok(None) => {
                // Our own child, by its handle.
                let _ = child.kill();
                let _ = child.wait();
                return Err(format!(
                    "{VMM} did not finish within the {} s safety limit; guest said: {}",
                    SAFETY_LIMIT.as_secs(),
                    guest_output().join(" | ")
                ));
            }
            Err(e) => return Err(format!("waiting for {VMM}: {e}")),
        }
    };
    let elapsed = start.elapsed();
    let stderr = fs::read_to_string(VMM_LOG).unwrap_or_default();
    let lines = guest_output();
    // For the people reading the console log: how long the nested guest took.
    eprintln!(
        "lab-runner: vmm with the edu passed through ran {:.1} s ({status}); vmm: {}; guest: {}",
        elapsed.as_secs_f64(),
        stderr.trim().replace('\n', " | "),
        lines.join(" | ")
    );
    ensure(status.success(), || {
        format!(
            "{VMM} {} exited with {status}: {}; guest said: {}",
            args.join(" "),
            stderr.trim(),
            lines.join(" | ")
        )
    })?;
    ensure(
        lines
            .iter()
            .any(|l| l.starts_with("guest: edu ") && l.contains(": ok: ")),
        || format!("no edu line from the guest: {}", lines.join(" | ")),
    )?;
    ensure(
        lines.last().map(String::as_str) == Some("guest: PASS"),
        || format!("the guest did not pass: {}", lines.join(" | ")),
    )
}

/// The guest's serial output, one entry per line (its CR LF endings removed).
fn guest_output() -> Vec<String> {
    fs::read_to_string(SERIAL_LOG)
        .unwrap_or_default()
        .lines()
        .map(|l| l.trim_end_matches('\r').to_owned())
        .filter(|l| !l.is_empty())
        .collect()
}
