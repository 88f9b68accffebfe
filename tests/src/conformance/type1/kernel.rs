//! The kernel's type1 container as a conformance backend.
//!
//! The backend itself (`KernelType1Container`, `VfioGroup`) lives in `vfio_passthrough`; this
//! adapter takes openers for a container and for the groups to put in it, so it plugs in
//! wherever those are built (the lab names the groups of its devices; [`from_host`] takes every
//! group of PCI devices under `/dev/vfio`). Cases needing a memlock limit run with
//! `CAP_IPC_LOCK` dropped from the effective set (see `conformance::process`); cases needing a small `dma_entry_limit` set the module parameter
//! (root) and restore it.
//!
//! [`from_host`]: KernelType1Backend::from_host

use std::fs;
use std::path::Path;
use std::sync::Arc;

use vfio_passthrough::errno::Errno;
use vfio_passthrough::host::iommufd::{Iommufd, KernelIommufd};
use vfio_passthrough::host::type1::{KernelType1Container, Type1Container};
use vfio_passthrough::vfio::VfioDevice;
use vfio_passthrough::vfio::kernel::VfioGroup;

use super::backend::{Type1Backend, Type1Facts, Type1Group, Type1Needs, Type1Opened};
use crate::conformance::Skip;
use crate::conformance::process;

/// Opens a fresh container.
pub type ContainerOpener = Box<dyn Fn() -> Result<Box<dyn Type1Container>, Errno> + Send + Sync>;
/// Opens one group (not in a container).
pub type GroupOpener = Box<dyn Fn() -> Result<Box<dyn Type1Group>, Errno> + Send + Sync>;

/// Where the driver's `dma_entry_limit` module parameter lives.
pub const DMA_ENTRY_LIMIT_PARAM: &str = "/sys/module/vfio_iommu_type1/parameters/dma_entry_limit";

/// The kernel's type1 containers and groups.
pub struct KernelType1Backend {
    container: Option<ContainerOpener>,
    groups: Vec<GroupOpener>,
    aperture_last: Option<u64>,
    cache_coherent: Option<bool>,
    unavailable: Option<String>,
}

impl std::fmt::Debug for KernelType1Backend {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KernelType1Backend")
            .field("groups", &self.groups.len())
            .field("unavailable", &self.unavailable)
            .finish_non_exhaustive()
    }
}

/// A kernel group as the cases use it.
#[derive(Debug)]
struct KernelGroup {
    group: Arc<VfioGroup>,
    device: Option<String>,
}

impl Type1Group for KernelGroup {
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
        self.group
            .device(name)
            .map(|d| Box::new(d) as Box<dyn VfioDevice>)
    }
}

/// Opens `/dev/vfio/<id>`; `device` is the device cases may open in it.
pub fn group_opener(id: u32, device: Option<String>) -> GroupOpener {
    Box::new(move || {
        Ok(Box::new(KernelGroup {
            group: Arc::new(VfioGroup::open(id)?),
            device: device.clone(),
        }) as Box<dyn Type1Group>)
    })
}

/// Opens `/dev/vfio/vfio`.
pub fn container_opener() -> ContainerOpener {
    Box::new(|| Ok(Box::new(KernelType1Container::open()?) as Box<dyn Type1Container>))
}

/// Whether `name` is a PCI address (`0000:00:03.0`), not an mdev UUID.
fn is_pci_address(name: &str) -> bool {
    let b = name.as_bytes();
    b.len() == 12
        && b[4] == b':'
        && b[7] == b':'
        && b[10] == b'.'
        && b.iter()
            .enumerate()
            .all(|(i, c)| matches!(i, 4 | 7 | 10) || c.is_ascii_hexdigit())
}

/// The first PCI device of IOMMU group `id`, from sysfs.
fn pci_device_of(id: u32) -> Option<String> {
    let mut names: Vec<String> = fs::read_dir(format!("/sys/kernel/iommu_groups/{id}/devices"))
        .ok()?
        .filter_map(|e| e.ok()?.file_name().into_string().ok())
        .filter(|n| is_pci_address(n))
        .collect();
    names.sort();
    names.into_iter().next()
}

impl KernelType1Backend {
    /// A backend opening containers with `container` and, for a case, as many of `groups` as
    /// it needs.
    pub fn new(container: ContainerOpener, groups: Vec<GroupOpener>) -> Self {
        KernelType1Backend {
            container: Some(container),
            groups,
            aperture_last: None,
            cache_coherent: None,
            unavailable: None,
        }
    }

    /// The same backend, telling cases the groups' aperture end and whether their IOMMU
    /// enforces cache coherency (the lab knows both from QEMU's `intel-iommu`).
    pub fn with_facts(mut self, aperture_last: Option<u64>, cache_coherent: Option<bool>) -> Self {
        self.aperture_last = aperture_last;
        self.cache_coherent = cache_coherent;
        self
    }

    /// `/dev/vfio/vfio` and every group under `/dev/vfio` holding a PCI device (mdev groups are
    /// left out: their container semantics differ). Unavailable, saying why, when there are
    /// none.
    pub fn from_host() -> Self {
        let unavailable = |why: &str| KernelType1Backend {
            container: None,
            groups: Vec::new(),
            aperture_last: None,
            cache_coherent: None,
            unavailable: Some(why.to_owned()),
        };
        if !Path::new("/dev/vfio").exists() {
            return unavailable("no /dev/vfio on this host");
        }
        if !Path::new("/dev/vfio/vfio").exists() {
            return unavailable("no /dev/vfio/vfio (type1 container) on this host");
        }
        let mut ids: Vec<u32> = fs::read_dir("/dev/vfio")
            .map(|d| {
                d.filter_map(|e| e.ok()?.file_name().to_str()?.parse().ok())
                    .collect()
            })
            .unwrap_or_default();
        ids.sort_unstable();
        let groups: Vec<GroupOpener> = ids
            .into_iter()
            .filter_map(|id| Some(group_opener(id, Some(pci_device_of(id)?))))
            .collect();
        if groups.is_empty() {
            return unavailable("no VFIO group of a PCI device in /dev/vfio");
        }
        Self::new(container_opener(), groups)
    }
}

/// Restores the driver's `dma_entry_limit` when dropped.
struct EntryLimitGuard(String);

impl Drop for EntryLimitGuard {
    fn drop(&mut self) {
        let _ = fs::write(DMA_ENTRY_LIMIT_PARAM, &self.0);
    }
}

fn read_entry_limit() -> Option<u32> {
    fs::read_to_string(DMA_ENTRY_LIMIT_PARAM)
        .ok()?
        .trim()
        .parse()
        .ok()
}

impl Type1Backend for KernelType1Backend {
    fn name(&self) -> String {
        "kernel".into()
    }

    fn unavailable(&self) -> Option<String> {
        self.unavailable.clone()
    }

    fn open(&self, needs: &Type1Needs) -> Result<Type1Opened, Skip> {
        let container_opener = self
            .container
            .as_ref()
            .ok_or_else(|| Skip("no kernel backend".into()))?;
        if self.groups.len() < needs.groups {
            return Err(Skip(format!(
                "case needs {} groups; the kernel backend has {}",
                needs.groups,
                self.groups.len()
            )));
        }
        let mut guards: Vec<Box<dyn std::any::Any>> = Vec::new();
        if let Some(bytes) = needs.memlock {
            // CAP_IPC_LOCK is dropped for the case, so type1 charges the pins.
            guards.push(Box::new(process::limit_memlock(bytes)?));
        }
        if let Some(limit) = needs.dma_entry_limit {
            let old = fs::read_to_string(DMA_ENTRY_LIMIT_PARAM)
                .map_err(|e| Skip(format!("cannot read {DMA_ENTRY_LIMIT_PARAM}: {e}")))?;
            fs::write(DMA_ENTRY_LIMIT_PARAM, limit.to_string())
                .map_err(|e| Skip(format!("cannot set {DMA_ENTRY_LIMIT_PARAM}: {e}")))?;
            guards.push(Box::new(EntryLimitGuard(old.trim().to_owned())));
        }
        let iommufd = if needs.iommufd {
            let ctx =
                KernelIommufd::open().map_err(|e| Skip(format!("cannot open /dev/iommu: {e}")))?;
            Some(Arc::new(ctx) as Arc<dyn Iommufd>)
        } else {
            None
        };
        let mut groups = Vec::new();
        for (i, open) in self.groups.iter().take(needs.groups.max(1)).enumerate() {
            let g = open().map_err(|e| Skip(format!("cannot open group {i}: {e}")))?;
            if i == 0 && needs.device && g.device_name().is_none() {
                return Err(Skip("no known device in the first group".into()));
            }
            groups.push(g);
        }
        let container =
            container_opener().map_err(|e| Skip(format!("cannot open /dev/vfio/vfio: {e}")))?;
        Ok(Type1Opened {
            iommufd,
            groups,
            container,
            facts: Type1Facts {
                dma_entry_limit: read_entry_limit().unwrap_or(65535),
                aperture_last: self.aperture_last,
                cache_coherent: self.cache_coherent,
            },
            guard: Some(Box::new(guards)),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pci_addresses_are_told_from_mdev_uuids() {
        assert!(is_pci_address("0000:00:03.0"));
        assert!(is_pci_address("0000:af:1f.7"));
        assert!(!is_pci_address("83b8f4f2-509f-382f-3c1e-e6bfe0fa1001"));
        assert!(!is_pci_address("0000:00:03"));
        assert!(!is_pci_address("0000:0g:03.0"));
    }
}
