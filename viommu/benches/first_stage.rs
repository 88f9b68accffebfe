//! First-stage walk (an IOTLB miss) and IOTLB hit for the same address, each against a plain
//! `HashMap<u64, u64>` lookup measured in the same run; prints the ratios at the end.
//!
//! The walk reads its tables from `SparseTableMemory` (a HashMap of entries, identity stage 2),
//! so it costs one map probe per level plus the entry checks: the floor under the emulated host's
//! nested walk, whose table reads also go through stage 2.

use std::collections::HashMap;
use std::hint::black_box;
use std::time::{Duration, Instant};

use criterion::Criterion;
use viommu::iotlb::Iotlb;
use viommu::vtd::pte::{USER, WRITABLE};
use viommu::vtd::{
    Access, FirstStageConfig, FirstStageTableBuilder, PageSize, PagingMode, SparseTableMemory, walk,
};

/// An address with a different index at every level, in the lower canonical half.
const IOVA: u64 = 0x0000_7f12_3456_7000 + 0x9a8;
/// Entries in the reference map and pages mapped around IOVA: the default IOTLB 4 KiB capacity.
const ENTRIES: u64 = 4096;

/// Runs `op` under criterion as `name` and returns the median time per call over every sample
/// criterion took (warm-up included), in nanoseconds.
fn measure(c: &mut Criterion, name: &str, mut op: impl FnMut()) -> f64 {
    let mut per_call = Vec::new();
    c.bench_function(name, |b| {
        b.iter_custom(|iters| {
            let start = Instant::now();
            for _ in 0..iters {
                op();
            }
            let elapsed = start.elapsed();
            per_call.push(elapsed.as_nanos() as f64 / iters.max(1) as f64);
            elapsed
        })
    });
    per_call.sort_by(f64::total_cmp);
    per_call
        .get(per_call.len() / 2)
        .copied()
        .unwrap_or(f64::NAN)
}

/// A table of `mode` mapping ENTRIES 4 KiB pages around IOVA, with A and D already set so every
/// measured walk is a pure read walk.
fn table(mode: PagingMode) -> (SparseTableMemory, FirstStageConfig) {
    let mut mem = SparseTableMemory::new();
    let mut tables = FirstStageTableBuilder::new(&mut mem, mode, 0x100_0000..0x400_0000).unwrap();
    let first = PageSize::Size4KiB.align_down(IOVA) - (ENTRIES / 2) * 4096;
    for i in 0..ENTRIES {
        let iova = first + i * 4096;
        tables
            .map(
                &mut mem,
                iova,
                0x10_0000_0000 + i * 4096,
                PageSize::Size4KiB,
                USER | WRITABLE,
            )
            .unwrap();
    }
    let config = FirstStageConfig::new(tables.root(), mode, 48).unwrap();
    walk(&config, IOVA, Access::WRITE, &mut mem).unwrap();
    (mem, config)
}

fn main() {
    let mut c = Criterion::default()
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(3))
        .configure_from_args();

    let reference: HashMap<u64, u64> = (0..ENTRIES)
        .map(|i| ((IOVA >> 12) - ENTRIES / 2 + i, 0x10_0000_0000 + i * 4096))
        .collect();
    let hashmap = measure(&mut c, "hashmap_u64_lookup", || {
        black_box(reference.get(&black_box(IOVA >> 12)));
    });

    let (mut mem4, config4) = table(PagingMode::FourLevel);
    let walk4 = measure(&mut c, "first_stage_walk_4level", || {
        black_box(walk(&config4, black_box(IOVA), Access::WRITE, &mut mem4).unwrap());
    });

    let (mut mem5, config5) = table(PagingMode::FiveLevel);
    let walk5 = measure(&mut c, "first_stage_walk_5level", || {
        black_box(walk(&config5, black_box(IOVA), Access::WRITE, &mut mem5).unwrap());
    });

    let iotlb = Iotlb::<u32>::default();
    iotlb
        .translate(1, &config4, IOVA, Access::WRITE, &mut mem4)
        .unwrap();
    let hit = measure(&mut c, "iotlb_hit", || {
        black_box(
            iotlb
                .translate(1, &config4, black_box(IOVA), Access::WRITE, &mut mem4)
                .unwrap(),
        );
    });
    assert_eq!(iotlb.stats().misses, 1, "every measured translation hit");

    c.final_summary();
    println!();
    println!("median ns per call (same run):");
    println!("  HashMap<u64, u64> lookup     {hashmap:8.1}");
    println!("  first-stage walk, 4-level    {walk4:8.1}");
    println!("  first-stage walk, 5-level    {walk5:8.1}");
    println!("  IOTLB hit                    {hit:8.1}");
    println!("ratios:");
    println!("  walk 4-level / HashMap       {:8.2}", walk4 / hashmap);
    println!("  walk 5-level / HashMap       {:8.2}", walk5 / hashmap);
    println!("  IOTLB hit / HashMap          {:8.2}", hit / hashmap);
    println!("  walk 4-level / IOTLB hit     {:8.2}", walk4 / hit);
}
