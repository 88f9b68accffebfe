//! The command line: options, their parsing and checking, and the one-line error a user sees.
//!
//! Each option is checked as clap parses it; what needs all options at once (device ids must be
//! distinct) is checked by [`Cli::into_config`]. Host devices are checked against the host
//! (path, driver, IOMMU backend) by [`launch`](crate::launch::launch) before the machine is
//! built.

use std::path::PathBuf;

use clap::error::ErrorKind;
use clap::{Parser, ValueEnum};

use crate::launch::VmConfig;
use crate::machine::MAX_VCPUS;
use crate::passthrough::{DeviceArg, DeviceSpecError, HostIommu, assign_ids};
use crate::platform::SerialSink;

const AFTER_HELP: &str = "\
Passthrough devices (--device vfio=<SPEC>[,id=<NAME>], repeatable; each takes the next free
PCI slot on bus 0, in order):
  emulated:dma-engine[,pasid=on|off][,migration=both|v2|v1|off][,iommu=vtd|mock]
                                  the emulated DMA engine (docs/dma-engine.md); defaults on,
                                  both, vtd
  emulated:mailbox[,iommu=vtd|mock]
                                  the emulated mailbox (a doorbell and INTx)
  /sys/bus/pci/devices/<BDF>      a host PCI device bound to vfio-pci
  /sys/bus/mdev/devices/<UUID>    a host mediated device
  /dev/vfio/devices/vfio<N>       a host device's VFIO cdev (needs iommufd)
  <BDF>                           a host PCI device by address, e.g. 0000:01:00.0
  id=<NAME>                       1 to 32 letters, digits, '-', '_' or '.'; default vfio0,
                                  vfio1, ... (the lowest not taken)
Emulated devices always use the emulated host (in-process, with a software IOMMU; no host
IOMMU needed): its iommufd, or its type1 container with --host-iommu container. Host devices
use the kernel backend --host-iommu picks. Guest RAM is mapped for device DMA at IOVA = guest
physical address.

Exit status:
  0  the guest powered off
  1  the machine could not be set up or started (the error is printed)
  2  the command line is invalid
  3  the guest asked for a reset (the VMM exits instead of rebooting)
  4  a vCPU triple-faulted
  5  a vCPU failed (for example a KVM emulation failure)";

/// Boot a guest under KVM.
#[derive(Debug, Parser)]
#[command(name = "vmm", version, about = "Boot a guest under KVM.", after_help = AFTER_HELP)]
pub struct Cli {
    /// Kernel image to boot: an x86-64 ELF (`vmlinux`, entered through its PVH note if it has
    /// one, else in 64-bit mode) or a bzImage (64-bit boot protocol).
    #[arg(long, value_name = "PATH")]
    pub kernel: PathBuf,

    /// Initial RAM disk for the kernel.
    #[arg(long, value_name = "PATH")]
    pub initramfs: Option<PathBuf>,

    /// Kernel command line.
    #[arg(long, value_name = "STRING", default_value = "")]
    pub cmdline: String,

    /// Guest RAM: a number of bytes with an optional K, M, G or T suffix (powers of 1024), a
    /// multiple of 4 KiB, at least 2M and at most 63G.
    #[arg(long, value_name = "SIZE", default_value = "512M", value_parser = parse_size)]
    pub memory: u64,

    /// Number of vCPUs (1 to 254).
    #[arg(long, value_name = "N", default_value_t = 1, value_parser = parse_cpus)]
    pub cpus: u32,

    /// Where COM1 output goes: `stdout`, `null`, or `file=<PATH>` (created or truncated).
    #[arg(long, value_name = "SINK", default_value = "stdout", value_parser = parse_serial)]
    pub serial: SerialSink,

    /// Pass a device through to the guest: `vfio=<SPEC>[,id=<NAME>]`, repeatable (the SPEC
    /// forms are listed below).
    #[arg(long = "device", value_name = "vfio=SPEC[,id=NAME]", value_parser = parse_device)]
    pub devices: Vec<DeviceArg>,

    /// The host IOMMU backend: iommufd or the legacy type1 container (the emulated host's for
    /// emulated devices).
    #[arg(long, value_enum, value_name = "BACKEND", default_value_t = HostIommu::Auto)]
    pub host_iommu: HostIommu,

    /// Log messages at this level and above go to stderr.
    #[arg(long, value_enum, value_name = "LEVEL", default_value_t = LogLevel::Warn)]
    pub log_level: LogLevel,
}

/// How much the VMM logs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum LogLevel {
    /// Nothing.
    Off,
    /// Errors only.
    Error,
    /// Errors and warnings.
    Warn,
    /// Also the machine's life cycle.
    Info,
    /// Also device activity.
    Debug,
    /// Everything.
    Trace,
}

impl From<LogLevel> for log::LevelFilter {
    fn from(level: LogLevel) -> Self {
        match level {
            LogLevel::Off => Self::Off,
            LogLevel::Error => Self::Error,
            LogLevel::Warn => Self::Warn,
            LogLevel::Info => Self::Info,
            LogLevel::Debug => Self::Debug,
            LogLevel::Trace => Self::Trace,
        }
    }
}

impl Cli {
    /// The machine the options describe; devices get their ids (two with the same id are
    /// refused).
    pub fn into_config(self) -> Result<VmConfig, DeviceSpecError> {
        Ok(VmConfig {
            kernel: self.kernel,
            initramfs: self.initramfs,
            cmdline: self.cmdline,
            memory_size: self.memory,
            vcpus: self.cpus,
            serial: self.serial,
            devices: assign_ids(self.devices)?,
            host_iommu: self.host_iommu,
        })
    }
}

/// Parses one `--device` value.
fn parse_device(s: &str) -> Result<DeviceArg, String> {
    DeviceArg::parse(s).map_err(|e| e.to_string())
}

/// Parses "512M", "2G", "65536" (bytes, K/M/G/T in powers of 1024, case-insensitive, optional
/// trailing "iB" or "B").
pub fn parse_size(s: &str) -> Result<u64, String> {
    let bad =
        || format!("'{s}' is not a size: expected a number with an optional K, M, G or T suffix");
    let lower = s.trim().to_ascii_lowercase();
    let body = lower
        .strip_suffix("ib")
        .or_else(|| lower.strip_suffix('b'))
        .unwrap_or(&lower);
    let (digits, shift) = match body.chars().last() {
        Some('k') => (&body[..body.len() - 1], 10),
        Some('m') => (&body[..body.len() - 1], 20),
        Some('g') => (&body[..body.len() - 1], 30),
        Some('t') => (&body[..body.len() - 1], 40),
        _ => (body, 0),
    };
    if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return Err(bad());
    }
    let n: u64 = digits.parse().map_err(|_| bad())?;
    n.checked_mul(1 << shift)
        .ok_or_else(|| format!("'{s}' is too large a size"))
}

fn parse_cpus(s: &str) -> Result<u32, String> {
    let n: u32 = s
        .parse()
        .map_err(|_| format!("'{s}' is not a number of vCPUs"))?;
    if n == 0 || n > MAX_VCPUS {
        return Err(format!(
            "{n} vCPUs asked for; the machine supports 1 to {MAX_VCPUS}"
        ));
    }
    Ok(n)
}

/// Parses `stdout`, `null` or `file=<PATH>`.
pub fn parse_serial(s: &str) -> Result<SerialSink, String> {
    match s {
        "stdout" => Ok(SerialSink::Stdout),
        "null" => Ok(SerialSink::Null),
        _ => match s.strip_prefix("file=") {
            Some("") => Err("file= needs a path".to_string()),
            Some(path) => Ok(SerialSink::File(PathBuf::from(path))),
            None => Err(format!(
                "'{s}' is not a serial sink: expected stdout, null or file=<PATH>"
            )),
        },
    }
}

/// How a command-line problem is reported: help and version go to stdout with status 0,
/// anything else becomes one line.
#[derive(Debug, PartialEq, Eq)]
pub enum ParseOutcome {
    /// Print this (help or version text) and exit 0.
    Display(String),
    /// Print this one line to stderr and exit with the usage error status.
    Error(String),
}

/// Turns clap's multi-line error into what the user sees.
pub fn explain(err: &clap::Error) -> ParseOutcome {
    match err.kind() {
        ErrorKind::DisplayHelp
        | ErrorKind::DisplayVersion
        | ErrorKind::DisplayHelpOnMissingArgumentOrSubcommand => {
            ParseOutcome::Display(err.render().to_string())
        }
        _ => {
            let text = err.render().to_string();
            // The first paragraph says what is wrong (a list of missing options continues on
            // indented lines); usage and tips follow after a blank line.
            let first: Vec<&str> = text
                .lines()
                .take_while(|l| !l.trim().is_empty())
                .map(str::trim)
                .collect();
            let line = first.join(" ");
            let line = line.strip_prefix("error: ").unwrap_or(&line);
            ParseOutcome::Error(format!("{line} (see vmm --help)"))
        }
    }
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use super::*;

    fn parse(args: &[&str]) -> Result<Cli, clap::Error> {
        Cli::try_parse_from(std::iter::once("vmm").chain(args.iter().copied()))
    }

    #[test]
    fn sizes_take_binary_suffixes() {
        assert_eq!(parse_size("4096"), Ok(4096));
        assert_eq!(parse_size("512M"), Ok(512 << 20));
        assert_eq!(parse_size("2g"), Ok(2 << 30));
        assert_eq!(parse_size("64KiB"), Ok(64 << 10));
        assert_eq!(parse_size("1T"), Ok(1 << 40));
    }

    #[test]
    fn malformed_sizes_are_rejected_with_the_input() {
        for bad in ["", "M", "12X", "-1M", "1.5G", "0x100"] {
            let err = parse_size(bad).unwrap_err();
            assert!(err.contains(&format!("'{bad}'")), "{err}");
        }
        assert_eq!(
            parse_size("99999999999T"),
            Err("'99999999999T' is too large a size".into())
        );
    }

    #[test]
    fn defaults_are_512m_one_vcpu_serial_on_stdout() {
        let cli = parse(&["--kernel", "k"]).unwrap();
        assert_eq!((cli.memory, cli.cpus), (512 << 20, 1));
        assert!(matches!(cli.serial, SerialSink::Stdout));
        assert_eq!(cli.log_level, LogLevel::Warn);
    }

    #[test]
    fn serial_sinks_parse() {
        assert!(matches!(parse_serial("null"), Ok(SerialSink::Null)));
        assert!(
            matches!(parse_serial("file=/tmp/out"), Ok(SerialSink::File(p)) if p == Path::new("/tmp/out"))
        );
        parse_serial("file=").unwrap_err();
        parse_serial("tcp:1234").unwrap_err();
    }

    #[test]
    fn zero_or_too_many_cpus_are_usage_errors_on_one_line() {
        for n in ["0", "255", "many"] {
            let err = parse(&["--kernel", "k", "--cpus", n]).unwrap_err();
            let ParseOutcome::Error(line) = explain(&err) else {
                panic!("not an error: {err}");
            };
            assert!(!line.contains('\n'));
            assert!(line.contains("--cpus"), "{line}");
        }
    }

    #[test]
    fn missing_kernel_names_the_option() {
        let err = parse(&[]).unwrap_err();
        assert_eq!(
            explain(&err),
            ParseOutcome::Error(
                "the following required arguments were not provided: --kernel <PATH> \
                 (see vmm --help)"
                    .into()
            )
        );
    }

    #[test]
    fn help_is_displayed_not_an_error() {
        let err = parse(&["--help"]).unwrap_err();
        let ParseOutcome::Display(text) = explain(&err) else {
            panic!("help should be displayed");
        };
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
        ] {
            assert!(text.contains(option), "help lacks {option}");
        }
        assert!(text.contains("Exit status"));
        for form in [
            "emulated:dma-engine",
            "/sys/bus/pci/devices/<BDF>",
            "/dev/vfio/devices",
        ] {
            assert!(text.contains(form), "help lacks the device form {form}");
        }
        for backend in ["auto", "iommufd", "container"] {
            assert!(text.contains(backend), "help lacks --host-iommu {backend}");
        }
    }

    #[test]
    fn devices_are_repeatable_and_get_ids_in_order() {
        let cli = parse(&[
            "--kernel",
            "k",
            "--device",
            "vfio=emulated:dma-engine",
            "--device",
            "vfio=emulated:mailbox,id=mbox",
            "--host-iommu",
            "container",
        ])
        .unwrap();
        assert_eq!(cli.host_iommu, HostIommu::Container);
        let config = cli.into_config().unwrap();
        let ids: Vec<&str> = config.devices.iter().map(|d| d.id.as_str()).collect();
        assert_eq!(ids, ["vfio0", "mbox"]);
        assert_eq!(config.host_iommu, HostIommu::Container);
    }

    #[test]
    fn a_bad_device_value_is_a_usage_error_naming_it() {
        let err = parse(&["--kernel", "k", "--device", "vfio=emulated:gpu"]).unwrap_err();
        let ParseOutcome::Error(line) = explain(&err) else {
            panic!("not an error: {err}");
        };
        assert!(line.contains("unknown emulated model 'gpu'"), "{line}");
        assert!(!line.contains('\n'));
        let err = parse(&["--kernel", "k", "--host-iommu", "vt-d"]).unwrap_err();
        let ParseOutcome::Error(line) = explain(&err) else {
            panic!("not an error: {err}");
        };
        assert!(line.contains("'vt-d'"), "{line}");
    }

    #[test]
    fn duplicate_device_ids_are_refused() {
        let cli = parse(&[
            "--kernel",
            "k",
            "--device",
            "vfio=emulated:dma-engine,id=a",
            "--device",
            "vfio=emulated:mailbox,id=a",
        ])
        .unwrap();
        assert_eq!(
            cli.into_config().unwrap_err().to_string(),
            "device id 'a' is used by more than one --device"
        );
    }
}
