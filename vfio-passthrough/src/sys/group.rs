//! VFIO group ioctls (`/dev/vfio/<group>`).

use std::ffi::CStr;
use std::fs::File;
use std::os::fd::{BorrowedFd, FromRawFd, RawFd};
use std::os::raw::c_ulong;

use vfio_bindings::bindings::vfio as b;

use super::{check, io, ioctl_mut, ioctl_none};
use crate::errno::Errno;

/// `VFIO_GROUP_GET_STATUS`.
pub const VFIO_GROUP_GET_STATUS: c_ulong = io(103);
/// `VFIO_GROUP_SET_CONTAINER`.
pub const VFIO_GROUP_SET_CONTAINER: c_ulong = io(104);
/// `VFIO_GROUP_UNSET_CONTAINER`.
pub const VFIO_GROUP_UNSET_CONTAINER: c_ulong = io(105);
/// `VFIO_GROUP_GET_DEVICE_FD`.
pub const VFIO_GROUP_GET_DEVICE_FD: c_ulong = io(106);

/// `VFIO_GROUP_GET_STATUS`: the `VFIO_GROUP_FLAGS_*`.
pub fn get_status(fd: BorrowedFd<'_>) -> Result<u32, Errno> {
    let mut status = b::vfio_group_status {
        argsz: std::mem::size_of::<b::vfio_group_status>() as u32,
        flags: 0,
    };
    // SAFETY: the kernel reads and writes the 8-byte struct.
    unsafe { ioctl_mut(fd, VFIO_GROUP_GET_STATUS, &mut status) }?;
    Ok(status.flags)
}

/// `VFIO_GROUP_SET_CONTAINER`: joins the container (or iommufd) whose fd is `container`.
pub fn set_container(fd: BorrowedFd<'_>, container: RawFd) -> Result<(), Errno> {
    let mut container_fd: i32 = container;
    // SAFETY: the kernel reads one `int` at the pointer.
    unsafe { ioctl_mut(fd, VFIO_GROUP_SET_CONTAINER, &mut container_fd) }.map(drop)
}

/// `VFIO_GROUP_UNSET_CONTAINER`.
pub fn unset_container(fd: BorrowedFd<'_>) -> Result<(), Errno> {
    // SAFETY: the request takes no argument.
    unsafe { ioctl_none(fd, VFIO_GROUP_UNSET_CONTAINER) }.map(drop)
}

/// `VFIO_GROUP_GET_DEVICE_FD`: opens the device named `name` (`0000:00:03.0`, an mdev UUID).
pub fn get_device_fd(fd: BorrowedFd<'_>, name: &CStr) -> Result<File, Errno> {
    // SAFETY: the kernel reads a NUL-terminated string at the pointer (strndup_user), which
    // `CStr` guarantees.
    let ret = check(unsafe {
        vmm_sys_util::ioctl::ioctl_with_ptr(&fd, VFIO_GROUP_GET_DEVICE_FD, name.as_ptr())
    })?;
    // SAFETY: on success the return value is a new file descriptor installed for us and owned
    // by nobody else.
    Ok(unsafe { File::from_raw_fd(ret) })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn request_numbers_match_the_uapi_table() {
        assert_eq!(VFIO_GROUP_GET_STATUS, 0x3b67);
        assert_eq!(VFIO_GROUP_SET_CONTAINER, 0x3b68);
        assert_eq!(VFIO_GROUP_UNSET_CONTAINER, 0x3b69);
        assert_eq!(VFIO_GROUP_GET_DEVICE_FD, 0x3b6a);
    }
}
