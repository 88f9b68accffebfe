//! `IOMMU_IOAS_COPY`: permissive source ranges, one destination area per source piece, shared
//! pages.

use vfio_passthrough::errno::Errno;
use vfio_passthrough::host::iommufd::MOCK_APERTURE_START;
use vfio_passthrough::host::iommufd::uapi::*;

use crate::conformance::case::Fail;
use crate::conformance::env::{Env, RW};

const P: u64 = 4096;
const BASE: u64 = MOCK_APERTURE_START;
const FIXED: u32 = RW | IOMMU_IOAS_MAP_FIXED_IOVA;

pub(super) fn copy_within_an_ioas_and_between_ioases(e: &mut Env) -> Result<(), Fail> {
    let buf = e.buffer(1);
    let a = e.ioas()?;
    let d = e.mock(a)?;
    e.ok("map", e.map_fixed(a, buf.addr, P, BASE))?;
    e.eq(
        "copy inside the IOAS",
        e.copy(FIXED, a, a, P, BASE + P, BASE),
        Ok(BASE + P),
    )?;
    let b = e.ioas()?;
    let db = e.mock(b)?;
    let dst = e.ok(
        "copy to another IOAS, automatic IOVA",
        e.copy(RW, b, a, P, 0, BASE),
    )?;
    e.ok(
        "the copy maps the same memory",
        e.ctx.mock_check_map(db.out_hwpt_id, dst, P, buf.addr),
    )?;
    e.ok(
        "pages shared, pinned once",
        e.ctx.mock_check_refs(buf.addr, P, 1),
    )?;
    e.expect_exactly(b, Some(db.out_hwpt_id), &[(dst, P, buf.addr)])?;
    e.expect_exactly(
        a,
        Some(d.out_hwpt_id),
        &[(BASE, P, buf.addr), (BASE + P, P, buf.addr)],
    )
}

pub(super) fn copy_of_a_sub_range_of_an_area_succeeds(e: &mut Env) -> Result<(), Fail> {
    let buf = e.buffer(4);
    let a = e.ioas()?;
    let d = e.mock(a)?;
    e.ok("map 4 pages", e.map_fixed(a, buf.addr, 4 * P, BASE))?;
    e.ok(
        "copy pages 1..3",
        e.copy(FIXED, a, a, 2 * P, BASE + 16 * P, BASE + P),
    )?;
    e.expect_exactly(
        a,
        Some(d.out_hwpt_id),
        &[(BASE, 4 * P, buf.addr), (BASE + 16 * P, 2 * P, buf.page(1))],
    )
}

pub(super) fn copy_across_contiguous_areas_makes_one_area_per_piece(
    e: &mut Env,
) -> Result<(), Fail> {
    let b1 = e.buffer(2);
    let b2 = e.buffer(2);
    let a = e.ioas()?;
    let d = e.mock(a)?;
    e.ok("map A", e.map_fixed(a, b1.addr, 2 * P, BASE))?;
    e.ok(
        "map B right after",
        e.map_fixed(a, b2.addr, 2 * P, BASE + 2 * P),
    )?;
    let dst = BASE + 32 * P;
    e.ok(
        "copy the last page of A and the first of B",
        e.copy(FIXED, a, a, 2 * P, dst, BASE + P),
    )?;
    e.ok(
        "the copy maps both pieces",
        e.ctx.mock_check_map(d.out_hwpt_id, dst, P, b1.page(1)),
    )?;
    e.ok(
        "second piece",
        e.ctx.mock_check_map(d.out_hwpt_id, dst + P, P, b2.addr),
    )?;
    e.eq(
        "the first piece is an area of its own",
        e.unmap(a, dst, P),
        Ok(P),
    )?;
    e.expect_exactly(
        a,
        Some(d.out_hwpt_id),
        &[
            (BASE, 2 * P, b1.addr),
            (BASE + 2 * P, 2 * P, b2.addr),
            (dst + P, P, b2.addr),
        ],
    )
}

pub(super) fn copy_over_a_gap_is_enoent(e: &mut Env) -> Result<(), Fail> {
    let buf = e.buffer(2);
    let a = e.ioas()?;
    e.ok("map A", e.map_fixed(a, buf.addr, P, BASE))?;
    e.ok(
        "map B after a gap",
        e.map_fixed(a, buf.page(1), P, BASE + 2 * P),
    )?;
    e.err(
        "copy over the gap",
        e.copy(FIXED, a, a, 3 * P, BASE + 16 * P, BASE),
        Errno::ENOENT,
    )?;
    e.err(
        "copy of unmapped IOVA",
        e.copy(FIXED, a, a, P, BASE + 16 * P, BASE + P),
        Errno::ENOENT,
    )?;
    e.expect_exactly(
        a,
        None,
        &[(BASE, P, buf.addr), (BASE + 2 * P, P, buf.page(1))],
    )
}

pub(super) fn copy_bad_arguments_change_nothing(e: &mut Env) -> Result<(), Fail> {
    let buf = e.buffer(2);
    let a = e.ioas()?;
    let d = e.mock(a)?;
    e.ok("map", e.map_fixed(a, buf.addr, 2 * P, BASE))?;
    let dst = BASE + 16 * P;
    e.err(
        "unknown flag",
        e.copy(FIXED | 1 << 3, a, a, P, dst, BASE),
        Errno::EOPNOTSUPP,
    )?;
    e.err(
        "length u64::MAX",
        e.copy(FIXED, a, a, u64::MAX, dst, BASE),
        Errno::EOVERFLOW,
    )?;
    e.err(
        "src_iova u64::MAX",
        e.copy(FIXED, a, a, P, dst, u64::MAX),
        Errno::EOVERFLOW,
    )?;
    e.err(
        "dst_iova u64::MAX",
        e.copy(FIXED, a, a, P, u64::MAX, BASE),
        Errno::EOVERFLOW,
    )?;
    e.err(
        "neither read nor write",
        e.copy(IOMMU_IOAS_MAP_FIXED_IOVA, a, a, P, dst, BASE),
        Errno::EINVAL,
    )?;
    e.err(
        "source IOAS missing",
        e.copy(FIXED, a, a + 50, P, dst, BASE),
        Errno::ENOENT,
    )?;
    e.err("length 0", e.copy(FIXED, a, a, 0, dst, BASE), Errno::EINVAL)?;
    e.err(
        "source range wraps",
        e.copy(FIXED, a, a, 100, dst, u64::MAX - 10),
        Errno::EOVERFLOW,
    )?;
    e.err(
        "destination IOAS missing",
        e.copy(FIXED, a + 50, a, P, dst, BASE),
        Errno::ENOENT,
    )?;
    e.err(
        "destination taken",
        e.copy(FIXED, a, a, P, BASE + P, BASE),
        Errno::EEXIST,
    )?;
    e.err(
        "destination 1 KiB off",
        e.copy(FIXED, a, a, 2048, dst + 1024, BASE),
        Errno::EINVAL,
    )?;
    e.expect_exactly(a, Some(d.out_hwpt_id), &[(BASE, 2 * P, buf.addr)])
}

pub(super) fn writeable_copy_of_read_only_pages_is_eperm(e: &mut Env) -> Result<(), Fail> {
    let buf = e.buffer(1);
    let a = e.ioas()?;
    let ro = IOMMU_IOAS_MAP_READABLE | IOMMU_IOAS_MAP_FIXED_IOVA;
    e.ok("read-only map", e.map(a, ro, buf.addr, P, BASE))?;
    e.err(
        "writeable copy",
        e.copy(FIXED, a, a, P, BASE + P, BASE),
        Errno::EPERM,
    )?;
    e.ok("read-only copy", e.copy(ro, a, a, P, BASE + P, BASE))?;
    e.expect_exactly(a, None, &[(BASE, P, buf.addr), (BASE + P, P, buf.addr)])
}
