//! Walkers and a guest CPU updating the same first-stage entries at the same time, over a memory
//! of real atomics: no update may be lost.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Barrier};
use std::thread;

use viommu::vtd::pte::{ACCESSED, DIRTY, USER, WRITABLE};
use viommu::vtd::{
    Access, FirstStageConfig, FirstStageFault, FirstStageTableBuilder, PageSize, PagingMode,
    Stage2Fault, TableMemory, walk,
};

/// Guest memory of 64-bit atomics starting at GPA 0, shared by every clone.
#[derive(Clone)]
struct AtomicMemory {
    words: Arc<Vec<AtomicU64>>,
}

impl AtomicMemory {
    fn new(bytes: u64) -> Self {
        let words = (0..bytes / 8).map(|_| AtomicU64::new(0)).collect();
        AtomicMemory {
            words: Arc::new(words),
        }
    }

    fn word(&self, gpa: u64) -> Result<&AtomicU64, Stage2Fault> {
        self.words
            .get((gpa / 8) as usize)
            .ok_or(Stage2Fault::NotMapped { gpa })
    }

    fn load(&self, gpa: u64) -> u64 {
        self.word(gpa).unwrap().load(Ordering::SeqCst)
    }
}

impl TableMemory for AtomicMemory {
    fn read_entry(&mut self, gpa: u64) -> Result<u64, Stage2Fault> {
        Ok(self.word(gpa)?.load(Ordering::SeqCst))
    }

    fn compare_exchange_entry(
        &mut self,
        gpa: u64,
        current: u64,
        new: u64,
    ) -> Result<u64, Stage2Fault> {
        Ok(
            match self
                .word(gpa)?
                .compare_exchange(current, new, Ordering::SeqCst, Ordering::SeqCst)
            {
                Ok(old) | Err(old) => old,
            },
        )
    }
}

/// Ignored bits 52..62 of the page-directory entry serve the guest as a counter.
const COUNTER_SHIFT: u32 = 52;
/// Enough increments that the guest and the walkers overlap for a while even on two cores.
const GUEST_INCREMENTS: u64 = 1_000_000;
/// The counter has 11 bits; it wraps, and a lost increment still shows modulo its range.
const COUNTER_MASK: u64 = 0x7ff;
const PAGES: u64 = 512;

#[test]
fn walkers_racing_a_guest_on_the_same_entries_lose_no_update() {
    let mut mem = AtomicMemory::new(0x20_0000);
    let mut tables =
        FirstStageTableBuilder::new(&mut mem, PagingMode::FourLevel, 0x10_0000..0x20_0000).unwrap();
    for page in 0..PAGES {
        tables
            .map(
                &mut mem,
                page << 12,
                0x100_0000 + (page << 12),
                PageSize::Size4KiB,
                USER | WRITABLE,
            )
            .unwrap();
    }
    let config = FirstStageConfig::new(tables.root(), PagingMode::FourLevel, 48).unwrap();
    let pde = tables.entry_gpa(&mut mem, 0, 2).unwrap().unwrap();
    let guest_done = Arc::new(AtomicBool::new(false));
    let start = Arc::new(Barrier::new(3));

    // The guest keeps clearing A in the shared PDE while bumping its counter, so every walk has
    // to set A again with a compare-and-set that races the guest's.
    let guest = {
        let mem = mem.clone();
        let done = guest_done.clone();
        let start = start.clone();
        thread::spawn(move || {
            let word = mem.word(pde).unwrap();
            start.wait();
            for _ in 0..GUEST_INCREMENTS {
                let mut old = word.load(Ordering::SeqCst);
                loop {
                    let counter = ((old >> COUNTER_SHIFT) + 1) & COUNTER_MASK;
                    let new = (old & !(COUNTER_MASK << COUNTER_SHIFT) & !ACCESSED)
                        | (counter << COUNTER_SHIFT);
                    match word.compare_exchange(old, new, Ordering::SeqCst, Ordering::SeqCst) {
                        Ok(_) => break,
                        Err(seen) => old = seen,
                    }
                }
            }
            done.store(true, Ordering::SeqCst);
        })
    };
    let walkers: Vec<_> = [Access::WRITE, Access::READ]
        .into_iter()
        .enumerate()
        .map(|(parity, access)| {
            let mut mem = mem.clone();
            let done = guest_done.clone();
            let start = start.clone();
            thread::spawn(move || {
                start.wait();
                let mut passes = 0;
                while passes == 0 || !done.load(Ordering::SeqCst) {
                    for page in (parity as u64..PAGES).step_by(2) {
                        // This guest rewrites the PDE in a tight loop, so a walk may give up on
                        // it; like a device retrying the DMA, walk again until one succeeds.
                        let t = loop {
                            match walk(&config, page << 12, access, &mut mem) {
                                Err(FirstStageFault::EntryUpdateContended { level: 2, .. }) => {}
                                other => break other.unwrap(),
                            }
                        };
                        assert_eq!(t.output, 0x100_0000 + (page << 12));
                    }
                    passes += 1;
                }
            })
        })
        .collect();
    guest.join().unwrap();
    for walker in walkers {
        walker.join().unwrap();
    }

    let pde_value = mem.load(pde);
    assert_eq!(
        (pde_value >> COUNTER_SHIFT) & COUNTER_MASK,
        GUEST_INCREMENTS & COUNTER_MASK,
        "every guest increment survived the walkers' flag updates"
    );
    for page in 0..PAGES {
        let pte = tables.entry_gpa(&mut mem, page << 12, 1).unwrap().unwrap();
        let value = mem.load(pte);
        assert_ne!(value & ACCESSED, 0, "page {page} accessed");
        assert_eq!(
            value & DIRTY != 0,
            page % 2 == 0,
            "page {page} dirty iff written"
        );
    }
}
