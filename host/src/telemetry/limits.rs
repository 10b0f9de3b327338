//! The limiter's metrics: queue depth and wait, and tokens used. Refusals
//! are counted in `levee_local_rejections`, by reason.

use crate::telemetry::activity::events::{EventKind, Events};
use crate::telemetry::few::Few;
use crate::telemetry::sharded::{self, Histogram};
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

/// Time a request waited in the admission queue, in seconds.
const WAIT_BUCKETS: [f64; 10] = [0.01, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 15.0, 60.0];

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct BackendLabels {
    backend: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct SwitchLabels {
    to: &'static str,
}

/// Where admission's limits live: in this process, in Redis, or (with
/// Redis away) this process's share of them, or nowhere (refusing).
const BACKENDS: [&str; 4] = ["memory", "redis", "fallback", "refusing"];

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct TokenLabels {
    upstream: Arc<String>,
    direction: &'static str,
}

/// Admission and token metrics. Clones share the series.
#[derive(Clone, Debug)]
pub struct LimitMetrics {
    /// Requests waiting for admission now (shared with the queue).
    pub queue_depth: Gauge,
    queue_wait: Histogram,
    tokens: Family<TokenLabels, sharded::Counter>,
    seen_tokens: Arc<Few<(Arc<String>, &'static str), sharded::Counter>>,
    backend: Family<BackendLabels, Gauge>,
    switches: Family<SwitchLabels, Counter>,
    /// Where a switch is told as an event for `/status`.
    events: Arc<Events>,
    /// Shared by the clones.
    on: Arc<AtomicBool>,
}

impl Default for LimitMetrics {
    fn default() -> LimitMetrics {
        LimitMetrics::telling(Arc::default())
    }
}

impl LimitMetrics {
    /// Metrics that tell switches to `events`.
    pub fn telling(events: Arc<Events>) -> LimitMetrics {
        let switches: Family<SwitchLabels, Counter> = Family::default();
        // Every switch counter exists from the start, so that the first
        // switch shows as an increase.
        for to in &BACKENDS[1..] {
            drop(switches.get_or_create(&SwitchLabels { to }));
        }
        LimitMetrics {
            queue_depth: Gauge::default(),
            queue_wait: Histogram::new(WAIT_BUCKETS),
            tokens: Family::default(),
            seen_tokens: Arc::default(),
            backend: Family::default(),
            switches,
            events,
            on: Arc::new(AtomicBool::new(true)),
        }
    }

    /// Turns recording on or off (`[admin] metrics`).
    pub fn set_enabled(&self, on: bool) {
        self.on.store(on, Ordering::Relaxed);
    }

    /// A request was admitted after waiting `waited`.
    pub fn waited(&self, waited: Duration) {
        if !self.on.load(Ordering::Relaxed) {
            return;
        }
        self.queue_wait.observe(waited.as_secs_f64());
    }

    /// Tokens a response reported (`input` or `output`).
    pub fn tokens(&self, upstream: &Arc<String>, direction: &'static str, n: u64) {
        if !self.on.load(Ordering::Relaxed) {
            return;
        }
        self.seen_tokens.with(
            |(u, d)| u == upstream && *d == direction,
            || {
                let labels = TokenLabels {
                    upstream: upstream.clone(),
                    direction,
                };
                let c = self.tokens.get_or_create(&labels).clone();
                ((upstream.clone(), direction), c)
            },
            |c| {
                c.inc_by(n);
            },
        );
    }

    /// The limits now live in `backend` (one of [`BACKENDS`]).
    pub fn backend(&self, backend: &'static str) {
        for b in BACKENDS {
            self.backend
                .get_or_create(&BackendLabels { backend: b })
                .set(i64::from(b == backend));
        }
    }

    /// The shared limiter switched to `to` (`redis`, `fallback` or
    /// `refusing`), for the reason `why`.
    pub fn switched(&self, to: &'static str, why: &str) {
        self.switches.get_or_create(&SwitchLabels { to }).inc();
        self.backend(to);
        self.events
            .record(EventKind::LimiterBackend, None, format!("{to}: {why}"));
    }

    /// Adds these metrics to `r`.
    pub fn register(&self, r: &mut Registry) {
        r.register(
            "levee_admission_queue_depth",
            "Requests waiting in the admission queue for room under the rate limits",
            self.queue_depth.clone(),
        );
        r.register(
            "levee_admission_wait_seconds",
            "Time a request waited for admission (0 when admitted at once)",
            self.queue_wait.clone(),
        );
        r.register(
            "levee_tokens",
            "Tokens the upstreams' responses reported, by upstream and direction (input counts cache writes, not cache reads)",
            self.tokens.clone(),
        );
        r.register(
            "levee_limiter_backend",
            "Where the rate limits are kept now: memory, redis, fallback (Redis away, this process's share) or refusing (Redis away, fail-closed)",
            self.backend.clone(),
        );
        r.register(
            "levee_limiter_switches",
            "Switches of the shared limiter between Redis and its fallback, by the state switched to",
            self.switches.clone(),
        );
    }
}
