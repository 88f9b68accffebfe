//! The machine's memory map as the boot protocols describe it (e820 in the zero page, the PVH
//! memory map table): built from the RAM regions of guest memory and the fixed reserved areas
//! of [`crate::layout`].

use vm_memory::{GuestMemoryBackend, GuestMemoryMmap, GuestMemoryRegion};

use super::LoaderError;
use crate::layout::{
    BIOS_END, EBDA_START, HIGH_RAM_START, MEM_32BIT_GAP_START, PCI_ECAM_SIZE, PCI_ECAM_START,
    PVH_MEMMAP_MAX_ENTRIES,
};

/// What a memory map entry holds, with the e820 / PVH type numbers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MemoryKind {
    /// Usable RAM (type 1).
    Ram = 1,
    /// Reserved: the BIOS area with the ACPI tables, the ECAM window (type 2).
    Reserved = 2,
}

/// One range of the memory map.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MemoryMapEntry {
    /// First guest physical address.
    pub addr: u64,
    /// Size in bytes.
    pub size: u64,
    /// What the range holds.
    pub kind: MemoryKind,
}

impl MemoryMapEntry {
    /// End (exclusive) of the range.
    pub fn end(&self) -> u64 {
        self.addr + self.size
    }
}

/// The memory map of `guest_mem`, sorted by address: RAM below the EBDA, the reserved BIOS area
/// (EBDA up to 1 MiB, where the ACPI tables are), RAM from 1 MiB, the reserved ECAM window, and
/// RAM above 4 GiB.
///
/// Fails when RAM does not cover the low megabyte, where the boot structures go, or when the map
/// has more entries than the PVH memory map table holds.
pub fn memory_map(guest_mem: &GuestMemoryMmap) -> Result<Vec<MemoryMapEntry>, LoaderError> {
    let mut ram: Vec<(u64, u64)> = guest_mem
        .iter()
        .map(|region| (region.start_addr().0, region.start_addr().0 + region.len()))
        .collect();
    ram.sort_unstable();
    // Merge regions that touch, so the map has one entry per contiguous RAM range.
    let mut merged: Vec<(u64, u64)> = Vec::with_capacity(ram.len());
    for (start, end) in ram {
        match merged.last_mut() {
            Some(last) if last.1 == start => last.1 = end,
            _ => merged.push((start, end)),
        }
    }
    if !merged
        .iter()
        .any(|&(start, end)| start == 0 && end >= HIGH_RAM_START)
    {
        return Err(LoaderError::LowMemoryMissing);
    }

    let mut map = Vec::with_capacity(merged.len() + 3);
    for (start, end) in merged {
        // The BIOS area is memory, but the guest must not use it as RAM.
        if start < EBDA_START {
            map.push(ram_entry(start, end.min(EBDA_START)));
        }
        let start = start.max(HIGH_RAM_START);
        if end > start {
            map.push(ram_entry(start, end));
        }
    }
    map.push(MemoryMapEntry {
        addr: EBDA_START,
        size: BIOS_END - EBDA_START,
        kind: MemoryKind::Reserved,
    });
    map.push(MemoryMapEntry {
        addr: PCI_ECAM_START,
        size: PCI_ECAM_SIZE,
        kind: MemoryKind::Reserved,
    });
    map.sort_unstable_by_key(|entry| entry.addr);
    // The PVH table is the smaller of the two protocols' tables (the zero page holds 128).
    if map.len() > PVH_MEMMAP_MAX_ENTRIES {
        return Err(LoaderError::MemoryMapTooLarge {
            entries: map.len(),
            max: PVH_MEMMAP_MAX_ENTRIES,
        });
    }
    Ok(map)
}

fn ram_entry(start: u64, end: u64) -> MemoryMapEntry {
    MemoryMapEntry {
        addr: start,
        size: end - start,
        kind: MemoryKind::Ram,
    }
}

/// End of the RAM that starts at 1 MiB, capped at the 32-bit hole: kernels, the initramfs and
/// the command line's readers all live below it.
pub(super) fn low_ram_end(map: &[MemoryMapEntry]) -> u64 {
    map.iter()
        .find(|entry| entry.kind == MemoryKind::Ram && entry.addr == HIGH_RAM_START)
        .map_or(HIGH_RAM_START, |entry| entry.end().min(MEM_32BIT_GAP_START))
}

#[cfg(test)]
mod tests {
    use vm_memory::GuestAddress;

    use super::*;

    fn memory(ranges: &[(u64, usize)]) -> GuestMemoryMmap {
        let ranges: Vec<_> = ranges
            .iter()
            .map(|&(start, len)| (GuestAddress(start), len))
            .collect();
        GuestMemoryMmap::from_ranges(&ranges).unwrap()
    }

    #[test]
    fn touching_regions_merge_into_one_ram_entry() {
        let map = memory_map(&memory(&[(0, 0x10_0000), (0x10_0000, 0xf0_0000)])).unwrap();
        let ram: Vec<_> = map.iter().filter(|e| e.kind == MemoryKind::Ram).collect();
        assert_eq!(ram.len(), 2, "{map:x?}");
        assert_eq!((ram[1].addr, ram[1].end()), (HIGH_RAM_START, 0x100_0000));
        assert_eq!(low_ram_end(&map), 0x100_0000);
    }

    #[test]
    fn exactly_one_megabyte_of_ram_has_no_high_ram_entry() {
        let map = memory_map(&memory(&[(0, 0x10_0000)])).unwrap();
        assert!(
            map.iter()
                .all(|e| e.addr < HIGH_RAM_START || e.kind == MemoryKind::Reserved)
        );
        assert_eq!(
            low_ram_end(&map),
            HIGH_RAM_START,
            "nothing to load a kernel into"
        );
    }

    #[test]
    fn a_hole_in_the_low_megabyte_is_refused() {
        let err = memory_map(&memory(&[(0, 0x8_0000), (0x10_0000, 0x10_0000)])).unwrap_err();
        assert!(matches!(err, LoaderError::LowMemoryMissing), "{err}");
    }
}
