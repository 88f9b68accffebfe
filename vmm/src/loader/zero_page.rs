//! The Linux zero page (`struct boot_params`) for the 64-bit boot protocol: the setup header
//! with the fields a boot loader must set, the e820 map and the ACPI RSDP address.

use linux_loader::bootparam::{E820_MAX_ENTRIES_ZEROPAGE, boot_e820_entry, boot_params};
use linux_loader::configurator::linux::LinuxBootConfigurator;
use linux_loader::configurator::{BootConfigurator, BootParams};
use vm_memory::{GuestAddress, GuestMemoryMmap};

use super::bzimage::{BzImageHeader, HDRS_MAGIC};
use super::initramfs::Placement;
use super::{LoaderError, MemoryMapEntry};
use crate::layout::{CMDLINE_MAX_SIZE, CMDLINE_START, RSDP_START, ZERO_PAGE_START};

/// `type_of_loader` for a boot loader without an assigned id.
pub(super) const LOADER_TYPE_UNDEFINED: u8 = 0xff;
/// `loadflags.CAN_USE_HEAP`: `heap_end_ptr` is valid.
pub(super) const CAN_USE_HEAP: u8 = 1 << 7;
/// `heap_end_ptr`: the end of the setup heap, relative to the real-mode code, minus 0x200. The
/// 64-bit entry skips the setup code, but the field is set as boot.rst asks of every loader.
pub(super) const HEAP_END_PTR: u16 = 0xe000 - 0x200;
/// `vid_mode` "normal" (no mode change).
pub(super) const VID_MODE_NORMAL: u16 = 0xffff;
/// `kernel_alignment` for an ELF kernel without a header (the x86-64 default).
const ELF_KERNEL_ALIGNMENT: u32 = 0x100_0000;
/// `boot_flag`.
const BOOT_FLAG_MAGIC: u16 = 0xaa55;

/// Builds the zero page for `bzimage`'s header, or a synthetic header for an ELF kernel, and
/// writes it at [`ZERO_PAGE_START`].
pub(super) fn write(
    guest_mem: &GuestMemoryMmap,
    map: &[MemoryMapEntry],
    bzimage: Option<&BzImageHeader>,
    initramfs: Option<Placement>,
) -> Result<(), LoaderError> {
    let params = build(map, bzimage, initramfs);
    LinuxBootConfigurator::write_bootparams(
        &BootParams::new(&params, GuestAddress(ZERO_PAGE_START)),
        guest_mem,
    )
    .map_err(|source| LoaderError::BootParams {
        what: "zero page",
        source,
    })
}

/// The zero page's contents.
pub(super) fn build(
    map: &[MemoryMapEntry],
    bzimage: Option<&BzImageHeader>,
    initramfs: Option<Placement>,
) -> boot_params {
    let mut params = boot_params::default();
    match bzimage {
        Some(image) => {
            params.hdr = image.header;
            params.hdr.code32_start = image.load_addr as u32;
            params.hdr.loadflags |= CAN_USE_HEAP;
            params.hdr.heap_end_ptr = HEAP_END_PTR;
            params.hdr.vid_mode = VID_MODE_NORMAL;
        }
        None => {
            params.hdr.boot_flag = BOOT_FLAG_MAGIC;
            params.hdr.header = HDRS_MAGIC;
            params.hdr.kernel_alignment = ELF_KERNEL_ALIGNMENT;
            params.hdr.cmdline_size = (CMDLINE_MAX_SIZE - 1) as u32;
        }
    }
    params.hdr.type_of_loader = LOADER_TYPE_UNDEFINED;
    params.hdr.cmd_line_ptr = CMDLINE_START as u32;
    if let Some(placement) = initramfs {
        // Both halves: the placement is below 4 GiB today, but the kernel reads the high
        // halves too (ext_ramdisk_*), so they must be right rather than stale.
        params.hdr.ramdisk_image = placement.addr as u32;
        params.hdr.ramdisk_size = placement.size as u32;
        params.ext_ramdisk_image = (placement.addr >> 32) as u32;
        params.ext_ramdisk_size = (placement.size >> 32) as u32;
    }
    params.acpi_rsdp_addr = RSDP_START;

    // `memory_map` caps the map below the zero page's 128 entries.
    debug_assert!(map.len() <= E820_MAX_ENTRIES_ZEROPAGE);
    let mut table = params.e820_table;
    for (slot, entry) in table.iter_mut().zip(map) {
        *slot = boot_e820_entry {
            addr: entry.addr,
            size: entry.size,
            r#type: entry.kind as u32,
        };
    }
    params.e820_table = table;
    params.e820_entries = map.len() as u8;
    params
}
