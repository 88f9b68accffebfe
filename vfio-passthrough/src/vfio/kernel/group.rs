//! [`VfioGroup`] (`/dev/vfio/<group>`) and [`GroupDevice`], a device opened through its group
//! in a type1 container (the legacy path, for kernels without iommufd).

use std::ffi::CString;
use std::fs::{File, OpenOptions};
use std::os::fd::{AsFd, BorrowedFd};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use super::device_file::{DeviceFile, delegate_device_file};
use crate::errno::Errno;
use crate::host::iommufd::{Iommufd, KernelIommufd};
use crate::host::type1::Type1Container;
use crate::sys::group as sys;
use crate::vfio::VfioDevice;

/// `VFIO_GROUP_FLAGS_VIABLE`: every device of the group is bound to a VFIO driver (or none).
pub const VFIO_GROUP_FLAGS_VIABLE: u32 = 1 << 0;
/// `VFIO_GROUP_FLAGS_CONTAINER_SET`: the group is in a container.
pub const VFIO_GROUP_FLAGS_CONTAINER_SET: u32 = 1 << 1;

/// An open VFIO group.
#[derive(Debug)]
pub struct VfioGroup {
    file: File,
    id: u32,
    path: PathBuf,
}

impl VfioGroup {
    /// Opens `/dev/vfio/<id>`.
    pub fn open(id: u32) -> Result<Self, Errno> {
        Self::open_path(&PathBuf::from(format!("/dev/vfio/{id}")), id)
    }

    /// Opens the group node at `path`, which is group `id`.
    pub fn open_path(path: &Path, id: u32) -> Result<Self, Errno> {
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .open(path)
            .map_err(|e| Errno::from_io(&e))?;
        Ok(Self {
            file,
            id,
            path: path.to_owned(),
        })
    }

    /// The group number.
    pub fn id(&self) -> u32 {
        self.id
    }

    /// The group's fd.
    pub fn fd(&self) -> BorrowedFd<'_> {
        self.file.as_fd()
    }

    /// `VFIO_GROUP_GET_STATUS`: `VFIO_GROUP_FLAGS_*`.
    pub fn status(&self) -> Result<u32, Errno> {
        sys::get_status(self.fd())
    }

    /// `VFIO_GROUP_SET_CONTAINER` with `container`'s fd. A container without one (in-process)
    /// is a file the kernel would not recognise: `EBADFD`.
    pub fn set_container(&self, container: &dyn Type1Container) -> Result<(), Errno> {
        let fd = container.raw_fd().ok_or(Errno::EBADFD)?;
        sys::set_container(self.fd(), fd)
    }

    /// `VFIO_GROUP_UNSET_CONTAINER`.
    pub fn unset_container(&self) -> Result<(), Errno> {
        sys::unset_container(self.fd())
    }

    /// `VFIO_GROUP_GET_DEVICE_FD` for the device named `name` (a PCI address such as
    /// `0000:00:03.0`, or an mdev UUID). A name with a NUL byte is `EINVAL`.
    pub fn device(self: &Arc<Self>, name: &str) -> Result<GroupDevice, Errno> {
        let cname = CString::new(name).map_err(|_| Errno::EINVAL)?;
        let file = sys::get_device_fd(self.fd(), &cname)?;
        Ok(GroupDevice {
            file: DeviceFile::new(file, self.path.join(name)),
            group: Arc::clone(self),
            name: name.to_owned(),
        })
    }
}

/// A VFIO device obtained from its group. It cannot bind to an iommufd (`EINVAL`) and its
/// ATTACH/DETACH fall through to the driver (`ENOTTY` from vfio-pci): DMA goes through the
/// container its group is in.
#[derive(Debug)]
pub struct GroupDevice {
    file: DeviceFile,
    group: Arc<VfioGroup>,
    name: String,
}

impl GroupDevice {
    /// The group the device came from.
    pub fn group(&self) -> &Arc<VfioGroup> {
        &self.group
    }

    /// The device's name in its group.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The device file, for calls beyond the seam (hot-reset info).
    pub fn file(&self) -> &DeviceFile {
        &self.file
    }
}

impl VfioDevice for GroupDevice {
    delegate_device_file!(file);

    fn bind_iommufd(&self, iommufd: &Arc<dyn Iommufd>) -> Result<u32, Errno> {
        // The kernel refuses BIND on a group-opened fd before it looks at the iommufd, so a
        // context without a file gets the same EINVAL; a kernel one goes to the kernel.
        match iommufd
            .as_any()
            .downcast_ref::<KernelIommufd>()
            .and_then(|ctx| ctx.raw_fd())
        {
            Some(fd) => self.file.bind_iommufd_fd(fd),
            None => Err(Errno::EINVAL),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn opening_a_missing_group_reports_enoent() {
        match VfioGroup::open(4242) {
            Err(e) => assert_eq!(e, Errno::ENOENT),
            Ok(_) => panic!("/dev/vfio/4242 exists on this machine"),
        }
    }

    #[test]
    fn group_calls_reach_the_kernel_and_names_with_nul_are_refused() {
        // /dev/null stands in for the group node: every ioctl answers ENOTTY.
        let group = Arc::new(VfioGroup::open_path(Path::new("/dev/null"), 7).unwrap());
        assert_eq!(group.id(), 7);
        assert_eq!(group.status(), Err(Errno::ENOTTY));
        assert_eq!(group.device("0000:00:03.0").err(), Some(Errno::ENOTTY));
        assert_eq!(group.device("bad\0name").err(), Some(Errno::EINVAL));
    }
}
