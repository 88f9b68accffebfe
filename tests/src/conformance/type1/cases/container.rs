//! The container: API version, extensions, `VFIO_SET_IOMMU`, and what works before it.

use vfio_passthrough::errno::Errno;
use vfio_passthrough::host::type1::*;

use super::{B, P};
use crate::conformance::Fail;
use crate::conformance::type1::Type1Env;

/// `VFIO_TYPE1_NESTING_IOMMU`.
const NESTING: u32 = 6;
/// `VFIO_SPAPR_TCE_IOMMU`, `VFIO_EEH`, `VFIO_SPAPR_TCE_v2_IOMMU`: other architectures' drivers.
const SPAPR_TCE: u32 = 2;
const EEH: u32 = 5;
const SPAPR_TCE_V2: u32 = 7;

fn extensions(e: &Type1Env, when: &str, want: &[(u32, u32)]) -> Result<(), Fail> {
    for &(ext, value) in want {
        let got = e.ok(
            &format!("CHECK_EXTENSION({ext}) {when}"),
            e.container.check_extension(ext),
        )?;
        e.eq(&format!("CHECK_EXTENSION({ext}) {when}"), got, value)?;
    }
    Ok(())
}

/// What the type1 driver answers without state: before `SET_IOMMU` (group or not).
const BEFORE: &[(u32, u32)] = &[
    (VFIO_TYPE1_IOMMU, 1),
    (SPAPR_TCE, 0),
    (VFIO_TYPE1V2_IOMMU, 1),
    (VFIO_DMA_CC_IOMMU, 0),
    (EEH, 0),
    (NESTING, 1),
    (SPAPR_TCE_V2, 0),
    (VFIO_NOIOMMU_IOMMU, 0),
    (VFIO_UNMAP_ALL, 1),
    (VFIO_UPDATE_VADDR, 0),
    (0, 0),
    (11, 0),
    (u32::MAX, 0),
];

pub(super) fn api_version_is_0(e: &mut Type1Env) -> Result<(), Fail> {
    let v = e.ok("VFIO_GET_API_VERSION", e.container.get_api_version())?;
    e.eq("API version", v, 0)?;
    e.setup()?;
    let v = e.ok("VFIO_GET_API_VERSION", e.container.get_api_version())?;
    e.eq("API version after SET_IOMMU", v, 0)
}

pub(super) fn extensions_before_set_iommu_come_from_the_driver_without_state(
    e: &mut Type1Env,
) -> Result<(), Fail> {
    extensions(e, "of an empty container", BEFORE)?;
    e.join(0)?;
    extensions(e, "with a group, before SET_IOMMU", BEFORE)
}

pub(super) fn extensions_after_set_iommu_come_from_the_container(
    e: &mut Type1Env,
) -> Result<(), Fail> {
    e.setup()?;
    extensions(
        e,
        "after SET_IOMMU",
        &[
            (VFIO_TYPE1_IOMMU, 1),
            (VFIO_TYPE1V2_IOMMU, 1),
            (NESTING, 1),
            (VFIO_UNMAP_ALL, 1),
            (VFIO_UPDATE_VADDR, 1),
            (VFIO_NOIOMMU_IOMMU, 0),
            (SPAPR_TCE, 0),
            (11, 0),
        ],
    )?;
    if let Some(cc) = e.facts.cache_coherent {
        extensions(e, "after SET_IOMMU", &[(VFIO_DMA_CC_IOMMU, u32::from(cc))])?;
    }
    Ok(())
}

pub(super) fn set_iommu_without_a_group_is_einval(e: &mut Type1Env) -> Result<(), Fail> {
    for t in [VFIO_TYPE1V2_IOMMU, VFIO_TYPE1_IOMMU, 99] {
        e.err(
            &format!("SET_IOMMU({t}) with no group"),
            e.container.set_iommu(t),
            Errno::EINVAL,
        )?;
    }
    e.setup()?;
    e.expect_exactly(0, 0)
}

pub(super) fn set_iommu_twice_is_einval(e: &mut Type1Env) -> Result<(), Fail> {
    e.setup()?;
    let buf = e.buffer(2);
    e.ok("map", e.map(buf.addr, B, 2 * P))?;
    for t in [VFIO_TYPE1V2_IOMMU, VFIO_TYPE1_IOMMU, 99] {
        e.err(
            &format!("a second SET_IOMMU({t})"),
            e.container.set_iommu(t),
            Errno::EINVAL,
        )?;
    }
    e.expect_exactly(1, 2 * P)
}

pub(super) fn set_iommu_of_a_type_no_driver_offers_is_enodev(e: &mut Type1Env) -> Result<(), Fail> {
    e.join(0)?;
    for t in [
        0,
        SPAPR_TCE,
        EEH,
        SPAPR_TCE_V2,
        VFIO_NOIOMMU_IOMMU,
        99,
        u32::MAX,
    ] {
        e.err(
            &format!("SET_IOMMU({t})"),
            e.container.set_iommu(t),
            Errno::ENODEV,
        )?;
    }
    e.ok(
        "SET_IOMMU(TYPE1v2)",
        e.container.set_iommu(VFIO_TYPE1V2_IOMMU),
    )?;
    e.expect_exactly(0, 0)
}

pub(super) fn the_nesting_type_cannot_be_set_on_vtd(e: &mut Type1Env) -> Result<(), Fail> {
    e.join(0)?;
    // The driver opens, but the Intel IOMMU cannot enable nesting on the group's domain.
    e.err(
        "SET_IOMMU(NESTING)",
        e.container.set_iommu(NESTING),
        Errno::EINVAL,
    )?;
    e.err("MAP_DMA after it", e.map(0, B, P), Errno::EINVAL)?;
    e.ok(
        "SET_IOMMU(TYPE1v2)",
        e.container.set_iommu(VFIO_TYPE1V2_IOMMU),
    )?;
    e.expect_exactly(0, 0)
}

pub(super) fn iommu_ioctls_before_set_iommu_are_einval(e: &mut Type1Env) -> Result<(), Fail> {
    let buf = e.buffer(1);
    for when in ["with no group", "with a group"] {
        if when == "with a group" {
            e.join(0)?;
        }
        e.err(
            &format!("GET_INFO {when}"),
            e.info_raw(4096, 4096),
            Errno::EINVAL,
        )?;
        e.err(
            &format!("MAP_DMA {when}"),
            e.map(buf.addr, B, P),
            Errno::EINVAL,
        )?;
        e.err(&format!("UNMAP_DMA {when}"), e.unmap(B, P), Errno::EINVAL)?;
        e.err(
            &format!("DIRTY_PAGES START {when}"),
            e.dirty(VFIO_IOMMU_DIRTY_PAGES_FLAG_START),
            Errno::EINVAL,
        )?;
    }
    e.ok("SET_IOMMU", e.container.set_iommu(VFIO_TYPE1V2_IOMMU))?;
    e.expect_exactly(0, 0)
}

pub(super) fn the_last_group_leaving_returns_the_container_to_unset(
    e: &mut Type1Env,
) -> Result<(), Fail> {
    e.setup()?;
    let buf = e.buffer(4);
    e.ok("map", e.map(buf.addr, B, 4 * P))?;
    e.ok("UNSET_CONTAINER", e.group(0)?.unset_container())?;
    e.err(
        "MAP_DMA once unset",
        e.map(buf.addr, B, 4 * P),
        Errno::EINVAL,
    )?;
    extensions(e, "once unset", &[(VFIO_UPDATE_VADDR, 0)])?;
    e.err(
        "SET_IOMMU with no group",
        e.container.set_iommu(VFIO_TYPE1V2_IOMMU),
        Errno::EINVAL,
    )?;
    e.setup()?;
    // A new driver state: nothing mapped, every slot free.
    e.expect_exactly(0, 0)
}
