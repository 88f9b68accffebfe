//! Aggregates the case reports of every boot into the lab's verdict and its closing line:
//!
//! ```text
//! N cases, emulated P pass, kernel Q pass, S skipped, D disagree
//! ```
//!
//! (`lab/run` prints every line of [`Summary::render`] after `lab: `.)
//!
//! `N` counts case runs (a case in both boots counts twice), `P`/`Q` the passes per backend, `S`
//! the (case, backend) results that were skipped, `D` the cases where one backend passed and the
//! other failed. The lab passes when nothing failed, nothing disagreed and every boot finished.

use std::collections::BTreeMap;

use thiserror::Error;

use super::outcome::{Backend, Boot, Outcome};
use super::report::{Agreement, CaseReport, Record};

/// A boot whose results cannot be trusted as complete.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum IncompleteBootError {
    /// The boot never printed its `LAB-DONE` line (crashed, hung or was cut short).
    #[error("boot '{boot}' did not finish: no LAB-DONE line after {seen} case lines")]
    NotFinished {
        /// The boot.
        boot: Boot,
        /// Case lines seen before the output ended.
        seen: usize,
    },
    /// The boot's `LAB-DONE` count does not match the case lines read (lines were lost).
    #[error("boot '{boot}' announced {announced} cases but {seen} case lines were read")]
    CountMismatch {
        /// The boot.
        boot: Boot,
        /// The count on its `LAB-DONE` line.
        announced: usize,
        /// Case lines read.
        seen: usize,
    },
}

/// Every case report of a lab run, with per-boot completeness.
#[derive(Debug, Default)]
pub struct Summary {
    reports: Vec<CaseReport>,
    done: BTreeMap<Boot, usize>,
}

impl Summary {
    /// An empty summary.
    pub fn new() -> Summary {
        Summary::default()
    }

    /// Adds one parsed record.
    pub fn add(&mut self, record: Record) {
        match record {
            Record::Case(report) => self.reports.push(report),
            Record::Done { boot, cases } => {
                self.done.insert(boot, cases);
            }
        }
    }

    /// The case reports, in the order added.
    pub fn reports(&self) -> &[CaseReport] {
        &self.reports
    }

    /// Checks that a boot finished and that none of its lines were lost.
    pub fn check_complete(&self, boot: Boot) -> Result<(), IncompleteBootError> {
        let seen = self.reports.iter().filter(|r| r.boot == boot).count();
        match self.done.get(&boot) {
            None => Err(IncompleteBootError::NotFinished { boot, seen }),
            Some(&announced) if announced != seen => Err(IncompleteBootError::CountMismatch {
                boot,
                announced,
                seen,
            }),
            Some(_) => Ok(()),
        }
    }

    fn results(&self) -> impl Iterator<Item = (&CaseReport, Backend, &Outcome)> {
        self.reports.iter().flat_map(|r| {
            Backend::ALL
                .into_iter()
                .filter_map(move |b| r.outcome(b).map(|o| (r, b, o)))
        })
    }

    /// Passes on one backend.
    pub fn passes(&self, backend: Backend) -> usize {
        self.results()
            .filter(|&(_, b, o)| b == backend && *o == Outcome::Pass)
            .count()
    }

    /// Every skipped result: `(boot, case, backend, reason)`.
    pub fn skipped(&self) -> Vec<(Boot, &str, Backend, &str)> {
        self.results()
            .filter_map(|(r, b, o)| match o {
                Outcome::Skip(why) => Some((r.boot, r.name.as_str(), b, why.as_str())),
                _ => None,
            })
            .collect()
    }

    /// Every failed result: `(boot, case, backend, detail)`.
    pub fn failed(&self) -> Vec<(Boot, &str, Backend, &str)> {
        self.results()
            .filter_map(|(r, b, o)| match o {
                Outcome::Fail(why) => Some((r.boot, r.name.as_str(), b, why.as_str())),
                _ => None,
            })
            .collect()
    }

    /// Every case whose backends disagree.
    pub fn disagreements(&self) -> Vec<&CaseReport> {
        self.reports
            .iter()
            .filter(|r| r.agreement() == Agreement::Disagree)
            .collect()
    }

    /// Whether the lab passed: at least one case ran, none failed, none disagreed.
    pub fn passed(&self) -> bool {
        !self.reports.is_empty() && self.failed().is_empty() && self.disagreements().is_empty()
    }

    /// The closing line (without the `lab: ` prefix the host prints it with).
    pub fn final_line(&self) -> String {
        format!(
            "{} cases, emulated {} pass, kernel {} pass, {} skipped, {} disagree",
            self.reports.len(),
            self.passes(Backend::Emulated),
            self.passes(Backend::Kernel),
            self.skipped().len(),
            self.disagreements().len(),
        )
    }

    /// The whole human report, unprefixed: one line per case, then skips with reasons, failures with
    /// details, disagreements with both results, then the closing line.
    pub fn render(&self) -> Vec<String> {
        let width = self.reports.iter().map(|r| r.name.len()).max().unwrap_or(0);
        let mut lines: Vec<String> = self
            .reports
            .iter()
            .map(|r| {
                let results: Vec<String> = Backend::ALL
                    .into_iter()
                    .map(|b| format!("{b}={}", r.outcome(b).map_or("n/a", Outcome::status)))
                    .collect();
                format!("{:<7} {:<width$}  {}", r.boot, r.name, results.join(" "))
            })
            .collect();
        for (boot, name, backend, why) in self.skipped() {
            lines.push(format!("skipped {boot} {name} on {backend}: {why}"));
        }
        for (boot, name, backend, why) in self.failed() {
            lines.push(format!("FAILED {boot} {name} on {backend}: {why}"));
        }
        for r in self.disagreements() {
            let show = |b| {
                r.outcome(b)
                    .map_or("n/a".to_owned(), |o: &Outcome| match o.detail() {
                        Some(d) => format!("{} ({d})", o.status()),
                        None => o.status().to_owned(),
                    })
            };
            lines.push(format!(
                "DISAGREE {} {}: emulated {}, kernel {}",
                r.boot,
                r.name,
                show(Backend::Emulated),
                show(Backend::Kernel)
            ));
        }
        lines.push(self.final_line());
        lines
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn case(boot: Boot, name: &str, e: Option<Outcome>, k: Option<Outcome>) -> Record {
        let mut outcomes = BTreeMap::new();
        if let Some(e) = e {
            outcomes.insert(Backend::Emulated, e);
        }
        if let Some(k) = k {
            outcomes.insert(Backend::Kernel, k);
        }
        Record::Case(CaseReport {
            boot,
            name: name.into(),
            outcomes,
        })
    }

    fn done(boot: Boot, cases: usize) -> Record {
        Record::Done { boot, cases }
    }

    #[test]
    fn counts_case_runs_of_both_boots_passes_per_backend_and_skips() {
        let mut s = Summary::new();
        s.add(case(Boot::Mock, "env/a", None, Some(Outcome::Pass)));
        s.add(case(
            Boot::Mock,
            "conf/b",
            Some(Outcome::Pass),
            Some(Outcome::Pass),
        ));
        s.add(done(Boot::Mock, 2));
        s.add(case(Boot::Devices, "env/a", None, Some(Outcome::Pass)));
        s.add(case(
            Boot::Devices,
            "vfio/c",
            Some(Outcome::Skip("no edu model yet".into())),
            Some(Outcome::Pass),
        ));
        s.add(done(Boot::Devices, 2));
        assert_eq!(s.check_complete(Boot::Mock), Ok(()));
        assert_eq!(s.check_complete(Boot::Devices), Ok(()));
        assert!(s.passed());
        assert_eq!(
            s.final_line(),
            "4 cases, emulated 1 pass, kernel 4 pass, 1 skipped, 0 disagree"
        );
        let out = s.render();
        assert!(out.contains(&"skipped devices vfio/c on emulated: no edu model yet".into()));
        assert_eq!(out.last(), Some(&s.final_line()));
    }

    #[test]
    fn a_disagreement_fails_the_lab_and_names_both_results() {
        let mut s = Summary::new();
        s.add(case(
            Boot::Mock,
            "conf/unmap-split",
            Some(Outcome::Pass),
            Some(Outcome::Fail("ENOENT".into())),
        ));
        s.add(done(Boot::Mock, 1));
        assert!(!s.passed());
        assert!(s.final_line().ends_with(", 1 disagree"));
        let out = s.render();
        assert!(out.contains(
            &"DISAGREE mock conf/unmap-split: emulated pass, kernel fail (ENOENT)".into()
        ));
        assert!(out.contains(&"FAILED mock conf/unmap-split on kernel: ENOENT".into()));
    }

    #[test]
    fn a_failure_on_one_backend_fails_the_lab() {
        let mut s = Summary::new();
        s.add(case(
            Boot::Devices,
            "env/edu",
            None,
            Some(Outcome::Fail("absent".into())),
        ));
        s.add(done(Boot::Devices, 1));
        assert!(!s.passed());
    }

    #[test]
    fn a_run_without_cases_does_not_pass() {
        let mut s = Summary::new();
        s.add(done(Boot::Mock, 0));
        assert!(!s.passed());
    }

    #[test]
    fn unfinished_boots_and_lost_lines_are_reported() {
        let mut s = Summary::new();
        s.add(case(Boot::Devices, "env/a", None, Some(Outcome::Pass)));
        assert_eq!(
            s.check_complete(Boot::Devices),
            Err(IncompleteBootError::NotFinished {
                boot: Boot::Devices,
                seen: 1
            })
        );
        s.add(done(Boot::Devices, 3));
        let err = s.check_complete(Boot::Devices).unwrap_err();
        assert_eq!(
            err.to_string(),
            "boot 'devices' announced 3 cases but 1 case lines were read"
        );
    }
}
