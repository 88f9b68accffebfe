//! A behaviour case and how one runs.

use std::panic::{AssertUnwindSafe, catch_unwind};

use super::backend::{Backend, Needs};
use super::env::Env;
use super::memory::Memory;

/// Why a case failed: the step and what differed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Fail(pub String);

/// The result of one case on one backend.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// Every step matched.
    Pass,
    /// A step did not; the message names it.
    Fail(String),
    /// The backend cannot run the case; the reason.
    Skip(String),
}

/// One behaviour case.
#[derive(Debug, Clone, Copy)]
pub struct Case {
    /// What the case checks, as a sentence in snake case.
    pub name: &'static str,
    /// What the backend must offer.
    pub needs: Needs,
    /// The steps; `Err` names the first step that did not match.
    pub run: fn(&mut Env<'_>) -> Result<(), Fail>,
}

/// Runs `case` on `backend` in a fresh context; a panic is a failure.
pub(crate) fn run_case(backend: &dyn Backend, case: &Case) -> Outcome {
    if let Some(reason) = backend.unavailable() {
        return Outcome::Skip(reason);
    }
    let opened = match backend.open(&case.needs) {
        Ok(o) => o,
        Err(skip) => return Outcome::Skip(skip.0),
    };
    let mut memory = Memory::default();
    let result = {
        let mut env = Env::new(&opened, backend, &mut memory);
        catch_unwind(AssertUnwindSafe(|| (case.run)(&mut env)))
    };
    // The context goes first: it may still use the memory the case mapped.
    drop(opened);
    drop(memory);
    match result {
        Ok(Ok(())) => Outcome::Pass,
        Ok(Err(Fail(msg))) => Outcome::Fail(msg),
        Err(panic) => {
            let msg = panic
                .downcast_ref::<String>()
                .cloned()
                .or_else(|| panic.downcast_ref::<&str>().map(|s| s.to_string()))
                .unwrap_or_else(|| "panic".into());
            Outcome::Fail(format!("panicked: {msg}"))
        }
    }
}
