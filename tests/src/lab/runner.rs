//! Runs the registered groups for one boot and reports each case as it finishes.

use std::collections::BTreeMap;
use std::panic::{self, AssertUnwindSafe};

use super::case::GroupDef;
use super::outcome::{Backend, Boot, Outcome};
use super::report::CaseReport;
use crate::conformance::panic_message;

/// Which cases to run.
#[derive(Debug, Clone)]
pub struct Selection {
    /// The boot the runner is in.
    pub boot: Boot,
    /// Only cases whose `<group>/<case>` contains this text; all when `None`.
    pub filter: Option<String>,
}

impl Selection {
    fn wants(&self, full_name: &str) -> bool {
        self.filter.as_deref().is_none_or(|f| full_name.contains(f))
    }
}

/// Runs every selected case of `groups` on each of its backends, in registry order, and hands each
/// report to `emit` as soon as the case is done (so a later crash keeps earlier results). A case
/// that panics is a failure carrying the panic message; the run goes on with the next case.
/// Returns every report.
pub fn run_groups(
    groups: &[GroupDef],
    selection: &Selection,
    mut emit: impl FnMut(&CaseReport),
) -> Vec<CaseReport> {
    let mut reports = Vec::new();
    for group in groups {
        for case in (group.cases)(selection.boot) {
            let name = format!("{}/{}", group.name, case.name());
            if !selection.wants(&name) {
                continue;
            }
            let outcomes: BTreeMap<Backend, Outcome> = case
                .backends()
                .iter()
                .map(|&backend| {
                    let outcome = panic::catch_unwind(AssertUnwindSafe(|| case.run(backend)))
                        .unwrap_or_else(|payload| {
                            Outcome::Fail(format!("panicked: {}", panic_message(&*payload)))
                        });
                    (backend, outcome)
                })
                .collect();
            let report = CaseReport {
                boot: selection.boot,
                name,
                outcomes,
            };
            emit(&report);
            reports.push(report);
        }
    }
    reports
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::lab::case::Case;

    fn sample_cases(boot: Boot) -> Vec<Case> {
        let mut cases = vec![
            Case::on("both", &Backend::ALL, |b| match b {
                Backend::Emulated => Outcome::Pass,
                Backend::Kernel => Outcome::Fail("EINVAL".into()),
            }),
            Case::kernel_only("panics", || panic!("index 9 out of range")),
        ];
        if boot == Boot::Devices {
            cases.push(Case::kernel_only("devices-only", || Outcome::Pass));
        }
        cases
    }

    const SAMPLE: GroupDef = GroupDef {
        name: "sample",
        cases: sample_cases,
    };

    fn select(boot: Boot, filter: Option<&str>) -> Selection {
        Selection {
            boot,
            filter: filter.map(str::to_owned),
        }
    }

    #[test]
    fn every_case_of_the_boot_is_reported_on_each_of_its_backends() {
        let mut emitted = Vec::new();
        let reports = run_groups(&[SAMPLE], &select(Boot::Devices, None), |r| {
            emitted.push(r.name.clone())
        });
        assert_eq!(
            emitted,
            ["sample/both", "sample/panics", "sample/devices-only"]
        );
        assert_eq!(reports[0].outcome(Backend::Emulated), Some(&Outcome::Pass));
        assert_eq!(
            reports[0].outcome(Backend::Kernel),
            Some(&Outcome::Fail("EINVAL".into()))
        );
        assert_eq!(reports[2].outcome(Backend::Emulated), None);
        let mock = run_groups(&[SAMPLE], &select(Boot::Mock, None), |_| {});
        assert_eq!(mock.len(), 2);
    }

    #[test]
    fn a_panicking_case_fails_with_its_message_and_the_run_continues() {
        let reports = run_groups(&[SAMPLE], &select(Boot::Devices, None), |_| {});
        assert_eq!(
            reports[1].outcome(Backend::Kernel),
            Some(&Outcome::Fail("panicked: index 9 out of range".into()))
        );
        assert_eq!(reports.len(), 3);
    }

    #[test]
    fn the_filter_selects_by_group_and_case_name() {
        let reports = run_groups(
            &[SAMPLE],
            &select(Boot::Devices, Some("sample/dev")),
            |_| {},
        );
        let names: Vec<_> = reports.iter().map(|r| r.name.as_str()).collect();
        assert_eq!(names, ["sample/devices-only"]);
    }
}
