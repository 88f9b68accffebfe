//! Automatic IOVA placement in a fragmented IOAS (10^5 areas of 4 KiB separated by 4 KiB
//! holes, inside an allowed window) against a plain `BTreeMap` doing the same insert and
//! removal. A 4 KiB request fits the lowest hole; an 8 KiB one must pass every small hole (the
//! kernel's first fit walks them all; the IOVA space skips the subtrees of its tree whose holes
//! are all too small). `resources::IovaSpace` alone, in the same fragmented state, shows the
//! bookkeeping without the context and the `iopt_pages`.

mod common;

use std::collections::BTreeMap;
use std::hint::black_box;

use common::{Region, measure, report_ratio_of};
use criterion::{Criterion, criterion_group, criterion_main};
use resources::iova::MAX_ALIGNMENT_THP;
use resources::{AddrRange, IovaSpace, auto_alignment};
use vfio_passthrough::host::emulated::{EmulatedHost, EmulatedIommufd, HostConfig};
use vfio_passthrough::host::iommufd::Iommufd;
use vfio_passthrough::host::iommufd::uapi::*;

const LIVE: u64 = 100_000;
const P: u64 = 4096;
const BASE: u64 = 1 << 32;
const RW: u32 = IOMMU_IOAS_MAP_READABLE | IOMMU_IOAS_MAP_WRITEABLE;

const IOAS_PATH: &str = "IOAS_MAP (context lock, checks, an iopt_pages allocation, placement, \
    IOVA tree insert) then IOAS_UNMAP (context lock, IOVA tree lookup and removal); no domain";

fn map(ctx: &EmulatedIommufd, ioas_id: u32, flags: u32, va: u64, length: u64, iova: u64) -> u64 {
    let mut m = IoasMap {
        flags,
        ioas_id,
        reserved: 0,
        user_va: va,
        length,
        iova,
    };
    // SAFETY: the bench's region outlives the context and is not touched while mapped.
    unsafe { ctx.ioas_map(&mut m) }.expect("map");
    m.iova
}

fn unmap(ctx: &EmulatedIommufd, ioas_id: u32, iova: u64, length: u64) {
    let mut u = IoasUnmap {
        ioas_id,
        iova,
        length,
    };
    ctx.ioas_unmap(&mut u).expect("unmap");
}

fn bench(c: &mut Criterion) {
    let mem = Region::new(2 * P, true);
    let ctx = EmulatedHost::new(HostConfig::unprivileged(u64::MAX)).open_iommufd();
    let mut a = IoasAlloc::default();
    ctx.ioas_alloc(&mut a).expect("ioas");
    let ioas = a.out_ioas_id;
    let end = BASE + 2 * LIVE * P + (64 << 20);
    let allowed = [IovaRange {
        start: BASE,
        last: end,
    }];
    ctx.ioas_allow_iovas(
        &IoasAllowIovas {
            ioas_id: ioas,
            reserved: 0,
        },
        &allowed,
    )
    .expect("allow");
    for i in 0..LIVE {
        map(
            &ctx,
            ioas,
            RW | IOMMU_IOAS_MAP_FIXED_IOVA,
            mem.addr,
            P,
            BASE + 2 * i * P + P,
        );
    }
    let mut reference: BTreeMap<u64, u64> = (0..LIVE).map(|i| (BASE + 2 * i * P + P, P)).collect();
    let mut group = c.benchmark_group("auto_placement");
    group.bench_function("btreemap_insert_remove", |b| {
        measure(b, "btreemap", || {
            reference.insert(black_box(BASE), P);
            black_box(reference.remove(&BASE));
        })
    });
    for (len, id) in [(P, "auto_4k_first_hole"), (2 * P, "auto_8k_past_all_holes")] {
        group.bench_function(id, |b| {
            measure(b, id, || {
                let iova = map(&ctx, ioas, RW, mem.addr, len, 0);
                unmap(&ctx, ioas, iova, len);
            })
        });
    }
    let mut space: IovaSpace<u64> = IovaSpace::new();
    space
        .set_allowed(&[AddrRange::new(BASE, end).unwrap()])
        .expect("allow");
    for i in 0..LIVE {
        let area = AddrRange::from_start_len(BASE + 2 * i * P + P, P).unwrap();
        space.insert_area(area, i).expect("insert");
    }
    for (len, id) in [
        (P, "space_4k_first_hole"),
        (2 * P, "space_8k_past_all_holes"),
    ] {
        let a = auto_alignment(len, mem.addr, P, MAX_ALIGNMENT_THP).expect("alignment");
        group.bench_function(id, |b| {
            measure(b, id, || {
                let iova = space
                    .alloc(black_box(len), a.alignment, a.page_offset, P)
                    .expect("alloc");
                let area = AddrRange::from_start_len(iova, len).unwrap();
                space.insert_area(area, 0).expect("insert");
                black_box(space.remove_area(iova));
            })
        });
    }
    group.finish();
    report_ratio_of("auto_4k_first_hole", "btreemap", IOAS_PATH);
    report_ratio_of("auto_8k_past_all_holes", "btreemap", IOAS_PATH);
    let alone = "resources::IovaSpace alone, same state: alloc, insert_area, remove_area";
    report_ratio_of("space_4k_first_hole", "btreemap", alone);
    report_ratio_of("space_8k_past_all_holes", "btreemap", alone);
}

criterion_group!(benches, bench);
criterion_main!(benches);
