//! A device's DMA read of one 4 KiB page through the emulated host's software IOMMU, against a
//! plain 4 KiB `memcpy` measured in the same run:
//!
//! - `nested_hit`: with a PASID attached to a nested HWPT, the stage-1 translation in the
//!   IOTLB (the page's attachment lookup, IOTLB probe, stage-2 lookup and the copy);
//! - `nested_miss`: the same after invalidating the page (`IOMMU_HWPT_INVALIDATE`, leaf and
//!   paging-structure entries) every iteration, so each read walks the guest's 4-level table
//!   through stage 2; `invalidate` measures the invalidation alone;
//! - `paging`: without PASID, through the nested HWPT's parent paging HWPT (stage 2 only).
//!
//! Guest RAM is anonymous process memory mapped into the IOAS at its guest physical address;
//! the table lives in it, with A/D already set so the measured walks only read.

mod common;

use std::hint::black_box;

use common::{Region, measure, report_ratio};
use criterion::{Criterion, criterion_group, criterion_main};
use vfio_passthrough::host::emulated::{EmulatedHost, HostConfig, IommuProfile, VtdIommu};
use vfio_passthrough::host::iommufd::uapi::*;
use vfio_passthrough::host::iommufd::{Iommufd, IommufdDevice};
use viommu::vtd::pte::{USER, WRITABLE};
use viommu::vtd::{FirstStageTableBuilder, PageSize, PagingMode, Stage2Fault, TableMemory};

const GPA_BASE: u64 = 0x1000_0000;
const RAM: u64 = 4 << 20;
const TABLES: std::ops::Range<u64> = GPA_BASE + 0x20_0000..GPA_BASE + 0x30_0000;
const DATA_GPA: u64 = GPA_BASE + 0x1_0000;
const IOVA: u64 = 0x7f12_3456_7000;
const PASID: u32 = 5;
const PAGE: usize = 4096;

/// Guest RAM as the guest's CPU sees it, for building its table (the bench is single-threaded
/// while it builds).
struct GuestTables<'a>(&'a Region);

impl GuestTables<'_> {
    fn ptr(&self, gpa: u64) -> *mut u64 {
        assert!(gpa >= GPA_BASE && gpa + 8 <= GPA_BASE + RAM && gpa % 8 == 0);
        (self.0.addr + (gpa - GPA_BASE)) as *mut u64
    }
}

impl TableMemory for GuestTables<'_> {
    fn read_entry(&mut self, gpa: u64) -> Result<u64, Stage2Fault> {
        // SAFETY: an aligned word inside the region (checked by `ptr`), which nothing else
        // accesses while the table is built.
        Ok(unsafe { self.ptr(gpa).read() })
    }

    fn compare_exchange_entry(
        &mut self,
        gpa: u64,
        current: u64,
        new: u64,
    ) -> Result<u64, Stage2Fault> {
        let p = self.ptr(gpa);
        // SAFETY: as in `read_entry`.
        let old = unsafe { p.read() };
        if old == current {
            // SAFETY: as in `read_entry`.
            unsafe { p.write(new) };
        }
        Ok(old)
    }
}

fn bench(c: &mut Criterion) {
    let ram = Region::new(RAM, true);
    let ctx = EmulatedHost::new(HostConfig::unprivileged(64 << 20)).open_iommufd();
    let dev = ctx
        .bind(IommuProfile::Vtd(VtdIommu::default()))
        .expect("bind");
    let mut a = IoasAlloc::default();
    ctx.ioas_alloc(&mut a).expect("ioas");
    let mut m = IoasMap {
        flags: IOMMU_IOAS_MAP_FIXED_IOVA | IOMMU_IOAS_MAP_READABLE | IOMMU_IOAS_MAP_WRITEABLE,
        ioas_id: a.out_ioas_id,
        reserved: 0,
        user_va: ram.addr,
        length: RAM,
        iova: GPA_BASE,
    };
    // SAFETY: the region outlives the context (declared first, dropped last).
    unsafe { ctx.ioas_map(&mut m) }.expect("map guest RAM");
    let mut parent = HwptAlloc {
        flags: IOMMU_HWPT_ALLOC_NEST_PARENT | IOMMU_HWPT_ALLOC_PASID,
        dev_id: dev.dev_id(),
        pt_id: a.out_ioas_id,
        ..Default::default()
    };
    ctx.hwpt_alloc(&mut parent, &[]).expect("parent HWPT");
    dev.attach(None, parent.out_hwpt_id).expect("attach RID");

    let mut mem = GuestTables(&ram);
    let mut table =
        FirstStageTableBuilder::new(&mut mem, PagingMode::FourLevel, TABLES).expect("table");
    table
        .map(
            &mut mem,
            IOVA,
            DATA_GPA,
            PageSize::Size4KiB,
            USER | WRITABLE,
        )
        .expect("map the page");
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
    ctx.hwpt_alloc(&mut nested, &s1.to_bytes())
        .expect("nested HWPT");
    dev.attach(Some(PASID), nested.out_hwpt_id)
        .expect("attach PASID");

    let port = dev.dma_port();
    let mut buf = vec![0u8; PAGE];
    port.read(Some(PASID), IOVA, &mut buf)
        .expect("a first read sets A");
    let entry = HwptVtdS1Invalidate {
        addr: IOVA,
        npages: 1,
        flags: 0,
        reserved: 0,
    }
    .to_bytes();
    let invalidate = || {
        let mut req = HwptInvalidate {
            hwpt_id: nested.out_hwpt_id,
            data_type: IOMMU_HWPT_INVALIDATE_DATA_VTD_S1,
            entry_len: HwptVtdS1Invalidate::SIZE as u32,
            entry_num: 1,
            reserved: 0,
        };
        ctx.hwpt_invalidate(&mut req, &entry).expect("invalidate");
    };
    let src = vec![0x5au8; PAGE];
    let mut dst = vec![0u8; PAGE];

    let mut g = c.benchmark_group("dma_read_4k");
    g.bench_function("memcpy", |b| {
        measure(b, "memcpy", || {
            dst.copy_from_slice(black_box(&src));
            black_box(&dst);
        })
    });
    g.bench_function("nested_hit", |b| {
        measure(b, "nested_hit", || {
            port.read(Some(PASID), black_box(IOVA), &mut buf)
                .expect("hit");
        })
    });
    g.bench_function("invalidate", |b| measure(b, "invalidate", invalidate));
    g.bench_function("nested_miss", |b| {
        measure(b, "nested_miss", || {
            invalidate();
            port.read(Some(PASID), black_box(IOVA), &mut buf)
                .expect("miss");
        })
    });
    g.bench_function("paging", |b| {
        measure(b, "paging", || {
            port.read(None, black_box(DATA_GPA), &mut buf)
                .expect("paging");
        })
    });
    g.finish();
    assert_eq!(buf, vec![0u8; PAGE], "guest RAM is zero there");

    report_ratio("nested_hit", "memcpy");
    report_ratio("nested_miss", "memcpy");
    report_ratio("paging", "memcpy");
    report_ratio("nested_hit", "paging");
    report_ratio("nested_miss", "nested_hit");
    report_ratio("invalidate", "memcpy");
    let stats = ctx.iotlb_stats();
    println!(
        "IOTLB: {} hits, {} misses, {} translations cached",
        stats.hits, stats.misses, stats.translations
    );
    assert!(
        dev.translator().faults().is_empty(),
        "no DMA faulted during the bench"
    );
}

criterion_group!(benches, bench);
criterion_main!(benches);
