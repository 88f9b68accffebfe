//! [`Domain`]: an emulated paging domain (the `iommu_domain` behind a paging HWPT).
//!
//! It holds a real table, filled from the IOAS areas as the kernel fills a domain, and is the
//! hook the software IOMMU translates through: [`Domain::translate`] resolves an IOVA to the
//! memory behind it and [`Domain::mark_dirty`] is what a device write does when dirty tracking
//! is on. The table sits behind a `RwLock` so translations from device threads run in parallel
//! with each other; map, unmap and harvest take it for writing. Lock order: context, then
//! domain table, then pages, then host.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, RwLock, RwLockReadGuard, RwLockWriteGuard};

use super::page_table::{BitmapOut, PageTable, Prot};
use super::pages::Pages;
use super::profile::{Driver, Geometry, MOCK_IO_PAGE_SIZE};

/// Where an IOVA leads, as found by [`Domain::translate`].
#[derive(Debug, Clone)]
pub struct Translation {
    /// The memory.
    pub pages: Arc<Pages>,
    /// Byte offset in `pages` of the translated IOVA.
    pub offset: u64,
    /// Access rights.
    pub prot: Prot,
    /// Last IOVA of the contiguous mapping holding the translated IOVA: the translation holds
    /// for `[iova, mapping_last]`.
    pub mapping_last: u64,
}

/// A paging domain.
#[derive(Debug)]
pub struct Domain {
    driver: Driver,
    geometry: Geometry,
    dirty_ops: bool,
    nest_parent: bool,
    tracking: AtomicBool,
    table: RwLock<PageTable>,
}

impl Domain {
    /// A new, empty domain of `driver` with `geometry`; `dirty_ops` if allocated with
    /// `IOMMU_HWPT_ALLOC_DIRTY_TRACKING`, `nest_parent` with `IOMMU_HWPT_ALLOC_NEST_PARENT`.
    pub(crate) fn new(
        driver: Driver,
        geometry: Geometry,
        dirty_ops: bool,
        nest_parent: bool,
    ) -> Arc<Self> {
        Arc::new(Domain {
            driver,
            geometry,
            dirty_ops,
            nest_parent,
            tracking: AtomicBool::new(false),
            table: RwLock::new(PageTable::new(geometry.granule(), dirty_ops)),
        })
    }

    /// The driver that owns the domain.
    pub fn driver(&self) -> Driver {
        self.driver
    }

    /// Page sizes and aperture.
    pub fn geometry(&self) -> Geometry {
        self.geometry
    }

    /// The domain can track dirty pages (allocated with `DIRTY_TRACKING`).
    pub fn has_dirty_ops(&self) -> bool {
        self.dirty_ops
    }

    /// The domain may be the stage 2 of nested HWPTs.
    pub fn is_nest_parent(&self) -> bool {
        self.nest_parent
    }

    /// Dirty tracking is enabled (`IOMMU_HWPT_SET_DIRTY_TRACKING`).
    pub fn dirty_tracking(&self) -> bool {
        self.tracking.load(Ordering::Acquire)
    }

    pub(crate) fn set_tracking(&self, enable: bool) {
        self.tracking.store(enable, Ordering::Release);
    }

    pub(crate) fn read_table(&self) -> RwLockReadGuard<'_, PageTable> {
        self.table.read().unwrap_or_else(|e| e.into_inner())
    }

    pub(crate) fn write_table(&self) -> RwLockWriteGuard<'_, PageTable> {
        self.table.write().unwrap_or_else(|e| e.into_inner())
    }

    /// Translates `iova`: the memory and rights of the mapping holding it, or `None` when it
    /// is not mapped (a DMA fault).
    pub fn translate(&self, iova: u64) -> Option<Translation> {
        let table = self.read_table();
        let (start, m) = table.lookup(iova)?;
        Some(Translation {
            pages: m.pages.clone(),
            offset: m.offset + (iova - start),
            prot: m.prot,
            mapping_last: m.last,
        })
    }

    /// Records a device write to `[iova, iova + len)`: with dirty tracking enabled, the mapped
    /// granules it touches become dirty, as the IOMMU sets the dirty bit of an IOPTE.
    pub fn mark_dirty(&self, iova: u64, len: u64) {
        if len == 0 || !self.dirty_tracking() {
            return;
        }
        let last = iova.saturating_add(len - 1);
        self.write_table().set_dirty_range(iova, last);
    }

    /// Number of mappings (one per area filled into the domain).
    pub fn mapping_count(&self) -> usize {
        self.read_table().len()
    }

    /// `IOMMU_TEST_OP_DIRTY` on mock index `index` (the entry at `index * MOCK_IO_PAGE_SIZE`):
    /// sets its dirty bit if mapped; returns whether an entry was there.
    pub(crate) fn mock_set_dirty(&self, index: u64) -> bool {
        match index.checked_mul(MOCK_IO_PAGE_SIZE) {
            Some(iova) => self.write_table().set_dirty(iova),
            None => false,
        }
    }

    /// Harvests `[iova, last]` into `out` (`read_and_clear_dirty` of the driver). Without
    /// tracking enabled the drivers refuse (and the core ignores the error): nothing happens.
    pub(crate) fn read_and_clear_dirty(
        &self,
        iova: u64,
        last: u64,
        out: &mut BitmapOut<'_>,
        no_clear: bool,
    ) {
        if !self.dirty_tracking() {
            return;
        }
        self.write_table().read_dirty(iova, last, out, no_clear);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::host::emulated::accounting::AccountMode;
    use crate::host::emulated::config::HostConfig;
    use crate::host::emulated::host::EmulatedHost;
    use crate::host::emulated::profile::IommuProfile;

    fn domain(dirty: bool) -> (Arc<Domain>, Arc<Pages>) {
        let host = EmulatedHost::new(HostConfig::unprivileged(0));
        let pages = Pages::user(&host, 0x7000_0000, 1 << 20, true, AccountMode::None).unwrap();
        let d = Domain::new(Driver::Mock, IommuProfile::MOCK.geometry(), dirty, false);
        (d, pages)
    }

    #[test]
    fn translate_finds_the_mapping_and_its_offset() {
        let (d, pages) = domain(false);
        let rw = Prot {
            read: true,
            write: true,
        };
        d.write_table()
            .map(0x100_0000, 0x4000, pages.clone(), 0x800, rw);
        let t = d.translate(0x100_1234).unwrap();
        assert_eq!(t.offset, 0x800 + 0x1234);
        assert_eq!(t.mapping_last, 0x100_3fff);
        assert!(d.translate(0x100_4000).is_none());
        assert!(d.translate(0xff_ffff).is_none());
        d.write_table().unmap(0x100_0000, 0x4000);
        assert!(d.translate(0x100_0000).is_none());
    }

    #[test]
    fn dirty_bits_are_recorded_only_while_tracking() {
        let (d, pages) = domain(true);
        let rw = Prot {
            read: true,
            write: true,
        };
        d.write_table().map(0x100_0000, 0x10000, pages, 0, rw);
        d.mark_dirty(0x100_0000, 1);
        assert!(!d.read_table().is_dirty(0x100_0000));
        d.set_tracking(true);
        d.mark_dirty(0x100_1000, 0x1000);
        let mut words = [0u64; 1];
        let mut out = BitmapOut {
            words: &mut words,
            base: 0x100_0000,
            pgshift: 11,
        };
        d.read_and_clear_dirty(0x100_0000, 0x100_ffff, &mut out, false);
        assert_eq!(words[0], 0b1100);
        assert!(!d.read_table().is_dirty(0x100_1000));
        d.write_table().unmap(0x100_0000, 0x10000);
    }
}
