//! Memory the cases map: `mmap`-ed buffers owned by the case's [`Memory`] and unmapped after
//! the context is closed.

use std::fs::File;
use std::os::fd::{AsRawFd, FromRawFd};
use std::ptr;

/// The CPU page size the suite assumes (x86-64).
pub const PAGE: u64 = 4096;

/// A region of this process's memory.
#[derive(Debug)]
pub struct Buffer {
    /// Start of the whole reservation (what to unmap).
    base: u64,
    /// Length of the whole reservation.
    total: u64,
    /// The usable, aligned start.
    addr: u64,
    len: u64,
    /// The memfd behind the buffer, for memfd buffers.
    file: Option<File>,
}

impl Buffer {
    /// First byte.
    pub fn addr(&self) -> u64 {
        self.addr
    }

    /// Bytes.
    pub fn len(&self) -> u64 {
        self.len
    }

    /// True for a zero-length buffer (never made by `Memory`).
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Address of page `index`.
    pub fn page(&self, index: u64) -> u64 {
        self.addr + index * PAGE
    }

    /// The memfd behind a buffer made by `Memory::memfd`.
    pub fn file(&self) -> Option<&File> {
        self.file.as_ref()
    }

    /// Unmaps `count` pages from page `first`, leaving a hole.
    pub fn unmap_pages(&self, first: u64, count: u64) {
        assert!(
            (first + count) * PAGE <= self.len,
            "hole outside the buffer"
        );
        // SAFETY: the pages lie inside this buffer's own mapping, which nothing else uses.
        let rc = unsafe {
            libc::munmap(
                self.page(first) as *mut libc::c_void,
                (count * PAGE) as usize,
            )
        };
        assert_eq!(rc, 0, "munmap failed");
    }

    /// Changes the protection of the whole buffer.
    pub fn protect(&self, prot: i32) {
        // SAFETY: changes the protection of this buffer's own mapping only.
        let rc = unsafe { libc::mprotect(self.addr as *mut libc::c_void, self.len as usize, prot) };
        assert_eq!(rc, 0, "mprotect failed");
    }
}

impl Drop for Buffer {
    fn drop(&mut self) {
        // SAFETY: unmaps the reservation this buffer made (holes in it are fine).
        unsafe { libc::munmap(self.base as *mut libc::c_void, self.total as usize) };
    }
}

/// The buffers of one case.
#[derive(Debug, Default)]
pub struct Memory {
    buffers: Vec<Buffer>,
}

impl Memory {
    /// `pages` pages of shared anonymous memory (as the kernel selftests use), populated,
    /// aligned to `align` bytes (a power of two, at least a page); returns the index.
    pub fn alloc(&mut self, pages: u64, align: u64) -> usize {
        let len = pages * PAGE;
        let total = len + align;
        let flags = libc::MAP_PRIVATE | libc::MAP_ANONYMOUS | libc::MAP_NORESERVE;
        // SAFETY: reserves fresh address space chosen by the kernel.
        let base = unsafe {
            libc::mmap(
                ptr::null_mut(),
                total as usize,
                libc::PROT_NONE,
                flags,
                -1,
                0,
            )
        };
        assert_ne!(base, libc::MAP_FAILED, "address space reservation failed");
        let base = base as u64;
        let addr = base.next_multiple_of(align);
        // SAFETY: replaces part of the reservation just made with shared anonymous memory.
        let p = unsafe {
            libc::mmap(
                addr as *mut libc::c_void,
                len as usize,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_SHARED | libc::MAP_ANONYMOUS | libc::MAP_FIXED | libc::MAP_POPULATE,
                -1,
                0,
            )
        };
        assert_eq!(p as u64, addr, "mmap of the buffer failed");
        self.buffers.push(Buffer {
            base,
            total,
            addr,
            len,
            file: None,
        });
        self.buffers.len() - 1
    }

    /// A memfd of `pages` pages, also mapped shared into this process; returns the index.
    pub fn memfd(&mut self, pages: u64) -> usize {
        let len = pages * PAGE;
        let name = c"conformance";
        // SAFETY: creates a new memfd, owned by the File below.
        let fd = unsafe { libc::memfd_create(name.as_ptr(), libc::MFD_CLOEXEC) };
        assert!(fd >= 0, "memfd_create failed");
        // SAFETY: `fd` is new and owned by nobody else.
        let file = unsafe { File::from_raw_fd(fd) };
        file.set_len(len).expect("memfd resize");
        // SAFETY: maps the memfd just created, at an address the kernel chooses.
        let p = unsafe {
            libc::mmap(
                ptr::null_mut(),
                len as usize,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_SHARED | libc::MAP_POPULATE,
                file.as_raw_fd(),
                0,
            )
        };
        assert_ne!(p, libc::MAP_FAILED, "mmap of the memfd failed");
        self.buffers.push(Buffer {
            base: p as u64,
            total: len,
            addr: p as u64,
            len,
            file: Some(file),
        });
        self.buffers.len() - 1
    }

    /// Buffer `index`.
    pub fn get(&self, index: usize) -> &Buffer {
        &self.buffers[index]
    }
}
