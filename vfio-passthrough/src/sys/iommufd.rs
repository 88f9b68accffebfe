//! iommufd ioctls on `/dev/iommu`: one wrapper per request, `0x3b00 | nr`.
//!
//! Each wrapper sets the struct's `size` to the bindings' struct size and its pointer fields to
//! the slices passed along. `iommufd-bindings` follows a newer uAPI than 6.12, but every struct
//! used here has the same size in 6.12 and the fields 6.12 lacks are zero, which the kernel's
//! `copy_struct_from_user` accepts.

use std::os::fd::BorrowedFd;
use std::os::raw::c_ulong;

use iommufd_bindings::iommufd as b;

use super::{check_bitmap_len, io, ioctl_mut};
use crate::errno::Errno;

/// `IOMMU_DESTROY`.
pub const IOMMU_DESTROY: c_ulong = io(0x80);
/// `IOMMU_IOAS_ALLOC`.
pub const IOMMU_IOAS_ALLOC: c_ulong = io(0x81);
/// `IOMMU_IOAS_ALLOW_IOVAS`.
pub const IOMMU_IOAS_ALLOW_IOVAS: c_ulong = io(0x82);
/// `IOMMU_IOAS_COPY`.
pub const IOMMU_IOAS_COPY: c_ulong = io(0x83);
/// `IOMMU_IOAS_IOVA_RANGES`.
pub const IOMMU_IOAS_IOVA_RANGES: c_ulong = io(0x84);
/// `IOMMU_IOAS_MAP`.
pub const IOMMU_IOAS_MAP: c_ulong = io(0x85);
/// `IOMMU_IOAS_UNMAP`.
pub const IOMMU_IOAS_UNMAP: c_ulong = io(0x86);
/// `IOMMU_OPTION`.
pub const IOMMU_OPTION: c_ulong = io(0x87);
/// `IOMMU_VFIO_IOAS`.
pub const IOMMU_VFIO_IOAS: c_ulong = io(0x88);
/// `IOMMU_HWPT_ALLOC`.
pub const IOMMU_HWPT_ALLOC: c_ulong = io(0x89);
/// `IOMMU_GET_HW_INFO`.
pub const IOMMU_GET_HW_INFO: c_ulong = io(0x8a);
/// `IOMMU_HWPT_SET_DIRTY_TRACKING`.
pub const IOMMU_HWPT_SET_DIRTY_TRACKING: c_ulong = io(0x8b);
/// `IOMMU_HWPT_GET_DIRTY_BITMAP`.
pub const IOMMU_HWPT_GET_DIRTY_BITMAP: c_ulong = io(0x8c);
/// `IOMMU_HWPT_INVALIDATE`.
pub const IOMMU_HWPT_INVALIDATE: c_ulong = io(0x8d);
/// `IOMMU_FAULT_QUEUE_ALLOC`.
pub const IOMMU_FAULT_QUEUE_ALLOC: c_ulong = io(0x8e);
/// `IOMMU_IOAS_MAP_FILE` (6.13).
pub const IOMMU_IOAS_MAP_FILE: c_ulong = io(0x8f);

/// `size` of a bindings struct, as the kernel expects it in the first field.
fn size_of<T>() -> u32 {
    std::mem::size_of::<T>() as u32
}

/// Issues a request whose struct holds no user pointer.
fn plain<T>(fd: BorrowedFd<'_>, req: c_ulong, arg: &mut T) -> Result<(), Errno> {
    // SAFETY: callers pass only requests whose argument is `T` without user pointers (or with
    // user pointers they have set to 0 or to memory they vouch for); the kernel accesses at
    // most `size_of::<T>()` bytes of it, the size we declare in its `size` field.
    unsafe { ioctl_mut(fd, req, arg) }.map(drop)
}

/// `IOMMU_DESTROY`.
pub fn destroy(fd: BorrowedFd<'_>, id: u32) -> Result<(), Errno> {
    let mut arg = b::iommu_destroy {
        size: size_of::<b::iommu_destroy>(),
        id,
    };
    plain(fd, IOMMU_DESTROY, &mut arg)
}

/// `IOMMU_IOAS_ALLOC`.
pub fn ioas_alloc(fd: BorrowedFd<'_>, arg: &mut b::iommu_ioas_alloc) -> Result<(), Errno> {
    arg.size = size_of::<b::iommu_ioas_alloc>();
    plain(fd, IOMMU_IOAS_ALLOC, arg)
}

/// `IOMMU_IOAS_ALLOW_IOVAS` with `ranges` as the list (`num_iovas` is its length).
pub fn ioas_allow_iovas(
    fd: BorrowedFd<'_>,
    arg: &mut b::iommu_ioas_allow_iovas,
    ranges: &[b::iommu_iova_range],
) -> Result<(), Errno> {
    arg.size = size_of::<b::iommu_ioas_allow_iovas>();
    arg.num_iovas = u32::try_from(ranges.len()).map_err(|_| Errno::EFAULT)?;
    arg.allowed_iovas = ranges.as_ptr() as u64;
    // SAFETY: the kernel reads `num_iovas` ranges at `allowed_iovas`, exactly the slice.
    unsafe { ioctl_mut(fd, IOMMU_IOAS_ALLOW_IOVAS, arg) }.map(drop)
}

/// `IOMMU_IOAS_IOVA_RANGES` into `out`; `arg.num_iovas` (the capacity) must not exceed
/// `out.len()`, else `EFAULT` before the ioctl. The struct is written back also on `EMSGSIZE`.
pub fn ioas_iova_ranges(
    fd: BorrowedFd<'_>,
    arg: &mut b::iommu_ioas_iova_ranges,
    out: &mut [b::iommu_iova_range],
) -> Result<(), Errno> {
    if arg.num_iovas as usize > out.len() {
        return Err(Errno::EFAULT);
    }
    arg.size = size_of::<b::iommu_ioas_iova_ranges>();
    arg.allowed_iovas = out.as_mut_ptr() as u64;
    // SAFETY: the kernel writes at most `num_iovas <= out.len()` ranges at `allowed_iovas`.
    unsafe { ioctl_mut(fd, IOMMU_IOAS_IOVA_RANGES, arg) }.map(drop)
}

/// `IOMMU_IOAS_MAP`.
///
/// # Safety
///
/// Devices attached to the IOAS may access `[user_va, user_va + length)` until it is unmapped:
/// the caller keeps that memory allocated and never accesses it through Rust references.
pub unsafe fn ioas_map(fd: BorrowedFd<'_>, arg: &mut b::iommu_ioas_map) -> Result<(), Errno> {
    arg.size = size_of::<b::iommu_ioas_map>();
    // SAFETY: the struct holds no pointer the kernel writes through; `user_va` is pinned for
    // device DMA under the caller's contract, and a bad one is the kernel's EFAULT.
    unsafe { ioctl_mut(fd, IOMMU_IOAS_MAP, arg) }.map(drop)
}

/// `IOMMU_IOAS_MAP_FILE` (6.13; older kernels answer `ENOTTY`).
pub fn ioas_map_file(fd: BorrowedFd<'_>, arg: &mut b::iommu_ioas_map_file) -> Result<(), Errno> {
    arg.size = size_of::<b::iommu_ioas_map_file>();
    plain(fd, IOMMU_IOAS_MAP_FILE, arg)
}

/// `IOMMU_IOAS_COPY`.
pub fn ioas_copy(fd: BorrowedFd<'_>, arg: &mut b::iommu_ioas_copy) -> Result<(), Errno> {
    arg.size = size_of::<b::iommu_ioas_copy>();
    plain(fd, IOMMU_IOAS_COPY, arg)
}

/// `IOMMU_IOAS_UNMAP`.
pub fn ioas_unmap(fd: BorrowedFd<'_>, arg: &mut b::iommu_ioas_unmap) -> Result<(), Errno> {
    arg.size = size_of::<b::iommu_ioas_unmap>();
    plain(fd, IOMMU_IOAS_UNMAP, arg)
}

/// `IOMMU_OPTION`.
pub fn option(fd: BorrowedFd<'_>, arg: &mut b::iommu_option) -> Result<(), Errno> {
    arg.size = size_of::<b::iommu_option>();
    plain(fd, IOMMU_OPTION, arg)
}

/// `IOMMU_VFIO_IOAS`.
pub fn vfio_ioas(fd: BorrowedFd<'_>, arg: &mut b::iommu_vfio_ioas) -> Result<(), Errno> {
    arg.size = size_of::<b::iommu_vfio_ioas>();
    plain(fd, IOMMU_VFIO_IOAS, arg)
}

/// `IOMMU_HWPT_ALLOC` with `data` as the driver data (`data_len` is its length; an empty slice
/// passes a null pointer, as the uAPI asks for `IOMMU_HWPT_DATA_NONE`).
pub fn hwpt_alloc(
    fd: BorrowedFd<'_>,
    arg: &mut b::iommu_hwpt_alloc,
    data: &[u8],
) -> Result<(), Errno> {
    arg.size = size_of::<b::iommu_hwpt_alloc>();
    arg.data_len = u32::try_from(data.len()).map_err(|_| Errno::EFAULT)?;
    arg.data_uptr = if data.is_empty() {
        0
    } else {
        data.as_ptr() as u64
    };
    // SAFETY: the kernel reads at most `data_len` bytes at `data_uptr`, exactly the slice.
    unsafe { ioctl_mut(fd, IOMMU_HWPT_ALLOC, arg) }.map(drop)
}

/// `IOMMU_GET_HW_INFO` into `data` (its length is the capacity, `data_len` on input).
pub fn get_hw_info(
    fd: BorrowedFd<'_>,
    arg: &mut b::iommu_hw_info,
    data: &mut [u8],
) -> Result<(), Errno> {
    arg.size = size_of::<b::iommu_hw_info>();
    // A capacity below the slice's length is always safe; u32 bounds it.
    arg.data_len = u32::try_from(data.len()).unwrap_or(u32::MAX);
    arg.data_uptr = if data.is_empty() {
        0
    } else {
        data.as_mut_ptr() as u64
    };
    // SAFETY: the kernel writes (data, then zero fill) at most `data_len <= data.len()` bytes.
    unsafe { ioctl_mut(fd, IOMMU_GET_HW_INFO, arg) }.map(drop)
}

/// `IOMMU_HWPT_SET_DIRTY_TRACKING`.
pub fn hwpt_set_dirty_tracking(
    fd: BorrowedFd<'_>,
    arg: &mut b::iommu_hwpt_set_dirty_tracking,
) -> Result<(), Errno> {
    arg.size = size_of::<b::iommu_hwpt_set_dirty_tracking>();
    plain(fd, IOMMU_HWPT_SET_DIRTY_TRACKING, arg)
}

/// `IOMMU_HWPT_GET_DIRTY_BITMAP` into `bitmap`; `EFAULT` before the ioctl if the kernel could
/// write past it (see [`super::iova_bitmap_words`]).
pub fn hwpt_get_dirty_bitmap(
    fd: BorrowedFd<'_>,
    arg: &mut b::iommu_hwpt_get_dirty_bitmap,
    bitmap: &mut [u64],
) -> Result<(), Errno> {
    check_bitmap_len(bitmap, arg.length, arg.page_size)?;
    arg.size = size_of::<b::iommu_hwpt_get_dirty_bitmap>();
    arg.data = bitmap.as_mut_ptr() as u64;
    // SAFETY: the kernel sets bits only in the words `iova_bitmap_words` counts, all inside the
    // slice (checked above), or refuses a zero page size before touching it.
    unsafe { ioctl_mut(fd, IOMMU_HWPT_GET_DIRTY_BITMAP, arg) }.map(drop)
}

/// `IOMMU_HWPT_INVALIDATE` with `entries` (`entry_num * entry_len` bytes must fit, else
/// `EFAULT` before the ioctl). The kernel writes `entry_num` back also on error.
pub fn hwpt_invalidate(
    fd: BorrowedFd<'_>,
    arg: &mut b::iommu_hwpt_invalidate,
    entries: &[u8],
) -> Result<(), Errno> {
    let needed = u64::from(arg.entry_num) * u64::from(arg.entry_len);
    if needed > entries.len() as u64 {
        return Err(Errno::EFAULT);
    }
    arg.size = size_of::<b::iommu_hwpt_invalidate>();
    arg.data_uptr = if entries.is_empty() {
        0
    } else {
        entries.as_ptr() as u64
    };
    // SAFETY: the kernel reads at most `entry_num * entry_len` bytes at `data_uptr`, inside the
    // slice (checked above).
    unsafe { ioctl_mut(fd, IOMMU_HWPT_INVALIDATE, arg) }.map(drop)
}

/// `IOMMU_FAULT_QUEUE_ALLOC`; on success the kernel has installed `out_fault_fd`.
pub fn fault_queue_alloc(fd: BorrowedFd<'_>, arg: &mut b::iommu_fault_alloc) -> Result<(), Errno> {
    arg.size = size_of::<b::iommu_fault_alloc>();
    plain(fd, IOMMU_FAULT_QUEUE_ALLOC, arg)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::fd::AsFd;

    #[test]
    fn request_numbers_match_the_uapi_table() {
        // kernel-uapi.md 1.2.
        let table = [
            (IOMMU_DESTROY, 0x3b80),
            (IOMMU_IOAS_ALLOC, 0x3b81),
            (IOMMU_IOAS_ALLOW_IOVAS, 0x3b82),
            (IOMMU_IOAS_COPY, 0x3b83),
            (IOMMU_IOAS_IOVA_RANGES, 0x3b84),
            (IOMMU_IOAS_MAP, 0x3b85),
            (IOMMU_IOAS_UNMAP, 0x3b86),
            (IOMMU_OPTION, 0x3b87),
            (IOMMU_VFIO_IOAS, 0x3b88),
            (IOMMU_HWPT_ALLOC, 0x3b89),
            (IOMMU_GET_HW_INFO, 0x3b8a),
            (IOMMU_HWPT_SET_DIRTY_TRACKING, 0x3b8b),
            (IOMMU_HWPT_GET_DIRTY_BITMAP, 0x3b8c),
            (IOMMU_HWPT_INVALIDATE, 0x3b8d),
            (IOMMU_FAULT_QUEUE_ALLOC, 0x3b8e),
            (IOMMU_IOAS_MAP_FILE, 0x3b8f),
        ];
        for (req, want) in table {
            assert_eq!(req, want);
        }
    }

    #[test]
    fn struct_sizes_match_the_uapi_table() {
        use std::mem::size_of;
        assert_eq!(size_of::<b::iommu_destroy>(), 8);
        assert_eq!(size_of::<b::iommu_ioas_alloc>(), 12);
        assert_eq!(size_of::<b::iommu_ioas_allow_iovas>(), 24);
        assert_eq!(size_of::<b::iommu_ioas_copy>(), 40);
        assert_eq!(size_of::<b::iommu_ioas_iova_ranges>(), 32);
        assert_eq!(size_of::<b::iommu_ioas_map>(), 40);
        assert_eq!(size_of::<b::iommu_ioas_unmap>(), 24);
        assert_eq!(size_of::<b::iommu_option>(), 24);
        assert_eq!(size_of::<b::iommu_vfio_ioas>(), 12);
        assert_eq!(size_of::<b::iommu_hwpt_alloc>(), 48);
        assert_eq!(size_of::<b::iommu_hw_info>(), 40);
        assert_eq!(size_of::<b::iommu_hwpt_set_dirty_tracking>(), 16);
        assert_eq!(size_of::<b::iommu_hwpt_get_dirty_bitmap>(), 48);
        assert_eq!(size_of::<b::iommu_hwpt_invalidate>(), 32);
        assert_eq!(size_of::<b::iommu_fault_alloc>(), 16);
        assert_eq!(size_of::<b::iommu_ioas_map_file>(), 40);
        assert_eq!(size_of::<b::iommu_iova_range>(), 16);
    }

    /// A file that is not an iommufd: any ioctl reaching it fails with `ENOTTY`, so `EFAULT`
    /// proves the guard answered first.
    fn not_iommufd() -> std::fs::File {
        std::fs::File::open("/dev/null").unwrap()
    }

    #[test]
    fn iova_ranges_capacity_beyond_the_slice_is_refused_without_an_ioctl() {
        let f = not_iommufd();
        let mut out = [b::iommu_iova_range::default(); 2];
        let mut arg = b::iommu_ioas_iova_ranges {
            num_iovas: 3,
            ..Default::default()
        };
        assert_eq!(
            ioas_iova_ranges(f.as_fd(), &mut arg, &mut out),
            Err(Errno::EFAULT)
        );
        arg.num_iovas = 2;
        assert_eq!(
            ioas_iova_ranges(f.as_fd(), &mut arg, &mut out),
            Err(Errno::ENOTTY)
        );
    }

    #[test]
    fn invalidate_entries_beyond_the_slice_are_refused_without_an_ioctl() {
        let f = not_iommufd();
        let mut arg = b::iommu_hwpt_invalidate {
            entry_len: 24,
            entry_num: 2,
            ..Default::default()
        };
        assert_eq!(
            hwpt_invalidate(f.as_fd(), &mut arg, &[0u8; 47]),
            Err(Errno::EFAULT)
        );
        // u32 * u32 does not wrap into a small product.
        arg.entry_len = u32::MAX;
        arg.entry_num = u32::MAX;
        assert_eq!(
            hwpt_invalidate(f.as_fd(), &mut arg, &[0u8; 64]),
            Err(Errno::EFAULT)
        );
        arg.entry_len = 24;
        arg.entry_num = 2;
        assert_eq!(
            hwpt_invalidate(f.as_fd(), &mut arg, &[0u8; 48]),
            Err(Errno::ENOTTY)
        );
    }

    #[test]
    fn dirty_bitmap_shorter_than_the_range_is_refused_without_an_ioctl() {
        let f = not_iommufd();
        let mut bitmap = [0u64; 1];
        let mut arg = b::iommu_hwpt_get_dirty_bitmap {
            length: 65 * 4096,
            page_size: 4096,
            ..Default::default()
        };
        assert_eq!(
            hwpt_get_dirty_bitmap(f.as_fd(), &mut arg, &mut bitmap),
            Err(Errno::EFAULT)
        );
        arg.length = 64 * 4096;
        assert_eq!(
            hwpt_get_dirty_bitmap(f.as_fd(), &mut arg, &mut bitmap),
            Err(Errno::ENOTTY)
        );
    }
}
