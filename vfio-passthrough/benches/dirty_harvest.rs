//! Dirty-bitmap harvest (`IOMMU_HWPT_GET_DIRTY_BITMAP`) of 64 GiB mapped at 4 KiB in a
//! dirty-tracking VT-d domain (16 Mi pages, a 2 MiB bitmap), against a `memcpy` of a bitmap of
//! the same size. The memory is a `MAP_NORESERVE` region that is never touched.

mod common;

use std::hint::black_box;

use common::{Region, measure, report_ratio};
use criterion::{Criterion, criterion_group, criterion_main};
use vfio_passthrough::host::emulated::{EmulatedHost, HostConfig, IommuProfile, VtdIommu};
use vfio_passthrough::host::iommufd::uapi::*;
use vfio_passthrough::host::iommufd::{Iommufd, IommufdDevice};

const SIZE: u64 = 64 << 30;
const PAGE: u64 = 4096;
const IOVA: u64 = 1 << 40;

fn bench(c: &mut Criterion) {
    let mem = Region::new(SIZE, false);
    let config = HostConfig {
        memlock_limit: u64::MAX,
        ..HostConfig::unprivileged(0)
    };
    let ctx = EmulatedHost::new(config).open_iommufd();
    let dev = ctx
        .bind(IommuProfile::Vtd(VtdIommu::default()))
        .expect("bind");
    let mut a = IoasAlloc::default();
    ctx.ioas_alloc(&mut a).expect("ioas");
    let mut m = IoasMap {
        flags: IOMMU_IOAS_MAP_FIXED_IOVA | IOMMU_IOAS_MAP_READABLE | IOMMU_IOAS_MAP_WRITEABLE,
        ioas_id: a.out_ioas_id,
        reserved: 0,
        user_va: mem.addr,
        length: SIZE,
        iova: IOVA,
    };
    // SAFETY: the region outlives the context; neither the bench nor a device touches it.
    unsafe { ctx.ioas_map(&mut m) }.expect("map 64 GiB");
    let mut h = HwptAlloc {
        flags: IOMMU_HWPT_ALLOC_DIRTY_TRACKING,
        dev_id: dev.dev_id(),
        pt_id: a.out_ioas_id,
        ..Default::default()
    };
    ctx.hwpt_alloc(&mut h, &[]).expect("dirty HWPT");
    dev.attach(None, h.out_hwpt_id).expect("attach");
    ctx.hwpt_set_dirty_tracking(&HwptSetDirtyTracking {
        flags: IOMMU_HWPT_DIRTY_TRACKING_ENABLE,
        hwpt_id: h.out_hwpt_id,
        reserved: 0,
    })
    .expect("enable tracking");
    let domain = ctx.domain(h.out_hwpt_id).expect("domain");
    // Every page dirty: the densest harvest.
    domain.mark_dirty(IOVA, SIZE);

    let words = (SIZE / PAGE / 64) as usize;
    let mut bitmap = vec![0u64; words];
    let source = vec![0x5555_5555_5555_5555u64; words];
    let mut copy = vec![0u64; words];
    let req = |flags| HwptGetDirtyBitmap {
        hwpt_id: h.out_hwpt_id,
        flags,
        reserved: 0,
        iova: IOVA,
        length: SIZE,
        page_size: PAGE,
    };

    // Under `--list` or a filter the harvests may not run, and there is nothing to check.
    let mut harvested = false;
    let mut group = c.benchmark_group("dirty_harvest_64g");
    group.bench_function("memcpy_2m_bitmap", |b| {
        measure(b, "memcpy", || {
            copy.copy_from_slice(black_box(&source));
            black_box(&copy);
        })
    });
    group.bench_function("get_dirty_bitmap_no_clear", |b| {
        measure(b, "no_clear", || {
            ctx.hwpt_get_dirty_bitmap(&req(IOMMU_HWPT_GET_DIRTY_BITMAP_NO_CLEAR), &mut bitmap)
                .expect("harvest");
            black_box(&bitmap);
            harvested = true;
        })
    });
    group.bench_function("get_dirty_bitmap_clear", |b| {
        measure(b, "clear", || {
            ctx.hwpt_get_dirty_bitmap(&req(0), &mut bitmap)
                .expect("harvest");
            black_box(&bitmap);
        })
    });
    group.finish();
    assert!(
        !harvested || bitmap.iter().all(|&w| w == u64::MAX),
        "every page was reported dirty"
    );
    report_ratio("no_clear", "memcpy");
    report_ratio("clear", "memcpy");
    drop(dev);
}

criterion_group!(benches, bench);
criterion_main!(benches);
