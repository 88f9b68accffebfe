//! Address buses (MMIO and port I/O) that route guest accesses to devices.
//!
//! A bus maps non-overlapping address ranges to devices. It holds the devices weakly: whoever
//! created a device owns it, and a device dropped by its owner simply stops answering (reads
//! return all-ones, as an unclaimed PCI access does).

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex, Weak};

/// A device reachable through a bus.
///
/// `base` is the start of the range the access hit and `offset` is relative to it, so a device
/// registered at several ranges (a PCI device's BARs) can tell them apart. `data.len()` is the
/// access width (1, 2, 4 or 8 for guest accesses; longer for harness accesses).
pub trait BusDevice: Send {
    /// Handles a read; the device fills `data`.
    fn read(&mut self, base: u64, offset: u64, data: &mut [u8]);
    /// Handles a write of `data`.
    fn write(&mut self, base: u64, offset: u64, data: &[u8]);
}

/// An error from changing the layout of a [`Bus`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum BusError {
    /// The new range would overlap a range already on the bus.
    #[error("bus range [{base:#x}, +{len:#x}) overlaps an existing range")]
    Overlap {
        /// Start of the rejected range.
        base: u64,
        /// Length of the rejected range.
        len: u64,
    },
    /// The range is empty or runs past the end of the address space.
    #[error("bus range [{base:#x}, +{len:#x}) is empty or wraps around")]
    InvalidRange {
        /// Start of the rejected range.
        base: u64,
        /// Length of the rejected range.
        len: u64,
    },
    /// No range starts at this address.
    #[error("no bus range starts at {base:#x}")]
    NotFound {
        /// The address looked up.
        base: u64,
    },
}

/// A device shared between its owner and the buses it sits on.
pub type SharedBusDevice = Arc<Mutex<dyn BusDevice>>;

#[derive(Debug, Clone, Copy)]
struct BusRange {
    len: u64,
}

/// A bus: non-overlapping `[base, base + len)` ranges, each routed to one device.
#[derive(Default)]
pub struct Bus {
    ranges: BTreeMap<u64, (BusRange, Weak<Mutex<dyn BusDevice>>)>,
}

impl std::fmt::Debug for Bus {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let ranges: Vec<_> = self.ranges.iter().map(|(b, (r, _))| (*b, r.len)).collect();
        f.debug_struct("Bus").field("ranges", &ranges).finish()
    }
}

impl Bus {
    /// Creates an empty bus.
    pub fn new() -> Self {
        Self::default()
    }

    /// Routes `[base, base + len)` to `device`.
    pub fn insert(
        &mut self,
        device: &SharedBusDevice,
        base: u64,
        len: u64,
    ) -> Result<(), BusError> {
        let last = Self::last(base, len)?;
        if self.first_overlap(base, last).is_some() {
            return Err(BusError::Overlap { base, len });
        }
        self.ranges
            .insert(base, (BusRange { len }, Arc::downgrade(device)));
        Ok(())
    }

    /// Removes the range starting at `base`.
    pub fn remove(&mut self, base: u64) -> Result<(), BusError> {
        self.ranges
            .remove(&base)
            .map(|_| ())
            .ok_or(BusError::NotFound { base })
    }

    /// Moves the range starting at `old_base` to `new_base` (a guest relocating a BAR). On error
    /// the bus is unchanged.
    pub fn relocate(&mut self, old_base: u64, new_base: u64) -> Result<(), BusError> {
        let (range, dev) = self
            .ranges
            .remove(&old_base)
            .ok_or(BusError::NotFound { base: old_base })?;
        let result = Self::last(new_base, range.len).and_then(|last| {
            match self.first_overlap(new_base, last) {
                Some(_) => Err(BusError::Overlap {
                    base: new_base,
                    len: range.len,
                }),
                None => Ok(()),
            }
        });
        match result {
            Ok(()) => {
                self.ranges.insert(new_base, (range, dev));
                Ok(())
            }
            Err(e) => {
                self.ranges.insert(old_base, (range, dev));
                Err(e)
            }
        }
    }

    /// The device and range covering `addr`, as `(device, base, offset)`.
    pub fn resolve(&self, addr: u64) -> Option<(SharedBusDevice, u64, u64)> {
        let (base, (range, dev)) = self.ranges.range(..=addr).next_back()?;
        let offset = addr - base;
        if offset >= range.len {
            return None;
        }
        Some((dev.upgrade()?, *base, offset))
    }

    /// Reads `data.len()` bytes at `addr`. Returns false, leaving all-ones in `data`, if nothing
    /// answers there.
    pub fn read(&self, addr: u64, data: &mut [u8]) -> bool {
        match self.resolve(addr) {
            Some((dev, base, offset)) => {
                lock(&dev).read(base, offset, data);
                true
            }
            None => {
                data.fill(0xff);
                false
            }
        }
    }

    /// Writes `data` at `addr`. Returns false if nothing answers there (the write is dropped).
    pub fn write(&self, addr: u64, data: &[u8]) -> bool {
        match self.resolve(addr) {
            Some((dev, base, offset)) => {
                lock(&dev).write(base, offset, data);
                true
            }
            None => false,
        }
    }

    fn last(base: u64, len: u64) -> Result<u64, BusError> {
        if len == 0 {
            return Err(BusError::InvalidRange { base, len });
        }
        base.checked_add(len - 1)
            .ok_or(BusError::InvalidRange { base, len })
    }

    fn first_overlap(&self, base: u64, last: u64) -> Option<u64> {
        if let Some((b, (r, _))) = self.ranges.range(..=base).next_back() {
            if b + (r.len - 1) >= base {
                return Some(*b);
            }
        }
        self.ranges.range(base..=last).next().map(|(b, _)| *b)
    }
}

/// Locks a device, recovering it if another thread panicked while holding it: a device model's
/// registers stay meaningful after a panic elsewhere, and the VMM must keep serving the guest.
pub fn lock<T: ?Sized>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

#[cfg(test)]
mod tests {
    use super::*;

    struct Recorder {
        last: Option<(u64, u64, Vec<u8>)>,
    }

    impl BusDevice for Recorder {
        fn read(&mut self, base: u64, offset: u64, data: &mut [u8]) {
            data.fill((base + offset) as u8);
        }
        fn write(&mut self, base: u64, offset: u64, data: &[u8]) {
            self.last = Some((base, offset, data.to_vec()));
        }
    }

    fn recorder() -> (Arc<Mutex<Recorder>>, SharedBusDevice) {
        let r = Arc::new(Mutex::new(Recorder { last: None }));
        let shared: SharedBusDevice = r.clone();
        (r, shared)
    }

    #[test]
    fn access_reaches_device_with_base_and_offset() {
        let (rec, dev) = recorder();
        let mut bus = Bus::new();
        bus.insert(&dev, 0x1000, 0x100).unwrap();
        assert!(bus.write(0x1010, &[1, 2]));
        assert_eq!(lock(&rec).last, Some((0x1000, 0x10, vec![1, 2])));
        let mut b = [0u8; 1];
        assert!(bus.read(0x1001, &mut b));
        assert_eq!(b, [0x01]);
    }

    #[test]
    fn unclaimed_read_returns_all_ones() {
        let bus = Bus::new();
        let mut b = [0u8; 4];
        assert!(!bus.read(0x10, &mut b));
        assert_eq!(b, [0xff; 4]);
    }

    #[test]
    fn overlapping_insert_is_rejected_and_bus_unchanged() {
        let (_rec, dev) = recorder();
        let mut bus = Bus::new();
        bus.insert(&dev, 0x1000, 0x100).unwrap();
        assert_eq!(
            bus.insert(&dev, 0x10ff, 1),
            Err(BusError::Overlap {
                base: 0x10ff,
                len: 1
            })
        );
        assert_eq!(
            bus.insert(&dev, 0xf00, 0x101),
            Err(BusError::Overlap {
                base: 0xf00,
                len: 0x101
            })
        );
        bus.insert(&dev, 0x1100, 0x10).unwrap();
        assert!(bus.resolve(0x10ff).is_some());
    }

    #[test]
    fn range_at_top_of_address_space_is_accepted_but_wrapping_is_not() {
        let (_rec, dev) = recorder();
        let mut bus = Bus::new();
        bus.insert(&dev, u64::MAX, 1).unwrap();
        assert!(bus.resolve(u64::MAX).is_some());
        assert_eq!(
            bus.insert(&dev, u64::MAX - 1, 3),
            Err(BusError::InvalidRange {
                base: u64::MAX - 1,
                len: 3
            })
        );
        assert_eq!(
            bus.insert(&dev, 0, 0),
            Err(BusError::InvalidRange { base: 0, len: 0 })
        );
    }

    #[test]
    fn relocate_moves_range_or_leaves_it_in_place() {
        let (_rec, dev) = recorder();
        let mut bus = Bus::new();
        bus.insert(&dev, 0x1000, 0x100).unwrap();
        bus.insert(&dev, 0x3000, 0x100).unwrap();
        assert!(bus.relocate(0x1000, 0x3080).is_err());
        assert!(bus.resolve(0x1000).is_some());
        bus.relocate(0x1000, 0x2000).unwrap();
        assert!(bus.resolve(0x1000).is_none());
        assert_eq!(
            bus.resolve(0x2010).map(|(_, b, o)| (b, o)),
            Some((0x2000, 0x10))
        );
    }

    #[test]
    fn dropped_device_stops_answering() {
        let (rec, dev) = recorder();
        let mut bus = Bus::new();
        bus.insert(&dev, 0, 0x10).unwrap();
        drop(rec);
        drop(dev);
        assert!(!bus.write(0, &[1]));
    }
}
