//! VFIO device ioctls (a device fd from a group or a cdev) and the migration data fd's one.

use std::os::fd::BorrowedFd;
use std::os::raw::c_ulong;

use vfio_bindings::bindings::vfio as b;

use super::{check_bitmap_len, io, ioctl_argsz_buf, ioctl_mut, ioctl_none};
use crate::errno::Errno;

/// `VFIO_DEVICE_GET_INFO`.
pub const VFIO_DEVICE_GET_INFO: c_ulong = io(107);
/// `VFIO_DEVICE_GET_REGION_INFO`.
pub const VFIO_DEVICE_GET_REGION_INFO: c_ulong = io(108);
/// `VFIO_DEVICE_GET_IRQ_INFO`.
pub const VFIO_DEVICE_GET_IRQ_INFO: c_ulong = io(109);
/// `VFIO_DEVICE_SET_IRQS`.
pub const VFIO_DEVICE_SET_IRQS: c_ulong = io(110);
/// `VFIO_DEVICE_RESET`.
pub const VFIO_DEVICE_RESET: c_ulong = io(111);
/// `VFIO_DEVICE_GET_PCI_HOT_RESET_INFO`.
pub const VFIO_DEVICE_GET_PCI_HOT_RESET_INFO: c_ulong = io(112);
/// `VFIO_DEVICE_FEATURE`.
pub const VFIO_DEVICE_FEATURE: c_ulong = io(117);
/// `VFIO_DEVICE_BIND_IOMMUFD`.
pub const VFIO_DEVICE_BIND_IOMMUFD: c_ulong = io(118);
/// `VFIO_DEVICE_ATTACH_IOMMUFD_PT`.
pub const VFIO_DEVICE_ATTACH_IOMMUFD_PT: c_ulong = io(119);
/// `VFIO_DEVICE_DETACH_IOMMUFD_PT`.
pub const VFIO_DEVICE_DETACH_IOMMUFD_PT: c_ulong = io(120);
/// `VFIO_MIG_GET_PRECOPY_INFO` (on a migration data fd).
pub const VFIO_MIG_GET_PRECOPY_INFO: c_ulong = io(121);

/// `minsz` of `VFIO_DEVICE_GET_REGION_INFO`: the whole `struct vfio_region_info`.
pub const REGION_INFO_MINSZ: usize = 32;
/// `minsz` of `VFIO_DEVICE_GET_PCI_HOT_RESET_INFO`: through `count`.
pub const HOT_RESET_INFO_MINSZ: usize = 12;
/// `minsz` of `VFIO_DEVICE_ATTACH_IOMMUFD_PT` before 6.15 (through `pt_id`): every kernel
/// accepts it, while the 16-byte form is needed only to pass a PASID.
pub const ATTACH_PT_MINSZ: u32 = 12;
/// `VFIO_DEVICE_ATTACH_PASID` / `VFIO_DEVICE_DETACH_PASID` (6.15).
pub const VFIO_DEVICE_PASID_FLAG: u32 = 1;

/// `VFIO_DEVICE_FEATURE_GET`.
pub const FEATURE_GET: u32 = 1 << 16;
/// `VFIO_DEVICE_FEATURE_SET`.
pub const FEATURE_SET: u32 = 1 << 17;
/// `VFIO_DEVICE_FEATURE_PROBE`.
pub const FEATURE_PROBE: u32 = 1 << 18;

/// `struct vfio_device_feature` with its payload `T` in `data[]`.
#[repr(C)]
#[derive(Debug, Default)]
pub struct FeatureArg<T> {
    /// Bytes of the whole argument.
    pub argsz: u32,
    /// Feature index and `GET`/`SET`/`PROBE`.
    pub flags: u32,
    /// The payload.
    pub data: T,
}

impl<T> FeatureArg<T> {
    /// The argument for `flags` with `data`, `argsz` covering both.
    pub fn new(flags: u32, data: T) -> Self {
        Self {
            argsz: std::mem::size_of::<Self>() as u32,
            flags,
            data,
        }
    }
}

/// `VFIO_DEVICE_GET_INFO` (header only: `argsz` is the struct size, so no capability chain
/// is copied).
pub fn get_info(fd: BorrowedFd<'_>) -> Result<b::vfio_device_info, Errno> {
    let mut info = b::vfio_device_info {
        argsz: std::mem::size_of::<b::vfio_device_info>() as u32,
        ..Default::default()
    };
    // SAFETY: with `argsz` = the struct size the kernel reads and writes only the struct.
    unsafe { ioctl_mut(fd, VFIO_DEVICE_GET_INFO, &mut info) }?;
    Ok(info)
}

/// `VFIO_DEVICE_GET_REGION_INFO` into a raw buffer starting with `argsz` and holding `index`
/// at bytes 8..12 (`EFAULT` if `argsz` exceeds the buffer).
pub fn get_region_info(fd: BorrowedFd<'_>, buf: &mut [u8]) -> Result<(), Errno> {
    // SAFETY: the kernel reads `minsz` bytes and writes the header and, only if `argsz` covers
    // it, the capability chain: at most `argsz` bytes.
    unsafe { ioctl_argsz_buf(fd, VFIO_DEVICE_GET_REGION_INFO, buf, REGION_INFO_MINSZ) }.map(drop)
}

/// `VFIO_DEVICE_GET_IRQ_INFO`.
pub fn get_irq_info(fd: BorrowedFd<'_>, index: u32) -> Result<b::vfio_irq_info, Errno> {
    let mut info = b::vfio_irq_info {
        argsz: std::mem::size_of::<b::vfio_irq_info>() as u32,
        index,
        ..Default::default()
    };
    // SAFETY: the kernel reads and writes the 16-byte struct.
    unsafe { ioctl_mut(fd, VFIO_DEVICE_GET_IRQ_INFO, &mut info) }?;
    Ok(info)
}

/// `VFIO_DEVICE_SET_IRQS` with `data` after the 20-byte header; `argsz` covers exactly both,
/// so the kernel, which refuses data arrays longer than `argsz - 20`, reads nothing beyond.
pub fn set_irqs(
    fd: BorrowedFd<'_>,
    flags: u32,
    index: u32,
    start: u32,
    count: u32,
    data: &[u8],
) -> Result<(), Errno> {
    const HEADER: usize = 20;
    let argsz = u32::try_from(HEADER + data.len()).map_err(|_| Errno::EFAULT)?;
    // u32 words keep the header aligned as the kernel's struct is.
    let mut words = vec![0u32; (HEADER + data.len()).div_ceil(4)];
    for (i, v) in [argsz, flags, index, start, count].into_iter().enumerate() {
        words[i] = v;
    }
    let bytes = words.as_mut_ptr().cast::<u8>();
    // SAFETY: `words` holds at least HEADER + data.len() bytes; the copy stays inside it and
    // does not overlap `data`, a distinct borrow.
    unsafe { std::ptr::copy_nonoverlapping(data.as_ptr(), bytes.add(HEADER), data.len()) };
    // SAFETY: the kernel reads at most `argsz` bytes (the header and a data array it checks
    // against `argsz`), all inside `words`, and writes nothing.
    unsafe {
        super::check(vmm_sys_util::ioctl::ioctl_with_mut_ptr(
            &fd,
            VFIO_DEVICE_SET_IRQS,
            bytes,
        ))
    }
    .map(drop)
}

/// `VFIO_DEVICE_RESET`.
pub fn reset(fd: BorrowedFd<'_>) -> Result<(), Errno> {
    // SAFETY: the request takes no argument.
    unsafe { ioctl_none(fd, VFIO_DEVICE_RESET) }.map(drop)
}

/// `VFIO_DEVICE_GET_PCI_HOT_RESET_INFO` into a raw buffer starting with `argsz`.
pub fn get_pci_hot_reset_info(fd: BorrowedFd<'_>, buf: &mut [u8]) -> Result<(), Errno> {
    // SAFETY: the kernel reads `minsz` bytes and writes the header and at most
    // `(argsz - minsz) / 8` dependent-device entries: at most `argsz` bytes.
    unsafe {
        ioctl_argsz_buf(
            fd,
            VFIO_DEVICE_GET_PCI_HOT_RESET_INFO,
            buf,
            HOT_RESET_INFO_MINSZ,
        )
    }
    .map(drop)
}

/// `VFIO_DEVICE_FEATURE` with a payload that holds no user pointer.
pub fn feature<T: Copy>(fd: BorrowedFd<'_>, arg: &mut FeatureArg<T>) -> Result<(), Errno> {
    // SAFETY: the kernel reads and writes at most `argsz` bytes (the header and `T`); callers
    // pass only payloads without pointers (migration flags and state, data size, none).
    unsafe { ioctl_mut(fd, VFIO_DEVICE_FEATURE, arg) }.map(drop)
}

/// `VFIO_DEVICE_FEATURE_DMA_LOGGING_START` with `ranges` as the range array.
pub fn feature_logging_start(
    fd: BorrowedFd<'_>,
    arg: &mut FeatureArg<b::vfio_device_feature_dma_logging_control>,
    ranges: &[b::vfio_device_feature_dma_logging_range],
) -> Result<(), Errno> {
    arg.data.num_ranges = u32::try_from(ranges.len()).map_err(|_| Errno::EFAULT)?;
    arg.data.ranges = ranges.as_ptr() as u64;
    // SAFETY: the kernel reads `num_ranges` ranges at `ranges`, exactly the slice, and writes
    // back only the control struct inside `arg`.
    unsafe { ioctl_mut(fd, VFIO_DEVICE_FEATURE, arg) }.map(drop)
}

/// `VFIO_DEVICE_FEATURE_DMA_LOGGING_REPORT` into `bitmap` (`EFAULT` before the ioctl if the
/// kernel's `iova_bitmap` could write past it).
pub fn feature_logging_report(
    fd: BorrowedFd<'_>,
    arg: &mut FeatureArg<b::vfio_device_feature_dma_logging_report>,
    bitmap: &mut [u64],
) -> Result<(), Errno> {
    check_bitmap_len(bitmap, arg.data.length, arg.data.page_size)?;
    arg.data.bitmap = bitmap.as_mut_ptr() as u64;
    // SAFETY: the kernel sets bits only in the words `iova_bitmap_words` counts, inside the
    // slice (checked above), or refuses a zero page size first.
    unsafe { ioctl_mut(fd, VFIO_DEVICE_FEATURE, arg) }.map(drop)
}

/// `VFIO_DEVICE_BIND_IOMMUFD` to the iommufd `iommufd`; returns the device id.
pub fn bind_iommufd(fd: BorrowedFd<'_>, iommufd: i32) -> Result<u32, Errno> {
    let mut bind = b::vfio_device_bind_iommufd {
        // The 16-byte form (without the 6.15+ token pointer) that every kernel accepts.
        argsz: 16,
        flags: 0,
        iommufd,
        out_devid: 0,
        token_uuid_ptr: 0,
    };
    // SAFETY: the kernel reads `minsz` (16) bytes and writes `out_devid`, inside the struct.
    unsafe { ioctl_mut(fd, VFIO_DEVICE_BIND_IOMMUFD, &mut bind) }?;
    Ok(bind.out_devid)
}

/// `VFIO_DEVICE_ATTACH_IOMMUFD_PT`; returns the HWPT id the kernel wrote back. Without a
/// PASID the 12-byte form is sent (all that 6.12 knows); with one, the 16-byte form with
/// `VFIO_DEVICE_ATTACH_PASID`, which kernels before 6.15 refuse (`EINVAL`, unknown flag).
pub fn attach_iommufd_pt(fd: BorrowedFd<'_>, pt_id: u32, pasid: Option<u32>) -> Result<u32, Errno> {
    let mut attach = b::vfio_device_attach_iommufd_pt {
        argsz: ATTACH_PT_MINSZ,
        flags: 0,
        pt_id,
        pasid: 0,
    };
    if let Some(pasid) = pasid {
        attach.argsz = std::mem::size_of::<b::vfio_device_attach_iommufd_pt>() as u32;
        attach.flags = VFIO_DEVICE_PASID_FLAG;
        attach.pasid = pasid;
    }
    // SAFETY: the kernel reads at most the 16-byte struct and writes `pt_id` inside it.
    unsafe { ioctl_mut(fd, VFIO_DEVICE_ATTACH_IOMMUFD_PT, &mut attach) }?;
    Ok(attach.pt_id)
}

/// `VFIO_DEVICE_DETACH_IOMMUFD_PT` (8-byte form without a PASID, 12-byte with one).
pub fn detach_iommufd_pt(fd: BorrowedFd<'_>, pasid: Option<u32>) -> Result<(), Errno> {
    let mut detach = b::vfio_device_detach_iommufd_pt {
        argsz: 8,
        flags: 0,
        pasid: 0,
    };
    if let Some(pasid) = pasid {
        detach.argsz = std::mem::size_of::<b::vfio_device_detach_iommufd_pt>() as u32;
        detach.flags = VFIO_DEVICE_PASID_FLAG;
        detach.pasid = pasid;
    }
    // SAFETY: the kernel reads at most the 12-byte struct and writes nothing.
    unsafe { ioctl_mut(fd, VFIO_DEVICE_DETACH_IOMMUFD_PT, &mut detach) }.map(drop)
}

/// `VFIO_MIG_GET_PRECOPY_INFO` on a migration data fd.
pub fn mig_get_precopy_info(fd: BorrowedFd<'_>) -> Result<b::vfio_precopy_info, Errno> {
    let mut info = b::vfio_precopy_info {
        argsz: std::mem::size_of::<b::vfio_precopy_info>() as u32,
        ..Default::default()
    };
    // SAFETY: the kernel reads and writes the 24-byte struct.
    unsafe { ioctl_mut(fd, VFIO_MIG_GET_PRECOPY_INFO, &mut info) }?;
    Ok(info)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::mem::{offset_of, size_of};
    use std::os::fd::AsFd;

    #[test]
    fn request_numbers_match_the_uapi_table() {
        // kernel-uapi.md 2.1: device column.
        let table = [
            (VFIO_DEVICE_GET_INFO, 0x3b6b),
            (VFIO_DEVICE_GET_REGION_INFO, 0x3b6c),
            (VFIO_DEVICE_GET_IRQ_INFO, 0x3b6d),
            (VFIO_DEVICE_SET_IRQS, 0x3b6e),
            (VFIO_DEVICE_RESET, 0x3b6f),
            (VFIO_DEVICE_GET_PCI_HOT_RESET_INFO, 0x3b70),
            (VFIO_DEVICE_FEATURE, 0x3b75),
            (VFIO_DEVICE_BIND_IOMMUFD, 0x3b76),
            (VFIO_DEVICE_ATTACH_IOMMUFD_PT, 0x3b77),
            (VFIO_DEVICE_DETACH_IOMMUFD_PT, 0x3b78),
            (VFIO_MIG_GET_PRECOPY_INFO, 0x3b79),
        ];
        for (req, want) in table {
            assert_eq!(req, want);
        }
    }

    #[test]
    fn feature_payloads_follow_the_eight_byte_header() {
        assert_eq!(size_of::<FeatureArg<()>>(), 8);
        assert_eq!(
            offset_of!(FeatureArg<b::vfio_device_feature_mig_state>, data),
            8
        );
        assert_eq!(
            size_of::<FeatureArg<b::vfio_device_feature_mig_state>>(),
            16
        );
        assert_eq!(
            size_of::<FeatureArg<b::vfio_device_feature_dma_logging_control>>(),
            32
        );
        assert_eq!(
            size_of::<FeatureArg<b::vfio_device_feature_dma_logging_report>>(),
            40
        );
        assert_eq!(FeatureArg::new(FEATURE_PROBE | 1, ()).argsz, 8);
    }

    #[test]
    fn uapi_struct_sizes_match_the_reference() {
        assert_eq!(size_of::<b::vfio_device_info>(), 24);
        assert_eq!(size_of::<b::vfio_region_info>(), REGION_INFO_MINSZ);
        assert_eq!(size_of::<b::vfio_irq_info>(), 16);
        assert_eq!(size_of::<b::vfio_irq_set>(), 20);
        assert_eq!(size_of::<b::vfio_device_bind_iommufd>(), 24);
        assert_eq!(size_of::<b::vfio_device_attach_iommufd_pt>(), 16);
        assert_eq!(
            offset_of!(b::vfio_device_attach_iommufd_pt, pasid) as u32,
            ATTACH_PT_MINSZ
        );
        assert_eq!(size_of::<b::vfio_device_detach_iommufd_pt>(), 12);
        assert_eq!(size_of::<b::vfio_precopy_info>(), 24);
        assert_eq!(
            size_of::<b::vfio_pci_hot_reset_info>(),
            HOT_RESET_INFO_MINSZ
        );
        assert_eq!(size_of::<b::vfio_pci_dependent_device>(), 8);
    }

    #[test]
    fn report_bitmap_shorter_than_the_range_is_refused_without_an_ioctl() {
        let f = std::fs::File::open("/dev/null").unwrap();
        let mut arg = FeatureArg::new(
            FEATURE_GET | 8,
            b::vfio_device_feature_dma_logging_report {
                iova: 0,
                length: 129 * 4096,
                page_size: 4096,
                bitmap: 0,
            },
        );
        let mut bitmap = [0u64; 2];
        assert_eq!(
            feature_logging_report(f.as_fd(), &mut arg, &mut bitmap),
            Err(Errno::EFAULT)
        );
        arg.data.length = 128 * 4096;
        assert_eq!(
            feature_logging_report(f.as_fd(), &mut arg, &mut bitmap),
            Err(Errno::ENOTTY)
        );
    }
}
