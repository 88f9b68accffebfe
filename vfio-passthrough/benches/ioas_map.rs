//! Map + unmap of one area in an IOAS holding 10^5 live areas with a mock domain attached
//! (pinning, domain fill, accounting), against a plain `BTreeMap` doing the same insert and
//! removal among 10^5 entries. The same without a domain shows the IOAS path without pinning,
//! and `resources::IovaSpace` alone (10^5 areas, an insertion that refuses overlaps and a
//! removal) the bookkeeping that the reference can fairly be compared with.
//!
//! The domain path checks that the user range is mapped and writable as `pin_user_pages` would,
//! with one `PROCMAP_QUERY` ioctl on `/proc/self/maps`: that ioctl is measured alone in the same
//! run, and the domain ratio is also printed without it.

mod common;

use std::collections::BTreeMap;
use std::fs::File;
use std::hint::black_box;

use common::{Region, measure, report_ratio_of, report_ratio_without};
use criterion::{Criterion, criterion_group, criterion_main};
use resources::{AddrRange, IovaSpace};
use vfio_passthrough::host::emulated::{EmulatedHost, EmulatedIommufd, HostConfig, procmap_query};
use vfio_passthrough::host::iommufd::uapi::*;
use vfio_passthrough::host::iommufd::{Iommufd, IommufdSelftest, MOCK_APERTURE_START, MockDomain};

const LIVE: u64 = 100_000;
const P: u64 = 4096;
const STRIDE: u64 = 2 * P;
const FIXED_RW: u32 =
    IOMMU_IOAS_MAP_FIXED_IOVA | IOMMU_IOAS_MAP_READABLE | IOMMU_IOAS_MAP_WRITEABLE;

const IOAS_PATH: &str = "context lock, IOAS_MAP checks, an iopt_pages allocation, fixed-IOVA \
    check, IOVA tree insert; IOAS_UNMAP: context lock, IOVA tree lookup and removal";
const DOMAIN_PATH: &str = "the no-domain path, plus: one PROCMAP_QUERY ioctl (the pin check), \
    load and pin counts, memlock accounting, a domain page-table insert (a BTreeMap of 10^5 \
    mappings); on unmap the page-table removal, unpin and uncharge";

fn map(ctx: &EmulatedIommufd, ioas_id: u32, va: u64, length: u64, iova: u64) {
    let mut m = IoasMap {
        flags: FIXED_RW,
        ioas_id,
        reserved: 0,
        user_va: va,
        length,
        iova,
    };
    // SAFETY: the bench's regions outlive the context and are not touched while mapped.
    unsafe { ctx.ioas_map(&mut m) }.expect("map");
}

fn unmap(ctx: &EmulatedIommufd, ioas_id: u32, iova: u64, length: u64) {
    let mut u = IoasUnmap {
        ioas_id,
        iova,
        length,
    };
    ctx.ioas_unmap(&mut u).expect("unmap");
}

/// A context whose IOAS holds `LIVE` one-page areas (all of the same page), with or without
/// a mock domain; returns it, the IOAS and the first free IOVA above the areas.
fn populated(page: &Region, domain: bool) -> (EmulatedIommufd, u32, u64) {
    let config = HostConfig {
        memlock_limit: u64::MAX,
        ..HostConfig::unprivileged(0)
    };
    let ctx = EmulatedHost::new(config).open_iommufd();
    let mut a = IoasAlloc::default();
    ctx.ioas_alloc(&mut a).expect("ioas");
    if domain {
        let mut d = MockDomain {
            pt_id: a.out_ioas_id,
            ..Default::default()
        };
        ctx.mock_domain(&mut d).expect("mock domain");
    }
    for i in 0..LIVE {
        map(
            &ctx,
            a.out_ioas_id,
            page.addr,
            P,
            MOCK_APERTURE_START + i * STRIDE,
        );
    }
    let free = free_iova();
    (ctx, a.out_ioas_id, free)
}

/// The first 2 MiB-aligned IOVA above the live areas.
fn free_iova() -> u64 {
    (MOCK_APERTURE_START + LIVE * STRIDE).next_multiple_of(2 << 20)
}

fn reference_btree() -> BTreeMap<u64, (u64, u64)> {
    (0..LIVE)
        .map(|i| (MOCK_APERTURE_START + i * STRIDE, (P, i)))
        .collect()
}

fn bench(c: &mut Criterion) {
    let page = Region::new(P, true);
    let big = Region::new(2 << 20, true);
    let mut group = c.benchmark_group("ioas_map_unmap");
    let mut reference = reference_btree();
    let key = MOCK_APERTURE_START + LIVE * STRIDE + (4 << 20);
    group.bench_function("btreemap_insert_remove", |b| {
        measure(b, "btreemap", || {
            reference.insert(black_box(key), (P, 0));
            black_box(reference.remove(&key));
        })
    });
    let maps = File::open("/proc/self/maps").expect("/proc/self/maps");
    let has_procmap_query = procmap_query(&maps, page.addr).is_ok();
    if has_procmap_query {
        group.bench_function("procmap_query", |b| {
            measure(b, "procmap_query", || {
                black_box(procmap_query(&maps, black_box(page.addr)).ok());
            })
        });
    }
    let mut space: IovaSpace<u64> = IovaSpace::new();
    for i in 0..LIVE {
        let area = AddrRange::from_start_len(MOCK_APERTURE_START + i * STRIDE, P).unwrap();
        space.insert_area(area, i).expect("insert");
    }
    let free = AddrRange::from_start_len(free_iova(), P).unwrap();
    group.bench_function("iova_space_4k", |b| {
        measure(b, "iova_space_4k", || {
            space.insert_area(black_box(free), 0).expect("insert");
            black_box(space.remove_area(free.start()));
        })
    });
    drop(space);
    for (domain, tag) in [(true, "mock_domain"), (false, "no_domain")] {
        let (ctx, ioas, free) = populated(&page, domain);
        for (region, len, size) in [(&page, P, "4k"), (&big, 2 << 20, "2m")] {
            let id = format!("{tag}_{size}");
            group.bench_function(id.as_str(), |b| {
                measure(b, &id, || {
                    map(&ctx, ioas, region.addr, len, free);
                    unmap(&ctx, ioas, free, len);
                })
            });
        }
    }
    group.finish();
    for id in ["mock_domain_4k", "mock_domain_2m"] {
        report_ratio_of(id, "btreemap", DOMAIN_PATH);
        if has_procmap_query {
            report_ratio_without(id, "procmap_query", "btreemap");
        }
    }
    if has_procmap_query {
        report_ratio_of(
            "procmap_query",
            "btreemap",
            "the PROCMAP_QUERY ioctl alone (one per map with a domain)",
        );
    } else {
        println!("RATIO procmap_query: not measured (the host kernel has no PROCMAP_QUERY)");
    }
    for id in ["no_domain_4k", "no_domain_2m"] {
        report_ratio_of(id, "btreemap", IOAS_PATH);
    }
    report_ratio_of(
        "iova_space_4k",
        "btreemap",
        "resources::IovaSpace alone among 10^5 areas: insert_area (which refuses overlaps as \
         check_fixed would), remove_area",
    );
}

criterion_group!(benches, bench);
criterion_main!(benches);
