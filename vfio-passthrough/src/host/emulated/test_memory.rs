//! Test helper: anonymous mappings unmapped on drop, and holes that stay holes.
//!
//! A test that punches a one-page hole into its mapping and then expects `EFAULT` there races
//! every other test thread that maps a page: the kernel may place that page in the hole. Every
//! mapping made here therefore takes [`MAP_LOCK`] briefly, and a [`Hole`] holds it for as long
//! as the test relies on the hole. (Allocator mmaps are far larger than a page and never fit.)

use std::ptr;
use std::sync::{Mutex, MutexGuard};

static MAP_LOCK: Mutex<()> = Mutex::new(());

fn map_lock() -> MutexGuard<'static, ()> {
    MAP_LOCK.lock().unwrap_or_else(|e| e.into_inner())
}

/// A page unmapped from a [`Mapping`]; no test maps memory while it is alive.
#[derive(Debug)]
#[must_use = "the hole is only guaranteed while the guard lives"]
pub(crate) struct Hole {
    _guard: MutexGuard<'static, ()>,
}

/// An `mmap`-ed region owned by a test.
#[derive(Debug)]
pub(crate) struct Mapping {
    addr: u64,
    len: u64,
}

impl Mapping {
    fn map(len: u64, prot: i32, flags: i32) -> Self {
        let _guard = map_lock();
        // SAFETY: a fresh anonymous mapping chosen by the kernel; nothing else is affected.
        let p = unsafe { libc::mmap(ptr::null_mut(), len as usize, prot, flags, -1, 0) };
        assert_ne!(p, libc::MAP_FAILED, "mmap of {len:#x} bytes failed");
        Mapping {
            addr: p as u64,
            len,
        }
    }

    /// Private anonymous memory with protection `prot`.
    pub(crate) fn anon(len: u64, prot: i32) -> Self {
        Self::map(len, prot, libc::MAP_PRIVATE | libc::MAP_ANONYMOUS)
    }

    /// Shared anonymous memory (a shmem file), readable and writable.
    pub(crate) fn shared_anon(len: u64) -> Self {
        Self::map(
            len,
            libc::PROT_READ | libc::PROT_WRITE,
            libc::MAP_SHARED | libc::MAP_ANONYMOUS,
        )
    }

    /// Start address.
    pub(crate) fn addr(&self) -> u64 {
        self.addr
    }

    /// Unmaps page `index` of the region, leaving a hole that no other test mapping can take
    /// while the returned guard lives.
    pub(crate) fn unmap_page(&self, index: u64) -> Hole {
        let guard = map_lock();
        let page = super::PAGE_SIZE;
        assert!(index * page < self.len);
        // SAFETY: the page lies inside this mapping, which only this test uses.
        let rc = unsafe {
            libc::munmap(
                (self.addr + index * page) as *mut libc::c_void,
                page as usize,
            )
        };
        assert_eq!(rc, 0);
        Hole { _guard: guard }
    }
}

impl Drop for Mapping {
    fn drop(&mut self) {
        // SAFETY: unmapping the region this value created (holes in it are fine for munmap).
        unsafe { libc::munmap(self.addr as *mut libc::c_void, self.len as usize) };
    }
}
