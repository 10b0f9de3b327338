//! Traces: what the gateway saw of each request and what its policy
//! decided, one JSON line per request, and their replay through any policy.
//!
//! A line, in the contract's canonical JSON form
//! (`levee_policy_core::wire`):
//!
//! ```json
//! {"req": REQUEST-FACTS, "view": VIEW, "admission": ADMISSION,
//!  "attempts": [{"attempt": ATTEMPT, "view": VIEW, "step": NEXT-STEP}, ...]}
//! ```
//!
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
        Value::Object(m)
    }

    fn from_json(v: &Value) -> Result<Self, WireError> {
        let m = object(v, &["req", "view", "admission", "attempts"])?;
        Ok(Record {
            req: field(m, "req")?,
            view: field(m, "view")?,
            admission: field(m, "admission")?,
            attempts: field(m, "attempts")?,
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

/// Reads a trace: one record a line; blank lines and lines starting with
/// `#` are skipped.
pub fn parse(text: &str) -> Result<Vec<Record>, TraceError> {
    let mut records = Vec::new();
    for (i, line) in text.lines().enumerate() {
        let line_no = i + 1;
        let trimmed = line.trim();
        if trimmed.is_empty() || trimmed.starts_with('#') {
            continue;
        }
        let fail = |message: String| TraceError {
            line: line_no,
            message,
        };
        let value: Value =
            serde_json::from_str(trimmed).map_err(|e| fail(format!("not JSON: {e}")))?;
        let record = Record::from_json(&value).map_err(|e| fail(e.to_string()))?;
        if record.attempts.is_empty() && !matches!(record.admission, Some(Admission::Reject(_))) {
            return Err(fail(
                "`attempts` is empty: replay needs at least the first attempt's outcome".into(),
            ));
        }
        records.push(record);
    }
    Ok(records)
}
