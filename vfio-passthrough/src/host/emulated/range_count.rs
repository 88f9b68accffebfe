//! [`RangeCount`]: reference counts over ranges of page numbers, kept as maximal runs.
//!
//! Pins are counted per host page and loads per page index of a backing, yet a 64 GiB mapping
//! must not cost 16 million map entries: counts are stored as runs `[start, end)` of equal,
//! non-zero count, so an operation costs O(k log n) for the k runs it touches.

use std::collections::BTreeMap;

/// How a range lies against the runs.
enum Shape {
    /// Exactly one run, with this count.
    Exact(u32),
    /// No run meets it.
    Free,
    /// Anything else.
    Other,
}

/// Iterator of [`RangeCount::zero_ranges`].
struct ZeroRanges<I> {
    /// The runs inside the range, clipped to it.
    runs: I,
    /// First index not yet known to be counted or reported.
    cursor: u64,
    end: u64,
    done: bool,
}

impl<I: Iterator<Item = (u64, u64, u32)>> Iterator for ZeroRanges<I> {
    type Item = (u64, u64);

    fn next(&mut self) -> Option<(u64, u64)> {
        if self.done {
            return None;
        }
        for (s, e, _) in self.runs.by_ref() {
            let from = self.cursor;
            self.cursor = e;
            if s > from {
                return Some((from, s));
            }
        }
        self.done = true;
        (self.cursor < self.end).then_some((self.cursor, self.end))
    }
}

/// Non-zero counts over half-open ranges of `u64` (page numbers), as maximal equal runs.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub(crate) struct RangeCount {
    /// start -> (end, count); runs never overlap, counts are never 0, and two adjacent runs
    /// never carry the same count.
    runs: BTreeMap<u64, (u64, u32)>,
}

impl RangeCount {
    /// No counts.
    #[cfg(test)]
    pub(crate) const fn new() -> Self {
        RangeCount {
            runs: BTreeMap::new(),
        }
    }

    /// True if every count is zero.
    pub(crate) fn is_empty(&self) -> bool {
        self.runs.is_empty()
    }

    /// The count at `at`.
    pub(crate) fn count_at(&self, at: u64) -> u32 {
        match self.runs.range(..=at).next_back() {
            Some((_, &(end, count))) if at < end => count,
            _ => 0,
        }
    }

    /// The sub-ranges of `[start, end)` whose count is zero, ascending (allocates nothing).
    pub(crate) fn zero_ranges(
        &self,
        start: u64,
        end: u64,
    ) -> impl Iterator<Item = (u64, u64)> + '_ {
        ZeroRanges {
            runs: self.runs_within(start, end),
            cursor: start,
            end,
            done: false,
        }
    }

    /// Adds one over `[start, end)`.
    pub(crate) fn increment(&mut self, start: u64, end: u64) {
        if start >= end {
            return;
        }
        // Fast paths (most pins): a run exactly [start, end) not touching an equal neighbour,
        // or nothing counted around [start, end].
        match self.exact_or_free(start, end) {
            Shape::Exact(count) if !self.neighbour_has(start, end, count + 1) => {
                self.runs.insert(start, (end, count.saturating_add(1)));
                return;
            }
            Shape::Free if !self.neighbour_has(start, end, 1) => {
                self.runs.insert(start, (end, 1));
                return;
            }
            _ => {}
        }
        let became_one: Vec<(u64, u64)> = self.zero_ranges(start, end).collect();
        self.split_at(start);
        self.split_at(end);
        let inside: Vec<(u64, u64, u32)> = self.runs_within(start, end).collect();
        for (s, e, count) in inside {
            self.runs.insert(s, (e, count.saturating_add(1)));
        }
        for (s, e) in became_one {
            self.runs.insert(s, (e, 1));
        }
        self.merge_around(start, end);
    }

    /// Subtracts one over `[start, end)`, calling `gone` with each maximal sub-range that
    /// went from 1 to 0, ascending, once the counts are updated. Every count in the range must
    /// be at least one (checked in debug builds; a zero count stays zero otherwise).
    pub(crate) fn decrement(&mut self, start: u64, end: u64, mut gone: impl FnMut(u64, u64)) {
        if start >= end {
            return;
        }
        debug_assert!(
            self.zero_ranges(start, end).next().is_none(),
            "decrement of an uncounted range [{start:#x}, {end:#x})"
        );
        if let Shape::Exact(count) = self.exact_or_free(start, end)
            && !self.neighbour_has(start, end, count - 1)
        {
            if count <= 1 {
                self.runs.remove(&start);
                gone(start, end);
            } else {
                self.runs.insert(start, (end, count - 1));
            }
            return;
        }
        self.split_at(start);
        self.split_at(end);
        let inside: Vec<(u64, u64, u32)> = self.runs_within(start, end).collect();
        let mut became_zero: Vec<(u64, u64)> = Vec::new();
        for (s, e, count) in inside {
            if count <= 1 {
                self.runs.remove(&s);
                match became_zero.last_mut() {
                    Some(last) if last.1 == s => last.1 = e,
                    _ => became_zero.push((s, e)),
                }
            } else {
                self.runs.insert(s, (e, count - 1));
            }
        }
        self.merge_around(start, end);
        for (s, e) in became_zero {
            gone(s, e);
        }
    }

    /// Whether `[start, end)` is exactly one run, or touches no run at all.
    fn exact_or_free(&self, start: u64, end: u64) -> Shape {
        match self.runs.range(..end).next_back() {
            Some((&s, &(e, c))) if s == start && e == end => Shape::Exact(c),
            Some((_, &(e, _))) if e <= start => Shape::Free,
            None => Shape::Free,
            _ => Shape::Other,
        }
    }

    /// True if a run ending at `start` or starting at `end` has count `count`.
    fn neighbour_has(&self, start: u64, end: u64, count: u32) -> bool {
        let before = self
            .runs
            .range(..start)
            .next_back()
            .is_some_and(|(_, &(e, c))| e == start && c == count);
        before || self.runs.get(&end).is_some_and(|&(_, c)| c == count)
    }

    /// Number of runs stored (for tests of compactness).
    #[cfg(test)]
    pub(crate) fn run_count(&self) -> usize {
        self.runs.len()
    }

    /// Runs intersecting `[start, end)`, clipped to it, ascending.
    fn runs_within(&self, start: u64, end: u64) -> impl Iterator<Item = (u64, u64, u32)> + '_ {
        let first = match self.runs.range(..start).next_back() {
            Some((&s, &(e, _))) if e > start => s,
            _ => start,
        };
        self.runs
            .range(first..end)
            .map(move |(&s, &(e, c))| (s.max(start), e.min(end), c))
            .filter(|&(s, e, _)| s < e)
    }

    /// Splits the run containing `at` (if any) so that a run starts at `at`.
    fn split_at(&mut self, at: u64) {
        if let Some((&s, &(e, c))) = self.runs.range(..at).next_back()
            && e > at
        {
            self.runs.insert(s, (at, c));
            self.runs.insert(at, (e, c));
        }
    }

    /// Merges equal adjacent runs from just before `start` to just after `end`.
    fn merge_around(&mut self, start: u64, end: u64) {
        let from = self
            .runs
            .range(..start)
            .next_back()
            .map(|(&s, _)| s)
            .unwrap_or(start);
        let keys: Vec<u64> = self.runs.range(from..=end).map(|(&s, _)| s).collect();
        let mut prev: Option<u64> = None;
        for key in keys {
            let Some(&(e, c)) = self.runs.get(&key) else {
                continue;
            };
            if let Some(p) = prev
                && let Some(&(pe, pc)) = self.runs.get(&p)
                && pe == key
                && pc == c
            {
                self.runs.remove(&key);
                self.runs.insert(p, (e, c));
                continue;
            }
            prev = Some(key);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Decrements `[start, end)`, returning the ranges that went to zero.
    fn dec(rc: &mut RangeCount, start: u64, end: u64) -> Vec<(u64, u64)> {
        let mut gone = Vec::new();
        rc.decrement(start, end, |s, e| gone.push((s, e)));
        gone
    }

    fn zeros(rc: &RangeCount, start: u64, end: u64) -> Vec<(u64, u64)> {
        rc.zero_ranges(start, end).collect()
    }

    /// Increments `[start, end)`, returning the ranges that went from zero to one.
    fn inc(rc: &mut RangeCount, start: u64, end: u64) -> Vec<(u64, u64)> {
        let new = zeros(rc, start, end);
        rc.increment(start, end);
        new
    }

    #[test]
    fn increment_counts_each_index_once_more() {
        let mut rc = RangeCount::new();
        assert_eq!(inc(&mut rc, 10, 20), vec![(10, 20)]);
        assert_eq!(inc(&mut rc, 15, 30), vec![(20, 30)]);
        assert_eq!(rc.count_at(9), 0);
        assert_eq!(rc.count_at(12), 1);
        assert_eq!(rc.count_at(17), 2);
        assert_eq!(rc.count_at(25), 1);
        assert_eq!(rc.count_at(30), 0);
    }

    #[test]
    fn decrement_reports_ranges_that_drop_to_zero_and_merges_runs() {
        let mut rc = RangeCount::new();
        rc.increment(0, 100);
        rc.increment(40, 60);
        assert_eq!(rc.run_count(), 3);
        assert_eq!(dec(&mut rc, 40, 60), Vec::<(u64, u64)>::new());
        assert_eq!(rc.run_count(), 1);
        assert_eq!(dec(&mut rc, 0, 50), vec![(0, 50)]);
        assert_eq!(rc.count_at(49), 0);
        assert_eq!(rc.count_at(50), 1);
        assert_eq!(dec(&mut rc, 50, 100), vec![(50, 100)]);
        assert!(rc.is_empty());
    }

    #[test]
    fn zero_ranges_lists_the_holes() {
        let mut rc = RangeCount::new();
        rc.increment(10, 20);
        rc.increment(30, 40);
        assert_eq!(zeros(&rc, 0, 50), vec![(0, 10), (20, 30), (40, 50)]);
        assert_eq!(zeros(&rc, 12, 18), Vec::<(u64, u64)>::new());
    }

    #[test]
    fn fast_paths_agree_with_the_general_case() {
        let mut rc = RangeCount::new();
        assert_eq!(inc(&mut rc, 10, 20), vec![(10, 20)]);
        assert_eq!(inc(&mut rc, 10, 20), Vec::<(u64, u64)>::new());
        assert_eq!(inc(&mut rc, 20, 30), vec![(20, 30)]);
        assert_eq!(rc.run_count(), 2);
        assert_eq!(dec(&mut rc, 10, 20), Vec::<(u64, u64)>::new());
        assert_eq!(rc.run_count(), 1, "equal neighbours merge");
        assert_eq!(rc.count_at(15), 1);
        assert_eq!(dec(&mut rc, 10, 30), vec![(10, 30)]);
        assert!(rc.is_empty());
        for _ in 0..1000 {
            rc.increment(5, 6);
        }
        assert_eq!(rc.count_at(5), 1000);
        for _ in 0..999 {
            assert_eq!(dec(&mut rc, 5, 6), Vec::<(u64, u64)>::new());
        }
        assert_eq!(dec(&mut rc, 5, 6), vec![(5, 6)]);
        assert!(rc.is_empty());
    }

    #[test]
    fn large_ranges_stay_one_run() {
        let mut rc = RangeCount::new();
        rc.increment(0, 1 << 40);
        rc.increment(1 << 40, 1 << 41);
        assert_eq!(rc.run_count(), 1);
        assert_eq!(rc.count_at((1 << 41) - 1), 1);
    }
}
