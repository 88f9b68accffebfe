//! `VFIO_IOMMU_UNMAP_DMA`: v2 semantics (no bisecting, atomic), empty ranges, holes, `ALL`,
//! the bitmap variant; and v1 semantics on a `VFIO_TYPE1_IOMMU` container.

use vfio_passthrough::errno::Errno;
use vfio_passthrough::host::type1::*;

use super::{B, P};
use crate::conformance::Fail;
use crate::conformance::type1::Type1Env;

const GDB: u32 = VFIO_DMA_UNMAP_FLAG_GET_DIRTY_BITMAP;
const ALL: u32 = VFIO_DMA_UNMAP_FLAG_ALL;
const VADDR: u32 = VFIO_DMA_UNMAP_FLAG_VADDR;

pub(super) fn unmap_with_argsz_below_24_or_unknown_flags_is_einval(
    e: &mut Type1Env,
) -> Result<(), Fail> {
    e.setup()?;
    let buf = e.buffer(1);
    e.ok("map", e.map(buf.addr, B, P))?;
    for argsz in [0, 23] {
        let req = Type1DmaUnmap {
            argsz,
            ..Type1DmaUnmap::new(B, P)
        };
        e.err(
            &format!("argsz {argsz}"),
            e.unmap_req(req, &mut []),
            Errno::EINVAL,
        )?;
    }
    for flags in [1 << 3, ALL | 1 << 31] {
        e.err(
            &format!("flags {flags:#x}"),
            e.unmap_flags(flags, B, P),
            Errno::EINVAL,
        )?;
    }
    e.expect_exactly(1, P)
}

pub(super) fn unmap_bisecting_a_mapping_is_einval_and_removes_nothing(
    e: &mut Type1Env,
) -> Result<(), Fail> {
    e.setup()?;
    let buf = e.buffer(8);
    e.ok("map A", e.map(buf.addr, B, 4 * P))?;
    e.ok("map C", e.map(buf.page(4), B + 8 * P, 4 * P))?;
    let bisecting = [
        ("inside A", B + P, P),
        ("A's first page", B, P),
        ("from inside A over C", B + 2 * P, 16 * P),
        ("A and half of C", B, 10 * P),
        ("from before A to inside it", B - 4 * P, 6 * P),
    ];
    for (what, iova, size) in bisecting {
        e.err(what, e.unmap(iova, size), Errno::EINVAL)?;
    }
    e.expect_exactly(2, 8 * P)
}

pub(super) fn unmap_of_an_empty_range_succeeds_with_size_0(e: &mut Type1Env) -> Result<(), Fail> {
    e.setup()?;
    e.eq("unmap in an empty container", e.unmap(B, P), Ok(0))?;
    let buf = e.buffer(2);
    e.ok("map A", e.map(buf.addr, B, P))?;
    e.ok("map C", e.map(buf.page(1), B + 8 * P, P))?;
    e.eq("unmap of the hole between", e.unmap(B + P, 7 * P), Ok(0))?;
    e.eq("unmap above everything", e.unmap(B + 64 * P, 64 * P), Ok(0))?;
    e.expect_exactly(2, 2 * P)
}

pub(super) fn unmap_removes_every_whole_mapping_across_holes(e: &mut Type1Env) -> Result<(), Fail> {
    e.setup()?;
    let buf = e.buffer(4);
    e.ok("map A", e.map(buf.addr, B, P))?;
    e.ok("map C", e.map(buf.page(1), B + 4 * P, 2 * P))?;
    e.ok("map D", e.map(buf.page(3), B + 16 * P, P))?;
    e.eq(
        "unmap from before A to past C",
        e.unmap(B - 16 * P, 30 * P),
        Ok(3 * P),
    )?;
    e.expect_exactly(1, P)
}

pub(super) fn unmap_sizes_must_be_aligned_and_not_wrap(e: &mut Type1Env) -> Result<(), Fail> {
    e.setup()?;
    let buf = e.buffer(1);
    e.ok("map", e.map(buf.addr, B, P))?;
    let top = u64::MAX - (P - 1);
    let bad = [
        ("size 0", B, 0),
        ("size below a page", B, P - 1),
        ("size of a page and a byte", B, P + 1),
        ("unaligned IOVA", B + 1, P),
        ("wrapping range", top, 2 * P),
    ];
    for (what, iova, size) in bad {
        e.err(what, e.unmap(iova, size), Errno::EINVAL)?;
    }
    e.eq("the last page of the space", e.unmap(top, P), Ok(0))?;
    e.expect_exactly(1, P)
}

pub(super) fn unmap_all_needs_iova_and_size_0_and_reports_everything(
    e: &mut Type1Env,
) -> Result<(), Fail> {
    e.setup()?;
    let buf = e.buffer(3);
    e.ok("map A", e.map(buf.addr, B, P))?;
    e.ok("map C", e.map(buf.page(1), B + 1024 * P, 2 * P))?;
    e.err("ALL with an IOVA", e.unmap_flags(ALL, B, 0), Errno::EINVAL)?;
    e.err("ALL with a size", e.unmap_flags(ALL, 0, P), Errno::EINVAL)?;
    e.err("ALL with both", e.unmap_flags(ALL, B, P), Errno::EINVAL)?;
    e.eq("DMA_AVAIL", e.dma_avail()?, e.facts.dma_entry_limit - 2)?;
    e.eq("ALL", e.unmap_all(), Ok(3 * P))?;
    e.eq("ALL again", e.unmap_all(), Ok(0))?;
    e.eq("DMA_AVAIL", e.dma_avail()?, e.facts.dma_entry_limit)
}

pub(super) fn get_dirty_bitmap_cannot_combine_with_all_or_vaddr(
    e: &mut Type1Env,
) -> Result<(), Fail> {
    e.setup()?;
    let buf = e.buffer(1);
    e.ok("map", e.map(buf.addr, B, P))?;
    e.ok(
        "DIRTY_PAGES START",
        e.dirty(VFIO_IOMMU_DIRTY_PAGES_FLAG_START),
    )?;
    for (what, flags, iova, size) in [
        ("GET_DIRTY_BITMAP | ALL", GDB | ALL, 0, 0),
        ("GET_DIRTY_BITMAP | VADDR", GDB | VADDR, B, P),
    ] {
        let req = Type1DmaUnmap {
            argsz: DMA_UNMAP_ARGSZ + BITMAP_ARGSZ,
            flags,
            bitmap_pgsize: P,
            ..Type1DmaUnmap::new(iova, size)
        };
        e.err(what, e.unmap_req(req, &mut [0u64; 1]), Errno::EINVAL)?;
    }
    e.expect_exactly(1, P)
}

pub(super) fn unmap_with_a_bitmap_checks_tracking_argsz_and_the_bitmap(
    e: &mut Type1Env,
) -> Result<(), Fail> {
    e.setup()?;
    let buf = e.buffer(2);
    e.ok("map", e.map(buf.addr, B, 2 * P))?;
    e.err(
        "tracking not started",
        e.unmap_bitmap(B, 2 * P, P, 1),
        Errno::EINVAL,
    )?;
    e.ok(
        "DIRTY_PAGES START",
        e.dirty(VFIO_IOMMU_DIRTY_PAGES_FLAG_START),
    )?;
    let no_bitmap = Type1DmaUnmap {
        flags: GDB,
        bitmap_pgsize: P,
        ..Type1DmaUnmap::new(B, 2 * P)
    };
    e.err(
        "argsz without the vfio_bitmap",
        e.unmap_req(no_bitmap, &mut [0u64; 1]),
        Errno::EINVAL,
    )?;
    e.err(
        "pgsize 8 KiB",
        e.unmap_bitmap(B, 2 * P, 2 * P, 1),
        Errno::EINVAL,
    )?;
    e.err("pgsize 0", e.unmap_bitmap(B, 2 * P, 0, 1), Errno::EINVAL)?;
    e.err(
        "pgsize 2 KiB",
        e.unmap_bitmap(B, 2 * P, P / 2, 1),
        Errno::EINVAL,
    )?;
    e.err(
        "an empty bitmap",
        e.unmap_bitmap(B, 2 * P, P, 0),
        Errno::EINVAL,
    )?;
    e.err(
        "a bitmap too small for 65 pages",
        e.unmap_bitmap(B, 65 * P, P, 1),
        Errno::EINVAL,
    )?;
    // One word more than DIRTY_BITMAP_SIZE_MAX: never touched, so never populated.
    e.err(
        "a bitmap over 256 MiB",
        e.unmap_bitmap(B, 2 * P, P, (256 << 20) / 8 + 1),
        Errno::EINVAL,
    )?;
    e.expect_exactly(1, 2 * P)
}

pub(super) fn unmap_with_a_bitmap_reports_every_page_it_unmaps(
    e: &mut Type1Env,
) -> Result<(), Fail> {
    e.setup()?;
    let buf = e.buffer(8);
    e.ok("map A", e.map(buf.addr, B, 3 * P))?;
    e.ok("map C", e.map(buf.page(3), B + 5 * P, 4 * P))?;
    e.ok("map D", e.map(buf.page(7), B + 64 * P, P))?;
    e.ok(
        "DIRTY_PAGES START",
        e.dirty(VFIO_IOMMU_DIRTY_PAGES_FLAG_START),
    )?;
    let (size, bitmap) = e.ok("unmap with bitmap", e.unmap_bitmap(B, 9 * P, P, 1))?;
    e.eq("bytes unmapped", size, 7 * P)?;
    e.eq("bitmap: every page of A and C", bitmap, vec![0b1_1110_0111])?;
    e.expect_exactly(1, P)
}

pub(super) fn a_v1_unmap_starting_inside_a_mapping_succeeds_with_size_0(
    e: &mut Type1Env,
) -> Result<(), Fail> {
    e.setup_type(VFIO_TYPE1_IOMMU)?;
    let buf = e.buffer(4);
    e.ok("map", e.map(buf.addr, B, 4 * P))?;
    e.eq("unmap inside", e.unmap(B + P, P), Ok(0))?;
    e.eq(
        "unmap from inside to past it",
        e.unmap(B + 2 * P, 8 * P),
        Ok(0),
    )?;
    e.expect_exactly(1, 4 * P)
}

pub(super) fn a_v1_unmap_covering_the_first_page_removes_the_whole_mapping(
    e: &mut Type1Env,
) -> Result<(), Fail> {
    e.setup_type(VFIO_TYPE1_IOMMU)?;
    let buf = e.buffer(6);
    e.ok("map A", e.map(buf.addr, B, 4 * P))?;
    e.ok("map C", e.map(buf.page(4), B + 8 * P, 2 * P))?;
    e.eq("unmap of A's first page", e.unmap(B, P), Ok(4 * P))?;
    e.eq(
        "unmap from before C over its first page",
        e.unmap(B + 4 * P, 5 * P),
        Ok(2 * P),
    )?;
    e.expect_exactly(0, 0)
}
