//! The software IOMMU's IOTLB: one [`Iotlb`] per context caching first-stage translations of
//! its nested HWPTs.
//!
//! - **Tags.** An entry is tagged with the nested HWPT it was walked through (a serial number
//!   no other table of the process ever gets), not with the device or PASID: the result of a
//!   walk depends only on the table, and the kernel's invalidation of a nested domain covers
//!   every (device, PASID) attached to it. Several devices or PASIDs on one HWPT share entries.
//! - **Only stage 1 is cached**: input address to guest physical address, rights and the
//!   paging-structure entries the walker may resume from. Stage 2 (guest physical to host
//!   memory) is looked up in the parent domain on every access, so an unmap of the IOAS can
//!   never leave a usable host translation behind, and needs no invalidation here.
//! - **Stale until invalidated**: a guest that changes its table keeps hitting the old
//!   translation until it invalidates it with `IOMMU_HWPT_INVALIDATE` (VT-d entries: range, leaf
//!   hint, or everything), exactly as on hardware.
//! - **Full flushes** of a HWPT's entries when a device or PASID leaves it (detach, replace),
//!   as the Intel driver flushes a PASID's caches when it tears the PASID entry down, and
//!   when the HWPT is destroyed.
//! - The cache is built on first use, so contexts that never translate nested DMA pay nothing.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, OnceLock};

use viommu::iotlb::{Iotlb, IotlbStats, RangeInvalidation};
use viommu::vtd::{Access, FirstStageConfig, FirstStageFault, TableMemory, Translation};

/// Serial numbers of nested tables, unique for the life of the process.
static NEXT_SERIAL: AtomicU64 = AtomicU64::new(1);

/// The IOTLB of one emulated context (see the module documentation).
#[derive(Debug, Default)]
pub(crate) struct NestedIotlb {
    cache: OnceLock<Iotlb<u64>>,
}

impl NestedIotlb {
    /// An empty IOTLB.
    pub(crate) fn new() -> Arc<Self> {
        Arc::new(NestedIotlb::default())
    }

    /// A tag for a new nested table.
    pub(crate) fn new_tag() -> u64 {
        NEXT_SERIAL.fetch_add(1, Ordering::Relaxed)
    }

    fn cache(&self) -> &Iotlb<u64> {
        self.cache.get_or_init(Iotlb::default)
    }

    /// Translates `iova` for `access` under `tag`: from the cache, or by walking the table
    /// `config` describes through `mem` and caching the result.
    pub(crate) fn translate<M: TableMemory + ?Sized>(
        &self,
        tag: u64,
        config: &FirstStageConfig,
        iova: u64,
        access: Access,
        mem: &mut M,
    ) -> Result<Translation, FirstStageFault> {
        self.cache().translate(tag, config, iova, access, mem)
    }

    /// Drops `tag`'s entries overlapping `npages` 4 KiB pages from `addr` (`u64::MAX` pages:
    /// all of them), non-leaf entries too unless `leaf_only`.
    pub(crate) fn invalidate_range(&self, tag: u64, addr: u64, npages: u64, leaf_only: bool) {
        if let Some(cache) = self.cache.get() {
            cache.invalidate_range(
                tag,
                RangeInvalidation {
                    addr,
                    npages,
                    leaf_only,
                },
            );
        }
    }

    /// Drops every entry of `tag`.
    pub(crate) fn flush(&self, tag: u64) {
        if let Some(cache) = self.cache.get() {
            cache.invalidate_tag(tag);
        }
    }

    /// Hits, misses and occupancy so far.
    pub(crate) fn stats(&self) -> IotlbStats {
        self.cache.get().map(Iotlb::stats).unwrap_or_default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use viommu::vtd::pte::{USER, WRITABLE};
    use viommu::vtd::{FirstStageTableBuilder, PageSize, PagingMode, SparseTableMemory};

    #[test]
    fn entries_stay_stale_until_their_tag_is_invalidated() {
        let mut mem = SparseTableMemory::new();
        let mut b =
            FirstStageTableBuilder::new(&mut mem, PagingMode::FourLevel, 0x1_0000..0x2_0000)
                .unwrap();
        b.map(
            &mut mem,
            0x4000,
            0x9000,
            PageSize::Size4KiB,
            USER | WRITABLE,
        )
        .unwrap();
        let config = FirstStageConfig::new(b.root(), PagingMode::FourLevel, 48).unwrap();
        let iotlb = NestedIotlb::new();
        assert_eq!(iotlb.stats(), IotlbStats::default(), "built on first use");
        let (t1, t2) = (NestedIotlb::new_tag(), NestedIotlb::new_tag());
        assert_ne!(t1, t2);
        let out = |iotlb: &NestedIotlb, tag, mem: &mut SparseTableMemory| {
            iotlb
                .translate(tag, &config, 0x4010, Access::READ, mem)
                .map(|t| t.output)
        };
        assert_eq!(out(&iotlb, t1, &mut mem), Ok(0x9010));
        assert_eq!(out(&iotlb, t2, &mut mem), Ok(0x9010));
        b.map(
            &mut mem,
            0x4000,
            0xa000,
            PageSize::Size4KiB,
            USER | WRITABLE,
        )
        .unwrap();
        assert_eq!(out(&iotlb, t1, &mut mem), Ok(0x9010), "stale");
        iotlb.invalidate_range(t1, 0x4000, 1, true);
        assert_eq!(out(&iotlb, t1, &mut mem), Ok(0xa010));
        assert_eq!(
            out(&iotlb, t2, &mut mem),
            Ok(0x9010),
            "other tags keep theirs"
        );
        iotlb.flush(t2);
        assert_eq!(out(&iotlb, t2, &mut mem), Ok(0xa010));
        assert!(iotlb.stats().hits >= 2);
    }
}
