//! A behaviour case and how one runs.

use std::any::Any;
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

impl Case {
    /// Runs the case on `backend` in a fresh context (what a lab group calls per backend).
    pub fn run_on(&self, backend: &dyn Backend) -> Outcome {
        run_case(backend, self)
    }
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
    outcome_of(result)
}

/// What a case's steps run under `catch_unwind` came to: a panic is a failure quoting it.
pub(crate) fn outcome_of(result: std::thread::Result<Result<(), Fail>>) -> Outcome {
    match result {
        Ok(Ok(())) => Outcome::Pass,
        Ok(Err(Fail(msg))) => Outcome::Fail(msg),
        Err(payload) => Outcome::Fail(format!("panicked: {}", panic_message(&*payload))),
    }
}

/// The text a panic was raised with.
pub(crate) fn panic_message(payload: &(dyn Any + Send)) -> String {
    if let Some(s) = payload.downcast_ref::<&str>() {
        (*s).to_owned()
    } else if let Some(s) = payload.downcast_ref::<String>() {
        s.clone()
    } else {
        "(no message)".to_owned()
    }
}
