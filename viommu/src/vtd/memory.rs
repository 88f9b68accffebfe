//! Where first-stage tables live: the consumer-side [`TableMemory`] trait and an in-memory
//! implementation for tests, tools and benches.
//!
//! The emulated host implements [`TableMemory`] by translating each table address through the
//! parent (stage-2) paging HWPT; the guest-visible VT-d model implements it over guest RAM. Both
//! report stage-2 refusals as a [`Stage2Fault`], which the walker turns into the matching VT-d
//! nested-translation fault reason.

use std::collections::HashMap;

/// Why the memory holding a first-stage table could not be accessed. In nested translation these
/// are stage-2 outcomes for the table address.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, thiserror::Error)]
pub enum Stage2Fault {
    /// Stage 2 has no mapping for the address.
    #[error("Stage 2 has no mapping for GPA {gpa:#x}")]
    NotMapped {
        /// The guest physical address of the table entry.
        gpa: u64,
    },
    /// Stage 2 maps the address without read permission.
    #[error("Stage 2 denies reading GPA {gpa:#x}")]
    ReadDenied {
        /// The guest physical address of the table entry.
        gpa: u64,
    },
    /// Stage 2 maps the address without write permission (needed to set A/EA/D flags).
    #[error("Stage 2 denies writing GPA {gpa:#x}")]
    WriteDenied {
        /// The guest physical address of the table entry.
        gpa: u64,
    },
    /// The address is beyond what stage 2 can translate (its guest address width).
    #[error("GPA {gpa:#x} is beyond the {width}-bit stage-2 address width")]
    BeyondAddressWidth {
        /// The guest physical address of the table entry.
        gpa: u64,
        /// The stage-2 address width.
        width: u8,
    },
    /// Stage 2 translated the address but the memory behind it could not be accessed.
    #[error("Memory at GPA {gpa:#x} could not be accessed")]
    MemoryError {
        /// The guest physical address of the table entry.
        gpa: u64,
    },
}

impl Stage2Fault {
    /// The guest physical address that faulted.
    pub const fn gpa(&self) -> u64 {
        match *self {
            Stage2Fault::NotMapped { gpa }
            | Stage2Fault::ReadDenied { gpa }
            | Stage2Fault::WriteDenied { gpa }
            | Stage2Fault::BeyondAddressWidth { gpa, .. }
            | Stage2Fault::MemoryError { gpa } => gpa,
        }
    }
}

/// Access to the 64-bit entries of first-stage tables, by guest physical address.
///
/// Addresses passed in are always 8-byte aligned. Entries are little-endian in guest memory;
/// implementations return and take them as host integers.
pub trait TableMemory {
    /// Reads the entry at `gpa`.
    fn read_entry(&mut self, gpa: u64) -> Result<u64, Stage2Fault>;

    /// Atomically stores `new` at `gpa` if the entry still holds `current`, and returns the value
    /// the entry held before (so the store happened exactly when the return value equals
    /// `current`). The walker sets A, EA and D through this so that a concurrent update of the
    /// same entry, by the guest or another walker, is never lost.
    fn compare_exchange_entry(
        &mut self,
        gpa: u64,
        current: u64,
        new: u64,
    ) -> Result<u64, Stage2Fault>;
}

impl<M: TableMemory + ?Sized> TableMemory for &mut M {
    fn read_entry(&mut self, gpa: u64) -> Result<u64, Stage2Fault> {
        (**self).read_entry(gpa)
    }

    fn compare_exchange_entry(
        &mut self,
        gpa: u64,
        current: u64,
        new: u64,
    ) -> Result<u64, Stage2Fault> {
        (**self).compare_exchange_entry(gpa, current, new)
    }
}

/// How a page of [`SparseTableMemory`] refuses access, to stand in for stage-2 faults.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PageBlock {
    /// Reads and writes fail with [`Stage2Fault::NotMapped`].
    Unmapped,
    /// Reads succeed; writes fail with [`Stage2Fault::WriteDenied`].
    ReadOnly,
    /// Reads and writes fail with [`Stage2Fault::MemoryError`].
    Broken,
}

/// A sparse guest-physical memory of 64-bit entries, zero where never written, with identity
/// stage 2 and per-page injectable stage-2 faults. For tests, tools and benches: the real
/// consumers implement [`TableMemory`] over guest RAM.
#[derive(Debug, Default, Clone)]
pub struct SparseTableMemory {
    // Keyed by gpa / 8. A HashMap keeps tables spread over a 52-bit space cheap.
    words: HashMap<u64, u64>,
    blocked: HashMap<u64, PageBlock>,
    stage2_width: Option<u8>,
    reads: u64,
    updates: u64,
}

impl SparseTableMemory {
    /// An empty memory: every entry reads as zero and stage 2 maps everything.
    pub fn new() -> Self {
        Self::default()
    }

    /// Reads the entry at `gpa` directly, bypassing fault injection and counters.
    pub fn peek(&self, gpa: u64) -> u64 {
        self.words.get(&(gpa >> 3)).copied().unwrap_or(0)
    }

    /// Writes the entry at `gpa` directly, as the guest CPU would, bypassing fault injection.
    pub fn poke(&mut self, gpa: u64, value: u64) {
        if value == 0 {
            self.words.remove(&(gpa >> 3));
        } else {
            self.words.insert(gpa >> 3, value);
        }
    }

    /// Makes the 4 KiB page holding `gpa` refuse access as `block` says, or clears that with
    /// `None`.
    pub fn block_page(&mut self, gpa: u64, block: Option<PageBlock>) {
        match block {
            Some(block) => self.blocked.insert(gpa >> 12, block),
            None => self.blocked.remove(&(gpa >> 12)),
        };
    }

    /// Makes every address at or above `2^width` fail with [`Stage2Fault::BeyondAddressWidth`],
    /// or lifts the limit with `None`.
    pub fn set_stage2_width(&mut self, width: Option<u8>) {
        self.stage2_width = width;
    }

    /// Entries read through [`TableMemory::read_entry`] so far.
    pub fn reads(&self) -> u64 {
        self.reads
    }

    /// Entries changed through [`TableMemory::compare_exchange_entry`] so far.
    pub fn updates(&self) -> u64 {
        self.updates
    }

    fn check(&self, gpa: u64, write: bool) -> Result<(), Stage2Fault> {
        if let Some(width) = self.stage2_width {
            if width < 64 && gpa >> width != 0 {
                return Err(Stage2Fault::BeyondAddressWidth { gpa, width });
            }
        }
        match self.blocked.get(&(gpa >> 12)) {
            Some(PageBlock::Unmapped) => Err(Stage2Fault::NotMapped { gpa }),
            Some(PageBlock::Broken) => Err(Stage2Fault::MemoryError { gpa }),
            Some(PageBlock::ReadOnly) if write => Err(Stage2Fault::WriteDenied { gpa }),
            _ => Ok(()),
        }
    }
}

impl TableMemory for SparseTableMemory {
    fn read_entry(&mut self, gpa: u64) -> Result<u64, Stage2Fault> {
        self.check(gpa, false)?;
        self.reads += 1;
        Ok(self.peek(gpa))
    }

    fn compare_exchange_entry(
        &mut self,
        gpa: u64,
        current: u64,
        new: u64,
    ) -> Result<u64, Stage2Fault> {
        self.check(gpa, true)?;
        let old = self.peek(gpa);
        if old == current {
            self.updates += 1;
            self.poke(gpa, new);
        }
        Ok(old)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unwritten_entries_read_as_zero() {
        let mut mem = SparseTableMemory::new();
        assert_eq!(mem.read_entry(0x1234_5000).unwrap(), 0);
    }

    #[test]
    fn compare_exchange_stores_only_on_match() {
        let mut mem = SparseTableMemory::new();
        mem.poke(0x1000, 7);
        assert_eq!(mem.compare_exchange_entry(0x1000, 6, 9).unwrap(), 7);
        assert_eq!(mem.peek(0x1000), 7);
        assert_eq!(mem.compare_exchange_entry(0x1000, 7, 9).unwrap(), 7);
        assert_eq!(mem.peek(0x1000), 9);
    }

    #[test]
    fn blocked_pages_fault_with_their_address() {
        let mut mem = SparseTableMemory::new();
        mem.block_page(0x5000, Some(PageBlock::ReadOnly));
        assert_eq!(mem.read_entry(0x5008), Ok(0));
        assert_eq!(
            mem.compare_exchange_entry(0x5008, 0, 1),
            Err(Stage2Fault::WriteDenied { gpa: 0x5008 })
        );
        mem.block_page(0x5000, Some(PageBlock::Unmapped));
        assert_eq!(
            mem.read_entry(0x5010),
            Err(Stage2Fault::NotMapped { gpa: 0x5010 })
        );
        mem.set_stage2_width(Some(20));
        assert_eq!(
            mem.read_entry(0x10_0000),
            Err(Stage2Fault::BeyondAddressWidth {
                gpa: 0x10_0000,
                width: 20
            })
        );
    }
}
