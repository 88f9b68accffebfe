//! A set of addresses kept as maximal runs.
//!
//! Adding merges a range with every run it overlaps or touches, so runs are disjoint and never
//! adjacent: the gap after a run is always a hole, and finding the next hole costs one lookup
//! however many ranges were added to form the run. The union of reserved IOVA ranges and the
//! merged allowed list are kept this way.

use crate::range::AddrRange;
use crate::range_map::{Holes, RangeMap};

/// Maximal disjoint, non-adjacent runs of addresses.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct RunSet {
    runs: RangeMap<()>,
}

impl RunSet {
    /// An empty set.
    pub(crate) const fn new() -> Self {
        RunSet {
            runs: RangeMap::new(),
        }
    }

    /// Number of runs.
    pub(crate) fn len(&self) -> usize {
        self.runs.len()
    }

    /// Adds every address of `range`, merging the runs it overlaps or touches.
    pub(crate) fn add(&mut self, range: AddrRange) {
        let reach = AddrRange::new_unchecked(
            range.start().saturating_sub(1),
            range.last().saturating_add(1),
        );
        let mut hull = range;
        while let Some((run, ())) = self.runs.first_overlapping(reach) {
            self.runs.remove(run.start());
            hull = AddrRange::new_unchecked(
                hull.start().min(run.start()),
                hull.last().max(run.last()),
            );
        }
        // Cannot overlap: every run within reach was just removed.
        let _ = self.runs.insert(hull, ());
    }

    /// Removes every address of `range`, splitting the runs it cuts.
    pub(crate) fn remove(&mut self, range: AddrRange) {
        while let Some((run, ())) = self.runs.first_overlapping(range) {
            self.runs.remove(run.start());
            // The remnants lie outside `range`, so the loop does not find them again, and they
            // stay apart from other runs because they came from one maximal run.
            if run.start() < range.start() {
                let _ = self
                    .runs
                    .insert(AddrRange::new_unchecked(run.start(), range.start() - 1), ());
            }
            if run.last() > range.last() {
                let _ = self
                    .runs
                    .insert(AddrRange::new_unchecked(range.last() + 1, run.last()), ());
            }
        }
    }

    /// The run containing `addr`.
    pub(crate) fn run_at(&self, addr: u64) -> Option<AddrRange> {
        self.runs.get(addr).map(|(run, ())| run)
    }

    /// The lowest run overlapping `range`.
    pub(crate) fn first_overlapping(&self, range: AddrRange) -> Option<AddrRange> {
        self.runs.first_overlapping(range).map(|(run, ())| run)
    }

    /// Whether any address of `range` is in the set.
    pub(crate) fn intersects(&self, range: AddrRange) -> bool {
        self.first_overlapping(range).is_some()
    }

    /// The runs overlapping `range`, ascending and unclipped.
    pub(crate) fn overlapping(&self, range: AddrRange) -> impl Iterator<Item = AddrRange> + '_ {
        self.runs.overlapping(range).map(|(run, ())| run)
    }

    /// Every run, ascending.
    pub(crate) fn iter(&self) -> impl Iterator<Item = AddrRange> + '_ {
        self.runs.iter().map(|(run, ())| run)
    }

    /// The maximal gaps inside `window`, ascending.
    pub(crate) fn holes(&self, window: AddrRange) -> Holes<'_, ()> {
        self.runs.holes(window)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn r(start: u64, last: u64) -> AddrRange {
        AddrRange::new(start, last).unwrap()
    }

    fn runs(set: &RunSet) -> Vec<AddrRange> {
        set.iter().collect()
    }

    #[test]
    fn add_merges_overlapping_and_adjacent_ranges() {
        let mut set = RunSet::new();
        set.add(r(0x10, 0x1f));
        set.add(r(0x30, 0x3f));
        set.add(r(0x50, 0x5f));
        assert_eq!(set.len(), 3);
        set.add(r(0x20, 0x2f));
        assert_eq!(runs(&set), vec![r(0x10, 0x3f), r(0x50, 0x5f)]);
        set.add(r(0x00, 0x60));
        assert_eq!(runs(&set), vec![r(0x00, 0x60)]);
        set.add(r(0x18, 0x20));
        assert_eq!(runs(&set), vec![r(0x00, 0x60)]);
    }

    #[test]
    fn add_and_remove_at_the_ends_of_the_space() {
        let mut set = RunSet::new();
        set.add(r(u64::MAX, u64::MAX));
        set.add(r(0, 0));
        set.add(r(1, u64::MAX - 1));
        assert_eq!(runs(&set), vec![AddrRange::FULL]);
        set.remove(r(u64::MAX, u64::MAX));
        set.remove(r(0, 0));
        assert_eq!(runs(&set), vec![r(1, u64::MAX - 1)]);
        set.remove(AddrRange::FULL);
        assert_eq!(set.len(), 0);
    }

    #[test]
    fn remove_splits_runs_and_keeps_the_rest() {
        let mut set = RunSet::new();
        set.add(r(0x10, 0x5f));
        set.add(r(0x70, 0x7f));
        set.remove(r(0x20, 0x2f));
        assert_eq!(
            runs(&set),
            vec![r(0x10, 0x1f), r(0x30, 0x5f), r(0x70, 0x7f)]
        );
        set.remove(r(0x50, 0x71));
        assert_eq!(
            runs(&set),
            vec![r(0x10, 0x1f), r(0x30, 0x4f), r(0x72, 0x7f)]
        );
        assert_eq!(set.run_at(0x40), Some(r(0x30, 0x4f)));
        assert!(!set.intersects(r(0x50, 0x71)));
    }

    #[test]
    fn holes_between_runs_inside_a_window() {
        let mut set = RunSet::new();
        set.add(r(0x10, 0x1f));
        set.add(r(0x20, 0x2f));
        let holes: Vec<_> = set.holes(r(0, 0x3f)).collect();
        assert_eq!(holes, vec![r(0, 0xf), r(0x30, 0x3f)]);
    }
}
