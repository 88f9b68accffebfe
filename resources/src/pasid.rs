//! The system-wide PASID space used for vSVA, in the manner of the kernel's `ioasid_set` and the
//! VFIO `vfio_mm` proposal: one space shared by every VM, a handle per VM with a quota, PASIDs
//! unique across the system, and everything a VM holds returned when its handle goes away.
//!
//! PASID 0 is never handed out: it means "no PASID" (requests without a PASID prefix, and the
//! RID2PASID entry of VT-d scalable mode).

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

use crate::range::AddrRange;
use crate::run_set::RunSet;

/// The widest PASID PCIe defines: 20 bits.
pub const PASID_BITS_MAX: u32 = 20;

/// Why a PASID operation failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum PasidError {
    /// The space width is not in `1..=20`.
    #[error("PASID width of {bits} bits is not in 1..={PASID_BITS_MAX}")]
    InvalidWidth {
        /// Requested width.
        bits: u32,
    },
    /// The requested range is empty (after excluding PASID 0) or reaches past the space.
    #[error("PASID range [{min:#x}, {max:#x}] is empty or outside [1, {space_max:#x}]")]
    OutOfRange {
        /// Requested lowest PASID.
        min: u32,
        /// Requested highest PASID.
        max: u32,
        /// Highest PASID of the space.
        space_max: u32,
    },
    /// The owner already holds as many PASIDs as its quota allows.
    #[error("PASID owner {owner} holds {quota} PASIDs, its whole quota")]
    QuotaExceeded {
        /// The owner's id.
        owner: u64,
        /// Its quota.
        quota: u32,
    },
    /// Every PASID of the requested range is taken, by any owner.
    #[error("no free PASID in [{min:#x}, {max:#x}]")]
    Exhausted {
        /// Requested lowest PASID.
        min: u32,
        /// Requested highest PASID.
        max: u32,
    },
    /// The owner does not hold this PASID (free, or held by someone else).
    #[error("PASID owner {owner} does not hold PASID {pasid:#x}")]
    NotOwned {
        /// The owner's id.
        owner: u64,
        /// The PASID.
        pasid: u32,
    },
}

#[derive(Debug, Default)]
struct SpaceState {
    /// Every allocated PASID as maximal runs, for lowest-free search in O(log n).
    allocated: RunSet,
    /// What each live owner holds.
    held: BTreeMap<u64, BTreeSet<u32>>,
    next_owner: u64,
}

impl SpaceState {
    fn release(&mut self, pasid: u32) {
        let one = AddrRange::new_unchecked(pasid.into(), pasid.into());
        self.allocated.remove(one);
    }
}

/// One system-wide PASID space, shared by all VMs through [`PasidOwner`] handles.
pub struct PasidSpace {
    max: u32,
    state: Mutex<SpaceState>,
}

impl fmt::Debug for PasidSpace {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let state = self.state();
        f.debug_struct("PasidSpace")
            .field("max", &self.max)
            .field("owners", &state.held.len())
            .field(
                "allocated",
                &state.held.values().map(BTreeSet::len).sum::<usize>(),
            )
            .finish()
    }
}

impl PasidSpace {
    /// A space of `bits`-wide PASIDs (`1..=20`): PASIDs `1..2^bits` can be handed out.
    pub fn new(bits: u32) -> Result<Arc<Self>, PasidError> {
        if bits == 0 || bits > PASID_BITS_MAX {
            return Err(PasidError::InvalidWidth { bits });
        }
        Ok(Arc::new(PasidSpace {
            max: (1 << bits) - 1,
            state: Mutex::default(),
        }))
    }

    /// The highest PASID of the space.
    pub fn max_pasid(&self) -> u32 {
        self.max
    }

    /// A new owner (one per VM) that may hold up to `quota` PASIDs at a time.
    pub fn owner(self: &Arc<Self>, quota: u32) -> PasidOwner {
        let mut state = self.state();
        let id = state.next_owner;
        state.next_owner += 1;
        state.held.insert(id, BTreeSet::new());
        PasidOwner {
            space: Arc::clone(self),
            id,
            quota,
        }
    }

    /// Whether `pasid` is held by any owner.
    pub fn is_allocated(&self, pasid: u32) -> bool {
        self.state().allocated.run_at(pasid.into()).is_some()
    }

    /// How many PASIDs are held across all owners.
    pub fn allocated_count(&self) -> usize {
        self.state().held.values().map(BTreeSet::len).sum()
    }

    fn state(&self) -> MutexGuard<'_, SpaceState> {
        // No operation can panic while holding the lock with the state half-updated, so a
        // poisoned lock still guards a consistent state.
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

/// One VM's share of a [`PasidSpace`]. Dropping it frees every PASID it holds.
pub struct PasidOwner {
    space: Arc<PasidSpace>,
    id: u64,
    quota: u32,
}

impl fmt::Debug for PasidOwner {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PasidOwner")
            .field("id", &self.id)
            .field("quota", &self.quota)
            .finish()
    }
}

impl PasidOwner {
    /// This owner's id (unique within its space, used in error messages).
    pub fn id(&self) -> u64 {
        self.id
    }

    /// The most PASIDs this owner may hold at a time.
    pub fn quota(&self) -> u32 {
        self.quota
    }

    /// The lowest PASID in `[min, max]` that no owner holds. PASID 0 is excluded from the
    /// range. Errors, checked in this order: [`PasidError::OutOfRange`] (empty range or
    /// `max` past the space), [`PasidError::QuotaExceeded`], [`PasidError::Exhausted`].
    pub fn alloc(&self, min: u32, max: u32) -> Result<u32, PasidError> {
        let space_max = self.space.max;
        let lowest = min.max(1);
        if lowest > max || max > space_max {
            return Err(PasidError::OutOfRange {
                min,
                max,
                space_max,
            });
        }
        let mut state = self.space.state();
        let held = state.held.get(&self.id).map_or(0, BTreeSet::len);
        if held >= self.quota as usize {
            return Err(PasidError::QuotaExceeded {
                owner: self.id,
                quota: self.quota,
            });
        }
        // Runs are maximal, so the address after the run holding `lowest` is free.
        let candidate = match state.allocated.run_at(lowest.into()) {
            Some(run) => run.last() + 1,
            None => u64::from(lowest),
        };
        let pasid = u32::try_from(candidate)
            .ok()
            .filter(|&p| p <= max)
            .ok_or(PasidError::Exhausted { min, max })?;
        state
            .allocated
            .add(AddrRange::new_unchecked(candidate, candidate));
        state.held.entry(self.id).or_default().insert(pasid);
        Ok(pasid)
    }

    /// Frees `pasid`, which this owner must hold; otherwise [`PasidError::NotOwned`] and
    /// nothing changes.
    pub fn free(&self, pasid: u32) -> Result<(), PasidError> {
        let mut state = self.space.state();
        let removed = state
            .held
            .get_mut(&self.id)
            .is_some_and(|held| held.remove(&pasid));
        if !removed {
            return Err(PasidError::NotOwned {
                owner: self.id,
                pasid,
            });
        }
        state.release(pasid);
        Ok(())
    }

    /// Frees every PASID this owner holds in `[min, max]` (none when `min > max`); returns how
    /// many.
    pub fn free_range(&self, min: u32, max: u32) -> usize {
        if min > max {
            return 0;
        }
        let mut state = self.space.state();
        let Some(held) = state.held.get_mut(&self.id) else {
            return 0;
        };
        let mut freed = held.split_off(&min);
        if let Some(after) = max.checked_add(1) {
            held.append(&mut freed.split_off(&after));
        }
        for &pasid in &freed {
            state.release(pasid);
        }
        freed.len()
    }

    /// The PASIDs this owner holds, ascending.
    pub fn held(&self) -> Vec<u32> {
        let state = self.space.state();
        state
            .held
            .get(&self.id)
            .map_or_else(Vec::new, |held| held.iter().copied().collect())
    }
}

impl Drop for PasidOwner {
    fn drop(&mut self) {
        let mut state = self.space.state();
        if let Some(held) = state.held.remove(&self.id) {
            for pasid in held {
                state.release(pasid);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn width_must_be_one_to_twenty_bits() {
        assert_eq!(
            PasidSpace::new(0).unwrap_err(),
            PasidError::InvalidWidth { bits: 0 }
        );
        assert_eq!(
            PasidSpace::new(21).unwrap_err(),
            PasidError::InvalidWidth { bits: 21 }
        );
        assert_eq!(PasidSpace::new(20).unwrap().max_pasid(), 0xf_ffff);
        assert_eq!(PasidSpace::new(1).unwrap().max_pasid(), 1);
    }

    #[test]
    fn pasid_zero_is_never_handed_out() {
        let space = PasidSpace::new(20).unwrap();
        let vm = space.owner(10);
        assert_eq!(vm.alloc(0, 10), Ok(1));
        assert_eq!(
            vm.alloc(0, 0),
            Err(PasidError::OutOfRange {
                min: 0,
                max: 0,
                space_max: 0xf_ffff
            })
        );
    }

    #[test]
    fn pasids_are_unique_across_vms_lowest_first() {
        let space = PasidSpace::new(20).unwrap();
        let a = space.owner(10);
        let b = space.owner(10);
        assert_eq!(a.alloc(1, 100), Ok(1));
        assert_eq!(b.alloc(1, 100), Ok(2));
        assert_eq!(a.alloc(1, 100), Ok(3));
        a.free(1).unwrap();
        assert_eq!(b.alloc(1, 100), Ok(1));
        assert_eq!(a.alloc(2, 100), Ok(4));
        assert_eq!(space.allocated_count(), 4);
    }

    #[test]
    fn range_outside_the_space_is_rejected() {
        let space = PasidSpace::new(4).unwrap();
        let vm = space.owner(10);
        assert_eq!(
            vm.alloc(1, 16),
            Err(PasidError::OutOfRange {
                min: 1,
                max: 16,
                space_max: 15
            })
        );
        assert_eq!(
            vm.alloc(9, 8),
            Err(PasidError::OutOfRange {
                min: 9,
                max: 8,
                space_max: 15
            })
        );
        assert_eq!(vm.alloc(15, 15), Ok(15));
    }

    #[test]
    fn quota_limits_what_one_vm_holds_at_a_time() {
        let space = PasidSpace::new(20).unwrap();
        let vm = space.owner(2);
        vm.alloc(1, 100).unwrap();
        vm.alloc(1, 100).unwrap();
        assert_eq!(
            vm.alloc(1, 100),
            Err(PasidError::QuotaExceeded {
                owner: vm.id(),
                quota: 2
            })
        );
        vm.free(1).unwrap();
        assert_eq!(vm.alloc(1, 100), Ok(1));
    }

    #[test]
    fn exhausted_range_reports_the_request() {
        let space = PasidSpace::new(20).unwrap();
        let a = space.owner(10);
        let b = space.owner(10);
        a.alloc(5, 6).unwrap();
        a.alloc(5, 6).unwrap();
        assert_eq!(b.alloc(5, 6), Err(PasidError::Exhausted { min: 5, max: 6 }));
        assert_eq!(b.alloc(5, 7), Ok(7));
        let full = PasidSpace::new(1).unwrap();
        let only = full.owner(5);
        assert_eq!(only.alloc(0, 1), Ok(1));
        assert_eq!(
            only.alloc(0, 1),
            Err(PasidError::Exhausted { min: 0, max: 1 })
        );
    }

    #[test]
    fn freeing_a_pasid_held_by_another_vm_fails_and_changes_nothing() {
        let space = PasidSpace::new(20).unwrap();
        let a = space.owner(10);
        let b = space.owner(10);
        let p = a.alloc(1, 10).unwrap();
        assert_eq!(
            b.free(p),
            Err(PasidError::NotOwned {
                owner: b.id(),
                pasid: p
            })
        );
        assert_eq!(
            b.free(9),
            Err(PasidError::NotOwned {
                owner: b.id(),
                pasid: 9
            })
        );
        assert_eq!(a.held(), vec![p]);
        assert!(space.is_allocated(p));
        a.free(p).unwrap();
        assert_eq!(
            a.free(p),
            Err(PasidError::NotOwned {
                owner: a.id(),
                pasid: p
            })
        );
        assert!(!space.is_allocated(p));
    }

    #[test]
    fn free_range_frees_only_own_pasids_inside_the_range() {
        let space = PasidSpace::new(20).unwrap();
        let a = space.owner(10);
        let b = space.owner(10);
        for _ in 0..3 {
            a.alloc(1, 100).unwrap();
            b.alloc(1, 100).unwrap();
        }
        // a: 1, 3, 5; b: 2, 4, 6.
        assert_eq!(a.free_range(2, 5), 2);
        assert_eq!(a.held(), vec![1]);
        assert_eq!(b.held(), vec![2, 4, 6]);
        assert_eq!(a.free_range(5, 2), 0);
        assert_eq!(b.free_range(0, u32::MAX), 3);
        assert_eq!(space.allocated_count(), 1);
    }

    #[test]
    fn dropping_an_owner_releases_everything_it_held() {
        let space = PasidSpace::new(20).unwrap();
        let a = space.owner(10);
        let b = space.owner(10);
        a.alloc(1, 10).unwrap();
        a.alloc(1, 10).unwrap();
        b.alloc(1, 10).unwrap();
        drop(a);
        assert_eq!(space.allocated_count(), 1);
        assert_eq!(b.alloc(1, 10), Ok(1));
    }

    #[test]
    fn owners_on_other_threads_share_the_space() {
        let space = PasidSpace::new(20).unwrap();
        let handles: Vec<_> = (0..4)
            .map(|_| {
                let space = Arc::clone(&space);
                std::thread::spawn(move || {
                    let vm = space.owner(100);
                    for _ in 0..100 {
                        vm.alloc(1, 1000).unwrap();
                    }
                    vm
                })
            })
            .collect();
        let owners: Vec<PasidOwner> = handles.into_iter().map(|h| h.join().unwrap()).collect();
        let mut all: Vec<u32> = owners.iter().flat_map(PasidOwner::held).collect();
        all.sort_unstable();
        assert_eq!(all, (1..=400).collect::<Vec<_>>());
        drop(owners);
        assert_eq!(space.allocated_count(), 0);
    }
}
