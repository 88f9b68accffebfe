//! The vfio-pci personality of emulated devices: a [`DeviceModel`] (the hardware) behind
//! [`EmulatedVfioDevice`], which implements [`VfioDevice`](crate::vfio::VfioDevice) exactly as
//! vfio-pci presents a real function to userspace.
//!
//! | module | holds |
//! |---|---|
//! | [`device`] | [`EmulatedVfioDevice`], the lock around the model, reset, DMA connection |
//! | [`model`] | [`DeviceModel`]: what a model provides |
//! | [`regions`] | region numbering, region info and capabilities, BAR and v1 region access, mmap |
//! | [`config`] | the configuration region: vfio-pci's virtualization of configuration space |
//! | [`irqs`] | `GET_IRQ_INFO`, `SET_IRQS` and interrupt delivery to eventfds |
//! | [`phys_irq`] | the MSI/MSI-X capabilities of the physical configuration space |
//! | [`eventfd`] | eventfds taken from users, and the INTx unmask eventfd watcher |
//! | [`features`] | `VFIO_DEVICE_FEATURE` probing, migration features, the session data stream |
//! | [`dma_log`] | device DMA logging and the logging DMA port |
//! | [`binding`] | binding to the emulated iommufd and the DMA path through it |
//! | [`group_binding`] | the device in an emulated VFIO group: opened through it, DMA through its container |
//! | [`shared_memory`] | memfd-backed device memory that users can map |
//! | [`v1_window`] | the v1 migration region's data window (mmap-able and trapped extents) |

pub mod binding;
pub mod config;
pub mod device;
pub mod dma_log;
pub mod eventfd;
pub mod features;
pub mod group_binding;
pub mod irqs;
pub mod model;
pub mod phys_irq;
pub mod regions;
pub mod shared_memory;
pub mod v1_window;

pub use device::{EmulatedDeviceError, EmulatedVfioDevice};
pub use irqs::{IrqCounts, IrqRouter};
pub use model::{BarAccess, DeviceModel, MappedRange, MigrationSupport};
pub use shared_memory::{SharedMemory, SharedMemoryError};
