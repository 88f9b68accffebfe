//! Emulated devices bound to the emulated iommufd: the binding rules, and DMA translated by
//! what the device (or one of its PASIDs) is attached to.

mod common;

use std::any::Any;
use std::fs::File;
use std::os::fd::{AsRawFd, RawFd};
use std::sync::Arc;

use common::*;
use vfio_passthrough::emulated_device::vfio_core::SharedMemory;
use vfio_passthrough::errno::Errno;
use vfio_passthrough::host::emulated::{EmulatedHost, HostConfig};
use vfio_passthrough::host::iommufd::Iommufd;
use vfio_passthrough::host::iommufd::uapi::*;
use vfio_passthrough::vfio::VfioDevice;

/// An iommufd context of another backend (a kernel context would look like this to the
/// emulated device): every call fails, and it is not the emulated host's.
#[derive(Debug)]
struct ForeignIommufd;

impl Iommufd for ForeignIommufd {
    fn destroy(&self, _: u32) -> Result<(), Errno> {
        Err(Errno::ENOTTY)
    }
    fn ioas_alloc(&self, _: &mut IoasAlloc) -> Result<(), Errno> {
        Err(Errno::ENOTTY)
    }
    fn ioas_allow_iovas(&self, _: &IoasAllowIovas, _: &[IovaRange]) -> Result<(), Errno> {
        Err(Errno::ENOTTY)
    }
    fn ioas_iova_ranges(&self, _: &mut IoasIovaRanges, _: &mut [IovaRange]) -> Result<(), Errno> {
        Err(Errno::ENOTTY)
    }
    unsafe fn ioas_map(&self, _: &mut IoasMap) -> Result<(), Errno> {
        Err(Errno::ENOTTY)
    }
    fn ioas_map_file(&self, _: &mut IoasMapFile) -> Result<(), Errno> {
        Err(Errno::ENOTTY)
    }
    fn ioas_copy(&self, _: &mut IoasCopy) -> Result<(), Errno> {
        Err(Errno::ENOTTY)
    }
    fn ioas_unmap(&self, _: &mut IoasUnmap) -> Result<(), Errno> {
        Err(Errno::ENOTTY)
    }
    fn option(&self, _: &mut IommuOption) -> Result<(), Errno> {
        Err(Errno::ENOTTY)
    }
    fn vfio_ioas(&self, _: &mut VfioIoas) -> Result<(), Errno> {
        Err(Errno::ENOTTY)
    }
    fn hwpt_alloc(&self, _: &mut HwptAlloc, _: &[u8]) -> Result<(), Errno> {
        Err(Errno::ENOTTY)
    }
    fn get_hw_info(&self, _: &mut HwInfo, _: &mut [u8]) -> Result<(), Errno> {
        Err(Errno::ENOTTY)
    }
    fn hwpt_set_dirty_tracking(&self, _: &HwptSetDirtyTracking) -> Result<(), Errno> {
        Err(Errno::ENOTTY)
    }
    fn hwpt_get_dirty_bitmap(&self, _: &HwptGetDirtyBitmap, _: &mut [u64]) -> Result<(), Errno> {
        Err(Errno::ENOTTY)
    }
    fn hwpt_invalidate(&self, _: &mut HwptInvalidate, _: &[u8]) -> Result<(), Errno> {
        Err(Errno::ENOTTY)
    }
    fn fault_queue_alloc(&self, _: &mut FaultQueueAlloc) -> Result<File, Errno> {
        Err(Errno::ENOTTY)
    }
    fn raw_fd(&self) -> Option<RawFd> {
        None
    }
    fn as_any(&self) -> &dyn Any {
        self
    }
}

/// Guest RAM: a memfd mapped at `BASE` in an IOAS.
const BASE: u64 = 0x100_0000;
const RAM: u64 = 0x10_0000;
const RING_AT: u64 = BASE;
const SRC_AT: u64 = BASE + 0x1_0000;
const DST_AT: u64 = BASE + 0x2_0000;
const COMP_AT: u64 = BASE + 0x3_0000;

struct Setup {
    ctx: Arc<dyn Iommufd>,
    ram: SharedMemory,
    ioas: u32,
}

fn setup() -> Setup {
    let host = EmulatedHost::new(HostConfig::unprivileged(64 << 20));
    let ctx: Arc<dyn Iommufd> = Arc::new(host.open_iommufd());
    let mut alloc = IoasAlloc::default();
    ctx.ioas_alloc(&mut alloc).unwrap();
    let ram = SharedMemory::new("guest-ram", RAM).unwrap();
    let mut map = IoasMapFile {
        flags: IOMMU_IOAS_MAP_FIXED_IOVA | IOMMU_IOAS_MAP_READABLE | IOMMU_IOAS_MAP_WRITEABLE,
        ioas_id: alloc.out_ioas_id,
        fd: ram.fd().as_raw_fd(),
        start: 0,
        length: RAM,
        iova: BASE,
    };
    ctx.ioas_map_file(&mut map).unwrap();
    Setup {
        ctx,
        ram,
        ioas: alloc.out_ioas_id,
    }
}

fn ram_write(s: &Setup, iova: u64, data: &[u8]) {
    s.ram.write(iova - BASE, data).unwrap();
}

fn ram_read(s: &Setup, iova: u64, len: usize) -> Vec<u8> {
    let mut b = vec![0u8; len];
    s.ram.read(iova - BASE, &mut b).unwrap();
    b
}

/// Programs the engine's ring at `RING_AT` and enables it.
fn start(dev: &dyn VfioDevice) {
    enable_bus_master(dev);
    write32(dev, 0, REG_QUEUE_BASE, RING_AT as u32);
    write32(dev, 0, REG_QUEUE_BASE + 4, 0);
    write32(dev, 0, REG_QUEUE_SIZE, 16);
    write32(dev, 0, REG_CTRL, CTRL_ENABLE);
}

/// Writes `desc` at ring slot `index` and rings the doorbell for it.
fn submit(s: &Setup, dev: &dyn VfioDevice, index: u32, desc: Desc) {
    ram_write(s, RING_AT + u64::from(index) * 64, &desc.bytes());
    write32(dev, 0, REG_QUEUE_TAIL, index + 1);
}

#[test]
fn only_the_emulated_iommufd_binds_and_only_once() {
    let s = setup();
    let dev = build("emulated:dma-engine");
    assert_eq!(dev.attach_pt(s.ioas, None), Err(Errno::EINVAL), "not bound");
    assert_eq!(dev.detach_pt(None), Err(Errno::EINVAL));
    let foreign: Arc<dyn Iommufd> = Arc::new(ForeignIommufd);
    assert_eq!(dev.bind_iommufd(&foreign), Err(Errno::EBADFD));
    let dev_id = dev.bind_iommufd(&s.ctx).unwrap();
    assert_ne!(dev_id, s.ioas, "ids share one space");
    assert_eq!(dev.bind_iommufd(&s.ctx), Err(Errno::EINVAL));
    assert_eq!(dev.attach_pt(999, None), Err(Errno::ENOENT));
    let hwpt = dev.attach_pt(s.ioas, None).unwrap();
    assert_ne!(hwpt, s.ioas, "an automatic paging HWPT");
    dev.detach_pt(None).unwrap();
    dev.detach_pt(None).unwrap();
}

#[test]
fn dma_is_blocked_until_attached_and_translated_by_the_ioas_after() {
    let s = setup();
    let dev = build("emulated:dma-engine");
    dev.bind_iommufd(&s.ctx).unwrap();
    start(&dev);
    let data: Vec<u8> = (0..0x2000u32).map(|i| (i % 251) as u8).collect();
    ram_write(&s, SRC_AT, &data);
    let copy = Desc {
        op: OP_COPY,
        src: SRC_AT,
        dst: DST_AT,
        len: data.len() as u64,
        completion: COMP_AT,
        ..Desc::default()
    };
    submit(&s, &dev, 0, copy);
    assert_eq!(
        read32(&dev, 0, REG_ERROR_CODE),
        ST_DESC_FAULT,
        "bound, not attached"
    );
    assert_eq!(read32(&dev, 0, REG_FAULT_ADDR), RING_AT as u32);

    dev.attach_pt(s.ioas, None).unwrap();
    write32(&dev, 0, REG_STATUS, STATUS_ERROR);
    assert_eq!(read32(&dev, 0, REG_STATUS), 0);
    assert_eq!(ram_read(&s, DST_AT, data.len()), data);
    assert_eq!(ram_read(&s, COMP_AT, 4), ST_SUCCESS.to_le_bytes());

    // An IOVA outside the IOAS's mappings faults where it leaves them.
    submit(
        &s,
        &dev,
        1,
        Desc {
            op: OP_COPY,
            src: BASE + RAM - 0x1000,
            dst: DST_AT,
            len: 0x2000,
            ..Desc::default()
        },
    );
    assert_eq!(read32(&dev, 0, REG_ERROR_CODE), ST_SRC_FAULT);
    assert_eq!(read32(&dev, 0, REG_FAULT_ADDR), (BASE + RAM) as u32);
}

#[test]
fn pasid_requests_translate_through_the_pasids_attachment() {
    const PASID: u32 = 7;
    let s = setup();
    let dev = build("emulated:dma-engine");
    let dev_id = dev.bind_iommufd(&s.ctx).unwrap();
    let auto = dev.attach_pt(s.ioas, None).unwrap();
    assert_eq!(
        dev.attach_pt(auto, Some(PASID)),
        Err(Errno::EINVAL),
        "an automatic HWPT is not PASID-compatible"
    );
    let mut alloc = HwptAlloc {
        flags: IOMMU_HWPT_ALLOC_PASID,
        dev_id,
        pt_id: s.ioas,
        ..Default::default()
    };
    s.ctx.hwpt_alloc(&mut alloc, &[]).unwrap();
    let hwpt = alloc.out_hwpt_id;
    assert_eq!(
        dev.attach_pt(hwpt, Some(PASID)),
        Err(Errno::EINVAL),
        "the RID's HWPT is not PASID-compatible"
    );
    dev.attach_pt(hwpt, None).unwrap();
    start(&dev);
    ram_write(&s, SRC_AT, &[0xab; 64]);
    let tagged = Desc {
        op: OP_COPY,
        pasid: PASID_VALID | PASID,
        src: SRC_AT,
        dst: DST_AT,
        len: 64,
        ..Desc::default()
    };
    // The VT-d-like IOMMU handles PASIDs, so the host enabled them: PASID 7 goes through its
    // own attachment, which does not exist yet.
    submit(&s, &dev, 0, tagged);
    assert_eq!(read32(&dev, 0, REG_ERROR_CODE), ST_SRC_FAULT);
    dev.attach_pt(hwpt, Some(PASID)).unwrap();
    write32(&dev, 0, REG_STATUS, STATUS_ERROR);
    assert_eq!(read32(&dev, 0, REG_STATUS), 0);
    assert_eq!(ram_read(&s, DST_AT, 64), vec![0xab; 64]);

    // Behind the mock IOMMU there are no PASIDs: the device is left with PASID disabled and
    // the same descriptor uses the device's own attachment.
    let mock = build("emulated:dma-engine,iommu=mock");
    mock.bind_iommufd(&s.ctx).unwrap();
    mock.attach_pt(s.ioas, None).unwrap();
    assert_eq!(mock.attach_pt(hwpt, Some(PASID)), Err(Errno::EINVAL));
    start(&mock);
    ram_write(&s, SRC_AT, &[0xcd; 64]);
    submit(&s, &mock, 1, tagged);
    assert_eq!(read32(&mock, 0, REG_STATUS), 0);
    assert_eq!(ram_read(&s, DST_AT, 64), vec![0xcd; 64]);
}
