//! Reading and writing process memory the way the kernel does: by address, never through a
//! Rust reference.
//!
//! Memory mapped into an IOAS is shared with the guest and with device models that run on
//! other threads, so the emulated kernel must not form `&[u8]` over it. It copies with
//! `process_vm_readv` / `process_vm_writev` on its own pid, which behave like `copy_from_user`:
//! a bad address gives `EFAULT` instead of a crash. Memfd backings are read and written with
//! `pread` / `pwrite` on the emulated kernel's own duplicate of the file.
//!
//! One access cannot be a copy: the IOMMU sets accessed and dirty flags in a guest's
//! first-stage table with a locked compare-and-exchange, so a concurrent update by the guest is
//! never lost. [`compare_exchange_u64`] and [`file_compare_exchange_u64`] do that on the host
//! address (or a transient shared mapping of the file page) behind the entry.

use std::fs::File;
use std::os::fd::AsRawFd;
use std::os::unix::fs::FileExt;
use std::sync::atomic::{AtomicU64, Ordering};

use crate::errno::Errno;

use super::PAGE_SIZE;

/// Copies `buf.len()` bytes from process address `addr` into `buf`. `EFAULT` if any byte of
/// the source is not readable.
pub(crate) fn read(addr: u64, buf: &mut [u8]) -> Result<(), Errno> {
    let mut done = 0usize;
    while done < buf.len() {
        let local = libc::iovec {
            iov_base: buf[done..].as_mut_ptr().cast(),
            iov_len: buf.len() - done,
        };
        let remote = libc::iovec {
            iov_base: (addr + done as u64) as usize as *mut libc::c_void,
            iov_len: buf.len() - done,
        };
        // SAFETY: `local` describes the writable tail of `buf`; `remote` is only read by the
        // kernel through the page tables, which reports a bad address as EFAULT.
        let n = unsafe { libc::process_vm_readv(libc::getpid(), &local, 1, &remote, 1, 0) };
        match n {
            n if n > 0 => done += n as usize,
            0 => return Err(Errno::EFAULT),
            _ => return Err(Errno::last()),
        }
    }
    Ok(())
}

/// Copies `buf` to process address `addr`. `EFAULT` if any byte of the destination is not
/// writable.
pub(crate) fn write(addr: u64, buf: &[u8]) -> Result<(), Errno> {
    let mut done = 0usize;
    while done < buf.len() {
        let local = libc::iovec {
            iov_base: buf[done..].as_ptr() as *mut libc::c_void,
            iov_len: buf.len() - done,
        };
        let remote = libc::iovec {
            iov_base: (addr + done as u64) as usize as *mut libc::c_void,
            iov_len: buf.len() - done,
        };
        // SAFETY: `local` describes the readable tail of `buf` (the kernel only reads it);
        // `remote` is written by the kernel through the page tables, a bad address is EFAULT.
        let n = unsafe { libc::process_vm_writev(libc::getpid(), &local, 1, &remote, 1, 0) };
        match n {
            n if n > 0 => done += n as usize,
            0 => return Err(Errno::EFAULT),
            _ => return Err(Errno::last()),
        }
    }
    Ok(())
}

/// Reads `buf.len()` bytes of `file` at `offset`; `EFAULT` past the end of the file.
pub(crate) fn pread(file: &File, offset: u64, buf: &mut [u8]) -> Result<(), Errno> {
    file.read_exact_at(buf, offset).map_err(|e| match e.kind() {
        std::io::ErrorKind::UnexpectedEof => Errno::EFAULT,
        _ => Errno::from_io(&e),
    })
}

/// Writes `buf` to `file` at `offset`.
pub(crate) fn pwrite(file: &File, offset: u64, buf: &[u8]) -> Result<(), Errno> {
    file.write_all_at(buf, offset)
        .map_err(|e| Errno::from_io(&e))
}

/// Atomically stores `new` in the 64-bit word at process address `addr` if it holds `current`;
/// returns the value it held (the store happened exactly when that equals `current`).
///
/// The caller must have checked, just before, that `addr` is mapped writable in this process
/// (as `pin_user_pages(FOLL_WRITE)` would); `EINVAL` if `addr` is not 8-byte aligned.
pub(crate) fn compare_exchange_u64(addr: u64, current: u64, new: u64) -> Result<u64, Errno> {
    if addr % 8 != 0 {
        return Err(Errno::EINVAL);
    }
    let ptr = usize::try_from(addr).map_err(|_| Errno::EFAULT)? as *mut u64;
    // SAFETY: `ptr` is 8-byte aligned (checked above) and, as the caller checked just before,
    // lies in a writable mapping of this process: memory that an IOAS maps and the emulated
    // host counts as pinned while any domain maps it. The word is only ever touched through
    // atomic operations, copies by the kernel (`process_vm_*`) or the guest: no Rust reference
    // to it exists anywhere else, and the `AtomicU64` made here lives only for this call.
    let word = unsafe { AtomicU64::from_ptr(ptr) };
    Ok(
        match word.compare_exchange(current, new, Ordering::SeqCst, Ordering::SeqCst) {
            Ok(v) | Err(v) => v,
        },
    )
}

/// [`compare_exchange_u64`] on the 64-bit word at byte `offset` of `file` (a memfd or other
/// shmem / hugetlbfs file): through a shared mapping of the one page holding it, made for the
/// call, so the exchange is atomic with every other mapping of that page. `EFAULT` past the
/// end of the file, `EINVAL` for an unaligned offset, the `mmap` error otherwise (`EACCES`
/// for a file not open for writing).
pub(crate) fn file_compare_exchange_u64(
    file: &File,
    offset: u64,
    current: u64,
    new: u64,
) -> Result<u64, Errno> {
    if offset % 8 != 0 {
        return Err(Errno::EINVAL);
    }
    let size = file.metadata().map_err(|e| Errno::from_io(&e))?.len();
    if offset.checked_add(8).is_none_or(|end| end > size) {
        return Err(Errno::EFAULT);
    }
    let granule = mapping_granule(file);
    let page = offset & !(granule - 1);
    let len = usize::try_from(granule).map_err(|_| Errno::EINVAL)?;
    let at = libc::off_t::try_from(page).map_err(|_| Errno::EFAULT)?;
    // SAFETY: a new shared mapping of `len` bytes of our own descriptor at a page-aligned
    // offset; the kernel picks an unused address and nothing else refers to it.
    let base = unsafe {
        libc::mmap(
            std::ptr::null_mut(),
            len,
            libc::PROT_READ | libc::PROT_WRITE,
            libc::MAP_SHARED,
            file.as_raw_fd(),
            at,
        )
    };
    if base == libc::MAP_FAILED {
        return Err(Errno::last());
    }
    let ptr = base
        .cast::<u8>()
        .wrapping_add((offset - page) as usize)
        .cast::<u64>();
    // SAFETY: `ptr` is 8-byte aligned (the mapping is page aligned and `offset` is a multiple
    // of 8) and inside the mapping just made, which covers bytes of the file below its size
    // (checked above). Only this call uses the mapping, through atomic operations.
    let word = unsafe { AtomicU64::from_ptr(ptr) };
    let old = match word.compare_exchange(current, new, Ordering::SeqCst, Ordering::SeqCst) {
        Ok(v) | Err(v) => v,
    };
    // SAFETY: unmaps exactly the mapping made above, which nothing refers to any more.
    unsafe { libc::munmap(base, len) };
    Ok(old)
}

/// The unit a file can be mapped in: its filesystem block size (the huge page size on
/// hugetlbfs, `PAGE_SIZE` on shmem), `PAGE_SIZE` if that cannot be told.
fn mapping_granule(file: &File) -> u64 {
    // SAFETY: an all-zero `statfs` is a valid value for fstatfs to overwrite.
    let mut st: libc::statfs = unsafe { std::mem::zeroed() };
    // SAFETY: fstatfs writes one `struct statfs` into `st` for our own descriptor.
    let rc = unsafe { libc::fstatfs(file.as_raw_fd(), &mut st) };
    match u64::try_from(st.f_bsize) {
        Ok(b) if rc == 0 && b.is_power_of_two() && b >= PAGE_SIZE => b,
        _ => PAGE_SIZE,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::host::emulated::PAGE_SIZE;
    use crate::host::emulated::test_memory::Mapping;

    #[test]
    fn reads_and_writes_round_trip_through_process_memory() {
        let m = Mapping::anon(2 * PAGE_SIZE, libc::PROT_READ | libc::PROT_WRITE);
        write(m.addr() + 100, b"hello").unwrap();
        let mut back = [0u8; 5];
        read(m.addr() + 100, &mut back).unwrap();
        assert_eq!(&back, b"hello");
    }

    #[test]
    fn compare_exchange_stores_only_when_the_word_holds_the_expected_value() {
        let m = Mapping::anon(PAGE_SIZE, libc::PROT_READ | libc::PROT_WRITE);
        write(m.addr() + 8, &7u64.to_le_bytes()).unwrap();
        assert_eq!(compare_exchange_u64(m.addr() + 8, 6, 9), Ok(7));
        assert_eq!(compare_exchange_u64(m.addr() + 8, 7, 9), Ok(7));
        let mut back = [0u8; 8];
        read(m.addr() + 8, &mut back).unwrap();
        assert_eq!(u64::from_le_bytes(back), 9);
        assert_eq!(compare_exchange_u64(m.addr() + 4, 0, 1), Err(Errno::EINVAL));
    }

    #[test]
    fn file_compare_exchange_is_seen_by_reads_of_the_file() {
        // SAFETY: memfd_create with a valid name; the descriptor is then owned by `file`.
        let fd = unsafe { libc::memfd_create(c"cas".as_ptr(), libc::MFD_CLOEXEC) };
        assert!(fd >= 0);
        // SAFETY: `fd` is fresh and owned by nobody else.
        let file = unsafe { <File as std::os::fd::FromRawFd>::from_raw_fd(fd) };
        file.set_len(2 * PAGE_SIZE).unwrap();
        pwrite(&file, PAGE_SIZE + 16, &5u64.to_le_bytes()).unwrap();
        assert_eq!(
            file_compare_exchange_u64(&file, PAGE_SIZE + 16, 5, 0x25),
            Ok(5)
        );
        assert_eq!(
            file_compare_exchange_u64(&file, PAGE_SIZE + 16, 5, 0x45),
            Ok(0x25)
        );
        let mut back = [0u8; 8];
        pread(&file, PAGE_SIZE + 16, &mut back).unwrap();
        assert_eq!(u64::from_le_bytes(back), 0x25);
        assert_eq!(
            file_compare_exchange_u64(&file, 2 * PAGE_SIZE, 0, 1),
            Err(Errno::EFAULT)
        );
    }

    #[test]
    fn bad_addresses_are_efault() {
        let m = Mapping::anon(2 * PAGE_SIZE, libc::PROT_READ | libc::PROT_WRITE);
        let hole = m.unmap_page(1);
        let mut buf = [0u8; 16];
        assert_eq!(read(m.addr() + PAGE_SIZE - 8, &mut buf), Err(Errno::EFAULT));
        drop(hole);
        let ro = Mapping::anon(PAGE_SIZE, libc::PROT_READ);
        assert_eq!(write(ro.addr(), &buf), Err(Errno::EFAULT));
    }
}
