//! The IOTLB: hits and misses, large pages, invalidation by range (leaf-only or not), tag,
//! predicate and globally, stale entries until invalidated, bounded size, and races.

mod common;

use std::sync::Arc;
use std::thread;

use common::{HAW, USER_RW, empty, entry_gpa, one_mapping};
use viommu::iotlb::{Iotlb, IotlbCapacity, RangeInvalidation};
use viommu::vtd::pte::{DIRTY, PRESENT, USER, WRITABLE};
use viommu::vtd::{
    Access, FirstStageConfig, FirstStageFault, FirstStageTableBuilder, PageSize, PagingMode,
    SparseTableMemory, Stage2Fault, TableMemory,
};

const FOUR: PagingMode = PagingMode::FourLevel;
const TAG: u32 = 7;

fn page(addr: u64) -> RangeInvalidation {
    RangeInvalidation {
        addr,
        npages: 1,
        leaf_only: true,
    }
}

fn range(addr: u64, npages: u64, leaf_only: bool) -> RangeInvalidation {
    RangeInvalidation {
        addr,
        npages,
        leaf_only,
    }
}

#[test]
fn second_translation_of_a_page_hits_without_reading_tables() {
    let iova = 0x1000;
    let (mut mem, _, config) = one_mapping(FOUR, iova, 0x9000, PageSize::Size4KiB, USER_RW);
    let iotlb = Iotlb::default();
    let first = iotlb
        .translate(TAG, &config, iova, Access::READ, &mut mem)
        .unwrap();
    let reads = mem.reads();
    let second = iotlb
        .translate(TAG, &config, iova + 0x10, Access::READ, &mut mem)
        .unwrap();
    assert_eq!(first.output, 0x9000);
    assert_eq!(second.output, 0x9010);
    assert_eq!(mem.reads(), reads, "a hit reads no table");
    let stats = iotlb.stats();
    assert_eq!((stats.misses, stats.hits), (1, 1));
}

#[test]
fn a_2m_translation_serves_every_4k_page_inside_it() {
    let iova = 0x4000_0000;
    let (mut mem, _, config) = one_mapping(FOUR, iova, 0x8000_0000, PageSize::Size2MiB, USER_RW);
    let iotlb = Iotlb::default();
    iotlb
        .translate(TAG, &config, iova, Access::READ, &mut mem)
        .unwrap();
    let reads = mem.reads();
    let last = iotlb
        .translate(TAG, &config, iova + 0x1f_f008, Access::READ, &mut mem)
        .unwrap();
    assert_eq!(last.output, 0x801f_f008);
    assert_eq!(last.page_size, PageSize::Size2MiB);
    assert_eq!(mem.reads(), reads);
    assert!(iotlb.lookup(TAG, iova + 0x20_0000).is_none());
}

#[test]
fn a_1g_translation_serves_every_address_inside_it() {
    let iova = 0x40_0000_0000;
    let (mut mem, _, config) = one_mapping(FOUR, iova, 0xc000_0000, PageSize::Size1GiB, USER_RW);
    let iotlb = Iotlb::default();
    iotlb
        .translate(TAG, &config, iova, Access::READ, &mut mem)
        .unwrap();
    assert_eq!(
        iotlb.lookup(TAG, iova + 0x3fff_fff0).map(|t| t.output),
        Some(0xffff_fff0)
    );
}

#[test]
fn changed_leaf_keeps_translating_to_the_old_page_until_invalidated() {
    let iova = 0x1000;
    let (mut mem, mut tables, config) =
        one_mapping(FOUR, iova, 0x9000, PageSize::Size4KiB, USER_RW);
    let iotlb = Iotlb::default();
    iotlb
        .translate(TAG, &config, iova, Access::READ, &mut mem)
        .unwrap();

    tables
        .map(&mut mem, iova, 0xa000, PageSize::Size4KiB, USER_RW)
        .unwrap();
    let stale = iotlb
        .translate(TAG, &config, iova, Access::READ, &mut mem)
        .unwrap();
    assert_eq!(stale.output, 0x9000, "the guest has not invalidated yet");

    iotlb.invalidate_range(TAG, page(iova));
    let fresh = iotlb
        .translate(TAG, &config, iova, Access::READ, &mut mem)
        .unwrap();
    assert_eq!(fresh.output, 0xa000);
}

#[test]
fn unmapped_page_keeps_translating_until_invalidated_then_faults() {
    let iova = 0x1000;
    let (mut mem, mut tables, config) =
        one_mapping(FOUR, iova, 0x9000, PageSize::Size4KiB, USER_RW);
    let iotlb = Iotlb::default();
    iotlb
        .translate(TAG, &config, iova, Access::READ, &mut mem)
        .unwrap();
    assert!(tables.unmap(&mut mem, iova, PageSize::Size4KiB).unwrap());
    assert_eq!(
        iotlb
            .translate(TAG, &config, iova, Access::READ, &mut mem)
            .unwrap()
            .output,
        0x9000
    );
    iotlb.invalidate_range(TAG, page(iova));
    assert!(matches!(
        iotlb.translate(TAG, &config, iova, Access::READ, &mut mem),
        Err(FirstStageFault::NotPresent { level: 1, .. })
    ));
}

#[test]
fn faults_are_not_cached() {
    let (mut mem, mut tables, config) =
        one_mapping(FOUR, 0x1000, 0x9000, PageSize::Size4KiB, USER_RW);
    let iotlb = Iotlb::default();
    let iova = 0x2000;
    assert!(matches!(
        iotlb.translate(TAG, &config, iova, Access::READ, &mut mem),
        Err(FirstStageFault::NotPresent { level: 1, .. })
    ));
    tables
        .map(&mut mem, iova, 0xb000, PageSize::Size4KiB, USER_RW)
        .unwrap();
    assert_eq!(
        iotlb
            .translate(TAG, &config, iova, Access::READ, &mut mem)
            .unwrap()
            .output,
        0xb000,
        "a not-present to present change needs no invalidation"
    );
}

#[test]
fn range_invalidation_drops_only_overlapping_pages() {
    let (mut mem, mut tables) = empty(FOUR);
    for (iova, gpa) in [(0x1000, 0xa000), (0x2000, 0xb000), (0x3000, 0xc000)] {
        tables
            .map(&mut mem, iova, gpa, PageSize::Size4KiB, USER_RW)
            .unwrap();
    }
    let config = FirstStageConfig::new(tables.root(), FOUR, HAW).unwrap();
    let iotlb = Iotlb::default();
    for iova in [0x1000, 0x2000, 0x3000] {
        iotlb
            .translate(TAG, &config, iova, Access::READ, &mut mem)
            .unwrap();
    }
    iotlb.invalidate_range(TAG, range(0x2000, 1, true));
    assert!(iotlb.lookup(TAG, 0x1000).is_some());
    assert!(iotlb.lookup(TAG, 0x2000).is_none());
    assert!(iotlb.lookup(TAG, 0x3000).is_some());
    iotlb.invalidate_range(TAG, range(0x1000, 0, false));
    assert!(
        iotlb.lookup(TAG, 0x1000).is_some(),
        "zero pages cover nothing"
    );
}

#[test]
fn invalidating_4k_inside_a_large_page_drops_the_large_page() {
    let iova = 0x4000_0000;
    let (mut mem, _, config) = one_mapping(FOUR, iova, 0x8000_0000, PageSize::Size2MiB, USER_RW);
    let iotlb = Iotlb::default();
    iotlb
        .translate(TAG, &config, iova, Access::READ, &mut mem)
        .unwrap();
    iotlb.invalidate_range(TAG, page(iova + 0x10_0000));
    assert!(iotlb.lookup(TAG, iova).is_none());
}

#[test]
fn large_range_invalidation_scans_and_drops_every_page_in_it() {
    let (mut mem, mut tables) = empty(FOUR);
    // 200 pages: more than a range invalidation probes one by one.
    for i in 0..200u64 {
        tables
            .map(
                &mut mem,
                i << 12,
                0x100_0000_0000 + (i << 12),
                PageSize::Size4KiB,
                USER_RW,
            )
            .unwrap();
    }
    let config = FirstStageConfig::new(tables.root(), FOUR, HAW).unwrap();
    let iotlb = Iotlb::default();
    for i in 0..200u64 {
        iotlb
            .translate(TAG, &config, i << 12, Access::READ, &mut mem)
            .unwrap();
    }
    iotlb.invalidate_range(TAG, range(10 << 12, 150, true));
    let cached: Vec<u64> = (0..200u64)
        .filter(|i| iotlb.lookup(TAG, i << 12).is_some())
        .collect();
    let expected: Vec<u64> = (0..10).chain(160..200).collect();
    assert_eq!(cached, expected);
}

/// Two 4 KiB pages under one page table; returns the memory, builder, config, and the address
/// of the page-directory entry that points at that page table.
fn two_pages_under_one_table() -> (
    SparseTableMemory,
    FirstStageTableBuilder,
    FirstStageConfig,
    u64,
) {
    let (mut mem, mut tables) = empty(FOUR);
    tables
        .map(&mut mem, 0x1000, 0xa000, PageSize::Size4KiB, USER_RW)
        .unwrap();
    tables
        .map(&mut mem, 0x2000, 0xb000, PageSize::Size4KiB, USER_RW)
        .unwrap();
    let config = FirstStageConfig::new(tables.root(), FOUR, HAW).unwrap();
    let pde = entry_gpa(&mut mem, &tables, 0x1000, 2);
    (mem, tables, config, pde)
}

/// Points `pde` at a fresh page table mapping 0x1000 -> 0xd000 and 0x2000 -> 0xe000, as a guest
/// replacing a page table would.
fn replace_page_table(mem: &mut SparseTableMemory, tables: &mut FirstStageTableBuilder, pde: u64) {
    let new_table = tables.allocate_table(mem).unwrap();
    mem.poke(new_table + 8, 0xd000 | PRESENT | USER | WRITABLE);
    mem.poke(new_table + 16, 0xe000 | PRESENT | USER | WRITABLE);
    mem.poke(pde, new_table | PRESENT | USER | WRITABLE);
}

#[test]
fn miss_under_a_cached_page_table_reads_only_the_leaf() {
    let (mut mem, _, config, _) = two_pages_under_one_table();
    let iotlb = Iotlb::default();
    iotlb
        .translate(TAG, &config, 0x1000, Access::READ, &mut mem)
        .unwrap();
    let reads = mem.reads();
    let other = iotlb
        .translate(TAG, &config, 0x2000, Access::READ, &mut mem)
        .unwrap();
    assert_eq!(other.output, 0xb000);
    assert_eq!(mem.reads() - reads, 1);
    assert_eq!(iotlb.stats().paging_structures, 3);
}

#[test]
fn leaf_only_invalidation_keeps_a_replaced_page_table_cached() {
    let (mut mem, mut tables, config, pde) = two_pages_under_one_table();
    let iotlb = Iotlb::default();
    iotlb
        .translate(TAG, &config, 0x1000, Access::READ, &mut mem)
        .unwrap();
    replace_page_table(&mut mem, &mut tables, pde);

    // Wrong for a non-leaf change: the cached page-directory entry still leads to the old table.
    iotlb.invalidate_range(TAG, range(0x1000, 2, true));
    let stale = iotlb
        .translate(TAG, &config, 0x2000, Access::READ, &mut mem)
        .unwrap();
    assert_eq!(stale.output, 0xb000);

    iotlb.invalidate_range(TAG, range(0x1000, 2, false));
    assert_eq!(
        iotlb
            .translate(TAG, &config, 0x2000, Access::READ, &mut mem)
            .unwrap()
            .output,
        0xe000
    );
    assert_eq!(
        iotlb
            .translate(TAG, &config, 0x1000, Access::READ, &mut mem)
            .unwrap()
            .output,
        0xd000
    );
}

#[test]
fn tags_are_isolated_and_invalidated_separately() {
    let (mut mem, mut tables) = empty(FOUR);
    tables
        .map(&mut mem, 0x1000, 0xa000, PageSize::Size4KiB, USER_RW)
        .unwrap();
    let mut other = FirstStageTableBuilder::new(&mut mem, FOUR, 0x300_0000..0x310_0000).unwrap();
    other
        .map(&mut mem, 0x1000, 0xf000, PageSize::Size4KiB, USER_RW)
        .unwrap();
    let a = FirstStageConfig::new(tables.root(), FOUR, HAW).unwrap();
    let b = FirstStageConfig::new(other.root(), FOUR, HAW).unwrap();
    let iotlb = Iotlb::default();
    assert_eq!(
        iotlb
            .translate(1, &a, 0x1000, Access::READ, &mut mem)
            .unwrap()
            .output,
        0xa000
    );
    assert_eq!(
        iotlb
            .translate(2, &b, 0x1000, Access::READ, &mut mem)
            .unwrap()
            .output,
        0xf000
    );
    iotlb.invalidate_range(1, RangeInvalidation::ALL);
    assert!(iotlb.lookup(1, 0x1000).is_none());
    assert!(iotlb.lookup(2, 0x1000).is_some());
    iotlb.invalidate_tag(2);
    assert_eq!(iotlb.stats().translations, 0);
    assert_eq!(iotlb.stats().paging_structures, 0);
}

#[test]
fn predicate_invalidation_drops_a_whole_domain_across_pasids() {
    let iova = 0x1000;
    let (mut mem, _, config) = one_mapping(FOUR, iova, 0x9000, PageSize::Size4KiB, USER_RW);
    let iotlb = Iotlb::default();
    // Tags are (domain id, PASID).
    for tag in [(1u16, 0u32), (1, 5), (2, 5)] {
        iotlb
            .translate(tag, &config, iova, Access::READ, &mut mem)
            .unwrap();
    }
    iotlb.invalidate_tags_where(|(domain, _)| *domain == 1);
    assert!(iotlb.lookup((1, 0), iova).is_none());
    assert!(iotlb.lookup((1, 5), iova).is_none());
    assert!(iotlb.lookup((2, 5), iova).is_some());
}

#[test]
fn global_invalidation_empties_both_caches() {
    let iova = 0x1000;
    let (mut mem, _, config) = one_mapping(FOUR, iova, 0x9000, PageSize::Size4KiB, USER_RW);
    let iotlb = Iotlb::default();
    iotlb
        .translate(TAG, &config, iova, Access::READ, &mut mem)
        .unwrap();
    iotlb
        .translate(TAG + 1, &config, iova, Access::READ, &mut mem)
        .unwrap();
    iotlb.invalidate_all();
    let stats = iotlb.stats();
    assert_eq!((stats.translations, stats.paging_structures), (0, 0));
}

#[test]
fn write_after_a_read_walks_again_to_set_dirty_then_hits() {
    let iova = 0x1000;
    let (mut mem, tables, config) = one_mapping(FOUR, iova, 0x9000, PageSize::Size4KiB, USER_RW);
    let pte = entry_gpa(&mut mem, &tables, iova, 1);
    let iotlb = Iotlb::default();
    iotlb
        .translate(TAG, &config, iova, Access::READ, &mut mem)
        .unwrap();
    assert_eq!(mem.peek(pte) & DIRTY, 0);
    let write = iotlb
        .translate(TAG, &config, iova, Access::WRITE, &mut mem)
        .unwrap();
    assert!(write.dirty);
    assert_ne!(mem.peek(pte) & DIRTY, 0);
    let reads = mem.reads();
    iotlb
        .translate(TAG, &config, iova, Access::WRITE, &mut mem)
        .unwrap();
    assert_eq!(mem.reads(), reads);
    assert_eq!(iotlb.stats().hits, 1);
}

#[test]
fn cached_read_only_translation_does_not_let_a_write_through() {
    let iova = 0x1000;
    let (mut mem, tables, config) = one_mapping(FOUR, iova, 0x9000, PageSize::Size4KiB, USER);
    let iotlb = Iotlb::default();
    iotlb
        .translate(TAG, &config, iova, Access::READ, &mut mem)
        .unwrap();
    assert_eq!(
        iotlb.translate(TAG, &config, iova, Access::WRITE, &mut mem),
        Err(FirstStageFault::WriteDenied {
            iova,
            level: 1,
            entry_gpa: entry_gpa(&mut mem, &tables, iova, 1)
        })
    );
}

#[test]
fn supervisor_request_without_sre_is_refused_even_on_a_cached_page() {
    let iova = 0x1000;
    let (mut mem, _, config) = one_mapping(FOUR, iova, 0x9000, PageSize::Size4KiB, USER_RW);
    let iotlb = Iotlb::default();
    iotlb
        .translate(TAG, &config, iova, Access::READ, &mut mem)
        .unwrap();
    assert_eq!(
        iotlb.translate(TAG, &config, iova, Access::READ.privileged(), &mut mem),
        Err(FirstStageFault::SupervisorRequestsDisabled { iova })
    );
}

#[test]
fn full_cache_evicts_its_oldest_translation() {
    let (mut mem, mut tables) = empty(FOUR);
    for i in 1..=3u64 {
        tables
            .map(
                &mut mem,
                i << 12,
                0xa000 + (i << 12),
                PageSize::Size4KiB,
                USER_RW,
            )
            .unwrap();
    }
    let config = FirstStageConfig::new(tables.root(), FOUR, HAW).unwrap();
    let iotlb = Iotlb::new(IotlbCapacity {
        pages_4k: 2,
        ..IotlbCapacity::default()
    });
    for i in 1..=3u64 {
        iotlb
            .translate(TAG, &config, i << 12, Access::READ, &mut mem)
            .unwrap();
    }
    let stats = iotlb.stats();
    assert_eq!((stats.translations, stats.evictions), (2, 1));
    assert!(iotlb.lookup(TAG, 0x1000).is_none());
    assert!(iotlb.lookup(TAG, 0x3000).is_some());
}

/// A memory that runs `during` on the first table read, to act while a walk is in flight.
struct DuringWalk<'a, F: FnMut()> {
    inner: &'a mut SparseTableMemory,
    during: Option<F>,
}

impl<F: FnMut()> TableMemory for DuringWalk<'_, F> {
    fn read_entry(&mut self, gpa: u64) -> Result<u64, Stage2Fault> {
        if let Some(mut during) = self.during.take() {
            during();
        }
        self.inner.read_entry(gpa)
    }

    fn compare_exchange_entry(
        &mut self,
        gpa: u64,
        current: u64,
        new: u64,
    ) -> Result<u64, Stage2Fault> {
        self.inner.compare_exchange_entry(gpa, current, new)
    }
}

#[test]
fn walk_overtaken_by_an_invalidation_does_not_fill_the_cache() {
    let iova = 0x1000;
    let (mut mem, _, config) = one_mapping(FOUR, iova, 0x9000, PageSize::Size4KiB, USER_RW);
    let iotlb = Iotlb::default();
    let mut racing = DuringWalk {
        inner: &mut mem,
        during: Some(|| iotlb.invalidate_range(TAG, page(iova))),
    };
    let t = iotlb
        .translate(TAG, &config, iova, Access::READ, &mut racing)
        .unwrap();
    assert_eq!(t.output, 0x9000, "the request itself is still answered");
    assert!(iotlb.lookup(TAG, iova).is_none());
    assert_eq!(iotlb.stats().paging_structures, 0);
}

#[test]
fn concurrent_translations_and_invalidations_stay_correct() {
    let (mut mem, mut tables) = empty(FOUR);
    for i in 0..64u64 {
        tables
            .map(
                &mut mem,
                i << 21,
                0x1_0000_0000 + (i << 21),
                PageSize::Size2MiB,
                USER_RW,
            )
            .unwrap();
    }
    // Set every A and D flag once so the per-thread copies of the memory stay identical.
    for i in 0..64u64 {
        viommu::vtd::walk(
            &FirstStageConfig::new(tables.root(), FOUR, HAW).unwrap(),
            i << 21,
            Access::WRITE,
            &mut mem,
        )
        .unwrap();
    }
    let config = FirstStageConfig::new(tables.root(), FOUR, HAW).unwrap();
    let iotlb = Arc::new(Iotlb::new(IotlbCapacity {
        pages_2m: 16,
        ..IotlbCapacity::default()
    }));
    let translators: Vec<_> = (0..2u64)
        .map(|t| {
            let iotlb = iotlb.clone();
            let mut mem = mem.clone();
            thread::spawn(move || {
                for round in 0..2000u64 {
                    let i = (round * 7 + t) % 64;
                    let iova = (i << 21) + 0x1234;
                    let out = iotlb
                        .translate(TAG, &config, iova, Access::WRITE, &mut mem)
                        .unwrap();
                    assert_eq!(out.output, 0x1_0000_0000 + (i << 21) + 0x1234);
                }
            })
        })
        .collect();
    let invalidator = {
        let iotlb = iotlb.clone();
        thread::spawn(move || {
            for round in 0..2000u64 {
                iotlb.invalidate_range(TAG, range((round % 64) << 21, 512, round % 2 == 0));
            }
        })
    };
    for handle in translators {
        handle.join().unwrap();
    }
    invalidator.join().unwrap();
    let stats = iotlb.stats();
    assert_eq!(stats.hits + stats.misses, 4000);
    assert!(stats.translations <= 16);
}
