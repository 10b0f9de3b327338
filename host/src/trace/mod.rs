//! Traces: what the gateway saw of each request and what its policy
//! decided, one JSON line per request, and their replay through any policy.
//!
//! A line, in the contract's canonical JSON form
//! (`levee_policy_core::wire`):
//!
//! ```json
//! {"req": REQUEST-FACTS, "view": VIEW, "admission": ADMISSION,
//!  "attempts": [{"attempt": ATTEMPT, "view": VIEW, "step": NEXT-STEP}, ...],
//!  "model_class": "sonnet"}
//! ```
//!
//! - `model_class` is the class the request's limits were kept under: the
//!   views show that class's 429 closures and budgets (optional).
//! - `view` is the world at admission; `admission` what the policy decided
//!   (optional in a hand-written trace).
//! - Each attempt holds what the upstream answered (`attempt.outcome`) and,
//!   when the host asked the policy about it, the view it passed and the
//!   step the policy chose. A success is delivered without asking, so it
//!   has neither. When a rail turned the policy's retry into a give-up,
//!   `overruled` names it (`attempt-ceiling`, `deadline`,
//!   `unknown-upstream`, `retry-budget`). Only `attempt` is required.
//!
//! A trace holds decision inputs only: no header, no body, no key. Secrets
//! cannot appear in it.

mod replay;
mod writer;

pub use replay::{Replay, Summary, replay};
pub use writer::TraceWriter;

use levee_exchange::Rail;
use levee_policy_core::wire::{Wire, WireError, field, object};
use levee_policy_core::{Admission, Attempt, NextStep, RequestFacts, View};
use serde_json::{Map, Value};

/// One request as recorded.
#[derive(Clone, Debug, PartialEq)]
pub struct Record {
    /// The request.
    pub req: RequestFacts,
    /// The world at admission.
    pub view: View,
    /// What the policy decided at admission, if recorded.
    pub admission: Option<Admission>,
    /// The attempts, in order.
    pub attempts: Vec<AttemptRecord>,
    /// The request's model class, whose closures and budgets the views
    /// show (optional: traces before classes have none).
    pub model_class: Option<String>,
}

/// One attempt as recorded.
#[derive(Clone, Debug, PartialEq)]
pub struct AttemptRecord {
    /// The attempt and how the upstream answered it.
    pub attempt: Attempt,
    /// The view passed to `on-outcome`, when the policy was asked.
    pub view: Option<View>,
    /// What the policy decided, when it was asked.
    pub step: Option<NextStep>,
    /// The rail that turned the policy's retry into a give-up, if one did.
    pub overruled: Option<Rail>,
}

impl Wire for AttemptRecord {
    fn to_json(&self) -> Value {
        let mut m = Map::new();
        m.insert("attempt".into(), self.attempt.to_json());
        if let Some(v) = &self.view {
            m.insert("view".into(), v.to_json());
        }
        if let Some(s) = &self.step {
            m.insert("step".into(), s.to_json());
        }
        if let Some(rail) = self.overruled {
            m.insert("overruled".into(), rail.name().into());
        }
        Value::Object(m)
    }

    fn from_json(v: &Value) -> Result<Self, WireError> {
        let m = object(v, &["attempt", "view", "step", "overruled"])?;
        let overruled = match field::<Option<String>>(m, "overruled")? {
            None => None,
            Some(name) => Some(Rail::from_name(&name).ok_or_else(|| {
                let names: Vec<&str> = Rail::ALL.iter().map(|r| r.name()).collect();
                WireError::new(format!(
                    "expected one of: {}; got {name:?}",
                    names.join(", ")
                ))
                .within("overruled")
            })?),
        };
        Ok(AttemptRecord {
            attempt: field(m, "attempt")?,
            view: field(m, "view")?,
            step: field(m, "step")?,
            overruled,
        })
    }
}

impl Wire for Record {
    fn to_json(&self) -> Value {
        let mut m = Map::new();
        m.insert("req".into(), self.req.to_json());
        m.insert("view".into(), self.view.to_json());
        if let Some(a) = &self.admission {
            m.insert("admission".into(), a.to_json());
        }
        m.insert("attempts".into(), self.attempts.to_json());
        if let Some(c) = &self.model_class {
            m.insert("model_class".into(), c.clone().into());
        }
        Value::Object(m)
    }

    fn from_json(v: &Value) -> Result<Self, WireError> {
        let m = object(v, &["req", "view", "admission", "attempts", "model_class"])?;
        Ok(Record {
            req: field(m, "req")?,
            view: field(m, "view")?,
            admission: field(m, "admission")?,
            attempts: field(m, "attempts")?,
            model_class: field(m, "model_class")?,
        })
    }
}

/// A trace line that could not be read.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("line {line}: {message}")]
pub struct TraceError {
    /// 1-based line number.
    pub line: usize,
    /// What is wrong, with the field's path.
    pub message: String,
}

/// The longest trace line read: a record with many upstreams' views is
/// tens of KiB; a line without end is refused at this length, not read
/// into memory.
pub const MAX_LINE_BYTES: usize = 16 << 20;

/// Reads a trace: one record a line; blank lines and lines starting with
/// `#` are skipped.
pub fn parse(text: &str) -> Result<Vec<Record>, TraceError> {
    read(text.as_bytes()).collect()
}

/// Reads a trace as it goes, one record at a time: memory holds one line
/// (at most [`MAX_LINE_BYTES`]), whatever the trace's size. Stops after
/// the first error.
pub fn read(reader: impl std::io::BufRead) -> impl Iterator<Item = Result<Record, TraceError>> {
    let mut reader = reader;
    let mut line_no = 0;
    let mut buf = Vec::new();
    let mut failed = false;
    std::iter::from_fn(move || {
        use std::io::{BufRead, Read};
        while !failed {
            line_no += 1;
            buf.clear();
            let fail = |message: String| TraceError {
                line: line_no,
                message,
            };
            let limit = MAX_LINE_BYTES as u64 + 1;
            match reader.by_ref().take(limit).read_until(b'\n', &mut buf) {
                Ok(0) => return None,
                Ok(_) if buf.len() > MAX_LINE_BYTES => {
                    failed = true;
                    let max = MAX_LINE_BYTES >> 20;
                    return Some(Err(fail(format!("longer than {max} MiB"))));
                }
                Ok(_) => {}
                Err(e) => {
                    failed = true;
                    return Some(Err(fail(format!("cannot read: {e}"))));
                }
            }
            let parsed = std::str::from_utf8(&buf)
                .map_err(|e| fail(format!("not UTF-8: {e}")))
                .and_then(|line| parse_line(line.trim()).map_err(fail));
            match parsed {
                Ok(None) => continue,
                Ok(Some(record)) => return Some(Ok(record)),
                Err(e) => {
                    failed = true;
                    return Some(Err(e));
                }
            }
        }
        None
    })
}

/// One line: `None` for a blank line or a comment.
fn parse_line(trimmed: &str) -> Result<Option<Record>, String> {
    if trimmed.is_empty() || trimmed.starts_with('#') {
        return Ok(None);
    }
    let value: Value = serde_json::from_str(trimmed).map_err(|e| format!("not JSON: {e}"))?;
    let record = Record::from_json(&value).map_err(|e| e.to_string())?;
    if record.attempts.is_empty() && !matches!(record.admission, Some(Admission::Reject(_))) {
        return Err(
            "`attempts` is empty: replay needs at least the first attempt's outcome".into(),
        );
    }
    Ok(Some(record))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_line_longer_than_the_limit_is_refused_without_reading_it_whole() {
        let mut text = b"# a comment\n\n".to_vec();
        text.extend(std::iter::repeat_n(b'x', MAX_LINE_BYTES + 10));
        let mut records = read(&text[..]);
        let e = records.next().unwrap().unwrap_err();
        assert_eq!((e.line, e.message.as_str()), (3, "longer than 16 MiB"));
        assert!(records.next().is_none(), "reading stops at an error");
        assert_eq!(read(&b"\n# only comments\n"[..]).count(), 0);
    }
}
