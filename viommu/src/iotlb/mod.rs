//! A software IOTLB for first-stage translations, with VT-d invalidation semantics.
//!
//! # Design
//!
//! - **Two caches**, as VT-d hardware has: leaf translations (one bounded map per page size, so a
//!   2 MiB translation serves every address inside it) and a paging-structure cache of non-leaf
//!   entries, which lets a miss resume the walk below the deepest cached entry. Both are keyed by
//!   a caller-chosen tag `T` (an HWPT id, a domain-id/PASID pair...) and the input address.
//! - **Stale until invalidated.** Nothing watches the tables: a cached entry keeps translating
//!   after the guest changes or clears the entry it came from, until an invalidation covers it,
//!   exactly as on hardware. That is what lets tests catch a guest that forgets to invalidate, and
//!   a guest that invalidates with the leaf-only hint after changing a non-leaf entry.
//! - **What is cached**: only successful walks (VT-d does not cache faults for first-stage
//!   translation). A hit is used only if its accumulated rights allow the request and, for a
//!   write, the leaf was already dirty; otherwise the request walks again, which is how hardware
//!   sets D on a first write through a translation cached by a read.
//! - **Invalidation**: by tag and address range (with or without the leaf-only hint), by tag, by a
//!   tag predicate (e.g. a whole domain across its PASIDs) and globally. A range drops exactly the
//!   entries overlapping it; hardware may drop more, a guest cannot rely on that.
//! - **Replacement**: each map is bounded and evicts first-in-first-out, which costs nothing on a
//!   hit. Capacities are in [`IotlbCapacity`].
//! - **Concurrency**: one [`Mutex`] over both caches, held only for the probe on a hit and for the
//!   fill after a walk, never across table reads (those may go through stage 2 and be slow). One
//!   lock keeps invalidation atomic across both caches; sharding by tag is the next step if the
//!   nested DMA bench ever shows contention. An invalidation racing a walk bumps a generation
//!   number, and a walk that started before it does not fill the caches, so no translation read
//!   before an invalidation survives it.

mod caches;
mod fifo;
pub mod invalidation;

use std::hash::Hash;
use std::sync::{Mutex, MutexGuard};

use crate::vtd::first_stage::{UsedTable, WalkStart, check_request, walk_from};
use crate::vtd::{Access, FirstStageConfig, FirstStageFault, TableMemory, Translation};
use caches::Caches;
pub use invalidation::{RangeInvalidation, RangeInvalidationError};

/// How many entries each cache of an [`Iotlb`] holds before it evicts.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct IotlbCapacity {
    /// 4 KiB translations.
    pub pages_4k: usize,
    /// 2 MiB translations.
    pub pages_2m: usize,
    /// 1 GiB translations.
    pub pages_1g: usize,
    /// Non-leaf entries (paging-structure cache), all levels together.
    pub paging_structures: usize,
}

impl Default for IotlbCapacity {
    /// Sizes in the range of a server IOMMU's IOTLB, scaled up since memory is cheap here.
    fn default() -> Self {
        IotlbCapacity {
            pages_4k: 4096,
            pages_2m: 512,
            pages_1g: 64,
            paging_structures: 1024,
        }
    }
}

/// Counts describing the IOTLB's use so far.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct IotlbStats {
    /// Requests [`Iotlb::translate`] served from a cached translation.
    pub hits: u64,
    /// Requests [`Iotlb::translate`] had to walk for.
    pub misses: u64,
    /// Entries dropped to make room.
    pub evictions: u64,
    /// Translations cached now.
    pub translations: usize,
    /// Non-leaf entries cached now.
    pub paging_structures: usize,
}

/// A thread-safe first-stage IOTLB with a paging-structure cache; see the module documentation.
#[derive(Debug)]
pub struct Iotlb<T> {
    caches: Mutex<Caches<T>>,
}

impl<T: Copy + Eq + Hash> Default for Iotlb<T> {
    fn default() -> Self {
        Self::new(IotlbCapacity::default())
    }
}

impl<T: Copy + Eq + Hash> Iotlb<T> {
    /// An empty IOTLB with the given capacities (0 disables that cache).
    pub fn new(capacity: IotlbCapacity) -> Self {
        Iotlb {
            caches: Mutex::new(Caches::new(
                [capacity.pages_4k, capacity.pages_2m, capacity.pages_1g],
                capacity.paging_structures,
            )),
        }
    }

    /// Translates `iova` for `access` under `tag`: from the cache when a cached translation
    /// allows the request, otherwise by walking the table `config` describes (from below the
    /// deepest cached non-leaf entry) and caching the result.
    ///
    /// Faults are never cached. The request checks that precede any table read (SRE,
    /// canonicality) are applied on hits too.
    pub fn translate<M: TableMemory + ?Sized>(
        &self,
        tag: T,
        config: &FirstStageConfig,
        iova: u64,
        access: Access,
        mem: &mut M,
    ) -> Result<Translation, FirstStageFault> {
        check_request(config, iova, access)?;
        let flags = config.flags();
        let (generation, start) = {
            let mut caches = self.lock();
            if let Some(hit) = caches.lookup(tag, iova) {
                if hit.permissions.allow(access, flags) && (!access.write || hit.dirty) {
                    caches.counters.hits += 1;
                    return Ok(hit);
                }
            }
            caches.counters.misses += 1;
            // A cached non-leaf entry whose rights already refuse the request would hide which
            // level refuses it; walk from the root then, so the fault names the right entry.
            let start = caches
                .walk_start(tag, iova, config.mode().levels())
                .filter(|start| start.permissions.allow(access, flags))
                .unwrap_or_else(|| WalkStart::root(config));
            (caches.generation, start)
        };

        let mut used = [None::<UsedTable>; 4];
        let mut used_count = 0;
        let translation = walk_from(config, iova, access, mem, start, |table| {
            if let Some(slot) = used.get_mut(used_count) {
                *slot = Some(table);
                used_count += 1;
            }
        })?;

        let mut caches = self.lock();
        if caches.generation == generation {
            for table in used.iter().flatten() {
                caches.insert_table(tag, iova, table);
            }
            caches.insert_translation(tag, iova, &translation);
        }
        Ok(translation)
    }

    /// The cached translation covering `iova` under `tag`, without any permission check; `None`
    /// if nothing cached covers it.
    pub fn lookup(&self, tag: T, iova: u64) -> Option<Translation> {
        self.lock().lookup(tag, iova)
    }

    /// Drops the cached entries of `tag` that overlap `range` (non-leaf entries too unless
    /// `range.leaf_only`).
    pub fn invalidate_range(&self, tag: T, range: RangeInvalidation) {
        if let Some((first, last)) = range.bounds() {
            self.lock()
                .invalidate_range(tag, first, last, range.leaf_only);
        }
    }

    /// Drops every entry of `tag` (PASID-selective or domain-selective invalidation).
    pub fn invalidate_tag(&self, tag: T) {
        self.lock().invalidate_tags(|cached| *cached == tag);
    }

    /// Drops every entry whose tag `matches`, e.g. all PASIDs of one domain.
    pub fn invalidate_tags_where(&self, matches: impl FnMut(&T) -> bool) {
        self.lock().invalidate_tags(matches);
    }

    /// Drops everything (global invalidation).
    pub fn invalidate_all(&self) {
        self.lock().clear();
    }

    /// Counts so far and current occupancy.
    pub fn stats(&self) -> IotlbStats {
        let caches = self.lock();
        IotlbStats {
            hits: caches.counters.hits,
            misses: caches.counters.misses,
            evictions: caches.counters.evictions,
            translations: caches.translation_count(),
            paging_structures: caches.table_count(),
        }
    }

    /// Locks the caches. A thread that panicked while holding the lock may have left them half
    /// updated; dropping everything is always a correct state for a cache, so do that and go on.
    fn lock(&self) -> MutexGuard<'_, Caches<T>> {
        match self.caches.lock() {
            Ok(guard) => guard,
            Err(poisoned) => {
                let mut guard = poisoned.into_inner();
                guard.clear();
                self.caches.clear_poison();
                guard
            }
        }
    }
}
