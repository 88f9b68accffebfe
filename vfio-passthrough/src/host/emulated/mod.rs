//! The emulated host: an in-process model of the kernel's iommufd, faithful errno for errno.
//!
//! It is what makes `--device vfio=emulated:...` work on hosts without an IOMMU, and what the
//! conformance suite holds to the kernel's behaviour. An [`EmulatedHost`] is the machine (kernel
//! version, memlock limit, the pins of every page); [`EmulatedHost::open_iommufd`] opens an
//! [`EmulatedIommufd`], which implements the [`Iommufd`](super::iommufd::Iommufd) and
//! [`IommufdSelftest`](super::iommufd::IommufdSelftest) seams. Devices bind to a context with
//! [`EmulatedIommufd::bind`] (behind an [`IommuProfile`]: the selftest mock IOMMU or a VT-d-like
//! one), or are created by the selftest interface.
//!
//! Memory is reached as the kernel reaches it, never through Rust references: the VMAs of the
//! process are queried at pin time (`EFAULT` like `pin_user_pages`), and bytes are copied with
//! `process_vm_readv`/`process_vm_writev` or `pread`/`pwrite` on memfds.
//!
//! Hooks for the software IOMMU that translates device DMA: [`EmulatedDevice::attachment`]
//! (what a device, or one of its PASIDs, is attached to), [`Domain::translate`] and
//! [`Domain::mark_dirty`] (stage 2), [`NestedTable`] (the user's stage 1, its invalidations and
//! fault queue), [`Pages::read`]/[`Pages::write`] (the memory), [`FaultQueue::report`]
//! (page requests).
//!
//! Modules: `config` and `features` (versions), `host`, `accounting` and `pin_registry` (the
//! machine), `vma`, `user_memory` and `pages` (memory), `ioas`, `page_table`, `dirty_bits` and
//! `domain` (address spaces), `objects`, `hwpt`, `device`, `fault` (objects), `profile` and
//! `vtd` (IOMMU hardware), `context`, `ctx_ioas`, `ctx_hwpt`, `attach`, `selftest` and
//! `iommufd_impl` (the ioctls); [`type1`] is the legacy type1 container and its groups on the
//! same emulated IOMMU.

mod accounting;
mod attach;
mod config;
mod context;
mod ctx_hwpt;
mod ctx_ioas;
mod device;
mod dirty_bits;
mod domain;
mod fault;
mod features;
mod host;
mod hwpt;
mod ioas;
mod iommufd_impl;
mod objects;
mod page_table;
mod pages;
mod pin_registry;
mod profile;
mod range_count;
mod selftest;
#[cfg(test)]
mod test_memory;
#[cfg(test)]
mod tests;
pub mod type1;
mod user_memory;
mod vma;
mod vtd;

pub use config::{HostConfig, KernelVersion};
pub use context::{AreaInfo, EmulatedIommufd};
pub use device::{Attachment, EmulatedDevice, MockDevice};
pub use domain::{Domain, Translation};
pub use fault::{FaultQueue, PageRequest};
pub use host::EmulatedHost;
pub use hwpt::{Invalidation, InvalidationListener, NestedTable, Stage1};
pub use page_table::Prot;
pub use pages::Pages;
pub use profile::{
    Driver, Geometry, IOMMU_HW_INFO_SELFTEST_REGVAL, IommuProfile, MOCK_HUGE_PAGE_SIZE,
    MOCK_IO_PAGE_SIZE,
};
pub use vma::{PageIdentity, PageSource};
pub use vtd::{VTD_ADDRESS_WIDTH, VTD_MSI_WINDOW, VtdIommu};

/// The CPU page size the emulated kernel assumes (x86-64).
pub const PAGE_SIZE: u64 = 4096;
/// `PAGE_SHIFT`.
pub const PAGE_SHIFT: u32 = 12;
