use std::collections::BTreeMap;

use proptest::prelude::*;

use super::*;

fn r(start: u64, last: u64) -> AddrRange {
    AddrRange::new(start, last).unwrap()
}

fn ranges<V>(tree: &GapTree<V>) -> Vec<AddrRange> {
    tree.iter().map(|(range, _)| range).collect()
}

#[test]
fn insert_refuses_any_overlap_and_changes_nothing() {
    let mut tree = GapTree::new();
    for (i, start) in [0x40u64, 0x10, 0x70, 0x30, 0x50].into_iter().enumerate() {
        tree.insert(r(start, start + 7), i).unwrap();
    }
    let before = ranges(&tree);
    for bad in [
        r(0x17, 0x17),
        r(0x0, 0x10),
        r(0x2f, 0x30),
        r(0x0, u64::MAX),
        r(0x77, 0x80),
    ] {
        assert_eq!(tree.insert(bad, 99), Err(99), "{bad}");
        assert_eq!(ranges(&tree), before);
        tree.check_invariants();
    }
    tree.insert(r(0x18, 0x2f), 7).unwrap();
    assert_eq!(tree.len(), 6);
    tree.check_invariants();
}

#[test]
fn remove_takes_only_an_exact_start_and_returns_the_value() {
    let mut tree = GapTree::new();
    for i in 0..32u64 {
        tree.insert(r(i * 0x10, i * 0x10 + 3), i).unwrap();
    }
    assert!(tree.remove(0x11).is_none());
    assert_eq!(tree.remove(0x100), Some((r(0x100, 0x103), 0x10)));
    assert!(tree.get(0x101).is_none());
    assert_eq!(
        tree.get(0x113).map(|(range, &v)| (range, v)),
        Some((r(0x110, 0x113), 0x11))
    );
    tree.check_invariants();
    for i in 0..32u64 {
        let _ = tree.remove(i * 0x10);
        tree.check_invariants();
    }
    assert_eq!(tree.len(), 0);
    assert_eq!(tree.iter().count(), 0);
}

#[test]
fn freed_slots_are_reused() {
    let mut tree = GapTree::new();
    for round in 0..4u64 {
        for i in 0..100u64 {
            tree.insert(r(i * 0x100, i * 0x100 + 0xff - round), i)
                .unwrap();
        }
        for i in (0..100u64).rev() {
            tree.remove(i * 0x100).unwrap();
        }
    }
    // 100 slots and the sentinel.
    assert_eq!(tree.nodes.len(), 101);
}

#[test]
fn first_fit_skips_small_holes_and_reaches_the_tail() {
    let mut tree = GapTree::new();
    // 1000 ranges of 0x10 separated by holes of 0x10, then one hole of 0x100.
    for i in 0..1000u64 {
        tree.insert(r(i * 0x20 + 0x10, i * 0x20 + 0x1f), ())
            .unwrap();
    }
    tree.insert(r(1000 * 0x20 + 0x100, 1000 * 0x20 + 0x1ff), ())
        .unwrap();
    tree.refresh_gaps();
    tree.check_invariants();
    let mut offered = Vec::new();
    let found = tree.first_fit(AddrRange::FULL, 0x11, |s, l| {
        offered.push((s, l));
        (l - s >= 0x10).then_some(s)
    });
    assert_eq!(found, Some(1000 * 0x20));
    assert_eq!(offered, vec![(1000 * 0x20, 1000 * 0x20 + 0xff)]);
    // Nothing below the tail is large enough: the tail hole is offered, clipped.
    let found = tree.first_fit(r(0, u64::MAX - 5), 0x101, |s, _| Some(s));
    assert_eq!(found, Some(1000 * 0x20 + 0x200));
    // A window below every large hole finds nothing.
    assert_eq!(tree.first_fit(r(0, 0x3000), 0x11, |s, _| Some(s)), None);
}

#[test]
fn first_fit_offers_holes_clipped_to_the_window() {
    let mut tree = GapTree::new();
    tree.insert(r(0x100, 0x1ff), ()).unwrap();
    tree.insert(r(0x400, 0x4ff), ()).unwrap();
    tree.refresh_gaps();
    let mut offered = Vec::new();
    let none = tree.first_fit(r(0x80, 0x47f), 1, |s, l| {
        offered.push((s, l));
        None
    });
    assert_eq!(none, None);
    assert_eq!(offered, vec![(0x80, 0xff), (0x200, 0x3ff)]);
    offered.clear();
    let _ = tree.first_fit(r(0x480, u64::MAX), 1, |s, l| {
        offered.push((s, l));
        None
    });
    assert_eq!(offered, vec![(0x500, u64::MAX)]);
}

#[test]
fn ranges_at_both_ends_of_the_space() {
    let mut tree = GapTree::new();
    tree.insert(r(u64::MAX, u64::MAX), 1).unwrap();
    tree.insert(r(0, 0), 0).unwrap();
    tree.refresh_gaps();
    assert_eq!(
        tree.first_fit(AddrRange::FULL, 2, |s, l| Some(s + (l - s))),
        Some(u64::MAX - 1)
    );
    tree.insert(r(1, u64::MAX - 1), 2).unwrap();
    tree.refresh_gaps();
    assert_eq!(tree.first_fit(AddrRange::FULL, 1, |s, _| Some(s)), None);
    assert_eq!(
        tree.first_overlapping(AddrRange::FULL).map(|(r, _)| r),
        Some(r(0, 0))
    );
    tree.check_invariants();
}

#[derive(Debug, Clone)]
enum Op {
    Insert {
        start: u64,
        len: u64,
    },
    Remove {
        start: u64,
    },
    /// Take the first range overlapping `[start, start + len)` if it lies inside.
    TakeFirst {
        start: u64,
        len: u64,
    },
}

const SPACE: u64 = 512;

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        3 => (0..SPACE, 1..=12u64).prop_map(|(start, len)| Op::Insert { start, len }),
        2 => (0..SPACE).prop_map(|start| Op::Remove { start }),
        1 => (0..SPACE, 1..=40u64).prop_map(|(start, len)| Op::TakeFirst { start, len }),
    ]
}

/// The holes of the model meeting `window`, clipped, ascending, with their unclipped sizes.
fn model_holes(model: &BTreeMap<u64, u64>, window: (u64, u64)) -> Vec<(u64, u64, u64)> {
    let mut holes = Vec::new();
    let mut free_from = Some(0u64);
    let mut push = |s: u64, l: u64| {
        let (cs, cl) = (s.max(window.0), l.min(window.1));
        if cs <= cl {
            holes.push((cs, cl, (l - s).saturating_add(1)));
        }
    };
    for (&start, &last) in model {
        if let Some(from) = free_from
            && from < start
        {
            push(from, start - 1);
        }
        free_from = last.checked_add(1);
    }
    if let Some(from) = free_from {
        push(from, u64::MAX);
    }
    holes
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(128))]

    #[test]
    fn tree_matches_a_plain_map(
        base in prop_oneof![Just(0u64), Just(u64::MAX - (SPACE - 1))],
        ops in prop::collection::vec(op(), 1..200),
        queries in prop::collection::vec((0..SPACE, 0..SPACE, 1..40u64, 0..3u64), 1..8),
    ) {
        let mut tree = GapTree::new();
        let mut model: BTreeMap<u64, u64> = BTreeMap::new();
        for (n, op) in ops.iter().enumerate() {
            match *op {
                Op::Insert { start, len } => {
                    let start = base + start;
                    let last = start.saturating_add(len - 1);
                    let overlaps = model.iter().any(|(&s, &l)| s <= last && start <= l);
                    let got = tree.insert(r(start, last), start);
                    if overlaps {
                        prop_assert_eq!(got, Err(start));
                    } else {
                        prop_assert_eq!(got, Ok(()));
                        model.insert(start, last);
                    }
                }
                Op::Remove { start } => {
                    let start = base + start;
                    let want = model.remove(&start).map(|last| (r(start, last), start));
                    prop_assert_eq!(tree.remove(start), want);
                }
                Op::TakeFirst { start, len } => {
                    let window = r(base + start, (base + start).saturating_add(len - 1));
                    let first = model
                        .iter()
                        .map(|(&s, &l)| r(s, l))
                        .find(|x| x.overlaps(&window));
                    let got = tree.take_first_overlapping(window, |x, &v| {
                        assert_eq!(v, x.start());
                        window.contains_range(&x)
                    });
                    let want = first.map(|x| {
                        let inside = window.contains_range(&x);
                        if inside {
                            model.remove(&x.start());
                        }
                        (x, inside.then_some(x.start()))
                    });
                    prop_assert_eq!(got, want);
                }
            }
            tree.check_invariants();
            let got: Vec<(u64, u64)> =
                tree.iter().map(|(range, _)| (range.start(), range.last())).collect();
            let want: Vec<(u64, u64)> = model.iter().map(|(&s, &l)| (s, l)).collect();
            prop_assert_eq!(got, want);
            // Let a few updates pile up stale summaries before a search refreshes them.
            if n % 3 != 2 {
                continue;
            }
            tree.refresh_gaps();
            tree.check_invariants();
            for &(a, b, min_size, slack) in &queries {
                let window = (base + a.min(b), base + a.max(b));
                let addr = base + a;
                let want_get = model
                    .range(..=addr)
                    .next_back()
                    .filter(|&(_, &l)| l >= addr)
                    .map(|(&s, &l)| r(s, l));
                prop_assert_eq!(tree.get(addr).map(|(range, _)| range), want_get);
                let want_first = model
                    .iter()
                    .find(|&(&s, &l)| s <= window.1 && window.0 <= l)
                    .map(|(&s, &l)| r(s, l));
                let range = r(window.0, window.1);
                prop_assert_eq!(tree.first_overlapping(range).map(|(x, _)| x), want_first);
                let want_over: Vec<AddrRange> = model
                    .iter()
                    .filter(|&(&s, &l)| s <= window.1 && window.0 <= l)
                    .map(|(&s, &l)| r(s, l))
                    .collect();
                let got_over: Vec<AddrRange> = tree.overlapping(range).map(|(x, _)| x).collect();
                prop_assert_eq!(got_over, want_over);
                // A fit that wants `min_size + slack` addresses in the clipped hole: the tree's
                // first answer must be the plain walk's first answer.
                let fit = |s: u64, l: u64| (l - s >= min_size - 1 + slack).then_some(s);
                let want_fit = model_holes(&model, window)
                    .into_iter()
                    .filter(|&(_, _, size)| size >= min_size)
                    .find_map(|(s, l, _)| fit(s, l));
                prop_assert_eq!(tree.first_fit(range, min_size, fit), want_fit);
            }
        }
    }
}
