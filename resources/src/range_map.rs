//! A map of disjoint address ranges, each carrying a value.
//!
//! Keyed by range start in a `BTreeMap`: since the ranges never overlap, the only range that can
//! contain an address is the last one starting at or below it, so every lookup is one B-tree
//! descent. Iterators walk the B-tree in place and allocate nothing.

use std::collections::BTreeMap;
use std::collections::btree_map;
use std::ops::Bound;

use crate::range::AddrRange;

/// Why a range could not be inserted into a [`RangeMap`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum RangeMapError {
    /// The new range shares at least one address with a range already present.
    #[error("range {range} overlaps existing range {existing}")]
    Overlap {
        /// The range that was to be inserted.
        range: AddrRange,
        /// The lowest existing range it overlaps.
        existing: AddrRange,
    },
}

#[derive(Debug, Clone, PartialEq, Eq)]
struct Slot<T> {
    last: u64,
    value: T,
}

fn entry<'a, T>((&start, slot): (&u64, &'a Slot<T>)) -> (AddrRange, &'a T) {
    (AddrRange::new_unchecked(start, slot.last), &slot.value)
}

/// Disjoint ranges, each with a value, ordered by start address.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RangeMap<T> {
    map: BTreeMap<u64, Slot<T>>,
}

impl<T> Default for RangeMap<T> {
    fn default() -> Self {
        Self::new()
    }
}

impl<T> RangeMap<T> {
    /// An empty map.
    pub const fn new() -> Self {
        RangeMap {
            map: BTreeMap::new(),
        }
    }

    /// Number of ranges.
    pub fn len(&self) -> usize {
        self.map.len()
    }

    /// Whether the map holds no range.
    pub fn is_empty(&self) -> bool {
        self.map.is_empty()
    }

    /// Removes every range.
    pub fn clear(&mut self) {
        self.map.clear();
    }

    /// Inserts `range` with `value`. A range overlapping any existing one (even by one byte) is
    /// rejected and the map is left unchanged; `value` is dropped in that case.
    pub fn insert(&mut self, range: AddrRange, value: T) -> Result<(), RangeMapError> {
        if let Some((existing, _)) = self.first_overlapping(range) {
            return Err(RangeMapError::Overlap { range, existing });
        }
        self.map.insert(
            range.start(),
            Slot {
                last: range.last(),
                value,
            },
        );
        Ok(())
    }

    /// Removes the range starting exactly at `start`, returning it and its value.
    pub fn remove(&mut self, start: u64) -> Option<(AddrRange, T)> {
        let slot = self.map.remove(&start)?;
        let range = AddrRange::new_unchecked(start, slot.last);
        Some((range, slot.value))
    }

    /// The range containing `addr`, with its value.
    pub fn get(&self, addr: u64) -> Option<(AddrRange, &T)> {
        self.map
            .range(..=addr)
            .next_back()
            .filter(|(_, slot)| slot.last >= addr)
            .map(entry)
    }

    /// The range containing `addr`, with mutable access to its value.
    pub fn get_mut(&mut self, addr: u64) -> Option<(AddrRange, &mut T)> {
        let (&start, slot) = self.map.range_mut(..=addr).next_back()?;
        if slot.last < addr {
            return None;
        }
        let range = AddrRange::new_unchecked(start, slot.last);
        Some((range, &mut slot.value))
    }

    /// The range starting exactly at `start`, with its value.
    pub fn get_by_start(&self, start: u64) -> Option<(AddrRange, &T)> {
        self.map.get_key_value(&start).map(entry)
    }

    /// The overlapping range with the lowest start, with its value.
    pub fn first_overlapping(&self, range: AddrRange) -> Option<(AddrRange, &T)> {
        // Only the last range starting at or below `range.start` can reach into it from the
        // left; otherwise the first range starting inside it is the answer.
        if let Some(found) = self.get(range.start()) {
            return Some(found);
        }
        self.map
            .range((
                Bound::Excluded(range.start()),
                Bound::Included(range.last()),
            ))
            .next()
            .map(entry)
    }

    /// The ranges overlapping `range`, in ascending order.
    pub fn overlapping(&self, range: AddrRange) -> Overlapping<'_, T> {
        let inner = self
            .first_overlapping(range)
            .map(|(first, _)| self.map.range(first.start()..=range.last()));
        Overlapping { inner }
    }

    /// Every range in ascending order.
    pub fn iter(&self) -> Iter<'_, T> {
        Iter {
            inner: self.map.iter(),
        }
    }

    /// The maximal gaps inside `window` not covered by any range, in ascending order. Adjacent
    /// ranges leave no gap between them.
    pub fn holes(&self, window: AddrRange) -> Holes<'_, T> {
        Holes {
            ranges: self.overlapping(window),
            cursor: Some(window.start()),
            last: window.last(),
        }
    }
}

impl<'a, T> IntoIterator for &'a RangeMap<T> {
    type Item = (AddrRange, &'a T);
    type IntoIter = Iter<'a, T>;

    fn into_iter(self) -> Self::IntoIter {
        self.iter()
    }
}

/// Iterator over all ranges of a [`RangeMap`], from [`RangeMap::iter`].
#[derive(Debug, Clone)]
pub struct Iter<'a, T> {
    inner: btree_map::Iter<'a, u64, Slot<T>>,
}

impl<'a, T> Iterator for Iter<'a, T> {
    type Item = (AddrRange, &'a T);

    fn next(&mut self) -> Option<Self::Item> {
        self.inner.next().map(entry)
    }

    fn size_hint(&self) -> (usize, Option<usize>) {
        self.inner.size_hint()
    }
}

impl<T> DoubleEndedIterator for Iter<'_, T> {
    fn next_back(&mut self) -> Option<Self::Item> {
        self.inner.next_back().map(entry)
    }
}

impl<T> ExactSizeIterator for Iter<'_, T> {}

/// Iterator over the ranges overlapping a window, from [`RangeMap::overlapping`].
#[derive(Debug, Clone)]
pub struct Overlapping<'a, T> {
    inner: Option<btree_map::Range<'a, u64, Slot<T>>>,
}

impl<'a, T> Iterator for Overlapping<'a, T> {
    type Item = (AddrRange, &'a T);

    fn next(&mut self) -> Option<Self::Item> {
        self.inner.as_mut()?.next().map(entry)
    }
}

/// Iterator over the gaps inside a window, from [`RangeMap::holes`].
#[derive(Debug, Clone)]
pub struct Holes<'a, T> {
    ranges: Overlapping<'a, T>,
    /// First address not yet known to be covered; `None` once the window is exhausted.
    cursor: Option<u64>,
    last: u64,
}

impl<T> Iterator for Holes<'_, T> {
    type Item = AddrRange;

    fn next(&mut self) -> Option<AddrRange> {
        let mut cursor = self.cursor?;
        for (range, _) in self.ranges.by_ref() {
            let after = range
                .last()
                .checked_add(1)
                .filter(|&next| next <= self.last);
            if range.start() > cursor {
                self.cursor = after;
                return AddrRange::new(cursor, range.start() - 1).ok();
            }
            match after {
                Some(next) => cursor = next,
                None => {
                    self.cursor = None;
                    return None;
                }
            }
        }
        self.cursor = None;
        AddrRange::new(cursor, self.last).ok()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn r(start: u64, last: u64) -> AddrRange {
        AddrRange::new(start, last).unwrap()
    }

    fn map_of(ranges: &[(u64, u64)]) -> RangeMap<u64> {
        let mut map = RangeMap::new();
        for &(s, l) in ranges {
            map.insert(r(s, l), s).unwrap();
        }
        map
    }

    #[test]
    fn insert_rejects_any_overlap_and_leaves_map_unchanged() {
        let mut map = map_of(&[(0x10, 0x1f), (0x30, 0x3f)]);
        let before = map.clone();
        for bad in [
            r(0x1f, 0x1f),
            r(0x0, 0x10),
            r(0x20, 0x30),
            r(0x0, u64::MAX),
            r(0x15, 0x16),
        ] {
            let err = map.insert(bad, 99).unwrap_err();
            let RangeMapError::Overlap { range, existing } = err;
            assert_eq!(range, bad);
            assert!(existing.overlaps(&bad));
            assert_eq!(map, before);
        }
        map.insert(r(0x20, 0x2f), 7).unwrap();
        assert_eq!(map.len(), 3);
    }

    #[test]
    fn overlap_error_names_lowest_existing_range() {
        let mut map = map_of(&[(0x10, 0x1f), (0x30, 0x3f)]);
        let err = map.insert(r(0x18, 0x38), 0).unwrap_err();
        assert_eq!(
            err,
            RangeMapError::Overlap {
                range: r(0x18, 0x38),
                existing: r(0x10, 0x1f)
            }
        );
    }

    #[test]
    fn get_finds_containing_range_only() {
        let map = map_of(&[(0x10, 0x1f), (0x30, 0x3f)]);
        assert_eq!(
            map.get(0x10).map(|(r, v)| (r, *v)),
            Some((r(0x10, 0x1f), 0x10))
        );
        assert_eq!(map.get(0x1f).map(|(r, _)| r), Some(r(0x10, 0x1f)));
        assert!(map.get(0x20).is_none());
        assert!(map.get(0xf).is_none());
        assert!(map.get(u64::MAX).is_none());
    }

    #[test]
    fn get_mut_changes_the_value_in_place() {
        let mut map = map_of(&[(0x10, 0x1f)]);
        *map.get_mut(0x18).unwrap().1 = 42;
        assert_eq!(map.get(0x10).map(|(_, v)| *v), Some(42));
        assert!(map.get_mut(0x20).is_none());
    }

    #[test]
    fn remove_takes_only_an_exact_start() {
        let mut map = map_of(&[(0x10, 0x1f)]);
        assert!(map.remove(0x11).is_none());
        assert_eq!(map.remove(0x10), Some((r(0x10, 0x1f), 0x10)));
        assert!(map.is_empty());
    }

    #[test]
    fn first_overlapping_prefers_range_reaching_in_from_the_left() {
        let map = map_of(&[(0x10, 0x1f), (0x20, 0x2f), (0x40, 0x4f)]);
        assert_eq!(
            map.first_overlapping(r(0x1f, 0x40)).map(|(r, _)| r),
            Some(r(0x10, 0x1f))
        );
        assert_eq!(
            map.first_overlapping(r(0x30, 0x40)).map(|(r, _)| r),
            Some(r(0x40, 0x4f))
        );
        assert!(map.first_overlapping(r(0x30, 0x3f)).is_none());
    }

    #[test]
    fn overlapping_lists_ascending_ranges_in_window() {
        let map = map_of(&[(0x10, 0x1f), (0x20, 0x2f), (0x40, 0x4f), (0x60, 0x6f)]);
        let got: Vec<_> = map.overlapping(r(0x1f, 0x40)).map(|(r, _)| r).collect();
        assert_eq!(got, vec![r(0x10, 0x1f), r(0x20, 0x2f), r(0x40, 0x4f)]);
        assert_eq!(map.overlapping(r(0x30, 0x3f)).count(), 0);
    }

    #[test]
    fn holes_are_maximal_gaps_clipped_to_window() {
        let map = map_of(&[(0x10, 0x1f), (0x20, 0x2f), (0x40, 0x4f)]);
        let got: Vec<_> = map.holes(r(0x0, 0x5f)).collect();
        assert_eq!(got, vec![r(0x0, 0xf), r(0x30, 0x3f), r(0x50, 0x5f)]);
        let inside: Vec<_> = map.holes(r(0x18, 0x44)).collect();
        assert_eq!(inside, vec![r(0x30, 0x3f)]);
        assert_eq!(map.holes(r(0x12, 0x2f)).count(), 0);
        assert_eq!(
            map.holes(r(0x31, 0x32)).collect::<Vec<_>>(),
            vec![r(0x31, 0x32)]
        );
    }

    #[test]
    fn holes_at_the_top_of_the_space() {
        let map = map_of(&[(u64::MAX - 0xf, u64::MAX)]);
        let got: Vec<_> = map.holes(AddrRange::FULL).collect();
        assert_eq!(got, vec![r(0, u64::MAX - 0x10)]);
        let map = map_of(&[(0, 0xf)]);
        let got: Vec<_> = map.holes(AddrRange::FULL).collect();
        assert_eq!(got, vec![r(0x10, u64::MAX)]);
        let map = map_of(&[(0, u64::MAX)]);
        assert_eq!(map.holes(AddrRange::FULL).count(), 0);
        let empty: RangeMap<u64> = RangeMap::new();
        assert_eq!(
            empty.holes(AddrRange::FULL).collect::<Vec<_>>(),
            vec![AddrRange::FULL]
        );
    }

    #[test]
    fn iter_is_ascending_and_exact_size() {
        let map = map_of(&[(0x40, 0x4f), (0x10, 0x1f), (u64::MAX, u64::MAX)]);
        let it = map.iter();
        assert_eq!(it.len(), 3);
        let starts: Vec<_> = it.map(|(r, _)| r.start()).collect();
        assert_eq!(starts, vec![0x10, 0x40, u64::MAX]);
        assert_eq!(
            (&map).into_iter().next_back().map(|(r, _)| r.start()),
            Some(u64::MAX)
        );
    }
}
