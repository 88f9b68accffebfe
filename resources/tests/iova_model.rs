//! `IovaSpace` against a brute-force model on a scaled-down space.
//!
//! All ranges are whole units of `UNIT` bytes inside a universe of `UNITS` units; everything
//! outside the universe is reserved by a sentinel owner, so the 64-bit space behaves like a
//! small one. The universe sits either at 0 or against `u64::MAX`, so the first/last page clip
//! and the top of the space are exercised. The model keeps plain lists, asks byte by byte
//! whether an address is free and allowed, and places IOVAs two ways:
//! - `reference_place`: the kernel's rule from its statement (for each merged allowed span: the
//!   span's candidate, then the first free run whose candidate fits), over runs found by
//!   scanning units rather than by the crate's trees;
//! - `lowest_aligned_fit`: for a zero page offset, the lowest aligned address whose bytes up to
//!   `max(length, 2)` are free, allowed and in the window, by trying every aligned address.
//!
//! The space prunes its search by the largest hole of each subtree of its tree; the fragmented
//! cases start from many one-unit areas inserted in random order (so the tree has many shapes
//! and many small holes) and ask mostly for lengths that must skip some of them.

use proptest::prelude::*;
use resources::iova::IovaError;
use resources::{AddrRange, IovaSpace};

const UNIT: u64 = 16;
const UNITS: u64 = 64;
const SPAN: u64 = UNIT * UNITS;
const OWNERS: u64 = 3;
const SENTINEL: u64 = u64::MAX;

#[derive(Debug, Clone)]
enum Op {
    Reserve { lo: u64, len: u64, owner: u64 },
    Unreserve { owner: u64 },
    Insert { lo: u64, len: u64 },
    Remove { lo: u64 },
    Allow { ranges: Vec<(u64, u64)> },
}

fn op() -> impl Strategy<Value = Op> {
    let unit_range = (0..UNITS, 1..=8u64);
    prop_oneof![
        3 => (unit_range.clone(), 0..OWNERS)
            .prop_map(|((lo, len), owner)| Op::Reserve { lo, len, owner }),
        1 => (0..OWNERS).prop_map(|owner| Op::Unreserve { owner }),
        5 => unit_range.prop_map(|(lo, len)| Op::Insert { lo, len }),
        2 => (0..UNITS).prop_map(|lo| Op::Remove { lo }),
        2 => prop::collection::vec((0..UNITS, 1..=24u64), 0..4)
            .prop_map(|ranges| Op::Allow { ranges }),
    ]
}

#[derive(Debug, Clone, Copy)]
struct Request {
    length: u64,
    alignment: u64,
    page_offset: u64,
    page_size: u64,
}

fn request() -> impl Strategy<Value = Request> {
    (
        1..=SPAN / 2,
        0..=10u32,
        0..=2u32,
        any::<u64>(),
        any::<bool>(),
    )
        .prop_map(|(length, align_log, page_log, offset_seed, zero_offset)| {
            let page_size = UNIT << page_log;
            Request {
                length,
                alignment: 1 << align_log,
                page_offset: if zero_offset {
                    0
                } else {
                    offset_seed % page_size
                },
                page_size,
            }
        })
}

/// The model: byte ranges as plain lists.
#[derive(Debug, Clone, Default)]
struct Model {
    base: u64,
    areas: Vec<(u64, u64)>,
    reserved: Vec<(u64, u64, u64)>,
    allowed: Vec<(u64, u64)>,
}

fn meets(a: (u64, u64), b: (u64, u64)) -> bool {
    a.0 <= b.1 && b.0 <= a.1
}

impl Model {
    fn range(&self, lo: u64, len: u64) -> (u64, u64) {
        let len = len.min(UNITS - lo);
        (
            self.base + lo * UNIT,
            self.base + lo * UNIT + (len * UNIT - 1),
        )
    }

    fn reserved_at(&self, addr: u64) -> bool {
        self.reserved
            .iter()
            .any(|&(s, l, _)| s <= addr && addr <= l)
    }

    fn free_at(&self, addr: u64) -> bool {
        !self.reserved_at(addr) && !self.areas.iter().any(|&(s, l)| s <= addr && addr <= l)
    }

    fn allowed_at(&self, addr: u64) -> bool {
        self.allowed.is_empty() || self.allowed.iter().any(|&(s, l)| s <= addr && addr <= l)
    }

    /// Maximal runs of units satisfying `pred`, as byte ranges, ascending.
    fn unit_runs(&self, pred: impl Fn(u64) -> bool) -> Vec<(u64, u64)> {
        let mut runs: Vec<(u64, u64)> = Vec::new();
        for unit in 0..UNITS {
            let s = self.base + unit * UNIT;
            let l = s + (UNIT - 1);
            if !pred(s) {
                continue;
            }
            match runs.last_mut() {
                Some(run) if run.1.checked_add(1) == Some(s) => run.1 = l,
                _ => runs.push((s, l)),
            }
        }
        runs
    }
}

/// `__alloc_iova_check_range`, restated.
fn fit(req: &Request, start: u64, last: u64) -> Option<u64> {
    let mask = req.alignment - 1;
    let cand = (start.checked_add(mask)? & !mask) | req.page_offset;
    (cand < last && last - cand >= req.length - 1).then_some(cand)
}

fn reference_place(model: &Model, req: &Request) -> Option<u64> {
    let window = (req.page_size, u64::MAX - req.page_size);
    let spans: Vec<(u64, u64)> = if model.allowed.is_empty() {
        vec![window]
    } else {
        model
            .unit_runs(|addr| model.allowed_at(addr))
            .into_iter()
            .filter(|&run| meets(run, window))
            .map(|(s, l)| (s.max(window.0), l.min(window.1)))
            .collect()
    };
    let free = model.unit_runs(|addr| model.free_at(addr));
    for (span_start, span_last) in spans {
        let Some(start) = fit(req, span_start, span_last) else {
            continue;
        };
        for &(s, l) in &free {
            if !meets((s, l), (start, span_last)) {
                continue;
            }
            if let Some(iova) = fit(req, s.max(start), l.min(span_last)) {
                return Some(iova);
            }
        }
    }
    None
}

fn lowest_aligned_fit(model: &Model, req: &Request) -> Option<u64> {
    let reach = req.length.max(2) - 1;
    let window = (req.page_size, u64::MAX - req.page_size);
    let first = model.base.max(window.0).next_multiple_of(req.alignment);
    (first..=model.base + (SPAN - 1))
        .step_by(req.alignment as usize)
        .find(|&x| {
            let Some(last) = x.checked_add(reach) else {
                return false;
            };
            last <= window.1 && (x..=last).all(|b| model.free_at(b) && model.allowed_at(b))
        })
}

/// Everything observable about a space: areas with values, reservations, the allowed list.
#[derive(Debug, PartialEq)]
struct Snapshot {
    areas: Vec<(AddrRange, u64)>,
    reserved: Vec<(AddrRange, u64)>,
    allowed: Vec<AddrRange>,
}

/// Taken before and after a failed call, to check that it changed nothing.
fn snapshot(space: &IovaSpace<u64>) -> Snapshot {
    Snapshot {
        areas: space.areas().iter().map(|(r, &v)| (r, v)).collect(),
        reserved: space.reserved().iter().collect(),
        allowed: space.allowed().collect(),
    }
}

fn new_space(base: u64) -> (IovaSpace<u64>, Model) {
    let mut space = IovaSpace::new();
    let mut model = Model {
        base,
        ..Model::default()
    };
    let outside = if base == 0 {
        vec![(SPAN, u64::MAX)]
    } else {
        vec![(0, base - 1)]
    };
    for (s, l) in outside {
        space
            .reserve(AddrRange::new(s, l).unwrap(), SENTINEL)
            .unwrap();
        model.reserved.push((s, l, SENTINEL));
    }
    (space, model)
}

fn apply(space: &mut IovaSpace<u64>, model: &mut Model, op: &Op) -> Result<(), TestCaseError> {
    let before = snapshot(space);
    let failed = match *op {
        Op::Reserve { lo, len, owner } => {
            let (s, l) = model.range(lo, len);
            let range = AddrRange::new(s, l).unwrap();
            let in_use = model
                .areas
                .iter()
                .chain(&model.allowed)
                .any(|&a| meets(a, (s, l)));
            let got = space.reserve(range, owner);
            if in_use {
                prop_assert!(matches!(got, Err(IovaError::InUse { .. })), "{got:?}");
            } else {
                prop_assert_eq!(got, Ok(()));
                model.reserved.push((s, l, owner));
            }
            in_use
        }
        Op::Unreserve { owner } => {
            let want = model.reserved.iter().filter(|r| r.2 == owner).count();
            prop_assert_eq!(space.unreserve_owner(owner), want);
            model.reserved.retain(|r| r.2 != owner);
            false
        }
        Op::Insert { lo, len } => {
            let (s, l) = model.range(lo, len);
            let range = AddrRange::new(s, l).unwrap();
            let reserved = model
                .reserved
                .iter()
                .any(|&(rs, rl, _)| meets((rs, rl), (s, l)));
            let exists = model.areas.iter().any(|&a| meets(a, (s, l)));
            let got = space.insert_area(range, s);
            if reserved {
                prop_assert!(matches!(got, Err(IovaError::Reserved { .. })), "{got:?}");
            } else if exists {
                prop_assert!(matches!(got, Err(IovaError::Exists { .. })), "{got:?}");
            } else {
                prop_assert_eq!(got, Ok(()));
                model.areas.push((s, l));
            }
            reserved || exists
        }
        Op::Remove { lo } => {
            let start = model.base + lo * UNIT;
            let pos = model.areas.iter().position(|a| a.0 == start);
            let got = space
                .remove_area(start)
                .map(|(r, v)| (r.start(), r.last(), v));
            let want = pos
                .map(|i| model.areas.swap_remove(i))
                .map(|(s, l)| (s, l, s));
            prop_assert_eq!(got, want);
            false
        }
        Op::Allow { ref ranges } => {
            let ranges: Vec<(u64, u64)> = ranges
                .iter()
                .map(|&(lo, len)| model.range(lo, len))
                .collect();
            let overlap = ranges
                .iter()
                .enumerate()
                .any(|(i, &a)| ranges[..i].iter().any(|&b| meets(a, b)));
            let on_reserved = ranges
                .iter()
                .any(|&a| model.reserved.iter().any(|&(rs, rl, _)| meets((rs, rl), a)));
            let list: Vec<AddrRange> = ranges
                .iter()
                .map(|&(s, l)| AddrRange::new(s, l).unwrap())
                .collect();
            let got = space.set_allowed(&list);
            if overlap {
                prop_assert!(
                    matches!(got, Err(IovaError::AllowedOverlap { .. })),
                    "{got:?}"
                );
            } else if on_reserved {
                prop_assert!(matches!(got, Err(IovaError::InUse { .. })), "{got:?}");
            } else {
                prop_assert_eq!(got, Ok(()));
                model.allowed = ranges;
            }
            overlap || on_reserved
        }
    };
    if failed {
        prop_assert_eq!(snapshot(space), before, "failed {:?} changed the space", op);
    }
    Ok(())
}

fn check_alloc(
    space: &mut IovaSpace<u64>,
    model: &Model,
    req: &Request,
) -> Result<(), TestCaseError> {
    let got = space.alloc(req.length, req.alignment, req.page_offset, req.page_size);
    let want = reference_place(model, req);
    match (got, want) {
        (Ok(iova), Some(expected)) => prop_assert_eq!(iova, expected),
        (Err(IovaError::NoSpace { .. }), None) => {}
        (got, want) => prop_assert!(false, "{req:?}: got {got:?}, reference {want:?}"),
    }
    if req.page_offset == 0 {
        prop_assert_eq!(got.ok(), lowest_aligned_fit(model, req), "{:?}", req);
    }
    if let Ok(iova) = got {
        let last = iova + (req.length - 1);
        prop_assert!(iova >= req.page_size && last <= u64::MAX - req.page_size);
        prop_assert!((iova..=last).all(|b| model.free_at(b) && model.allowed_at(b)));
        prop_assert_eq!(iova & req.page_offset, req.page_offset);
        let mask = req.alignment - 1;
        prop_assert_eq!(iova & mask, req.page_offset & mask);
        // What alloc found must be insertable as a fixed area.
        prop_assert_eq!(
            space.check_fixed(AddrRange::new(iova, last).unwrap()),
            Ok(())
        );
    }
    Ok(())
}

/// Requests of at most three units, most of which do not fit a one-unit hole.
fn small_request() -> impl Strategy<Value = Request> {
    (1..=3 * UNIT, 0..=6u32).prop_map(|(length, align_log)| Request {
        length,
        alignment: 1 << align_log,
        page_offset: 0,
        page_size: UNIT,
    })
}

/// Units at which to insert one-unit areas, in the order to insert them.
fn fragments() -> impl Strategy<Value = Vec<u64>> {
    prop::sample::subsequence((0..UNITS).collect::<Vec<u64>>(), 0..=UNITS as usize).prop_shuffle()
}

fn run(base: u64, ops: Vec<Op>, requests: Vec<Request>) -> Result<(), TestCaseError> {
    run_fragmented(base, &[], ops, requests)
}

fn run_fragmented(
    base: u64,
    fragments: &[u64],
    ops: Vec<Op>,
    requests: Vec<Request>,
) -> Result<(), TestCaseError> {
    let (mut space, mut model) = new_space(base);
    for &lo in fragments {
        apply(&mut space, &mut model, &Op::Insert { lo, len: 1 })?;
    }
    for req in &requests {
        check_alloc(&mut space, &model, req)?;
    }
    for op in &ops {
        apply(&mut space, &mut model, op)?;
        for req in &requests {
            check_alloc(&mut space, &model, req)?;
        }
    }
    let holes: Vec<(u64, u64)> = space
        .reserved_holes()
        .iter()
        .map(|r| (r.start(), r.last()))
        .collect();
    let unreserved = model.unit_runs(|addr| !model.reserved_at(addr));
    prop_assert_eq!(holes, unreserved);
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(200))]

    #[test]
    fn alloc_matches_brute_force_at_the_bottom_of_the_space(
        ops in prop::collection::vec(op(), 1..24),
        requests in prop::collection::vec(request(), 1..6),
    ) {
        run(0, ops, requests)?;
    }

    #[test]
    fn alloc_matches_brute_force_at_the_top_of_the_space(
        ops in prop::collection::vec(op(), 1..24),
        requests in prop::collection::vec(request(), 1..6),
    ) {
        run(u64::MAX - (SPAN - 1), ops, requests)?;
    }

    #[test]
    fn alloc_matches_brute_force_in_a_fragmented_space(
        base in prop_oneof![Just(0u64), Just(u64::MAX - (SPAN - 1))],
        fragments in fragments(),
        ops in prop::collection::vec(op(), 0..12),
        requests in prop::collection::vec(small_request(), 1..6),
    ) {
        run_fragmented(base, &fragments, ops, requests)?;
    }
}
