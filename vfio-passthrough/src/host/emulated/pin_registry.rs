//! [`PinRegistry`]: how many times each host page is pinned, across every context of a host.
//!
//! The kernel counts pins in the `struct page` itself, so a page mapped by two unrelated
//! `IOMMU_IOAS_MAP` calls (two `iopt_pages`) is pinned twice, while areas sharing one
//! `iopt_pages` (`IOMMU_IOAS_COPY`) pin it once. `IOMMU_TEST_OP_MD_CHECK_REFS` reads that count.
//! The registry keys pins by [`PageSource`] and page number, in runs. The sources are few
//! (private memory and a handful of files), so an ordered map finds one in a few comparisons,
//! cheaper than hashing the key on every pin and unpin.

use std::collections::BTreeMap;

use super::PAGE_SHIFT;
use super::range_count::RangeCount;
use super::vma::{PageIdentity, PageSource};

/// Pin counts per host page.
#[derive(Debug, Default)]
pub(crate) struct PinRegistry {
    sources: BTreeMap<PageSource, RangeCount>,
}

impl PinRegistry {
    /// Pins `npages` pages from the page holding `first`.
    pub(crate) fn pin(&mut self, first: PageIdentity, npages: u64) {
        let page = first.offset >> PAGE_SHIFT;
        self.sources
            .entry(first.source)
            .or_default()
            .increment(page, page + npages);
    }

    /// Unpins what [`PinRegistry::pin`] pinned with the same arguments.
    pub(crate) fn unpin(&mut self, first: PageIdentity, npages: u64) {
        let page = first.offset >> PAGE_SHIFT;
        if let Some(counts) = self.sources.get_mut(&first.source) {
            counts.decrement(page, page + npages, |_, _| {});
            if counts.is_empty() {
                self.sources.remove(&first.source);
            }
        } else {
            debug_assert!(false, "unpin of a page source that holds no pins");
        }
    }

    /// How many times the page holding `at` is pinned.
    pub(crate) fn count(&self, at: PageIdentity) -> u32 {
        self.sources
            .get(&at.source)
            .map_or(0, |c| c.count_at(at.offset >> PAGE_SHIFT))
    }

    /// True if nothing is pinned.
    pub(crate) fn is_empty(&self) -> bool {
        self.sources.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pins_count_per_page_and_source() {
        let mut r = PinRegistry::default();
        let anon = |offset| PageIdentity {
            source: PageSource::Anon,
            offset,
        };
        let file = |offset| PageIdentity {
            source: PageSource::File { dev: 1, ino: 2 },
            offset,
        };
        r.pin(anon(0x10000), 4);
        r.pin(anon(0x12000), 4);
        r.pin(file(0x10000), 1);
        assert_eq!(r.count(anon(0x10fff)), 1);
        assert_eq!(r.count(anon(0x13000)), 2);
        assert_eq!(r.count(anon(0x16000)), 0);
        assert_eq!(r.count(file(0x10000)), 1);
        r.unpin(anon(0x10000), 4);
        r.unpin(anon(0x12000), 4);
        r.unpin(file(0x10000), 1);
        assert!(r.is_empty());
    }
}
