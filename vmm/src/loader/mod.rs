//! Kernel loading: puts a Linux kernel (ELF `vmlinux` with or without a PVH note, or a bzImage),
//! its command line and initramfs into guest memory, writes the boot structures its protocol
//! reads, and says where the boot vCPU starts.
//!
//! | image | protocol | boot structure |
//! |---|---|---|
//! | ELF with `XEN_ELFNOTE_PHYS32_ENTRY` | [`BootProtocol::Pvh`] at the note's entry | `hvm_start_info` + memory map + module list |
//! | ELF without the note (our test guest) | [`BootProtocol::Linux64`] at `e_entry` | zero page with a synthetic setup header |
//! | bzImage (boot protocol >= 2.12, `XLF_KERNEL_64`) | [`BootProtocol::Linux64`] at load address + 0x200 | zero page with the image's setup header |
//!
//! Every check that can fail runs before the first byte is written to guest memory, so a bad
//! kernel, initramfs or command line leaves guest memory as it was. linux-loader copies the
//! kernel's segments and parses the PVH note; we check the images first because it writes as it
//! goes and its errors do not say which file or address was wrong.

mod bzimage;
mod cmdline;
mod elf;
mod file;
mod initramfs;
mod memory_map;
mod pvh;
mod zero_page;

use std::fs::File;
use std::io;
use std::path::{Path, PathBuf};

use vm_memory::{GuestAddress, GuestMemoryMmap};

use crate::boot_entry::{BootProtocol, EntryPoint};
pub use memory_map::{MemoryKind, MemoryMapEntry, memory_map};

/// Why a kernel, initramfs or command line could not be loaded.
#[derive(Debug, thiserror::Error)]
pub enum LoaderError {
    /// Opening a file named on the command line failed.
    #[error("cannot open the {what} {}: {source}", path.display())]
    Open {
        /// "kernel image" or "initramfs".
        what: &'static str,
        /// The file.
        path: PathBuf,
        /// The error from the host.
        source: io::Error,
    },
    /// An error about the file at `path` (from [`load_kernel_from_paths`]).
    #[error("{}: {inner}", path.display())]
    InFile {
        /// The file the error is about.
        path: PathBuf,
        /// What is wrong with it.
        inner: Box<LoaderError>,
    },
    /// Reading a file failed for a reason other than its end.
    #[error("cannot read the {what}: {source}")]
    Read {
        /// Which file and part.
        what: &'static str,
        /// The error from the host.
        source: io::Error,
    },
    /// The file ends before a structure it declares.
    #[error("the {what} is truncated: {needed} bytes needed, the file has {size}")]
    Truncated {
        /// Which file and part.
        what: &'static str,
        /// Bytes the structure needs from the start of the file.
        needed: u64,
        /// The file's size.
        size: u64,
    },
    /// The kernel image has neither an ELF magic nor a bzImage setup header.
    #[error(
        "the kernel image ({size} bytes) is neither an ELF file (no \\x7fELF magic) nor a bzImage (no HdrS setup header at 0x202)"
    )]
    NotAKernel {
        /// The file's size.
        size: u64,
    },
    /// The ELF file is not a loadable x86-64 executable.
    #[error("the kernel ELF cannot be loaded: {reason}")]
    UnsupportedElf {
        /// What is wrong.
        reason: String,
    },
    /// The bzImage cannot be booted through the 64-bit boot protocol.
    #[error("the bzImage cannot be loaded: {reason}")]
    UnsupportedBzImage {
        /// What is wrong.
        reason: String,
    },
    /// The kernel would be loaded below 1 MiB, over the VMM's boot structures.
    #[error("the kernel wants guest address {addr:#x}, below 1 MiB where the boot structures live")]
    KernelBelowHighMemory {
        /// The lowest address the kernel asks for.
        addr: u64,
    },
    /// The kernel's memory is not all guest RAM.
    #[error(
        "the kernel needs guest memory [{start:#x}, {end:#x}), which is not all RAM: the kernel is too large for the VM's memory or asks for an address outside it"
    )]
    KernelOutsideRam {
        /// First byte the kernel needs.
        start: u64,
        /// End (exclusive) of what it needs.
        end: u64,
    },
    /// Guest memory does not start with the low megabyte the boot structures need.
    #[error("guest memory has no RAM over [0, 0x100000) for the boot structures")]
    LowMemoryMissing,
    /// The guest memory layout has more regions than a boot memory map holds.
    #[error("the guest memory map has {entries} entries; the boot protocol holds at most {max}")]
    MemoryMapTooLarge {
        /// Entries needed.
        entries: usize,
        /// Entries the protocol's table holds.
        max: usize,
    },
    /// The command line does not fit.
    #[error("the command line is {len} bytes; at most {max} fit (plus the terminating NUL)")]
    CmdlineTooLong {
        /// Its length without NUL.
        len: usize,
        /// The most the kernel or the VMM accepts, without NUL.
        max: usize,
    },
    /// The command line contains a NUL byte, which would cut it short.
    #[error("the command line has a NUL byte at offset {offset}")]
    CmdlineHasNul {
        /// Where the NUL is.
        offset: usize,
    },
    /// The initramfs file is empty.
    #[error("the initramfs is empty")]
    InitramfsEmpty,
    /// The initramfs does not fit between the kernel and the highest address it may use.
    #[error(
        "the initramfs of {size} bytes does not fit in RAM between the kernel's end {lowest:#x} and {highest:#x}"
    )]
    InitramfsDoesNotFit {
        /// Its size.
        size: u64,
        /// The lowest address it may start at (the kernel's end).
        lowest: u64,
        /// The address it must end below (RAM end or the kernel's `initrd_addr_max`).
        highest: u64,
    },
    /// linux-loader failed while copying the kernel (after our checks passed).
    #[error("loading the kernel image failed: {0}")]
    KernelLoad(#[source] linux_loader::loader::Error),
    /// linux-loader failed to write a boot structure (after our checks passed).
    #[error("cannot write the {what}: {source}")]
    BootParams {
        /// "zero page" or "PVH start info".
        what: &'static str,
        /// The error from linux-loader.
        source: linux_loader::configurator::Error,
    },
    /// Copying a file or structure into guest memory failed.
    #[error("cannot write the {what} to guest memory at {addr:#x}: {source}")]
    GuestMemory {
        /// What was being written.
        what: &'static str,
        /// Where.
        addr: u64,
        /// The error from vm-memory.
        source: vm_memory::GuestMemoryError,
    },
}

/// A kernel image that passed its format's checks and is ready to be written.
#[derive(Debug)]
enum CheckedKernel {
    Elf(elf::ElfImage),
    BzImage(bzimage::BzImageHeader),
}

/// What a kernel format's checks found, before anything is written.
#[derive(Debug)]
struct KernelPlan {
    /// End (exclusive) of the memory the kernel occupies or needs for itself.
    kernel_end: u64,
    /// The initramfs must end at or below this address.
    initramfs_limit: u64,
    /// The longest command line (without NUL) the kernel accepts.
    cmdline_max: usize,
}

/// Loads `kernel` (ELF or bzImage), its command line and optional initramfs into `guest_mem`,
/// writes the boot structures of the kernel's protocol, and returns where the boot vCPU starts.
///
/// Guest memory must hold RAM over the low megabyte (for the boot structures) and from 1 MiB on
/// (see [`crate::layout::ram_regions`]). The ACPI tables are not written here: they go to
/// [`crate::layout::RSDP_START`], which the boot structures point to.
pub fn load_kernel(
    guest_mem: &GuestMemoryMmap,
    kernel: &mut File,
    cmdline: &str,
    initramfs: Option<&mut File>,
) -> Result<EntryPoint, LoaderError> {
    let map = memory_map(guest_mem)?;
    let low_ram_end = memory_map::low_ram_end(&map);
    let kernel_size = file::size(kernel, "kernel image")?;

    // Check everything first: nothing is written until every input passed.
    let checked = match identify(kernel, kernel_size)? {
        KernelFormat::Elf => CheckedKernel::Elf(elf::check(guest_mem, kernel, kernel_size)?),
        KernelFormat::BzImage => {
            CheckedKernel::BzImage(bzimage::check(guest_mem, kernel, kernel_size)?)
        }
    };
    let plan = match &checked {
        CheckedKernel::Elf(image) => image.plan(low_ram_end),
        CheckedKernel::BzImage(header) => header.plan(low_ram_end),
    };
    cmdline::check(cmdline, plan.cmdline_max)?;
    let initramfs = match initramfs {
        Some(file) => {
            let size = file::size(file, "initramfs")?;
            let addr = initramfs::place(size, plan.kernel_end, plan.initramfs_limit)?;
            Some((file, initramfs::Placement { addr, size }))
        }
        None => None,
    };

    // Write: the kernel, the initramfs, the command line, then the boot structures.
    let entry = match &checked {
        CheckedKernel::Elf(image) => match image.load(guest_mem, kernel)? {
            Some(addr) => EntryPoint {
                addr,
                protocol: BootProtocol::Pvh,
            },
            None => EntryPoint {
                addr: GuestAddress(image.entry),
                protocol: BootProtocol::Linux64,
            },
        },
        CheckedKernel::BzImage(header) => EntryPoint {
            addr: header.load(guest_mem, kernel)?,
            protocol: BootProtocol::Linux64,
        },
    };
    let placement = match initramfs {
        Some((file, placement)) => {
            initramfs::load(guest_mem, file, placement)?;
            Some(placement)
        }
        None => None,
    };
    cmdline::write(guest_mem, cmdline)?;
    match (&checked, entry.protocol) {
        (_, BootProtocol::Pvh) => pvh::write_start_info(guest_mem, &map, placement)?,
        (CheckedKernel::BzImage(header), BootProtocol::Linux64) => {
            zero_page::write(guest_mem, &map, Some(header), placement)?
        }
        (CheckedKernel::Elf(_), BootProtocol::Linux64) => {
            zero_page::write(guest_mem, &map, None, placement)?
        }
    }
    log::info!(
        "loaded the kernel: entry {:#x} ({:?}), initramfs {:?}",
        entry.addr.0,
        entry.protocol,
        placement
    );
    Ok(entry)
}

/// [`load_kernel`] for files named by path: opens them and names the file in every error.
pub fn load_kernel_from_paths(
    guest_mem: &GuestMemoryMmap,
    kernel_path: &Path,
    cmdline: &str,
    initramfs_path: Option<&Path>,
) -> Result<EntryPoint, LoaderError> {
    let open = |what, path: &Path| {
        File::open(path).map_err(|source| LoaderError::Open {
            what,
            path: path.to_path_buf(),
            source,
        })
    };
    let mut kernel = open("kernel image", kernel_path)?;
    let mut initramfs = initramfs_path
        .map(|path| open("initramfs", path))
        .transpose()?;
    load_kernel(guest_mem, &mut kernel, cmdline, initramfs.as_mut()).map_err(|err| {
        let path = match &err {
            LoaderError::InitramfsEmpty
            | LoaderError::InitramfsDoesNotFit { .. }
            | LoaderError::Read {
                what: "initramfs", ..
            }
            | LoaderError::Truncated {
                what: "initramfs", ..
            }
            | LoaderError::GuestMemory {
                what: "initramfs", ..
            } => initramfs_path,
            LoaderError::CmdlineTooLong { .. } | LoaderError::CmdlineHasNul { .. } => None,
            _ => Some(kernel_path),
        };
        match path {
            Some(path) => LoaderError::InFile {
                path: path.to_path_buf(),
                inner: Box::new(err),
            },
            None => err,
        }
    })
}

/// The kernel formats we load.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum KernelFormat {
    Elf,
    BzImage,
}

/// Tells an ELF from a bzImage by their magic numbers.
fn identify(kernel: &mut File, size: u64) -> Result<KernelFormat, LoaderError> {
    let mut magic = [0u8; 4];
    if size >= 4 {
        file::read_at(kernel, 0, &mut magic, "kernel image", size)?;
        if magic == *b"\x7fELF" {
            return Ok(KernelFormat::Elf);
        }
    }
    if size >= bzimage::HEADER_MAGIC_OFFSET + 4 {
        file::read_at(
            kernel,
            bzimage::HEADER_MAGIC_OFFSET,
            &mut magic,
            "kernel image",
            size,
        )?;
        if u32::from_le_bytes(magic) == bzimage::HDRS_MAGIC {
            return Ok(KernelFormat::BzImage);
        }
    }
    Err(LoaderError::NotAKernel { size })
}
