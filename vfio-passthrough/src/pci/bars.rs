//! BAR contents: the parts the guest reaches directly through mmaps, and where every other
//! access goes.
//!
//! # Mmap areas
//!
//! A memory BAR whose region is mmap-able is mapped area by area: the region's sparse-mmap
//! areas, or the whole region when it is mmap-able without that capability. The MSI-X table and
//! PBA are cut out of those areas, page-aligned, even when the region says the table may be
//! mapped (`MSIX_MAPPABLE`): the guest's table writes must reach the MSI-X model, which routes
//! the vectors. Areas are trimmed to whole host pages (KVM maps pages); the trimmed edges stay
//! trapped. The VMM maps each [`BarMmap`] into the guest at BAR base + offset while the BAR
//! decodes, and moves it with the BAR.
//!
//! # Trapped accesses
//!
//! Everything else the guest does in a BAR arrives as a bus access: the MSI-X table and PBA go
//! to the MSI-X model, the rest is forwarded to the region at its exact offset and width (so a
//! device register sees the same access the guest made). The ROM is read-only.

use std::ops::Range;

use devices::pci::{BarKind, MsixLayout, PCI_ROM_BAR_INDEX, PciBar};

use super::error::{BarAccessFault, VfioPciError};
use crate::vfio::{MmapArea, RegionInfo, VFIO_REGION_INFO_FLAG_WRITE, VfioDevice};

/// One mmapped part of a BAR.
#[derive(Debug)]
pub struct BarMmap {
    index: usize,
    offset: u64,
    area: MmapArea,
    writable: bool,
}

impl BarMmap {
    /// The BAR index.
    pub fn index(&self) -> usize {
        self.index
    }

    /// Offset of the area in the BAR (page aligned): the guest sees it at BAR base + offset.
    pub fn offset(&self) -> u64 {
        self.offset
    }

    /// The mapping: host address and length for a KVM memory slot.
    pub fn area(&self) -> &MmapArea {
        &self.area
    }

    /// Whether the mapping is writable (the region allows writes). A read-only area must be
    /// mapped read-only into the guest, so its writes exit and are forwarded (and refused) like
    /// any trapped access.
    pub fn writable(&self) -> bool {
        self.writable
    }
}

/// The size of a host page: the granule of KVM memory slots.
pub(super) fn host_page_size() -> u64 {
    // SAFETY: sysconf only reads a system constant; it has no memory effects.
    let size = unsafe { libc::sysconf(libc::_SC_PAGESIZE) };
    u64::try_from(size)
        .ok()
        .filter(|s| s.is_power_of_two())
        .unwrap_or(4096)
}

/// The `(bar index, offset, length)` of every area to mmap: mmap-able parts of memory BARs,
/// without the MSI-X table and PBA pages, trimmed to whole pages.
pub(super) fn mmap_plan(
    bars: &[PciBar],
    regions: &[RegionInfo],
    msix: Option<MsixLayout>,
    page: u64,
) -> Vec<(usize, u64, u64)> {
    let mut plan = Vec::new();
    for bar in bars {
        if !matches!(bar.kind, BarKind::Memory32 | BarKind::Memory64) {
            continue;
        }
        let Some(region) = regions.get(bar.index) else {
            continue;
        };
        let mut holes = Vec::new();
        if let Some(m) = msix {
            for (bir, offset, len) in [
                (m.table_bir, m.table_offset, m.table_len()),
                (m.pba_bir, m.pba_offset, m.pba_len()),
            ] {
                if usize::from(bir) == bar.index {
                    let start = u64::from(offset);
                    holes.push(align_down(start, page)..align_up(start + len, page));
                }
            }
        }
        for (offset, len) in region.mmap_areas() {
            let Some(end) = offset.checked_add(len) else {
                continue;
            };
            for piece in subtract(offset..end, &holes) {
                let start = align_up(piece.start, page);
                let end = align_down(piece.end, page);
                if start < end {
                    plan.push((bar.index, start, end - start));
                }
            }
        }
    }
    plan
}

/// Maps the planned areas. An area the device refuses to map stays trapped (slower, but the
/// device keeps working), with a warning.
pub(super) fn map_areas(
    device: &dyn VfioDevice,
    name: &str,
    regions: &[RegionInfo],
    plan: &[(usize, u64, u64)],
) -> Vec<BarMmap> {
    let mut maps = Vec::new();
    for &(index, offset, len) in plan {
        let writable = regions[index].flags & VFIO_REGION_INFO_FLAG_WRITE != 0;
        match device.region_mmap(index as u32, offset, len, writable) {
            Ok(area) => maps.push(BarMmap {
                index,
                offset,
                area,
                writable,
            }),
            Err(e) => log::warn!(
                "{name}: mapping BAR {index} [{offset:#x}, +{len:#x}) failed ({e}); its accesses will be trapped"
            ),
        }
    }
    maps
}

/// Where a trapped BAR access goes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum BarTarget {
    /// The MSI-X table, at this offset in it.
    MsixTable(u64),
    /// The PBA, at this offset in it.
    MsixPba(u64),
    /// The device region with the BAR's index, at the same offset.
    Region,
}

/// Routes an access of `len` bytes at `offset` of BAR `index`.
pub(super) fn route(
    name: &str,
    bars: &[PciBar],
    msix: Option<MsixLayout>,
    index: usize,
    offset: u64,
    len: usize,
) -> Result<BarTarget, VfioPciError> {
    let fault = |fault| VfioPciError::BarAccess {
        device: name.to_string(),
        index,
        offset,
        len,
        fault,
    };
    let bar = bars
        .iter()
        .find(|b| b.index == index)
        .ok_or_else(|| fault(BarAccessFault::NoSuchBar))?;
    if !matches!(len, 1 | 2 | 4 | 8) {
        return Err(fault(BarAccessFault::BadWidth));
    }
    if offset
        .checked_add(len as u64)
        .is_none_or(|end| end > bar.size)
    {
        return Err(fault(BarAccessFault::OutOfRange { size: bar.size }));
    }
    if let Some(m) = msix.filter(|_| index != PCI_ROM_BAR_INDEX) {
        let access = offset..offset + len as u64;
        for (bir, start, size, is_table) in [
            (m.table_bir, m.table_offset, m.table_len(), true),
            (m.pba_bir, m.pba_offset, m.pba_len(), false),
        ] {
            if usize::from(bir) != index {
                continue;
            }
            let range = u64::from(start)..u64::from(start) + size;
            if access.start >= range.start && access.end <= range.end {
                let at = access.start - range.start;
                return Ok(match is_table {
                    true => BarTarget::MsixTable(at),
                    false => BarTarget::MsixPba(at),
                });
            }
            if access.start < range.end && range.start < access.end {
                return Err(fault(BarAccessFault::StraddlesMsix));
            }
        }
    }
    Ok(BarTarget::Region)
}

fn subtract(range: Range<u64>, holes: &[Range<u64>]) -> Vec<Range<u64>> {
    let mut pieces = vec![range];
    for hole in holes {
        pieces = pieces
            .into_iter()
            .flat_map(|p| {
                let mut out = Vec::with_capacity(2);
                if p.start < hole.start.min(p.end) {
                    out.push(p.start..hole.start.min(p.end));
                }
                if hole.end.max(p.start) < p.end {
                    out.push(hole.end.max(p.start)..p.end);
                }
                out
            })
            .collect();
    }
    pieces
}

fn align_down(v: u64, page: u64) -> u64 {
    v & !(page - 1)
}

fn align_up(v: u64, page: u64) -> u64 {
    v.checked_next_multiple_of(page)
        .unwrap_or(align_down(u64::MAX, page))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::vfio::{RegionCap, VFIO_REGION_INFO_FLAG_MMAP, VFIO_REGION_INFO_FLAG_READ};

    const PAGE: u64 = 4096;

    fn mem_bar(index: usize, size: u64) -> PciBar {
        PciBar {
            index,
            size,
            kind: BarKind::Memory64,
            prefetchable: true,
        }
    }

    fn region(index: u32, size: u64, caps: Vec<RegionCap>) -> RegionInfo {
        RegionInfo {
            flags: VFIO_REGION_INFO_FLAG_READ
                | VFIO_REGION_INFO_FLAG_WRITE
                | VFIO_REGION_INFO_FLAG_MMAP,
            index,
            size,
            offset: u64::from(index) << 40,
            caps,
        }
    }

    fn msix_in_bar0(table_offset: u32, pba_offset: u32) -> MsixLayout {
        MsixLayout {
            table_size: 16,
            table_bir: 0,
            table_offset,
            pba_bir: 0,
            pba_offset,
        }
    }

    #[test]
    fn msix_pages_are_cut_out_even_when_the_region_maps_the_whole_bar() {
        let regions = [region(0, 0x10_000, vec![RegionCap::MsixMappable])];
        let plan = mmap_plan(
            &[mem_bar(0, 0x10_000)],
            &regions,
            Some(msix_in_bar0(0x4000, 0x8800)),
            PAGE,
        );
        assert_eq!(
            plan,
            [(0, 0, 0x4000), (0, 0x5000, 0x3000), (0, 0x9000, 0x7000)]
        );
    }

    #[test]
    fn sparse_areas_are_trimmed_to_whole_pages() {
        let regions = [region(
            0,
            0x10_000,
            vec![RegionCap::SparseMmap(vec![
                (0x100, 0x2000),
                (0x8000, 0x800),
            ])],
        )];
        let plan = mmap_plan(&[mem_bar(0, 0x10_000)], &regions, None, PAGE);
        // [0x100, 0x2100) keeps only the page [0x1000, 0x2000); half a page maps nothing.
        assert_eq!(plan, [(0, 0x1000, 0x1000)]);
    }

    #[test]
    fn accesses_are_routed_to_the_msix_model_or_the_region() {
        let bars = [mem_bar(0, 0x10_000)];
        let msix = Some(msix_in_bar0(0x4000, 0x5000));
        let r = |offset, len| route("d", &bars, msix, 0, offset, len);
        assert_eq!(r(0x4010, 4).unwrap(), BarTarget::MsixTable(0x10));
        assert_eq!(r(0x40f8, 8).unwrap(), BarTarget::MsixTable(0xf8));
        assert_eq!(r(0x5000, 8).unwrap(), BarTarget::MsixPba(0));
        assert_eq!(r(0x4100, 4).unwrap(), BarTarget::Region);
        assert_eq!(r(0x3ffe, 1).unwrap(), BarTarget::Region);
        assert!(matches!(
            r(0x3ffc, 8),
            Err(VfioPciError::BarAccess {
                fault: BarAccessFault::StraddlesMsix,
                ..
            })
        ));
        assert!(matches!(
            r(0xfffc, 8),
            Err(VfioPciError::BarAccess {
                fault: BarAccessFault::OutOfRange { size: 0x10_000 },
                ..
            })
        ));
        assert!(matches!(
            r(0, 3),
            Err(VfioPciError::BarAccess {
                fault: BarAccessFault::BadWidth,
                ..
            })
        ));
        assert!(matches!(
            route("d", &bars, msix, 3, 0, 4),
            Err(VfioPciError::BarAccess {
                fault: BarAccessFault::NoSuchBar,
                ..
            })
        ));
    }
}
