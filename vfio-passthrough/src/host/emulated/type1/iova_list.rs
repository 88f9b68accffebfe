//! [`IovaList`]: the container's valid IOVA ranges (`iommu->iova_list`), kept as the driver
//! keeps it: the intersection of the attached domains' apertures, minus the reserved regions of
//! every attached group. The operations follow `vfio_iommu_aper_resize`,
//! `vfio_iommu_resv_exclude`, `vfio_iommu_aper_expand` and `vfio_iommu_resv_refresh` step for
//! step (including their edge behaviour), since `VFIO_IOMMU_GET_INFO` reports the list as is.

use crate::errno::Errno;

/// Sorted, disjoint, inclusive `(start, end)` ranges.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(super) struct IovaList {
    ranges: Vec<(u64, u64)>,
}

impl IovaList {
    /// The ranges, ascending.
    pub(super) fn ranges(&self) -> &[(u64, u64)] {
        &self.ranges
    }

    /// First and last range.
    pub(super) fn bounds(&self) -> Option<((u64, u64), (u64, u64))> {
        Some((*self.ranges.first()?, *self.ranges.last()?))
    }

    /// `vfio_iommu_iova_dma_valid`: one range holds all of `[start, end]`, or the list is empty
    /// (a container without an IOMMU-backed group).
    pub(super) fn contains(&self, start: u64, end: u64) -> bool {
        self.ranges.is_empty() || self.ranges.iter().any(|&(s, e)| start >= s && end <= e)
    }

    /// `vfio_iommu_aper_resize`: clips the list to `[start, end]` (an empty list becomes just
    /// that range). Like the kernel, a range whose last IOVA equals `start` is dropped.
    pub(super) fn aper_resize(&mut self, start: u64, end: u64) {
        if self.ranges.is_empty() {
            self.ranges.push((start, end));
            return;
        }
        // Ranges wholly before `start` go; the one holding it is cut.
        while let Some(&(s, e)) = self.ranges.first() {
            if start < s {
                break;
            }
            if start >= s && start < e {
                self.ranges[0].0 = start;
                break;
            }
            self.ranges.remove(0);
        }
        let mut i = 0;
        while i < self.ranges.len() {
            let (s, e) = self.ranges[i];
            if end > e {
                i += 1;
                continue;
            }
            if end > s && end <= e {
                self.ranges[i].1 = end;
                i += 1;
                continue;
            }
            self.ranges.remove(i);
        }
    }

    /// `vfio_iommu_resv_exclude`: cuts every reserved region out; `EINVAL` if nothing is left.
    pub(super) fn resv_exclude(&mut self, regions: &[(u64, u64)]) -> Result<(), Errno> {
        for &(start, end) in regions {
            let mut out = Vec::with_capacity(self.ranges.len() + 1);
            for &(s, e) in &self.ranges {
                if start > e || end < s {
                    out.push((s, e));
                    continue;
                }
                if start > s {
                    out.push((s, start - 1));
                }
                if end < e {
                    out.push((end + 1, e));
                }
            }
            self.ranges = out;
        }
        if self.ranges.is_empty() {
            return Err(Errno::EINVAL);
        }
        Ok(())
    }

    /// `vfio_iommu_aper_expand`: after a domain left, the first range starts and the last ends
    /// where the remaining apertures (`(start, last)` each) allow.
    pub(super) fn aper_expand(&mut self, apertures: &[(u64, u64)]) {
        if self.ranges.is_empty() {
            return;
        }
        let mut start = 0u64;
        let mut end = u64::MAX;
        for &(s, e) in apertures {
            start = start.max(s);
            end = end.min(e);
        }
        if let Some(first) = self.ranges.first_mut() {
            first.0 = start;
        }
        if let Some(last) = self.ranges.last_mut() {
            last.1 = end;
        }
    }

    /// `vfio_iommu_resv_refresh`: rebuilds the list from its outer bounds minus the reserved
    /// regions of the groups still attached. `EINVAL` (and the list is to be dropped) if it was
    /// empty or nothing is left.
    pub(super) fn resv_refresh(&mut self, regions: &[(u64, u64)]) -> Result<(), Errno> {
        let ((start, _), (_, end)) = self.bounds().ok_or(Errno::EINVAL)?;
        self.ranges.clear();
        self.aper_resize(start, end);
        self.resv_exclude(regions)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MSI: (u64, u64) = (0xfee0_0000, 0xfeef_ffff);

    #[test]
    fn a_first_group_gives_its_aperture_minus_the_msi_window() {
        let mut l = IovaList::default();
        l.aper_resize(0, (1 << 39) - 1);
        l.resv_exclude(&[MSI]).unwrap();
        assert_eq!(
            l.ranges(),
            &[(0, 0xfedf_ffff), (0xfef0_0000, (1 << 39) - 1)]
        );
        assert!(l.contains(0x1000, 0x1fff));
        assert!(!l.contains(0xfedf_f000, 0xfee0_0fff));
        assert!(!l.contains(1 << 39, (1 << 39) + 0xfff));
    }

    #[test]
    fn a_narrower_aperture_clips_and_a_wider_one_changes_nothing() {
        let mut l = IovaList::default();
        l.aper_resize(0, (1 << 48) - 1);
        l.resv_exclude(&[MSI]).unwrap();
        let wide = l.clone();
        l.aper_resize(0, (1 << 48) - 1);
        assert_eq!(l, wide);
        l.aper_resize(0, (1 << 30) - 1);
        assert_eq!(l.ranges(), &[(0, (1 << 30) - 1)]);
        l.aper_resize(0x1000, 0x1fff);
        assert_eq!(l.ranges(), &[(0x1000, 0x1fff)]);
    }

    #[test]
    fn excluding_everything_is_einval() {
        let mut l = IovaList::default();
        l.aper_resize(0x1000, 0x1fff);
        assert_eq!(l.resv_exclude(&[(0, u64::MAX)]), Err(Errno::EINVAL));
    }

    #[test]
    fn expand_and_refresh_recompute_from_the_remaining_groups() {
        let mut l = IovaList::default();
        l.aper_resize(0, (1 << 39) - 1);
        l.resv_exclude(&[MSI, (0x10_0000, 0x1f_ffff)]).unwrap();
        assert_eq!(l.ranges().len(), 3);
        l.aper_expand(&[(0, (1 << 48) - 1)]);
        l.resv_refresh(&[MSI]).unwrap();
        assert_eq!(
            l.ranges(),
            &[(0, 0xfedf_ffff), (0xfef0_0000, (1 << 48) - 1)]
        );
        let mut empty = IovaList::default();
        assert_eq!(empty.resv_refresh(&[]), Err(Errno::EINVAL));
    }
}
