//! The two caches behind the IOTLB lock: leaf translations, one bounded map per page size as
//! hardware keeps separate arrays per size, and non-leaf ("paging-structure") entries.

use std::hash::Hash;

use super::fifo::FifoMap;
use crate::vtd::first_stage::{UsedTable, WalkStart};
use crate::vtd::pte::level_shift;
use crate::vtd::{PageSize, Permissions, Translation};

/// Above this many keys per map, a range invalidation scans the map instead of probing each key.
const PROBE_LIMIT: u64 = 64;

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
struct PageKey<T> {
    tag: T,
    /// Input address >> page shift.
    page: u64,
}

#[derive(Clone, Copy, Debug)]
struct CachedPage {
    output_page: u64,
    permissions: Permissions,
    dirty: bool,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
struct TableKey<T> {
    tag: T,
    /// Level of the cached non-leaf entry (2..=5).
    level: u8,
    /// Input address >> the span of one entry at `level`.
    span: u64,
}

#[derive(Clone, Copy, Debug)]
struct CachedTable {
    next_table: u64,
    permissions: Permissions,
}

/// Hit, miss and eviction counts.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(crate) struct Counters {
    pub hits: u64,
    pub misses: u64,
    pub evictions: u64,
}

/// Everything the IOTLB lock protects.
#[derive(Debug)]
pub(crate) struct Caches<T> {
    pages: [FifoMap<PageKey<T>, CachedPage>; 3],
    tables: FifoMap<TableKey<T>, CachedTable>,
    /// Bumped by every invalidation; a walk that saw another value does not fill the caches.
    pub generation: u64,
    pub counters: Counters,
}

impl<T: Copy + Eq + Hash> Caches<T> {
    pub(crate) fn new(page_capacity: [usize; 3], table_capacity: usize) -> Self {
        Caches {
            pages: page_capacity.map(FifoMap::new),
            tables: FifoMap::new(table_capacity),
            generation: 0,
            counters: Counters::default(),
        }
    }

    pub(crate) fn translation_count(&self) -> usize {
        self.pages.iter().map(FifoMap::len).sum()
    }

    pub(crate) fn table_count(&self) -> usize {
        self.tables.len()
    }

    /// The cached translation covering `iova`, smallest page size first.
    pub(crate) fn lookup(&self, tag: T, iova: u64) -> Option<Translation> {
        PageSize::ALL.into_iter().find_map(|size| {
            let map = &self.pages[size.index()];
            if map.len() == 0 {
                return None;
            }
            let key = PageKey {
                tag,
                page: iova >> size.shift(),
            };
            map.get(&key).map(|cached| Translation {
                output: cached.output_page | size.offset(iova),
                page_size: size,
                permissions: cached.permissions,
                dirty: cached.dirty,
            })
        })
    }

    /// Where a walk of `iova` can start given the cached non-leaf entries: below the deepest one.
    pub(crate) fn walk_start(&self, tag: T, iova: u64, root_level: u8) -> Option<WalkStart> {
        if self.tables.len() == 0 {
            return None;
        }
        (2..=root_level).find_map(|level| {
            let key = TableKey {
                tag,
                level,
                span: iova >> level_shift(level),
            };
            self.tables.get(&key).map(|cached| WalkStart {
                level: level - 1,
                table: cached.next_table,
                permissions: cached.permissions,
            })
        })
    }

    pub(crate) fn insert_translation(&mut self, tag: T, iova: u64, translation: &Translation) {
        let size = translation.page_size;
        let key = PageKey {
            tag,
            page: iova >> size.shift(),
        };
        let cached = CachedPage {
            output_page: translation.output_page(),
            permissions: translation.permissions,
            dirty: translation.dirty,
        };
        self.counters.evictions += self.pages[size.index()].insert(key, cached);
    }

    pub(crate) fn insert_table(&mut self, tag: T, iova: u64, used: &UsedTable) {
        let key = TableKey {
            tag,
            level: used.level,
            span: iova >> level_shift(used.level),
        };
        let cached = CachedTable {
            next_table: used.next_table,
            permissions: used.permissions,
        };
        self.counters.evictions += self.tables.insert(key, cached);
    }

    /// Drops the entries of `tag` overlapping `first..=last`: translations always, non-leaf
    /// entries unless `leaf_only`.
    pub(crate) fn invalidate_range(&mut self, tag: T, first: u64, last: u64, leaf_only: bool) {
        self.generation += 1;
        for size in PageSize::ALL {
            let shift = size.shift();
            let map = &mut self.pages[size.index()];
            let (low, high) = (first >> shift, last >> shift);
            if high - low < PROBE_LIMIT {
                for page in low..=high {
                    map.remove(&PageKey { tag, page });
                }
            } else {
                map.retain(|key, _| key.tag != tag || key.page < low || key.page > high);
            }
        }
        if leaf_only {
            return;
        }
        for level in 2..=5u8 {
            let shift = level_shift(level);
            let (low, high) = (first >> shift, last >> shift);
            if high - low < PROBE_LIMIT {
                for span in low..=high {
                    self.tables.remove(&TableKey { tag, level, span });
                }
            } else {
                self.tables.retain(|key, _| {
                    key.tag != tag || key.level != level || key.span < low || key.span > high
                });
            }
        }
    }

    /// Drops every entry whose tag `matches`.
    pub(crate) fn invalidate_tags(&mut self, mut matches: impl FnMut(&T) -> bool) {
        self.generation += 1;
        for map in &mut self.pages {
            map.retain(|key, _| !matches(&key.tag));
        }
        self.tables.retain(|key, _| !matches(&key.tag));
    }

    /// Drops everything.
    pub(crate) fn clear(&mut self) {
        self.generation += 1;
        for map in &mut self.pages {
            map.clear();
        }
        self.tables.clear();
    }
}
