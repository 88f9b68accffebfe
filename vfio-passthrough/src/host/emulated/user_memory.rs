//! Reading and writing process memory the way the kernel does: by address, never through a
//! Rust reference.
//!
//! Memory mapped into an IOAS is shared with the guest and with device models that run on
//! other threads, so the emulated kernel must not form `&[u8]` over it. It copies with
//! `process_vm_readv` / `process_vm_writev` on its own pid, which behave like `copy_from_user`:
//! a bad address gives `EFAULT` instead of a crash. Memfd backings are read and written with
//! `pread` / `pwrite` on the emulated kernel's own duplicate of the file.

use std::fs::File;
use std::os::unix::fs::FileExt;

use crate::errno::Errno;

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
    fn bad_addresses_are_efault() {
        let m = Mapping::anon(2 * PAGE_SIZE, libc::PROT_READ | libc::PROT_WRITE);
        m.unmap_page(1);
        let mut buf = [0u8; 16];
        assert_eq!(read(m.addr() + PAGE_SIZE - 8, &mut buf), Err(Errno::EFAULT));
        let ro = Mapping::anon(PAGE_SIZE, libc::PROT_READ);
        assert_eq!(write(ro.addr(), &buf), Err(Errno::EFAULT));
    }
}
