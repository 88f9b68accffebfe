//! The kernel backends of the VFIO device seam.
//!
//! - [`CdevDevice`]: `/dev/vfio/devices/vfioN`, bound to a
//!   [`KernelIommufd`](crate::host::iommufd::KernelIommufd); also an
//!   [`IommufdDevice`](crate::host::iommufd::IommufdDevice).
//! - [`GroupDevice`]: a device of a [`VfioGroup`] (`/dev/vfio/<group>`) in a type1 container.
//! - [`KernelDeviceOpener`]: picks one of the two for a sysfs or cdev path.
//!
//! Both devices share [`DeviceFile`], the device fd and its region, IRQ, reset, feature and
//! migration calls.

pub mod cdev;
pub mod device_file;
pub mod group;
pub mod open;

pub use cdev::CdevDevice;
pub use device_file::{DeviceFile, HotResetDevice, HotResetInfo, KernelMigrationData};
pub use group::{GroupDevice, VfioGroup};
pub use open::{DeviceRoute, KernelDevice, KernelDeviceOpener, KernelOpenError};
