//! `vmm`: boot a guest under KVM.
//!
//! Every failure ends as one line on stderr and a non-zero status (see `vmm --help`); nothing
//! reaches a panic or a `Debug` print of an error.

use std::process::ExitCode;

use clap::Parser;
use vmm::cli::{Cli, ParseOutcome, explain};
use vmm::launch::{error_line, exit_status, launch};
use vmm::power::ExitReason;

/// Status for an invalid command line.
const USAGE_ERROR: u8 = 2;
/// Status for a machine that could not be set up or started.
const SETUP_ERROR: u8 = 1;

fn main() -> ExitCode {
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(err) => {
            return match explain(&err) {
                ParseOutcome::Display(text) => {
                    print!("{text}");
                    ExitCode::SUCCESS
                }
                ParseOutcome::Error(line) => {
                    eprintln!("vmm: {line}");
                    ExitCode::from(USAGE_ERROR)
                }
            };
        }
    };
    env_logger::Builder::new()
        .filter_level(cli.log_level.into())
        .init();
    let config = match cli.into_config() {
        Ok(config) => config,
        Err(err) => {
            eprintln!("vmm: {err} (see vmm --help)");
            return ExitCode::from(USAGE_ERROR);
        }
    };
    match launch(&config) {
        Ok(reason) => {
            if reason != ExitReason::PowerOff {
                eprintln!("vmm: {reason}");
            }
            ExitCode::from(exit_status(&reason))
        }
        Err(err) => {
            eprintln!("vmm: {}", error_line(&err));
            ExitCode::from(SETUP_ERROR)
        }
    }
}
