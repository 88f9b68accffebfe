//! The kernel lab's runner (see `lab/run` and `tests::lab`).
//!
//! - `lab-runner run`: inside the lab guest, runs the groups registered for this boot and prints
//!   one `LAB-CASE` line per case, then `LAB-DONE` (also to `--results`, the lab's second serial
//!   port, which carries nothing else).
//! - `lab-runner summarize mock=FILE devices=FILE`: on the host, reads those lines back from each
//!   boot's results and prints every case, the skips, failures and disagreements, and the closing
//!   `lab: N cases, ...` line (see `tests::lab::summary`). Exits 0 only when every boot finished and the lab passed.

use std::fs::{self, File, OpenOptions};
use std::io::{self, Write};
use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};
use tests::lab::groups;
use tests::lab::outcome::{Boot, UnknownNameError};
use tests::lab::report::{self, ReportParseError};
use tests::lab::runner::{self, Selection};
use tests::lab::summary::{IncompleteBootError, Summary};
use thiserror::Error;

/// Runs the kernel lab's test groups, or summarizes their results.
#[derive(Debug, Parser)]
#[command(name = "lab-runner")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Run the groups of this boot (inside the lab guest).
    Run {
        /// The boot: mock or devices. Default: `lab.boot=` of /proc/cmdline.
        #[arg(long)]
        boot: Option<Boot>,
        /// Run only cases whose `<group>/<case>` contains this text.
        #[arg(long)]
        filter: Option<String>,
        /// Also write the report lines to this file (the lab's results serial port).
        #[arg(long)]
        results: Option<PathBuf>,
    },
    /// Summarize the results of the boots (on the host), as BOOT=FILE pairs.
    Summarize {
        /// `mock=FILE`, `devices=FILE`: each boot's results.
        #[arg(required = true, value_parser = parse_boot_file)]
        results: Vec<(Boot, PathBuf)>,
    },
}

/// What stops the runner.
#[derive(Debug, Error)]
enum LabRunnerError {
    #[error("cannot read {path}: {source}")]
    Read { path: PathBuf, source: io::Error },
    #[error("no lab.boot= on the kernel command line ({0:?}); pass --boot")]
    NoBoot(String),
    #[error("kernel command line: {0}")]
    BadBoot(UnknownNameError),
    #[error("cannot open results file {path}: {source}")]
    OpenResults { path: PathBuf, source: io::Error },
    #[error("cannot write report lines: {0}")]
    Write(io::Error),
    #[error("{path}: {source}")]
    Parse {
        path: PathBuf,
        source: ReportParseError,
    },
    #[error("{0}")]
    Incomplete(IncompleteBootError),
}

fn parse_boot_file(arg: &str) -> Result<(Boot, PathBuf), String> {
    let (boot, path) = arg
        .split_once('=')
        .ok_or_else(|| format!("expected BOOT=FILE, got '{arg}'"))?;
    Ok((
        boot.parse().map_err(|e: UnknownNameError| e.to_string())?,
        path.into(),
    ))
}

fn boot_from_cmdline() -> Result<Boot, LabRunnerError> {
    let path = PathBuf::from("/proc/cmdline");
    let cmdline =
        fs::read_to_string(&path).map_err(|source| LabRunnerError::Read { path, source })?;
    let word = cmdline
        .split_whitespace()
        .find_map(|w| w.strip_prefix("lab.boot="))
        .ok_or_else(|| LabRunnerError::NoBoot(cmdline.trim().to_owned()))?;
    word.parse().map_err(LabRunnerError::BadBoot)
}

/// Writes each report line to stdout and, when given, to the results port, flushing both.
struct Output {
    results: Option<File>,
}

impl Output {
    fn line(&mut self, line: &str) -> Result<(), LabRunnerError> {
        let mut stdout = io::stdout().lock();
        writeln!(stdout, "{line}")
            .and_then(|()| stdout.flush())
            .map_err(LabRunnerError::Write)?;
        if let Some(file) = &mut self.results {
            writeln!(file, "{line}")
                .and_then(|()| file.flush())
                .map_err(LabRunnerError::Write)?;
        }
        Ok(())
    }
}

fn run(
    boot: Option<Boot>,
    filter: Option<String>,
    results: Option<PathBuf>,
) -> Result<bool, LabRunnerError> {
    let boot = match boot {
        Some(boot) => boot,
        None => boot_from_cmdline()?,
    };
    let results = results
        .map(|path| {
            OpenOptions::new()
                .append(true)
                .create(true)
                .open(&path)
                .map_err(|source| LabRunnerError::OpenResults { path, source })
        })
        .transpose()?;
    let mut out = Output { results };
    let selection = Selection { boot, filter };
    let mut write_error = None;
    let reports = runner::run_groups(groups::ALL, &selection, |report| {
        if write_error.is_none() {
            write_error = out.line(&report.to_line()).err();
        }
    });
    if let Some(e) = write_error {
        return Err(e);
    }
    out.line(&report::done_line(boot, reports.len()))?;

    let mut summary = Summary::new();
    reports
        .into_iter()
        .for_each(|r| summary.add(report::Record::Case(r)));
    for line in summary.render() {
        println!("lab-runner: {line}");
    }
    Ok(summary.passed())
}

fn summarize(results: &[(Boot, PathBuf)]) -> Result<bool, LabRunnerError> {
    let mut summary = Summary::new();
    for (_, path) in results {
        let text = fs::read_to_string(path).map_err(|source| LabRunnerError::Read {
            path: path.clone(),
            source,
        })?;
        for line in text.lines() {
            let record = report::parse_line(line).map_err(|source| LabRunnerError::Parse {
                path: path.clone(),
                source,
            })?;
            if let Some(record) = record {
                summary.add(record);
            }
        }
    }
    for (boot, _) in results {
        summary
            .check_complete(*boot)
            .map_err(LabRunnerError::Incomplete)?;
    }
    for line in summary.render() {
        println!("lab: {line}");
    }
    Ok(summary.passed())
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Run {
            boot,
            filter,
            results,
        } => run(boot, filter, results),
        Command::Summarize { results } => summarize(&results),
    };
    match result {
        Ok(true) => ExitCode::SUCCESS,
        Ok(false) => ExitCode::from(1),
        Err(e) => {
            eprintln!("lab-runner: {e}");
            ExitCode::from(2)
        }
    }
}
