//! The IOVA space of an iommufd IOAS: areas, reserved ranges and allowed ranges.
//!
//! Mirrors the three interval trees of the kernel's `struct io_pagetable` and the checks of
//! `io_pagetable.c` and `ioas.c` (Linux 6.12): `iopt_check_iova`, `iopt_reserve_iova`,
//! `iopt_set_allow_iova` with `iommufd_ioas_load_iovas`, `iopt_alloc_iova` and the span walk of
//! `iommufd_ioas_iova_ranges`. Each error variant names the errno the kernel returns for it.
//!
//! Areas and reserved ranges never intersect (each is refused where the other is), so the areas
//! and the union of the reserved ranges (as maximal runs) share one gap tree: inserting an area
//! checks and inserts in one descent, removing one (or taking the first in an unmap window)
//! takes one more, and automatic placement skips every subtree whose holes are all too small for
//! the request instead of walking every hole. The reserved ranges themselves, with their owners, stay in [`ReservedRanges`] for the
//! error reports and `IOMMU_IOAS_IOVA_RANGES`.

mod placement;

pub use placement::{AutoAlignment, MAX_ALIGNMENT_NO_THP, MAX_ALIGNMENT_THP, auto_alignment};

use std::fmt;

use placement::Request;

use crate::gap_tree::{self, GapTree};
use crate::range::AddrRange;
use crate::range_map::RangeMap;
use crate::reserved::ReservedRanges;
use crate::run_set::RunSet;

/// What a new reserved or allowed range ran into.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Occupant {
    /// A mapped area.
    Area,
    /// An allowed range.
    Allowed,
    /// A reserved range.
    Reserved,
}

impl fmt::Display for Occupant {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Occupant::Area => "mapped area",
            Occupant::Allowed => "allowed range",
            Occupant::Reserved => "reserved range",
        })
    }
}

/// Why an IOVA space operation failed. Each variant documents the errno iommufd returns.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum IovaError {
    /// `EINVAL`: a fixed IOVA range intersects a reserved range.
    #[error("IOVA range {range} intersects reserved range {reserved} of owner {owner:#x}")]
    Reserved {
        /// The requested range.
        range: AddrRange,
        /// The lowest reserved range it meets.
        reserved: AddrRange,
        /// The owner of that reservation.
        owner: u64,
    },
    /// `EEXIST`: a fixed IOVA range overlaps an existing area (even by one byte).
    #[error("IOVA range {range} overlaps existing area {area}")]
    Exists {
        /// The requested range.
        range: AddrRange,
        /// The lowest area it overlaps.
        area: AddrRange,
    },
    /// `EADDRINUSE`: a new reserved range meets an area or an allowed range, or a new allowed
    /// range meets a reserved range.
    #[error("IOVA range {range} meets {occupant} {conflict}")]
    InUse {
        /// The range being reserved or allowed.
        range: AddrRange,
        /// The lowest range it meets.
        conflict: AddrRange,
        /// What that range is.
        occupant: Occupant,
    },
    /// `ENOSPC`: no hole fits the automatic placement request.
    #[error(
        "no free IOVA range of {length:#x} bytes at alignment {alignment:#x} \
         with page offset {page_offset:#x}"
    )]
    NoSpace {
        /// Requested length.
        length: u64,
        /// Requested alignment.
        alignment: u64,
        /// Requested page offset.
        page_offset: u64,
    },
    /// `EOVERFLOW`: an automatic placement length of 0 or of at least `u64::MAX / 2`.
    #[error("automatic IOVA length {length:#x} is 0 or too large")]
    Overflow {
        /// Requested length.
        length: u64,
    },
    /// `EINVAL`: an allowed range with `start >= last` (one-byte ranges are refused too).
    #[error("allowed range #{index} {range} is shorter than two bytes")]
    AllowedTooSmall {
        /// Position in the caller's list.
        index: usize,
        /// The offending range.
        range: AddrRange,
    },
    /// `EINVAL`: two ranges of one allowed list overlap.
    #[error("allowed range #{index} {range} overlaps allowed range {other}")]
    AllowedOverlap {
        /// Position in the caller's list of the later range.
        index: usize,
        /// The later range.
        range: AddrRange,
        /// The earlier range it overlaps.
        other: AddrRange,
    },
    /// `EINVAL`: a placement parameter that the kernel could never produce (an alignment or
    /// page size that is not a power of two, a page offset outside the page).
    #[error("invalid IOVA placement parameter {name} = {value:#x}")]
    BadParameter {
        /// Which parameter.
        name: &'static str,
        /// Its value.
        value: u64,
    },
}

/// What occupies a range of the [`GapTree`] of an [`IovaSpace`].
#[derive(Debug, Clone)]
enum Slot<T> {
    /// A mapped area and its value.
    Area(T),
    /// A maximal run of the union of the reserved ranges.
    Reserved,
}

impl<T> Slot<T> {
    fn area(&self) -> Option<&T> {
        match self {
            Slot::Area(value) => Some(value),
            Slot::Reserved => None,
        }
    }
}

/// The IOVA bookkeeping of one IOAS; `T` is what each area carries (pages, flags).
#[derive(Debug, Clone)]
pub struct IovaSpace<T> {
    /// The areas and the runs of `reserved.union()`, which never intersect.
    occupancy: GapTree<Slot<T>>,
    /// How many of `occupancy`'s ranges are areas.
    area_count: usize,
    reserved: ReservedRanges,
    /// The allowed list as given (ranges may be adjacent).
    allowed: RangeMap<()>,
    /// The allowed list merged into maximal runs: the kernel's span iterator treats adjacent
    /// allowed ranges as one span, so a placement may straddle their boundary.
    allowed_runs: RunSet,
}

/// The areas of an [`IovaSpace`], from [`IovaSpace::areas`].
#[derive(Debug, Clone, Copy)]
pub struct Areas<'a, T> {
    space: &'a IovaSpace<T>,
}

impl<'a, T> Areas<'a, T> {
    /// Every area with its value, ascending.
    pub fn iter(&self) -> AreaIter<'a, T> {
        AreaIter {
            inner: self.space.occupancy.iter(),
            left: self.space.area_count,
        }
    }

    /// Number of areas.
    pub fn len(&self) -> usize {
        self.space.area_count
    }

    /// Whether there is no area.
    pub fn is_empty(&self) -> bool {
        self.space.area_count == 0
    }
}

impl<'a, T> IntoIterator for Areas<'a, T> {
    type Item = (AddrRange, &'a T);
    type IntoIter = AreaIter<'a, T>;

    fn into_iter(self) -> Self::IntoIter {
        self.iter()
    }
}

/// Iterator over the areas of an [`IovaSpace`], ascending, from [`Areas::iter`].
pub struct AreaIter<'a, T> {
    inner: gap_tree::Iter<'a, Slot<T>>,
    /// Areas not yet returned.
    left: usize,
}

impl<T> fmt::Debug for AreaIter<'_, T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AreaIter")
            .field("left", &self.left)
            .finish()
    }
}

impl<'a, T> Iterator for AreaIter<'a, T> {
    type Item = (AddrRange, &'a T);

    fn next(&mut self) -> Option<Self::Item> {
        if self.left == 0 {
            return None;
        }
        let found = self
            .inner
            .by_ref()
            .find_map(|(range, slot)| slot.area().map(|value| (range, value)));
        if found.is_some() {
            self.left -= 1;
        }
        found
    }

    fn size_hint(&self) -> (usize, Option<usize>) {
        (self.left, Some(self.left))
    }
}

impl<T> ExactSizeIterator for AreaIter<'_, T> {}

impl<T> Default for IovaSpace<T> {
    fn default() -> Self {
        Self::new()
    }
}

impl<T> IovaSpace<T> {
    /// A fresh IOAS: no areas, nothing reserved, no allowed list.
    pub const fn new() -> Self {
        IovaSpace {
            occupancy: GapTree::new(),
            area_count: 0,
            reserved: ReservedRanges::new(),
            allowed: RangeMap::new(),
            allowed_runs: RunSet::new(),
        }
    }

    /// Replaces the allowed list atomically (`IOMMU_IOAS_ALLOW_IOVAS`); an empty list lifts the
    /// restriction. Checks in the kernel's order: every range in turn must have
    /// `start < last` ([`IovaError::AllowedTooSmall`]) and not overlap an earlier one
    /// ([`IovaError::AllowedOverlap`]); then no range may meet a reserved range
    /// ([`IovaError::InUse`]). On error nothing changes. Existing areas are not checked.
    ///
    /// A user range with `start > last` cannot be expressed as an [`AddrRange`]; the caller
    /// maps that construction error to `EINVAL` as well.
    pub fn set_allowed(&mut self, ranges: &[AddrRange]) -> Result<(), IovaError> {
        let mut allowed = RangeMap::new();
        for (index, &range) in ranges.iter().enumerate() {
            if range.start() >= range.last() {
                return Err(IovaError::AllowedTooSmall { index, range });
            }
            if let Some((other, ())) = allowed.first_overlapping(range) {
                return Err(IovaError::AllowedOverlap {
                    index,
                    range,
                    other,
                });
            }
            let _ = allowed.insert(range, ());
        }
        for (range, ()) in allowed.iter() {
            if let Some((conflict, _)) = self.reserved.first_intersecting(range) {
                return Err(IovaError::InUse {
                    range,
                    conflict,
                    occupant: Occupant::Reserved,
                });
            }
        }
        let mut runs = RunSet::new();
        for (range, ()) in allowed.iter() {
            runs.add(range);
        }
        self.allowed = allowed;
        self.allowed_runs = runs;
        Ok(())
    }

    /// The allowed list, ascending; empty when unrestricted.
    pub fn allowed(&self) -> impl Iterator<Item = AddrRange> + '_ {
        self.allowed.iter().map(|(range, ())| range)
    }

    /// Reserves `range` for `owner` (`iopt_reserve_iova`). Refused with [`IovaError::InUse`]
    /// if it meets an area (checked first) or an allowed range; nothing changes then.
    pub fn reserve(&mut self, range: AddrRange, owner: u64) -> Result<(), IovaError> {
        if let Some((conflict, _)) = self.first_area_overlapping(range) {
            return Err(IovaError::InUse {
                range,
                conflict,
                occupant: Occupant::Area,
            });
        }
        if let Some((conflict, ())) = self.allowed.first_overlapping(range) {
            return Err(IovaError::InUse {
                range,
                conflict,
                occupant: Occupant::Allowed,
            });
        }
        self.reserved.add(range, owner);
        // The union run now holding `range` replaces the runs it absorbed; no area lies in it.
        let run = self
            .reserved
            .union()
            .run_at(range.start())
            .expect("a reserved range lies in a run of the union");
        let absorbed: Vec<u64> = self
            .occupancy
            .overlapping(run)
            .map(|(old, _)| old.start())
            .collect();
        for start in absorbed {
            let _ = self.occupancy.remove(start);
        }
        let inserted = self.occupancy.insert(run, Slot::Reserved);
        debug_assert!(inserted.is_ok(), "reserved run {run} meets an area");
        Ok(())
    }

    /// Drops every reservation of `owner` (device or domain detach); returns how many.
    pub fn unreserve_owner(&mut self, owner: u64) -> usize {
        let before = self.reserved.union().clone();
        let removed = self.reserved.remove_owner(owner);
        if removed > 0 {
            // Each run of the new union lies inside one run of the old: replace every old run
            // by what is left of it.
            for run in before.iter() {
                let _ = self.occupancy.remove(run.start());
                for kept in self.reserved.union().overlapping(run) {
                    let inserted = self.occupancy.insert(kept, Slot::Reserved);
                    debug_assert!(inserted.is_ok(), "reserved run {kept} meets an area");
                }
            }
        }
        removed
    }

    /// The reserved ranges.
    pub fn reserved(&self) -> &ReservedRanges {
        &self.reserved
    }

    /// What `IOMMU_IOAS_IOVA_RANGES` reports: the holes of the reserved ranges over the whole
    /// 64-bit space, ascending. The allowed list is not applied.
    pub fn reserved_holes(&self) -> Vec<AddrRange> {
        self.reserved.holes(AddrRange::FULL)
    }

    /// The checks of a fixed-IOVA map after alignment and overflow (`iopt_check_iova`):
    /// a reserved range -> [`IovaError::Reserved`], then any area overlap ->
    /// [`IovaError::Exists`]. The allowed list does not restrict fixed IOVAs.
    pub fn check_fixed(&self, range: AddrRange) -> Result<(), IovaError> {
        match self.occupancy.first_overlapping(range) {
            None => Ok(()),
            Some(_) => Err(self.fixed_conflict(range)),
        }
    }

    /// The error of [`IovaSpace::check_fixed`] for a range known to meet an area or a
    /// reserved range.
    fn fixed_conflict(&self, range: AddrRange) -> IovaError {
        if let Some((reserved, owner)) = self.reserved.first_intersecting(range) {
            return IovaError::Reserved {
                range,
                reserved,
                owner,
            };
        }
        let area = self.first_area_overlapping(range).map(|(area, _)| area);
        debug_assert!(
            area.is_some(),
            "{range} meets neither an area nor a reserved range"
        );
        IovaError::Exists {
            range,
            area: area.unwrap_or(range),
        }
    }

    /// Records an area, refused as [`IovaSpace::check_fixed`] would refuse it; nothing changes
    /// on error (and `value` is dropped). The insertion itself finds any range in the way, so
    /// calling [`IovaSpace::check_fixed`] first costs one more lookup and adds no safety.
    pub fn insert_area(&mut self, range: AddrRange, value: T) -> Result<(), IovaError> {
        match self.occupancy.insert(range, Slot::Area(value)) {
            Ok(()) => {
                self.area_count += 1;
                Ok(())
            }
            Err(_) => Err(self.fixed_conflict(range)),
        }
    }

    /// Removes the area starting exactly at `start`.
    pub fn remove_area(&mut self, start: u64) -> Option<(AddrRange, T)> {
        match self
            .occupancy
            .remove_if(start, |slot| matches!(slot, Slot::Area(_)))?
        {
            (range, Slot::Area(value)) => {
                self.area_count -= 1;
                Some((range, value))
            }
            (_, Slot::Reserved) => None,
        }
    }

    /// Removes the lowest area overlapping `window` if it lies entirely inside it, as an
    /// unmap walks its range: `Ok(None)` if no area overlaps, `Err` with the area's range if it
    /// sticks out of the window (nothing changes then). One descent when the lowest range
    /// overlapping the window is that area.
    pub fn take_first_area_within(
        &mut self,
        window: AddrRange,
    ) -> Result<Option<(AddrRange, T)>, AddrRange> {
        let taken = self
            .occupancy
            .take_first_overlapping(window, |range, slot| {
                matches!(slot, Slot::Area(_)) && window.contains_range(&range)
            });
        match taken {
            None => Ok(None),
            Some((range, Some(Slot::Area(value)))) => {
                self.area_count -= 1;
                Ok(Some((range, value)))
            }
            // A reserved run comes first, or the area sticks out (`take` never accepts a
            // reserved run, so nothing was removed).
            Some(_) => match self.first_area_overlapping(window) {
                None => Ok(None),
                Some((area, _)) if !window.contains_range(&area) => Err(area),
                Some((area, _)) => Ok(self.remove_area(area.start())),
            },
        }
    }

    /// The area containing `iova`.
    pub fn area_at(&self, iova: u64) -> Option<(AddrRange, &T)> {
        let (range, slot) = self.occupancy.get(iova)?;
        slot.area().map(|value| (range, value))
    }

    /// The area containing `iova`, with mutable access to its value.
    pub fn area_at_mut(&mut self, iova: u64) -> Option<(AddrRange, &mut T)> {
        match self.occupancy.get_mut(iova)? {
            (range, Slot::Area(value)) => Some((range, value)),
            (_, Slot::Reserved) => None,
        }
    }

    /// The lowest area overlapping `range`.
    pub fn first_area_overlapping(&self, range: AddrRange) -> Option<(AddrRange, &T)> {
        self.areas_overlapping(range).next()
    }

    /// The areas overlapping `range`, ascending.
    pub fn areas_overlapping(
        &self,
        range: AddrRange,
    ) -> impl Iterator<Item = (AddrRange, &T)> + '_ {
        self.occupancy
            .overlapping(range)
            .filter_map(|(range, slot)| slot.area().map(|value| (range, value)))
    }

    /// All areas.
    pub fn areas(&self) -> Areas<'_, T> {
        Areas { space: self }
    }

    /// Automatic placement, exactly `iopt_alloc_iova` after its alignment derivation (see
    /// [`auto_alignment`]): lowest first fit over the allowed spans (merged, clipped to
    /// `[page_size, u64::MAX - page_size]`, or that whole window without an allowed list), and
    /// inside each span over the holes of reserved ranges and areas. A span or hole
    /// `[start, last]` yields the candidate `align_up(start, alignment) | page_offset`, which
    /// must lie strictly below `last` with the length reaching no further than `last`. The
    /// span test moves the span's start to its candidate before its holes are walked, as the
    /// kernel does. So IOVA 0 and the first and last page are never returned.
    ///
    /// Errors: [`IovaError::Overflow`] for `length == 0 || length >= u64::MAX / 2`;
    /// [`IovaError::BadParameter`] unless `alignment` and `page_size` (at most 2^62) are powers
    /// of two and `page_offset < page_size`; [`IovaError::NoSpace`] when nothing fits. Nothing
    /// is recorded: insert the area with [`IovaSpace::insert_area`]. (`&mut self` only lets
    /// the search first bring up to date the gap summaries that updates leave stale.)
    pub fn alloc(
        &mut self,
        length: u64,
        alignment: u64,
        page_offset: u64,
        page_size: u64,
    ) -> Result<u64, IovaError> {
        placement::check_length(length)?;
        placement::check_pow2("alignment", alignment)?;
        placement::check_pow2("page_size", page_size)?;
        if page_size > 1 << 62 {
            return Err(IovaError::BadParameter {
                name: "page_size",
                value: page_size,
            });
        }
        if page_offset >= page_size {
            return Err(IovaError::BadParameter {
                name: "page_offset",
                value: page_offset,
            });
        }
        let request = Request {
            length,
            alignment,
            page_offset,
        };
        self.occupancy.refresh_gaps();
        let window = AddrRange::new_unchecked(page_size, u64::MAX - page_size);
        let found = if self.allowed_runs.len() == 0 {
            self.first_fit_in_span(&request, window)
        } else {
            self.allowed_runs
                .overlapping(window)
                .filter_map(|run| run.intersection(&window))
                .find_map(|span| self.first_fit_in_span(&request, span))
        };
        found.ok_or(IovaError::NoSpace {
            length,
            alignment,
            page_offset,
        })
    }

    fn first_fit_in_span(&self, request: &Request, span: AddrRange) -> Option<u64> {
        let start = request.fit(span.start(), span.last())?;
        let span = AddrRange::new_unchecked(start, span.last());
        self.occupancy
            .first_fit(span, request.min_hole(), |start, last| {
                request.fit(start, last)
            })
    }
}

#[cfg(test)]
mod tests;
