//! The kernel lab's test framework (test tier 5, see `lab/run`).
//!
//! `lab/run` boots a Linux 6.12 with iommufd, the VFIO cdev, the iommufd selftest mock domain and
//! the `mtty` sample mdev under QEMU twice, and runs the static binary `lab-runner` inside each
//! boot:
//!
//! - [`Boot::Mock`]: no vIOMMU, for the selftest mock domain (`IOMMU_TEST_CMD`).
//! - [`Boot::Devices`]: intel-iommu, `edu` and `nvme` bound to vfio-pci, one `mtty` mdev.
//!
//! Test code comes in groups ([`groups::ALL`]). A group lists its [`Case`]s for a boot; each case
//! runs on one or more [`Backend`]s and yields an [`Outcome`] per backend. The runner prints one
//! [`report`] line per case; `lab/run` reads the lines of both boots back and prints the
//! [`summary`]. A case run on both backends whose results differ (one passes, the other fails)
//! is a disagreement and fails the lab.
//!
//! Finding the lab's devices: [`sysfs::SysRoot`].

pub mod case;
pub mod groups;
pub mod outcome;
pub mod report;
pub mod runner;
pub mod summary;
pub mod sysfs;

pub use case::{Case, GroupDef};
pub use outcome::{Backend, Boot, Outcome};
