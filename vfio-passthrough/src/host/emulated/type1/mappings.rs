//! [`Mappings`]: the container's user mappings (`iommu->dma_list`, one `struct vfio_dma` each),
//! and the two tree searches the driver's rules are written in.
//!
//! Ends are computed in `u128`: a mapping may end at 2^64 when the aperture reaches the top.

use std::collections::BTreeMap;
use std::sync::Arc;

use crate::host::emulated::{Pages, Prot};

use super::dirty::DmaBitmap;

/// One `VFIO_IOMMU_MAP_DMA` (`struct vfio_dma`).
#[derive(Debug)]
pub(super) struct Dma {
    /// First IOVA.
    pub(super) iova: u64,
    /// Bytes.
    pub(super) size: u64,
    /// The process address it was mapped from (or last updated to with `VADDR`).
    pub(super) vaddr: u64,
    /// Access rights.
    pub(super) prot: Prot,
    /// The pinned memory.
    pub(super) pages: Arc<Pages>,
    /// Invalidated by `VFIO_DMA_UNMAP_FLAG_VADDR`, awaiting a new address.
    pub(super) vaddr_invalid: bool,
    /// Its dirty bitmap, while tracking is on.
    pub(super) bitmap: Option<DmaBitmap>,
}

impl Dma {
    /// One past the last IOVA.
    pub(super) fn end(&self) -> u128 {
        u128::from(self.iova) + u128::from(self.size)
    }
}

/// The mappings, by first IOVA; they never overlap.
#[derive(Debug, Default)]
pub(super) struct Mappings {
    map: BTreeMap<u64, Dma>,
}

impl Mappings {
    /// Number of mappings.
    pub(super) fn len(&self) -> usize {
        self.map.len()
    }

    /// `vfio_find_dma(start, size)`: a mapping meeting `[start, start + size)`; with `size` 0,
    /// one holding `start` other than at its first byte.
    pub(super) fn find(&self, start: u64, size: u64) -> Option<&Dma> {
        let bound = u128::from(start) + u128::from(size);
        let candidate = match u64::try_from(bound) {
            Ok(b) => self.map.range(..b).next_back(),
            Err(_) => self.map.iter().next_back(),
        };
        candidate
            .map(|(_, d)| d)
            .filter(|d| d.end() > u128::from(start))
    }

    /// `vfio_find_dma_first_node(start, size)`: the first IOVA of the lowest mapping ending
    /// after `start`, unless it begins at or past `start + size` (`size` 0: no such limit).
    pub(super) fn first_from(&self, start: u64, size: u64) -> Option<u64> {
        let holding = self
            .map
            .range(..=start)
            .next_back()
            .filter(|(_, d)| d.end() > u128::from(start));
        let (&key, dma) = holding.or_else(|| self.map.range(start..).next())?;
        if size != 0 && u128::from(dma.iova) >= u128::from(start) + u128::from(size) {
            return None;
        }
        Some(key)
    }

    /// The first IOVA of the mapping after the one at `key`.
    pub(super) fn next_after(&self, key: u64) -> Option<u64> {
        use std::ops::Bound::{Excluded, Unbounded};
        self.map
            .range((Excluded(key), Unbounded))
            .next()
            .map(|(&k, _)| k)
    }

    /// The mapping at first IOVA `key`.
    pub(super) fn get(&self, key: u64) -> Option<&Dma> {
        self.map.get(&key)
    }

    /// The mapping at first IOVA `key`, mutably.
    pub(super) fn get_mut(&mut self, key: u64) -> Option<&mut Dma> {
        self.map.get_mut(&key)
    }

    /// Adds a mapping (the caller checked it overlaps nothing).
    pub(super) fn insert(&mut self, dma: Dma) {
        debug_assert!(self.find(dma.iova, dma.size).is_none());
        self.map.insert(dma.iova, dma);
    }

    /// Removes the mapping at `key`.
    pub(super) fn remove(&mut self, key: u64) -> Option<Dma> {
        self.map.remove(&key)
    }

    /// Every mapping, ascending.
    pub(super) fn iter(&self) -> impl Iterator<Item = &Dma> {
        self.map.values()
    }

    /// Every mapping, ascending, mutably.
    pub(super) fn iter_mut(&mut self) -> impl Iterator<Item = &mut Dma> {
        self.map.values_mut()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::host::emulated::{EmulatedHost, HostConfig};

    fn list(ranges: &[(u64, u64)]) -> Mappings {
        let host = EmulatedHost::new(HostConfig::unprivileged(0));
        let pages = crate::host::emulated::Pages::user(
            &host,
            0x7000_0000,
            0x1000,
            true,
            crate::host::emulated::accounting::AccountMode::None,
        )
        .unwrap();
        let mut m = Mappings::default();
        for &(iova, size) in ranges {
            m.insert(Dma {
                iova,
                size,
                vaddr: 0x7000_0000,
                prot: Prot::default(),
                pages: pages.clone(),
                vaddr_invalid: false,
                bitmap: None,
            });
        }
        m
    }

    #[test]
    fn find_matches_overlaps_and_size_zero_means_strictly_inside() {
        let m = list(&[(0x1000, 0x2000), (0x8000, 0x1000)]);
        assert_eq!(m.find(0, 0x1000).map(|d| d.iova), None);
        assert_eq!(m.find(0, 0x1001).map(|d| d.iova), Some(0x1000));
        assert_eq!(m.find(0x2fff, 1).map(|d| d.iova), Some(0x1000));
        assert_eq!(m.find(0x3000, 0x5000).map(|d| d.iova), None);
        assert_eq!(m.find(0x3000, 0x5001).map(|d| d.iova), Some(0x8000));
        assert_eq!(m.find(0x1000, 0).map(|d| d.iova), None, "first byte");
        assert_eq!(m.find(0x1001, 0).map(|d| d.iova), Some(0x1000));
        assert_eq!(m.find(u64::MAX, u64::MAX).map(|d| d.iova), None);
        assert_eq!(m.find(0, u64::MAX).map(|d| d.iova), Some(0x8000));
    }

    #[test]
    fn first_from_finds_the_mapping_holding_or_after_the_start() {
        let m = list(&[(0x1000, 0x2000), (0x8000, 0x1000)]);
        assert_eq!(m.first_from(0x2000, 0x1000), Some(0x1000));
        assert_eq!(m.first_from(0x3000, 0x1000), None);
        assert_eq!(m.first_from(0x3000, 0x5001), Some(0x8000));
        assert_eq!(m.first_from(0x3000, 0), Some(0x8000));
        assert_eq!(m.first_from(0x9000, 0), None);
        assert_eq!(m.next_after(0x1000), Some(0x8000));
        assert_eq!(m.next_after(0x8000), None);
    }
}
