//! Interim kernel loading for `--kernel`, until the kernel loader (`vmm::loader`, with ELF/PVH,
//! bzImage, zero page, command line and initramfs) is merged: an ELF image loaded by linux-loader,
//! entered through its PVH note if it has one, else in long mode at `e_entry`.
//!
//! It writes no boot structures (zero page, `hvm_start_info`), so it refuses a command line or an
//! initramfs rather than ignore them. Its signature is the loader's `load_kernel_from_paths`, so
//! replacing it is a one-line change in [`crate::launch`].

use std::fs::File;
use std::io::Read;
use std::path::{Path, PathBuf};

use linux_loader::loader::elf::{Elf, PvhBootCapability};
use linux_loader::loader::{Error as LinuxLoaderError, KernelLoader};
use vm_memory::{GuestAddress, GuestMemoryMmap};

use crate::boot_entry::{BootProtocol, EntryPoint};
use crate::layout::HIGH_RAM_START;

/// Why the kernel could not be loaded.
#[derive(Debug, thiserror::Error)]
pub enum KernelImageError {
    /// The kernel file could not be opened.
    #[error("cannot open the kernel image {}", path.display())]
    Open {
        /// The file.
        path: PathBuf,
        /// The host error.
        #[source]
        source: std::io::Error,
    },
    /// The file is not a loadable x86-64 ELF image, or does not fit guest RAM.
    #[error("cannot load the kernel image {} (an x86-64 ELF file that fits in guest RAM above 1 MiB is expected)", path.display())]
    Load {
        /// The file.
        path: PathBuf,
        /// linux-loader's error.
        #[source]
        source: LinuxLoaderError,
    },
    /// The file is an ELF file, but not for x86-64 (linux-loader does not check this).
    #[error("the kernel image {} is not a 64-bit x86-64 ELF file", path.display())]
    NotX86_64 {
        /// The file.
        path: PathBuf,
    },
    /// The option needs the full kernel loader.
    #[error("{what} is not supported yet: this build loads ELF kernels without boot structures")]
    Unsupported {
        /// The option.
        what: &'static str,
    },
}

/// Loads the ELF kernel at `kernel_path` into `guest_mem` and returns its entry point.
pub fn load_kernel_from_paths(
    guest_mem: &GuestMemoryMmap,
    kernel_path: &Path,
    cmdline: &str,
    initramfs_path: Option<&Path>,
) -> Result<EntryPoint, KernelImageError> {
    if initramfs_path.is_some() {
        return Err(KernelImageError::Unsupported {
            what: "--initramfs",
        });
    }
    if !cmdline.is_empty() {
        return Err(KernelImageError::Unsupported { what: "--cmdline" });
    }
    let mut file = File::open(kernel_path).map_err(|source| KernelImageError::Open {
        path: kernel_path.to_path_buf(),
        source,
    })?;
    check_x86_64(&mut file, kernel_path)?;
    let loaded = Elf::load(
        guest_mem,
        None,
        &mut file,
        Some(GuestAddress(HIGH_RAM_START)),
    )
    .map_err(|source| KernelImageError::Load {
        path: kernel_path.to_path_buf(),
        source,
    })?;
    Ok(match loaded.pvh_boot_cap {
        PvhBootCapability::PvhEntryPresent(addr) => EntryPoint {
            addr,
            protocol: BootProtocol::Pvh,
        },
        _ => EntryPoint {
            addr: loaded.kernel_load,
            protocol: BootProtocol::Linux64,
        },
    })
}

/// ELF identification and machine fields: `e_ident[EI_CLASS]` at 4, `e_machine` at 18.
const ELF_MAGIC: [u8; 4] = *b"\x7fELF";
const ELFCLASS64: u8 = 2;
const EM_X86_64: u16 = 62;

/// Refuses an ELF file for another class or machine; anything that is not ELF at all is left to
/// linux-loader, which names the problem.
fn check_x86_64(file: &mut File, path: &Path) -> Result<(), KernelImageError> {
    let mut head = [0u8; 20];
    if file.read_exact(&mut head).is_err() || head[..4] != ELF_MAGIC {
        return Ok(());
    }
    if head[4] != ELFCLASS64 || u16::from_le_bytes([head[18], head[19]]) != EM_X86_64 {
        return Err(KernelImageError::NotX86_64 {
            path: path.to_path_buf(),
        });
    }
    Ok(())
}
