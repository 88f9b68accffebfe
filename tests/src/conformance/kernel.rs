//! The kernel's iommufd as a conformance backend.
//!
//! The backend itself (`/dev/iommu` ioctls and `IOMMU_TEST_CMD`) lives in
//! `vfio_passthrough::host::iommufd`; this adapter takes a function opening a context, so it
//! plugs in wherever that backend is built. Cases run only where `/dev/iommu` exists; the
//! selftest mock domain must be usable (it is not while an intel-iommu is active), and cases
//! needing a memlock limit need a process without `CAP_IPC_LOCK` (whose pins the kernel does
//! not charge).

use std::path::Path;
use std::sync::OnceLock;

use vfio_passthrough::errno::Errno;
use vfio_passthrough::host::emulated::KernelVersion;
use vfio_passthrough::host::iommufd::uapi::IoasAlloc;
use vfio_passthrough::host::iommufd::{IommufdSelftest, MockDomain};

use super::backend::{Backend, BackendInfo, Needs, Opened, Skip};

/// Opens a kernel iommufd context (`open("/dev/iommu")`) with the selftest interface.
pub type KernelOpener = fn() -> Result<Box<dyn IommufdSelftest>, Errno>;

/// The kernel's iommufd.
#[derive(Debug)]
pub struct KernelBackend {
    opener: Option<KernelOpener>,
    /// Whether mock domains work here (probed once).
    mock_domains: OnceLock<Result<(), String>>,
}

pub(super) const CAP_IPC_LOCK: u32 = 14;
const CAP_SYS_RESOURCE: u32 = 24;

impl KernelBackend {
    /// A kernel backend opening contexts with `opener`; `None` when this build has no kernel
    /// iommufd backend (every case is then skipped, saying so).
    pub fn new(opener: Option<KernelOpener>) -> Self {
        KernelBackend {
            opener,
            mock_domains: OnceLock::new(),
        }
    }

    fn kernel(&self) -> KernelVersion {
        let release = std::fs::read_to_string("/proc/sys/kernel/osrelease").unwrap_or_default();
        KernelVersion::parse(release.trim()).unwrap_or(KernelVersion::new(0, 0))
    }

    fn probe_mock_domain(&self) -> Result<(), String> {
        let opener = self.opener.ok_or("no kernel backend")?;
        let ctx = opener().map_err(|e| format!("open /dev/iommu: {e}"))?;
        let mut a = IoasAlloc::default();
        ctx.ioas_alloc(&mut a)
            .map_err(|e| format!("IOMMU_IOAS_ALLOC: {e}"))?;
        let mut d = MockDomain {
            pt_id: a.out_ioas_id,
            ..Default::default()
        };
        match ctx.mock_domain(&mut d) {
            Ok(()) => Ok(()),
            Err(e) if e == Errno::ENOTTY => Err("kernel without CONFIG_IOMMUFD_TEST".into()),
            Err(e) => Err(format!(
                "selftest mock domain unusable ({e}; an active intel-iommu refuses it)"
            )),
        }
    }
}

/// The effective capability mask of this process.
pub(super) fn capabilities() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix("CapEff:"))
                .and_then(|v| u64::from_str_radix(v.trim(), 16).ok())
        })
        .unwrap_or(0)
}

/// Restores `RLIMIT_MEMLOCK` when dropped.
pub(super) struct MemlockGuard(libc::rlimit);

impl Drop for MemlockGuard {
    fn drop(&mut self) {
        // SAFETY: setrlimit reads one `struct rlimit`.
        unsafe { libc::setrlimit(libc::RLIMIT_MEMLOCK, &self.0) };
    }
}

/// Sets the soft `RLIMIT_MEMLOCK` to `bytes` until the guard is dropped.
pub(super) fn set_memlock(bytes: u64) -> Result<MemlockGuard, Skip> {
    let mut old = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit writes one `struct rlimit`.
    if unsafe { libc::getrlimit(libc::RLIMIT_MEMLOCK, &mut old) } != 0 {
        return Err(Skip("getrlimit(RLIMIT_MEMLOCK) failed".into()));
    }
    let new = libc::rlimit {
        rlim_cur: bytes,
        rlim_max: old.rlim_max,
    };
    // SAFETY: setrlimit reads one `struct rlimit`.
    if unsafe { libc::setrlimit(libc::RLIMIT_MEMLOCK, &new) } != 0 {
        return Err(Skip("cannot set RLIMIT_MEMLOCK".into()));
    }
    Ok(MemlockGuard(old))
}

impl Backend for KernelBackend {
    fn name(&self) -> String {
        "kernel".into()
    }

    fn unavailable(&self) -> Option<String> {
        if !Path::new("/dev/iommu").exists() {
            return Some("no /dev/iommu on this host".into());
        }
        if self.opener.is_none() {
            return Some("this build has no kernel iommufd backend".into());
        }
        None
    }

    fn open(&self, needs: &Needs) -> Result<Opened, Skip> {
        let opener = self
            .opener
            .ok_or_else(|| Skip("no kernel backend".into()))?;
        let kernel = self.kernel();
        if !needs.versions.contains(kernel) {
            return Err(Skip(format!(
                "case needs kernel {:?}; running {kernel}",
                needs.versions
            )));
        }
        if needs.mock_domain
            && let Err(why) = self.mock_domains.get_or_init(|| self.probe_mock_domain())
        {
            return Err(Skip(why.clone()));
        }
        if needs.vtd {
            return Err(Skip(
                "needs a VFIO device behind a VT-d IOMMU, not wired in this adapter".into(),
            ));
        }
        let caps = capabilities();
        if let Some(want) = needs.cap_sys_resource
            && want != (caps & (1 << CAP_SYS_RESOURCE) != 0)
        {
            return Err(Skip(format!(
                "case needs a process {} CAP_SYS_RESOURCE",
                if want { "with" } else { "without" }
            )));
        }
        let guard = match needs.memlock {
            Some(_) if caps & (1 << CAP_IPC_LOCK) != 0 => {
                return Err(Skip(
                    "the process has CAP_IPC_LOCK: pins are not charged".into(),
                ));
            }
            Some(bytes) => Some(Box::new(set_memlock(bytes)?) as Box<dyn std::any::Any>),
            None => None,
        };
        let ctx = opener().map_err(|e| Skip(format!("open /dev/iommu: {e}")))?;
        Ok(Opened {
            vtd_device: None,
            ctx,
            info: BackendInfo {
                kernel,
                thp: Path::new("/sys/kernel/mm/transparent_hugepage").exists(),
            },
            guard,
        })
    }
}
