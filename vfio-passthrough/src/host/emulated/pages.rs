//! [`Pages`]: the memory behind one or more areas (the kernel's `struct iopt_pages`).
//!
//! A `Pages` covers a page-aligned run of process memory (`IOMMU_IOAS_MAP`) or of a memfd
//! (`IOMMU_IOAS_MAP_FILE`), and is shared by every area made from it by `IOMMU_IOAS_COPY`, in
//! any IOAS of the context. Its pages are pinned only while some area using them is loaded into
//! a domain, and then exactly once whatever the number of such areas: `load`/`unload` count
//! loads per page index, and only the transitions 0 -> 1 and 1 -> 0 pin, charge, unpin and
//! uncharge. A failed load changes nothing.

use std::collections::BTreeMap;
use std::collections::btree_map::Entry;
use std::fmt;
use std::fs::File;
use std::os::fd::AsRawFd;
use std::sync::{Arc, Mutex, MutexGuard};

use crate::errno::Errno;

use super::accounting::AccountMode;
use super::host::EmulatedHost;
use super::range_count::RangeCount;
use super::vma::{PageIdentity, PageSource, page_floor};
use super::{PAGE_SHIFT, PAGE_SIZE, user_memory};

/// Where the memory of a [`Pages`] comes from.
enum Backing {
    /// Process memory from `uptr` (page aligned).
    User { uptr: u64 },
    /// A memfd (or other shmem/hugetlbfs file) from byte `start` (page aligned).
    File {
        file: File,
        start: u64,
        dev: u64,
        ino: u64,
    },
}

impl fmt::Debug for Backing {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Backing::User { uptr } => write!(f, "User({uptr:#x})"),
            Backing::File {
                file, start, ino, ..
            } => write!(
                f,
                "File(fd {}, ino {ino}, start {start:#x})",
                file.as_raw_fd()
            ),
        }
    }
}

/// What is pinned: runs of page indexes with the identity of their first page.
#[derive(Debug, Default)]
struct PagesState {
    /// Per page index: how many loaded areas cover it.
    loaded: RangeCount,
    /// index start -> (index end, identity of the start page); identities are linear within a
    /// run (one VMA, or one file).
    pinned: BTreeMap<u64, (u64, PageIdentity)>,
}

/// The memory behind areas: a page-aligned run of process memory or of a memfd.
pub struct Pages {
    host: Arc<EmulatedHost>,
    backing: Backing,
    npages: u64,
    writable: bool,
    account: AccountMode,
    state: Mutex<PagesState>,
}

impl fmt::Debug for Pages {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Pages")
            .field("backing", &self.backing)
            .field("npages", &self.npages)
            .field("writable", &self.writable)
            .finish_non_exhaustive()
    }
}

/// `iopt_alloc_pages`' length checks: 0 or more than `SIZE_MAX - PAGE_SIZE` -> `EINVAL`;
/// `base + length` overflowing -> `EOVERFLOW`.
fn check_length(base: u64, length: u64) -> Result<(), Errno> {
    if length == 0 || length > u64::MAX - PAGE_SIZE {
        return Err(Errno::EINVAL);
    }
    base.checked_add(length).ok_or(Errno::EOVERFLOW)?;
    Ok(())
}

impl Pages {
    /// Pages for `length` bytes of process memory at `uptr` (`iopt_alloc_pages`).
    pub(crate) fn user(
        host: &Arc<EmulatedHost>,
        uptr: u64,
        length: u64,
        writable: bool,
        account: AccountMode,
    ) -> Result<Arc<Self>, Errno> {
        check_length(uptr, length)?;
        let base = page_floor(uptr);
        Ok(Arc::new(Pages {
            host: host.clone(),
            backing: Backing::User { uptr: base },
            npages: (length + (uptr - base)).div_ceil(PAGE_SIZE),
            writable,
            account,
            state: Mutex::new(PagesState::default()),
        }))
    }

    /// Pages for `length` bytes of `file` from byte `start` (`iopt_alloc_file_pages`); the
    /// file is a duplicate owned by the pages.
    pub(crate) fn file(
        host: &Arc<EmulatedHost>,
        file: File,
        start: u64,
        length: u64,
        writable: bool,
        account: AccountMode,
    ) -> Result<Arc<Self>, Errno> {
        if length != 0 {
            start.checked_add(length - 1).ok_or(Errno::EOVERFLOW)?;
        }
        let base = page_floor(start);
        check_length(start - base, length)?;
        let meta = file.metadata().map_err(|e| Errno::from_io(&e))?;
        use std::os::unix::fs::MetadataExt;
        Ok(Arc::new(Pages {
            host: host.clone(),
            backing: Backing::File {
                dev: meta.dev(),
                ino: meta.ino(),
                file,
                start: base,
            },
            npages: (length + (start - base)).div_ceil(PAGE_SIZE),
            writable,
            account,
            state: Mutex::new(PagesState::default()),
        }))
    }

    /// Number of pages.
    pub fn npages(&self) -> u64 {
        self.npages
    }

    /// True if the pages may be written by devices (mapped `WRITEABLE` when created).
    pub fn writable(&self) -> bool {
        self.writable
    }

    /// Address of the first byte: the page-aligned user VA, or the page-aligned file offset.
    pub fn base(&self) -> u64 {
        match &self.backing {
            Backing::User { uptr } => *uptr,
            Backing::File { start, .. } => *start,
        }
    }

    /// True for memfd pages (`IOMMU_IOAS_MAP_FILE`).
    pub fn is_file(&self) -> bool {
        matches!(self.backing, Backing::File { .. })
    }

    fn state(&self) -> MutexGuard<'_, PagesState> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Copies from byte `offset` of the pages into `buf`, as a device read would (through
    /// `process_vm_readv` or `pread`, never a reference). `EFAULT` past the end or on memory
    /// that is gone.
    pub fn read(&self, offset: u64, buf: &mut [u8]) -> Result<(), Errno> {
        self.check_span(offset, buf.len() as u64)?;
        match &self.backing {
            Backing::User { uptr } => user_memory::read(uptr + offset, buf),
            Backing::File { file, start, .. } => user_memory::pread(file, start + offset, buf),
        }
    }

    /// Copies `buf` to byte `offset` of the pages, as a device write would.
    pub fn write(&self, offset: u64, buf: &[u8]) -> Result<(), Errno> {
        self.check_span(offset, buf.len() as u64)?;
        match &self.backing {
            Backing::User { uptr } => user_memory::write(uptr + offset, buf),
            Backing::File { file, start, .. } => user_memory::pwrite(file, start + offset, buf),
        }
    }

    /// Atomically replaces the 64-bit word at byte `offset` with `new` if it holds `current`,
    /// as the IOMMU updates a table entry; returns the value it held. `EFAULT` past the end,
    /// for pages not writable by devices, or for process memory that is no longer mapped
    /// writable (checked just before the exchange, as the kernel's pin would have); `EINVAL`
    /// for an offset that is not 8-byte aligned.
    pub(crate) fn compare_exchange_u64(
        &self,
        offset: u64,
        current: u64,
        new: u64,
    ) -> Result<u64, Errno> {
        self.check_span(offset, 8)?;
        if !self.writable {
            return Err(Errno::EFAULT);
        }
        match &self.backing {
            Backing::User { uptr } => {
                let addr = uptr + offset;
                self.host.vmas().for_each_piece(addr, 8, true, |_| {})?;
                user_memory::compare_exchange_u64(addr, current, new)
            }
            Backing::File { file, start, .. } => {
                user_memory::file_compare_exchange_u64(file, start + offset, current, new)
            }
        }
    }

    fn check_span(&self, offset: u64, len: u64) -> Result<(), Errno> {
        match offset.checked_add(len) {
            Some(end) if end <= self.npages << PAGE_SHIFT => Ok(()),
            _ => Err(Errno::EFAULT),
        }
    }

    /// The identity of the pinned memory at byte `offset`, or `None` if that page is not
    /// pinned.
    pub fn pinned_identity(&self, offset: u64) -> Option<PageIdentity> {
        let index = offset >> PAGE_SHIFT;
        let st = self.state();
        let (&start, &(end, first)) = st.pinned.range(..=index).next_back()?;
        (index < end).then(|| PageIdentity {
            source: first.source,
            offset: first.offset + ((index - start) << PAGE_SHIFT) + (offset & (PAGE_SIZE - 1)),
        })
    }

    /// How many areas have page `index` loaded into a domain.
    pub fn load_count(&self, index: u64) -> u32 {
        self.state().loaded.count_at(index)
    }

    /// Loads page indexes `[first, last]` for an area entering a domain: pins and charges the
    /// pages not yet pinned. `EFAULT` for memory `pin_user_pages` would refuse, `EINVAL` for a
    /// file that cannot be pinned or a page past its end, `ENOMEM` past the memlock limit.
    /// Nothing changes on error.
    pub(crate) fn load(&self, first: u64, last: u64) -> Result<(), Errno> {
        debug_assert!(first <= last && last < self.npages);
        let mut st = self.state();
        // Usually one piece (one range not yet loaded, in one VMA): kept aside, the others in
        // a vector that then stays empty and unallocated.
        let mut first_piece = None;
        let mut more = Vec::new();
        for (s, e) in st.loaded.zero_ranges(first, last + 1) {
            self.resolve(s, e, &mut |piece| match first_piece {
                None => first_piece = Some(piece),
                Some(_) => more.push(piece),
            })?;
        }
        let pieces = || first_piece.iter().chain(&more);
        let npages = pieces().map(|(s, e, _)| e - s).sum();
        let runs = pieces().map(|&(s, e, id)| (id, e - s));
        self.host.pin(self.account, npages, runs)?;
        st.loaded.increment(first, last + 1);
        for &(s, e, id) in pieces() {
            st.pinned.insert(s, (e, id));
        }
        Ok(())
    }

    /// Undoes one [`Pages::load`] of `[first, last]`: unpins and uncharges the pages no other
    /// loaded area covers.
    pub(crate) fn unload(&self, first: u64, last: u64) {
        let mut st = self.state();
        let PagesState { loaded, pinned } = &mut *st;
        let mut unpinner = self.host.unpinner(self.account);
        loaded.decrement(first, last + 1, |s, e| {
            // Most often the pages were pinned by one load of exactly this range.
            if let Entry::Occupied(run) = pinned.entry(s)
                && run.get().0 == e
            {
                let (_, id) = run.remove();
                unpinner.unpin(id, e - s);
                return;
            }
            split_pinned(pinned, s);
            split_pinned(pinned, e);
            while let Some((&k, &(end, id))) = pinned.range(s..e).next() {
                pinned.remove(&k);
                unpinner.unpin(id, end - k);
            }
        });
    }

    /// Splits page runs `[first, last)` into pinnable pieces with their identities, handed to
    /// `out` in order (some may have been before an error).
    fn resolve(
        &self,
        first: u64,
        end: u64,
        out: &mut impl FnMut((u64, u64, PageIdentity)),
    ) -> Result<(), Errno> {
        match &self.backing {
            Backing::User { uptr } => {
                let start = uptr + (first << PAGE_SHIFT);
                let len = (end - first) << PAGE_SHIFT;
                self.host
                    .vmas()
                    .for_each_piece(start, len, self.writable, |p| {
                        out((
                            (p.start - uptr) >> PAGE_SHIFT,
                            (p.end - uptr) >> PAGE_SHIFT,
                            p.identity,
                        ));
                    })
            }
            Backing::File {
                file,
                start,
                dev,
                ino,
            } => {
                check_pinnable_file(file, start + ((end - 1) << PAGE_SHIFT))?;
                out((
                    first,
                    end,
                    PageIdentity {
                        source: PageSource::File {
                            dev: *dev,
                            ino: *ino,
                        },
                        offset: start + (first << PAGE_SHIFT),
                    },
                ));
                Ok(())
            }
        }
    }
}

/// `memfd_pin_folios`: only shmem and hugetlbfs files can be pinned (they are the ones that
/// take seals), and not past their end (`EINVAL` for both).
fn check_pinnable_file(file: &File, last_page_offset: u64) -> Result<(), Errno> {
    // SAFETY: F_GET_SEALS only reads the seals of the open file `file`.
    let seals = unsafe { libc::fcntl(file.as_raw_fd(), libc::F_GET_SEALS) };
    if seals < 0 {
        return Err(Errno::EINVAL);
    }
    let size = file.metadata().map_err(|e| Errno::from_io(&e))?.len();
    if last_page_offset >= size {
        return Err(Errno::EINVAL);
    }
    Ok(())
}

/// Splits the pinned run containing index `at` so a run starts there.
fn split_pinned(pinned: &mut BTreeMap<u64, (u64, PageIdentity)>, at: u64) {
    if let Some((&s, &(e, id))) = pinned.range(..at).next_back()
        && e > at
    {
        pinned.insert(s, (at, id));
        pinned.insert(
            at,
            (
                e,
                PageIdentity {
                    source: id.source,
                    offset: id.offset + ((at - s) << PAGE_SHIFT),
                },
            ),
        );
    }
}

impl Drop for Pages {
    fn drop(&mut self) {
        let st = self.state.get_mut().unwrap_or_else(|e| e.into_inner());
        debug_assert!(
            st.loaded.is_empty(),
            "pages dropped while loaded in a domain"
        );
        let mut unpinner = self.host.unpinner(self.account);
        for (&s, &(e, id)) in &st.pinned {
            unpinner.unpin(id, e - s);
        }
    }
}
