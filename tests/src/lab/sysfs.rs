//! Finds the lab's devices the way a VMM user would: through sysfs and `/dev`. Other groups use
//! these to locate the device they test (`SysRoot::system().edu()?.vfio_cdev()`).
//!
//! Every path is taken relative to a [`SysRoot`] so the discovery logic can be tested on a fake
//! tree; inside the lab the root is `/`.

use std::fs;
use std::io;
use std::path::{Path, PathBuf};

use thiserror::Error;

/// PCI vendor and device id of QEMU's `edu` device.
pub const EDU_ID: (u16, u16) = (0x1234, 0x11e8);
/// PCI class code (class, subclass, prog-if) of an NVM Express controller.
pub const NVME_CLASS: u32 = 0x01_08_02;
/// The mdev type the lab instantiates in the devices boot.
pub const MTTY_TYPE: &str = "mtty-2";
/// How many `mtty-2` mdevs `lab/initramfs/setup-devices.sh` creates.
pub const MTTY_COUNT: usize = 4;

/// A lab device that is not where the lab promises it.
#[derive(Debug, Error)]
pub enum LabDeviceError {
    /// Listing or reading sysfs failed.
    #[error("cannot read {path}: {source}")]
    Read {
        /// What was read.
        path: PathBuf,
        /// The I/O error.
        source: io::Error,
    },
    /// No device matched.
    #[error("no {what} under {path}")]
    NotFound {
        /// The device looked for.
        what: String,
        /// Where it was looked for.
        path: PathBuf,
    },
    /// A sysfs attribute did not hold what the kernel writes there.
    #[error("unexpected content {content:?} in {path}")]
    Malformed {
        /// The attribute.
        path: PathBuf,
        /// What it held.
        content: String,
    },
}

/// The root of the file system sysfs and `/dev` are read under.
#[derive(Debug, Clone)]
pub struct SysRoot {
    root: PathBuf,
}

/// A PCI function as sysfs shows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PciFunction {
    /// Its address, e.g. `0000:00:03.0`.
    pub bdf: String,
    /// Its sysfs directory.
    pub sysfs: PathBuf,
    /// Vendor id.
    pub vendor: u16,
    /// Device id.
    pub device: u16,
    /// Class code (24 bits).
    pub class: u32,
    root: PathBuf,
}

/// A mediated device as sysfs shows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MdevDevice {
    /// Its UUID (the sysfs name).
    pub uuid: String,
    /// Its sysfs directory.
    pub sysfs: PathBuf,
    /// Its type's name (`mtty-2`).
    pub type_name: String,
    root: PathBuf,
}

impl SysRoot {
    /// The running system's root, `/`.
    pub fn system() -> SysRoot {
        SysRoot::at("/")
    }

    /// A root elsewhere (a fake tree in tests).
    pub fn at(root: impl Into<PathBuf>) -> SysRoot {
        SysRoot { root: root.into() }
    }

    /// The given absolute path (`/sys/...`, `/dev/...`) under this root.
    pub fn path(&self, absolute: &str) -> PathBuf {
        self.root.join(absolute.trim_start_matches('/'))
    }

    /// Every PCI function, sorted by address.
    pub fn pci_functions(&self) -> Result<Vec<PciFunction>, LabDeviceError> {
        let dir = self.path("/sys/bus/pci/devices");
        let mut functions = Vec::new();
        for bdf in list_dir(&dir)? {
            let sysfs = dir.join(&bdf);
            functions.push(PciFunction {
                vendor: read_hex(&sysfs.join("vendor"))?,
                device: read_hex(&sysfs.join("device"))?,
                class: read_hex(&sysfs.join("class"))?,
                bdf,
                sysfs,
                root: self.root.clone(),
            });
        }
        Ok(functions)
    }

    /// The first PCI function matching `what`, or an error naming `description`.
    fn find_pci(
        &self,
        description: &str,
        what: impl Fn(&PciFunction) -> bool,
    ) -> Result<PciFunction, LabDeviceError> {
        self.pci_functions()?
            .into_iter()
            .find(what)
            .ok_or_else(|| LabDeviceError::NotFound {
                what: description.to_owned(),
                path: self.path("/sys/bus/pci/devices"),
            })
    }

    /// QEMU's `edu` device (1234:11e8).
    pub fn edu(&self) -> Result<PciFunction, LabDeviceError> {
        self.find_pci("edu PCI device (1234:11e8)", |f| {
            (f.vendor, f.device) == EDU_ID
        })
    }

    /// The NVMe controller.
    pub fn nvme(&self) -> Result<PciFunction, LabDeviceError> {
        self.find_pci("NVMe PCI device (class 010802)", |f| f.class == NVME_CLASS)
    }

    /// Every mediated device, sorted by UUID.
    pub fn mdev_devices(&self) -> Result<Vec<MdevDevice>, LabDeviceError> {
        let dir = self.path("/sys/bus/mdev/devices");
        let mut devices = Vec::new();
        for uuid in list_dir(&dir)? {
            let sysfs = dir.join(&uuid);
            let type_link = sysfs.join("mdev_type");
            let type_name = link_name(&type_link).ok_or_else(|| LabDeviceError::Malformed {
                path: type_link.clone(),
                content: "(not a link)".into(),
            })?;
            devices.push(MdevDevice {
                uuid,
                sysfs,
                type_name,
                root: self.root.clone(),
            });
        }
        Ok(devices)
    }

    /// The lab's first `mtty` mdev (type `mtty-2`) by UUID.
    pub fn mtty(&self) -> Result<MdevDevice, LabDeviceError> {
        self.mttys()?
            .into_iter()
            .next()
            .ok_or_else(|| LabDeviceError::NotFound {
                what: format!("mdev of type {MTTY_TYPE}"),
                path: self.path("/sys/bus/mdev/devices"),
            })
    }

    /// Every `mtty` mdev of type `mtty-2`, sorted by UUID (the devices boot creates
    /// [`MTTY_COUNT`]: sources and destinations for migration).
    pub fn mttys(&self) -> Result<Vec<MdevDevice>, LabDeviceError> {
        Ok(self
            .mdev_devices()?
            .into_iter()
            .filter(|m| m.type_name == MTTY_TYPE)
            .collect())
    }

    /// The names of the IOMMUs the kernel registered (`dmar0` for intel-iommu,
    /// `iommufd_selftest_iommu` for the selftest), sorted.
    pub fn iommus(&self) -> Result<Vec<String>, LabDeviceError> {
        list_dir(&self.path("/sys/class/iommu"))
    }
}

impl PciFunction {
    /// The name of the bound driver, `None` when unbound.
    pub fn driver(&self) -> Option<String> {
        link_name(&self.sysfs.join("driver"))
    }

    /// The device's VFIO cdev (`/dev/vfio/devices/vfioN`), from its `vfio-dev` sysfs entry;
    /// `None` unless bound to a VFIO driver.
    pub fn vfio_cdev(&self) -> Option<PathBuf> {
        vfio_cdev_of(&self.sysfs, &self.root)
    }

    /// The device's IOMMU group number, `None` when it has none.
    pub fn iommu_group(&self) -> Option<u32> {
        link_name(&self.sysfs.join("iommu_group"))?.parse().ok()
    }
}

impl MdevDevice {
    /// The name of the bound driver, `None` when unbound.
    pub fn driver(&self) -> Option<String> {
        link_name(&self.sysfs.join("driver"))
    }

    /// The mdev's VFIO cdev (`/dev/vfio/devices/vfioN`), `None` unless its driver registered one.
    pub fn vfio_cdev(&self) -> Option<PathBuf> {
        vfio_cdev_of(&self.sysfs, &self.root)
    }
}

fn vfio_cdev_of(sysfs: &Path, root: &Path) -> Option<PathBuf> {
    let name = list_dir(&sysfs.join("vfio-dev"))
        .ok()?
        .into_iter()
        .find(|n| n.starts_with("vfio"))?;
    Some(root.join("dev/vfio/devices").join(name))
}

/// The sorted entry names of a directory.
fn list_dir(dir: &Path) -> Result<Vec<String>, LabDeviceError> {
    let read_err = |source| LabDeviceError::Read {
        path: dir.to_owned(),
        source,
    };
    let mut names = Vec::new();
    for entry in fs::read_dir(dir).map_err(read_err)? {
        names.push(
            entry
                .map_err(read_err)?
                .file_name()
                .to_string_lossy()
                .into_owned(),
        );
    }
    names.sort();
    Ok(names)
}

/// The last component of a symlink's target (sysfs links name drivers, groups and types so).
fn link_name(link: &Path) -> Option<String> {
    let target = fs::read_link(link).ok()?;
    Some(target.file_name()?.to_string_lossy().into_owned())
}

/// Reads a sysfs attribute holding one hexadecimal number (`0x1234`) that fits in `T`.
fn read_hex<T: TryFrom<u64>>(path: &Path) -> Result<T, LabDeviceError> {
    let content = fs::read_to_string(path).map_err(|source| LabDeviceError::Read {
        path: path.to_owned(),
        source,
    })?;
    let text = content.trim();
    u64::from_str_radix(text.trim_start_matches("0x"), 16)
        .ok()
        .and_then(|v| T::try_from(v).ok())
        .ok_or_else(|| LabDeviceError::Malformed {
            path: path.to_owned(),
            content: text.to_owned(),
        })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::symlink;

    /// A throw-away directory holding a fake sysfs tree.
    struct FakeRoot(PathBuf);

    impl FakeRoot {
        fn new(tag: &str) -> FakeRoot {
            let dir = std::env::temp_dir().join(format!("lab-sysfs-{tag}-{}", std::process::id()));
            let _ = fs::remove_dir_all(&dir);
            fs::create_dir_all(&dir).unwrap();
            FakeRoot(dir)
        }

        fn pci(&self, bdf: &str, vendor: &str, device: &str, class: &str) -> PathBuf {
            let real = self.0.join("sys/devices/pci0000:00").join(bdf);
            fs::create_dir_all(&real).unwrap();
            fs::write(real.join("vendor"), format!("{vendor}\n")).unwrap();
            fs::write(real.join("device"), format!("{device}\n")).unwrap();
            fs::write(real.join("class"), format!("{class}\n")).unwrap();
            let bus = self.0.join("sys/bus/pci/devices");
            fs::create_dir_all(&bus).unwrap();
            symlink(&real, bus.join(bdf)).unwrap();
            real
        }
    }

    impl Drop for FakeRoot {
        fn drop(&mut self) {
            let _ = fs::remove_dir_all(&self.0);
        }
    }

    #[test]
    fn finds_edu_and_nvme_with_their_driver_cdev_and_group() {
        let fake = FakeRoot::new("pci");
        fake.pci("0000:00:01.0", "0x8086", "0x29c0", "0x060000");
        let edu = fake.pci("0000:00:03.0", "0x1234", "0x11e8", "0x00ff00");
        fake.pci("0000:00:04.0", "0x1b36", "0x0010", "0x010802");
        fs::create_dir_all(edu.join("vfio-dev/vfio0")).unwrap();
        symlink("../../../bus/pci/drivers/vfio-pci", edu.join("driver")).unwrap();
        symlink("../../../kernel/iommu_groups/3", edu.join("iommu_group")).unwrap();

        let root = SysRoot::at(&fake.0);
        let found = root.edu().unwrap();
        assert_eq!(found.bdf, "0000:00:03.0");
        assert_eq!(found.driver().as_deref(), Some("vfio-pci"));
        assert_eq!(
            found.vfio_cdev(),
            Some(fake.0.join("dev/vfio/devices/vfio0"))
        );
        assert_eq!(found.iommu_group(), Some(3));

        let nvme = root.nvme().unwrap();
        assert_eq!(nvme.bdf, "0000:00:04.0");
        assert_eq!(nvme.driver(), None);
        assert_eq!(nvme.vfio_cdev(), None);
    }

    #[test]
    fn a_missing_device_is_an_error_naming_it() {
        let fake = FakeRoot::new("missing");
        fake.pci("0000:00:01.0", "0x8086", "0x29c0", "0x060000");
        let err = SysRoot::at(&fake.0).edu().unwrap_err();
        assert!(
            err.to_string()
                .starts_with("no edu PCI device (1234:11e8) under "),
            "{err}"
        );
        let err = SysRoot::at(&fake.0).mtty().unwrap_err();
        assert!(err.to_string().starts_with("cannot read "), "{err}");
    }

    #[test]
    fn a_garbled_attribute_is_reported_with_its_path() {
        let fake = FakeRoot::new("garbled");
        fake.pci("0000:00:01.0", "vendor?", "0x29c0", "0x060000");
        let err = SysRoot::at(&fake.0).pci_functions().unwrap_err();
        assert!(
            err.to_string()
                .starts_with("unexpected content \"vendor?\" in "),
            "{err}"
        );
    }

    #[test]
    fn finds_the_mtty_mdev_by_its_type() {
        let fake = FakeRoot::new("mdev");
        let types = fake
            .0
            .join("sys/devices/virtual/mtty/mtty/mdev_supported_types");
        let uuid = "83b8f4f2-509f-382f-3c1e-e6bfe0fa1001";
        let dev = fake.0.join("sys/devices/virtual/mtty/mtty").join(uuid);
        fs::create_dir_all(types.join("mtty-2")).unwrap();
        fs::create_dir_all(dev.join("vfio-dev/vfio2")).unwrap();
        symlink(types.join("mtty-2"), dev.join("mdev_type")).unwrap();
        symlink("../../../../bus/mdev/drivers/mtty", dev.join("driver")).unwrap();
        let bus = fake.0.join("sys/bus/mdev/devices");
        fs::create_dir_all(&bus).unwrap();
        symlink(&dev, bus.join(uuid)).unwrap();

        let mtty = SysRoot::at(&fake.0).mtty().unwrap();
        assert_eq!(mtty.uuid, uuid);
        assert_eq!(mtty.driver().as_deref(), Some("mtty"));
        assert_eq!(
            mtty.vfio_cdev(),
            Some(fake.0.join("dev/vfio/devices/vfio2"))
        );
    }
}
