//! DMA of an emulated device translated by the emulated host's software IOMMU: through a
//! paging HWPT (stage 2), and with a PASID through a nested HWPT whose VT-d first-stage table
//! the guest built in its own RAM, with A/D flags, dirty tracking, fault records and page
//! requests on the fault queue.

mod common;

use std::fs::File;
use std::io::{Read, Write};

use common::nested::*;
use common::*;
use vfio_passthrough::host::dma::{DmaFault, DmaFaultReason};
use vfio_passthrough::host::emulated::FaultStage;
use vfio_passthrough::host::iommufd::uapi::*;
use vfio_passthrough::vfio::{VFIO_PCI_MSIX_IRQ_INDEX, VfioDevice};
use viommu::vtd::FaultReason;
use viommu::vtd::pte::{ACCESSED, DIRTY, USER, WRITABLE};

/// Stage-1 addresses of the PASID's buffers (two pages each for the source and destination).
const SRC_IOVA: u64 = 0x7000_0000;
const DST_IOVA: u64 = 0x7000_4000;
const COMP_IOVA: u64 = 0x7000_8000;
/// Where they land in guest RAM: the destination's two pages are neither contiguous nor in
/// order, so a copy across them must be split where stage 1 says.
const SRC_GPA: u64 = DATA_GPA;
const DST_GPA: [u64; 2] = [DATA_GPA + 0x5000, DATA_GPA + 0x3000];
const COMP_GPA: u64 = DATA_GPA + 0x8000;

fn pattern(seed: u8, len: usize) -> Vec<u8> {
    (0..len)
        .map(|i| (i as u8).wrapping_mul(31).wrapping_add(seed))
        .collect()
}

fn msix(dev: &dyn VfioDevice) -> [vmm_sys_util::eventfd::EventFd; 2] {
    let v = [eventfd(), eventfd()];
    set_triggers(dev, VFIO_PCI_MSIX_IRQ_INDEX, 0, &[&v[0], &v[1]]).unwrap();
    v
}

/// The guest's table mapping the PASID's buffers (user, writable pages).
fn guest_table(g: &Guest) -> viommu::vtd::FirstStageTableBuilder {
    let mut t = g.table(TABLES_GPA);
    g.map(&mut t, SRC_IOVA, SRC_GPA, USER | WRITABLE);
    g.map(&mut t, SRC_IOVA + 0x1000, SRC_GPA + 0x1000, USER | WRITABLE);
    g.map(&mut t, DST_IOVA, DST_GPA[0], USER | WRITABLE);
    g.map(&mut t, DST_IOVA + 0x1000, DST_GPA[1], USER | WRITABLE);
    g.map(&mut t, COMP_IOVA, COMP_GPA, USER | WRITABLE);
    t
}

fn read_pgfault(fd: &mut File) -> HwptPgfault {
    let mut buf = [0u8; HwptPgfault::SIZE];
    fd.read_exact(&mut buf)
        .expect("a page request was delivered to the fault queue");
    HwptPgfault::from_bytes(&buf).unwrap()
}

#[test]
fn a_copy_through_a_paging_hwpt_lands_dirties_its_pages_and_raises_msix() {
    let mut g = Guest::new(Backing::Memfd);
    let vectors = msix(&g.dev);
    g.track_dirty();
    let (src, dst, comp) = (DATA_GPA + 0x100, DATA_GPA + 0x1_0080, DATA_GPA + 0x2_0000);
    let data = pattern(1, 0x1800);
    g.ram.write(src, &data);
    g.submit(Desc {
        op: OP_COPY | OP_INTERRUPT,
        src,
        dst,
        len: data.len() as u64,
        completion: comp,
        ..Desc::default()
    });
    assert_eq!(g.ram.read_vec(dst, data.len()), data);
    assert_eq!(g.ram.read_vec(comp, 4), ST_SUCCESS.to_le_bytes());
    assert_eq!(drain(&vectors[0]), 1);
    assert_eq!(drain(&vectors[1]), 0);
    assert_eq!(
        g.dirty_pages(),
        vec![DATA_GPA + 0x1_0000, DATA_GPA + 0x1_1000, comp],
        "the destination and completion pages, not the source or the ring"
    );
    assert!(g.dev.dma_faults().is_empty());
}

fn nested_copy(backing: Backing) {
    let mut g = Guest::new(backing);
    let vectors = msix(&g.dev);
    let table = guest_table(&g);
    let nested = g.nested(&table, None);
    g.dev.attach_pt(nested, Some(PASID)).unwrap();
    g.track_dirty();
    let data = pattern(7, 0x1800);
    g.ram.write(SRC_GPA + 0x100, &data);
    g.submit(Desc {
        op: OP_COPY | OP_INTERRUPT,
        pasid: PASID_VALID | PASID,
        src: SRC_IOVA + 0x100,
        dst: DST_IOVA + 0x700,
        len: data.len() as u64,
        completion: COMP_IOVA,
    });
    assert_eq!(g.error().0, 0, "no error: {:?}", g.dev.dma_faults());
    let split = 0x1000 - 0x700;
    assert_eq!(g.ram.read_vec(DST_GPA[0] + 0x700, split), data[..split]);
    assert_eq!(
        g.ram.read_vec(DST_GPA[1], data.len() - split),
        data[split..]
    );
    assert_eq!(g.ram.read_vec(COMP_GPA, 4), ST_SUCCESS.to_le_bytes());
    assert_eq!(drain(&vectors[0]), 1);

    // The walks set A on every entry they used and D on the leaves they wrote through.
    for level in 2..=4 {
        assert_ne!(
            g.entry(&table, SRC_IOVA, level) & ACCESSED,
            0,
            "level {level}"
        );
    }
    let flags = |iova| g.entry(&table, iova, 1) & (ACCESSED | DIRTY);
    assert_eq!(flags(SRC_IOVA), ACCESSED, "read only: accessed, not dirty");
    assert_eq!(flags(SRC_IOVA + 0x1000), ACCESSED);
    assert_eq!(flags(DST_IOVA), ACCESSED | DIRTY);
    assert_eq!(flags(DST_IOVA + 0x1000), ACCESSED | DIRTY);
    assert_eq!(flags(COMP_IOVA), ACCESSED | DIRTY);

    // Stage 2 saw writes to the destination, the completion record and the four table pages
    // whose flags changed; not to the source or the ring.
    let mut expected = vec![DST_GPA[1], DST_GPA[0], COMP_GPA];
    expected.extend((0..4).map(|i| TABLES_GPA.start + i * 0x1000));
    expected.sort();
    assert_eq!(g.dirty_pages(), expected);
    assert!(g.dev.dma_faults().is_empty());
}

#[test]
fn a_pasid_copy_through_a_nested_hwpt_in_memfd_ram_walks_and_flags_the_guest_table() {
    nested_copy(Backing::Memfd);
}

#[test]
fn a_pasid_copy_through_a_nested_hwpt_in_anonymous_ram_walks_and_flags_the_guest_table() {
    nested_copy(Backing::Anonymous);
}

#[test]
fn an_unmapped_stage_1_iova_faults_with_a_record_and_a_page_request() {
    let mut g = Guest::new(Backing::Memfd);
    let (fault_id, mut fd) = g.fault_queue();
    let table = guest_table(&g);
    let nested = g.nested(&table, Some(fault_id));
    g.dev.attach_pt(nested, Some(PASID)).unwrap();
    let hole = SRC_IOVA + 0x1_0010;
    let read_hole = Desc {
        op: OP_COPY,
        pasid: PASID_VALID | PASID,
        src: hole,
        dst: DST_IOVA,
        len: 64,
        ..Desc::default()
    };
    g.submit(read_hole);
    assert_eq!(g.error(), (ST_SRC_FAULT, hole));
    let record = *g.dev.dma_faults().last().unwrap();
    assert_eq!(
        record.fault,
        DmaFault {
            iova: hole,
            pasid: Some(PASID),
            write: false,
            reason: DmaFaultReason::NotPresent,
        }
    );
    assert_eq!(
        record.stage,
        FaultStage::Stage1 {
            reason: FaultReason::FsEntryNotPresent,
            level: Some(1),
        }
    );
    assert_eq!((record.dev_id, record.hwpt), (g.dev_id, Some(nested)));

    let req = read_pgfault(&mut fd);
    assert_eq!(
        req.flags,
        IOMMU_PGFAULT_FLAGS_PASID_VALID | IOMMU_PGFAULT_FLAGS_LAST_PAGE
    );
    assert_eq!(
        (req.dev_id, req.pasid, req.addr),
        (g.dev_id, PASID, hole & !0xfff)
    );
    assert_eq!(req.perm, IOMMU_PGFAULT_PERM_READ);
    assert_eq!(record.cookie, Some(req.cookie));

    // An answered group's cookie is free again; an unanswered one stays taken.
    let resp = HwptPageResponse {
        cookie: req.cookie,
        code: IOMMUFD_PAGE_RESP_SUCCESS,
    };
    fd.write_all(&resp.to_bytes()).unwrap();
    g.submit(read_hole);
    let again = read_pgfault(&mut fd);
    assert_eq!(again.cookie, req.cookie);
    g.submit(read_hole);
    let third = read_pgfault(&mut fd);
    assert_ne!(third.cookie, again.cookie);
    assert_eq!(g.dev.dma_faults().len(), 3);
}

#[test]
fn an_unmapped_stage_2_address_faults_with_its_guest_physical_address() {
    let mut g = Guest::new(Backing::Anonymous);
    let (fault_id, mut fd) = g.fault_queue();
    let mut table = guest_table(&g);
    let outside = GPA_BASE + RAM_SIZE + 0x20_0000;
    let bad_iova = DST_IOVA + 0x2000;
    g.map(&mut table, bad_iova, outside, USER | WRITABLE);
    let nested = g.nested(&table, Some(fault_id));
    g.dev.attach_pt(nested, Some(PASID)).unwrap();
    g.ram.write(SRC_GPA, &pattern(3, 0x2000));
    g.submit(Desc {
        op: OP_COPY,
        pasid: PASID_VALID | PASID,
        src: SRC_IOVA,
        dst: DST_IOVA + 0x1000,
        len: 0x2000,
        ..Desc::default()
    });
    assert_eq!(g.error(), (ST_DST_FAULT, bad_iova));
    assert_eq!(
        g.ram.read_vec(DST_GPA[1], 0x1000),
        pattern(3, 0x1000),
        "the page before the fault was written"
    );
    let record = *g.dev.dma_faults().last().unwrap();
    assert_eq!(
        (record.fault.iova, record.fault.write, record.fault.reason),
        (bad_iova, true, DmaFaultReason::NotPresent)
    );
    assert_eq!(record.stage, FaultStage::Stage2 { address: outside });
    let req = read_pgfault(&mut fd);
    assert_eq!((req.addr, req.perm), (bad_iova, IOMMU_PGFAULT_PERM_WRITE));
}

#[test]
fn a_write_through_a_read_only_stage_1_page_is_a_permission_fault() {
    let mut g = Guest::new(Backing::Memfd);
    let mut table = guest_table(&g);
    g.map(&mut table, DST_IOVA, DST_GPA[0], USER);
    let nested = g.nested(&table, None);
    g.dev.attach_pt(nested, Some(PASID)).unwrap();
    g.ram.write(DST_GPA[0], &[0x5a; 16]);
    g.submit(Desc {
        op: OP_FILL,
        pasid: PASID_VALID | PASID,
        dst: DST_IOVA,
        len: 16,
        ..Desc::default()
    });
    assert_eq!(g.error(), (ST_DST_FAULT, DST_IOVA));
    assert_eq!(g.ram.read_vec(DST_GPA[0], 16), vec![0x5a; 16]);
    let record = *g.dev.dma_faults().last().unwrap();
    assert_eq!(record.fault.reason, DmaFaultReason::Permission);
    assert_eq!(
        record.stage,
        FaultStage::Stage1 {
            reason: FaultReason::WriteDenied,
            level: Some(1),
        }
    );
    assert_eq!(
        g.entry(&table, DST_IOVA, 1) & DIRTY,
        0,
        "a refused write sets no dirty flag"
    );
}
