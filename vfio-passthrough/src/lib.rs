//! Everything that touches the host for device assignment: the host IOMMU seam (iommufd and the
//! legacy type1 container) and the VFIO device seam, each with kernel and emulated backends, and
//! the passthrough PCI device built on them.

pub mod emulated_device;
pub mod errno;
pub mod host;
pub mod migration_adapters;
pub mod pci;
pub mod sys;
pub mod vfio;
