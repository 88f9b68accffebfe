//! bzImage loading through the 64-bit boot protocol, checked against the facts of
//! Documentation/arch/x86/boot.rst: zero-page offsets and the values a boot loader must set.

mod boot_images;

use boot_images::*;
use vmm::boot_entry::BootProtocol;
use vmm::layout::{
    BIOS_END, CMDLINE_START, EBDA_START, HIGH_RAM_START, PAGE_SIZE, PCI_ECAM_SIZE, PCI_ECAM_START,
    RAM_64BIT_START, RSDP_START, ZERO_PAGE_START,
};
use vmm::loader::load_kernel;

const RAM: u64 = 64 << 20;

// Zero page (struct boot_params) offsets.
const ACPI_RSDP_ADDR: u64 = 0x070;
const EXT_RAMDISK_IMAGE: u64 = 0x0c0;
const EXT_RAMDISK_SIZE: u64 = 0x0c4;
const E820_ENTRIES: u64 = 0x1e8;
const E820_TABLE: u64 = 0x2d0;
// Setup header offsets (in the image and in the zero page).
const VID_MODE: u64 = 0x1fa;
const BOOT_FLAG: u64 = 0x1fe;
const HEADER: u64 = 0x202;
const VERSION: u64 = 0x206;
const TYPE_OF_LOADER: u64 = 0x210;
const LOADFLAGS: u64 = 0x211;
const CODE32_START: u64 = 0x214;
const RAMDISK_IMAGE: u64 = 0x218;
const RAMDISK_SIZE: u64 = 0x21c;
const HEAP_END_PTR: u64 = 0x224;
const CMD_LINE_PTR: u64 = 0x228;
const INITRD_ADDR_MAX: u64 = 0x22c;
const XLOADFLAGS: u64 = 0x236;
const CMDLINE_SIZE: u64 = 0x238;
const INIT_SIZE: u64 = 0x260;

fn zp(offset: u64) -> u64 {
    ZERO_PAGE_START + offset
}

/// The e820 entries in the zero page as (addr, size, type).
fn e820(mem: &vm_memory::GuestMemoryMmap) -> Vec<(u64, u64, u32)> {
    let count = read_u8(mem, zp(E820_ENTRIES)) as u64;
    (0..count)
        .map(|i| {
            let entry = zp(E820_TABLE) + 20 * i;
            (
                read_u64(mem, entry),
                read_u64(mem, entry + 8),
                read_u32(mem, entry + 16),
            )
        })
        .collect()
}

#[test]
fn bzimage_boots_at_the_64bit_entry_with_the_loader_fields_of_the_setup_header_set() {
    let spec = BzImageSpec::default();
    let image = spec.build();
    let (_, mut kernel) = scratch_file("bzImage", &image);
    let mem = guest_memory(RAM);
    let cmdline = "console=ttyS0 reboot=k panic=1";

    let entry = load_kernel(&mem, &mut kernel, cmdline, None).expect("load bzImage");

    assert_eq!(entry.protocol, BootProtocol::Linux64);
    assert_eq!(
        entry.addr.0,
        u64::from(spec.code32_start) + 0x200,
        "64-bit entry = load + 0x200"
    );
    // The protected-mode kernel is everything after the setup sectors, at code32_start.
    let payload = &image[spec.setup_size()..];
    assert_eq!(read_bytes(&mem, HIGH_RAM_START, payload.len()), payload);

    // Fields copied from the image.
    assert_eq!(read_u16(&mem, zp(BOOT_FLAG)), 0xaa55);
    assert_eq!(&read_bytes(&mem, zp(HEADER), 4), b"HdrS");
    assert_eq!(read_u16(&mem, zp(VERSION)), spec.version);
    assert_eq!(read_u16(&mem, zp(XLOADFLAGS)), spec.xloadflags);
    assert_eq!(read_u32(&mem, zp(INIT_SIZE)), spec.init_size);
    assert_eq!(read_u32(&mem, zp(INITRD_ADDR_MAX)), spec.initrd_addr_max);
    // Bytes after the header's declared end (0x202 + jump offset) are not copied.
    assert_eq!(
        read_bytes(&mem, zp(BZIMAGE_HEADER_END as u64), 8),
        vec![0; 8]
    );
    // Fields the loader must set.
    assert_eq!(
        read_u8(&mem, zp(TYPE_OF_LOADER)),
        0xff,
        "type_of_loader: undefined loader"
    );
    assert_eq!(
        read_u8(&mem, zp(LOADFLAGS)),
        0x81,
        "LOADED_HIGH kept, CAN_USE_HEAP set"
    );
    assert_eq!(read_u16(&mem, zp(HEAP_END_PTR)), 0xde00);
    assert_eq!(read_u16(&mem, zp(VID_MODE)), 0xffff, "vid_mode normal");
    assert_eq!(read_u32(&mem, zp(CODE32_START)), spec.code32_start);
    assert_eq!(read_u32(&mem, zp(CMD_LINE_PTR)) as u64, CMDLINE_START);
    assert_eq!(read_u32(&mem, zp(RAMDISK_IMAGE)), 0, "no initramfs");
    assert_eq!(read_u32(&mem, zp(RAMDISK_SIZE)), 0);
    assert_eq!(read_u64(&mem, zp(ACPI_RSDP_ADDR)), RSDP_START);
    // The command line, NUL terminated, where cmd_line_ptr points.
    let mut expected = cmdline.as_bytes().to_vec();
    expected.push(0);
    assert_eq!(read_bytes(&mem, CMDLINE_START, expected.len()), expected);
}

#[test]
fn e820_map_has_low_ram_the_reserved_bios_area_high_ram_and_the_ecam_window() {
    let (_, mut kernel) = scratch_file("bzImage", &BzImageSpec::default().build());
    let mem = guest_memory(RAM);
    load_kernel(&mem, &mut kernel, "", None).expect("load bzImage");
    assert_eq!(
        e820(&mem),
        vec![
            (0, EBDA_START, 1),
            (EBDA_START, BIOS_END - EBDA_START, 2),
            (HIGH_RAM_START, RAM - HIGH_RAM_START, 1),
            (PCI_ECAM_START, PCI_ECAM_SIZE, 2),
        ]
    );
}

#[test]
fn e820_map_lists_ram_above_4gib_when_memory_crosses_the_32bit_hole() {
    let low = vmm::layout::MEM_32BIT_GAP_START;
    let ram = low + (64 << 20);
    let (_, mut kernel) = scratch_file("bzImage", &BzImageSpec::default().build());
    let mem = guest_memory(ram);
    load_kernel(&mem, &mut kernel, "", None).expect("load bzImage");
    let map = e820(&mem);
    assert_eq!(map[2], (HIGH_RAM_START, low - HIGH_RAM_START, 1));
    assert_eq!(map[3], (PCI_ECAM_START, PCI_ECAM_SIZE, 2));
    assert_eq!(map[4], (RAM_64BIT_START, 64 << 20, 1));
    assert_eq!(map.len(), 5);
}

#[test]
fn initramfs_goes_page_aligned_below_initrd_addr_max_and_above_the_kernel() {
    // initrd_addr_max (the last byte the initramfs may use) at 32 MiB - 1, in 64 MiB of RAM.
    let spec = BzImageSpec {
        initrd_addr_max: (32 << 20) - 1,
        ..BzImageSpec::default()
    };
    let (_, mut kernel) = scratch_file("bzImage", &spec.build());
    let initrd = pattern(300_000, 9);
    let (_, mut initramfs) = scratch_file("initrd", &initrd);
    let mem = guest_memory(RAM);

    load_kernel(&mem, &mut kernel, "root=/dev/ram0", Some(&mut initramfs)).expect("load");

    let addr = u64::from(read_u32(&mem, zp(RAMDISK_IMAGE)))
        | u64::from(read_u32(&mem, zp(EXT_RAMDISK_IMAGE))) << 32;
    let size = u64::from(read_u32(&mem, zp(RAMDISK_SIZE)))
        | u64::from(read_u32(&mem, zp(EXT_RAMDISK_SIZE))) << 32;
    assert_eq!(size, initrd.len() as u64);
    assert_eq!(addr % PAGE_SIZE, 0, "page aligned: {addr:#x}");
    assert!(
        addr + size - 1 <= u64::from(spec.initrd_addr_max),
        "{addr:#x} + {size:#x}"
    );
    assert!(
        addr >= HIGH_RAM_START + u64::from(spec.init_size),
        "above the kernel's init_size"
    );
    // As high as it can go: within a page of the limit.
    assert!(addr + size + PAGE_SIZE > u64::from(spec.initrd_addr_max) + 1);
    assert_eq!(read_bytes(&mem, addr, initrd.len()), initrd);
}

#[test]
fn initramfs_stays_inside_ram_when_initrd_addr_max_is_above_it() {
    let spec = BzImageSpec {
        initrd_addr_max: 0x7fff_ffff,
        ..BzImageSpec::default()
    };
    let (_, mut kernel) = scratch_file("bzImage", &spec.build());
    let initrd = pattern(8192, 3);
    let (_, mut initramfs) = scratch_file("initrd", &initrd);
    let mem = guest_memory(RAM);
    load_kernel(&mem, &mut kernel, "", Some(&mut initramfs)).expect("load");
    let addr = u64::from(read_u32(&mem, zp(RAMDISK_IMAGE)));
    assert!(
        addr + initrd.len() as u64 <= RAM,
        "{addr:#x} inside {RAM:#x} of RAM"
    );
    assert_eq!(read_bytes(&mem, addr, initrd.len()), initrd);
}

#[test]
fn command_line_up_to_the_kernels_cmdline_size_is_accepted() {
    let spec = BzImageSpec {
        cmdline_size: 32,
        ..BzImageSpec::default()
    };
    let (_, mut kernel) = scratch_file("bzImage", &spec.build());
    let mem = guest_memory(RAM);
    let cmdline = "x".repeat(32);
    load_kernel(&mem, &mut kernel, &cmdline, None).expect("32 bytes fit cmdline_size 32");
    assert_eq!(read_u32(&mem, zp(CMDLINE_SIZE)), 32);
    assert_eq!(
        read_u8(&mem, CMDLINE_START + 32),
        0,
        "NUL after the command line"
    );
}
