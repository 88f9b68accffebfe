//! `VFIO_IOMMU_MAP_DMA`: argument checks in the driver's order, overlap, the entry limit,
//! pinning (memlock, unmapped and read-only memory) and rollback.

use vfio_passthrough::errno::Errno;
use vfio_passthrough::host::type1::*;

use super::{B, P};
use crate::conformance::Fail;
use crate::conformance::type1::Type1Env;

const R: u32 = VFIO_DMA_MAP_FLAG_READ;
const W: u32 = VFIO_DMA_MAP_FLAG_WRITE;
const VADDR: u32 = VFIO_DMA_MAP_FLAG_VADDR;

pub(super) fn map_with_argsz_below_32_is_einval(e: &mut Type1Env) -> Result<(), Fail> {
    e.setup()?;
    let buf = e.buffer(1);
    for argsz in [0, 8, 31] {
        let req = Type1DmaMap {
            argsz,
            ..Type1DmaMap::new(buf.addr, B, P)
        };
        e.err(&format!("argsz {argsz}"), e.map_req(&req), Errno::EINVAL)?;
    }
    let req = Type1DmaMap {
        argsz: 64,
        ..Type1DmaMap::new(buf.addr, B, P)
    };
    e.ok("argsz 64", e.map_req(&req))?;
    e.expect_exactly(1, P)
}

pub(super) fn map_with_unknown_flags_is_einval(e: &mut Type1Env) -> Result<(), Fail> {
    e.setup()?;
    let buf = e.buffer(1);
    for flags in [R | W | 1 << 3, R | 1 << 31, 0xf] {
        e.err(
            &format!("flags {flags:#x}"),
            e.map_flags(flags, buf.addr, B, P),
            Errno::EINVAL,
        )?;
    }
    e.expect_exactly(0, 0)
}

pub(super) fn map_needs_read_or_write_and_not_with_vaddr(e: &mut Type1Env) -> Result<(), Fail> {
    e.setup()?;
    let buf = e.buffer(3);
    for flags in [0, VADDR | R, VADDR | W, VADDR | R | W] {
        e.err(
            &format!("flags {flags:#x}"),
            e.map_flags(flags, buf.addr, B, P),
            Errno::EINVAL,
        )?;
    }
    e.ok("read-only", e.map_flags(R, buf.addr, B, P))?;
    e.ok("write-only", e.map_flags(W, buf.page(1), B + P, P))?;
    e.ok("read-write", e.map_flags(R | W, buf.page(2), B + 2 * P, P))?;
    e.expect_exactly(3, 3 * P)
}

pub(super) fn map_sizes_and_addresses_must_be_page_aligned(e: &mut Type1Env) -> Result<(), Fail> {
    e.setup()?;
    let buf = e.buffer(2);
    let bad = [
        ("size 0", buf.addr, B, 0),
        ("size below a page", buf.addr, B, P - 1),
        ("size of a page and a byte", buf.addr, B, P + 1),
        ("unaligned IOVA", buf.addr, B + 0x800, P),
        ("unaligned address", buf.addr + 0x10, B, P),
    ];
    for (what, vaddr, iova, size) in bad {
        e.err(what, e.map(vaddr, iova, size), Errno::EINVAL)?;
    }
    e.expect_exactly(0, 0)
}

pub(super) fn map_whose_iova_or_address_wraps_is_einval(e: &mut Type1Env) -> Result<(), Fail> {
    e.setup()?;
    let buf = e.buffer(1);
    let top = u64::MAX - (P - 1);
    e.err("IOVA wraps", e.map(buf.addr, top, 2 * P), Errno::EINVAL)?;
    e.err("address wraps", e.map(top, B, 2 * P), Errno::EINVAL)?;
    e.err("both wrap", e.map(top, top, 2 * P), Errno::EINVAL)?;
    e.expect_exactly(0, 0)
}

pub(super) fn map_overlapping_any_mapping_is_eexist(e: &mut Type1Env) -> Result<(), Fail> {
    e.setup()?;
    let buf = e.buffer(8);
    e.ok("map [B+4P, B+8P)", e.map(buf.addr, B + 4 * P, 4 * P))?;
    let overlapping = [
        ("over the first page", B + 3 * P, 2 * P),
        ("over the last page", B + 7 * P, 2 * P),
        ("inside", B + 5 * P, P),
        ("around", B + 2 * P, 8 * P),
        ("exactly", B + 4 * P, 4 * P),
    ];
    for (what, iova, size) in overlapping {
        e.err(what, e.map(buf.addr, iova, size), Errno::EEXIST)?;
    }
    e.ok("adjacent below", e.map(buf.addr, B + 3 * P, P))?;
    e.ok("adjacent above", e.map(buf.addr, B + 8 * P, P))?;
    e.expect_exactly(3, 6 * P)
}

pub(super) fn the_same_memory_can_be_mapped_at_two_iovas(e: &mut Type1Env) -> Result<(), Fail> {
    e.setup()?;
    let buf = e.buffer(4);
    e.ok("first", e.map(buf.addr, B, 4 * P))?;
    e.ok("second", e.map(buf.addr, B + 64 * P, 4 * P))?;
    e.ok("a part again", e.map(buf.page(1), B + 128 * P, 2 * P))?;
    e.expect_exactly(3, 10 * P)
}

pub(super) fn map_past_the_entry_limit_is_enospc(e: &mut Type1Env) -> Result<(), Fail> {
    e.setup()?;
    let limit = e.facts.dma_entry_limit;
    let buf = e.buffer(u64::from(limit) + 1);
    for i in 0..u64::from(limit) {
        e.ok("map", e.map(buf.page(i), B + 2 * i * P, P))?;
    }
    e.eq("DMA_AVAIL", e.dma_avail()?, 0)?;
    let next = B + 2 * u64::from(limit) * P;
    e.err(
        "one more",
        e.map(buf.page(u64::from(limit)), next, P),
        Errno::ENOSPC,
    )?;
    // The driver's order: overlap before the limit, the limit before the IOVA ranges.
    e.err(
        "overlapping, at the limit",
        e.map(buf.addr, B, P),
        Errno::EEXIST,
    )?;
    e.err(
        "into the MSI window, at the limit",
        e.map(buf.addr, 0xfee0_0000, P),
        Errno::ENOSPC,
    )?;
    e.err(
        "bad flags, at the limit",
        e.map_flags(0, buf.addr, next, P),
        Errno::EINVAL,
    )?;
    e.eq("unmap one", e.unmap(B, P), Ok(P))?;
    e.ok(
        "a slot is free again",
        e.map(buf.page(u64::from(limit)), next, P),
    )?;
    e.expect_exactly(limit, u64::from(limit) * P)
}

pub(super) fn map_past_the_memlock_limit_is_enomem_and_pins_nothing(
    e: &mut Type1Env,
) -> Result<(), Fail> {
    e.setup()?;
    let buf = e.buffer(10);
    e.err(
        "9 pages over an 8-page limit",
        e.map(buf.addr, B, 9 * P),
        Errno::ENOMEM,
    )?;
    e.eq("DMA_AVAIL", e.dma_avail()?, e.facts.dma_entry_limit)?;
    e.ok("8 pages", e.map(buf.addr, B, 8 * P))?;
    e.err(
        "one page more",
        e.map(buf.page(8), B + 16 * P, P),
        Errno::ENOMEM,
    )?;
    // The same pages at another IOVA are charged again: each mapping pins its own.
    e.err(
        "the same pages again",
        e.map(buf.addr, B + 32 * P, P),
        Errno::ENOMEM,
    )?;
    e.expect_exactly(1, 8 * P)?;
    e.ok("8 pages once released", e.map(buf.page(2), B, 8 * P))?;
    e.expect_exactly(1, 8 * P)
}

pub(super) fn map_of_memory_with_a_hole_is_efault_and_rolls_back(
    e: &mut Type1Env,
) -> Result<(), Fail> {
    e.setup()?;
    let buf = e.buffer(4);
    e.hole(buf, 2, 1);
    e.err(
        "map over the hole",
        e.map(buf.addr, B, 4 * P),
        Errno::EFAULT,
    )?;
    e.err("map of the hole", e.map(buf.page(2), B, P), Errno::EFAULT)?;
    e.eq("DMA_AVAIL", e.dma_avail()?, e.facts.dma_entry_limit)?;
    e.eq("nothing to unmap there", e.unmap(B, 4 * P), Ok(0))?;
    e.ok("map before the hole", e.map(buf.addr, B, 2 * P))?;
    e.ok("map after the hole", e.map(buf.page(3), B + 3 * P, P))?;
    e.expect_exactly(2, 3 * P)
}

pub(super) fn writable_map_of_read_only_memory_is_efault(e: &mut Type1Env) -> Result<(), Fail> {
    e.setup()?;
    let buf = e.buffer(2);
    e.read_only(buf);
    e.err("read-write map", e.map(buf.addr, B, 2 * P), Errno::EFAULT)?;
    e.err(
        "write-only map",
        e.map_flags(W, buf.addr, B, 2 * P),
        Errno::EFAULT,
    )?;
    e.ok("read-only map", e.map_flags(R, buf.addr, B, 2 * P))?;
    e.expect_exactly(1, 2 * P)
}
