//! Prometheus metrics, served on the admin listener's `/metrics`.
//!
//! The seed's three keep their exact names and labels
//! (`api_requests_total{status_code,method}`,
//! `api_latency_seconds{endpoint}`, `rate_limit_remaining{upstream,model_class,dimension}`);
//! everything else is prefixed `levee_`. Every label value comes from a
//! bounded set: configured upstream names, enum labels, status codes. No
//! request ids, keys or raw paths.
//!
//! Counters updated on the request path live here; the policy engine's
//! counters and each upstream's live state are read when scraped.

use super::few::Few;
use super::sharded::{self, Histogram};
use crate::core::FailureKind;
use crate::policy::{PolicyEngine, PolicyHandle};
use levee_exchange::body::Termination;
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::{ConstCounter, Counter};
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::info::Info;
use prometheus_client::registry::Registry;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

/// The seed's latency buckets, in seconds.
const LATENCY_BUCKETS: [f64; 5] = [0.1, 0.5, 1.0, 2.0, 5.0];
/// `levee_response_head_seconds`: the seed's measure with room for a
/// non-streaming answer, whose head comes after the whole generation.
const HEAD_BUCKETS: [f64; 13] = [
    0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 20.0, 30.0, 60.0, 120.0, 300.0, 600.0,
];
/// Time to first byte from an upstream, in seconds.
const TTFB_BUCKETS: [f64; 9] = [0.05, 0.1, 0.25, 0.5, 1.0, 2.0, 5.0, 10.0, 30.0];
/// A policy call, in seconds (they take microseconds).
const POLICY_BUCKETS: [f64; 8] = [
    0.000_002, 0.000_005, 0.000_01, 0.000_025, 0.000_05, 0.000_1, 0.001, 0.01,
];

type HistogramFamily<L> = Family<L, Histogram, fn() -> Histogram>;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RequestLabels {
    status_code: u16,
    method: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct EndpointLabels {
    endpoint: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct BudgetLabels {
    upstream: Arc<String>,
    model_class: Arc<str>,
    dimension: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct AttemptLabels {
    upstream: Arc<String>,
    outcome: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct UpstreamLabels {
    upstream: Arc<String>,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ReasonLabels {
    reason: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct CauseLabels {
    cause: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ResultLabels {
    result: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct CallLabels {
    call: &'static str,
}

/// What an attempt came to, as a label: the status class for a response,
/// the failing layer otherwise.
pub fn attempt_outcome(status: Result<u16, FailureKind>) -> &'static str {
    match status {
        Ok(200..=299) => "2xx",
        Ok(429) => "429",
        Ok(529) => "529",
        Ok(400..=499) => "4xx",
        Ok(500..=599) => "5xx",
        Ok(_) => "other",
        Err(kind) => levee_exchange::reply::layer_name(kind),
    }
}

/// The gateway's metrics.
#[derive(Debug)]
pub struct Metrics {
    requests: Family<RequestLabels, sharded::Counter>,
    latency: HistogramFamily<EndpointLabels>,
    head: HistogramFamily<EndpointLabels>,
    rate_limit_remaining: Family<BudgetLabels, Gauge>,
    attempts: Family<AttemptLabels, sharded::Counter>,
    retries: Family<ReasonLabels, Counter>,
    retry_budget_exhausted: Counter,
    ttfb: HistogramFamily<UpstreamLabels>,
    stream_ends: Family<CauseLabels, sharded::Counter>,
    local_rejections: Family<ReasonLabels, Counter>,
    policy_calls: HistogramFamily<CallLabels>,
    /// The request path's handles, kept (see [`Few`]).
    seen_requests: Few<(u16, &'static str), sharded::Counter>,
    /// The seed's histogram and levee's, for one endpoint.
    seen_latency: Few<&'static str, (Histogram, Histogram)>,
    seen_attempts: Few<(Arc<String>, &'static str), sharded::Counter>,
    seen_ttfb: Few<Arc<String>, Histogram>,
    seen_stream_ends: Few<&'static str, sharded::Counter>,
    seen_policy_calls: Few<&'static str, Histogram>,
    /// Admission queue and token metrics.
    pub limits: super::limits::LimitMetrics,
    /// What `/status` shows of recent activity; recorded whether or not
    /// metrics are on.
    pub activity: super::activity::Activity,
    /// `[admin] metrics`: off, the request path records nothing.
    on: AtomicBool,
}

impl Default for Metrics {
    fn default() -> Self {
        let activity = super::activity::Activity::default();
        Metrics {
            requests: Family::default(),
            latency: Family::new_with_constructor(|| Histogram::new(LATENCY_BUCKETS)),
            head: Family::new_with_constructor(|| Histogram::new(HEAD_BUCKETS)),
            rate_limit_remaining: Family::default(),
            attempts: Family::default(),
            retries: Family::default(),
            retry_budget_exhausted: Counter::default(),
            ttfb: Family::new_with_constructor(|| Histogram::new(TTFB_BUCKETS)),
            stream_ends: Family::default(),
            local_rejections: Family::default(),
            policy_calls: Family::new_with_constructor(|| Histogram::new(POLICY_BUCKETS)),
            seen_requests: Few::default(),
            seen_latency: Few::default(),
            seen_attempts: Few::default(),
            seen_ttfb: Few::default(),
            seen_stream_ends: Few::default(),
            seen_policy_calls: Few::default(),
            limits: super::limits::LimitMetrics::telling(activity.events.clone()),
            activity,
            on: AtomicBool::new(true),
        }
    }
}

impl Metrics {
    /// Turns recording on the request path on or off (`[admin] metrics`).
    pub fn set_enabled(&self, on: bool) {
        self.on.store(on, Ordering::Relaxed);
        self.limits.set_enabled(on);
    }

    fn off(&self) -> bool {
        !self.on.load(Ordering::Relaxed)
    }

    /// A response went back to the client; `head` is the time from the
    /// request's arrival to its response head.
    pub fn request(
        &self,
        status: u16,
        method: &'static str,
        endpoint: &'static str,
        head: Duration,
    ) {
        if self.off() {
            return;
        }
        self.seen_requests.with(
            |k| *k == (status, method),
            || {
                let labels = RequestLabels {
                    status_code: status,
                    method,
                };
                (
                    (status, method),
                    self.requests.get_or_create(&labels).clone(),
                )
            },
            |c| {
                c.inc();
            },
        );
        self.seen_latency.with(
            |k| *k == endpoint,
            || {
                let labels = EndpointLabels { endpoint };
                let seed = self.latency.get_or_create(&labels).clone();
                (endpoint, (seed, self.head.get_or_create(&labels).clone()))
            },
            |(seed, levee)| {
                let secs = head.as_secs_f64();
                seed.observe(secs);
                levee.observe(secs);
            },
        );
    }

    /// One attempt's outcome, and its time to the response head if any.
    pub fn attempt(&self, upstream: &Arc<String>, outcome: &'static str, ttfb: Option<Duration>) {
        if self.off() {
            return;
        }
        if let Some(ttfb) = ttfb {
            self.seen_ttfb.with(
                |k| k == upstream,
                || {
                    let labels = UpstreamLabels {
                        upstream: upstream.clone(),
                    };
                    (upstream.clone(), self.ttfb.get_or_create(&labels).clone())
                },
                |h| h.observe(ttfb.as_secs_f64()),
            );
        }
        self.seen_attempts.with(
            |(u, o)| u == upstream && *o == outcome,
            || {
                let labels = AttemptLabels {
                    upstream: upstream.clone(),
                    outcome,
                };
                let c = self.attempts.get_or_create(&labels).clone();
                ((upstream.clone(), outcome), c)
            },
            |c| {
                c.inc();
            },
        );
    }

    /// A retry levee is about to make, by what prompted it (the outcome
    /// label of the attempt before).
    pub fn retry(&self, reason: &'static str) {
        if self.off() {
            return;
        }
        self.retries.get_or_create(&ReasonLabels { reason }).inc();
    }

    /// The retry budget turned a policy's retry into a give-up.
    pub fn retry_budget_exhausted(&self) {
        if self.off() {
            return;
        }
        self.retry_budget_exhausted.inc();
    }

    /// A budget the upstream reported in its rate-limit headers, in the
    /// answer to a request of `model_class`.
    pub fn rate_limit_remaining(
        &self,
        upstream: &Arc<String>,
        model_class: &Arc<str>,
        dimension: &'static str,
        left: u64,
    ) {
        if self.off() {
            return;
        }
        self.rate_limit_remaining
            .get_or_create(&BudgetLabels {
                upstream: upstream.clone(),
                model_class: model_class.clone(),
                dimension,
            })
            .set(i64::try_from(left).unwrap_or(i64::MAX));
    }

    /// How a response body ended.
    pub fn stream_end(&self, how: Termination) {
        if self.off() {
            return;
        }
        let cause = how.label();
        self.seen_stream_ends.with(
            |k| *k == cause,
            || {
                let c = self.stream_ends.get_or_create(&CauseLabels { cause });
                (cause, c.clone())
            },
            |c| {
                c.inc();
            },
        );
    }

    /// levee answered the client itself, for `reason`.
    pub fn local_rejection(&self, reason: &'static str) {
        if self.off() {
            return;
        }
        self.local_rejections
            .get_or_create(&ReasonLabels { reason })
            .inc();
    }

    /// One decision by the policy (`on-request` or `on-outcome`), timed.
    pub fn policy_call(&self, call: &'static str, took: Duration) {
        if self.off() {
            return;
        }
        self.seen_policy_calls.with(
            |k| *k == call,
            || {
                let h = self.policy_calls.get_or_create(&CallLabels { call });
                (call, h.clone())
            },
            |h| h.observe(took.as_secs_f64()),
        );
    }

    /// Everything, in the Prometheus text format (OpenMetrics flavour),
    /// with what `more` registers (each upstream's live state, which the
    /// upstream layer reports).
    pub fn render(
        &self,
        engine: &PolicyEngine,
        policy: &PolicyHandle,
        more: impl FnOnce(&mut Registry),
    ) -> String {
        let mut r = Registry::default();
        r.register(
            "api_requests",
            "Responses sent to clients, by status code and method",
            self.requests.clone(),
        );
        r.register(
            "api_latency_seconds",
            "Time from a request's arrival to its response head, by endpoint",
            self.latency.clone(),
        );
        r.register(
            "levee_response_head_seconds",
            "Time from a request's arrival to its response head, by endpoint, up to 10 minutes",
            self.head.clone(),
        );
        r.register(
            "rate_limit_remaining",
            "Budget left, as the upstream's last rate-limit headers reported it",
            self.rate_limit_remaining.clone(),
        );
        r.register(
            "levee_attempts",
            "Attempts sent upstream, by upstream and outcome",
            self.attempts.clone(),
        );
        r.register(
            "levee_retries",
            "Retries made, by the outcome that prompted them",
            self.retries.clone(),
        );
        r.register(
            "levee_retry_budget_exhausted",
            "Retries refused because the retry budget was spent",
            self.retry_budget_exhausted.clone(),
        );
        r.register(
            "levee_upstream_ttfb_seconds",
            "Time from sending an attempt to its response head",
            self.ttfb.clone(),
        );
        r.register(
            "levee_stream_terminations",
            "How response bodies ended: complete, client_gone, stall, upstream_cut",
            self.stream_ends.clone(),
        );
        r.register(
            "levee_local_rejections",
            "Requests levee answered itself, by reason",
            self.local_rejections.clone(),
        );
        r.register(
            "levee_policy_call_seconds",
            "Time a policy decision took, by call",
            self.policy_calls.clone(),
        );
        self.limits.register(&mut r);
        r.register(
            "levee_build",
            "The running build: version, git commit and wasmtime version",
            prometheus_client::metrics::info::Info::new(vec![
                ("version", env!("CARGO_PKG_VERSION")),
                ("git_hash", env!("LEVEE_GIT_HASH")),
                ("wasmtime", env!("LEVEE_WASMTIME_VERSION")),
            ]),
        );
        register_policy(&mut r, engine, policy);
        more(&mut r);
        let mut out = String::new();
        prometheus_client::encoding::text::encode(&mut out, &r)
            .expect("writing to a String cannot fail");
        out
    }
}

fn register_policy(r: &mut Registry, engine: &PolicyEngine, policy: &PolicyHandle) {
    use std::sync::atomic::Ordering::Relaxed;
    let stats = engine.stats();
    let counters = [
        (
            "levee_policy_calls",
            "Calls into policy components",
            &stats.calls,
        ),
        (
            "levee_policy_traps",
            "Policy calls that trapped",
            &stats.traps,
        ),
        (
            "levee_policy_deadlines",
            "Policy calls that overran their deadline",
            &stats.deadlines,
        ),
        (
            "levee_policy_fallbacks",
            "Decisions answered by the built-in native fallback",
            &stats.fallbacks,
        ),
    ];
    for (name, help, value) in counters {
        r.register(name, help, ConstCounter::new(value.load(Relaxed)));
    }
    let swaps: Family<ResultLabels, Counter> = Family::default();
    let (ok, refused) = policy.swap_counts();
    swaps
        .get_or_create(&ResultLabels { result: "ok" })
        .inc_by(ok);
    swaps
        .get_or_create(&ResultLabels { result: "refused" })
        .inc_by(refused);
    r.register("levee_policy_swaps", "Policy swaps, by result", swaps);
    let current = policy.current();
    r.register(
        "levee_policy",
        "The active policy",
        Info::new(vec![
            ("name", current.info().name.clone()),
            ("version", current.info().version.clone()),
        ]),
    );
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every request-path recorder, once.
    fn record(m: &Metrics, up: &Arc<String>) {
        m.request(200, "POST", "messages", Duration::from_millis(5));
        m.attempt(up, "ok", Some(Duration::from_millis(3)));
        m.retry("429");
        m.retry_budget_exhausted();
        m.rate_limit_remaining(up, &Arc::from("sonnet"), "requests", 7);
        m.stream_end(Termination::Complete);
        m.local_rejection("queue_full");
        m.policy_call("on-request", Duration::from_micros(4));
    }

    /// The counters and gauge `record` touches, as values.
    fn seen(m: &Metrics, up: &Arc<String>) -> [u64; 6] {
        let requests = m.requests.get_or_create(&RequestLabels {
            status_code: 200,
            method: "POST",
        });
        let attempts = m.attempts.get_or_create(&AttemptLabels {
            upstream: up.clone(),
            outcome: "ok",
        });
        let remaining = m.rate_limit_remaining.get_or_create(&BudgetLabels {
            upstream: up.clone(),
            model_class: Arc::from("sonnet"),
            dimension: "requests",
        });
        [
            requests.get(),
            attempts.get(),
            m.retries
                .get_or_create(&ReasonLabels { reason: "429" })
                .get(),
            m.retry_budget_exhausted.get(),
            m.stream_ends
                .get_or_create(&CauseLabels { cause: "complete" })
                .get(),
            remaining.get() as u64,
        ]
    }

    #[test]
    fn off_the_request_path_records_nothing_and_on_again_it_does() {
        let m = Metrics::default();
        let up = Arc::new("primary".to_owned());
        m.set_enabled(false);
        record(&m, &up);
        assert_eq!(seen(&m, &up), [0; 6]);
        m.set_enabled(true);
        record(&m, &up);
        assert_eq!(seen(&m, &up), [1, 1, 1, 1, 1, 7]);
    }
}
