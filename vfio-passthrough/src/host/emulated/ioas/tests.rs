//! The order of a map's errors, which a single-piece fixed map finds partly in its one tree
//! descent and partly after it (`iopt_check_iova` before `iopt_insert_area`): what is in the
//! way of the IOVA comes first, the piece's own faults after, and a refused map leaves nothing.

use crate::errno::Errno;
use crate::host::emulated::test_memory::Mapping;
use crate::host::emulated::{EmulatedHost, EmulatedIommufd, HostConfig, PAGE_SIZE};
use crate::host::iommufd::uapi::*;
use crate::host::iommufd::{Iommufd, IommufdSelftest};

const P: u64 = PAGE_SIZE;
const BASE: u64 = 1 << 24;
const READ: u32 = IOMMU_IOAS_MAP_READABLE | IOMMU_IOAS_MAP_FIXED_IOVA;
const WRITE: u32 = READ | IOMMU_IOAS_MAP_WRITEABLE;

fn ioas(c: &EmulatedIommufd) -> u32 {
    let mut a = IoasAlloc::default();
    c.ioas_alloc(&mut a).unwrap();
    a.out_ioas_id
}

fn map(
    c: &EmulatedIommufd,
    ioas_id: u32,
    flags: u32,
    va: u64,
    length: u64,
    iova: u64,
) -> Result<(), Errno> {
    let mut m = IoasMap {
        flags,
        ioas_id,
        user_va: va,
        length,
        iova,
        ..Default::default()
    };
    // SAFETY: the tests keep the mapped memory alive until the context is dropped and only
    // touch it through process_vm_* calls.
    unsafe { c.ioas_map(&mut m) }
}

fn copy(c: &EmulatedIommufd, ioas_id: u32, flags: u32, src: u64, dst: u64) -> Result<(), Errno> {
    let mut req = IoasCopy {
        flags,
        dst_ioas_id: ioas_id,
        src_ioas_id: ioas_id,
        length: P,
        dst_iova: dst,
        src_iova: src,
    };
    c.ioas_copy(&mut req)
}

fn iovas(c: &EmulatedIommufd, ioas_id: u32) -> Vec<u64> {
    c.areas(ioas_id).unwrap().iter().map(|a| a.iova).collect()
}

#[test]
fn a_writeable_copy_of_read_only_pages_reports_what_is_in_the_way_first() {
    let buf = Mapping::anon(P, libc::PROT_READ | libc::PROT_WRITE);
    let c = EmulatedHost::new(HostConfig::unprivileged(1 << 20)).open_iommufd();
    let a = ioas(&c);
    assert_eq!(map(&c, a, READ, buf.addr(), P, BASE), Ok(()));
    c.mock_add_reserved(a, BASE + 4 * P, P).unwrap();
    // Onto an area: EEXIST; onto a reserved range: EINVAL; only a free IOVA gets to the
    // pages' own fault, EPERM.
    assert_eq!(copy(&c, a, WRITE, BASE, BASE), Err(Errno::EEXIST));
    assert_eq!(copy(&c, a, WRITE, BASE, BASE + 4 * P), Err(Errno::EINVAL));
    assert_eq!(copy(&c, a, WRITE, BASE, BASE + 2 * P), Err(Errno::EPERM));
    assert_eq!(iovas(&c, a), vec![BASE], "a refused copy maps nothing");
    assert_eq!(copy(&c, a, READ, BASE, BASE + 2 * P), Ok(()));
    assert_eq!(iovas(&c, a), vec![BASE, BASE + 2 * P]);
}

#[test]
fn a_page_offset_the_alignment_refuses_comes_after_what_is_in_the_way() {
    let buf = Mapping::anon(4 * P, libc::PROT_READ | libc::PROT_WRITE);
    let c = EmulatedHost::new(HostConfig::unprivileged(1 << 20)).open_iommufd();
    let a = ioas(&c);
    let mut huge_off = IommuOption {
        option_id: IOMMU_OPTION_HUGE_PAGES,
        op: IOMMU_OPTION_OP_SET,
        object_id: a,
        val64: 0,
        ..Default::default()
    };
    c.option(&mut huge_off).unwrap();
    assert_eq!(map(&c, a, WRITE, buf.addr(), P, BASE), Ok(()));
    // Half a page into the buffer: the page offset breaks the PAGE_SIZE alignment.
    let odd = buf.addr() + P / 2;
    assert_eq!(map(&c, a, WRITE, odd, P, BASE), Err(Errno::EEXIST));
    assert_eq!(map(&c, a, WRITE, odd, P, BASE + P), Err(Errno::EINVAL));
    assert_eq!(iovas(&c, a), vec![BASE], "a refused map maps nothing");
    assert_eq!(map(&c, a, WRITE, buf.addr(), P, BASE + P), Ok(()));
    assert_eq!(iovas(&c, a), vec![BASE, BASE + P]);
}
