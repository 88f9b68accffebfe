//! Emulated devices in an emulated VFIO group with a type1 container (the legacy path): the
//! rules of opening a device through its group, and DMA translated by the container's domain.

mod common;

use std::sync::Arc;

use common::*;
use vfio_passthrough::emulated_device::EmulatedVfioDevice;
use vfio_passthrough::emulated_device::vfio_core::SharedMemory;
use vfio_passthrough::errno::Errno;
use vfio_passthrough::host::emulated::type1::{EmulatedGroup, GroupIommu};
use vfio_passthrough::host::emulated::{EmulatedHost, HostConfig};
use vfio_passthrough::host::iommufd::Iommufd;
use vfio_passthrough::host::type1::{
    Type1Container, Type1DmaMap, Type1DmaUnmap, VFIO_TYPE1V2_IOMMU,
};
use vfio_passthrough::vfio::{MmapArea, VfioDevice};

const NAME: &str = "0000:00:04.0";
/// Guest RAM at `BASE` in the container: ring, source, destination, completion.
const BASE: u64 = 0x100_0000;
const RAM: u64 = 0x10_0000;
const RING_AT: u64 = BASE;
const SRC_AT: u64 = BASE + 0x1_0000;
const DST_AT: u64 = BASE + 0x2_0000;
const COMP_AT: u64 = BASE + 0x3_0000;

/// A host, a container, a group holding a DMA engine, and guest RAM (a memfd, mapped into the
/// process for `MAP_DMA` and reached by the test through `pread`/`pwrite`). Field order is
/// drop order: the container's users go before the RAM mapping.
struct Machine {
    group: Arc<EmulatedGroup>,
    container: Box<dyn Type1Container>,
    device: Arc<EmulatedVfioDevice>,
    host: Arc<EmulatedHost>,
    ram_map: MmapArea,
    ram: SharedMemory,
}

fn machine() -> Machine {
    let host = EmulatedHost::new(HostConfig::unprivileged(64 << 20));
    let container: Box<dyn Type1Container> = Box::new(host.open_type1());
    let group = EmulatedGroup::new(12, GroupIommu::qemu_intel_iommu());
    let device = Arc::new(build("emulated:dma-engine"));
    group.add_device(NAME, device.clone()).unwrap();
    let ram = SharedMemory::new("guest-ram", RAM).unwrap();
    let ram_map = ram.map(0, RAM, true).unwrap();
    Machine {
        group,
        container,
        device,
        host,
        ram_map,
        ram,
    }
}

impl Machine {
    /// The group in the container, type1v2 set, all of RAM mapped.
    fn ready(&self) {
        self.group.set_container(self.container.as_ref()).unwrap();
        self.container.set_iommu(VFIO_TYPE1V2_IOMMU).unwrap();
        let map = Type1DmaMap::new(self.ram_map.as_ptr() as u64, BASE, RAM);
        // SAFETY: the RAM mapping outlives the container's users (field order), and the test
        // reaches the memory only through the memfd (pread/pwrite), never through references.
        unsafe { self.container.map_dma(&map) }.unwrap();
    }

    fn ram_write(&self, iova: u64, data: &[u8]) {
        self.ram.write(iova - BASE, data).unwrap();
    }

    fn ram_read(&self, iova: u64, len: usize) -> Vec<u8> {
        let mut b = vec![0u8; len];
        self.ram.read(iova - BASE, &mut b).unwrap();
        b
    }

    fn unmap(&self, iova: u64, size: u64) -> u64 {
        let mut req = Type1DmaUnmap::new(iova, size);
        self.container.unmap_dma(&mut req, &mut []).unwrap();
        req.size
    }
}

/// Programs the engine's ring at `RING_AT` and enables it.
fn start(dev: &dyn VfioDevice) {
    enable_bus_master(dev);
    write32(dev, 0, REG_QUEUE_BASE, RING_AT as u32);
    write32(dev, 0, REG_QUEUE_BASE + 4, 0);
    write32(dev, 0, REG_QUEUE_SIZE, 16);
    write32(dev, 0, REG_CTRL, CTRL_ENABLE);
}

fn submit(m: &Machine, dev: &dyn VfioDevice, index: u32, desc: Desc) {
    m.ram_write(RING_AT + u64::from(index) * 64, &desc.bytes());
    write32(dev, 0, REG_QUEUE_TAIL, index + 1);
}

#[test]
fn a_copy_lands_through_the_container_and_an_unmapped_destination_faults() {
    let m = machine();
    m.ready();
    let dev = m.group.device(NAME).unwrap();
    start(dev.as_ref());
    let data: Vec<u8> = (0..0x3000u32).map(|i| (i % 253) as u8).collect();
    m.ram_write(SRC_AT, &data);
    let copy = Desc {
        op: OP_COPY,
        src: SRC_AT,
        dst: DST_AT,
        len: data.len() as u64,
        completion: COMP_AT,
        ..Desc::default()
    };
    submit(&m, dev.as_ref(), 0, copy);
    assert_eq!(read32(dev.as_ref(), 0, REG_STATUS), 0, "no error");
    assert_eq!(m.ram_read(DST_AT, data.len()), data);
    assert_eq!(m.ram_read(COMP_AT, 4), ST_SUCCESS.to_le_bytes());

    // Take the destination's middle page out of the container, as a guest unplugging that
    // RAM: the copy writes the page before it, faults there, and leaves the page after it.
    m.ram_write(DST_AT, &[0x5a; 0x3000]);
    assert_eq!(m.unmap(BASE, RAM), RAM);
    let va = m.ram_map.as_ptr() as u64;
    let hole = DST_AT + 0x1000;
    let below = Type1DmaMap::new(va, BASE, hole - BASE);
    let above = Type1DmaMap::new(
        va + (hole + 0x1000 - BASE),
        hole + 0x1000,
        BASE + RAM - hole - 0x1000,
    );
    // SAFETY: as in `ready`.
    unsafe { m.container.map_dma(&below) }.unwrap();
    // SAFETY: as in `ready`.
    unsafe { m.container.map_dma(&above) }.unwrap();
    let reversed: Vec<u8> = data.iter().rev().copied().collect();
    m.ram_write(SRC_AT, &reversed);
    submit(&m, dev.as_ref(), 1, copy);
    assert_eq!(read32(dev.as_ref(), 0, REG_ERROR_CODE), ST_DST_FAULT);
    assert_eq!(read32(dev.as_ref(), 0, REG_FAULT_ADDR), hole as u32);
    assert_eq!(m.ram_read(DST_AT, 0x1000), reversed[..0x1000].to_vec());
    assert_eq!(m.ram_read(DST_AT + 0x2000, 0x1000), vec![0x5a; 0x1000]);
    let record = m.ram_read(COMP_AT, 16);
    assert_eq!(record[..4], ST_DST_FAULT.to_le_bytes());
    assert_eq!(
        record[8..],
        0x1000u64.to_le_bytes(),
        "bytes done before the fault"
    );
}

#[test]
fn a_device_reads_through_its_groups_domain_only() {
    let m = machine();
    m.ready();
    let dev = m.group.device(NAME).unwrap();
    start(dev.as_ref());
    // The ring itself is read through the container: with the ring unmapped the engine
    // faults on the descriptor.
    m.unmap(BASE, RAM);
    write32(dev.as_ref(), 0, REG_QUEUE_TAIL, 1);
    assert_eq!(read32(dev.as_ref(), 0, REG_ERROR_CODE), ST_DESC_FAULT);
    assert_eq!(read32(dev.as_ref(), 0, REG_FAULT_ADDR), RING_AT as u32);
    // Nothing stays pinned once the container has no mapping.
    assert!(m.host.nothing_pinned());
}

#[test]
fn opening_through_the_group_needs_a_container_with_an_iommu() {
    let m = machine();
    assert_eq!(m.group.device("0000:00:05.0").err(), Some(Errno::ENODEV));
    assert_eq!(
        m.group.device(NAME).err(),
        Some(Errno::EINVAL),
        "no container"
    );
    m.group.set_container(m.container.as_ref()).unwrap();
    assert_eq!(m.group.device(NAME).err(), Some(Errno::EINVAL), "no IOMMU");
    m.container.set_iommu(VFIO_TYPE1V2_IOMMU).unwrap();
    let first = m.group.device(NAME).unwrap();
    let second = m.group.device(NAME).unwrap();
    assert_eq!(m.group.unset_container(), Err(Errno::EBUSY));
    drop(first);
    assert_eq!(m.group.unset_container(), Err(Errno::EBUSY));
    drop(second);
    m.group.unset_container().unwrap();
    assert_eq!(m.group.unset_container(), Err(Errno::EINVAL));
}

#[test]
fn a_group_opened_device_does_not_bind_and_its_cdev_is_busy() {
    let m = machine();
    m.ready();
    let dev = m.group.device(NAME).unwrap();
    let ctx: Arc<dyn Iommufd> = Arc::new(m.host.open_iommufd());
    assert_eq!(dev.bind_iommufd(&ctx), Err(Errno::EINVAL));
    assert_eq!(dev.attach_pt(1, None), Err(Errno::ENOTTY));
    assert_eq!(dev.detach_pt(None), Err(Errno::ENOTTY));
    // The same device through its cdev, while its group file is open.
    assert_eq!(m.device.bind_iommufd(&ctx), Err(Errno::EBUSY));
    // Everything else is the device itself.
    assert_eq!(
        read32(dev.as_ref(), 0, REG_ID),
        read32(m.device.as_ref(), 0, REG_ID)
    );
    drop(dev);
    let Machine { group, device, .. } = m;
    drop(group);
    device.bind_iommufd(&ctx).unwrap();
}

#[test]
fn a_device_bound_through_its_cdev_cannot_join_a_group() {
    let host = EmulatedHost::new(HostConfig::unprivileged(1 << 20));
    let ctx: Arc<dyn Iommufd> = Arc::new(host.open_iommufd());
    let device = Arc::new(build("emulated:dma-engine"));
    device.bind_iommufd(&ctx).unwrap();
    let group = EmulatedGroup::new(3, GroupIommu::default());
    assert_eq!(group.add_device(NAME, device.clone()), Err(Errno::EBUSY));
    let other = Arc::new(build("emulated:dma-engine"));
    group.add_device(NAME, other.clone()).unwrap();
    assert_eq!(group.add_device(NAME, other), Err(Errno::EEXIST));
    let second = EmulatedGroup::new(4, GroupIommu::default());
    let third = Arc::new(build("emulated:dma-engine"));
    group.add_device("0000:00:06.0", third.clone()).unwrap();
    assert_eq!(
        second.add_device(NAME, third),
        Err(Errno::EBUSY),
        "already in a group"
    );
}
