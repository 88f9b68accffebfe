//! `VFIO_IOMMU_DIRTY_PAGES`: flag rules, START/STOP, `GET_BITMAP`'s checks, and what an
//! IOMMU-backed container reports (every mapped page, every time, plus what the driver's
//! per-mapping bitmaps keep from earlier queries).

use vfio_passthrough::errno::Errno;
use vfio_passthrough::host::type1::*;

use super::{B, P};
use crate::conformance::Fail;
use crate::conformance::type1::Type1Env;

const START: u32 = VFIO_IOMMU_DIRTY_PAGES_FLAG_START;
const STOP: u32 = VFIO_IOMMU_DIRTY_PAGES_FLAG_STOP;
const GET: u32 = VFIO_IOMMU_DIRTY_PAGES_FLAG_GET_BITMAP;

pub(super) fn dirty_pages_needs_argsz_8_and_exactly_one_flag(e: &mut Type1Env) -> Result<(), Fail> {
    e.setup()?;
    let short = Type1DirtyPages {
        argsz: 7,
        flags: START,
        iova: 0,
        size: 0,
        pgsize: 0,
    };
    e.err(
        "argsz 7",
        e.container.dirty_pages(&short, &mut []),
        Errno::EINVAL,
    )?;
    for flags in [
        0,
        1 << 3,
        START | STOP,
        START | GET,
        STOP | GET,
        START | 1 << 31,
    ] {
        e.err(&format!("flags {flags:#x}"), e.dirty(flags), Errno::EINVAL)?;
    }
    // Tracking was never started by any of them.
    e.err(
        "GET_BITMAP after the refused calls",
        e.get_bitmap(B, P, P, 1, 0),
        Errno::EINVAL,
    )
}

pub(super) fn start_and_stop_are_idempotent(e: &mut Type1Env) -> Result<(), Fail> {
    e.setup()?;
    e.ok("STOP before START", e.dirty(STOP))?;
    e.ok("START", e.dirty(START))?;
    e.ok("START again", e.dirty(START))?;
    e.ok("GET_BITMAP while started", e.get_bitmap(B, P, P, 1, 0))?;
    e.ok("STOP", e.dirty(STOP))?;
    e.ok("STOP again", e.dirty(STOP))?;
    e.err(
        "GET_BITMAP once stopped",
        e.get_bitmap(B, P, P, 1, 0),
        Errno::EINVAL,
    )
}

pub(super) fn get_bitmap_needs_tracking_started(e: &mut Type1Env) -> Result<(), Fail> {
    e.setup()?;
    let buf = e.buffer(1);
    e.ok("map", e.map(buf.addr, B, P))?;
    e.err(
        "GET_BITMAP before START",
        e.get_bitmap(B, P, P, 1, 0),
        Errno::EINVAL,
    )?;
    e.ok("START", e.dirty(START))?;
    e.eq("GET_BITMAP", e.get_bitmap(B, P, P, 1, 0), Ok(vec![1]))?;
    e.ok("STOP", e.dirty(STOP))?;
    e.err(
        "GET_BITMAP after STOP",
        e.get_bitmap(B, P, P, 1, 0),
        Errno::EINVAL,
    )?;
    e.expect_exactly(1, P)
}

pub(super) fn get_bitmap_checks_its_arguments(e: &mut Type1Env) -> Result<(), Fail> {
    e.setup()?;
    let buf = e.buffer(2);
    e.ok("map", e.map(buf.addr, B, 2 * P))?;
    e.ok("START", e.dirty(START))?;
    let short = Type1DirtyPages {
        argsz: DIRTY_PAGES_GET_ARGSZ - 1,
        flags: GET,
        iova: B,
        size: 2 * P,
        pgsize: P,
    };
    e.err(
        "argsz short of the range",
        e.container.dirty_pages(&short, &mut [0u64; 1]),
        Errno::EINVAL,
    )?;
    let top = u64::MAX - (P - 1);
    let bad = [
        ("a wrapping range", top, 2 * P, P, 1),
        ("pgsize 8 KiB", B, 2 * P, 2 * P, 1),
        ("pgsize 2 KiB", B, 2 * P, P / 2, 1),
        ("pgsize 0", B, 2 * P, 0, 1),
        ("an unaligned IOVA", B + 0x800, 2 * P, P, 1),
        ("size 0", B, 0, P, 1),
        ("an unaligned size", B, P + 0x800, P, 1),
        ("an empty bitmap", B, 2 * P, P, 0),
        ("a bitmap too small for 65 pages", B, 65 * P, P, 1),
        ("a bitmap over 256 MiB", B, 2 * P, P, (256 << 20) / 8 + 1),
    ];
    for (what, iova, size, pgsize, words) in bad {
        e.err(
            what,
            e.get_bitmap(iova, size, pgsize, words, 0),
            Errno::EINVAL,
        )?;
    }
    e.eq(
        "a good query after them",
        e.get_bitmap(B, 2 * P, P, 1, 0),
        Ok(vec![0b11]),
    )?;
    e.expect_exactly(1, 2 * P)
}

pub(super) fn get_bitmap_must_not_bisect_a_mapping(e: &mut Type1Env) -> Result<(), Fail> {
    e.setup()?;
    let buf = e.buffer(4);
    e.ok("map", e.map(buf.addr, B + 4 * P, 4 * P))?;
    e.ok("START", e.dirty(START))?;
    for (what, iova, size) in [
        ("inside", B + 5 * P, P),
        ("its first half", B + 4 * P, 2 * P),
        ("from before to inside", B, 6 * P),
        ("from inside to after", B + 6 * P, 8 * P),
    ] {
        e.err(what, e.get_bitmap(iova, size, P, 1, 0), Errno::EINVAL)?;
    }
    e.eq(
        "covering it exactly",
        e.get_bitmap(B + 4 * P, 4 * P, P, 1, 0),
        Ok(vec![0b1111]),
    )?;
    e.expect_exactly(1, 4 * P)
}

/// Every mapped page reads dirty on every query, but a mapping not starting on a word of the
/// caller's bitmap also brings back bits of pages that are not mapped.
///
/// Why (`vfio_iommu_type1.c`, `update_user_bitmap`): each mapping keeps its own bitmap while
/// tracking. A query sets the mapping's pages in it, shifts it left in place by the mapping's
/// bit offset modulo 64, ORs the caller's whole word there into it, copies it out, and then
/// clears only the mapping's own low bits. What was shifted up and what came from the caller's
/// word stays in the mapping's bitmap, and the next query shifts it up again and copies it out.
/// Here C (2 pages at bit 8) keeps 0x30C after the first query: its pages at bits 8-9, A's bits
/// 2-3 from the caller's word. The second query sets 0x30F, shifts it to 0x30F00 and ORs in
/// A's 0xF: pages 2-3 of C's first word, 10-11 and 16-17 read dirty though nothing is mapped
/// at 10-11 or 16-17. A mapping starting on a word (A) keeps nothing. Restarting tracking
/// gives every mapping a new, zeroed bitmap.
pub(super) fn every_mapped_page_reads_dirty_and_stale_bits_come_back_shifted(
    e: &mut Type1Env,
) -> Result<(), Fail> {
    e.setup()?;
    let buf = e.buffer(8);
    e.ok("map A", e.map(buf.addr, B, 4 * P))?;
    e.ok("map C", e.map(buf.page(4), B + 8 * P, 2 * P))?;
    e.ok("START", e.dirty(START))?;
    e.eq(
        "first query",
        e.get_bitmap(B, 16 * P, P, 1, 0),
        Ok(vec![0x30F]),
    )?;
    e.eq(
        "second query",
        e.get_bitmap(B, 16 * P, P, 1, 0),
        Ok(vec![0x3_0F0F]),
    )?;
    // D's bitmap is new and zeroed; C's (0x30F0C) is shifted once more to 0x30F0F0F, and D
    // (bit 12) takes that whole word in.
    e.ok("map D while tracking", e.map(buf.page(6), B + 12 * P, P))?;
    e.eq(
        "with D",
        e.get_bitmap(B, 16 * P, P, 1, 0),
        Ok(vec![0x30F_1F0F]),
    )?;
    // From C on, C starts on the word: its kept bits (0x30F0F0C) come out unshifted; D, now at
    // bit 4, shifts its kept 0x30F1F0E by 4 and ORs C's word in.
    e.eq(
        "from C on",
        e.get_bitmap(B + 8 * P, 8 * P, P, 1, 0),
        Ok(vec![0x33FF_FFFF]),
    )?;
    e.ok("STOP", e.dirty(STOP))?;
    e.ok("START again", e.dirty(START))?;
    e.eq(
        "first query after restarting",
        e.get_bitmap(B, 16 * P, P, 1, 0),
        Ok(vec![0x130F]),
    )?;
    e.expect_exactly(3, 7 * P)
}

/// A mapping across a word boundary: the driver's in-place shift carries the high bits of each
/// word of the mapping's bitmap into the next, so what the first query left (bits 60-67) comes
/// back on the second 60 bits higher, at bits 120-127 of a range where only 60-67 is mapped.
/// An unmap with `GET_DIRTY_BITMAP` goes through the same copy and reports them too.
pub(super) fn a_mapping_across_a_word_carries_stale_bits_into_the_next_word(
    e: &mut Type1Env,
) -> Result<(), Fail> {
    e.setup()?;
    let buf = e.buffer(8);
    e.ok("map", e.map(buf.addr, B + 60 * P, 8 * P))?;
    e.ok("START", e.dirty(START))?;
    e.eq(
        "first query",
        e.get_bitmap(B, 128 * P, P, 2, 0),
        Ok(vec![0xf << 60, 0xf]),
    )?;
    for round in ["second", "third"] {
        e.eq(
            &format!("{round} query"),
            e.get_bitmap(B, 128 * P, P, 2, 0),
            Ok(vec![0xf << 60, 0xff00_0000_0000_000f]),
        )?;
    }
    e.eq(
        "unmap with a bitmap",
        e.unmap_bitmap(B, 128 * P, P, 2),
        Ok((8 * P, vec![0xf << 60, 0xff00_0000_0000_000f])),
    )?;
    e.expect_exactly(0, 0)
}

pub(super) fn get_bitmap_of_an_unmapped_range_is_empty(e: &mut Type1Env) -> Result<(), Fail> {
    e.setup()?;
    let buf = e.buffer(1);
    e.ok("map", e.map(buf.addr, B, P))?;
    e.ok("START", e.dirty(START))?;
    e.eq(
        "a range with nothing mapped",
        e.get_bitmap(B + 64 * P, 128 * P, P, 2, 0),
        Ok(vec![0, 0]),
    )?;
    e.expect_exactly(1, P)
}

pub(super) fn get_bitmap_overwrites_the_words_a_mapping_covers(
    e: &mut Type1Env,
) -> Result<(), Fail> {
    e.setup()?;
    let buf = e.buffer(4);
    e.ok("map A", e.map(buf.addr, B, 2 * P))?;
    e.ok("map C", e.map(buf.page(2), B + 4 * P, 2 * P))?;
    e.ok("START", e.dirty(START))?;
    // The driver copies each mapping's words out: A (from bit 0) overwrites word 0 with its
    // bits, C (from bit 4) ORs into it. Word 1 holds no mapping and is left alone.
    e.eq(
        "a bitmap filled with ones",
        e.get_bitmap(B, 128 * P, P, 2, u64::MAX),
        Ok(vec![0b11_0011, u64::MAX]),
    )?;
    e.expect_exactly(2, 4 * P)
}

pub(super) fn dirty_pages_on_a_v1_container_is_eacces(e: &mut Type1Env) -> Result<(), Fail> {
    e.setup_type(VFIO_TYPE1_IOMMU)?;
    for flags in [START, STOP, GET, 0, 1 << 3] {
        e.err(&format!("flags {flags:#x}"), e.dirty(flags), Errno::EACCES)?;
    }
    let buf = e.buffer(1);
    e.ok("map", e.map(buf.addr, B, P))?;
    e.expect_exactly(1, P)
}
