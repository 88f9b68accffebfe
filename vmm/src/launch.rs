//! From a checked configuration to a finished guest: build the machine, load the kernel, run,
//! and map the way it ended to the process exit status.

use std::fs::File;
use std::path::PathBuf;

use crate::acpi::{self, AcpiError};
use crate::assembly::DeviceConfig;
use crate::loader::{self, LoaderError};
use crate::machine::{Machine, MachineConfig, MachineError};
use crate::passthrough::{
    BackendError, DeviceSource, HostIommu, PassthroughSpec, check_host_device,
};
use crate::platform::SerialSink;
use crate::power::ExitReason;
use vfio_passthrough::vfio::kernel::KernelDeviceOpener;

/// Everything needed to boot a guest.
#[derive(Debug, Clone)]
pub struct VmConfig {
    /// The kernel image.
    pub kernel: PathBuf,
    /// The initramfs, if any.
    pub initramfs: Option<PathBuf>,
    /// The kernel command line.
    pub cmdline: String,
    /// Guest RAM in bytes.
    pub memory_size: u64,
    /// Number of vCPUs.
    pub vcpus: u32,
    /// Where COM1 output goes.
    pub serial: SerialSink,
    /// The passthrough devices, in `--device` order.
    pub devices: Vec<PassthroughSpec>,
    /// The host IOMMU backend of passthrough devices (`--host-iommu`).
    pub host_iommu: HostIommu,
}

/// Why the guest could not be started.
#[derive(Debug, thiserror::Error)]
pub enum LaunchError {
    /// A file named on the command line cannot be read.
    #[error("cannot open the {what} {}", path.display())]
    Open {
        /// "kernel image" or "initramfs".
        what: &'static str,
        /// The file.
        path: PathBuf,
        /// The host error.
        #[source]
        source: std::io::Error,
    },
    /// A host device cannot be passed through (checked before the machine is built).
    #[error("passthrough device {id}")]
    HostDevice {
        /// The device's id.
        id: String,
        /// Why.
        #[source]
        source: Box<BackendError>,
    },
    /// The machine could not be built or started.
    #[error(transparent)]
    Machine(#[from] MachineError),
    /// The kernel, its command line or initramfs could not be loaded.
    #[error(transparent)]
    Kernel(#[from] LoaderError),
    /// The ACPI tables could not be written.
    #[error(transparent)]
    Acpi(#[from] AcpiError),
}

/// Boots `config` and runs the guest until it stops.
pub fn launch(config: &VmConfig) -> Result<ExitReason, LaunchError> {
    // Unreadable files are the most common mistake; report them before touching KVM.
    let files = std::iter::once(("kernel image", &config.kernel))
        .chain(config.initramfs.iter().map(|p| ("initramfs", p)));
    for (what, path) in files {
        File::open(path).map_err(|source| LaunchError::Open {
            what,
            path: path.clone(),
            source,
        })?;
    }
    // Host devices next: a wrong path or driver is reported before KVM is touched.
    let opener = KernelDeviceOpener::new().prefer_group(config.host_iommu == HostIommu::Container);
    for spec in &config.devices {
        if let DeviceSource::Host(path) = &spec.source {
            check_host_device(&opener, path, config.host_iommu).map_err(|source| {
                LaunchError::HostDevice {
                    id: spec.id.clone(),
                    source: Box::new(source),
                }
            })?;
        }
    }
    let machine = Machine::new(&MachineConfig {
        memory_size: config.memory_size,
        vcpus: config.vcpus,
        devices: DeviceConfig {
            passthrough: config.devices.clone(),
            host_iommu: config.host_iommu,
            ..DeviceConfig::new(config.serial.clone())
        },
    })?;
    let memory = machine.core().ram().memory();
    let entry = loader::load_kernel_from_paths(
        memory,
        &config.kernel,
        &config.cmdline,
        config.initramfs.as_deref(),
    )?;
    acpi::create_acpi_tables(memory, config.vcpus)?;
    Ok(machine.run(entry)?)
}

/// The process exit status for the way the guest stopped (documented in `vmm --help`).
pub fn exit_status(reason: &ExitReason) -> u8 {
    match reason {
        ExitReason::PowerOff => 0,
        ExitReason::Reset => 3,
        ExitReason::TripleFault { .. } => 4,
        ExitReason::VcpuError { .. } => 5,
    }
}

/// `err` and its sources as one line, "outer: inner: innermost", skipping a source whose text
/// the message already carries.
pub fn error_line(err: &dyn std::error::Error) -> String {
    let mut line = err.to_string();
    let mut source = err.source();
    while let Some(e) = source {
        let text = e.to_string();
        if !line.contains(&text) {
            line.push_str(": ");
            line.push_str(&text);
        }
        source = e.source();
    }
    line.replace('\n', " ")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::memory::MemoryError;

    #[test]
    fn each_exit_reason_has_its_own_status() {
        let statuses = [
            exit_status(&ExitReason::PowerOff),
            exit_status(&ExitReason::Reset),
            exit_status(&ExitReason::TripleFault { vcpu: 0 }),
            exit_status(&ExitReason::VcpuError {
                vcpu: 0,
                message: String::new(),
            }),
        ];
        assert_eq!(statuses, [0, 3, 4, 5]);
    }

    #[test]
    fn error_line_joins_sources_once() {
        let err = LaunchError::Open {
            what: "kernel image",
            path: "/nonexistent/bzImage".into(),
            source: std::io::Error::from_raw_os_error(libc::ENOENT),
        };
        assert_eq!(
            error_line(&err),
            "cannot open the kernel image /nonexistent/bzImage: No such file or directory (os error 2)"
        );
        let err = LaunchError::Machine(MachineError::Memory(MemoryError::NotPageAligned {
            size: 0x1001,
            page: 0x1000,
        }));
        assert_eq!(
            error_line(&err),
            "guest memory size 4097 bytes is not a multiple of the 4096-byte page size"
        );
    }

    #[test]
    fn missing_initramfs_is_reported_before_the_machine_is_built() {
        let config = VmConfig {
            kernel: std::env::current_exe().unwrap(),
            initramfs: Some("/nonexistent/initrd".into()),
            cmdline: String::new(),
            // Invalid too: the file check must come first.
            memory_size: 1,
            vcpus: 1,
            serial: SerialSink::Null,
            devices: Vec::new(),
            host_iommu: HostIommu::Auto,
        };
        let err = launch(&config).unwrap_err();
        assert!(
            matches!(
                err,
                LaunchError::Open {
                    what: "initramfs",
                    ..
                }
            ),
            "{err}"
        );
    }
}
