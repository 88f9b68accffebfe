//! Object ids, references and destruction.

use vfio_passthrough::errno::Errno;
use vfio_passthrough::host::iommufd::uapi::*;

use crate::conformance::case::Fail;
use crate::conformance::env::Env;

pub(super) fn destroy_of_an_unknown_id_is_enoent(e: &mut Env) -> Result<(), Fail> {
    e.err("destroy 0", e.ctx.destroy(0), Errno::ENOENT)?;
    e.err("destroy 12345", e.ctx.destroy(12345), Errno::ENOENT)?;
    let a = e.ioas()?;
    e.ok("destroy the IOAS", e.ctx.destroy(a))?;
    e.err("destroy it again", e.ctx.destroy(a), Errno::ENOENT)
}

pub(super) fn ids_are_the_lowest_free_and_reused(e: &mut Env) -> Result<(), Fail> {
    let ids = [e.ioas()?, e.ioas()?, e.ioas()?];
    e.eq("first ids", ids, [1, 2, 3])?;
    e.ok("destroy 2", e.ctx.destroy(2))?;
    e.eq("next id reuses 2", e.ioas()?, 2)?;
    e.ok("destroy 1", e.ctx.destroy(1))?;
    e.ok("destroy 3", e.ctx.destroy(3))?;
    e.eq("next id reuses 1", e.ioas()?, 1)?;
    e.eq("then 3", e.ioas()?, 3)?;
    e.eq("then 4", e.ioas()?, 4)
}

pub(super) fn a_failed_allocation_consumes_no_id(e: &mut Env) -> Result<(), Fail> {
    let mut bad = IoasAlloc {
        flags: 1,
        ..Default::default()
    };
    e.err(
        "IOAS_ALLOC with flags",
        e.ctx.ioas_alloc(&mut bad),
        Errno::EOPNOTSUPP,
    )?;
    let a = e.ioas()?;
    e.eq("first IOAS id", a, 1)?;
    e.err(
        "mock device with unknown flags",
        e.mock_flags(a, 1 << 7),
        Errno::EINVAL,
    )?;
    e.err(
        "mock device on a missing object",
        e.mock_flags(99, 0),
        Errno::ENOENT,
    )?;
    let d = e.mock(a)?;
    e.eq(
        "ids of the mock device",
        (d.out_stdev_id, d.out_idev_id, d.out_hwpt_id),
        (2, 3, 4),
    )?;
    e.err(
        "HWPT_ALLOC with unknown flags",
        e.hwpt(1 << 30, d.out_idev_id, a, 0, &[]),
        Errno::EOPNOTSUPP,
    )?;
    e.err(
        "nested HWPT_ALLOC on a parent without NEST_PARENT",
        e.nested_mock(0, d.out_idev_id, d.out_hwpt_id),
        Errno::EINVAL,
    )?;
    e.eq("next IOAS id", e.ioas()?, 5)
}

pub(super) fn devices_and_hwpts_share_the_id_space(e: &mut Env) -> Result<(), Fail> {
    let a = e.ioas()?;
    let d = e.mock(a)?;
    e.eq(
        "mock device ids follow the IOAS",
        (d.out_stdev_id, d.out_idev_id, d.out_hwpt_id),
        (2, 3, 4),
    )?;
    let h = e.ok("HWPT_ALLOC", e.hwpt(0, d.out_idev_id, a, 0, &[]))?;
    e.eq("HWPT id", h, 5)?;
    e.ok("destroy the mock device", e.ctx.destroy(d.out_stdev_id))?;
    e.eq(
        "ids 2..4 are free again (auto domain gone too)",
        e.ioas()?,
        2,
    )?;
    e.eq("then 3", e.ioas()?, 3)?;
    e.eq("then 4", e.ioas()?, 4)?;
    e.eq("then 6", e.ioas()?, 6)
}

pub(super) fn destroying_an_ioas_in_use_is_ebusy(e: &mut Env) -> Result<(), Fail> {
    let a = e.ioas()?;
    let d = e.mock(a)?;
    e.err("destroy IOAS with a device", e.ctx.destroy(a), Errno::EBUSY)?;
    e.err(
        "destroy its auto HWPT",
        e.ctx.destroy(d.out_hwpt_id),
        Errno::EBUSY,
    )?;
    e.ok("destroy the mock device", e.ctx.destroy(d.out_stdev_id))?;
    e.err(
        "the auto HWPT went with it",
        e.ctx.destroy(d.out_hwpt_id),
        Errno::ENOENT,
    )?;
    let d2 = e.mock(a)?;
    let h = e.ok("HWPT_ALLOC", e.hwpt(0, d2.out_idev_id, a, 0, &[]))?;
    e.ok("destroy the mock device", e.ctx.destroy(d2.out_stdev_id))?;
    e.err("destroy IOAS with a HWPT", e.ctx.destroy(a), Errno::EBUSY)?;
    e.ok("destroy the HWPT", e.ctx.destroy(h))?;
    e.ok("destroy the IOAS", e.ctx.destroy(a))
}

pub(super) fn destroying_a_hwpt_in_use_is_ebusy(e: &mut Env) -> Result<(), Fail> {
    let a = e.ioas()?;
    let d = e.mock(a)?;
    let parent = e.ok(
        "HWPT_ALLOC NEST_PARENT",
        e.hwpt(IOMMU_HWPT_ALLOC_NEST_PARENT, d.out_idev_id, a, 0, &[]),
    )?;
    let nested = e.ok("nested HWPT_ALLOC", e.nested_mock(0, d.out_idev_id, parent))?;
    e.err(
        "destroy the nest parent",
        e.ctx.destroy(parent),
        Errno::EBUSY,
    )?;
    e.ok(
        "replace to the nested HWPT",
        e.ctx.mock_domain_replace(d.out_stdev_id, nested),
    )?;
    e.err(
        "destroy the attached nested HWPT",
        e.ctx.destroy(nested),
        Errno::EBUSY,
    )?;
    e.ok(
        "replace back to the IOAS",
        e.ctx.mock_domain_replace(d.out_stdev_id, a),
    )?;
    e.ok("destroy the nested HWPT", e.ctx.destroy(nested))?;
    e.ok("destroy the parent", e.ctx.destroy(parent))
}

pub(super) fn destroying_a_device_object_is_ebusy(e: &mut Env) -> Result<(), Fail> {
    let a = e.ioas()?;
    let d = e.mock(a)?;
    e.err(
        "destroy the DEVICE object",
        e.ctx.destroy(d.out_idev_id),
        Errno::EBUSY,
    )?;
    e.ok("destroy the selftest object", e.ctx.destroy(d.out_stdev_id))?;
    e.err(
        "the DEVICE object went with it",
        e.ctx.destroy(d.out_idev_id),
        Errno::ENOENT,
    )
}

pub(super) fn ioas_alloc_with_flags_is_eopnotsupp(e: &mut Env) -> Result<(), Fail> {
    let mut a = IoasAlloc {
        flags: 0x8000_0000,
        ..Default::default()
    };
    e.err(
        "IOAS_ALLOC flags",
        e.ctx.ioas_alloc(&mut a),
        Errno::EOPNOTSUPP,
    )
}

pub(super) fn an_ioas_with_areas_can_be_destroyed(e: &mut Env) -> Result<(), Fail> {
    let buf = e.buffer(4);
    let a = e.ioas()?;
    for i in 0..4 {
        e.ok(
            "map",
            e.map_fixed(a, buf.page(i), 4096, 0x10_0000 + i * 4096),
        )?;
    }
    e.ok("destroy the IOAS with its areas", e.ctx.destroy(a))
}

pub(super) fn vfio_ioas_selects_and_forgets_the_compat_ioas(e: &mut Env) -> Result<(), Fail> {
    let op = |op, ioas_id, reserved| {
        let mut v = VfioIoas {
            ioas_id,
            op,
            reserved,
        };
        e.ctx.vfio_ioas(&mut v).map(|()| v.ioas_id)
    };
    e.err(
        "GET with none set",
        op(IOMMU_VFIO_IOAS_GET, 0, 0),
        Errno::ENODEV,
    )?;
    e.err(
        "SET of a missing IOAS",
        op(IOMMU_VFIO_IOAS_SET, 7, 0),
        Errno::ENOENT,
    )?;
    e.err(
        "reserved field",
        op(IOMMU_VFIO_IOAS_GET, 0, 1),
        Errno::EOPNOTSUPP,
    )?;
    e.err("unknown op", op(3, 0, 0), Errno::EOPNOTSUPP)?;
    let a = e.ioas()?;
    e.ok("SET", op(IOMMU_VFIO_IOAS_SET, a, 0))?;
    e.eq("GET", op(IOMMU_VFIO_IOAS_GET, 0, 0), Ok(a))?;
    e.ok("CLEAR", op(IOMMU_VFIO_IOAS_CLEAR, 0, 0))?;
    e.err(
        "GET after CLEAR",
        op(IOMMU_VFIO_IOAS_GET, 0, 0),
        Errno::ENODEV,
    )?;
    e.ok("SET again", op(IOMMU_VFIO_IOAS_SET, a, 0))?;
    e.ok("destroy the IOAS", e.ctx.destroy(a))?;
    e.err(
        "GET after destroy",
        op(IOMMU_VFIO_IOAS_GET, 0, 0),
        Errno::ENODEV,
    )
}
