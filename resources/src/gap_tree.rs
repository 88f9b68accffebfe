//! [`GapTree`]: disjoint address ranges with values, in a balanced binary tree where every
//! subtree knows the largest gap between its ranges.
//!
//! The IOVA space keeps its areas and reserved runs here. An insertion meets on its way down
//! every range it could overlap (and refuses then), a removal finds its range on its way down,
//! and a first-fit search skips every subtree whose gaps are all smaller than the request:
//! placement costs O(log n) per hole large enough to be tried, however many smaller holes lie
//! below it. An update that would change the largest gap all the way up marks the nodes stale
//! instead, stopping at the first already marked, and the search brings them up to date first,
//! so that updates in one place do not each walk to the root.
//!
//! `std`'s `BTreeMap` cannot carry a per-subtree summary, hence this tree: an AVL tree whose
//! nodes live in a `Vec` and link by index (freed slots are reused), with paths and iteration on
//! fixed-size stacks, so that nothing but an insertion into a full arena allocates.

use std::fmt;

use crate::range::AddrRange;

/// No node: slot 0, a sentinel of height 0 and gap 0 pushed with the first range, so that
/// reading a missing child's summary needs no branch.
const NIL: u32 = 0;
/// Deeper than any AVL tree of fewer than 2^32 nodes: its height is below
/// `1.4405 * log2(n + 2) - 0.3277`, about 45.8.
const MAX_DEPTH: usize = 48;

#[derive(Debug, Clone)]
struct Node<V> {
    start: u64,
    last: u64,
    /// Free addresses between the previous range (or address 0) and this one: the hole just
    /// below the range is `[start - gap_before, start - 1]`.
    gap_before: u64,
    /// The largest `gap_before` of the subtree rooted here, unless `stale`.
    max_gap: u64,
    left: u32,
    right: u32,
    /// Height of the subtree (1 for a leaf).
    height: u8,
    /// `max_gap` is out of date. An update whose change would ripple a new largest gap up the
    /// tree marks the nodes instead (stopping at the first already marked), and placement
    /// brings them up to date before it searches: a run of updates in one place pays for one
    /// refresh, not one walk to the root each. Every ancestor of a stale node is stale.
    stale: bool,
    /// `None` only while the slot is on the free list (linked through `left`).
    value: Option<V>,
}

/// Disjoint ranges with values, ordered by start, with the largest gap of every subtree.
#[derive(Clone)]
pub(crate) struct GapTree<V> {
    nodes: Vec<Node<V>>,
    root: u32,
    /// First free slot, linked through `left`.
    free: u32,
    len: usize,
}

impl<V> Default for GapTree<V> {
    fn default() -> Self {
        Self::new()
    }
}

impl<V: fmt::Debug> fmt::Debug for GapTree<V> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_map().entries(self.iter()).finish()
    }
}

/// Why [`GapTree::first_fit_walk`] stopped.
enum Walk {
    /// The fit function accepted a hole.
    Found(u64),
    /// The holes left start past the window.
    Stop,
    /// Nothing found in this subtree; go on.
    Next,
}

/// A root-to-node path, as slot indexes.
struct Path {
    nodes: [u32; MAX_DEPTH],
    depth: usize,
}

impl Path {
    const fn new() -> Self {
        Path {
            nodes: [NIL; MAX_DEPTH],
            depth: 0,
        }
    }

    fn push(&mut self, i: u32) {
        self.nodes[self.depth] = i;
        self.depth += 1;
    }
}

impl<V> GapTree<V> {
    /// An empty tree.
    pub(crate) const fn new() -> Self {
        GapTree {
            nodes: Vec::new(),
            root: NIL,
            free: NIL,
            len: 0,
        }
    }

    /// Number of ranges.
    #[cfg(test)]
    pub(crate) fn len(&self) -> usize {
        self.len
    }

    fn node(&self, i: u32) -> &Node<V> {
        &self.nodes[i as usize]
    }

    fn node_mut(&mut self, i: u32) -> &mut Node<V> {
        &mut self.nodes[i as usize]
    }

    /// Height of subtree `i` (0 for [`NIL`]).
    fn height(&self, i: u32) -> u8 {
        self.node(i).height
    }

    /// Height, largest gap and staleness of subtree `i`.
    fn summary(&self, i: u32) -> (u8, u64, bool) {
        let n = self.node(i);
        (n.height, n.max_gap, n.stale)
    }

    /// The height of `i` and, when neither child is stale, its largest gap, from its children.
    fn summary_of_children(&self, i: u32) -> (u8, Option<u64>) {
        let n = self.node(i);
        let (hl, gl, sl) = self.summary(n.left);
        let (hr, gr, sr) = self.summary(n.right);
        let gap = (!sl && !sr).then(|| n.gap_before.max(gl).max(gr));
        (hl.max(hr) + 1, gap)
    }

    /// Recomputes the height and largest gap of `i` (stale if a child is) from its children.
    fn pull(&mut self, i: u32) {
        let (height, gap) = self.summary_of_children(i);
        let n = self.node_mut(i);
        n.height = height;
        match gap {
            Some(gap) => (n.max_gap, n.stale) = (gap, false),
            None => n.stale = true,
        }
    }

    fn rotate_right(&mut self, y: u32) -> u32 {
        let x = self.node(y).left;
        let middle = self.node(x).right;
        self.node_mut(y).left = middle;
        self.node_mut(x).right = y;
        self.pull(y);
        self.pull(x);
        x
    }

    fn rotate_left(&mut self, x: u32) -> u32 {
        let y = self.node(x).right;
        let middle = self.node(y).left;
        self.node_mut(x).right = middle;
        self.node_mut(y).left = x;
        self.pull(x);
        self.pull(y);
        y
    }

    /// Updates `i`, whose subtree changed, and restores the AVL balance at it; returns the
    /// subtree's new root and whether its root, its height or (from fresh to stale) its
    /// largest gap changed. A fresh largest gap that would change is marked stale instead.
    fn rebalance(&mut self, i: u32) -> (u32, bool) {
        let (left, right) = (self.node(i).left, self.node(i).right);
        let (hl, hr) = (self.height(left), self.height(right));
        if hl.abs_diff(hr) <= 1 {
            let (height, gap) = self.summary_of_children(i);
            let n = self.node_mut(i);
            let mut changed = n.height != height;
            n.height = height;
            match gap {
                // Its ancestors are stale already.
                Some(gap) if n.stale => (n.max_gap, n.stale) = (gap, false),
                Some(gap) if gap == n.max_gap => {}
                _ => {
                    changed |= !n.stale;
                    n.stale = true;
                }
            }
            return (i, changed);
        }
        if hl > hr {
            if self.height(self.node(left).left) < self.height(self.node(left).right) {
                let l = self.rotate_left(left);
                self.node_mut(i).left = l;
            }
            (self.rotate_right(i), true)
        } else {
            if self.height(self.node(right).right) < self.height(self.node(right).left) {
                let r = self.rotate_right(right);
                self.node_mut(i).right = r;
            }
            (self.rotate_left(i), true)
        }
    }

    /// After a change below `path` (root first), whose nodes all have changed subtrees:
    /// updates them deepest first, relinking each new subtree root into its parent (or as the
    /// root), until, at or above `path.nodes[floor]`, one keeps its root, its height and its
    /// largest gap (or was stale already): nothing above can change then.
    fn rebalance_path(&mut self, path: &Path, floor: usize) {
        for k in (0..path.depth).rev() {
            let old = path.nodes[k];
            let (new, changed) = self.rebalance(old);
            if k == 0 {
                self.root = new;
            } else if new != old {
                let p = self.node_mut(path.nodes[k - 1]);
                if p.left == old {
                    p.left = new;
                } else {
                    p.right = new;
                }
            }
            if !changed && k <= floor {
                return;
            }
        }
    }

    /// Brings the largest gap of every stale node of the subtree of stale node `i` up to date;
    /// returns the subtree's largest gap. Visits only the stale nodes, which hang together
    /// from the root.
    fn refresh(&mut self, i: u32) -> u64 {
        let (left, right, gap) = {
            let n = self.node(i);
            (n.left, n.right, n.gap_before)
        };
        let (l, r) = (self.node(left), self.node(right));
        let (left_stale, left_gap, right_stale, right_gap) =
            (l.stale, l.max_gap, r.stale, r.max_gap);
        let left_gap = if left_stale {
            self.refresh(left)
        } else {
            left_gap
        };
        let right_gap = if right_stale {
            self.refresh(right)
        } else {
            right_gap
        };
        let max_gap = gap.max(left_gap).max(right_gap);
        let n = self.node_mut(i);
        n.max_gap = max_gap;
        n.stale = false;
        max_gap
    }

    fn alloc(&mut self, range: AddrRange, gap_before: u64, value: V) -> u32 {
        let node = Node {
            start: range.start(),
            last: range.last(),
            gap_before,
            max_gap: gap_before,
            left: NIL,
            right: NIL,
            height: 1,
            stale: false,
            value: Some(value),
        };
        if self.free != NIL {
            let i = self.free;
            self.free = self.node(i).left;
            *self.node_mut(i) = node;
            return i;
        }
        if self.nodes.is_empty() {
            self.nodes.push(Node {
                start: 0,
                last: 0,
                gap_before: 0,
                max_gap: 0,
                left: NIL,
                right: NIL,
                height: 0,
                stale: false,
                value: None,
            });
        }
        let i = u32::try_from(self.nodes.len()).expect("gap tree holds fewer than 2^32 ranges");
        self.nodes.push(node);
        i
    }

    fn release(&mut self, i: u32) -> V {
        let free = self.free;
        let n = self.node_mut(i);
        n.left = free;
        n.right = NIL;
        let value = n.value.take();
        self.free = i;
        value.expect("a linked node holds a value")
    }

    /// Points the child link of `parent` (or the root, for `None`) that held `old` at `new`.
    fn relink(&mut self, parent: Option<u32>, old: u32, new: u32) {
        match parent {
            None => self.root = new,
            Some(p) => {
                let p = self.node_mut(p);
                if p.left == old {
                    p.left = new;
                } else {
                    p.right = new;
                }
            }
        }
    }

    /// Inserts `range` with `value` if it shares no address with a range already present;
    /// otherwise changes nothing and gives `value` back. One descent: every range the new one
    /// could overlap lies on the path to its place, and so do its neighbours.
    pub(crate) fn insert(&mut self, range: AddrRange, value: V) -> Result<(), V> {
        let mut path = Path::new();
        // Path index of the successor (the last node where the descent went left).
        let mut succ = None;
        let mut free_from = 0;
        let mut i = self.root;
        while i != NIL {
            let n = self.node(i);
            path.push(i);
            if range.last() < n.start {
                succ = Some(path.depth - 1);
                i = n.left;
            } else if range.start() > n.last {
                free_from = n.last + 1;
                i = n.right;
            } else {
                return Err(value);
            }
        }
        let new = self.alloc(range, range.start() - free_from, value);
        self.len += 1;
        let Some(&parent) = path.nodes[..path.depth].last() else {
            self.root = new;
            return Ok(());
        };
        let went_left = range.last() < self.node(parent).start;
        let p = self.node_mut(parent);
        if went_left {
            p.left = new;
        } else {
            p.right = new;
        }
        // The successor, on the path, has a smaller gap below it now.
        let floor = match succ {
            Some(k) => {
                let s = self.node_mut(path.nodes[k]);
                s.gap_before = s.start - (range.last() + 1);
                k
            }
            None => path.depth - 1,
        };
        self.rebalance_path(&path, floor);
        Ok(())
    }

    /// Removes the range starting exactly at `start`.
    pub(crate) fn remove(&mut self, start: u64) -> Option<(AddrRange, V)> {
        self.remove_if(start, |_| true)
    }

    /// Removes the range starting exactly at `start` if its value passes `pred`, in the same
    /// descent that finds it.
    pub(crate) fn remove_if(
        &mut self,
        start: u64,
        pred: impl FnOnce(&V) -> bool,
    ) -> Option<(AddrRange, V)> {
        let mut path = Path::new();
        let mut succ = None;
        let mut i = self.root;
        loop {
            if i == NIL {
                return None;
            }
            let n = self.node(i);
            if start == n.start {
                break;
            }
            path.push(i);
            if start < n.start {
                succ = Some(path.depth - 1);
                i = n.left;
            } else {
                i = n.right;
            }
        }
        let target = i;
        if !self.node(target).value.as_ref().is_some_and(pred) {
            return None;
        }
        Some(self.unlink(path, succ, target))
    }

    /// The lowest range sharing an address with `range`, removed if `take` accepts it, in the
    /// same descent that finds it: `None` if there is none, else the range and its value if
    /// taken (`None` if left in place).
    pub(crate) fn take_first_overlapping(
        &mut self,
        range: AddrRange,
        take: impl FnOnce(AddrRange, &V) -> bool,
    ) -> Option<(AddrRange, Option<V>)> {
        // As first_overlapping, remembering the way down.
        let mut path = Path::new();
        let mut found_at = None;
        let mut i = self.root;
        while i != NIL {
            let n = self.node(i);
            path.push(i);
            if n.last >= range.start() {
                found_at = Some(path.depth - 1);
                i = n.left;
            } else {
                i = n.right;
            }
        }
        let at = found_at?;
        let target = path.nodes[at];
        let (found, value) = self.entry(target);
        if found.start() > range.last() {
            return None;
        }
        if !take(found, value) {
            return Some((found, None));
        }
        path.depth = at;
        let succ = (0..at)
            .rev()
            .find(|&k| self.node(path.nodes[k]).left == path.nodes[k + 1]);
        let (range, value) = self.unlink(path, succ, target);
        Some((range, Some(value)))
    }

    /// Removes `target`, whose ancestors are `path` (root first) and whose successor, if an
    /// ancestor, is `path.nodes[succ]`.
    fn unlink(&mut self, mut path: Path, succ: Option<usize>, target: u32) -> (AddrRange, V) {
        let parent = path.nodes[..path.depth].last().copied();
        let (t_start, t_last, left, right) = {
            let n = self.node(target);
            (n.start, n.last, n.left, n.right)
        };
        // First address of the hole that opens where the range was.
        let free_from = t_start - self.node(target).gap_before;
        let floor;
        let value;
        if left != NIL && right != NIL {
            // The successor (leftmost of the right subtree) moves into the target's slot.
            let target_at = path.depth;
            path.push(target);
            let mut s = right;
            path.push(s);
            while self.node(s).left != NIL {
                s = self.node(s).left;
                path.push(s);
            }
            path.depth -= 1;
            let s_parent = path.nodes[path.depth - 1];
            let s_right = self.node(s).right;
            self.relink(Some(s_parent), s, s_right);
            let (s_start, s_last) = (self.node(s).start, self.node(s).last);
            let s_value = self.release(s);
            let t = self.node_mut(target);
            t.start = s_start;
            t.last = s_last;
            t.gap_before = s_start - free_from;
            value = t.value.replace(s_value);
            floor = target_at;
        } else if right != NIL {
            // The right child takes the target's place; its leftmost node is the successor.
            // Everything from there up to the target's parent changed.
            floor = path.depth.saturating_sub(1);
            self.relink(parent, target, right);
            let mut s = right;
            path.push(s);
            while self.node(s).left != NIL {
                s = self.node(s).left;
                path.push(s);
            }
            let sn = self.node_mut(s);
            sn.gap_before = sn.start - free_from;
            value = Some(self.release(target));
        } else {
            self.relink(parent, target, left);
            // The successor, if any, is the ancestor where the descent last went left.
            if let Some(k) = succ {
                let sn = self.node_mut(path.nodes[k]);
                sn.gap_before = sn.start - free_from;
            }
            floor = succ.unwrap_or(path.depth.saturating_sub(1));
            value = Some(self.release(target));
        }
        self.rebalance_path(&path, floor);
        self.len -= 1;
        let value = value.expect("a linked node holds a value");
        (AddrRange::new_unchecked(t_start, t_last), value)
    }

    fn find(&self, addr: u64) -> u32 {
        let mut i = self.root;
        while i != NIL {
            let n = self.node(i);
            if addr < n.start {
                i = n.left;
            } else if addr > n.last {
                i = n.right;
            } else {
                break;
            }
        }
        i
    }

    /// The range containing `addr`.
    pub(crate) fn get(&self, addr: u64) -> Option<(AddrRange, &V)> {
        match self.find(addr) {
            NIL => None,
            i => Some(self.entry(i)),
        }
    }

    /// The range containing `addr`, with mutable access to its value.
    pub(crate) fn get_mut(&mut self, addr: u64) -> Option<(AddrRange, &mut V)> {
        match self.find(addr) {
            NIL => None,
            i => {
                let n = self.node_mut(i);
                let range = AddrRange::new_unchecked(n.start, n.last);
                n.value.as_mut().map(|v| (range, v))
            }
        }
    }

    fn entry(&self, i: u32) -> (AddrRange, &V) {
        let n = self.node(i);
        let value = n.value.as_ref().expect("a linked node holds a value");
        (AddrRange::new_unchecked(n.start, n.last), value)
    }

    /// The lowest range sharing an address with `range`.
    pub(crate) fn first_overlapping(&self, range: AddrRange) -> Option<(AddrRange, &V)> {
        // Ranges are disjoint, so their lasts ascend with their starts: the lowest range
        // ending at or after `range.start` is the only candidate.
        let mut found = NIL;
        let mut i = self.root;
        while i != NIL {
            let n = self.node(i);
            if n.last >= range.start() {
                found = i;
                i = n.left;
            } else {
                i = n.right;
            }
        }
        (found != NIL && self.node(found).start <= range.last()).then(|| self.entry(found))
    }

    /// The ranges ending at or after `addr`, ascending.
    pub(crate) fn iter_from(&self, addr: u64) -> Iter<'_, V> {
        let mut iter = Iter {
            tree: self,
            stack: Path::new(),
        };
        let mut i = self.root;
        while i != NIL {
            let n = self.node(i);
            if n.last >= addr {
                iter.stack.push(i);
                i = n.left;
            } else {
                i = n.right;
            }
        }
        iter
    }

    /// The ranges sharing an address with `range`, ascending.
    pub(crate) fn overlapping(
        &self,
        range: AddrRange,
    ) -> impl Iterator<Item = (AddrRange, &V)> + '_ {
        self.iter_from(range.start())
            .take_while(move |(r, _)| r.start() <= range.last())
    }

    /// Every range, ascending.
    pub(crate) fn iter(&self) -> Iter<'_, V> {
        self.iter_from(0)
    }

    /// Brings every stale largest-gap summary up to date, as [`GapTree::first_fit`] needs.
    pub(crate) fn refresh_gaps(&mut self) {
        if self.root != NIL && self.node(self.root).stale {
            self.refresh(self.root);
        }
    }

    /// After [`GapTree::refresh_gaps`], walks the holes (maximal runs of addresses no range
    /// covers) that meet `window`, lowest first, each clipped to `window`, and returns the first answer `fit` gives for a
    /// clipped hole `(start, last)`. Holes below the last range with fewer than `min_size`
    /// addresses before clipping are never offered, and whole subtrees whose gaps are all
    /// smaller are skipped: `fit` must refuse every hole smaller than `min_size`, so that the
    /// answer is the one a plain walk of every hole would give.
    pub(crate) fn first_fit(
        &self,
        window: AddrRange,
        min_size: u64,
        mut fit: impl FnMut(u64, u64) -> Option<u64>,
    ) -> Option<u64> {
        debug_assert!(
            self.root == NIL || !self.node(self.root).stale,
            "first_fit before refresh_gaps"
        );
        let min_size = min_size.max(1);
        match self.first_fit_walk(self.root, window, min_size, &mut fit) {
            Walk::Found(x) => return Some(x),
            Walk::Stop => return None,
            Walk::Next => {}
        }
        // The hole above the last range.
        let mut tail = 0;
        let mut i = self.root;
        while i != NIL {
            tail = self.node(i).last.checked_add(1)?;
            i = self.node(i).right;
        }
        if tail > window.last() {
            return None;
        }
        fit(tail.max(window.start()), window.last())
    }

    /// The holes just below the ranges of subtree `i`, as [`GapTree::first_fit`] describes.
    fn first_fit_walk(
        &self,
        i: u32,
        window: AddrRange,
        min_size: u64,
        fit: &mut impl FnMut(u64, u64) -> Option<u64>,
    ) -> Walk {
        if i == NIL {
            return Walk::Next;
        }
        let n = self.node(i);
        if n.max_gap < min_size {
            return Walk::Next;
        }
        // The holes below this range and below the left subtree's end before the window.
        if n.start <= window.start() {
            return self.first_fit_walk(n.right, window, min_size, fit);
        }
        match self.first_fit_walk(n.left, window, min_size, fit) {
            Walk::Next => {}
            done => return done,
        }
        if n.gap_before >= min_size {
            let hole_start = n.start - n.gap_before;
            if hole_start > window.last() {
                return Walk::Stop;
            }
            // Not empty: hole_start <= window.last and window.start < n.start.
            let start = hole_start.max(window.start());
            let last = (n.start - 1).min(window.last());
            if let Some(found) = fit(start, last) {
                return Walk::Found(found);
            }
        }
        // The holes of the right subtree start after this range.
        if n.start > window.last() {
            return Walk::Stop;
        }
        self.first_fit_walk(n.right, window, min_size, fit)
    }

    /// Checks the order, the gaps, the balance, the heights, that stale nodes hang together
    /// from the root, and every largest gap not marked stale (tests only).
    #[cfg(test)]
    pub(crate) fn check_invariants(&self) {
        /// Returns the height and the true largest gap of subtree `i`.
        fn walk<V>(
            t: &GapTree<V>,
            i: u32,
            parent_stale: bool,
            free_from: &mut Option<u64>,
            count: &mut usize,
        ) -> (u8, u64) {
            if i == NIL {
                return (0, 0);
            }
            *count += 1;
            let n = t.node(i);
            assert!(n.start <= n.last);
            assert!(n.value.is_some());
            assert!(
                parent_stale || !n.stale,
                "stale {:#x} under a fresh parent",
                n.start
            );
            let (hl, gl) = walk(t, n.left, n.stale, free_from, count);
            let from = free_from.expect("a range after one ending at u64::MAX");
            assert!(
                from <= n.start,
                "{:#x} overlaps or is out of order",
                n.start
            );
            assert_eq!(n.gap_before, n.start - from, "stale gap at {:#x}", n.start);
            *free_from = n.last.checked_add(1);
            let (hr, gr) = walk(t, n.right, n.stale, free_from, count);
            assert!(hl.abs_diff(hr) <= 1, "unbalanced at {:#x}", n.start);
            let (height, max_gap) = (hl.max(hr) + 1, n.gap_before.max(gl).max(gr));
            assert_eq!(n.height, height, "wrong height at {:#x}", n.start);
            if !n.stale {
                assert_eq!(n.max_gap, max_gap, "wrong largest gap at {:#x}", n.start);
            }
            (height, max_gap)
        }
        let mut count = 0;
        walk(self, self.root, true, &mut Some(0), &mut count);
        assert_eq!(count, self.len);
    }
}

/// In-order iterator over a [`GapTree`], on a fixed-size stack.
pub(crate) struct Iter<'a, V> {
    tree: &'a GapTree<V>,
    /// Nodes still to visit, each before its right subtree; the top is the next one.
    stack: Path,
}

impl<'a, V> Iterator for Iter<'a, V> {
    type Item = (AddrRange, &'a V);

    fn next(&mut self) -> Option<Self::Item> {
        if self.stack.depth == 0 {
            return None;
        }
        self.stack.depth -= 1;
        let i = self.stack.nodes[self.stack.depth];
        let mut j = self.tree.node(i).right;
        while j != NIL {
            self.stack.push(j);
            j = self.tree.node(j).left;
        }
        Some(self.tree.entry(i))
    }
}

#[cfg(test)]
mod tests;
