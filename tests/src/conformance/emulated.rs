//! The emulated host as a conformance backend.

use vfio_passthrough::host::emulated::{
    EmulatedHost, EmulatedIommufd, HostConfig, IommuProfile, KernelVersion, VtdIommu,
};
use vfio_passthrough::host::iommufd::IommufdDevice;

use super::backend::{Backend, BackendInfo, Needs, Opened, Skip, Versions};
use super::process::{self, CAP_IPC_LOCK, CAP_SYS_RESOURCE};

/// The memlock limit of cases that do not ask for one: pins are charged, but nothing the
/// suite maps comes near it.
const DEFAULT_MEMLOCK: u64 = 1 << 30;

/// Where the emulated host's memlock limit and capabilities come from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Privileges {
    /// Made up per case: the memlock limit and `CAP_SYS_RESOURCE` the case asks for (1 GiB and
    /// none otherwise), never `CAP_IPC_LOCK`. Deterministic whoever runs the suite.
    PerCase,
    /// This process's, as the kernel would see them: the case's needs are applied to the
    /// process (as the kernel backend does) and the host is configured from the result.
    Process,
}

/// The emulated host behaving as one kernel version on one machine.
#[derive(Debug, Clone, Copy)]
pub struct EmulatedBackend {
    /// The version cases with [`Versions::Any`] run as.
    pub kernel: KernelVersion,
    /// Transparent huge pages on the emulated kernel.
    pub thp: bool,
    /// Cases about a range of other kernel versions run as the first of them (the host suite
    /// covers older uAPI this way); when false they are skipped, as a real kernel skips them.
    pub other_versions: bool,
    /// Where the memlock limit and capabilities come from.
    pub privileges: Privileges,
    /// The selftest mock domain is usable (a kernel with an active intel-iommu refuses it).
    pub mock_domains: bool,
    /// The IOMMU behind VT-d devices; `None` when the machine has no VT-d device.
    pub vtd: Option<VtdIommu>,
}

impl EmulatedBackend {
    /// The emulated host as the lab's kernel version (6.12 without transparent huge pages), on
    /// a made-up machine with every device the suite can use.
    pub const LAB: EmulatedBackend = EmulatedBackend {
        kernel: KernelVersion::V6_12,
        thp: false,
        other_versions: true,
        privileges: Privileges::PerCase,
        mock_domains: true,
        vtd: Some(VtdIommu::DEFAULT),
    };

    /// The emulated host as the newest kernel it models, with transparent huge pages.
    pub const NEWEST: EmulatedBackend = EmulatedBackend {
        kernel: KernelVersion::NEWEST,
        thp: true,
        ..EmulatedBackend::LAB
    };

    /// The emulated host as one boot of the kernel lab sees it: Linux 6.12 without transparent
    /// huge pages, this process's memlock limit and capabilities, only cases about 6.12, and
    /// that boot's devices: `mock_domains` when no intel-iommu is active, `vtd` when a device
    /// sits behind one.
    pub const fn lab_machine(mock_domains: bool, vtd: Option<VtdIommu>) -> EmulatedBackend {
        EmulatedBackend {
            kernel: KernelVersion::V6_12,
            thp: false,
            other_versions: false,
            privileges: Privileges::Process,
            mock_domains,
            vtd,
        }
    }

    /// The version a case with `versions` runs as, if this backend runs it.
    fn version_for(&self, versions: Versions) -> Option<KernelVersion> {
        match versions {
            // A case about a range of older kernels runs as the first of them.
            Versions::Range(from, _) if self.other_versions => Some(from),
            v if v.contains(self.kernel) => Some(self.kernel),
            _ => None,
        }
    }

    /// The machine-level reasons a case cannot run here.
    fn check_machine(&self, needs: &Needs) -> Result<(), Skip> {
        if needs.mock_domain && !self.mock_domains {
            return Err(Skip(
                "this machine's selftest mock domain is unusable (an intel-iommu is active)".into(),
            ));
        }
        match self.vtd {
            None if needs.vtd => Err(Skip(
                "this machine has no device behind a VT-d IOMMU".into(),
            )),
            Some(v) if needs.vtd_nesting && !v.nesting_supported() => Err(Skip(
                "this machine's VT-d IOMMU offers no nesting (no scalable mode or ECAP.NEST)"
                    .into(),
            )),
            _ => Ok(()),
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
        self.check_machine(needs)?;
        let config = match self.privileges {
            Privileges::PerCase => HostConfig {
                kernel,
                memlock_limit: needs.memlock.unwrap_or(DEFAULT_MEMLOCK),
                cap_ipc_lock: false,
                cap_sys_resource: needs.cap_sys_resource.unwrap_or(false),
                transparent_hugepage: self.thp,
                selftest: true,
            },
            Privileges::Process => {
                let guard = process::apply(needs)?;
                let config = HostConfig {
                    kernel,
                    memlock_limit: process::memlock_limit(),
                    cap_ipc_lock: process::has_capability(CAP_IPC_LOCK),
                    cap_sys_resource: process::has_capability(CAP_SYS_RESOURCE),
                    transparent_hugepage: self.thp,
                    selftest: true,
                };
                // The host took its snapshot: the process goes back as it was.
                drop(guard);
                config
            }
        };
        let ctx = EmulatedHost::new(config).open_iommufd();
        let vtd_device = self.vtd.map(|iommu| {
            let binder = ctx.clone();
            Box::new(move || {
                binder
                    .bind(IommuProfile::Vtd(iommu))
                    .map(|d| Box::new(d) as Box<dyn IommufdDevice>)
            }) as super::backend::VtdBinder
        });
        Ok(Opened {
            vtd_device,
            ctx: Box::new(ctx) as Box<EmulatedIommufd>,
            info: BackendInfo {
                kernel,
                thp: self.thp,
            },
            guard: None,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_lab_machine_skips_what_its_boot_lacks() {
        let mock_boot = EmulatedBackend::lab_machine(true, None);
        let devices_boot = EmulatedBackend::lab_machine(false, Some(VtdIommu::QEMU_LEGACY));
        let skip = |b: &EmulatedBackend, n: Needs| b.open(&n).err().map(|s| s.0);
        assert!(skip(&mock_boot, Needs::UAPI.vtd()).is_some_and(|w| w.contains("no device")));
        assert!(skip(&devices_boot, Needs::MOCK).is_some_and(|w| w.contains("mock domain")));
        assert!(
            skip(&devices_boot, Needs::UAPI.vtd_nesting()).is_some_and(|w| w.contains("nesting"))
        );
        assert_eq!(skip(&devices_boot, Needs::UAPI.vtd()), None);
        assert_eq!(skip(&mock_boot, Needs::MOCK), None);
    }

    #[test]
    fn only_the_host_suite_runs_cases_about_other_versions() {
        let old = Needs::UAPI.versions(Versions::Range(KernelVersion::V6_8, KernelVersion::V6_11));
        let opened = EmulatedBackend::LAB
            .open(&old)
            .expect("the host suite runs it");
        assert_eq!(opened.info.kernel, KernelVersion::V6_8);
        let lab = EmulatedBackend::lab_machine(true, None);
        let skip = lab.open(&old).expect_err("the lab skips it");
        assert!(skip.0.contains("6.12"), "{}", skip.0);
    }
}
