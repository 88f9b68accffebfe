//! Emulated VFIO devices: PCI functions of our own design that behave like real hardware
//! behind vfio-pci, for the emulated host.
//!
//! - [`vfio_core`]: the vfio-pci personality any model gets (regions, config virtualization,
//!   interrupts, reset, migration features, DMA logging, binding to the emulated iommufd).
//! - [`models`]: the device models (`emulated:dma-engine`, `emulated:mailbox`), as
//!   `docs/dma-engine.md` specifies them.
//! - [`spec`]: `emulated:<model>[,key=value...]` device specs and their constructors.

pub mod models;
pub mod spec;
pub mod vfio_core;

pub use spec::{EmulatedDeviceSpec, EmulatedSpecError};
pub use vfio_core::EmulatedVfioDevice;
