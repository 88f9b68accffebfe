//! `VFIO_IOMMU_MAP_DMA`, `VFIO_IOMMU_UNMAP_DMA` and `VFIO_IOMMU_DIRTY_PAGES` on a
//! [`Type1Iommu`], checked in the order of `vfio_iommu_type1.c` (6.12), since the first failing
//! check decides the errno a caller sees.

use std::sync::Arc;

use crate::errno::Errno;
use crate::host::emulated::{EmulatedHost, Pages, Prot};
use crate::host::type1::{
    BITMAP_ARGSZ, DIRTY_PAGES_GET_ARGSZ, DMA_MAP_ARGSZ, DMA_UNMAP_ARGSZ, Type1DirtyPages,
    Type1DmaMap, Type1DmaUnmap, VFIO_DMA_MAP_FLAG_READ, VFIO_DMA_MAP_FLAG_VADDR,
    VFIO_DMA_MAP_FLAG_WRITE, VFIO_DMA_UNMAP_FLAG_ALL, VFIO_DMA_UNMAP_FLAG_GET_DIRTY_BITMAP,
    VFIO_DMA_UNMAP_FLAG_VADDR, VFIO_IOMMU_DIRTY_PAGES_FLAG_GET_BITMAP,
    VFIO_IOMMU_DIRTY_PAGES_FLAG_START, VFIO_IOMMU_DIRTY_PAGES_FLAG_STOP,
};

use super::dirty::{DmaBitmap, pgshift, verify_bitmap_size};
use super::driver::Type1Iommu;
use super::mappings::Dma;

/// `minsz` of `VFIO_IOMMU_DIRTY_PAGES` (`argsz`, `flags`).
const DIRTY_PAGES_MINSZ: u32 = 8;

/// The byte size the kernel sees for a bitmap slice (`vfio_bitmap.size`).
fn bitmap_bytes(bitmap: &[u64]) -> u64 {
    (bitmap.len() as u64).saturating_mul(8)
}

impl Type1Iommu {
    /// `vfio_iommu_type1_map_dma` and `vfio_dma_do_map`. On error nothing changes (a mapping
    /// that cannot be pinned entirely is removed again, as `vfio_pin_map_dma` does).
    pub(super) fn map_dma(
        &mut self,
        host: &Arc<EmulatedHost>,
        req: &Type1DmaMap,
    ) -> Result<(), Errno> {
        let mask = VFIO_DMA_MAP_FLAG_READ | VFIO_DMA_MAP_FLAG_WRITE | VFIO_DMA_MAP_FLAG_VADDR;
        if req.argsz < DMA_MAP_ARGSZ || req.flags & !mask != 0 {
            return Err(Errno::EINVAL);
        }
        let prot = Prot {
            read: req.flags & VFIO_DMA_MAP_FLAG_READ != 0,
            write: req.flags & VFIO_DMA_MAP_FLAG_WRITE != 0,
        };
        let set_vaddr = req.flags & VFIO_DMA_MAP_FLAG_VADDR != 0;
        let any_prot = prot.read || prot.write;
        if any_prot == set_vaddr {
            return Err(Errno::EINVAL);
        }
        let pgsize = self.min_pgsize();
        let (iova, size, vaddr) = (req.iova, req.size, req.vaddr);
        if size == 0 || (size | iova | vaddr) & (pgsize - 1) != 0 {
            return Err(Errno::EINVAL);
        }
        if iova.checked_add(size - 1).is_none() || vaddr.checked_add(size - 1).is_none() {
            return Err(Errno::EINVAL);
        }
        let found = self
            .dma
            .find(iova, size)
            .map(|d| (d.iova, d.size, d.vaddr_invalid));
        if set_vaddr {
            return match found {
                None => Err(Errno::ENOENT),
                Some((d_iova, d_size, true)) if d_iova == iova && d_size == size => {
                    if let Some(dma) = self.dma.get_mut(d_iova) {
                        dma.vaddr = vaddr;
                        dma.vaddr_invalid = false;
                    }
                    self.vaddr_invalid_count = self.vaddr_invalid_count.saturating_sub(1);
                    Ok(())
                }
                Some(_) => Err(Errno::EINVAL),
            };
        }
        if found.is_some() {
            return Err(Errno::EEXIST);
        }
        if self.dma_avail == 0 {
            return Err(Errno::ENOSPC);
        }
        if !self.iova_list.contains(iova, iova + (size - 1)) {
            return Err(Errno::EINVAL);
        }
        // Pinning what is not process memory (the top of the address space) faults.
        let pages = Pages::user(host, vaddr, size, prot.write, host.account_mode(true))
            .map_err(|_| Errno::EFAULT)?;
        pages.load(0, pages.npages() - 1)?;
        // A mapping made while tracking gets its bitmap once pinned; without one it goes
        // again (`vfio_remove_dma`).
        let bitmap = if self.dirty_tracking {
            match DmaBitmap::alloc(size, pgsize) {
                Ok(b) => Some(b),
                Err(e) => {
                    pages.unload(0, pages.npages() - 1);
                    return Err(e);
                }
            }
        } else {
            None
        };
        for domain in self.domains() {
            domain.write_table().map(iova, size, pages.clone(), 0, prot);
        }
        self.dma.insert(Dma {
            iova,
            size,
            vaddr,
            prot,
            pages,
            vaddr_invalid: false,
            bitmap,
        });
        self.dma_avail -= 1;
        Ok(())
    }

    /// `vfio_iommu_type1_unmap_dma` and `vfio_dma_do_unmap`. `req.size` is updated only on
    /// success (the kernel copies the struct back only then).
    pub(super) fn unmap_dma(
        &mut self,
        req: &mut Type1DmaUnmap,
        bitmap: &mut [u64],
    ) -> Result<(), Errno> {
        let mask = VFIO_DMA_UNMAP_FLAG_GET_DIRTY_BITMAP
            | VFIO_DMA_UNMAP_FLAG_VADDR
            | VFIO_DMA_UNMAP_FLAG_ALL;
        if req.argsz < DMA_UNMAP_ARGSZ || req.flags & !mask != 0 {
            return Err(Errno::EINVAL);
        }
        let get_bitmap = req.flags & VFIO_DMA_UNMAP_FLAG_GET_DIRTY_BITMAP != 0;
        let unmap_all = req.flags & VFIO_DMA_UNMAP_FLAG_ALL != 0;
        let invalidate_vaddr = req.flags & VFIO_DMA_UNMAP_FLAG_VADDR != 0;
        if get_bitmap && (unmap_all || invalidate_vaddr) {
            return Err(Errno::EINVAL);
        }
        if get_bitmap {
            if req.argsz < DMA_UNMAP_ARGSZ + BITMAP_ARGSZ {
                return Err(Errno::EINVAL);
            }
            verify_bitmap_size(req.size, req.bitmap_pgsize, bitmap_bytes(bitmap))?;
        }
        let pgsize = self.min_pgsize();
        let iova = req.iova;
        if iova & (pgsize - 1) != 0 {
            return Err(Errno::EINVAL);
        }
        let size = if unmap_all {
            if iova != 0 || req.size != 0 {
                return Err(Errno::EINVAL);
            }
            u64::MAX
        } else {
            let size = req.size;
            if size == 0 || size & (pgsize - 1) != 0 || iova.checked_add(size - 1).is_none() {
                return Err(Errno::EINVAL);
            }
            size
        };
        if get_bitmap && (!self.dirty_tracking || req.bitmap_pgsize != pgsize) {
            return Err(Errno::EINVAL);
        }
        let end = u128::from(iova) + u128::from(size);
        if self.v2 && !unmap_all {
            self.check_not_bisected(iova, size)?;
        }
        let shift = pgsize.trailing_zeros();
        let mut unmapped = 0u64;
        let mut invalidated = Vec::new();
        let mut key = self.dma.first_from(iova, size);
        while let Some(k) = key {
            let Some(dma) = self.dma.get(k) else { break };
            if u128::from(dma.iova) >= end || (!self.v2 && iova > dma.iova) {
                break;
            }
            let (d_iova, d_size, d_invalid) = (dma.iova, dma.size, dma.vaddr_invalid);
            key = self.dma.next_after(k);
            if invalidate_vaddr {
                if d_invalid {
                    for &k in &invalidated {
                        if let Some(d) = self.dma.get_mut(k) {
                            d.vaddr_invalid = false;
                        }
                        self.vaddr_invalid_count = self.vaddr_invalid_count.saturating_sub(1);
                    }
                    return Err(Errno::EINVAL);
                }
                if let Some(d) = self.dma.get_mut(k) {
                    d.vaddr_invalid = true;
                }
                self.vaddr_invalid_count += 1;
                invalidated.push(k);
                unmapped = unmapped.wrapping_add(d_size);
                continue;
            }
            if get_bitmap && let Some(dma) = self.dma.get_mut(k) {
                // Tracking is on, so every mapping has its bitmap; the fallback only keeps a
                // broken invariant from being a panic (the kernel would dereference NULL).
                let dma_bitmap = dma.bitmap.get_or_insert_with(DmaBitmap::default);
                dma_bitmap.update_user_bitmap(bitmap, iova, d_iova, d_size, shift)?;
            }
            unmapped = unmapped.wrapping_add(d_size);
            self.remove_dma(k);
        }
        req.size = unmapped;
        Ok(())
    }

    /// The v2 rule: no mapping may hold `iova` other than at its start, nor the range's last
    /// byte other than at its end (`EINVAL`).
    fn check_not_bisected(&self, iova: u64, size: u64) -> Result<(), Errno> {
        if let Some(d) = self.dma.find(iova, 1)
            && d.iova != iova
        {
            return Err(Errno::EINVAL);
        }
        let end = u128::from(iova) + u128::from(size);
        if let Some(d) = self.dma.find(iova + (size - 1), 0)
            && d.end() != end
        {
            return Err(Errno::EINVAL);
        }
        Ok(())
    }

    /// `vfio_iommu_type1_dirty_pages`.
    pub(super) fn dirty_pages(
        &mut self,
        req: &Type1DirtyPages,
        bitmap: &mut [u64],
    ) -> Result<(), Errno> {
        let mask = VFIO_IOMMU_DIRTY_PAGES_FLAG_START
            | VFIO_IOMMU_DIRTY_PAGES_FLAG_STOP
            | VFIO_IOMMU_DIRTY_PAGES_FLAG_GET_BITMAP;
        if !self.v2 {
            return Err(Errno::EACCES);
        }
        if req.argsz < DIRTY_PAGES_MINSZ || req.flags & !mask != 0 {
            return Err(Errno::EINVAL);
        }
        if req.flags.count_ones() != 1 {
            return Err(Errno::EINVAL);
        }
        match req.flags {
            VFIO_IOMMU_DIRTY_PAGES_FLAG_START => self.start_tracking(),
            VFIO_IOMMU_DIRTY_PAGES_FLAG_STOP => {
                // vfio_dma_bitmap_free_all
                if self.dirty_tracking {
                    self.dirty_tracking = false;
                    for dma in self.dma.iter_mut() {
                        dma.bitmap = None;
                    }
                }
                Ok(())
            }
            _ => self.get_bitmap(req, bitmap),
        }
    }

    /// `VFIO_IOMMU_DIRTY_PAGES_FLAG_START`: a zeroed bitmap for every mapping
    /// (`vfio_dma_bitmap_alloc_all`), all or none; nothing when tracking already (the
    /// bitmaps, with what earlier queries left in them, stay).
    fn start_tracking(&mut self) -> Result<(), Errno> {
        if self.dirty_tracking {
            return Ok(());
        }
        let pgsize = self.min_pgsize();
        let bitmaps = self
            .dma
            .iter()
            .map(|dma| DmaBitmap::alloc(dma.size, pgsize))
            .collect::<Result<Vec<_>, _>>()?;
        for (dma, b) in self.dma.iter_mut().zip(bitmaps) {
            dma.bitmap = Some(b);
        }
        self.dirty_tracking = true;
        Ok(())
    }

    /// `VFIO_IOMMU_DIRTY_PAGES_FLAG_GET_BITMAP` (`vfio_iova_dirty_bitmap`): every mapping
    /// inside the range, ascending, is copied out with `update_user_bitmap`, every page dirty,
    /// then its pages are cleared in its own bitmap. The first mapping failing stops the
    /// query with what came before written.
    fn get_bitmap(&mut self, req: &Type1DirtyPages, bitmap: &mut [u64]) -> Result<(), Errno> {
        if req.argsz < DIRTY_PAGES_GET_ARGSZ {
            return Err(Errno::EINVAL);
        }
        let (iova, size) = (req.iova, req.size);
        if iova.checked_add(size).is_none() {
            return Err(Errno::EINVAL);
        }
        verify_bitmap_size(size, req.pgsize, bitmap_bytes(bitmap))?;
        let pgsize = self.min_pgsize();
        if req.pgsize != pgsize || iova & (pgsize - 1) != 0 {
            return Err(Errno::EINVAL);
        }
        if size == 0 || size & (pgsize - 1) != 0 || !self.dirty_tracking {
            return Err(Errno::EINVAL);
        }
        self.check_not_bisected(iova, size)?;
        let shift = pgshift(pgsize).unwrap_or(0);
        let last = iova + (size - 1);
        for dma in self.dma.iter_mut() {
            if dma.iova < iova {
                continue;
            }
            if dma.iova > last {
                break;
            }
            // As in the unmap: never `None` while tracking.
            let dma_bitmap = dma.bitmap.get_or_insert_with(DmaBitmap::default);
            dma_bitmap.update_user_bitmap(bitmap, iova, dma.iova, dma.size, shift)?;
            dma_bitmap.clear_pages(dma.size >> shift)?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::host::emulated::accounting::AccountMode;
    use crate::host::emulated::{HostConfig, PAGE_SIZE};
    use crate::host::type1::VFIO_TYPE1V2_IOMMU;

    fn flags(flags: u32) -> Type1DirtyPages {
        Type1DirtyPages {
            argsz: DIRTY_PAGES_MINSZ,
            flags,
            iova: 0,
            size: 0,
            pgsize: 0,
        }
    }

    /// A mapping entered directly (no pinning) so that its size can exceed what a bitmap takes.
    fn dma(host: &Arc<EmulatedHost>, iova: u64, size: u64) -> Dma {
        Dma {
            iova,
            size,
            vaddr: 0x7000_0000,
            prot: Prot::default(),
            pages: Pages::user(host, 0x7000_0000, PAGE_SIZE, true, AccountMode::None).unwrap(),
            vaddr_invalid: false,
            bitmap: None,
        }
    }

    #[test]
    fn start_gives_every_mapping_a_bitmap_or_none_and_stop_frees_them() {
        let host = EmulatedHost::new(HostConfig::unprivileged(0));
        let mut iommu = Type1Iommu::open(VFIO_TYPE1V2_IOMMU, 16).unwrap();
        iommu.dma.insert(dma(&host, 0, PAGE_SIZE));
        // One page over INT_MAX: vfio_dma_bitmap_alloc refuses it, START fails whole.
        let huge = (i32::MAX as u64 + 1) * PAGE_SIZE;
        iommu.dma.insert(dma(&host, 1 << 50, huge));
        let start = flags(VFIO_IOMMU_DIRTY_PAGES_FLAG_START);
        assert_eq!(iommu.dirty_pages(&start, &mut []), Err(Errno::EINVAL));
        assert!(!iommu.dirty_tracking);
        assert!(iommu.dma.iter().all(|d| d.bitmap.is_none()));

        // Without it, START allocates; a second START keeps what the bitmaps hold.
        let gone = iommu.dma.remove(1 << 50).unwrap();
        assert_eq!(gone.size, huge);
        assert_eq!(iommu.dirty_pages(&start, &mut []), Ok(()));
        let b = iommu.dma.get_mut(0).unwrap().bitmap.as_mut().unwrap();
        b.set_pages(1).unwrap();
        let kept = b.clone();
        assert_eq!(iommu.dirty_pages(&start, &mut []), Ok(()));
        assert_eq!(iommu.dma.get(0).unwrap().bitmap.as_ref(), Some(&kept));

        let stop = flags(VFIO_IOMMU_DIRTY_PAGES_FLAG_STOP);
        assert_eq!(iommu.dirty_pages(&stop, &mut []), Ok(()));
        assert!(!iommu.dirty_tracking);
        assert!(iommu.dma.get(0).unwrap().bitmap.is_none());
        iommu.dma.remove(0);
    }
}
