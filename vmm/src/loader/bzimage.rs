//! bzImage kernels through the 64-bit boot protocol (Documentation/arch/x86/boot.rst): the
//! setup header is read from the image and checked, the protected-mode kernel is copied by
//! linux-loader to `code32_start`, and the vCPU starts at the 64-bit entry, 0x200 further.

use std::fs::File;
use std::mem::size_of;

use linux_loader::bootparam::setup_header;
use linux_loader::loader::{BzImage, KernelLoader};
use vm_memory::{ByteValued, GuestAddress, GuestMemoryBackend, GuestMemoryMmap};

use super::{KernelPlan, LoaderError, file};
use crate::layout::{CMDLINE_MAX_SIZE, HIGH_RAM_START};

/// Offset of the setup header in the image (and in the zero page).
pub(super) const SETUP_HEADER_OFFSET: u64 = 0x1f1;
/// Offset of the `header` field ("HdrS").
pub(super) const HEADER_MAGIC_OFFSET: u64 = 0x202;
/// "HdrS", little endian.
pub(super) const HDRS_MAGIC: u32 = 0x5372_6448;
/// `boot_flag`.
const BOOT_FLAG_MAGIC: u16 = 0xaa55;
/// Protocol 2.12 added `xloadflags`, which says whether the 64-bit entry exists.
const MIN_PROTOCOL_VERSION: u16 = 0x020c;
/// `loadflags.LOADED_HIGH`: the protected-mode code loads at 1 MiB (every bzImage).
const LOADED_HIGH: u8 = 1 << 0;
/// `xloadflags.XLF_KERNEL_64`: the kernel has the 64-bit entry at load address + 0x200.
const XLF_KERNEL_64: u16 = 1 << 0;
/// Offset of the 64-bit entry from the protected-mode kernel's load address.
pub(super) const ENTRY_64_OFFSET: u64 = 0x200;
/// `setup_sects == 0` means 4, for old images.
const DEFAULT_SETUP_SECTS: u64 = 4;
const SECTOR_SIZE: u64 = 512;

/// A bzImage whose setup header passed the checks.
#[derive(Debug, Clone, Copy)]
pub(super) struct BzImageHeader {
    /// The setup header as the image has it (bytes past its declared end zeroed).
    pub header: setup_header,
    /// Where the protected-mode kernel goes (`code32_start`).
    pub load_addr: u64,
    /// End (exclusive) of the memory the kernel needs: the larger of its size and `init_size`.
    kernel_end: u64,
}

fn unsupported(reason: String) -> LoaderError {
    LoaderError::UnsupportedBzImage { reason }
}

/// Reads the setup header and checks the image can boot through the 64-bit protocol here.
pub(super) fn check(
    guest_mem: &GuestMemoryMmap,
    kernel: &mut File,
    size: u64,
) -> Result<BzImageHeader, LoaderError> {
    // The header ends at 0x202 + the byte at 0x201 (the jump's offset); copy that much and no
    // more, as boot.rst asks, so code after a short header is not taken for fields.
    let mut jump = [0u8; 2];
    file::read_at(kernel, 0x200, &mut jump, "bzImage setup header", size)?;
    let header_end = HEADER_MAGIC_OFFSET + u64::from(jump[1]);
    let full_len = size_of::<setup_header>() as u64;
    let len = (header_end - SETUP_HEADER_OFFSET).min(full_len);
    let mut header = setup_header::default();
    file::read_at(
        kernel,
        SETUP_HEADER_OFFSET,
        &mut header.as_mut_slice()[..len as usize],
        "bzImage setup header",
        size,
    )?;

    let (boot_flag, version) = (header.boot_flag, header.version);
    if boot_flag != BOOT_FLAG_MAGIC {
        return Err(unsupported(format!(
            "boot_flag is {boot_flag:#06x}, not 0xaa55"
        )));
    }
    if version < MIN_PROTOCOL_VERSION {
        return Err(unsupported(format!(
            "boot protocol {}.{:02} is older than 2.12 and has no 64-bit entry point",
            version >> 8,
            version & 0xff
        )));
    }
    if header.xloadflags & XLF_KERNEL_64 == 0 {
        return Err(unsupported(
            "xloadflags has no XLF_KERNEL_64 (no 64-bit entry point)".into(),
        ));
    }
    if header.loadflags & LOADED_HIGH == 0 {
        return Err(unsupported(
            "loadflags has no LOADED_HIGH (a zImage)".into(),
        ));
    }

    let setup_sects = match u64::from(header.setup_sects) {
        0 => DEFAULT_SETUP_SECTS,
        sects => sects,
    };
    let setup_size = (setup_sects + 1) * SECTOR_SIZE;
    if size <= setup_size {
        return Err(LoaderError::Truncated {
            what: "bzImage protected-mode kernel",
            needed: setup_size + 1,
            size,
        });
    }
    let payload = size - setup_size;
    let load_addr = u64::from(header.code32_start);
    if load_addr < HIGH_RAM_START {
        return Err(LoaderError::KernelBelowHighMemory { addr: load_addr });
    }
    // The kernel decompresses in place and needs `init_size` bytes from its load address.
    let need = payload.max(u64::from(header.init_size));
    let kernel_end = load_addr + need;
    if !guest_mem.check_range(GuestAddress(load_addr), need as usize) {
        return Err(LoaderError::KernelOutsideRam {
            start: load_addr,
            end: kernel_end,
        });
    }
    Ok(BzImageHeader {
        header,
        load_addr,
        kernel_end,
    })
}

impl BzImageHeader {
    /// Limits for the initramfs and command line from the header.
    pub(super) fn plan(&self, low_ram_end: u64) -> KernelPlan {
        // `initrd_addr_max` is the address of the last byte the initramfs may occupy.
        let initrd_end = u64::from(self.header.initrd_addr_max) + 1;
        let cmdline_max = match self.header.cmdline_size {
            0 => CMDLINE_MAX_SIZE - 1,
            max => usize::try_from(max).unwrap_or(usize::MAX),
        };
        KernelPlan {
            kernel_end: self.kernel_end,
            initramfs_limit: initrd_end.min(low_ram_end),
            cmdline_max,
        }
    }

    /// Copies the protected-mode kernel to its load address; returns the 64-bit entry point.
    pub(super) fn load(
        &self,
        guest_mem: &GuestMemoryMmap,
        kernel: &mut File,
    ) -> Result<GuestAddress, LoaderError> {
        let result = BzImage::load(
            guest_mem,
            Some(GuestAddress(self.load_addr)),
            kernel,
            Some(GuestAddress(HIGH_RAM_START)),
        )
        .map_err(LoaderError::KernelLoad)?;
        Ok(GuestAddress(result.kernel_load.0 + ENTRY_64_OFFSET))
    }
}
