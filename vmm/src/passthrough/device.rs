//! [`PassthroughDevice`]: one opened device wired into the machine: a [`VfioPciDevice`] on PCI
//! bus 0 with the INTx GSI of its slot, its mmapped BAR areas following its BARs as memory
//! slots, and its eventfds on the event loop.

use std::sync::{Arc, Mutex};

use devices::bus::lock;
use devices::pci::{PciBdf, SharedPciDevice};
use event_manager::SubscriberId;
use vfio_passthrough::pci::{VfioPciDevice, VfioPciDeviceConfig, VfioPciEvent};

use super::PassthroughError;
use super::backends::{BackendKind, OpenedDevice};
use super::bar_slots::BarSlots;
use super::spec::PassthroughSpec;
use crate::event_loop::EventLoop;
use crate::hypervisor::Hypervisor;
use crate::layout::pci_intx_gsi;
use crate::pci::{DirectMappedBars, PciRoot};

/// INTA#: passthrough functions show pin A whatever their host pin (see `VfioPciDevice`).
const INTA: u8 = 0;

/// What a device is wired into.
pub(super) struct Wiring<'a> {
    pub hypervisor: &'a Arc<dyn Hypervisor>,
    pub pci: &'a PciRoot,
    pub event_loop: &'a EventLoop,
}

/// A passed-through device in the machine.
#[derive(Debug)]
pub struct PassthroughDevice {
    spec: PassthroughSpec,
    bdf: PciBdf,
    intx_gsi: u32,
    backend: BackendKind,
    device: Arc<Mutex<VfioPciDevice>>,
    slots: Arc<BarSlots>,
    subscriber: Option<SubscriberId>,
}

impl PassthroughDevice {
    /// Presents `opened` to the guest in the first free slot of bus 0. On error nothing is left
    /// in the machine.
    pub(super) fn attach(
        spec: &PassthroughSpec,
        opened: OpenedDevice,
        wiring: &Wiring<'_>,
    ) -> Result<Self, PassthroughError> {
        let id = spec.id.clone();
        let pci_error = |source| PassthroughError::Pci {
            id: id.clone(),
            source,
        };
        let bdf = wiring.pci.free_slot().map_err(pci_error)?;
        let intx_gsi = pci_intx_gsi(bdf.device(), INTA);
        let interrupts = wiring.hypervisor.interrupt_manager();
        let device = VfioPciDevice::new(
            opened.vfio,
            interrupts.as_ref(),
            VfioPciDeviceConfig {
                name: id.clone(),
                intx_gsi,
                intx_delivery: wiring.hypervisor.intx_delivery(),
                pasid: opened.pasid,
            },
        )
        .map_err(|source| PassthroughError::Create {
            id: id.clone(),
            source,
        })?;
        let device = Arc::new(Mutex::new(device));
        let slots = Arc::new(BarSlots::new(wiring.hypervisor.clone(), device.clone()));
        let event_id = id.clone();
        let subscriber = lock(&device).subscriber(Box::new(move |event| match event {
            VfioPciEvent::ReleaseRequest => log::warn!(
                "{event_id}: the VMM cannot unplug devices yet; the device stays until the \
                 guest stops"
            ),
            VfioPciEvent::DeviceError => {
                log::error!("{event_id}: the guest may see the device fail")
            }
        }));
        let shared: SharedPciDevice = device.clone();
        let direct: Arc<dyn DirectMappedBars> = slots.clone();
        wiring
            .pci
            .add_device_at(bdf, shared, Some(direct))
            .map_err(pci_error)?;
        let subscriber = match wiring.event_loop.add_subscriber(Box::new(subscriber)) {
            Ok(s) => s,
            Err(source) => {
                if let Err(e) = wiring.pci.remove_device(bdf) {
                    log::error!("{id}: {e}");
                }
                return Err(PassthroughError::Subscriber { id, source });
            }
        };
        log::info!(
            "{id} ({}): PCI {bdf}, INTx GSI {intx_gsi}, {} DMA, {} mmapped BAR area(s){}",
            spec.source,
            opened.backend,
            slots.areas().len(),
            if opened.pasid.is_some() {
                ", PASID"
            } else {
                ""
            }
        );
        Ok(Self {
            spec: spec.clone(),
            bdf,
            intx_gsi,
            backend: opened.backend,
            device,
            slots,
            subscriber: Some(subscriber),
        })
    }

    /// The device's id.
    pub fn id(&self) -> &str {
        &self.spec.id
    }

    /// What was asked for.
    pub fn spec(&self) -> &PassthroughSpec {
        &self.spec
    }

    /// Its address on bus 0.
    pub fn bdf(&self) -> PciBdf {
        self.bdf
    }

    /// The GSI its INTA# is wired to (the slot's, as the DSDT `_PRT` says).
    pub fn intx_gsi(&self) -> u32 {
        self.intx_gsi
    }

    /// The host IOMMU backend its DMA goes through.
    pub fn backend(&self) -> BackendKind {
        self.backend
    }

    /// The passthrough PCI device.
    pub fn device(&self) -> &Arc<Mutex<VfioPciDevice>> {
        &self.device
    }

    /// The memory slots of its mmapped BAR areas.
    pub fn bar_slots(&self) -> &BarSlots {
        &self.slots
    }

    /// Takes the device out of the machine: off the event loop and the bus, its memory slots
    /// removed, so the device (and its mappings) can go.
    pub(super) fn detach(mut self, pci: &PciRoot, event_loop: &EventLoop) {
        if let Some(id) = self.subscriber.take() {
            if let Err(e) = event_loop.remove_subscriber(id) {
                log::warn!("{}: {e}", self.spec.id);
            }
        }
        if let Err(e) = pci.remove_device(self.bdf) {
            log::warn!("{}: {e}", self.spec.id);
        }
        self.slots.clear();
    }
}
