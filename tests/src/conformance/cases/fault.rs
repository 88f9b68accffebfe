//! Fault queues (6.11): the object, its fd, and I/O page faults delivered through it.

use std::io::{Read, Write};

use vfio_passthrough::errno::Errno;
use vfio_passthrough::host::iommufd::uapi::*;
use vfio_passthrough::host::iommufd::{IOMMU_HWPT_DATA_SELFTEST, IOMMU_TEST_IOTLB_DEFAULT};

use crate::conformance::case::Fail;
use crate::conformance::env::Env;

pub(super) fn fault_queue_alloc_with_flags_is_eopnotsupp(e: &mut Env) -> Result<(), Fail> {
    let mut f = FaultQueueAlloc {
        flags: 1,
        ..Default::default()
    };
    e.err("flags", e.ctx.fault_queue_alloc(&mut f), Errno::EOPNOTSUPP)?;
    e.eq("no id used", e.ioas()?, 1)
}

pub(super) fn a_fault_object_is_busy_while_its_fd_is_open(e: &mut Env) -> Result<(), Fail> {
    let mut f = FaultQueueAlloc::default();
    let fd = e.ok("FAULT_QUEUE_ALLOC", e.ctx.fault_queue_alloc(&mut f))?;
    e.err(
        "destroy with the fd open",
        e.ctx.destroy(f.out_fault_id),
        Errno::EBUSY,
    )?;
    drop(fd);
    e.ok("destroy after close", e.ctx.destroy(f.out_fault_id))
}

pub(super) fn iopfs_reach_the_fault_fd_of_the_attached_hwpt(e: &mut Env) -> Result<(), Fail> {
    let a = e.ioas()?;
    let d = e.mock(a)?;
    let dev = d.out_idev_id;
    let parent = e.ok(
        "NEST_PARENT HWPT",
        e.hwpt(IOMMU_HWPT_ALLOC_NEST_PARENT, dev, a, 0, &[]),
    )?;
    let mut f = FaultQueueAlloc::default();
    let mut fd = e.ok("FAULT_QUEUE_ALLOC", e.ctx.fault_queue_alloc(&mut f))?;
    let mut req = HwptAlloc {
        flags: IOMMU_HWPT_FAULT_ID_VALID,
        dev_id: dev,
        pt_id: parent,
        data_type: IOMMU_HWPT_DATA_SELFTEST,
        fault_id: a,
        ..Default::default()
    };
    let data = IOMMU_TEST_IOTLB_DEFAULT.to_le_bytes();
    e.err(
        "fault_id of an IOAS",
        e.ctx.hwpt_alloc(&mut req, &data),
        Errno::ENOENT,
    )?;
    req.fault_id = f.out_fault_id;
    e.ok(
        "nested HWPT with the fault queue",
        e.ctx.hwpt_alloc(&mut req, &data),
    )?;
    let h = req.out_hwpt_id;
    e.err(
        "the fault object is held by the HWPT",
        e.ctx.destroy(f.out_fault_id),
        Errno::EBUSY,
    )?;
    e.ok("attach", e.ctx.mock_domain_replace(d.out_stdev_id, h))?;
    e.err(
        "IOPF from a missing device",
        e.ctx.mock_trigger_iopf(a, 0, 0, 0, 0),
        Errno::ENOENT,
    )?;
    e.ok(
        "IOPF",
        e.ctx
            .mock_trigger_iopf(dev, 0x10, 0x2, IOMMU_PGFAULT_PERM_READ, 0xdead_b000),
    )?;
    let mut rec = [0u8; HwptPgfault::SIZE];
    e.ok(
        "read the record",
        fd.read_exact(&mut rec).map_err(|e| Errno::from_io(&e)),
    )?;
    let got = HwptPgfault::from_bytes(&rec).ok_or_else(|| Fail("short record".into()))?;
    e.eq(
        "record",
        (
            got.flags, got.dev_id, got.pasid, got.grpid, got.perm, got.addr, got.length,
        ),
        (
            IOMMU_PGFAULT_FLAGS_PASID_VALID | IOMMU_PGFAULT_FLAGS_LAST_PAGE,
            dev,
            0x10,
            0x2,
            IOMMU_PGFAULT_PERM_READ,
            0xdead_b000,
            0,
        ),
    )?;
    let resp = HwptPageResponse {
        cookie: got.cookie,
        code: IOMMUFD_PAGE_RESP_SUCCESS,
    };
    e.ok(
        "respond",
        fd.write_all(&resp.to_bytes())
            .map_err(|e| Errno::from_io(&e)),
    )?;
    e.ok("detach", e.ctx.mock_domain_replace(d.out_stdev_id, a))?;
    e.ok("destroy the HWPT", e.ctx.destroy(h))?;
    drop(fd);
    e.ok("destroy the fault object", e.ctx.destroy(f.out_fault_id))
}
