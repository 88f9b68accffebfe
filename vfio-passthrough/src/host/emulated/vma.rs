//! What the emulated kernel knows about the process's mappings: the VMAs behind a user range.
//!
//! `pin_user_pages` fails with `EFAULT` on an address that is not mapped, on a read-only mapping
//! when pinning for write, and on a `PROT_NONE` one. The emulated kernel makes the same checks
//! without touching the memory (a `MAP_NORESERVE` region of 64 GiB must stay unpopulated), by
//! asking the kernel about the VMAs: `PROCMAP_QUERY` on `/proc/self/maps` (Linux 6.11+, one ioctl
//! per VMA), or parsing the text of `/proc/self/maps` on older hosts.
//!
//! Each VMA also tells which page of memory an address resolves to ([`PageIdentity`]): shared
//! file mappings (memfd, `MAP_SHARED | MAP_ANONYMOUS`, tmpfs) by file and offset, so that a memfd
//! mapped by `IOMMU_IOAS_MAP_FILE` and the same memfd `mmap`-ed by the process are the same
//! pages; private mappings by virtual address. Not modelled: `VM_IO`/`VM_PFNMAP` mappings (the
//! kernel refuses to pin them) are not visible here and are treated as ordinary memory.

use std::fs::File;
use std::io::Read;
use std::os::fd::AsRawFd;

use crate::errno::Errno;

use super::PAGE_SIZE;

/// Which memory a page of a mapping is: the key the pin registry counts pins under.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum PageSource {
    /// Private memory of this process, identified by virtual address.
    Anon,
    /// Pages of a file (a memfd, shared anonymous memory, tmpfs), identified by file offset.
    File {
        /// `st_dev` of the file.
        dev: u64,
        /// `st_ino` of the file.
        ino: u64,
    },
}

/// The identity of one byte of memory: its source and the address (private memory) or file
/// offset (file pages) within it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct PageIdentity {
    /// Where the memory comes from.
    pub source: PageSource,
    /// Virtual address (for [`PageSource::Anon`]) or byte offset in the file.
    pub offset: u64,
}

/// One VMA, as far as pinning cares.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Vma {
    /// First address.
    pub(crate) start: u64,
    /// One past the last address.
    pub(crate) end: u64,
    pub(crate) readable: bool,
    pub(crate) writable: bool,
    pub(crate) shared: bool,
    /// Backing file (`dev`, `ino`), if any.
    pub(crate) file: Option<(u64, u64)>,
    /// File offset of `start`.
    pub(crate) offset: u64,
}

impl Vma {
    /// Identity of the byte at `addr` (inside the VMA).
    pub(crate) fn identity(&self, addr: u64) -> PageIdentity {
        debug_assert!(addr >= self.start && addr < self.end);
        match (self.shared, self.file) {
            (true, Some((dev, ino))) => PageIdentity {
                source: PageSource::File { dev, ino },
                offset: self.offset + (addr - self.start),
            },
            _ => PageIdentity {
                source: PageSource::Anon,
                offset: addr,
            },
        }
    }
}

/// A piece of a user range lying in one VMA: `[start, end)` and the identity of `start`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Piece {
    pub(crate) start: u64,
    pub(crate) end: u64,
    pub(crate) identity: PageIdentity,
}

/// `struct procmap_query` (include/uapi/linux/fs.h).
#[repr(C)]
#[derive(Default)]
struct ProcmapQuery {
    size: u64,
    query_flags: u64,
    query_addr: u64,
    vma_start: u64,
    vma_end: u64,
    vma_flags: u64,
    vma_page_size: u64,
    vma_offset: u64,
    inode: u64,
    dev_major: u32,
    dev_minor: u32,
    vma_name_size: u32,
    build_id_size: u32,
    vma_name_addr: u64,
    build_id_addr: u64,
}

/// `PROCMAP_QUERY` = `_IOWR('f', 17, struct procmap_query)`.
const PROCMAP_QUERY: u64 =
    (3 << 30) | ((std::mem::size_of::<ProcmapQuery>() as u64) << 16) | ((b'f' as u64) << 8) | 17;
const PROCMAP_QUERY_VMA_READABLE: u64 = 0x01;
const PROCMAP_QUERY_VMA_WRITABLE: u64 = 0x02;
const PROCMAP_QUERY_VMA_SHARED: u64 = 0x08;

/// Looks up VMAs of this process.
#[derive(Debug)]
pub(crate) struct VmaQuery {
    /// `/proc/self/maps`, kept open for `PROCMAP_QUERY`.
    maps: Option<File>,
}

impl VmaQuery {
    /// Opens `/proc/self/maps` (if that fails, every lookup parses the file anew).
    pub(crate) fn new() -> Self {
        VmaQuery {
            maps: File::open("/proc/self/maps").ok(),
        }
    }

    /// The VMA containing `addr`, or `None` if `addr` is not mapped.
    pub(crate) fn covering(&self, addr: u64) -> Result<Option<Vma>, Errno> {
        if let Some(maps) = &self.maps {
            match query(maps, addr) {
                Ok(vma) => return Ok(vma),
                Err(e) if e == Errno::ENOTTY || e == Errno::EINVAL => {}
                Err(e) => return Err(e),
            }
        }
        Ok(parse_maps()?
            .into_iter()
            .find(|v| v.start <= addr && addr < v.end))
    }

    /// The pieces of `for_each_piece`, collected (tests).
    #[cfg(test)]
    pub(crate) fn resolve(&self, start: u64, len: u64, write: bool) -> Result<Vec<Piece>, Errno> {
        let mut pieces = Vec::new();
        self.for_each_piece(start, len, write, |p| pieces.push(p))?;
        Ok(pieces)
    }

    /// Splits `[start, start + len)` into its VMAs, checking each as `pin_user_pages` would
    /// (`write`: the pin is for writing), and hands the pieces to `f`, ascending, as each VMA is
    /// checked (so nothing is collected). `EFAULT` for a hole, a `PROT_NONE` mapping, or a
    /// read-only one when `write`; `f` may have seen the pieces before the failing one. `len`
    /// must be non-zero and the range must not wrap.
    pub(crate) fn for_each_piece(
        &self,
        start: u64,
        len: u64,
        write: bool,
        mut f: impl FnMut(Piece),
    ) -> Result<(), Errno> {
        let end = start.checked_add(len).ok_or(Errno::EFAULT)?;
        let mut cursor = start;
        while cursor < end {
            let vma = self.covering(cursor)?.ok_or(Errno::EFAULT)?;
            let allowed = if write { vma.writable } else { vma.readable };
            if !allowed {
                return Err(Errno::EFAULT);
            }
            let piece_end = vma.end.min(end);
            f(Piece {
                start: cursor,
                end: piece_end,
                identity: vma.identity(cursor),
            });
            cursor = piece_end;
        }
        Ok(())
    }

    /// The identity of the page holding `addr` as `get_user_pages_fast` would find it (no
    /// permission needed beyond being mapped readable or writable): `EFAULT` if unmapped.
    pub(crate) fn identity(&self, addr: u64) -> Result<PageIdentity, Errno> {
        let vma = self.covering(addr)?.ok_or(Errno::EFAULT)?;
        if !vma.readable && !vma.writable {
            return Err(Errno::EFAULT);
        }
        Ok(vma.identity(addr))
    }
}

/// One `PROCMAP_QUERY` ioctl on `maps` (an open `/proc/self/maps`): whether `addr` is mapped.
/// This is the host call the emulated host makes per VMA when it pins pages for a domain; it is
/// public so that the `ioas_map` bench can time it alone. `ENOTTY` (or `EINVAL`) on kernels
/// before 6.11, which lack it.
pub fn procmap_query(maps: &File, addr: u64) -> Result<bool, Errno> {
    query(maps, addr).map(|vma| vma.is_some())
}

fn query(maps: &File, addr: u64) -> Result<Option<Vma>, Errno> {
    let mut q = ProcmapQuery {
        size: std::mem::size_of::<ProcmapQuery>() as u64,
        query_addr: addr,
        ..Default::default()
    };
    // SAFETY: PROCMAP_QUERY reads and writes exactly one `struct procmap_query`, which `q` is
    // (size set); the name and build-id buffers are not requested (sizes 0).
    let rc = unsafe { libc::ioctl(maps.as_raw_fd(), PROCMAP_QUERY as _, &mut q) };
    if rc < 0 {
        let e = Errno::last();
        return if e == Errno::ENOENT { Ok(None) } else { Err(e) };
    }
    let file = (q.inode != 0).then(|| (libc::makedev(q.dev_major, q.dev_minor), q.inode));
    Ok(Some(Vma {
        start: q.vma_start,
        end: q.vma_end,
        readable: q.vma_flags & PROCMAP_QUERY_VMA_READABLE != 0,
        writable: q.vma_flags & PROCMAP_QUERY_VMA_WRITABLE != 0,
        shared: q.vma_flags & PROCMAP_QUERY_VMA_SHARED != 0,
        file,
        offset: q.vma_offset,
    }))
}

/// Parses `/proc/self/maps` (fallback for hosts without `PROCMAP_QUERY`).
fn parse_maps() -> Result<Vec<Vma>, Errno> {
    let mut text = String::new();
    File::open("/proc/self/maps")
        .and_then(|mut f| f.read_to_string(&mut text))
        .map_err(|e| Errno::from_io(&e))?;
    Ok(text.lines().filter_map(parse_maps_line).collect())
}

/// One line: `start-end perms offset major:minor inode [path]`.
fn parse_maps_line(line: &str) -> Option<Vma> {
    let mut fields = line.split_whitespace();
    let (start, end) = fields.next()?.split_once('-')?;
    let perms = fields.next()?.as_bytes();
    let offset = u64::from_str_radix(fields.next()?, 16).ok()?;
    let (major, minor) = fields.next()?.split_once(':')?;
    let inode: u64 = fields.next()?.parse().ok()?;
    let dev = libc::makedev(
        u32::from_str_radix(major, 16).ok()?,
        u32::from_str_radix(minor, 16).ok()?,
    );
    Some(Vma {
        start: u64::from_str_radix(start, 16).ok()?,
        end: u64::from_str_radix(end, 16).ok()?,
        readable: perms.first() == Some(&b'r'),
        writable: perms.get(1) == Some(&b'w'),
        shared: perms.get(3) == Some(&b's'),
        file: (inode != 0).then_some((dev, inode)),
        offset,
    })
}

/// Rounds `addr` down to its page.
pub(crate) const fn page_floor(addr: u64) -> u64 {
    addr & !(PAGE_SIZE - 1)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::host::emulated::test_memory::Mapping;

    #[test]
    fn resolve_accepts_a_writable_mapping_and_refuses_holes() {
        let q = VmaQuery::new();
        let m = Mapping::anon(4 * PAGE_SIZE, libc::PROT_READ | libc::PROT_WRITE);
        let pieces = q.resolve(m.addr(), 4 * PAGE_SIZE, true).unwrap();
        assert_eq!(pieces.first().map(|p| p.start), Some(m.addr()));
        assert_eq!(pieces.last().map(|p| p.end), Some(m.addr() + 4 * PAGE_SIZE));
        let hole = m.unmap_page(2);
        assert_eq!(
            q.resolve(m.addr(), 4 * PAGE_SIZE, false),
            Err(Errno::EFAULT)
        );
        q.resolve(m.addr(), 2 * PAGE_SIZE, true).unwrap();
        drop(hole);
    }

    #[test]
    fn resolve_refuses_a_write_pin_of_read_only_memory() {
        let q = VmaQuery::new();
        let m = Mapping::anon(PAGE_SIZE, libc::PROT_READ);
        assert_eq!(q.resolve(m.addr(), PAGE_SIZE, true), Err(Errno::EFAULT));
        q.resolve(m.addr(), PAGE_SIZE, false).unwrap();
        let none = Mapping::anon(PAGE_SIZE, libc::PROT_NONE);
        assert_eq!(q.resolve(none.addr(), PAGE_SIZE, false), Err(Errno::EFAULT));
    }

    #[test]
    fn shared_anonymous_memory_is_identified_by_file_offset() {
        let q = VmaQuery::new();
        let m = Mapping::shared_anon(2 * PAGE_SIZE);
        let a = q.identity(m.addr()).unwrap();
        let b = q.identity(m.addr() + PAGE_SIZE + 5).unwrap();
        assert!(matches!(a.source, PageSource::File { .. }));
        assert_eq!(a.source, b.source);
        assert_eq!(b.offset - a.offset, PAGE_SIZE + 5);
        let private = Mapping::anon(PAGE_SIZE, libc::PROT_READ | libc::PROT_WRITE);
        assert_eq!(
            q.identity(private.addr()).unwrap(),
            PageIdentity {
                source: PageSource::Anon,
                offset: private.addr()
            }
        );
    }

    #[test]
    fn the_text_fallback_agrees_with_the_ioctl() {
        let m = Mapping::shared_anon(3 * PAGE_SIZE);
        let parsed = parse_maps().unwrap();
        let vma = parsed
            .iter()
            .find(|v| v.start <= m.addr() && m.addr() < v.end)
            .copied()
            .unwrap();
        let q = VmaQuery::new();
        let queried = q.covering(m.addr()).unwrap().unwrap();
        assert_eq!(vma.identity(m.addr()), queried.identity(m.addr()));
        assert_eq!((vma.writable, vma.shared), (true, true));
    }
}
