//! Cases and groups: what a test group hands to the runner.

use std::fmt;

use super::outcome::{Backend, Boot, Outcome};

/// The body of a case: runs it on the given backend (one of those the case was declared for).
pub type CaseBody = Box<dyn Fn(Backend) -> Outcome>;

/// One named check, run once per backend it applies to. Backends it does not apply to are
/// reported as `n/a` (not counted as skipped).
pub struct Case {
    name: String,
    backends: Vec<Backend>,
    body: CaseBody,
}

impl Case {
    /// A case that runs on each of `backends`; `body` is called once per backend. This is how a
    /// conformance case runs on both the emulated host and the kernel.
    ///
    /// `name` must be lowercase `[a-z0-9_-]+` (it appears in report lines and filters); the
    /// registry test checks every registered name.
    pub fn on(
        name: impl Into<String>,
        backends: &[Backend],
        body: impl Fn(Backend) -> Outcome + 'static,
    ) -> Case {
        Case {
            name: name.into(),
            backends: backends.to_vec(),
            body: Box::new(body),
        }
    }

    /// A case that only means something on the real kernel (a fact of the lab machine).
    pub fn kernel_only(name: impl Into<String>, body: impl Fn() -> Outcome + 'static) -> Case {
        Case::on(name, &[Backend::Kernel], move |_| body())
    }

    /// The case's name within its group.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The backends the case runs on.
    pub fn backends(&self) -> &[Backend] {
        &self.backends
    }

    /// Runs the case on one backend.
    pub fn run(&self, backend: Backend) -> Outcome {
        (self.body)(backend)
    }
}

impl fmt::Debug for Case {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Case")
            .field("name", &self.name)
            .field("backends", &self.backends)
            .finish_non_exhaustive()
    }
}

/// A registered group of cases: a name and the function that lists its cases for a boot (an empty
/// list when the group has nothing to do in that boot).
#[derive(Debug, Clone, Copy)]
pub struct GroupDef {
    /// The group's name, the first part of `<group>/<case>`; `[a-z0-9_-]+`.
    pub name: &'static str,
    /// Lists the group's cases for a boot. Called inside the guest, so it may look at the
    /// machine (but should leave failing checks to the cases themselves).
    pub cases: fn(Boot) -> Vec<Case>,
}

/// Whether a name may be used for a group or a case: lowercase ASCII letters, digits, `-`, `_`.
pub fn is_valid_name(name: &str) -> bool {
    !name.is_empty()
        && name
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-' || b == b'_')
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_case_runs_its_body_with_the_backend_asked_for() {
        let case = Case::on("echo", &Backend::ALL, |b| match b {
            Backend::Emulated => Outcome::Pass,
            Backend::Kernel => Outcome::Skip("no kernel".into()),
        });
        assert_eq!(case.backends(), &Backend::ALL);
        assert_eq!(case.run(Backend::Emulated), Outcome::Pass);
        assert_eq!(case.run(Backend::Kernel), Outcome::Skip("no kernel".into()));
    }

    #[test]
    fn kernel_only_cases_declare_just_the_kernel_backend() {
        let case = Case::kernel_only("fact", || Outcome::Pass);
        assert_eq!(case.backends(), &[Backend::Kernel]);
    }

    #[test]
    fn names_with_spaces_slashes_or_capitals_are_rejected() {
        assert!(is_valid_name("ioas-map_fixed2"));
        for bad in ["", "a b", "a/b", "Map", "a=b", "naïve"] {
            assert!(!is_valid_name(bad), "{bad:?} accepted");
        }
    }
}
