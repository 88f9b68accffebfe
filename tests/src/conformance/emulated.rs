//! The emulated host as a conformance backend.

use vfio_passthrough::host::emulated::{
    EmulatedHost, EmulatedIommufd, HostConfig, IommuProfile, KernelVersion, VtdIommu,
};
use vfio_passthrough::host::iommufd::IommufdDevice;

use super::backend::{Backend, BackendInfo, Needs, Opened, Skip, Versions};

/// The memlock limit of cases that do not ask for one: pins are charged, but nothing the
/// suite maps comes near it.
const DEFAULT_MEMLOCK: u64 = 1 << 30;

/// The emulated host behaving as one kernel version.
#[derive(Debug, Clone, Copy)]
pub struct EmulatedBackend {
    /// The version cases with [`Versions::Any`] run as.
    pub kernel: KernelVersion,
    /// Transparent huge pages on the emulated kernel.
    pub thp: bool,
}

impl EmulatedBackend {
    /// The emulated host as the lab's kernel: 6.12 without transparent huge pages.
    pub const LAB: EmulatedBackend = EmulatedBackend {
        kernel: KernelVersion::V6_12,
        thp: false,
    };

    /// The emulated host as the newest kernel it models, with transparent huge pages.
    pub const NEWEST: EmulatedBackend = EmulatedBackend {
        kernel: KernelVersion::NEWEST,
        thp: true,
    };

    /// The version a case with `versions` runs as, if this backend runs it.
    fn version_for(&self, versions: Versions) -> Option<KernelVersion> {
        match versions {
            // A case about a range of older kernels runs as the first of them.
            Versions::Range(from, _) => Some(from),
            v if v.contains(self.kernel) => Some(self.kernel),
            _ => None,
        }
    }
}

impl Backend for EmulatedBackend {
    fn name(&self) -> String {
        format!("emulated {}", self.kernel)
    }

    fn unavailable(&self) -> Option<String> {
        None
    }

    fn open(&self, needs: &Needs) -> Result<Opened, Skip> {
        let kernel = self.version_for(needs.versions).ok_or_else(|| {
            Skip(format!(
                "case needs kernel {:?}; this column is {}",
                needs.versions, self.kernel
            ))
        })?;
        let config = HostConfig {
            kernel,
            memlock_limit: needs.memlock.unwrap_or(DEFAULT_MEMLOCK),
            cap_ipc_lock: false,
            cap_sys_resource: needs.cap_sys_resource.unwrap_or(false),
            transparent_hugepage: self.thp,
            selftest: true,
        };
        let ctx = EmulatedHost::new(config).open_iommufd();
        let binder = ctx.clone();
        let vtd_device: Box<dyn Fn() -> _> = Box::new(move || {
            binder
                .bind(IommuProfile::Vtd(VtdIommu::default()))
                .map(|d| Box::new(d) as Box<dyn IommufdDevice>)
        });
        Ok(Opened {
            vtd_device: Some(vtd_device),
            ctx: Box::new(ctx) as Box<EmulatedIommufd>,
            info: BackendInfo {
                kernel,
                thp: self.thp,
            },
            guard: None,
        })
    }
}
