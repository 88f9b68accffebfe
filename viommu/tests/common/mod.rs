//! Table setups shared by the viommu integration tests.
#![allow(dead_code)]

use viommu::vtd::pte::{USER, WRITABLE};
use viommu::vtd::{
    FirstStageConfig, FirstStageTableBuilder, PageSize, PagingMode, SparseTableMemory,
};

/// Where the builder takes table pages from; far away from the pages tests map to.
pub const TABLE_AREA: std::ops::Range<u64> = 0x100_0000..0x200_0000;
/// Host address width used unless a test says otherwise.
pub const HAW: u8 = 48;
/// Leaf flags for an ordinary user read/write mapping.
pub const USER_RW: u64 = USER | WRITABLE;

/// A memory with an empty table of `mode`, and the builder that owns it.
pub fn empty(mode: PagingMode) -> (SparseTableMemory, FirstStageTableBuilder) {
    let mut mem = SparseTableMemory::new();
    let tables = FirstStageTableBuilder::new(&mut mem, mode, TABLE_AREA).unwrap();
    (mem, tables)
}

/// A memory holding one mapping of `size` from `iova` to `gpa` with `flags`, and the config for
/// walking it with no request flags.
pub fn one_mapping(
    mode: PagingMode,
    iova: u64,
    gpa: u64,
    size: PageSize,
    flags: u64,
) -> (SparseTableMemory, FirstStageTableBuilder, FirstStageConfig) {
    let (mut mem, mut tables) = empty(mode);
    tables.map(&mut mem, iova, gpa, size, flags).unwrap();
    let config = FirstStageConfig::new(tables.root(), mode, HAW).unwrap();
    (mem, tables, config)
}

/// The entry the walk of `iova` uses at `level`, read straight from memory.
pub fn entry_at(
    mem: &mut SparseTableMemory,
    tables: &FirstStageTableBuilder,
    iova: u64,
    level: u8,
) -> u64 {
    let gpa = tables
        .entry_gpa(mem, iova, level)
        .unwrap()
        .expect("the walk reaches this level");
    mem.peek(gpa)
}

/// Address of the entry the walk of `iova` uses at `level`.
pub fn entry_gpa(
    mem: &mut SparseTableMemory,
    tables: &FirstStageTableBuilder,
    iova: u64,
    level: u8,
) -> u64 {
    tables
        .entry_gpa(mem, iova, level)
        .unwrap()
        .expect("the walk reaches this level")
}
