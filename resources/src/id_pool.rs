//! Small integer ids handed out by the VMM: GSIs and PCI slots.
//!
//! Not a wrapper of `vm_allocator::IdAllocator` (0.1.4), which only hands out the next id: it
//! cannot claim a chosen one (a slot given on the command line, a fixed legacy GSI). Ids are
//! kept as maximal runs, so the lowest free id is found with one lookup.

use std::fmt;

use crate::range::AddrRange;
use crate::run_set::RunSet;

/// What a pool's ids are (named in errors).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum IdKind {
    /// Global system interrupts (I/O APIC inputs and MSI routes).
    Gsi,
    /// Device slots on a PCI bus.
    PciSlot,
}

impl fmt::Display for IdKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            IdKind::Gsi => "GSI",
            IdKind::PciSlot => "PCI slot",
        })
    }
}

/// Why an id pool operation failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum IdPoolError {
    /// The pool's bounds are inverted.
    #[error("{kind} pool [{first}, {last}] is empty")]
    InvalidRange {
        /// The pool.
        kind: IdKind,
        /// Requested first id.
        first: u32,
        /// Requested last id.
        last: u32,
    },
    /// Every id is taken.
    #[error("every {kind} in [{first}, {last}] is taken")]
    Exhausted {
        /// The pool.
        kind: IdKind,
        /// First id of the pool.
        first: u32,
        /// Last id of the pool.
        last: u32,
    },
    /// The id lies outside the pool.
    #[error("{kind} {id} is outside [{first}, {last}]")]
    OutOfRange {
        /// The pool.
        kind: IdKind,
        /// The id.
        id: u32,
        /// First id of the pool.
        first: u32,
        /// Last id of the pool.
        last: u32,
    },
    /// The id is already taken.
    #[error("{kind} {id} is already taken")]
    InUse {
        /// The pool.
        kind: IdKind,
        /// The id.
        id: u32,
    },
    /// The id is not taken.
    #[error("{kind} {id} is not allocated")]
    NotAllocated {
        /// The pool.
        kind: IdKind,
        /// The id.
        id: u32,
    },
}

/// The ids `[first, last]`, handed out lowest first.
#[derive(Debug, Clone)]
pub struct IdPool {
    kind: IdKind,
    first: u32,
    last: u32,
    taken: RunSet,
    count: usize,
}

fn one(id: u32) -> AddrRange {
    AddrRange::new_unchecked(id.into(), id.into())
}

impl IdPool {
    /// A pool of the ids `[first, last]`, all free.
    pub fn new(kind: IdKind, first: u32, last: u32) -> Result<Self, IdPoolError> {
        if first > last {
            return Err(IdPoolError::InvalidRange { kind, first, last });
        }
        Ok(IdPool {
            kind,
            first,
            last,
            taken: RunSet::new(),
            count: 0,
        })
    }

    /// What the ids are.
    pub fn kind(&self) -> IdKind {
        self.kind
    }

    /// The first id of the pool.
    pub fn first(&self) -> u32 {
        self.first
    }

    /// The last id of the pool.
    pub fn last(&self) -> u32 {
        self.last
    }

    /// How many ids are taken.
    pub fn allocated_count(&self) -> usize {
        self.count
    }

    /// The lowest free id.
    pub fn alloc(&mut self) -> Result<u32, IdPoolError> {
        // Runs are maximal, so the id after the run holding `first` is free.
        let candidate = match self.taken.run_at(self.first.into()) {
            Some(run) => run.last() + 1,
            None => u64::from(self.first),
        };
        let id = u32::try_from(candidate)
            .ok()
            .filter(|&id| id <= self.last)
            .ok_or(IdPoolError::Exhausted {
                kind: self.kind,
                first: self.first,
                last: self.last,
            })?;
        self.taken.add(one(id));
        self.count += 1;
        Ok(id)
    }

    /// Claims `id`, which must be in the pool and free.
    pub fn alloc_at(&mut self, id: u32) -> Result<u32, IdPoolError> {
        self.check_range(id)?;
        if self.is_allocated(id) {
            return Err(IdPoolError::InUse {
                kind: self.kind,
                id,
            });
        }
        self.taken.add(one(id));
        self.count += 1;
        Ok(id)
    }

    /// Returns `id` to the pool.
    pub fn free(&mut self, id: u32) -> Result<(), IdPoolError> {
        self.check_range(id)?;
        if !self.is_allocated(id) {
            return Err(IdPoolError::NotAllocated {
                kind: self.kind,
                id,
            });
        }
        self.taken.remove(one(id));
        self.count -= 1;
        Ok(())
    }

    /// Whether `id` is taken.
    pub fn is_allocated(&self, id: u32) -> bool {
        self.taken.run_at(id.into()).is_some()
    }

    fn check_range(&self, id: u32) -> Result<(), IdPoolError> {
        if id < self.first || id > self.last {
            return Err(IdPoolError::OutOfRange {
                kind: self.kind,
                id,
                first: self.first,
                last: self.last,
            });
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_are_handed_out_lowest_first_and_reused() {
        let mut gsi = IdPool::new(IdKind::Gsi, 24, 27).unwrap();
        assert_eq!(
            (gsi.alloc(), gsi.alloc(), gsi.alloc()),
            (Ok(24), Ok(25), Ok(26))
        );
        gsi.free(25).unwrap();
        assert_eq!(gsi.alloc(), Ok(25));
        assert_eq!(gsi.alloc(), Ok(27));
        assert_eq!(
            gsi.alloc(),
            Err(IdPoolError::Exhausted {
                kind: IdKind::Gsi,
                first: 24,
                last: 27
            })
        );
        assert_eq!(gsi.allocated_count(), 4);
    }

    #[test]
    fn a_chosen_slot_can_be_claimed_once() {
        let mut slots = IdPool::new(IdKind::PciSlot, 1, 31).unwrap();
        assert_eq!(slots.alloc_at(3), Ok(3));
        assert_eq!(
            slots.alloc_at(3),
            Err(IdPoolError::InUse {
                kind: IdKind::PciSlot,
                id: 3
            })
        );
        assert_eq!(
            (slots.alloc(), slots.alloc(), slots.alloc()),
            (Ok(1), Ok(2), Ok(4))
        );
        assert_eq!(
            slots.alloc_at(0),
            Err(IdPoolError::OutOfRange {
                kind: IdKind::PciSlot,
                id: 0,
                first: 1,
                last: 31
            })
        );
    }

    #[test]
    fn freeing_a_free_id_is_an_error_that_changes_nothing() {
        let mut slots = IdPool::new(IdKind::PciSlot, 0, 31).unwrap();
        slots.alloc().unwrap();
        assert_eq!(
            slots.free(5),
            Err(IdPoolError::NotAllocated {
                kind: IdKind::PciSlot,
                id: 5
            })
        );
        assert_eq!(slots.allocated_count(), 1);
        assert!(slots.is_allocated(0));
        assert!(matches!(
            slots.free(32),
            Err(IdPoolError::OutOfRange { .. })
        ));
    }

    #[test]
    fn pool_reaching_u32_max_is_exhausted_cleanly() {
        let mut pool = IdPool::new(IdKind::Gsi, u32::MAX - 1, u32::MAX).unwrap();
        assert_eq!(pool.alloc(), Ok(u32::MAX - 1));
        assert_eq!(pool.alloc(), Ok(u32::MAX));
        assert!(matches!(pool.alloc(), Err(IdPoolError::Exhausted { .. })));
        assert!(matches!(
            IdPool::new(IdKind::Gsi, 5, 4),
            Err(IdPoolError::InvalidRange { .. })
        ));
    }
}
