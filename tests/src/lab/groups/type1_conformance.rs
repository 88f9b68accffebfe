//! Group `type1-conformance`: every type1 conformance case (`tests::conformance::type1`) on both
//! backends, so the lab shows case by case that the emulated type1 container answers as Linux
//! 6.12's `vfio_iommu_type1`.
//!
//! Only the devices boot has type1 groups (edu and nvme behind QEMU's intel-iommu, bound to
//! vfio-pci); the emulated container is configured as that IOMMU
//! ([`EmulatedType1Backend::qemu_vtd`]: 39-bit aperture, no snoop control), and the kernel
//! backend is told the same facts so cases that depend on them check the same numbers.

use std::sync::OnceLock;

use crate::conformance::Outcome as ConformanceOutcome;
use crate::conformance::type1::cases::ALL;
use crate::conformance::type1::{EmulatedType1Backend, KernelType1Backend};
use crate::lab::case::Case;
use crate::lab::outcome::{Backend, Boot, Outcome};

/// The last IOVA QEMU 7.2's intel-iommu translates (its default `aw-bits=39`).
const QEMU_VTD_APERTURE_LAST: u64 = (1 << 39) - 1;

/// The group's cases for a boot: all of them in the devices boot, none in the mock boot.
pub fn cases(boot: Boot) -> Vec<Case> {
    if boot != Boot::Devices {
        return Vec::new();
    }
    ALL.iter()
        .map(|case| {
            Case::on(case.name, &Backend::ALL, move |backend| match backend {
                Backend::Emulated => convert(case.run_on(&EmulatedType1Backend::qemu_vtd())),
                Backend::Kernel => convert(case.run_on(kernel())),
            })
        })
        .collect()
}

/// The kernel backend, probed once: `/dev/vfio/vfio` and the groups of the PCI devices the lab
/// bound to vfio-pci. QEMU's intel-iommu does not enforce cache coherency (no snoop control).
fn kernel() -> &'static KernelType1Backend {
    static KERNEL: OnceLock<KernelType1Backend> = OnceLock::new();
    KERNEL.get_or_init(|| {
        KernelType1Backend::from_host().with_facts(Some(QEMU_VTD_APERTURE_LAST), Some(false))
    })
}

fn convert(outcome: ConformanceOutcome) -> Outcome {
    match outcome {
        ConformanceOutcome::Pass => Outcome::Pass,
        ConformanceOutcome::Fail(why) => Outcome::Fail(why),
        ConformanceOutcome::Skip(why) => Outcome::Skip(why),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_type1_case_runs_once_in_the_devices_boot_on_both_backends() {
        assert!(cases(Boot::Mock).is_empty());
        let devices = cases(Boot::Devices);
        assert_eq!(devices.len(), ALL.len());
        assert!(devices.iter().all(|c| c.backends() == Backend::ALL));
    }
}
