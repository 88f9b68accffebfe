//! `IOMMU_GET_HW_INFO`: size negotiation, zero fill, capabilities.

use vfio_passthrough::errno::Errno;
use vfio_passthrough::host::emulated::KernelVersion;
use vfio_passthrough::host::iommufd::uapi::*;
use vfio_passthrough::host::iommufd::{IOMMU_HW_INFO_TYPE_SELFTEST, MOCK_FLAGS_DEVICE_NO_DIRTY};

use crate::conformance::case::Fail;
use crate::conformance::env::Env;

/// The mock's hw_info data: `{u32 flags = 0, u32 test_reg = 0xdeadbeef}`.
const MOCK_INFO: [u8; 8] = [0, 0, 0, 0, 0xef, 0xbe, 0xad, 0xde];

fn info(e: &Env, dev_id: u32, cap: usize, fill: u8) -> Result<(HwInfo, Vec<u8>), Errno> {
    let mut req = HwInfo {
        dev_id,
        data_type: 0x1234,
        ..Default::default()
    };
    let mut data = vec![fill; cap];
    e.ctx.get_hw_info(&mut req, &mut data).map(|()| (req, data))
}

pub(super) fn hw_info_negotiates_the_data_size(e: &mut Env) -> Result<(), Fail> {
    let a = e.ioas()?;
    let d = e.mock(a)?;
    let (req, _) = e.ok("size query", info(e, d.out_idev_id, 0, 0xaa))?;
    e.eq("reported length", req.data_len, 8)?;
    e.eq("type", req.data_type, IOMMU_HW_INFO_TYPE_SELFTEST)?;
    let (_, data) = e.ok("exact buffer", info(e, d.out_idev_id, 8, 0xaa))?;
    e.eq("data", data, MOCK_INFO.to_vec())?;
    let (req, data) = e.ok("larger buffer", info(e, d.out_idev_id, 16, 0xaa))?;
    let mut want = MOCK_INFO.to_vec();
    want.resize(16, 0);
    e.eq("data, zero-filled", data, want)?;
    e.eq("reported length", req.data_len, 8)?;
    let (_, data) = e.ok("smaller buffer", info(e, d.out_idev_id, 4, 0xaa))?;
    e.eq("leading part", data, MOCK_INFO[..4].to_vec())
}

pub(super) fn hw_info_reports_dirty_tracking_and_no_pasid(e: &mut Env) -> Result<(), Fail> {
    let a = e.ioas()?;
    let d = e.mock(a)?;
    let nd = e.ok(
        "NO_DIRTY device",
        e.mock_flags(a, MOCK_FLAGS_DEVICE_NO_DIRTY),
    )?;
    let (req, _) = e.ok("plain device", info(e, d.out_idev_id, 0, 0))?;
    e.eq(
        "capabilities",
        req.out_capabilities,
        IOMMU_HW_CAP_DIRTY_TRACKING,
    )?;
    e.eq("PASID width", req.out_max_pasid_log2, 0)?;
    let (req, _) = e.ok("NO_DIRTY device", info(e, nd.out_idev_id, 0, 0))?;
    e.eq("capabilities", req.out_capabilities, 0)
}

pub(super) fn hw_info_bad_arguments(e: &mut Env) -> Result<(), Fail> {
    let a = e.ioas()?;
    let d = e.mock(a)?;
    e.err("an IOAS id", info(e, a, 8, 0), Errno::ENOENT)?;
    let mut req = HwInfo {
        dev_id: d.out_idev_id,
        reserved: [0, 1, 0],
        ..Default::default()
    };
    e.err(
        "__reserved",
        e.ctx.get_hw_info(&mut req, &mut []),
        Errno::EOPNOTSUPP,
    )?;
    req.reserved = [0; 3];
    req.flags = 1 << 1;
    e.err(
        "unknown flag",
        e.ctx.get_hw_info(&mut req, &mut []),
        Errno::EOPNOTSUPP,
    )?;
    if e.info.kernel < KernelVersion::V6_17 {
        req.flags = IOMMU_HW_INFO_FLAG_INPUT_TYPE;
        e.err(
            "INPUT_TYPE before 6.17",
            e.ctx.get_hw_info(&mut req, &mut []),
            Errno::EOPNOTSUPP,
        )?;
    } else {
        req.flags = IOMMU_HW_INFO_FLAG_INPUT_TYPE;
        req.data_type = IOMMU_HW_INFO_TYPE_SELFTEST + 1;
        e.err(
            "INPUT_TYPE of another type",
            e.ctx.get_hw_info(&mut req, &mut []),
            Errno::EOPNOTSUPP,
        )?;
        req.data_type = IOMMU_HW_INFO_TYPE_SELFTEST;
        e.ok(
            "INPUT_TYPE of its type",
            e.ctx.get_hw_info(&mut req, &mut []),
        )?;
    }
    Ok(())
}
