//! The machine-readable lines the runner prints and `lab/run` reads back from the serial port.
//!
//! One line per case, then one line closing the boot:
//!
//! ```text
//! LAB-CASE <boot> <group>/<case> emulated=<status> kernel=<status> agree=<yes|no|-> [emulated.why="..."] [kernel.why="..."]
//! LAB-DONE <boot> cases=<count>
//! ```
//!
//! `<status>` is `pass`, `fail`, `skip`, or `n/a` for a backend the case does not run on.
//! `agree` is `yes`/`no` when both backends produced pass or fail, `-` otherwise. A `why` field
//! carries the failure detail or skip reason of that backend as a Rust string literal (quoted,
//! backslash escapes), so it may hold any text. Lines not starting with `LAB-` are ignored by the
//! parser, and fields it does not know are too, so fields can be added later.

use std::collections::BTreeMap;
use std::fmt::Write as _;

use thiserror::Error;

use super::outcome::{Backend, Boot, Outcome, UnknownNameError};

/// The prefix of a case line.
pub const CASE_TAG: &str = "LAB-CASE";
/// The prefix of the line closing a boot's results.
pub const DONE_TAG: &str = "LAB-DONE";

/// What one case produced on every backend, in one boot.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CaseReport {
    /// The boot it ran in.
    pub boot: Boot,
    /// `<group>/<case>`.
    pub name: String,
    /// One outcome per backend the case ran on; absent backends are `n/a`.
    pub outcomes: BTreeMap<Backend, Outcome>,
}

/// Whether a case's backends agree.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Agreement {
    /// Both backends passed, or both failed.
    Agree,
    /// One passed and the other failed: the emulated host does not behave like the kernel.
    Disagree,
    /// Fewer than two backends produced pass or fail (one is `n/a` or skipped).
    NotCompared,
}

impl CaseReport {
    /// The outcome on one backend, `None` when the case does not run there.
    pub fn outcome(&self, backend: Backend) -> Option<&Outcome> {
        self.outcomes.get(&backend)
    }

    /// Compares the emulated and kernel results.
    pub fn agreement(&self) -> Agreement {
        let passed = |b| match self.outcome(b) {
            Some(Outcome::Pass) => Some(true),
            Some(Outcome::Fail(_)) => Some(false),
            Some(Outcome::Skip(_)) | None => None,
        };
        match (passed(Backend::Emulated), passed(Backend::Kernel)) {
            (Some(e), Some(k)) if e == k => Agreement::Agree,
            (Some(_), Some(_)) => Agreement::Disagree,
            _ => Agreement::NotCompared,
        }
    }

    /// The `LAB-CASE` line for this report (no newline).
    pub fn to_line(&self) -> String {
        let mut line = format!("{CASE_TAG} {} {}", self.boot, self.name);
        for backend in Backend::ALL {
            let status = self.outcome(backend).map_or("n/a", Outcome::status);
            let _ = write!(line, " {backend}={status}");
        }
        let agree = match self.agreement() {
            Agreement::Agree => "yes",
            Agreement::Disagree => "no",
            Agreement::NotCompared => "-",
        };
        let _ = write!(line, " agree={agree}");
        for backend in Backend::ALL {
            if let Some(detail) = self.outcome(backend).and_then(Outcome::detail) {
                // Debug formatting of a str is a quoted literal with every control char escaped.
                let _ = write!(line, " {backend}.why={detail:?}");
            }
        }
        line
    }
}

/// The `LAB-DONE` line closing a boot's results.
pub fn done_line(boot: Boot, cases: usize) -> String {
    format!("{DONE_TAG} {boot} cases={cases}")
}

/// A parsed report line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Record {
    /// A `LAB-CASE` line.
    Case(CaseReport),
    /// A `LAB-DONE` line: the boot ran to the end and printed this many cases.
    Done {
        /// The boot that finished.
        boot: Boot,
        /// How many `LAB-CASE` lines it printed.
        cases: usize,
    },
}

/// A `LAB-` line that does not follow the format.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum ReportParseError {
    /// A field the line must have is absent.
    #[error("missing {field} in report line: {line}")]
    Missing {
        /// The field's name.
        field: &'static str,
        /// The line.
        line: String,
    },
    /// A boot, backend or status word is not one the format knows.
    #[error("{source} in report line: {line}")]
    UnknownName {
        /// The unknown word.
        source: UnknownNameError,
        /// The line.
        line: String,
    },
    /// A field's value is malformed.
    #[error("bad {field} value '{value}' in report line: {line}")]
    BadValue {
        /// The field's name.
        field: &'static str,
        /// What it held.
        value: String,
        /// The line.
        line: String,
    },
}

/// Parses one line of runner output. `Ok(None)` for lines that are not report lines (kernel
/// messages, human output); a trailing `\r` (serial ports add one) is ignored.
pub fn parse_line(line: &str) -> Result<Option<Record>, ReportParseError> {
    let line = line.trim_end_matches(['\r', '\n']);
    let Some((tag, rest)) = line.split_once(' ') else {
        return Ok(None);
    };
    match tag {
        CASE_TAG => parse_case(line, rest).map(|r| Some(Record::Case(r))),
        DONE_TAG => parse_done(line, rest).map(Some),
        _ => Ok(None),
    }
}

fn parse_done(line: &str, rest: &str) -> Result<Record, ReportParseError> {
    let fields = Fields::split(line, rest)?;
    let boot = fields.boot()?;
    let count = fields.get("cases")?;
    let cases = count.parse().map_err(|_| ReportParseError::BadValue {
        field: "cases",
        value: count.to_owned(),
        line: line.to_owned(),
    })?;
    Ok(Record::Done { boot, cases })
}

fn parse_case(line: &str, rest: &str) -> Result<CaseReport, ReportParseError> {
    let fields = Fields::split(line, rest)?;
    let boot = fields.boot()?;
    let name = fields
        .positional
        .get(1)
        .ok_or_else(|| missing("case name", line))?;
    let mut outcomes = BTreeMap::new();
    for backend in Backend::ALL {
        let status = fields.get(backend.name())?;
        let why = || {
            let key = format!("{backend}.why");
            fields.named.get(key.as_str()).cloned().unwrap_or_default()
        };
        let outcome = match status {
            "n/a" => continue,
            "pass" => Outcome::Pass,
            "fail" => Outcome::Fail(why()),
            "skip" => Outcome::Skip(why()),
            other => {
                return Err(ReportParseError::BadValue {
                    field: backend.name(),
                    value: other.to_owned(),
                    line: line.to_owned(),
                });
            }
        };
        outcomes.insert(backend, outcome);
    }
    Ok(CaseReport {
        boot,
        name: name.clone(),
        outcomes,
    })
}

fn missing(field: &'static str, line: &str) -> ReportParseError {
    ReportParseError::Missing {
        field,
        line: line.to_owned(),
    }
}

/// The fields of a line after its tag: leading positional words, then `key=value` pairs whose
/// value is a bare word or a quoted string literal.
struct Fields<'a> {
    line: &'a str,
    positional: Vec<String>,
    named: BTreeMap<&'a str, String>,
}

impl<'a> Fields<'a> {
    fn split(line: &'a str, mut rest: &'a str) -> Result<Self, ReportParseError> {
        let mut fields = Fields {
            line,
            positional: Vec::new(),
            named: BTreeMap::new(),
        };
        loop {
            rest = rest.trim_start_matches(' ');
            if rest.is_empty() {
                return Ok(fields);
            }
            let word_end = rest.find([' ', '=']).unwrap_or(rest.len());
            let word = &rest[..word_end];
            if !rest[word_end..].starts_with('=') {
                fields.positional.push(word.to_owned());
                rest = &rest[word_end..];
                continue;
            }
            let value_text = &rest[word_end + 1..];
            let (value, after) = if value_text.starts_with('"') {
                unquote(value_text).ok_or_else(|| ReportParseError::BadValue {
                    field: "quoted",
                    value: value_text.to_owned(),
                    line: line.to_owned(),
                })?
            } else {
                let end = value_text.find(' ').unwrap_or(value_text.len());
                (value_text[..end].to_owned(), &value_text[end..])
            };
            fields.named.insert(word, value);
            rest = after;
        }
    }

    fn boot(&self) -> Result<Boot, ReportParseError> {
        let word = self
            .positional
            .first()
            .ok_or_else(|| missing("boot", self.line))?;
        word.parse()
            .map_err(|source| ReportParseError::UnknownName {
                source,
                line: self.line.to_owned(),
            })
    }

    fn get(&self, field: &'static str) -> Result<&str, ReportParseError> {
        self.named
            .get(field)
            .map(String::as_str)
            .ok_or_else(|| missing(field, self.line))
    }
}

/// Reads a string literal as Rust's `Debug` writes it, from the opening quote; returns the
/// string and the text after the closing quote.
fn unquote(text: &str) -> Option<(String, &str)> {
    let mut chars = text.char_indices();
    chars.next().filter(|&(_, c)| c == '"')?;
    let mut out = String::new();
    while let Some((i, c)) = chars.next() {
        match c {
            '"' => return Some((out, &text[i + 1..])),
            '\\' => {
                let (_, e) = chars.next()?;
                match e {
                    'n' => out.push('\n'),
                    'r' => out.push('\r'),
                    't' => out.push('\t'),
                    '0' => out.push('\0'),
                    '\\' | '"' | '\'' => out.push(e),
                    'u' => {
                        chars.next().filter(|&(_, c)| c == '{')?;
                        let mut hex = String::new();
                        loop {
                            let (_, h) = chars.next()?;
                            if h == '}' {
                                break;
                            }
                            hex.push(h);
                        }
                        out.push(char::from_u32(u32::from_str_radix(&hex, 16).ok()?)?);
                    }
                    _ => return None,
                }
            }
            c => out.push(c),
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    fn report(outcomes: &[(Backend, Outcome)]) -> CaseReport {
        CaseReport {
            boot: Boot::Devices,
            name: "environment/edu-bound".into(),
            outcomes: outcomes.iter().cloned().collect(),
        }
    }

    #[test]
    fn a_kernel_only_pass_renders_emulated_as_not_applicable() {
        let r = report(&[(Backend::Kernel, Outcome::Pass)]);
        assert_eq!(
            r.to_line(),
            "LAB-CASE devices environment/edu-bound emulated=n/a kernel=pass agree=-"
        );
    }

    #[test]
    fn case_lines_parse_back_to_the_same_report_with_any_detail_text() {
        let detail = "driver is \"nvme\"\nnot vfio-pci \\ tab\tbell\u{7} é = x";
        let r = report(&[
            (Backend::Emulated, Outcome::Skip("needs edu model".into())),
            (Backend::Kernel, Outcome::Fail(detail.into())),
        ]);
        let line = r.to_line();
        assert!(!line.contains('\n'), "{line}");
        assert_eq!(parse_line(&format!("{line}\r")), Ok(Some(Record::Case(r))));
    }

    #[test]
    fn pass_against_fail_is_a_disagreement_and_skips_are_not_compared() {
        let fail = || Outcome::Fail("EINVAL".into());
        let disagree = report(&[
            (Backend::Emulated, Outcome::Pass),
            (Backend::Kernel, fail()),
        ]);
        assert_eq!(disagree.agreement(), Agreement::Disagree);
        assert!(disagree.to_line().contains(" agree=no "));
        let both_fail = report(&[(Backend::Emulated, fail()), (Backend::Kernel, fail())]);
        assert_eq!(both_fail.agreement(), Agreement::Agree);
        let skipped = report(&[
            (Backend::Emulated, Outcome::Pass),
            (Backend::Kernel, Outcome::Skip("x".into())),
        ]);
        assert_eq!(skipped.agreement(), Agreement::NotCompared);
    }

    #[test]
    fn done_lines_round_trip_and_other_lines_are_ignored() {
        assert_eq!(
            parse_line(&done_line(Boot::Mock, 7)),
            Ok(Some(Record::Done {
                boot: Boot::Mock,
                cases: 7
            }))
        );
        assert_eq!(
            parse_line("[    0.123] pci 0000:00:03.0: [1234:11e8]"),
            Ok(None)
        );
        assert_eq!(parse_line(""), Ok(None));
    }

    #[test]
    fn malformed_report_lines_are_errors_naming_the_problem() {
        let err = parse_line("LAB-CASE devices g/c emulated=n/a kernel=maybe agree=-").unwrap_err();
        assert!(
            err.to_string().starts_with("bad kernel value 'maybe'"),
            "{err}"
        );
        let err = parse_line("LAB-CASE devices g/c emulated=n/a agree=-").unwrap_err();
        assert!(err.to_string().starts_with("missing kernel"), "{err}");
        let err = parse_line("LAB-DONE nested cases=1").unwrap_err();
        assert!(
            err.to_string().starts_with("unknown boot 'nested'"),
            "{err}"
        );
        let err = parse_line(r#"LAB-CASE mock g/c emulated=fail emulated.why="open kernel=n/a"#)
            .unwrap_err();
        assert!(err.to_string().starts_with("bad quoted value"), "{err}");
    }
}
