//! `IOMMU_IOAS_UNMAP`: whole areas only, non-atomic, unmap-all.

use vfio_passthrough::errno::Errno;
use vfio_passthrough::host::iommufd::MOCK_APERTURE_START;

use crate::conformance::case::Fail;
use crate::conformance::env::Env;

const P: u64 = 4096;
const BASE: u64 = MOCK_APERTURE_START;

pub(super) fn unmap_of_nothing_mapped_is_enoent(e: &mut Env) -> Result<(), Fail> {
    let a = e.ioas()?;
    for i in 0..10 {
        e.err(
            &format!("unmap page {i}"),
            e.unmap(a, i * P, P),
            Errno::ENOENT,
        )?;
    }
    let buf = e.buffer(1);
    e.ok("map", e.map_fixed(a, buf.addr, P, BASE))?;
    e.err(
        "unmap next to the area",
        e.unmap(a, BASE + P, P),
        Errno::ENOENT,
    )?;
    e.expect_exactly(a, None, &[(BASE, P, buf.addr)])
}

pub(super) fn unmap_of_an_exact_area_reports_its_length(e: &mut Env) -> Result<(), Fail> {
    let buf = e.buffer(10);
    let a = e.ioas()?;
    let d = e.mock(a)?;
    for i in 0..10 {
        e.ok("map", e.map_fixed(a, buf.page(i), P, BASE + i * P))?;
    }
    for i in 0..10 {
        e.eq("unmap", e.unmap(a, BASE + i * P, P), Ok(P))?;
    }
    e.ok("refs dropped", e.ctx.mock_check_refs(buf.addr, 10 * P, 0))?;
    e.expect_exactly(a, Some(d.out_hwpt_id), &[])
}

pub(super) fn unmap_of_part_of_an_area_is_enoent(e: &mut Env) -> Result<(), Fail> {
    let buf = e.buffer(2);
    let a = e.ioas()?;
    let d = e.mock(a)?;
    e.ok(
        "map two pages",
        e.map_fixed(a, buf.addr, 2 * P, BASE + 16 * P),
    )?;
    e.err("first page", e.unmap(a, BASE + 16 * P, P), Errno::ENOENT)?;
    e.err("second page", e.unmap(a, BASE + 17 * P, P), Errno::ENOENT)?;
    e.err(
        "one byte short",
        e.unmap(a, BASE + 16 * P, 2 * P - 1),
        Errno::ENOENT,
    )?;
    e.err(
        "starting a byte in",
        e.unmap(a, BASE + 16 * P + 1, 4 * P),
        Errno::ENOENT,
    )?;
    e.expect_exactly(a, Some(d.out_hwpt_id), &[(BASE + 16 * P, 2 * P, buf.addr)])
}

pub(super) fn unmap_is_not_atomic(e: &mut Env) -> Result<(), Fail> {
    let buf = e.buffer(3);
    let a = e.ioas()?;
    let d = e.mock(a)?;
    e.ok("map A", e.map_fixed(a, buf.addr, P, BASE))?;
    e.ok("map B", e.map_fixed(a, buf.page(1), 2 * P, BASE + 2 * P))?;
    e.err(
        "unmap covering A and half of B",
        e.unmap(a, BASE, 3 * P),
        Errno::ENOENT,
    )?;
    e.err("A is gone", e.unmap(a, BASE, P), Errno::ENOENT)?;
    e.expect_exactly(
        a,
        Some(d.out_hwpt_id),
        &[(BASE + 2 * P, 2 * P, buf.page(1))],
    )
}

pub(super) fn unmap_starting_inside_the_first_area_removes_nothing(
    e: &mut Env,
) -> Result<(), Fail> {
    let buf = e.buffer(3);
    let a = e.ioas()?;
    e.ok("map A", e.map_fixed(a, buf.addr, 2 * P, BASE))?;
    e.ok("map B", e.map_fixed(a, buf.page(2), P, BASE + 4 * P))?;
    e.err(
        "unmap from inside A over B",
        e.unmap(a, BASE + P, 8 * P),
        Errno::ENOENT,
    )?;
    e.expect_exactly(
        a,
        None,
        &[(BASE, 2 * P, buf.addr), (BASE + 4 * P, P, buf.page(2))],
    )
}

pub(super) fn unmap_removes_fully_contained_areas_across_holes(e: &mut Env) -> Result<(), Fail> {
    let buf = e.buffer(8);
    let a = e.ioas()?;
    let base = BASE + 4 * P;
    for i in 0..4 {
        e.ok(
            "map 8 pages",
            e.map_fixed(a, buf.addr, 8 * P, base + i * 16 * P),
        )?;
    }
    e.err(
        "range cutting the first area",
        e.unmap(a, base - 4 * P, 8 * P),
        Errno::ENOENT,
    )?;
    e.err(
        "range cutting the last area",
        e.unmap(a, base + 3 * 16 * P + 4 * P, 8 * P),
        Errno::ENOENT,
    )?;
    e.eq(
        "range covering all four",
        e.unmap(a, base - 4 * P, 3 * 16 * P + 8 * P + 4 * P),
        Ok(32 * P),
    )?;
    e.expect_exactly(a, None, &[])
}

pub(super) fn unmap_of_zero_length_is_einval(e: &mut Env) -> Result<(), Fail> {
    let buf = e.buffer(1);
    let a = e.ioas()?;
    e.ok("map", e.map_fixed(a, buf.addr, P, BASE))?;
    e.err("length 0", e.unmap(a, BASE, 0), Errno::EINVAL)?;
    e.err("iova 0, length 0", e.unmap(a, 0, 0), Errno::EINVAL)?;
    e.expect_exactly(a, None, &[(BASE, P, buf.addr)])
}

pub(super) fn unmap_of_overflowing_ranges_is_eoverflow(e: &mut Env) -> Result<(), Fail> {
    let buf = e.buffer(1);
    let a = e.ioas()?;
    e.ok("map", e.map_fixed(a, buf.addr, P, BASE))?;
    e.err(
        "length u64::MAX from a non-zero IOVA",
        e.unmap(a, BASE, u64::MAX),
        Errno::EOVERFLOW,
    )?;
    e.err("iova u64::MAX", e.unmap(a, u64::MAX, 1), Errno::EOVERFLOW)?;
    e.err(
        "range wrapping",
        e.unmap(a, u64::MAX - 10, 100),
        Errno::EOVERFLOW,
    )?;
    e.expect_exactly(a, None, &[(BASE, P, buf.addr)])
}

pub(super) fn unmap_of_a_wrong_ioas_is_enoent(e: &mut Env) -> Result<(), Fail> {
    let a = e.ioas()?;
    e.err(
        "unmap-all of a missing IOAS",
        e.unmap_all(a + 1),
        Errno::ENOENT,
    )?;
    e.err("unmap of id 0", e.unmap(0, BASE, P), Errno::ENOENT)
}

pub(super) fn unmap_all_of_an_empty_ioas_succeeds_with_length_0(e: &mut Env) -> Result<(), Fail> {
    let a = e.ioas()?;
    e.eq("unmap-all", e.unmap_all(a), Ok(0))?;
    e.eq("again", e.unmap_all(a), Ok(0))
}

pub(super) fn unmap_all_reports_every_byte_and_unpins(e: &mut Env) -> Result<(), Fail> {
    let buf = e.buffer(8);
    let a = e.ioas()?;
    let d = e.mock(a)?;
    e.ok("map 2 pages", e.map_fixed(a, buf.addr, 2 * P, BASE))?;
    e.ok(
        "map 5 pages",
        e.map_fixed(a, buf.page(2), 5 * P, BASE + 100 * P),
    )?;
    e.ok(
        "one pin per page",
        e.ctx.mock_check_refs(buf.addr, 7 * P, 1),
    )?;
    e.eq("unmap-all", e.unmap_all(a), Ok(7 * P))?;
    e.ok("no pins left", e.ctx.mock_check_refs(buf.addr, 8 * P, 0))?;
    e.err(
        "MD_CHECK_MAP finds nothing",
        e.ctx.mock_check_map(d.out_hwpt_id, BASE, P, buf.addr),
        Errno::EINVAL,
    )
}
