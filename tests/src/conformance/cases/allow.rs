//! `IOMMU_IOAS_ALLOW_IOVAS`: the allowed list steers automatic placement and blocks later
//! reservations inside it.

use vfio_passthrough::errno::Errno;
use vfio_passthrough::host::iommufd::MOCK_APERTURE_START;
use vfio_passthrough::host::iommufd::uapi::*;

use crate::conformance::case::Fail;
use crate::conformance::env::Env;

const P: u64 = 4096;
const BASE: u64 = MOCK_APERTURE_START;

pub(super) fn allowed_ranges_must_be_longer_than_a_byte_and_disjoint(
    e: &mut Env,
) -> Result<(), Fail> {
    let a = e.ioas()?;
    e.err("one-byte range", e.allow(a, &[(5, 5)]), Errno::EINVAL)?;
    e.err("start after last", e.allow(a, &[(6, 5)]), Errno::EINVAL)?;
    e.err(
        "overlapping ranges",
        e.allow(a, &[(0, 10), (10, 20)]),
        Errno::EINVAL,
    )?;
    e.ok("adjacent ranges", e.allow(a, &[(0, 9), (10, 20)]))?;
    let req = IoasAllowIovas {
        ioas_id: a,
        reserved: 1,
    };
    e.err(
        "__reserved",
        e.ctx.ioas_allow_iovas(&req, &[]),
        Errno::EOPNOTSUPP,
    )?;
    e.err("missing IOAS", e.allow(a + 1, &[]), Errno::ENOENT)
}

pub(super) fn an_allowed_range_meeting_a_reserved_one_is_eaddrinuse(
    e: &mut Env,
) -> Result<(), Fail> {
    let a = e.ioas()?;
    e.ok(
        "reserve [4p, 104p)",
        e.ctx.mock_add_reserved(a, 4 * P, 100 * P),
    )?;
    e.ok("allow [200p, 300p]", e.allow(a, &[(200 * P, 300 * P)]))?;
    e.err(
        "allow a range over the reservation",
        e.allow(a, &[(P, 600 * P)]),
        Errno::EADDRINUSE,
    )?;
    e.err(
        "the old list is still in force",
        e.ctx.mock_add_reserved(a, 250 * P, P),
        Errno::EADDRINUSE,
    )
}

pub(super) fn a_reservation_inside_an_allowed_range_is_eaddrinuse(e: &mut Env) -> Result<(), Fail> {
    let a = e.ioas()?;
    e.ok("allow", e.allow(a, &[(BASE, BASE + 600 * P)]))?;
    e.err(
        "reserve inside",
        e.ctx.mock_add_reserved(a, BASE + P, P),
        Errno::EADDRINUSE,
    )?;
    e.ok("clear the list", e.allow(a, &[]))?;
    e.ok("reserve now", e.ctx.mock_add_reserved(a, BASE + P, P))?;
    e.err(
        "allow over it",
        e.allow(a, &[(BASE, BASE + 600 * P)]),
        Errno::EADDRINUSE,
    )
}

pub(super) fn a_domain_whose_aperture_meets_an_allowed_range_cannot_attach(
    e: &mut Env,
) -> Result<(), Fail> {
    let a = e.ioas()?;
    e.ok("allow low IOVAs", e.allow(a, &[(P, 2 * P)]))?;
    e.err(
        "attach a mock device",
        e.mock_flags(a, 0),
        Errno::EADDRINUSE,
    )?;
    e.eq("no alignment taken", e.alignment(a), Ok(1))?;
    e.ok(
        "allow inside the aperture only",
        e.allow(a, &[(BASE, BASE + 16 * P - 1)]),
    )?;
    e.mock(a)?;
    Ok(())
}

pub(super) fn automatic_placement_stays_inside_the_allowed_ranges(e: &mut Env) -> Result<(), Fail> {
    let buf = e.buffer(10);
    let a = e.ioas()?;
    e.mock(a)?;
    let (start, last) = (BASE + P, BASE + 600 * P - 1);
    e.ok("allow", e.allow(a, &[(start, last)]))?;
    let mut iovas = Vec::new();
    for i in 1..=10 {
        let len = i * P;
        let iova = e.ok("automatic map", e.map_auto(a, buf.addr, len))?;
        e.check(
            "inside the allowed range",
            iova >= start && iova + len - 1 <= last,
        )?;
        iovas.push((iova, len));
    }
    for (iova, len) in iovas {
        e.eq("unmap", e.unmap(a, iova, len), Ok(len))?;
    }
    Ok(())
}

pub(super) fn fixed_maps_ignore_the_allowed_list(e: &mut Env) -> Result<(), Fail> {
    let buf = e.buffer(1);
    let a = e.ioas()?;
    e.ok("allow", e.allow(a, &[(BASE, BASE + 10 * P - 1)]))?;
    e.ok(
        "fixed map outside it",
        e.map_fixed(a, buf.addr, P, BASE + 100 * P),
    )?;
    e.ok(
        "allow a list not covering the area",
        e.allow(a, &[(BASE, BASE + P - 1)]),
    )?;
    e.expect_exactly(a, None, &[(BASE + 100 * P, P, buf.addr)])
}

pub(super) fn automatic_placement_is_enospc_when_the_allowed_ranges_are_full(
    e: &mut Env,
) -> Result<(), Fail> {
    let buf = e.buffer(4);
    let a = e.ioas()?;
    e.ok("allow [8p, 10p)", e.allow(a, &[(8 * P, 10 * P - 1)]))?;
    e.err(
        "4 pages do not fit",
        e.map_auto(a, buf.addr, 4 * P),
        Errno::ENOSPC,
    )?;
    e.eq("2 pages fit", e.map_auto(a, buf.addr, 2 * P), Ok(8 * P))?;
    e.err(
        "nothing else fits",
        e.map_auto(a, buf.addr, P),
        Errno::ENOSPC,
    )?;
    e.expect_exactly(a, None, &[(8 * P, 2 * P, buf.addr)])
}
