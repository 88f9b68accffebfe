//! The group file: status, joining and leaving a container, opening a device through it; and
//! two groups sharing a container.

use std::fs::File;

use vfio_passthrough::errno::Errno;
use vfio_passthrough::host::type1::*;

use super::{B, P};
use crate::conformance::Fail;
use crate::conformance::type1::Type1Env;

use vfio_passthrough::vfio::kernel::group::{
    VFIO_GROUP_FLAGS_CONTAINER_SET as CONTAINER_SET, VFIO_GROUP_FLAGS_VIABLE as VIABLE,
};

pub(super) fn group_status_is_viable_then_container_set(e: &mut Type1Env) -> Result<(), Fail> {
    let g = e.group(0)?;
    e.eq("status of a fresh group", g.status(), Ok(VIABLE))?;
    e.join(0)?;
    e.eq(
        "status in a container",
        g.status(),
        Ok(VIABLE | CONTAINER_SET),
    )?;
    e.ok("SET_IOMMU", e.container.set_iommu(VFIO_TYPE1V2_IOMMU))?;
    e.eq(
        "status with an IOMMU",
        g.status(),
        Ok(VIABLE | CONTAINER_SET),
    )?;
    e.ok("UNSET_CONTAINER", g.unset_container())?;
    e.eq("status once out", g.status(), Ok(VIABLE))
}

pub(super) fn a_group_in_a_container_cannot_be_set_again(e: &mut Type1Env) -> Result<(), Fail> {
    let buf = e.buffer(1);
    let g = e.group(0)?;
    e.join(0)?;
    e.err(
        "SET_CONTAINER again, before SET_IOMMU",
        g.set_container(e.container),
        Errno::EINVAL,
    )?;
    e.ok("SET_IOMMU", e.container.set_iommu(VFIO_TYPE1V2_IOMMU))?;
    e.ok("map", e.map(buf.addr, B, P))?;
    e.err(
        "SET_CONTAINER again, with an IOMMU",
        g.set_container(e.container),
        Errno::EINVAL,
    )?;
    e.eq("status", g.status(), Ok(VIABLE | CONTAINER_SET))?;
    e.expect_exactly(1, P)
}

pub(super) fn unset_of_a_group_in_no_container_is_einval(e: &mut Type1Env) -> Result<(), Fail> {
    let g = e.group(0)?;
    e.err(
        "UNSET_CONTAINER of a fresh group",
        g.unset_container(),
        Errno::EINVAL,
    )?;
    e.join(0)?;
    e.ok("UNSET_CONTAINER", g.unset_container())?;
    e.err("UNSET_CONTAINER twice", g.unset_container(), Errno::EINVAL)?;
    e.eq("status", g.status(), Ok(VIABLE))
}

pub(super) fn a_file_that_is_not_a_container_is_ebadfd(e: &mut Type1Env) -> Result<(), Fail> {
    let null = File::open("/dev/null").map_err(|err| Fail(format!("open /dev/null: {err}")))?;
    let not_a_container = KernelType1Container::from_file(null);
    let g = e.group(0)?;
    e.err(
        "SET_CONTAINER with /dev/null",
        g.set_container(&not_a_container),
        Errno::EBADFD,
    )?;
    e.eq("status", g.status(), Ok(VIABLE))?;
    e.setup()?;
    e.expect_exactly(0, 0)
}

pub(super) fn a_device_opens_only_in_a_container_with_an_iommu(
    e: &mut Type1Env,
) -> Result<(), Fail> {
    let name = e.device_name()?;
    let g = e.group(0)?;
    e.err(
        "GET_DEVICE_FD of an unknown name",
        g.open_device("0000:ff:1f.7").map(drop),
        Errno::ENODEV,
    )?;
    e.err(
        "GET_DEVICE_FD outside a container",
        g.open_device(&name).map(drop),
        Errno::EINVAL,
    )?;
    e.join(0)?;
    e.err(
        "GET_DEVICE_FD before SET_IOMMU",
        g.open_device(&name).map(drop),
        Errno::EINVAL,
    )?;
    e.ok("SET_IOMMU", e.container.set_iommu(VFIO_TYPE1V2_IOMMU))?;
    let dev = e.ok("GET_DEVICE_FD", g.open_device(&name))?;
    let info = e.ok("DEVICE_GET_INFO", dev.device_info())?;
    e.check("the device answers", info.num_regions > 0)?;
    e.err(
        "GET_DEVICE_FD of an unknown name, in a container",
        g.open_device("0000:ff:1f.7").map(drop),
        Errno::ENODEV,
    )
}

pub(super) fn a_group_with_an_open_device_cannot_leave(e: &mut Type1Env) -> Result<(), Fail> {
    let name = e.device_name()?;
    e.setup()?;
    let g = e.group(0)?;
    let dev = e.ok("GET_DEVICE_FD", g.open_device(&name))?;
    e.err(
        "UNSET_CONTAINER with the device open",
        g.unset_container(),
        Errno::EBUSY,
    )?;
    e.eq("status", g.status(), Ok(VIABLE | CONTAINER_SET))?;
    drop(dev);
    e.ok("UNSET_CONTAINER once it is closed", g.unset_container())
}

pub(super) fn a_group_opened_device_cannot_bind_or_attach(e: &mut Type1Env) -> Result<(), Fail> {
    let name = e.device_name()?;
    let iommufd = e.iommufd()?.clone();
    e.setup()?;
    let dev = e.ok("GET_DEVICE_FD", e.group(0)?.open_device(&name))?;
    e.err("BIND_IOMMUFD", dev.bind_iommufd(&iommufd), Errno::EINVAL)?;
    e.err("ATTACH_IOMMUFD_PT", dev.attach_pt(1, None), Errno::ENOTTY)?;
    e.err("DETACH_IOMMUFD_PT", dev.detach_pt(None), Errno::ENOTTY)?;
    let info = e.ok("DEVICE_GET_INFO still works", dev.device_info())?;
    e.check("the device answers", info.num_regions > 0)
}

pub(super) fn a_second_group_joins_a_container_in_use(e: &mut Type1Env) -> Result<(), Fail> {
    e.setup()?;
    let buf = e.buffer(4);
    e.ok("map A", e.map(buf.addr, B, 2 * P))?;
    e.ok("map B", e.map(buf.page(2), B + 16 * P, 2 * P))?;
    e.join(1)?;
    e.eq(
        "status of the second group",
        e.group(1)?.status(),
        Ok(VIABLE | CONTAINER_SET),
    )?;
    e.ok("map C", e.map(buf.addr, B + 32 * P, P))?;
    e.expect_exactly(3, 5 * P)
}

pub(super) fn one_of_two_groups_leaving_keeps_the_mappings(e: &mut Type1Env) -> Result<(), Fail> {
    e.join(0)?;
    e.join(1)?;
    e.ok("SET_IOMMU", e.container.set_iommu(VFIO_TYPE1V2_IOMMU))?;
    let buf = e.buffer(2);
    e.ok("map", e.map(buf.addr, B, 2 * P))?;
    e.ok(
        "UNSET_CONTAINER of the first",
        e.group(0)?.unset_container(),
    )?;
    e.ok("map with one group left", e.map(buf.addr, B + 8 * P, P))?;
    e.expect_exactly(2, 3 * P)?;
    e.ok(
        "UNSET_CONTAINER of the second",
        e.group(1)?.unset_container(),
    )?;
    e.err(
        "MAP_DMA with no group",
        e.map(buf.addr, B, P),
        Errno::EINVAL,
    )
}
