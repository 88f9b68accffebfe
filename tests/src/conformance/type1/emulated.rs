//! The emulated host's type1 container as a conformance backend.

use std::sync::Arc;

use vfio_passthrough::emulated_device::EmulatedDeviceSpec;
use vfio_passthrough::errno::Errno;
use vfio_passthrough::host::emulated::type1::{EmulatedGroup, GroupIommu, Type1Config};
use vfio_passthrough::host::emulated::{EmulatedHost, HostConfig, KernelVersion};
use vfio_passthrough::host::iommufd::Iommufd;
use vfio_passthrough::host::type1::Type1Container;
use vfio_passthrough::vfio::VfioDevice;

use super::backend::{Type1Backend, Type1Facts, Type1Group, Type1Needs, Type1Opened};
use crate::conformance::Skip;

/// The memlock limit of cases that do not ask for one: pins are charged, but nothing the
/// suite maps comes near it.
const DEFAULT_MEMLOCK: u64 = 1 << 30;
/// The name the device of the first group is placed under.
const DEVICE_NAME: &str = "0000:00:04.0";
/// The group numbers handed out, from this one up.
const FIRST_GROUP: u32 = 20;

/// The emulated host (as Linux 6.12) with its groups behind one IOMMU configuration.
#[derive(Debug, Clone)]
pub struct EmulatedType1Backend {
    label: String,
    iommu: GroupIommu,
}

impl EmulatedType1Backend {
    /// Groups behind `iommu`, in a column named `label`.
    pub fn new(label: &str, iommu: GroupIommu) -> Self {
        EmulatedType1Backend {
            label: label.to_owned(),
            iommu,
        }
    }

    /// The kernel lab's machine: QEMU 7.2's `intel-iommu` (39-bit, no snoop control).
    pub fn qemu_vtd() -> Self {
        Self::new("emulated qemu-vtd", GroupIommu::qemu_intel_iommu())
    }

    /// The emulated host's default VT-d profile (48-bit, snoop control).
    pub fn vtd48() -> Self {
        Self::new("emulated vtd-48", GroupIommu::default())
    }
}

/// An emulated group as the cases use it.
#[derive(Debug)]
struct EmulatedGroupHandle {
    group: Arc<EmulatedGroup>,
    device: Option<String>,
}

impl Type1Group for EmulatedGroupHandle {
    fn status(&self) -> Result<u32, Errno> {
        self.group.status()
    }

    fn set_container(&self, container: &dyn Type1Container) -> Result<(), Errno> {
        self.group.set_container(container)
    }

    fn unset_container(&self) -> Result<(), Errno> {
        self.group.unset_container()
    }

    fn device_name(&self) -> Option<String> {
        self.device.clone()
    }

    fn open_device(&self, name: &str) -> Result<Box<dyn VfioDevice>, Errno> {
        self.group.device(name)
    }
}

impl Type1Backend for EmulatedType1Backend {
    fn name(&self) -> String {
        self.label.clone()
    }

    fn unavailable(&self) -> Option<String> {
        None
    }

    fn open(&self, needs: &Type1Needs) -> Result<Type1Opened, Skip> {
        let host = EmulatedHost::new(HostConfig {
            kernel: KernelVersion::V6_12,
            memlock_limit: needs.memlock.unwrap_or(DEFAULT_MEMLOCK),
            cap_ipc_lock: false,
            cap_sys_resource: false,
            transparent_hugepage: false,
            selftest: true,
        });
        let config = Type1Config {
            dma_entry_limit: needs
                .dma_entry_limit
                .unwrap_or(Type1Config::default().dma_entry_limit),
        };
        let container = host.open_type1_with(config);
        let mut groups: Vec<Box<dyn Type1Group>> = Vec::new();
        for i in 0..needs.groups.max(1) {
            let group = EmulatedGroup::new(FIRST_GROUP + i as u32, self.iommu);
            let mut device = None;
            if i == 0 && needs.device {
                let dev = EmulatedDeviceSpec::parse("emulated:dma-engine")
                    .and_then(|s| s.build())
                    .map_err(|e| Skip(format!("cannot build the group's device: {e}")))?;
                group
                    .add_device(DEVICE_NAME, Arc::new(dev))
                    .map_err(|e| Skip(format!("cannot place the group's device: {e}")))?;
                device = Some(DEVICE_NAME.to_owned());
            }
            groups.push(Box::new(EmulatedGroupHandle { group, device }));
        }
        let iommufd = needs
            .iommufd
            .then(|| Arc::new(host.open_iommufd()) as Arc<dyn Iommufd>);
        Ok(Type1Opened {
            iommufd,
            groups,
            container: Box::new(container),
            facts: Type1Facts {
                dma_entry_limit: config.dma_entry_limit,
                aperture_last: Some(self.iommu.aperture_last()),
                cache_coherent: Some(self.iommu.snoop_control),
            },
            guard: None,
        })
    }
}
