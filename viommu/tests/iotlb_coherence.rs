//! Property test: for a guest that invalidates correctly after every table change, translating
//! through the IOTLB gives exactly what a fresh walk of the current tables gives, whatever the
//! cache sizes and the order of maps, unmaps and requests.

mod common;

use common::{HAW, empty};
use proptest::prelude::*;
use viommu::iotlb::{Iotlb, IotlbCapacity, RangeInvalidation};
use viommu::vtd::pte::{USER, WRITABLE};
use viommu::vtd::{Access, FirstStageConfig, PageSize, PagingMode, walk};

const TAG: u8 = 3;
const REGIONS: u64 = 4;
const PAGES: u64 = 4;

#[derive(Debug, Clone)]
enum Op {
    Map4k {
        region: u64,
        page: u64,
        target: u64,
        flags: u64,
    },
    Map2m {
        region: u64,
        target: u64,
        flags: u64,
    },
    Unmap4k {
        region: u64,
        page: u64,
    },
    Unmap2m {
        region: u64,
    },
    Translate {
        region: u64,
        page: u64,
        offset: u64,
        access: Access,
    },
}

fn flags() -> impl Strategy<Value = u64> {
    prop::sample::select(vec![USER | WRITABLE, USER, WRITABLE, 0])
}

fn access() -> impl Strategy<Value = Access> {
    (any::<bool>(), any::<bool>()).prop_map(|(write, privileged)| Access {
        read: !write,
        write,
        privileged,
    })
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        3 => (0..REGIONS, 0..PAGES, 0..8u64, flags())
            .prop_map(|(region, page, target, flags)| Op::Map4k { region, page, target, flags }),
        1 => (0..REGIONS, 0..8u64, flags())
            .prop_map(|(region, target, flags)| Op::Map2m { region, target, flags }),
        1 => (0..REGIONS, 0..PAGES).prop_map(|(region, page)| Op::Unmap4k { region, page }),
        1 => (0..REGIONS).prop_map(|region| Op::Unmap2m { region }),
        6 => (0..REGIONS, 0..PAGES, 0..4096u64, access())
            .prop_map(|(region, page, offset, access)| Op::Translate { region, page, offset, access }),
    ]
}

fn iova(region: u64, page: u64) -> u64 {
    (region << 21) | (page << 12)
}

fn invalidate(iotlb: &Iotlb<u8>, addr: u64, size: PageSize, leaf_only: bool) {
    iotlb.invalidate_range(
        TAG,
        RangeInvalidation {
            addr,
            npages: size.bytes() / 4096,
            leaf_only,
        },
    );
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(500))]

    #[test]
    fn iotlb_agrees_with_a_fresh_walk_when_the_guest_invalidates(
        ops in prop::collection::vec(op(), 1..60),
        capacity in prop::sample::select(vec![1usize, 2, 4, 4096]),
        sre_wpe in 0u64..4,
    ) {
        let (mut mem, mut tables) = empty(PagingMode::FourLevel);
        let flags = viommu::vtd::FirstStageFlags {
            sre: sre_wpe & 1 != 0,
            eafe: false,
            wpe: sre_wpe & 2 != 0,
        };
        let config = FirstStageConfig::new(tables.root(), PagingMode::FourLevel, HAW)
            .unwrap()
            .with_flags(flags);
        let iotlb = Iotlb::new(IotlbCapacity {
            pages_4k: capacity,
            pages_2m: capacity,
            pages_1g: capacity,
            paging_structures: capacity,
        });
        for op in ops {
            match op {
                Op::Map4k { region, page, target, flags } => {
                    let gpa = 0x1_0000_0000 + (target << 21);
                    let at = iova(region, page);
                    if tables.map(&mut mem, at, gpa, PageSize::Size4KiB, flags).is_ok() {
                        invalidate(&iotlb, at, PageSize::Size4KiB, true);
                    }
                }
                Op::Map2m { region, target, flags } => {
                    let gpa = 0x1_0000_0000 + (target << 21);
                    let at = iova(region, 0);
                    tables.map(&mut mem, at, gpa, PageSize::Size2MiB, flags).unwrap();
                    invalidate(&iotlb, at, PageSize::Size2MiB, false);
                }
                Op::Unmap4k { region, page } => {
                    let at = iova(region, page);
                    tables.unmap(&mut mem, at, PageSize::Size4KiB).unwrap();
                    invalidate(&iotlb, at, PageSize::Size4KiB, true);
                }
                Op::Unmap2m { region } => {
                    let at = iova(region, 0);
                    tables.unmap(&mut mem, at, PageSize::Size2MiB).unwrap();
                    invalidate(&iotlb, at, PageSize::Size2MiB, false);
                }
                Op::Translate { region, page, offset, access } => {
                    let at = iova(region, page) + offset;
                    let cached = iotlb.translate(TAG, &config, at, access, &mut mem);
                    let fresh = walk(&config, at, access, &mut mem);
                    prop_assert_eq!(cached, fresh, "iova {:#x} {:?}", at, access);
                }
            }
        }
    }
}
