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
//! The software IOMMU translates device DMA: each bound device gets a [`Translator`]
//! ([`EmulatedDevice::dma_port`]) that resolves every access through what the device, or the
//! request's PASID, is attached to ([`EmulatedDevice::attachment`]): a paging domain (stage 2,
//! [`Domain`]) or a nested HWPT ([`NestedTable`]: the user's VT-d first stage walked through
//! its parent domain, cached in the context's IOTLB), sets A/D and dirty bits as hardware
//! does, and records faults ([`DmaFaultRecord`]), delivered to the HWPT's [`FaultQueue`] when
//! it has one.
//!
//! Modules: `config` and `features` (versions), `host`, `accounting` and `pin_registry` (the
//! machine), `vma`, `user_memory` and `pages` (memory), `ioas`, `page_table`, `dirty_bits` and
//! `domain` (address spaces), `objects`, `hwpt`, `device`, `fault` (objects), `profile` and
//! `vtd` (IOMMU hardware), `context`, `ctx_ioas`, `ctx_hwpt`, `attach`, `selftest` and
//! `iommufd_impl` (the ioctls), `translate`, `attachment_dma`, `stage2_memory`, `iotlb_glue`
//! and `fault_log`
//! (the software IOMMU); [`type1`] is the legacy type1 container and its groups on the same
//! emulated IOMMU.

mod accounting;
mod attach;
mod attachment_dma;
mod config;
mod context;
mod ctx_hwpt;
mod ctx_ioas;
mod device;
mod dirty_bits;
mod domain;
mod fault;
mod fault_log;
mod features;
mod host;
mod hwpt;
mod ioas;
mod iommufd_impl;
mod iotlb_glue;
mod objects;
mod page_table;
mod pages;
mod pin_registry;
mod profile;
mod range_count;
mod selftest;
mod stage2_memory;
#[cfg(test)]
mod test_memory;
#[cfg(test)]
mod tests;
mod translate;
#[cfg(test)]
mod translate_tests;
pub mod type1;
mod user_memory;
mod vma;
mod vtd;

pub use config::{HostConfig, KernelVersion};
pub use context::{AreaInfo, EmulatedIommufd};
pub use device::{Attachment, EmulatedDevice, MockDevice};
pub use domain::{Domain, Translation};
pub use fault::{FaultQueue, PageRequest};
pub use fault_log::{DmaFaultRecord, FAULT_LOG_CAPACITY, FaultStage, MAX_PENDING_GROUPS};
pub use host::EmulatedHost;
pub use hwpt::{Invalidation, InvalidationListener, NestedTable, Stage1};
pub use page_table::Prot;
pub use pages::Pages;
pub use profile::{
    Driver, Geometry, IOMMU_HW_INFO_SELFTEST_REGVAL, IommuProfile, MOCK_HUGE_PAGE_SIZE,
    MOCK_IO_PAGE_SIZE,
};
pub use translate::Translator;
pub use vma::{PageIdentity, PageSource, procmap_query};
pub use vtd::{VTD_ADDRESS_WIDTH, VTD_MSI_WINDOW, VtdIommu};

/// The CPU page size the emulated kernel assumes (x86-64).
pub const PAGE_SIZE: u64 = 4096;
/// `PAGE_SHIFT`.
pub const PAGE_SHIFT: u32 = 12;
