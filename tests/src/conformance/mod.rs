//! The iommufd conformance suite: one list of behaviour cases, run against every host backend.
//!
//! Each case ([`Case`]) sets up a fresh context, makes uAPI calls and checks each result or
//! errno against what Linux does (`kernel-uapi.md` section 1, and the kernel source where they
//! differ). Bad-input cases also check, through the uAPI only, that nothing changed (the mock
//! domain's `MD_CHECK_MAP` over what should still be mapped, and an unmap-all reporting exactly
//! the bytes that should be mapped), so the same check works on the kernel.
//!
//! Backends ([`Backend`]): the emulated host ([`EmulatedBackend`], always; one column per
//! configuration, or configured as one boot of the kernel lab) and the kernel's iommufd
//! ([`KernelBackend`], on `/dev/iommu` where it exists). A case that needs what a backend lacks (the selftest interface, a
//! kernel version, a VT-d device, control of the memlock limit) is skipped with the reason.
//!
//! Use [`run`] for a [`Report`] (a library API the lab runner calls), [`Report::render`] for
//! the table, and [`Report::failures`] to fail a test. The legacy type1 container has its own
//! cases and backends in [`type1`], printed the same way.

mod backend;
mod case;
pub mod cases;
mod emulated;
mod env;
mod kernel;
mod memory;
pub mod process;
mod report;
pub mod type1;

pub use backend::{Backend, BackendInfo, Needs, Opened, Skip, Versions, VtdBinder};
pub(crate) use case::panic_message;
pub use case::{Case, Fail, Outcome};
pub use emulated::{EmulatedBackend, Privileges};
pub use env::Env;
pub use kernel::{KernelBackend, KernelOpener};
pub use memory::Buffer;
pub use report::{Report, Row};

/// Runs every case of `cases` against every backend (each case in a fresh context).
pub fn run(backends: &[&dyn Backend], cases: &[Case]) -> Report {
    let names = backends.iter().map(|b| b.name()).collect();
    let rows = cases
        .iter()
        .map(|case| Row {
            case: case.name,
            outcomes: backends.iter().map(|b| case::run_case(*b, case)).collect(),
        })
        .collect();
    Report::new(names, rows)
}
