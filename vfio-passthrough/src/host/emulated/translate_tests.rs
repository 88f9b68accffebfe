//! Tests of the translator that only the emulated host can show: a port outliving its device,
//! the mock driver's nested HWPT, accesses racing map and unmap, and the IOMMU's flag updates
//! racing a guest that rewrites the same entry.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use crate::errno::Errno;
use crate::host::dma::DmaFaultReason;
use crate::host::iommufd::uapi::*;
use crate::host::iommufd::{IOMMU_HWPT_DATA_SELFTEST, Iommufd, IommufdDevice};

use viommu::vtd::pte::{ACCESSED, DIRTY, USER, WRITABLE};
use viommu::vtd::{FirstStageTableBuilder, PageSize, PagingMode, Stage2Fault, TableMemory};

use super::test_memory::Mapping;
use super::user_memory;
use super::*;

const RW: u32 = IOMMU_IOAS_MAP_READABLE | IOMMU_IOAS_MAP_WRITEABLE | IOMMU_IOAS_MAP_FIXED_IOVA;
/// Inside the mock aperture.
const IOVA: u64 = 1 << 24;

fn setup(buf: &Mapping, len: u64) -> (EmulatedIommufd, u32) {
    let c = EmulatedHost::new(HostConfig::unprivileged(1 << 24)).open_iommufd();
    let mut a = IoasAlloc::default();
    c.ioas_alloc(&mut a).unwrap();
    map(&c, a.out_ioas_id, buf.addr(), len, IOVA).unwrap();
    (c, a.out_ioas_id)
}

fn map(c: &EmulatedIommufd, ioas_id: u32, va: u64, length: u64, iova: u64) -> Result<(), Errno> {
    let mut m = IoasMap {
        flags: RW,
        ioas_id,
        user_va: va,
        length,
        iova,
        ..Default::default()
    };
    // SAFETY: the tests keep the mapped memory alive until the context is dropped.
    unsafe { c.ioas_map(&mut m) }
}

#[test]
fn a_port_that_outlives_its_device_is_blocked_even_when_the_id_is_reused() {
    let buf = Mapping::shared_anon(4 * PAGE_SIZE);
    let (c, ioas) = setup(&buf, 4 * PAGE_SIZE);
    let first = c.bind(IommuProfile::Vtd(VtdIommu::default())).unwrap();
    first.attach(None, ioas).unwrap();
    let port = first.dma_port();
    let id = first.dev_id();
    port.write(None, IOVA, &[1, 2, 3]).unwrap();
    drop(first);
    let second = c.bind(IommuProfile::Vtd(VtdIommu::default())).unwrap();
    assert_eq!(second.dev_id(), id, "the DEVICE id is reused");
    second.attach(None, ioas).unwrap();
    let err = port.read(None, IOVA, &mut [0; 3]).unwrap_err();
    assert_eq!(err.reason, DmaFaultReason::Blocked);
    let mut back = [0u8; 3];
    second.dma_port().read(None, IOVA, &mut back).unwrap();
    assert_eq!(back, [1, 2, 3]);
}

#[test]
fn the_mock_drivers_nested_hwpt_translates_as_its_parent() {
    let buf = Mapping::shared_anon(4 * PAGE_SIZE);
    let (c, ioas) = setup(&buf, 4 * PAGE_SIZE);
    let dev = c.bind(IommuProfile::MOCK).unwrap();
    let mut parent = HwptAlloc {
        flags: IOMMU_HWPT_ALLOC_NEST_PARENT,
        dev_id: dev.dev_id(),
        pt_id: ioas,
        ..Default::default()
    };
    c.hwpt_alloc(&mut parent, &[]).unwrap();
    let mut nested = HwptAlloc {
        dev_id: dev.dev_id(),
        pt_id: parent.out_hwpt_id,
        data_type: IOMMU_HWPT_DATA_SELFTEST,
        ..Default::default()
    };
    c.hwpt_alloc(&mut nested, &0u32.to_le_bytes()).unwrap();
    dev.attach(None, nested.out_hwpt_id).unwrap();
    let port = dev.dma_port();
    port.write(None, IOVA + 0x1ffe, &[7, 8, 9, 10]).unwrap();
    let mut back = [0u8; 4];
    port.read(None, IOVA + 0x1ffe, &mut back).unwrap();
    assert_eq!(back, [7, 8, 9, 10]);
    let err = port
        .read(None, IOVA + 4 * PAGE_SIZE, &mut back)
        .unwrap_err();
    assert_eq!(err.reason, DmaFaultReason::NotPresent);
    assert_eq!(dev.translator().faults().len(), 1);

    // The attachment itself translates the same way for paths that find it elsewhere, and
    // records nothing.
    let attachment = dev.attachment(None).unwrap();
    attachment.dma_write(None, IOVA + 0x10, &[4, 5]).unwrap();
    let mut two = [0u8; 2];
    port.read(None, IOVA + 0x10, &mut two).unwrap();
    assert_eq!(two, [4, 5]);
    let err = attachment
        .dma_read(Some(3), IOVA + 4 * PAGE_SIZE, &mut two)
        .unwrap_err();
    assert_eq!(
        (err.pasid, err.reason),
        (Some(3), DmaFaultReason::NotPresent)
    );
    assert_eq!(dev.translator().faults().len(), 1);
}

#[test]
fn accesses_racing_unmap_never_use_a_mapping_after_its_unmap_returned() {
    let buf = Mapping::shared_anon(8 * PAGE_SIZE);
    let (c, ioas) = setup(&buf, 4 * PAGE_SIZE);
    let dev = c.bind(IommuProfile::Vtd(VtdIommu::default())).unwrap();
    let mut hwpt = HwptAlloc {
        flags: IOMMU_HWPT_ALLOC_DIRTY_TRACKING,
        dev_id: dev.dev_id(),
        pt_id: ioas,
        ..Default::default()
    };
    c.hwpt_alloc(&mut hwpt, &[]).unwrap();
    dev.attach(None, hwpt.out_hwpt_id).unwrap();
    c.hwpt_set_dirty_tracking(&HwptSetDirtyTracking {
        flags: IOMMU_HWPT_DIRTY_TRACKING_ENABLE,
        hwpt_id: hwpt.out_hwpt_id,
        reserved: 0,
    })
    .unwrap();
    let second = IOVA + 0x10_0000;
    let stop = Arc::new(AtomicBool::new(false));
    let workers: Vec<_> = (0..2)
        .map(|i| {
            let port = dev.dma_port();
            let stop = stop.clone();
            std::thread::spawn(move || {
                let mut ok = 0u64;
                while !stop.load(Ordering::Relaxed) {
                    let data = [i as u8; 6000];
                    if port.write(None, second + 100, &data).is_ok() {
                        ok += 1;
                    }
                    let _ = port.read(None, IOVA, &mut [0; 64]);
                }
                ok
            })
        })
        .collect();
    for _ in 0..200 {
        map(&c, ioas, buf.addr() + 4 * PAGE_SIZE, 4 * PAGE_SIZE, second).unwrap();
        let mut unmap = IoasUnmap {
            ioas_id: ioas,
            iova: second,
            length: 4 * PAGE_SIZE,
        };
        c.ioas_unmap(&mut unmap).unwrap();
        let err = dev.dma_port().write(None, second, &[0]).unwrap_err();
        assert_eq!((err.iova, err.reason), (second, DmaFaultReason::NotPresent));
    }
    stop.store(true, Ordering::Relaxed);
    for w in workers {
        w.join().expect("a worker panicked");
    }
    drop(dev);
    drop(c);
}

/// The guest CPU's view of guest RAM mapped at `gpa` from process address `addr`.
struct Cpu {
    addr: u64,
    gpa: u64,
}

impl TableMemory for Cpu {
    fn read_entry(&mut self, gpa: u64) -> Result<u64, Stage2Fault> {
        let mut b = [0u8; 8];
        user_memory::read(self.addr + (gpa - self.gpa), &mut b)
            .map_err(|_| Stage2Fault::MemoryError { gpa })?;
        Ok(u64::from_le_bytes(b))
    }

    fn compare_exchange_entry(
        &mut self,
        gpa: u64,
        current: u64,
        new: u64,
    ) -> Result<u64, Stage2Fault> {
        user_memory::compare_exchange_u64(self.addr + (gpa - self.gpa), current, new)
            .map_err(|_| Stage2Fault::MemoryError { gpa })
    }
}

#[test]
fn flag_updates_never_lose_a_concurrent_guest_update_of_the_entry() {
    const GPA: u64 = 0x100_0000;
    const X: u64 = 0x4000_0000;
    const COUNTER_SHIFT: u32 = 52;
    const ROUNDS: u64 = 3000;
    let buf = Mapping::anon(32 * PAGE_SIZE, libc::PROT_READ | libc::PROT_WRITE);
    let c = EmulatedHost::new(HostConfig::unprivileged(1 << 24)).open_iommufd();
    let mut a = IoasAlloc::default();
    c.ioas_alloc(&mut a).unwrap();
    map(&c, a.out_ioas_id, buf.addr(), 32 * PAGE_SIZE, GPA).unwrap();
    let dev = c.bind(IommuProfile::Vtd(VtdIommu::default())).unwrap();
    let mut parent = HwptAlloc {
        flags: IOMMU_HWPT_ALLOC_NEST_PARENT | IOMMU_HWPT_ALLOC_PASID,
        dev_id: dev.dev_id(),
        pt_id: a.out_ioas_id,
        ..Default::default()
    };
    c.hwpt_alloc(&mut parent, &[]).unwrap();
    dev.attach(None, parent.out_hwpt_id).unwrap();
    let mut cpu = Cpu {
        addr: buf.addr(),
        gpa: GPA,
    };
    let tables = GPA + 16 * PAGE_SIZE..GPA + 32 * PAGE_SIZE;
    let mut table = FirstStageTableBuilder::new(&mut cpu, PagingMode::FourLevel, tables).unwrap();
    table
        .map(&mut cpu, X, GPA, PageSize::Size4KiB, USER | WRITABLE)
        .unwrap();
    let leaf = table.entry_gpa(&mut cpu, X, 1).unwrap().unwrap();
    let s1 = HwptVtdS1 {
        flags: 0,
        pgtbl_addr: table.root(),
        addr_width: 48,
        reserved: 0,
    };
    let mut nested = HwptAlloc {
        flags: IOMMU_HWPT_ALLOC_PASID,
        dev_id: dev.dev_id(),
        pt_id: parent.out_hwpt_id,
        data_type: IOMMU_HWPT_DATA_VTD_S1,
        ..Default::default()
    };
    c.hwpt_alloc(&mut nested, &s1.to_bytes()).unwrap();
    dev.attach(Some(1), nested.out_hwpt_id).unwrap();

    let stop = Arc::new(AtomicBool::new(false));
    let writes = Arc::new(std::sync::atomic::AtomicU64::new(0));
    let device = {
        let (port, stop, c, writes) = (dev.dma_port(), stop.clone(), c.clone(), writes.clone());
        let inv = HwptVtdS1Invalidate {
            addr: X,
            npages: 1,
            flags: 0,
            reserved: 0,
        }
        .to_bytes();
        let hwpt_id = nested.out_hwpt_id;
        std::thread::spawn(move || {
            while !stop.load(Ordering::Relaxed) {
                let mut req = HwptInvalidate {
                    hwpt_id,
                    data_type: IOMMU_HWPT_INVALIDATE_DATA_VTD_S1,
                    entry_len: HwptVtdS1Invalidate::SIZE as u32,
                    entry_num: 1,
                    reserved: 0,
                };
                c.hwpt_invalidate(&mut req, &inv).unwrap();
                port.write(Some(1), X, &[1]).unwrap();
                writes.fetch_add(1, Ordering::Relaxed);
            }
        })
    };
    // The guest counts in the entry's ignored high bits and clears A and D each time, so the
    // IOMMU keeps setting them again with its own exchanges; it goes on until the device has
    // walked a few hundred times meanwhile.
    let mut rounds = 0u64;
    while rounds < ROUNDS || writes.load(Ordering::Relaxed) < 300 {
        rounds += 1;
        let mut old = cpu.read_entry(leaf).unwrap();
        loop {
            let count = (old >> COUNTER_SHIFT) & 0x3ff;
            let bumped = (old & !(0x3ff << COUNTER_SHIFT)) | ((count + 1) & 0x3ff) << COUNTER_SHIFT;
            let new = bumped & !(ACCESSED | DIRTY);
            match cpu.compare_exchange_entry(leaf, old, new).unwrap() {
                seen if seen == old => break,
                seen => old = seen,
            }
        }
    }
    stop.store(true, Ordering::Relaxed);
    device.join().expect("the device thread panicked");
    let entry = cpu.read_entry(leaf).unwrap();
    assert_eq!(
        (entry >> COUNTER_SHIFT) & 0x3ff,
        rounds & 0x3ff,
        "no guest update lost"
    );
    assert_eq!(entry & viommu::vtd::pte::ADDRESS_MASK, GPA);
    assert!(dev.translator().faults().is_empty());
    drop(dev);
}
