//! Applies the guest's BAR decoding changes to the machine's buses and to the memory slots of
//! directly mapped BAR areas.

use std::collections::BTreeMap;
use std::fmt::Debug;
use std::sync::{Arc, Mutex};

use devices::bus::{SharedBusDevice, lock};
use devices::pci::{BarChange, BarKind, BarRelocation, PciBdf};

use crate::buses::{Buses, IoBus};

/// The parts of a function's BARs the guest reaches without exits (a passthrough device's
/// mmapped BAR areas, as hypervisor memory slots), told where each BAR decodes.
///
/// Called from the PCI bus's relocation sink: on the vCPU thread of the config write, with the
/// PCI bus locked. Implementations must not make config accesses or take the PCI bus lock.
pub trait DirectMappedBars: Send + Sync + Debug {
    /// BAR `index` now decodes at `base` (`Some`): map its areas there, wherever they were
    /// before; or it stopped decoding (`None`): remove them.
    fn decoding(&self, index: usize, base: Option<u64>);
}

/// Puts decoding BARs on the port or MMIO bus, moves them and takes them off as the guest
/// programs them, and keeps the directly mapped areas of registered functions at the BARs'
/// places.
///
/// A BAR the guest places over another range (a platform device, another BAR) does not decode:
/// the bus refuses the overlap, the guest reads all-ones there, no area of it is mapped, and the
/// other range stays intact when the BAR is later moved or disabled.
#[derive(Debug)]
pub struct BusBarRelocation {
    buses: Buses,
    direct: Mutex<BTreeMap<PciBdf, Arc<dyn DirectMappedBars>>>,
}

impl BusBarRelocation {
    /// Relocation onto `buses`.
    pub fn new(buses: Buses) -> Self {
        Self {
            buses,
            direct: Mutex::new(BTreeMap::new()),
        }
    }

    /// Routes the BAR changes of the function at `bdf` to `bars` as well. Call it with the PCI
    /// bus locked, together with adding the function, so no change is missed.
    pub fn register(&self, bdf: PciBdf, bars: Arc<dyn DirectMappedBars>) {
        lock(&self.direct).insert(bdf, bars);
    }

    /// Stops routing the BAR changes of `bdf` (after its function left the bus).
    pub fn unregister(&self, bdf: PciBdf) -> Option<Arc<dyn DirectMappedBars>> {
        lock(&self.direct).remove(&bdf)
    }

    fn bus(&self, kind: BarKind) -> &IoBus {
        if kind.is_io() {
            &self.buses.pio
        } else {
            &self.buses.mmio
        }
    }
}

impl BarRelocation for BusBarRelocation {
    fn bar_changed(&self, bdf: PciBdf, change: &BarChange, target: &SharedBusDevice) {
        let bus = self.bus(change.kind());
        let (result, base) = match *change {
            BarChange::Mapped(r) => (bus.insert(target, r.base, r.len), Some(r.base)),
            BarChange::Unmapped(r) => (bus.remove_owned(r.base, target), None),
            BarChange::Moved(m) => {
                let result = match bus.relocate_owned(m.old_base, m.new_base, target) {
                    // It was not decoding at the old place (it had overlapped something): try
                    // the new one.
                    Err(devices::bus::BusError::NotFound { .. }) => {
                        bus.insert(target, m.new_base, m.len)
                    }
                    other => other,
                };
                (result, Some(m.new_base))
            }
        };
        let decodes = match &result {
            Ok(()) => {
                log::debug!("{bdf}: BAR {} {change:?}", change.index());
                base
            }
            Err(e) => {
                log::warn!(
                    "{bdf}: BAR {} change {change:?} not applied, the BAR does not decode: {e}",
                    change.index()
                );
                None
            }
        };
        // Cloned out so the device's slots are changed without holding the registry.
        let direct = lock(&self.direct).get(&bdf).cloned();
        if let Some(direct) = direct {
            direct.decoding(change.index(), decodes);
        }
    }
}
