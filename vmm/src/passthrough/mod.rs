//! Passthrough devices in the machine (`--device vfio=...`).
//!
//! For every device asked for, [`Passthrough::attach`] opens it through its host IOMMU backend
//! (`backends`: the emulated host for `emulated:` devices, iommufd or the legacy container for
//! host devices), where guest RAM is mapped at IOVA = guest physical address (`dma_space`), then
//! presents it to the guest (`device`): a [`VfioPciDevice`](vfio_passthrough::pci::VfioPciDevice)
//! in the first free slot of PCI bus 0, INTA# on that slot's GSI, its mmapped BAR areas as
//! memory slots that follow the guest's BAR programming (`bar_slots`), its eventfds on the event
//! loop.
//!
//! The same code wires the KVM machine and the device harness (through
//! [`MachineCore::assemble`](crate::assembly::MachineCore::assemble)); only the hypervisor side
//! differs (KVM irqfds and memory slots, or the harness's recording ones).
//!
//! Teardown ([`Passthrough::detach_all`], run when the machine's devices go) takes each device
//! off the event loop and the bus and removes its memory slots before the device and its
//! mappings are dropped, and unmaps guest RAM from every DMA space before RAM goes.

mod backends;
mod bar_slots;
mod device;
mod dma_space;
mod spec;

use std::sync::Arc;

use vfio_passthrough::pci::VfioPciError;

use crate::event_loop::{EventLoop, EventLoopError};
use crate::hypervisor::Hypervisor;
use crate::memory::GuestRam;
use crate::pci::{PciError, PciRoot};

pub use backends::{BackendError, BackendKind, HostBackends, OpenedDevice, check_host_device};
pub use bar_slots::{BarArea, BarSlots};
pub use device::PassthroughDevice;
pub use dma_space::{DmaSpace, DmaSpaceError, DmaTarget};
pub use spec::{DeviceArg, DeviceSource, DeviceSpecError, HostIommu, PassthroughSpec, assign_ids};

use device::Wiring;

/// An error from wiring a passthrough device.
#[derive(Debug, thiserror::Error)]
pub enum PassthroughError {
    /// The device could not be opened or connected to its host IOMMU.
    #[error("passthrough device {id} ({spec})")]
    Open {
        /// The device's id.
        id: String,
        /// The device as given.
        spec: String,
        /// Why (boxed: host errors carry paths and OS errors).
        #[source]
        source: Box<BackendError>,
    },
    /// The passthrough PCI device could not be built.
    #[error("passthrough device {id}")]
    Create {
        /// The device's id.
        id: String,
        /// Why.
        #[source]
        source: VfioPciError,
    },
    /// The device could not go on PCI bus 0.
    #[error("passthrough device {id}")]
    Pci {
        /// The device's id.
        id: String,
        /// Why.
        #[source]
        source: PciError,
    },
    /// The device's eventfds could not go on the event loop.
    #[error("passthrough device {id}: its eventfds could not be watched")]
    Subscriber {
        /// The device's id.
        id: String,
        /// Why.
        #[source]
        source: EventLoopError,
    },
    /// Guest RAM could not be mapped or unmapped for device DMA after a RAM change.
    #[error(transparent)]
    Dma(#[from] DmaSpaceError),
}

/// The machine's passthrough devices and the host IOMMU contexts they use.
#[derive(Debug)]
pub struct Passthrough {
    // Declared first: devices go before the DMA spaces their DMA goes through.
    devices: Vec<PassthroughDevice>,
    backends: HostBackends,
}

impl Passthrough {
    /// Opens and wires every device of `specs`, in order (the first gets the lowest free slot).
    /// Host devices use the `host_iommu` backend. On error, the devices already wired are taken
    /// out again and nothing is left in the machine.
    pub fn attach(
        specs: &[PassthroughSpec],
        host_iommu: HostIommu,
        ram: &Arc<GuestRam>,
        hypervisor: &Arc<dyn Hypervisor>,
        pci: &PciRoot,
        event_loop: &EventLoop,
    ) -> Result<Self, PassthroughError> {
        let mut passthrough = Self {
            devices: Vec::with_capacity(specs.len()),
            backends: HostBackends::new(ram.clone(), host_iommu),
        };
        let wiring = Wiring {
            hypervisor,
            pci,
            event_loop,
        };
        for spec in specs {
            let wired = passthrough
                .backends
                .open(&spec.source)
                .map_err(|source| PassthroughError::Open {
                    id: spec.id.clone(),
                    spec: spec.source.to_string(),
                    source: Box::new(source),
                })
                .and_then(|opened| PassthroughDevice::attach(spec, opened, &wiring));
            match wired {
                Ok(device) => passthrough.devices.push(device),
                Err(e) => {
                    passthrough.detach_all(pci, event_loop);
                    return Err(e);
                }
            }
        }
        Ok(passthrough)
    }

    /// The devices, in `--device` order.
    pub fn devices(&self) -> &[PassthroughDevice] {
        &self.devices
    }

    /// The device with id `id`.
    pub fn device(&self, id: &str) -> Option<&PassthroughDevice> {
        self.devices.iter().find(|d| d.id() == id)
    }

    /// The DMA spaces in use (one per backend kind).
    pub fn dma_spaces(&self) -> Vec<&DmaSpace> {
        self.backends.dma_spaces()
    }

    /// Guest RAM regions were added or removed: every DMA space maps exactly the regions there
    /// are now.
    pub fn ram_changed(&self) -> Result<(), PassthroughError> {
        for space in self.dma_spaces() {
            space.sync()?;
        }
        Ok(())
    }

    /// Takes every device out of the machine (last first), off the event loop and the bus, its
    /// memory slots removed, and drops it.
    pub fn detach_all(&mut self, pci: &PciRoot, event_loop: &EventLoop) {
        while let Some(device) = self.devices.pop() {
            device.detach(pci, event_loop);
        }
    }
}
