//! The status snapshot's account of what is happening: each upstream's and
//! egress proxy's windows, chart series and last error, and the recent
//! events.

use crate::telemetry::activity::Track;
use crate::telemetry::activity::events::Events;
use crate::telemetry::activity::window::{BOUNDS_US, BUCKETS, LABELS, SLOT_MS, SLOTS, Tally};
use crate::upstream::UpstreamRuntime;
use serde_json::{Map, Value, json};
use std::time::Instant;

/// The windows shown: name and length in slots.
pub const WINDOWS: [(&str, usize); 3] = [("1m", 6), ("5m", 30), ("15m", SLOTS)];

/// A track's windows, chart series and last error at `now`, and whether
/// it ever saw an attempt.
pub fn track(t: &Track, now: Instant) -> Value {
    let windows: Vec<Value> = WINDOWS
        .iter()
        .map(|&(name, slots)| window(t, now, name, slots))
        .collect();
    let series = t.windows.series(now);
    json!({
        "ever": t.windows.ever(),
        "windows": windows,
        "series": {
            "slot_s": SLOT_MS / 1_000,
            "attempts": series.iter().map(|s| s.0).collect::<Vec<_>>(),
            "errors": series.iter().map(|s| s.1).collect::<Vec<_>>(),
        },
        "last_error": t.last_error(),
    })
}

/// One window: counts by outcome, the rate over the time it really
/// covers, the success share, and time-to-first-byte quantiles (the upper
/// bounds of their buckets, which are √2 apart).
fn window(t: &Track, now: Instant, name: &str, slots: usize) -> Value {
    let tally = t.windows.tally(now, slots);
    let covered = t.windows.covered(now, slots).as_secs_f64();
    let attempts = tally.attempts();
    let counts: Map<String, Value> = LABELS
        .iter()
        .zip(tally.counts)
        .map(|(label, n)| ((*label).to_owned(), n.into()))
        .collect();
    json!({
        "window": name,
        "window_s": slots as u64 * SLOT_MS / 1_000,
        "covered_s": round(covered, 3),
        "attempts": attempts,
        "rate_per_s": (covered > 0.0).then(|| round(attempts as f64 / covered, 3)),
        "success_share": (attempts > 0).then(|| round(tally.counts[0] as f64 / attempts as f64, 4)),
        "errors": tally.errors(),
        "counts": counts,
        "ttfb_p50_ms": ttfb_ms(&tally, 0.5),
        "ttfb_p99_ms": ttfb_ms(&tally, 0.99),
    })
}

/// A quantile in ms; past the last finite bound it reads as that bound.
fn ttfb_ms(t: &Tally, q: f64) -> Option<f64> {
    let us = t.ttfb_quantile(q)?.min(BOUNDS_US[BUCKETS - 2]);
    Some(us as f64 / 1_000.0)
}

fn round(v: f64, digits: i32) -> f64 {
    let scale = 10f64.powi(digits);
    (v * scale).round() / scale
}

/// An upstream's egress proxies, each with its tunnels' windows.
pub fn proxies(u: &UpstreamRuntime, now: Instant) -> Vec<Value> {
    let Some(egress) = &u.egress else {
        return Vec::new();
    };
    egress
        .status()
        .map(|p| {
            json!({
                "proxy": p.label,
                "in_use": p.in_use,
                "healthy": p.healthy,
                "healthy_since_ms": p.since_ms,
                "activity": track(p.track, now),
            })
        })
        .collect()
}

/// The recent events, newest first.
pub fn events(e: &Events) -> Value {
    serde_json::to_value(e.recent()).unwrap_or_default()
}
