//! The legacy VFIO type1 container on the emulated host: [`EmulatedType1Container`]
//! (`/dev/vfio/vfio` with `vfio_iommu_type1`, type1v2 semantics) and [`EmulatedGroup`]
//! (`/dev/vfio/<group>`), implementing the [`Type1Container`](crate::host::type1::Type1Container)
//! seam errno for errno as Linux 6.12's driver does (`kernel-uapi.md` 2.2 and
//! `drivers/vfio/{vfio_iommu_type1,container,group}.c`).
//!
//! It is the same emulated IOMMU as the iommufd side behind another uAPI: every group sits
//! behind a VT-d-like IOMMU ([`GroupIommu`], address width configurable so it can mirror QEMU's
//! `intel-iommu`), mappings are [`Pages`](crate::host::emulated::Pages) pinned and charged to
//! the process (`mm->locked_vm`, against the host's memlock limit) and mapped into paging
//! [`Domain`](crate::host::emulated::Domain)s, and a group's devices translate their DMA
//! through the domain their group is attached to ([`GroupAttachment`], the same
//! [`Attachment::Paging`](crate::host::emulated::Attachment::Paging) a device attached
//! through iommufd sees).
//!
//! What differs from the kernel, knowingly: mdev-style groups (pinning drivers, `vfio_dma_rw`)
//! are not modelled, so every group is IOMMU-backed and every mapped page reads dirty;
//! `VFIO_DMA_MAP_FLAG_VADDR` records the new address, while DMA keeps reaching the memory pinned
//! at map time through its original address (the kernel reaches the pinned pages directly), so
//! that address must stay mapped in-process; a group joins an existing domain when its IOMMU
//! has the same geometry and snooping, where the Intel driver would also accept some narrower
//! IOMMUs.
//!
//! Modules: `config` (module parameters, the group's IOMMU), `container` (the container file
//! and `SET_IOMMU`), `driver` (the driver's state, groups joining and leaving, extensions and
//! `GET_INFO`), `dma_ops` (MAP, UNMAP, DIRTY_PAGES), `mappings`, `iova_list`, `dirty`
//! (bitmaps), `group` (the group file and its devices).

mod config;
mod container;
mod dirty;
mod dma_ops;
mod driver;
mod group;
mod iova_list;
mod mappings;
#[cfg(test)]
mod tests;

pub use config::{DEFAULT_DMA_ENTRY_LIMIT, GroupIommu, Type1Config};
pub use container::EmulatedType1Container;
pub use dirty::DIRTY_BITMAP_SIZE_MAX;
pub use driver::VFIO_TYPE1_NESTING_IOMMU;
pub use group::{
    EmulatedGroup, GroupAttachment, GroupDeviceAccess, GroupMember, VFIO_GROUP_FLAGS_CONTAINER_SET,
    VFIO_GROUP_FLAGS_VIABLE,
};
