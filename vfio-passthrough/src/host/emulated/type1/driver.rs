//! [`Type1Iommu`]: the state `VFIO_SET_IOMMU` creates (the kernel's `struct vfio_iommu`) and
//! how groups join and leave it (`vfio_iommu_type1_attach_group` / `_detach_group`).
//!
//! A group joining gets a domain of its IOMMU: an existing one it is compatible with (same
//! snooping, same geometry: the Intel driver then attaches it), else a new one into which every
//! mapping is replayed. Joining narrows the valid IOVA ranges to the group's aperture and cuts
//! its reserved regions out; it fails with `EINVAL` if existing mappings would fall outside,
//! and with `EBUSY` while a mapping waits for a new process address (`VFIO_UPDATE_VADDR`).
//! The last group leaving removes every mapping.

use std::sync::Arc;

use crate::errno::Errno;
use crate::host::emulated::{Domain, Driver, PAGE_SIZE};
use crate::host::type1::info::{Type1Info, Type1InfoCap, VFIO_IOMMU_INFO_PGSIZES};
use crate::host::type1::{
    VFIO_DMA_CC_IOMMU, VFIO_TYPE1_IOMMU, VFIO_TYPE1V2_IOMMU, VFIO_UNMAP_ALL, VFIO_UPDATE_VADDR,
};

use super::config::GroupIommu;
use super::dirty::DIRTY_BITMAP_SIZE_MAX;
use super::group::GroupSlot;
use super::iova_list::IovaList;
use super::mappings::{Dma, Mappings};

/// `VFIO_TYPE1_NESTING_IOMMU` (6.12 still has it; it implies v2).
pub const VFIO_TYPE1_NESTING_IOMMU: u32 = 6;

/// One IOMMU domain of the container (`struct vfio_domain`).
#[derive(Debug)]
struct VfioDomain {
    domain: Arc<Domain>,
    /// The groups attached to it.
    groups: Vec<u32>,
    /// `enforce_cache_coherency`.
    snoop: bool,
    /// The IOMMU it was allocated for.
    iommu: GroupIommu,
}

/// The type1 driver's state of one container.
#[derive(Debug)]
pub(super) struct Type1Iommu {
    /// TYPE1v2 (or nesting) rather than TYPE1.
    pub(super) v2: bool,
    nesting: bool,
    /// Most recently created first (`list_add`).
    domains: Vec<VfioDomain>,
    /// The valid IOVA ranges.
    pub(super) iova_list: IovaList,
    /// The user mappings.
    pub(super) dma: Mappings,
    /// Mappings still allowed (`dma_avail`).
    pub(super) dma_avail: u32,
    /// AND of the domains' page sizes, sub-page sizes folded into `PAGE_SIZE`.
    pub(super) pgsize_bitmap: u64,
    /// `VFIO_IOMMU_DIRTY_PAGES_FLAG_START` is in effect.
    pub(super) dirty_tracking: bool,
    /// Mappings invalidated by `VFIO_DMA_UNMAP_FLAG_VADDR`.
    pub(super) vaddr_invalid_count: u32,
}

/// `vfio_iommu_type1_check_extension`; `iommu` is `None` before `VFIO_SET_IOMMU`, when every
/// registered driver is asked without state.
pub(super) fn check_extension(iommu: Option<&Type1Iommu>, extension: u32) -> u32 {
    match extension {
        VFIO_TYPE1_IOMMU | VFIO_TYPE1V2_IOMMU | VFIO_TYPE1_NESTING_IOMMU | VFIO_UNMAP_ALL => 1,
        // No mdev-style group can be in the container, which is what would disable it.
        VFIO_UPDATE_VADDR => u32::from(iommu.is_some()),
        VFIO_DMA_CC_IOMMU => iommu.map_or(0, |i| u32::from(i.domains.iter().all(|d| d.snoop))),
        _ => 0,
    }
}

impl Type1Iommu {
    /// `vfio_iommu_type1_open`: `EINVAL` for a type the driver does not offer.
    pub(super) fn open(iommu_type: u32, dma_entry_limit: u32) -> Result<Self, Errno> {
        let (v2, nesting) = match iommu_type {
            VFIO_TYPE1_IOMMU => (false, false),
            VFIO_TYPE1V2_IOMMU => (true, false),
            VFIO_TYPE1_NESTING_IOMMU => (true, true),
            _ => return Err(Errno::EINVAL),
        };
        Ok(Type1Iommu {
            v2,
            nesting,
            domains: Vec::new(),
            iova_list: IovaList::default(),
            dma: Mappings::default(),
            dma_avail: dma_entry_limit,
            pgsize_bitmap: !(PAGE_SIZE - 1),
            dirty_tracking: false,
            vaddr_invalid_count: 0,
        })
    }

    /// The smallest page size: what sizes, IOVAs and addresses must align to.
    pub(super) fn min_pgsize(&self) -> u64 {
        match self.pgsize_bitmap {
            0 => PAGE_SIZE,
            b => 1 << b.trailing_zeros(),
        }
    }

    /// `vfio_update_pgsize_bitmap`.
    fn update_pgsize_bitmap(&mut self) {
        let mut bitmap = u64::MAX;
        for d in &self.domains {
            bitmap &= d.domain.geometry().pgsize_bitmap;
        }
        if bitmap & (PAGE_SIZE - 1) != 0 {
            bitmap = (bitmap & !(PAGE_SIZE - 1)) | PAGE_SIZE;
        }
        self.pgsize_bitmap = bitmap;
    }

    /// `vfio_iommu_aper_conflict`: mappings outside `[start, end]`, or disjoint apertures.
    fn aper_conflict(&self, start: u64, end: u64) -> bool {
        let Some(((first_start, _), (_, last_end))) = self.iova_list.bounds() else {
            return false;
        };
        if start > last_end || end < first_start {
            return true;
        }
        if start > first_start && self.dma.find(first_start, start - first_start).is_some() {
            return true;
        }
        end < last_end && self.dma.find(end + 1, last_end - end).is_some()
    }

    /// `vfio_iommu_resv_conflict`: a mapping meets a reserved region.
    fn resv_conflict(&self, regions: &[(u64, u64)]) -> bool {
        regions
            .iter()
            .any(|&(s, e)| self.dma.find(s, (e - s).saturating_add(1)).is_some())
    }

    /// `vfio_iommu_type1_attach_group`. On error nothing changes.
    pub(super) fn attach_group(&mut self, slot: &GroupSlot) -> Result<(), Errno> {
        if self.vaddr_invalid_count != 0 {
            return Err(Errno::EBUSY);
        }
        if self.domains.iter().any(|d| d.groups.contains(&slot.id)) {
            return Err(Errno::EINVAL);
        }
        // iommu_enable_nesting: the Intel driver has no enable_nesting.
        if self.nesting {
            return Err(Errno::EINVAL);
        }
        let geometry = slot.iommu.geometry();
        if self.aper_conflict(geometry.aperture_start, geometry.aperture_last) {
            return Err(Errno::EINVAL);
        }
        let reserved = slot.iommu.reserved_regions();
        if self.resv_conflict(&reserved) {
            return Err(Errno::EINVAL);
        }
        let mut iova_copy = self.iova_list.clone();
        iova_copy.aper_resize(geometry.aperture_start, geometry.aperture_last);
        iova_copy.resv_exclude(&reserved)?;
        let snoop = slot.iommu.snoop_control;
        let existing = self
            .domains
            .iter_mut()
            .find(|d| d.snoop == snoop && d.iommu.geometry() == geometry);
        let domain = match existing {
            Some(d) => {
                d.groups.push(slot.id);
                d.domain.clone()
            }
            None => {
                let domain = Domain::new(Driver::Vtd, geometry, false, false);
                self.replay(&domain);
                self.domains.insert(
                    0,
                    VfioDomain {
                        domain: domain.clone(),
                        groups: vec![slot.id],
                        snoop,
                        iommu: slot.iommu,
                    },
                );
                self.update_pgsize_bitmap();
                domain
            }
        };
        self.iova_list = iova_copy;
        slot.set_domain(Some(domain));
        Ok(())
    }

    /// `vfio_iommu_replay`: maps every mapping into a new domain (the pages are already
    /// pinned by the domains before it).
    fn replay(&self, domain: &Domain) {
        let mut table = domain.write_table();
        for dma in self.dma.iter() {
            table.map(dma.iova, dma.size, dma.pages.clone(), 0, dma.prot);
        }
    }

    /// `vfio_iommu_type1_detach_group`; `remaining` are the reserved regions of the groups
    /// still in the container.
    pub(super) fn detach_group(&mut self, slot: &GroupSlot, remaining: &[(u64, u64)]) {
        let mut iova_copy = self.iova_list.clone();
        if let Some(index) = self
            .domains
            .iter()
            .position(|d| d.groups.contains(&slot.id))
        {
            self.domains[index].groups.retain(|&g| g != slot.id);
            if self.domains[index].groups.is_empty() {
                if self.domains.len() == 1 {
                    self.unmap_unpin_all();
                }
                let gone = self.domains.remove(index);
                let mut table = gone.domain.write_table();
                for dma in self.dma.iter() {
                    table.unmap(dma.iova, dma.size);
                }
                drop(table);
                let apertures: Vec<(u64, u64)> = self
                    .domains
                    .iter()
                    .map(|d| {
                        let g = d.domain.geometry();
                        (g.aperture_start, g.aperture_last)
                    })
                    .collect();
                iova_copy.aper_expand(&apertures);
                self.update_pgsize_bitmap();
            }
            // The group could not report dirty pages: with it gone the scope might narrow, so the
            // driver marks every page of every mapping dirty (`vfio_iommu_populate_bitmap_full`).
            if self.dirty_tracking {
                let shift = self.min_pgsize().trailing_zeros();
                for dma in self.dma.iter_mut() {
                    if let Some(b) = dma.bitmap.as_mut() {
                        // Fails only where a page count does not fit `usize`: not on 64-bit hosts.
                        let _ = b.set_pages(dma.size >> shift);
                    }
                }
            }
        }
        if iova_copy.resv_refresh(remaining).is_ok() {
            self.iova_list = iova_copy;
        }
        slot.set_domain(None);
    }

    /// `vfio_remove_dma` of the mapping at `key`: unmaps it from every domain, unpins.
    pub(super) fn remove_dma(&mut self, key: u64) -> Option<Dma> {
        let dma = self.dma.remove(key)?;
        for d in &self.domains {
            d.domain.write_table().unmap(dma.iova, dma.size);
        }
        dma.pages.unload(0, dma.pages.npages() - 1);
        if dma.vaddr_invalid {
            self.vaddr_invalid_count = self.vaddr_invalid_count.saturating_sub(1);
        }
        self.dma_avail = self.dma_avail.saturating_add(1);
        Some(dma)
    }

    /// `vfio_iommu_unmap_unpin_all`.
    pub(super) fn unmap_unpin_all(&mut self) {
        while let Some(key) = self.dma.first_from(0, 0) {
            self.remove_dma(key);
        }
    }

    /// The domains, for mapping new entries into.
    pub(super) fn domains(&self) -> impl Iterator<Item = &Arc<Domain>> {
        self.domains.iter().map(|d| &d.domain)
    }

    /// `VFIO_IOMMU_GET_INFO`'s reply for a caller buffer of `argsz` bytes: page sizes, then
    /// the MIGRATION, DMA_AVAIL and (when there are any) IOVA_RANGE capabilities.
    pub(super) fn info_reply(&self, argsz: usize) -> Vec<u8> {
        let mut caps = vec![
            Type1InfoCap::Migration {
                flags: 0,
                pgsize_bitmap: self.min_pgsize(),
                max_dirty_bitmap_size: DIRTY_BITMAP_SIZE_MAX,
            },
            Type1InfoCap::DmaAvail(self.dma_avail),
        ];
        if !self.iova_list.ranges().is_empty() {
            caps.push(Type1InfoCap::IovaRange(self.iova_list.ranges().to_vec()));
        }
        Type1Info::encode(VFIO_IOMMU_INFO_PGSIZES, self.pgsize_bitmap, &caps, argsz)
    }
}

impl Drop for Type1Iommu {
    /// `vfio_iommu_type1_release`: every mapping goes, unpinned.
    fn drop(&mut self) {
        self.unmap_unpin_all();
    }
}
