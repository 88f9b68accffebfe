//! `IOMMU_OPTION`: the global rlimit mode and the per-IOAS huge page switch.

use vfio_passthrough::errno::Errno;
use vfio_passthrough::host::iommufd::MOCK_APERTURE_START;
use vfio_passthrough::host::iommufd::uapi::*;

use crate::conformance::case::Fail;
use crate::conformance::env::Env;

const P: u64 = 4096;
const BASE: u64 = MOCK_APERTURE_START;
const GET: u16 = IOMMU_OPTION_OP_GET;
const SET: u16 = IOMMU_OPTION_OP_SET;

pub(super) fn option_bad_arguments_are_refused(e: &mut Env) -> Result<(), Fail> {
    let a = e.ioas()?;
    let mut o = IommuOption {
        option_id: IOMMU_OPTION_HUGE_PAGES,
        op: GET,
        reserved: 1,
        object_id: a,
        val64: 0,
    };
    e.err("__reserved", e.ctx.option(&mut o), Errno::EOPNOTSUPP)?;
    e.err("unknown option", e.option(2, GET, 0, 0), Errno::EOPNOTSUPP)?;
    e.err(
        "unknown op",
        e.option(IOMMU_OPTION_RLIMIT_MODE, 2, 0, 0),
        Errno::EOPNOTSUPP,
    )?;
    e.err(
        "rlimit mode with an object",
        e.option(IOMMU_OPTION_RLIMIT_MODE, GET, a, 0),
        Errno::EOPNOTSUPP,
    )?;
    e.err(
        "huge pages of no IOAS",
        e.option(IOMMU_OPTION_HUGE_PAGES, GET, 0, 0),
        Errno::ENOENT,
    )?;
    e.err(
        "huge pages SET of no IOAS",
        e.option(IOMMU_OPTION_HUGE_PAGES, SET, a + 1, 1),
        Errno::ENOENT,
    )?;
    e.err(
        "huge pages unknown op",
        e.option(IOMMU_OPTION_HUGE_PAGES, 7, a, 0),
        Errno::EOPNOTSUPP,
    )
}

pub(super) fn rlimit_mode_starts_per_user(e: &mut Env) -> Result<(), Fail> {
    e.eq("GET", e.option(IOMMU_OPTION_RLIMIT_MODE, GET, 0, 5), Ok(0))
}

pub(super) fn setting_the_rlimit_mode_needs_cap_sys_resource(e: &mut Env) -> Result<(), Fail> {
    e.err(
        "SET without CAP_SYS_RESOURCE",
        e.option(IOMMU_OPTION_RLIMIT_MODE, SET, 0, 1),
        Errno::EPERM,
    )
}

pub(super) fn the_rlimit_mode_changes_only_without_objects(e: &mut Env) -> Result<(), Fail> {
    e.eq(
        "SET 1",
        e.option(IOMMU_OPTION_RLIMIT_MODE, SET, 0, 1),
        Ok(1),
    )?;
    e.err(
        "SET 2",
        e.option(IOMMU_OPTION_RLIMIT_MODE, SET, 0, 2),
        Errno::EINVAL,
    )?;
    e.eq("GET", e.option(IOMMU_OPTION_RLIMIT_MODE, GET, 0, 0), Ok(1))?;
    let a = e.ioas()?;
    e.err(
        "SET with an IOAS",
        e.option(IOMMU_OPTION_RLIMIT_MODE, SET, 0, 0),
        Errno::EBUSY,
    )?;
    e.ok("destroy it", e.ctx.destroy(a))?;
    e.eq(
        "SET 0",
        e.option(IOMMU_OPTION_RLIMIT_MODE, SET, 0, 0),
        Ok(0),
    )
}

pub(super) fn huge_pages_can_be_read_and_switched(e: &mut Env) -> Result<(), Fail> {
    let a = e.ioas()?;
    let hp = IOMMU_OPTION_HUGE_PAGES;
    e.eq("GET", e.option(hp, GET, a, 3), Ok(1))?;
    e.eq("SET 0", e.option(hp, SET, a, 0), Ok(0))?;
    e.eq("GET", e.option(hp, GET, a, 3), Ok(0))?;
    e.eq("alignment is PAGE_SIZE", e.alignment(a), Ok(P))?;
    e.err("SET 2", e.option(hp, SET, a, 2), Errno::EINVAL)?;
    e.eq("SET 1", e.option(hp, SET, a, 1), Ok(1))?;
    e.eq("alignment back to 1", e.alignment(a), Ok(1))
}

pub(super) fn disabling_huge_pages_forces_page_alignment(e: &mut Env) -> Result<(), Fail> {
    let buf = e.buffer(2);
    let a = e.ioas()?;
    let hp = IOMMU_OPTION_HUGE_PAGES;
    e.ok("aligned map", e.map_fixed(a, buf.addr, P, BASE))?;
    e.ok("SET 0 with aligned areas", e.option(hp, SET, a, 0))?;
    e.err(
        "misaligned map",
        e.map_fixed(a, buf.addr + 2048, P, BASE + P),
        Errno::EINVAL,
    )?;
    e.ok("SET 0 again", e.option(hp, SET, a, 0))?;
    e.ok("SET 1", e.option(hp, SET, a, 1))?;
    e.ok(
        "misaligned map",
        e.map_fixed(a, buf.addr + 2048, P, BASE + P),
    )?;
    e.err(
        "SET 0 over a misaligned area",
        e.option(hp, SET, a, 0),
        Errno::EADDRINUSE,
    )?;
    e.eq("GET", e.option(hp, GET, a, 0), Ok(1))?;
    e.expect_exactly(
        a,
        None,
        &[(BASE, P, buf.addr), (BASE + P, P, buf.addr + 2048)],
    )
}

pub(super) fn disabling_huge_pages_with_a_domain_and_areas_is_einval(
    e: &mut Env,
) -> Result<(), Fail> {
    let buf = e.buffer(1);
    let a = e.ioas()?;
    let d = e.mock(a)?;
    let hp = IOMMU_OPTION_HUGE_PAGES;
    e.ok("SET 0 with a domain but no area", e.option(hp, SET, a, 0))?;
    e.ok("SET 1", e.option(hp, SET, a, 1))?;
    e.ok("map", e.map_fixed(a, buf.addr, P, BASE))?;
    e.err(
        "SET 0 with a domain and an area",
        e.option(hp, SET, a, 0),
        Errno::EINVAL,
    )?;
    e.expect_exactly(a, Some(d.out_hwpt_id), &[(BASE, P, buf.addr)])
}
