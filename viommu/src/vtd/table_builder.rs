//! Builds first-stage tables in any [`TableMemory`], the way a guest driver would: for tests,
//! benches and tools that need a real table to walk.

use std::ops::Range;

use super::config::PagingMode;
use super::memory::{Stage2Fault, TableMemory};
use super::pte::{
    ADDRESS_MASK, ENTRIES_PER_TABLE, PAGE_SIZE, PRESENT, PageSize, TABLE_BYTES, USER, WRITABLE,
    is_leaf, output_address, table_index,
};

/// Flags given to the non-leaf entries the builder creates: present, writable, user, so that the
/// leaf flags alone decide the rights.
pub const TABLE_FLAGS: u64 = PRESENT | WRITABLE | USER;

/// Errors building a first-stage table.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum TableBuildError {
    /// The area given for tables is empty, unaligned or used up.
    #[error("No room for another first-stage table in {start:#x}..{end:#x}")]
    OutOfTableSpace {
        /// Start of the table area.
        start: u64,
        /// End of the table area.
        end: u64,
    },
    /// The input or output address is not aligned to the page size.
    #[error("Cannot map IOVA {iova:#x} to GPA {gpa:#x} with {size:?}: not aligned")]
    Misaligned {
        /// The input address.
        iova: u64,
        /// The output address.
        gpa: u64,
        /// The page size asked for.
        size: PageSize,
    },
    /// The page or its output address does not fit the paging mode or the address field.
    #[error("IOVA {iova:#x} or GPA {gpa:#x} does not fit {mode:?} first-stage paging")]
    OutOfRange {
        /// The input address.
        iova: u64,
        /// The output address.
        gpa: u64,
        /// The paging mode.
        mode: PagingMode,
    },
    /// A large-page leaf sits where the new mapping needs a table.
    #[error("IOVA {iova:#x} is inside a large page mapped at level {level}")]
    LargePageInTheWay {
        /// The input address.
        iova: u64,
        /// Level of the large leaf.
        level: u8,
    },
    /// The memory refused an access.
    #[error("Table memory access failed")]
    Memory(#[source] Stage2Fault),
}

/// Allocates tables from an area of guest physical memory and writes entries into them.
#[derive(Debug, Clone)]
pub struct FirstStageTableBuilder {
    mode: PagingMode,
    root: u64,
    area: Range<u64>,
    next_free: u64,
}

impl FirstStageTableBuilder {
    /// Starts an empty table whose pages are allocated from `area` (4 KiB aligned, the root
    /// first).
    pub fn new<M: TableMemory + ?Sized>(
        mem: &mut M,
        mode: PagingMode,
        area: Range<u64>,
    ) -> Result<Self, TableBuildError> {
        let mut builder = FirstStageTableBuilder {
            mode,
            root: 0,
            next_free: area.start,
            area,
        };
        builder.root = builder.allocate_table(mem)?;
        Ok(builder)
    }

    /// Guest physical address of the root table.
    pub fn root(&self) -> u64 {
        self.root
    }

    /// The paging mode.
    pub fn mode(&self) -> PagingMode {
        self.mode
    }

    /// Allocates and zeroes a 4 KiB page from the area; usable for tables of one's own.
    pub fn allocate_table<M: TableMemory + ?Sized>(
        &mut self,
        mem: &mut M,
    ) -> Result<u64, TableBuildError> {
        let out_of_space = TableBuildError::OutOfTableSpace {
            start: self.area.start,
            end: self.area.end,
        };
        if self.next_free % TABLE_BYTES != 0 {
            return Err(out_of_space);
        }
        let table = self.next_free;
        let end = table.checked_add(TABLE_BYTES).ok_or(out_of_space)?;
        if end > self.area.end {
            return Err(out_of_space);
        }
        self.next_free = end;
        for index in 0..ENTRIES_PER_TABLE {
            write_entry(mem, table + index * 8, 0)?;
        }
        Ok(table)
    }

    /// Maps the page of `size` at `iova` to `gpa`, creating tables as needed, replacing any
    /// mapping of the same page. The leaf gets `PRESENT | leaf_flags` (plus PS for a large page);
    /// `leaf_flags` usually holds [`USER`] and [`WRITABLE`], and may hold A, D or anything else a
    /// test wants to see the walker handle.
    pub fn map<M: TableMemory + ?Sized>(
        &mut self,
        mem: &mut M,
        iova: u64,
        gpa: u64,
        size: PageSize,
        leaf_flags: u64,
    ) -> Result<(), TableBuildError> {
        if size.offset(iova) != 0 || size.offset(gpa) != 0 {
            return Err(TableBuildError::Misaligned { iova, gpa, size });
        }
        if !self.mode.is_canonical(iova) || gpa & !ADDRESS_MASK != 0 {
            return Err(TableBuildError::OutOfRange {
                iova,
                gpa,
                mode: self.mode,
            });
        }
        let leaf_level = size.leaf_level();
        let mut table = self.root;
        for level in (leaf_level + 1..=self.mode.levels()).rev() {
            let entry_gpa = table + table_index(iova, level) * 8;
            let entry = mem.read_entry(entry_gpa).map_err(TableBuildError::Memory)?;
            table = if entry & PRESENT == 0 {
                let next = self.allocate_table(mem)?;
                write_entry(mem, entry_gpa, next | TABLE_FLAGS)?;
                next
            } else if is_leaf(entry, level) {
                return Err(TableBuildError::LargePageInTheWay { iova, level });
            } else {
                output_address(entry, level)
            };
        }
        let ps = if leaf_level > 1 { PAGE_SIZE } else { 0 };
        let entry_gpa = table + table_index(iova, leaf_level) * 8;
        write_entry(mem, entry_gpa, gpa | PRESENT | ps | leaf_flags)
    }

    /// Clears the level entry that maps (or would map) the page of `size` at `iova`, whatever it
    /// holds, as a guest unmapping it would; the tables below a cleared non-leaf entry are not
    /// reclaimed. Returns whether the entry was present.
    pub fn unmap<M: TableMemory + ?Sized>(
        &mut self,
        mem: &mut M,
        iova: u64,
        size: PageSize,
    ) -> Result<bool, TableBuildError> {
        match self.entry_gpa(mem, iova, size.leaf_level())? {
            Some(entry_gpa) => {
                let entry = mem.read_entry(entry_gpa).map_err(TableBuildError::Memory)?;
                write_entry(mem, entry_gpa, 0)?;
                Ok(entry & PRESENT != 0)
            }
            None => Ok(false),
        }
    }

    /// Guest physical address of the level-`level` entry the walk of `iova` would use, or `None`
    /// if a non-present entry or a leaf above `level` ends the walk first.
    pub fn entry_gpa<M: TableMemory + ?Sized>(
        &self,
        mem: &mut M,
        iova: u64,
        level: u8,
    ) -> Result<Option<u64>, TableBuildError> {
        let mut table = self.root;
        let mut current = self.mode.levels();
        loop {
            let entry_gpa = table + table_index(iova, current) * 8;
            if current == level {
                return Ok(Some(entry_gpa));
            }
            let entry = mem.read_entry(entry_gpa).map_err(TableBuildError::Memory)?;
            if entry & PRESENT == 0 || is_leaf(entry, current) || current <= level {
                return Ok(None);
            }
            table = output_address(entry, current);
            current -= 1;
        }
    }
}

/// Stores `value` at `gpa` with the compare-and-set the trait offers, retrying until it sticks.
fn write_entry<M: TableMemory + ?Sized>(
    mem: &mut M,
    gpa: u64,
    value: u64,
) -> Result<(), TableBuildError> {
    let mut current = mem.read_entry(gpa).map_err(TableBuildError::Memory)?;
    loop {
        let seen = mem
            .compare_exchange_entry(gpa, current, value)
            .map_err(TableBuildError::Memory)?;
        if seen == current {
            return Ok(());
        }
        current = seen;
    }
}
