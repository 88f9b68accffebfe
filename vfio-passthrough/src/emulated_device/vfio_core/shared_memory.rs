//! [`SharedMemory`]: a memfd that backs the mmap-able parts of an emulated device (BAR memory,
//! the v1 migration data window), so that `region_mmap` can hand out real mappings of the same
//! bytes the device model reads and writes.
//!
//! The model never maps the file itself: it uses `pread`/`pwrite`, which see every store made
//! through a user's mapping (they share the page cache), so no Rust reference ever points at
//! memory that another thread may be writing.

use std::fs::File;
use std::io;
use std::os::fd::{AsFd, BorrowedFd, FromRawFd};
use std::os::unix::fs::FileExt;

use crate::errno::Errno;
use crate::vfio::MmapArea;

/// A fixed-size shared memory file.
#[derive(Debug)]
pub struct SharedMemory {
    file: File,
    size: u64,
}

/// Why shared memory could not be created or accessed.
#[derive(Debug, thiserror::Error)]
pub enum SharedMemoryError {
    /// `memfd_create` or sizing the file failed.
    #[error("cannot create {size:#x} bytes of shared memory '{name}': {source}")]
    Create {
        /// The memfd's name.
        name: String,
        /// The size asked for.
        size: u64,
        /// The host error.
        #[source]
        source: io::Error,
    },
}

impl SharedMemory {
    /// A zero-filled memfd of `size` bytes named `name` (visible in `/proc/<pid>/maps`).
    pub fn new(name: &str, size: u64) -> Result<Self, SharedMemoryError> {
        let create_err = |source| SharedMemoryError::Create {
            name: name.to_string(),
            size,
            source,
        };
        let cname = std::ffi::CString::new(name.replace('\0', "?"))
            .map_err(|e| create_err(io::Error::new(io::ErrorKind::InvalidInput, e)))?;
        // SAFETY: memfd_create with a valid NUL-terminated name; it touches no memory of ours.
        let fd = unsafe { libc::memfd_create(cname.as_ptr(), libc::MFD_CLOEXEC) };
        if fd < 0 {
            return Err(create_err(io::Error::last_os_error()));
        }
        // SAFETY: `fd` is a fresh descriptor that nothing else owns.
        let file = unsafe { File::from_raw_fd(fd) };
        file.set_len(size).map_err(create_err)?;
        Ok(SharedMemory { file, size })
    }

    /// Bytes of the file.
    pub fn size(&self) -> u64 {
        self.size
    }

    /// The file, for mapping.
    pub fn fd(&self) -> BorrowedFd<'_> {
        self.file.as_fd()
    }

    /// Reads `buf.len()` bytes at `offset`. `EINVAL` outside the file.
    pub fn read(&self, offset: u64, buf: &mut [u8]) -> Result<(), Errno> {
        self.check(offset, buf.len())?;
        self.file
            .read_exact_at(buf, offset)
            .map_err(|e| Errno::from_io(&e))
    }

    /// Writes `data` at `offset`. `EINVAL` outside the file.
    pub fn write(&self, offset: u64, data: &[u8]) -> Result<(), Errno> {
        self.check(offset, data.len())?;
        self.file
            .write_all_at(data, offset)
            .map_err(|e| Errno::from_io(&e))
    }

    /// Zeroes `[offset, offset + len)`.
    pub fn zero(&self, offset: u64, len: u64) -> Result<(), Errno> {
        const CHUNK: u64 = 64 << 10;
        let zeros = vec![0u8; CHUNK.min(len) as usize];
        let mut at = offset;
        let end = offset.checked_add(len).ok_or(Errno::EINVAL)?;
        while at < end {
            let n = (end - at).min(CHUNK) as usize;
            self.write(at, &zeros[..n])?;
            at += n as u64;
        }
        Ok(())
    }

    /// Maps `[offset, offset + len)` of the file, shared.
    pub fn map(&self, offset: u64, len: u64, writable: bool) -> Result<MmapArea, Errno> {
        let len_usize = usize::try_from(len).map_err(|_| Errno::EINVAL)?;
        self.check(offset, len_usize)?;
        MmapArea::map(self.fd(), offset, len_usize, writable)
    }

    fn check(&self, offset: u64, len: usize) -> Result<(), Errno> {
        match offset.checked_add(len as u64) {
            Some(end) if end <= self.size => Ok(()),
            _ => Err(Errno::EINVAL),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stores_through_a_mapping_are_seen_by_pread() {
        let mem = SharedMemory::new("shared-memory-test", 0x2000).unwrap();
        let area = mem.map(0x1000, 0x1000, true).unwrap();
        area.write(8, b"abcd").unwrap();
        let mut back = [0u8; 4];
        mem.read(0x1008, &mut back).unwrap();
        assert_eq!(&back, b"abcd");
        mem.zero(0x1000, 0x1000).unwrap();
        let mut via_map = [0xffu8; 4];
        area.read(8, &mut via_map).unwrap();
        assert_eq!(via_map, [0; 4]);
    }

    #[test]
    fn accesses_past_the_end_are_refused() {
        let mem = SharedMemory::new("shared-memory-test", 0x1000).unwrap();
        let mut b = [0u8; 2];
        assert_eq!(mem.read(0xfff, &mut b), Err(Errno::EINVAL));
        assert_eq!(mem.write(u64::MAX, &b), Err(Errno::EINVAL));
        assert_eq!(mem.map(0, 0x2000, false).err(), Some(Errno::EINVAL));
    }
}
