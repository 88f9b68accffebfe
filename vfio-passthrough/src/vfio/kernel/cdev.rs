//! [`CdevDevice`]: a VFIO device opened through its character device
//! (`/dev/vfio/devices/vfioN`) and bound to a [`KernelIommufd`].

use std::fs::OpenOptions;
use std::path::Path;
use std::sync::{Arc, OnceLock};

use super::device_file::{DeviceFile, delegate_device_file};
use crate::errno::Errno;
use crate::host::iommufd::{Iommufd, IommufdDevice, KernelIommufd};
use crate::vfio::VfioDevice;

/// A VFIO cdev device. Until bound to an iommufd the kernel answers every other call `EINVAL`.
#[derive(Debug)]
pub struct CdevDevice {
    file: DeviceFile,
    /// Set once by a successful bind: the device id and the context it lives in (kept so the
    /// id stays meaningful as long as the device does).
    bound: OnceLock<(u32, Arc<dyn Iommufd>)>,
}

impl CdevDevice {
    /// Opens the cdev node at `path` (read-write, as VFIO requires).
    pub fn open(path: &Path) -> Result<Self, Errno> {
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .open(path)
            .map_err(|e| Errno::from_io(&e))?;
        Ok(Self {
            file: DeviceFile::new(file, path),
            bound: OnceLock::new(),
        })
    }

    /// The device file, for calls beyond the seam (hot-reset info).
    pub fn file(&self) -> &DeviceFile {
        &self.file
    }

    /// The iommufd this device is bound to, if any.
    pub fn iommufd(&self) -> Option<&Arc<dyn Iommufd>> {
        self.bound.get().map(|(_, ctx)| ctx)
    }
}

impl VfioDevice for CdevDevice {
    delegate_device_file!(file);

    fn bind_iommufd(&self, iommufd: &Arc<dyn Iommufd>) -> Result<u32, Errno> {
        // Only a kernel iommufd has a file the kernel can look up; anything else is what the
        // kernel calls a file it does not recognise.
        let fd = iommufd
            .as_any()
            .downcast_ref::<KernelIommufd>()
            .and_then(|ctx| ctx.raw_fd())
            .ok_or(Errno::EBADFD)?;
        let dev_id = self.file.bind_iommufd_fd(fd)?;
        // The kernel refuses a second bind (EINVAL), so this is the only successful one.
        let _ = self.bound.set((dev_id, Arc::clone(iommufd)));
        Ok(dev_id)
    }
}

impl IommufdDevice for CdevDevice {
    /// The DEVICE object id, or 0 (never a valid id) before the device is bound.
    fn dev_id(&self) -> u32 {
        self.bound.get().map_or(0, |(id, _)| *id)
    }

    fn attach(&self, pasid: Option<u32>, pt_id: u32) -> Result<u32, Errno> {
        self.file.attach_pt(pt_id, pasid)
    }

    fn detach(&self, pasid: Option<u32>) -> Result<(), Errno> {
        self.file.detach_pt(pasid)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::host::iommufd::uapi::*;
    use crate::vfio::*;

    /// A context that is not a kernel iommufd.
    #[derive(Debug)]
    struct InProcess;

    impl Iommufd for InProcess {
        fn destroy(&self, _: u32) -> Result<(), Errno> {
            Err(Errno::ENOSYS)
        }
        fn ioas_alloc(&self, _: &mut IoasAlloc) -> Result<(), Errno> {
            Err(Errno::ENOSYS)
        }
        fn ioas_allow_iovas(&self, _: &IoasAllowIovas, _: &[IovaRange]) -> Result<(), Errno> {
            Err(Errno::ENOSYS)
        }
        fn ioas_iova_ranges(
            &self,
            _: &mut IoasIovaRanges,
            _: &mut [IovaRange],
        ) -> Result<(), Errno> {
            Err(Errno::ENOSYS)
        }
        unsafe fn ioas_map(&self, _: &mut IoasMap) -> Result<(), Errno> {
            Err(Errno::ENOSYS)
        }
        fn ioas_map_file(&self, _: &mut IoasMapFile) -> Result<(), Errno> {
            Err(Errno::ENOSYS)
        }
        fn ioas_copy(&self, _: &mut IoasCopy) -> Result<(), Errno> {
            Err(Errno::ENOSYS)
        }
        fn ioas_unmap(&self, _: &mut IoasUnmap) -> Result<(), Errno> {
            Err(Errno::ENOSYS)
        }
        fn option(&self, _: &mut IommuOption) -> Result<(), Errno> {
            Err(Errno::ENOSYS)
        }
        fn vfio_ioas(&self, _: &mut VfioIoas) -> Result<(), Errno> {
            Err(Errno::ENOSYS)
        }
        fn hwpt_alloc(&self, _: &mut HwptAlloc, _: &[u8]) -> Result<(), Errno> {
            Err(Errno::ENOSYS)
        }
        fn get_hw_info(&self, _: &mut HwInfo, _: &mut [u8]) -> Result<(), Errno> {
            Err(Errno::ENOSYS)
        }
        fn hwpt_set_dirty_tracking(&self, _: &HwptSetDirtyTracking) -> Result<(), Errno> {
            Err(Errno::ENOSYS)
        }
        fn hwpt_get_dirty_bitmap(
            &self,
            _: &HwptGetDirtyBitmap,
            _: &mut [u64],
        ) -> Result<(), Errno> {
            Err(Errno::ENOSYS)
        }
        fn hwpt_invalidate(&self, _: &mut HwptInvalidate, _: &[u8]) -> Result<(), Errno> {
            Err(Errno::ENOSYS)
        }
        fn fault_queue_alloc(&self, _: &mut FaultQueueAlloc) -> Result<std::fs::File, Errno> {
            Err(Errno::ENOSYS)
        }
        fn raw_fd(&self) -> Option<std::os::fd::RawFd> {
            None
        }
        fn as_any(&self) -> &dyn std::any::Any {
            self
        }
    }

    /// `/dev/null` stands in for the device node: every ioctl answers `ENOTTY`.
    fn fake_device() -> CdevDevice {
        CdevDevice::open(Path::new("/dev/null")).unwrap()
    }

    #[test]
    fn binding_to_a_context_that_is_not_a_kernel_iommufd_is_ebadfd() {
        let dev = fake_device();
        let ctx: Arc<dyn Iommufd> = Arc::new(InProcess);
        assert_eq!(dev.bind_iommufd(&ctx), Err(Errno::EBADFD));
        assert_eq!(dev.dev_id(), 0);
        assert!(dev.iommufd().is_none());
        // A kernel iommufd gets as far as the ioctl.
        let kernel: Arc<dyn Iommufd> = Arc::new(KernelIommufd::from_file(
            std::fs::File::open("/dev/null").unwrap(),
        ));
        assert_eq!(dev.bind_iommufd(&kernel), Err(Errno::ENOTTY));
    }

    #[test]
    fn opening_a_missing_cdev_reports_enoent() {
        assert_eq!(
            CdevDevice::open(Path::new("/dev/vfio/devices/vfio999")).err(),
            Some(Errno::ENOENT)
        );
    }

    #[test]
    fn region_calls_surface_the_kernels_errno() {
        let dev = fake_device();
        let mut buf = [0u8; 4];
        assert_eq!(
            dev.region_read(VFIO_PCI_CONFIG_REGION_INDEX, 0, &mut buf),
            Err(Errno::ENOTTY)
        );
        assert_eq!(
            dev.region_mmap(0, 0, 4096, false).err(),
            Some(Errno::ENOTTY)
        );
        assert_eq!(dev.device_info(), Err(Errno::ENOTTY));
    }
}
