//! Automatic IOVA placement: lowest first fit, natural alignment from the length and the user
//! address (capped at the huge page size), never page 0, honouring reserved and allowed
//! ranges.

use vfio_passthrough::errno::Errno;
use vfio_passthrough::host::iommufd::MOCK_APERTURE_START;

use crate::conformance::case::Fail;
use crate::conformance::env::Env;

const P: u64 = 4096;

/// The largest automatic alignment of the backend.
fn cap(e: &Env) -> u64 {
    if e.info.thp { 2 << 20 } else { P }
}

pub(super) fn automatic_iovas_are_the_lowest_fit_and_never_page_0(e: &mut Env) -> Result<(), Fail> {
    let buf = e.buffer(1);
    let a = e.ioas()?;
    e.eq("first", e.map_auto(a, buf.addr, P), Ok(P))?;
    e.eq("second", e.map_auto(a, buf.addr, P), Ok(2 * P))?;
    e.eq("unmap the first", e.unmap(a, P, P), Ok(P))?;
    e.eq("the hole is reused", e.map_auto(a, buf.addr, P), Ok(P))?;
    e.eq("third", e.map_auto(a, buf.addr, 1), Ok(3 * P))?;
    e.expect_exactly(
        a,
        None,
        &[(P, P, buf.addr), (2 * P, P, buf.addr), (3 * P, 1, buf.addr)],
    )
}

pub(super) fn automatic_iovas_are_aligned_to_the_length(e: &mut Env) -> Result<(), Fail> {
    let buf = e.buffer(16);
    let a = e.ioas()?;
    let mut areas = Vec::new();
    for pages in 1..=10u64 {
        let len = pages * P;
        let iova = e.ok("automatic map", e.map_auto(a, buf.addr, len))?;
        let natural = len.next_power_of_two().min(cap(e));
        e.check(
            &format!("{len:#x} bytes at {iova:#x} aligned to {natural:#x}"),
            iova % natural == 0,
        )?;
        areas.push((iova, len, buf.addr));
    }
    e.expect_exactly(a, None, &areas)
}

pub(super) fn automatic_iovas_keep_the_alignment_of_the_user_address(
    e: &mut Env,
) -> Result<(), Fail> {
    let buf = e.buffer(32);
    let a = e.ioas()?;
    let va = buf.addr + 2 * P;
    // min(64 KiB from the length, 8 KiB from the address, the cap), first fit from page 1.
    let first = (2 * P).min(cap(e)).max(P);
    e.eq(
        "8 KiB-aligned user address, 64 KiB",
        e.map_auto(a, va, 16 * P),
        Ok(first),
    )?;
    // 2 KiB alignment with the address's 0x800 offset, in the first hole after the area.
    let second = first + 16 * P + 0x800;
    e.eq(
        "sub-page offset kept",
        e.map_auto(a, buf.addr + 0x800, P),
        Ok(second),
    )?;
    e.expect_exactly(
        a,
        None,
        &[(first, 16 * P, va), (second, P, buf.addr + 0x800)],
    )
}

pub(super) fn automatic_alignment_is_capped_at_the_huge_page_size(e: &mut Env) -> Result<(), Fail> {
    let buf = e.aligned_buffer(2048, 8 << 20);
    let a = e.ioas()?;
    let expected = cap(e);
    e.eq(
        "8 MiB from an 8 MiB-aligned address",
        e.map_auto(a, buf.addr, 8 << 20),
        Ok(expected),
    )?;
    e.expect_exactly(a, None, &[(expected, 8 << 20, buf.addr)])
}

pub(super) fn automatic_iovas_avoid_reserved_ranges(e: &mut Env) -> Result<(), Fail> {
    let buf = e.buffer(10);
    let a = e.ioas()?;
    let (rs, rl) = (4 * P, 100 * P);
    e.ok("reserve", e.ctx.mock_add_reserved(a, rs, rl))?;
    let mut areas = Vec::new();
    for pages in 1..=10u64 {
        let len = pages * P;
        let iova = e.ok("automatic map", e.map_auto(a, buf.addr, len))?;
        e.check(
            "outside the reservation",
            iova + len <= rs || iova >= rs + rl,
        )?;
        areas.push((iova, len, buf.addr));
    }
    e.expect_exactly(a, None, &areas)
}

pub(super) fn automatic_iovas_start_at_the_mock_aperture(e: &mut Env) -> Result<(), Fail> {
    let buf = e.buffer(1);
    let a = e.ioas()?;
    let d = e.mock(a)?;
    e.eq("first", e.map_auto(a, buf.addr, P), Ok(MOCK_APERTURE_START))?;
    e.expect_exactly(
        a,
        Some(d.out_hwpt_id),
        &[(MOCK_APERTURE_START, P, buf.addr)],
    )
}

pub(super) fn automatic_map_below_the_domain_alignment_is_einval(e: &mut Env) -> Result<(), Fail> {
    let buf = e.buffer(2);
    let a = e.ioas()?;
    let d = e.mock(a)?;
    e.err("length 1 KiB", e.map_auto(a, buf.addr, 1024), Errno::EINVAL)?;
    e.err(
        "user address 1 KiB into a page",
        e.map_auto(a, buf.addr + 1024, 2048),
        Errno::EINVAL,
    )?;
    e.err("length 3 KiB", e.map_auto(a, buf.addr, 3072), Errno::EINVAL)?;
    e.expect_exactly(a, Some(d.out_hwpt_id), &[])
}

pub(super) fn automatic_map_of_half_the_space_is_eoverflow(e: &mut Env) -> Result<(), Fail> {
    let buf = e.buffer(1);
    let a = e.ioas()?;
    e.err(
        "2^63 bytes",
        e.map_auto(a, buf.addr, 1 << 63),
        Errno::EOVERFLOW,
    )?;
    e.ok(
        "the same length at a fixed IOVA",
        e.map_fixed(a, buf.addr, 1 << 63, 1 << 62),
    )?;
    e.expect_exactly(a, None, &[(1 << 62, 1 << 63, buf.addr)])
}

pub(super) fn automatic_map_is_enospc_when_nothing_fits(e: &mut Env) -> Result<(), Fail> {
    let buf = e.buffer(5);
    // A user address aligned to 4 KiB only: placements align to 4 KiB whatever the cap.
    let va = buf.page(1);
    let a = e.ioas()?;
    e.ok(
        "reserve all but pages 1..4",
        e.ctx.mock_add_reserved(a, 4 * P, u64::MAX - 4 * P),
    )?;
    e.err("4 pages", e.map_auto(a, va, 4 * P), Errno::ENOSPC)?;
    e.eq("3 pages", e.map_auto(a, va, 3 * P), Ok(P))?;
    e.err("one more page", e.map_auto(a, va, P), Errno::ENOSPC)?;
    e.expect_exactly(a, None, &[(P, 3 * P, va)])
}
