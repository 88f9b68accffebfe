//! The machine's PCI topology: segment 0, bus 0 with the host bridge at 00:00.0, reachable through
//! configuration mechanism #1 (ports 0xCF8-0xCFF) and ECAM; devices added to it get their BARs
//! placed in the layout's PCI windows.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

use devices::bus::{BusError, SharedBusDevice, lock};
use devices::pci::{
    BarKind, PciBarError, PciBdf, PciBus, PciBusError, PciConfigIo, PciConfigMmio, SharedPciDevice,
};
use resources::{AddressWindow, AddressWindowError, WindowKind};

use crate::buses::Buses;
use crate::layout::{
    MMIO32_SIZE, MMIO32_START, MMIO64_SIZE, MMIO64_START, PAGE_SIZE, PCI_CONFIG_IO_PORT,
    PCI_CONFIG_IO_SIZE, PCI_DEVICES_PER_BUS, PCI_ECAM_SIZE, PCI_ECAM_START, PIO_WINDOW_SIZE,
    PIO_WINDOW_START,
};

mod bar_relocation;

pub use bar_relocation::{BusBarRelocation, DirectMappedBars};

/// An error from the PCI topology.
#[derive(Debug, thiserror::Error)]
pub enum PciError {
    /// The config access windows could not go on the buses.
    #[error("failed to place the PCI {what} on the {bus} bus")]
    ConfigAccess {
        /// "configuration ports" or "ECAM window".
        what: &'static str,
        /// "port I/O" or "MMIO".
        bus: &'static str,
        /// The bus error.
        #[source]
        source: BusError,
    },
    /// The PCI bus refused the device.
    #[error("failed to add the device to PCI bus 0")]
    Bus(#[from] PciBusError),
    /// A BAR found no room in its window.
    #[error("no room for BAR {index} ({size:#x} bytes) of {bdf}")]
    BarSpace {
        /// The device.
        bdf: PciBdf,
        /// The BAR index.
        index: usize,
        /// Its size.
        size: u64,
        /// The allocator's error.
        #[source]
        source: AddressWindowError,
    },
    /// The device refused the BAR address.
    #[error("{bdf} refused address {addr:#x} for BAR {index}")]
    BarAddress {
        /// The device.
        bdf: PciBdf,
        /// The BAR index.
        index: usize,
        /// The address.
        addr: u64,
        /// The device's error.
        #[source]
        source: PciBarError,
    },
}

/// The PCI windows BARs are placed in.
#[derive(Debug)]
struct BarWindows {
    mmio32: AddressWindow,
    mmio64: AddressWindow,
    pio: AddressWindow,
}

impl BarWindows {
    fn new() -> Self {
        let window = |kind, base, size| {
            AddressWindow::new(kind, base, size).expect("the layout's PCI windows are valid")
        };
        Self {
            mmio32: window(WindowKind::Mmio32, MMIO32_START, MMIO32_SIZE),
            mmio64: window(WindowKind::Mmio64, MMIO64_START, MMIO64_SIZE),
            pio: window(
                WindowKind::Pio,
                u64::from(PIO_WINDOW_START),
                u64::from(PIO_WINDOW_SIZE),
            ),
        }
    }

    fn get(&mut self, kind: WindowKind) -> &mut AddressWindow {
        match kind {
            WindowKind::Mmio32 => &mut self.mmio32,
            WindowKind::Mmio64 => &mut self.mmio64,
            WindowKind::Pio => &mut self.pio,
        }
    }
}

/// Which window a BAR goes in, and its alignment there. Memory BARs are page aligned at least,
/// so a passthrough device's BAR can be mapped into the guest as a memory slot.
fn placement(kind: BarKind, size: u64) -> (WindowKind, u64) {
    match kind {
        BarKind::Io => (WindowKind::Pio, size),
        BarKind::Memory32 | BarKind::Rom => (WindowKind::Mmio32, size.max(PAGE_SIZE)),
        BarKind::Memory64 => (WindowKind::Mmio64, size.max(PAGE_SIZE)),
    }
}

/// PCI segment 0.
#[derive(Debug)]
pub struct PciRoot {
    bus: Arc<Mutex<PciBus>>,
    relocation: Arc<BusBarRelocation>,
    // Held: the buses keep only weak references to the config access devices.
    _config_io: Arc<Mutex<PciConfigIo>>,
    _ecam: Arc<Mutex<PciConfigMmio>>,
    windows: Mutex<BarWindows>,
    placed: Mutex<BTreeMap<PciBdf, Vec<(WindowKind, u64)>>>,
}

impl PciRoot {
    /// Creates bus 0 with the host bridge and puts its config access on `buses`.
    pub fn attach(buses: &Buses) -> Result<Self, PciError> {
        let relocation = Arc::new(BusBarRelocation::new(buses.clone()));
        let bus = Arc::new(Mutex::new(PciBus::new(relocation.clone())));
        let config_io = Arc::new(Mutex::new(PciConfigIo::new(bus.clone())));
        let ecam = Arc::new(Mutex::new(PciConfigMmio::new(bus.clone())));
        let (config_io_dev, ecam_dev): (SharedBusDevice, SharedBusDevice) =
            (config_io.clone(), ecam.clone());
        buses
            .pio
            .insert(
                &config_io_dev,
                u64::from(PCI_CONFIG_IO_PORT),
                u64::from(PCI_CONFIG_IO_SIZE),
            )
            .map_err(|source| PciError::ConfigAccess {
                what: "configuration ports",
                bus: "port I/O",
                source,
            })?;
        buses
            .mmio
            .insert(&ecam_dev, PCI_ECAM_START, PCI_ECAM_SIZE)
            .map_err(|source| PciError::ConfigAccess {
                what: "ECAM window",
                bus: "MMIO",
                source,
            })?;
        Ok(Self {
            bus,
            relocation,
            _config_io: config_io,
            _ecam: ecam,
            windows: Mutex::new(BarWindows::new()),
            placed: Mutex::new(BTreeMap::new()),
        })
    }

    /// Bus 0.
    pub fn bus(&self) -> &Arc<Mutex<PciBus>> {
        &self.bus
    }

    /// Adds `device` in the first free slot of bus 0 and places its BARs (they decode once the
    /// guest enables them). On error nothing is left behind: the device is off the bus and no
    /// window space is taken.
    pub fn add_device(&self, device: SharedPciDevice) -> Result<PciBdf, PciError> {
        let bdf = self.free_slot()?;
        self.add_device_at(bdf, device, None)?;
        Ok(bdf)
    }

    /// The address of function 0 of the lowest free device number on bus 0, where
    /// [`add_device`](Self::add_device) would put the next device (a device's INTx GSI depends
    /// on its slot, so it is needed before the device is built).
    pub fn free_slot(&self) -> Result<PciBdf, PciError> {
        let taken: Vec<u8> = lock(&self.bus).bdfs().iter().map(|b| b.device()).collect();
        (1..PCI_DEVICES_PER_BUS)
            .find(|d| !taken.contains(d))
            .map(|d| PciBdf::from_devfn(0, 0, d << 3))
            .ok_or(PciError::Bus(PciBusError::NoFreeSlot))
    }

    /// Adds `device` at `bdf` and places its BARs, like [`add_device`](Self::add_device); with
    /// `direct`, the device's directly mapped BAR areas follow its BARs from the first config
    /// write on. On error nothing is left behind.
    pub fn add_device_at(
        &self,
        bdf: PciBdf,
        device: SharedPciDevice,
        direct: Option<Arc<dyn DirectMappedBars>>,
    ) -> Result<(), PciError> {
        {
            // Registered under the bus lock, as the sink runs under it: no change is missed.
            let mut bus = lock(&self.bus);
            bus.add_function(bdf, device.clone())?;
            if let Some(direct) = direct {
                self.relocation.register(bdf, direct);
            }
        }
        match self.place_bars(bdf, &device) {
            Ok(placed) => {
                lock(&self.placed).insert(bdf, placed);
                Ok(())
            }
            Err(e) => {
                // Just added, so removal cannot fail; the device's BARs are not decoding yet.
                let mut bus = lock(&self.bus);
                let _ = bus.remove_function(bdf);
                self.relocation.unregister(bdf);
                Err(e)
            }
        }
    }

    fn place_bars(
        &self,
        bdf: PciBdf,
        device: &SharedPciDevice,
    ) -> Result<Vec<(WindowKind, u64)>, PciError> {
        let bars = lock(device).bars();
        let mut windows = lock(&self.windows);
        let mut placed = Vec::with_capacity(bars.len());
        let result =
            bars.iter().try_for_each(|bar| {
                let (kind, align) = placement(bar.kind, bar.size);
                let range = windows.get(kind).alloc(bar.size, align).map_err(|source| {
                    PciError::BarSpace {
                        bdf,
                        index: bar.index,
                        size: bar.size,
                        source,
                    }
                })?;
                placed.push((kind, range.start()));
                lock(device)
                    .set_bar_address(bar.index, range.start())
                    .map_err(|source| PciError::BarAddress {
                        bdf,
                        index: bar.index,
                        addr: range.start(),
                        source,
                    })
            });
        match result {
            Ok(()) => Ok(placed),
            Err(e) => {
                for (kind, addr) in placed {
                    // Allocated above, so freeing cannot fail.
                    let _ = windows.get(kind).free(addr);
                }
                Err(e)
            }
        }
    }

    /// Takes the device at `bdf` off the bus (its decoding BARs leave the buses and its
    /// directly mapped areas are removed) and frees its BAR space.
    pub fn remove_device(&self, bdf: PciBdf) -> Result<SharedPciDevice, PciError> {
        let device = {
            let mut bus = lock(&self.bus);
            let device = bus.remove_function(bdf)?;
            self.relocation.unregister(bdf);
            device
        };
        if let Some(placed) = lock(&self.placed).remove(&bdf) {
            let mut windows = lock(&self.windows);
            for (kind, addr) in placed {
                let _ = windows.get(kind).free(addr);
            }
        }
        Ok(device)
    }
}
