//! The device side of a machine, assembled the same way for the KVM machine and the device
//! harness: guest RAM, the buses, the hypervisor side, the power state, the event loop and the
//! devices on the buses.
//!
//! Device wiring lives here only, reaching the hypervisor through the [`Hypervisor`] trait, so
//! what the harness tests is what the KVM machine runs. Passthrough devices are added to
//! [`MachineCore::pci`] after the platform devices and the host bridge, in `--device` order.

use std::sync::Arc;

use devices::interrupt::InterruptManager;

use crate::buses::Buses;
use crate::event_loop::EventLoop;
use crate::hypervisor::Hypervisor;
use crate::memory::GuestRam;
use crate::passthrough::{HostIommu, Passthrough, PassthroughError, PassthroughSpec};
use crate::pci::{PciError, PciRoot};
use crate::platform::{Platform, PlatformError, SerialSink};
use crate::power::PowerControl;

/// What devices a machine has and where their output goes.
#[derive(Debug, Clone)]
pub struct DeviceConfig {
    /// Where COM1 output goes.
    pub serial: SerialSink,
    /// The passthrough devices, in `--device` order.
    pub passthrough: Vec<PassthroughSpec>,
    /// The host IOMMU backend of passthrough devices (`--host-iommu`).
    pub host_iommu: HostIommu,
}

impl DeviceConfig {
    /// The platform devices with COM1 output to `serial`, no passthrough device.
    pub fn new(serial: SerialSink) -> Self {
        Self {
            serial,
            passthrough: Vec::new(),
            host_iommu: HostIommu::Auto,
        }
    }
}

/// An error from assembling the devices.
#[derive(Debug, thiserror::Error)]
pub enum AssemblyError {
    /// The platform devices could not be wired.
    #[error(transparent)]
    Platform(#[from] PlatformError),
    /// The PCI host bridge or a PCI device could not be wired.
    #[error(transparent)]
    Pci(#[from] PciError),
    /// A passthrough device could not be wired (boxed: it carries the device's whole story).
    #[error(transparent)]
    Passthrough(#[from] Box<PassthroughError>),
}

/// A machine's devices and the state they share, without vCPUs.
///
/// Fields drop in declaration order: the event loop first (its subscribers may use devices), then
/// the passthrough devices' host contexts (`Drop` has taken the devices out already), the
/// devices, the hypervisor, and RAM (which the hypervisor's slots and the DMA spaces point into).
#[derive(Debug)]
pub struct MachineCore {
    event_loop: EventLoop,
    passthrough: Passthrough,
    pci: PciRoot,
    platform: Platform,
    buses: Buses,
    power: Arc<PowerControl>,
    hypervisor: Arc<dyn Hypervisor>,
    ram: Arc<GuestRam>,
}

impl MachineCore {
    /// Wires the devices of `config` onto fresh buses, with `hypervisor` for interrupts and
    /// memory mappings and `event_loop` for their eventfds.
    pub fn assemble(
        ram: Arc<GuestRam>,
        hypervisor: Arc<dyn Hypervisor>,
        event_loop: EventLoop,
        config: &DeviceConfig,
    ) -> Result<Self, AssemblyError> {
        let buses = Buses::new();
        let power = Arc::new(PowerControl::new());
        let platform = Platform::attach(&buses, hypervisor.as_ref(), &config.serial, &power)?;
        let pci = PciRoot::attach(&buses)?;
        let passthrough = Passthrough::attach(
            &config.passthrough,
            config.host_iommu,
            &ram,
            &hypervisor,
            &pci,
            &event_loop,
        )
        .map_err(Box::new)?;
        Ok(Self {
            event_loop,
            passthrough,
            pci,
            platform,
            buses,
            power,
            hypervisor,
            ram,
        })
    }

    /// Guest RAM.
    pub fn ram(&self) -> &Arc<GuestRam> {
        &self.ram
    }

    /// The port I/O and MMIO buses.
    pub fn buses(&self) -> &Buses {
        &self.buses
    }

    /// The hypervisor side (interrupts, memory mappings).
    pub fn hypervisor(&self) -> &Arc<dyn Hypervisor> {
        &self.hypervisor
    }

    /// The interrupt manager devices get their interrupts from.
    pub fn interrupt_manager(&self) -> Arc<dyn InterruptManager> {
        self.hypervisor.interrupt_manager()
    }

    /// The machine's power state.
    pub fn power(&self) -> &Arc<PowerControl> {
        &self.power
    }

    /// The event loop devices subscribe their eventfds to.
    pub fn event_loop(&self) -> &EventLoop {
        &self.event_loop
    }

    /// The platform devices.
    pub fn platform(&self) -> &Platform {
        &self.platform
    }

    /// PCI segment 0: bus 0, its config access, and BAR placement for added devices.
    pub fn pci(&self) -> &PciRoot {
        &self.pci
    }

    /// The passthrough devices and their DMA spaces.
    pub fn passthrough(&self) -> &Passthrough {
        &self.passthrough
    }
}

impl Drop for MachineCore {
    fn drop(&mut self) {
        // Before any field goes: each device leaves the event loop and the bus and loses its
        // memory slots while everything it is wired to still exists.
        self.passthrough.detach_all(&self.pci, &self.event_loop);
    }
}
