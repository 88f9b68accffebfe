//! [`HostBackends`]: the host IOMMU contexts of one VM and how a device gets into one.
//!
//! One context and one [`DmaSpace`] per backend kind, created on first use and shared by every
//! device of that kind:
//!
//! - **emulated iommufd** and **emulated container**: the VM's [`EmulatedHost`] (one, as the
//!   kernel is one) and its iommufd or type1 container, for `emulated:` devices: the container
//!   with `--host-iommu container`, else the iommufd. An emulated device goes into the container
//!   through an emulated IOMMU group of its own, as a host device would through its group;
//! - **iommufd**: `/dev/iommu`, for host devices opened through their VFIO cdev;
//! - **container**: the type1 container of [`KernelDeviceOpener`], for host devices opened
//!   through their IOMMU group.
//!
//! A device on an iommufd is bound to the context and attached to the IOAS, and the IOMMU's
//! PASID support for it is read with `IOMMU_GET_HW_INFO`; a device in a container shares the
//! container's mappings and gets no PASID.

use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use vfio_passthrough::emulated_device::{EmulatedDeviceSpec, EmulatedSpecError};
use vfio_passthrough::errno::Errno;
use vfio_passthrough::host::emulated::type1::{EmulatedGroup, GroupIommu};
use vfio_passthrough::host::emulated::{EmulatedHost, HostConfig};
use vfio_passthrough::host::iommufd::uapi::HwInfo;
use vfio_passthrough::host::iommufd::{Iommufd, KernelIommufd};
use vfio_passthrough::host::type1::{Type1Container, VFIO_TYPE1V2_IOMMU};
use vfio_passthrough::pci::PasidSupport;
use vfio_passthrough::vfio::VfioDevice;
use vfio_passthrough::vfio::kernel::{
    DeviceRoute, KernelDevice, KernelDeviceOpener, KernelOpenError,
};

use super::dma_space::{DmaSpace, DmaSpaceError, dma_hint};
use super::spec::{DeviceSource, HostIommu};
use crate::memory::GuestRam;

/// Where Linux puts the iommufd device.
const IOMMUFD_NODE: &str = "/dev/iommu";
/// Where Linux puts the VFIO container device.
const CONTAINER_NODE: &str = "/dev/vfio/vfio";
/// Room for any `IOMMU_GET_HW_INFO` driver data (VT-d's is 24 bytes); only the common fields
/// are used.
const HW_INFO_DATA_LEN: usize = 64;

/// The first group number given to emulated devices in the emulated container (far from the
/// small numbers the kernel gives real groups, so logs never mix them up).
const EMULATED_GROUP_BASE: u32 = 1000;

/// The host IOMMU backend a device's DMA goes through.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BackendKind {
    /// The emulated host's iommufd.
    EmulatedIommufd,
    /// The emulated host's type1 container.
    EmulatedContainer,
    /// The kernel's iommufd (`/dev/iommu`).
    Iommufd,
    /// A kernel type1 container (`/dev/vfio/vfio`).
    Container,
}

impl BackendKind {
    /// The name used in messages.
    pub fn name(self) -> &'static str {
        match self {
            BackendKind::EmulatedIommufd => "emulated iommufd",
            BackendKind::EmulatedContainer => "emulated container",
            BackendKind::Iommufd => "iommufd",
            BackendKind::Container => "container",
        }
    }
}

impl fmt::Display for BackendKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// Why a device could not be opened or connected to its host IOMMU.
#[derive(Debug, thiserror::Error)]
pub enum BackendError {
    /// The emulated device could not be built.
    #[error(transparent)]
    Emulated(#[from] EmulatedSpecError),
    /// The host device could not be located or opened.
    #[error(transparent)]
    Open(#[from] KernelOpenError),
    /// No host IOMMU backend is available at all.
    #[error(
        "{}: no host IOMMU backend: neither {IOMMUFD_NODE} nor {CONTAINER_NODE} exists (is the \
         IOMMU enabled and vfio-pci loaded?)",
        path.display()
    )]
    NoHostIommu {
        /// The device as given.
        path: PathBuf,
    },
    /// `--host-iommu iommufd` on a host without it.
    #[error("{}: --host-iommu iommufd, but {IOMMUFD_NODE} does not exist", path.display())]
    NoIommufd {
        /// The device as given.
        path: PathBuf,
    },
    /// `--host-iommu iommufd` for a device without a VFIO cdev.
    #[error(
        "{}: --host-iommu iommufd, but the device has no VFIO cdev (a kernel with \
         CONFIG_VFIO_DEVICE_CDEV is needed)",
        path.display()
    )]
    NoCdev {
        /// The device as given.
        path: PathBuf,
    },
    /// `--host-iommu container` for a device named by its VFIO cdev node, which only iommufd
    /// can use.
    #[error(
        "{}: --host-iommu container, but a VFIO cdev node can only be used through iommufd; \
         name the device by its sysfs path to open it through its IOMMU group",
        path.display()
    )]
    ContainerUnavailable {
        /// The device as given.
        path: PathBuf,
    },
    /// `--host-iommu container` on a host without a container device.
    #[error("{}: --host-iommu container, but {CONTAINER_NODE} does not exist", path.display())]
    NoContainer {
        /// The device as given.
        path: PathBuf,
    },
    /// `/dev/iommu` could not be opened.
    #[error("failed to open {IOMMUFD_NODE}")]
    OpenIommufd(#[source] Errno),
    /// Guest RAM could not be mapped for the backend.
    #[error(transparent)]
    Dma(#[from] DmaSpaceError),
    /// Putting an emulated device in its group, the group in the emulated container, or
    /// opening the device through it failed.
    #[error("{op} failed for the emulated container{hint}", hint = dma_hint(*source))]
    EmulatedGroup {
        /// What was done.
        op: &'static str,
        /// The emulated host's error.
        #[source]
        source: Errno,
    },
    /// Binding or attaching the device failed.
    #[error("{op} on the {backend} failed{hint}", hint = dma_hint(*source))]
    Attach {
        /// "VFIO_DEVICE_BIND_IOMMUFD" or "VFIO_DEVICE_ATTACH_IOMMUFD_PT".
        op: &'static str,
        /// The backend.
        backend: BackendKind,
        /// The host error.
        #[source]
        source: Errno,
    },
}

/// A device ready to be presented to the guest: its DMA goes through its backend's
/// [`DmaSpace`].
#[derive(Debug)]
pub struct OpenedDevice {
    /// The device.
    pub vfio: Arc<dyn VfioDevice>,
    /// The backend its DMA goes through.
    pub backend: BackendKind,
    /// The host IOMMU's PASID support for it.
    pub pasid: Option<PasidSupport>,
}

/// An iommufd context with guest RAM mapped in its IOAS.
#[derive(Debug)]
struct IommufdBackend {
    ctx: Arc<dyn Iommufd>,
    ioas_id: u32,
    space: DmaSpace,
}

impl IommufdBackend {
    fn new(
        name: &'static str,
        ctx: Arc<dyn Iommufd>,
        ram: Arc<GuestRam>,
    ) -> Result<Self, BackendError> {
        let (space, ioas_id) = DmaSpace::ioas(name, ctx.clone(), ram)?;
        Ok(Self {
            ctx,
            ioas_id,
            space,
        })
    }
}

/// The emulated host's type1 container with guest RAM mapped, and the groups in it.
#[derive(Debug)]
struct EmulatedContainerBackend {
    container: Arc<dyn Type1Container>,
    space: DmaSpace,
    groups: Vec<Arc<EmulatedGroup>>,
}

/// The host IOMMU contexts of one VM.
#[derive(Debug)]
pub struct HostBackends {
    ram: Arc<GuestRam>,
    choice: HostIommu,
    emulated_host: Option<Arc<EmulatedHost>>,
    emulated: Option<IommufdBackend>,
    emulated_container: Option<EmulatedContainerBackend>,
    iommufd: Option<IommufdBackend>,
    opener: KernelDeviceOpener,
    container: Option<DmaSpace>,
}

impl HostBackends {
    /// No context yet; devices will use `choice`.
    pub fn new(ram: Arc<GuestRam>, choice: HostIommu) -> Self {
        Self {
            ram,
            choice,
            emulated_host: None,
            emulated: None,
            emulated_container: None,
            iommufd: None,
            opener: KernelDeviceOpener::new().prefer_group(choice == HostIommu::Container),
            container: None,
        }
    }

    /// The DMA spaces created so far (emulated iommufd, emulated container, iommufd,
    /// container).
    pub fn dma_spaces(&self) -> Vec<&DmaSpace> {
        let emulated = self.emulated.as_ref().map(|b| &b.space);
        let emulated_container = self.emulated_container.as_ref().map(|b| &b.space);
        let iommufd = self.iommufd.as_ref().map(|b| &b.space);
        [
            emulated,
            emulated_container,
            iommufd,
            self.container.as_ref(),
        ]
        .into_iter()
        .flatten()
        .collect()
    }

    /// The VM's emulated host, created on first use with this process's limits.
    fn emulated_host(&mut self) -> Arc<EmulatedHost> {
        self.emulated_host
            .get_or_insert_with(|| EmulatedHost::new(HostConfig::from_process()))
            .clone()
    }

    /// Opens the device `source` names and connects its DMA to guest RAM.
    pub fn open(&mut self, source: &DeviceSource) -> Result<OpenedDevice, BackendError> {
        match source {
            DeviceSource::Emulated(spec) => self.open_emulated(spec),
            DeviceSource::Host(path) => self.open_host(path),
        }
    }

    fn open_emulated(&mut self, spec: &EmulatedDeviceSpec) -> Result<OpenedDevice, BackendError> {
        if self.choice == HostIommu::Container {
            return self.open_emulated_in_container(spec);
        }
        let device: Arc<dyn VfioDevice> = Arc::new(spec.build()?);
        let host = self.emulated_host();
        let backend = match &mut self.emulated {
            Some(b) => b,
            None => {
                let ctx: Arc<dyn Iommufd> = Arc::new(host.open_iommufd());
                self.emulated
                    .insert(IommufdBackend::new("emulated", ctx, self.ram.clone())?)
            }
        };
        let pasid = bind_and_attach(&device, backend, BackendKind::EmulatedIommufd)?;
        Ok(OpenedDevice {
            vfio: device,
            backend: BackendKind::EmulatedIommufd,
            pasid,
        })
    }

    /// The legacy path on the emulated host: the device in an IOMMU group of its own, the group
    /// in the VM's emulated type1 container (type1v2, RAM mapped once the first group is in),
    /// the device opened through its group.
    fn open_emulated_in_container(
        &mut self,
        spec: &EmulatedDeviceSpec,
    ) -> Result<OpenedDevice, BackendError> {
        let error = |op| move |source| BackendError::EmulatedGroup { op, source };
        let device = Arc::new(spec.build()?);
        let host = self.emulated_host();
        let taken = self
            .emulated_container
            .as_ref()
            .map_or(0, |b| b.groups.len());
        let group = EmulatedGroup::new(EMULATED_GROUP_BASE + taken as u32, GroupIommu::default());
        // The group's only device; the name is what VFIO_GROUP_GET_DEVICE_FD looks up.
        let name = "0000:00:00.0";
        group
            .add_device(name, device)
            .map_err(error("placing the device in its group"))?;
        let backend = match &mut self.emulated_container {
            Some(b) => {
                group
                    .set_container(b.container.as_ref())
                    .map_err(error("VFIO_GROUP_SET_CONTAINER"))?;
                b
            }
            None => {
                let container: Arc<dyn Type1Container> = Arc::new(host.open_type1());
                group
                    .set_container(container.as_ref())
                    .map_err(error("VFIO_GROUP_SET_CONTAINER"))?;
                container
                    .set_iommu(VFIO_TYPE1V2_IOMMU)
                    .map_err(error("VFIO_SET_IOMMU(TYPE1v2)"))?;
                let space =
                    DmaSpace::container("emulated container", container.clone(), self.ram.clone())?;
                self.emulated_container.insert(EmulatedContainerBackend {
                    container,
                    space,
                    groups: Vec::new(),
                })
            }
        };
        let vfio: Arc<dyn VfioDevice> = Arc::from(
            group
                .device(name)
                .map_err(error("VFIO_GROUP_GET_DEVICE_FD"))?,
        );
        backend.groups.push(group);
        Ok(OpenedDevice {
            vfio,
            backend: BackendKind::EmulatedContainer,
            pasid: None,
        })
    }

    fn open_host(&mut self, path: &Path) -> Result<OpenedDevice, BackendError> {
        let kind = check_host_device(&self.opener, path, self.choice)?;
        let device = self.opener.open(path)?;
        match (kind, device) {
            (BackendKind::Iommufd, KernelDevice::Cdev(cdev)) => {
                let device: Arc<dyn VfioDevice> = Arc::new(cdev);
                let backend = match &mut self.iommufd {
                    Some(b) => b,
                    None => {
                        let ctx: Arc<dyn Iommufd> = Arc::new(
                            KernelIommufd::open_path(Path::new(IOMMUFD_NODE))
                                .map_err(BackendError::OpenIommufd)?,
                        );
                        self.iommufd
                            .insert(IommufdBackend::new("iommufd", ctx, self.ram.clone())?)
                    }
                };
                let pasid = bind_and_attach(&device, backend, BackendKind::Iommufd)?;
                Ok(OpenedDevice {
                    vfio: device,
                    backend: BackendKind::Iommufd,
                    pasid,
                })
            }
            (BackendKind::Container, KernelDevice::Group(group_device)) => {
                if self.container.is_none() {
                    // The opener put the device's group in its container and set its IOMMU
                    // type; the container's mappings are shared by every group in it.
                    let container = self.opener.container().cloned().ok_or_else(|| {
                        BackendError::NoContainer {
                            path: path.to_owned(),
                        }
                    })?;
                    self.container = Some(DmaSpace::container(
                        "container",
                        container,
                        self.ram.clone(),
                    )?);
                }
                Ok(OpenedDevice {
                    vfio: Arc::new(group_device),
                    backend: BackendKind::Container,
                    pasid: None,
                })
            }
            // The route was checked above; the opener takes the same one.
            (_, KernelDevice::Cdev(_)) => Err(BackendError::ContainerUnavailable {
                path: path.to_owned(),
            }),
            (_, KernelDevice::Group(_)) => Err(BackendError::NoCdev {
                path: path.to_owned(),
            }),
        }
    }
}

/// Binds `device` to the backend's iommufd, attaches it to the IOAS, and reads the IOMMU's
/// PASID support for it.
fn bind_and_attach(
    device: &Arc<dyn VfioDevice>,
    backend: &IommufdBackend,
    kind: BackendKind,
) -> Result<Option<PasidSupport>, BackendError> {
    let error = |op| {
        move |source| BackendError::Attach {
            op,
            backend: kind,
            source,
        }
    };
    let dev_id = device
        .bind_iommufd(&backend.ctx)
        .map_err(error("VFIO_DEVICE_BIND_IOMMUFD"))?;
    device
        .attach_pt(backend.ioas_id, None)
        .map_err(error("VFIO_DEVICE_ATTACH_IOMMUFD_PT"))?;
    let mut info = HwInfo {
        dev_id,
        ..HwInfo::default()
    };
    let mut data = [0u8; HW_INFO_DATA_LEN];
    match backend.ctx.get_hw_info(&mut info, &mut data) {
        Ok(()) => Ok(PasidSupport::from_hw_info(&info)),
        Err(e) => {
            // Kernels before 6.6 have no IOMMU_GET_HW_INFO: no PASID for the guest then.
            log::info!("{kind} iommufd: IOMMU_GET_HW_INFO failed ({e}): no PASID for the guest");
            Ok(None)
        }
    }
}

/// Checks, without opening anything, that the host device at `path` exists, is bound to
/// vfio-pci, and can go through a host IOMMU backend as `choice` asks; returns that backend.
pub fn check_host_device(
    opener: &KernelDeviceOpener,
    path: &Path,
    choice: HostIommu,
) -> Result<BackendKind, BackendError> {
    let iommufd = Path::new(IOMMUFD_NODE).exists();
    let container = Path::new(CONTAINER_NODE).exists();
    let given = || path.to_owned();
    let route = match opener.locate(path) {
        Ok(route) => route,
        Err(KernelOpenError::NoRoute { .. }) if !iommufd && !container => {
            return Err(BackendError::NoHostIommu { path: given() });
        }
        Err(KernelOpenError::NoIommufd { .. }) if choice != HostIommu::Container => {
            return Err(BackendError::NoIommufd { path: given() });
        }
        Err(e) => return Err(e.into()),
    };
    match (choice, route) {
        (HostIommu::Iommufd, _) if !iommufd => Err(BackendError::NoIommufd { path: given() }),
        (HostIommu::Iommufd, DeviceRoute::Group { .. }) => {
            Err(BackendError::NoCdev { path: given() })
        }
        (HostIommu::Container, DeviceRoute::Cdev { .. }) => {
            Err(BackendError::ContainerUnavailable { path: given() })
        }
        (_, DeviceRoute::Group { .. }) if !container => {
            Err(BackendError::NoContainer { path: given() })
        }
        (_, DeviceRoute::Cdev { .. }) => Ok(BackendKind::Iommufd),
        (_, DeviceRoute::Group { .. }) => Ok(BackendKind::Container),
    }
}

#[cfg(test)]
mod tests {
    use vfio_passthrough::host::emulated::{EmulatedHost, HostConfig};

    use super::*;

    #[test]
    fn an_attach_over_the_memlock_limit_says_how_to_raise_it() {
        let ram = Arc::new(GuestRam::new(4 << 20).unwrap());
        // An unprivileged process may pin 1 MiB; attaching the device pins all 4 MiB of RAM.
        let host = EmulatedHost::new(HostConfig::unprivileged(1 << 20));
        let ctx: Arc<dyn Iommufd> = Arc::new(host.open_iommufd());
        let backend = IommufdBackend::new("emulated", ctx, ram).unwrap();
        let spec = EmulatedDeviceSpec::parse("emulated:dma-engine").unwrap();
        let device: Arc<dyn VfioDevice> = Arc::new(spec.build().unwrap());
        let err = bind_and_attach(&device, &backend, BackendKind::EmulatedIommufd).unwrap_err();
        assert!(matches!(
            err,
            BackendError::Attach {
                op: "VFIO_DEVICE_ATTACH_IOMMUFD_PT",
                source: Errno::ENOMEM,
                ..
            }
        ));
        assert_eq!(
            err.to_string(),
            "VFIO_DEVICE_ATTACH_IOMMUFD_PT on the emulated iommufd failed (pinned guest RAM \
             counts against RLIMIT_MEMLOCK: raise it with ulimit -l, or run with CAP_IPC_LOCK)"
        );
    }

    #[test]
    fn the_iommus_pasid_width_reaches_the_device_config() {
        let ram = Arc::new(GuestRam::new(4 << 20).unwrap());
        let host = EmulatedHost::new(HostConfig::unprivileged(u64::MAX));
        let ctx: Arc<dyn Iommufd> = Arc::new(host.open_iommufd());
        let backend = IommufdBackend::new("emulated", ctx, ram).unwrap();
        let pasid = |text: &str| {
            let spec = EmulatedDeviceSpec::parse(text).unwrap();
            let device: Arc<dyn VfioDevice> = Arc::new(spec.build().unwrap());
            bind_and_attach(&device, &backend, BackendKind::EmulatedIommufd).unwrap()
        };
        assert_eq!(
            pasid("emulated:dma-engine"),
            Some(PasidSupport {
                max_pasid_log2: 20,
                execute: false,
                privileged: false
            })
        );
    }

    #[test]
    fn a_device_whose_iommu_cannot_reach_guest_ram_is_refused_at_attach() {
        let ram = Arc::new(GuestRam::new(4 << 20).unwrap());
        let host = EmulatedHost::new(HostConfig::unprivileged(u64::MAX));
        let ctx: Arc<dyn Iommufd> = Arc::new(host.open_iommufd());
        let backend = IommufdBackend::new("emulated", ctx, ram).unwrap();
        // The selftest's mock IOMMU translates only from 16 MiB up; RAM starts at 0.
        let spec = EmulatedDeviceSpec::parse("emulated:dma-engine,iommu=mock").unwrap();
        let device: Arc<dyn VfioDevice> = Arc::new(spec.build().unwrap());
        let err = bind_and_attach(&device, &backend, BackendKind::EmulatedIommufd).unwrap_err();
        assert_eq!(
            err.to_string(),
            "VFIO_DEVICE_ATTACH_IOMMUFD_PT on the emulated iommufd failed (guest RAM overlaps \
             IOVAs the device's IOMMU reserves or cannot translate)"
        );
    }

    #[test]
    fn host_devices_are_checked_before_anything_is_opened() {
        let opener = KernelDeviceOpener::new();
        let err = check_host_device(
            &opener,
            Path::new("/sys/bus/pci/devices/0000:7f:1f.7"),
            HostIommu::Auto,
        )
        .unwrap_err();
        assert_eq!(
            err.to_string(),
            "/sys/bus/pci/devices/0000:7f:1f.7: no such device"
        );
        let err = check_host_device(&opener, Path::new("/tmp/not-a-device"), HostIommu::Auto)
            .unwrap_err();
        assert!(matches!(
            err,
            BackendError::Open(
                KernelOpenError::Missing { .. } | KernelOpenError::NotADevice { .. }
            )
        ));
    }
}
