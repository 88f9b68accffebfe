//! The command line: options, their parsing and checking, and the one-line error a user sees.
//!
//! `--device vfio=...` and the host IOMMU backend option join [`Cli`] as the passthrough work
//! lands; [`Cli::into_config`] is where they become part of the [`VmConfig`].

use std::path::PathBuf;

use clap::error::ErrorKind;
use clap::{Parser, ValueEnum};

use crate::launch::VmConfig;
use crate::machine::MAX_VCPUS;
use crate::platform::SerialSink;

const EXIT_STATUS_HELP: &str = "\
Exit status:
  0  the guest powered off
  1  the machine could not be set up or started (the error is printed)
  2  the command line is invalid
  3  the guest asked for a reset (the VMM exits instead of rebooting)
  4  a vCPU triple-faulted
  5  a vCPU failed (for example a KVM emulation failure)";

/// Boot a guest under KVM.
#[derive(Debug, Parser)]
#[command(name = "vmm", version, about = "Boot a guest under KVM.", after_help = EXIT_STATUS_HELP)]
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
    /// The machine the options describe.
    pub fn into_config(self) -> VmConfig {
        VmConfig {
            kernel: self.kernel,
            initramfs: self.initramfs,
            cmdline: self.cmdline,
            memory_size: self.memory,
            vcpus: self.cpus,
            serial: self.serial,
        }
    }
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
            "--log-level",
        ] {
            assert!(text.contains(option), "help lacks {option}");
        }
        assert!(text.contains("Exit status"));
    }
}
