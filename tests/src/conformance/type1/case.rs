//! A type1 behaviour case and how one runs.

use std::panic::{AssertUnwindSafe, catch_unwind};

use super::backend::{Type1Backend, Type1Needs};
use super::env::Type1Env;
use crate::conformance::case::outcome_of;
use crate::conformance::memory::Memory;
use crate::conformance::{Fail, Outcome};

/// One type1 behaviour case.
#[derive(Debug, Clone, Copy)]
pub struct Type1Case {
    /// What the case checks, as a sentence in snake case.
    pub name: &'static str,
    /// What the backend must offer.
    pub needs: Type1Needs,
    /// The steps; `Err` names the first step that did not match.
    pub run: fn(&mut Type1Env<'_>) -> Result<(), Fail>,
}

impl Type1Case {
    /// Runs the case on `backend` with a fresh container (what a lab group calls per backend).
    pub fn run_on(&self, backend: &dyn Type1Backend) -> Outcome {
        if let Some(reason) = backend.unavailable() {
            return Outcome::Skip(reason);
        }
        let opened = match backend.open(&self.needs) {
            Ok(o) => o,
            Err(skip) => return Outcome::Skip(skip.0),
        };
        let mut memory = Memory::default();
        let result = {
            let mut env = Type1Env::new(&opened, &mut memory);
            catch_unwind(AssertUnwindSafe(|| (self.run)(&mut env)))
        };
        // The container and groups go first: they may still hold the memory the case mapped.
        drop(opened);
        drop(memory);
        outcome_of(result)
    }
}
