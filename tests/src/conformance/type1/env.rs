//! [`Type1Env`]: what a type1 case works with: the container, its groups, buffers, call
//! helpers and expectations.

use std::fmt::Debug;
use std::sync::Arc;

use vfio_passthrough::errno::Errno;
use vfio_passthrough::host::iommufd::Iommufd;
use vfio_passthrough::host::type1::*;

use super::backend::{Type1Facts, Type1Group, Type1Opened};
use crate::conformance::Fail;
use crate::conformance::memory::{Memory, PAGE};

/// A buffer handed to a case.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Type1Buf {
    /// First byte.
    pub addr: u64,
    /// Bytes.
    pub len: u64,
    index: usize,
}

impl Type1Buf {
    /// Address of page `i`.
    pub fn page(&self, i: u64) -> u64 {
        self.addr + i * PAGE
    }
}

/// The environment of one case on one backend.
pub struct Type1Env<'a> {
    /// The container.
    pub container: &'a dyn Type1Container,
    /// Facts about the backend.
    pub facts: Type1Facts,
    opened: &'a Type1Opened,
    memory: &'a mut Memory,
}

impl Debug for Type1Env<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Type1Env")
            .field("facts", &self.facts)
            .finish_non_exhaustive()
    }
}

impl<'a> Type1Env<'a> {
    pub(crate) fn new(opened: &'a Type1Opened, memory: &'a mut Memory) -> Self {
        Type1Env {
            container: opened.container.as_ref(),
            facts: opened.facts,
            opened,
            memory,
        }
    }

    // ---- memory -------------------------------------------------------------------------

    /// A populated buffer of `pages` pages, 2 MiB aligned.
    pub fn buffer(&mut self, pages: u64) -> Type1Buf {
        let index = self.memory.alloc(pages, 2 << 20);
        let b = self.memory.get(index);
        Type1Buf {
            addr: b.addr(),
            len: b.len(),
            index,
        }
    }

    /// Unmaps `count` pages of `buf` from page `first`, leaving a hole.
    pub fn hole(&self, buf: Type1Buf, first: u64, count: u64) {
        self.memory.get(buf.index).unmap_pages(first, count);
    }

    /// Makes `buf` read-only.
    pub fn read_only(&self, buf: Type1Buf) {
        self.memory.get(buf.index).protect(libc::PROT_READ);
    }

    // ---- groups -------------------------------------------------------------------------

    /// Group `i` (cases declare how many they use).
    pub fn group(&self, i: usize) -> Result<&dyn Type1Group, Fail> {
        self.opened
            .groups
            .get(i)
            .map(|g| g.as_ref())
            .ok_or_else(|| Fail(format!("backend gave no group {i}")))
    }

    /// Puts group `i` in the container (must succeed).
    pub fn join(&self, i: usize) -> Result<(), Fail> {
        let g = self.group(i)?;
        self.ok(
            &format!("SET_CONTAINER of group {i}"),
            g.set_container(self.container),
        )
    }

    /// Group 0 in the container and `VFIO_SET_IOMMU(iommu_type)` (must succeed).
    pub fn setup_type(&self, iommu_type: u32) -> Result<(), Fail> {
        self.join(0)?;
        self.ok(
            &format!("SET_IOMMU({iommu_type})"),
            self.container.set_iommu(iommu_type),
        )
    }

    /// Group 0 in the container, type1v2 (must succeed).
    pub fn setup(&self) -> Result<(), Fail> {
        self.setup_type(VFIO_TYPE1V2_IOMMU)
    }

    /// The name of the first group's device.
    pub fn device_name(&self) -> Result<String, Fail> {
        self.group(0)?
            .device_name()
            .ok_or_else(|| Fail("backend knows no device in group 0".into()))
    }

    /// The backend's iommufd.
    pub fn iommufd(&self) -> Result<&Arc<dyn Iommufd>, Fail> {
        self.opened
            .iommufd
            .as_ref()
            .ok_or_else(|| Fail("backend gave no iommufd".into()))
    }

    // ---- expectations -------------------------------------------------------------------

    /// `r` must succeed; its value.
    pub fn ok<T>(&self, step: &str, r: Result<T, Errno>) -> Result<T, Fail> {
        r.map_err(|e| Fail(format!("{step}: expected success, got {e:?}")))
    }

    /// `r` must fail with `want`.
    pub fn err<T: Debug>(&self, step: &str, r: Result<T, Errno>, want: Errno) -> Result<(), Fail> {
        match r {
            Err(e) if e == want => Ok(()),
            Err(e) => Err(Fail(format!("{step}: expected {want:?}, got {e:?}"))),
            Ok(v) => Err(Fail(format!(
                "{step}: expected {want:?}, got success ({v:?})"
            ))),
        }
    }

    /// `got` must equal `want`.
    pub fn eq<T: PartialEq + Debug>(&self, step: &str, got: T, want: T) -> Result<(), Fail> {
        if got == want {
            Ok(())
        } else {
            Err(Fail(format!("{step}: expected {want:?}, got {got:?}")))
        }
    }

    /// `cond` must hold.
    pub fn check(&self, step: &str, cond: bool) -> Result<(), Fail> {
        if cond {
            Ok(())
        } else {
            Err(Fail(format!("{step}: does not hold")))
        }
    }

    /// The container holds exactly `count` mappings of `bytes` in total: `DMA_AVAIL` says
    /// `limit - count`, then an unmap-all reports `bytes`. This empties the container, so it
    /// ends a case (or a part of one).
    pub fn expect_exactly(&self, count: u32, bytes: u64) -> Result<(), Fail> {
        let avail = self.dma_avail()?;
        self.eq(
            "DMA_AVAIL",
            avail,
            self.facts.dma_entry_limit.saturating_sub(count),
        )?;
        let unmapped = self.ok("unmap-all", self.unmap_all())?;
        self.eq("bytes reported by unmap-all", unmapped, bytes)
    }

    // ---- calls --------------------------------------------------------------------------

    /// `VFIO_IOMMU_MAP_DMA` of `req`.
    pub fn map_req(&self, req: &Type1DmaMap) -> Result<(), Errno> {
        // SAFETY: the case's buffers outlive the container (the runner drops it first), and the
        // suite never accesses them while mapped except through the uAPI.
        unsafe { self.container.map_dma(req) }
    }

    /// Read/write `VFIO_IOMMU_MAP_DMA`.
    pub fn map(&self, vaddr: u64, iova: u64, size: u64) -> Result<(), Errno> {
        self.map_req(&Type1DmaMap::new(vaddr, iova, size))
    }

    /// `VFIO_IOMMU_MAP_DMA` with `flags`.
    pub fn map_flags(&self, flags: u32, vaddr: u64, iova: u64, size: u64) -> Result<(), Errno> {
        self.map_req(&Type1DmaMap {
            flags,
            ..Type1DmaMap::new(vaddr, iova, size)
        })
    }

    /// `VFIO_IOMMU_UNMAP_DMA` of `req` with `bitmap`; the bytes unmapped.
    pub fn unmap_req(&self, mut req: Type1DmaUnmap, bitmap: &mut [u64]) -> Result<u64, Errno> {
        self.container
            .unmap_dma(&mut req, bitmap)
            .map(|()| req.size)
    }

    /// Plain `VFIO_IOMMU_UNMAP_DMA`; the bytes unmapped.
    pub fn unmap(&self, iova: u64, size: u64) -> Result<u64, Errno> {
        self.unmap_req(Type1DmaUnmap::new(iova, size), &mut [])
    }

    /// `VFIO_IOMMU_UNMAP_DMA` with `flags`; the bytes unmapped.
    pub fn unmap_flags(&self, flags: u32, iova: u64, size: u64) -> Result<u64, Errno> {
        self.unmap_req(
            Type1DmaUnmap {
                flags,
                ..Type1DmaUnmap::new(iova, size)
            },
            &mut [],
        )
    }

    /// `VFIO_DMA_UNMAP_FLAG_ALL`.
    pub fn unmap_all(&self) -> Result<u64, Errno> {
        self.unmap_flags(VFIO_DMA_UNMAP_FLAG_ALL, 0, 0)
    }

    /// `VFIO_IOMMU_GET_INFO` into a buffer of `len` bytes with `argsz`: the raw reply.
    pub fn info_raw(&self, argsz: u32, len: usize) -> Result<Vec<u8>, Errno> {
        let mut buf = vec![0xa5u8; len];
        buf[..4].copy_from_slice(&argsz.to_le_bytes());
        self.container.iommu_get_info(&mut buf).map(|()| buf)
    }

    /// `VFIO_IOMMU_GET_INFO` with room for everything, parsed.
    pub fn info(&self) -> Result<Type1Info, Fail> {
        let raw = self.ok("VFIO_IOMMU_GET_INFO", self.info_raw(4096, 4096))?;
        Type1Info::parse(&raw).map_err(|e| Fail(format!("parsing GET_INFO: {e:?}")))
    }

    /// The `DMA_AVAIL` capability.
    pub fn dma_avail(&self) -> Result<u32, Fail> {
        self.info()?
            .caps
            .iter()
            .find_map(|c| match c {
                Type1InfoCap::DmaAvail(n) => Some(*n),
                _ => None,
            })
            .ok_or_else(|| Fail("GET_INFO without DMA_AVAIL".into()))
    }

    /// The `IOVA_RANGE` capability.
    pub fn ranges(&self) -> Result<Vec<(u64, u64)>, Fail> {
        self.info()?
            .caps
            .into_iter()
            .find_map(|c| match c {
                Type1InfoCap::IovaRange(r) => Some(r),
                _ => None,
            })
            .ok_or_else(|| Fail("GET_INFO without IOVA_RANGE".into()))
    }

    /// `VFIO_IOMMU_DIRTY_PAGES` with `flags` and the minimal `argsz`.
    pub fn dirty(&self, flags: u32) -> Result<(), Errno> {
        self.container.dirty_pages(
            &Type1DirtyPages {
                argsz: 8,
                flags,
                iova: 0,
                size: 0,
                pgsize: 0,
            },
            &mut [],
        )
    }

    /// `GET_BITMAP` of `[iova, iova + size)` at `pgsize` into `words` words filled with
    /// `fill`; the bitmap.
    pub fn get_bitmap(
        &self,
        iova: u64,
        size: u64,
        pgsize: u64,
        words: usize,
        fill: u64,
    ) -> Result<Vec<u64>, Errno> {
        let mut bitmap = vec![fill; words];
        self.container
            .dirty_pages(
                &Type1DirtyPages {
                    argsz: DIRTY_PAGES_GET_ARGSZ,
                    flags: VFIO_IOMMU_DIRTY_PAGES_FLAG_GET_BITMAP,
                    iova,
                    size,
                    pgsize,
                },
                &mut bitmap,
            )
            .map(|()| bitmap)
    }

    /// An unmap of `[iova, iova + size)` with `GET_DIRTY_BITMAP` into `words` zeroed words;
    /// the bytes unmapped and the bitmap.
    pub fn unmap_bitmap(
        &self,
        iova: u64,
        size: u64,
        pgsize: u64,
        words: usize,
    ) -> Result<(u64, Vec<u64>), Errno> {
        let mut bitmap = vec![0u64; words];
        let req = Type1DmaUnmap {
            argsz: DMA_UNMAP_ARGSZ + BITMAP_ARGSZ,
            flags: VFIO_DMA_UNMAP_FLAG_GET_DIRTY_BITMAP,
            bitmap_pgsize: pgsize,
            ..Type1DmaUnmap::new(iova, size)
        };
        self.unmap_req(req, &mut bitmap).map(|n| (n, bitmap))
    }
}
