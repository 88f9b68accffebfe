//! The vocabulary of lab results: which boot, which backend, what a case produced.

use std::fmt;
use std::str::FromStr;

use thiserror::Error;

/// One of the lab's two boots of the lab kernel. Some uAPI only works in one of them, so each
/// group says which cases it has in which boot.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Boot {
    /// No vIOMMU: the iommufd selftest mock domain (`IOMMU_TEST_CMD`) works only here, because it
    /// refuses to attach while intel-iommu is active.
    Mock,
    /// QEMU's intel-iommu (legacy mode), the `edu` and `nvme` PCI devices bound to vfio-pci, and
    /// one `mtty` mdev (type `mtty-2`).
    Devices,
}

impl Boot {
    /// Both boots, in the order `lab/run` boots them.
    pub const ALL: [Boot; 2] = [Boot::Mock, Boot::Devices];

    /// The name used on the kernel command line (`lab.boot=<name>`) and in report lines.
    pub fn name(self) -> &'static str {
        match self {
            Boot::Mock => "mock",
            Boot::Devices => "devices",
        }
    }
}

impl fmt::Display for Boot {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.pad(self.name())
    }
}

/// A name that is not one of the lab's boots or backends.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
#[error("unknown {kind} '{name}' (expected one of: {expected})")]
pub struct UnknownNameError {
    kind: &'static str,
    name: String,
    expected: &'static str,
}

impl FromStr for Boot {
    type Err = UnknownNameError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Boot::ALL
            .into_iter()
            .find(|b| b.name() == s)
            .ok_or_else(|| UnknownNameError {
                kind: "boot",
                name: s.to_owned(),
                expected: "mock, devices",
            })
    }
}

/// A host backend a case runs against. The same conformance case runs on both where it can, and
/// the two results must agree.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Backend {
    /// The in-process emulated host (runs anywhere, also inside the lab).
    Emulated,
    /// The real kernel uAPI: `/dev/iommu`, `/dev/vfio/...` of the lab kernel.
    Kernel,
}

impl Backend {
    /// Every backend, in report order.
    pub const ALL: [Backend; 2] = [Backend::Emulated, Backend::Kernel];

    /// The name used in report lines (`emulated=pass`).
    pub fn name(self) -> &'static str {
        match self {
            Backend::Emulated => "emulated",
            Backend::Kernel => "kernel",
        }
    }
}

impl fmt::Display for Backend {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.pad(self.name())
    }
}

impl FromStr for Backend {
    type Err = UnknownNameError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Backend::ALL
            .into_iter()
            .find(|b| b.name() == s)
            .ok_or_else(|| UnknownNameError {
                kind: "backend",
                name: s.to_owned(),
                expected: "emulated, kernel",
            })
    }
}

/// What one case produced on one backend.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// Every check of the case held.
    Pass,
    /// A check did not hold; the text says which, with the values seen.
    Fail(String),
    /// The case could not run here; the text says why. Listed with the summary.
    Skip(String),
}

impl Outcome {
    /// `Pass` when `Ok`, `Fail` with the error's text otherwise: lets a case body use `?`.
    pub fn from_result<E: fmt::Display>(result: Result<(), E>) -> Outcome {
        match result {
            Ok(()) => Outcome::Pass,
            Err(e) => Outcome::Fail(e.to_string()),
        }
    }

    /// The status word of report lines: `pass`, `fail` or `skip`.
    pub fn status(&self) -> &'static str {
        match self {
            Outcome::Pass => "pass",
            Outcome::Fail(_) => "fail",
            Outcome::Skip(_) => "skip",
        }
    }

    /// The failure detail or skip reason, if any.
    pub fn detail(&self) -> Option<&str> {
        match self {
            Outcome::Pass => None,
            Outcome::Fail(d) | Outcome::Skip(d) => Some(d),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn boot_and_backend_names_parse_back() {
        for boot in Boot::ALL {
            assert_eq!(boot.name().parse::<Boot>(), Ok(boot));
        }
        for backend in Backend::ALL {
            assert_eq!(backend.name().parse::<Backend>(), Ok(backend));
        }
        let err = "vfio-user".parse::<Backend>().unwrap_err();
        assert_eq!(
            err.to_string(),
            "unknown backend 'vfio-user' (expected one of: emulated, kernel)"
        );
    }

    #[test]
    fn outcome_from_result_keeps_the_error_text() {
        assert_eq!(Outcome::from_result::<String>(Ok(())), Outcome::Pass);
        let failed = Outcome::from_result(Err("errno 22 on /dev/iommu"));
        assert_eq!(failed.status(), "fail");
        assert_eq!(failed.detail(), Some("errno 22 on /dev/iommu"));
    }
}
