//! A levee policy: retries what the API says may be retried, moves to the
//! next upstream after each failure, and waits what the upstream asked (or
//! an exponential backoff with full jitter).
//!
//! Copy this crate to write your own (docs/policy-authoring.md). The rules a
//! policy keeps:
//! - no I/O, no clock, no randomness of its own: `view.now` and
//!   `view.random` come in with every call, so a decision is a pure function
//!   of its arguments and replays exactly;
//! - import nothing: build for `wasm32-unknown-unknown`, never `wasip2`;
//! - answer fast: every call runs under the host's deadline (50 ms by
//!   default) and memory cap; a trap or overrun gets the host's fallback.

wit_bindgen::generate!({ world: "policy-component", path: "wit" });

use exports::levee::policy::policy::{
    Admission, Attempt, ConfigError, Guest, NextStep, PolicyInfo, RequestFacts, View,
};
use exports::levee::policy::types::{
    Charge, GiveUp, LimitKind, LimitScope, Outcome, Plan, Rejection, Retry,
};
use std::cell::Cell;

/// Settings, with their defaults; `configure` replaces them.
#[derive(Clone, Copy)]
struct Settings {
    max_attempts: u32,
    base_ms: u64,
    cap_ms: u64,
}

const DEFAULTS: Settings = Settings {
    max_attempts: 3,
    base_ms: 500,
    cap_ms: 8_000,
};

thread_local! {
    /// An instance is single-threaded and lives across calls; its settings
    /// are the only state a policy keeps.
    static SETTINGS: Cell<Settings> = const { Cell::new(DEFAULTS) };
}

struct MyPolicy;

impl Guest for MyPolicy {
    fn info() -> PolicyInfo {
        PolicyInfo {
            name: "my-policy".into(),
            version: env!("CARGO_PKG_VERSION").into(),
            summary: "retries what may be retried, on the next upstream".into(),
        }
    }

    /// `{"max_attempts": 1..=10, "base_ms": 1.., "cap_ms": >= base_ms}`,
    /// every key optional; the empty string means the defaults.
    fn configure(config: String) -> Result<(), ConfigError> {
        let mut s = DEFAULTS;
        if !config.trim().is_empty() {
            let doc: serde_json::Value = serde_json::from_str(&config)
                .map_err(|e| error("", format!("must be a JSON object: {e}")))?;
            let Some(obj) = doc.as_object() else {
                return Err(error("", "must be a JSON object".into()));
            };
            for (key, v) in obj {
                let n = v.as_u64();
                match key.as_str() {
                    "max_attempts" => match n {
                        Some(n @ 1..=10) => s.max_attempts = n as u32,
                        _ => return Err(error(key, format!("must be 1 to 10, got {v}"))),
                    },
                    "base_ms" => match n {
                        Some(n @ 1..) => s.base_ms = n,
                        _ => return Err(error(key, format!("must be at least 1, got {v}"))),
                    },
                    "cap_ms" => match n {
                        Some(n) => s.cap_ms = n,
                        _ => return Err(error(key, format!("must be an integer, got {v}"))),
                    },
                    _ => return Err(error(key, "is not a known key".into())),
                }
            }
            if s.cap_ms < s.base_ms {
                return Err(error("cap_ms", format!("must be at least base_ms ({})", s.base_ms)));
            }
        }
        SETTINGS.set(s);
        Ok(())
    }

    fn on_request(req: RequestFacts, view: View) -> Admission {
        if view.now >= req.deadline {
            return reject(504, "timeout_error", "the deadline passed before sending");
        }
        if view.upstreams.is_empty() {
            return reject(503, "api_error", "no upstream is configured");
        }
        let left = req.deadline - view.now;
        Admission::Admit(Plan {
            upstreams: view.upstreams.iter().map(|u| u.id).collect(),
            try_timeout_ms: left.min(60_000) as u32,
            deadline: req.deadline,
            charges: vec![Charge {
                scope: LimitScope::Upstream,
                kind: LimitKind::Requests,
                amount: 1,
            }],
        })
    }

    fn on_outcome(req: RequestFacts, order: Vec<u32>, attempt: Attempt, view: View) -> NextStep {
        let s = SETTINGS.get();
        let header_wait = match attempt.outcome {
            Outcome::Response(r) if r.status < 400 => return NextStep::Deliver,
            Outcome::Response(r) if r.spend_cap || r.should_retry == Some(false) => {
                return give_up(false, None);
            }
            Outcome::Response(r) => {
                let retryable = matches!(r.status, 408 | 409 | 429 | 500..) || r.should_retry == Some(true);
                if !retryable {
                    return NextStep::Deliver;
                }
                r.retry_after_ms.filter(|&ms| ms > 0).or(r.retry_after)
            }
            Outcome::Failure(_) => None,
        };
        if attempt.number + 1 >= s.max_attempts || !view.retry_budget {
            return give_up(header_wait.is_some(), header_wait);
        }
        // Full jitter: U(0, min(cap, base * 2^n)), drawn from the host's random.
        let ceiling = s.base_ms.saturating_mul(1 << attempt.number.min(20)).min(s.cap_ms);
        let delay = header_wait.unwrap_or_else(|| view.random % ceiling.max(1));
        if view.now.saturating_add(delay) >= req.deadline {
            return give_up(true, Some(delay));
        }
        let next = order
            .iter()
            .position(|&id| id == attempt.upstream)
            .map_or(0, |i| (i + 1) % order.len().max(1));
        NextStep::Retry(Retry {
            upstream: order.get(next).copied().unwrap_or(attempt.upstream),
            delay_ms: delay,
        })
    }
}

fn error(key: &str, message: String) -> ConfigError {
    ConfigError {
        key: key.into(),
        message,
    }
}

fn reject(status: u16, error_type: &str, message: &str) -> Admission {
    Admission::Reject(Rejection {
        status,
        error_type: error_type.into(),
        message: message.into(),
        retry_after_ms: None,
        should_retry: false,
    })
}

fn give_up(should_retry: bool, retry_after_ms: Option<u64>) -> NextStep {
    NextStep::Fail(GiveUp {
        should_retry,
        retry_after_ms,
    })
}

export!(MyPolicy);
