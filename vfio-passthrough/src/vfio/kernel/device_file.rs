//! [`DeviceFile`]: an open VFIO device fd and the device operations every way of opening one
//! shares (info, regions, IRQs, reset, features, migration), on top of [`crate::sys::device`].
//!
//! `vfio-ioctls` is not used: it swallows region read/write errors (logging them), its devices
//! only come from its own concrete containers (no custom backend), and it has no capability
//! parsing for GET_INFO nor DIRTY_PAGES; the device seam needs every errno.

use std::collections::BTreeMap;
use std::fs::File;
use std::io::{Read, Write};
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, FromRawFd, RawFd};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use vfio_bindings::bindings::vfio as b;

use crate::errno::Errno;
use crate::sys::device::{self as sys, FEATURE_GET, FEATURE_PROBE, FEATURE_SET, FeatureArg};
use crate::vfio::{
    DeviceInfo, DmaLoggingRange, DmaLoggingReport, IrqInfo, IrqSet, MigrationData, MmapArea,
    PrecopyInfo, RegionInfo, VFIO_DEVICE_FEATURE_DMA_LOGGING_REPORT,
    VFIO_DEVICE_FEATURE_DMA_LOGGING_START, VFIO_DEVICE_FEATURE_DMA_LOGGING_STOP,
    VFIO_DEVICE_FEATURE_MIG_DATA_SIZE, VFIO_DEVICE_FEATURE_MIG_DEVICE_STATE,
    VFIO_DEVICE_FEATURE_MIGRATION, VfioDevice,
};

/// An open VFIO device file, with the regions it has described so far.
#[derive(Debug)]
pub struct DeviceFile {
    file: File,
    /// What was opened (for messages).
    path: PathBuf,
    /// Region descriptions, fetched once: a device's regions do not change while it is open.
    regions: Mutex<BTreeMap<u32, RegionInfo>>,
}

/// `VFIO_DEVICE_GET_PCI_HOT_RESET_INFO`: one device that a bus/slot reset would also reset.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HotResetDevice {
    /// Its IOMMU group (group-opened devices) or iommufd device id (cdev, with
    /// `VFIO_PCI_HOT_RESET_FLAG_DEV_ID`; 0 = owned implicitly, `u32::MAX` = not owned).
    pub id: u32,
    /// PCI segment.
    pub segment: u16,
    /// PCI bus.
    pub bus: u8,
    /// PCI device and function.
    pub devfn: u8,
}

/// `VFIO_DEVICE_GET_PCI_HOT_RESET_INFO`'s reply.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HotResetInfo {
    /// `VFIO_PCI_HOT_RESET_FLAG_*`.
    pub flags: u32,
    /// The devices affected, this one included.
    pub devices: Vec<HotResetDevice>,
}

impl DeviceFile {
    /// Wraps an open device fd; `path` says what it is (the cdev node, `group 5 device
    /// 0000:00:03.0`) in messages.
    pub fn new(file: File, path: impl Into<PathBuf>) -> Self {
        Self {
            file,
            path: path.into(),
            regions: Mutex::new(BTreeMap::new()),
        }
    }

    /// The device fd.
    pub fn fd(&self) -> BorrowedFd<'_> {
        self.file.as_fd()
    }

    /// What was opened.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The description of region `index`, fetched through `device` on first use.
    fn region(&self, device: &dyn VfioDevice, index: u32) -> Result<RegionInfo, Errno> {
        if let Some(info) = self.lock_regions().get(&index) {
            return Ok(info.clone());
        }
        let info = crate::vfio::region_info(device, index)?;
        self.lock_regions().insert(index, info.clone());
        Ok(info)
    }

    fn lock_regions(&self) -> std::sync::MutexGuard<'_, BTreeMap<u32, RegionInfo>> {
        // The map holds plain data: a panic elsewhere cannot leave it half-updated.
        self.regions.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Where `[offset, offset + len)` of a region lands in the device file, clipped to the
    /// region's end: `EINVAL` for an offset at or past the end (the kernel's answer inside a
    /// region; here it also keeps an access from reaching the next region's file range).
    fn file_range(info: &RegionInfo, offset: u64, len: usize) -> Result<(u64, usize), Errno> {
        if offset >= info.size {
            return Err(Errno::EINVAL);
        }
        let len = len.min(usize::try_from(info.size - offset).unwrap_or(usize::MAX));
        let at = info.offset.checked_add(offset).ok_or(Errno::EINVAL)?;
        Ok((at, len))
    }

    /// `VFIO_DEVICE_GET_INFO`.
    pub fn device_info(&self) -> Result<DeviceInfo, Errno> {
        let info = sys::get_info(self.fd())?;
        Ok(DeviceInfo {
            flags: info.flags,
            num_regions: info.num_regions,
            num_irqs: info.num_irqs,
        })
    }

    /// `VFIO_DEVICE_GET_REGION_INFO` into a raw buffer.
    pub fn get_region_info(&self, buf: &mut [u8]) -> Result<(), Errno> {
        sys::get_region_info(self.fd(), buf)
    }

    /// A `pread` of region `index` (described through `device`).
    pub fn region_read(
        &self,
        device: &dyn VfioDevice,
        index: u32,
        offset: u64,
        buf: &mut [u8],
    ) -> Result<usize, Errno> {
        let info = self.region(device, index)?;
        let (at, len) = Self::file_range(&info, offset, buf.len())?;
        self.file
            .read_at(&mut buf[..len], at)
            .map_err(|e| Errno::from_io(&e))
    }

    /// A `pwrite` to region `index`.
    pub fn region_write(
        &self,
        device: &dyn VfioDevice,
        index: u32,
        offset: u64,
        buf: &[u8],
    ) -> Result<usize, Errno> {
        let info = self.region(device, index)?;
        let (at, len) = Self::file_range(&info, offset, buf.len())?;
        self.file
            .write_at(&buf[..len], at)
            .map_err(|e| Errno::from_io(&e))
    }

    /// Maps part of region `index`; the range must lie inside one of its mmap-able areas.
    pub fn region_mmap(
        &self,
        device: &dyn VfioDevice,
        index: u32,
        offset: u64,
        len: u64,
        writable: bool,
    ) -> Result<MmapArea, Errno> {
        let info = self.region(device, index)?;
        let end = offset.checked_add(len).ok_or(Errno::EINVAL)?;
        let inside = info
            .mmap_areas()
            .iter()
            .any(|&(start, size)| offset >= start && end <= start.saturating_add(size));
        if len == 0 || !inside {
            return Err(Errno::EINVAL);
        }
        let at = info.offset.checked_add(offset).ok_or(Errno::EINVAL)?;
        let len = usize::try_from(len).map_err(|_| Errno::EINVAL)?;
        MmapArea::map(self.fd(), at, len, writable)
    }

    /// `VFIO_DEVICE_GET_IRQ_INFO`.
    pub fn irq_info(&self, index: u32) -> Result<IrqInfo, Errno> {
        let info = sys::get_irq_info(self.fd(), index)?;
        Ok(IrqInfo {
            flags: info.flags,
            index: info.index,
            count: info.count,
        })
    }

    /// `VFIO_DEVICE_SET_IRQS`.
    pub fn set_irqs(&self, req: &IrqSet, data: &[u8]) -> Result<(), Errno> {
        sys::set_irqs(self.fd(), req.flags, req.index, req.start, req.count, data)
    }

    /// `VFIO_DEVICE_RESET`.
    pub fn reset(&self) -> Result<(), Errno> {
        sys::reset(self.fd())
    }

    /// `VFIO_DEVICE_GET_PCI_HOT_RESET_INFO`, growing the buffer on `ENOSPC` as the kernel asks.
    pub fn pci_hot_reset_info(&self) -> Result<HotResetInfo, Errno> {
        const ENTRY: usize = 8;
        let mut argsz = sys::HOT_RESET_INFO_MINSZ + 8 * ENTRY;
        for _ in 0..4 {
            let mut buf = vec![0u8; argsz];
            buf[0..4].copy_from_slice(&(argsz as u32).to_ne_bytes());
            let word = |buf: &[u8], at: usize| {
                u32::from_ne_bytes([buf[at], buf[at + 1], buf[at + 2], buf[at + 3]])
            };
            match sys::get_pci_hot_reset_info(self.fd(), &mut buf) {
                Ok(()) => {
                    let count = word(&buf, 8) as usize;
                    let devices = (0..count)
                        .map(|i| sys::HOT_RESET_INFO_MINSZ + i * ENTRY)
                        .take_while(|at| at + ENTRY <= buf.len())
                        .map(|at| HotResetDevice {
                            id: word(&buf, at),
                            segment: u16::from_ne_bytes([buf[at + 4], buf[at + 5]]),
                            bus: buf[at + 6],
                            devfn: buf[at + 7],
                        })
                        .collect();
                    return Ok(HotResetInfo {
                        flags: word(&buf, 4),
                        devices,
                    });
                }
                Err(Errno::ENOSPC) => {
                    let count = word(&buf, 8) as usize;
                    // Bounded: a PCI bus has at most 256 functions.
                    argsz = sys::HOT_RESET_INFO_MINSZ + count.min(256) * ENTRY;
                }
                Err(e) => return Err(e),
            }
        }
        Err(Errno::ENOSPC)
    }

    /// `VFIO_DEVICE_FEATURE` with `PROBE`.
    pub fn feature_probe(&self, feature: u32, get: bool, set: bool) -> Result<(), Errno> {
        let mut flags = feature | FEATURE_PROBE;
        if get {
            flags |= FEATURE_GET;
        }
        if set {
            flags |= FEATURE_SET;
        }
        sys::feature(self.fd(), &mut FeatureArg::new(flags, ()))
    }

    /// `VFIO_DEVICE_FEATURE_MIGRATION` GET.
    pub fn migration_flags(&self) -> Result<u64, Errno> {
        let mut arg = FeatureArg::new(
            VFIO_DEVICE_FEATURE_MIGRATION | FEATURE_GET,
            b::vfio_device_feature_migration::default(),
        );
        sys::feature(self.fd(), &mut arg)?;
        Ok(arg.data.flags)
    }

    /// `VFIO_DEVICE_FEATURE_MIG_DEVICE_STATE` GET.
    pub fn mig_state(&self) -> Result<u32, Errno> {
        let mut arg = FeatureArg::new(
            VFIO_DEVICE_FEATURE_MIG_DEVICE_STATE | FEATURE_GET,
            b::vfio_device_feature_mig_state {
                device_state: 0,
                data_fd: -1,
            },
        );
        sys::feature(self.fd(), &mut arg)?;
        Ok(arg.data.device_state)
    }

    /// `VFIO_DEVICE_FEATURE_MIG_DEVICE_STATE` SET; the data fd when the move starts a session.
    pub fn set_mig_state(&self, state: u32) -> Result<Option<Box<dyn MigrationData>>, Errno> {
        let mut arg = FeatureArg::new(
            VFIO_DEVICE_FEATURE_MIG_DEVICE_STATE | FEATURE_SET,
            b::vfio_device_feature_mig_state {
                device_state: state,
                data_fd: -1,
            },
        );
        sys::feature(self.fd(), &mut arg)?;
        if arg.data.data_fd < 0 {
            return Ok(None);
        }
        // SAFETY: on success with a session the kernel installed `data_fd` for us
        // (fd_install after the copy-out); nothing else owns it.
        let file = unsafe { File::from_raw_fd(arg.data.data_fd) };
        Ok(Some(Box::new(KernelMigrationData { file })))
    }

    /// `VFIO_DEVICE_FEATURE_MIG_DATA_SIZE` GET.
    pub fn mig_data_size(&self) -> Result<u64, Errno> {
        let mut arg = FeatureArg::new(
            VFIO_DEVICE_FEATURE_MIG_DATA_SIZE | FEATURE_GET,
            b::vfio_device_feature_mig_data_size::default(),
        );
        sys::feature(self.fd(), &mut arg)?;
        Ok(arg.data.stop_copy_length)
    }

    /// `VFIO_DEVICE_FEATURE_DMA_LOGGING_START`.
    pub fn dma_logging_start(
        &self,
        page_size: &mut u64,
        ranges: &[DmaLoggingRange],
    ) -> Result<(), Errno> {
        let ranges: Vec<_> = ranges
            .iter()
            .map(|r| b::vfio_device_feature_dma_logging_range {
                iova: r.iova,
                length: r.length,
            })
            .collect();
        let mut arg = FeatureArg::new(
            VFIO_DEVICE_FEATURE_DMA_LOGGING_START | FEATURE_SET,
            b::vfio_device_feature_dma_logging_control {
                page_size: *page_size,
                ..Default::default()
            },
        );
        sys::feature_logging_start(self.fd(), &mut arg, &ranges)?;
        *page_size = arg.data.page_size;
        Ok(())
    }

    /// `VFIO_DEVICE_FEATURE_DMA_LOGGING_STOP`.
    pub fn dma_logging_stop(&self) -> Result<(), Errno> {
        let mut arg = FeatureArg::new(VFIO_DEVICE_FEATURE_DMA_LOGGING_STOP | FEATURE_SET, ());
        sys::feature(self.fd(), &mut arg)
    }

    /// `VFIO_DEVICE_FEATURE_DMA_LOGGING_REPORT`.
    pub fn dma_logging_report(
        &self,
        req: &DmaLoggingReport,
        bitmap: &mut [u64],
    ) -> Result<(), Errno> {
        let mut arg = FeatureArg::new(
            VFIO_DEVICE_FEATURE_DMA_LOGGING_REPORT | FEATURE_GET,
            b::vfio_device_feature_dma_logging_report {
                iova: req.iova,
                length: req.length,
                page_size: req.page_size,
                bitmap: 0,
            },
        );
        sys::feature_logging_report(self.fd(), &mut arg, bitmap)
    }

    /// `VFIO_DEVICE_ATTACH_IOMMUFD_PT`.
    pub fn attach_pt(&self, pt_id: u32, pasid: Option<u32>) -> Result<u32, Errno> {
        sys::attach_iommufd_pt(self.fd(), pt_id, pasid)
    }

    /// `VFIO_DEVICE_DETACH_IOMMUFD_PT`.
    pub fn detach_pt(&self, pasid: Option<u32>) -> Result<(), Errno> {
        sys::detach_iommufd_pt(self.fd(), pasid)
    }

    /// `VFIO_DEVICE_BIND_IOMMUFD` to the iommufd whose fd is `iommufd`.
    pub fn bind_iommufd_fd(&self, iommufd: RawFd) -> Result<u32, Errno> {
        sys::bind_iommufd(self.fd(), iommufd)
    }
}

impl AsRawFd for DeviceFile {
    fn as_raw_fd(&self) -> RawFd {
        self.file.as_raw_fd()
    }
}

/// A migration session's data fd.
#[derive(Debug)]
pub struct KernelMigrationData {
    file: File,
}

impl MigrationData for KernelMigrationData {
    fn read(&mut self, buf: &mut [u8]) -> Result<usize, Errno> {
        // ENOMSG (PRE_COPY has nothing more for now) comes through as the kernel's errno.
        self.file.read(buf).map_err(|e| Errno::from_io(&e))
    }

    fn write(&mut self, buf: &[u8]) -> Result<usize, Errno> {
        self.file.write(buf).map_err(|e| Errno::from_io(&e))
    }

    fn precopy_info(&mut self) -> Result<PrecopyInfo, Errno> {
        let info = sys::mig_get_precopy_info(self.file.as_fd())?;
        Ok(PrecopyInfo {
            initial_bytes: info.initial_bytes,
            dirty_bytes: info.dirty_bytes,
        })
    }
}

/// Implements the [`VfioDevice`] methods every kernel device shares by handing them to the
/// [`DeviceFile`] in field `$file`.
macro_rules! delegate_device_file {
    ($file:ident) => {
        fn device_info(&self) -> Result<$crate::vfio::DeviceInfo, $crate::errno::Errno> {
            self.$file.device_info()
        }

        fn get_region_info(&self, buf: &mut [u8]) -> Result<(), $crate::errno::Errno> {
            self.$file.get_region_info(buf)
        }

        fn region_read(
            &self,
            index: u32,
            offset: u64,
            buf: &mut [u8],
        ) -> Result<usize, $crate::errno::Errno> {
            self.$file.region_read(self, index, offset, buf)
        }

        fn region_write(
            &self,
            index: u32,
            offset: u64,
            buf: &[u8],
        ) -> Result<usize, $crate::errno::Errno> {
            self.$file.region_write(self, index, offset, buf)
        }

        fn region_mmap(
            &self,
            index: u32,
            offset: u64,
            len: u64,
            writable: bool,
        ) -> Result<$crate::vfio::MmapArea, $crate::errno::Errno> {
            self.$file.region_mmap(self, index, offset, len, writable)
        }

        fn irq_info(&self, index: u32) -> Result<$crate::vfio::IrqInfo, $crate::errno::Errno> {
            self.$file.irq_info(index)
        }

        fn set_irqs(
            &self,
            req: &$crate::vfio::IrqSet,
            data: &[u8],
        ) -> Result<(), $crate::errno::Errno> {
            self.$file.set_irqs(req, data)
        }

        fn reset(&self) -> Result<(), $crate::errno::Errno> {
            self.$file.reset()
        }

        fn feature_probe(
            &self,
            feature: u32,
            get: bool,
            set: bool,
        ) -> Result<(), $crate::errno::Errno> {
            self.$file.feature_probe(feature, get, set)
        }

        fn migration_flags(&self) -> Result<u64, $crate::errno::Errno> {
            self.$file.migration_flags()
        }

        fn mig_state(&self) -> Result<u32, $crate::errno::Errno> {
            self.$file.mig_state()
        }

        fn set_mig_state(
            &self,
            state: u32,
        ) -> Result<Option<Box<dyn $crate::vfio::MigrationData>>, $crate::errno::Errno> {
            self.$file.set_mig_state(state)
        }

        fn mig_data_size(&self) -> Result<u64, $crate::errno::Errno> {
            self.$file.mig_data_size()
        }

        fn dma_logging_start(
            &self,
            page_size: &mut u64,
            ranges: &[$crate::vfio::DmaLoggingRange],
        ) -> Result<(), $crate::errno::Errno> {
            self.$file.dma_logging_start(page_size, ranges)
        }

        fn dma_logging_stop(&self) -> Result<(), $crate::errno::Errno> {
            self.$file.dma_logging_stop()
        }

        fn dma_logging_report(
            &self,
            req: &$crate::vfio::DmaLoggingReport,
            bitmap: &mut [u64],
        ) -> Result<(), $crate::errno::Errno> {
            self.$file.dma_logging_report(req, bitmap)
        }

        fn attach_pt(&self, pt_id: u32, pasid: Option<u32>) -> Result<u32, $crate::errno::Errno> {
            self.$file.attach_pt(pt_id, pasid)
        }

        fn detach_pt(&self, pasid: Option<u32>) -> Result<(), $crate::errno::Errno> {
            self.$file.detach_pt(pasid)
        }

        fn as_any(&self) -> &dyn std::any::Any {
            self
        }
    };
}
pub(crate) use delegate_device_file;

#[cfg(test)]
mod tests {
    use super::*;
    use crate::vfio::{VFIO_REGION_INFO_FLAG_MMAP, VFIO_REGION_INFO_FLAG_READ};

    fn bar(size: u64) -> RegionInfo {
        RegionInfo {
            flags: VFIO_REGION_INFO_FLAG_READ | VFIO_REGION_INFO_FLAG_MMAP,
            index: 0,
            size,
            offset: 0,
            caps: vec![],
        }
    }

    #[test]
    fn accesses_are_clipped_to_the_region_and_refused_past_its_end() {
        let info = RegionInfo {
            offset: 7 << 40,
            ..bar(0x100)
        };
        assert_eq!(
            DeviceFile::file_range(&info, 0xf0, 0x40),
            Ok(((7 << 40) + 0xf0, 0x10))
        );
        assert_eq!(DeviceFile::file_range(&info, 0x100, 1), Err(Errno::EINVAL));
        assert_eq!(DeviceFile::file_range(&bar(0), 0, 4), Err(Errno::EINVAL));
        let wrapping = RegionInfo {
            offset: u64::MAX,
            ..bar(0x100)
        };
        assert_eq!(DeviceFile::file_range(&wrapping, 1, 1), Err(Errno::EINVAL));
    }

    #[test]
    fn migration_data_reads_to_the_end_and_reports_the_fd_errno() {
        // A pipe stands in for the kernel's data fd: bytes then EOF, and ENOTTY for the
        // precopy ioctl (a pipe is not a migration file).
        let mut fds = [0; 2];
        // SAFETY: pipe writes two fresh descriptors into the array.
        assert_eq!(unsafe { libc::pipe(fds.as_mut_ptr()) }, 0);
        // SAFETY: both descriptors are fresh and owned by nobody else.
        let (r, mut w) = unsafe { (File::from_raw_fd(fds[0]), File::from_raw_fd(fds[1])) };
        w.write_all(b"state").unwrap();
        drop(w);
        let mut data = KernelMigrationData { file: r };
        let mut buf = [0u8; 16];
        assert_eq!(data.read(&mut buf), Ok(5));
        assert_eq!(&buf[..5], b"state");
        assert_eq!(data.read(&mut buf), Ok(0));
        assert_eq!(data.precopy_info(), Err(Errno::ENOTTY));
    }
}
