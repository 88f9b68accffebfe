//! Unit tests of the emulated type1 container: what the uAPI cannot show (pins, accounting,
//! domains and what a group's devices translate through). The errno-by-errno behaviour is held
//! to the kernel by the type1 conformance suite (`tests::conformance::type1`).

use std::sync::Arc;

use super::super::test_memory::Mapping;
use super::*;
use crate::errno::Errno;
use crate::host::emulated::{Attachment, EmulatedHost, HostConfig, PAGE_SIZE};
use crate::host::type1::info::Type1Info;
use crate::host::type1::{
    Type1Container, Type1DmaMap, Type1DmaUnmap, Type1InfoCap, VFIO_DMA_UNMAP_FLAG_VADDR,
    VFIO_TYPE1V2_IOMMU,
};

const P: u64 = PAGE_SIZE;
const RW: i32 = libc::PROT_READ | libc::PROT_WRITE;

fn host(memlock: u64) -> Arc<EmulatedHost> {
    EmulatedHost::new(HostConfig::unprivileged(memlock))
}

/// A container with one 39-bit group in it, type1v2 set.
fn ready(host: &Arc<EmulatedHost>) -> (EmulatedType1Container, Arc<EmulatedGroup>) {
    let c = host.open_type1();
    let g = EmulatedGroup::new(7, GroupIommu::qemu_intel_iommu());
    g.set_container(&c).unwrap();
    c.set_iommu(VFIO_TYPE1V2_IOMMU).unwrap();
    (c, g)
}

fn map(c: &EmulatedType1Container, vaddr: u64, iova: u64, size: u64) -> Result<(), Errno> {
    // SAFETY: the tests' mappings outlive the containers, and are only reached through the
    // emulated host (process_vm_readv/writev), never through references.
    unsafe { c.map_dma(&Type1DmaMap::new(vaddr, iova, size)) }
}

fn unmap(c: &EmulatedType1Container, iova: u64, size: u64) -> Result<u64, Errno> {
    let mut req = Type1DmaUnmap::new(iova, size);
    c.unmap_dma(&mut req, &mut []).map(|()| req.size)
}

fn info(c: &EmulatedType1Container) -> Type1Info {
    let mut buf = vec![0u8; 512];
    buf[..4].copy_from_slice(&512u32.to_le_bytes());
    c.iommu_get_info(&mut buf).unwrap();
    Type1Info::parse(&buf).unwrap()
}

#[test]
fn a_mapping_pins_once_and_is_charged_to_the_process() {
    let h = host(1 << 20);
    let (c, _g) = ready(&h);
    let mem = Mapping::anon(8 * P, RW);
    map(&c, mem.addr(), 0x10_0000, 8 * P).unwrap();
    assert_eq!(
        h.locked_pages(),
        (0, 8, 8),
        "mm->locked_vm, as type1 accounts"
    );
    assert_eq!(h.pin_count(mem.addr() + 3 * P), Ok(1));
    // The same memory mapped again is pinned and charged again (one vfio_dma each).
    map(&c, mem.addr(), 0x20_0000, 8 * P).unwrap();
    assert_eq!(h.locked_pages(), (0, 16, 16));
    assert_eq!(h.pin_count(mem.addr()), Ok(2));
    assert_eq!(unmap(&c, 0, 1 << 30), Ok(16 * P));
    assert_eq!(h.locked_pages(), (0, 0, 0));
    assert!(h.nothing_pinned());
}

#[test]
fn failed_maps_pin_and_charge_nothing() {
    let h = host(4 * P);
    let (c, _g) = ready(&h);
    let mem = Mapping::anon(8 * P, RW);
    assert_eq!(map(&c, mem.addr(), 0x10_0000, 5 * P), Err(Errno::ENOMEM));
    let _hole = mem.unmap_page(2);
    assert_eq!(map(&c, mem.addr(), 0x10_0000, 4 * P), Err(Errno::EFAULT));
    assert!(h.nothing_pinned());
    assert_eq!(h.locked_pages(), (0, 0, 0));
    assert_eq!(c.mapping_count(), 0);
    map(&c, mem.addr() + 3 * P, 0x10_0000, 4 * P).unwrap();
    assert_eq!(h.locked_pages(), (0, 4, 4));
}

#[test]
fn the_groups_attachment_translates_what_is_mapped() {
    let h = host(1 << 20);
    let (c, g) = ready(&h);
    let mem = Mapping::shared_anon(4 * P);
    map(&c, mem.addr(), 0x40_0000, 4 * P).unwrap();
    let Attachment::Paging(domain) = g.attachment().attachment() else {
        panic!("a group in a container with an IOMMU is attached to a paging domain");
    };
    let t = domain.translate(0x40_2010).unwrap();
    assert_eq!(t.offset, 2 * P + 0x10);
    assert_eq!(t.mapping_last, 0x40_3fff);
    t.pages.write(t.offset, b"dma").unwrap();
    let mut back = [0u8; 3];
    t.pages.read(2 * P + 0x10, &mut back).unwrap();
    assert_eq!(&back, b"dma");
    assert!(domain.translate(0x40_4000).is_none());
    unmap(&c, 0x40_0000, 4 * P).unwrap();
    assert!(domain.translate(0x40_0000).is_none());
}

#[test]
fn a_group_outside_a_container_with_an_iommu_is_blocked() {
    let h = host(1 << 20);
    let c = h.open_type1();
    let g = EmulatedGroup::new(3, GroupIommu::default());
    assert!(matches!(g.attachment().attachment(), Attachment::Blocked));
    g.set_container(&c).unwrap();
    assert!(matches!(g.attachment().attachment(), Attachment::Blocked));
    c.set_iommu(VFIO_TYPE1V2_IOMMU).unwrap();
    assert!(matches!(g.attachment().attachment(), Attachment::Paging(_)));
    g.unset_container().unwrap();
    assert!(matches!(g.attachment().attachment(), Attachment::Blocked));
}

#[test]
fn a_wider_group_gets_its_own_domain_with_every_mapping_replayed() {
    let h = host(1 << 20);
    let (c, narrow) = ready(&h);
    let mem = Mapping::anon(2 * P, RW);
    map(&c, mem.addr(), 0x10_0000, 2 * P).unwrap();
    let wide = EmulatedGroup::new(8, GroupIommu::default());
    wide.set_container(&c).unwrap();
    let (Attachment::Paging(a), Attachment::Paging(b)) = (
        narrow.attachment().attachment(),
        wide.attachment().attachment(),
    ) else {
        panic!("both groups attached");
    };
    assert!(!Arc::ptr_eq(&a, &b), "different geometry, different domain");
    assert_eq!(b.mapping_count(), 1);
    assert!(b.translate(0x10_1000).is_some());
    // Replaying pinned nothing more.
    assert_eq!(h.locked_pages(), (0, 2, 2));
    // The valid ranges stay those of the narrower group.
    let ranges = info(&c).caps.into_iter().find_map(|cap| match cap {
        Type1InfoCap::IovaRange(r) => Some(r),
        _ => None,
    });
    assert_eq!(
        ranges.and_then(|r| r.last().copied()).map(|r| r.1),
        Some((1 << 39) - 1)
    );
    // Another 39-bit group shares the first domain.
    let twin = EmulatedGroup::new(9, GroupIommu::qemu_intel_iommu());
    twin.set_container(&c).unwrap();
    let Attachment::Paging(t) = twin.attachment().attachment() else {
        panic!("twin attached");
    };
    assert!(Arc::ptr_eq(&a, &t));
    // The narrow groups leave: the wide domain keeps the mapping and the range widens.
    narrow.unset_container().unwrap();
    twin.unset_container().unwrap();
    assert_eq!(c.mapping_count(), 1);
    assert_eq!(a.mapping_count(), 0, "a freed domain holds nothing");
    assert!(b.translate(0x10_0000).is_some());
    map(&c, mem.addr(), 1 << 40, P).unwrap();
}

#[test]
fn a_narrower_group_cannot_join_over_mappings_beyond_its_aperture() {
    let h = host(1 << 20);
    let c = h.open_type1();
    let wide = EmulatedGroup::new(1, GroupIommu::default());
    wide.set_container(&c).unwrap();
    c.set_iommu(VFIO_TYPE1V2_IOMMU).unwrap();
    let mem = Mapping::anon(P, RW);
    map(&c, mem.addr(), 1 << 40, P).unwrap();
    let narrow = EmulatedGroup::new(2, GroupIommu::qemu_intel_iommu());
    assert_eq!(narrow.set_container(&c), Err(Errno::EINVAL));
    assert_eq!(narrow.status(), Ok(VFIO_GROUP_FLAGS_VIABLE));
    assert_eq!(unmap(&c, 1 << 40, P), Ok(P));
    narrow.set_container(&c).unwrap();
}

#[test]
fn the_last_group_leaving_unmaps_everything_and_unsets_the_iommu() {
    let h = host(1 << 20);
    let (c, g) = ready(&h);
    let mem = Mapping::anon(4 * P, RW);
    map(&c, mem.addr(), 0x10_0000, 4 * P).unwrap();
    drop(g);
    assert!(
        h.nothing_pinned(),
        "closing the group file released the mappings"
    );
    assert_eq!(c.mapping_count(), 0);
    assert_eq!(map(&c, mem.addr(), 0x10_0000, 4 * P), Err(Errno::EINVAL));
    let g = EmulatedGroup::new(7, GroupIommu::default());
    g.set_container(&c).unwrap();
    c.set_iommu(VFIO_TYPE1V2_IOMMU).unwrap();
    map(&c, mem.addr(), 0x10_0000, 4 * P).unwrap();
    // Closing the container file while a group holds it keeps the mappings.
    drop(c);
    assert!(!h.nothing_pinned());
    drop(g);
    assert!(h.nothing_pinned());
}

#[test]
fn no_group_joins_while_a_mapping_awaits_its_new_address() {
    let h = host(1 << 20);
    let (c, _g) = ready(&h);
    let mem = Mapping::anon(P, RW);
    map(&c, mem.addr(), 0x10_0000, P).unwrap();
    let mut inv = Type1DmaUnmap::new(0x10_0000, P);
    inv.flags = VFIO_DMA_UNMAP_FLAG_VADDR;
    c.unmap_dma(&mut inv, &mut []).unwrap();
    let other = EmulatedGroup::new(8, GroupIommu::qemu_intel_iommu());
    assert_eq!(other.set_container(&c), Err(Errno::EBUSY));
    let mut update = Type1DmaMap::new(mem.addr(), 0x10_0000, P);
    update.flags = crate::host::type1::VFIO_DMA_MAP_FLAG_VADDR;
    // SAFETY: as `map`.
    unsafe { c.map_dma(&update) }.unwrap();
    other.set_container(&c).unwrap();
    assert_eq!(c.mapping_count(), 1);
}

#[test]
fn set_iommu_failing_leaves_every_group_blocked_and_the_container_unset() {
    let h = host(1 << 20);
    let c = h.open_type1();
    let g = EmulatedGroup::new(1, GroupIommu::default());
    g.set_container(&c).unwrap();
    assert_eq!(c.set_iommu(VFIO_TYPE1_NESTING_IOMMU), Err(Errno::EINVAL));
    assert!(matches!(g.attachment().attachment(), Attachment::Blocked));
    c.set_iommu(VFIO_TYPE1V2_IOMMU).unwrap();
}

#[test]
fn the_entry_limit_is_read_when_the_iommu_is_set() {
    let h = host(1 << 20);
    let c = h.open_type1_with(Type1Config { dma_entry_limit: 2 });
    let g = EmulatedGroup::new(1, GroupIommu::default());
    g.set_container(&c).unwrap();
    c.set_iommu(VFIO_TYPE1V2_IOMMU).unwrap();
    let mem = Mapping::anon(3 * P, RW);
    map(&c, mem.addr(), 0, P).unwrap();
    map(&c, mem.addr() + P, P, P).unwrap();
    assert_eq!(map(&c, mem.addr() + 2 * P, 2 * P, P), Err(Errno::ENOSPC));
    assert!(
        info(&c).caps.contains(&Type1InfoCap::DmaAvail(0)),
        "DMA_AVAIL reads 0"
    );
}
