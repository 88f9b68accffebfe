//! Thin wrappers around every ioctl this crate issues: iommufd (`/dev/iommu`), its selftest
//! command, the VFIO type1 container, VFIO groups, VFIO devices and migration data fds.
//!
//! Each wrapper takes a `vfio-bindings` / `iommufd-bindings` struct (or one of ours where the
//! bindings have none) and the slices that stand for its user pointers. It points the struct at
//! those slices itself and refuses (`EFAULT`, before any ioctl) a count that would let the kernel
//! read or write past them, so every wrapper is safe to call except those that hand process
//! memory to a device for DMA.
//!
//! The rust-vmm ioctl crates fall short here: `iommufd-ioctls` lacks IOVA_RANGES, ALLOW_IOVAS,
//! COPY, OPTION, VFIO_IOAS, the dirty-tracking and fault-queue ioctls, and passes `&` to ioctls
//! that write back (MAP with an automatic IOVA); `vfio-ioctls` swallows region read/write
//! errors, cannot take a custom IOMMU backend, and has neither GET_INFO capability parsing nor
//! DIRTY_PAGES. So the layouts come from the bindings crates and the calls from here.

pub mod container;
pub mod device;
pub mod group;
pub mod iommufd;
pub mod selftest;

use std::os::fd::BorrowedFd;
use std::os::raw::{c_int, c_ulong};

use crate::errno::Errno;

/// `';'`: the ioctl type of both iommufd and VFIO.
const IOCTL_TYPE: c_ulong = b';' as c_ulong;

/// `_IO(';', nr)`: no direction, no size, as every iommufd and VFIO request is encoded.
pub const fn io(nr: c_ulong) -> c_ulong {
    (IOCTL_TYPE << 8) | nr
}

/// Turns an ioctl's return value into the kernel's answer: the value, or the errno.
fn check(ret: c_int) -> Result<c_int, Errno> {
    if ret < 0 { Err(Errno::last()) } else { Ok(ret) }
}

/// `ioctl(fd, req, arg)` with a pointer to `arg`, which the kernel may read and write.
///
/// # Safety
///
/// `req` must be a request that accesses at most `size_of::<T>()` bytes at `arg`, plus only
/// memory that the pointers inside `arg` make valid for the access the request does.
unsafe fn ioctl_mut<T>(fd: BorrowedFd<'_>, req: c_ulong, arg: &mut T) -> Result<c_int, Errno> {
    // SAFETY: the caller vouches for what the request touches; `arg` is a live, exclusive
    // reference for the duration of the call.
    check(unsafe { vmm_sys_util::ioctl::ioctl_with_mut_ref(&fd, req, arg) })
}

/// `ioctl(fd, req, value)`.
///
/// # Safety
///
/// `req` must be a request whose argument is a plain value, not a pointer.
unsafe fn ioctl_val(fd: BorrowedFd<'_>, req: c_ulong, value: c_ulong) -> Result<c_int, Errno> {
    // SAFETY: the caller vouches that the request takes no pointer.
    check(unsafe { vmm_sys_util::ioctl::ioctl_with_val(&fd, req, value) })
}

/// `ioctl(fd, req)` with no argument.
///
/// # Safety
///
/// `req` must be a request that takes no argument.
unsafe fn ioctl_none(fd: BorrowedFd<'_>, req: c_ulong) -> Result<c_int, Errno> {
    // SAFETY: the caller vouches that the request takes no argument.
    check(unsafe { vmm_sys_util::ioctl::ioctl(&fd, req) })
}

/// `ioctl(fd, req, buf)` on a raw buffer that starts with a `u32 argsz`, as VFIO's
/// variable-length replies do (GET_INFO with capabilities, GET_REGION_INFO).
///
/// The kernel reads `minsz` bytes whatever `argsz` says, and writes up to `argsz` bytes; so an
/// `argsz` larger than the buffer is refused with `EFAULT`, and a buffer shorter than `minsz` is
/// padded in a scratch copy (the kernel then refuses it, `argsz < minsz`, and writes nothing).
///
/// # Safety
///
/// `req` must read at most `minsz` bytes and write at most `argsz` bytes at its argument.
unsafe fn ioctl_argsz_buf(
    fd: BorrowedFd<'_>,
    req: c_ulong,
    buf: &mut [u8],
    minsz: usize,
) -> Result<c_int, Errno> {
    let argsz = buf
        .get(0..4)
        .map(|b| u32::from_ne_bytes([b[0], b[1], b[2], b[3]]) as usize)
        .ok_or(Errno::EFAULT)?;
    if argsz > buf.len() {
        return Err(Errno::EFAULT);
    }
    if buf.len() < minsz {
        let mut scratch = vec![0u8; minsz];
        scratch[..buf.len()].copy_from_slice(buf);
        // SAFETY: the scratch buffer holds `minsz` bytes, all the kernel reads; it writes at
        // most `argsz <= buf.len() < minsz` bytes.
        let ret = check(unsafe {
            vmm_sys_util::ioctl::ioctl_with_mut_ptr(&fd, req, scratch.as_mut_ptr())
        });
        let len = buf.len();
        buf.copy_from_slice(&scratch[..len]);
        return ret;
    }
    // SAFETY: the buffer holds at least `minsz` bytes (what the kernel reads) and at least
    // `argsz` bytes (what it may write).
    check(unsafe { vmm_sys_util::ioctl::ioctl_with_mut_ptr(&fd, req, buf.as_mut_ptr()) })
}

/// How many `u64` words of bitmap the kernel's `iova_bitmap` (iommufd dirty bitmaps, VFIO DMA
/// logging reports) may write for `length` bytes at `page_size` bytes per bit: it indexes bits by
/// `offset >> ffs(page_size)` and covers `length - 1` (wrapping, as the kernel's `size_t` does).
/// `None` when `page_size` is 0, which the kernel refuses before touching the bitmap.
pub fn iova_bitmap_words(length: u64, page_size: u64) -> Option<u64> {
    if page_size == 0 {
        return None;
    }
    let shift = page_size.trailing_zeros();
    Some((length.wrapping_sub(1) >> shift) / 64 + 1)
}

/// Refuses a bitmap slice shorter than what the kernel may write for `length` / `page_size`.
fn check_bitmap_len(bitmap: &[u64], length: u64, page_size: u64) -> Result<(), Errno> {
    match iova_bitmap_words(length, page_size) {
        Some(words) if words > bitmap.len() as u64 => Err(Errno::EFAULT),
        _ => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn io_encoding_is_type_and_number_only() {
        assert_eq!(io(0x80), 0x3b80);
        assert_eq!(io(100 + 21), 0x3b79);
    }

    #[test]
    fn bitmap_words_follow_the_kernels_iova_bitmap() {
        // 64 pages of 4 KiB fit one word; the 65th needs a second.
        assert_eq!(iova_bitmap_words(64 * 4096, 4096), Some(1));
        assert_eq!(iova_bitmap_words(65 * 4096, 4096), Some(2));
        // A partial last page still needs its bit.
        assert_eq!(iova_bitmap_words(64 * 4096 + 1, 4096), Some(2));
        // Length 0 wraps to the whole address space in the kernel: no slice is long enough.
        assert_eq!(iova_bitmap_words(0, 4096), Some((u64::MAX >> 12) / 64 + 1));
        assert_eq!(iova_bitmap_words(4096, 0), None);
    }

    #[test]
    fn short_bitmaps_are_refused_and_exact_ones_accepted() {
        let bitmap = [0u64; 2];
        assert_eq!(
            check_bitmap_len(&bitmap, 129 * 4096, 4096),
            Err(Errno::EFAULT)
        );
        assert_eq!(check_bitmap_len(&bitmap, 128 * 4096, 4096), Ok(()));
        assert_eq!(check_bitmap_len(&bitmap, 0, 4096), Err(Errno::EFAULT));
        assert_eq!(check_bitmap_len(&[], 4096, 0), Ok(()));
    }

    #[test]
    fn argsz_larger_than_the_buffer_is_refused_before_the_ioctl() {
        // /dev/null answers every ioctl with ENOTTY: EFAULT shows the guard answered first.
        let file = std::fs::File::open("/dev/null").unwrap();
        use std::os::fd::AsFd;
        let mut buf = [0u8; 24];
        buf[0..4].copy_from_slice(&64u32.to_ne_bytes());
        // SAFETY: the request number is irrelevant: the guard refuses before any ioctl.
        let r = unsafe { ioctl_argsz_buf(file.as_fd(), io(0x70), &mut buf, 16) };
        assert_eq!(r, Err(Errno::EFAULT));
        let mut tiny = [0u8; 2];
        // SAFETY: as above.
        let r = unsafe { ioctl_argsz_buf(file.as_fd(), io(0x70), &mut tiny, 16) };
        assert_eq!(r, Err(Errno::EFAULT));
    }
}
