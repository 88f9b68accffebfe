//! [`RangeCount`]: reference counts over ranges of page numbers, kept as maximal runs.
//!
//! Pins are counted per host page and loads per page index of a backing, yet a 64 GiB mapping
//! must not cost 16 million map entries: counts are stored as runs `[start, end)` of equal,
//! non-zero count, so an operation costs O(k log n) for the k runs it touches.

use std::collections::BTreeMap;

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

    /// The sub-ranges of `[start, end)` whose count is zero, ascending.
    pub(crate) fn zero_ranges(&self, start: u64, end: u64) -> Vec<(u64, u64)> {
        let mut out = Vec::new();
        let mut cursor = start;
        for (s, e, _) in self.runs_within(start, end) {
            if s > cursor {
                out.push((cursor, s));
            }
            cursor = e;
        }
        if cursor < end {
            out.push((cursor, end));
        }
        out
    }

    /// Adds one over `[start, end)`; returns the sub-ranges that went from 0 to 1.
    pub(crate) fn increment(&mut self, start: u64, end: u64) -> Vec<(u64, u64)> {
        if start >= end {
            return Vec::new();
        }
        let became_one = self.zero_ranges(start, end);
        self.split_at(start);
        self.split_at(end);
        let inside: Vec<(u64, u64, u32)> = self.runs_within(start, end).collect();
        for (s, e, count) in inside {
            self.runs.insert(s, (e, count.saturating_add(1)));
        }
        for &(s, e) in &became_one {
            self.runs.insert(s, (e, 1));
        }
        self.merge_around(start, end);
        became_one
    }

    /// Subtracts one over `[start, end)`; returns the sub-ranges that went from 1 to 0.
    /// Every count in the range must be at least one (checked in debug builds; a zero count
    /// stays zero otherwise).
    pub(crate) fn decrement(&mut self, start: u64, end: u64) -> Vec<(u64, u64)> {
        if start >= end {
            return Vec::new();
        }
        debug_assert!(
            self.zero_ranges(start, end).is_empty(),
            "decrement of an uncounted range [{start:#x}, {end:#x})"
        );
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
        became_zero
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

    #[test]
    fn increment_reports_only_newly_counted_ranges() {
        let mut rc = RangeCount::new();
        assert_eq!(rc.increment(10, 20), vec![(10, 20)]);
        assert_eq!(rc.increment(15, 30), vec![(20, 30)]);
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
        assert_eq!(rc.decrement(40, 60), Vec::<(u64, u64)>::new());
        assert_eq!(rc.run_count(), 1);
        assert_eq!(rc.decrement(0, 50), vec![(0, 50)]);
        assert_eq!(rc.count_at(49), 0);
        assert_eq!(rc.count_at(50), 1);
        assert_eq!(rc.decrement(50, 100), vec![(50, 100)]);
        assert!(rc.is_empty());
    }

    #[test]
    fn zero_ranges_lists_the_holes() {
        let mut rc = RangeCount::new();
        rc.increment(10, 20);
        rc.increment(30, 40);
        assert_eq!(rc.zero_ranges(0, 50), vec![(0, 10), (20, 30), (40, 50)]);
        assert_eq!(rc.zero_ranges(12, 18), Vec::<(u64, u64)>::new());
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
