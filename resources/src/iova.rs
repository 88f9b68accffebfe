//! The IOVA space of an iommufd IOAS: areas, reserved ranges and allowed ranges.
//!
//! Mirrors the three interval trees of the kernel's `struct io_pagetable` and the checks of
//! `io_pagetable.c` and `ioas.c` (Linux 6.12): `iopt_check_iova`, `iopt_reserve_iova`,
//! `iopt_set_allow_iova` with `iommufd_ioas_load_iovas`, `iopt_alloc_iova` and the span walk of
//! `iommufd_ioas_iova_ranges`. Each error variant names the errno the kernel returns for it.
//!
//! Besides the three trees the space keeps `occupied`, the union of areas and reserved ranges as
//! maximal runs (areas and reserved ranges never intersect: each is refused where the other
//! is), so automatic placement jumps from hole to hole instead of walking every area.

mod placement;

pub use placement::{AutoAlignment, MAX_ALIGNMENT_NO_THP, MAX_ALIGNMENT_THP, auto_alignment};

use std::fmt;

use placement::Request;

use crate::range::AddrRange;
use crate::range_map::{Overlapping, RangeMap};
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

/// The IOVA bookkeeping of one IOAS; `T` is what each area carries (pages, flags).
#[derive(Debug, Clone)]
pub struct IovaSpace<T> {
    areas: RangeMap<T>,
    reserved: ReservedRanges,
    /// The allowed list as given (ranges may be adjacent).
    allowed: RangeMap<()>,
    /// The allowed list merged into maximal runs: the kernel's span iterator treats adjacent
    /// allowed ranges as one span, so a placement may straddle their boundary.
    allowed_runs: RunSet,
    /// Union of areas and reserved ranges as maximal runs.
    occupied: RunSet,
}

impl<T> Default for IovaSpace<T> {
    fn default() -> Self {
        Self::new()
    }
}

impl<T> IovaSpace<T> {
    /// A fresh IOAS: no areas, nothing reserved, no allowed list.
    pub const fn new() -> Self {
        IovaSpace {
            areas: RangeMap::new(),
            reserved: ReservedRanges::new(),
            allowed: RangeMap::new(),
            allowed_runs: RunSet::new(),
            occupied: RunSet::new(),
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
        if let Some((conflict, _)) = self.areas.first_overlapping(range) {
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
        self.occupied.add(range);
        Ok(())
    }

    /// Drops every reservation of `owner` (device or domain detach); returns how many.
    pub fn unreserve_owner(&mut self, owner: u64) -> usize {
        let before = self.reserved.union().clone();
        let removed = self.reserved.remove_owner(owner);
        if removed > 0 {
            // Whatever the old union covered and the new one does not is now free: areas never
            // lie on reserved addresses, so nothing else occupies it.
            for run in before.iter() {
                for freed in self.reserved.union().holes(run) {
                    self.occupied.remove(freed);
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
        if let Some((reserved, owner)) = self.reserved.first_intersecting(range) {
            return Err(IovaError::Reserved {
                range,
                reserved,
                owner,
            });
        }
        if let Some((area, _)) = self.areas.first_overlapping(range) {
            return Err(IovaError::Exists { range, area });
        }
        Ok(())
    }

    /// Records an area after the checks of [`IovaSpace::check_fixed`]; nothing changes on
    /// error (and `value` is dropped).
    pub fn insert_area(&mut self, range: AddrRange, value: T) -> Result<(), IovaError> {
        self.check_fixed(range)?;
        // Cannot fail: check_fixed found no overlapping area.
        let _ = self.areas.insert(range, value);
        self.occupied.add(range);
        Ok(())
    }

    /// Removes the area starting exactly at `start`.
    pub fn remove_area(&mut self, start: u64) -> Option<(AddrRange, T)> {
        let (range, value) = self.areas.remove(start)?;
        self.occupied.remove(range);
        Some((range, value))
    }

    /// The area containing `iova`.
    pub fn area_at(&self, iova: u64) -> Option<(AddrRange, &T)> {
        self.areas.get(iova)
    }

    /// The area containing `iova`, with mutable access to its value.
    pub fn area_at_mut(&mut self, iova: u64) -> Option<(AddrRange, &mut T)> {
        self.areas.get_mut(iova)
    }

    /// The lowest area overlapping `range`.
    pub fn first_area_overlapping(&self, range: AddrRange) -> Option<(AddrRange, &T)> {
        self.areas.first_overlapping(range)
    }

    /// The areas overlapping `range`, ascending.
    pub fn areas_overlapping(&self, range: AddrRange) -> Overlapping<'_, T> {
        self.areas.overlapping(range)
    }

    /// All areas.
    pub fn areas(&self) -> &RangeMap<T> {
        &self.areas
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
    /// is recorded: insert the area with [`IovaSpace::insert_area`].
    pub fn alloc(
        &self,
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
        self.occupied
            .holes(span)
            .find_map(|hole| request.fit(hole.start(), hole.last()))
    }
}

#[cfg(test)]
mod tests;
