//! The request path's side of the limiter: build it from the config,
//! admit a planned request (or answer 429 locally), feed it each
//! upstream's rate-limit headers, and settle a response's usage when its
//! body ends.

use super::Runtime;
use crate::clock::now_ms;
use crate::config::Config;
use crate::core::LimitKind;
use crate::limits::admit::{Admitter, Ask, Refused, Reservation};
use crate::limits::headers::Found;
use crate::limits::memory::MemoryLimiter;
use crate::limits::queue::Place;
use crate::limits::shared::SharedLimiter;
use crate::limits::usage::UsageScan;
use crate::limits::{Class, ClientKey, Lane, Limiter, ScopeLimits, Usage};
use crate::telemetry::Metrics;
use crate::upstream::UpstreamRuntime;
use http::HeaderMap;
use levee_exchange::{Exchange, LocalReply};
use std::sync::Arc;
use std::time::Instant;

/// The limiter for `config`'s upstreams (in memory, or shared through
/// Redis), with its queue.
pub(super) fn admitter(config: &Config, metrics: &Metrics) -> anyhow::Result<Arc<Admitter>> {
    let specs: Vec<ScopeLimits> = config.upstreams.iter().map(|u| u.limits.clone()).collect();
    let client = config.limits.client.clone();
    let now = now_ms();
    let limiter: Arc<dyn Limiter> = match &config.limits.redis {
        Some(redis) => {
            let names: Vec<String> = config.upstreams.iter().map(|u| u.name.clone()).collect();
            let lanes = (&config.limits.classes, config.limits.ramp);
            let metrics = metrics.limits.clone();
            SharedLimiter::start(redis, &names, &specs, client, lanes, metrics, now)?
        }
        None => {
            metrics.limits.backend("memory");
            let limiter = MemoryLimiter::scoped(&specs, client, now);
            Arc::new(limiter.with_ramp(config.limits.ramp))
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

/// Reserves the plan's charges in the request's class on the first
/// upstream of the exchange's order with room, waiting in the class's line
/// of the queue (at `place`, if the request holds one already) while the
/// deadline allows. When that fails: a 429 in the API's shape, with
/// `retry-after` from the buckets.
pub(super) async fn admit(
    rt: &Runtime,
    metrics: &Metrics,
    x: &Exchange,
    client: Option<&ClientKey>,
    (class, place): (Class, Option<Place<'_>>),
) -> Result<(u32, Reservation), LocalReply> {
    let started = Instant::now();
    let ask = Ask {
        order: x.order(),
        class,
        client,
        charges: x.plan().map_or(&[][..], |p| &p.charges),
        priority: x.request().priority,
        deadline: admit_by(x.deadline(), now_ms()),
    };
    match rt.admitter.admit(ask, place).await {
        Ok(admitted) => {
            metrics.limits.waited(started.elapsed());
            Ok(admitted)
        }
        Err(Refused::QueueFull { retry_after_ms }) => Err(LocalReply::queue_full(retry_after_ms)),
        Err(Refused::Deadline { retry_after_ms }) => Err(LocalReply::rate_limited(retry_after_ms)),
        Err(Refused::TooLarge(kind)) => Err(LocalReply::too_large_for_limit(
            &kind_label(kind).replace('_', " "),
        )),
        Err(Refused::Unavailable) => Err(LocalReply::limiter_unavailable(
            crate::limits::admit::BUSY_RECHECK_MS,
        )),
    }
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

/// Feeds the rate-limit headers of an answer in `lane`, received at
/// `now`, to the limiter: they correct the lane's buckets.
pub(super) fn observe(rt: &Runtime, lane: Lane, found: &Found, now: u64) {
    for (kind, report) in found.read(now) {
        rt.admitter.limiter.observe(lane, kind, report, now);
    }
}

/// An upstream answered 429 in `lane` asking for `wait_ms`: the lane's
/// buckets close until then.
pub(super) fn rate_limited(rt: &Runtime, lane: Lane, wait_ms: Option<u64>) {
    if let Some(wait) = wait_ms.filter(|&w| w > 0) {
        let until = now_ms().saturating_add(wait);
        rt.admitter.limiter.close_until(lane, until);
    }
}

/// A body's usage watch: it reads the bytes for the usage, and settles
/// the reservation when the body ends.
pub(super) struct Settle {
    scan: UsageScan,
    /// The body's decoder, when it is compressed.
    decoder: Option<super::encoding::Decoder>,
    reservation: Option<Reservation>,
    /// An error response: it produced no output, whatever it says.
    error: bool,
    /// The request's class's input limits count cache reads.
    cache_reads_count: bool,
}

impl Settle {
    /// Watches a body (`sse` or JSON; an `error` response or not) that
    /// `reservation` paid for.
    pub(super) fn new(sse: bool, reservation: Option<Reservation>, error: bool) -> Settle {
        Settle {
            scan: UsageScan::new(sse),
            decoder: None,
            reservation,
            error,
            cache_reads_count: false,
        }
    }

    /// Settles as limits that count cache reads do, when `count`.
    pub(super) fn counting_cache_reads(mut self, count: bool) -> Settle {
        self.cache_reads_count = count;
        self
    }

    /// Reads the body through a decoder of `coding`, when it has one.
    pub(super) fn decoding(mut self, coding: Option<super::encoding::Coding>) -> Settle {
        self.decoder = coding.map(super::encoding::Decoder::new);
        self
    }

    /// The body's next bytes, as sent.
    pub(super) fn feed(&mut self, data: &[u8]) {
        match self.decoder.as_mut() {
            Some(d) => self.scan.feed(&d.feed(data)),
            None => self.scan.feed(data),
        }
    }

    /// The body ended: settle the reservation and count the tokens; the
    /// usage, for the access log.
    pub(super) fn finish(self, metrics: &Metrics, up: &UpstreamRuntime) -> Usage {
        let mut usage: Usage = self.scan.usage();
        if self.error && usage.output.is_none() {
            usage.output = Some(0);
        }
        for (direction, n) in [
            ("input", usage.input),
            ("cache_write", usage.cache_write),
            ("cache_read", usage.cache_read),
            ("output", usage.output),
        ] {
            // Most answers read and write no cache: nothing to count.
            if let Some(n) = n.filter(|&n| n > 0) {
                metrics.limits.tokens(&up.label, direction, n);
            }
        }
        if let Some(r) = self.reservation {
            r.finish(usage.limited_as(self.cache_reads_count));
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
