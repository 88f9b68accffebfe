//! The host IOMMU seam, legacy flavour: a VFIO type1 container (`/dev/vfio/vfio`).
//!
//! One method per container ioctl, answering with the kernel's errno. Type1 differs from iommufd
//! in ways callers must see, so it gets its own seam rather than hiding behind the iommufd one:
//! an unmap that bisects a mapping fails with `EINVAL` and removes nothing, an unmap of an empty
//! range succeeds with size 0, mappings are limited (65535 by default, reported by the
//! `DMA_AVAIL` capability), and dirty tracking is per container (`VFIO_IOMMU_DIRTY_PAGES`).
//! Contract: `kernel-uapi.md` section 2.2.
//!
//! Groups join a container through the device seam (`VFIO_GROUP_SET_CONTAINER`); until one has,
//! `set_iommu` fails with `EINVAL`.

pub mod info;
pub mod kernel;

use std::any::Any;
use std::fmt::Debug;
use std::os::fd::RawFd;

use crate::errno::Errno;

pub use info::{Type1Info, Type1InfoCap};
pub use kernel::KernelType1Container;

/// `VFIO_TYPE1_IOMMU`.
pub const VFIO_TYPE1_IOMMU: u32 = 1;
/// `VFIO_TYPE1v2_IOMMU`.
pub const VFIO_TYPE1V2_IOMMU: u32 = 3;
/// `VFIO_DMA_CC_IOMMU`: all domains enforce cache coherency.
pub const VFIO_DMA_CC_IOMMU: u32 = 4;
/// `VFIO_NOIOMMU_IOMMU`.
pub const VFIO_NOIOMMU_IOMMU: u32 = 8;
/// `VFIO_UNMAP_ALL` (5.12).
pub const VFIO_UNMAP_ALL: u32 = 9;
/// `VFIO_UPDATE_VADDR` (5.12).
pub const VFIO_UPDATE_VADDR: u32 = 10;

/// `VFIO_DMA_MAP_FLAG_READ`.
pub const VFIO_DMA_MAP_FLAG_READ: u32 = 1 << 0;
/// `VFIO_DMA_MAP_FLAG_WRITE`.
pub const VFIO_DMA_MAP_FLAG_WRITE: u32 = 1 << 1;
/// `VFIO_DMA_MAP_FLAG_VADDR`.
pub const VFIO_DMA_MAP_FLAG_VADDR: u32 = 1 << 2;
/// `VFIO_DMA_UNMAP_FLAG_GET_DIRTY_BITMAP`.
pub const VFIO_DMA_UNMAP_FLAG_GET_DIRTY_BITMAP: u32 = 1 << 0;
/// `VFIO_DMA_UNMAP_FLAG_ALL`.
pub const VFIO_DMA_UNMAP_FLAG_ALL: u32 = 1 << 1;
/// `VFIO_DMA_UNMAP_FLAG_VADDR`.
pub const VFIO_DMA_UNMAP_FLAG_VADDR: u32 = 1 << 2;
/// `VFIO_IOMMU_DIRTY_PAGES_FLAG_START`.
pub const VFIO_IOMMU_DIRTY_PAGES_FLAG_START: u32 = 1 << 0;
/// `VFIO_IOMMU_DIRTY_PAGES_FLAG_STOP`.
pub const VFIO_IOMMU_DIRTY_PAGES_FLAG_STOP: u32 = 1 << 1;
/// `VFIO_IOMMU_DIRTY_PAGES_FLAG_GET_BITMAP`.
pub const VFIO_IOMMU_DIRTY_PAGES_FLAG_GET_BITMAP: u32 = 1 << 2;

/// Size of `struct vfio_iommu_type1_dma_map`.
pub const DMA_MAP_ARGSZ: u32 = 32;
/// Size of `struct vfio_iommu_type1_dma_unmap` (without the bitmap).
pub const DMA_UNMAP_ARGSZ: u32 = 24;
/// Size of `struct vfio_bitmap`.
pub const BITMAP_ARGSZ: u32 = 24;
/// Size of `struct vfio_iommu_type1_dirty_bitmap` plus `vfio_iommu_type1_dirty_bitmap_get`.
pub const DIRTY_PAGES_GET_ARGSZ: u32 = 8 + 40;

/// `VFIO_IOMMU_MAP_DMA`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Type1DmaMap {
    /// Size of the argument (normally [`DMA_MAP_ARGSZ`]).
    pub argsz: u32,
    /// `VFIO_DMA_MAP_FLAG_*`.
    pub flags: u32,
    /// Process virtual address.
    pub vaddr: u64,
    /// IOVA.
    pub iova: u64,
    /// Bytes.
    pub size: u64,
}

impl Type1DmaMap {
    /// A read/write mapping of `size` bytes at `vaddr` to `iova`.
    pub fn new(vaddr: u64, iova: u64, size: u64) -> Self {
        Self {
            argsz: DMA_MAP_ARGSZ,
            flags: VFIO_DMA_MAP_FLAG_READ | VFIO_DMA_MAP_FLAG_WRITE,
            vaddr,
            iova,
            size,
        }
    }
}

/// `VFIO_IOMMU_UNMAP_DMA`. With `GET_DIRTY_BITMAP`, `argsz` must also cover the
/// `struct vfio_bitmap` ([`DMA_UNMAP_ARGSZ`] + [`BITMAP_ARGSZ`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Type1DmaUnmap {
    /// Size of the argument.
    pub argsz: u32,
    /// `VFIO_DMA_UNMAP_FLAG_*`.
    pub flags: u32,
    /// IOVA.
    pub iova: u64,
    /// In: bytes; out: bytes unmapped.
    pub size: u64,
    /// With `GET_DIRTY_BITMAP`: the bitmap's page size.
    pub bitmap_pgsize: u64,
}

impl Type1DmaUnmap {
    /// An unmap of `[iova, iova + size)`.
    pub fn new(iova: u64, size: u64) -> Self {
        Self {
            argsz: DMA_UNMAP_ARGSZ,
            flags: 0,
            iova,
            size,
            bitmap_pgsize: 0,
        }
    }
}

/// `VFIO_IOMMU_DIRTY_PAGES`; `iova`, `size` and `pgsize` are used with `GET_BITMAP` only.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Type1DirtyPages {
    /// Size of the argument: 8, or [`DIRTY_PAGES_GET_ARGSZ`] with `GET_BITMAP`.
    pub argsz: u32,
    /// Exactly one `VFIO_IOMMU_DIRTY_PAGES_FLAG_*`.
    pub flags: u32,
    /// First IOVA of the range to report.
    pub iova: u64,
    /// Bytes to report.
    pub size: u64,
    /// Bytes per bit (must be the smallest IOMMU page size).
    pub pgsize: u64,
}

/// A VFIO type1 container.
pub trait Type1Container: Send + Sync + Debug {
    /// `VFIO_GET_API_VERSION` (0).
    fn get_api_version(&self) -> Result<i32, Errno>;

    /// `VFIO_CHECK_EXTENSION`: 1 if supported, 0 if not.
    fn check_extension(&self, extension: u32) -> Result<u32, Errno>;

    /// `VFIO_SET_IOMMU`: picks the IOMMU model; needs a group in the container, once only.
    fn set_iommu(&self, iommu_type: u32) -> Result<(), Errno>;

    /// `VFIO_IOMMU_GET_INFO` into a raw `argsz`-sized buffer (its first 4 bytes must hold
    /// `argsz`, normally `buf.len()`); parse it with [`Type1Info::parse`]. Too small for the
    /// capabilities, it still succeeds with `cap_offset` 0 and `argsz` raised to what is needed.
    fn iommu_get_info(&self, buf: &mut [u8]) -> Result<(), Errno>;

    /// `VFIO_IOMMU_MAP_DMA`.
    ///
    /// # Safety
    ///
    /// As [`Iommufd::ioas_map`](crate::host::iommufd::Iommufd::ioas_map): the memory stays in use
    /// by devices until unmapped and must only be accessed in ways tolerant of that.
    unsafe fn map_dma(&self, req: &Type1DmaMap) -> Result<(), Errno>;

    /// `VFIO_IOMMU_UNMAP_DMA`; with `GET_DIRTY_BITMAP`, each unmapped mapping's words of
    /// `bitmap` are written as `DIRTY_PAGES` writes them (`bitmap.len() * 8` is the
    /// `vfio_bitmap.size` the kernel sees).
    fn unmap_dma(&self, req: &mut Type1DmaUnmap, bitmap: &mut [u64]) -> Result<(), Errno>;

    /// `VFIO_IOMMU_DIRTY_PAGES`; with `GET_BITMAP`, each mapping in the range writes its words
    /// of `bitmap`: the first word of a mapping that does not start on a word boundary is ORed
    /// with the caller's, later ones are overwritten, and bits a mapping reported before can
    /// come back shifted (`docs/kernel-uapi.md` 2.2: Linux's per-mapping bitmap keeps them).
    fn dirty_pages(&self, req: &Type1DirtyPages, bitmap: &mut [u64]) -> Result<(), Errno>;

    /// The container's file descriptor, for `VFIO_GROUP_SET_CONTAINER`; `None` in-process.
    fn raw_fd(&self) -> Option<RawFd>;

    /// The backend as `Any`, so the device seam can recognise a container of its own kind.
    fn as_any(&self) -> &dyn Any;
}
