//! The host seams: what this crate needs from the host IOMMU, one method per uAPI call.
//!
//! - [`iommufd`]: an iommufd context (`/dev/iommu`) and its devices.
//! - [`type1`]: a legacy VFIO type1 container (`/dev/vfio/vfio`).
//!
//! Every backend of a seam answers with the kernel's errno ([`Errno`](crate::errno::Errno)), so
//! the same conformance suite runs against the kernel and the emulated host.

pub mod dma;
pub mod iommufd;
pub mod type1;
