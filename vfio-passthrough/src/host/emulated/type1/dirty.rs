//! Dirty bitmaps as the type1 driver checks and writes them (`verify_bitmap_size`,
//! `update_user_bitmap`).
//!
//! Every group of an emulated container is IOMMU-backed and cannot report what its devices
//! write (no page-pinning driver), so, as the kernel does for such containers, every page of
//! every mapping reads dirty on every query. The driver writes a mapping's bits by copying whole
//! `u64` words: the first word is ORed with what the caller had there (when the mapping does
//! not start on a word boundary), the following ones are overwritten, so bits of unmapped pages
//! sharing a word with the end of a mapping come back 0 whatever the caller put there.

use crate::errno::Errno;

/// `DIRTY_BITMAP_SIZE_MAX`: the largest bitmap, in bytes (`INT_MAX` bits, rounded up to
/// `u64` words: 256 MiB).
pub const DIRTY_BITMAP_SIZE_MAX: u64 = 256 << 20;

/// `DIRTY_BITMAP_BYTES(n)`: bytes of whole `u64` words for `n` bits (wrapping like the macro).
fn bitmap_bytes(nbits: u64) -> u64 {
    (nbits.wrapping_add(63) & !63) / 8
}

/// `__ffs(pgsize)`: `None` for 0, whose `__ffs` is undefined (every caller then fails with
/// `EINVAL` one check or another).
pub(super) fn pgshift(pgsize: u64) -> Option<u32> {
    (pgsize != 0).then(|| pgsize.trailing_zeros())
}

/// `verify_bitmap_size` for a range of `size` bytes at `pgsize` per bit and a bitmap of
/// `bitmap_bytes` bytes: `EINVAL` for no pages, an empty or oversized bitmap, or one too small.
pub(super) fn verify_bitmap_size(size: u64, pgsize: u64, bitmap_size: u64) -> Result<(), Errno> {
    let shift = pgshift(pgsize).ok_or(Errno::EINVAL)?;
    let npages = size >> shift;
    if npages == 0
        || bitmap_size == 0
        || bitmap_size > DIRTY_BITMAP_SIZE_MAX
        || bitmap_size < bitmap_bytes(npages)
    {
        return Err(Errno::EINVAL);
    }
    Ok(())
}

/// `update_user_bitmap` for a mapping `[iova, iova + size)` whose every page is dirty, into a
/// bitmap whose bit 0 is `base`. `EFAULT` if the words fall outside `bitmap` (the kernel's
/// `copy_to_user` failing; the size checks make it unreachable for ranges they accepted).
pub(super) fn report_mapping(
    bitmap: &mut [u64],
    base: u64,
    iova: u64,
    size: u64,
    pgshift: u32,
) -> Result<(), Errno> {
    let nbits = size >> pgshift;
    let bit_offset = iova.wrapping_sub(base) >> pgshift;
    let first_word = usize::try_from(bit_offset / 64).map_err(|_| Errno::EFAULT)?;
    let shift = bit_offset % 64;
    let total = nbits.checked_add(shift).ok_or(Errno::EFAULT)?;
    let nwords = usize::try_from(total.div_ceil(64)).map_err(|_| Errno::EFAULT)?;
    let words = first_word
        .checked_add(nwords)
        .and_then(|end| bitmap.get_mut(first_word..end))
        .ok_or(Errno::EFAULT)?;
    for (w, word) in words.iter_mut().enumerate() {
        let lo = (w as u64) * 64;
        let from = shift.max(lo) - lo;
        let to = total.min(lo + 64) - lo;
        let mut value = mask(from, to);
        if w == 0 && shift != 0 {
            value |= *word;
        }
        *word = value;
    }
    Ok(())
}

/// Bits `[from, to)` of a word (`to` at most 64).
fn mask(from: u64, to: u64) -> u64 {
    if from >= to {
        return 0;
    }
    let high = if to >= 64 { u64::MAX } else { (1u64 << to) - 1 };
    high & !((1u64 << from) - 1)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bitmap_sizes_are_checked_like_the_driver() {
        let p = 4096;
        assert_eq!(verify_bitmap_size(64 * p, p, 8), Ok(()));
        assert_eq!(verify_bitmap_size(65 * p, p, 8), Err(Errno::EINVAL));
        assert_eq!(verify_bitmap_size(65 * p, p, 16), Ok(()));
        assert_eq!(
            verify_bitmap_size(p - 1, p, 8),
            Err(Errno::EINVAL),
            "no pages"
        );
        assert_eq!(verify_bitmap_size(p, p, 0), Err(Errno::EINVAL));
        assert_eq!(verify_bitmap_size(p, 0, 8), Err(Errno::EINVAL));
        assert_eq!(
            verify_bitmap_size(p, p, DIRTY_BITMAP_SIZE_MAX + 8),
            Err(Errno::EINVAL)
        );
        assert_eq!(verify_bitmap_size(p, p, DIRTY_BITMAP_SIZE_MAX), Ok(()));
        // The wrapping macro: 2^64 - 1 pages round to 0 bytes needed.
        assert_eq!(verify_bitmap_size(u64::MAX, 1, 8), Ok(()));
    }

    #[test]
    fn a_mapping_at_a_word_boundary_overwrites_its_words() {
        let mut bm = [u64::MAX, u64::MAX, 0xf0];
        report_mapping(&mut bm, 0, 0, 70 * 4096, 12).unwrap();
        assert_eq!(bm, [u64::MAX, 0b11_1111, 0xf0]);
    }

    #[test]
    fn a_mapping_inside_a_word_keeps_the_bits_before_it() {
        let mut bm = [0b1, u64::MAX];
        report_mapping(&mut bm, 0x10_0000, 0x10_0000 + 3 * 4096, 2 * 4096, 12).unwrap();
        assert_eq!(bm, [0b1_1001, u64::MAX]);
        let mut bm = [0u64; 2];
        report_mapping(&mut bm, 0, 60 * 4096, 8 * 4096, 12).unwrap();
        assert_eq!(bm, [0xf << 60, 0xf]);
    }

    #[test]
    fn words_outside_the_bitmap_are_efault_not_a_panic() {
        let mut bm = [0u64; 1];
        assert_eq!(
            report_mapping(&mut bm, 0, 0, 65 * 4096, 12),
            Err(Errno::EFAULT)
        );
        assert_eq!(
            report_mapping(&mut bm, 0, u64::MAX - 4095, 4096, 0),
            Err(Errno::EFAULT)
        );
        assert_eq!(bm, [0]);
    }
}
