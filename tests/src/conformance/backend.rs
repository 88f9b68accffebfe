//! What the suite needs from a backend.

use std::any::Any;
use std::fmt;

use vfio_passthrough::errno::Errno;
use vfio_passthrough::host::emulated::KernelVersion;
use vfio_passthrough::host::iommufd::{IommufdDevice, IommufdSelftest};

/// Why a backend cannot run a case.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Skip(pub String);

/// Which kernel versions a case is about.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Versions {
    /// Any version the backend is (the uAPI the case uses exists since 6.2).
    Any,
    /// Versions from this one on.
    From(KernelVersion),
    /// Versions `[from, below)`: the emulated host runs it as `from`.
    Range(KernelVersion, KernelVersion),
}

impl Versions {
    /// True if `v` is one of these versions.
    pub fn contains(&self, v: KernelVersion) -> bool {
        match *self {
            Versions::Any => true,
            Versions::From(from) => v >= from,
            Versions::Range(from, below) => v >= from && v < below,
        }
    }
}

/// What a case needs from the backend.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Needs {
    /// Kernel versions the case is about.
    pub versions: Versions,
    /// The selftest interface (mock devices and checks).
    pub selftest: bool,
    /// Selftest mock domains (unusable on a kernel with an active intel-iommu).
    pub mock_domain: bool,
    /// A memlock limit of this many bytes, with pins charged against it.
    pub memlock: Option<u64>,
    /// `Some(true)`: the process must have `CAP_SYS_RESOURCE`; `Some(false)`: must not.
    pub cap_sys_resource: Option<bool>,
    /// A device behind a VT-d IOMMU.
    pub vtd: bool,
    /// That VT-d IOMMU offers nested translation (scalable mode with `ECAP.NEST`).
    pub vtd_nesting: bool,
}

impl Needs {
    /// A case using the selftest mock domain on any version.
    pub const MOCK: Needs = Needs {
        versions: Versions::Any,
        selftest: true,
        mock_domain: true,
        memlock: None,
        cap_sys_resource: None,
        vtd: false,
        vtd_nesting: false,
    };

    /// A case using only the plain uAPI (no selftest interface).
    pub const UAPI: Needs = Needs {
        selftest: false,
        mock_domain: false,
        ..Needs::MOCK
    };

    /// This set of needs, for `versions`.
    pub const fn versions(self, versions: Versions) -> Self {
        Needs { versions, ..self }
    }

    /// This set of needs, with a memlock limit of `bytes`.
    pub const fn memlock(self, bytes: u64) -> Self {
        Needs {
            memlock: Some(bytes),
            ..self
        }
    }

    /// This set of needs, with (or without) `CAP_SYS_RESOURCE`.
    pub const fn cap_sys_resource(self, has: bool) -> Self {
        Needs {
            cap_sys_resource: Some(has),
            ..self
        }
    }

    /// This set of needs, with a VT-d device.
    pub const fn vtd(self) -> Self {
        Needs { vtd: true, ..self }
    }

    /// This set of needs, with a VT-d device whose IOMMU offers nesting.
    pub const fn vtd_nesting(self) -> Self {
        Needs {
            vtd: true,
            vtd_nesting: true,
            ..self
        }
    }
}

/// Facts about a backend that cases adapt their expectations to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BackendInfo {
    /// The kernel version the context behaves as.
    pub kernel: KernelVersion,
    /// Transparent huge pages: automatic IOVAs align to up to 2 MiB, else 4 KiB.
    pub thp: bool,
}

/// Binds a device behind a VT-d IOMMU to a context.
pub type VtdBinder = Box<dyn Fn() -> Result<Box<dyn IommufdDevice>, Errno>>;

/// A context opened for one case. Fields drop in order: the device binder, the context, then
/// the guard (which restores what the backend changed once the context is closed).
pub struct Opened {
    /// Binds a device behind a VT-d IOMMU to the context, when the backend can.
    pub vtd_device: Option<VtdBinder>,
    /// The context.
    pub ctx: Box<dyn IommufdSelftest>,
    /// Facts about it.
    pub info: BackendInfo,
    /// Restores what the backend changed for the case (e.g. the memlock limit).
    pub guard: Option<Box<dyn Any>>,
}

impl fmt::Debug for Opened {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Opened")
            .field("ctx", &self.ctx)
            .field("info", &self.info)
            .field("vtd_device", &self.vtd_device.is_some())
            .finish()
    }
}

/// A host backend the suite runs against.
pub trait Backend: Send + Sync {
    /// The column name in the report.
    fn name(&self) -> String;

    /// `Some(reason)` when the backend cannot run at all here (e.g. no `/dev/iommu`).
    fn unavailable(&self) -> Option<String>;

    /// Opens a fresh context for a case with these needs, or says why it cannot.
    fn open(&self, needs: &Needs) -> Result<Opened, Skip>;
}
