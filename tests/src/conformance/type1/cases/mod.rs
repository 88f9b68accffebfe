//! The type1 behaviour cases, grouped by what they exercise; [`ALL`] lists them.

use super::backend::Type1Needs;
use super::case::Type1Case;

mod container;
mod dirty;
mod group;
mod info;
mod map;
mod unmap;
mod vaddr;

/// The page size every case works in.
const P: u64 = 4096;
/// An IOVA well inside every group's valid ranges, with room below it.
const B: u64 = 0x10_0000;

/// Builds [`Type1Case`]s named after their functions.
macro_rules! cases {
    ($($module:ident :: $name:ident => $needs:expr),* $(,)?) => {
        &[$(Type1Case { name: stringify!($name), needs: $needs, run: $module::$name }),*]
    };
}

const ONE: Type1Needs = Type1Needs::ONE_GROUP;
const TWO: Type1Needs = Type1Needs::ONE_GROUP.groups(2);

/// Every case, in report order.
pub static ALL: &[Type1Case] = cases![
    container::api_version_is_0 => ONE,
    container::extensions_before_set_iommu_come_from_the_driver_without_state => ONE,
    container::extensions_after_set_iommu_come_from_the_container => ONE,
    container::set_iommu_without_a_group_is_einval => ONE,
    container::set_iommu_twice_is_einval => ONE,
    container::set_iommu_of_a_type_no_driver_offers_is_enodev => ONE,
    container::the_nesting_type_cannot_be_set_on_vtd => ONE,
    container::iommu_ioctls_before_set_iommu_are_einval => ONE,
    container::the_last_group_leaving_returns_the_container_to_unset => ONE,
    group::group_status_is_viable_then_container_set => ONE,
    group::a_group_in_a_container_cannot_be_set_again => ONE,
    group::unset_of_a_group_in_no_container_is_einval => ONE,
    group::a_file_that_is_not_a_container_is_ebadfd => ONE,
    group::a_device_opens_only_in_a_container_with_an_iommu => ONE.device(),
    group::a_group_with_an_open_device_cannot_leave => ONE.device(),
    group::a_group_opened_device_cannot_bind_or_attach => ONE.iommufd(),
    group::a_second_group_joins_a_container_in_use => TWO,
    group::one_of_two_groups_leaving_keeps_the_mappings => TWO,
    info::get_info_reports_page_sizes_and_capabilities => ONE,
    info::get_info_too_small_for_the_caps_succeeds_and_raises_argsz => ONE,
    info::get_info_with_argsz_below_16_is_einval => ONE,
    info::dma_avail_counts_mappings_down_and_back_up => ONE,
    info::iova_ranges_are_the_aperture_minus_the_msi_window => ONE,
    info::map_outside_the_valid_iova_ranges_is_einval => ONE,
    map::map_with_argsz_below_32_is_einval => ONE,
    map::map_with_unknown_flags_is_einval => ONE,
    map::map_needs_read_or_write_and_not_with_vaddr => ONE,
    map::map_sizes_and_addresses_must_be_page_aligned => ONE,
    map::map_whose_iova_or_address_wraps_is_einval => ONE,
    map::map_overlapping_any_mapping_is_eexist => ONE,
    map::the_same_memory_can_be_mapped_at_two_iovas => ONE,
    map::map_past_the_entry_limit_is_enospc => ONE.dma_entry_limit(4),
    map::map_past_the_memlock_limit_is_enomem_and_pins_nothing => ONE.memlock(8 * P),
    map::map_of_memory_with_a_hole_is_efault_and_rolls_back => ONE,
    map::writable_map_of_read_only_memory_is_efault => ONE,
    unmap::unmap_with_argsz_below_24_or_unknown_flags_is_einval => ONE,
    unmap::unmap_bisecting_a_mapping_is_einval_and_removes_nothing => ONE,
    unmap::unmap_of_an_empty_range_succeeds_with_size_0 => ONE,
    unmap::unmap_removes_every_whole_mapping_across_holes => ONE,
    unmap::unmap_sizes_must_be_aligned_and_not_wrap => ONE,
    unmap::unmap_all_needs_iova_and_size_0_and_reports_everything => ONE,
    unmap::get_dirty_bitmap_cannot_combine_with_all_or_vaddr => ONE,
    unmap::unmap_with_a_bitmap_checks_tracking_argsz_and_the_bitmap => ONE,
    unmap::unmap_with_a_bitmap_reports_every_page_it_unmaps => ONE,
    unmap::a_v1_unmap_starting_inside_a_mapping_succeeds_with_size_0 => ONE,
    unmap::a_v1_unmap_covering_the_first_page_removes_the_whole_mapping => ONE,
    dirty::dirty_pages_needs_argsz_8_and_exactly_one_flag => ONE,
    dirty::start_and_stop_are_idempotent => ONE,
    dirty::get_bitmap_needs_tracking_started => ONE,
    dirty::get_bitmap_checks_its_arguments => ONE,
    dirty::get_bitmap_must_not_bisect_a_mapping => ONE,
    dirty::every_mapped_page_reads_dirty_and_stale_bits_come_back_shifted => ONE,
    dirty::a_mapping_across_a_word_carries_stale_bits_into_the_next_word => ONE,
    dirty::get_bitmap_of_an_unmapped_range_is_empty => ONE,
    dirty::get_bitmap_overwrites_the_words_a_mapping_covers => ONE,
    dirty::dirty_pages_on_a_v1_container_is_eacces => ONE,
    vaddr::a_mapping_keeps_its_iova_across_a_new_address => ONE,
    vaddr::a_new_address_needs_an_invalidated_mapping_of_the_same_range => ONE,
    vaddr::invalidating_an_invalidated_mapping_is_einval_and_undoes_the_call => ONE,
    vaddr::invalidating_all_covers_every_mapping => ONE,
    vaddr::an_invalidated_mapping_can_still_be_unmapped => ONE,
    vaddr::no_group_joins_while_an_address_is_invalid => TWO,
];
