//! IOAS ioctls of the emulated context (`ioas.c`, `main.c`, `vfio_compat.c`), each with the
//! kernel's checks in the kernel's order.

use std::fs::File;
use std::os::fd::{FromRawFd, OwnedFd};

use crate::errno::Errno;
use crate::host::iommufd::uapi::*;

use super::context::Context;
use super::features::Ioctl;
use super::ioas::{Ioas, PagesPiece};
use super::objects::Object;
use super::page_table::Prot;
use super::pages::Pages;

const MAP_FLAGS: u32 =
    IOMMU_IOAS_MAP_FIXED_IOVA | IOMMU_IOAS_MAP_WRITEABLE | IOMMU_IOAS_MAP_READABLE;

/// `conv_iommu_prot`.
fn prot(flags: u32) -> Prot {
    Prot {
        read: flags & IOMMU_IOAS_MAP_READABLE != 0,
        write: flags & IOMMU_IOAS_MAP_WRITEABLE != 0,
    }
}

/// The checks MAP, MAP_FILE and COPY share before the IOAS lookup.
fn check_map_flags(flags: u32) -> Result<(), Errno> {
    if flags & !MAP_FLAGS != 0 {
        return Err(Errno::EOPNOTSUPP);
    }
    Ok(())
}

fn check_rw(flags: u32) -> Result<(), Errno> {
    if flags & (IOMMU_IOAS_MAP_WRITEABLE | IOMMU_IOAS_MAP_READABLE) == 0 {
        return Err(Errno::EINVAL);
    }
    Ok(())
}

impl Context {
    /// `IOMMU_IOAS_ALLOC`.
    pub(crate) fn ioas_alloc(&mut self, req: &mut IoasAlloc) -> Result<(), Errno> {
        self.features().ioctl(Ioctl::IoasAlloc)?;
        if req.flags != 0 {
            return Err(Errno::EOPNOTSUPP);
        }
        let id = self.objects.reserve()?;
        self.objects.finalize(id, Object::Ioas(Ioas::default()));
        req.out_ioas_id = id;
        Ok(())
    }

    /// `IOMMU_IOAS_ALLOW_IOVAS`.
    pub(crate) fn ioas_allow_iovas(
        &mut self,
        req: &IoasAllowIovas,
        ranges: &[IovaRange],
    ) -> Result<(), Errno> {
        self.features().ioctl(Ioctl::IoasAllowIovas)?;
        if req.reserved != 0 {
            return Err(Errno::EOPNOTSUPP);
        }
        let ioas = self.objects.ioas_mut(req.ioas_id)?;
        let list: Vec<(u64, u64)> = ranges.iter().map(|r| (r.start, r.last)).collect();
        ioas.set_allowed(&list)
    }

    /// `IOMMU_IOAS_IOVA_RANGES`: writes up to `num_iovas` ranges, reports the total, then
    /// `EMSGSIZE` if they did not all fit.
    pub(crate) fn ioas_iova_ranges(
        &mut self,
        req: &mut IoasIovaRanges,
        out: &mut [IovaRange],
    ) -> Result<(), Errno> {
        self.features().ioctl(Ioctl::IoasIovaRanges)?;
        if req.reserved != 0 {
            return Err(Errno::EOPNOTSUPP);
        }
        let ioas = self.objects.ioas(req.ioas_id)?;
        let capacity = req.num_iovas as usize;
        let ranges = ioas.iova_ranges();
        for (i, r) in ranges.iter().enumerate().take(capacity) {
            let slot = out.get_mut(i).ok_or(Errno::EFAULT)?;
            *slot = IovaRange {
                start: r.start(),
                last: r.last(),
            };
        }
        req.num_iovas = ranges.len() as u32;
        req.out_iova_alignment = ioas.iova_alignment();
        if ranges.len() > capacity {
            return Err(Errno::EMSGSIZE);
        }
        Ok(())
    }

    /// `IOMMU_IOAS_MAP` of process memory.
    pub(crate) fn ioas_map(&mut self, req: &mut IoasMap) -> Result<(), Errno> {
        self.features().ioctl(Ioctl::IoasMap)?;
        if req.flags & !MAP_FLAGS != 0 || req.reserved != 0 {
            return Err(Errno::EOPNOTSUPP);
        }
        if req.iova == u64::MAX || req.length == u64::MAX {
            return Err(Errno::EOVERFLOW);
        }
        check_rw(req.flags)?;
        self.objects.ioas(req.ioas_id)?;
        let p = prot(req.flags);
        let mode = self.host.account_mode(self.mm_mode);
        let pages = Pages::user(&self.host, req.user_va, req.length, p.write, mode)?;
        let start_byte = req.user_va - pages.base();
        let piece = PagesPiece {
            pages,
            start_byte,
            length: req.length,
        };
        self.map_pieces(
            req.ioas_id,
            std::slice::from_ref(&piece),
            req.length,
            &mut req.iova,
            req.flags,
        )
    }

    /// `IOMMU_IOAS_MAP_FILE` (6.13) of a memfd.
    pub(crate) fn ioas_map_file(&mut self, req: &mut IoasMapFile) -> Result<(), Errno> {
        self.features().ioctl(Ioctl::IoasMapFile)?;
        check_map_flags(req.flags)?;
        if req.iova == u64::MAX || req.length == u64::MAX {
            return Err(Errno::EOVERFLOW);
        }
        check_rw(req.flags)?;
        self.objects.ioas(req.ioas_id)?;
        let file = dup_fd(req.fd)?;
        let p = prot(req.flags);
        let mode = self.host.account_mode(self.mm_mode);
        let pages = Pages::file(&self.host, file, req.start, req.length, p.write, mode)?;
        let start_byte = req.start - pages.base();
        let piece = PagesPiece {
            pages,
            start_byte,
            length: req.length,
        };
        self.map_pieces(
            req.ioas_id,
            std::slice::from_ref(&piece),
            req.length,
            &mut req.iova,
            req.flags,
        )
    }

    /// `IOMMU_IOAS_COPY`: the pages behind the source range, mapped again (shared, not
    /// re-pinned) in the destination.
    pub(crate) fn ioas_copy(&mut self, req: &mut IoasCopy) -> Result<(), Errno> {
        self.features().ioctl(Ioctl::IoasCopy)?;
        check_map_flags(req.flags)?;
        if req.length == u64::MAX || req.src_iova == u64::MAX || req.dst_iova == u64::MAX {
            return Err(Errno::EOVERFLOW);
        }
        check_rw(req.flags)?;
        let pieces = self
            .objects
            .ioas(req.src_ioas_id)?
            .get_pages(req.src_iova, req.length)?;
        self.objects.ioas(req.dst_ioas_id)?;
        let mut iova = req.dst_iova;
        self.map_pieces(req.dst_ioas_id, &pieces, req.length, &mut iova, req.flags)?;
        req.dst_iova = iova;
        Ok(())
    }

    fn map_pieces(
        &mut self,
        ioas_id: u32,
        pieces: &[PagesPiece],
        length: u64,
        iova: &mut u64,
        flags: u32,
    ) -> Result<(), Errno> {
        let auto = flags & IOMMU_IOAS_MAP_FIXED_IOVA == 0;
        let max_alignment = self.host.config().max_auto_alignment();
        let ioas = self.objects.ioas_mut(ioas_id)?;
        let mut out = *iova;
        ioas.map_pages(pieces, length, &mut out, prot(flags), auto, max_alignment)?;
        *iova = out;
        Ok(())
    }

    /// `IOMMU_IOAS_UNMAP`.
    pub(crate) fn ioas_unmap(&mut self, req: &mut IoasUnmap) -> Result<(), Errno> {
        self.features().ioctl(Ioctl::IoasUnmap)?;
        let ioas = self.objects.ioas_mut(req.ioas_id)?;
        let unmapped = if req.iova == 0 && req.length == u64::MAX {
            ioas.unmap_all()
        } else {
            if req.iova == u64::MAX || req.length == u64::MAX {
                return Err(Errno::EOVERFLOW);
            }
            let n = ioas.unmap(req.iova, req.length)?;
            if n == 0 {
                return Err(Errno::ENOENT);
            }
            n
        };
        req.length = unmapped;
        Ok(())
    }

    /// `IOMMU_OPTION`; only `val64` is written back, on success.
    pub(crate) fn option(&mut self, req: &mut IommuOption) -> Result<(), Errno> {
        self.features().ioctl(Ioctl::Option)?;
        if req.reserved != 0 {
            return Err(Errno::EOPNOTSUPP);
        }
        let val = match req.option_id {
            IOMMU_OPTION_RLIMIT_MODE => self.option_rlimit_mode(req)?,
            IOMMU_OPTION_HUGE_PAGES => self.option_huge_pages(req)?,
            _ => return Err(Errno::EOPNOTSUPP),
        };
        req.val64 = val;
        Ok(())
    }

    fn option_rlimit_mode(&mut self, req: &IommuOption) -> Result<u64, Errno> {
        if req.object_id != 0 {
            return Err(Errno::EOPNOTSUPP);
        }
        match req.op {
            IOMMU_OPTION_OP_GET => Ok(u64::from(self.mm_mode)),
            IOMMU_OPTION_OP_SET => {
                if !self.host.config().cap_sys_resource {
                    return Err(Errno::EPERM);
                }
                if !self.objects.is_empty() {
                    return Err(Errno::EBUSY);
                }
                match req.val64 {
                    0 => self.mm_mode = false,
                    1 => self.mm_mode = true,
                    _ => return Err(Errno::EINVAL),
                }
                Ok(req.val64)
            }
            _ => Err(Errno::EOPNOTSUPP),
        }
    }

    fn option_huge_pages(&mut self, req: &IommuOption) -> Result<u64, Errno> {
        let ioas = self.objects.ioas_mut(req.object_id)?;
        match req.op {
            IOMMU_OPTION_OP_GET => Ok(u64::from(ioas.large_pages())),
            IOMMU_OPTION_OP_SET => match req.val64 {
                0 => ioas.disable_large_pages().map(|()| 0),
                1 => {
                    ioas.enable_large_pages();
                    Ok(1)
                }
                _ => Err(Errno::EINVAL),
            },
            _ => Err(Errno::EOPNOTSUPP),
        }
    }

    /// `IOMMU_VFIO_IOAS`.
    pub(crate) fn vfio_ioas(&mut self, req: &mut VfioIoas) -> Result<(), Errno> {
        self.features().ioctl(Ioctl::VfioIoas)?;
        if req.reserved != 0 {
            return Err(Errno::EOPNOTSUPP);
        }
        match req.op {
            IOMMU_VFIO_IOAS_GET => {
                let id = self.vfio_ioas.ok_or(Errno::ENODEV)?;
                req.ioas_id = id;
                Ok(())
            }
            IOMMU_VFIO_IOAS_SET => {
                self.objects.ioas(req.ioas_id)?;
                self.vfio_ioas = Some(req.ioas_id);
                Ok(())
            }
            IOMMU_VFIO_IOAS_CLEAR => {
                self.vfio_ioas = None;
                Ok(())
            }
            _ => Err(Errno::EOPNOTSUPP),
        }
    }
}

/// `fget(fd)` for the emulated kernel: its own duplicate of the caller's descriptor (`EBADF`).
fn dup_fd(fd: i32) -> Result<File, Errno> {
    if fd < 0 {
        return Err(Errno::EBADF);
    }
    // SAFETY: F_DUPFD_CLOEXEC creates a new descriptor (or fails with EBADF); it does not
    // affect `fd`, which stays the caller's.
    let new = unsafe { libc::fcntl(fd, libc::F_DUPFD_CLOEXEC, 0) };
    if new < 0 {
        return Err(Errno::last());
    }
    // SAFETY: `new` was just created and is owned by nobody else.
    Ok(File::from(unsafe { OwnedFd::from_raw_fd(new) }))
}
