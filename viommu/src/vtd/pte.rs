//! The VT-d first-stage paging entry: x86-64 paging format, as the IOMMU reads it.
//!
//! Levels are numbered as in the VT-d specification: 1 is the page table (FS-PTE), 2 the page
//! directory (FS-PDE, may map a 2 MiB page), 3 the page-directory-pointer table (FS-PDPE, may map a
//! 1 GiB page), 4 the FS-PML4 table and 5 the FS-PML5 table (5-level paging only).

/// Present (P): the entry is used for translation.
pub const PRESENT: u64 = 1 << 0;
/// Read/write (R/W): writes are allowed through this entry.
pub const WRITABLE: u64 = 1 << 1;
/// User/supervisor (U/S): user-level requests are allowed through this entry.
pub const USER: u64 = 1 << 2;
/// Page-level write-through (PWT). Memory type only; translation ignores it.
pub const WRITE_THROUGH: u64 = 1 << 3;
/// Page-level cache disable (PCD). Memory type only; translation ignores it.
pub const CACHE_DISABLE: u64 = 1 << 4;
/// Accessed (A): set by the IOMMU in every entry a translation uses.
pub const ACCESSED: u64 = 1 << 5;
/// Dirty (D): set by the IOMMU in the leaf entry when a write is translated. Ignored in non-leaf
/// entries.
pub const DIRTY: u64 = 1 << 6;
/// Page size (PS) at levels 2 and 3: the entry maps a 2 MiB or 1 GiB page. Reserved at levels 4
/// and 5; at level 1 the same bit is PAT and ignored by translation.
pub const PAGE_SIZE: u64 = 1 << 7;
/// Extended accessed (EA): set next to A when the configuration enables EAFE; ignored otherwise.
pub const EXTENDED_ACCESSED: u64 = 1 << 10;
/// Execute disable (XD). Only honoured for execute requests, which this model never issues, so
/// it is neither reserved nor checked.
pub const EXECUTE_DISABLE: u64 = 1 << 63;
/// The address field at its widest (bits 51:12); bits at and above the host address width are
/// reserved.
pub const ADDRESS_MASK: u64 = 0x000f_ffff_ffff_f000;

/// Bits 20:13 of a 2 MiB leaf (bit 12 is PAT).
const RESERVED_2M_LEAF: u64 = 0x001f_e000;
/// Bits 29:13 of a 1 GiB leaf (bit 12 is PAT).
const RESERVED_1G_LEAF: u64 = 0x3fff_e000;

/// Entries in one 4 KiB paging structure.
pub const ENTRIES_PER_TABLE: u64 = 512;
/// Size in bytes of one paging structure.
pub const TABLE_BYTES: u64 = 4096;

/// The size of a page a leaf entry maps.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum PageSize {
    /// 4 KiB, mapped by a level-1 entry.
    Size4KiB,
    /// 2 MiB, mapped by a level-2 entry with PS set.
    Size2MiB,
    /// 1 GiB, mapped by a level-3 entry with PS set.
    Size1GiB,
}

impl PageSize {
    /// Every page size, smallest first.
    pub const ALL: [PageSize; 3] = [PageSize::Size4KiB, PageSize::Size2MiB, PageSize::Size1GiB];

    /// log2 of the size in bytes.
    pub const fn shift(self) -> u32 {
        match self {
            PageSize::Size4KiB => 12,
            PageSize::Size2MiB => 21,
            PageSize::Size1GiB => 30,
        }
    }

    /// The size in bytes.
    pub const fn bytes(self) -> u64 {
        1 << self.shift()
    }

    /// The level whose entry maps a page of this size.
    pub const fn leaf_level(self) -> u8 {
        match self {
            PageSize::Size4KiB => 1,
            PageSize::Size2MiB => 2,
            PageSize::Size1GiB => 3,
        }
    }

    /// The page size a leaf at `level` maps, if a leaf may sit there.
    pub const fn for_leaf_level(level: u8) -> Option<PageSize> {
        match level {
            1 => Some(PageSize::Size4KiB),
            2 => Some(PageSize::Size2MiB),
            3 => Some(PageSize::Size1GiB),
            _ => None,
        }
    }

    /// The start of the page of this size that holds `addr`.
    pub const fn align_down(self, addr: u64) -> u64 {
        addr & !(self.bytes() - 1)
    }

    /// The offset of `addr` inside its page of this size.
    pub const fn offset(self, addr: u64) -> u64 {
        addr & (self.bytes() - 1)
    }

    /// Index of this size in [`PageSize::ALL`].
    pub(crate) const fn index(self) -> usize {
        match self {
            PageSize::Size4KiB => 0,
            PageSize::Size2MiB => 1,
            PageSize::Size1GiB => 2,
        }
    }
}

/// log2 of the span of input addresses one entry at `level` covers (12 at level 1, 21 at 2, ...).
pub const fn level_shift(level: u8) -> u32 {
    12 + 9 * (level as u32 - 1)
}

/// The index into the level-`level` table that `iova` selects.
pub const fn table_index(iova: u64, level: u8) -> u64 {
    (iova >> level_shift(level)) & (ENTRIES_PER_TABLE - 1)
}

/// Whether a present entry at `level` ends the walk: level 1 always, levels 2 and 3 when PS is set.
pub const fn is_leaf(entry: u64, level: u8) -> bool {
    level == 1 || ((level == 2 || level == 3) && entry & PAGE_SIZE != 0)
}

/// The reserved bits of a present entry at `level` that must be zero.
///
/// `host_address_width` limits the address field; `one_gib_pages` says whether a level-3 leaf is
/// supported (VT-d capability FS1GP): without it PS at level 3 is itself reserved.
pub const fn reserved_bits(
    entry: u64,
    level: u8,
    host_address_width: u8,
    one_gib_pages: bool,
) -> u64 {
    let beyond_width = ADDRESS_MASK & !((1u64 << host_address_width) - 1);
    let structural = match level {
        4 | 5 => PAGE_SIZE,
        3 if entry & PAGE_SIZE != 0 => {
            if one_gib_pages {
                RESERVED_1G_LEAF
            } else {
                PAGE_SIZE
            }
        }
        2 if entry & PAGE_SIZE != 0 => RESERVED_2M_LEAF,
        _ => 0,
    };
    entry & (beyond_width | structural)
}

/// The guest physical address the entry points at: the next table, or the page a leaf maps (with
/// the low bits of a large page, PAT among them, cleared).
pub const fn output_address(entry: u64, level: u8) -> u64 {
    let address = entry & ADDRESS_MASK;
    match PageSize::for_leaf_level(level) {
        Some(size) if is_leaf(entry, level) => size.align_down(address),
        _ => address,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn level_spans_match_page_sizes() {
        for size in PageSize::ALL {
            assert_eq!(level_shift(size.leaf_level()), size.shift());
            assert_eq!(PageSize::for_leaf_level(size.leaf_level()), Some(size));
        }
        assert_eq!(level_shift(4), 39);
        assert_eq!(level_shift(5), 48);
    }

    #[test]
    fn table_index_selects_nine_bits_per_level() {
        let iova = (3 << 39) | (5 << 30) | (7 << 21) | (9 << 12) | 0x123;
        assert_eq!(table_index(iova, 4), 3);
        assert_eq!(table_index(iova, 3), 5);
        assert_eq!(table_index(iova, 2), 7);
        assert_eq!(table_index(iova, 1), 9);
    }

    #[test]
    fn address_bits_beyond_host_width_are_reserved() {
        let entry = PRESENT | (1 << 40);
        assert_eq!(reserved_bits(entry, 1, 40, true), 1 << 40);
        assert_eq!(reserved_bits(entry, 1, 41, true), 0);
        assert_eq!(reserved_bits(entry, 1, 52, true), 0);
    }

    #[test]
    fn page_size_bit_is_reserved_above_level_three() {
        assert_eq!(reserved_bits(PRESENT | PAGE_SIZE, 4, 48, true), PAGE_SIZE);
        assert_eq!(reserved_bits(PRESENT | PAGE_SIZE, 5, 48, true), PAGE_SIZE);
        // At level 1 the same bit is PAT.
        assert_eq!(reserved_bits(PRESENT | PAGE_SIZE, 1, 48, true), 0);
    }

    #[test]
    fn large_leaves_reserve_the_bits_below_their_alignment_except_pat() {
        let pat = 1 << 12;
        assert_eq!(reserved_bits(PRESENT | PAGE_SIZE | pat, 2, 48, true), 0);
        assert_eq!(
            reserved_bits(PRESENT | PAGE_SIZE | (1 << 20), 2, 48, true),
            1 << 20
        );
        assert_eq!(
            reserved_bits(PRESENT | PAGE_SIZE | (1 << 29), 3, 48, true),
            1 << 29
        );
        // The same bits are address bits in a non-leaf entry.
        assert_eq!(reserved_bits(PRESENT | (1 << 20), 2, 48, true), 0);
    }

    #[test]
    fn one_gib_leaf_is_reserved_without_fs1gp() {
        assert_eq!(reserved_bits(PRESENT | PAGE_SIZE, 3, 48, false), PAGE_SIZE);
    }

    #[test]
    fn large_leaf_output_drops_pat_and_low_bits() {
        let entry = PRESENT | PAGE_SIZE | (1 << 12) | 0x4020_0000;
        assert_eq!(output_address(entry, 2), 0x4020_0000);
        let table = PRESENT | 0x4020_1000;
        assert_eq!(output_address(table, 2), 0x4020_1000);
    }
}
