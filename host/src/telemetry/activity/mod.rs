//! What `/status` shows of what is happening: each upstream's and egress
//! proxy's recent attempts ([`window`]), its last error, and the recent
//! events ([`events`]).
//!
//! It lives with the metrics, for the gateway's whole life: a reload keeps
//! the windows and last error of every upstream (and proxy) it keeps by
//! name, and drops the rest.

pub mod events;
pub mod window;

use crate::clock::now_ms;
use events::Events;
use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};
use window::{Kind, Windows};

/// The longest last-error message kept, in bytes.
const MAX_MESSAGE: usize = 300;

/// The last error an upstream or a proxy gave.
#[derive(Clone, Debug, serde::Serialize)]
pub struct LastError {
    /// When, in ms since the Unix epoch.
    pub at_ms: u64,
    /// Where: `http` for an answer, else the layer that failed.
    pub layer: &'static str,
    /// What it said.
    pub message: String,
}

/// What one upstream or one egress proxy has been doing.
#[derive(Debug, Default)]
pub struct Track {
    /// Its attempts over the last 15 minutes.
    pub windows: Windows,
    last_error: Mutex<Option<LastError>>,
}

impl Track {
    /// Counts an attempt that ended at `at`.
    pub fn record(&self, at: Instant, kind: Kind, ttfb: Option<Duration>) {
        self.windows.record(at, kind, ttfb);
    }

    /// Keeps `message` as the last error, from `layer`.
    pub fn failed(&self, layer: &'static str, message: &str) {
        let mut cut = message.len().min(MAX_MESSAGE);
        while !message.is_char_boundary(cut) {
            cut -= 1;
        }
        let error = LastError {
            at_ms: now_ms(),
            layer,
            message: message[..cut].to_owned(),
        };
        *lock(&self.last_error) = Some(error);
    }

    /// The last error, if any.
    pub fn last_error(&self) -> Option<LastError> {
        lock(&self.last_error).clone()
    }
}

/// Every upstream's and proxy's [`Track`], and the events.
#[derive(Debug, Default)]
pub struct Activity {
    /// The recent events.
    pub events: Arc<Events>,
    upstreams: Mutex<HashMap<String, Arc<Track>>>,
    /// By upstream name and proxy `host:port`.
    proxies: Mutex<HashMap<(String, String), Arc<Track>>>,
}

impl Activity {
    /// The track of the upstream `name`: the one it had, if it had one.
    pub fn upstream(&self, name: &str) -> Arc<Track> {
        lock(&self.upstreams)
            .entry(name.to_owned())
            .or_default()
            .clone()
    }

    /// The track of `upstream`'s egress proxy `proxy` (`host:port`).
    pub fn proxy(&self, upstream: &str, proxy: &str) -> Arc<Track> {
        lock(&self.proxies)
            .entry((upstream.to_owned(), proxy.to_owned()))
            .or_default()
            .clone()
    }

    /// Forgets every track but those of the upstreams named in `keep`
    /// (after a reload).
    pub fn retain(&self, keep: &[&str]) {
        lock(&self.upstreams).retain(|name, _| keep.contains(&name.as_str()));
        lock(&self.proxies).retain(|(name, _), _| keep.contains(&name.as_str()));
    }
}

/// An error answer in a line: its status, the API's error type and
/// message when the body's prefix has them, and the wait it asked for.
pub fn answer_message(facts: &crate::core::ResponseFacts, prefix: &[u8]) -> String {
    let mut out = format!("HTTP {}", facts.status);
    let body: Option<serde_json::Value> = serde_json::from_slice(prefix).ok();
    let error = body.as_ref().map(|b| &b["error"]);
    if let Some(kind) = error.and_then(|e| e["type"].as_str()) {
        out = format!("{out} {kind}");
    }
    if let Some(message) = error.and_then(|e| e["message"].as_str()) {
        out = format!("{out}: {message}");
    }
    if let Some(wait) = levee_exchange::facts::header_wait(facts) {
        out = format!("{out} (retry after {wait} ms)");
    }
    out
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_reload_keeps_the_tracks_of_the_upstreams_it_keeps() {
        let a = Activity::default();
        let kept = a.upstream("kept");
        let gone = a.upstream("gone");
        let proxy = a.proxy("kept", "10.0.0.1:3128");
        a.retain(&["kept", "new"]);
        assert!(Arc::ptr_eq(&kept, &a.upstream("kept")));
        assert!(!Arc::ptr_eq(&gone, &a.upstream("gone")));
        assert!(Arc::ptr_eq(&proxy, &a.proxy("kept", "10.0.0.1:3128")));
    }

    #[test]
    fn an_error_answer_reads_as_status_type_message_and_wait() {
        let body =
            br#"{"type":"error","error":{"type":"overloaded_error","message":"Overloaded"}}"#;
        let facts = levee_exchange::facts::response_facts(
            529,
            |h| (h == "retry-after").then_some("2"),
            body,
            5,
            1_000,
        );
        assert_eq!(
            answer_message(&facts, body),
            "HTTP 529 overloaded_error: Overloaded (retry after 2000 ms)"
        );
        let cut = &body[..20];
        let facts = levee_exchange::facts::response_facts(503, |_| None, cut, 5, 1_000);
        assert_eq!(answer_message(&facts, cut), "HTTP 503");
    }

    #[test]
    fn the_last_error_is_kept_short() {
        let t = Track::default();
        assert!(t.last_error().is_none());
        t.failed("connect", &"ü".repeat(400));
        let e = t.last_error().unwrap();
        assert_eq!(e.layer, "connect");
        assert!(e.message.len() <= MAX_MESSAGE);
        assert!(e.at_ms > 0);
    }
}
