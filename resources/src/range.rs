//! Inclusive address ranges with checked arithmetic.
//!
//! Ranges carry an inclusive `last` rather than an exclusive end, as the kernel's interval trees
//! do, because an IOVA range may end at `u64::MAX` where `last + 1` does not exist.

use std::fmt;

/// Why an [`AddrRange`] could not be built.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum RangeError {
    /// `start` lies after `last`.
    #[error("address range start {start:#x} is after its last byte {last:#x}")]
    StartAfterLast {
        /// Requested first byte.
        start: u64,
        /// Requested last byte.
        last: u64,
    },
    /// A length of zero describes no range.
    #[error("address range at {start:#x} has length 0")]
    ZeroLength {
        /// Requested first byte.
        start: u64,
    },
    /// `start + len - 1` does not fit in 64 bits.
    #[error("address range at {start:#x} with length {len:#x} overflows the 64-bit space")]
    Overflow {
        /// Requested first byte.
        start: u64,
        /// Requested length in bytes.
        len: u64,
    },
}

/// A non-empty range of addresses `[start, last]`, both ends included.
///
/// Ordering is by `start`, then by `last`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct AddrRange {
    start: u64,
    last: u64,
}

impl AddrRange {
    /// The whole 64-bit space, `[0, u64::MAX]`.
    pub const FULL: AddrRange = AddrRange {
        start: 0,
        last: u64::MAX,
    };

    /// The range `[start, last]`; `start > last` is an error (`start == last` is one byte).
    pub const fn new(start: u64, last: u64) -> Result<Self, RangeError> {
        if start > last {
            return Err(RangeError::StartAfterLast { start, last });
        }
        Ok(AddrRange { start, last })
    }

    /// `[start, last]` for callers that already hold `start <= last` (stored ranges).
    pub(crate) const fn new_unchecked(start: u64, last: u64) -> Self {
        debug_assert!(start <= last);
        AddrRange { start, last }
    }

    /// The `len` bytes from `start`; a zero length or one running past `u64::MAX` is an error.
    /// `from_start_len(u64::MAX, 1)` is the last byte of the space.
    pub const fn from_start_len(start: u64, len: u64) -> Result<Self, RangeError> {
        if len == 0 {
            return Err(RangeError::ZeroLength { start });
        }
        match start.checked_add(len - 1) {
            Some(last) => Ok(AddrRange { start, last }),
            None => Err(RangeError::Overflow { start, len }),
        }
    }

    /// First address of the range.
    pub const fn start(&self) -> u64 {
        self.start
    }

    /// Last address of the range (inclusive).
    pub const fn last(&self) -> u64 {
        self.last
    }

    /// Number of bytes in the range; exact even for `[0, u64::MAX]` (2^64).
    pub const fn size(&self) -> u128 {
        (self.last - self.start) as u128 + 1
    }

    /// The exclusive end `last + 1`, or `None` when the range ends at `u64::MAX`.
    pub const fn end(&self) -> Option<u64> {
        self.last.checked_add(1)
    }

    /// Whether `addr` lies in the range.
    pub const fn contains(&self, addr: u64) -> bool {
        self.start <= addr && addr <= self.last
    }

    /// Whether `other` lies entirely in this range.
    pub const fn contains_range(&self, other: &AddrRange) -> bool {
        self.start <= other.start && other.last <= self.last
    }

    /// Whether the two ranges share at least one address.
    pub const fn overlaps(&self, other: &AddrRange) -> bool {
        self.start <= other.last && other.start <= self.last
    }

    /// The addresses common to both ranges, if any.
    pub fn intersection(&self, other: &AddrRange) -> Option<AddrRange> {
        let start = self.start.max(other.start);
        let last = self.last.min(other.last);
        (start <= last).then_some(AddrRange { start, last })
    }

    /// Whether both the start and the size are multiples of `align` (false for `align == 0`).
    /// This is the test iommufd applies to an IOVA and a length against `iova_alignment`.
    pub fn is_aligned(&self, align: u64) -> bool {
        align != 0 && self.start % align == 0 && self.size() % u128::from(align) == 0
    }
}

impl fmt::Display for AddrRange {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "[{:#x}, {:#x}]", self.start, self.last)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn new_accepts_single_byte_and_rejects_inverted_bounds() {
        let one = AddrRange::new(5, 5).unwrap();
        assert_eq!(one.size(), 1);
        assert_eq!(
            AddrRange::new(6, 5),
            Err(RangeError::StartAfterLast { start: 6, last: 5 })
        );
    }

    #[test]
    fn from_start_len_rejects_zero_length_and_overflow() {
        assert_eq!(
            AddrRange::from_start_len(0x1000, 0),
            Err(RangeError::ZeroLength { start: 0x1000 })
        );
        assert_eq!(
            AddrRange::from_start_len(u64::MAX, 2),
            Err(RangeError::Overflow {
                start: u64::MAX,
                len: 2
            })
        );
        assert_eq!(
            AddrRange::from_start_len(1, u64::MAX).unwrap().last(),
            u64::MAX
        );
        assert_eq!(
            AddrRange::from_start_len(2, u64::MAX),
            Err(RangeError::Overflow {
                start: 2,
                len: u64::MAX
            })
        );
    }

    #[test]
    fn last_byte_of_the_space_is_a_valid_range() {
        let top = AddrRange::from_start_len(u64::MAX, 1).unwrap();
        assert_eq!((top.start(), top.last()), (u64::MAX, u64::MAX));
        assert_eq!(top.size(), 1);
        assert_eq!(top.end(), None);
        assert!(top.contains(u64::MAX));
    }

    #[test]
    fn full_space_size_is_two_to_the_64() {
        assert_eq!(AddrRange::FULL.size(), 1u128 << 64);
        assert_eq!(AddrRange::new(0, u64::MAX).unwrap(), AddrRange::FULL);
        assert_eq!(
            AddrRange::from_start_len(0, u64::MAX).unwrap().last(),
            u64::MAX - 1
        );
        assert_eq!(AddrRange::FULL.end(), None);
    }

    #[test]
    fn end_is_exclusive_below_the_top() {
        let r = AddrRange::from_start_len(0x1000, 0x1000).unwrap();
        assert_eq!(r.last(), 0x1fff);
        assert_eq!(r.end(), Some(0x2000));
    }

    #[test]
    fn contains_checks_both_ends() {
        let r = AddrRange::new(0x10, 0x1f).unwrap();
        assert!(r.contains(0x10) && r.contains(0x1f));
        assert!(!r.contains(0xf) && !r.contains(0x20));
        assert!(r.contains_range(&AddrRange::new(0x10, 0x1f).unwrap()));
        assert!(!r.contains_range(&AddrRange::new(0x10, 0x20).unwrap()));
    }

    #[test]
    fn overlap_and_intersection_agree_including_single_byte_contact() {
        let a = AddrRange::new(0x10, 0x1f).unwrap();
        let touching = AddrRange::new(0x1f, 0x30).unwrap();
        let adjacent = AddrRange::new(0x20, 0x30).unwrap();
        assert!(a.overlaps(&touching));
        assert_eq!(
            a.intersection(&touching),
            Some(AddrRange::new(0x1f, 0x1f).unwrap())
        );
        assert!(!a.overlaps(&adjacent));
        assert_eq!(a.intersection(&adjacent), None);
        let top = AddrRange::new(u64::MAX - 1, u64::MAX).unwrap();
        assert_eq!(AddrRange::FULL.intersection(&top), Some(top));
    }

    #[test]
    fn is_aligned_checks_start_and_size() {
        let r = AddrRange::from_start_len(0x2000, 0x1000).unwrap();
        assert!(r.is_aligned(0x1000));
        assert!(!r.is_aligned(0x2000));
        assert!(
            !AddrRange::from_start_len(0x2000, 0x800)
                .unwrap()
                .is_aligned(0x1000)
        );
        assert!(!r.is_aligned(0));
        assert!(AddrRange::FULL.is_aligned(1 << 63));
    }

    #[test]
    fn display_is_hex_inclusive() {
        let r = AddrRange::new(0x1000, 0x1fff).unwrap();
        assert_eq!(r.to_string(), "[0x1000, 0x1fff]");
    }

    #[test]
    fn ordering_is_by_start_then_last() {
        let a = AddrRange::new(1, 5).unwrap();
        let b = AddrRange::new(1, 6).unwrap();
        let c = AddrRange::new(2, 3).unwrap();
        assert!(a < b && b < c);
    }
}
