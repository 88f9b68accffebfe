//! The PVH start of day structures: `hvm_start_info`, the memory map table and the module list
//! (the initramfs), at the layout's fixed addresses.

use linux_loader::configurator::pvh::PvhBootConfigurator;
use linux_loader::configurator::{BootConfigurator, BootParams};
use linux_loader::start_info::{
    XEN_HVM_START_MAGIC_VALUE, hvm_memmap_table_entry, hvm_modlist_entry, hvm_start_info,
};
use vm_memory::{GuestAddress, GuestMemoryMmap};

use super::initramfs::Placement;
use super::{LoaderError, MemoryMapEntry};
use crate::layout::{
    CMDLINE_START, PVH_INFO_START, PVH_MEMMAP_START, PVH_MODLIST_START, RSDP_START,
};

/// `hvm_start_info` version 1 has the memory map fields.
const START_INFO_VERSION: u32 = 1;

/// The start info, memory map and module list for `map` and the optional initramfs.
pub(super) fn build(
    map: &[MemoryMapEntry],
    initramfs: Option<Placement>,
) -> (
    hvm_start_info,
    Vec<hvm_memmap_table_entry>,
    Vec<hvm_modlist_entry>,
) {
    let memmap: Vec<_> = map
        .iter()
        .map(|entry| hvm_memmap_table_entry {
            addr: entry.addr,
            size: entry.size,
            type_: entry.kind as u32,
            reserved: 0,
        })
        .collect();
    let modules: Vec<_> = initramfs
        .map(|placement| hvm_modlist_entry {
            paddr: placement.addr,
            size: placement.size,
            cmdline_paddr: 0,
            reserved: 0,
        })
        .into_iter()
        .collect();
    let start_info = hvm_start_info {
        magic: XEN_HVM_START_MAGIC_VALUE,
        version: START_INFO_VERSION,
        flags: 0,
        nr_modules: modules.len() as u32,
        modlist_paddr: if modules.is_empty() {
            0
        } else {
            PVH_MODLIST_START
        },
        cmdline_paddr: CMDLINE_START,
        rsdp_paddr: RSDP_START,
        memmap_paddr: PVH_MEMMAP_START,
        memmap_entries: memmap.len() as u32,
        reserved: 0,
    };
    (start_info, memmap, modules)
}

/// Writes the start info at [`PVH_INFO_START`] with its tables.
pub(super) fn write_start_info(
    guest_mem: &GuestMemoryMmap,
    map: &[MemoryMapEntry],
    initramfs: Option<Placement>,
) -> Result<(), LoaderError> {
    let (start_info, memmap, modules) = build(map, initramfs);
    let mut params = BootParams::new(&start_info, GuestAddress(PVH_INFO_START));
    params.set_sections(&memmap, GuestAddress(PVH_MEMMAP_START));
    if !modules.is_empty() {
        params.set_modules(&modules, GuestAddress(PVH_MODLIST_START));
    }
    PvhBootConfigurator::write_bootparams(&params, guest_mem).map_err(|source| {
        LoaderError::BootParams {
            what: "PVH start info",
            source,
        }
    })
}
