//! `RangeMap` against a naive model: a list of ranges scanned linearly, and holes found by
//! walking every address. Addresses live in a 256-byte universe placed either at 0 or at the
//! top of the 64-bit space, so ranges ending at `u64::MAX` are exercised.

use proptest::prelude::*;
use resources::{AddrRange, RangeMap, RangeMapError};

const UNIVERSE: u64 = 256;

#[derive(Debug, Clone)]
enum Op {
    Insert { start: u64, len: u64, value: u32 },
    Remove { start: u64 },
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        3 => (0..UNIVERSE, 1..=32u64, any::<u32>())
            .prop_map(|(start, len, value)| Op::Insert { start, len, value }),
        1 => (0..UNIVERSE).prop_map(|start| Op::Remove { start }),
    ]
}

/// The naive model: unsorted `(start, last, value)` triples.
#[derive(Default)]
struct Model {
    entries: Vec<(u64, u64, u32)>,
}

impl Model {
    fn overlapping(&self, s: u64, l: u64) -> Vec<(u64, u64, u32)> {
        let mut found: Vec<_> = self
            .entries
            .iter()
            .copied()
            .filter(|&(es, el, _)| es <= l && s <= el)
            .collect();
        found.sort_unstable();
        found
    }

    fn covered(&self, addr: u64) -> bool {
        self.entries.iter().any(|&(s, l, _)| s <= addr && addr <= l)
    }

    /// Gaps of the window found address by address.
    fn holes(&self, s: u64, l: u64) -> Vec<(u64, u64)> {
        let mut holes = Vec::new();
        let mut open: Option<u64> = None;
        let mut addr = s;
        loop {
            match (self.covered(addr), open) {
                (false, None) => open = Some(addr),
                (true, Some(start)) => {
                    holes.push((start, addr - 1));
                    open = None;
                }
                _ => {}
            }
            if addr == l {
                break;
            }
            addr += 1;
        }
        if let Some(start) = open {
            holes.push((start, l));
        }
        holes
    }
}

fn triples<'a>(it: impl Iterator<Item = (AddrRange, &'a u32)>) -> Vec<(u64, u64, u32)> {
    it.map(|(r, &v)| (r.start(), r.last(), v)).collect()
}

fn check_queries(map: &RangeMap<u32>, model: &Model, base: u64) -> Result<(), TestCaseError> {
    let mut all = model.entries.clone();
    all.sort_unstable();
    prop_assert_eq!(triples(map.iter()), all.clone());
    prop_assert_eq!(map.len(), all.len());
    for offset in 0..UNIVERSE {
        let addr = base + offset;
        let want = model.overlapping(addr, addr).first().copied();
        prop_assert_eq!(map.get(addr).map(|(r, &v)| (r.start(), r.last(), v)), want);
    }
    Ok(())
}

fn check_window(
    map: &RangeMap<u32>,
    model: &Model,
    window: AddrRange,
) -> Result<(), TestCaseError> {
    let (s, l) = (window.start(), window.last());
    let want = model.overlapping(s, l);
    prop_assert_eq!(triples(map.overlapping(window)), want.clone());
    prop_assert_eq!(
        map.first_overlapping(window)
            .map(|(r, &v)| (r.start(), r.last(), v)),
        want.first().copied()
    );
    let holes: Vec<_> = map.holes(window).map(|r| (r.start(), r.last())).collect();
    prop_assert_eq!(holes, model.holes(s, l));
    Ok(())
}

fn run(base: u64, ops: Vec<Op>, windows: Vec<(u64, u64)>) -> Result<(), TestCaseError> {
    let mut map = RangeMap::new();
    let mut model = Model::default();
    for op in ops {
        match op {
            Op::Insert { start, len, value } => {
                let len = len.min(UNIVERSE - start);
                let range = AddrRange::from_start_len(base + start, len).unwrap();
                let clash = model
                    .overlapping(range.start(), range.last())
                    .first()
                    .copied();
                match (map.insert(range, value), clash) {
                    (Ok(()), None) => model.entries.push((range.start(), range.last(), value)),
                    (Err(RangeMapError::Overlap { range: r, existing }), Some((cs, cl, _))) => {
                        prop_assert_eq!(r, range);
                        prop_assert_eq!((existing.start(), existing.last()), (cs, cl));
                    }
                    (got, want) => prop_assert!(false, "insert {range}: {got:?}, model {want:?}"),
                }
            }
            Op::Remove { start } => {
                let addr = base + start;
                let pos = model.entries.iter().position(|&(s, _, _)| s == addr);
                let want = pos.map(|i| model.entries.swap_remove(i));
                let got = map.remove(addr).map(|(r, v)| (r.start(), r.last(), v));
                prop_assert_eq!(got, want);
            }
        }
        check_queries(&map, &model, base)?;
    }
    for (a, b) in windows {
        let window = AddrRange::new(base + a.min(b), base + a.max(b)).unwrap();
        check_window(&map, &model, window)?;
    }
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    #[test]
    fn range_map_matches_naive_model_at_the_bottom(
        ops in prop::collection::vec(op(), 1..40),
        windows in prop::collection::vec((0..UNIVERSE, 0..UNIVERSE), 1..8),
    ) {
        run(0, ops, windows)?;
    }

    #[test]
    fn range_map_matches_naive_model_at_the_top_of_the_space(
        ops in prop::collection::vec(op(), 1..40),
        windows in prop::collection::vec((0..UNIVERSE, 0..UNIVERSE), 1..8),
    ) {
        run(u64::MAX - (UNIVERSE - 1), ops, windows)?;
    }
}
