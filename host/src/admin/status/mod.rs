//! `GET /status`: what levee is doing now, as JSON for programs and as a
//! small HTML page for people (chosen by the `Accept` header).
//!
//! Both render one snapshot: each upstream as the policy sees it (health,
//! circuit and since when, in flight, rate-limited and overloaded until,
//! budgets, time to first byte), what it has been doing over the last 1, 5
//! and 15 minutes (with its egress proxies'), the recent events, the
//! admission queue and each upstream's limiter budgets, the retry budget,
//! the rails, and the active policy with its config and recent swaps.

pub mod activity;
mod chart;
mod page;
mod traffic;

pub use page::page;

use super::policy_status;
use crate::clock::now_ms;
use crate::core::{Circuit, Health, LimitKind, UpstreamView};
use crate::gateway::{Gateway, Runtime};
use serde_json::{Value, json};
use std::sync::atomic::Ordering;
use std::time::Instant;

/// The status snapshot as JSON.
pub fn snapshot(gw: &Gateway) -> Value {
    let rt = gw.runtime();
    let now = now_ms();
    // One view per model class: each has its own closures and budgets.
    let classes = &rt.limits.classes;
    let views: Vec<_> = (0..classes.len())
        .map(|c| rt.view(now, c as crate::limits::Class).upstreams)
        .collect();
    let tick = Instant::now();
    let mut policy = policy_status(gw);
    // The config as JSON rather than as the text the policy was given;
    // none at all as null.
    let config = policy["config"].as_str().map(str::trim);
    if config == Some("") {
        policy["config"] = Value::Null;
    } else if let Some(parsed) = config.and_then(|text| serde_json::from_str::<Value>(text).ok()) {
        policy["config"] = parsed;
    }
    json!({
        "version": env!("CARGO_PKG_VERSION"),
        "now_ms": now,
        "upstreams": upstreams(&rt, &views, tick),
        "events": activity::events(&gw.metrics.activity.events),
        "admission": admission(&rt, &views),
        "retry_budget": gw.budget.status(),
        "rails": {
            "max_attempts": rt.rails.max_attempts,
            "request_deadline_ms": rt.rails.request_deadline.as_millis() as u64,
            "max_body_bytes": rt.rails.max_body_bytes,
            "body_limits": body_limits(&rt.rails.body_limits),
        },
        "policy": policy,
    })
}

/// Each endpoint's body limit, by its config key.
fn body_limits(limits: &crate::config::BodyLimits) -> Value {
    let by_route = levee_exchange::body_limits::Route::KEYED
        .iter()
        .map(|(route, name)| (name.to_string(), json!(limits.of(*route))));
    Value::Object(by_route.collect())
}

/// The admission queue now, and what each upstream's limiter has left.
fn admission(rt: &Runtime, views: &[Vec<UpstreamView>]) -> Value {
    let upstreams: Vec<Value> = rt
        .upstreams
        .iter()
        .enumerate()
        .map(|(i, u)| json!({ "name": u.config.name, "budgets": budgets(rt, views, i) }))
        .collect();
    json!({
        "queue": { "depth": rt.admitter.queued(), "capacity": rt.limits.queue_size },
        "upstreams": upstreams,
    })
}

/// Upstream `i`'s budgets in every class (`views`, by class); the
/// upstream's concurrency once, as it is the whole upstream's.
fn budgets(rt: &Runtime, views: &[Vec<UpstreamView>], i: usize) -> Vec<Value> {
    let mut out = Vec::new();
    for (class, view) in views.iter().enumerate() {
        let name = rt.limits.classes.name(class as crate::limits::Class);
        for b in &view[i].budgets {
            let whole = b.kind == LimitKind::Concurrency;
            if whole && class > 0 {
                continue;
            }
            let mut budget = json!({
                "kind": kind_name(b.kind),
                "remaining": b.remaining,
                "limit": b.limit,
                "reset_at_ms": b.reset_at,
            });
            if !whole {
                budget["model_class"] = json!(**name);
            }
            out.push(budget);
        }
    }
    out
}

/// Upstream `i`'s 429 closures by class, and the latest of them.
fn closures(rt: &Runtime, views: &[Vec<UpstreamView>], i: usize) -> (Vec<Value>, Option<u64>) {
    let mut latest = None;
    let closed = views
        .iter()
        .enumerate()
        .filter_map(|(class, view)| {
            let until = view[i].rate_limited_until?;
            latest = latest.max(Some(until));
            let name = rt.limits.classes.name(class as crate::limits::Class);
            Some(json!({ "model_class": **name, "until_ms": until }))
        })
        .collect();
    (closed, latest)
}

fn upstreams(rt: &Runtime, views: &[Vec<UpstreamView>], tick: Instant) -> Vec<Value> {
    rt.upstreams
        .iter()
        .enumerate()
        .map(|(i, u)| {
            // Health, circuit and the rest are the upstream's in any class.
            let v = &views[0][i];
            let (closed, latest) = closures(rt, views, i);
            let c = &u.config;
            json!({
                "id": v.id,
                "name": c.name,
                "url": format!("{}://{}{}", u.scheme, u.authority, c.base_path),
                "group": v.group,
                "weight": v.weight,
                "health": health_name(v.health),
                "health_since_ms": u.health.health_since.load(Ordering::Relaxed),
                "circuit": circuit_name(v.circuit),
                "circuit_since_ms": u.health.circuit_since.load(Ordering::Relaxed),
                "in_flight": v.in_flight,
                "rate_limited_until_ms": latest,
                "rate_limited": closed,
                "overloaded_until_ms": v.overloaded_until,
                "budgets": budgets(rt, views, i),
                "ttfb_ms": v.ttfb_ms,
                "slow": v.slow,
                "activity": activity::track(&u.track, tick),
                "proxies": activity::proxies(u, tick),
            })
        })
        .collect()
}

fn health_name(h: Health) -> &'static str {
    match h {
        Health::Unknown => "unknown",
        Health::Healthy => "healthy",
        Health::Unhealthy => "unhealthy",
    }
}

fn circuit_name(c: Circuit) -> &'static str {
    match c {
        Circuit::Closed => "closed",
        Circuit::Open => "open",
        Circuit::HalfOpen => "half-open",
    }
}

fn kind_name(k: LimitKind) -> &'static str {
    match k {
        LimitKind::Requests => "requests",
        LimitKind::InputTokens => "input-tokens",
        LimitKind::OutputTokens => "output-tokens",
        LimitKind::Concurrency => "concurrency",
    }
}

/// Whether the client prefers HTML (a browser) to JSON.
pub fn wants_html(headers: &http::HeaderMap) -> bool {
    headers
        .get(http::header::ACCEPT)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|accept| {
            let html = accept.find("text/html");
            let json = accept.find("application/json");
            matches!((html, json), (Some(h), j) if j.is_none_or(|j| h < j))
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn browsers_get_html_and_programs_json() {
        let accept = |v: &'static str| {
            let mut h = http::HeaderMap::new();
            h.insert(http::header::ACCEPT, http::HeaderValue::from_static(v));
            wants_html(&h)
        };
        assert!(accept(
            "text/html,application/xhtml+xml,application/xml;q=0.9,*/*;q=0.8"
        ));
        assert!(!accept("application/json"));
        assert!(!accept("application/json, text/html"));
        assert!(!accept("*/*"));
        assert!(!wants_html(&http::HeaderMap::new()));
    }
}
