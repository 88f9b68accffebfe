//! [`Report`]: the results of a run, as a table.

use std::fmt::Write;

use super::case::Outcome;

/// One case's results, one per backend.
#[derive(Debug, Clone)]
pub struct Row {
    /// The case.
    pub case: &'static str,
    /// Outcomes in backend order.
    pub outcomes: Vec<Outcome>,
}

/// The results of [`run`](super::run).
#[derive(Debug, Clone)]
pub struct Report {
    /// Backend names, in column order.
    pub backends: Vec<String>,
    /// One row per case, in list order.
    pub rows: Vec<Row>,
}

impl Report {
    pub(crate) fn new(backends: Vec<String>, rows: Vec<Row>) -> Self {
        Report { backends, rows }
    }

    /// `(case, backend, message)` for every failure.
    pub fn failures(&self) -> Vec<(&'static str, &str, &str)> {
        let mut out = Vec::new();
        for row in &self.rows {
            for (b, o) in self.backends.iter().zip(&row.outcomes) {
                if let Outcome::Fail(msg) = o {
                    out.push((row.case, b.as_str(), msg.as_str()));
                }
            }
        }
        out
    }

    /// `(passed, failed, skipped)` for backend column `column`.
    pub fn counts(&self, column: usize) -> (usize, usize, usize) {
        let mut c = (0, 0, 0);
        for row in &self.rows {
            match row.outcomes.get(column) {
                Some(Outcome::Pass) => c.0 += 1,
                Some(Outcome::Fail(_)) => c.1 += 1,
                Some(Outcome::Skip(_)) | None => c.2 += 1,
            }
        }
        c
    }

    /// One line per case with its result per backend, the reasons of skips and failures, then
    /// a summary per backend.
    pub fn render(&self) -> String {
        let width = self
            .rows
            .iter()
            .map(|r| r.case.len())
            .max()
            .unwrap_or(4)
            .max(4);
        let uniform: Vec<Option<&str>> = (0..self.backends.len())
            .map(|i| self.uniform_skip(i))
            .collect();
        let mut out = String::new();
        let _ = write!(out, "{:width$}", "case");
        for b in &self.backends {
            let _ = write!(out, "  {b:>16}");
        }
        out.push('\n');
        for row in &self.rows {
            let _ = write!(out, "{:width$}", row.case);
            let mut notes = Vec::new();
            for (i, (b, o)) in self.backends.iter().zip(&row.outcomes).enumerate() {
                let cell = match o {
                    Outcome::Pass => "pass",
                    Outcome::Fail(m) => {
                        notes.push(format!("{b}: FAIL {m}"));
                        "FAIL"
                    }
                    Outcome::Skip(m) => {
                        if uniform[i] != Some(m.as_str()) {
                            notes.push(format!("{b}: skipped, {m}"));
                        }
                        "skip"
                    }
                };
                let _ = write!(out, "  {cell:>16}");
            }
            out.push('\n');
            for n in notes {
                let _ = writeln!(out, "{:width$}    {n}", "");
            }
        }
        out.push('\n');
        for (i, b) in self.backends.iter().enumerate() {
            let (p, f, s) = self.counts(i);
            let _ = write!(out, "{b}: {p} passed, {f} failed, {s} skipped");
            if let Some(why) = uniform[i] {
                let _ = write!(out, " (all skipped: {why})");
            }
            out.push('\n');
        }
        out
    }

    /// The reason, when every case of column `column` was skipped for the same one.
    fn uniform_skip(&self, column: usize) -> Option<&str> {
        let mut reason = None;
        for row in &self.rows {
            match row.outcomes.get(column) {
                Some(Outcome::Skip(m)) if reason.is_none_or(|r| r == m.as_str()) => {
                    reason = Some(m.as_str())
                }
                _ => return None,
            }
        }
        reason
    }
}
