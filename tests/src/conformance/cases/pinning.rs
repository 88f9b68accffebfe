//! Pinning and memlock accounting, checked with the selftest's page reference counts.

use vfio_passthrough::errno::Errno;
use vfio_passthrough::host::iommufd::MOCK_APERTURE_START;
use vfio_passthrough::host::iommufd::uapi::IOMMU_IOAS_MAP_FIXED_IOVA;

use crate::conformance::case::Fail;
use crate::conformance::env::{Env, RW};

const P: u64 = 4096;
const BASE: u64 = MOCK_APERTURE_START;
const FIXED: u32 = RW | IOMMU_IOAS_MAP_FIXED_IOVA;

pub(super) fn pages_are_pinned_only_while_a_domain_holds_them(e: &mut Env) -> Result<(), Fail> {
    let buf = e.buffer(4);
    let a = e.ioas()?;
    e.ok("map", e.map_fixed(a, buf.addr, 4 * P, BASE))?;
    e.ok(
        "no domain: no pins",
        e.ctx.mock_check_refs(buf.addr, 4 * P, 0),
    )?;
    let d = e.mock(a)?;
    e.ok(
        "attached: one pin per page",
        e.ctx.mock_check_refs(buf.addr, 4 * P, 1),
    )?;
    let h = e.ok("a second domain", e.hwpt(0, d.out_idev_id, a, 0, &[]))?;
    e.ok("still one pin", e.ctx.mock_check_refs(buf.addr, 4 * P, 1))?;
    e.ok("destroy the mock device", e.ctx.destroy(d.out_stdev_id))?;
    e.ok(
        "the HWPT keeps them pinned",
        e.ctx.mock_check_refs(buf.addr, 4 * P, 1),
    )?;
    e.ok("destroy the HWPT", e.ctx.destroy(h))?;
    e.ok("unpinned", e.ctx.mock_check_refs(buf.addr, 4 * P, 0))?;
    e.expect_exactly(a, None, &[(BASE, 4 * P, buf.addr)])
}

pub(super) fn each_map_pins_its_pages_and_copies_share_them(e: &mut Env) -> Result<(), Fail> {
    let buf = e.buffer(4);
    let a = e.ioas()?;
    let d = e.mock(a)?;
    e.ok("map", e.map_fixed(a, buf.addr, 4 * P, BASE))?;
    e.ok(
        "map the same memory again",
        e.map_fixed(a, buf.addr, 2 * P, BASE + 16 * P),
    )?;
    e.ok(
        "pages 0-1 pinned twice",
        e.ctx.mock_check_refs(buf.addr, 2 * P, 2),
    )?;
    e.ok(
        "pages 2-3 once",
        e.ctx.mock_check_refs(buf.page(2), 2 * P, 1),
    )?;
    e.ok(
        "copy the first area",
        e.copy(FIXED, a, a, 4 * P, BASE + 32 * P, BASE).map(|_| ()),
    )?;
    e.ok(
        "copies add no pins",
        e.ctx.mock_check_refs(buf.addr, 2 * P, 2),
    )?;
    e.eq("unmap the original", e.unmap(a, BASE, 4 * P), Ok(4 * P))?;
    e.ok(
        "the copy keeps its pins",
        e.ctx.mock_check_refs(buf.page(2), 2 * P, 1),
    )?;
    e.ok(
        "the copy maps the memory",
        e.ctx
            .mock_check_map(d.out_hwpt_id, BASE + 32 * P, 4 * P, buf.addr),
    )?;
    e.eq(
        "unmap the second map",
        e.unmap(a, BASE + 16 * P, 2 * P),
        Ok(2 * P),
    )?;
    e.ok("one pin left", e.ctx.mock_check_refs(buf.addr, 4 * P, 1))?;
    e.expect_exactly(a, Some(d.out_hwpt_id), &[(BASE + 32 * P, 4 * P, buf.addr)])?;
    e.ok("no pin left", e.ctx.mock_check_refs(buf.addr, 4 * P, 0))
}

pub(super) fn a_map_past_the_memlock_limit_is_enomem(e: &mut Env) -> Result<(), Fail> {
    let buf = e.buffer(6);
    let more = e.buffer(3);
    let a = e.ioas()?;
    let d = e.mock(a)?;
    e.ok("map 6 of 8 pages", e.map_fixed(a, buf.addr, 6 * P, BASE))?;
    e.err(
        "3 more pages",
        e.map_fixed(a, more.addr, 3 * P, BASE + 16 * P),
        Errno::ENOMEM,
    )?;
    e.ok(
        "nothing pinned by the failure",
        e.ctx.mock_check_refs(more.addr, 3 * P, 0),
    )?;
    e.ok(
        "2 more pages fit",
        e.map_fixed(a, more.addr, 2 * P, BASE + 16 * P),
    )?;
    e.expect_exactly(
        a,
        Some(d.out_hwpt_id),
        &[(BASE, 6 * P, buf.addr), (BASE + 16 * P, 2 * P, more.addr)],
    )
}

pub(super) fn copies_are_not_charged_again(e: &mut Env) -> Result<(), Fail> {
    let buf = e.buffer(8);
    let one = e.buffer(1);
    let a = e.ioas()?;
    let d = e.mock(a)?;
    e.ok("map 8 of 8 pages", e.map_fixed(a, buf.addr, 8 * P, BASE))?;
    e.ok(
        "copy them",
        e.copy(FIXED, a, a, 8 * P, BASE + 16 * P, BASE).map(|_| ()),
    )?;
    e.err(
        "one more page",
        e.map_fixed(a, one.addr, P, BASE + 32 * P),
        Errno::ENOMEM,
    )?;
    e.eq("unmap the original", e.unmap(a, BASE, 8 * P), Ok(8 * P))?;
    e.err(
        "the copy still holds the charge",
        e.map_fixed(a, one.addr, P, BASE + 32 * P),
        Errno::ENOMEM,
    )?;
    e.eq(
        "unmap the copy",
        e.unmap(a, BASE + 16 * P, 8 * P),
        Ok(8 * P),
    )?;
    e.ok("now it fits", e.map_fixed(a, one.addr, P, BASE + 32 * P))?;
    e.expect_exactly(a, Some(d.out_hwpt_id), &[(BASE + 32 * P, P, one.addr)])
}

pub(super) fn attaching_past_the_memlock_limit_is_enomem(e: &mut Env) -> Result<(), Fail> {
    let buf = e.buffer(10);
    let a = e.ioas()?;
    e.ok(
        "map 10 pages, no domain",
        e.map_fixed(a, buf.addr, 10 * P, BASE),
    )?;
    e.err(
        "attach over 8 pages of limit",
        e.mock_flags(a, 0),
        Errno::ENOMEM,
    )?;
    e.ok("nothing pinned", e.ctx.mock_check_refs(buf.addr, 10 * P, 0))?;
    e.eq("no domain left", e.alignment(a), Ok(1))?;
    e.expect_exactly(a, None, &[(BASE, 10 * P, buf.addr)])
}

pub(super) fn check_map_and_check_refs_catch_mismatches(e: &mut Env) -> Result<(), Fail> {
    let buf = e.buffer(3);
    let other = e.buffer(2);
    let a = e.ioas()?;
    let d = e.mock(a)?;
    let h = d.out_hwpt_id;
    e.ok("map", e.map_fixed(a, buf.addr, 2 * P, BASE))?;
    e.ok("CHECK_MAP", e.ctx.mock_check_map(h, BASE, 2 * P, buf.addr))?;
    e.ok(
        "CHECK_MAP of the second half",
        e.ctx.mock_check_map(h, BASE + 2048, 2048, buf.addr + 2048),
    )?;
    e.err(
        "other memory",
        e.ctx.mock_check_map(h, BASE, 2 * P, other.addr),
        Errno::EINVAL,
    )?;
    e.err(
        "shifted by a page",
        e.ctx.mock_check_map(h, BASE, P, buf.page(1)),
        Errno::EINVAL,
    )?;
    e.err(
        "past the area",
        e.ctx.mock_check_map(h, BASE, 3 * P, buf.addr),
        Errno::EINVAL,
    )?;
    e.err(
        "unaligned iova",
        e.ctx.mock_check_map(h, BASE + 1, P, buf.addr),
        Errno::EINVAL,
    )?;
    e.err(
        "unaligned length",
        e.ctx.mock_check_map(h, BASE, 100, buf.addr),
        Errno::EINVAL,
    )?;
    e.err(
        "not a HWPT",
        e.ctx.mock_check_map(a, BASE, P, buf.addr),
        Errno::ENOENT,
    )?;
    e.err(
        "refs: wrong count",
        e.ctx.mock_check_refs(buf.addr, 2 * P, 2),
        Errno::EIO,
    )?;
    e.err(
        "refs: unaligned length",
        e.ctx.mock_check_refs(buf.addr, 100, 1),
        Errno::EINVAL,
    )?;
    e.err(
        "refs: unaligned address",
        e.ctx.mock_check_refs(buf.addr + 8, P, 1),
        Errno::EINVAL,
    )?;
    e.hole(other, 0, 1);
    e.err(
        "refs of unmapped memory",
        e.ctx.mock_check_refs(other.addr, P, 0),
        Errno::EFAULT,
    )?;
    e.expect_exactly(a, Some(h), &[(BASE, 2 * P, buf.addr)])
}
