//! `PasidSpace` and its owners against a model: a map from PASID to owner slot, with quotas.
//! A 4-bit space (PASIDs 1..=15) is small enough to exhaust.

use std::collections::BTreeMap;

use proptest::prelude::*;
use resources::pasid::{PasidError, PasidOwner, PasidSpace};

const BITS: u32 = 4;
const MAX: u32 = (1 << BITS) - 1;
const SLOTS: usize = 3;

#[derive(Debug, Clone)]
enum Op {
    Alloc { slot: usize, min: u32, max: u32 },
    Free { slot: usize, pasid: u32 },
    FreeRange { slot: usize, min: u32, max: u32 },
    Replace { slot: usize, quota: u32 },
}

fn op() -> impl Strategy<Value = Op> {
    let slot = 0..SLOTS;
    let pasid = 0..=MAX + 2;
    prop_oneof![
        6 => (slot.clone(), pasid.clone(), pasid.clone())
            .prop_map(|(slot, min, max)| Op::Alloc { slot, min, max }),
        3 => (slot.clone(), pasid.clone()).prop_map(|(slot, pasid)| Op::Free { slot, pasid }),
        1 => (slot.clone(), pasid.clone(), pasid)
            .prop_map(|(slot, min, max)| Op::FreeRange { slot, min, max }),
        1 => (slot, 0..8u32).prop_map(|(slot, quota)| Op::Replace { slot, quota }),
    ]
}

struct Model {
    quotas: [u32; SLOTS],
    holder: BTreeMap<u32, usize>,
}

impl Model {
    fn held(&self, slot: usize) -> Vec<u32> {
        self.holder
            .iter()
            .filter(|&(_, &s)| s == slot)
            .map(|(&p, _)| p)
            .collect()
    }

    fn alloc(&self, slot: usize, owner: u64, min: u32, max: u32) -> Result<u32, PasidError> {
        let lowest = min.max(1);
        if lowest > max || max > MAX {
            return Err(PasidError::OutOfRange {
                min,
                max,
                space_max: MAX,
            });
        }
        let quota = self.quotas[slot];
        if self.held(slot).len() >= quota as usize {
            return Err(PasidError::QuotaExceeded { owner, quota });
        }
        (lowest..=max)
            .find(|p| !self.holder.contains_key(p))
            .ok_or(PasidError::Exhausted { min, max })
    }
}

fn check(space: &PasidSpace, owners: &[PasidOwner], model: &Model) -> Result<(), TestCaseError> {
    for (slot, owner) in owners.iter().enumerate() {
        prop_assert_eq!(owner.held(), model.held(slot));
    }
    prop_assert_eq!(space.allocated_count(), model.holder.len());
    for pasid in 0..=MAX {
        prop_assert_eq!(space.is_allocated(pasid), model.holder.contains_key(&pasid));
    }
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    #[test]
    fn pasid_space_matches_model(
        quotas in prop::array::uniform3(0..8u32),
        ops in prop::collection::vec(op(), 1..60),
    ) {
        let space = PasidSpace::new(BITS).unwrap();
        let mut owners: Vec<PasidOwner> = quotas.iter().map(|&q| space.owner(q)).collect();
        let mut model = Model { quotas, holder: BTreeMap::new() };
        for op in ops {
            match op {
                Op::Alloc { slot, min, max } => {
                    let want = model.alloc(slot, owners[slot].id(), min, max);
                    prop_assert_eq!(owners[slot].alloc(min, max), want);
                    if let Ok(pasid) = want {
                        model.holder.insert(pasid, slot);
                    }
                }
                Op::Free { slot, pasid } => {
                    let mine = model.holder.get(&pasid) == Some(&slot);
                    let want = if mine {
                        Ok(())
                    } else {
                        Err(PasidError::NotOwned { owner: owners[slot].id(), pasid })
                    };
                    prop_assert_eq!(owners[slot].free(pasid), want);
                    if mine {
                        model.holder.remove(&pasid);
                    }
                }
                Op::FreeRange { slot, min, max } => {
                    let doomed: Vec<u32> = model
                        .held(slot)
                        .into_iter()
                        .filter(|p| (min..=max).contains(p))
                        .collect();
                    prop_assert_eq!(owners[slot].free_range(min, max), doomed.len());
                    for pasid in doomed {
                        model.holder.remove(&pasid);
                    }
                }
                Op::Replace { slot, quota } => {
                    // Dropping the old owner must release everything it held.
                    owners[slot] = space.owner(quota);
                    model.quotas[slot] = quota;
                    model.holder.retain(|_, s| *s != slot);
                }
            }
            check(&space, &owners, &model)?;
        }
        drop(owners);
        prop_assert_eq!(space.allocated_count(), 0);
    }
}
