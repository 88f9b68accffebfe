//! [`PageTable`]: the IOVA -> memory table of one emulated domain.
//!
//! The kernel fills a domain area by area (`iopt_area_fill_domain`) and empties it area by area
//! (`iopt_area_unfill_domain`), so the table stores one mapping per area: a run of IOVA to a
//! byte offset of a [`Pages`], with its protection and one dirty bit per IOPTE granule. That is
//! 1 bit per page plus a few dozen bytes per area, O(log n) lookups, and harvests that copy
//! bitmap words. Like the selftest mock domain's `MOCK_PFN_START_IOVA`/`MOCK_PFN_LAST_IOVA` tags,
//! an unmap must start and end exactly where a map did; debug builds assert it.

use std::collections::BTreeMap;
use std::sync::Arc;

use super::dirty_bits;
use super::pages::Pages;

/// Access rights of a mapping (`IOMMU_READ` / `IOMMU_WRITE`; `IOMMU_CACHE` is implied).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub struct Prot {
    /// Devices may read.
    pub read: bool,
    /// Devices may write.
    pub write: bool,
}

/// One mapped run of IOVA.
#[derive(Debug)]
pub(crate) struct Mapping {
    /// Last IOVA (inclusive).
    pub(crate) last: u64,
    /// The memory.
    pub(crate) pages: Arc<Pages>,
    /// Byte offset in `pages` of the first IOVA.
    pub(crate) offset: u64,
    /// Access rights.
    pub(crate) prot: Prot,
    /// One bit per granule; empty when the domain cannot track dirty pages.
    dirty: Vec<u64>,
}

/// Where harvested dirty bits go: the caller's bitmap, bit n covering
/// `[base + (n << pgshift), +1 << pgshift)`.
#[derive(Debug)]
pub(crate) struct BitmapOut<'a> {
    pub(crate) words: &'a mut [u64],
    pub(crate) base: u64,
    pub(crate) pgshift: u32,
}

/// The table of one domain.
#[derive(Debug)]
pub(crate) struct PageTable {
    granule_shift: u32,
    dirty_bits: bool,
    maps: BTreeMap<u64, Mapping>,
}

impl PageTable {
    /// An empty table with IOPTE size `granule`, keeping dirty bits if `dirty_bits`.
    pub(crate) fn new(granule: u64, dirty_bits: bool) -> Self {
        debug_assert!(granule.is_power_of_two());
        PageTable {
            granule_shift: granule.trailing_zeros(),
            dirty_bits,
            maps: BTreeMap::new(),
        }
    }

    fn granule(&self) -> u64 {
        1 << self.granule_shift
    }

    /// Number of mappings.
    pub(crate) fn len(&self) -> usize {
        self.maps.len()
    }

    /// Maps `[iova, iova + length)` to byte `offset` of `pages`.
    pub(crate) fn map(
        &mut self,
        iova: u64,
        length: u64,
        pages: Arc<Pages>,
        offset: u64,
        prot: Prot,
    ) {
        let last = iova + (length - 1);
        debug_assert!(
            iova % self.granule() == 0 && length % self.granule() == 0,
            "map of [{iova:#x}, {last:#x}] not aligned to the {:#x} granule",
            self.granule()
        );
        debug_assert!(
            self.maps
                .range(..=last)
                .next_back()
                .is_none_or(|(_, m)| m.last < iova),
            "map of [{iova:#x}, {last:#x}] over a mapped IOVA"
        );
        let dirty = if self.dirty_bits {
            vec![0u64; (length >> self.granule_shift).div_ceil(64) as usize]
        } else {
            Vec::new()
        };
        self.maps.insert(
            iova,
            Mapping {
                last,
                pages,
                offset,
                prot,
                dirty,
            },
        );
    }

    /// Unmaps `[iova, iova + length)`, which must be exactly one earlier map (debug builds
    /// assert the START/LAST tags); returns it.
    pub(crate) fn unmap(&mut self, iova: u64, length: u64) -> Option<Mapping> {
        let m = self.maps.remove(&iova);
        debug_assert!(
            m.as_ref().is_some_and(|m| m.last == iova + (length - 1)),
            "unmap of [{iova:#x}, +{length:#x}) does not match a map (START/LAST tags)"
        );
        m
    }

    /// The mapping containing `iova` and its first IOVA.
    pub(crate) fn lookup(&self, iova: u64) -> Option<(u64, &Mapping)> {
        let (&start, m) = self.maps.range(..=iova).next_back()?;
        (iova <= m.last).then_some((start, m))
    }

    /// Clears every dirty bit (`iopt_clear_dirty_data`).
    pub(crate) fn clear_dirty(&mut self) {
        for m in self.maps.values_mut() {
            m.dirty.fill(0);
        }
    }

    /// Marks dirty the granule containing `iova`, if mapped; returns whether it was.
    pub(crate) fn set_dirty(&mut self, iova: u64) -> bool {
        let shift = self.granule_shift;
        let Some((&start, m)) = self.maps.range_mut(..=iova).next_back() else {
            return false;
        };
        if iova > m.last || m.dirty.is_empty() {
            return false;
        }
        let i = (iova - start) >> shift;
        m.dirty[(i / 64) as usize] |= 1 << (i % 64);
        true
    }

    /// Marks dirty every mapped granule of `[iova, last]`.
    pub(crate) fn set_dirty_range(&mut self, iova: u64, last: u64) {
        let shift = self.granule_shift;
        let from = self
            .maps
            .range(..=iova)
            .next_back()
            .map(|(&s, _)| s)
            .unwrap_or(iova);
        for (&start, m) in self.maps.range_mut(from..=last) {
            if m.last < iova || m.dirty.is_empty() {
                continue;
            }
            let lo = (iova.max(start) - start) >> shift;
            let hi = (last.min(m.last) - start) >> shift;
            dirty_bits::set_bits(&mut m.dirty, lo, hi - lo + 1);
        }
    }

    /// ORs into `out` the dirty bits of the mapped granules of `[iova, last]`, clearing them
    /// unless `no_clear` (`read_and_clear_dirty`). Unmapped granules read clean.
    pub(crate) fn read_dirty(
        &mut self,
        iova: u64,
        last: u64,
        out: &mut BitmapOut<'_>,
        no_clear: bool,
    ) {
        let shift = self.granule_shift;
        let granule = self.granule();
        let from = self
            .maps
            .range(..=iova)
            .next_back()
            .map(|(&s, _)| s)
            .unwrap_or(iova);
        for (&start, m) in self.maps.range_mut(from..=last) {
            if m.last < iova || m.dirty.is_empty() {
                continue;
            }
            let lo_iova = iova.max(start);
            let hi_iova = last.min(m.last);
            let lo = (lo_iova - start) >> shift;
            let n = ((hi_iova - lo_iova) >> shift) + 1;
            if out.pgshift == shift {
                let dst_bit = (lo_iova - out.base) >> shift;
                dirty_bits::or_bits(out.words, dst_bit, &m.dirty, lo, n);
            } else {
                let (base, pgshift) = (out.base, out.pgshift);
                let words = &mut *out.words;
                dirty_bits::for_each_set(&m.dirty, lo, n, |i| {
                    let g = lo_iova + (i << shift);
                    let first = (g - base) >> pgshift;
                    let last_bit = (g + (granule - 1) - base) >> pgshift;
                    dirty_bits::set_bits(words, first, last_bit - first + 1);
                });
            }
            if !no_clear {
                dirty_bits::clear_bits(&mut m.dirty, lo, n);
            }
        }
    }

    /// True if the granule containing `iova` is mapped and dirty.
    #[cfg(test)]
    pub(crate) fn is_dirty(&self, iova: u64) -> bool {
        self.lookup(iova).is_some_and(|(start, m)| {
            !m.dirty.is_empty()
                && dirty_bits::any_set(&m.dirty, (iova - start) >> self.granule_shift, 1)
        })
    }
}
