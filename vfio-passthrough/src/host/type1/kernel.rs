//! [`KernelType1Container`]: the [`Type1Container`] seam on Linux's `/dev/vfio/vfio`.

use std::any::Any;
use std::fs::{File, OpenOptions};
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, RawFd};
use std::path::Path;

use vfio_bindings::bindings::vfio as b;

use super::{Type1Container, Type1DirtyPages, Type1DmaMap, Type1DmaUnmap};
use crate::errno::Errno;
use crate::sys::container as sys;

/// Where Linux puts the VFIO container node.
pub const CONTAINER_PATH: &str = "/dev/vfio/vfio";

/// A VFIO container: one open `/dev/vfio/vfio`.
#[derive(Debug)]
pub struct KernelType1Container {
    file: File,
}

impl KernelType1Container {
    /// Opens a new container at `/dev/vfio/vfio`.
    pub fn open() -> Result<Self, Errno> {
        Self::open_path(Path::new(CONTAINER_PATH))
    }

    /// Opens a container node at `path`.
    pub fn open_path(path: &Path) -> Result<Self, Errno> {
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .open(path)
            .map_err(|e| Errno::from_io(&e))?;
        Ok(Self { file })
    }

    /// Adopts an open container file.
    pub fn from_file(file: File) -> Self {
        Self { file }
    }

    /// The container's file descriptor.
    pub fn fd(&self) -> BorrowedFd<'_> {
        self.file.as_fd()
    }
}

impl Type1Container for KernelType1Container {
    fn get_api_version(&self) -> Result<i32, Errno> {
        sys::get_api_version(self.fd())
    }

    fn check_extension(&self, extension: u32) -> Result<u32, Errno> {
        sys::check_extension(self.fd(), extension).map(|v| v as u32)
    }

    fn set_iommu(&self, iommu_type: u32) -> Result<(), Errno> {
        sys::set_iommu(self.fd(), iommu_type)
    }

    fn iommu_get_info(&self, buf: &mut [u8]) -> Result<(), Errno> {
        sys::iommu_get_info(self.fd(), buf)
    }

    unsafe fn map_dma(&self, req: &Type1DmaMap) -> Result<(), Errno> {
        let mut arg = b::vfio_iommu_type1_dma_map {
            argsz: req.argsz,
            flags: req.flags,
            vaddr: req.vaddr,
            iova: req.iova,
            size: req.size,
        };
        // SAFETY: the caller upholds this method's contract, which is the wrapper's.
        unsafe { sys::iommu_map_dma(self.fd(), &mut arg) }
    }

    fn unmap_dma(&self, req: &mut Type1DmaUnmap, bitmap: &mut [u64]) -> Result<(), Errno> {
        let mut arg = sys::DmaUnmapWithBitmap {
            unmap: b::vfio_iommu_type1_dma_unmap {
                argsz: req.argsz,
                flags: req.flags,
                iova: req.iova,
                size: req.size,
                data: Default::default(),
            },
            bitmap: b::vfio_bitmap {
                pgsize: req.bitmap_pgsize,
                size: 0,
                data: std::ptr::null_mut(),
            },
        };
        let ret = sys::iommu_unmap_dma(self.fd(), &mut arg, bitmap);
        req.size = arg.unmap.size;
        ret
    }

    fn dirty_pages(&self, req: &Type1DirtyPages, bitmap: &mut [u64]) -> Result<(), Errno> {
        let mut arg = sys::DirtyBitmapGet {
            header: b::vfio_iommu_type1_dirty_bitmap {
                argsz: req.argsz,
                flags: req.flags,
                data: Default::default(),
            },
            get: b::vfio_iommu_type1_dirty_bitmap_get {
                iova: req.iova,
                size: req.size,
                bitmap: b::vfio_bitmap {
                    pgsize: req.pgsize,
                    size: 0,
                    data: std::ptr::null_mut(),
                },
            },
        };
        sys::iommu_dirty_pages(self.fd(), &mut arg, bitmap)
    }

    fn raw_fd(&self) -> Option<RawFd> {
        Some(self.file.as_raw_fd())
    }

    fn as_any(&self) -> &dyn Any {
        self
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn this_machine_has_no_vfio_container_or_the_backend_opens_it() {
        match KernelType1Container::open() {
            Ok(c) => assert!(c.raw_fd().is_some()),
            Err(e) => {
                println!(
                    "skipped: {CONTAINER_PATH} cannot be opened here ({e}); the lab covers it"
                );
                assert!(matches!(e, Errno::ENOENT | Errno::EACCES | Errno::EPERM));
            }
        }
    }

    #[test]
    fn get_info_with_argsz_beyond_the_buffer_is_efault() {
        let c = KernelType1Container::from_file(File::open("/dev/null").unwrap());
        let mut buf = vec![0u8; 32];
        buf[0..4].copy_from_slice(&128u32.to_le_bytes());
        assert_eq!(c.iommu_get_info(&mut buf), Err(Errno::EFAULT));
        buf[0..4].copy_from_slice(&32u32.to_le_bytes());
        assert_eq!(c.iommu_get_info(&mut buf), Err(Errno::ENOTTY));
    }

    #[test]
    fn a_rejected_unmap_keeps_the_size_sent() {
        let c = KernelType1Container::from_file(File::open("/dev/null").unwrap());
        let mut req = Type1DmaUnmap::new(0x10_0000, 0x2000);
        assert_eq!(c.unmap_dma(&mut req, &mut []), Err(Errno::ENOTTY));
        assert_eq!(req.size, 0x2000);
    }
}
