//! `VFIO_UPDATE_VADDR`: invalidating mappings' process addresses (`VFIO_DMA_UNMAP_FLAG_VADDR`)
//! and giving them new ones (`VFIO_DMA_MAP_FLAG_VADDR`).

use vfio_passthrough::errno::Errno;
use vfio_passthrough::host::type1::*;

use super::{B, P};
use crate::conformance::Fail;
use crate::conformance::type1::Type1Env;

const UNMAP_VADDR: u32 = VFIO_DMA_UNMAP_FLAG_VADDR;
const MAP_VADDR: u32 = VFIO_DMA_MAP_FLAG_VADDR;

pub(super) fn a_mapping_keeps_its_iova_across_a_new_address(e: &mut Type1Env) -> Result<(), Fail> {
    e.setup()?;
    let old = e.buffer(4);
    let new = e.buffer(4);
    e.ok("map", e.map(old.addr, B, 4 * P))?;
    e.eq(
        "invalidate the address",
        e.unmap_flags(UNMAP_VADDR, B, 4 * P),
        Ok(4 * P),
    )?;
    e.eq(
        "the mapping still counts",
        e.dma_avail()?,
        e.facts.dma_entry_limit - 1,
    )?;
    e.err(
        "its IOVA is still taken",
        e.map(old.addr, B, P),
        Errno::EEXIST,
    )?;
    e.ok(
        "update to the new address",
        e.map_flags(MAP_VADDR, new.addr, B, 4 * P),
    )?;
    e.expect_exactly(1, 4 * P)
}

pub(super) fn a_new_address_needs_an_invalidated_mapping_of_the_same_range(
    e: &mut Type1Env,
) -> Result<(), Fail> {
    e.setup()?;
    let buf = e.buffer(4);
    e.err(
        "no mapping there",
        e.map_flags(MAP_VADDR, buf.addr, B, 2 * P),
        Errno::ENOENT,
    )?;
    e.ok("map", e.map(buf.addr, B, 2 * P))?;
    e.err(
        "a mapping not invalidated",
        e.map_flags(MAP_VADDR, buf.addr, B, 2 * P),
        Errno::EINVAL,
    )?;
    e.eq(
        "invalidate",
        e.unmap_flags(UNMAP_VADDR, B, 2 * P),
        Ok(2 * P),
    )?;
    for (what, iova, size) in [
        ("a shorter range", B, P),
        ("a longer range", B, 4 * P),
        ("a range starting inside", B + P, P),
    ] {
        e.err(
            what,
            e.map_flags(MAP_VADDR, buf.addr, iova, size),
            Errno::EINVAL,
        )?;
    }
    e.err(
        "a range next to it",
        e.map_flags(MAP_VADDR, buf.addr, B + 2 * P, P),
        Errno::ENOENT,
    )?;
    e.ok(
        "the same range",
        e.map_flags(MAP_VADDR, buf.page(2), B, 2 * P),
    )?;
    e.err(
        "once updated, not again",
        e.map_flags(MAP_VADDR, buf.addr, B, 2 * P),
        Errno::EINVAL,
    )?;
    e.expect_exactly(1, 2 * P)
}

pub(super) fn invalidating_an_invalidated_mapping_is_einval_and_undoes_the_call(
    e: &mut Type1Env,
) -> Result<(), Fail> {
    e.setup()?;
    let buf = e.buffer(2);
    e.ok("map A", e.map(buf.addr, B, P))?;
    e.ok("map C", e.map(buf.page(1), B + 2 * P, P))?;
    e.eq(
        "invalidate C",
        e.unmap_flags(UNMAP_VADDR, B + 2 * P, P),
        Ok(P),
    )?;
    e.err(
        "invalidate A and C",
        e.unmap_flags(UNMAP_VADDR, B, 4 * P),
        Errno::EINVAL,
    )?;
    // A was invalidated by the failed call and restored: it takes no new address.
    e.err(
        "update A",
        e.map_flags(MAP_VADDR, buf.addr, B, P),
        Errno::EINVAL,
    )?;
    e.ok(
        "update C",
        e.map_flags(MAP_VADDR, buf.page(1), B + 2 * P, P),
    )?;
    e.expect_exactly(2, 2 * P)
}

pub(super) fn invalidating_all_covers_every_mapping(e: &mut Type1Env) -> Result<(), Fail> {
    e.setup()?;
    let buf = e.buffer(3);
    e.ok("map A", e.map(buf.addr, B, P))?;
    e.ok("map C", e.map(buf.page(1), B + 8 * P, 2 * P))?;
    e.eq(
        "VADDR | ALL",
        e.unmap_flags(UNMAP_VADDR | VFIO_DMA_UNMAP_FLAG_ALL, 0, 0),
        Ok(3 * P),
    )?;
    e.ok("update A", e.map_flags(MAP_VADDR, buf.addr, B, P))?;
    e.ok(
        "update C",
        e.map_flags(MAP_VADDR, buf.page(1), B + 8 * P, 2 * P),
    )?;
    e.expect_exactly(2, 3 * P)
}

pub(super) fn an_invalidated_mapping_can_still_be_unmapped(e: &mut Type1Env) -> Result<(), Fail> {
    e.setup()?;
    let buf = e.buffer(2);
    e.ok("map", e.map(buf.addr, B, 2 * P))?;
    e.eq(
        "invalidate",
        e.unmap_flags(UNMAP_VADDR, B, 2 * P),
        Ok(2 * P),
    )?;
    e.eq("unmap", e.unmap(B, 2 * P), Ok(2 * P))?;
    e.err(
        "no mapping to update",
        e.map_flags(MAP_VADDR, buf.addr, B, 2 * P),
        Errno::ENOENT,
    )?;
    e.expect_exactly(0, 0)
}

pub(super) fn no_group_joins_while_an_address_is_invalid(e: &mut Type1Env) -> Result<(), Fail> {
    e.setup()?;
    let buf = e.buffer(1);
    e.ok("map", e.map(buf.addr, B, P))?;
    e.eq("invalidate", e.unmap_flags(UNMAP_VADDR, B, P), Ok(P))?;
    let g = e.group(1)?;
    e.err(
        "SET_CONTAINER of a second group",
        g.set_container(e.container),
        Errno::EBUSY,
    )?;
    e.eq(
        "its status",
        g.status(),
        Ok(vfio_passthrough::vfio::kernel::group::VFIO_GROUP_FLAGS_VIABLE),
    )?;
    e.ok("update", e.map_flags(MAP_VADDR, buf.addr, B, P))?;
    e.join(1)?;
    e.expect_exactly(1, P)
}
