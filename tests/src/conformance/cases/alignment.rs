//! The IOAS alignment follows its domains: tightened on attach (`EADDRINUSE` when areas or
//! allowed ranges would break), relaxed on detach.

use vfio_passthrough::errno::Errno;
use vfio_passthrough::host::iommufd::MOCK_APERTURE_START;

use crate::conformance::case::Fail;
use crate::conformance::env::Env;

const P: u64 = 4096;
const BASE: u64 = MOCK_APERTURE_START;

pub(super) fn alignment_tightens_on_attach_and_relaxes_on_detach(e: &mut Env) -> Result<(), Fail> {
    let buf = e.buffer(1);
    let a = e.ioas()?;
    e.eq("no domain", e.alignment(a), Ok(1))?;
    let d = e.mock(a)?;
    e.eq("mock domain", e.alignment(a), Ok(2048))?;
    e.err(
        "1-byte map refused",
        e.map_fixed(a, buf.addr, 1, BASE),
        Errno::EINVAL,
    )?;
    e.ok("destroy the mock device", e.ctx.destroy(d.out_stdev_id))?;
    e.eq("detached", e.alignment(a), Ok(1))?;
    e.ok("1-byte map accepted", e.map_fixed(a, buf.addr, 1, BASE))?;
    e.expect_exactly(a, None, &[(BASE, 1, buf.addr)])
}

pub(super) fn alignment_stays_while_a_domain_remains(e: &mut Env) -> Result<(), Fail> {
    let a = e.ioas()?;
    let d = e.mock(a)?;
    let h = e.ok("HWPT_ALLOC", e.hwpt(0, d.out_idev_id, a, 0, &[]))?;
    e.ok("destroy the mock device", e.ctx.destroy(d.out_stdev_id))?;
    e.eq("the HWPT still holds it", e.alignment(a), Ok(2048))?;
    e.ok("destroy the HWPT", e.ctx.destroy(h))?;
    e.eq("relaxed", e.alignment(a), Ok(1))
}

pub(super) fn attach_is_eaddrinuse_when_an_area_length_breaks_the_alignment(
    e: &mut Env,
) -> Result<(), Fail> {
    let buf = e.buffer(1);
    let a = e.ioas()?;
    e.ok("map 1 KiB", e.map_fixed(a, buf.addr, 1024, BASE))?;
    e.err("attach", e.mock_flags(a, 0), Errno::EADDRINUSE)?;
    e.eq("unchanged alignment", e.alignment(a), Ok(1))?;
    e.expect_exactly(a, None, &[(BASE, 1024, buf.addr)])
}

pub(super) fn attach_is_eaddrinuse_when_an_area_iova_breaks_the_alignment(
    e: &mut Env,
) -> Result<(), Fail> {
    let buf = e.buffer(1);
    let a = e.ioas()?;
    e.ok(
        "map at a 1 KiB offset",
        e.map_fixed(a, buf.addr, 2048, BASE + 1024),
    )?;
    e.err("attach", e.mock_flags(a, 0), Errno::EADDRINUSE)?;
    e.expect_exactly(a, None, &[(BASE + 1024, 2048, buf.addr)])
}

pub(super) fn attach_is_eaddrinuse_when_an_area_page_offset_breaks_the_alignment(
    e: &mut Env,
) -> Result<(), Fail> {
    let buf = e.buffer(2);
    let a = e.ioas()?;
    e.ok(
        "map from 1 KiB into a page",
        e.map_fixed(a, buf.addr + 1024, 2048, BASE),
    )?;
    e.err("attach", e.mock_flags(a, 0), Errno::EADDRINUSE)?;
    e.expect_exactly(a, None, &[(BASE, 2048, buf.addr + 1024)])
}

pub(super) fn attach_is_eaddrinuse_when_the_aperture_excludes_an_area(
    e: &mut Env,
) -> Result<(), Fail> {
    let buf = e.buffer(1);
    let a = e.ioas()?;
    e.ok(
        "map below the mock aperture",
        e.map_fixed(a, buf.addr, P, P),
    )?;
    e.err("attach", e.mock_flags(a, 0), Errno::EADDRINUSE)?;
    e.eq("ranges unchanged", e.ranges(a).map(|r| r.0.len()), Ok(1))?;
    e.expect_exactly(a, None, &[(P, P, buf.addr)])
}

pub(super) fn hwpt_alloc_applies_the_attach_rules_to_its_ioas(e: &mut Env) -> Result<(), Fail> {
    let buf = e.buffer(1);
    let other = e.ioas()?;
    let d = e.mock(other)?;
    let a = e.ioas()?;
    e.ok("map below the aperture", e.map_fixed(a, buf.addr, P, P))?;
    e.err(
        "HWPT_ALLOC on that IOAS",
        e.hwpt(0, d.out_idev_id, a, 0, &[]),
        Errno::EADDRINUSE,
    )?;
    e.eq("the IOAS is untouched", e.alignment(a), Ok(1))?;
    e.eq("unmap", e.unmap(a, P, P), Ok(P))?;
    e.ok("map inside the aperture", e.map_fixed(a, buf.addr, P, BASE))?;
    let h = e.ok("HWPT_ALLOC", e.hwpt(0, d.out_idev_id, a, 0, &[]))?;
    e.eq(
        "a HWPT not attached still sets the alignment",
        e.alignment(a),
        Ok(2048),
    )?;
    e.expect_exactly(a, Some(h), &[(BASE, P, buf.addr)])
}
