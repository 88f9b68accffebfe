//! A device behind a VT-d IOMMU: its hw_info, reserved MSI window, and nested first-stage
//! HWPTs with the Intel driver's checks.

use vfio_passthrough::errno::Errno;
use vfio_passthrough::host::iommufd::IOMMU_HWPT_DATA_SELFTEST;
use vfio_passthrough::host::iommufd::uapi::*;

use crate::conformance::case::Fail;
use crate::conformance::env::Env;

const P: u64 = 4096;

/// The device's VT-d registers (`GET_HW_INFO`) and its hw_info answer.
fn vtd_hw_info(e: &Env, dev_id: u32) -> Result<(HwInfo, HwInfoVtd), Fail> {
    let mut req = HwInfo {
        dev_id,
        ..Default::default()
    };
    let mut data = [0u8; HwInfoVtd::SIZE];
    e.ok("GET_HW_INFO", e.ctx.get_hw_info(&mut req, &mut data))?;
    let info = HwInfoVtd::from_bytes(&data).ok_or_else(|| Fail("short data".into()))?;
    Ok((req, info))
}

/// `CAP.MGAW + 1`: the IOMMU's input address width.
fn mgaw(info: &HwInfoVtd) -> u32 {
    ((info.cap_reg >> 16) & 0x3f) as u32 + 1
}

/// Whatever the IOMMU (scalable or legacy mode, any width), what hw_info reports follows from
/// its registers the way the 6.12 Intel driver derives it.
pub(super) fn vtd_hw_info_reports_consistent_registers(e: &mut Env) -> Result<(), Fail> {
    let dev = e.vtd_device()?;
    let (req, info) = vtd_hw_info(e, dev.dev_id())?;
    e.eq("type", req.data_type, IOMMU_HW_INFO_TYPE_INTEL_VTD)?;
    e.eq("length", req.data_len as usize, HwInfoVtd::SIZE)?;
    e.eq("flags: the SPR17 erratum, always reported", info.flags, 1)?;
    let bit = |r: u64, b: u32| (r >> b) & 1 == 1;
    let scalable = bit(info.ecap_reg, 43);
    let dirty = req.out_capabilities & IOMMU_HW_CAP_DIRTY_TRACKING != 0;
    e.eq(
        "dirty capability = scalable mode with ECAP.SLADS and ECAP.SMPWC",
        dirty,
        scalable && bit(info.ecap_reg, 45) && bit(info.ecap_reg, 48),
    )?;
    let pasid = req.out_max_pasid_log2;
    if pasid > 0 {
        e.check(
            "a PASID width needs scalable mode and ECAP.PASID",
            scalable && bit(info.ecap_reg, 40),
        )?;
        e.check(
            "the PASID width is at most ECAP.PSS + 1",
            u64::from(pasid) <= ((info.ecap_reg >> 35) & 0x1f) + 1,
        )?;
    }
    e.check(
        "MGAW is 39, 48 or 57 bits",
        matches!(mgaw(&info), 39 | 48 | 57),
    )
}

/// Attached to an IOAS, a VT-d device's domain translates `[0, 2^MGAW)` less the interrupt
/// window, which cannot be mapped.
pub(super) fn vtd_devices_reserve_the_msi_window(e: &mut Env) -> Result<(), Fail> {
    let buf = e.buffer(1);
    let dev = e.vtd_device()?;
    let (_, info) = vtd_hw_info(e, dev.dev_id())?;
    let a = e.ioas()?;
    e.ok("attach to the IOAS", dev.attach(None, a))?;
    let top = (1u64 << mgaw(&info)) - 1;
    e.eq(
        "ranges",
        e.ranges(a),
        Ok((
            vec![
                IovaRange {
                    start: 0,
                    last: 0xfedf_ffff,
                },
                IovaRange {
                    start: 0xfef0_0000,
                    last: top,
                },
            ],
            P,
        )),
    )?;
    e.err(
        "map in the MSI window",
        e.map_fixed(a, buf.addr, P, 0xfee0_0000),
        Errno::EINVAL,
    )?;
    e.err(
        "map above the address width",
        e.map_fixed(a, buf.addr, P, top + 1),
        Errno::EINVAL,
    )?;
    e.ok("map below it", e.map_fixed(a, buf.addr, P, 0xfed0_0000))?;
    e.ok("detach", dev.detach(None))?;
    e.eq("ranges after detach", e.ranges(a).map(|r| r.0.len()), Ok(1))?;
    e.expect_exactly(a, None, &[(0xfed0_0000, P, buf.addr)])
}

fn s1(addr_width: u32, flags: u64) -> [u8; HwptVtdS1::SIZE] {
    HwptVtdS1 {
        flags,
        pgtbl_addr: 0x10_0000,
        addr_width,
        reserved: 0,
    }
    .to_bytes()
}

pub(super) fn vtd_nested_hwpts_follow_the_intel_driver(e: &mut Env) -> Result<(), Fail> {
    let dev = e.vtd_device()?;
    let id = dev.dev_id();
    let a = e.ioas()?;
    let parent = e.ok(
        "NEST_PARENT HWPT",
        e.hwpt(IOMMU_HWPT_ALLOC_NEST_PARENT, id, a, 0, &[]),
    )?;
    let vtd = IOMMU_HWPT_DATA_VTD_S1;
    e.err(
        "selftest data type",
        e.hwpt(0, id, parent, IOMMU_HWPT_DATA_SELFTEST, &[0; 4]),
        Errno::EOPNOTSUPP,
    )?;
    e.err(
        "short data",
        e.hwpt(0, id, parent, vtd, &s1(48, 0)[..20]),
        Errno::EINVAL,
    )?;
    e.err(
        "long data",
        e.hwpt(0, id, parent, vtd, &[0; 32]),
        Errno::EINVAL,
    )?;
    let bad_width = e.ok(
        "57-bit stage 1 is accepted at alloc",
        e.hwpt(0, id, parent, vtd, &s1(57, 0)),
    )?;
    e.err(
        "and refused at attach",
        dev.attach(None, bad_width),
        Errno::EINVAL,
    )?;
    let eafe = e.ok(
        "EAFE stage 1",
        e.hwpt(0, id, parent, vtd, &s1(48, IOMMU_VTD_S1_EAFE)),
    )?;
    e.err(
        "EAFE without ECAP.EAFS",
        dev.attach(None, eafe),
        Errno::EINVAL,
    )?;
    let good = e.ok(
        "48-bit SRE stage 1",
        e.hwpt(0, id, parent, vtd, &s1(48, IOMMU_VTD_S1_SRE)),
    )?;
    e.eq("attach", dev.attach(None, good), Ok(good))?;
    e.err("the nested HWPT is busy", e.ctx.destroy(good), Errno::EBUSY)?;
    let mock = e.mock(a)?;
    e.err(
        "a mock device cannot use the VT-d domain",
        e.mock_flags(parent, 0),
        Errno::EINVAL,
    )?;
    e.check(
        "the mock device got its own automatic domain",
        mock.out_hwpt_id != parent,
    )?;
    Ok(())
}

pub(super) fn vtd_invalidations_follow_the_intel_driver(e: &mut Env) -> Result<(), Fail> {
    let dev = e.vtd_device()?;
    let id = dev.dev_id();
    let a = e.ioas()?;
    let parent = e.ok(
        "NEST_PARENT HWPT",
        e.hwpt(IOMMU_HWPT_ALLOC_NEST_PARENT, id, a, 0, &[]),
    )?;
    let n = e.ok(
        "nested HWPT",
        e.hwpt(0, id, parent, IOMMU_HWPT_DATA_VTD_S1, &s1(48, 0)),
    )?;
    let inv = |entries: &[HwptVtdS1Invalidate]| {
        let bytes: Vec<u8> = entries.iter().flat_map(|x| x.to_bytes()).collect();
        let mut req = HwptInvalidate {
            hwpt_id: n,
            data_type: IOMMU_HWPT_INVALIDATE_DATA_VTD_S1,
            entry_len: HwptVtdS1Invalidate::SIZE as u32,
            entry_num: entries.len() as u32,
            reserved: 0,
        };
        match e.ctx.hwpt_invalidate(&mut req, &bytes) {
            Ok(()) => Ok(req.entry_num),
            Err(err) => Err((err, req.entry_num)),
        }
    };
    let entry = |addr, npages, flags, reserved| HwptVtdS1Invalidate {
        addr,
        npages,
        flags,
        reserved,
    };
    let ok = entry(0x2000, 2, IOMMU_VTD_INV_FLAGS_LEAF, 0);
    e.eq("valid entries", inv(&[ok, entry(0, u64::MAX, 0, 0)]), Ok(2))?;
    e.eq(
        "unknown flag",
        inv(&[ok, entry(0, 1, 2, 0)]),
        Err((Errno::EOPNOTSUPP, 1)),
    )?;
    e.eq(
        "__reserved",
        inv(&[entry(0, 1, 0, 1)]),
        Err((Errno::EOPNOTSUPP, 0)),
    )?;
    e.eq(
        "unaligned address",
        inv(&[entry(0x2001, 1, 0, 0)]),
        Err((Errno::EINVAL, 0)),
    )?;
    e.eq(
        "everything from a non-zero address",
        inv(&[entry(0x1000, u64::MAX, 0, 0)]),
        Err((Errno::EINVAL, 0)),
    )?;
    Ok(())
}
