//! Group `conformance`: every iommufd conformance case (`tests::conformance::cases::ALL`) on
//! both backends, so the lab shows case by case that the emulated host answers as Linux 6.12.
//!
//! Each case runs in the one boot where the kernel can run it: cases needing a device behind a
//! VT-d IOMMU in the devices boot (the `edu` behind QEMU's intel-iommu), every other case in the
//! mock boot (the selftest mock domain refuses to attach while intel-iommu is active). The
//! emulated backend is configured as that boot's machine ([`EmulatedBackend::lab_machine`]):
//! 6.12 without transparent huge pages, this process's memlock limit and capabilities, mock
//! domains only in the mock boot, and in the devices boot a VT-d IOMMU modelled on QEMU 7.2's
//! legacy-mode intel-iommu ([`VtdIommu::QEMU_LEGACY`]). A case one backend cannot run is
//! skipped there with the reason; where both run it, their results must agree.

use std::sync::OnceLock;

use vfio_passthrough::host::emulated::VtdIommu;

use crate::conformance::{self, EmulatedBackend, KernelBackend, cases};
use crate::lab::case::Case;
use crate::lab::outcome::{Backend, Boot, Outcome};
use crate::lab::sysfs::SysRoot;

/// The group's cases for a boot.
pub fn cases(boot: Boot) -> Vec<Case> {
    cases::ALL
        .iter()
        .filter(|case| boot_of(case) == boot)
        .map(|case| {
            Case::on(case.name, &Backend::ALL, move |backend| match backend {
                Backend::Emulated => convert(case.run_on(&emulated(boot))),
                Backend::Kernel => convert(case.run_on(kernel(boot))),
            })
        })
        .collect()
}

/// The boot a conformance case runs in.
pub fn boot_of(case: &conformance::Case) -> Boot {
    if case.needs.vtd {
        Boot::Devices
    } else {
        Boot::Mock
    }
}

/// The emulated host as `boot`'s machine.
pub fn emulated(boot: Boot) -> EmulatedBackend {
    match boot {
        Boot::Mock => EmulatedBackend::lab_machine(true, None),
        Boot::Devices => EmulatedBackend::lab_machine(false, Some(VtdIommu::QEMU_LEGACY)),
    }
}

/// The kernel backend of `boot`, built once (a runner lives in one boot; the backend caches
/// what it probes). In the devices
/// boot it binds the `edu` (behind intel-iommu) for VT-d cases.
fn kernel(boot: Boot) -> &'static KernelBackend {
    static KERNEL: OnceLock<KernelBackend> = OnceLock::new();
    KERNEL.get_or_init(|| {
        let backend = KernelBackend::system();
        if boot != Boot::Devices {
            return backend;
        }
        match SysRoot::system().edu().ok().and_then(|edu| edu.vfio_cdev()) {
            Some(cdev) => backend.with_vtd_device(cdev),
            // VT-d cases then skip, saying no device was given; `environment` fails on it.
            None => backend,
        }
    })
}

fn convert(outcome: conformance::Outcome) -> Outcome {
    match outcome {
        conformance::Outcome::Pass => Outcome::Pass,
        conformance::Outcome::Fail(why) => Outcome::Fail(why),
        conformance::Outcome::Skip(why) => Outcome::Skip(why),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeSet;

    #[test]
    fn every_conformance_case_runs_in_exactly_one_boot_on_both_backends() {
        let mut seen = BTreeSet::new();
        for boot in Boot::ALL {
            for case in cases(boot) {
                assert_eq!(case.backends(), &Backend::ALL);
                assert!(seen.insert(case.name().to_owned()), "{} twice", case.name());
            }
        }
        let all: BTreeSet<_> = cases::ALL.iter().map(|c| c.name.to_owned()).collect();
        assert_eq!(seen, all);
    }

    #[test]
    fn vtd_cases_run_in_the_devices_boot() {
        let devices: Vec<_> = cases(Boot::Devices)
            .iter()
            .map(|c| c.name().to_owned())
            .collect();
        assert!(!devices.is_empty());
        assert!(devices.iter().all(|n| n.starts_with("vtd_")), "{devices:?}");
    }
}
