//! Attaching PASIDs of an emulated device (`VFIO_DEVICE_ATTACH_IOMMUFD_PT` with a PASID,
//! 6.15): the `IOMMU_HWPT_ALLOC_PASID` rules between the RID and its PASIDs, the IOMMU's
//! PASID width, replace and detach, and kernels without the flag.

mod common;

use std::sync::Arc;

use common::*;
use vfio_passthrough::errno::Errno;
use vfio_passthrough::host::dma::DmaFaultReason;
use vfio_passthrough::host::emulated::{
    EmulatedHost, FaultStage, HostConfig, IommuProfile, KernelVersion, VtdIommu,
};
use vfio_passthrough::host::iommufd::Iommufd;
use vfio_passthrough::host::iommufd::uapi::*;
use vfio_passthrough::vfio::VfioDevice;

struct Ctx {
    ctx: Arc<dyn Iommufd>,
    ioas: u32,
}

fn ctx(kernel: KernelVersion) -> Ctx {
    let host = EmulatedHost::new(HostConfig::unprivileged(16 << 20).with_kernel(kernel));
    let ctx: Arc<dyn Iommufd> = Arc::new(host.open_iommufd());
    let mut alloc = IoasAlloc::default();
    ctx.ioas_alloc(&mut alloc).unwrap();
    Ctx {
        ctx,
        ioas: alloc.out_ioas_id,
    }
}

fn paging(c: &Ctx, dev_id: u32, flags: u32) -> Result<u32, Errno> {
    let mut req = HwptAlloc {
        flags,
        dev_id,
        pt_id: c.ioas,
        ..Default::default()
    };
    c.ctx.hwpt_alloc(&mut req, &[])?;
    Ok(req.out_hwpt_id)
}

fn nested(c: &Ctx, dev_id: u32, parent: u32, flags: u32) -> Result<u32, Errno> {
    let data = HwptVtdS1 {
        flags: 0,
        pgtbl_addr: 0x10_0000,
        addr_width: 48,
        reserved: 0,
    }
    .to_bytes();
    let mut req = HwptAlloc {
        flags,
        dev_id,
        pt_id: parent,
        data_type: IOMMU_HWPT_DATA_VTD_S1,
        ..Default::default()
    };
    c.ctx.hwpt_alloc(&mut req, &data)?;
    Ok(req.out_hwpt_id)
}

#[test]
fn pasids_attach_only_to_alloc_pasid_hwpts_next_to_an_alloc_pasid_rid() {
    let c = ctx(KernelVersion::NEWEST);
    let dev = build("emulated:dma-engine");
    let dev_id = dev.bind_iommufd(&c.ctx).unwrap();
    let plain = paging(&c, dev_id, IOMMU_HWPT_ALLOC_NEST_PARENT).unwrap();
    let parent = paging(
        &c,
        dev_id,
        IOMMU_HWPT_ALLOC_NEST_PARENT | IOMMU_HWPT_ALLOC_PASID,
    )
    .unwrap();
    let plain_nested = nested(&c, dev_id, parent, 0).unwrap();
    let pasid_nested = nested(&c, dev_id, parent, IOMMU_HWPT_ALLOC_PASID).unwrap();

    assert_eq!(dev.attach_pt(plain, Some(3)), Err(Errno::EINVAL));
    assert_eq!(dev.attach_pt(plain_nested, Some(3)), Err(Errno::EINVAL));
    assert_eq!(
        dev.attach_pt(c.ioas, Some(3)),
        Err(Errno::EINVAL),
        "an IOAS"
    );
    assert_eq!(dev.attach_pt(999, Some(3)), Err(Errno::ENOENT));
    assert_eq!(dev.attach_pt(pasid_nested, Some(3)), Ok(pasid_nested));
    assert_eq!(
        dev.attach_pt(pasid_nested, Some(3)),
        Ok(pasid_nested),
        "same HWPT again"
    );

    // With a PASID attached the RID may only use PASID-compatible HWPTs.
    assert_eq!(dev.attach_pt(plain, None), Err(Errno::EINVAL));
    assert_eq!(dev.attach_pt(parent, None), Ok(parent));
    assert_eq!(dev.attach_pt(plain, None), Err(Errno::EINVAL), "replace");
    dev.detach_pt(Some(3)).unwrap();
    dev.detach_pt(Some(3)).unwrap();
    assert_eq!(dev.attach_pt(plain, None), Ok(plain));
    // ... and a RID on a HWPT without the flag keeps PASIDs off.
    assert_eq!(dev.attach_pt(pasid_nested, Some(3)), Err(Errno::EINVAL));
    assert_eq!(c.ctx.destroy(pasid_nested), Ok(()), "no PASID holds it");
}

#[test]
fn pasids_must_fit_the_iommus_width_and_wider_requests_are_blocked() {
    let c = ctx(KernelVersion::NEWEST);
    let dev = build("emulated:dma-engine");
    dev.set_iommu_profile(IommuProfile::Vtd(VtdIommu {
        max_pasid_log2: 4,
        ..VtdIommu::default()
    }));
    let dev_id = dev.bind_iommufd(&c.ctx).unwrap();
    let hwpt = paging(&c, dev_id, IOMMU_HWPT_ALLOC_PASID).unwrap();
    dev.attach_pt(hwpt, None).unwrap();
    assert_eq!(
        dev.attach_pt(hwpt, Some(0)),
        Err(Errno::EINVAL),
        "the RID's"
    );
    assert_eq!(dev.attach_pt(hwpt, Some(16)), Err(Errno::EINVAL));
    assert_eq!(dev.attach_pt(hwpt, Some(15)), Ok(hwpt));

    // A request tagged with PASID 16 cannot name an attachment: blocked, even though the
    // device's descriptor ring (requests without PASID) translates.
    let ram =
        vfio_passthrough::emulated_device::vfio_core::SharedMemory::new("ram", 0x10000).unwrap();
    let mut map = IoasMapFile {
        flags: IOMMU_IOAS_MAP_FIXED_IOVA | IOMMU_IOAS_MAP_READABLE | IOMMU_IOAS_MAP_WRITEABLE,
        ioas_id: c.ioas,
        fd: std::os::fd::AsRawFd::as_raw_fd(&ram.fd()),
        start: 0,
        length: 0x10000,
        iova: 0x10_0000,
    };
    c.ctx.ioas_map_file(&mut map).unwrap();
    enable_bus_master(&dev);
    write32(&dev, 0, REG_QUEUE_BASE, 0x10_0000);
    write32(&dev, 0, REG_QUEUE_SIZE, 16);
    write32(&dev, 0, REG_CTRL, CTRL_ENABLE);
    let desc = Desc {
        op: OP_COPY,
        pasid: PASID_VALID | 16,
        src: 0x10_1000,
        dst: 0x10_2000,
        len: 8,
        ..Desc::default()
    };
    ram.write(0, &desc.bytes()).unwrap();
    write32(&dev, 0, REG_QUEUE_TAIL, 1);
    assert_eq!(read32(&dev, 0, REG_ERROR_CODE), ST_SRC_FAULT);
    let record = *dev.dma_faults().last().unwrap();
    assert_eq!(record.stage, FaultStage::Blocked);
    assert_eq!(
        (record.fault.pasid, record.fault.reason),
        (Some(16), DmaFaultReason::Blocked)
    );
}

#[test]
fn kernels_before_6_15_have_no_pasid_attach() {
    let c = ctx(KernelVersion::V6_12);
    let dev = build("emulated:dma-engine");
    let dev_id = dev.bind_iommufd(&c.ctx).unwrap();
    assert_eq!(
        paging(&c, dev_id, IOMMU_HWPT_ALLOC_PASID),
        Err(Errno::EOPNOTSUPP)
    );
    let parent = paging(&c, dev_id, IOMMU_HWPT_ALLOC_NEST_PARENT).unwrap();
    assert_eq!(
        nested(&c, dev_id, parent, IOMMU_HWPT_ALLOC_PASID),
        Err(Errno::EOPNOTSUPP)
    );
    assert_eq!(dev.attach_pt(parent, Some(3)), Err(Errno::EINVAL));
    assert_eq!(dev.detach_pt(Some(3)), Err(Errno::EINVAL));
    assert_eq!(dev.attach_pt(parent, None), Ok(parent));
    assert_eq!(dev.detach_pt(None), Ok(()));
}

#[test]
fn a_device_without_a_pasid_capability_reports_and_gets_no_pasids() {
    let c = ctx(KernelVersion::NEWEST);
    let hw_info_pasid = |spec: &str| {
        let dev = build(spec);
        let dev_id = dev.bind_iommufd(&c.ctx).unwrap();
        let mut info = HwInfo {
            dev_id,
            ..Default::default()
        };
        c.ctx.get_hw_info(&mut info, &mut [0u8; 64]).unwrap();
        (dev, dev_id, info.out_max_pasid_log2)
    };
    let (_with, _, width) = hw_info_pasid("emulated:dma-engine");
    assert_eq!(
        width, 20,
        "the DMA engine's PASID capability is 20 bits wide"
    );

    let (without, dev_id, width) = hw_info_pasid("emulated:dma-engine,pasid=off");
    assert_eq!(width, 0, "no PASID capability: the kernel reports 0");
    let hwpt = paging(&c, dev_id, IOMMU_HWPT_ALLOC_PASID).unwrap();
    without.attach_pt(hwpt, None).unwrap();
    assert_eq!(without.attach_pt(hwpt, Some(1)), Err(Errno::EINVAL));
}
