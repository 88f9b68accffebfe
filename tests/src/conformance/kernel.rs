//! The kernel's iommufd as a conformance backend.
//!
//! The backend itself (`/dev/iommu` ioctls and `IOMMU_TEST_CMD`) lives in
//! `vfio_passthrough::host::iommufd`; this adapter takes a function opening a context, so it
//! plugs in wherever that backend is built ([`KernelBackend::system`] opens `/dev/iommu`). Cases
//! run only where `/dev/iommu` exists; the selftest mock domain must be usable (it is not while
//! an intel-iommu is active); a case's memlock limit and capabilities are applied to the process
//! for the case (see `process`); VT-d cases need a VFIO cdev behind a VT-d IOMMU
//! ([`KernelBackend::with_vtd_device`]).

use std::fs::File;
use std::os::fd::BorrowedFd;
use std::path::{Path, PathBuf};
use std::sync::{Arc, OnceLock};

use vfio_passthrough::errno::Errno;
use vfio_passthrough::host::emulated::KernelVersion;
use vfio_passthrough::host::iommufd::uapi::{HwInfo, HwInfoVtd, IoasAlloc};
use vfio_passthrough::host::iommufd::{
    Iommufd, IommufdDevice, IommufdSelftest, KernelIommufd, MockDomain,
};
use vfio_passthrough::vfio::VfioDevice;
use vfio_passthrough::vfio::kernel::CdevDevice;

use super::backend::{Backend, BackendInfo, Needs, Opened, Skip, VtdBinder};
use super::process;

/// Opens a kernel iommufd context (`open("/dev/iommu")`) with the selftest interface.
pub type KernelOpener = fn() -> Result<Box<dyn IommufdSelftest>, Errno>;

/// Opens `/dev/iommu` through [`KernelIommufd`].
fn open_system() -> Result<Box<dyn IommufdSelftest>, Errno> {
    KernelIommufd::open().map(|ctx| Box::new(ctx) as Box<dyn IommufdSelftest>)
}

/// The kernel's iommufd.
#[derive(Debug)]
pub struct KernelBackend {
    opener: Option<KernelOpener>,
    /// The VFIO cdev of a device behind a VT-d IOMMU, for VT-d cases.
    vtd_cdev: Option<PathBuf>,
    /// Whether mock domains work here (probed once).
    mock_domains: OnceLock<Result<(), String>>,
    /// Whether the VT-d device's IOMMU offers nesting (probed once).
    vtd_nesting: OnceLock<Result<(), String>>,
}

impl KernelBackend {
    /// A kernel backend opening contexts with `opener`; `None` when this build has no kernel
    /// iommufd backend (every case is then skipped, saying so).
    pub fn new(opener: Option<KernelOpener>) -> Self {
        KernelBackend {
            opener,
            vtd_cdev: None,
            mock_domains: OnceLock::new(),
            vtd_nesting: OnceLock::new(),
        }
    }

    /// The kernel backend on this host's `/dev/iommu` ([`KernelIommufd::open`]).
    pub fn system() -> Self {
        Self::new(Some(open_system))
    }

    /// This backend, binding `cdev` (a VFIO device cdev such as `/dev/vfio/devices/vfio0`,
    /// behind a VT-d IOMMU) for the cases that need a VT-d device.
    pub fn with_vtd_device(mut self, cdev: impl Into<PathBuf>) -> Self {
        self.vtd_cdev = Some(cdev.into());
        self
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

    /// Whether the IOMMU behind the VT-d device offers nesting: scalable mode (`ECAP.SMTS`)
    /// and `ECAP.NEST`, as the Intel driver's `nested_supported()` asks.
    fn probe_vtd_nesting(&self, path: &Path) -> Result<(), String> {
        let opener = self.opener.ok_or("no kernel backend")?;
        let ctx = opener().map_err(|e| format!("open /dev/iommu: {e}"))?;
        let bind = vtd_binder(path, ctx.as_ref()).map_err(|s| s.0)?;
        let dev = bind().map_err(|e| format!("binding {}: {e}", path.display()))?;
        let mut req = HwInfo {
            dev_id: dev.dev_id(),
            ..Default::default()
        };
        let mut data = [0u8; HwInfoVtd::SIZE];
        ctx.get_hw_info(&mut req, &mut data)
            .map_err(|e| format!("GET_HW_INFO of {}: {e}", path.display()))?;
        let ecap = HwInfoVtd::from_bytes(&data).map_or(0, |i| i.ecap_reg);
        let (smts, nest) = ((ecap >> 43) & 1 == 1, (ecap >> 26) & 1 == 1);
        if smts && nest {
            Ok(())
        } else {
            Err(format!(
                "the VT-d IOMMU of {} offers no nesting (ECAP {ecap:#x}: SMTS {smts}, NEST {nest}; QEMU 7.2's intel-iommu has no first stage)",
                path.display()
            ))
        }
    }
}

/// A binder of the VFIO cdev at `path` to the context `ctx` (through a duplicate of its fd,
/// which names the same kernel context).
fn vtd_binder(path: &Path, ctx: &dyn IommufdSelftest) -> Result<VtdBinder, Skip> {
    let fd = ctx
        .raw_fd()
        .ok_or_else(|| Skip("the context has no file descriptor".into()))?;
    // SAFETY: `fd` belongs to `ctx`, open for the duration of this call; it is duplicated at
    // once and the duplicate owned from then on.
    let owned = unsafe { BorrowedFd::borrow_raw(fd) }
        .try_clone_to_owned()
        .map_err(|e| Skip(format!("dup of the iommufd: {e}")))?;
    let shared: Arc<dyn Iommufd> = Arc::new(KernelIommufd::from_file(File::from(owned)));
    let path = path.to_path_buf();
    Ok(Box::new(move || {
        let dev = CdevDevice::open(&path)?;
        dev.bind_iommufd(&shared)?;
        Ok(Box::new(dev) as Box<dyn IommufdDevice>)
    }))
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
            let Some(path) = &self.vtd_cdev else {
                return Err(Skip("no VFIO device behind a VT-d IOMMU was given".into()));
            };
            if needs.vtd_nesting
                && let Err(why) = self
                    .vtd_nesting
                    .get_or_init(|| self.probe_vtd_nesting(path))
            {
                return Err(Skip(why.clone()));
            }
        }
        let guard = process::apply(needs)?;
        let ctx = opener().map_err(|e| Skip(format!("open /dev/iommu: {e}")))?;
        let vtd_device = match &self.vtd_cdev {
            Some(path) if needs.vtd => Some(vtd_binder(path, ctx.as_ref())?),
            _ => None,
        };
        Ok(Opened {
            vtd_device,
            ctx,
            info: BackendInfo {
                kernel,
                thp: Path::new("/sys/kernel/mm/transparent_hugepage").exists(),
            },
            guard: Some(Box::new(guard)),
        })
    }
}
