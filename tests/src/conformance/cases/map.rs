//! `IOMMU_IOAS_MAP`: checks in the kernel's order, overlap, the top of the space, and when a
//! bad user address is noticed.

use vfio_passthrough::errno::Errno;
use vfio_passthrough::host::iommufd::MOCK_APERTURE_START;
use vfio_passthrough::host::iommufd::uapi::*;

use crate::conformance::case::Fail;
use crate::conformance::env::{Env, RW};

const P: u64 = 4096;
const BASE: u64 = MOCK_APERTURE_START;

/// One area at `BASE + 16 pages` of two pages, for the bad-input cases to leave untouched.
fn with_area(e: &mut Env) -> Result<(u32, u64), Fail> {
    let buf = e.buffer(4);
    let a = e.ioas()?;
    e.ok(
        "map the existing area",
        e.map_fixed(a, buf.addr, 2 * P, BASE + 16 * P),
    )?;
    Ok((a, buf.addr))
}

pub(super) fn map_with_unknown_flags_or_reserved_is_eopnotsupp(e: &mut Env) -> Result<(), Fail> {
    let (a, va) = with_area(e)?;
    let fixed = RW | IOMMU_IOAS_MAP_FIXED_IOVA;
    e.err(
        "flag bit 3",
        e.map(a, fixed | 1 << 3, va, P, BASE),
        Errno::EOPNOTSUPP,
    )?;
    e.err(
        "flag bit 31",
        e.map(a, fixed | 1 << 31, va, P, BASE),
        Errno::EOPNOTSUPP,
    )?;
    let mut m = IoasMap {
        flags: fixed,
        ioas_id: a,
        reserved: 1,
        user_va: va,
        length: P,
        iova: BASE,
    };
    e.err(
        "__reserved",
        // SAFETY: `va` belongs to the case's buffer, which outlives the context.
        unsafe { e.ctx.ioas_map(&mut m) },
        Errno::EOPNOTSUPP,
    )?;
    e.expect_exactly(a, None, &[(BASE + 16 * P, 2 * P, va)])
}

pub(super) fn map_of_u64_max_iova_or_length_is_eoverflow(e: &mut Env) -> Result<(), Fail> {
    let (a, va) = with_area(e)?;
    e.err(
        "iova u64::MAX",
        e.map_fixed(a, va, P, u64::MAX),
        Errno::EOVERFLOW,
    )?;
    e.err(
        "length u64::MAX",
        e.map_fixed(a, va, u64::MAX, BASE),
        Errno::EOVERFLOW,
    )?;
    e.err(
        "flag check comes first",
        e.map(a, 1 << 4, va, u64::MAX, 0),
        Errno::EOPNOTSUPP,
    )?;
    e.expect_exactly(a, None, &[(BASE + 16 * P, 2 * P, va)])
}

pub(super) fn map_without_read_or_write_is_einval(e: &mut Env) -> Result<(), Fail> {
    let (a, va) = with_area(e)?;
    e.err(
        "FIXED only",
        e.map(a, IOMMU_IOAS_MAP_FIXED_IOVA, va, P, BASE),
        Errno::EINVAL,
    )?;
    e.err("no flags", e.map(a, 0, va, P, 0), Errno::EINVAL)?;
    e.err(
        "checked before the IOAS",
        e.map(a + 100, 0, va, P, 0),
        Errno::EINVAL,
    )?;
    e.expect_exactly(a, None, &[(BASE + 16 * P, 2 * P, va)])
}

pub(super) fn map_into_a_wrong_ioas_is_enoent(e: &mut Env) -> Result<(), Fail> {
    let (a, va) = with_area(e)?;
    e.err("id 0", e.map_fixed(0, va, P, BASE), Errno::ENOENT)?;
    e.err("unused id", e.map_fixed(a + 10, va, P, BASE), Errno::ENOENT)?;
    let d = e.mock(a)?;
    e.err(
        "a HWPT id",
        e.map_fixed(d.out_hwpt_id, va, P, BASE),
        Errno::ENOENT,
    )?;
    e.err(
        "a DEVICE id",
        e.map_fixed(d.out_idev_id, va, P, BASE),
        Errno::ENOENT,
    )?;
    e.expect_exactly(a, Some(d.out_hwpt_id), &[(BASE + 16 * P, 2 * P, va)])
}

pub(super) fn map_of_zero_or_too_long_length_is_einval(e: &mut Env) -> Result<(), Fail> {
    let (a, va) = with_area(e)?;
    e.err("length 0", e.map_fixed(a, va, 0, BASE), Errno::EINVAL)?;
    e.err("length 0, automatic", e.map_auto(a, va, 0), Errno::EINVAL)?;
    e.err(
        "length past SIZE_MAX - PAGE_SIZE",
        e.map_fixed(a, 0x1000, u64::MAX - P + 1, 0),
        Errno::EINVAL,
    )?;
    e.expect_exactly(a, None, &[(BASE + 16 * P, 2 * P, va)])
}

pub(super) fn map_whose_user_range_wraps_is_eoverflow(e: &mut Env) -> Result<(), Fail> {
    let (a, va) = with_area(e)?;
    e.err(
        "user_va + length wraps",
        e.map_fixed(a, u64::MAX - P + 1, 2 * P, BASE),
        Errno::EOVERFLOW,
    )?;
    e.expect_exactly(a, None, &[(BASE + 16 * P, 2 * P, va)])
}

pub(super) fn map_whose_iova_range_wraps_is_eoverflow(e: &mut Env) -> Result<(), Fail> {
    let (a, va) = with_area(e)?;
    e.err(
        "iova + length wraps",
        e.map_fixed(a, va, 2 * P, u64::MAX - P + 1),
        Errno::EOVERFLOW,
    )?;
    e.expect_exactly(a, None, &[(BASE + 16 * P, 2 * P, va)])
}

pub(super) fn map_over_an_area_even_by_one_byte_is_eexist(e: &mut Env) -> Result<(), Fail> {
    let (a, va) = with_area(e)?;
    let at = |p: u64| BASE + p * P;
    e.err(
        "same range",
        e.map_fixed(a, va, 2 * P, at(16)),
        Errno::EEXIST,
    )?;
    e.err("first page", e.map_fixed(a, va, P, at(16)), Errno::EEXIST)?;
    e.err("second page", e.map_fixed(a, va, P, at(17)), Errno::EEXIST)?;
    e.err(
        "overlapping the start",
        e.map_fixed(a, va, 2 * P, at(15)),
        Errno::EEXIST,
    )?;
    e.err(
        "covering it",
        e.map_fixed(a, va, 4 * P, at(15)),
        Errno::EEXIST,
    )?;
    e.err(
        "its last byte",
        e.map_fixed(a, va, P, at(18) - 1),
        Errno::EEXIST,
    )?;
    e.err(
        "ending on its first byte",
        e.map_fixed(a, va, P, at(15) + 1),
        Errno::EEXIST,
    )?;
    e.ok("just after", e.map_fixed(a, va, P, at(18)))?;
    e.ok("just before", e.map_fixed(a, va, P, at(15)))?;
    e.expect_exactly(
        a,
        None,
        &[(at(15), P, va), (at(16), 2 * P, va), (at(18), P, va)],
    )
}

pub(super) fn map_into_a_reserved_range_is_einval(e: &mut Env) -> Result<(), Fail> {
    let (a, va) = with_area(e)?;
    e.ok(
        "reserve [4p, 104p)",
        e.ctx.mock_add_reserved(a, 4 * P, 100 * P),
    )?;
    e.err("inside", e.map_fixed(a, va, P, 5 * P), Errno::EINVAL)?;
    e.err(
        "over its start",
        e.map_fixed(a, va, 2 * P, 3 * P),
        Errno::EINVAL,
    )?;
    e.err(
        "over its end",
        e.map_fixed(a, va, 2 * P, 103 * P),
        Errno::EINVAL,
    )?;
    e.ok("right after", e.map_fixed(a, va, P, 104 * P))?;
    e.expect_exactly(a, None, &[(104 * P, P, va), (BASE + 16 * P, 2 * P, va)])
}

pub(super) fn map_reaches_the_top_of_the_64bit_space(e: &mut Env) -> Result<(), Fail> {
    let buf = e.buffer(2);
    let a = e.ioas()?;
    let top = u64::MAX - 2 * P + 1;
    e.ok(
        "map the last two pages",
        e.map_fixed(a, buf.addr, 2 * P, top),
    )?;
    e.err(
        "one more byte over them",
        e.map_fixed(a, buf.addr, 1, u64::MAX),
        Errno::EOVERFLOW,
    )?;
    e.err(
        "unmap of the last page alone",
        e.unmap(a, u64::MAX - P + 1, P),
        Errno::ENOENT,
    )?;
    e.eq("unmap of the area", e.unmap(a, top, 2 * P), Ok(2 * P))?;
    e.ok(
        "map a byte-granular area ending at u64::MAX - 1",
        e.map_fixed(a, buf.addr, 10, u64::MAX - 10),
    )?;
    e.expect_exactly(a, None, &[(u64::MAX - 10, 10, buf.addr)])
}

pub(super) fn map_to_a_mock_domain_must_respect_its_2k_pages(e: &mut Env) -> Result<(), Fail> {
    let (a, va) = with_area(e)?;
    let d = e.mock(a)?;
    e.err(
        "length 1 KiB",
        e.map_fixed(a, va, 1024, BASE),
        Errno::EINVAL,
    )?;
    e.err(
        "length 3 KiB",
        e.map_fixed(a, va, 3072, BASE),
        Errno::EINVAL,
    )?;
    e.err(
        "iova 1 KiB off",
        e.map_fixed(a, va, 2048, BASE + 1024),
        Errno::EINVAL,
    )?;
    e.err(
        "user_va 1 KiB into its page",
        e.map_fixed(a, va + 1024, 2048, BASE),
        Errno::EINVAL,
    )?;
    e.ok(
        "2 KiB at a 2 KiB offset",
        e.map_fixed(a, va + 2048, 2048, BASE + 2048),
    )?;
    e.expect_exactly(
        a,
        Some(d.out_hwpt_id),
        &[(BASE + 2048, 2048, va + 2048), (BASE + 16 * P, 2 * P, va)],
    )
}

pub(super) fn map_of_unmapped_memory_succeeds_without_a_domain(e: &mut Env) -> Result<(), Fail> {
    let buf = e.buffer(4);
    e.hole(buf, 0, 4);
    let a = e.ioas()?;
    e.ok(
        "map of a hole, no domain",
        e.map_fixed(a, buf.addr, 4 * P, BASE),
    )?;
    e.eq("unmap", e.unmap(a, BASE, 4 * P), Ok(4 * P))
}

pub(super) fn map_of_unmapped_memory_is_efault_with_a_domain(e: &mut Env) -> Result<(), Fail> {
    let (a, va) = with_area(e)?;
    let d = e.mock(a)?;
    let buf = e.buffer(4);
    e.hole(buf, 2, 2);
    e.err(
        "hole half way",
        e.map_fixed(a, buf.addr, 4 * P, BASE),
        Errno::EFAULT,
    )?;
    e.err(
        "hole half way, automatic IOVA",
        e.map_auto(a, buf.addr, 4 * P),
        Errno::EFAULT,
    )?;
    e.hole(buf, 0, 2);
    e.err(
        "hole from the first page",
        e.map_fixed(a, buf.addr, 4 * P, BASE),
        Errno::EFAULT,
    )?;
    e.expect_exactly(a, Some(d.out_hwpt_id), &[(BASE + 16 * P, 2 * P, va)])
}

pub(super) fn attaching_a_domain_over_unmapped_memory_is_efault(e: &mut Env) -> Result<(), Fail> {
    let buf = e.buffer(4);
    let good = e.buffer(1);
    e.hole(buf, 1, 1);
    let a = e.ioas()?;
    e.ok(
        "map a range with a hole, no domain",
        e.map_fixed(a, buf.addr, 4 * P, BASE),
    )?;
    e.ok(
        "map a good page",
        e.map_fixed(a, good.addr, P, BASE + 8 * P),
    )?;
    e.err("attach a mock device", e.mock_flags(a, 0), Errno::EFAULT)?;
    e.eq(
        "nothing got pinned",
        e.ctx.mock_check_refs(good.addr, P, 0),
        Ok(()),
    )?;
    e.eq("the IOAS took no alignment", e.alignment(a), Ok(1))?;
    e.expect_exactly(
        a,
        None,
        &[(BASE, 4 * P, buf.addr), (BASE + 8 * P, P, good.addr)],
    )
}

pub(super) fn writeable_map_of_read_only_memory_is_efault_with_a_domain(
    e: &mut Env,
) -> Result<(), Fail> {
    let ro = e.buffer(2);
    e.read_only(ro);
    let a = e.ioas()?;
    e.ok(
        "writeable map, no domain",
        e.map_fixed(a, ro.addr, 2 * P, BASE),
    )?;
    e.eq("unmap it", e.unmap(a, BASE, 2 * P), Ok(2 * P))?;
    let d = e.mock(a)?;
    e.err(
        "writeable map with a domain",
        e.map_fixed(a, ro.addr, 2 * P, BASE),
        Errno::EFAULT,
    )?;
    let readable = IOMMU_IOAS_MAP_READABLE | IOMMU_IOAS_MAP_FIXED_IOVA;
    e.ok(
        "read-only map with a domain",
        e.map(a, readable, ro.addr, 2 * P, BASE),
    )?;
    e.expect_exactly(a, Some(d.out_hwpt_id), &[(BASE, 2 * P, ro.addr)])
}

pub(super) fn automatic_map_returns_the_iova_and_maps_it(e: &mut Env) -> Result<(), Fail> {
    let buf = e.buffer(2);
    let a = e.ioas()?;
    let d = e.mock(a)?;
    let iova = e.ok("automatic map", e.map_auto(a, buf.addr, 2 * P))?;
    e.check("inside the mock aperture", iova >= BASE)?;
    e.expect_exactly(a, Some(d.out_hwpt_id), &[(iova, 2 * P, buf.addr)])
}
