//! Fixtures for the loader and ACPI tests: guest memory laid out as the VMM does, scratch
//! files, synthetic kernel images (a bzImage setup header, ELF executables with and without a
//! PVH note) and little-endian readers of guest memory.
//!
//! Included with `mod boot_images;` by the loader, ACPI and guest tests; each uses a part.
#![allow(dead_code)]

use std::fs::File;
use std::io::Write;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU32, Ordering};

use vm_memory::{Bytes, GuestAddress, GuestMemoryMmap};

/// Guest memory of `ram_size` bytes, split around the 32-bit hole like the VMM's.
pub fn guest_memory(ram_size: u64) -> GuestMemoryMmap {
    let ranges: Vec<(GuestAddress, usize)> = vmm::layout::ram_regions(ram_size)
        .into_iter()
        .map(|(start, size)| (GuestAddress(start), size as usize))
        .collect();
    GuestMemoryMmap::from_ranges(&ranges).expect("mmap guest memory")
}

/// A fresh scratch directory for one test.
pub fn scratch_dir(name: &str) -> PathBuf {
    static NEXT: AtomicU32 = AtomicU32::new(0);
    let dir = std::env::temp_dir().join(format!(
        "vmm-tests-{}-{}-{name}",
        std::process::id(),
        NEXT.fetch_add(1, Ordering::Relaxed)
    ));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).expect("create scratch dir");
    dir
}

/// Writes `bytes` to a scratch file and opens it for reading.
pub fn scratch_file(name: &str, bytes: &[u8]) -> (PathBuf, File) {
    let path = scratch_dir(name).join(name);
    File::create(&path)
        .and_then(|mut file| file.write_all(bytes))
        .expect("write scratch file");
    let file = File::open(&path).expect("open scratch file");
    (path, file)
}

/// Reads `len` bytes of guest memory.
pub fn read_bytes(mem: &GuestMemoryMmap, addr: u64, len: usize) -> Vec<u8> {
    let mut bytes = vec![0; len];
    mem.read_slice(&mut bytes, GuestAddress(addr))
        .expect("read guest memory");
    bytes
}

/// Reads a little-endian u8/u16/u32/u64 of guest memory.
pub fn read_u8(mem: &GuestMemoryMmap, addr: u64) -> u8 {
    read_bytes(mem, addr, 1)[0]
}

/// Reads a little-endian u16.
pub fn read_u16(mem: &GuestMemoryMmap, addr: u64) -> u16 {
    u16::from_le_bytes(read_bytes(mem, addr, 2).try_into().unwrap())
}

/// Reads a little-endian u32.
pub fn read_u32(mem: &GuestMemoryMmap, addr: u64) -> u32 {
    u32::from_le_bytes(read_bytes(mem, addr, 4).try_into().unwrap())
}

/// Reads a little-endian u64.
pub fn read_u64(mem: &GuestMemoryMmap, addr: u64) -> u64 {
    u64::from_le_bytes(read_bytes(mem, addr, 8).try_into().unwrap())
}

/// The first non-zero byte in `[start, end)` of guest memory, if any.
pub fn first_nonzero(mem: &GuestMemoryMmap, start: u64, end: u64) -> Option<u64> {
    const CHUNK: u64 = 1 << 20;
    let mut addr = start;
    while addr < end {
        let len = CHUNK.min(end - addr);
        let bytes = read_bytes(mem, addr, len as usize);
        if let Some(offset) = bytes.iter().position(|&b| b != 0) {
            return Some(addr + offset as u64);
        }
        addr += len;
    }
    None
}

/// A recognisable byte pattern.
pub fn pattern(len: usize, seed: u8) -> Vec<u8> {
    (0..len)
        .map(|i| (i as u8).wrapping_mul(31).wrapping_add(seed))
        .collect()
}

/// Fields of a synthetic bzImage's setup header (Documentation/arch/x86/boot.rst offsets).
#[derive(Debug, Clone)]
pub struct BzImageSpec {
    /// `setup_sects` (0x1f1).
    pub setup_sects: u8,
    /// `version` (0x206).
    pub version: u16,
    /// `loadflags` (0x211).
    pub loadflags: u8,
    /// `code32_start` (0x214).
    pub code32_start: u32,
    /// `initrd_addr_max` (0x22c).
    pub initrd_addr_max: u32,
    /// `xloadflags` (0x236).
    pub xloadflags: u16,
    /// `cmdline_size` (0x238).
    pub cmdline_size: u32,
    /// `init_size` (0x260).
    pub init_size: u32,
    /// Bytes of protected-mode kernel after the setup sectors.
    pub payload_len: usize,
}

impl Default for BzImageSpec {
    fn default() -> Self {
        BzImageSpec {
            setup_sects: 4,
            version: 0x020f,
            loadflags: 0x01,
            code32_start: 0x10_0000,
            initrd_addr_max: 0x7fff_ffff,
            xloadflags: 0x3,
            cmdline_size: 2047,
            init_size: 0x40_0000,
            payload_len: 0x3000,
        }
    }
}

/// Offset of the setup header's end in our synthetic image (through `kernel_info_offset`).
pub const BZIMAGE_HEADER_END: usize = 0x26c;

impl BzImageSpec {
    /// Size of the real-mode part (boot sector plus setup sectors).
    pub fn setup_size(&self) -> usize {
        (usize::from(self.setup_sects) + 1) * 512
    }

    /// The image: setup sectors with the header, then a patterned payload.
    pub fn build(&self) -> Vec<u8> {
        let mut image = vec![0u8; self.setup_size()];
        let put = |image: &mut Vec<u8>, offset: usize, bytes: &[u8]| {
            image[offset..offset + bytes.len()].copy_from_slice(bytes);
        };
        put(&mut image, 0x1f1, &[self.setup_sects]);
        put(&mut image, 0x1fa, &0x0000u16.to_le_bytes()); // vid_mode as an image may have it
        put(&mut image, 0x1fe, &0xaa55u16.to_le_bytes());
        // A short jump over the header: its offset byte gives the header's end.
        put(
            &mut image,
            0x200,
            &[0xeb, (BZIMAGE_HEADER_END - 0x202) as u8],
        );
        put(&mut image, 0x202, b"HdrS");
        put(&mut image, 0x206, &self.version.to_le_bytes());
        put(&mut image, 0x211, &[self.loadflags]);
        put(&mut image, 0x214, &self.code32_start.to_le_bytes());
        put(&mut image, 0x22c, &self.initrd_addr_max.to_le_bytes());
        put(&mut image, 0x230, &0x20_0000u32.to_le_bytes()); // kernel_alignment
        put(&mut image, 0x234, &[1]); // relocatable_kernel
        put(&mut image, 0x236, &self.xloadflags.to_le_bytes());
        put(&mut image, 0x238, &self.cmdline_size.to_le_bytes());
        put(&mut image, 0x258, &0x100_0000u64.to_le_bytes()); // pref_address
        put(&mut image, 0x260, &self.init_size.to_le_bytes());
        // Code after the header must not be taken for header fields.
        image[BZIMAGE_HEADER_END..BZIMAGE_HEADER_END + 8].fill(0xcc);
        image.extend(pattern(self.payload_len, 0x42));
        image
    }
}

/// One loadable segment of a synthetic ELF.
#[derive(Debug, Clone)]
pub struct ElfSegment {
    /// Physical (and virtual) address.
    pub paddr: u64,
    /// Bytes in the file.
    pub data: Vec<u8>,
    /// Bytes in memory (at least `data.len()`; the rest is zero-filled).
    pub memsz: u64,
}

/// A synthetic x86-64 ELF executable.
#[derive(Debug, Clone)]
pub struct ElfSpec {
    /// `e_entry`.
    pub entry: u64,
    /// `EI_CLASS` (2 = 64-bit).
    pub class: u8,
    /// `e_machine` (62 = x86-64).
    pub machine: u16,
    /// PT_LOAD segments.
    pub segments: Vec<ElfSegment>,
    /// The 32-bit entry of a `XEN_ELFNOTE_PHYS32_ENTRY` note in a PT_NOTE, if any.
    pub pvh_entry: Option<u32>,
}

impl ElfSpec {
    /// A one-segment kernel at 2 MiB with 8 KiB of .bss.
    pub fn simple(pvh_entry: Option<u32>) -> ElfSpec {
        ElfSpec {
            entry: 0x20_0000,
            class: 2,
            machine: 62,
            segments: vec![ElfSegment {
                paddr: 0x20_0000,
                data: pattern(0x1800, 7),
                memsz: 0x1800 + 0x2000,
            }],
            pvh_entry,
        }
    }

    /// The file bytes: header, program headers, the note, then the segments' data.
    pub fn build(&self) -> Vec<u8> {
        const EHDR: usize = 64;
        const PHDR: usize = 56;
        let phnum = self.segments.len() + usize::from(self.pvh_entry.is_some());
        let mut note = Vec::new();
        if let Some(entry) = self.pvh_entry {
            // An unrelated note first, as vmlinux has several.
            note.extend(4u32.to_le_bytes());
            note.extend(4u32.to_le_bytes());
            note.extend(1u32.to_le_bytes());
            note.extend(b"Xen\0");
            note.extend(0u32.to_le_bytes());
            note.extend(4u32.to_le_bytes()); // namesz
            note.extend(4u32.to_le_bytes()); // descsz
            note.extend(18u32.to_le_bytes()); // XEN_ELFNOTE_PHYS32_ENTRY
            note.extend(b"Xen\0");
            note.extend(entry.to_le_bytes());
        }
        let note_offset = EHDR + PHDR * phnum;
        let mut data_offset = (note_offset + note.len()).next_multiple_of(16);

        let mut file = vec![0u8; EHDR];
        file[0..4].copy_from_slice(b"\x7fELF");
        file[4] = self.class;
        file[5] = 1; // little endian
        file[6] = 1; // version
        file[16..18].copy_from_slice(&2u16.to_le_bytes()); // ET_EXEC
        file[18..20].copy_from_slice(&self.machine.to_le_bytes());
        file[20..24].copy_from_slice(&1u32.to_le_bytes());
        file[24..32].copy_from_slice(&self.entry.to_le_bytes());
        file[32..40].copy_from_slice(&(EHDR as u64).to_le_bytes()); // e_phoff
        file[52..54].copy_from_slice(&(EHDR as u16).to_le_bytes());
        file[54..56].copy_from_slice(&(PHDR as u16).to_le_bytes());
        file[56..58].copy_from_slice(&(phnum as u16).to_le_bytes());

        let mut payload = Vec::new();
        for segment in &self.segments {
            file.extend(program_header(
                1,
                data_offset as u64,
                segment.paddr,
                segment.data.len() as u64,
                segment.memsz,
            ));
            payload.push((data_offset, &segment.data));
            data_offset += segment.data.len().next_multiple_of(16);
        }
        if self.pvh_entry.is_some() {
            file.extend(program_header(
                4,
                note_offset as u64,
                0,
                note.len() as u64,
                0,
            ));
        }
        file.extend(&note);
        for (offset, data) in payload {
            file.resize(offset, 0);
            file.extend(data);
        }
        file
    }
}

fn program_header(kind: u32, offset: u64, paddr: u64, filesz: u64, memsz: u64) -> Vec<u8> {
    let mut phdr = Vec::with_capacity(56);
    phdr.extend(kind.to_le_bytes());
    phdr.extend(5u32.to_le_bytes()); // R+X
    phdr.extend(offset.to_le_bytes());
    phdr.extend(paddr.to_le_bytes()); // vaddr
    phdr.extend(paddr.to_le_bytes());
    phdr.extend(filesz.to_le_bytes());
    phdr.extend(memsz.to_le_bytes());
    phdr.extend(0x1000u64.to_le_bytes());
    phdr
}
