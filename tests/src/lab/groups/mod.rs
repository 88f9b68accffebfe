//! The registry of lab test groups. To add a group: write `groups/<name>.rs` with a
//! `pub fn cases(boot: Boot) -> Vec<Case>` and add it to [`ALL`].

use super::case::GroupDef;

pub mod conformance;
pub mod environment;
pub mod kernel_edu;
pub mod kernel_iommufd;
pub mod kernel_migration;
pub mod kernel_mtty;
pub mod kernel_support;
pub mod kernel_type1;
pub mod kernel_vfio;
pub mod type1_conformance;
pub mod vmm;

/// Every group, in the order the runner runs them. `environment` goes first: when it fails,
/// later failures in the same boot likely follow from it.
pub const ALL: &[GroupDef] = &[
    GroupDef {
        name: "environment",
        cases: environment::cases,
    },
    GroupDef {
        name: "kernel-iommufd",
        cases: kernel_iommufd::cases,
    },
    GroupDef {
        name: "kernel-type1",
        cases: kernel_type1::cases,
    },
    GroupDef {
        name: "kernel-vfio",
        cases: kernel_vfio::cases,
    },
    GroupDef {
        name: "kernel-edu",
        cases: kernel_edu::cases,
    },
    GroupDef {
        name: "kernel-mtty",
        cases: kernel_mtty::cases,
    },
    GroupDef {
        name: "kernel-migration",
        cases: kernel_migration::cases,
    },
    GroupDef {
        name: "conformance",
        cases: conformance::cases,
    },
    GroupDef {
        name: "type1-conformance",
        cases: type1_conformance::cases,
    },
    GroupDef {
        name: "vmm",
        cases: vmm::cases,
    },
];

#[cfg(test)]
mod tests {
    use std::collections::BTreeSet;

    use super::*;
    use crate::lab::case::is_valid_name;
    use crate::lab::outcome::Boot;

    #[test]
    fn registered_group_and_case_names_are_valid_and_unique_per_boot() {
        let groups: BTreeSet<_> = ALL.iter().map(|g| g.name).collect();
        assert_eq!(groups.len(), ALL.len(), "duplicate group name");
        for boot in Boot::ALL {
            let mut seen = BTreeSet::new();
            for group in ALL {
                assert!(is_valid_name(group.name), "bad group name {:?}", group.name);
                for case in (group.cases)(boot) {
                    assert!(
                        is_valid_name(case.name()),
                        "bad case name {:?}",
                        case.name()
                    );
                    assert!(
                        !case.backends().is_empty(),
                        "{} runs on no backend",
                        case.name()
                    );
                    let full = format!("{}/{}", group.name, case.name());
                    assert!(
                        seen.insert(full.clone()),
                        "{full} registered twice in {boot}"
                    );
                }
            }
        }
    }
}
