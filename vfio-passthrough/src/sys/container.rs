//! VFIO container ioctls (`/dev/vfio/vfio`, type1 backend): `_IO(';', 100 + n)`.

use std::os::fd::BorrowedFd;
use std::os::raw::c_ulong;

use vfio_bindings::bindings::vfio as b;

use super::{io, ioctl_argsz_buf, ioctl_mut, ioctl_none, ioctl_val};
use crate::errno::Errno;

/// `VFIO_GET_API_VERSION`.
pub const VFIO_GET_API_VERSION: c_ulong = io(100);
/// `VFIO_CHECK_EXTENSION`.
pub const VFIO_CHECK_EXTENSION: c_ulong = io(101);
/// `VFIO_SET_IOMMU`.
pub const VFIO_SET_IOMMU: c_ulong = io(102);
/// `VFIO_IOMMU_GET_INFO`.
pub const VFIO_IOMMU_GET_INFO: c_ulong = io(112);
/// `VFIO_IOMMU_MAP_DMA`.
pub const VFIO_IOMMU_MAP_DMA: c_ulong = io(113);
/// `VFIO_IOMMU_UNMAP_DMA`.
pub const VFIO_IOMMU_UNMAP_DMA: c_ulong = io(114);
/// `VFIO_IOMMU_DIRTY_PAGES`.
pub const VFIO_IOMMU_DIRTY_PAGES: c_ulong = io(117);

/// `minsz` of `VFIO_IOMMU_GET_INFO`: through `iova_pgsizes`.
pub const IOMMU_INFO_MINSZ: usize = 16;

/// `struct vfio_iommu_type1_dma_unmap` followed by the `struct vfio_bitmap` that
/// `VFIO_DMA_UNMAP_FLAG_GET_DIRTY_BITMAP` reads after it.
#[repr(C)]
#[derive(Debug)]
pub struct DmaUnmapWithBitmap {
    /// The unmap request.
    pub unmap: b::vfio_iommu_type1_dma_unmap,
    /// The bitmap description (`data` is set by [`iommu_unmap_dma`]).
    pub bitmap: b::vfio_bitmap,
}

/// `struct vfio_iommu_type1_dirty_bitmap` followed by the
/// `struct vfio_iommu_type1_dirty_bitmap_get` that `GET_BITMAP` reads after it.
#[repr(C)]
#[derive(Debug)]
pub struct DirtyBitmapGet {
    /// `argsz` and the one `VFIO_IOMMU_DIRTY_PAGES_FLAG_*`.
    pub header: b::vfio_iommu_type1_dirty_bitmap,
    /// Range and bitmap (`bitmap.data` is set by [`iommu_dirty_pages`]).
    pub get: b::vfio_iommu_type1_dirty_bitmap_get,
}

/// `VFIO_GET_API_VERSION`.
pub fn get_api_version(fd: BorrowedFd<'_>) -> Result<i32, Errno> {
    // SAFETY: the request takes no argument.
    unsafe { ioctl_none(fd, VFIO_GET_API_VERSION) }
}

/// `VFIO_CHECK_EXTENSION`.
pub fn check_extension(fd: BorrowedFd<'_>, extension: u32) -> Result<i32, Errno> {
    // SAFETY: the argument is a plain value.
    unsafe { ioctl_val(fd, VFIO_CHECK_EXTENSION, c_ulong::from(extension)) }
}

/// `VFIO_SET_IOMMU`.
pub fn set_iommu(fd: BorrowedFd<'_>, iommu_type: u32) -> Result<(), Errno> {
    // SAFETY: the argument is a plain value.
    unsafe { ioctl_val(fd, VFIO_SET_IOMMU, c_ulong::from(iommu_type)) }.map(drop)
}

/// `VFIO_IOMMU_GET_INFO` into a raw buffer starting with `argsz` (`EFAULT` if `argsz` exceeds
/// the buffer).
pub fn iommu_get_info(fd: BorrowedFd<'_>, buf: &mut [u8]) -> Result<(), Errno> {
    // SAFETY: type1 reads `minsz` bytes and writes at most `argsz` bytes (the header, then the
    // capability chain only if `argsz` covers it).
    unsafe { ioctl_argsz_buf(fd, VFIO_IOMMU_GET_INFO, buf, IOMMU_INFO_MINSZ) }.map(drop)
}

/// `VFIO_IOMMU_MAP_DMA`.
///
/// # Safety
///
/// Devices in the container may access `[vaddr, vaddr + size)` until it is unmapped: the
/// caller keeps that memory allocated and never accesses it through Rust references.
pub unsafe fn iommu_map_dma(
    fd: BorrowedFd<'_>,
    arg: &mut b::vfio_iommu_type1_dma_map,
) -> Result<(), Errno> {
    // SAFETY: the kernel reads the 32-byte struct (it copies `minsz`, the whole struct); the
    // memory at `vaddr` is pinned for DMA under the caller's contract.
    unsafe { ioctl_mut(fd, VFIO_IOMMU_MAP_DMA, arg) }.map(drop)
}

/// `VFIO_IOMMU_UNMAP_DMA`; with `GET_DIRTY_BITMAP` the kernel ORs dirty bits into `bitmap`,
/// whose byte length is what `vfio_bitmap.size` tells it (so it cannot write past it).
pub fn iommu_unmap_dma(
    fd: BorrowedFd<'_>,
    arg: &mut DmaUnmapWithBitmap,
    bitmap: &mut [u64],
) -> Result<(), Errno> {
    arg.bitmap.size = (bitmap.len() as u64) * 8;
    arg.bitmap.data = bitmap.as_mut_ptr();
    // SAFETY: the kernel reads the unmap struct and, with GET_DIRTY_BITMAP, the `vfio_bitmap`
    // after it (both in `arg`); it refuses a bitmap smaller than the range needs and writes at
    // most `bitmap.size` bytes at `data`, which is the slice. It writes back only the header.
    unsafe { ioctl_mut(fd, VFIO_IOMMU_UNMAP_DMA, arg) }.map(drop)
}

/// `VFIO_IOMMU_DIRTY_PAGES`; with `GET_BITMAP` the kernel writes each mapping's words of
/// `bitmap` (see `docs/kernel-uapi.md` 2.2 for which bits it ORs and which it overwrites;
/// `bitmap.size` is the slice's byte length, which the kernel checks against the range).
pub fn iommu_dirty_pages(
    fd: BorrowedFd<'_>,
    arg: &mut DirtyBitmapGet,
    bitmap: &mut [u64],
) -> Result<(), Errno> {
    arg.get.bitmap.size = (bitmap.len() as u64) * 8;
    arg.get.bitmap.data = bitmap.as_mut_ptr();
    // SAFETY: the kernel reads the 8-byte header and, with GET_BITMAP and an `argsz` covering
    // it, the 40-byte range after it (both in `arg`); it writes at most `bitmap.size` bytes at
    // `data`, the slice.
    unsafe { ioctl_mut(fd, VFIO_IOMMU_DIRTY_PAGES, arg) }.map(drop)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::mem::{offset_of, size_of};
    use std::os::fd::AsFd;

    #[test]
    fn request_numbers_match_the_uapi_table() {
        // kernel-uapi.md 2.1.
        assert_eq!(VFIO_GET_API_VERSION, 0x3b64);
        assert_eq!(VFIO_CHECK_EXTENSION, 0x3b65);
        assert_eq!(VFIO_SET_IOMMU, 0x3b66);
        assert_eq!(VFIO_IOMMU_GET_INFO, 0x3b70);
        assert_eq!(VFIO_IOMMU_MAP_DMA, 0x3b71);
        assert_eq!(VFIO_IOMMU_UNMAP_DMA, 0x3b72);
        assert_eq!(VFIO_IOMMU_DIRTY_PAGES, 0x3b75);
    }

    #[test]
    fn compound_arguments_lay_out_as_the_kernel_reads_them() {
        assert_eq!(size_of::<b::vfio_iommu_type1_dma_map>(), 32);
        assert_eq!(size_of::<b::vfio_iommu_type1_dma_unmap>(), 24);
        // The bitmap follows the 24-byte unmap header.
        assert_eq!(offset_of!(DmaUnmapWithBitmap, bitmap), 24);
        assert_eq!(size_of::<DmaUnmapWithBitmap>(), 48);
        // The range follows the 8-byte dirty-pages header.
        assert_eq!(offset_of!(DirtyBitmapGet, get), 8);
        assert_eq!(size_of::<DirtyBitmapGet>(), 48);
        assert_eq!(
            crate::host::type1::DIRTY_PAGES_GET_ARGSZ as usize,
            size_of::<DirtyBitmapGet>()
        );
    }

    #[test]
    fn get_info_argsz_beyond_the_buffer_is_refused_without_an_ioctl() {
        let f = std::fs::File::open("/dev/null").unwrap();
        let mut buf = vec![0u8; 24];
        buf[0..4].copy_from_slice(&120u32.to_ne_bytes());
        assert_eq!(iommu_get_info(f.as_fd(), &mut buf), Err(Errno::EFAULT));
        buf[0..4].copy_from_slice(&24u32.to_ne_bytes());
        assert_eq!(iommu_get_info(f.as_fd(), &mut buf), Err(Errno::ENOTTY));
    }
}
