//! Older kernels: `ENOTTY` for ioctls they lack, `E2BIG` for fields they do not know,
//! `EOPNOTSUPP` for selftest ops they lack.

use vfio_passthrough::errno::Errno;
use vfio_passthrough::host::iommufd::uapi::*;

use crate::conformance::case::Fail;
use crate::conformance::env::Env;

pub(super) fn hwpt_alloc_and_hw_info_are_enotty_before_6_6(e: &mut Env) -> Result<(), Fail> {
    let a = e.ioas()?;
    e.err("HWPT_ALLOC", e.hwpt(0, 1, a, 0, &[]), Errno::ENOTTY)?;
    e.err(
        "GET_HW_INFO",
        e.ctx.get_hw_info(&mut HwInfo::default(), &mut []),
        Errno::ENOTTY,
    )?;
    e.err(
        "MOCK_DOMAIN_FLAGS is unknown",
        e.mock_flags(a, 1),
        Errno::EOPNOTSUPP,
    )?;
    let d = e.mock(a)?;
    e.err(
        "MOCK_DOMAIN_REPLACE is unknown",
        e.ctx.mock_domain_replace(d.out_stdev_id, a),
        Errno::EOPNOTSUPP,
    )
}

pub(super) fn new_hwpt_fields_are_e2big_on_6_6(e: &mut Env) -> Result<(), Fail> {
    let a = e.ioas()?;
    let d = e.mock(a)?;
    let dev = d.out_idev_id;
    e.err("data_type", e.hwpt(0, dev, a, 1, &[]), Errno::E2BIG)?;
    e.err("driver data", e.hwpt(0, dev, a, 0, &[0; 4]), Errno::E2BIG)?;
    e.err(
        "flags",
        e.hwpt(IOMMU_HWPT_ALLOC_NEST_PARENT, dev, a, 0, &[]),
        Errno::EOPNOTSUPP,
    )?;
    let mut info = HwInfo {
        dev_id: dev,
        out_capabilities: 1,
        ..Default::default()
    };
    e.err(
        "hw_info out_capabilities",
        e.ctx.get_hw_info(&mut info, &mut []),
        Errno::E2BIG,
    )?;
    e.err(
        "dirty tracking",
        e.set_dirty(d.out_hwpt_id, true),
        Errno::ENOTTY,
    )?;
    e.ok("a plain HWPT", e.hwpt(0, dev, a, 0, &[]).map(|_| ()))
}

pub(super) fn invalidate_is_enotty_before_6_8(e: &mut Env) -> Result<(), Fail> {
    e.eq(
        "INVALIDATE",
        e.invalidate_mock(1, 0, 8, &[]),
        Err((Errno::ENOTTY, 0)),
    )?;
    let a = e.ioas()?;
    let d = e.mock(a)?;
    e.err(
        "MD_CHECK_IOTLB is unknown",
        e.ctx.mock_check_iotlb(d.out_hwpt_id, 0, 0),
        Errno::EOPNOTSUPP,
    )
}

pub(super) fn fault_queues_are_enotty_before_6_11(e: &mut Env) -> Result<(), Fail> {
    e.err(
        "FAULT_QUEUE_ALLOC",
        e.ctx.fault_queue_alloc(&mut FaultQueueAlloc::default()),
        Errno::ENOTTY,
    )?;
    let a = e.ioas()?;
    let d = e.mock(a)?;
    let mut req = HwptAlloc {
        dev_id: d.out_idev_id,
        pt_id: a,
        fault_id: 1,
        ..Default::default()
    };
    e.err("fault_id", e.ctx.hwpt_alloc(&mut req, &[]), Errno::E2BIG)?;
    e.err(
        "TRIGGER_IOPF is unknown",
        e.ctx.mock_trigger_iopf(d.out_idev_id, 0, 0, 0, 0),
        Errno::EOPNOTSUPP,
    )
}

pub(super) fn map_file_is_enotty_before_6_13(e: &mut Env) -> Result<(), Fail> {
    let a = e.ioas()?;
    let mut req = IoasMapFile {
        flags: IOMMU_IOAS_MAP_READABLE,
        ioas_id: a,
        fd: 0,
        start: 0,
        length: 4096,
        iova: 0,
    };
    e.err("MAP_FILE", e.ctx.ioas_map_file(&mut req), Errno::ENOTTY)
}
