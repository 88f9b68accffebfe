//! Group `environment`: checks that the lab delivers what the other groups rely on. When one of
//! these fails, failures elsewhere in the same boot are likely consequences of it.
//!
//! These are facts of the lab machine, not of a host backend, so they run on the `kernel`
//! backend only (`emulated=n/a`).

use std::fs::{self, OpenOptions};
use std::os::unix::fs::FileTypeExt;
use std::path::Path;

use vfio_passthrough::host::emulated::VtdIommu;

use crate::lab::case::Case;
use crate::lab::outcome::{Boot, Outcome};
use crate::lab::sysfs::{MTTY_COUNT, MdevDevice, PciFunction, SysRoot};

/// The group's cases for a boot.
pub fn cases(boot: Boot) -> Vec<Case> {
    let mut cases = vec![
        Case::kernel_only("iommufd-opens", || check(opens_read_write("/dev/iommu"))),
        // QEMU runs the lab with `-cpu max` (nested SVM) so our VMM can run KVM guests inside.
        Case::kernel_only("kvm-opens", || check(opens_read_write("/dev/kvm"))),
    ];
    match boot {
        Boot::Mock => cases.extend([
            Case::kernel_only("selftest-mock-iommu-registered", || {
                check(selftest_registered())
            }),
            Case::kernel_only("no-intel-iommu", || check(no_intel_iommu())),
        ]),
        Boot::Devices => cases.extend([
            Case::kernel_only("intel-iommu-legacy-mode", || {
                check(intel_iommu_legacy_mode())
            }),
            // The conformance group's emulated column models this IOMMU.
            Case::kernel_only("intel-iommu-matches-the-emulated-profile", || {
                check(intel_iommu_matches_profile())
            }),
            Case::kernel_only("edu-bound-to-vfio-pci", || {
                check(
                    SysRoot::system()
                        .edu()
                        .map_err(|e| e.to_string())
                        .and_then(bound_to_vfio),
                )
            }),
            Case::kernel_only("nvme-bound-to-vfio-pci", || {
                check(
                    SysRoot::system()
                        .nvme()
                        .map_err(|e| e.to_string())
                        .and_then(bound_to_vfio),
                )
            }),
            Case::kernel_only("vfio-group-nodes", || check(vfio_group_nodes())),
            Case::kernel_only("mtty-mdevs-have-vfio-cdevs", || check(mtty_has_cdev())),
        ]),
    }
    cases
}

fn check(result: Result<(), String>) -> Outcome {
    Outcome::from_result(result)
}

fn char_device(path: &Path) -> Result<(), String> {
    let meta = fs::metadata(path).map_err(|e| format!("{}: {e}", path.display()))?;
    if meta.file_type().is_char_device() {
        Ok(())
    } else {
        Err(format!("{} is not a character device", path.display()))
    }
}

fn opens_read_write(absolute: &str) -> Result<(), String> {
    let path = SysRoot::system().path(absolute);
    char_device(&path)?;
    OpenOptions::new()
        .read(true)
        .write(true)
        .open(&path)
        .map(drop)
        .map_err(|e| format!("opening {} read-write: {e}", path.display()))
}

fn selftest_registered() -> Result<(), String> {
    let root = SysRoot::system();
    let bus = root.path("/sys/bus/iommufd_mock");
    if !bus.is_dir() {
        return Err(format!(
            "{} is absent: IOMMUFD_TEST not built in",
            bus.display()
        ));
    }
    let iommus = root.iommus().map_err(|e| e.to_string())?;
    // The platform device's name carries an instance suffix: `iommufd_selftest_iommu.0`.
    if iommus
        .iter()
        .any(|n| n.starts_with("iommufd_selftest_iommu"))
    {
        Ok(())
    } else {
        Err(format!(
            "no iommufd_selftest_iommu in /sys/class/iommu: {iommus:?}"
        ))
    }
}

fn intel_iommus(root: &SysRoot) -> Result<Vec<String>, String> {
    let iommus = root.iommus().map_err(|e| e.to_string())?;
    Ok(iommus
        .into_iter()
        .filter(|n| n.starts_with("dmar"))
        .collect())
}

fn no_intel_iommu() -> Result<(), String> {
    let active = intel_iommus(&SysRoot::system())?;
    if active.is_empty() {
        Ok(())
    } else {
        Err(format!(
            "intel-iommu is active ({active:?}): the selftest mock domain refuses to attach"
        ))
    }
}

/// ECAP bit 43 (SMTS): scalable-mode translation. With it QEMU 7.2's DMA reads zeros.
const ECAP_SMTS: u64 = 1 << 43;

fn intel_iommu_legacy_mode() -> Result<(), String> {
    let root = SysRoot::system();
    let dmars = intel_iommus(&root)?;
    let first = dmars
        .first()
        .ok_or("no dmar* in /sys/class/iommu: intel-iommu is not active")?;
    let path = root.path(&format!("/sys/class/iommu/{first}/intel-iommu/ecap"));
    let text = fs::read_to_string(&path).map_err(|e| format!("{}: {e}", path.display()))?;
    let ecap = u64::from_str_radix(text.trim(), 16)
        .map_err(|_| format!("{} holds {:?}, not hex", path.display(), text.trim()))?;
    if ecap & ECAP_SMTS == 0 {
        Ok(())
    } else {
        Err(format!(
            "{first} offers scalable mode (ecap {ecap:#x}); the lab needs it off"
        ))
    }
}

/// A register of the first intel-iommu, from sysfs (hex).
fn dmar_register(name: &str) -> Result<u64, String> {
    let root = SysRoot::system();
    let dmars = intel_iommus(&root)?;
    let first = dmars
        .first()
        .ok_or("no dmar* in /sys/class/iommu: intel-iommu is not active")?;
    let path = root.path(&format!("/sys/class/iommu/{first}/intel-iommu/{name}"));
    let text = fs::read_to_string(&path).map_err(|e| format!("{}: {e}", path.display()))?;
    u64::from_str_radix(text.trim(), 16)
        .map_err(|_| format!("{} holds {:?}, not hex", path.display(), text.trim()))
}

/// The register fields the emulated VT-d profile's behaviour follows from: address width
/// (CAP.MGAW, CAP.SAGAW), second-level large pages (CAP.SLLPS), scalable mode, nesting, dirty
/// tracking and PASID (ECAP.SMTS, NEST, SLADS, PASID).
fn intel_iommu_matches_profile() -> Result<(), String> {
    let (cap, ecap) = (dmar_register("cap")?, dmar_register("ecap")?);
    let profile = VtdIommu::QEMU_LEGACY;
    let field = |reg: u64, shift: u32, bits: u32| (reg >> shift) & ((1 << bits) - 1);
    let fields = |cap: u64, ecap: u64| {
        [
            ("CAP.MGAW", field(cap, 16, 6)),
            ("CAP.SAGAW", field(cap, 8, 5)),
            ("CAP.SLLPS", field(cap, 34, 4)),
            ("ECAP.SMTS", field(ecap, 43, 1)),
            ("ECAP.NEST", field(ecap, 26, 1)),
            ("ECAP.SLADS", field(ecap, 45, 1)),
            ("ECAP.PASID", field(ecap, 40, 1)),
        ]
    };
    let lab = fields(cap, ecap);
    let modelled = fields(profile.cap_reg(), profile.ecap_reg());
    let differ: Vec<String> = lab
        .iter()
        .zip(&modelled)
        .filter(|(l, m)| l.1 != m.1)
        .map(|(l, m)| format!("{} {:#x} (emulated {:#x})", l.0, l.1, m.1))
        .collect();
    if differ.is_empty() {
        Ok(())
    } else {
        Err(format!(
            "the lab's intel-iommu (cap {cap:#x}, ecap {ecap:#x}) differs from VtdIommu::QEMU_LEGACY: {}",
            differ.join(", ")
        ))
    }
}

fn bound_to_vfio(function: PciFunction) -> Result<(), String> {
    let driver = function.driver();
    if driver.as_deref() != Some("vfio-pci") {
        return Err(format!(
            "{} is bound to {}, expected vfio-pci",
            function.bdf,
            driver.as_deref().unwrap_or("no driver")
        ));
    }
    let cdev = function
        .vfio_cdev()
        .ok_or_else(|| format!("{} has no vfio-dev entry in sysfs", function.bdf))?;
    char_device(&cdev)
}

fn vfio_group_nodes() -> Result<(), String> {
    let root = SysRoot::system();
    char_device(&root.path("/dev/vfio/vfio"))?;
    for function in [root.edu(), root.nvme()] {
        let function = function.map_err(|e| e.to_string())?;
        let group = function
            .iommu_group()
            .ok_or_else(|| format!("{} has no IOMMU group", function.bdf))?;
        char_device(&root.path(&format!("/dev/vfio/{group}")))?;
    }
    Ok(())
}

fn mtty_has_cdev() -> Result<(), String> {
    let mttys = SysRoot::system().mttys().map_err(|e| e.to_string())?;
    if mttys.len() != MTTY_COUNT {
        return Err(format!(
            "{} mtty mdevs, expected {MTTY_COUNT} (setup-devices.sh)",
            mttys.len()
        ));
    }
    mttys.into_iter().try_for_each(mtty_bound_with_cdev)
}

fn mtty_bound_with_cdev(mtty: MdevDevice) -> Result<(), String> {
    if mtty.driver().as_deref() != Some("mtty") {
        return Err(format!(
            "mdev {} is bound to {:?}, expected mtty",
            mtty.uuid,
            mtty.driver()
        ));
    }
    let cdev = mtty
        .vfio_cdev()
        .ok_or_else(|| format!("mdev {} has no vfio-dev entry in sysfs", mtty.uuid))?;
    char_device(&cdev)
}
