//! Extra guest memory mappings beyond RAM (the mmapped BAR areas of a passthrough device): the
//! bookkeeping both hypervisor sides share, so KVM and the device harness accept and refuse the
//! same mappings.

use std::collections::BTreeMap;
use std::io;

use crate::layout::PAGE_SIZE;

/// Host memory mapped into guest physical memory.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MemorySlot {
    /// The slot's id, used to unmap it (a KVM memory slot number on KVM).
    pub id: u32,
    /// Guest physical address of the first byte.
    pub guest_addr: u64,
    /// Length in bytes.
    pub size: u64,
    /// Address of the first byte in the VMM.
    pub host_addr: u64,
    /// Whether guest writes are refused (they exit to the VMM as MMIO instead).
    pub read_only: bool,
}

impl MemorySlot {
    fn last(&self) -> u64 {
        self.guest_addr + (self.size - 1)
    }
}

/// An error from mapping or unmapping guest memory.
#[derive(Debug, thiserror::Error)]
pub enum MemorySlotError {
    /// Address or size is zero-sized, not page aligned, or wraps around.
    #[error(
        "cannot map {size:#x} bytes at guest address {guest_addr:#x} from host address \
         {host_addr:#x}: addresses and size must be page aligned, non-empty and not wrap"
    )]
    InvalidRange {
        /// Guest address asked for.
        guest_addr: u64,
        /// Size asked for.
        size: u64,
        /// Host address given.
        host_addr: u64,
    },
    /// The range overlaps RAM or another mapping.
    #[error(
        "cannot map {size:#x} bytes at guest address {guest_addr:#x}: overlaps the mapping at \
         {existing:#x}"
    )]
    Overlap {
        /// Guest address asked for.
        guest_addr: u64,
        /// Size asked for.
        size: u64,
        /// Start of the mapping in the way.
        existing: u64,
    },
    /// Every slot is in use.
    #[error("cannot map guest address {guest_addr:#x}: all {count} memory slots are in use")]
    Exhausted {
        /// Guest address asked for.
        guest_addr: u64,
        /// The number of slots the hypervisor has.
        count: u32,
    },
    /// No mapping has this id.
    #[error("no guest memory mapping has slot id {id}")]
    NotFound {
        /// The id asked for.
        id: u32,
    },
    /// The hypervisor refused.
    #[error("failed to {op} guest memory slot {id}")]
    Hypervisor {
        /// What was being done.
        op: &'static str,
        /// The slot.
        id: u32,
        /// The host error.
        #[source]
        source: io::Error,
    },
}

/// Slot ids in `[first, end)` and the guest ranges they map; RAM ranges are fixed and reserved.
#[derive(Debug)]
pub struct MemorySlots {
    first: u32,
    end: u32,
    ram: Vec<(u64, u64)>,
    by_addr: BTreeMap<u64, MemorySlot>,
}

impl MemorySlots {
    /// Bookkeeping for slot ids `first..end` around the fixed `ram` ranges `(guest addr, size)`.
    pub fn new(first: u32, end: u32, ram: Vec<(u64, u64)>) -> Self {
        Self {
            first,
            end,
            ram,
            by_addr: BTreeMap::new(),
        }
    }

    /// Checks a new mapping and picks its slot id, without recording it (see
    /// [`commit`](Self::commit)), so the hypervisor can be told first.
    pub fn prepare(
        &self,
        guest_addr: u64,
        size: u64,
        host_addr: u64,
        read_only: bool,
    ) -> Result<MemorySlot, MemorySlotError> {
        let invalid = MemorySlotError::InvalidRange {
            guest_addr,
            size,
            host_addr,
        };
        let aligned = [guest_addr, size, host_addr]
            .iter()
            .all(|v| v % PAGE_SIZE == 0);
        if size == 0 || !aligned || guest_addr.checked_add(size - 1).is_none() {
            return Err(invalid);
        }
        if host_addr.checked_add(size - 1).is_none() {
            return Err(invalid);
        }
        let last = guest_addr + (size - 1);
        let overlap = |existing| MemorySlotError::Overlap {
            guest_addr,
            size,
            existing,
        };
        for &(start, len) in &self.ram {
            if start <= last && guest_addr <= start + (len - 1) {
                return Err(overlap(start));
            }
        }
        if let Some((&start, _)) = self
            .by_addr
            .range(..=last)
            .next_back()
            .filter(|(_, s)| s.last() >= guest_addr)
        {
            return Err(overlap(start));
        }
        let id = (self.first..self.end)
            .find(|id| self.by_addr.values().all(|s| s.id != *id))
            .ok_or(MemorySlotError::Exhausted {
                guest_addr,
                count: self.end - self.first,
            })?;
        Ok(MemorySlot {
            id,
            guest_addr,
            size,
            host_addr,
            read_only,
        })
    }

    /// Records a mapping returned by [`prepare`](Self::prepare).
    pub fn commit(&mut self, slot: MemorySlot) {
        self.by_addr.insert(slot.guest_addr, slot);
    }

    /// The mapping with slot id `id`.
    pub fn get(&self, id: u32) -> Result<MemorySlot, MemorySlotError> {
        self.by_addr
            .values()
            .find(|s| s.id == id)
            .copied()
            .ok_or(MemorySlotError::NotFound { id })
    }

    /// Forgets the mapping with slot id `id`.
    pub fn remove(&mut self, id: u32) -> Result<MemorySlot, MemorySlotError> {
        let slot = self.get(id)?;
        self.by_addr.remove(&slot.guest_addr);
        Ok(slot)
    }

    /// The mapping covering guest address `addr`.
    pub fn find(&self, addr: u64) -> Option<MemorySlot> {
        self.by_addr
            .range(..=addr)
            .next_back()
            .map(|(_, s)| *s)
            .filter(|s| s.last() >= addr)
    }

    /// Every mapping, in guest address order.
    pub fn iter(&self) -> impl Iterator<Item = &MemorySlot> {
        self.by_addr.values()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn slots() -> MemorySlots {
        MemorySlots::new(2, 4, vec![(0, 0x10_0000)])
    }

    fn map(s: &mut MemorySlots, addr: u64, size: u64) -> Result<MemorySlot, MemorySlotError> {
        let slot = s.prepare(addr, size, 0x7f00_0000_0000, false)?;
        s.commit(slot);
        Ok(slot)
    }

    #[test]
    fn mappings_get_free_ids_and_are_found_by_address() {
        let mut s = slots();
        let a = map(&mut s, 0xc000_0000, 0x2000).unwrap();
        let b = map(&mut s, 0xc000_2000, 0x1000).unwrap();
        assert_eq!((a.id, b.id), (2, 3));
        assert_eq!(s.find(0xc000_1fff), Some(a));
        assert_eq!(s.find(0xc000_2000), Some(b));
        assert_eq!(s.find(0xc000_3000), None);
    }

    #[test]
    fn overlapping_ram_or_another_mapping_is_refused() {
        let mut s = slots();
        assert!(matches!(
            map(&mut s, 0xf_f000, 0x2000),
            Err(MemorySlotError::Overlap { existing: 0, .. })
        ));
        map(&mut s, 0xc000_0000, 0x2000).unwrap();
        assert!(matches!(
            map(&mut s, 0xbfff_f000, 0x2000),
            Err(MemorySlotError::Overlap {
                existing: 0xc000_0000,
                ..
            })
        ));
    }

    #[test]
    fn misaligned_empty_or_wrapping_ranges_are_refused() {
        let s = slots();
        for (addr, size) in [
            (0xc000_0800, 0x1000),
            (0xc000_0000, 0),
            (u64::MAX - 0xfff, 0x2000),
        ] {
            assert!(matches!(
                s.prepare(addr, size, 0x1000, false),
                Err(MemorySlotError::InvalidRange { .. })
            ));
        }
    }

    #[test]
    fn ids_run_out_and_come_back_after_removal() {
        let mut s = slots();
        map(&mut s, 0xc000_0000, 0x1000).unwrap();
        let b = map(&mut s, 0xc000_1000, 0x1000).unwrap();
        assert!(matches!(
            map(&mut s, 0xc000_2000, 0x1000),
            Err(MemorySlotError::Exhausted { count: 2, .. })
        ));
        s.remove(b.id).unwrap();
        assert_eq!(map(&mut s, 0xc000_2000, 0x1000).unwrap().id, b.id);
        assert!(matches!(
            s.remove(9),
            Err(MemorySlotError::NotFound { id: 9 })
        ));
    }
}
