//! A hash map with a fixed capacity that evicts its oldest entry when full (FIFO).
//!
//! FIFO is what small hardware TLBs approximate and costs nothing on a hit (no recency update
//! under the lock). Removal is lazy: the queue keeps `(key, sequence)` pairs and skips those whose
//! entry was removed or replaced since; it is compacted when stale pairs pile up.

use std::collections::{HashMap, VecDeque};
use std::hash::Hash;

#[derive(Debug)]
struct Slot<V> {
    value: V,
    sequence: u64,
}

/// Bounded map with first-in-first-out eviction.
#[derive(Debug)]
pub(crate) struct FifoMap<K, V> {
    map: HashMap<K, Slot<V>>,
    order: VecDeque<(K, u64)>,
    next_sequence: u64,
    capacity: usize,
}

impl<K: Copy + Eq + Hash, V> FifoMap<K, V> {
    /// An empty map holding at most `capacity` entries (0 keeps nothing).
    pub(crate) fn new(capacity: usize) -> Self {
        FifoMap {
            map: HashMap::with_capacity(capacity),
            order: VecDeque::with_capacity(capacity),
            next_sequence: 0,
            capacity,
        }
    }

    pub(crate) fn len(&self) -> usize {
        self.map.len()
    }

    pub(crate) fn get(&self, key: &K) -> Option<&V> {
        self.map.get(key).map(|slot| &slot.value)
    }

    /// Inserts or replaces `key`; returns how many other entries were evicted to make room.
    pub(crate) fn insert(&mut self, key: K, value: V) -> u64 {
        if self.capacity == 0 {
            return 0;
        }
        let mut evicted = 0;
        if !self.map.contains_key(&key) {
            while self.map.len() >= self.capacity && self.evict_oldest() {
                evicted += 1;
            }
        }
        let sequence = self.next_sequence;
        self.next_sequence += 1;
        self.map.insert(key, Slot { value, sequence });
        self.order.push_back((key, sequence));
        if self.order.len() > 2 * self.capacity + 16 {
            self.compact();
        }
        evicted
    }

    pub(crate) fn remove(&mut self, key: &K) -> Option<V> {
        self.map.remove(key).map(|slot| slot.value)
    }

    /// Keeps only the entries for which `keep` is true.
    pub(crate) fn retain(&mut self, mut keep: impl FnMut(&K, &V) -> bool) {
        self.map.retain(|key, slot| keep(key, &slot.value));
    }

    pub(crate) fn clear(&mut self) {
        self.map.clear();
        self.order.clear();
    }

    fn evict_oldest(&mut self) -> bool {
        while let Some((key, sequence)) = self.order.pop_front() {
            if self
                .map
                .get(&key)
                .is_some_and(|slot| slot.sequence == sequence)
            {
                self.map.remove(&key);
                return true;
            }
        }
        false
    }

    fn compact(&mut self) {
        let map = &self.map;
        self.order
            .retain(|(key, sequence)| map.get(key).is_some_and(|slot| slot.sequence == *sequence));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn full_map_evicts_the_oldest_entry() {
        let mut map = FifoMap::new(2);
        map.insert(1, 'a');
        map.insert(2, 'b');
        assert_eq!(map.insert(3, 'c'), 1);
        assert_eq!(map.get(&1), None);
        assert_eq!(map.get(&2), Some(&'b'));
        assert_eq!(map.get(&3), Some(&'c'));
    }

    #[test]
    fn replacing_an_entry_makes_it_young_and_evicts_nothing() {
        let mut map = FifoMap::new(2);
        map.insert(1, 'a');
        map.insert(2, 'b');
        assert_eq!(map.insert(1, 'z'), 0);
        map.insert(3, 'c');
        assert_eq!(map.get(&2), None);
        assert_eq!(map.get(&1), Some(&'z'));
    }

    #[test]
    fn removed_entries_free_their_room() {
        let mut map = FifoMap::new(2);
        map.insert(1, 'a');
        map.insert(2, 'b');
        map.remove(&1);
        assert_eq!(map.insert(3, 'c'), 0);
        assert_eq!(map.len(), 2);
    }

    #[test]
    fn churn_keeps_the_queue_bounded() {
        let mut map = FifoMap::new(4);
        for i in 0..10_000u64 {
            map.insert(i % 3, i);
            map.remove(&((i + 1) % 3));
        }
        assert!(map.order.len() <= 2 * 4 + 16);
        assert!(map.len() <= 4);
    }

    #[test]
    fn zero_capacity_keeps_nothing() {
        let mut map = FifoMap::new(0);
        map.insert(1, 'a');
        assert_eq!(map.get(&1), None);
    }
}
