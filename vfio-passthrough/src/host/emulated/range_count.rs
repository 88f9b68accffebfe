//! [`RangeCount`]: reference counts over ranges of page numbers, kept as maximal runs.
//!
//! Pins are counted per host page and loads per page index of a backing, yet a 64 GiB mapping
//! must not cost 16 million map entries: counts are stored as runs `[start, end)` of equal,
//! non-zero count, so an operation costs O(k log n) for the k runs it touches.

use std::collections::BTreeMap;

/// What the fast path of [`RangeCount::increment`] and [`RangeCount::decrement`] found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Fast {
    /// The range was exactly one run, with no neighbour of the new count: it now has this
    /// count (0 is left for the caller to remove).
    Done(u32),
    /// No run meets the range; `touches_one` if a run touching it has count 1.
    Free { touches_one: bool },
    /// Anything else: take the general path.
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
        // updated in place, or nothing counted around [start, end].
        match self.fast_path(start, end, |count| count + 1) {
            Fast::Done(_) => return,
            Fast::Free { touches_one: false } => {
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
        if let Fast::Done(count) = self.fast_path(start, end, |count| count - 1) {
            if count == 0 {
                self.runs.remove(&start);
                gone(start, end);
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

    /// The fast path of both updates, in one lookup: if `[start, end)` is exactly one run and
    /// no run touching it has the count `new(count)` (so the runs stay maximal), that run
    /// takes the new count in place.
    fn fast_path(&mut self, start: u64, end: u64, new: impl FnOnce(u32) -> u32) -> Fast {
        let mut runs = self.runs.range_mut(..=end);
        let mut last = runs.next_back();
        let mut after = None;
        if let Some((s, run)) = &last
            && **s == end
        {
            after = Some(run.1);
            last = runs.next_back();
        }
        // `last` is now the last run starting below `end`.
        match last {
            Some((&s, run)) if s == start && run.0 == end => {
                let count = new(run.1);
                let before = runs
                    .next_back()
                    .filter(|(_, prev)| prev.0 == start)
                    .map(|(_, prev)| prev.1);
                if before == Some(count) || after == Some(count) {
                    return Fast::Other;
                }
                run.1 = count;
                Fast::Done(count)
            }
            Some((_, run)) if run.0 <= start => Fast::Free {
                touches_one: (run.0 == start && run.1 == 1) || after == Some(1),
            },
            None => Fast::Free {
                touches_one: after == Some(1),
            },
            Some(_) => Fast::Other,
        }
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

    /// Every count of a small space, index by index, against the runs, after a long
    /// pseudo-random sequence of updates (both fast paths and the general one); the runs
    /// stay maximal, and the ranges reported as newly zero are exactly the indexes that
    /// dropped to zero.
    #[test]
    fn updates_match_per_index_counts_and_keep_runs_maximal() {
        const SPACE: u64 = 48;
        let mut rc = RangeCount::new();
        let mut model = [0u32; SPACE as usize];
        let mut seed = 0x2545_f491_4f6c_dd1du64;
        let mut next = move |bound: u64| {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            seed % bound
        };
        for _ in 0..20_000 {
            let start = next(SPACE);
            let end = start + 1 + next((SPACE - start).min(6));
            let range = start as usize..end as usize;
            let counted = model[range.clone()].iter().all(|&c| c > 0);
            if counted && next(2) == 0 {
                let want: Vec<u64> = (start..end).filter(|&i| model[i as usize] == 1).collect();
                let mut got = Vec::new();
                rc.decrement(start, end, |s, e| got.extend(s..e));
                assert_eq!(got, want, "decrement [{start}, {end})");
                model[range].iter_mut().for_each(|c| *c -= 1);
            } else {
                rc.increment(start, end);
                model[range].iter_mut().for_each(|c| *c += 1);
            }
            for (i, &c) in model.iter().enumerate() {
                assert_eq!(rc.count_at(i as u64), c, "index {i}");
            }
            let runs: Vec<(u64, u64, u32)> =
                rc.runs.iter().map(|(&s, &(e, c))| (s, e, c)).collect();
            for pair in runs.windows(2) {
                let ((_, e0, c0), (s1, _, c1)) = (pair[0], pair[1]);
                assert!(
                    e0 < s1 || c0 != c1,
                    "adjacent runs of equal count: {pair:?}"
                );
            }
            assert!(runs.iter().all(|&(s, e, c)| s < e && c > 0));
        }
    }
}
