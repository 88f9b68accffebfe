//! `IOMMU_HWPT_INVALIDATE` on mock nested HWPTs: entry validation in order, `entry_num`
//! written back on error too.

use vfio_passthrough::errno::Errno;
use vfio_passthrough::host::iommufd::uapi::*;
use vfio_passthrough::host::iommufd::{
    IOMMU_HWPT_INVALIDATE_DATA_SELFTEST, IOMMU_TEST_INVALIDATE_FLAG_ALL, IOMMU_TEST_IOTLB_DEFAULT,
};

use crate::conformance::case::Fail;
use crate::conformance::env::Env;

const SEL: u32 = IOMMU_HWPT_INVALIDATE_DATA_SELFTEST;
const DEF: u32 = IOMMU_TEST_IOTLB_DEFAULT;

/// A mock nested HWPT: (its parent, it).
fn nested(e: &mut Env) -> Result<(u32, u32), Fail> {
    let a = e.ioas()?;
    let d = e.mock(a)?;
    let parent = e.ok(
        "NEST_PARENT HWPT",
        e.hwpt(IOMMU_HWPT_ALLOC_NEST_PARENT, d.out_idev_id, a, 0, &[]),
    )?;
    let n = e.ok("nested HWPT", e.nested_mock(0, d.out_idev_id, parent))?;
    Ok((parent, n))
}

fn iotlb(e: &Env, n: u32, want: [u32; 4]) -> Result<(), Fail> {
    for (id, v) in want.iter().enumerate() {
        e.ok(
            &format!("IOTLB entry {id} = {v:#x}"),
            e.ctx.mock_check_iotlb(n, id as u32, *v),
        )?;
    }
    Ok(())
}

pub(super) fn invalidate_needs_a_nested_hwpt(e: &mut Env) -> Result<(), Fail> {
    let (parent, _) = nested(e)?;
    e.eq(
        "paging HWPT",
        e.invalidate_mock(parent, SEL, 8, &[(0, 0)]),
        Err((Errno::ENOENT, 0)),
    )?;
    e.eq(
        "missing id",
        e.invalidate_mock(999, SEL, 8, &[(0, 0)]),
        Err((Errno::ENOENT, 0)),
    )
}

/// 6.12 stable bounds one call before looking up the HWPT (measured on 6.12.117): an entry
/// longer than a page, or more than 2^19 entries, is `EINVAL` even for a missing HWPT.
pub(super) fn each_call_is_bounded_before_the_hwpt_is_looked_up(e: &mut Env) -> Result<(), Fail> {
    let (_, n) = nested(e)?;
    let call = |hwpt_id, entry_len, entry_num, bytes: &[u8]| {
        let mut req = HwptInvalidate {
            hwpt_id,
            data_type: SEL,
            entry_len,
            entry_num,
            reserved: 0,
        };
        match e.ctx.hwpt_invalidate(&mut req, bytes) {
            Ok(()) => Ok(req.entry_num),
            Err(err) => Err((err, req.entry_num)),
        }
    };
    let page = vec![0u8; 4097];
    e.eq(
        "an entry of a page and a byte, missing HWPT",
        call(999, 4097, 1, &page),
        Err((Errno::EINVAL, 0)),
    )?;
    e.eq(
        "2^19 + 1 entries, missing HWPT",
        call(999, 8, (1 << 19) + 1, &page[..16]),
        Err((Errno::EINVAL, 0)),
    )?;
    e.eq(
        "a page-long entry is only longer than the struct",
        call(n, 4096, 1, &page[..4096]),
        Err((Errno::EINVAL, 0)),
    )?;
    e.eq(
        "a page-long entry, missing HWPT",
        call(999, 4096, 1, &page[..4096]),
        Err((Errno::ENOENT, 0)),
    )?;
    iotlb(e, n, [DEF; 4])
}

pub(super) fn zero_entries_probe_the_data_type(e: &mut Env) -> Result<(), Fail> {
    let (_, n) = nested(e)?;
    e.eq("supported type", e.invalidate_mock(n, SEL, 8, &[]), Ok(0))?;
    e.eq(
        "unsupported type",
        e.invalidate_mock(n, SEL + 1, 8, &[]),
        Err((Errno::EINVAL, 0)),
    )?;
    iotlb(e, n, [DEF; 4])
}

pub(super) fn invalid_entries_are_refused_in_order(e: &mut Env) -> Result<(), Fail> {
    let (_, n) = nested(e)?;
    e.eq(
        "unknown type",
        e.invalidate_mock(n, SEL + 1, 8, &[(0, 0)]),
        Err((Errno::EINVAL, 0)),
    )?;
    e.eq(
        "entry longer than the struct",
        e.invalidate_mock(n, SEL, 9, &[(0, 0)]),
        Err((Errno::EINVAL, 0)),
    )?;
    e.eq(
        "entry shorter than the struct",
        e.invalidate_mock(n, SEL, 1, &[(0, 0)]),
        Err((Errno::EINVAL, 0)),
    )?;
    e.eq(
        "entry length 0",
        e.invalidate_mock(n, SEL, 0, &[(0, 0)]),
        Err((Errno::EINVAL, 0)),
    )?;
    e.eq(
        "unknown entry flags",
        e.invalidate_mock(n, SEL, 8, &[(u32::MAX, 0)]),
        Err((Errno::EOPNOTSUPP, 0)),
    )?;
    e.eq(
        "IOTLB id 4",
        e.invalidate_mock(n, SEL, 8, &[(0, 4)]),
        Err((Errno::EINVAL, 0)),
    )?;
    let mut req = HwptInvalidate {
        hwpt_id: n,
        data_type: SEL,
        entry_len: 8,
        entry_num: 1,
        reserved: 1,
    };
    e.err(
        "__reserved",
        e.ctx.hwpt_invalidate(&mut req, &[0; 8]),
        Errno::EOPNOTSUPP,
    )?;
    e.eq("entry_num written back", req.entry_num, 0)?;
    iotlb(e, n, [DEF; 4])
}

pub(super) fn a_failing_entry_stops_after_the_ones_before_it(e: &mut Env) -> Result<(), Fail> {
    let (_, n) = nested(e)?;
    e.eq(
        "second entry's flags bad",
        e.invalidate_mock(n, SEL, 8, &[(0, 0), (u32::MAX, 1)]),
        Err((Errno::EOPNOTSUPP, 1)),
    )?;
    iotlb(e, n, [0, DEF, DEF, DEF])?;
    e.eq(
        "second entry's id bad",
        e.invalidate_mock(n, SEL, 8, &[(0, 0), (0, 4)]),
        Err((Errno::EINVAL, 1)),
    )?;
    iotlb(e, n, [0, DEF, DEF, DEF])?;
    e.eq("entry 1", e.invalidate_mock(n, SEL, 8, &[(0, 1)]), Ok(1))?;
    iotlb(e, n, [0, 0, DEF, DEF])?;
    e.eq(
        "entries 2 and 3",
        e.invalidate_mock(n, SEL, 8, &[(0, 2), (0, 3)]),
        Ok(2),
    )?;
    iotlb(e, n, [0; 4])
}

pub(super) fn the_all_flag_invalidates_every_entry(e: &mut Env) -> Result<(), Fail> {
    let (_, n) = nested(e)?;
    e.eq(
        "ALL",
        e.invalidate_mock(n, SEL, 8, &[(IOMMU_TEST_INVALIDATE_FLAG_ALL, 3)]),
        Ok(1),
    )?;
    iotlb(e, n, [0; 4])
}
