//! `VFIO_IOMMU_GET_INFO`: page sizes, the capability chain and its size negotiation,
//! `DMA_AVAIL`, and the valid IOVA ranges.

use vfio_passthrough::errno::Errno;
use vfio_passthrough::host::type1::info::{
    CAP_DMA_AVAIL, CAP_IOVA_RANGE, CAP_MIGRATION, INFO_SIZE, VFIO_IOMMU_INFO_CAPS,
    VFIO_IOMMU_INFO_PGSIZES,
};
use vfio_passthrough::host::type1::*;

use super::{B, P};
use crate::conformance::Fail;
use crate::conformance::type1::Type1Env;

/// The interrupt window every VT-d group reserves.
const MSI_FIRST: u64 = 0xfee0_0000;
const MSI_LAST: u64 = 0xfeef_ffff;

fn cap_id(cap: &Type1InfoCap) -> u16 {
    match cap {
        Type1InfoCap::IovaRange(_) => CAP_IOVA_RANGE,
        Type1InfoCap::Migration { .. } => CAP_MIGRATION,
        Type1InfoCap::DmaAvail(_) => CAP_DMA_AVAIL,
        Type1InfoCap::Unknown { id, .. } => *id,
    }
}

pub(super) fn get_info_reports_page_sizes_and_capabilities(e: &mut Type1Env) -> Result<(), Fail> {
    e.setup()?;
    let info = e.info()?;
    e.eq(
        "flags",
        info.flags,
        VFIO_IOMMU_INFO_PGSIZES | VFIO_IOMMU_INFO_CAPS,
    )?;
    e.eq(
        "smallest page size",
        info.iova_pgsizes & info.iova_pgsizes.wrapping_neg(),
        P,
    )?;
    e.eq("argsz left as given", info.argsz, 4096)?;
    e.eq("cap_offset", info.cap_offset as usize, INFO_SIZE)?;
    let ids: Vec<u16> = info.caps.iter().map(cap_id).collect();
    e.eq(
        "capabilities, in order",
        ids,
        vec![CAP_MIGRATION, CAP_DMA_AVAIL, CAP_IOVA_RANGE],
    )?;
    e.eq(
        "MIGRATION",
        info.caps.first(),
        Some(&Type1InfoCap::Migration {
            flags: 0,
            pgsize_bitmap: P,
            max_dirty_bitmap_size: 256 << 20,
        }),
    )?;
    e.eq(
        "DMA_AVAIL of an empty container",
        info.caps.get(1),
        Some(&Type1InfoCap::DmaAvail(e.facts.dma_entry_limit)),
    )
}

pub(super) fn get_info_too_small_for_the_caps_succeeds_and_raises_argsz(
    e: &mut Type1Env,
) -> Result<(), Fail> {
    e.setup()?;
    let ranges = e.ranges()?;
    // MIGRATION (32 bytes), DMA_AVAIL (12, padded to 16), IOVA_RANGE (16 + 16 per range).
    let needed = INFO_SIZE + 32 + 16 + 16 + 16 * ranges.len();
    let full = e.info()?;
    for argsz in [INFO_SIZE, needed - 1] {
        let raw = e.ok(
            &format!("GET_INFO with argsz {argsz}"),
            e.info_raw(argsz as u32, needed),
        )?;
        let info = Type1Info::parse(&raw).map_err(|err| Fail(format!("parse: {err:?}")))?;
        e.eq(
            &format!("argsz raised from {argsz}"),
            info.argsz as usize,
            needed,
        )?;
        e.eq(
            &format!("cap_offset with argsz {argsz}"),
            info.cap_offset,
            0,
        )?;
        e.eq(&format!("flags with argsz {argsz}"), info.flags, full.flags)?;
        e.eq(
            &format!("iova_pgsizes with argsz {argsz}"),
            info.iova_pgsizes,
            full.iova_pgsizes,
        )?;
        e.check(
            &format!("nothing written past the header with argsz {argsz}"),
            raw[INFO_SIZE..].iter().all(|&b| b == 0xa5),
        )?;
    }
    // Below the whole header: only `argsz` bytes come back, the rest stays as it was.
    let raw = e.ok("GET_INFO with argsz 16", e.info_raw(16, INFO_SIZE))?;
    let flags = u32::from_le_bytes([raw[4], raw[5], raw[6], raw[7]]);
    e.eq("flags with argsz 16", flags, full.flags)?;
    e.eq(
        "argsz with argsz 16",
        raw[..4].to_vec(),
        (needed as u32).to_le_bytes().to_vec(),
    )?;
    e.check(
        "bytes 16..24 untouched",
        raw[16..].iter().all(|&b| b == 0xa5),
    )?;
    let raw = e.ok(
        "GET_INFO with argsz = needed",
        e.info_raw(needed as u32, needed),
    )?;
    let info = Type1Info::parse(&raw).map_err(|err| Fail(format!("parse: {err:?}")))?;
    e.eq(
        "cap_offset when it fits",
        info.cap_offset as usize,
        INFO_SIZE,
    )?;
    e.eq("capabilities when it fits", info.caps, full.caps)
}

pub(super) fn get_info_with_argsz_below_16_is_einval(e: &mut Type1Env) -> Result<(), Fail> {
    e.setup()?;
    for argsz in [0u32, 8, 15] {
        e.err(
            &format!("GET_INFO with argsz {argsz}"),
            e.info_raw(argsz, INFO_SIZE),
            Errno::EINVAL,
        )?;
    }
    e.expect_exactly(0, 0)
}

pub(super) fn dma_avail_counts_mappings_down_and_back_up(e: &mut Type1Env) -> Result<(), Fail> {
    e.setup()?;
    let limit = e.facts.dma_entry_limit;
    let buf = e.buffer(4);
    for i in 0..3 {
        e.ok("map", e.map(buf.page(i), B + i * 4 * P, P))?;
    }
    e.eq("DMA_AVAIL after 3 maps", e.dma_avail()?, limit - 3)?;
    e.err("overlapping map", e.map(buf.addr, B, P), Errno::EEXIST)?;
    e.eq("DMA_AVAIL after a refused map", e.dma_avail()?, limit - 3)?;
    e.eq("unmap one", e.unmap(B + 4 * P, P), Ok(P))?;
    e.eq("DMA_AVAIL after an unmap", e.dma_avail()?, limit - 2)?;
    e.expect_exactly(2, 2 * P)?;
    e.eq("DMA_AVAIL once empty", e.dma_avail()?, limit)
}

pub(super) fn iova_ranges_are_the_aperture_minus_the_msi_window(
    e: &mut Type1Env,
) -> Result<(), Fail> {
    e.setup()?;
    let ranges = e.ranges()?;
    e.eq("number of ranges", ranges.len(), 2)?;
    e.eq("below the MSI window", ranges[0], (0, MSI_FIRST - 1))?;
    e.eq("above it starts", ranges[1].0, MSI_LAST + 1)?;
    if let Some(last) = e.facts.aperture_last {
        e.eq("the aperture's last IOVA", ranges[1].1, last)?;
    }
    e.check("the aperture reaches past 4 GiB", ranges[1].1 > 1 << 32)
}

pub(super) fn map_outside_the_valid_iova_ranges_is_einval(e: &mut Type1Env) -> Result<(), Fail> {
    e.setup()?;
    let end = e.ranges()?.last().map(|r| r.1).unwrap_or(0);
    let buf = e.buffer(2);
    let bad = [
        ("in the MSI window", MSI_FIRST, P),
        ("straddling into the MSI window", MSI_FIRST - P, 2 * P),
        ("straddling out of the MSI window", MSI_LAST + 1 - P, 2 * P),
        ("past the aperture", end.wrapping_add(1), P),
        (
            "straddling the aperture's end",
            end.wrapping_sub(P - 1),
            2 * P,
        ),
    ];
    for (what, iova, size) in bad {
        if end == u64::MAX && what.contains("aperture") {
            continue;
        }
        e.err(
            &format!("map {what}"),
            e.map(buf.addr, iova, size),
            Errno::EINVAL,
        )?;
    }
    e.ok(
        "map the page below the MSI window",
        e.map(buf.addr, MSI_FIRST - P, P),
    )?;
    e.ok("map the page above it", e.map(buf.addr, MSI_LAST + 1, P))?;
    e.ok(
        "map the aperture's last page",
        e.map(buf.page(1), end - (P - 1), P),
    )?;
    e.ok("map at IOVA 0", e.map(buf.addr, 0, P))?;
    e.ok("map below", e.map(buf.addr, B, P))?;
    e.expect_exactly(5, 5 * P)
}
