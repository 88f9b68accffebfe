//! PCI bus 0: which function answers at which address, and where BAR changes go.
//!
//! # BAR relocation
//!
//! Guest config writes reach the bus through [`PciConfigIo`](super::PciConfigIo) or
//! [`PciConfigMmio`](super::PciConfigMmio), which are [`BusDevice`](crate::bus::BusDevice)s and
//! cannot return anything. So the bus hands every [`BarChange`] a write causes to a
//! [`BarRelocation`] sink the VMM implements, together with the [`SharedBusDevice`] that serves
//! the BAR (a [`PciBarBusDevice`] the bus owns). The VMM applies them to its MMIO or PIO
//! [`Bus`](crate::bus::Bus): `Mapped` → `insert(target, base, len)`, `Unmapped` → `remove(base)`,
//! `Moved` → `relocate(old_base, new_base)`. Those are the only BAR ranges it ever puts on a bus.
//!
//! The sink runs on the vCPU thread that made the config access, with the PCI bus locked (the
//! function's own lock is released). It must not make config accesses, and the VMM must not hold
//! a lock on the bus it modifies while dispatching that access: resolve the device with
//! [`Bus::resolve`](crate::bus::Bus::resolve), drop the bus lock, then call the device.

use std::collections::BTreeMap;
use std::fmt::Debug;
use std::sync::{Arc, Mutex};

use super::bar::{BarChange, BarRegion, PCI_ROM_BAR_INDEX};
use super::bdf::{PCI_MAX_DEVICE, PciBdf};
use super::configuration::{PCI_HEADER_TYPE, PCI_HEADER_TYPE_MULTI_FUNCTION, access_ok};
use super::device::{PciBarBusDevice, SharedPciDevice};
use super::host_bridge::PciHostBridge;
use crate::bus::{SharedBusDevice, lock};

/// Receives the BAR decoding changes guest config writes cause. Implemented by the VMM.
pub trait BarRelocation: Send + Sync + Debug {
    /// BAR `change.index()` of function `bdf` changed; `target` serves its accesses (insert it on
    /// the bus for [`BarChange::Mapped`]).
    fn bar_changed(&self, bdf: PciBdf, change: &BarChange, target: &SharedBusDevice);
}

/// An error from changing which functions sit on the bus.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum PciBusError {
    /// Every device number from 1 to 31 is taken.
    #[error("no free device number on PCI bus 0")]
    NoFreeSlot,
    /// A function already sits at this address.
    #[error("PCI address {0} is already in use")]
    Occupied(PciBdf),
    /// The address is not on segment 0, bus 0.
    #[error("PCI address {0} is not on segment 0 bus 0")]
    NotOnBus(PciBdf),
    /// Device 0 belongs to the host bridge.
    #[error("PCI address {0} belongs to the host bridge")]
    HostBridgeSlot(PciBdf),
    /// No function sits at this address.
    #[error("no PCI function at {0}")]
    NotFound(PciBdf),
}

struct PciFunction {
    device: SharedPciDevice,
    /// One bus entry per BAR index (0..=5 and the ROM), created with the function so they live
    /// exactly as long as it is on the bus.
    bar_targets: Vec<SharedBusDevice>,
}

/// PCI segment 0, bus 0, with the host bridge at 00:00.0.
pub struct PciBus {
    functions: BTreeMap<u8, PciFunction>,
    relocation: Arc<dyn BarRelocation>,
    /// Where each function's BARs decode, as last reported to the sink.
    decoded: BTreeMap<(u8, usize), BarRegion>,
}

impl Debug for PciBus {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PciBus")
            .field("functions", &self.bdfs())
            .field("decoded", &self.decoded)
            .finish_non_exhaustive()
    }
}

impl PciBus {
    /// A bus holding only the host bridge, reporting BAR changes to `relocation`.
    pub fn new(relocation: Arc<dyn BarRelocation>) -> Self {
        let mut bus = Self {
            functions: BTreeMap::new(),
            relocation,
            decoded: BTreeMap::new(),
        };
        let bridge: SharedPciDevice = Arc::new(Mutex::new(PciHostBridge::new()));
        bus.insert(0, bridge);
        bus
    }

    /// Puts `device` at function 0 of the lowest free device number and returns its address.
    pub fn add_device(&mut self, device: SharedPciDevice) -> Result<PciBdf, PciBusError> {
        let free = (1..=PCI_MAX_DEVICE)
            .find(|d| self.functions.range(d << 3..=(d << 3 | 7)).next().is_none())
            .ok_or(PciBusError::NoFreeSlot)?;
        self.insert(free << 3, device);
        Ok(PciBdf::from_devfn(0, 0, free << 3))
    }

    /// Puts `device` at `bdf` (any function; function 0 of a device with several functions should
    /// be added too, or guests will not scan the others).
    pub fn add_function(
        &mut self,
        bdf: PciBdf,
        device: SharedPciDevice,
    ) -> Result<(), PciBusError> {
        let devfn = Self::devfn(bdf)?;
        if bdf.device() == 0 {
            return Err(PciBusError::HostBridgeSlot(bdf));
        }
        if self.functions.contains_key(&devfn) {
            return Err(PciBusError::Occupied(bdf));
        }
        self.insert(devfn, device);
        Ok(())
    }

    /// Takes the function at `bdf` off the bus (hot unplug). Its decoding BARs are reported
    /// unmapped first; its bus entries stop answering once dropped.
    pub fn remove_function(&mut self, bdf: PciBdf) -> Result<SharedPciDevice, PciBusError> {
        let devfn = Self::devfn(bdf)?;
        if bdf.device() == 0 {
            return Err(PciBusError::HostBridgeSlot(bdf));
        }
        let function = self
            .functions
            .remove(&devfn)
            .ok_or(PciBusError::NotFound(bdf))?;
        let gone: Vec<_> = self
            .decoded
            .range((devfn, 0)..=(devfn, PCI_ROM_BAR_INDEX))
            .map(|(k, r)| (*k, *r))
            .collect();
        for (key, region) in gone {
            self.decoded.remove(&key);
            let target = &function.bar_targets[region.index];
            self.relocation
                .bar_changed(bdf, &BarChange::Unmapped(region), target);
        }
        Ok(function.device)
    }

    /// The function at `bdf`.
    pub fn device(&self, bdf: PciBdf) -> Option<SharedPciDevice> {
        let devfn = Self::devfn(bdf).ok()?;
        self.functions.get(&devfn).map(|f| f.device.clone())
    }

    /// The addresses of every function on the bus, in scan order.
    pub fn bdfs(&self) -> Vec<PciBdf> {
        self.functions
            .keys()
            .map(|devfn| PciBdf::from_devfn(0, 0, *devfn))
            .collect()
    }

    /// The bus entry serving BAR `index` of the function at `bdf`.
    pub fn bar_target(&self, bdf: PciBdf, index: usize) -> Option<SharedBusDevice> {
        let devfn = Self::devfn(bdf).ok()?;
        self.functions.get(&devfn)?.bar_targets.get(index).cloned()
    }

    /// Every BAR that decodes now, by function, as last reported to the sink.
    pub fn decoded_bars(&self) -> Vec<(PciBdf, BarRegion)> {
        self.decoded
            .iter()
            .map(|((devfn, _), r)| (PciBdf::from_devfn(0, 0, *devfn), *r))
            .collect()
    }

    /// Reads config space of `bdf`. Absent functions and accesses that are not aligned 1, 2 or
    /// 4-byte ones read all-ones, as a master abort does.
    pub fn read_config(&self, bdf: PciBdf, offset: u16, data: &mut [u8]) {
        let function = Self::devfn(bdf)
            .ok()
            .and_then(|devfn| self.functions.get(&devfn));
        let Some(function) = function.filter(|_| access_ok(offset, data.len())) else {
            data.fill(0xff);
            return;
        };
        lock(&function.device).read_config(offset, data);
        // A guest only scans functions 1..=7 when function 0 says it has several; say so for any
        // slot populated that way, whatever its function 0 reports.
        let header = usize::from(PCI_HEADER_TYPE);
        let range = usize::from(offset)..usize::from(offset) + data.len();
        if bdf.function() == 0 && range.contains(&header) && self.has_other_functions(bdf) {
            data[header - usize::from(offset)] |= PCI_HEADER_TYPE_MULTI_FUNCTION;
        }
    }

    /// Writes config space of `bdf` and reports the BAR changes it causes to the sink. Writes to
    /// absent functions and misaligned writes are dropped.
    pub fn write_config(&mut self, bdf: PciBdf, offset: u16, data: &[u8]) {
        let Ok(devfn) = Self::devfn(bdf) else {
            return;
        };
        let Some(function) = self.functions.get(&devfn) else {
            return;
        };
        if !access_ok(offset, data.len()) {
            return;
        }
        let changes = lock(&function.device).write_config(offset, data);
        for change in changes {
            let index = change.index();
            let Some(target) = function.bar_targets.get(index) else {
                log::warn!("{bdf}: BAR change for invalid index {index} ignored");
                continue;
            };
            match change {
                BarChange::Mapped(r) => {
                    self.decoded.insert((devfn, index), r);
                }
                BarChange::Unmapped(_) => {
                    self.decoded.remove(&(devfn, index));
                }
                BarChange::Moved(m) => {
                    self.decoded.insert(
                        (devfn, index),
                        BarRegion {
                            index,
                            base: m.new_base,
                            len: m.len,
                            kind: m.kind,
                        },
                    );
                }
            }
            self.relocation.bar_changed(bdf, &change, target);
        }
    }

    fn insert(&mut self, devfn: u8, device: SharedPciDevice) {
        let bar_targets = (0..=PCI_ROM_BAR_INDEX)
            .map(|index| -> SharedBusDevice {
                Arc::new(Mutex::new(PciBarBusDevice::new(device.clone(), index)))
            })
            .collect();
        self.functions.insert(
            devfn,
            PciFunction {
                device,
                bar_targets,
            },
        );
    }

    fn has_other_functions(&self, bdf: PciBdf) -> bool {
        let first = bdf.devfn() & !7;
        self.functions.range(first + 1..=first | 7).next().is_some()
    }

    fn devfn(bdf: PciBdf) -> Result<u8, PciBusError> {
        match bdf.segment() == 0 && bdf.bus() == 0 {
            true => Ok(bdf.devfn()),
            false => Err(PciBusError::NotOnBus(bdf)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::bus::Bus;
    use crate::pci::bar::{BarKind, PciBar};
    use crate::pci::configuration::{PCI_COMMAND, PCI_COMMAND_MEMORY, PciIdentity};
    use crate::pci::device::PciDevice;
    use crate::test_utils::{RecordingBarRelocation, TestPciFunction};

    fn function(device_id: u16) -> Arc<Mutex<TestPciFunction>> {
        let id = PciIdentity {
            vendor_id: 0x1234,
            device_id,
            ..PciIdentity::default()
        };
        let bar = PciBar {
            index: 0,
            size: 0x1000,
            kind: BarKind::Memory32,
            prefetchable: false,
        };
        Arc::new(Mutex::new(TestPciFunction::new(&id, &[bar])))
    }

    fn bus() -> (PciBus, Arc<RecordingBarRelocation>) {
        let sink = Arc::new(RecordingBarRelocation::new());
        (PciBus::new(sink.clone()), sink)
    }

    fn bdf(s: &str) -> PciBdf {
        s.parse().unwrap()
    }

    fn read32(bus: &PciBus, at: PciBdf, offset: u16) -> u32 {
        let mut data = [0u8; 4];
        bus.read_config(at, offset, &mut data);
        u32::from_le_bytes(data)
    }

    #[test]
    fn host_bridge_answers_at_00_00_0() {
        let (bus, _sink) = bus();
        assert_eq!(bus.bdfs(), [bdf("00:00.0")]);
        assert_eq!(read32(&bus, bdf("00:00.0"), 0), 0x29c0_8086);
        assert_eq!(read32(&bus, bdf("00:00.0"), 8) >> 8, 0x06_0000);
    }

    #[test]
    fn devices_get_the_lowest_free_device_number() {
        let (mut bus, _sink) = bus();
        assert_eq!(bus.add_device(function(1)).unwrap(), bdf("00:01.0"));
        bus.add_function(bdf("00:02.0"), function(2)).unwrap();
        assert_eq!(bus.add_device(function(3)).unwrap(), bdf("00:03.0"));
        assert_eq!(read32(&bus, bdf("00:03.0"), 0), 0x0003_1234);
    }

    #[test]
    fn a_full_bus_refuses_more_devices() {
        let (mut bus, _sink) = bus();
        for _ in 1..=31 {
            bus.add_device(function(1)).unwrap();
        }
        assert_eq!(bus.add_device(function(1)), Err(PciBusError::NoFreeSlot));
    }

    #[test]
    fn explicit_placement_is_checked() {
        let (mut bus, _sink) = bus();
        bus.add_function(bdf("00:04.0"), function(1)).unwrap();
        assert_eq!(
            bus.add_function(bdf("00:04.0"), function(2)),
            Err(PciBusError::Occupied(bdf("00:04.0")))
        );
        assert_eq!(
            bus.add_function(bdf("00:00.1"), function(2)),
            Err(PciBusError::HostBridgeSlot(bdf("00:00.1")))
        );
        assert_eq!(
            bus.add_function(bdf("01:00.0"), function(2)),
            Err(PciBusError::NotOnBus(bdf("01:00.0")))
        );
        assert_eq!(
            bus.remove_function(bdf("00:00.0")).err(),
            Some(PciBusError::HostBridgeSlot(bdf("00:00.0")))
        );
        assert_eq!(
            bus.remove_function(bdf("00:05.0")).err(),
            Some(PciBusError::NotFound(bdf("00:05.0")))
        );
    }

    #[test]
    fn absent_functions_read_all_ones_and_ignore_writes() {
        let (mut bus, sink) = bus();
        assert_eq!(read32(&bus, bdf("00:07.0"), 0), u32::MAX);
        assert_eq!(read32(&bus, bdf("01:00.0"), 0), u32::MAX);
        bus.write_config(bdf("00:07.0"), 4, &[2, 0]);
        assert!(sink.take().is_empty());
    }

    #[test]
    fn function_zero_advertises_other_functions_in_its_slot() {
        let (mut bus, _sink) = bus();
        bus.add_function(bdf("00:05.0"), function(1)).unwrap();
        let mut ht = [0u8; 1];
        bus.read_config(bdf("00:05.0"), PCI_HEADER_TYPE, &mut ht);
        assert_eq!(ht, [0x00]);
        bus.add_function(bdf("00:05.3"), function(2)).unwrap();
        bus.read_config(bdf("00:05.0"), PCI_HEADER_TYPE, &mut ht);
        assert_eq!(ht, [0x80]);
        assert_eq!(read32(&bus, bdf("00:05.0"), 0x0c) >> 16, 0x80);
        // Other functions report what they report.
        bus.read_config(bdf("00:05.3"), PCI_HEADER_TYPE, &mut ht);
        assert_eq!(ht, [0x00]);
    }

    #[test]
    fn bar_changes_reach_the_sink_with_a_target_that_serves_the_bar() {
        let (mut bus, sink) = bus();
        let dev = function(1);
        let at = bus.add_device(dev.clone()).unwrap();
        lock(&dev).set_bar_address(0, 0xc000_0000).unwrap();
        bus.write_config(at, PCI_COMMAND, &PCI_COMMAND_MEMORY.to_le_bytes());
        let region = BarRegion {
            index: 0,
            base: 0xc000_0000,
            len: 0x1000,
            kind: BarKind::Memory32,
        };
        assert_eq!(sink.take(), [(at, BarChange::Mapped(region))]);
        assert_eq!(bus.decoded_bars(), [(at, region)]);

        // What the VMM does with the target: put it on its MMIO bus and route accesses to it.
        let mut mmio = Bus::new();
        mmio.insert(&bus.bar_target(at, 0).unwrap(), region.base, region.len)
            .unwrap();
        assert!(mmio.write(0xc000_0010, &[0xab, 0xcd]));
        let mut data = [0u8; 2];
        lock(&dev).read_bar(0, 0x10, &mut data);
        assert_eq!(data, [0xab, 0xcd]);
    }

    #[test]
    fn moves_update_the_decoded_view() {
        let (mut bus, sink) = bus();
        let dev = function(1);
        let at = bus.add_device(dev.clone()).unwrap();
        lock(&dev).set_bar_address(0, 0xc000_0000).unwrap();
        bus.write_config(at, PCI_COMMAND, &PCI_COMMAND_MEMORY.to_le_bytes());
        bus.write_config(at, 0x10, &0xd000_0000u32.to_le_bytes());
        let changes = sink.take();
        assert!(matches!(
            changes[1],
            (_, BarChange::Moved(m)) if m.old_base == 0xc000_0000 && m.new_base == 0xd000_0000
        ));
        assert_eq!(bus.decoded_bars()[0].1.base, 0xd000_0000);
    }

    #[test]
    fn removing_a_function_unmaps_its_bars_and_silences_its_targets() {
        let (mut bus, sink) = bus();
        let dev = function(1);
        let at = bus.add_device(dev.clone()).unwrap();
        lock(&dev).set_bar_address(0, 0xc000_0000).unwrap();
        bus.write_config(at, PCI_COMMAND, &PCI_COMMAND_MEMORY.to_le_bytes());
        let mut mmio = Bus::new();
        mmio.insert(&bus.bar_target(at, 0).unwrap(), 0xc000_0000, 0x1000)
            .unwrap();
        sink.take();

        bus.remove_function(at).unwrap();
        let changes = sink.take();
        assert!(
            matches!(changes.as_slice(), [(b, BarChange::Unmapped(r))] if *b == at && r.base == 0xc000_0000)
        );
        assert!(bus.decoded_bars().is_empty());
        assert_eq!(read32(&bus, at, 0), u32::MAX);
        // The bus entry died with the function, even if the VMM left the range in place.
        assert!(!mmio.write(0xc000_0000, &[1]));
        // The slot is free again.
        assert_eq!(bus.add_device(function(2)).unwrap(), at);
    }

    #[test]
    fn misaligned_accesses_do_not_reach_the_function() {
        let (mut bus, sink) = bus();
        let dev = function(1);
        let at = bus.add_device(dev.clone()).unwrap();
        lock(&dev).set_bar_address(0, 0xc000_0000).unwrap();
        bus.write_config(at, 3, &[2, 0]);
        assert_eq!(lock(&dev).config().command(), 0);
        assert!(sink.take().is_empty());
        let mut data = [0u8; 2];
        bus.read_config(at, 1, &mut data);
        assert_eq!(data, [0xff, 0xff]);
    }
}
