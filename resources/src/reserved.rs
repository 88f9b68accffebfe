//! Reserved IOVA ranges as an iommufd IOAS keeps them.
//!
//! Unlike areas, reserved ranges may overlap: every attached device and domain adds its own
//! (two devices behind one IOMMU both reserve the MSI window), and detaching removes exactly the
//! ranges that owner added. Alongside the entries a union of maximal runs answers "is any of this
//! reserved" and "what is left" in logarithmic time.

use std::collections::BTreeMap;

use crate::range::AddrRange;
use crate::run_set::RunSet;

/// Reserved ranges, each tagged with the owner that added it (a device or domain id).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ReservedRanges {
    /// `(start, last, owner)` -> how many times that owner added that exact range.
    entries: BTreeMap<(u64, u64, u64), usize>,
    union: RunSet,
}

impl ReservedRanges {
    /// No reserved range.
    pub const fn new() -> Self {
        ReservedRanges {
            entries: BTreeMap::new(),
            union: RunSet::new(),
        }
    }

    /// Whether nothing is reserved.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// Number of reservations, counting an owner adding the same range twice as two.
    pub fn len(&self) -> usize {
        self.entries.values().sum()
    }

    /// Reserves `range` for `owner`. Overlaps with other reservations, of this owner or others,
    /// are allowed, as in the kernel's reserved interval tree.
    pub fn add(&mut self, range: AddrRange, owner: u64) {
        *self
            .entries
            .entry((range.start(), range.last(), owner))
            .or_insert(0) += 1;
        self.union.add(range);
    }

    /// Drops every reservation of `owner`; returns how many there were.
    pub fn remove_owner(&mut self, owner: u64) -> usize {
        let mut removed = 0;
        self.entries.retain(|&(_, _, who), count| {
            if who == owner {
                removed += *count;
            }
            who != owner
        });
        if removed > 0 {
            // Removal can split runs anywhere; rebuilding from the entries is simplest and
            // detach is rare.
            self.union = RunSet::new();
            for &(start, last, _) in self.entries.keys() {
                self.union.add(AddrRange::new_unchecked(start, last));
            }
        }
        removed
    }

    /// The reservation with the lowest start (then lowest last, then lowest owner) sharing an
    /// address with `range`, as `(range, owner)`.
    pub fn first_intersecting(&self, range: AddrRange) -> Option<(AddrRange, u64)> {
        // Every address of the union belongs to an entry, so an entry starting inside the first
        // union run that meets `range` is the lowest one; scan only that run's entries.
        let run = self.union.first_overlapping(range)?;
        let scan_last = run.last().min(range.last());
        self.entries
            .range((run.start(), 0, 0)..=(scan_last, u64::MAX, u64::MAX))
            .map(|(&(start, last, owner), _)| (AddrRange::new_unchecked(start, last), owner))
            .find(|(reserved, _)| reserved.overlaps(&range))
    }

    /// Whether any address of `range` is reserved.
    pub fn intersects(&self, range: AddrRange) -> bool {
        self.union.intersects(range)
    }

    /// The complement of the union of reservations inside `window`, ascending. Over
    /// [`AddrRange::FULL`] this is what `IOMMU_IOAS_IOVA_RANGES` reports.
    pub fn holes(&self, window: AddrRange) -> Vec<AddrRange> {
        self.union.holes(window).collect()
    }

    /// Every reservation as `(range, owner)`, ascending, repeated as often as it was added.
    pub fn iter(&self) -> impl Iterator<Item = (AddrRange, u64)> + '_ {
        self.entries
            .iter()
            .flat_map(|(&(start, last, owner), &count)| {
                std::iter::repeat_n((AddrRange::new_unchecked(start, last), owner), count)
            })
    }

    /// The union as maximal runs, for the IOVA space's occupancy bookkeeping.
    pub(crate) fn union(&self) -> &RunSet {
        &self.union
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn r(start: u64, last: u64) -> AddrRange {
        AddrRange::new(start, last).unwrap()
    }

    const MSI: (u64, u64) = (0xfee0_0000, 0xfeef_ffff);

    #[test]
    fn two_owners_reserving_the_same_window_keep_it_until_both_leave() {
        let mut res = ReservedRanges::new();
        let msi = r(MSI.0, MSI.1);
        res.add(msi, 1);
        res.add(msi, 2);
        assert_eq!(res.len(), 2);
        assert_eq!(res.remove_owner(1), 1);
        assert!(res.intersects(msi));
        assert_eq!(res.first_intersecting(msi), Some((msi, 2)));
        assert_eq!(res.remove_owner(2), 1);
        assert!(!res.intersects(msi));
        assert!(res.is_empty());
    }

    #[test]
    fn same_owner_adding_twice_is_counted_and_removed_together() {
        let mut res = ReservedRanges::new();
        res.add(r(0x10, 0x1f), 7);
        res.add(r(0x10, 0x1f), 7);
        assert_eq!(res.iter().count(), 2);
        assert_eq!(res.remove_owner(7), 2);
        assert!(res.is_empty());
        assert_eq!(res.remove_owner(7), 0);
    }

    #[test]
    fn removing_one_owner_keeps_the_overlapping_parts_of_others() {
        let mut res = ReservedRanges::new();
        res.add(r(0x10, 0x3f), 1);
        res.add(r(0x30, 0x5f), 2);
        res.remove_owner(1);
        assert!(!res.intersects(r(0x10, 0x2f)));
        assert!(res.intersects(r(0x2f, 0x30)));
        assert_eq!(res.holes(r(0, 0x6f)), vec![r(0, 0x2f), r(0x60, 0x6f)]);
    }

    #[test]
    fn first_intersecting_returns_the_lowest_start_meeting_the_range() {
        let mut res = ReservedRanges::new();
        res.add(r(0x10, 0x1f), 1);
        res.add(r(0x18, 0x80), 2);
        res.add(r(0x20, 0x2f), 3);
        res.add(r(0x90, 0x9f), 4);
        assert_eq!(
            res.first_intersecting(r(0x28, 0x28)),
            Some((r(0x18, 0x80), 2))
        );
        assert_eq!(
            res.first_intersecting(r(0x1f, 0x95)),
            Some((r(0x10, 0x1f), 1))
        );
        assert_eq!(
            res.first_intersecting(r(0x85, 0x95)),
            Some((r(0x90, 0x9f), 4))
        );
        assert_eq!(res.first_intersecting(r(0x81, 0x8f)), None);
    }

    #[test]
    fn holes_of_a_fresh_set_cover_the_whole_space() {
        let res = ReservedRanges::new();
        assert_eq!(res.holes(AddrRange::FULL), vec![AddrRange::FULL]);
    }

    #[test]
    fn holes_are_the_complement_of_the_union_including_the_top() {
        let mut res = ReservedRanges::new();
        res.add(r(0, 0xfff), 1);
        res.add(r(MSI.0, MSI.1), 1);
        res.add(r(MSI.0 + 0x1000, MSI.1 + 0x1000), 2);
        res.add(r(1 << 48, u64::MAX), 1);
        assert_eq!(
            res.holes(AddrRange::FULL),
            vec![r(0x1000, MSI.0 - 1), r(MSI.1 + 0x1001, (1 << 48) - 1)]
        );
    }
}
