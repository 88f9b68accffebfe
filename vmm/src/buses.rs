//! The machine's two address buses, port I/O and MMIO, shared by the vCPU threads, the harness
//! and the device wiring.
//!
//! A bus is read-locked only long enough to find the device; the device is called after the lock
//! is released. A device may then change the bus layout from inside an access (a guest moving a
//! PCI BAR through a config-space write) without deadlocking.

use std::sync::{Arc, RwLock};

use devices::bus::{Bus, BusError, SharedBusDevice, lock};

/// One address bus that may change while guests access it.
#[derive(Debug)]
pub struct IoBus {
    name: &'static str,
    bus: RwLock<Bus>,
}

impl IoBus {
    /// An empty bus; `name` ("pio", "mmio") appears in log messages.
    pub fn new(name: &'static str) -> Self {
        Self {
            name,
            bus: RwLock::new(Bus::new()),
        }
    }

    /// Routes `[base, base + len)` to `device`.
    pub fn insert(&self, device: &SharedBusDevice, base: u64, len: u64) -> Result<(), BusError> {
        self.bus
            .write()
            .unwrap_or_else(|e| e.into_inner())
            .insert(device, base, len)
    }

    /// Removes the range starting at `base`.
    pub fn remove(&self, base: u64) -> Result<(), BusError> {
        self.bus
            .write()
            .unwrap_or_else(|e| e.into_inner())
            .remove(base)
    }

    /// Moves the range starting at `old_base` to `new_base`.
    pub fn relocate(&self, old_base: u64, new_base: u64) -> Result<(), BusError> {
        self.bus
            .write()
            .unwrap_or_else(|e| e.into_inner())
            .relocate(old_base, new_base)
    }

    /// Removes the range starting at `base` only if it routes to `device`: a range that failed
    /// to go on the bus (it overlapped another) must not take the other device's range with it.
    pub fn remove_owned(&self, base: u64, device: &SharedBusDevice) -> Result<(), BusError> {
        let mut bus = self.bus.write().unwrap_or_else(|e| e.into_inner());
        Self::check_owner(&bus, base, device)?;
        bus.remove(base)
    }

    /// Moves the range starting at `old_base` to `new_base` only if it routes to `device`.
    pub fn relocate_owned(
        &self,
        old_base: u64,
        new_base: u64,
        device: &SharedBusDevice,
    ) -> Result<(), BusError> {
        let mut bus = self.bus.write().unwrap_or_else(|e| e.into_inner());
        Self::check_owner(&bus, old_base, device)?;
        bus.relocate(old_base, new_base)
    }

    fn check_owner(bus: &Bus, base: u64, device: &SharedBusDevice) -> Result<(), BusError> {
        match bus.resolve(base) {
            Some((found, found_base, _))
                if found_base == base
                    && std::ptr::addr_eq(Arc::as_ptr(&found), Arc::as_ptr(device)) =>
            {
                Ok(())
            }
            _ => Err(BusError::NotFound { base }),
        }
    }

    fn resolve(&self, addr: u64) -> Option<(SharedBusDevice, u64, u64)> {
        self.bus
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .resolve(addr)
    }

    /// Reads `data.len()` bytes at `addr`. Returns false, leaving all-ones in `data`, if nothing
    /// answers there.
    pub fn read(&self, addr: u64, data: &mut [u8]) -> bool {
        match self.resolve(addr) {
            Some((device, base, offset)) => {
                lock(&device).read(base, offset, data);
                true
            }
            None => {
                log::debug!(
                    "{} read of {} bytes at {addr:#x}: unclaimed",
                    self.name,
                    data.len()
                );
                data.fill(0xff);
                false
            }
        }
    }

    /// Writes `data` at `addr`. Returns false if nothing answers there (the write is dropped).
    pub fn write(&self, addr: u64, data: &[u8]) -> bool {
        match self.resolve(addr) {
            Some((device, base, offset)) => {
                lock(&device).write(base, offset, data);
                true
            }
            None => {
                log::debug!("{} write of {data:02x?} at {addr:#x}: unclaimed", self.name);
                false
            }
        }
    }
}

/// The port I/O and MMIO buses of a machine.
#[derive(Debug, Clone)]
pub struct Buses {
    /// Port I/O (addresses are port numbers).
    pub pio: Arc<IoBus>,
    /// Memory-mapped I/O (guest physical addresses not backed by RAM or a memory slot).
    pub mmio: Arc<IoBus>,
}

impl Buses {
    /// Two empty buses.
    pub fn new() -> Self {
        Self {
            pio: Arc::new(IoBus::new("pio")),
            mmio: Arc::new(IoBus::new("mmio")),
        }
    }
}

impl Default for Buses {
    fn default() -> Self {
        Self::new()
    }
}

#[cfg(test)]
mod tests {
    use std::sync::{Mutex, Weak};

    use devices::bus::BusDevice;

    use super::*;

    /// A device that moves its own range when written, as a BAR relocation does.
    struct SelfMoving {
        bus: Weak<IoBus>,
    }

    impl BusDevice for SelfMoving {
        fn read(&mut self, _base: u64, offset: u64, data: &mut [u8]) {
            data.fill(offset as u8);
        }
        fn write(&mut self, base: u64, _offset: u64, data: &[u8]) {
            let new_base = u64::from(data[0]) << 8;
            self.bus
                .upgrade()
                .unwrap()
                .relocate(base, new_base)
                .unwrap();
        }
    }

    #[test]
    fn owned_removal_leaves_another_devices_range_alone() {
        let bus = IoBus::new("mmio");
        let a: SharedBusDevice = Arc::new(Mutex::new(SelfMoving { bus: Weak::new() }));
        let b: SharedBusDevice = Arc::new(Mutex::new(SelfMoving { bus: Weak::new() }));
        bus.insert(&a, 0x1000, 0x100).unwrap();
        assert_eq!(
            bus.remove_owned(0x1000, &b),
            Err(BusError::NotFound { base: 0x1000 })
        );
        assert_eq!(
            bus.relocate_owned(0x1000, 0x2000, &b),
            Err(BusError::NotFound { base: 0x1000 })
        );
        let mut byte = [0u8];
        assert!(bus.read(0x1001, &mut byte));
        bus.relocate_owned(0x1000, 0x2000, &a).unwrap();
        bus.remove_owned(0x2000, &a).unwrap();
        assert!(!bus.read(0x2001, &mut byte));
    }

    #[test]
    fn device_can_change_the_bus_from_inside_an_access() {
        let bus = Arc::new(IoBus::new("mmio"));
        let dev: SharedBusDevice = Arc::new(Mutex::new(SelfMoving {
            bus: Arc::downgrade(&bus),
        }));
        bus.insert(&dev, 0x100, 0x10).unwrap();
        assert!(bus.write(0x100, &[0x20]));
        let mut b = [0u8; 1];
        assert!(!bus.read(0x105, &mut b));
        assert_eq!(b, [0xff]);
        assert!(bus.read(0x2005, &mut b));
        assert_eq!(b, [5]);
    }
}
