//! The arithmetic of iommufd's automatic IOVA placement (`iopt_alloc_iova`).
//!
//! Kept apart from the trees so the rule can be read, and tested, on its own: how the alignment
//! is derived from the length and the user's address, and whether a candidate fits a span.

use super::IovaError;

/// The largest automatic alignment on a kernel without transparent huge pages (`PAGE_SIZE`).
pub const MAX_ALIGNMENT_NO_THP: u64 = 4096;
/// The largest automatic alignment on a kernel with transparent huge pages (`HPAGE_SIZE`, x86-64).
pub const MAX_ALIGNMENT_THP: u64 = 2 << 20;

/// Where an automatically placed IOVA must land, from [`auto_alignment`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AutoAlignment {
    /// Power-of-two alignment of the IOVA before the page offset is OR-ed in.
    pub alignment: u64,
    /// Sub-page offset of the hint, OR-ed into every candidate.
    pub page_offset: u64,
}

/// The alignment `iopt_alloc_iova` derives for a mapping of `length` bytes whose backing starts
/// at `hint` (the user VA for MAP, the file offset for MAP_FILE; 0 for none): the length rounded
/// up to a power of two, lowered to the lowest set bit of a non-zero hint, capped at
/// `max_alignment` ([`MAX_ALIGNMENT_NO_THP`] or [`MAX_ALIGNMENT_THP`]); and the hint's offset
/// inside a `page_size` page.
///
/// Errors: `length == 0 || length >= u64::MAX / 2` -> [`IovaError::Overflow`] (the kernel's guard
/// for `roundup_pow_of_two`); `page_size` or `max_alignment` not a power of two ->
/// [`IovaError::BadParameter`]. The caller still compares the result with the IOAS's
/// `iova_alignment` (`EINVAL` when smaller).
pub fn auto_alignment(
    length: u64,
    hint: u64,
    page_size: u64,
    max_alignment: u64,
) -> Result<AutoAlignment, IovaError> {
    check_length(length)?;
    check_pow2("page_size", page_size)?;
    check_pow2("max_alignment", max_alignment)?;
    // Cannot overflow: length < 2^63 after check_length.
    let mut alignment = length.next_power_of_two();
    if hint != 0 {
        alignment = alignment.min(1 << hint.trailing_zeros());
    }
    if alignment >= max_alignment {
        alignment = max_alignment;
    }
    Ok(AutoAlignment {
        alignment,
        page_offset: hint & (page_size - 1),
    })
}

/// The kernel's length guard for automatic placement.
pub(super) fn check_length(length: u64) -> Result<(), IovaError> {
    if length == 0 || length >= u64::MAX / 2 {
        return Err(IovaError::Overflow { length });
    }
    Ok(())
}

pub(super) fn check_pow2(name: &'static str, value: u64) -> Result<(), IovaError> {
    if !value.is_power_of_two() {
        return Err(IovaError::BadParameter { name, value });
    }
    Ok(())
}

/// A placement request with validated parameters.
#[derive(Debug, Clone, Copy)]
pub(super) struct Request {
    pub(super) length: u64,
    pub(super) alignment: u64,
    pub(super) page_offset: u64,
}

impl Request {
    /// `__alloc_iova_check_range`: the candidate for a span `[start, last]` is `start` aligned
    /// up, with the page offset OR-ed in; it fits when it lies strictly below `last` and the
    /// length reaches no further than `last`. Note the strict test: a one-byte request never
    /// takes the last byte of a span.
    pub(super) fn fit(&self, start: u64, last: u64) -> Option<u64> {
        let mask = self.alignment - 1;
        let candidate = (start.checked_add(mask)? & !mask) | self.page_offset;
        if candidate >= last || last - candidate < self.length - 1 {
            return None;
        }
        Some(candidate)
    }

    /// The fewest addresses a hole must have for [`Request::fit`] to accept it: the candidate
    /// is at least `start`, strictly below `last`, and `length - 1` bytes from `last`, so
    /// `last - start >= max(length - 1, 1)`. Smaller holes need not be offered at all.
    pub(super) fn min_hole(&self) -> u64 {
        self.length.max(2)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn alignment_is_the_length_rounded_up_without_a_hint() {
        let a = auto_alignment(0x3000, 0, 4096, MAX_ALIGNMENT_THP).unwrap();
        assert_eq!(
            a,
            AutoAlignment {
                alignment: 0x4000,
                page_offset: 0
            }
        );
    }

    #[test]
    fn alignment_drops_to_the_lowest_set_bit_of_the_hint() {
        let a = auto_alignment(0x10_0000, 0x7f12_3000, 4096, MAX_ALIGNMENT_THP).unwrap();
        assert_eq!(
            a,
            AutoAlignment {
                alignment: 0x1000,
                page_offset: 0
            }
        );
        let a = auto_alignment(0x10_0000, 0x7f12_3880, 4096, MAX_ALIGNMENT_THP).unwrap();
        assert_eq!(
            a,
            AutoAlignment {
                alignment: 0x80,
                page_offset: 0x880
            }
        );
    }

    #[test]
    fn alignment_is_capped_at_the_maximum() {
        let a = auto_alignment(1 << 40, 0, 4096, MAX_ALIGNMENT_THP).unwrap();
        assert_eq!(a.alignment, MAX_ALIGNMENT_THP);
        let a = auto_alignment(1 << 40, 1 << 30, 4096, MAX_ALIGNMENT_NO_THP).unwrap();
        assert_eq!(a.alignment, MAX_ALIGNMENT_NO_THP);
    }

    #[test]
    fn zero_and_huge_lengths_overflow() {
        for length in [0, u64::MAX / 2, u64::MAX] {
            assert_eq!(
                auto_alignment(length, 0, 4096, MAX_ALIGNMENT_THP),
                Err(IovaError::Overflow { length })
            );
        }
        let largest = auto_alignment(u64::MAX / 2 - 1, 0, 4096, MAX_ALIGNMENT_THP).unwrap();
        assert_eq!(largest.alignment, MAX_ALIGNMENT_THP);
    }

    #[test]
    fn non_power_of_two_parameters_are_rejected() {
        assert_eq!(
            auto_alignment(1, 0, 3000, MAX_ALIGNMENT_THP),
            Err(IovaError::BadParameter {
                name: "page_size",
                value: 3000
            })
        );
        assert_eq!(
            auto_alignment(1, 0, 4096, 0),
            Err(IovaError::BadParameter {
                name: "max_alignment",
                value: 0
            })
        );
    }

    #[test]
    fn fit_rejects_a_candidate_on_the_last_byte() {
        let one = Request {
            length: 1,
            alignment: 1,
            page_offset: 0,
        };
        assert_eq!(one.fit(0x10, 0x10), None);
        assert_eq!(one.fit(0x10, 0x11), Some(0x10));
        let two = Request {
            length: 2,
            alignment: 1,
            page_offset: 0,
        };
        assert_eq!(two.fit(0x10, 0x11), Some(0x10));
        assert_eq!(two.fit(0x10, 0x10), None);
    }

    #[test]
    fn fit_aligns_up_then_ors_in_the_page_offset() {
        let req = Request {
            length: 0x100,
            alignment: 0x100,
            page_offset: 0x800,
        };
        assert_eq!(req.fit(0x1001, 0x2fff), Some(0x1900));
        assert_eq!(req.fit(0x1001, 0x19fe), None);
        assert_eq!(req.fit(0x1001, 0x19ff), Some(0x1900));
    }

    #[test]
    fn fit_refuses_every_hole_smaller_than_min_hole() {
        for length in 1..=9 {
            for alignment in [1, 2, 4, 8] {
                for page_offset in 0..alignment.min(4) {
                    let req = Request {
                        length,
                        alignment,
                        page_offset,
                    };
                    for start in 0x100..0x110 {
                        let fits = |size: u64| req.fit(start, start + size - 1).is_some();
                        for size in 1..req.min_hole() {
                            assert!(!fits(size), "{req:?} fits {size} bytes at {start:#x}");
                        }
                        // The bound is tight for some start: an aligned one with no offset.
                        if page_offset == 0 && start % alignment == 0 {
                            assert!(fits(req.min_hole()), "{req:?} at {start:#x}");
                        }
                    }
                }
            }
        }
    }

    #[test]
    fn fit_fails_when_aligning_up_overflows() {
        let req = Request {
            length: 1,
            alignment: 0x1000,
            page_offset: 0,
        };
        assert_eq!(req.fit(u64::MAX - 10, u64::MAX), None);
    }
}
