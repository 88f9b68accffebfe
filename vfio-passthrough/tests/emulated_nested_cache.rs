//! The software IOMMU's IOTLB as a guest sees it: first-stage translations stay cached (stale)
//! until the guest invalidates them, stage-2 changes are never stale, and detaching or
//! replacing a PASID's HWPT takes effect at once.

mod common;

use std::os::fd::AsRawFd;

use common::nested::*;
use common::*;
use vfio_passthrough::emulated_device::vfio_core::SharedMemory;
use vfio_passthrough::host::dma::DmaFaultReason;
use vfio_passthrough::host::emulated::FaultStage;
use vfio_passthrough::host::iommufd::uapi::*;
use vfio_passthrough::vfio::VfioDevice;
use viommu::vtd::pte::{USER, WRITABLE};

/// The stage-1 address the tests read through, and the two guest pages it may point at.
const X_IOVA: u64 = 0x4000_0000;
const A_GPA: u64 = DATA_GPA;
const B_GPA: u64 = DATA_GPA + 0x1000;
/// Where the probe copies to.
const DST_IOVA: u64 = 0x4000_8000;
const DST_GPA: u64 = DATA_GPA + 0x8000;

/// A guest whose PASID reads through `X_IOVA`, with `A_GPA` holding 0xaa and `B_GPA` 0xbb.
fn guest(backing: Backing) -> Guest {
    let g = Guest::new(backing);
    g.ram.write(A_GPA, &[0xaa; 16]);
    g.ram.write(B_GPA, &[0xbb; 16]);
    g
}

/// Copies 16 bytes from `iova` to `DST_IOVA` with the PASID; the bytes that arrived, or the
/// engine's error.
fn probe(g: &mut Guest, iova: u64) -> Result<Vec<u8>, (u32, u64)> {
    g.ram.write(DST_GPA, &[0; 16]);
    g.submit(Desc {
        op: OP_COPY,
        pasid: PASID_VALID | PASID,
        src: iova,
        dst: DST_IOVA,
        len: 16,
        ..Desc::default()
    });
    match g.error() {
        (0, _) => Ok(g.ram.read_vec(DST_GPA, 16)),
        e => Err(e),
    }
}

#[test]
fn a_guest_that_changes_its_table_without_invalidating_keeps_the_old_translation() {
    let mut g = guest(Backing::Anonymous);
    let mut table = g.table(TABLES_GPA);
    g.map(&mut table, X_IOVA, A_GPA, USER | WRITABLE);
    g.map(&mut table, DST_IOVA, DST_GPA, USER | WRITABLE);
    let nested = g.nested(&table, None);
    g.dev.attach_pt(nested, Some(PASID)).unwrap();
    assert_eq!(probe(&mut g, X_IOVA), Ok(vec![0xaa; 16]));

    g.map(&mut table, X_IOVA, B_GPA, USER | WRITABLE);
    assert_eq!(
        probe(&mut g, X_IOVA),
        Ok(vec![0xaa; 16]),
        "not invalidated: the IOTLB still translates to the old page"
    );
    g.invalidate(nested, X_IOVA + 0x1000, 1);
    assert_eq!(probe(&mut g, X_IOVA), Ok(vec![0xaa; 16]), "another page");
    g.invalidate(nested, X_IOVA, 1);
    assert_eq!(probe(&mut g, X_IOVA), Ok(vec![0xbb; 16]));

    // Clearing the entry is the same: stale until invalidated, then a fault.
    table
        .unmap(
            &mut GuestTables(&g.ram),
            X_IOVA,
            viommu::vtd::PageSize::Size4KiB,
        )
        .unwrap();
    assert_eq!(probe(&mut g, X_IOVA), Ok(vec![0xbb; 16]));
    g.invalidate(nested, 0, u64::MAX);
    assert_eq!(probe(&mut g, X_IOVA), Err((ST_SRC_FAULT, X_IOVA)));
}

#[test]
fn unmapping_stage_2_is_never_stale_even_with_stage_1_cached() {
    let mut g = guest(Backing::Memfd);
    let extra = SharedMemory::new("extra", 0x1000).unwrap();
    extra.write(0, &[0xee; 16]).unwrap();
    let extra_gpa = GPA_BASE + RAM_SIZE + 0x10_0000;
    let mut map = IoasMapFile {
        flags: IOMMU_IOAS_MAP_FIXED_IOVA | IOMMU_IOAS_MAP_READABLE | IOMMU_IOAS_MAP_WRITEABLE,
        ioas_id: g.ioas,
        fd: extra.fd().as_raw_fd(),
        start: 0,
        length: 0x1000,
        iova: extra_gpa,
    };
    g.ctx.ioas_map_file(&mut map).unwrap();
    let mut table = g.table(TABLES_GPA);
    g.map(&mut table, X_IOVA, extra_gpa, USER | WRITABLE);
    g.map(&mut table, DST_IOVA, DST_GPA, USER | WRITABLE);
    let nested = g.nested(&table, None);
    g.dev.attach_pt(nested, Some(PASID)).unwrap();
    assert_eq!(probe(&mut g, X_IOVA), Ok(vec![0xee; 16]));

    let mut unmap = IoasUnmap {
        ioas_id: g.ioas,
        iova: extra_gpa,
        length: 0x1000,
    };
    g.ctx.ioas_unmap(&mut unmap).unwrap();
    assert_eq!(probe(&mut g, X_IOVA), Err((ST_SRC_FAULT, X_IOVA)));
    let record = *g.dev.dma_faults().last().unwrap();
    assert_eq!(record.stage, FaultStage::Stage2 { address: extra_gpa });
    assert_eq!(record.fault.reason, DmaFaultReason::NotPresent);
}

#[test]
fn a_detached_pasid_is_blocked_and_reattaching_walks_the_table_afresh() {
    let mut g = guest(Backing::Memfd);
    let mut table = g.table(TABLES_GPA);
    g.map(&mut table, X_IOVA, A_GPA, USER | WRITABLE);
    g.map(&mut table, DST_IOVA, DST_GPA, USER | WRITABLE);
    let nested = g.nested(&table, None);
    g.dev.attach_pt(nested, Some(PASID)).unwrap();
    assert_eq!(probe(&mut g, X_IOVA), Ok(vec![0xaa; 16]));

    g.dev.detach_pt(Some(PASID)).unwrap();
    assert_eq!(probe(&mut g, X_IOVA), Err((ST_SRC_FAULT, X_IOVA)));
    let record = *g.dev.dma_faults().last().unwrap();
    assert_eq!(
        (record.stage, record.hwpt, record.fault.reason),
        (FaultStage::Blocked, None, DmaFaultReason::Blocked)
    );
    assert_eq!(record.fault.pasid, Some(PASID));

    // The detach flushed what the PASID had cached: no invalidation needed for a change made
    // while it was away.
    g.map(&mut table, X_IOVA, B_GPA, USER | WRITABLE);
    g.dev.attach_pt(nested, Some(PASID)).unwrap();
    assert_eq!(probe(&mut g, X_IOVA), Ok(vec![0xbb; 16]));
}

#[test]
fn replacing_a_pasids_nested_hwpt_switches_tables_at_once() {
    let mut g = guest(Backing::Anonymous);
    let mut first = g.table(TABLES_GPA);
    g.map(&mut first, X_IOVA, A_GPA, USER | WRITABLE);
    g.map(&mut first, DST_IOVA, DST_GPA, USER | WRITABLE);
    let mut second = g.table(TABLES2_GPA);
    g.map(&mut second, X_IOVA, B_GPA, USER | WRITABLE);
    g.map(&mut second, DST_IOVA, DST_GPA, USER | WRITABLE);
    let (n1, n2) = (g.nested(&first, None), g.nested(&second, None));

    assert_eq!(g.dev.attach_pt(n1, Some(PASID)), Ok(n1));
    assert_eq!(probe(&mut g, X_IOVA), Ok(vec![0xaa; 16]));
    assert_eq!(g.dev.attach_pt(n2, Some(PASID)), Ok(n2), "replace");
    assert_eq!(probe(&mut g, X_IOVA), Ok(vec![0xbb; 16]));
    assert_eq!(
        g.ctx.destroy(n1),
        Ok(()),
        "the replaced HWPT is no longer referenced"
    );
    assert_eq!(
        g.ctx.destroy(n2),
        Err(vfio_passthrough::errno::Errno::EBUSY)
    );
    // Requests without PASID still go through the parent alone (IOVA = guest physical).
    g.submit(Desc {
        op: OP_COPY,
        src: B_GPA,
        dst: DST_GPA + 0x100,
        len: 16,
        ..Desc::default()
    });
    assert_eq!(g.ram.read_vec(DST_GPA + 0x100, 16), vec![0xbb; 16]);
}
