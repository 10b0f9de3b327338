//! The mock's own rate limit, modelled on the API's: continuously
//! refilling per-minute buckets for requests, input tokens and output
//! tokens. Every answer carries `anthropic-ratelimit-*` headers read from
//! the buckets (with the API's combined `anthropic-ratelimit-tokens-*`
//! beside the token buckets' own), and a request that does not fit gets
//! the API's 429.
//!
//! The mock knows what a step will report before it plays it, so it
//! charges the whole usage when the request arrives: one request, the
//! input tokens (`input_tokens + cache_creation_input_tokens`) and the
//! output tokens the reply or the SSE script reports. A request fits only
//! when every bucket holds its whole cost, which is stricter than the API
//! (that admits on an estimate), so a client that stays within the mock's
//! limits stays within the API's.

use super::script::{Reply, RetryAfter, Script, Step, rfc3339, set_header};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant, SystemTime};

/// One minute, the window every limit refills over.
const MINUTE: Duration = Duration::from_secs(60);

/// Per-minute limits; `None` is unlimited (and sends no headers).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct RateLimits {
    /// Requests per minute.
    pub requests_per_minute: Option<u64>,
    /// Input tokens per minute.
    pub input_tokens_per_minute: Option<u64>,
    /// Output tokens per minute.
    pub output_tokens_per_minute: Option<u64>,
}

impl RateLimits {
    /// `n` requests per minute, no token limits.
    pub fn requests(n: u64) -> Self {
        RateLimits {
            requests_per_minute: Some(n),
            ..Self::default()
        }
    }

    /// Adds an input-tokens-per-minute limit.
    pub fn input_tokens(mut self, n: u64) -> Self {
        self.input_tokens_per_minute = Some(n);
        self
    }

    /// Adds an output-tokens-per-minute limit.
    pub fn output_tokens(mut self, n: u64) -> Self {
        self.output_tokens_per_minute = Some(n);
        self
    }
}

/// What one request costs beyond the request itself.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Cost {
    /// `input_tokens + cache_creation_input_tokens`.
    pub input: u64,
    /// `output_tokens`.
    pub output: u64,
}

impl Cost {
    /// The usage `step` reports: a 2xx JSON reply's `usage`, or an SSE
    /// script's `message_start` input and last reported output. Anything
    /// else costs no tokens.
    pub fn of(step: &Step) -> Cost {
        match step {
            Step::Reply(r) if (200..300).contains(&r.status) => {
                let body: serde_json::Value = serde_json::from_slice(&r.body).unwrap_or_default();
                Cost::from_usage(&body["usage"], Cost::default())
            }
            Step::Sse(script) => {
                let mut cost = Cost::default();
                for (_, chunk) in &script.chunks {
                    for data in String::from_utf8_lossy(chunk).lines() {
                        let Some(data) = data.strip_prefix("data:") else {
                            continue;
                        };
                        let event: serde_json::Value =
                            serde_json::from_str(data.trim()).unwrap_or_default();
                        cost = match event["type"].as_str() {
                            Some("message_start") => {
                                Cost::from_usage(&event["message"]["usage"], cost)
                            }
                            Some("message_delta") => Cost::from_usage(&event["usage"], cost),
                            _ => cost,
                        };
                    }
                }
                cost
            }
            _ => Cost::default(),
        }
    }

    /// `usage`'s counts where present, `prior`'s otherwise.
    fn from_usage(usage: &serde_json::Value, prior: Cost) -> Cost {
        let n = |k: &str| usage[k].as_u64();
        let input = match (n("input_tokens"), n("cache_creation_input_tokens")) {
            (None, None) => prior.input,
            (i, c) => i.unwrap_or(0) + c.unwrap_or(0),
        };
        Cost {
            input,
            output: n("output_tokens").unwrap_or(prior.output),
        }
    }
}

/// One continuously refilling bucket: `capacity` per minute.
#[derive(Clone, Debug)]
struct Bucket {
    capacity: u64,
    level: f64,
    updated: Instant,
}

impl Bucket {
    fn new(capacity: u64, now: Instant) -> Bucket {
        Bucket {
            capacity,
            level: capacity as f64,
            updated: now,
        }
    }

    fn per_sec(&self) -> f64 {
        self.capacity as f64 / MINUTE.as_secs_f64()
    }

    fn refill(&mut self, now: Instant) {
        let gained = now.saturating_duration_since(self.updated).as_secs_f64() * self.per_sec();
        self.level = (self.level + gained).min(self.capacity as f64);
        self.updated = self.updated.max(now);
    }

    /// How long until `amount` fits (zero when it does now); `None` when
    /// it exceeds the capacity.
    fn wait_for(&self, amount: u64) -> Option<Duration> {
        if amount > self.capacity {
            return None;
        }
        let missing = amount as f64 - self.level;
        Some(Duration::from_secs_f64((missing / self.per_sec()).max(0.0)))
    }

    /// The whole tokens (or requests) left.
    fn remaining(&self) -> u64 {
        self.level.max(0.0).floor() as u64
    }

    /// How long until the bucket is full.
    fn full_in(&self) -> Duration {
        let missing = self.capacity as f64 - self.level;
        Duration::from_secs_f64((missing / self.per_sec()).max(0.0))
    }
}

/// The buckets of one mock, and what they answer.
#[derive(Clone, Debug)]
pub struct Buckets {
    /// `(header family, bucket)`: `requests`, `input-tokens`, `output-tokens`.
    buckets: Vec<(&'static str, Bucket)>,
}

/// The verdict on one request.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Admission {
    /// Whether it fit (and was charged).
    pub admitted: bool,
    /// When refused, how long until it would fit (a minute when it never
    /// can).
    pub retry_after: Duration,
    /// `anthropic-ratelimit-{family}-{limit,remaining,reset}` after the
    /// verdict: remaining is the whole tokens left, reset (RFC 3339, whole
    /// seconds rounded up) is when the bucket is full again. With a token
    /// limit, `anthropic-ratelimit-tokens-*` too: the API's "most
    /// restrictive token limit in effect", which the mock reads as the
    /// token bucket with the fewest whole tokens left (input on a tie).
    pub headers: Vec<(String, String)>,
}

impl Admission {
    /// `retry-after` in whole seconds, rounded up, at least 1.
    pub fn retry_after_secs(&self) -> u64 {
        self.retry_after.as_secs_f64().ceil().max(1.0) as u64
    }
}

impl Buckets {
    /// Full buckets for `limits` at `now`.
    pub fn new(limits: RateLimits, now: Instant) -> Buckets {
        let families = [
            ("requests", limits.requests_per_minute),
            ("input-tokens", limits.input_tokens_per_minute),
            ("output-tokens", limits.output_tokens_per_minute),
        ];
        Buckets {
            buckets: families
                .into_iter()
                .filter_map(|(f, cap)| Some((f, Bucket::new(cap?.max(1), now))))
                .collect(),
        }
    }

    /// Charges one request of `cost` if every bucket holds it; otherwise
    /// charges nothing and says when it would fit. `wall` is the
    /// wall-clock time matching `now`, for the reset headers.
    pub fn admit(&mut self, cost: Cost, now: Instant, wall: SystemTime) -> Admission {
        let amount = |family: &str| match family {
            "requests" => 1,
            "input-tokens" => cost.input,
            _ => cost.output,
        };
        let mut wait = Some(Duration::ZERO);
        for (family, b) in &mut self.buckets {
            b.refill(now);
            wait = match (wait, b.wait_for(amount(family))) {
                (Some(a), Some(b)) => Some(a.max(b)),
                _ => None,
            };
        }
        let admitted = wait == Some(Duration::ZERO);
        if admitted {
            for (family, b) in &mut self.buckets {
                b.level -= amount(family) as f64;
            }
        }
        let tightest = self
            .buckets
            .iter()
            .filter(|(family, _)| family.ends_with("tokens"))
            .min_by_key(|(_, b)| b.remaining())
            .map(|(_, b)| ("tokens", b));
        let headers = self
            .buckets
            .iter()
            .map(|(family, b)| (*family, b))
            .chain(tightest)
            .flat_map(|(family, b)| {
                let reset = wall + b.full_in();
                let reset = reset + Duration::from_nanos(999_999_999);
                let prefix = format!("anthropic-ratelimit-{family}");
                [
                    (format!("{prefix}-limit"), b.capacity.to_string()),
                    (format!("{prefix}-remaining"), b.remaining().to_string()),
                    (format!("{prefix}-reset"), rfc3339(reset)),
                ]
            })
            .collect();
        Admission {
            admitted,
            retry_after: if admitted {
                Duration::ZERO
            } else {
                wait.unwrap_or(MINUTE)
            },
            headers,
        }
    }
}

/// The next step of `script`, under `limits` when set: the step with the
/// limit's headers added, or a 429 in its place (counted in
/// `rate_limited`; the step stays queued).
pub(crate) fn limited_step(
    limits: Option<&mut Buckets>,
    script: &mut Script,
    rate_limited: &AtomicU64,
    at: Instant,
    request: &http::HeaderMap,
) -> Step {
    let Some(buckets) = limits else {
        return script.step_for(request);
    };
    let verdict = buckets.admit(Cost::of(script.peek_step()), at, SystemTime::now());
    let mut step = if verdict.admitted {
        script.step_for(request)
    } else {
        rate_limited.fetch_add(1, Ordering::SeqCst);
        let retry_after = RetryAfter::Secs(verdict.retry_after_secs());
        Step::Reply(Reply::rate_limited(retry_after))
    };
    let headers = match &mut step {
        Step::Reply(r) => &mut r.headers,
        Step::Sse(s) => &mut s.headers,
        _ => return step,
    };
    for (name, value) in verdict.headers {
        set_header(headers, name, value);
    }
    step
}
