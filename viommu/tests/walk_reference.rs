//! Property test: the walker against a naive reference walker over random small tables.
//!
//! The random memory holds a handful of table pages whose first few entries are random: present
//! or not, any U/S, R/W, PS, A, D, pointing at table pages (in any order, cycles included) or at
//! data pages, now and then with a reserved or ignored bit set. Both walkers run on their own copy
//! of the memory; they must agree on the result and leave identical memories behind.

use std::collections::HashMap;

use proptest::prelude::*;
use viommu::vtd::{Access, FirstStageConfig, FirstStageFlags, PagingMode, SparseTableMemory, walk};

const TABLE_BASE: u64 = 0x10_0000;
const TABLES: u64 = 6;
/// Entries filled per table page; iovas only use these indices.
const FILLED: u64 = 4;
const DATA_BASE: u64 = 0x4000_0000;

#[derive(Debug, Clone, PartialEq, Eq)]
enum Outcome {
    Translated {
        output: u64,
        page_bytes: u64,
        user: bool,
        writable: bool,
        dirty: bool,
    },
    Fault {
        code: u8,
        level: Option<u8>,
    },
}

/// The settings the reference walker runs under, as plain values.
struct Setup {
    root: u64,
    levels: u8,
    flags: FirstStageFlags,
    haw: u8,
    one_gib: bool,
}

/// The walk written out the plain way, bit by bit, sharing no code with the crate.
fn reference_walk(
    mem: &mut HashMap<u64, u64>,
    setup: &Setup,
    iova: u64,
    access: Access,
) -> Outcome {
    let Setup {
        root,
        levels,
        flags,
        haw,
        one_gib,
    } = *setup;
    if access.privileged && !flags.sre {
        return Outcome::Fault {
            code: 0x5d,
            level: None,
        };
    }
    let width = if levels == 5 { 57 } else { 48 };
    let top = iova >> (width - 1);
    let all_ones = u64::MAX >> (width - 1);
    if top != 0 && top != all_ones {
        return Outcome::Fault {
            code: 0x80,
            level: None,
        };
    }
    let mut table = root;
    let mut user = true;
    let mut writable = true;
    let mut level = levels;
    loop {
        let shift = 12 + 9 * (level as u64 - 1);
        let index = (iova >> shift) & 511;
        let entry_address = table + index * 8;
        let entry = mem.get(&entry_address).copied().unwrap_or(0);
        let fault = |code| Outcome::Fault {
            code,
            level: Some(level),
        };
        if entry & 1 == 0 {
            return fault(0x71);
        }
        let ps = entry & (1 << 7) != 0;
        for bit in haw..52 {
            if entry & (1 << bit) != 0 {
                return fault(0x72);
            }
        }
        if (level == 4 || level == 5) && ps {
            return fault(0x72);
        }
        if level == 3 && ps && (!one_gib || (13..30).any(|bit| entry & (1 << bit) != 0)) {
            return fault(0x72);
        }
        if level == 2 && ps && (13..21).any(|bit| entry & (1 << bit) != 0) {
            return fault(0x72);
        }
        user = user && entry & 4 != 0;
        writable = writable && entry & 2 != 0;
        if !access.privileged {
            if !user {
                return fault(0x81);
            }
            if access.write && !writable {
                return fault(0x85);
            }
        } else if access.write && flags.wpe && !writable {
            return fault(0x85);
        }
        let leaf = level == 1 || (ps && (level == 2 || level == 3));
        let mut updated = entry | (1 << 5);
        if flags.eafe {
            updated |= 1 << 10;
        }
        if leaf && access.write {
            updated |= 1 << 6;
        }
        mem.insert(entry_address, updated);
        let address = updated & 0x000f_ffff_ffff_f000;
        if leaf {
            let page_bytes = 1u64 << shift;
            return Outcome::Translated {
                output: (address & !(page_bytes - 1)) | (iova & (page_bytes - 1)),
                page_bytes,
                user,
                writable,
                dirty: updated & (1 << 6) != 0,
            };
        }
        table = address;
        level -= 1;
    }
}

fn entry() -> impl Strategy<Value = u64> {
    (
        prop::bool::weighted(0.9),
        prop::bool::weighted(0.8),
        prop::bool::weighted(0.85),
        prop::bool::weighted(0.25),
        any::<bool>(),
        any::<bool>(),
        0..TABLES + 4,
        prop_oneof![
            6 => Just(0u64),
            1 => Just(1 << 13),
            1 => Just(1 << 21),
            1 => Just(1 << 12),
            1 => Just(1 << 47),
            1 => Just(1 << 51),
            1 => Just(1 << 9),
            1 => Just(1 << 63),
        ],
    )
        .prop_map(|(p, us, rw, ps, a, d, target, extra)| {
            let address = if target < TABLES {
                TABLE_BASE + target * 0x1000
            } else {
                DATA_BASE * (1 + target - TABLES)
            };
            address
                | extra
                | u64::from(p)
                | (u64::from(rw) << 1)
                | (u64::from(us) << 2)
                | (u64::from(a) << 5)
                | (u64::from(d) << 6)
                | (u64::from(ps) << 7)
        })
}

fn iova() -> impl Strategy<Value = u64> {
    prop_oneof![
        9 => (prop::collection::vec(0..FILLED, 5), 0..4096u64).prop_map(|(indices, offset)| {
            indices
                .iter()
                .enumerate()
                .fold(offset, |iova, (i, index)| iova | (index << (12 + 9 * i)))
        }),
        1 => any::<u64>(),
    ]
}

fn access() -> impl Strategy<Value = Access> {
    (any::<bool>(), any::<bool>()).prop_map(|(write, privileged)| Access {
        read: !write,
        write,
        privileged,
    })
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(2000))]

    #[test]
    fn walker_matches_the_reference_and_updates_the_same_entries(
        entries in prop::collection::vec(entry(), (TABLES * FILLED) as usize),
        five_level in any::<bool>(),
        flag_bits in 0u64..8,
        haw in prop::sample::select(vec![40u8, 46, 48, 52]),
        one_gib in any::<bool>(),
        iova in iova(),
        accesses in prop::collection::vec(access(), 1..4),
    ) {
        let mut reference = HashMap::new();
        let mut mem = SparseTableMemory::new();
        for (i, value) in entries.iter().enumerate() {
            let i = i as u64;
            let gpa = TABLE_BASE + (i / FILLED) * 0x1000 + (i % FILLED) * 8;
            reference.insert(gpa, *value);
            mem.poke(gpa, *value);
        }
        let (mode, levels) = if five_level {
            (PagingMode::FiveLevel, 5)
        } else {
            (PagingMode::FourLevel, 4)
        };
        let flags = FirstStageFlags::from_bits(flag_bits).unwrap();
        let config = FirstStageConfig::new(TABLE_BASE, mode, haw)
            .unwrap()
            .with_flags(flags)
            .with_one_gib_pages(one_gib);

        let setup = Setup { root: TABLE_BASE, levels, flags, haw, one_gib };
        // Several requests in a row, so flags set by one are seen by the next.
        for access in accesses {
            let expected = reference_walk(&mut reference, &setup, iova, access);
            let actual = match walk(&config, iova, access, &mut mem) {
                Ok(t) => Outcome::Translated {
                    output: t.output,
                    page_bytes: t.page_size.bytes(),
                    user: t.permissions.user,
                    writable: t.permissions.writable,
                    dirty: t.dirty,
                },
                Err(fault) => Outcome::Fault {
                    code: fault.reason().code(),
                    level: fault.level(),
                },
            };
            prop_assert_eq!(&actual, &expected, "iova {:#x} access {:?}", iova, access);
            for (gpa, value) in &reference {
                prop_assert_eq!(mem.peek(*gpa), *value, "entry at {:#x}", gpa);
            }
        }
    }
}
