//! The behaviour cases, grouped by what they exercise; [`ALL`] lists them.

use super::backend::{Needs, Versions};
use super::case::Case;

mod alignment;
mod allow;
mod auto_iova;
mod copy;
mod dirty;
mod fault;
mod hw_info;
mod hwpt;
mod invalidate;
mod map;
mod map_file;
mod objects;
mod option;
mod pinning;
mod ranges;
mod unmap;
mod versions;
mod vtd;

/// Builds [`Case`]s named after their functions.
macro_rules! cases {
    ($($module:ident :: $name:ident => $needs:expr),* $(,)?) => {
        &[$(Case { name: stringify!($name), needs: $needs, run: $module::$name }),*]
    };
}

const MOCK: Needs = Needs::MOCK;
const UAPI: Needs = Needs::UAPI;
use vfio_passthrough::host::emulated::KernelVersion as V;

/// Every case, in report order.
pub static ALL: &[Case] = cases![
    objects::destroy_of_an_unknown_id_is_enoent => UAPI,
    objects::ids_are_the_lowest_free_and_reused => UAPI,
    objects::a_failed_allocation_consumes_no_id => MOCK,
    objects::devices_and_hwpts_share_the_id_space => MOCK,
    objects::destroying_an_ioas_in_use_is_ebusy => MOCK,
    objects::destroying_a_hwpt_in_use_is_ebusy => MOCK,
    objects::destroying_a_device_object_is_ebusy => MOCK,
    objects::ioas_alloc_with_flags_is_eopnotsupp => UAPI,
    objects::an_ioas_with_areas_can_be_destroyed => UAPI,
    objects::vfio_ioas_selects_and_forgets_the_compat_ioas => UAPI,
    map::map_with_unknown_flags_or_reserved_is_eopnotsupp => UAPI,
    map::map_of_u64_max_iova_or_length_is_eoverflow => UAPI,
    map::map_without_read_or_write_is_einval => UAPI,
    map::map_into_a_wrong_ioas_is_enoent => MOCK,
    map::map_of_zero_or_too_long_length_is_einval => UAPI,
    map::map_whose_user_range_wraps_is_eoverflow => UAPI,
    map::map_whose_iova_range_wraps_is_eoverflow => UAPI,
    map::map_over_an_area_even_by_one_byte_is_eexist => UAPI,
    map::map_into_a_reserved_range_is_einval => MOCK,
    map::map_reaches_the_top_of_the_64bit_space => UAPI,
    map::map_to_a_mock_domain_must_respect_its_2k_pages => MOCK,
    map::map_of_unmapped_memory_succeeds_without_a_domain => UAPI,
    map::map_of_unmapped_memory_is_efault_with_a_domain => MOCK,
    map::attaching_a_domain_over_unmapped_memory_is_efault => MOCK,
    map::writeable_map_of_read_only_memory_is_efault_with_a_domain => MOCK,
    map::automatic_map_returns_the_iova_and_maps_it => MOCK,
    unmap::unmap_of_nothing_mapped_is_enoent => UAPI,
    unmap::unmap_of_an_exact_area_reports_its_length => MOCK,
    unmap::unmap_of_part_of_an_area_is_enoent => MOCK,
    unmap::unmap_is_not_atomic => MOCK,
    unmap::unmap_starting_inside_the_first_area_removes_nothing => UAPI,
    unmap::unmap_removes_fully_contained_areas_across_holes => UAPI,
    unmap::unmap_of_zero_length_is_einval => UAPI,
    unmap::unmap_of_overflowing_ranges_is_eoverflow => UAPI,
    unmap::unmap_of_a_wrong_ioas_is_enoent => UAPI,
    unmap::unmap_all_of_an_empty_ioas_succeeds_with_length_0 => UAPI,
    unmap::unmap_all_reports_every_byte_and_unpins => MOCK,
    copy::copy_within_an_ioas_and_between_ioases => MOCK,
    copy::copy_of_a_sub_range_of_an_area_succeeds => MOCK,
    copy::copy_across_contiguous_areas_makes_one_area_per_piece => MOCK,
    copy::copy_over_a_gap_is_enoent => UAPI,
    copy::copy_bad_arguments_change_nothing => MOCK,
    copy::writeable_copy_of_read_only_pages_is_eperm => UAPI,
    ranges::a_fresh_ioas_offers_the_whole_space_unaligned => UAPI,
    ranges::a_mock_domain_limits_ranges_to_its_aperture => MOCK,
    ranges::too_small_a_buffer_is_emsgsize_with_the_total => MOCK,
    ranges::iova_ranges_bad_arguments => UAPI,
    ranges::iova_ranges_ignore_the_allowed_list => UAPI,
    allow::allowed_ranges_must_be_longer_than_a_byte_and_disjoint => UAPI,
    allow::an_allowed_range_meeting_a_reserved_one_is_eaddrinuse => MOCK,
    allow::a_reservation_inside_an_allowed_range_is_eaddrinuse => MOCK,
    allow::a_domain_whose_aperture_meets_an_allowed_range_cannot_attach => MOCK,
    allow::automatic_placement_stays_inside_the_allowed_ranges => MOCK,
    allow::fixed_maps_ignore_the_allowed_list => UAPI,
    allow::automatic_placement_is_enospc_when_the_allowed_ranges_are_full => UAPI,
    option::option_bad_arguments_are_refused => UAPI,
    option::rlimit_mode_starts_per_user => UAPI,
    option::setting_the_rlimit_mode_needs_cap_sys_resource => UAPI.cap_sys_resource(false),
    option::the_rlimit_mode_changes_only_without_objects => UAPI.cap_sys_resource(true),
    option::huge_pages_can_be_read_and_switched => UAPI,
    option::disabling_huge_pages_forces_page_alignment => UAPI,
    option::disabling_huge_pages_with_a_domain_and_areas_is_einval => MOCK,
    alignment::alignment_tightens_on_attach_and_relaxes_on_detach => MOCK,
    alignment::alignment_stays_while_a_domain_remains => MOCK,
    alignment::attach_is_eaddrinuse_when_an_area_length_breaks_the_alignment => MOCK,
    alignment::attach_is_eaddrinuse_when_an_area_iova_breaks_the_alignment => MOCK,
    alignment::attach_is_eaddrinuse_when_an_area_page_offset_breaks_the_alignment => MOCK,
    alignment::attach_is_eaddrinuse_when_the_aperture_excludes_an_area => MOCK,
    alignment::hwpt_alloc_applies_the_attach_rules_to_its_ioas => MOCK.versions(Versions::From(V::V6_6)),
    auto_iova::automatic_iovas_are_the_lowest_fit_and_never_page_0 => UAPI,
    auto_iova::automatic_iovas_are_aligned_to_the_length => UAPI,
    auto_iova::automatic_iovas_keep_the_alignment_of_the_user_address => UAPI,
    auto_iova::automatic_alignment_is_capped_at_the_huge_page_size => UAPI.versions(Versions::From(V::V6_10)),
    auto_iova::automatic_iovas_avoid_reserved_ranges => MOCK,
    auto_iova::automatic_iovas_start_at_the_mock_aperture => MOCK,
    auto_iova::automatic_map_below_the_domain_alignment_is_einval => MOCK,
    auto_iova::automatic_map_of_half_the_space_is_eoverflow => UAPI,
    auto_iova::automatic_map_is_enospc_when_nothing_fits => MOCK,
    pinning::pages_are_pinned_only_while_a_domain_holds_them => MOCK.versions(Versions::From(V::V6_6)),
    pinning::each_map_pins_its_pages_and_copies_share_them => MOCK,
    pinning::a_map_past_the_memlock_limit_is_enomem => MOCK.memlock(8 * 4096),
    pinning::copies_are_not_charged_again => MOCK.memlock(8 * 4096),
    pinning::attaching_past_the_memlock_limit_is_enomem => MOCK.memlock(8 * 4096),
    pinning::check_map_and_check_refs_catch_mismatches => MOCK,
    hwpt::hwpt_alloc_checks_its_fields_first => MOCK.versions(Versions::From(V::V6_7)),
    hwpt::fault_id_on_a_paging_hwpt_is_eopnotsupp => MOCK.versions(Versions::Range(V::V6_11, V::V6_13)),
    hwpt::dirty_tracking_hwpt_needs_a_dirty_capable_iommu => MOCK.versions(Versions::From(V::V6_7)),
    hwpt::an_allocated_hwpt_is_filled_though_not_attached => MOCK.versions(Versions::From(V::V6_6)),
    hwpt::mock_devices_attach_to_a_hwpt_directly => MOCK.versions(Versions::From(V::V6_7)),
    hwpt::replace_moves_a_device_between_hwpts_and_ioases => MOCK.versions(Versions::From(V::V6_6)),
    hwpt::nested_hwpt_allocation_checks => MOCK.versions(Versions::From(V::V6_11)),
    hwpt::devices_move_through_nested_hwpts => MOCK.versions(Versions::From(V::V6_8)),
    hw_info::hw_info_negotiates_the_data_size => MOCK.versions(Versions::From(V::V6_6)),
    hw_info::hw_info_reports_dirty_tracking_and_no_pasid => MOCK.versions(Versions::From(V::V6_12)),
    hw_info::hw_info_bad_arguments => MOCK.versions(Versions::From(V::V6_6)),
    dirty::set_dirty_tracking_checks => MOCK.versions(Versions::From(V::V6_7)),
    dirty::get_dirty_bitmap_checks => MOCK.versions(Versions::From(V::V6_7)),
    dirty::dirty_bits_are_reported_once_then_cleared => MOCK.versions(Versions::From(V::V6_7)),
    dirty::no_clear_leaves_the_dirty_bits => MOCK.versions(Versions::From(V::V6_7)),
    dirty::the_dirty_bitmap_is_only_ored_into => MOCK.versions(Versions::From(V::V6_7)),
    dirty::page_size_groups_mock_pages => MOCK.versions(Versions::From(V::V6_7)),
    dirty::mock_dirty_checks_its_values_first => MOCK.versions(Versions::From(V::V6_7)),
    dirty::enabling_tracking_clears_stale_bits_and_reads_need_it => MOCK.versions(Versions::From(V::V6_7)),
    dirty::unmapped_pages_read_clean => MOCK.versions(Versions::From(V::V6_7)),
    invalidate::invalidate_needs_a_nested_hwpt => MOCK.versions(Versions::From(V::V6_8)),
    invalidate::each_call_is_bounded_before_the_hwpt_is_looked_up => MOCK.versions(Versions::From(V::V6_8)),
    invalidate::zero_entries_probe_the_data_type => MOCK.versions(Versions::From(V::V6_8)),
    invalidate::invalid_entries_are_refused_in_order => MOCK.versions(Versions::From(V::V6_8)),
    invalidate::a_failing_entry_stops_after_the_ones_before_it => MOCK.versions(Versions::From(V::V6_8)),
    invalidate::the_all_flag_invalidates_every_entry => MOCK.versions(Versions::From(V::V6_8)),
    fault::fault_queue_alloc_with_flags_is_eopnotsupp => UAPI.versions(Versions::From(V::V6_11)),
    fault::a_fault_object_is_busy_while_its_fd_is_open => UAPI.versions(Versions::From(V::V6_11)),
    fault::iopfs_reach_the_fault_fd_of_the_attached_hwpt => MOCK.versions(Versions::From(V::V6_11)),
    map_file::map_file_maps_memfd_pages => MOCK.versions(Versions::From(V::V6_13)),
    map_file::map_file_checks_its_arguments_in_order => MOCK.versions(Versions::From(V::V6_13)),
    versions::hwpt_alloc_and_hw_info_are_enotty_before_6_6 => MOCK.versions(Versions::Range(V::V6_2, V::V6_6)),
    versions::new_hwpt_fields_are_e2big_on_6_6 => MOCK.versions(Versions::Range(V::V6_6, V::V6_7)),
    versions::invalidate_is_enotty_before_6_8 => MOCK.versions(Versions::Range(V::V6_7, V::V6_8)),
    versions::fault_queues_are_enotty_before_6_11 => MOCK.versions(Versions::Range(V::V6_8, V::V6_11)),
    versions::map_file_is_enotty_before_6_13 => UAPI.versions(Versions::Range(V::V6_11, V::V6_13)),
    vtd::vtd_hw_info_reports_consistent_registers => UAPI.vtd().versions(Versions::From(V::V6_12)),
    vtd::vtd_devices_reserve_the_msi_window => UAPI.vtd(),
    vtd::vtd_nested_hwpts_follow_the_intel_driver => MOCK.vtd_nesting().versions(Versions::From(V::V6_8)),
    vtd::vtd_invalidations_follow_the_intel_driver => UAPI.vtd_nesting().versions(Versions::From(V::V6_8)),
];
