//! The shared decision vectors (`tests/vectors/decisions.json`): inputs and
//! the native core's answers, which every host must reproduce exactly.
//!
//! The file is written by `make vectors` (the `vectors` binary of this
//! crate), never by hand: seeded cases from
//! `levee_policy_core::sample::Sampler`, answered by the native core, in
//! the canonical JSON form of `levee_policy_core::wire`, one vector a line.

use levee_policy_core::sample::Sampler;
use levee_policy_core::wire::{Wire, WireError, field, object};
use levee_policy_core::{Admission, Attempt, NextStep, Policy, Profile, RequestFacts, View};
use serde_json::Value;
use std::path::PathBuf;

/// The format tag in the file's header.
pub const FORMAT: &str = "levee-decision-vectors/1";

/// The command that rewrites the file.
pub const REGENERATE: &str = "make vectors";

/// The committed vectors file.
pub fn path() -> PathBuf {
    crate::workspace().join("tests/vectors/decisions.json")
}

/// One input and the native core's answers to it.
#[derive(Clone, Debug, PartialEq)]
pub struct Vector {
    /// The request.
    pub req: RequestFacts,
    /// The plan's upstream order.
    pub order: Vec<u32>,
    /// The finished attempt.
    pub attempt: Attempt,
    /// The world.
    pub view: View,
    /// The answer of `on-request(req, view)`.
    pub on_request: Admission,
    /// The answer of `on-outcome(req, order, attempt, view)`.
    pub on_outcome: NextStep,
}

/// Vectors for one built-in policy under one config.
#[derive(Clone, Debug, PartialEq)]
pub struct Suite {
    /// The built-in policy (`standard`, `interactive`).
    pub policy: String,
    /// Its config (JSON; empty for the defaults).
    pub config: String,
    /// The cases.
    pub vectors: Vec<Vector>,
}

/// (policy, config, seed, sampled cases, typical cases)
const PLAN: [(&str, &str, u64, usize, usize); 3] = [
    ("standard", "", 11, 120, 12),
    (
        "standard",
        r#"{"max_attempts": 7, "backoff": {"jitter": "decorrelated", "base_ms": 100, "cap_ms": 20000}, "max_wait_ms": 10000}"#,
        12,
        60,
        6,
    ),
    ("interactive", "", 13, 90, 12),
];

/// The suites, computed afresh by the native core.
pub fn generate() -> Vec<Suite> {
    PLAN.iter()
        .map(|&(policy, config, seed, sampled, typical)| {
            let profile = profile(policy).expect("planned policies are built in");
            let mut native = Policy::new(profile);
            native.configure(config).expect("planned configs are valid");
            let mut sampler = Sampler::new(seed);
            let mut cases: Vec<_> = (0..sampled).map(|_| sampler.case()).collect();
            cases.extend((0..typical).map(|_| sampler.typical()));
            let vectors = cases
                .into_iter()
                .map(|c| Vector {
                    on_request: native.on_request(&c.req, &c.view),
                    on_outcome: native.on_outcome(&c.req, &c.order, &c.attempt, &c.view),
                    req: c.req,
                    order: c.order,
                    attempt: c.attempt,
                    view: c.view,
                })
                .collect();
            Suite {
                policy: policy.to_owned(),
                config: config.to_owned(),
                vectors,
            }
        })
        .collect()
}

/// The native profile of a built-in policy.
pub fn profile(policy: &str) -> Option<Profile> {
    match policy {
        "standard" => Some(Profile::Standard),
        "interactive" => Some(Profile::Interactive),
        _ => None,
    }
}

/// The file's text: a header, then one vector a line.
pub fn render(suites: &[Suite]) -> String {
    let mut out = format!(
        "{{\"format\": \"{FORMAT}\",\n \"regenerate\": \"{REGENERATE}\",\n \"suites\": [\n"
    );
    for (i, s) in suites.iter().enumerate() {
        out.push_str(&format!(
            "  {{\"policy\": {}, \"config\": {}, \"vectors\": [\n",
            Value::from(s.policy.as_str()),
            Value::from(s.config.as_str())
        ));
        for (j, v) in s.vectors.iter().enumerate() {
            let sep = if j + 1 == s.vectors.len() { "" } else { "," };
            out.push_str(&format!("   {}{sep}\n", v.to_json()));
        }
        let sep = if i + 1 == suites.len() { "" } else { "," };
        out.push_str(&format!("  ]}}{sep}\n"));
    }
    out.push_str(" ]}\n");
    out
}

/// Reads the file's text; errors name the suite, the vector and the field.
pub fn parse(text: &str) -> Result<Vec<Suite>, String> {
    let doc: Value = serde_json::from_str(text).map_err(|e| format!("not JSON: {e}"))?;
    let top = object(&doc, &["format", "regenerate", "suites"]).map_err(|e| e.to_string())?;
    if top.get("format").and_then(Value::as_str) != Some(FORMAT) {
        return Err(format!("`format` must be {FORMAT:?}"));
    }
    let suites = top
        .get("suites")
        .and_then(Value::as_array)
        .ok_or("`suites` must be an array")?;
    suites
        .iter()
        .enumerate()
        .map(|(i, s)| {
            let at = |e: WireError| format!("suites[{i}]: {e}");
            let m = object(s, &["policy", "config", "vectors"]).map_err(at)?;
            Ok(Suite {
                policy: field(m, "policy").map_err(at)?,
                config: field(m, "config").map_err(at)?,
                vectors: field(m, "vectors").map_err(at)?,
            })
        })
        .collect()
}

impl Wire for Vector {
    fn to_json(&self) -> Value {
        serde_json::json!({
            "req": self.req.to_json(),
            "order": self.order.to_json(),
            "attempt": self.attempt.to_json(),
            "view": self.view.to_json(),
            "on-request": self.on_request.to_json(),
            "on-outcome": self.on_outcome.to_json(),
        })
    }

    fn from_json(v: &Value) -> Result<Self, WireError> {
        let m = object(
            v,
            &[
                "req",
                "order",
                "attempt",
                "view",
                "on-request",
                "on-outcome",
            ],
        )?;
        Ok(Vector {
            req: field(m, "req")?,
            order: field(m, "order")?,
            attempt: field(m, "attempt")?,
            view: field(m, "view")?,
            on_request: field(m, "on-request")?,
            on_outcome: field(m, "on-outcome")?,
        })
    }
}
