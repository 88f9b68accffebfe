//! Dirty bitmaps as the type1 driver keeps, checks and writes them: each mapping's own bitmap
//! while tracking ([`DmaBitmap`], `vfio_dma.bitmap`), `verify_bitmap_size` and
//! `update_user_bitmap`.
//!
//! Every group of an emulated container is IOMMU-backed and cannot report what its devices
//! write (no page-pinning driver), so, as the kernel does for such containers, every page of
//! every mapping reads dirty on every query. How those bits reach the caller is the driver's
//! word arithmetic, reproduced step by step because it is visible: a mapping not starting on a
//! word boundary of the caller's bitmap is shifted left inside its own bitmap, in place, and the
//! caller's whole first word is ORed into it; after the copy out only the mapping's own `nbits`
//! bits are cleared. The shifted-out bits and the caller's word stay in the mapping's bitmap and
//! come back, shifted again, on the next query (`kernel-uapi.md` 2.2).

use crate::errno::Errno;

/// `DIRTY_BITMAP_PAGES_MAX`: the most pages a caller's bitmap, or a mapping's while tracking,
/// may hold (`INT_MAX`, what `bitmap_set` takes).
const DIRTY_BITMAP_PAGES_MAX: u64 = i32::MAX as u64;

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

/// Words needed for `nbits` bits (`BITS_TO_LONGS`).
fn words_for(nbits: u64) -> Result<usize, Errno> {
    usize::try_from(nbits.div_ceil(64)).map_err(|_| Errno::EFAULT)
}

/// One mapping's dirty bitmap while tracking is on (`vfio_dma.bitmap`): bit `i` is the
/// mapping's page `i`, plus, above its pages, whatever earlier queries shifted there.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(super) struct DmaBitmap {
    /// `DIRTY_BITMAP_BYTES(npages) + sizeof(u64)` bytes: the extra word receives the bits a
    /// query shifts out of the last one.
    words: Vec<u64>,
}

impl DmaBitmap {
    /// `vfio_dma_bitmap_alloc` and `vfio_dma_populate_bitmap` for a mapping of `size` bytes at
    /// `pgsize` per bit: zeroed (no page is pinned by a device driver). `EINVAL` over
    /// `INT_MAX` pages, `ENOMEM` if the words cannot be allocated (`kvzalloc`).
    pub(super) fn alloc(size: u64, pgsize: u64) -> Result<Self, Errno> {
        let npages = size.checked_div(pgsize).ok_or(Errno::EINVAL)?;
        if npages > DIRTY_BITMAP_PAGES_MAX {
            return Err(Errno::EINVAL);
        }
        let len = words_for(npages).map_err(|_| Errno::ENOMEM)? + 1;
        let mut words = Vec::new();
        words.try_reserve_exact(len).map_err(|_| Errno::ENOMEM)?;
        words.resize(len, 0);
        Ok(DmaBitmap { words })
    }

    /// The words, lowest first.
    #[cfg(test)]
    fn words(&self) -> &[u64] {
        &self.words
    }

    /// Makes room for `nwords` words. The allocation already has them unless the container's
    /// page size shrank since it was made, which no emulated IOMMU does (every one maps
    /// 4 KiB); the kernel would step past its allocation there, this grows with zeros.
    fn reserve_words(&mut self, nwords: usize) {
        if self.words.len() < nwords {
            self.words.resize(nwords, 0);
        }
    }

    /// `bitmap_set(bitmap, 0, nbits)` (`set`) or `bitmap_clear(bitmap, 0, nbits)`: exactly the
    /// low `nbits` bits.
    fn assign_low(&mut self, nbits: u64, set: bool) -> Result<(), Errno> {
        let full = usize::try_from(nbits / 64).map_err(|_| Errno::EFAULT)?;
        let rem = nbits % 64;
        self.reserve_words(words_for(nbits)?);
        let value = if set { u64::MAX } else { 0 };
        for word in &mut self.words[..full] {
            *word = value;
        }
        if rem != 0 {
            let mask = (1u64 << rem) - 1;
            let word = &mut self.words[full];
            *word = if set { *word | mask } else { *word & !mask };
        }
        Ok(())
    }

    /// Every page dirty (`bitmap_set(bitmap, 0, nbits)`; `vfio_iommu_populate_bitmap_full`
    /// does the same when a group leaves while tracking).
    pub(super) fn set_pages(&mut self, nbits: u64) -> Result<(), Errno> {
        self.assign_low(nbits, true)
    }

    /// `bitmap_clear(bitmap, 0, nbits)` then `vfio_dma_populate_bitmap` (nothing pinned): the
    /// mapping's own bits cleared after a query, the bits above them kept.
    pub(super) fn clear_pages(&mut self, nbits: u64) -> Result<(), Errno> {
        self.assign_low(nbits, false)
    }

    /// `__bitmap_shift_left(bitmap, bitmap, shift, nbits)` in place for `shift` below 64: the
    /// words holding `nbits` bits move up by `shift`, top word first, each taking the high
    /// bits of the one below. The last word is not masked to `nbits`, and what leaves it is
    /// lost (nothing is written past it).
    fn shift_left(&mut self, shift: u32, nbits: u64) -> Result<(), Errno> {
        let lim = words_for(nbits)?;
        self.reserve_words(lim);
        for k in (0..lim).rev() {
            let lower = match k {
                0 => 0,
                // `checked_shr`: a shift of 0 takes nothing from below (`>> 64` would not).
                _ => self.words[k - 1].checked_shr(64 - shift).unwrap_or(0),
            };
            self.words[k] = (self.words[k] << (shift % 64)) | lower;
        }
        Ok(())
    }

    /// `update_user_bitmap` for a mapping `[iova, iova + size)` into a caller's bitmap whose
    /// bit 0 is `base` (every page dirty: the groups are IOMMU-backed). The mapping's bits are
    /// set, shifted left in place by the bit offset modulo 64, ORed with the caller's word
    /// there, and `DIRTY_BITMAP_BYTES(nbits + shift)` bytes copied out over the caller's. The
    /// caller clears the mapping's bits afterwards ([`Self::clear_pages`]) on a query, or
    /// drops the mapping on an unmap. `EFAULT`, with the caller's words untouched, where the
    /// kernel's `copy_from_user`/`copy_to_user` would reach outside `user` (the size checks
    /// make it unreachable for ranges they accepted); the mapping's bitmap keeps what was done
    /// before, as the kernel's does.
    pub(super) fn update_user_bitmap(
        &mut self,
        user: &mut [u64],
        base: u64,
        iova: u64,
        size: u64,
        pgshift: u32,
    ) -> Result<(), Errno> {
        let nbits = size >> pgshift;
        let bit_offset = iova.wrapping_sub(base) >> pgshift;
        let copy_offset = usize::try_from(bit_offset / 64).map_err(|_| Errno::EFAULT)?;
        let shift = bit_offset % 64;
        self.set_pages(nbits)?;
        let total = nbits.checked_add(shift).ok_or(Errno::EFAULT)?;
        if shift != 0 {
            // `shift` is below 64: the cast keeps it whole.
            self.shift_left(shift as u32, total)?;
            let leftover = *user.get(copy_offset).ok_or(Errno::EFAULT)?;
            // bitmap_or over `shift` bits ORs whole words: one, the caller's first.
            self.words[0] |= leftover;
        }
        let nwords = words_for(total)?;
        self.reserve_words(nwords);
        let out = copy_offset
            .checked_add(nwords)
            .and_then(|end| user.get_mut(copy_offset..end))
            .ok_or(Errno::EFAULT)?;
        out.copy_from_slice(&self.words[..nwords]);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const P: u64 = 4096;

    #[test]
    fn bitmap_sizes_are_checked_like_the_driver() {
        assert_eq!(verify_bitmap_size(64 * P, P, 8), Ok(()));
        assert_eq!(verify_bitmap_size(65 * P, P, 8), Err(Errno::EINVAL));
        assert_eq!(verify_bitmap_size(65 * P, P, 16), Ok(()));
        assert_eq!(
            verify_bitmap_size(P - 1, P, 8),
            Err(Errno::EINVAL),
            "no pages"
        );
        assert_eq!(verify_bitmap_size(P, P, 0), Err(Errno::EINVAL));
        assert_eq!(verify_bitmap_size(P, 0, 8), Err(Errno::EINVAL));
        assert_eq!(
            verify_bitmap_size(P, P, DIRTY_BITMAP_SIZE_MAX + 8),
            Err(Errno::EINVAL)
        );
        assert_eq!(verify_bitmap_size(P, P, DIRTY_BITMAP_SIZE_MAX), Ok(()));
        // The wrapping macro: 2^64 - 1 pages round to 0 bytes needed.
        assert_eq!(verify_bitmap_size(u64::MAX, 1, 8), Ok(()));
    }

    #[test]
    fn a_mapping_bitmap_has_its_pages_words_plus_one() {
        assert_eq!(DmaBitmap::alloc(P, P).unwrap().words(), [0, 0]);
        assert_eq!(DmaBitmap::alloc(64 * P, P).unwrap().words(), [0, 0]);
        assert_eq!(DmaBitmap::alloc(65 * P, P).unwrap().words(), [0, 0, 0]);
        assert_eq!(
            DmaBitmap::alloc((DIRTY_BITMAP_PAGES_MAX + 1) * P, P),
            Err(Errno::EINVAL),
            "over INT_MAX pages"
        );
        assert_eq!(DmaBitmap::alloc(P, 0), Err(Errno::EINVAL));
    }

    /// A mapping for [`query`]: its bitmap, first IOVA and size.
    struct Mapping {
        bitmap: DmaBitmap,
        iova: u64,
        size: u64,
    }

    fn mapping(first_page: u64, pages: u64) -> Mapping {
        Mapping {
            bitmap: DmaBitmap::alloc(pages * P, P).unwrap(),
            iova: first_page * P,
            size: pages * P,
        }
    }

    /// `vfio_iova_dirty_bitmap` from IOVA 0 into `user`: each mapping, ascending, copied out
    /// and then its pages cleared.
    fn query(mappings: &mut [Mapping], mut user: Vec<u64>) -> Vec<u64> {
        for m in mappings {
            m.bitmap
                .update_user_bitmap(&mut user, 0, m.iova, m.size, 12)
                .unwrap();
            m.bitmap.clear_pages(m.size / P).unwrap();
        }
        user
    }

    #[test]
    fn a_mapping_inside_a_word_brings_back_its_shifted_bits_and_the_callers_word() {
        // A: 4 pages at bit 0, C: 2 pages at bit 8, as the conformance case maps them. After
        // the first query C keeps 0x30C: its pages shifted to bits 8-9, A's bits 2-3 from the
        // caller's word (bits 0-1 are C's own and cleared).
        let mut m = [mapping(0, 4), mapping(8, 2)];
        assert_eq!(query(&mut m, vec![0]), [0x30F]);
        assert_eq!(m[1].bitmap.words(), [0x30C, 0]);
        // Set 0x30F, shifted by 8: 0x30F00, the caller's 0xF (A's pages) ORed in.
        assert_eq!(query(&mut m, vec![0]), [0x3_0F0F]);
        assert_eq!(query(&mut m, vec![0]), [0x30F_0F0F]);
        assert_eq!(
            m[0].bitmap.words(),
            [0, 0],
            "A starts on a word: nothing stays"
        );
    }

    #[test]
    fn the_callers_whole_first_word_is_ored_in_and_kept() {
        let mut m = [mapping(4, 2)];
        let caller = 0xffff_0000_0000_0001;
        assert_eq!(query(&mut m, vec![caller, 7]), [caller | 0x30, 7]);
        assert_eq!(m[0].bitmap.words(), [0xffff_0000_0000_0030, 0]);
        // Set 0x33 over the kept word, shifted by 4 within one word: the caller's top four
        // bits leave it, the rest comes back four pages up.
        assert_eq!(query(&mut m, vec![0, 0]), [0xfff0_0000_0000_0330, 0]);
    }

    #[test]
    fn a_mapping_starting_on_a_word_overwrites_its_words_and_keeps_nothing() {
        // 70 pages from bit 64: words 1 and 2 are overwritten (bits past page 69 are 0),
        // word 0 and 3 are not touched.
        let mut m = [mapping(64, 70)];
        for _ in 0..3 {
            assert_eq!(
                query(&mut m, vec![5, u64::MAX, u64::MAX, 9]),
                [5, u64::MAX, 0b11_1111, 9]
            );
        }
        assert_eq!(m[0].bitmap.words(), [0, 0, 0]);
    }

    #[test]
    fn a_mapping_crossing_a_word_boundary_carries_into_the_next_word() {
        // 8 pages at bit 60: four in word 0, four in word 1.
        let mut m = [mapping(60, 8)];
        assert_eq!(query(&mut m, vec![0, 0]), [0xf << 60, 0xf]);
        // The first query left bits 60-63 and 64-67 in the mapping's bitmap; shifted by 60
        // again they land on bits 120-127, where nothing is mapped.
        assert_eq!(
            query(&mut m, vec![0, 0]),
            [0xf << 60, 0xff00_0000_0000_000f]
        );
        assert_eq!(
            query(&mut m, vec![0, 0]),
            [0xf << 60, 0xff00_0000_0000_000f]
        );
    }

    #[test]
    fn mappings_in_later_words_shift_by_their_offset_in_the_word() {
        // 3 pages at bit 130 (word 2, shift 2) next to 1 page at bit 128.
        let mut m = [mapping(128, 1), mapping(130, 3)];
        assert_eq!(query(&mut m, vec![0; 3]), [0, 0, 0b1_1101]);
        // C kept its pages shifted to bits 2-4, of which 3-4 outlive the clear of bits 0-2.
        // Set 0b1_1111, shifted by 2, the caller's 0b1 ORed in.
        assert_eq!(query(&mut m, vec![0; 3]), [0, 0, 0b111_1101]);
        assert_eq!(query(&mut m, vec![0; 3]), [0, 0, 0b1_1111_1101]);
    }

    #[test]
    fn words_outside_the_callers_bitmap_are_efault_not_a_panic() {
        let mut m = mapping(0, 65);
        let mut user = [0u64; 1];
        assert_eq!(
            m.bitmap.update_user_bitmap(&mut user, 0, 0, 65 * P, 12),
            Err(Errno::EFAULT),
            "copy_to_user past the end"
        );
        let mut m = mapping(0, 1);
        assert_eq!(
            m.bitmap.update_user_bitmap(&mut user, 0, 65 * P, P, 12),
            Err(Errno::EFAULT),
            "copy_from_user of the caller's word past the end"
        );
        assert_eq!(
            m.bitmap
                .update_user_bitmap(&mut user, 0, u64::MAX - (P - 1), P, 0),
            Err(Errno::EFAULT)
        );
        assert_eq!(user, [0]);
    }
}
