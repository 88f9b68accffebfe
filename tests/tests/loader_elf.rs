//! ELF kernels: without a PVH note they boot with the 64-bit protocol at `e_entry` and a
//! synthetic zero page; with `XEN_ELFNOTE_PHYS32_ENTRY` they boot PVH with `hvm_start_info`.

mod boot_images;

use boot_images::*;
use vm_memory::{Bytes, GuestAddress};
use vmm::boot_entry::BootProtocol;
use vmm::layout::{
    BIOS_END, CMDLINE_START, EBDA_START, HIGH_RAM_START, PAGE_SIZE, PCI_ECAM_SIZE, PCI_ECAM_START,
    PVH_INFO_START, PVH_MEMMAP_START, PVH_MODLIST_START, RSDP_START, ZERO_PAGE_START,
};
use vmm::loader::load_kernel;

const RAM: u64 = 64 << 20;
/// `hvm_start_info` magic ("xEn3" with the 0x80 bit set, from Xen's start_info.h).
const XEN_HVM_START_MAGIC: u32 = 0x336e_c578;

#[test]
fn elf_without_pvh_note_boots_linux64_at_its_entry_with_segments_and_zeroed_bss() {
    let spec = ElfSpec::simple(None);
    let (_, mut kernel) = scratch_file("vmlinux", &spec.build());
    let mem = guest_memory(RAM);
    // Stale bytes where the .bss goes: the loader must clear them.
    let segment = &spec.segments[0];
    let bss_start = segment.paddr + segment.data.len() as u64;
    let bss_len = segment.memsz as usize - segment.data.len();
    mem.write_slice(&vec![0xaa; bss_len], GuestAddress(bss_start))
        .unwrap();

    let entry = load_kernel(&mem, &mut kernel, "console=ttyS0", None).expect("load ELF");

    assert_eq!(entry.protocol, BootProtocol::Linux64);
    assert_eq!(entry.addr.0, spec.entry);
    assert_eq!(
        read_bytes(&mem, segment.paddr, segment.data.len()),
        segment.data
    );
    assert_eq!(read_bytes(&mem, bss_start, bss_len), vec![0; bss_len]);
    // A zero page with a minimal setup header for a kernel that has none.
    assert_eq!(read_u16(&mem, ZERO_PAGE_START + 0x1fe), 0xaa55);
    assert_eq!(&read_bytes(&mem, ZERO_PAGE_START + 0x202, 4), b"HdrS");
    assert_eq!(read_u8(&mem, ZERO_PAGE_START + 0x210), 0xff);
    assert_eq!(
        read_u32(&mem, ZERO_PAGE_START + 0x228) as u64,
        CMDLINE_START
    );
    assert_eq!(read_u64(&mem, ZERO_PAGE_START + 0x070), RSDP_START);
    assert_eq!(
        read_u8(&mem, ZERO_PAGE_START + 0x1e8),
        4,
        "four e820 entries"
    );
    assert_eq!(&read_bytes(&mem, CMDLINE_START, 14), b"console=ttyS0\0");
}

#[test]
fn elf_with_pvh_note_boots_pvh_with_start_info_memory_map_and_command_line() {
    let spec = ElfSpec::simple(Some(0x20_0040));
    let (_, mut kernel) = scratch_file("vmlinux-pvh", &spec.build());
    let mem = guest_memory(RAM);

    let entry = load_kernel(&mem, &mut kernel, "earlyprintk=ttyS0", None).expect("load PVH");

    assert_eq!(entry.protocol, BootProtocol::Pvh);
    assert_eq!(entry.addr.0, 0x20_0040, "the note's entry, not e_entry");
    let info = PVH_INFO_START;
    assert_eq!(read_u32(&mem, info), XEN_HVM_START_MAGIC);
    assert_eq!(read_u32(&mem, info + 4), 1, "version");
    assert_eq!(read_u32(&mem, info + 12), 0, "nr_modules");
    assert_eq!(read_u64(&mem, info + 16), 0, "modlist_paddr");
    assert_eq!(read_u64(&mem, info + 24), CMDLINE_START, "cmdline_paddr");
    assert_eq!(read_u64(&mem, info + 32), RSDP_START, "rsdp_paddr");
    assert_eq!(read_u64(&mem, info + 40), PVH_MEMMAP_START, "memmap_paddr");
    let entries = read_u32(&mem, info + 48) as u64;
    let memmap: Vec<(u64, u64, u32)> = (0..entries)
        .map(|i| {
            let e = PVH_MEMMAP_START + 24 * i;
            (
                read_u64(&mem, e),
                read_u64(&mem, e + 8),
                read_u32(&mem, e + 16),
            )
        })
        .collect();
    assert_eq!(
        memmap,
        vec![
            (0, EBDA_START, 1),
            (EBDA_START, BIOS_END - EBDA_START, 2),
            (HIGH_RAM_START, RAM - HIGH_RAM_START, 1),
            (PCI_ECAM_START, PCI_ECAM_SIZE, 2),
        ]
    );
    assert_eq!(&read_bytes(&mem, CMDLINE_START, 18), b"earlyprintk=ttyS0\0");
    // No zero page for a PVH boot.
    assert_eq!(
        first_nonzero(&mem, ZERO_PAGE_START, ZERO_PAGE_START + 4096),
        None
    );
}

#[test]
fn pvh_initramfs_is_module_zero_of_the_start_info() {
    let spec = ElfSpec::simple(Some(0x20_0000));
    let (_, mut kernel) = scratch_file("vmlinux-pvh", &spec.build());
    let initrd = pattern(5000, 1);
    let (_, mut initramfs) = scratch_file("initrd", &initrd);
    let mem = guest_memory(RAM);

    load_kernel(&mem, &mut kernel, "", Some(&mut initramfs)).expect("load PVH + initramfs");

    assert_eq!(read_u32(&mem, PVH_INFO_START + 12), 1, "nr_modules");
    assert_eq!(read_u64(&mem, PVH_INFO_START + 16), PVH_MODLIST_START);
    let addr = read_u64(&mem, PVH_MODLIST_START);
    assert_eq!(read_u64(&mem, PVH_MODLIST_START + 8), initrd.len() as u64);
    assert_eq!(addr % PAGE_SIZE, 0);
    let kernel_end = spec.segments[0].paddr + spec.segments[0].memsz;
    assert!(
        addr >= kernel_end && addr + initrd.len() as u64 <= RAM,
        "{addr:#x}"
    );
    assert_eq!(read_bytes(&mem, addr, initrd.len()), initrd);
}
