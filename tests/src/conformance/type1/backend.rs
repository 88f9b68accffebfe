//! What the type1 suite needs from a backend: a fresh container, groups to put in it, and the
//! facts cases adapt their expectations to.

use std::any::Any;
use std::fmt;
use std::sync::Arc;

use vfio_passthrough::errno::Errno;
use vfio_passthrough::host::iommufd::Iommufd;
use vfio_passthrough::host::type1::Type1Container;
use vfio_passthrough::vfio::VfioDevice;

use crate::conformance::Skip;

/// A VFIO group as the cases use it (`/dev/vfio/<group>`): the kernel's `VfioGroup` or the
/// emulated host's `EmulatedGroup` behind one interface.
pub trait Type1Group {
    /// `VFIO_GROUP_GET_STATUS`: the `VFIO_GROUP_FLAGS_*`.
    fn status(&self) -> Result<u32, Errno>;

    /// `VFIO_GROUP_SET_CONTAINER`.
    fn set_container(&self, container: &dyn Type1Container) -> Result<(), Errno>;

    /// `VFIO_GROUP_UNSET_CONTAINER`.
    fn unset_container(&self) -> Result<(), Errno>;

    /// The name of a device in the group that cases may open, if the backend knows one.
    fn device_name(&self) -> Option<String>;

    /// `VFIO_GROUP_GET_DEVICE_FD` for `name`; dropping the device closes it.
    fn open_device(&self, name: &str) -> Result<Box<dyn VfioDevice>, Errno>;
}

/// What a case needs from the backend.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Type1Needs {
    /// Groups the case puts in containers (1 or 2).
    pub groups: usize,
    /// A device in the first group the case can open.
    pub device: bool,
    /// An iommufd to try binding a group-opened device to.
    pub iommufd: bool,
    /// A memlock limit of this many bytes, with pins charged against it.
    pub memlock: Option<u64>,
    /// The driver's `dma_entry_limit` set to this.
    pub dma_entry_limit: Option<u32>,
}

impl Type1Needs {
    /// One group, nothing else.
    pub const ONE_GROUP: Type1Needs = Type1Needs {
        groups: 1,
        device: false,
        iommufd: false,
        memlock: None,
        dma_entry_limit: None,
    };

    /// This set of needs, with `n` groups.
    pub const fn groups(self, n: usize) -> Self {
        Type1Needs { groups: n, ..self }
    }

    /// This set of needs, with a device to open in the first group.
    pub const fn device(self) -> Self {
        Type1Needs {
            device: true,
            ..self
        }
    }

    /// This set of needs, with an iommufd (and a device).
    pub const fn iommufd(self) -> Self {
        Type1Needs {
            iommufd: true,
            device: true,
            ..self
        }
    }

    /// This set of needs, with a memlock limit of `bytes`.
    pub const fn memlock(self, bytes: u64) -> Self {
        Type1Needs {
            memlock: Some(bytes),
            ..self
        }
    }

    /// This set of needs, with `dma_entry_limit` set to `limit`.
    pub const fn dma_entry_limit(self, limit: u32) -> Self {
        Type1Needs {
            dma_entry_limit: Some(limit),
            ..self
        }
    }
}

/// Facts about a backend that cases adapt their expectations to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Type1Facts {
    /// The driver's `dma_entry_limit` for this container (what `DMA_AVAIL` starts at).
    pub dma_entry_limit: u32,
    /// The last IOVA of the groups' IOMMU aperture, when the backend knows it.
    pub aperture_last: Option<u64>,
    /// Whether the groups' IOMMU enforces cache coherency (`VFIO_DMA_CC_IOMMU` after
    /// `SET_IOMMU`), when the backend knows it.
    pub cache_coherent: Option<bool>,
}

/// A container opened for one case, with its groups. Fields drop in order: the iommufd, the
/// groups (closing them takes them out of the container), the container, then the guard.
pub struct Type1Opened {
    /// An iommufd context, for cases that need one.
    pub iommufd: Option<Arc<dyn Iommufd>>,
    /// The groups, none in a container yet.
    pub groups: Vec<Box<dyn Type1Group>>,
    /// A fresh container.
    pub container: Box<dyn Type1Container>,
    /// Facts about them.
    pub facts: Type1Facts,
    /// Restores what the backend changed for the case (memlock limit, module parameters).
    pub guard: Option<Box<dyn Any>>,
}

impl fmt::Debug for Type1Opened {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Type1Opened")
            .field("container", &self.container)
            .field("groups", &self.groups.len())
            .field("facts", &self.facts)
            .finish_non_exhaustive()
    }
}

/// A host backend the type1 suite runs against.
pub trait Type1Backend: Send + Sync {
    /// The column name in the report.
    fn name(&self) -> String;

    /// `Some(reason)` when the backend cannot run at all here (e.g. no `/dev/vfio`).
    fn unavailable(&self) -> Option<String>;

    /// Opens a fresh container and the groups a case with these needs uses, or says why not.
    fn open(&self, needs: &Type1Needs) -> Result<Type1Opened, Skip>;
}
