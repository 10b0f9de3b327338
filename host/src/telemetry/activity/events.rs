//! Recent events for `/status`: what levee did or saw happen, newest
//! first, the oldest dropped past [`KEPT`].

use crate::clock::now_ms;
use serde::Serialize;
use std::collections::VecDeque;
use std::sync::Mutex;

/// Events kept.
pub const KEPT: usize = 200;
/// The longest detail kept, in bytes (cut at a character boundary).
const MAX_DETAIL: usize = 300;

/// What happened.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum EventKind {
    /// The outlier detector opened the circuit.
    Ejected,
    /// The circuit let probes through.
    HalfOpen,
    /// The circuit closed again.
    Reinstated,
    /// The circuit would have opened, but too many upstreams were out.
    Spared,
    /// The active checks found the upstream healthy.
    Healthy,
    /// The active checks found the upstream unhealthy.
    Unhealthy,
    /// An egress proxy took over from another.
    ProxySwitch,
    /// No egress proxy was healthy.
    ProxiesDown,
    /// A 429 closed the upstream.
    RateLimited,
    /// A 529 marked the upstream overloaded.
    Overloaded,
    /// Admission's limits moved to another backend.
    LimiterBackend,
    /// A new policy is serving.
    PolicySwap,
    /// A policy was refused; the old one stays.
    PolicyRefused,
    /// The config was reloaded.
    Reload,
    /// A reload failed; nothing changed.
    ReloadFailed,
}

/// One event.
#[derive(Clone, Debug, Serialize)]
pub struct Event {
    /// Its place in the order events happened, from 1.
    pub seq: u64,
    /// When, in ms since the Unix epoch.
    pub at_ms: u64,
    /// What.
    pub kind: EventKind,
    /// The upstream it concerns, if one.
    pub upstream: Option<String>,
    /// The particulars, for people.
    pub detail: String,
}

/// The recent events.
#[derive(Debug, Default)]
pub struct Events {
    ring: Mutex<(u64, VecDeque<Event>)>,
}

impl Events {
    /// Records an event now.
    pub fn record(&self, kind: EventKind, upstream: Option<&str>, detail: impl Into<String>) {
        let mut detail = detail.into();
        if detail.len() > MAX_DETAIL {
            let mut cut = MAX_DETAIL;
            while !detail.is_char_boundary(cut) {
                cut -= 1;
            }
            detail.truncate(cut);
            detail.push('…');
        }
        let mut ring = self.ring.lock().unwrap_or_else(|p| p.into_inner());
        ring.0 += 1;
        let event = Event {
            seq: ring.0,
            at_ms: now_ms(),
            kind,
            upstream: upstream.map(str::to_owned),
            detail,
        };
        if ring.1.len() == KEPT {
            ring.1.pop_front();
        }
        ring.1.push_back(event);
    }

    /// The events kept, newest first.
    pub fn recent(&self) -> Vec<Event> {
        let ring = self.ring.lock().unwrap_or_else(|p| p.into_inner());
        ring.1.iter().rev().cloned().collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn events_come_newest_first_and_the_oldest_go_past_the_cap() {
        let e = Events::default();
        for i in 0..KEPT + 5 {
            e.record(EventKind::Reload, None, format!("#{i}"));
        }
        let recent = e.recent();
        assert_eq!(recent.len(), KEPT);
        assert_eq!(recent[0].detail, format!("#{}", KEPT + 4));
        assert_eq!(recent[0].seq, KEPT as u64 + 5);
        assert_eq!(recent[KEPT - 1].detail, "#5");
    }

    #[test]
    fn long_details_are_cut_at_a_character_boundary() {
        let e = Events::default();
        e.record(EventKind::Ejected, Some("a"), "é".repeat(400));
        let d = &e.recent()[0].detail;
        assert!(d.len() <= MAX_DETAIL + '…'.len_utf8(), "{}", d.len());
        assert!(d.ends_with('…'));
        assert_eq!(
            serde_json::to_value(&e.recent()[0]).unwrap()["kind"],
            "ejected"
        );
    }
}
