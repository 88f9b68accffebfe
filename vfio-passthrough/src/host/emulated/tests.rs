//! Tests of the emulated host through the seams: what only the emulated host can show (pins
//! released at teardown, shared accounting, the translator hooks, VT-d nesting), next to the
//! conformance suite (the `tests` crate) that holds its uAPI to the kernel's.

use std::io::{Read, Write};
use std::sync::Arc;

use crate::errno::Errno;
use crate::host::iommufd::uapi::*;
use crate::host::iommufd::{Iommufd, IommufdDevice, IommufdSelftest, MockDomain};

use super::test_memory::Mapping;
use super::*;

const RW: u32 = IOMMU_IOAS_MAP_READABLE | IOMMU_IOAS_MAP_WRITEABLE;

fn ctx(limit: u64) -> EmulatedIommufd {
    EmulatedHost::new(HostConfig::unprivileged(limit)).open_iommufd()
}

fn ioas(c: &EmulatedIommufd) -> u32 {
    let mut a = IoasAlloc::default();
    c.ioas_alloc(&mut a).unwrap();
    a.out_ioas_id
}

fn map(c: &EmulatedIommufd, ioas_id: u32, va: u64, length: u64, iova: u64) -> Result<u64, Errno> {
    let mut m = IoasMap {
        flags: RW | IOMMU_IOAS_MAP_FIXED_IOVA,
        ioas_id,
        user_va: va,
        length,
        iova,
        ..Default::default()
    };
    // SAFETY: the tests keep the mapped memory alive until the context is dropped and only
    // touch it through process_vm_* calls.
    unsafe { c.ioas_map(&mut m) }.map(|()| m.iova)
}

fn mock(c: &EmulatedIommufd, pt_id: u32) -> MockDomain {
    let mut d = MockDomain {
        pt_id,
        ..Default::default()
    };
    c.mock_domain(&mut d).unwrap();
    d
}

#[test]
fn pins_follow_domains_and_are_released_at_teardown() {
    let buf = Mapping::shared_anon(4 * PAGE_SIZE);
    let c = ctx(1 << 20);
    let host = c.host().clone();
    let a = ioas(&c);
    map(&c, a, buf.addr(), 4 * PAGE_SIZE, 1 << 24).unwrap();
    assert_eq!(
        host.pin_count(buf.addr()),
        Ok(0),
        "no domain: nothing pinned"
    );
    mock(&c, a);
    assert_eq!(host.pin_count(buf.addr() + 3 * PAGE_SIZE), Ok(1));
    assert_eq!(host.locked_pages().0, 4);
    drop(c);
    assert_eq!(host.pin_count(buf.addr()), Ok(0));
    assert_eq!(host.locked_pages(), (0, 0, 0));
    assert!(host.nothing_pinned());
}

#[test]
fn two_contexts_share_the_memlock_limit_and_the_pin_counts() {
    let buf = Mapping::shared_anon(4 * PAGE_SIZE);
    let host = EmulatedHost::new(HostConfig::unprivileged(6 * PAGE_SIZE));
    let (c1, c2) = (host.open_iommufd(), host.open_iommufd());
    let (a1, a2) = (ioas(&c1), ioas(&c2));
    mock(&c1, a1);
    mock(&c2, a2);
    map(&c1, a1, buf.addr(), 4 * PAGE_SIZE, 1 << 24).unwrap();
    assert_eq!(
        map(&c2, a2, buf.addr(), 4 * PAGE_SIZE, 1 << 24),
        Err(Errno::ENOMEM)
    );
    map(&c2, a2, buf.addr(), 2 * PAGE_SIZE, 1 << 24).unwrap();
    assert_eq!(host.pin_count(buf.addr()), Ok(2));
    assert_eq!(host.pin_count(buf.addr() + 2 * PAGE_SIZE), Ok(1));
}

#[test]
fn a_device_dma_reaches_memory_through_the_translator_hooks() {
    let buf = Mapping::shared_anon(2 * PAGE_SIZE);
    let c = ctx(1 << 20);
    let a = ioas(&c);
    let dev = c.bind(IommuProfile::Vtd(VtdIommu::default())).unwrap();
    let hwpt = dev.attach(None, a).unwrap();
    let iova = map(&c, a, buf.addr(), 2 * PAGE_SIZE, 0x10_0000).unwrap();
    let Attachment::Paging(domain) = dev.attachment(None).unwrap() else {
        panic!("attached to an IOAS, the device must use a paging domain");
    };
    assert_eq!(c.domain(hwpt).map(|d| Arc::ptr_eq(&d, &domain)), Ok(true));
    let t = domain.translate(iova + PAGE_SIZE + 8).unwrap();
    assert!(t.prot.read && t.prot.write);
    t.pages.write(t.offset, b"dma!").unwrap();
    let mut back = [0u8; 4];
    super::user_memory::read(buf.addr() + PAGE_SIZE + 8, &mut back).unwrap();
    assert_eq!(&back, b"dma!");
    assert!(domain.translate(iova + 2 * PAGE_SIZE).is_none());
    dev.detach(None).unwrap();
    assert!(matches!(dev.attachment(None), Ok(Attachment::Blocked)));
    assert_eq!(
        c.domain(hwpt).map(|_| ()),
        Err(Errno::ENOENT),
        "auto domain gone"
    );
}

#[test]
fn vtd_devices_reserve_the_msi_window_and_nest_with_driver_checks() {
    let c = ctx(1 << 20);
    let a = ioas(&c);
    let dev = c.bind(IommuProfile::Vtd(VtdIommu::default())).unwrap();
    let mut parent = HwptAlloc {
        flags: IOMMU_HWPT_ALLOC_NEST_PARENT | IOMMU_HWPT_ALLOC_DIRTY_TRACKING,
        dev_id: dev.dev_id(),
        pt_id: a,
        ..Default::default()
    };
    c.hwpt_alloc(&mut parent, &[]).unwrap();
    let s1 = |addr_width, flags| HwptVtdS1 {
        flags,
        pgtbl_addr: 0x5000,
        addr_width,
        reserved: 0,
    };
    let nested = |data: HwptVtdS1| {
        let mut req = HwptAlloc {
            dev_id: dev.dev_id(),
            pt_id: parent.out_hwpt_id,
            data_type: IOMMU_HWPT_DATA_VTD_S1,
            ..Default::default()
        };
        c.hwpt_alloc(&mut req, &data.to_bytes())
            .map(|()| req.out_hwpt_id)
    };
    let bad_width = nested(s1(39, 0)).unwrap();
    assert_eq!(
        dev.attach(None, bad_width),
        Err(Errno::EINVAL),
        "checked at attach"
    );
    let eafe = nested(s1(48, IOMMU_VTD_S1_EAFE)).unwrap();
    assert_eq!(dev.attach(None, eafe), Err(Errno::EINVAL));
    let good = nested(s1(48, IOMMU_VTD_S1_SRE)).unwrap();
    assert_eq!(dev.attach(None, good), Ok(good));
    let Attachment::Nested(table) = dev.attachment(None).unwrap() else {
        panic!("attached to a nested HWPT");
    };
    assert_eq!(table.stage1(), Stage1::Vtd(s1(48, IOMMU_VTD_S1_SRE)));
    let mut ranges = [IovaRange::default(); 4];
    let mut req = IoasIovaRanges {
        ioas_id: a,
        num_iovas: 4,
        ..Default::default()
    };
    c.ioas_iova_ranges(&mut req, &mut ranges).unwrap();
    assert_eq!(req.num_iovas, 2);
    assert_eq!(
        ranges[0],
        IovaRange {
            start: 0,
            last: 0xfedf_ffff
        }
    );
    assert_eq!(
        ranges[1],
        IovaRange {
            start: 0xfef0_0000,
            last: (1 << 48) - 1
        }
    );
    assert_eq!(req.out_iova_alignment, 4096);

    let seen = Arc::new(std::sync::Mutex::new(Vec::new()));
    let s = seen.clone();
    table.set_listener(Arc::new(move |inv| s.lock().unwrap().push(inv)));
    let inv = HwptVtdS1Invalidate {
        addr: 0x2000,
        npages: 2,
        flags: IOMMU_VTD_INV_FLAGS_LEAF,
        reserved: 0,
    };
    let mut ireq = HwptInvalidate {
        hwpt_id: good,
        data_type: IOMMU_HWPT_INVALIDATE_DATA_VTD_S1,
        entry_len: HwptVtdS1Invalidate::SIZE as u32,
        entry_num: 1,
        reserved: 0,
    };
    c.hwpt_invalidate(&mut ireq, &inv.to_bytes()).unwrap();
    assert_eq!(
        *seen.lock().unwrap(),
        vec![Invalidation::Vtd {
            addr: 0x2000,
            npages: 2,
            leaf: true
        }]
    );
}

#[test]
fn memfd_areas_map_file_pages() {
    let c = ctx(1 << 20);
    let a = ioas(&c);
    let stdev = mock(&c, a);
    let name = std::ffi::CString::new("emulated-test").unwrap();
    // SAFETY: creates a new memfd owned by the returned File.
    let fd = unsafe { libc::memfd_create(name.as_ptr(), libc::MFD_CLOEXEC) };
    assert!(fd >= 0);
    // SAFETY: `fd` is a fresh descriptor owned by nobody else.
    let mut file = unsafe { <std::fs::File as std::os::fd::FromRawFd>::from_raw_fd(fd) };
    file.write_all(&[7u8; 3 * PAGE_SIZE as usize]).unwrap();
    let mut req = IoasMapFile {
        flags: RW | IOMMU_IOAS_MAP_FIXED_IOVA,
        ioas_id: a,
        fd,
        start: PAGE_SIZE,
        length: 2 * PAGE_SIZE,
        iova: 1 << 24,
    };
    c.ioas_map_file(&mut req).unwrap();
    let t = c
        .domain(stdev.out_hwpt_id)
        .unwrap()
        .translate(1 << 24)
        .unwrap();
    let mut b = [0u8; 2];
    t.pages.read(t.offset, &mut b).unwrap();
    assert_eq!(b, [7, 7]);
    t.pages.write(t.offset + 1, &[9]).unwrap();
    let mut all = Vec::new();
    std::io::Seek::rewind(&mut file).unwrap();
    file.read_to_end(&mut all).unwrap();
    assert_eq!(all[PAGE_SIZE as usize + 1], 9);
    let past_end = IoasMapFile {
        iova: 1 << 25,
        start: 2 * PAGE_SIZE,
        ..req
    };
    assert_eq!(c.ioas_map_file(&mut past_end.clone()), Err(Errno::EINVAL));
    let bad_fd = IoasMapFile { fd: -1, ..req };
    assert_eq!(c.ioas_map_file(&mut bad_fd.clone()), Err(Errno::EBADF));
}

#[test]
fn fault_queues_deliver_iopfs_of_the_attached_device() {
    let c = ctx(1 << 20);
    let a = ioas(&c);
    let stdev = mock(&c, a);
    let mut parent = HwptAlloc {
        flags: IOMMU_HWPT_ALLOC_NEST_PARENT,
        dev_id: stdev.out_idev_id,
        pt_id: a,
        ..Default::default()
    };
    c.hwpt_alloc(&mut parent, &[]).unwrap();
    let mut falloc = FaultQueueAlloc::default();
    let mut fault_fd = c.fault_queue_alloc(&mut falloc).unwrap();
    let mut nested = HwptAlloc {
        flags: IOMMU_HWPT_FAULT_ID_VALID,
        dev_id: stdev.out_idev_id,
        pt_id: parent.out_hwpt_id,
        data_type: crate::host::iommufd::IOMMU_HWPT_DATA_SELFTEST,
        fault_id: falloc.out_fault_id,
        ..Default::default()
    };
    c.hwpt_alloc(&mut nested, &0xbadbeefu32.to_le_bytes())
        .unwrap();
    c.mock_domain_replace(stdev.out_stdev_id, nested.out_hwpt_id)
        .unwrap();
    c.mock_trigger_iopf(stdev.out_idev_id, 0x10, 0x2, 0x3, 0xfeed_0000)
        .unwrap();
    let mut rec = [0u8; HwptPgfault::SIZE];
    fault_fd.read_exact(&mut rec).unwrap();
    let f = HwptPgfault::from_bytes(&rec).unwrap();
    assert_eq!(
        (f.dev_id, f.pasid, f.grpid, f.perm, f.addr),
        (stdev.out_idev_id, 0x10, 2, 3, 0xfeed_0000)
    );
    assert_eq!(
        f.flags,
        IOMMU_PGFAULT_FLAGS_LAST_PAGE | IOMMU_PGFAULT_FLAGS_PASID_VALID
    );
    assert_eq!(c.destroy(falloc.out_fault_id), Err(Errno::EBUSY));
    c.mock_domain_replace(stdev.out_stdev_id, a).unwrap();
    c.destroy(nested.out_hwpt_id).unwrap();
    assert_eq!(
        c.destroy(falloc.out_fault_id),
        Err(Errno::EBUSY),
        "fd still open"
    );
    drop(fault_fd);
    c.destroy(falloc.out_fault_id).unwrap();
}

#[test]
fn only_selftest_mock_devices_can_raise_iopfs() {
    // 6.12 stable (6.12.117) refuses TRIGGER_IOPF for a device that is not a mock device.
    let c = ctx(1 << 20);
    let vtd = c.bind(IommuProfile::Vtd(VtdIommu::DEFAULT)).unwrap();
    assert_eq!(
        c.mock_trigger_iopf(vtd.dev_id(), 0, 0, 1, 0x1000),
        Err(Errno::EINVAL)
    );
    let a = ioas(&c);
    let stdev = mock(&c, a);
    assert_eq!(
        c.mock_trigger_iopf(stdev.out_idev_id, 0, 0, 1, 0x1000),
        Ok(())
    );
    assert_eq!(c.mock_trigger_iopf(a, 0, 0, 1, 0x1000), Err(Errno::ENOENT));
}

#[test]
fn kernel_versions_gate_ioctls_and_fields() {
    let c = EmulatedHost::new(HostConfig::unprivileged(0).with_kernel(KernelVersion::V6_2))
        .open_iommufd();
    let a = ioas(&c);
    assert_eq!(
        c.hwpt_alloc(&mut HwptAlloc::default(), &[]),
        Err(Errno::ENOTTY)
    );
    let mut d = MockDomain {
        pt_id: a,
        dev_flags: crate::host::iommufd::MOCK_FLAGS_DEVICE_NO_DIRTY,
        ..Default::default()
    };
    assert_eq!(
        c.mock_domain(&mut d),
        Err(Errno::EOPNOTSUPP),
        "MOCK_DOMAIN_FLAGS is 6.7"
    );
    let c = EmulatedHost::new(HostConfig::unprivileged(0).with_kernel(KernelVersion::V6_6))
        .open_iommufd();
    let a = ioas(&c);
    let stdev = mock(&c, a);
    let mut req = HwptAlloc {
        dev_id: stdev.out_idev_id,
        pt_id: a,
        fault_id: 1,
        ..Default::default()
    };
    assert_eq!(c.hwpt_alloc(&mut req, &[]), Err(Errno::E2BIG));
    req.fault_id = 0;
    assert_eq!(c.hwpt_alloc(&mut req, &[1, 2, 3, 4]), Err(Errno::E2BIG));
    c.hwpt_alloc(&mut req, &[]).unwrap();
    let mut info = HwInfo {
        dev_id: stdev.out_idev_id,
        out_capabilities: 1,
        ..Default::default()
    };
    assert_eq!(c.get_hw_info(&mut info, &mut []), Err(Errno::E2BIG));
    assert_eq!(
        c.hwpt_invalidate(&mut HwptInvalidate::default(), &[]),
        Err(Errno::ENOTTY)
    );
}
