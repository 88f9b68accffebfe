//! Group `kernel-type1`: `KernelType1Container` against the real `vfio_iommu_type1`, with the
//! edu device's IOMMU group in the container (devices boot, intel-iommu active).

use vfio_passthrough::errno::Errno;
use vfio_passthrough::host::type1::info::VFIO_IOMMU_INFO_CAPS;
use vfio_passthrough::host::type1::*;
use vfio_passthrough::vfio::kernel::VfioGroup;
use vfio_passthrough::vfio::kernel::group::VFIO_GROUP_FLAGS_VIABLE;

use super::kernel_support::{
    Check, DmaBuffer, ensure, expect_eq, expect_errno, on, open_group_in_container,
};
use crate::lab::case::Case;
use crate::lab::outcome::{Boot, Outcome};
use crate::lab::sysfs::SysRoot;

/// The group's cases for a boot.
pub fn cases(boot: Boot) -> Vec<Case> {
    match boot {
        Boot::Mock => Vec::new(),
        Boot::Devices => vec![
            Case::kernel_only("container-setup-and-extensions", || {
                Outcome::from_result(container_setup())
            }),
            case("get-info-caps", get_info_caps),
            case("map-unmap-rules", map_unmap_rules),
            case("dirty-pages-every-mapped-page", dirty_pages),
        ],
    }
}

fn edu_group() -> Result<u32, String> {
    let edu = SysRoot::system().edu().map_err(|e| e.to_string())?;
    edu.iommu_group()
        .ok_or_else(|| format!("{} has no IOMMU group", edu.bdf))
}

fn case(name: &str, body: fn(&KernelType1Container) -> Check) -> Case {
    Case::kernel_only(name, move || {
        Outcome::from_result(
            edu_group()
                .and_then(open_group_in_container)
                .and_then(|(container, _group)| body(&container)),
        )
    })
}

fn container_setup() -> Check {
    let container = on("opening /dev/vfio/vfio", KernelType1Container::open())?;
    expect_eq(
        "VFIO_GET_API_VERSION",
        on("VFIO_GET_API_VERSION", container.get_api_version())?,
        0,
    )?;
    expect_eq(
        "CHECK_EXTENSION(TYPE1v2)",
        on(
            "CHECK_EXTENSION",
            container.check_extension(VFIO_TYPE1V2_IOMMU),
        )?,
        1,
    )?;
    // No group yet: there is nothing to pick an IOMMU for.
    expect_errno(
        "SET_IOMMU before any group",
        container.set_iommu(VFIO_TYPE1V2_IOMMU),
        Errno::EINVAL,
    )?;
    let id = edu_group()?;
    let group = on(format!("opening /dev/vfio/{id}"), VfioGroup::open(id))?;
    let status = on("VFIO_GROUP_GET_STATUS", group.status())?;
    ensure(status & VFIO_GROUP_FLAGS_VIABLE != 0, || {
        format!("group {id} is not viable (flags {status:#x})")
    })?;
    on("VFIO_GROUP_SET_CONTAINER", group.set_container(&container))?;
    on(
        "SET_IOMMU(TYPE1v2)",
        container.set_iommu(VFIO_TYPE1V2_IOMMU),
    )?;
    expect_errno(
        "a second SET_IOMMU",
        container.set_iommu(VFIO_TYPE1V2_IOMMU),
        Errno::EINVAL,
    )?;
    on("VFIO_GROUP_UNSET_CONTAINER", group.unset_container())
}

fn get_info_caps(container: &KernelType1Container) -> Check {
    // Too small for the capabilities: success, CAPS flagged, no chain, argsz raised.
    let mut small = vec![0u8; info::INFO_SIZE];
    small[0..4].copy_from_slice(&(info::INFO_SIZE as u32).to_le_bytes());
    on(
        "IOMMU_GET_INFO (24 bytes)",
        container.iommu_get_info(&mut small),
    )?;
    let head = on("parsing the short reply", Type1Info::parse(&small))?;
    ensure(head.flags & VFIO_IOMMU_INFO_CAPS != 0, || {
        format!("CAPS not flagged in {:#x}", head.flags)
    })?;
    expect_eq("cap_offset of the short reply", head.cap_offset, 0)?;
    // MIGRATION (32) + DMA_AVAIL (16) + IOVA_RANGE with two ranges (48) after the header.
    expect_eq("argsz raised to the size needed", head.argsz, 120)?;

    let mut full = vec![0u8; head.argsz as usize];
    full[0..4].copy_from_slice(&head.argsz.to_le_bytes());
    on("IOMMU_GET_INFO (full)", container.iommu_get_info(&mut full))?;
    let info = on("parsing the reply", Type1Info::parse(&full))?;
    ensure(info.iova_pgsizes & 4096 != 0, || {
        format!("iova_pgsizes {:#x} lacks 4 KiB", info.iova_pgsizes)
    })?;
    let migration = info.caps.iter().find_map(|c| match c {
        Type1InfoCap::Migration {
            pgsize_bitmap,
            max_dirty_bitmap_size,
            ..
        } => Some((*pgsize_bitmap, *max_dirty_bitmap_size)),
        _ => None,
    });
    expect_eq(
        "MIGRATION cap (pgsize_bitmap, max_dirty_bitmap_size)",
        migration,
        Some((4096, 256 << 20)),
    )?;
    let avail = info.caps.iter().find_map(|c| match c {
        Type1InfoCap::DmaAvail(n) => Some(*n),
        _ => None,
    });
    expect_eq("DMA_AVAIL cap of an empty container", avail, Some(65535))?;
    let ranges = info.caps.iter().find_map(|c| match c {
        Type1InfoCap::IovaRange(r) => Some(r.clone()),
        _ => None,
    });
    // Everything below QEMU's 39-bit VT-d address width except the interrupt window.
    expect_eq(
        "IOVA_RANGE cap",
        ranges,
        Some(vec![(0, 0xfedf_ffff), (0xfef0_0000, (1 << 39) - 1)]),
    )?;
    // With a group in, the type1 backend answers (UPDATE_VADDR 1 now, 0 before SET_IOMMU;
    // QEMU's VT-d does not enforce snooping, so DMA_CC is 0).
    for (ext, want) in [
        (VFIO_TYPE1_IOMMU, 1),
        (VFIO_TYPE1V2_IOMMU, 1),
        (VFIO_DMA_CC_IOMMU, 0),
        (VFIO_NOIOMMU_IOMMU, 0),
        (VFIO_UNMAP_ALL, 1),
        (VFIO_UPDATE_VADDR, 1),
    ] {
        expect_eq(
            format!("CHECK_EXTENSION({ext}) after SET_IOMMU"),
            on("CHECK_EXTENSION", container.check_extension(ext))?,
            want,
        )?;
    }
    Ok(())
}

fn map(
    container: &KernelType1Container,
    buf: &DmaBuffer,
    offset: u64,
    iova: u64,
    len: u64,
) -> Check {
    let req = Type1DmaMap::new(buf.va() + offset, iova, len);
    // SAFETY: `buf` outlives the container's mapping (it is unmapped, or the container closed,
    // before the buffer is dropped); it is only accessed with volatile operations.
    on(format!("MAP_DMA at {iova:#x}"), unsafe {
        container.map_dma(&req)
    })
}

fn map_unmap_rules(container: &KernelType1Container) -> Check {
    let buf = DmaBuffer::new(4 * 4096)?;
    map(container, &buf, 0, 0x10_0000, 2 * 4096)?;
    map(container, &buf, 2 * 4096, 0x20_0000, 2 * 4096)?;
    let overlap = Type1DmaMap::new(buf.va(), 0x10_1000, 4096);
    // SAFETY: refused (EEXIST) before anything is mapped.
    let refused = unsafe { container.map_dma(&overlap) };
    expect_errno("overlapping MAP_DMA", refused, Errno::EEXIST)?;

    let mut bisect = Type1DmaUnmap::new(0x10_1000, 4096);
    expect_errno(
        "unmap bisecting a mapping",
        container.unmap_dma(&mut bisect, &mut []),
        Errno::EINVAL,
    )?;
    let mut empty = Type1DmaUnmap::new(0x80_0000, 4096);
    on(
        "unmap of an empty range",
        container.unmap_dma(&mut empty, &mut []),
    )?;
    expect_eq("size unmapped from an empty range", empty.size, 0)?;
    // The bisecting unmap removed nothing: the whole first mapping is still there.
    let mut first = Type1DmaUnmap::new(0x10_0000, 2 * 4096);
    on(
        "unmap of the first mapping",
        container.unmap_dma(&mut first, &mut []),
    )?;
    expect_eq("size unmapped (first mapping)", first.size, 2 * 4096)?;
    // A range with holes unmaps every mapping inside it.
    let mut wide = Type1DmaUnmap::new(0, 1 << 30);
    on(
        "unmap of a wide range",
        container.unmap_dma(&mut wide, &mut []),
    )?;
    expect_eq("size unmapped (wide range)", wide.size, 2 * 4096)
}

fn dirty(flags: u32) -> Type1DirtyPages {
    Type1DirtyPages {
        argsz: 8,
        flags,
        iova: 0,
        size: 0,
        pgsize: 0,
    }
}

fn dirty_pages(container: &KernelType1Container) -> Check {
    let buf = DmaBuffer::new(4 * 4096)?;
    let iova = 0x10_0000;
    map(container, &buf, 0, iova, 4 * 4096)?;
    on(
        "DIRTY_PAGES START",
        container.dirty_pages(&dirty(VFIO_IOMMU_DIRTY_PAGES_FLAG_START), &mut []),
    )?;
    let get = Type1DirtyPages {
        argsz: DIRTY_PAGES_GET_ARGSZ,
        flags: VFIO_IOMMU_DIRTY_PAGES_FLAG_GET_BITMAP,
        iova,
        size: 4 * 4096,
        pgsize: 4096,
    };
    // An IOMMU-backed device cannot report its writes: every mapped page reads dirty, every
    // time.
    for round in ["first", "second"] {
        let mut bitmap = [0u64; 1];
        on(
            format!("DIRTY_PAGES GET_BITMAP ({round})"),
            container.dirty_pages(&get, &mut bitmap),
        )?;
        expect_eq(format!("{round} bitmap"), bitmap[0], 0b1111)?;
    }
    on(
        "DIRTY_PAGES STOP",
        container.dirty_pages(&dirty(VFIO_IOMMU_DIRTY_PAGES_FLAG_STOP), &mut []),
    )?;
    let mut bitmap = [0u64; 1];
    expect_errno(
        "GET_BITMAP after STOP",
        container.dirty_pages(&get, &mut bitmap),
        Errno::EINVAL,
    )?;
    let mut unmap = Type1DmaUnmap::new(iova, 4 * 4096);
    on("unmap", container.unmap_dma(&mut unmap, &mut []))
}
