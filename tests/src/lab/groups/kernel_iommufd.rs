//! Group `kernel-iommufd`: a smoke test of `KernelIommufd` and its `IOMMU_TEST_CMD` selftest
//! backend on the real kernel, in the mock boot (the selftest mock domain refuses to attach
//! while intel-iommu is active). Kernel backend only: the conformance suite compares backends.

use std::fs::File;

use vfio_passthrough::errno::Errno;
use vfio_passthrough::host::iommufd::uapi::*;
use vfio_passthrough::host::iommufd::{
    IOMMU_HWPT_INVALIDATE_DATA_SELFTEST, Iommufd, IommufdSelftest, KernelIommufd,
    MOCK_APERTURE_LAST, MOCK_APERTURE_START, MockDomain,
};

use super::kernel_support::{Check, DmaBuffer, ensure, expect_eq, expect_errno, on};
use crate::lab::case::Case;
use crate::lab::outcome::{Boot, Outcome};

/// The selftest mock domain's IOPTE size: half a CPU page.
const MOCK_PAGE: u64 = 2048;

/// The group's cases for a boot.
pub fn cases(boot: Boot) -> Vec<Case> {
    match boot {
        Boot::Mock => vec![
            case(
                "ioas-map-unmap-without-domain",
                ioas_map_unmap_without_domain,
            ),
            case("mock-domain-map-check-unmap", mock_domain_map_check_unmap),
            case("iova-ranges-emsgsize-writes-back", iova_ranges_emsgsize),
            case("hwpt-dirty-tracking", hwpt_dirty_tracking),
            case(
                "fault-queue-and-invalidate-writeback",
                fault_queue_and_invalidate,
            ),
        ],
        Boot::Devices => Vec::new(),
    }
}

fn case(name: &str, body: fn(&KernelIommufd) -> Check) -> Case {
    Case::kernel_only(name, move || {
        Outcome::from_result(on("opening /dev/iommu", KernelIommufd::open()).and_then(|c| body(&c)))
    })
}

fn ioas(ctx: &KernelIommufd) -> Result<u32, String> {
    let mut alloc = IoasAlloc::default();
    on("IOMMU_IOAS_ALLOC", ctx.ioas_alloc(&mut alloc))?;
    ensure(alloc.out_ioas_id != 0, || "IOAS id 0".into())?;
    Ok(alloc.out_ioas_id)
}

fn map_fixed(ctx: &KernelIommufd, ioas: u32, buf: &DmaBuffer, iova: u64, len: u64) -> Check {
    let mut map = IoasMap {
        flags: IOMMU_IOAS_MAP_FIXED_IOVA | IOMMU_IOAS_MAP_READABLE | IOMMU_IOAS_MAP_WRITEABLE,
        ioas_id: ioas,
        user_va: buf.va(),
        length: len,
        iova,
        ..Default::default()
    };
    // SAFETY: every buffer outlives the context it is mapped in (declared before it, or the
    // IOAS is unmapped first), and is only accessed with volatile operations.
    on(format!("IOMMU_IOAS_MAP at {iova:#x}"), unsafe {
        ctx.ioas_map(&mut map)
    })
}

fn ranges(ctx: &KernelIommufd, ioas: u32, capacity: u32) -> Result<(Vec<IovaRange>, u64), String> {
    let mut req = IoasIovaRanges {
        ioas_id: ioas,
        num_iovas: capacity,
        ..Default::default()
    };
    let mut out = vec![IovaRange::default(); capacity as usize];
    on(
        "IOMMU_IOAS_IOVA_RANGES",
        ctx.ioas_iova_ranges(&mut req, &mut out),
    )?;
    out.truncate(req.num_iovas as usize);
    Ok((out, req.out_iova_alignment))
}

fn ioas_map_unmap_without_domain(ctx: &KernelIommufd) -> Check {
    let buf = DmaBuffer::new(4 * 4096)?;
    let ioas = ioas(ctx)?;
    let (r, align) = ranges(ctx, ioas, 4)?;
    expect_eq(
        "ranges of a fresh IOAS",
        r,
        vec![IovaRange {
            start: 0,
            last: u64::MAX,
        }],
    )?;
    expect_eq("alignment without a domain", align, 1)?;

    // Automatic IOVA: lowest first fit above page 0. The lab kernel has no THP, so 6.12 caps
    // the alignment at PAGE_SIZE: the 8 KiB area lands at 0x1000, not at 0x2000.
    let mut auto = IoasMap {
        flags: IOMMU_IOAS_MAP_READABLE | IOMMU_IOAS_MAP_WRITEABLE,
        ioas_id: ioas,
        user_va: buf.va(),
        length: 2 * 4096,
        ..Default::default()
    };
    // SAFETY: `buf` outlives `ctx`'s use of it: it is unmapped below before being dropped.
    on("IOMMU_IOAS_MAP (automatic IOVA)", unsafe {
        ctx.ioas_map(&mut auto)
    })?;
    expect_eq("automatic IOVA of an 8 KiB area", auto.iova, 0x1000)?;

    map_fixed(ctx, ioas, &buf, 0x40_0000, 2 * 4096)?;
    let mut overlap = IoasMap {
        flags: IOMMU_IOAS_MAP_FIXED_IOVA | IOMMU_IOAS_MAP_READABLE,
        ioas_id: ioas,
        user_va: buf.va(),
        length: 4096,
        iova: 0x40_1000,
        ..Default::default()
    };
    // SAFETY: refused (EEXIST) before anything is mapped.
    let refused = unsafe { ctx.ioas_map(&mut overlap) };
    expect_errno("overlapping fixed map", refused, Errno::EEXIST)?;

    let mut part = IoasUnmap {
        ioas_id: ioas,
        iova: 0x40_0000,
        length: 4096,
    };
    expect_errno(
        "unmap of half an area",
        ctx.ioas_unmap(&mut part),
        Errno::ENOENT,
    )?;
    expect_eq("length after a refused unmap", part.length, 4096)?;

    let mut all = IoasUnmap {
        ioas_id: ioas,
        iova: 0,
        length: u64::MAX,
    };
    on("unmap all", ctx.ioas_unmap(&mut all))?;
    expect_eq("bytes unmapped by unmap-all", all.length, 4 * 4096)?;
    on("IOMMU_DESTROY of the IOAS", ctx.destroy(ioas))
}

fn mock_domain_map_check_unmap(ctx: &KernelIommufd) -> Check {
    let buf = DmaBuffer::new(4 * 4096)?;
    let ioas = ioas(ctx)?;
    let mut mock = MockDomain {
        pt_id: ioas,
        ..Default::default()
    };
    on("IOMMU_TEST_OP_MOCK_DOMAIN", ctx.mock_domain(&mut mock))?;
    ensure(mock.out_hwpt_id != 0 && mock.out_idev_id != 0, || {
        format!("mock domain ids {mock:?}")
    })?;
    let (r, align) = ranges(ctx, ioas, 4)?;
    expect_eq(
        "ranges with the mock domain attached",
        r,
        vec![IovaRange {
            start: MOCK_APERTURE_START,
            last: MOCK_APERTURE_LAST,
        }],
    )?;
    expect_eq("alignment with the mock domain", align, MOCK_PAGE)?;

    let iova = MOCK_APERTURE_START;
    let len = buf.len() as u64;
    map_fixed(ctx, ioas, &buf, iova, len)?;
    on(
        "MD_CHECK_MAP of the mapped buffer",
        ctx.mock_check_map(mock.out_hwpt_id, iova, len, buf.va()),
    )?;
    expect_errno(
        "MD_CHECK_MAP against the wrong memory",
        ctx.mock_check_map(mock.out_hwpt_id, iova, 4096, buf.va() + 4096),
        Errno::EINVAL,
    )?;
    on(
        "MD_CHECK_REFS while mapped",
        ctx.mock_check_refs(buf.va(), len, 1),
    )?;
    let mut unmap = IoasUnmap {
        ioas_id: ioas,
        iova,
        length: len,
    };
    on("IOMMU_IOAS_UNMAP", ctx.ioas_unmap(&mut unmap))?;
    expect_eq("bytes unmapped", unmap.length, len)?;
    on(
        "MD_CHECK_REFS after unmap",
        ctx.mock_check_refs(buf.va(), len, 0),
    )?;
    expect_errno(
        "destroying the IOAS while the mock device is attached",
        ctx.destroy(ioas),
        Errno::EBUSY,
    )?;
    on("destroying the mock device", ctx.destroy(mock.out_stdev_id))?;
    on("destroying the IOAS", ctx.destroy(ioas))
}

fn iova_ranges_emsgsize(ctx: &KernelIommufd) -> Check {
    let ioas = ioas(ctx)?;
    let mut mock = MockDomain {
        pt_id: ioas,
        ..Default::default()
    };
    on("IOMMU_TEST_OP_MOCK_DOMAIN", ctx.mock_domain(&mut mock))?;
    let hole = MOCK_APERTURE_START + 0x10_0000;
    on(
        "IOMMU_TEST_OP_ADD_RESERVED",
        ctx.mock_add_reserved(ioas, hole, 0x1000),
    )?;
    let mut req = IoasIovaRanges {
        ioas_id: ioas,
        num_iovas: 1,
        ..Default::default()
    };
    let mut out = [IovaRange::default(); 1];
    expect_errno(
        "IOVA_RANGES with room for one of two",
        ctx.ioas_iova_ranges(&mut req, &mut out),
        Errno::EMSGSIZE,
    )?;
    expect_eq("num_iovas written back with EMSGSIZE", req.num_iovas, 2)?;
    expect_eq(
        "alignment written back with EMSGSIZE",
        req.out_iova_alignment,
        MOCK_PAGE,
    )?;
    let first = IovaRange {
        start: MOCK_APERTURE_START,
        last: hole - 1,
    };
    expect_eq("the one range that fit", out[0], first)?;
    let (all, _) = ranges(ctx, ioas, 2)?;
    expect_eq(
        "both ranges",
        all,
        vec![
            first,
            IovaRange {
                start: hole + 0x1000,
                last: MOCK_APERTURE_LAST,
            },
        ],
    )?;
    on("destroying the mock device", ctx.destroy(mock.out_stdev_id))
}

fn hwpt_dirty_tracking(ctx: &KernelIommufd) -> Check {
    let buf = DmaBuffer::new(8 * MOCK_PAGE as usize)?;
    let ioas = ioas(ctx)?;
    let mut mock = MockDomain {
        pt_id: ioas,
        ..Default::default()
    };
    on("IOMMU_TEST_OP_MOCK_DOMAIN", ctx.mock_domain(&mut mock))?;
    let mut alloc = HwptAlloc {
        flags: IOMMU_HWPT_ALLOC_DIRTY_TRACKING,
        dev_id: mock.out_idev_id,
        pt_id: ioas,
        ..Default::default()
    };
    on(
        "IOMMU_HWPT_ALLOC(DIRTY_TRACKING)",
        ctx.hwpt_alloc(&mut alloc, &[]),
    )?;
    let hwpt = alloc.out_hwpt_id;
    expect_eq(
        "MOCK_DOMAIN_REPLACE onto the dirty-tracking HWPT",
        on(
            "MOCK_DOMAIN_REPLACE",
            ctx.mock_domain_replace(mock.out_stdev_id, hwpt),
        )?,
        hwpt,
    )?;
    let iova = MOCK_APERTURE_START;
    let len = 8 * MOCK_PAGE;
    map_fixed(ctx, ioas, &buf, iova, len)?;
    on(
        "HWPT_SET_DIRTY_TRACKING(enable)",
        ctx.hwpt_set_dirty_tracking(&HwptSetDirtyTracking {
            flags: IOMMU_HWPT_DIRTY_TRACKING_ENABLE,
            hwpt_id: hwpt,
            reserved: 0,
        }),
    )?;
    // A device writes IOPTEs 0 and 5.
    let dirtied = on(
        "IOMMU_TEST_OP_DIRTY",
        ctx.mock_dirty(hwpt, iova, len, MOCK_PAGE, &[0b10_0001]),
    )?;
    expect_eq("IOPTEs newly dirtied", dirtied, 2)?;
    let mut get = HwptGetDirtyBitmap {
        hwpt_id: hwpt,
        flags: IOMMU_HWPT_GET_DIRTY_BITMAP_NO_CLEAR,
        iova,
        length: len,
        page_size: MOCK_PAGE,
        ..Default::default()
    };
    for (what, flags, want) in [
        (
            "NO_CLEAR read",
            IOMMU_HWPT_GET_DIRTY_BITMAP_NO_CLEAR,
            0b10_0001,
        ),
        ("clearing read", 0, 0b10_0001),
        ("read after clearing", 0, 0),
    ] {
        get.flags = flags;
        let mut bitmap = [0u64; 1];
        on(what, ctx.hwpt_get_dirty_bitmap(&get, &mut bitmap))?;
        expect_eq(format!("bitmap of the {what}"), bitmap[0], want)?;
    }
    let mut all = IoasUnmap {
        ioas_id: ioas,
        iova: 0,
        length: u64::MAX,
    };
    on("unmap all", ctx.ioas_unmap(&mut all))?;
    on("destroying the mock device", ctx.destroy(mock.out_stdev_id))?;
    on("destroying the HWPT", ctx.destroy(hwpt))
}

fn fault_queue_and_invalidate(ctx: &KernelIommufd) -> Check {
    let mut fault = FaultQueueAlloc::default();
    let file: File = on("IOMMU_FAULT_QUEUE_ALLOC", ctx.fault_queue_alloc(&mut fault))?;
    ensure(fault.out_fault_id != 0, || "fault queue id 0".into())?;
    let meta = file
        .metadata()
        .map_err(|e| format!("fstat of the fault queue fd: {e}"))?;
    ensure(!meta.is_dir(), || {
        "the fault queue fd is a directory".into()
    })?;

    let ioas = ioas(ctx)?;
    let mut mock = MockDomain {
        pt_id: ioas,
        ..Default::default()
    };
    on("IOMMU_TEST_OP_MOCK_DOMAIN", ctx.mock_domain(&mut mock))?;
    // A paging HWPT cannot take invalidations: ENOENT, and entry_num (0 handled) is written
    // back on the error path.
    let mut inv = HwptInvalidate {
        hwpt_id: mock.out_hwpt_id,
        data_type: IOMMU_HWPT_INVALIDATE_DATA_SELFTEST,
        entry_len: 8,
        entry_num: 1,
        reserved: 0,
    };
    expect_errno(
        "HWPT_INVALIDATE on a paging HWPT",
        ctx.hwpt_invalidate(&mut inv, &[0u8; 8]),
        Errno::ENOENT,
    )?;
    expect_eq("entry_num written back on error", inv.entry_num, 0)?;
    on("destroying the mock device", ctx.destroy(mock.out_stdev_id))?;
    // The queue's fd holds a reference to the queue object.
    expect_errno(
        "destroying the fault queue while its fd is open",
        ctx.destroy(fault.out_fault_id),
        Errno::EBUSY,
    )?;
    drop(file);
    on(
        "destroying the fault queue after closing its fd",
        ctx.destroy(fault.out_fault_id),
    )
}
