//! Applies the guest's BAR decoding changes to the machine's buses.

use devices::bus::SharedBusDevice;
use devices::pci::{BarChange, BarKind, BarRelocation, PciBdf};

use crate::buses::{Buses, IoBus};

/// Puts decoding BARs on the port or MMIO bus, moves them and takes them off as the guest
/// programs them.
///
/// A BAR the guest places over another range (a platform device, another BAR) does not decode:
/// the bus refuses the overlap, the guest reads all-ones there, and the other range stays intact
/// when the BAR is later moved or disabled.
#[derive(Debug)]
pub struct BusBarRelocation {
    buses: Buses,
}

impl BusBarRelocation {
    /// Relocation onto `buses`.
    pub fn new(buses: Buses) -> Self {
        Self { buses }
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
        let result = match *change {
            BarChange::Mapped(r) => bus.insert(target, r.base, r.len),
            BarChange::Unmapped(r) => bus.remove_owned(r.base, target),
            BarChange::Moved(m) => match bus.relocate_owned(m.old_base, m.new_base, target) {
                // It was not decoding at the old place (it had overlapped something): try the
                // new one.
                Err(devices::bus::BusError::NotFound { .. }) => {
                    bus.insert(target, m.new_base, m.len)
                }
                other => other,
            },
        };
        match result {
            Ok(()) => log::debug!("{bdf}: BAR {} {change:?}", change.index()),
            Err(e) => log::warn!(
                "{bdf}: BAR {} change {change:?} not applied, the BAR does not decode: {e}",
                change.index()
            ),
        }
    }
}
