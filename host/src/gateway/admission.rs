//! The request path's side of the limiter: build it from the config,
//! admit a planned request (or answer 429 locally), feed it each
//! upstream's rate-limit headers, and settle a response's usage when its
//! body ends.

use super::Runtime;
use super::reply::{Body, LocalError};
use crate::config::Config;
use crate::core::{Charge, LimitKind, RequestFacts};
use crate::limits::admit::{Admitter, Ask, Refused, Reservation};
use crate::limits::headers::Found;
use crate::limits::memory::MemoryLimiter;
use crate::limits::queue::Place;
use crate::limits::shared::SharedLimiter;
use crate::limits::usage::UsageScan;
use crate::limits::{ClientKey, LimitSpec, Limiter, Usage};
use crate::telemetry::Metrics;
use crate::upstream::UpstreamRuntime;
use http::{HeaderMap, Response, StatusCode};
use std::sync::Arc;
use std::time::Instant;

/// The limiter for `config`'s upstreams (in memory, or shared through
/// Redis), with its queue.
pub(super) fn admitter(config: &Config, metrics: &Metrics) -> anyhow::Result<Arc<Admitter>> {
    let specs: Vec<LimitSpec> = config.upstreams.iter().map(|u| u.limits).collect();
    let client = config.limits.client;
    let now = crate::clock::now_ms();
    let limiter: Arc<dyn Limiter> = match &config.limits.redis {
        Some(redis) => {
            let names: Vec<String> = config.upstreams.iter().map(|u| u.name.clone()).collect();
            SharedLimiter::start(redis, &names, &specs, client, metrics.limits.clone(), now)?
        }
        None => {
            metrics.limits.backend("memory");
            Arc::new(MemoryLimiter::new(&specs, client, now))
        }
    };
    Ok(Arc::new(Admitter::new(
        limiter,
        config.limits.queue_size,
        metrics.limits.queue_depth.clone(),
    )))
}

/// The client key a request is limited under, when client limits are set.
pub(super) fn client_key(rt: &Runtime, headers: &HeaderMap) -> Option<ClientKey> {
    rt.limits
        .client
        .is_set()
        .then(|| ClientKey::from_headers(headers))
        .flatten()
}

/// Reserves `charges` on the first upstream of `order` with room, waiting
/// in the queue while the deadline allows. The answer when that fails is
/// a 429 in the API's shape, with `retry-after` from the buckets.
#[allow(clippy::too_many_arguments)]
pub(super) async fn admit(
    rt: &Runtime,
    metrics: &Metrics,
    request_id: &str,
    facts: &RequestFacts,
    client: Option<&ClientKey>,
    order: &[u32],
    charges: &[Charge],
    deadline: u64,
    place: Option<Place<'_>>,
) -> Result<(u32, Reservation), Response<Body>> {
    let started = Instant::now();
    let ask = Ask {
        order,
        client,
        charges,
        priority: facts.priority,
        deadline: admit_by(deadline, crate::clock::now_ms()),
    };
    let refused = match rt.admitter.admit(ask, place).await {
        Ok(admitted) => {
            metrics.limits.waited(started.elapsed());
            return Ok(admitted);
        }
        Err(r) => r,
    };
    let (reason, message, should_retry, retry_after_ms) = match refused {
        Refused::QueueFull { retry_after_ms } => (
            "queue_full",
            "levee's admission queue is full; the rate limits have no room now".to_owned(),
            true,
            Some(retry_after_ms),
        ),
        Refused::Deadline { retry_after_ms } => (
            "rate_limited",
            format!(
                "the rate limits have no room for this request before its deadline; room in {retry_after_ms} ms"
            ),
            true,
            Some(retry_after_ms),
        ),
        Refused::TooLarge(kind) => (
            "too_large_for_limit",
            format!(
                "this request's {} exceed the per-minute limit on its own; it can never be admitted",
                kind_label(kind).replace('_', " ")
            ),
            false,
            None,
        ),
        Refused::Unavailable => (
            "limiter_unavailable",
            "levee's shared rate limiter (Redis) cannot be reached, and `limits.redis.on_failure` is \"closed\"".to_owned(),
            true,
            Some(crate::limits::admit::BUSY_RECHECK_MS),
        ),
    };
    metrics.local_rejection(reason);
    let (status, error_type) = match refused {
        Refused::Unavailable => (StatusCode::SERVICE_UNAVAILABLE, "api_error"),
        _ => (StatusCode::TOO_MANY_REQUESTS, "rate_limit_error"),
    };
    Err(LocalError {
        status,
        error_type,
        message: &message,
        should_retry,
        retry_after_ms,
    }
    .into_response(request_id, 0))
}

/// When admission gives up on a request due at `deadline`: a tenth of the
/// time left (at most a second) before it, so that the client hears
/// levee's 429 and its `retry-after` rather than its own timeout, and an
/// admitted request has time to be answered.
fn admit_by(deadline: u64, now: u64) -> u64 {
    let margin = (deadline.saturating_sub(now) / 10).min(ADMIT_MARGIN_MAX_MS);
    deadline - margin
}

/// The most time admission leaves before a request's deadline.
const ADMIT_MARGIN_MAX_MS: u64 = 1_000;

/// Feeds an upstream's rate-limit headers, received at `now`, to the
/// limiter: they correct its buckets.
pub(super) fn observe(rt: &Runtime, id: u32, found: &Found, now: u64) {
    for (kind, report) in found.read(now) {
        rt.admitter.limiter.observe(id, kind, report, now);
    }
}

/// An upstream answered 429 asking for `wait_ms`: its buckets close until
/// then.
pub(super) fn rate_limited(rt: &Runtime, id: u32, wait_ms: Option<u64>) {
    if let Some(wait) = wait_ms.filter(|&w| w > 0) {
        let until = crate::clock::now_ms().saturating_add(wait);
        rt.admitter.limiter.close_until(id, until);
    }
}

/// A body's usage watch: it reads the bytes for the usage, and settles
/// the reservation when the body ends.
pub(super) struct Settle {
    scan: UsageScan,
    reservation: Option<Reservation>,
    /// An error response: it produced no output, whatever it says.
    error: bool,
}

impl Settle {
    /// Watches a body (`sse` or JSON; an `error` response or not) that
    /// `reservation` paid for.
    pub(super) fn new(sse: bool, reservation: Option<Reservation>, error: bool) -> Settle {
        Settle {
            scan: UsageScan::new(sse),
            reservation,
            error,
        }
    }

    /// The body's next bytes.
    pub(super) fn feed(&mut self, data: &[u8]) {
        self.scan.feed(data);
    }

    /// The body ended: settle the reservation and count the tokens; the
    /// usage, for the access log.
    pub(super) fn finish(self, metrics: &Metrics, up: &UpstreamRuntime) -> Usage {
        let mut usage: Usage = self.scan.usage();
        if self.error && usage.output.is_none() {
            usage.output = Some(0);
        }
        if let Some(n) = usage.input {
            metrics.limits.tokens(&up.label, "input", n);
        }
        if let Some(n) = usage.output {
            metrics.limits.tokens(&up.label, "output", n);
        }
        if let Some(r) = self.reservation {
            r.finish(usage);
        }
        usage
    }
}

fn kind_label(kind: LimitKind) -> &'static str {
    match kind {
        LimitKind::Requests => "requests",
        LimitKind::InputTokens => "input_tokens",
        LimitKind::OutputTokens => "output_tokens",
        LimitKind::Concurrency => "concurrent_requests",
    }
}

/// The answer when the policy said "queue" but the queue is full.
pub(super) fn queue_full(
    metrics: &Metrics,
    request_id: &str,
    retry_after_ms: u64,
) -> Response<Body> {
    metrics.local_rejection("queue_full");
    LocalError {
        status: StatusCode::TOO_MANY_REQUESTS,
        error_type: "rate_limit_error",
        message: "levee's admission queue is full; every upstream is busy",
        should_retry: true,
        retry_after_ms: Some(retry_after_ms.max(1)),
    }
    .into_response(request_id, 0)
}

#[cfg(test)]
mod tests {
    use super::admit_by;

    #[test]
    fn admission_leaves_a_tenth_of_the_time_at_most_a_second() {
        assert_eq!(admit_by(13_000, 10_000), 12_700, "3 s left: 300 ms");
        assert_eq!(admit_by(610_000, 10_000), 609_000, "10 min left: 1 s");
        assert_eq!(admit_by(10_000, 10_000), 10_000, "none left");
        assert_eq!(admit_by(5_000, 10_000), 5_000, "already past");
    }
}
