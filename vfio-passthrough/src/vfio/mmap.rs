//! [`MmapArea`]: a mapping of part of a device region into the process.
//!
//! Device memory changes under our feet (the device writes it, the guest writes it through
//! KVM), so it is only ever accessed with volatile operations on raw pointers, never through
//! Rust references.

use std::os::fd::BorrowedFd;
use std::ptr::NonNull;

use crate::errno::Errno;

/// An owned `mmap` of device memory, unmapped on drop.
#[derive(Debug)]
pub struct MmapArea {
    addr: NonNull<u8>,
    len: usize,
}

// SAFETY: the mapping is plain shared memory; all accesses go through volatile operations on raw
// pointers, so sharing the address between threads creates no Rust-level aliasing.
unsafe impl Send for MmapArea {}
// SAFETY: as above; `&MmapArea` only hands out the raw address and volatile accessors.
unsafe impl Sync for MmapArea {}

impl MmapArea {
    /// Maps `len` bytes of `fd` at file offset `offset`, shared, readable and, if asked,
    /// writable.
    pub fn map(fd: BorrowedFd<'_>, offset: u64, len: usize, writable: bool) -> Result<Self, Errno> {
        if len == 0 {
            return Err(Errno::EINVAL);
        }
        let offset = libc::off_t::try_from(offset).map_err(|_| Errno::EOVERFLOW)?;
        let prot = libc::PROT_READ | if writable { libc::PROT_WRITE } else { 0 };
        // SAFETY: a fresh shared mapping chosen by the kernel (addr NULL), so it cannot overlap
        // any memory Rust knows about; the fd is valid for the duration of the call.
        let addr = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                len,
                prot,
                libc::MAP_SHARED,
                fd_raw(fd),
                offset,
            )
        };
        if addr == libc::MAP_FAILED {
            return Err(Errno::last());
        }
        let addr = NonNull::new(addr.cast::<u8>()).ok_or(Errno::EFAULT)?;
        Ok(Self { addr, len })
    }

    /// The host address of the mapping (for KVM memory slots).
    pub fn as_ptr(&self) -> *mut u8 {
        self.addr.as_ptr()
    }

    /// Length in bytes.
    pub fn len(&self) -> usize {
        self.len
    }

    /// Always false: empty mappings cannot be created.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Reads `buf.len()` bytes at `offset` with volatile byte loads. `EINVAL` outside the area.
    pub fn read(&self, offset: usize, buf: &mut [u8]) -> Result<(), Errno> {
        self.check(offset, buf.len())?;
        for (i, b) in buf.iter_mut().enumerate() {
            // SAFETY: `check` keeps `offset + i` inside the live mapping; a volatile load of
            // device memory creates no reference to it.
            *b = unsafe { self.addr.as_ptr().add(offset + i).read_volatile() };
        }
        Ok(())
    }

    /// Writes `buf` at `offset` with volatile byte stores. `EINVAL` outside the area.
    pub fn write(&self, offset: usize, buf: &[u8]) -> Result<(), Errno> {
        self.check(offset, buf.len())?;
        for (i, b) in buf.iter().enumerate() {
            // SAFETY: as in `read`; the mapping was created writable or the kernel faults the
            // store (SIGSEGV) — callers only write areas they mapped writable.
            unsafe { self.addr.as_ptr().add(offset + i).write_volatile(*b) };
        }
        Ok(())
    }

    /// Reads the naturally aligned `u32` at `offset` with one 4-byte volatile load, as device
    /// registers need (byte loads of a 32-bit register read garbage on many devices).
    /// `EINVAL` outside the area or misaligned.
    pub fn read_u32(&self, offset: usize) -> Result<u32, Errno> {
        self.check(offset, 4)?;
        if offset % 4 != 0 {
            return Err(Errno::EINVAL);
        }
        // SAFETY: inside the live mapping (checked), 4-byte aligned (the mapping is page
        // aligned); a volatile load of device memory creates no reference to it.
        Ok(unsafe { self.addr.as_ptr().add(offset).cast::<u32>().read_volatile() })
    }

    /// Writes the naturally aligned `u32` at `offset` with one 4-byte volatile store.
    /// `EINVAL` outside the area or misaligned.
    pub fn write_u32(&self, offset: usize, value: u32) -> Result<(), Errno> {
        self.check(offset, 4)?;
        if offset % 4 != 0 {
            return Err(Errno::EINVAL);
        }
        // SAFETY: as in `read_u32`; callers only write areas they mapped writable.
        unsafe {
            self.addr
                .as_ptr()
                .add(offset)
                .cast::<u32>()
                .write_volatile(value)
        };
        Ok(())
    }

    fn check(&self, offset: usize, len: usize) -> Result<(), Errno> {
        match offset.checked_add(len) {
            Some(end) if end <= self.len => Ok(()),
            _ => Err(Errno::EINVAL),
        }
    }
}

impl Drop for MmapArea {
    fn drop(&mut self) {
        // SAFETY: unmaps exactly the mapping this value owns; nothing else refers to it once the
        // owner is gone (callers remove KVM slots before dropping, see the device code).
        unsafe { libc::munmap(self.addr.as_ptr().cast(), self.len) };
    }
}

fn fd_raw(fd: BorrowedFd<'_>) -> i32 {
    use std::os::fd::AsRawFd;
    fd.as_raw_fd()
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::fd::AsFd;

    fn memfd(len: u64) -> std::fs::File {
        use std::os::fd::FromRawFd;
        // SAFETY: memfd_create with a static NUL-terminated name; on success we own the fd.
        let fd = unsafe { libc::memfd_create(c"mmap-area-test".as_ptr(), libc::MFD_CLOEXEC) };
        assert!(fd >= 0, "memfd_create failed");
        // SAFETY: `fd` is a fresh descriptor nobody else owns.
        let f = unsafe { std::fs::File::from_raw_fd(fd) };
        f.set_len(len).unwrap();
        f
    }

    #[test]
    fn writes_through_the_mapping_reach_the_file() {
        use std::os::unix::fs::FileExt;
        let f = memfd(8192);
        let area = MmapArea::map(f.as_fd(), 4096, 4096, true).unwrap();
        area.write(16, b"dma!").unwrap();
        let mut back = [0u8; 4];
        f.read_at(&mut back, 4096 + 16).unwrap();
        assert_eq!(&back, b"dma!");
        let mut via_map = [0u8; 4];
        area.read(16, &mut via_map).unwrap();
        assert_eq!(&via_map, b"dma!");
    }

    #[test]
    fn word_accesses_are_single_aligned_loads_and_stores() {
        use std::os::unix::fs::FileExt;
        let f = memfd(4096);
        let area = MmapArea::map(f.as_fd(), 0, 4096, true).unwrap();
        area.write_u32(8, 0x0100_00ed).unwrap();
        let mut back = [0u8; 4];
        f.read_at(&mut back, 8).unwrap();
        assert_eq!(u32::from_ne_bytes(back), 0x0100_00ed);
        assert_eq!(area.read_u32(8), Ok(0x0100_00ed));
        assert_eq!(area.read_u32(6), Err(Errno::EINVAL));
        assert_eq!(area.write_u32(4094, 1), Err(Errno::EINVAL));
    }

    #[test]
    fn accesses_outside_the_area_are_refused() {
        let f = memfd(4096);
        let area = MmapArea::map(f.as_fd(), 0, 4096, false).unwrap();
        let mut b = [0u8; 2];
        assert_eq!(area.read(4095, &mut b), Err(Errno::EINVAL));
        assert_eq!(area.read(usize::MAX, &mut b), Err(Errno::EINVAL));
        assert_eq!(
            MmapArea::map(f.as_fd(), 0, 0, false).err(),
            Some(Errno::EINVAL)
        );
    }
}
