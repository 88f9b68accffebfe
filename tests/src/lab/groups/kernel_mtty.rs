//! Group `kernel-mtty`: VFIO migration v2 through the kernel backends against the `mtty` sample
//! mdev (devices boot): the state machine and the data fd, through the cdev and the group.
//! The full migration tests live elsewhere; this checks that `set_mig_state` and
//! `MigrationData` work against a real migration driver.

use std::fs;
use std::sync::Arc;

use vfio_passthrough::errno::Errno;
use vfio_passthrough::host::iommufd::uapi::IoasAlloc;
use vfio_passthrough::host::iommufd::{Iommufd, KernelIommufd};
use vfio_passthrough::vfio::kernel::{CdevDevice, GroupDevice};
use vfio_passthrough::vfio::*;

use super::kernel_support::{Check, ensure, expect_eq, expect_errno, on, open_group_in_container};
use crate::lab::case::Case;
use crate::lab::outcome::{Boot, Outcome};
use crate::lab::sysfs::SysRoot;

/// `VFIO_DEVICE_STATE_*`.
const STOP: u32 = 1;
const RUNNING: u32 = 2;
const STOP_COPY: u32 = 3;
const RESUMING: u32 = 4;
const PRE_COPY: u32 = 6;

/// The group's cases for a boot.
pub fn cases(boot: Boot) -> Vec<Case> {
    if boot != Boot::Devices {
        return Vec::new();
    }
    vec![
        Case::kernel_only("cdev-save-and-restore", || {
            Outcome::from_result(with_cdev(save_and_restore))
        }),
        Case::kernel_only("cdev-precopy-info", || {
            Outcome::from_result(with_cdev(precopy))
        }),
        Case::kernel_only("group-save-and-restore", || {
            Outcome::from_result(with_group(save_and_restore))
        }),
    ]
}

/// Opens the mtty through its cdev, bound to a fresh iommufd and attached to an IOAS.
fn with_cdev(body: fn(&dyn VfioDevice) -> Check) -> Check {
    let mtty = SysRoot::system().mtty().map_err(|e| e.to_string())?;
    let node = mtty.vfio_cdev().ok_or("the mtty has no VFIO cdev")?;
    let dev = on(
        format!("opening {}", node.display()),
        CdevDevice::open(&node),
    )?;
    let ctx = Arc::new(on("opening /dev/iommu", KernelIommufd::open())?);
    let mut alloc = IoasAlloc::default();
    on("IOMMU_IOAS_ALLOC", ctx.ioas_alloc(&mut alloc))?;
    let dyn_ctx: Arc<dyn Iommufd> = ctx;
    on("BIND_IOMMUFD", dev.bind_iommufd(&dyn_ctx))?;
    // An emulated (mdev) device attaches to the IOAS itself: no HWPT is involved.
    expect_eq(
        "pt_id written back by ATTACH of an mdev",
        on("ATTACH_IOMMUFD_PT", dev.attach_pt(alloc.out_ioas_id, None))?,
        alloc.out_ioas_id,
    )?;
    body(&dev)
}

/// Opens the mtty through its IOMMU group in a fresh type1 container.
fn with_group(body: fn(&dyn VfioDevice) -> Check) -> Check {
    let mtty = SysRoot::system().mtty().map_err(|e| e.to_string())?;
    let link = mtty.sysfs.join("iommu_group");
    let target = fs::read_link(&link).map_err(|e| format!("{}: {e}", link.display()))?;
    let id: u32 = target
        .file_name()
        .and_then(|n| n.to_str())
        .and_then(|n| n.parse().ok())
        .ok_or_else(|| format!("{} -> {} names no group", link.display(), target.display()))?;
    let (_container, group) = open_group_in_container(id)?;
    let dev: GroupDevice = on(
        format!("VFIO_GROUP_GET_DEVICE_FD {}", mtty.uuid),
        group.device(&mtty.uuid),
    )?;
    body(&dev)
}

fn set(dev: &dyn VfioDevice, state: u32) -> Result<Option<Box<dyn MigrationData>>, String> {
    on(
        format!("SET MIG_DEVICE_STATE {state}"),
        dev.set_mig_state(state),
    )
}

fn set_no_session(dev: &dyn VfioDevice, state: u32) -> Check {
    let data = set(dev, state)?;
    ensure(data.is_none(), || {
        format!("moving to {state} opened a data fd")
    })
}

fn read_to_end(data: &mut dyn MigrationData) -> Result<Vec<u8>, String> {
    let mut all = Vec::new();
    let mut chunk = [0u8; 64];
    loop {
        let n = on("reading the data fd", data.read(&mut chunk))?;
        if n == 0 {
            return Ok(all);
        }
        all.extend_from_slice(&chunk[..n]);
        ensure(all.len() <= 1 << 20, || "the data fd never ends".into())?;
    }
}

fn save_and_restore(dev: &dyn VfioDevice) -> Check {
    let flags = on("GET MIGRATION", dev.migration_flags())?;
    expect_eq(
        "migration flags",
        flags,
        VFIO_MIGRATION_STOP_COPY | VFIO_MIGRATION_P2P | VFIO_MIGRATION_PRE_COPY,
    )?;
    on(
        "PROBE MIG_DEVICE_STATE (GET|SET)",
        dev.feature_probe(VFIO_DEVICE_FEATURE_MIG_DEVICE_STATE, true, true),
    )?;
    expect_eq(
        "initial state",
        on("GET MIG_DEVICE_STATE", dev.mig_state())?,
        RUNNING,
    )?;
    set_no_session(dev, STOP)?;
    let estimate = on("GET MIG_DATA_SIZE", dev.mig_data_size())?;
    let mut saving = set(dev, STOP_COPY)?.ok_or("STOP_COPY opened no data fd")?;
    let state = read_to_end(saving.as_mut())?;
    ensure(!state.is_empty(), || "STOP_COPY produced no data".into())?;
    ensure(estimate >= state.len() as u64, || {
        format!(
            "MIG_DATA_SIZE {estimate} below the {} bytes saved",
            state.len()
        )
    })?;
    // End of stream stays the end.
    expect_eq("a read after the end", saving.read(&mut [0u8; 8]), Ok(0))?;
    set_no_session(dev, STOP)?;
    drop(saving);

    let mut resuming = set(dev, RESUMING)?.ok_or("RESUMING opened no data fd")?;
    let mut written = 0;
    while written < state.len() {
        written += on("writing the data fd", resuming.write(&state[written..]))?;
    }
    set_no_session(dev, STOP)?;
    set_no_session(dev, RUNNING)?;
    expect_eq(
        "final state",
        on("GET MIG_DEVICE_STATE", dev.mig_state())?,
        RUNNING,
    )
}

fn precopy(dev: &dyn VfioDevice) -> Check {
    let mut data = set(dev, PRE_COPY)?.ok_or("PRE_COPY opened no data fd")?;
    let info = on("VFIO_MIG_GET_PRECOPY_INFO", data.precopy_info())?;
    ensure(info.initial_bytes > 0, || format!("PRE_COPY info {info:?}"))?;
    let initial = read_to_end(data.as_mut())?;
    expect_eq(
        "bytes read in PRE_COPY",
        initial.len() as u64,
        info.initial_bytes,
    )?;
    let drained = on("PRECOPY_INFO after reading", data.precopy_info())?;
    expect_eq("initial bytes left", drained.initial_bytes, 0)?;
    set_no_session(dev, RUNNING)?;
    // Out of PRE_COPY the precopy ioctl is refused.
    expect_errno(
        "PRECOPY_INFO in RUNNING",
        data.precopy_info(),
        Errno::EINVAL,
    )?;
    expect_eq(
        "final state",
        on("GET MIG_DEVICE_STATE", dev.mig_state())?,
        RUNNING,
    )
}
