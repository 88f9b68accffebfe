//! Guest address windows (32-bit MMIO, 64-bit MMIO, port I/O) handed out to BARs and devices.
//!
//! Not a wrapper of `vm_allocator::AddressAllocator` (0.1.4), which falls short on fixed
//! placement and release (both checked against that version): `AllocPolicy::ExactMatch` does
//! not check that the node holding the address is free, so a fixed allocation inside an
//! existing one succeeds and turns the rest of that allocation free; and `free` of a range
//! starting at 1 or ending at `u64::MAX - 1` fails with `Underflow`/`Overflow` after it has
//! removed the node, losing the range for good. A first fit over [`RangeMap`] holes is short
//! and shares the tested code of the IOVA space.

use std::fmt;

use crate::range::AddrRange;
use crate::range_map::RangeMap;

/// Which guest window an allocator manages (named in errors).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum WindowKind {
    /// The 32-bit MMIO window for BARs below 4 GiB.
    Mmio32,
    /// The 64-bit MMIO window for 64-bit BARs.
    Mmio64,
    /// The port I/O window for I/O BARs.
    Pio,
}

impl fmt::Display for WindowKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            WindowKind::Mmio32 => "32-bit MMIO window",
            WindowKind::Mmio64 => "64-bit MMIO window",
            WindowKind::Pio => "port I/O window",
        })
    }
}

/// Why an address window operation failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum AddressWindowError {
    /// The window itself is empty or runs past the 64-bit space.
    #[error("{kind} at {base:#x} with size {size:#x} is empty or overflows")]
    InvalidWindow {
        /// The window.
        kind: WindowKind,
        /// Requested base.
        base: u64,
        /// Requested size.
        size: u64,
    },
    /// A request of zero bytes, or one running past the 64-bit space.
    #[error("{kind}: request of {size:#x} bytes at {addr:#x} is empty or overflows")]
    BadRequest {
        /// The window.
        kind: WindowKind,
        /// Requested address (0 for a floating request).
        addr: u64,
        /// Requested size.
        size: u64,
    },
    /// The alignment is not a power of two.
    #[error("{kind}: alignment {align:#x} is not a power of two")]
    BadAlignment {
        /// The window.
        kind: WindowKind,
        /// Requested alignment.
        align: u64,
    },
    /// No free part of the window fits the request.
    #[error("{kind} {window}: no free {size:#x} bytes at alignment {align:#x}")]
    Exhausted {
        /// The window.
        kind: WindowKind,
        /// Its bounds.
        window: AddrRange,
        /// Requested size.
        size: u64,
        /// Requested alignment.
        align: u64,
    },
    /// A fixed request reaches outside the window.
    #[error("{kind} {window}: {range} is outside the window")]
    OutsideWindow {
        /// The window.
        kind: WindowKind,
        /// Its bounds.
        window: AddrRange,
        /// The request.
        range: AddrRange,
    },
    /// A fixed request overlaps an allocation.
    #[error("{kind}: {range} overlaps allocation {existing}")]
    Overlap {
        /// The window.
        kind: WindowKind,
        /// The request.
        range: AddrRange,
        /// The lowest allocation it overlaps.
        existing: AddrRange,
    },
    /// No allocation starts at the address being freed.
    #[error("{kind}: no allocation starts at {addr:#x}")]
    NotAllocated {
        /// The window.
        kind: WindowKind,
        /// The address.
        addr: u64,
    },
}

/// Allocations inside one guest address window.
#[derive(Debug, Clone)]
pub struct AddressWindow {
    kind: WindowKind,
    window: AddrRange,
    allocations: RangeMap<()>,
}

impl AddressWindow {
    /// A window of `size` bytes from `base`, all free.
    pub fn new(kind: WindowKind, base: u64, size: u64) -> Result<Self, AddressWindowError> {
        let window = AddrRange::from_start_len(base, size)
            .map_err(|_| AddressWindowError::InvalidWindow { kind, base, size })?;
        Ok(AddressWindow {
            kind,
            window,
            allocations: RangeMap::new(),
        })
    }

    /// Which window this is.
    pub fn kind(&self) -> WindowKind {
        self.kind
    }

    /// The window's bounds.
    pub fn window(&self) -> AddrRange {
        self.window
    }

    /// The lowest free `size` bytes aligned to `align` (a power of two; a BAR passes its own
    /// size for natural alignment).
    pub fn alloc(&mut self, size: u64, align: u64) -> Result<AddrRange, AddressWindowError> {
        let kind = self.kind;
        if size == 0 {
            return Err(AddressWindowError::BadRequest {
                kind,
                addr: 0,
                size,
            });
        }
        if !align.is_power_of_two() {
            return Err(AddressWindowError::BadAlignment { kind, align });
        }
        let mask = align - 1;
        let found = self.allocations.holes(self.window).find_map(|hole| {
            let start = hole.start().checked_add(mask)? & !mask;
            (start <= hole.last() && hole.last() - start >= size - 1)
                .then(|| AddrRange::new_unchecked(start, start + (size - 1)))
        });
        let range = found.ok_or(AddressWindowError::Exhausted {
            kind,
            window: self.window,
            size,
            align,
        })?;
        // Cannot overlap: the range lies in a hole.
        let _ = self.allocations.insert(range, ());
        Ok(range)
    }

    /// Claims exactly `size` bytes at `addr`, which must lie in the window and be free.
    pub fn alloc_at(&mut self, addr: u64, size: u64) -> Result<AddrRange, AddressWindowError> {
        let kind = self.kind;
        let range = AddrRange::from_start_len(addr, size)
            .map_err(|_| AddressWindowError::BadRequest { kind, addr, size })?;
        if !self.window.contains_range(&range) {
            return Err(AddressWindowError::OutsideWindow {
                kind,
                window: self.window,
                range,
            });
        }
        if let Some((existing, ())) = self.allocations.first_overlapping(range) {
            return Err(AddressWindowError::Overlap {
                kind,
                range,
                existing,
            });
        }
        let _ = self.allocations.insert(range, ());
        Ok(range)
    }

    /// Frees the allocation starting at `addr`, returning it.
    pub fn free(&mut self, addr: u64) -> Result<AddrRange, AddressWindowError> {
        self.allocations
            .remove(addr)
            .map(|(range, ())| range)
            .ok_or(AddressWindowError::NotAllocated {
                kind: self.kind,
                addr,
            })
    }

    /// The allocation containing `addr`.
    pub fn allocation_at(&self, addr: u64) -> Option<AddrRange> {
        self.allocations.get(addr).map(|(range, ())| range)
    }

    /// Every allocation, ascending.
    pub fn allocations(&self) -> impl Iterator<Item = AddrRange> + '_ {
        self.allocations.iter().map(|(range, ())| range)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn r(start: u64, last: u64) -> AddrRange {
        AddrRange::new(start, last).unwrap()
    }

    #[test]
    fn bars_are_naturally_aligned_lowest_first() {
        let mut w = AddressWindow::new(WindowKind::Mmio32, 0xc000_0000, 0x2000_0000).unwrap();
        assert_eq!(w.alloc(0x1000, 0x1000), Ok(r(0xc000_0000, 0xc000_0fff)));
        assert_eq!(
            w.alloc(0x10_0000, 0x10_0000),
            Ok(r(0xc010_0000, 0xc01f_ffff))
        );
        assert_eq!(w.alloc(0x4000, 0x4000), Ok(r(0xc000_4000, 0xc000_7fff)));
        w.free(0xc000_0000).unwrap();
        assert_eq!(w.alloc(0x1000, 0x1000), Ok(r(0xc000_0000, 0xc000_0fff)));
    }

    #[test]
    fn exhaustion_names_the_window_and_request() {
        let mut w = AddressWindow::new(WindowKind::Pio, 0xc000, 0x4000).unwrap();
        w.alloc(0x2000, 0x2000).unwrap();
        assert_eq!(
            w.alloc(0x4000, 4),
            Err(AddressWindowError::Exhausted {
                kind: WindowKind::Pio,
                window: r(0xc000, 0xffff),
                size: 0x4000,
                align: 4,
            })
        );
        let msg = w.alloc(0x4000, 4).unwrap_err().to_string();
        assert!(
            msg.contains("port I/O window") && msg.contains("0x4000"),
            "{msg}"
        );
    }

    #[test]
    fn fixed_allocation_inside_an_existing_one_is_refused() {
        let mut w = AddressWindow::new(WindowKind::Mmio32, 0x1000, 0x10000).unwrap();
        w.alloc_at(0x4000, 0x2000).unwrap();
        assert_eq!(
            w.alloc_at(0x4000, 0x1000),
            Err(AddressWindowError::Overlap {
                kind: WindowKind::Mmio32,
                range: r(0x4000, 0x4fff),
                existing: r(0x4000, 0x5fff),
            })
        );
        assert_eq!(w.allocation_at(0x5fff), Some(r(0x4000, 0x5fff)));
        assert_eq!(w.alloc(0x1000, 0x1000), Ok(r(0x1000, 0x1fff)));
    }

    #[test]
    fn fixed_allocation_must_lie_inside_the_window() {
        let mut w = AddressWindow::new(WindowKind::Mmio32, 0x1000, 0x1000).unwrap();
        assert!(matches!(
            w.alloc_at(0x1800, 0x1000),
            Err(AddressWindowError::OutsideWindow { .. })
        ));
        assert!(matches!(
            w.alloc_at(u64::MAX, 2),
            Err(AddressWindowError::BadRequest { .. })
        ));
        assert!(matches!(
            w.alloc_at(0x1000, 0),
            Err(AddressWindowError::BadRequest { .. })
        ));
    }

    #[test]
    fn ranges_at_the_edges_of_the_space_free_cleanly() {
        let mut w = AddressWindow::new(WindowKind::Mmio64, 0, u64::MAX).unwrap();
        w.alloc_at(1, 0x10).unwrap();
        w.alloc_at(u64::MAX - 0x10, 0x10).unwrap();
        assert_eq!(w.free(1), Ok(r(1, 0x10)));
        assert_eq!(
            w.free(u64::MAX - 0x10),
            Ok(r(u64::MAX - 0x10, u64::MAX - 1))
        );
        assert_eq!(w.alloc(u64::MAX, 1), Ok(r(0, u64::MAX - 1)));
    }

    #[test]
    fn one_byte_gaps_merge_back_when_neighbours_are_freed() {
        let mut w = AddressWindow::new(WindowKind::Pio, 0, 0x100).unwrap();
        w.alloc_at(0x10, 0x10).unwrap();
        w.alloc_at(0x21, 0x0f).unwrap();
        w.free(0x10).unwrap();
        w.free(0x21).unwrap();
        assert_eq!(w.alloc(0x100, 1), Ok(r(0, 0xff)));
    }

    #[test]
    fn freeing_an_unknown_address_is_an_error() {
        let mut w = AddressWindow::new(WindowKind::Mmio64, 0x10_0000_0000, 0x10_0000_0000).unwrap();
        let bar = w.alloc(0x1000, 0x1000).unwrap();
        assert_eq!(
            w.free(bar.start() + 1),
            Err(AddressWindowError::NotAllocated {
                kind: WindowKind::Mmio64,
                addr: bar.start() + 1,
            })
        );
        assert_eq!(w.free(bar.start()), Ok(bar));
        assert!(matches!(
            w.free(bar.start()),
            Err(AddressWindowError::NotAllocated { .. })
        ));
        assert_eq!(w.allocations().count(), 0);
    }

    #[test]
    fn invalid_windows_and_requests_are_rejected() {
        assert_eq!(
            AddressWindow::new(WindowKind::Pio, 0, 0).unwrap_err(),
            AddressWindowError::InvalidWindow {
                kind: WindowKind::Pio,
                base: 0,
                size: 0
            }
        );
        assert!(matches!(
            AddressWindow::new(WindowKind::Mmio64, u64::MAX, 2),
            Err(AddressWindowError::InvalidWindow { .. })
        ));
        let mut w = AddressWindow::new(WindowKind::Pio, 0, 0x100).unwrap();
        assert!(matches!(
            w.alloc(0, 1),
            Err(AddressWindowError::BadRequest { .. })
        ));
        assert!(matches!(
            w.alloc(4, 3),
            Err(AddressWindowError::BadAlignment { align: 3, .. })
        ));
    }
}
