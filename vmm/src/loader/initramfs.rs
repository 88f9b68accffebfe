//! The initramfs: placed as high as the kernel allows (as boot loaders do, so the kernel's own
//! decompression and early allocations below it stay free), page aligned, above the kernel.

use std::fs::File;
use std::io::{Seek, SeekFrom};

use vm_memory::{Bytes, GuestAddress, GuestMemoryMmap};

use super::LoaderError;
use crate::layout::PAGE_SIZE;

/// Where the initramfs goes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct Placement {
    /// Guest physical address of its first byte (page aligned).
    pub addr: u64,
    /// Its size in bytes.
    pub size: u64,
}

/// The highest page-aligned address at which `size` bytes end at or below `limit` and start at
/// or above `kernel_end`.
pub(super) fn place(size: u64, kernel_end: u64, limit: u64) -> Result<u64, LoaderError> {
    if size == 0 {
        return Err(LoaderError::InitramfsEmpty);
    }
    let lowest = kernel_end.next_multiple_of(PAGE_SIZE);
    let does_not_fit = LoaderError::InitramfsDoesNotFit {
        size,
        lowest,
        highest: limit,
    };
    let addr = limit.checked_sub(size).ok_or(does_not_fit)? & !(PAGE_SIZE - 1);
    if addr < lowest {
        return Err(LoaderError::InitramfsDoesNotFit {
            size,
            lowest,
            highest: limit,
        });
    }
    Ok(addr)
}

/// Copies the whole initramfs file to its placement.
pub(super) fn load(
    guest_mem: &GuestMemoryMmap,
    file: &mut File,
    placement: Placement,
) -> Result<(), LoaderError> {
    file.seek(SeekFrom::Start(0))
        .map_err(|source| LoaderError::Read {
            what: "initramfs",
            source,
        })?;
    let size = usize::try_from(placement.size).map_err(|_| LoaderError::InitramfsDoesNotFit {
        size: placement.size,
        lowest: placement.addr,
        highest: placement.addr,
    })?;
    guest_mem
        .read_exact_volatile_from(GuestAddress(placement.addr), file, size)
        .map_err(|source| LoaderError::GuestMemory {
            what: "initramfs",
            addr: placement.addr,
            source,
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn placement_is_the_highest_page_below_the_limit() {
        assert_eq!(
            place(0x1800, 0x20_0000, 0x100_0000).unwrap(),
            0x100_0000 - 0x2000
        );
        // An unaligned limit rounds the start down.
        assert_eq!(place(0x1000, 0x20_0000, 0x100_0800).unwrap(), 0xff_f000);
    }

    #[test]
    fn placement_may_end_exactly_at_the_limit_and_start_exactly_at_the_kernel_end() {
        assert_eq!(place(0x1000, 0x20_0000, 0x20_1000).unwrap(), 0x20_0000);
        let err = place(0x1001, 0x20_0000, 0x20_1000).unwrap_err();
        assert!(matches!(
            err,
            LoaderError::InitramfsDoesNotFit {
                lowest: 0x20_0000,
                ..
            }
        ));
    }

    #[test]
    fn the_kernel_end_is_rounded_up_to_a_page() {
        assert_eq!(place(0x1000, 0x20_0001, 0x20_2000).unwrap(), 0x20_1000);
        let err = place(0x1000, 0x20_0001, 0x20_1800).unwrap_err();
        assert!(matches!(
            err,
            LoaderError::InitramfsDoesNotFit {
                lowest: 0x20_1000,
                ..
            }
        ));
        assert!(matches!(
            place(u64::MAX, 0, 0x1000),
            Err(LoaderError::InitramfsDoesNotFit { .. })
        ));
    }
}
