//! `IOMMU_IOAS_MAP_FILE` (6.13): memfd pages, pinned when a domain arrives.

use vfio_passthrough::errno::Errno;
use vfio_passthrough::host::iommufd::MOCK_APERTURE_START;
use vfio_passthrough::host::iommufd::uapi::*;

use crate::conformance::case::Fail;
use crate::conformance::env::{Env, RW};

const P: u64 = 4096;
const BASE: u64 = MOCK_APERTURE_START;

fn map_file(
    e: &Env,
    flags: u32,
    ioas_id: u32,
    fd: i32,
    start: u64,
    length: u64,
    iova: u64,
) -> Result<u64, Errno> {
    let mut req = IoasMapFile {
        flags,
        ioas_id,
        fd,
        start,
        length,
        iova,
    };
    e.ctx.ioas_map_file(&mut req).map(|()| req.iova)
}

pub(super) fn map_file_maps_memfd_pages(e: &mut Env) -> Result<(), Fail> {
    let (mem, fd) = e.memfd(4);
    let a = e.ioas()?;
    let d = e.mock(a)?;
    let fixed = RW | IOMMU_IOAS_MAP_FIXED_IOVA;
    e.ok(
        "map pages 1..3 of the file",
        map_file(e, fixed, a, fd, P, 2 * P, BASE),
    )?;
    e.ok(
        "the domain maps the file pages",
        e.ctx
            .mock_check_map(d.out_hwpt_id, BASE, 2 * P, mem.page(1)),
    )?;
    e.err(
        "not the other pages",
        e.ctx.mock_check_map(d.out_hwpt_id, BASE, 2 * P, mem.addr),
        Errno::EINVAL,
    )?;
    e.ok("pinned", e.ctx.mock_check_refs(mem.page(1), 2 * P, 1))?;
    e.ok("others not", e.ctx.mock_check_refs(mem.addr, P, 0))?;
    let iova = e.ok(
        "automatic IOVA from the file offset",
        map_file(e, RW, a, fd, 0, 4 * P, 0),
    )?;
    e.check("16 KiB aligned", iova % (4 * P) == 0)?;
    e.expect_exactly(
        a,
        Some(d.out_hwpt_id),
        &[(BASE, 2 * P, mem.page(1)), (iova, 4 * P, mem.addr)],
    )
}

pub(super) fn map_file_checks_its_arguments_in_order(e: &mut Env) -> Result<(), Fail> {
    let (mem, fd) = e.memfd(2);
    let a = e.ioas()?;
    let fixed = RW | IOMMU_IOAS_MAP_FIXED_IOVA;
    e.err(
        "unknown flag",
        map_file(e, fixed | 1 << 3, a, fd, 0, P, BASE),
        Errno::EOPNOTSUPP,
    )?;
    e.err(
        "iova u64::MAX",
        map_file(e, fixed, a, fd, 0, P, u64::MAX),
        Errno::EOVERFLOW,
    )?;
    e.err(
        "no read or write",
        map_file(e, IOMMU_IOAS_MAP_FIXED_IOVA, a, fd, 0, P, BASE),
        Errno::EINVAL,
    )?;
    e.err(
        "missing IOAS",
        map_file(e, fixed, a + 1, fd, 0, P, BASE),
        Errno::ENOENT,
    )?;
    e.err(
        "bad fd",
        map_file(e, fixed, a, -1, 0, P, BASE),
        Errno::EBADF,
    )?;
    e.err(
        "length 0",
        map_file(e, fixed, a, fd, 0, 0, BASE),
        Errno::EINVAL,
    )?;
    e.err(
        "start + length wraps",
        map_file(e, fixed, a, fd, u64::MAX - 10, P, BASE),
        Errno::EOVERFLOW,
    )?;
    e.ok(
        "past the end of the file, no domain",
        map_file(e, fixed, a, fd, 0, 4 * P, BASE).map(|_| ()),
    )?;
    e.err(
        "attach pins past the end",
        e.mock_flags(a, 0),
        Errno::EINVAL,
    )?;
    e.expect_exactly(a, None, &[(BASE, 4 * P, mem.addr)])
}
