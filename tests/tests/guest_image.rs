//! The test guest built by tests/build.rs: an x86-64 executable at 1 MiB without a PVH note,
//! which the loader boots with the 64-bit protocol.

mod boot_images;

use std::path::Path;

use boot_images::*;
use vmm::boot_entry::BootProtocol;
use vmm::layout::{HIGH_RAM_START, ZERO_PAGE_START};
use vmm::loader::load_kernel_from_paths;

const GUEST_ELF: &str = env!("TEST_GUEST_ELF");

fn u16_at(bytes: &[u8], offset: usize) -> u16 {
    u16::from_le_bytes(bytes[offset..offset + 2].try_into().unwrap())
}
fn u32_at(bytes: &[u8], offset: usize) -> u32 {
    u32::from_le_bytes(bytes[offset..offset + 4].try_into().unwrap())
}
fn u64_at(bytes: &[u8], offset: usize) -> u64 {
    u64::from_le_bytes(bytes[offset..offset + 8].try_into().unwrap())
}

/// (p_type, p_offset, p_paddr, p_filesz, p_memsz) of each program header.
fn program_headers(elf: &[u8]) -> Vec<(u32, u64, u64, u64, u64)> {
    let phoff = u64_at(elf, 32) as usize;
    let phnum = u16_at(elf, 56) as usize;
    (0..phnum)
        .map(|i| {
            let ph = phoff + 56 * i;
            (
                u32_at(elf, ph),
                u64_at(elf, ph + 8),
                u64_at(elf, ph + 24),
                u64_at(elf, ph + 32),
                u64_at(elf, ph + 40),
            )
        })
        .collect()
}

#[test]
fn guest_is_a_static_x86_64_executable_at_one_mib_without_a_pvh_note() {
    let elf = std::fs::read(GUEST_ELF).expect("the test guest ELF exists");
    assert_eq!(&elf[..4], b"\x7fELF");
    assert_eq!(elf[4], 2, "64-bit");
    assert_eq!(u16_at(&elf, 16), 2, "ET_EXEC: no relocations to apply");
    assert_eq!(u16_at(&elf, 18), 62, "x86-64");
    let entry = u64_at(&elf, 24);
    assert!(entry >= HIGH_RAM_START, "entry {entry:#x}");
    let headers = program_headers(&elf);
    let loads: Vec<_> = headers.iter().filter(|ph| ph.0 == 1).collect();
    assert!(!loads.is_empty());
    assert!(loads.iter().all(|ph| ph.2 >= HIGH_RAM_START), "{loads:x?}");
    assert!(
        loads.iter().any(|ph| (ph.2..ph.2 + ph.4).contains(&entry)),
        "entry inside a loaded segment"
    );
    // No PT_NOTE at all, so certainly no XEN_ELFNOTE_PHYS32_ENTRY.
    assert!(headers.iter().all(|ph| ph.0 != 4), "{headers:x?}");
    // Tiny, as every instruction costs a microsecond where it runs.
    let image: u64 = loads.iter().map(|ph| ph.4).sum();
    assert!(image < 1 << 20, "{image} bytes in memory");
}

#[test]
fn guest_loads_as_linux64_at_its_entry_with_its_segments_in_memory() {
    let elf = std::fs::read(GUEST_ELF).unwrap();
    let mem = guest_memory(128 << 20);
    let entry = load_kernel_from_paths(&mem, Path::new(GUEST_ELF), "", None).expect("load guest");
    assert_eq!(entry.protocol, BootProtocol::Linux64);
    assert_eq!(entry.addr.0, u64_at(&elf, 24));
    for (kind, offset, paddr, filesz, memsz) in program_headers(&elf) {
        if kind != 1 {
            continue;
        }
        let file = &elf[offset as usize..(offset + filesz) as usize];
        assert_eq!(
            read_bytes(&mem, paddr, filesz as usize),
            file,
            "segment at {paddr:#x}"
        );
        assert_eq!(
            first_nonzero(&mem, paddr + filesz, paddr + memsz),
            None,
            ".bss is zero"
        );
    }
    assert_eq!(
        &read_bytes(&mem, ZERO_PAGE_START + 0x202, 4),
        b"HdrS",
        "zero page for RSI"
    );
}
