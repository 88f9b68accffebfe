use super::*;

const PAGE: u64 = 4096;

fn r(start: u64, last: u64) -> AddrRange {
    AddrRange::new(start, last).unwrap()
}

fn sl(start: u64, len: u64) -> AddrRange {
    AddrRange::from_start_len(start, len).unwrap()
}

fn alloc_page_aligned(space: &mut IovaSpace<u32>, length: u64) -> Result<u64, IovaError> {
    let a = auto_alignment(length, 0, PAGE, MAX_ALIGNMENT_THP)?;
    space.alloc(length, a.alignment, a.page_offset, PAGE)
}

#[test]
fn fresh_space_places_first_mapping_at_the_first_page_not_zero() {
    let mut space: IovaSpace<u32> = IovaSpace::new();
    assert_eq!(space.alloc(PAGE, PAGE, 0, PAGE), Ok(PAGE));
    assert_eq!(space.alloc(1, 1, 0, PAGE), Ok(PAGE));
}

#[test]
fn placements_are_lowest_first_fit_after_existing_areas() {
    let mut space = IovaSpace::new();
    for i in 0..10 {
        let iova = alloc_page_aligned(&mut space, PAGE).unwrap();
        assert_eq!(iova, PAGE * (i + 1));
        space.insert_area(sl(iova, PAGE), i as u32).unwrap();
    }
    space.remove_area(PAGE * 4).unwrap();
    assert_eq!(alloc_page_aligned(&mut space, PAGE), Ok(PAGE * 4));
    assert_eq!(alloc_page_aligned(&mut space, 2 * PAGE), Ok(PAGE * 12));
}

#[test]
fn placements_are_naturally_aligned_as_the_selftest_checks() {
    let mut space = IovaSpace::new();
    for i in 1..=10u64 {
        let length = PAGE * i;
        let iova = alloc_page_aligned(&mut space, length).unwrap();
        assert_eq!(
            iova % (1 << length.trailing_zeros()),
            0,
            "length {length:#x}"
        );
        space.insert_area(sl(iova, length), 0).unwrap();
    }
}

#[test]
fn placements_avoid_a_reserved_region() {
    let mut space = IovaSpace::new();
    let reserved = sl(PAGE * 4, PAGE * 100);
    space.reserve(reserved, 1).unwrap();
    for i in 1..=10u64 {
        let length = PAGE * i;
        let iova = alloc_page_aligned(&mut space, length).unwrap();
        let placed = sl(iova, length);
        assert!(!placed.overlaps(&reserved), "{placed} meets {reserved}");
        space.insert_area(placed, 0).unwrap();
    }
}

#[test]
fn placements_stay_inside_the_allowed_list() {
    let mut space = IovaSpace::new();
    space.reserve(sl(PAGE * 4, PAGE * 100), 1).unwrap();
    let allowed = r(PAGE * 200, PAGE * 600 - 1);
    space.set_allowed(&[allowed]).unwrap();
    for i in 1..=10u64 {
        let length = PAGE * i;
        let iova = alloc_page_aligned(&mut space, length).unwrap();
        assert!(allowed.contains_range(&sl(iova, length)));
        space.insert_area(sl(iova, length), 0).unwrap();
    }
    assert_eq!(
        space.alloc(PAGE * 400, PAGE, 0, PAGE),
        Err(IovaError::NoSpace {
            length: PAGE * 400,
            alignment: PAGE,
            page_offset: 0
        })
    );
}

#[test]
fn adjacent_allowed_ranges_form_one_span() {
    let mut space: IovaSpace<u32> = IovaSpace::new();
    space
        .set_allowed(&[r(0x10000, 0x10fff), r(0x11000, 0x11fff)])
        .unwrap();
    assert_eq!(space.alloc(0x2000, 0x1000, 0, PAGE), Ok(0x10000));
}

#[test]
fn allowed_list_is_clipped_to_skip_the_first_and_last_page() {
    let mut space = IovaSpace::new();
    space
        .set_allowed(&[r(0, 0x1fff), r(u64::MAX - 0x1fff, u64::MAX)])
        .unwrap();
    // Each span keeps one page: [0x1000, 0x1fff] and [MAX - 0x1fff, MAX - 0x1000].
    assert_eq!(
        space.alloc(0x1001, 1, 0, PAGE).unwrap_err(),
        IovaError::NoSpace {
            length: 0x1001,
            alignment: 1,
            page_offset: 0
        }
    );
    assert_eq!(space.alloc(0x800, 0x800, 0, PAGE), Ok(0x1000));
    space.insert_area(r(0x1000, 0x1fff), 0u32).unwrap();
    assert_eq!(space.alloc(0x1000, 0x1000, 0, PAGE), Ok(u64::MAX - 0x1fff));
}

#[test]
fn the_top_page_is_never_handed_out() {
    let mut space: IovaSpace<u32> = IovaSpace::new();
    space.reserve(r(0, u64::MAX - 3 * PAGE), 1).unwrap();
    // Two pages remain below the last page: [MAX - 3 PAGE + 1, MAX - PAGE].
    assert_eq!(
        space.alloc(2 * PAGE, PAGE, 0, PAGE),
        Ok(u64::MAX - 3 * PAGE + 1)
    );
    assert!(matches!(
        space.alloc(2 * PAGE + 1, 1, 0, PAGE),
        Err(IovaError::NoSpace { .. })
    ));
}

#[test]
fn a_one_byte_request_never_takes_the_last_byte_of_a_hole() {
    let mut space: IovaSpace<u32> = IovaSpace::new();
    space.insert_area(r(PAGE + 1, u64::MAX), 0).unwrap();
    // The hole [PAGE, PAGE] is one byte; the kernel's strict test refuses it.
    assert!(matches!(
        space.alloc(1, 1, 0, PAGE),
        Err(IovaError::NoSpace { .. })
    ));
    space.remove_area(PAGE + 1).unwrap();
    space.insert_area(r(PAGE + 2, u64::MAX), 0).unwrap();
    assert_eq!(space.alloc(1, 1, 0, PAGE), Ok(PAGE));
}

#[test]
fn page_offset_is_ored_into_the_aligned_candidate() {
    let mut space: IovaSpace<u32> = IovaSpace::new();
    let a = auto_alignment(0x3000, 0x7000_0880, PAGE, MAX_ALIGNMENT_THP).unwrap();
    assert_eq!((a.alignment, a.page_offset), (0x80, 0x880));
    assert_eq!(
        space.alloc(0x3000, a.alignment, a.page_offset, PAGE),
        Ok(0x1880)
    );
}

#[test]
fn alloc_rejects_bad_lengths_and_parameters() {
    let mut space: IovaSpace<u32> = IovaSpace::new();
    assert_eq!(
        space.alloc(0, 1, 0, PAGE),
        Err(IovaError::Overflow { length: 0 })
    );
    assert_eq!(
        space.alloc(u64::MAX / 2, 1, 0, PAGE),
        Err(IovaError::Overflow {
            length: u64::MAX / 2
        })
    );
    assert_eq!(
        space.alloc(1, 3, 0, PAGE),
        Err(IovaError::BadParameter {
            name: "alignment",
            value: 3
        })
    );
    assert_eq!(
        space.alloc(1, 1, PAGE, PAGE),
        Err(IovaError::BadParameter {
            name: "page_offset",
            value: PAGE
        })
    );
    assert_eq!(
        space.alloc(1, 1, 0, 1 << 63),
        Err(IovaError::BadParameter {
            name: "page_size",
            value: 1 << 63
        })
    );
}

#[test]
fn large_request_fits_below_the_top_page() {
    let mut space: IovaSpace<u32> = IovaSpace::new();
    let length = u64::MAX / 2 - 1;
    let iova = space.alloc(length, MAX_ALIGNMENT_THP, 0, PAGE).unwrap();
    assert_eq!(iova, MAX_ALIGNMENT_THP);
}

#[test]
fn fixed_map_on_reserved_is_reserved_and_on_an_area_exists() {
    let mut space = IovaSpace::new();
    space.reserve(r(0xfee0_0000, 0xfeef_ffff), 9).unwrap();
    space.insert_area(sl(0x10_0000, PAGE), 1).unwrap();
    assert_eq!(
        space.check_fixed(r(0xfeef_f000, 0xff00_0fff)),
        Err(IovaError::Reserved {
            range: r(0xfeef_f000, 0xff00_0fff),
            reserved: r(0xfee0_0000, 0xfeef_ffff),
            owner: 9,
        })
    );
    let one_byte_overlap = r(0x10_0fff, 0x10_1fff);
    assert_eq!(
        space.insert_area(one_byte_overlap, 2),
        Err(IovaError::Exists {
            range: one_byte_overlap,
            area: sl(0x10_0000, PAGE),
        })
    );
    assert_eq!(space.areas().len(), 1);
}

#[test]
fn reserved_wins_over_exists_when_both_apply() {
    let mut space = IovaSpace::new();
    space.insert_area(sl(0x1000, PAGE), 1).unwrap();
    space.reserve(sl(0x2000, PAGE), 1).unwrap();
    assert!(matches!(
        space.check_fixed(r(0x1000, 0x2fff)),
        Err(IovaError::Reserved { .. })
    ));
}

#[test]
fn fixed_maps_ignore_the_allowed_list() {
    let mut space = IovaSpace::new();
    space.set_allowed(&[r(0x10_0000, 0x1f_ffff)]).unwrap();
    space.insert_area(sl(0x4000_0000, PAGE), 1).unwrap();
    assert!(space.area_at(0x4000_0fff).is_some());
}

#[test]
fn fixed_areas_may_reach_the_top_of_the_space() {
    let mut space = IovaSpace::new();
    space
        .insert_area(r(u64::MAX - PAGE + 1, u64::MAX), 7)
        .unwrap();
    assert_eq!(space.area_at(u64::MAX).map(|(_, v)| *v), Some(7));
    assert_eq!(space.reserved_holes(), vec![AddrRange::FULL]);
}

#[test]
fn set_allowed_rejects_one_byte_and_overlapping_ranges_without_change() {
    let mut space: IovaSpace<u32> = IovaSpace::new();
    space.set_allowed(&[r(0x1000, 0x1fff)]).unwrap();
    assert_eq!(
        space.set_allowed(&[r(0x4000, 0x4fff), r(0x5000, 0x5000)]),
        Err(IovaError::AllowedTooSmall {
            index: 1,
            range: r(0x5000, 0x5000)
        })
    );
    assert_eq!(
        space.set_allowed(&[r(0x4000, 0x4fff), r(0x4fff, 0x5fff)]),
        Err(IovaError::AllowedOverlap {
            index: 1,
            range: r(0x4fff, 0x5fff),
            other: r(0x4000, 0x4fff)
        })
    );
    assert_eq!(space.allowed().collect::<Vec<_>>(), vec![r(0x1000, 0x1fff)]);
}

#[test]
fn set_allowed_over_a_reserved_range_is_in_use_and_keeps_the_old_list() {
    let mut space: IovaSpace<u32> = IovaSpace::new();
    space.set_allowed(&[r(0x1000, 0x1fff)]).unwrap();
    space.reserve(r(0x9000, 0x9fff), 3).unwrap();
    assert_eq!(
        space.set_allowed(&[r(0x4000, 0x4fff), r(0x8000, 0x9000)]),
        Err(IovaError::InUse {
            range: r(0x8000, 0x9000),
            conflict: r(0x9000, 0x9fff),
            occupant: Occupant::Reserved,
        })
    );
    assert_eq!(space.allowed().collect::<Vec<_>>(), vec![r(0x1000, 0x1fff)]);
    space.set_allowed(&[]).unwrap();
    assert_eq!(space.allowed().count(), 0);
}

#[test]
fn set_allowed_does_not_check_existing_areas() {
    let mut space = IovaSpace::new();
    space.insert_area(sl(0x10_0000, PAGE), 1).unwrap();
    space.set_allowed(&[r(0x20_0000, 0x2f_ffff)]).unwrap();
    assert_eq!(space.areas().len(), 1);
}

#[test]
fn reserve_over_an_area_or_allowed_range_is_in_use() {
    let mut space = IovaSpace::new();
    space.insert_area(sl(0x10_0000, PAGE), 1).unwrap();
    space.set_allowed(&[r(0x20_0000, 0x2f_ffff)]).unwrap();
    assert_eq!(
        space.reserve(r(0x10_0fff, 0x10_1000), 5),
        Err(IovaError::InUse {
            range: r(0x10_0fff, 0x10_1000),
            conflict: sl(0x10_0000, PAGE),
            occupant: Occupant::Area,
        })
    );
    assert_eq!(
        space.reserve(r(0x2f_ffff, 0x30_0000), 5),
        Err(IovaError::InUse {
            range: r(0x2f_ffff, 0x30_0000),
            conflict: r(0x20_0000, 0x2f_ffff),
            occupant: Occupant::Allowed,
        })
    );
    assert!(space.reserved().is_empty());
}

#[test]
fn unreserving_an_owner_frees_its_addresses_for_placement() {
    let mut space: IovaSpace<u32> = IovaSpace::new();
    space.reserve(r(0, 0xf_ffff), 1).unwrap();
    space.reserve(r(0x8_0000, 0x1f_ffff), 2).unwrap();
    assert_eq!(space.alloc(PAGE, PAGE, 0, PAGE), Ok(0x20_0000));
    assert_eq!(space.unreserve_owner(2), 1);
    assert_eq!(space.alloc(PAGE, PAGE, 0, PAGE), Ok(0x10_0000));
    assert_eq!(space.unreserve_owner(1), 1);
    assert_eq!(space.alloc(PAGE, PAGE, 0, PAGE), Ok(PAGE));
    assert_eq!(space.unreserve_owner(1), 0);
}

#[test]
fn removing_an_area_between_reserved_ranges_reopens_exactly_its_hole() {
    let mut space = IovaSpace::new();
    space.reserve(r(PAGE, 2 * PAGE - 1), 1).unwrap();
    space.insert_area(sl(2 * PAGE, PAGE), 0).unwrap();
    space.reserve(r(3 * PAGE, 4 * PAGE - 1), 1).unwrap();
    assert_eq!(space.alloc(PAGE, PAGE, 0, PAGE), Ok(4 * PAGE));
    space.remove_area(2 * PAGE).unwrap();
    assert_eq!(space.alloc(PAGE, PAGE, 0, PAGE), Ok(2 * PAGE));
    assert_eq!(space.alloc(PAGE + 1, 1, 0, PAGE), Ok(4 * PAGE));
}

#[test]
fn iova_ranges_report_reserved_holes_not_the_allowed_list() {
    let mut space: IovaSpace<u32> = IovaSpace::new();
    assert_eq!(space.reserved_holes(), vec![AddrRange::FULL]);
    space.reserve(sl(PAGE, PAGE), 1).unwrap();
    space.set_allowed(&[r(0x10_0000, 0x1f_ffff)]).unwrap();
    assert_eq!(
        space.reserved_holes(),
        vec![r(0, PAGE - 1), r(2 * PAGE, u64::MAX)]
    );
}

#[test]
fn area_accessors_find_and_mutate_values() {
    let mut space = IovaSpace::new();
    space.insert_area(sl(0x1000, 0x1000), 1u32).unwrap();
    space.insert_area(sl(0x3000, 0x1000), 2).unwrap();
    *space.area_at_mut(0x3fff).unwrap().1 = 20;
    assert_eq!(
        space
            .first_area_overlapping(r(0x2000, 0x3000))
            .map(|(_, v)| *v),
        Some(20)
    );
    let values: Vec<_> = space
        .areas_overlapping(r(0, 0x3000))
        .map(|(_, v)| *v)
        .collect();
    assert_eq!(values, vec![1, 20]);
    assert_eq!(space.remove_area(0x1000), Some((sl(0x1000, 0x1000), 1)));
    assert!(space.remove_area(0x1000).is_none());
}

#[test]
fn placement_past_many_packed_areas_lands_after_them() {
    let mut space = IovaSpace::new();
    for i in 0..10_000u64 {
        let iova = space.alloc(PAGE, PAGE, 0, PAGE).unwrap();
        assert_eq!(iova, PAGE * (i + 1));
        space.insert_area(sl(iova, PAGE), 0u8).unwrap();
    }
    space.occupancy.check_invariants();
    assert_eq!(space.alloc(PAGE, PAGE, 0, PAGE), Ok(PAGE * 10_001));
}

#[test]
fn placement_skips_holes_too_small_and_too_misaligned() {
    let mut space = IovaSpace::new();
    // Areas of one page with one-page holes, then two two-page holes, at an odd page and at
    // an even one.
    for i in 0..1000u64 {
        space
            .insert_area(sl(PAGE * (2 * i + 2), PAGE), 0u8)
            .unwrap();
    }
    let after = PAGE * 2001;
    space.insert_area(sl(after + 2 * PAGE, PAGE), 0).unwrap();
    space.insert_area(sl(after + 5 * PAGE, PAGE), 0).unwrap();
    // One page: the lowest hole.
    assert_eq!(space.alloc(PAGE, PAGE, 0, PAGE), Ok(PAGE));
    // Two pages at page alignment: the first two-page hole.
    assert_eq!(space.alloc(2 * PAGE, PAGE, 0, PAGE), Ok(after));
    // Two pages aligned to two: the first two-page hole starts at an odd page, so its aligned
    // candidate leaves one page; the second one fits.
    assert_eq!(after / PAGE % 2, 1);
    assert_eq!(
        space.alloc(2 * PAGE, 2 * PAGE, 0, PAGE),
        Ok(after + 3 * PAGE)
    );
    // Three pages: only the tail.
    assert_eq!(space.alloc(3 * PAGE, PAGE, 0, PAGE), Ok(after + 6 * PAGE));
}

#[test]
fn reserved_runs_merge_and_split_around_areas() {
    let mut space = IovaSpace::new();
    space.insert_area(sl(0x1000, 0x1000), 0u8).unwrap();
    space.reserve(sl(0x2000, 0x1000), 1).unwrap();
    space.reserve(sl(0x3000, 0x1000), 2).unwrap();
    space.reserve(sl(0x2800, 0x2000), 3).unwrap();
    space.occupancy.check_invariants();
    // Area, then one run [0x2000, 0x47ff].
    assert_eq!(space.occupancy.len(), 2);
    assert_eq!(
        space.alloc(0x1000, 0x1000, 0, 0x1000),
        Ok(0x5000),
        "placement must pass the merged run"
    );
    assert_eq!(space.unreserve_owner(3), 1);
    space.occupancy.check_invariants();
    assert_eq!(space.alloc(0x800, 0x800, 0, 0x1000), Ok(0x4000));
    assert_eq!(space.unreserve_owner(1), 1);
    assert_eq!(space.alloc(0x1000, 0x1000, 0, 0x1000), Ok(0x2000));
    assert_eq!(space.unreserve_owner(2), 1);
    assert_eq!(space.occupancy.len(), 1);
    assert_eq!(space.remove_area(0x2000), None, "no area starts there");
    assert_eq!(space.remove_area(0x1000), Some((sl(0x1000, 0x1000), 0)));
    assert_eq!(space.occupancy.len(), 0);
}

#[test]
fn remove_area_leaves_a_reserved_run_starting_there() {
    let mut space: IovaSpace<u8> = IovaSpace::new();
    space.reserve(sl(0x1000, 0x1000), 1).unwrap();
    assert_eq!(space.remove_area(0x1000), None);
    assert_eq!(
        space.check_fixed(sl(0x1000, 1)),
        Err(IovaError::Reserved {
            range: sl(0x1000, 1),
            reserved: sl(0x1000, 0x1000),
            owner: 1
        })
    );
}

#[test]
fn take_first_area_within_takes_only_areas_inside_the_window() {
    let mut space = IovaSpace::new();
    space.reserve(r(0, 0xfff), 9).unwrap();
    space.insert_area(sl(0x1000, 0x1000), 1u8).unwrap();
    space.insert_area(sl(0x3000, 0x2000), 2).unwrap();
    // The reserved run comes first: the area after it is still found.
    assert_eq!(
        space.take_first_area_within(r(0, 0x1fff)),
        Ok(Some((sl(0x1000, 0x1000), 1)))
    );
    // Sticking out: refused, nothing removed.
    assert_eq!(
        space.take_first_area_within(r(0x2000, 0x3fff)),
        Err(sl(0x3000, 0x2000))
    );
    assert_eq!(space.areas().len(), 1);
    assert_eq!(space.take_first_area_within(r(0x1000, 0x2fff)), Ok(None));
    assert_eq!(
        space.take_first_area_within(r(0x2000, 0x4fff)),
        Ok(Some((sl(0x3000, 0x2000), 2)))
    );
    assert!(space.areas().is_empty());
    assert_eq!(space.take_first_area_within(AddrRange::FULL), Ok(None));
    assert_eq!(space.reserved().len(), 1);
    space.occupancy.check_invariants();
}
