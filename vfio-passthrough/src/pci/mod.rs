//! The passthrough PCI device: a host PCI function behind a [`VfioDevice`](crate::vfio::VfioDevice),
//! presented to the guest as a [`devices::pci::PciDevice`].
//!
//! # What the VMM does with it
//!
//! 1. Open, bind and attach the VFIO device (its DMA then goes through the VMM's IOAS).
//! 2. [`VfioPciDevice::new`] with the device, the VMM's
//!    [`InterruptManager`](devices::interrupt::InterruptManager) and a [`VfioPciDeviceConfig`]
//!    (a name, the GSI of INTA# for the slot, how INTx is delivered, and the host IOMMU's
//!    [`PasidSupport`] for the device, from `IOMMU_GET_HW_INFO`).
//! 3. Put it on the PCI bus, allocate its [`bars`](devices::pci::PciDevice::bars) and place them
//!    with [`set_bar_address`](devices::pci::PciDevice::set_bar_address).
//! 4. Apply the [`BarChange`](devices::pci::BarChange)s the PCI bus reports: besides the bus
//!    entry for trapped accesses, map each of the BAR's [`mmap_areas`](VfioPciDevice::mmap_areas)
//!    into the guest at BAR base + [`BarMmap::offset`] (a KVM memory slot backed by
//!    [`BarMmap::area`]); move the slots when the BAR moves, remove them when it stops decoding.
//! 5. Register [`VfioPciDevice::subscriber`] on the event loop; act on
//!    [`VfioPciEvent::ReleaseRequest`] by unplugging the device.
//! 6. On VM reset, call [`VfioPciDevice::reset`] and apply the `Unmapped` changes it returns.
//!
//! # Modules
//!
//! - `discovery`: regions, BARs and IRQs as the device reports them.
//! - `capabilities`: which capabilities the guest sees, field by field (the allow-list and why);
//!   `pasid` the virtual PASID capability.
//! - `config`: the virtual config space (the header table); `policy` its per-bit rules.
//! - `bars`: mmap areas (MSI-X carved out) and trapped BAR accesses.
//! - `interrupts` and `intx`: the host side of INTx, MSI and MSI-X, following vfio-pci's rules.
//! - `subscriber`: the eventfds that need userspace.
//! - `test_utils` (feature `test-utils`): an in-memory VFIO PCI device for tests.

mod bars;
mod capabilities;
mod config;
mod device;
mod discovery;
mod error;
mod interrupts;
mod intx;
mod pasid;
mod policy;
mod subscriber;
#[cfg(any(test, feature = "test-utils"))]
pub mod test_utils;
#[cfg(test)]
mod tests;

pub use bars::BarMmap;
pub use device::{VfioPciDevice, VfioPciDeviceConfig};
pub use error::{BarAccessFault, VfioPciError};
pub use interrupts::HostIrq;
pub use intx::IntxDelivery;
pub use pasid::{MAX_PASID_WIDTH, PasidSupport};
pub use subscriber::{VfioPciEvent, VfioPciEventHandler, VfioPciSubscriber};
