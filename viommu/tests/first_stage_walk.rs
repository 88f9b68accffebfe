//! Walks of hand-built first-stage tables: leaves of every size at both depths, the flags the
//! walker sets, and every fault reason it reports.

mod common;

use common::{HAW, USER_RW, empty, entry_at, entry_gpa, one_mapping};
use viommu::vtd::pte::{ACCESSED, DIRTY, EXTENDED_ACCESSED, PAGE_SIZE, USER, WRITABLE};
use viommu::vtd::{
    Access, FaultReason, FirstStageConfig, FirstStageFault, FirstStageFlags, PageBlock, PageSize,
    PagingMode, Permissions, Stage2Fault, TableMemory, walk,
};

const FOUR: PagingMode = PagingMode::FourLevel;
const FIVE: PagingMode = PagingMode::FiveLevel;

const SRE: FirstStageFlags = FirstStageFlags {
    sre: true,
    eafe: false,
    wpe: false,
};

fn levels_of(mode: PagingMode, size: PageSize) -> std::ops::RangeInclusive<u8> {
    size.leaf_level()..=mode.levels()
}

/// Maps one page of `size`, reads and then writes an address inside it, and checks the output,
/// the page size, A on every level, and D only on the leaf and only after the write.
fn check_leaf(mode: PagingMode, size: PageSize) {
    let iova = 0x0000_4000_0000_0000 + 3 * size.bytes();
    let gpa = 0x0008_0000_0000 + 5 * size.bytes();
    let offset = size.bytes() - 0x18;
    let (mut mem, tables, config) = one_mapping(mode, iova, gpa, size, USER_RW);

    let read = walk(&config, iova + offset, Access::READ, &mut mem).unwrap();
    assert_eq!(read.output, gpa + offset);
    assert_eq!(read.page_size, size);
    assert_eq!(read.permissions, Permissions::ALL);
    assert!(!read.dirty);
    for level in levels_of(mode, size) {
        let entry = entry_at(&mut mem, &tables, iova, level);
        assert_ne!(entry & ACCESSED, 0, "A set at level {level}");
        assert_eq!(entry & DIRTY, 0, "D clear at level {level} after a read");
    }

    let write = walk(&config, iova, Access::WRITE, &mut mem).unwrap();
    assert_eq!(write.output, gpa);
    assert!(write.dirty);
    let leaf = entry_at(&mut mem, &tables, iova, size.leaf_level());
    assert_ne!(leaf & DIRTY, 0, "D set on the leaf after a write");
    for level in size.leaf_level() + 1..=mode.levels() {
        let entry = entry_at(&mut mem, &tables, iova, level);
        assert_eq!(entry & DIRTY, 0, "D left alone at non-leaf level {level}");
    }
}

#[test]
fn four_level_4k_leaf_translates_and_sets_access_and_dirty_flags() {
    check_leaf(FOUR, PageSize::Size4KiB);
}

#[test]
fn four_level_2m_leaf_translates_and_sets_access_and_dirty_flags() {
    check_leaf(FOUR, PageSize::Size2MiB);
}

#[test]
fn four_level_1g_leaf_translates_and_sets_access_and_dirty_flags() {
    check_leaf(FOUR, PageSize::Size1GiB);
}

#[test]
fn five_level_4k_leaf_translates_and_sets_access_and_dirty_flags() {
    check_leaf(FIVE, PageSize::Size4KiB);
}

#[test]
fn five_level_2m_leaf_translates_and_sets_access_and_dirty_flags() {
    check_leaf(FIVE, PageSize::Size2MiB);
}

#[test]
fn five_level_1g_leaf_translates_and_sets_access_and_dirty_flags() {
    check_leaf(FIVE, PageSize::Size1GiB);
}

#[test]
fn five_level_translates_addresses_beyond_48_bits() {
    let iova = 0x00f0_0000_0000_0000;
    let (mut mem, _, config) = one_mapping(FIVE, iova, 0x5000, PageSize::Size4KiB, USER_RW);
    assert_eq!(
        walk(&config, iova + 8, Access::READ, &mut mem)
            .unwrap()
            .output,
        0x5008
    );
}

#[test]
fn upper_half_canonical_address_translates() {
    let iova = 0xffff_8000_0000_0000;
    let (mut mem, _, config) = one_mapping(FOUR, iova, 0x7000, PageSize::Size4KiB, USER_RW);
    assert_eq!(
        walk(&config, iova, Access::READ, &mut mem).unwrap().output,
        0x7000
    );
}

#[test]
fn extended_access_flag_is_set_on_every_level_only_with_eafe() {
    let iova = 0x20_0000;
    let (mut mem, tables, config) = one_mapping(FOUR, iova, 0x9000, PageSize::Size4KiB, USER_RW);
    walk(&config, iova, Access::READ, &mut mem).unwrap();
    for level in 1..=4 {
        assert_eq!(
            entry_at(&mut mem, &tables, iova, level) & EXTENDED_ACCESSED,
            0
        );
    }

    let eafe = config.with_flags(FirstStageFlags {
        eafe: true,
        ..FirstStageFlags::default()
    });
    walk(&eafe, iova, Access::READ, &mut mem).unwrap();
    for level in 1..=4 {
        assert_ne!(
            entry_at(&mut mem, &tables, iova, level) & EXTENDED_ACCESSED,
            0,
            "EA set at level {level}"
        );
    }
}

#[test]
fn walk_with_flags_already_set_writes_nothing() {
    let iova = 0x40_0000;
    let (mut mem, _, config) = one_mapping(FOUR, iova, 0x9000, PageSize::Size4KiB, USER_RW);
    walk(&config, iova, Access::WRITE, &mut mem).unwrap();
    let updates = mem.updates();
    walk(&config, iova, Access::WRITE, &mut mem).unwrap();
    assert_eq!(mem.updates(), updates);
}

#[test]
fn write_to_read_only_leaf_faults_at_the_leaf_without_setting_dirty() {
    let iova = 0x1000;
    let (mut mem, tables, config) = one_mapping(FOUR, iova, 0x9000, PageSize::Size4KiB, USER);
    assert_eq!(
        walk(&config, iova, Access::READ, &mut mem)
            .unwrap()
            .permissions,
        Permissions {
            user: true,
            writable: false
        }
    );
    let fault = walk(&config, iova, Access::WRITE, &mut mem).unwrap_err();
    assert_eq!(
        fault,
        FirstStageFault::WriteDenied {
            iova,
            level: 1,
            entry_gpa: entry_gpa(&mut mem, &tables, iova, 1),
        }
    );
    assert_eq!(fault.reason(), FaultReason::WriteDenied);
    assert_eq!(fault.reason().code(), 0x85);
    assert_eq!(entry_at(&mut mem, &tables, iova, 1) & DIRTY, 0);
}

#[test]
fn read_only_upper_level_denies_writes_below_it() {
    let iova = 0x3000;
    let (mut mem, tables, config) = one_mapping(FOUR, iova, 0x9000, PageSize::Size4KiB, USER_RW);
    let pdpte = entry_gpa(&mut mem, &tables, iova, 3);
    mem.poke(pdpte, mem.peek(pdpte) & !WRITABLE);
    assert_eq!(
        walk(&config, iova, Access::WRITE, &mut mem),
        Err(FirstStageFault::WriteDenied {
            iova,
            level: 3,
            entry_gpa: pdpte
        })
    );
    // The walk stopped at level 3: nothing below was used.
    assert_eq!(entry_at(&mut mem, &tables, iova, 2) & ACCESSED, 0);
    assert_eq!(
        walk(&config, iova, Access::READ, &mut mem)
            .unwrap()
            .permissions,
        Permissions {
            user: true,
            writable: false
        }
    );
}

#[test]
fn user_request_to_supervisor_page_faults_with_user_privilege() {
    let iova = 0x5000;
    let (mut mem, tables, config) = one_mapping(FOUR, iova, 0x9000, PageSize::Size4KiB, WRITABLE);
    let fault = walk(&config, iova, Access::READ, &mut mem).unwrap_err();
    assert_eq!(
        fault,
        FirstStageFault::UserPrivilege {
            iova,
            level: 1,
            entry_gpa: entry_gpa(&mut mem, &tables, iova, 1)
        }
    );
    assert_eq!(fault.reason().code(), 0x81);
}

#[test]
fn supervisor_only_upper_level_denies_user_requests_below_it() {
    let iova = 0x5000;
    let (mut mem, tables, config) = one_mapping(FIVE, iova, 0x9000, PageSize::Size4KiB, USER_RW);
    let pml5e = entry_gpa(&mut mem, &tables, iova, 5);
    mem.poke(pml5e, mem.peek(pml5e) & !USER);
    assert_eq!(
        walk(&config, iova, Access::READ, &mut mem),
        Err(FirstStageFault::UserPrivilege {
            iova,
            level: 5,
            entry_gpa: pml5e
        })
    );
}

#[test]
fn supervisor_request_is_refused_without_sre_before_any_table_read() {
    let iova = 0x5000;
    let (mut mem, _, config) = one_mapping(FOUR, iova, 0x9000, PageSize::Size4KiB, USER_RW);
    let reads = mem.reads();
    let fault = walk(&config, iova, Access::READ.privileged(), &mut mem).unwrap_err();
    assert_eq!(fault, FirstStageFault::SupervisorRequestsDisabled { iova });
    assert_eq!(fault.reason().code(), 0x5d);
    assert_eq!(fault.level(), None);
    assert_eq!(mem.reads(), reads);
}

#[test]
fn supervisor_request_with_sre_reaches_supervisor_and_user_pages() {
    let (mut mem, mut tables) = empty(FOUR);
    tables
        .map(&mut mem, 0x1000, 0xa000, PageSize::Size4KiB, WRITABLE)
        .unwrap();
    tables
        .map(&mut mem, 0x2000, 0xb000, PageSize::Size4KiB, USER_RW)
        .unwrap();
    let config = FirstStageConfig::new(tables.root(), FOUR, HAW)
        .unwrap()
        .with_flags(SRE);
    let privileged = Access::WRITE.privileged();
    assert_eq!(
        walk(&config, 0x1000, privileged, &mut mem).unwrap().output,
        0xa000
    );
    assert_eq!(
        walk(&config, 0x2000, privileged, &mut mem).unwrap().output,
        0xb000
    );
}

#[test]
fn privileged_write_to_read_only_page_needs_wpe_to_fault() {
    let iova = 0x6000;
    let (mut mem, tables, config) = one_mapping(FOUR, iova, 0x9000, PageSize::Size4KiB, 0);
    let write = Access::WRITE.privileged();

    let without_wpe = config.with_flags(SRE);
    assert!(walk(&without_wpe, iova, write, &mut mem).unwrap().dirty);

    let with_wpe = config.with_flags(FirstStageFlags { wpe: true, ..SRE });
    assert_eq!(
        walk(&with_wpe, iova, write, &mut mem),
        Err(FirstStageFault::WriteDenied {
            iova,
            level: 1,
            entry_gpa: entry_gpa(&mut mem, &tables, iova, 1)
        })
    );
}

#[test]
fn non_canonical_input_faults_before_any_table_read() {
    let (mut mem, _, config) = one_mapping(FOUR, 0, 0x9000, PageSize::Size4KiB, USER_RW);
    let reads = mem.reads();
    for iova in [
        0x0000_8000_0000_0000,
        0x0100_0000_0000_0000,
        0x8000_0000_0000_0000,
    ] {
        let fault = walk(&config, iova, Access::READ, &mut mem).unwrap_err();
        assert_eq!(fault, FirstStageFault::NonCanonical { iova, width: 48 });
        assert_eq!(fault.reason().code(), 0x80);
    }
    assert_eq!(mem.reads(), reads);
}

#[test]
fn address_beyond_57_bits_is_non_canonical_in_five_level_paging() {
    let (mut mem, _, config) = one_mapping(FIVE, 0, 0x9000, PageSize::Size4KiB, USER_RW);
    let iova = 0x0100_0000_0000_0000;
    assert_eq!(
        walk(&config, iova, Access::READ, &mut mem),
        Err(FirstStageFault::NonCanonical { iova, width: 57 })
    );
}

#[test]
fn unmapped_address_faults_not_present_at_the_missing_level() {
    let (mut mem, tables, config) = one_mapping(FOUR, 0x1000, 0x9000, PageSize::Size4KiB, USER_RW);
    // Same page directory, another 2 MiB slot: the level-2 entry is missing.
    let iova = 0x40_0000;
    let fault = walk(&config, iova, Access::READ, &mut mem).unwrap_err();
    assert_eq!(
        fault,
        FirstStageFault::NotPresent {
            iova,
            level: 2,
            entry_gpa: entry_gpa(&mut mem, &tables, iova, 2)
        }
    );
    assert_eq!(fault.reason().code(), 0x71);
    // Another PML4 slot: the root entry itself is missing.
    let far = 0x0000_0080_0000_0000;
    assert_eq!(
        walk(&config, far, Access::READ, &mut mem)
            .unwrap_err()
            .level(),
        Some(4)
    );
}

#[test]
fn page_size_bit_in_a_pml4_entry_is_reserved() {
    let iova = 0x1000;
    let (mut mem, tables, config) = one_mapping(FOUR, iova, 0x9000, PageSize::Size4KiB, USER_RW);
    let pml4e = entry_gpa(&mut mem, &tables, iova, 4);
    let value = mem.peek(pml4e) | PAGE_SIZE;
    mem.poke(pml4e, value);
    let fault = walk(&config, iova, Access::READ, &mut mem).unwrap_err();
    assert_eq!(
        fault,
        FirstStageFault::ReservedBits {
            iova,
            level: 4,
            entry_gpa: pml4e,
            value,
            bits: PAGE_SIZE
        }
    );
    assert_eq!(fault.reason().code(), 0x72);
    // A reserved-bit fault does not mark the entry accessed.
    assert_eq!(mem.peek(pml4e) & ACCESSED, 0);
}

#[test]
fn leaf_address_beyond_host_width_is_reserved() {
    let iova = 0x1000;
    let gpa = 1 << 45;
    let (mut mem, _, config) = one_mapping(FOUR, iova, gpa, PageSize::Size4KiB, USER_RW);
    assert_eq!(
        walk(&config, iova, Access::READ, &mut mem).unwrap().output,
        gpa
    );
    let narrow = FirstStageConfig::new(config.root(), FOUR, 40).unwrap();
    let fault = walk(&narrow, iova, Access::READ, &mut mem).unwrap_err();
    assert!(
        matches!(fault, FirstStageFault::ReservedBits { level: 1, bits, .. } if bits == gpa),
        "{fault:?}"
    );
}

#[test]
fn large_leaf_with_bits_below_its_alignment_is_reserved() {
    let iova = 0x20_0000;
    let (mut mem, tables, config) =
        one_mapping(FOUR, iova, 0x4000_0000, PageSize::Size2MiB, USER_RW);
    let pde = entry_gpa(&mut mem, &tables, iova, 2);
    mem.poke(pde, mem.peek(pde) | 0x2000);
    assert!(matches!(
        walk(&config, iova, Access::READ, &mut mem),
        Err(FirstStageFault::ReservedBits {
            level: 2,
            bits: 0x2000,
            ..
        })
    ));
}

#[test]
fn one_gib_leaf_is_reserved_without_fs1gp() {
    let iova = 0x4000_0000;
    let (mut mem, _, config) = one_mapping(FOUR, iova, 0x8000_0000, PageSize::Size1GiB, USER_RW);
    let no_1g = config.with_one_gib_pages(false);
    assert!(matches!(
        walk(&no_1g, iova, Access::READ, &mut mem),
        Err(FirstStageFault::ReservedBits {
            level: 3,
            bits: PAGE_SIZE,
            ..
        })
    ));
}

#[test]
fn execute_disable_and_ignored_bits_do_not_fault() {
    let iova = 0x1000;
    let ignored = (1 << 63) | (1 << 62) | (1 << 52) | (1 << 11) | (1 << 9) | (1 << 8);
    let (mut mem, _, config) =
        one_mapping(FOUR, iova, 0x9000, PageSize::Size4KiB, USER_RW | ignored);
    assert_eq!(
        walk(&config, iova, Access::READ, &mut mem).unwrap().output,
        0x9000
    );
}

#[test]
fn unmapped_root_table_faults_as_root_read_denied_in_stage_2() {
    let iova = 0x1000;
    let (mut mem, _, config) = one_mapping(FOUR, iova, 0x9000, PageSize::Size4KiB, USER_RW);
    mem.block_page(config.root(), Some(PageBlock::Unmapped));
    let fault = walk(&config, iova, Access::READ, &mut mem).unwrap_err();
    assert_eq!(
        fault,
        FirstStageFault::Stage2 {
            iova,
            level: 4,
            root: true,
            fault: Stage2Fault::NotMapped { gpa: config.root() }
        }
    );
    assert_eq!(fault.reason(), FaultReason::FsRootReadDenied);
}

#[test]
fn unmapped_lower_table_faults_with_its_stage_2_address() {
    let iova = 0x1000;
    let (mut mem, tables, config) = one_mapping(FIVE, iova, 0x9000, PageSize::Size4KiB, USER_RW);
    let pde = entry_gpa(&mut mem, &tables, iova, 2);
    mem.block_page(pde, Some(PageBlock::Unmapped));
    let fault = walk(&config, iova, Access::READ, &mut mem).unwrap_err();
    assert_eq!(
        fault,
        FirstStageFault::Stage2 {
            iova,
            level: 2,
            root: false,
            fault: Stage2Fault::NotMapped { gpa: pde }
        }
    );
    assert_eq!(fault.reason().code(), 0x76);
    // The levels above were used and are marked accessed.
    assert_ne!(entry_at(&mut mem, &tables, iova, 3) & ACCESSED, 0);
}

#[test]
fn flag_update_denied_by_stage_2_faults_as_write_denied_in_nested_translation() {
    let iova = 0x1000;
    let (mut mem, tables, config) = one_mapping(FOUR, iova, 0x9000, PageSize::Size4KiB, USER_RW);
    let pte = entry_gpa(&mut mem, &tables, iova, 1);
    mem.block_page(pte, Some(PageBlock::ReadOnly));
    let fault = walk(&config, iova, Access::READ, &mut mem).unwrap_err();
    assert_eq!(
        fault,
        FirstStageFault::Stage2 {
            iova,
            level: 1,
            root: false,
            fault: Stage2Fault::WriteDenied { gpa: pte }
        }
    );
    assert_eq!(fault.reason().code(), 0x77);

    // With A and D already set nothing needs writing, so a read-only table page is fine.
    mem.poke(pte, mem.peek(pte) | ACCESSED | DIRTY);
    assert_eq!(
        walk(&config, iova, Access::WRITE, &mut mem).unwrap().output,
        0x9000
    );
}

#[test]
fn table_beyond_stage_2_width_faults_beyond_mgaw() {
    let iova = 0x1000;
    let (mut mem, _, config) = one_mapping(FOUR, iova, 0x9000, PageSize::Size4KiB, USER_RW);
    // Tables live at 16 MiB and up; a 24-bit stage 2 cannot reach the ones past the root.
    mem.set_stage2_width(Some(24));
    let fault = walk(&config, iova, Access::READ, &mut mem).unwrap_err();
    assert_eq!(fault.reason(), FaultReason::FsEntryBeyondMgaw);
}

#[test]
fn broken_memory_faults_as_entry_access_error() {
    let iova = 0x1000;
    let (mut mem, _, config) = one_mapping(FOUR, iova, 0x9000, PageSize::Size4KiB, USER_RW);
    mem.block_page(config.root(), Some(PageBlock::Broken));
    assert_eq!(
        walk(&config, iova, Access::READ, &mut mem)
            .unwrap_err()
            .reason()
            .code(),
        0x73
    );
}

/// A memory whose entry at `target` is changed by `interfere` right before each of the first
/// `times` compare-and-sets on it, as a guest CPU or another walker racing the walker would.
struct Racing<F> {
    inner: viommu::vtd::SparseTableMemory,
    target: u64,
    times: u32,
    interfere: F,
}

impl<F: FnMut(u64) -> u64> TableMemory for Racing<F> {
    fn read_entry(&mut self, gpa: u64) -> Result<u64, Stage2Fault> {
        self.inner.read_entry(gpa)
    }

    fn compare_exchange_entry(
        &mut self,
        gpa: u64,
        current: u64,
        new: u64,
    ) -> Result<u64, Stage2Fault> {
        if gpa == self.target && self.times > 0 {
            self.times -= 1;
            let changed = (self.interfere)(self.inner.peek(gpa));
            self.inner.poke(gpa, changed);
        }
        self.inner.compare_exchange_entry(gpa, current, new)
    }
}

#[test]
fn racing_update_of_an_entry_is_kept_alongside_the_flags() {
    let iova = 0x1000;
    let (mut mem, tables, config) = one_mapping(FOUR, iova, 0x9000, PageSize::Size4KiB, USER_RW);
    let pte = entry_gpa(&mut mem, &tables, iova, 1);
    let software_bit = 1 << 9;
    let mut racing = Racing {
        inner: mem,
        target: pte,
        times: 1,
        interfere: |v| v | software_bit,
    };
    walk(&config, iova, Access::WRITE, &mut racing).unwrap();
    let entry = racing.inner.peek(pte);
    assert_eq!(
        entry & (software_bit | ACCESSED | DIRTY),
        software_bit | ACCESSED | DIRTY
    );
}

#[test]
fn entry_cleared_during_the_flag_update_faults_not_present() {
    let iova = 0x1000;
    let (mut mem, tables, config) = one_mapping(FOUR, iova, 0x9000, PageSize::Size4KiB, USER_RW);
    let pte = entry_gpa(&mut mem, &tables, iova, 1);
    let mut racing = Racing {
        inner: mem,
        target: pte,
        times: 1,
        interfere: |_| 0,
    };
    assert_eq!(
        walk(&config, iova, Access::READ, &mut racing),
        Err(FirstStageFault::NotPresent {
            iova,
            level: 1,
            entry_gpa: pte
        })
    );
    assert_eq!(racing.inner.peek(pte), 0, "the cleared entry stays cleared");
}

#[test]
fn entry_that_never_stops_changing_gives_up_with_contention() {
    let iova = 0x1000;
    let (mut mem, tables, config) = one_mapping(FOUR, iova, 0x9000, PageSize::Size4KiB, USER_RW);
    let pte = entry_gpa(&mut mem, &tables, iova, 1);
    let mut racing = Racing {
        inner: mem,
        target: pte,
        times: u32::MAX,
        interfere: |v| v ^ (1 << 9),
    };
    let fault = walk(&config, iova, Access::READ, &mut racing).unwrap_err();
    assert_eq!(
        fault,
        FirstStageFault::EntryUpdateContended {
            iova,
            level: 1,
            entry_gpa: pte
        }
    );
    assert_eq!(fault.reason(), FaultReason::FsEntryAccessError);
}
