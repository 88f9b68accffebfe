//! The type1 conformance suite: behaviour cases for the legacy VFIO container
//! (`/dev/vfio/vfio` with `vfio_iommu_type1`) and its groups, run against every backend.
//!
//! Each case ([`Type1Case`]) gets a fresh container and groups, makes uAPI calls and checks each
//! result or errno against Linux 6.12's driver (`kernel-uapi.md` 2.2 and its verified list, and
//! `drivers/vfio/{vfio_iommu_type1,container,group}.c` where they are silent). Bad-input cases
//! then re-check the state through the uAPI only: `DMA_AVAIL` and an unmap-all reporting exactly
//! the bytes that should be mapped ([`Type1Env::expect_exactly`]), so the same check holds on
//! the kernel.
//!
//! Backends ([`Type1Backend`]): the emulated host ([`EmulatedType1Backend`], always; one column
//! per IOMMU configuration) and the kernel ([`KernelType1Backend`], given openers for a container
//! and groups, where `/dev/vfio` exists). A case that needs what a backend lacks (two groups, a
//! device to open, control of the memlock limit or of `dma_entry_limit`) is skipped with the
//! reason.
//!
//! Use [`run`] for a [`Report`] (the iommufd suite's table), [`Type1Case::run_on`] for one case
//! on one backend (what a lab group calls), and [`cases::ALL`] for the list.

mod backend;
mod case;
pub mod cases;
mod emulated;
mod env;
mod kernel;

pub use backend::{Type1Backend, Type1Facts, Type1Group, Type1Needs, Type1Opened};
pub use case::Type1Case;
pub use emulated::EmulatedType1Backend;
pub use env::{Type1Buf, Type1Env};
pub use kernel::{
    ContainerOpener, DMA_ENTRY_LIMIT_PARAM, GroupOpener, KernelType1Backend, container_opener,
    group_opener,
};

use super::report::{Report, Row};

/// Runs every case of `cases` against every backend (each case with a fresh container).
pub fn run(backends: &[&dyn Type1Backend], cases: &[Type1Case]) -> Report {
    let names = backends.iter().map(|b| b.name()).collect();
    let rows = cases
        .iter()
        .map(|case| Row {
            case: case.name,
            outcomes: backends.iter().map(|b| case.run_on(*b)).collect(),
        })
        .collect();
    Report::new(names, rows)
}
