//! Dirty tracking through the mock domain: `SET_DIRTY_TRACKING`, `GET_DIRTY_BITMAP`, and the
//! selftest's `DIRTY` standing in for device writes.

use vfio_passthrough::errno::Errno;
use vfio_passthrough::host::iommufd::uapi::*;
use vfio_passthrough::host::iommufd::{MOCK_APERTURE_START, MOCK_FLAGS_DEVICE_NO_DIRTY};

use crate::conformance::case::Fail;
use crate::conformance::env::Env;

const P: u64 = 4096;
const MP: u64 = 2048;
const BASE: u64 = MOCK_APERTURE_START;
const NO_CLEAR: u32 = IOMMU_HWPT_GET_DIRTY_BITMAP_NO_CLEAR;

/// An IOAS with `pages` pages mapped at `BASE` and a dirty-tracking HWPT on it (tracking
/// enabled): (ioas, hwpt, user address).
fn tracked(e: &mut Env, pages: u64) -> Result<(u32, u32, u64), Fail> {
    let buf = e.buffer(pages);
    let other = e.ioas()?;
    let d = e.mock(other)?;
    let a = e.ioas()?;
    e.ok("map", e.map_fixed(a, buf.addr, pages * P, BASE))?;
    let h = e.ok(
        "DIRTY_TRACKING HWPT",
        e.hwpt(IOMMU_HWPT_ALLOC_DIRTY_TRACKING, d.out_idev_id, a, 0, &[]),
    )?;
    e.ok("enable tracking", e.set_dirty(h, true))?;
    Ok((a, h, buf.addr))
}

/// Marks dirty the mock pages of `[BASE, +len)` whose bit is set in `bits`; returns the count.
fn device_writes(e: &Env, h: u32, len: u64, bits: &[u64]) -> Result<u64, Fail> {
    e.ok(
        "IOMMU_TEST_OP_DIRTY",
        e.ctx.mock_dirty(h, BASE, len, MP, bits),
    )
}

pub(super) fn set_dirty_tracking_checks(e: &mut Env) -> Result<(), Fail> {
    let a = e.ioas()?;
    let d = e.mock(a)?;
    let plain = e.ok("plain HWPT", e.hwpt(0, d.out_idev_id, a, 0, &[]))?;
    let dirty = e.ok(
        "dirty HWPT",
        e.hwpt(IOMMU_HWPT_ALLOC_DIRTY_TRACKING, d.out_idev_id, a, 0, &[]),
    )?;
    let bad_flags = HwptSetDirtyTracking {
        flags: 2,
        hwpt_id: dirty,
        reserved: 0,
    };
    e.err(
        "unknown flag",
        e.ctx.hwpt_set_dirty_tracking(&bad_flags),
        Errno::EOPNOTSUPP,
    )?;
    e.err("not a HWPT", e.set_dirty(a, true), Errno::ENOENT)?;
    e.err(
        "HWPT without dirty tracking",
        e.set_dirty(plain, true),
        Errno::EOPNOTSUPP,
    )?;
    e.err(
        "automatic HWPT",
        e.set_dirty(d.out_hwpt_id, true),
        Errno::EOPNOTSUPP,
    )?;
    e.ok("enable", e.set_dirty(dirty, true))?;
    e.ok("enable again", e.set_dirty(dirty, true))?;
    e.ok("disable", e.set_dirty(dirty, false))?;
    let nd = e.ok(
        "NO_DIRTY device",
        e.mock_flags(a, MOCK_FLAGS_DEVICE_NO_DIRTY),
    )?;
    e.eq(
        "it shares the automatic HWPT",
        nd.out_hwpt_id,
        d.out_hwpt_id,
    )
}

pub(super) fn get_dirty_bitmap_checks(e: &mut Env) -> Result<(), Fail> {
    let (a, h, _) = tracked(e, 4)?;
    let len = 4 * P;
    e.err(
        "unknown flag",
        e.dirty_bitmap(h, BASE, len, P, 2, 0),
        Errno::EOPNOTSUPP,
    )?;
    let mut bits = [0u64; 1];
    let req = HwptGetDirtyBitmap {
        hwpt_id: h,
        flags: 0,
        reserved: 1,
        iova: BASE,
        length: len,
        page_size: P,
    };
    e.err(
        "__reserved",
        e.ctx.hwpt_get_dirty_bitmap(&req, &mut bits),
        Errno::EOPNOTSUPP,
    )?;
    e.err(
        "not a paging HWPT",
        e.dirty_bitmap(a, BASE, len, P, 0, 0),
        Errno::ENOENT,
    )?;
    e.err(
        "range wraps",
        e.dirty_bitmap(h, u64::MAX - P + 1, 2 * P, P, 0, 0),
        Errno::EOVERFLOW,
    )?;
    // 6.12 stable refuses a zero length first (measured on 6.12.117; the first 6.12 releases
    // computed iova + length - 1 and answered EOVERFLOW, or read everything from IOVA 0).
    for iova in [BASE, 0] {
        e.err(
            &format!("length 0 at {iova:#x}"),
            e.dirty_bitmap(h, iova, 0, P, 0, 0),
            Errno::EINVAL,
        )?;
    }
    e.err(
        "iova off the domain alignment",
        e.dirty_bitmap(h, BASE + 1024, len, P, 0, 0),
        Errno::EINVAL,
    )?;
    e.err(
        "length off the domain alignment",
        e.dirty_bitmap(h, BASE, len + 1024, P, 0, 0),
        Errno::EINVAL,
    )?;
    e.err(
        "page size 0",
        e.dirty_bitmap(h, BASE, len, 0, 0, 0),
        Errno::EINVAL,
    )?;
    e.err(
        "iova off the page size",
        e.dirty_bitmap(h, BASE + MP, len, P, 0, 0),
        Errno::EINVAL,
    )?;
    e.err(
        "length off the page size",
        e.dirty_bitmap(h, BASE, len + MP, P, 0, 0),
        Errno::EINVAL,
    )?;
    let d = e.mock(a)?;
    e.err(
        "HWPT without dirty tracking",
        e.dirty_bitmap(d.out_hwpt_id, BASE, len, P, 0, 0),
        Errno::EOPNOTSUPP,
    )?;
    Ok(())
}

pub(super) fn dirty_bits_are_reported_once_then_cleared(e: &mut Env) -> Result<(), Fail> {
    let (_, h, _) = tracked(e, 16)?;
    let len = 16 * P;
    let marks = [0x5555_5555_5555_5555u64 & ((1 << 32) - 1)];
    e.eq(
        "every other mock page dirtied",
        device_writes(e, h, len, &marks)?,
        16,
    )?;
    e.eq(
        "read at 2 KiB granularity",
        e.dirty_bitmap(h, BASE, len, MP, 0, 0),
        Ok(marks.to_vec()),
    )?;
    e.eq(
        "read again: clean",
        e.dirty_bitmap(h, BASE, len, MP, 0, 0),
        Ok(vec![0]),
    )
}

pub(super) fn no_clear_leaves_the_dirty_bits(e: &mut Env) -> Result<(), Fail> {
    let (_, h, _) = tracked(e, 16)?;
    let len = 16 * P;
    let marks = [0x0f0f_0003u64];
    device_writes(e, h, len, &marks)?;
    e.eq(
        "NO_CLEAR read",
        e.dirty_bitmap(h, BASE, len, MP, NO_CLEAR, 0),
        Ok(marks.to_vec()),
    )?;
    e.eq(
        "NO_CLEAR read again",
        e.dirty_bitmap(h, BASE, len, MP, NO_CLEAR, 0),
        Ok(marks.to_vec()),
    )?;
    e.eq(
        "clearing read",
        e.dirty_bitmap(h, BASE, len, MP, 0, 0),
        Ok(marks.to_vec()),
    )?;
    e.eq(
        "then clean",
        e.dirty_bitmap(h, BASE, len, MP, 0, 0),
        Ok(vec![0]),
    )
}

pub(super) fn the_dirty_bitmap_is_only_ored_into(e: &mut Env) -> Result<(), Fail> {
    let (_, h, _) = tracked(e, 16)?;
    let len = 16 * P;
    device_writes(e, h, len, &[0b1])?;
    let fill = 0xff00_0000_0000_0000u64;
    e.eq(
        "read into a pre-set bitmap",
        e.dirty_bitmap(h, BASE, len, MP, 0, fill),
        Ok(vec![fill | 1]),
    )
}

pub(super) fn page_size_groups_mock_pages(e: &mut Env) -> Result<(), Fail> {
    let (_, h, _) = tracked(e, 16)?;
    let len = 16 * P;
    device_writes(e, h, len, &[0b1000_0010])?;
    e.eq(
        "4 KiB bits: pages 0 and 3",
        e.dirty_bitmap(h, BASE, len, P, 0, 0),
        Ok(vec![0b1001]),
    )?;
    device_writes(e, h, len, &[1 << 20])?;
    e.eq(
        "16 KiB bits: bit 2",
        e.dirty_bitmap(h, BASE, len, 4 * P, 0, 0),
        Ok(vec![0b100]),
    )
}

/// `IOMMU_TEST_OP_DIRTY` checks its values before the HWPT: zero or misaligned sizes are
/// `EINVAL`, more than 2^27 pages `EOVERFLOW` (6.12 stable, measured on 6.12.117).
pub(super) fn mock_dirty_checks_its_values_first(e: &mut Env) -> Result<(), Fail> {
    let (_, h, _) = tracked(e, 4)?;
    let missing = 999;
    e.err(
        "page size 0",
        e.ctx.mock_dirty(missing, BASE, 4 * P, 0, &[1]),
        Errno::EINVAL,
    )?;
    e.err(
        "length 0",
        e.ctx.mock_dirty(missing, BASE, 0, MP, &[1]),
        Errno::EINVAL,
    )?;
    e.err(
        "IOVA off the page size",
        e.ctx.mock_dirty(missing, BASE + 1024, 4 * P, MP, &[1]),
        Errno::EINVAL,
    )?;
    e.err(
        "more than 2^27 pages",
        e.ctx
            .mock_dirty(missing, BASE, ((1 << 27) + 1) * MP, MP, &[1]),
        Errno::EOVERFLOW,
    )?;
    e.err(
        "a missing HWPT",
        e.ctx.mock_dirty(missing, BASE, 4 * P, MP, &[1]),
        Errno::ENOENT,
    )?;
    e.eq(
        "the real one",
        e.ctx.mock_dirty(h, BASE, 4 * P, MP, &[1]),
        Ok(1),
    )
}

pub(super) fn enabling_tracking_clears_stale_bits_and_reads_need_it(
    e: &mut Env,
) -> Result<(), Fail> {
    let (_, h, _) = tracked(e, 4)?;
    let len = 4 * P;
    device_writes(e, h, len, &[0b11])?;
    e.ok("disable", e.set_dirty(h, false))?;
    e.err(
        "device writes are not tracked",
        e.ctx.mock_dirty(h, BASE, len, MP, &[1]),
        Errno::EINVAL,
    )?;
    e.eq(
        "a read without tracking succeeds, clean",
        e.dirty_bitmap(h, BASE, len, MP, 0, 0),
        Ok(vec![0]),
    )?;
    e.ok("enable", e.set_dirty(h, true))?;
    e.eq(
        "stale bits were cleared",
        e.dirty_bitmap(h, BASE, len, MP, 0, 0),
        Ok(vec![0]),
    )
}

pub(super) fn unmapped_pages_read_clean(e: &mut Env) -> Result<(), Fail> {
    let (a, h, va) = tracked(e, 4)?;
    let len = 4 * P;
    device_writes(e, h, len, &[0xff])?;
    e.ok(
        "map a second area after a gap",
        e.map_fixed(a, va, 2 * P, BASE + 8 * P),
    )?;
    e.eq(
        "marks only land on mapped pages",
        device_writes(e, h, 12 * P, &[u64::MAX])?,
        12,
    )?;
    e.eq(
        "a range with a gap: the areas contiguous from iova",
        e.dirty_bitmap(h, BASE, 12 * P, P, 0, 0),
        Ok(vec![0b1111]),
    )?;
    e.eq(
        "the area after the gap, read alone",
        e.dirty_bitmap(h, BASE + 8 * P, 2 * P, P, 0, 0),
        Ok(vec![0b11]),
    )?;
    e.eq(
        "a range starting in the gap",
        e.dirty_bitmap(h, BASE + 4 * P, 4 * P, P, 0, 0),
        Ok(vec![0]),
    )
}
