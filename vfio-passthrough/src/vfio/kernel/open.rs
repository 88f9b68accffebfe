//! [`KernelDeviceOpener`]: the kernel side of the user-facing device spec. Given a sysfs path
//! (`/sys/bus/pci/devices/0000:00:03.0`, also an mdev's `/sys/bus/mdev/devices/<uuid>`), a bare
//! PCI address (`0000:00:03.0`) or a cdev node (`/dev/vfio/devices/vfio0`), it opens the device
//! through its VFIO cdev when `/dev/iommu` and a cdev exist, else through its IOMMU group in a
//! type1 container that all group-opened devices share.
//!
//! These are not seam calls but a user's request, so failures are [`KernelOpenError`]s that
//! name the path the user gave.

use std::collections::BTreeMap;
use std::fs;
use std::io;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use thiserror::Error;

use super::cdev::CdevDevice;
use super::group::{
    GroupDevice, VFIO_GROUP_FLAGS_CONTAINER_SET, VFIO_GROUP_FLAGS_VIABLE, VfioGroup,
};
use crate::errno::Errno;
use crate::host::type1::{KernelType1Container, Type1Container, VFIO_TYPE1V2_IOMMU};
use crate::vfio::VfioDevice;

/// Why a device could not be opened.
#[derive(Debug, Error)]
pub enum KernelOpenError {
    /// The path does not exist.
    #[error("{path}: no such device")]
    Missing {
        /// The path as given.
        path: PathBuf,
    },
    /// The path is neither a sysfs device, a PCI address nor a VFIO cdev node.
    #[error(
        "{path}: not a device path (expected /sys/bus/pci/devices/<bdf>, a PCI address such as \
         0000:00:03.0, or /dev/vfio/devices/vfioN)"
    )]
    NotADevice {
        /// The path as given.
        path: PathBuf,
    },
    /// A PCI device bound to another driver than vfio-pci (or to none).
    #[error("{path}: bound to {driver}, not vfio-pci")]
    NotBoundToVfio {
        /// The path as given.
        path: PathBuf,
        /// Its driver, or `no driver`.
        driver: String,
    },
    /// A VFIO cdev was named but the host has no `/dev/iommu` to bind it to.
    #[error("{path}: a VFIO cdev needs iommufd, but {iommufd} does not exist")]
    NoIommufd {
        /// The path as given.
        path: PathBuf,
        /// Where iommufd was looked for.
        iommufd: PathBuf,
    },
    /// The device has neither a VFIO cdev nor an IOMMU group with a VFIO node.
    #[error("{path}: neither a VFIO cdev nor an IOMMU group with a node in /dev/vfio")]
    NoRoute {
        /// The path as given.
        path: PathBuf,
    },
    /// Another device of the group is bound to a non-VFIO driver.
    #[error("{path}: IOMMU group {group} is not viable (bind all its devices to vfio-pci)")]
    GroupNotViable {
        /// The path as given.
        path: PathBuf,
        /// The group.
        group: u32,
    },
    /// Reading sysfs failed.
    #[error("{path}: reading {attr}: {source}")]
    Sysfs {
        /// The path as given.
        path: PathBuf,
        /// The attribute read.
        attr: PathBuf,
        /// The error.
        source: io::Error,
    },
    /// A kernel call failed.
    #[error("{path}: {what}: {errno}")]
    Kernel {
        /// The path as given.
        path: PathBuf,
        /// What was tried (`opening /dev/vfio/5`, `VFIO_GROUP_SET_CONTAINER`).
        what: String,
        /// The kernel's answer.
        errno: Errno,
    },
}

/// How a device will be opened.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DeviceRoute {
    /// Through its VFIO cdev node.
    Cdev {
        /// The node (`/dev/vfio/devices/vfioN`, under the opener's root).
        node: PathBuf,
    },
    /// Through its IOMMU group.
    Group {
        /// The group number.
        group: u32,
        /// The device's name in the group (PCI address or mdev UUID).
        name: String,
    },
}

/// A device opened by [`KernelDeviceOpener::open`].
#[derive(Debug)]
pub enum KernelDevice {
    /// A cdev device, not yet bound: bind it to the iommufd that owns its DMA and attach it.
    Cdev(CdevDevice),
    /// A group device; its DMA goes through [`KernelDeviceOpener::container`].
    Group(GroupDevice),
}

impl KernelDevice {
    /// The device behind the seam.
    pub fn as_vfio(&self) -> &dyn VfioDevice {
        match self {
            KernelDevice::Cdev(d) => d,
            KernelDevice::Group(d) => d,
        }
    }
}

/// Opens devices named by path; keeps the groups it opened and the one type1 container they
/// share.
#[derive(Debug)]
pub struct KernelDeviceOpener {
    root: PathBuf,
    prefer_group: bool,
    container: Option<Arc<KernelType1Container>>,
    iommu_set: bool,
    groups: BTreeMap<u32, Arc<VfioGroup>>,
}

impl Default for KernelDeviceOpener {
    fn default() -> Self {
        Self::new()
    }
}

impl KernelDeviceOpener {
    /// An opener for this machine.
    pub fn new() -> Self {
        Self::with_root("/")
    }

    /// An opener that reads `/sys` and `/dev` under `root` (a fake tree in tests).
    pub fn with_root(root: impl Into<PathBuf>) -> Self {
        Self {
            root: root.into(),
            prefer_group: false,
            container: None,
            iommu_set: false,
            groups: BTreeMap::new(),
        }
    }

    /// Opens devices named by a sysfs path through their IOMMU group and the type1 container
    /// even where a VFIO cdev and `/dev/iommu` exist (the user asked for the legacy backend).
    /// A cdev path cannot be opened that way and stays an error.
    pub fn prefer_group(mut self, prefer: bool) -> Self {
        self.prefer_group = prefer;
        self
    }

    /// The container group-opened devices are in, once one was opened.
    pub fn container(&self) -> Option<&Arc<KernelType1Container>> {
        self.container.as_ref()
    }

    fn under_root(&self, absolute: &Path) -> PathBuf {
        self.root
            .join(absolute.strip_prefix("/").unwrap_or(absolute))
    }

    /// Works out how `path` would be opened, from sysfs and `/dev` alone.
    pub fn locate(&self, path: &Path) -> Result<DeviceRoute, KernelOpenError> {
        let given = || path.to_owned();
        let text = path.to_string_lossy();
        let absolute = if text.parse::<devices::pci::PciBdf>().is_ok() {
            PathBuf::from("/sys/bus/pci/devices").join(path)
        } else if path.is_absolute() {
            path.to_owned()
        } else {
            return Err(KernelOpenError::NotADevice { path: given() });
        };
        let real = self.under_root(&absolute);
        if fs::symlink_metadata(&real).is_err() {
            return Err(KernelOpenError::Missing { path: given() });
        }
        let iommufd = self.under_root(Path::new("/dev/iommu"));
        if absolute.starts_with("/dev/vfio/devices") {
            if !iommufd.exists() {
                return Err(KernelOpenError::NoIommufd {
                    path: given(),
                    iommufd,
                });
            }
            return Ok(DeviceRoute::Cdev { node: real });
        }
        if !absolute.starts_with("/sys") {
            return Err(KernelOpenError::NotADevice { path: given() });
        }
        let name = real
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .ok_or_else(|| KernelOpenError::NotADevice { path: given() })?;
        if name.parse::<devices::pci::PciBdf>().is_ok() {
            let driver = link_name(&real.join("driver"));
            if driver.as_deref() != Some("vfio-pci") {
                return Err(KernelOpenError::NotBoundToVfio {
                    path: given(),
                    driver: driver.unwrap_or_else(|| "no driver".to_owned()),
                });
            }
        }
        if iommufd.exists() && !self.prefer_group {
            if let Some(node) = self.cdev_node(&real, path)? {
                return Ok(DeviceRoute::Cdev { node });
            }
        }
        if let Some(group) = link_name(&real.join("iommu_group")).and_then(|g| g.parse().ok()) {
            if self.under_root(&group_node(group)).exists() {
                return Ok(DeviceRoute::Group { group, name });
            }
        }
        Err(KernelOpenError::NoRoute { path: given() })
    }

    /// The cdev node named by `<device>/vfio-dev/vfioN`, if it exists in `/dev`.
    fn cdev_node(&self, real: &Path, given: &Path) -> Result<Option<PathBuf>, KernelOpenError> {
        let dir = real.join("vfio-dev");
        let entries = match fs::read_dir(&dir) {
            Ok(entries) => entries,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
            Err(source) => {
                return Err(KernelOpenError::Sysfs {
                    path: given.to_owned(),
                    attr: dir,
                    source,
                });
            }
        };
        for entry in entries.flatten() {
            let name = entry.file_name().to_string_lossy().into_owned();
            if name.starts_with("vfio") {
                let node = self.under_root(&Path::new("/dev/vfio/devices").join(&name));
                if node.exists() {
                    return Ok(Some(node));
                }
            }
        }
        Ok(None)
    }

    /// Opens the device at `path` (see [`locate`](Self::locate) for the choice of route).
    pub fn open(&mut self, path: &Path) -> Result<KernelDevice, KernelOpenError> {
        let kernel = |what: String| {
            let path = path.to_owned();
            move |errno| KernelOpenError::Kernel { path, what, errno }
        };
        match self.locate(path)? {
            DeviceRoute::Cdev { node } => CdevDevice::open(&node)
                .map(KernelDevice::Cdev)
                .map_err(kernel(format!("opening {}", node.display()))),
            DeviceRoute::Group { group, name } => {
                let group = self.group(path, group)?;
                group
                    .device(&name)
                    .map(KernelDevice::Group)
                    .map_err(kernel(format!("VFIO_GROUP_GET_DEVICE_FD {name}")))
            }
        }
    }

    /// Group `id`, opened and placed in the shared container on first use.
    fn group(&mut self, path: &Path, id: u32) -> Result<Arc<VfioGroup>, KernelOpenError> {
        if let Some(group) = self.groups.get(&id) {
            return Ok(Arc::clone(group));
        }
        let kernel = |what: String| {
            let path = path.to_owned();
            move |errno| KernelOpenError::Kernel { path, what, errno }
        };
        let node = self.under_root(&group_node(id));
        let group = Arc::new(
            VfioGroup::open_path(&node, id)
                .map_err(kernel(format!("opening {}", node.display())))?,
        );
        let status = group
            .status()
            .map_err(kernel("VFIO_GROUP_GET_STATUS".into()))?;
        if status & VFIO_GROUP_FLAGS_VIABLE == 0 {
            return Err(KernelOpenError::GroupNotViable {
                path: path.to_owned(),
                group: id,
            });
        }
        if status & VFIO_GROUP_FLAGS_CONTAINER_SET == 0 {
            let container = self.open_container(path)?;
            group
                .set_container(container.as_ref())
                .map_err(kernel("VFIO_GROUP_SET_CONTAINER".into()))?;
            if !self.iommu_set {
                container
                    .set_iommu(VFIO_TYPE1V2_IOMMU)
                    .map_err(kernel("VFIO_SET_IOMMU(TYPE1v2)".into()))?;
                self.iommu_set = true;
            }
        }
        self.groups.insert(id, Arc::clone(&group));
        Ok(group)
    }

    /// The shared container, opened and checked (API version 0, type1v2) on first use.
    fn open_container(
        &mut self,
        path: &Path,
    ) -> Result<Arc<KernelType1Container>, KernelOpenError> {
        if let Some(c) = &self.container {
            return Ok(Arc::clone(c));
        }
        let kernel = |what: String| {
            let path = path.to_owned();
            move |errno| KernelOpenError::Kernel { path, what, errno }
        };
        let node = self.under_root(Path::new("/dev/vfio/vfio"));
        let container = KernelType1Container::open_path(&node)
            .map_err(kernel(format!("opening {}", node.display())))?;
        let version = container
            .get_api_version()
            .map_err(kernel("VFIO_GET_API_VERSION".into()))?;
        if version != 0 {
            return Err(kernel(format!("VFIO API version {version}, expected 0"))(
                Errno::EINVAL,
            ));
        }
        if container
            .check_extension(VFIO_TYPE1V2_IOMMU)
            .map_err(kernel("VFIO_CHECK_EXTENSION(TYPE1v2)".into()))?
            != 1
        {
            return Err(kernel("the container lacks type1v2".into())(Errno::ENODEV));
        }
        let container = Arc::new(container);
        self.container = Some(Arc::clone(&container));
        Ok(container)
    }
}

fn group_node(group: u32) -> PathBuf {
    PathBuf::from(format!("/dev/vfio/{group}"))
}

/// The last component of a symlink's target (`driver` -> `vfio-pci`, `iommu_group` -> `5`).
fn link_name(link: &Path) -> Option<String> {
    fs::read_link(link)
        .ok()?
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::symlink;
    use std::sync::atomic::{AtomicUsize, Ordering};

    /// A fake `/sys` + `/dev` tree, removed on drop.
    struct FakeRoot(PathBuf);

    impl FakeRoot {
        fn new() -> Self {
            static N: AtomicUsize = AtomicUsize::new(0);
            let dir = std::env::temp_dir().join(format!(
                "vfio-open-test-{}-{}",
                std::process::id(),
                N.fetch_add(1, Ordering::Relaxed)
            ));
            fs::create_dir_all(&dir).unwrap();
            FakeRoot(dir)
        }

        fn path(&self, absolute: &str) -> PathBuf {
            self.0.join(absolute.trim_start_matches('/'))
        }

        fn file(&self, absolute: &str) {
            let p = self.path(absolute);
            fs::create_dir_all(p.parent().unwrap()).unwrap();
            fs::write(p, b"").unwrap();
        }

        fn dir(&self, absolute: &str) {
            fs::create_dir_all(self.path(absolute)).unwrap();
        }

        fn link(&self, absolute: &str, target: &str) {
            let p = self.path(absolute);
            fs::create_dir_all(p.parent().unwrap()).unwrap();
            symlink(target, p).unwrap();
        }

        /// A PCI function `bdf` bound to `driver`, in IOMMU group `group`.
        fn pci(&self, bdf: &str, driver: Option<&str>, group: u32) {
            let dev = format!("/sys/bus/pci/devices/{bdf}");
            self.dir(&dev);
            if let Some(driver) = driver {
                self.link(
                    &format!("{dev}/driver"),
                    &format!("../../../bus/pci/drivers/{driver}"),
                );
            }
            self.link(
                &format!("{dev}/iommu_group"),
                &format!("../../../kernel/iommu_groups/{group}"),
            );
        }

        fn opener(&self) -> KernelDeviceOpener {
            KernelDeviceOpener::with_root(&self.0)
        }
    }

    impl Drop for FakeRoot {
        fn drop(&mut self) {
            let _ = fs::remove_dir_all(&self.0);
        }
    }

    #[test]
    fn a_vfio_pci_device_goes_through_its_cdev_when_iommufd_exists() {
        let root = FakeRoot::new();
        root.pci("0000:00:03.0", Some("vfio-pci"), 5);
        root.dir("/sys/bus/pci/devices/0000:00:03.0/vfio-dev/vfio0");
        root.file("/dev/vfio/devices/vfio0");
        root.file("/dev/vfio/5");
        root.file("/dev/iommu");
        let route = root
            .opener()
            .locate(Path::new("/sys/bus/pci/devices/0000:00:03.0"))
            .unwrap();
        assert_eq!(
            route,
            DeviceRoute::Cdev {
                node: root.path("/dev/vfio/devices/vfio0")
            }
        );
        // A bare PCI address names the same device.
        assert_eq!(
            root.opener().locate(Path::new("0000:00:03.0")).unwrap(),
            route
        );
    }

    #[test]
    fn preferring_the_group_skips_the_cdev_even_with_iommufd() {
        let root = FakeRoot::new();
        root.pci("0000:00:03.0", Some("vfio-pci"), 5);
        root.dir("/sys/bus/pci/devices/0000:00:03.0/vfio-dev/vfio0");
        root.file("/dev/vfio/devices/vfio0");
        root.file("/dev/vfio/5");
        root.file("/dev/iommu");
        let opener = root.opener().prefer_group(true);
        assert_eq!(
            opener
                .locate(Path::new("/sys/bus/pci/devices/0000:00:03.0"))
                .unwrap(),
            DeviceRoute::Group {
                group: 5,
                name: "0000:00:03.0".into()
            }
        );
        // A cdev node names the cdev route and nothing else.
        assert_eq!(
            opener.locate(Path::new("/dev/vfio/devices/vfio0")).unwrap(),
            DeviceRoute::Cdev {
                node: root.path("/dev/vfio/devices/vfio0")
            }
        );
    }

    #[test]
    fn without_iommufd_the_device_goes_through_its_group() {
        let root = FakeRoot::new();
        root.pci("0000:00:03.0", Some("vfio-pci"), 5);
        root.dir("/sys/bus/pci/devices/0000:00:03.0/vfio-dev/vfio0");
        root.file("/dev/vfio/devices/vfio0");
        root.file("/dev/vfio/5");
        assert_eq!(
            root.opener()
                .locate(Path::new("/sys/bus/pci/devices/0000:00:03.0"))
                .unwrap(),
            DeviceRoute::Group {
                group: 5,
                name: "0000:00:03.0".into()
            }
        );
    }

    #[test]
    fn a_device_on_another_driver_is_named_with_its_driver() {
        let root = FakeRoot::new();
        root.pci("0000:00:04.0", Some("nvme"), 6);
        root.pci("0000:00:05.0", None, 7);
        let err = root
            .opener()
            .locate(Path::new("/sys/bus/pci/devices/0000:00:04.0"))
            .unwrap_err();
        assert_eq!(
            err.to_string(),
            "/sys/bus/pci/devices/0000:00:04.0: bound to nvme, not vfio-pci"
        );
        let err = root.opener().locate(Path::new("0000:00:05.0")).unwrap_err();
        assert_eq!(
            err.to_string(),
            "0000:00:05.0: bound to no driver, not vfio-pci"
        );
    }

    #[test]
    fn missing_and_meaningless_paths_are_named_in_the_error() {
        let root = FakeRoot::new();
        let err = root
            .opener()
            .locate(Path::new("/sys/bus/pci/devices/0000:00:09.0"))
            .unwrap_err();
        assert!(matches!(err, KernelOpenError::Missing { .. }));
        assert_eq!(
            err.to_string(),
            "/sys/bus/pci/devices/0000:00:09.0: no such device"
        );
        let err = root.opener().locate(Path::new("edu")).unwrap_err();
        assert!(matches!(err, KernelOpenError::NotADevice { .. }), "{err}");
        root.file("/tmp/somefile");
        let err = root
            .opener()
            .locate(Path::new("/tmp/somefile"))
            .unwrap_err();
        assert!(matches!(err, KernelOpenError::NotADevice { .. }), "{err}");
    }

    #[test]
    fn a_cdev_node_without_iommufd_is_refused() {
        let root = FakeRoot::new();
        root.file("/dev/vfio/devices/vfio0");
        let err = root
            .opener()
            .locate(Path::new("/dev/vfio/devices/vfio0"))
            .unwrap_err();
        assert!(matches!(err, KernelOpenError::NoIommufd { .. }), "{err}");
        assert!(err.to_string().starts_with("/dev/vfio/devices/vfio0: "));
        root.file("/dev/iommu");
        assert_eq!(
            root.opener()
                .locate(Path::new("/dev/vfio/devices/vfio0"))
                .unwrap(),
            DeviceRoute::Cdev {
                node: root.path("/dev/vfio/devices/vfio0")
            }
        );
    }

    #[test]
    fn an_mdev_is_opened_by_its_uuid_through_its_group_without_iommufd() {
        let root = FakeRoot::new();
        let uuid = "83b8f4f2-509f-382f-3c1e-e6bfe0fa1001";
        let dev = format!("/sys/bus/mdev/devices/{uuid}");
        root.dir(&dev);
        root.link(
            &format!("{dev}/driver"),
            "../../../../bus/mdev/drivers/mtty",
        );
        root.link(
            &format!("{dev}/iommu_group"),
            "../../../../kernel/iommu_groups/9",
        );
        root.file("/dev/vfio/9");
        assert_eq!(
            root.opener().locate(Path::new(&dev)).unwrap(),
            DeviceRoute::Group {
                group: 9,
                name: uuid.into()
            }
        );
    }

    #[test]
    fn a_vfio_device_without_cdev_or_group_node_has_no_route() {
        let root = FakeRoot::new();
        root.pci("0000:00:03.0", Some("vfio-pci"), 5);
        let err = root.opener().locate(Path::new("0000:00:03.0")).unwrap_err();
        assert!(matches!(err, KernelOpenError::NoRoute { .. }), "{err}");
    }

    #[test]
    fn on_this_machine_opening_names_the_missing_path() {
        // This machine has no /dev/vfio: every device path is missing or has no route.
        let mut opener = KernelDeviceOpener::new();
        if Path::new("/dev/vfio").exists() {
            println!("skipped: /dev/vfio exists here; the lab covers real opens");
            return;
        }
        for path in [
            "/dev/vfio/devices/vfio0",
            "/sys/bus/pci/devices/0000:00:03.0",
        ] {
            let err = opener.open(Path::new(path)).unwrap_err();
            assert!(err.to_string().starts_with(path), "{err}");
        }
        assert!(opener.container().is_none());
    }
}
