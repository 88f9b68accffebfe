//! Word-wise bit operations for dirty bitmaps.
//!
//! A domain keeps one dirty bit per IOPTE granule, per mapping, in `u64` words; harvesting
//! ORs those bits into the caller's bitmap (`iova_bitmap_set` only ever sets bits) and clears
//! them unless `NO_CLEAR`. When the caller's page size equals the granule, a harvest is a
//! shifted word copy: 64 pages per step, close to `memcpy` speed.

/// Bits `[bit, bit + 64)` of `src`, bits past its end reading as 0.
fn load64(src: &[u64], bit: u64) -> u64 {
    let w = (bit / 64) as usize;
    let s = bit % 64;
    let lo = src.get(w).copied().unwrap_or(0);
    if s == 0 {
        lo
    } else {
        let hi = src.get(w + 1).copied().unwrap_or(0);
        (lo >> s) | (hi << (64 - s))
    }
}

/// A mask of `n` (at most 64) low bits.
fn low_mask(n: u64) -> u64 {
    if n >= 64 { u64::MAX } else { (1u64 << n) - 1 }
}

/// `dst[dst_bit .. dst_bit + n] |= src[src_bit .. src_bit + n]`. Both ranges must lie inside
/// their slices.
pub(crate) fn or_bits(dst: &mut [u64], dst_bit: u64, src: &[u64], src_bit: u64, n: u64) {
    debug_assert!(dst_bit + n <= dst.len() as u64 * 64);
    debug_assert!(src_bit + n <= src.len() as u64 * 64);
    if n == 0 {
        return;
    }
    if dst_bit % 64 == 0 && src_bit % 64 == 0 {
        let (dw, sw) = ((dst_bit / 64) as usize, (src_bit / 64) as usize);
        let full = (n / 64) as usize;
        for (d, s) in dst[dw..dw + full].iter_mut().zip(&src[sw..sw + full]) {
            *d |= *s;
        }
        let rest = n % 64;
        if rest != 0 {
            dst[dw + full] |= src[sw + full] & low_mask(rest);
        }
        return;
    }
    let mut done = 0u64;
    while done < n {
        let d = dst_bit + done;
        let in_word = d % 64;
        let take = (64 - in_word).min(n - done);
        let bits = load64(src, src_bit + done) & low_mask(take);
        dst[(d / 64) as usize] |= bits << in_word;
        done += take;
    }
}

/// Clears bits `[bit, bit + n)` of `words`.
pub(crate) fn clear_bits(words: &mut [u64], bit: u64, n: u64) {
    if n == 0 {
        return;
    }
    let end = bit + n;
    let (first_w, last_w) = ((bit / 64) as usize, ((end - 1) / 64) as usize);
    if first_w == last_w {
        words[first_w] &= !(low_mask(n) << (bit % 64));
        return;
    }
    words[first_w] &= low_mask(bit % 64);
    words[first_w + 1..last_w].fill(0);
    let tail = end % 64;
    words[last_w] &= if tail == 0 { 0 } else { !low_mask(tail) };
}

/// Sets bits `[bit, bit + n)` of `words`.
pub(crate) fn set_bits(words: &mut [u64], bit: u64, n: u64) {
    let mut done = 0;
    while done < n {
        let b = bit + done;
        let take = (64 - b % 64).min(n - done);
        words[(b / 64) as usize] |= low_mask(take) << (b % 64);
        done += take;
    }
}

/// True if any of bits `[bit, bit + n)` is set.
#[cfg(test)]
pub(crate) fn any_set(words: &[u64], bit: u64, n: u64) -> bool {
    let mut done = 0;
    while done < n {
        let take = (n - done).min(64);
        if load64(words, bit + done) & low_mask(take) != 0 {
            return true;
        }
        done += take;
    }
    false
}

/// Calls `f(i)` for every set bit `i` in `[bit, bit + n)` (relative to `bit`), ascending.
pub(crate) fn for_each_set(words: &[u64], bit: u64, n: u64, mut f: impl FnMut(u64)) {
    let mut done = 0;
    while done < n {
        let take = (n - done).min(64);
        let mut w = load64(words, bit + done) & low_mask(take);
        while w != 0 {
            let i = w.trailing_zeros() as u64;
            f(done + i);
            w &= w - 1;
        }
        done += take;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn naive_get(words: &[u64], bit: u64) -> bool {
        (words[(bit / 64) as usize] >> (bit % 64)) & 1 == 1
    }

    #[test]
    fn or_bits_matches_a_bit_by_bit_copy_at_every_offset() {
        let src: Vec<u64> = (0..5u64)
            .map(|i| 0x9e37_79b9_7f4a_7c15u64.wrapping_mul(i + 1))
            .collect();
        for src_bit in [0u64, 1, 63, 64, 70] {
            for dst_bit in [0u64, 3, 64, 100] {
                for n in [1u64, 63, 64, 65, 150] {
                    if src_bit + n > 320 || dst_bit + n > 320 {
                        continue;
                    }
                    let mut dst = vec![0x0101u64; 5];
                    let mut want = dst.clone();
                    for i in 0..n {
                        if naive_get(&src, src_bit + i) {
                            let b = dst_bit + i;
                            want[(b / 64) as usize] |= 1 << (b % 64);
                        }
                    }
                    or_bits(&mut dst, dst_bit, &src, src_bit, n);
                    assert_eq!(dst, want, "src_bit {src_bit} dst_bit {dst_bit} n {n}");
                }
            }
        }
    }

    #[test]
    fn clear_and_set_touch_only_their_range() {
        let mut w = vec![u64::MAX; 3];
        clear_bits(&mut w, 10, 100);
        for b in 0..192 {
            assert_eq!(naive_get(&w, b), !(10..110).contains(&b), "bit {b}");
        }
        let mut z = vec![0u64; 3];
        set_bits(&mut z, 60, 70);
        assert!(any_set(&z, 100, 92));
        assert!(!any_set(&z, 130, 62));
        let mut seen = Vec::new();
        for_each_set(&z, 125, 10, |i| seen.push(i));
        assert_eq!(seen, vec![0, 1, 2, 3, 4]);
    }
}
