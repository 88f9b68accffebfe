//! `IOMMU_HWPT_ALLOC` (paging and nested), attach and replace of mock devices, automatic
//! domains.

use vfio_passthrough::errno::Errno;
use vfio_passthrough::host::iommufd::uapi::*;
use vfio_passthrough::host::iommufd::{
    IOMMU_HWPT_DATA_SELFTEST, IOMMU_TEST_IOTLB_DEFAULT, MOCK_APERTURE_START,
    MOCK_FLAGS_DEVICE_NO_DIRTY,
};

use crate::conformance::case::Fail;
use crate::conformance::env::Env;

const P: u64 = 4096;
const BASE: u64 = MOCK_APERTURE_START;

pub(super) fn hwpt_alloc_checks_its_fields_first(e: &mut Env) -> Result<(), Fail> {
    let a = e.ioas()?;
    let d = e.mock(a)?;
    let dev = d.out_idev_id;
    let mut req = HwptAlloc {
        dev_id: dev,
        pt_id: a,
        reserved: 1,
        ..Default::default()
    };
    e.err(
        "__reserved",
        e.ctx.hwpt_alloc(&mut req, &[]),
        Errno::EOPNOTSUPP,
    )?;
    e.err(
        "data without a type",
        e.hwpt(0, dev, a, IOMMU_HWPT_DATA_NONE, &[0; 4]),
        Errno::EINVAL,
    )?;
    e.err(
        "a type without data",
        e.hwpt(0, dev, a, IOMMU_HWPT_DATA_SELFTEST, &[]),
        Errno::EINVAL,
    )?;
    e.err("dev_id of an IOAS", e.hwpt(0, a, a, 0, &[]), Errno::ENOENT)?;
    e.err(
        "pt_id of a device",
        e.hwpt(0, dev, dev, 0, &[]),
        Errno::EINVAL,
    )?;
    e.err("pt_id unused", e.hwpt(0, dev, 99, 0, &[]), Errno::EINVAL)?;
    e.err(
        "unknown flag",
        e.hwpt(1 << 5, dev, a, 0, &[]),
        Errno::EOPNOTSUPP,
    )?;
    e.err(
        "driver data on a paging HWPT",
        e.hwpt(0, dev, a, IOMMU_HWPT_DATA_SELFTEST, &[0; 4]),
        Errno::EOPNOTSUPP,
    )?;
    e.eq("nothing allocated", e.ioas()?, d.out_hwpt_id + 1)
}

pub(super) fn fault_id_on_a_paging_hwpt_is_eopnotsupp(e: &mut Env) -> Result<(), Fail> {
    let a = e.ioas()?;
    let d = e.mock(a)?;
    let mut f = FaultQueueAlloc::default();
    let _fd = e.ok("FAULT_QUEUE_ALLOC", e.ctx.fault_queue_alloc(&mut f))?;
    let mut req = HwptAlloc {
        flags: IOMMU_HWPT_FAULT_ID_VALID,
        dev_id: d.out_idev_id,
        pt_id: a,
        fault_id: f.out_fault_id,
        ..Default::default()
    };
    e.err(
        "FAULT_ID_VALID",
        e.ctx.hwpt_alloc(&mut req, &[]),
        Errno::EOPNOTSUPP,
    )?;
    req.flags |= IOMMU_HWPT_ALLOC_NEST_PARENT;
    e.err(
        "with NEST_PARENT",
        e.ctx.hwpt_alloc(&mut req, &[]),
        Errno::EOPNOTSUPP,
    )
}

pub(super) fn dirty_tracking_hwpt_needs_a_dirty_capable_iommu(e: &mut Env) -> Result<(), Fail> {
    let a = e.ioas()?;
    let plain = e.mock(a)?;
    let h = e.ok(
        "DIRTY_TRACKING HWPT",
        e.hwpt(
            IOMMU_HWPT_ALLOC_DIRTY_TRACKING,
            plain.out_idev_id,
            a,
            0,
            &[],
        ),
    )?;
    e.ok("a plain mock device attaches to it", e.mock_flags(h, 0))?;
    e.err(
        "a NO_DIRTY mock device does not",
        e.mock_flags(h, MOCK_FLAGS_DEVICE_NO_DIRTY),
        Errno::EINVAL,
    )?;
    let b = e.ioas()?;
    let nd = e.ok(
        "NO_DIRTY device",
        e.mock_flags(b, MOCK_FLAGS_DEVICE_NO_DIRTY),
    )?;
    e.err(
        "DIRTY_TRACKING HWPT for it",
        e.hwpt(IOMMU_HWPT_ALLOC_DIRTY_TRACKING, nd.out_idev_id, b, 0, &[]),
        Errno::EOPNOTSUPP,
    )
}

pub(super) fn an_allocated_hwpt_is_filled_though_not_attached(e: &mut Env) -> Result<(), Fail> {
    let buf = e.buffer(2);
    let other = e.ioas()?;
    let d = e.mock(other)?;
    let a = e.ioas()?;
    e.ok("map", e.map_fixed(a, buf.addr, 2 * P, BASE))?;
    e.ok("not pinned yet", e.ctx.mock_check_refs(buf.addr, 2 * P, 0))?;
    let h = e.ok("HWPT_ALLOC", e.hwpt(0, d.out_idev_id, a, 0, &[]))?;
    e.ok(
        "pinned by the HWPT",
        e.ctx.mock_check_refs(buf.addr, 2 * P, 1),
    )?;
    e.ok(
        "mapped in it",
        e.ctx.mock_check_map(h, BASE, 2 * P, buf.addr),
    )?;
    e.ok("destroy it", e.ctx.destroy(h))?;
    e.ok("unpinned", e.ctx.mock_check_refs(buf.addr, 2 * P, 0))?;
    e.expect_exactly(a, None, &[(BASE, 2 * P, buf.addr)])
}

pub(super) fn mock_devices_attach_to_a_hwpt_directly(e: &mut Env) -> Result<(), Fail> {
    let a = e.ioas()?;
    let d = e.mock(a)?;
    let d2 = e.ok(
        "attach to the first device's HWPT",
        e.mock_flags(d.out_hwpt_id, 0),
    )?;
    e.eq("same HWPT", d2.out_hwpt_id, d.out_hwpt_id)?;
    let d3 = e.mock(a)?;
    e.eq(
        "a third device on the IOAS reuses the automatic HWPT",
        d3.out_hwpt_id,
        d.out_hwpt_id,
    )?;
    let nd = e.ok(
        "NO_DIRTY device",
        e.mock_flags(a, MOCK_FLAGS_DEVICE_NO_DIRTY),
    )?;
    e.eq(
        "it shares the automatic HWPT too",
        nd.out_hwpt_id,
        d.out_hwpt_id,
    )?;
    e.err(
        "attach to the IOAS-less id 0",
        e.mock_flags(0, 0),
        Errno::ENOENT,
    )?;
    e.err(
        "attach to a DEVICE id",
        e.mock_flags(d.out_idev_id, 0),
        Errno::EINVAL,
    )?;
    for s in [d.out_stdev_id, d2.out_stdev_id, d3.out_stdev_id] {
        e.ok("destroy", e.ctx.destroy(s))?;
    }
    e.err(
        "automatic HWPT kept by the last device",
        e.ctx.destroy(d.out_hwpt_id),
        Errno::EBUSY,
    )?;
    e.ok("destroy the last", e.ctx.destroy(nd.out_stdev_id))?;
    e.err(
        "automatic HWPT gone",
        e.ctx.destroy(d.out_hwpt_id),
        Errno::ENOENT,
    )
}

pub(super) fn replace_moves_a_device_between_hwpts_and_ioases(e: &mut Env) -> Result<(), Fail> {
    let buf = e.buffer(1);
    let a = e.ioas()?;
    let b = e.ioas()?;
    e.ok("map in b", e.map_fixed(b, buf.addr, P, BASE))?;
    let d = e.mock(a)?;
    let h = e.ok("HWPT on a", e.hwpt(0, d.out_idev_id, a, 0, &[]))?;
    e.eq(
        "replace to the HWPT",
        e.ctx.mock_domain_replace(d.out_stdev_id, h),
        Ok(h),
    )?;
    e.err(
        "old automatic HWPT destroyed",
        e.ctx.destroy(d.out_hwpt_id),
        Errno::ENOENT,
    )?;
    e.eq(
        "replace to the same HWPT",
        e.ctx.mock_domain_replace(d.out_stdev_id, h),
        Ok(h),
    )?;
    let hb = e.ok(
        "replace to IOAS b",
        e.ctx.mock_domain_replace(d.out_stdev_id, b),
    )?;
    e.ok(
        "b's memory is pinned now",
        e.ctx.mock_check_refs(buf.addr, P, 1),
    )?;
    e.ok("and mapped", e.ctx.mock_check_map(hb, BASE, P, buf.addr))?;
    e.ok("the HWPT on a is free", e.ctx.destroy(h))?;
    e.err(
        "replace of a missing selftest object",
        e.ctx.mock_domain_replace(99, a),
        Errno::ENOENT,
    )?;
    e.err(
        "replace to a missing object",
        e.ctx.mock_domain_replace(d.out_stdev_id, 99),
        Errno::ENOENT,
    )?;
    e.err(
        "replace to a device",
        e.ctx.mock_domain_replace(d.out_stdev_id, d.out_idev_id),
        Errno::EINVAL,
    )?;
    e.expect_exactly(b, Some(hb), &[(BASE, P, buf.addr)])
}

pub(super) fn nested_hwpt_allocation_checks(e: &mut Env) -> Result<(), Fail> {
    let a = e.ioas()?;
    let d = e.mock(a)?;
    let dev = d.out_idev_id;
    let parent = e.ok(
        "NEST_PARENT HWPT",
        e.hwpt(IOMMU_HWPT_ALLOC_NEST_PARENT, dev, a, 0, &[]),
    )?;
    let plain = e.ok("plain HWPT", e.hwpt(0, dev, a, 0, &[]))?;
    let data = IOMMU_TEST_IOTLB_DEFAULT.to_le_bytes();
    let sel = IOMMU_HWPT_DATA_SELFTEST;
    e.err(
        "type NONE with data",
        e.hwpt(0, dev, parent, IOMMU_HWPT_DATA_NONE, &data),
        Errno::EINVAL,
    )?;
    e.err(
        "unknown type",
        e.hwpt(0, dev, parent, sel + 1, &data),
        Errno::EOPNOTSUPP,
    )?;
    e.err(
        "data too short",
        e.hwpt(0, dev, parent, sel, &data[..3]),
        Errno::EINVAL,
    )?;
    e.err(
        "data too long",
        e.hwpt(0, dev, parent, sel, &[0; 8]),
        Errno::EINVAL,
    )?;
    e.err(
        "NEST_PARENT on a nested HWPT",
        e.hwpt(IOMMU_HWPT_ALLOC_NEST_PARENT, dev, parent, sel, &data),
        Errno::EOPNOTSUPP,
    )?;
    e.err(
        "parent without NEST_PARENT",
        e.hwpt(0, dev, plain, sel, &data),
        Errno::EINVAL,
    )?;
    e.err(
        "an automatic parent",
        e.hwpt(0, dev, d.out_hwpt_id, sel, &data),
        Errno::EINVAL,
    )?;
    let n = e.ok("nested HWPT", e.hwpt(0, dev, parent, sel, &data))?;
    e.err(
        "nested over nested",
        e.hwpt(0, dev, n, sel, &data),
        Errno::EINVAL,
    )?;
    let mut req = HwptAlloc {
        flags: IOMMU_HWPT_FAULT_ID_VALID,
        dev_id: dev,
        pt_id: parent,
        data_type: sel,
        fault_id: u32::MAX,
        ..Default::default()
    };
    e.err(
        "missing fault object",
        e.ctx.hwpt_alloc(&mut req, &data),
        Errno::ENOENT,
    )?;
    for id in 0..4 {
        e.ok(
            "IOTLB entry seeded",
            e.ctx.mock_check_iotlb(n, id, IOMMU_TEST_IOTLB_DEFAULT),
        )?;
    }
    e.err(
        "IOTLB entry 4",
        e.ctx.mock_check_iotlb(n, 4, IOMMU_TEST_IOTLB_DEFAULT),
        Errno::EINVAL,
    )?;
    e.err(
        "IOTLB of a paging HWPT",
        e.ctx.mock_check_iotlb(parent, 0, 0),
        Errno::ENOENT,
    )?;
    e.eq("failed allocations used no id", e.ioas()?, n + 1)
}

pub(super) fn devices_move_through_nested_hwpts(e: &mut Env) -> Result<(), Fail> {
    let a = e.ioas()?;
    let d = e.mock(a)?;
    let dev = d.out_idev_id;
    let parent = e.ok(
        "NEST_PARENT HWPT",
        e.hwpt(IOMMU_HWPT_ALLOC_NEST_PARENT, dev, a, 0, &[]),
    )?;
    let n0 = e.ok("nested 0", e.nested_mock(0, dev, parent))?;
    let n1 = e.ok("nested 1", e.nested_mock(0, dev, parent))?;
    e.ok(
        "replace to nested 0",
        e.ctx.mock_domain_replace(d.out_stdev_id, n0),
    )?;
    e.err("nested 0 busy", e.ctx.destroy(n0), Errno::EBUSY)?;
    e.ok(
        "replace to nested 1",
        e.ctx.mock_domain_replace(d.out_stdev_id, n1),
    )?;
    e.ok("nested 0 free", e.ctx.destroy(n0))?;
    e.err("nested 1 busy", e.ctx.destroy(n1), Errno::EBUSY)?;
    e.ok("a second device attaches to nested 1", e.mock_flags(n1, 0))?;
    e.ok(
        "replace to the parent",
        e.ctx.mock_domain_replace(d.out_stdev_id, parent),
    )?;
    e.ok(
        "replace back to the IOAS",
        e.ctx.mock_domain_replace(d.out_stdev_id, a),
    )?;
    e.err(
        "parent still used by nested 1",
        e.ctx.destroy(parent),
        Errno::EBUSY,
    )
}
