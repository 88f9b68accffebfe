//! ELF kernels (`vmlinux`, our test guest): checked segment by segment, then copied by
//! linux-loader, which also finds the PVH entry note (`XEN_ELFNOTE_PHYS32_ENTRY`).

use std::fs::File;
use std::mem::size_of;

use linux_loader::elf::{
    EI_CLASS, EI_DATA, ELFCLASS64, ELFDATA2LSB, EM_X86_64, ET_EXEC, Elf64_Ehdr, Elf64_Phdr, PT_LOAD,
};
use linux_loader::loader::{Elf, KernelLoader, PvhBootCapability};
use vm_memory::{ByteValued, Bytes, GuestAddress, GuestMemoryBackend, GuestMemoryMmap};

use super::{KernelPlan, LoaderError, file};
use crate::layout::{CMDLINE_MAX_SIZE, HIGH_RAM_START};

/// Program headers we accept; vmlinux has about 5, so this only stops absurd counts.
const MAX_PROGRAM_HEADERS: u16 = 256;

/// An ELF kernel whose headers and segments passed the checks.
#[derive(Debug)]
pub(super) struct ElfImage {
    /// `e_entry`: where a 64-bit (non-PVH) boot starts.
    pub entry: u64,
    /// End (exclusive) of the highest loaded segment.
    kernel_end: u64,
    /// `(address, length)` of each segment's zero-filled tail (`.bss`), which linux-loader does
    /// not write.
    zero_fill: Vec<(u64, u64)>,
}

fn unsupported(reason: String) -> LoaderError {
    LoaderError::UnsupportedElf { reason }
}

/// Reads and checks the ELF header and program headers: a little-endian 64-bit x86-64
/// executable whose loadable segments are all in the file and all in guest RAM above 1 MiB.
pub(super) fn check(
    guest_mem: &GuestMemoryMmap,
    kernel: &mut File,
    size: u64,
) -> Result<ElfImage, LoaderError> {
    let mut ehdr = Elf64_Ehdr::default();
    file::read_at(kernel, 0, ehdr.as_mut_slice(), "kernel ELF header", size)?;
    if ehdr.e_ident[EI_CLASS] != ELFCLASS64 {
        return Err(unsupported(format!(
            "class {} is not 64-bit",
            ehdr.e_ident[EI_CLASS]
        )));
    }
    if ehdr.e_ident[EI_DATA] != ELFDATA2LSB {
        return Err(unsupported("it is big endian".into()));
    }
    if ehdr.e_machine != EM_X86_64 {
        return Err(unsupported(format!(
            "machine {} is not x86-64",
            ehdr.e_machine
        )));
    }
    if ehdr.e_type != ET_EXEC {
        return Err(unsupported(format!(
            "type {} is not an executable (ET_EXEC)",
            ehdr.e_type
        )));
    }
    if usize::from(ehdr.e_phentsize) != size_of::<Elf64_Phdr>() {
        return Err(unsupported(format!(
            "program header size {}",
            ehdr.e_phentsize
        )));
    }
    if ehdr.e_phnum == 0 || ehdr.e_phnum > MAX_PROGRAM_HEADERS {
        return Err(unsupported(format!("{} program headers", ehdr.e_phnum)));
    }
    if (ehdr.e_phoff as usize) < size_of::<Elf64_Ehdr>() {
        return Err(unsupported(format!(
            "program headers at {:#x}",
            ehdr.e_phoff
        )));
    }
    if ehdr.e_entry < HIGH_RAM_START {
        return Err(LoaderError::KernelBelowHighMemory { addr: ehdr.e_entry });
    }

    let mut kernel_end = 0;
    let mut zero_fill = Vec::new();
    for index in 0..u64::from(ehdr.e_phnum) {
        let mut phdr = Elf64_Phdr::default();
        let offset = ehdr.e_phoff + index * size_of::<Elf64_Phdr>() as u64;
        file::read_at(
            kernel,
            offset,
            phdr.as_mut_slice(),
            "kernel ELF program headers",
            size,
        )?;
        if phdr.p_type != PT_LOAD || phdr.p_memsz == 0 {
            continue;
        }
        if phdr.p_filesz > phdr.p_memsz {
            return Err(unsupported(format!(
                "segment {index} has {} bytes in the file but {} in memory",
                phdr.p_filesz, phdr.p_memsz
            )));
        }
        let file_end = phdr.p_offset.checked_add(phdr.p_filesz);
        if file_end.is_none_or(|end| end > size) {
            return Err(LoaderError::Truncated {
                what: "kernel ELF segment",
                needed: file_end.unwrap_or(u64::MAX),
                size,
            });
        }
        let start = phdr.p_paddr;
        if start < HIGH_RAM_START {
            return Err(LoaderError::KernelBelowHighMemory { addr: start });
        }
        let end = start
            .checked_add(phdr.p_memsz)
            .ok_or(LoaderError::KernelOutsideRam {
                start,
                end: u64::MAX,
            })?;
        if !guest_mem.check_range(GuestAddress(start), phdr.p_memsz as usize) {
            return Err(LoaderError::KernelOutsideRam { start, end });
        }
        if phdr.p_memsz > phdr.p_filesz {
            zero_fill.push((start + phdr.p_filesz, phdr.p_memsz - phdr.p_filesz));
        }
        kernel_end = kernel_end.max(end);
    }
    if kernel_end == 0 {
        return Err(unsupported("it has no loadable segment".into()));
    }
    Ok(ElfImage {
        entry: ehdr.e_entry,
        kernel_end,
        zero_fill,
    })
}

impl ElfImage {
    /// Limits for the initramfs and command line.
    pub(super) fn plan(&self, low_ram_end: u64) -> KernelPlan {
        KernelPlan {
            kernel_end: self.kernel_end,
            // A 64-bit entry reads the 64-bit ramdisk address, and PVH a 64-bit module address;
            // below the hole keeps it where every kernel's early mapping reaches.
            initramfs_limit: low_ram_end,
            cmdline_max: CMDLINE_MAX_SIZE - 1,
        }
    }

    /// Copies the segments into guest memory and zero-fills their tails. Returns the PVH entry
    /// point when the image has the PVH note.
    pub(super) fn load(
        &self,
        guest_mem: &GuestMemoryMmap,
        kernel: &mut File,
    ) -> Result<Option<GuestAddress>, LoaderError> {
        let result = Elf::load(guest_mem, None, kernel, Some(GuestAddress(HIGH_RAM_START)))
            .map_err(LoaderError::KernelLoad)?;
        for &(addr, len) in &self.zero_fill {
            let zeroes = vec![0u8; len as usize];
            guest_mem
                .write_slice(&zeroes, GuestAddress(addr))
                .map_err(|source| LoaderError::GuestMemory {
                    what: "kernel .bss",
                    addr,
                    source,
                })?;
        }
        Ok(match result.pvh_boot_cap {
            PvhBootCapability::PvhEntryPresent(addr) => Some(addr),
            PvhBootCapability::PvhEntryNotPresent | PvhBootCapability::PvhEntryIgnored => None,
        })
    }
}
