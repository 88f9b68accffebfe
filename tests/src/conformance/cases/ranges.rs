//! `IOMMU_IOAS_IOVA_RANGES`: the holes of the reserved ranges, and `EMSGSIZE`.

use vfio_passthrough::errno::Errno;
use vfio_passthrough::host::iommufd::uapi::*;
use vfio_passthrough::host::iommufd::{MOCK_APERTURE_LAST, MOCK_APERTURE_START};

use crate::conformance::case::Fail;
use crate::conformance::env::Env;

const P: u64 = 4096;

fn range(start: u64, last: u64) -> IovaRange {
    IovaRange { start, last }
}

pub(super) fn a_fresh_ioas_offers_the_whole_space_unaligned(e: &mut Env) -> Result<(), Fail> {
    let a = e.ioas()?;
    e.eq("ranges", e.ranges(a), Ok((vec![range(0, u64::MAX)], 1)))
}

pub(super) fn a_mock_domain_limits_ranges_to_its_aperture(e: &mut Env) -> Result<(), Fail> {
    let a = e.ioas()?;
    e.mock(a)?;
    e.eq(
        "ranges",
        e.ranges(a),
        Ok((vec![range(MOCK_APERTURE_START, MOCK_APERTURE_LAST)], 2048)),
    )?;
    e.ok(
        "reserve inside the aperture",
        e.ctx.mock_add_reserved(a, MOCK_APERTURE_START, P),
    )?;
    e.eq(
        "ranges after",
        e.ranges(a).map(|r| r.0),
        Ok(vec![range(MOCK_APERTURE_START + P, MOCK_APERTURE_LAST)]),
    )
}

pub(super) fn too_small_a_buffer_is_emsgsize_with_the_total(e: &mut Env) -> Result<(), Fail> {
    let a = e.ioas()?;
    let sentinel = range(7, 7);
    let mut out = [sentinel; 2];
    let mut req = IoasIovaRanges {
        ioas_id: a,
        num_iovas: 0,
        ..Default::default()
    };
    e.err(
        "capacity 0",
        e.ctx.ioas_iova_ranges(&mut req, &mut out),
        Errno::EMSGSIZE,
    )?;
    e.eq("total reported", req.num_iovas, 1)?;
    e.eq("nothing written", out, [sentinel; 2])?;
    e.ok("reserve one page", e.ctx.mock_add_reserved(a, P, P))?;
    req.num_iovas = 1;
    e.err(
        "capacity 1 of 2",
        e.ctx.ioas_iova_ranges(&mut req, &mut out),
        Errno::EMSGSIZE,
    )?;
    e.eq("total reported", req.num_iovas, 2)?;
    e.eq(
        "first written, second not",
        out,
        [range(0, P - 1), sentinel],
    )?;
    req.num_iovas = 2;
    e.ok("capacity 2", e.ctx.ioas_iova_ranges(&mut req, &mut out))?;
    e.eq("both", out, [range(0, P - 1), range(2 * P, u64::MAX)])
}

pub(super) fn iova_ranges_bad_arguments(e: &mut Env) -> Result<(), Fail> {
    let a = e.ioas()?;
    let mut out = [IovaRange::default(); 1];
    let mut req = IoasIovaRanges {
        ioas_id: a,
        num_iovas: 1,
        reserved: 1,
        out_iova_alignment: 0,
    };
    e.err(
        "__reserved",
        e.ctx.ioas_iova_ranges(&mut req, &mut out),
        Errno::EOPNOTSUPP,
    )?;
    req.reserved = 0;
    req.ioas_id = a + 1;
    e.err(
        "missing IOAS",
        e.ctx.ioas_iova_ranges(&mut req, &mut out),
        Errno::ENOENT,
    )
}

pub(super) fn iova_ranges_ignore_the_allowed_list(e: &mut Env) -> Result<(), Fail> {
    let a = e.ioas()?;
    e.ok("allow one range", e.allow(a, &[(0x10_0000, 0x1f_ffff)]))?;
    e.eq(
        "ranges",
        e.ranges(a).map(|r| r.0),
        Ok(vec![range(0, u64::MAX)]),
    )
}
