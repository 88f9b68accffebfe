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

#[cfg(test)]
mod tests {
    use devices::bus::BusDevice;
    use devices::pci::{BarRegion, BarReprogram};

    use super::*;

    /// Answers every access; stands for a BAR's bus entry or a platform device.
    struct Nothing;

    impl BusDevice for Nothing {
        fn read(&mut self, _base: u64, _offset: u64, data: &mut [u8]) {
            data.fill(0);
        }
        fn write(&mut self, _base: u64, _offset: u64, _data: &[u8]) {}
    }

    /// Records where it was told each BAR decodes.
    #[derive(Debug, Default)]
    struct Recorder(Mutex<Vec<(usize, Option<u64>)>>);

    impl DirectMappedBars for Recorder {
        fn decoding(&self, index: usize, base: Option<u64>) {
            lock(&self.0).push((index, base));
        }
    }

    fn region(base: u64) -> BarRegion {
        BarRegion {
            index: 2,
            base,
            len: 0x1000,
            kind: BarKind::Memory64,
        }
    }

    #[test]
    fn direct_bars_follow_the_bus_and_never_map_where_the_bar_does_not_decode() {
        let buses = Buses::new();
        let sink = BusBarRelocation::new(buses.clone());
        let bdf = PciBdf::from_devfn(0, 0, 1 << 3);
        let other = PciBdf::from_devfn(0, 0, 2 << 3);
        let recorder = Arc::new(Recorder::default());
        sink.register(bdf, recorder.clone());
        let target: SharedBusDevice = Arc::new(Mutex::new(Nothing));
        let squatter: SharedBusDevice = Arc::new(Mutex::new(Nothing));
        buses.mmio.insert(&squatter, 0x9000, 0x1000).unwrap();

        sink.bar_changed(bdf, &BarChange::Mapped(region(0x4000)), &target);
        // Moved over another device's range: the bus refuses it, so nothing is mapped.
        let over = BarReprogram {
            index: 2,
            old_base: 0x4000,
            new_base: 0x9000,
            len: 0x1000,
            kind: BarKind::Memory64,
        };
        sink.bar_changed(bdf, &BarChange::Moved(over), &target);
        let away = BarReprogram {
            old_base: 0x9000,
            new_base: 0xa000,
            ..over
        };
        sink.bar_changed(bdf, &BarChange::Moved(away), &target);
        sink.bar_changed(bdf, &BarChange::Unmapped(region(0xa000)), &target);
        // Another function's changes are not this one's.
        sink.bar_changed(other, &BarChange::Mapped(region(0xc000)), &target);
        assert_eq!(
            *lock(&recorder.0),
            [(2, Some(0x4000)), (2, None), (2, Some(0xa000)), (2, None)]
        );
        assert!(sink.unregister(bdf).is_some());
        sink.bar_changed(bdf, &BarChange::Mapped(region(0x4000)), &target);
        assert_eq!(lock(&recorder.0).len(), 4);
    }
}
