//! `[limits]` and each upstream's `[upstreams.limits]`: rates per minute,
//! concurrency, and the admission queue.

use super::check::Checker;
use super::raw::{RawLimitSpec, RawLimits};
use crate::limits::LimitSpec;

/// The admission queue's default length.
pub const DEFAULT_QUEUE_SIZE: usize = 1024;
/// The header a client may set its priority with, when enabled.
pub const PRIORITY_HEADER: &str = "x-levee-priority";

/// Admission settings (`[limits]`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Limits {
    /// Requests that may wait for room at once; 0 refuses at once.
    pub queue_size: usize,
    /// The priority of a request (higher is admitted first).
    pub default_priority: u8,
    /// Whether a client's `x-levee-priority` header (0 to 255) replaces
    /// the default.
    pub priority_header: bool,
    /// Limits per client key (a hash of the API key), on top of the
    /// upstream's.
    pub client: LimitSpec,
}

impl Default for Limits {
    fn default() -> Limits {
        Limits {
            queue_size: DEFAULT_QUEUE_SIZE,
            default_priority: 0,
            priority_header: false,
            client: LimitSpec::default(),
        }
    }
}

impl Limits {
    /// A request's priority: its header's when enabled and valid, else the
    /// default.
    pub fn priority(&self, headers: &http::HeaderMap) -> u8 {
        self.priority_header
            .then(|| {
                headers
                    .get(PRIORITY_HEADER)?
                    .to_str()
                    .ok()?
                    .trim()
                    .parse()
                    .ok()
            })
            .flatten()
            .unwrap_or(self.default_priority)
    }
}

pub(super) fn limits(c: &mut Checker<'_>, raw: RawLimits) -> Limits {
    let d = Limits::default();
    Limits {
        queue_size: c.int(
            "limits.queue_size",
            raw.queue_size,
            0..=1_000_000,
            d.queue_size,
        ),
        default_priority: c.int("limits.default_priority", raw.default_priority, 0..=255, 0),
        priority_header: raw.priority_header.unwrap_or(false),
        client: raw
            .client
            .map_or_else(LimitSpec::default, |r| spec(c, "limits.client", r)),
    }
}

/// One scope's limits, each under `prefix`.
pub(super) fn spec(c: &mut Checker<'_>, prefix: &str, raw: RawLimitSpec) -> LimitSpec {
    let mut rate = |name: &str, v: Option<i64>, max: i64| {
        v.map(|_| c.int(&format!("{prefix}.{name}"), v, 1..=max, 0u64))
            .filter(|&n| n > 0)
    };
    let requests_per_minute = rate(
        "requests_per_minute",
        raw.requests_per_minute,
        1_000_000_000,
    );
    let input_tokens_per_minute = rate(
        "input_tokens_per_minute",
        raw.input_tokens_per_minute,
        1_000_000_000_000,
    );
    let output_tokens_per_minute = rate(
        "output_tokens_per_minute",
        raw.output_tokens_per_minute,
        1_000_000_000_000,
    );
    let max_concurrency = raw
        .max_concurrency
        .map(|_| {
            c.int(
                &format!("{prefix}.max_concurrency"),
                raw.max_concurrency,
                1..=1_000_000,
                0u32,
            )
        })
        .filter(|&n| n > 0);
    LimitSpec {
        requests_per_minute,
        input_tokens_per_minute,
        output_tokens_per_minute,
        max_concurrency,
    }
}
