//! HTTP/2 dials that other requests join: a burst of requests to an upstream
//! with no connection yet opens one connection per worker, not one each.
//! Go's HTTP/2 client pool shares its dial calls the same way.
//!
//! An HTTPS upstream is expected to choose HTTP/2 by ALPN until a handshake
//! shows otherwise. A request that finds no connection with a stream to
//! spare, but a dial in progress on its worker, waits for that dial rather
//! than opening its own, up to the stream limit. Then:
//! - an HTTP/2 connection: it takes a stream on it;
//! - HTTP/1.1 chosen: it opens its own connection, and no request waits on
//!   another's dial until a handshake chooses HTTP/2 again;
//! - the dial failed: it fails alike, with the same layer and message, as
//!   its own dial at the same moment would have;
//! - the dialing request gave up (its try timed out, its client left): it
//!   opens its own.
//!
//! A request joins at most one dial, so a chain of abandoned dials cannot
//! hold it.

use super::client::AttemptError;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering::SeqCst};
use std::sync::{Mutex, MutexGuard};
use tokio::sync::watch;

/// How a dial ended, as the requests that joined it see it.
#[derive(Clone, Debug)]
pub enum Dialed {
    /// An HTTP/2 connection, now pooled.
    H2,
    /// The upstream chose HTTP/1.1: one request per connection.
    H1,
    /// No connection: the dial's own error.
    Failed(AttemptError),
}

/// The dials in progress to one upstream, one joinable dial per worker.
pub struct Dials {
    slots: Box<[Mutex<Option<Slot>>]>,
    /// Requests that may join one dial: the stream limit less the dialer.
    room: usize,
    /// The upstream is HTTPS, so ALPN may choose HTTP/2.
    may_be_h2: bool,
    /// The last handshake chose HTTP/1.1.
    chose_h1: AtomicBool,
    next_id: AtomicU64,
}

struct Slot {
    id: u64,
    /// The egress generation the dial goes out under.
    generation: u64,
    joined: usize,
    outcome: watch::Receiver<Option<Dialed>>,
}

/// A request's place in another's dial.
pub struct Joined(watch::Receiver<Option<Dialed>>);

impl Joined {
    /// How the dial ended; `None` when the dialing request gave up.
    pub async fn outcome(mut self) -> Option<Dialed> {
        let ended = self.0.wait_for(Option::is_some).await.ok()?;
        ended.clone()
    }
}

/// A joinable dial in progress. Dropped without [`Dialing::finish`], it
/// tells its joiners that it gave up.
pub struct Dialing<'a> {
    dials: &'a Dials,
    worker: usize,
    id: u64,
    outcome: watch::Sender<Option<Dialed>>,
}

impl Dials {
    /// No dials yet, for `workers` workers, on connections carrying up to
    /// `max_streams` requests, to an upstream that `may_be_h2`.
    pub fn new(workers: usize, max_streams: usize, may_be_h2: bool) -> Dials {
        Dials {
            slots: (0..workers.max(1)).map(|_| Mutex::new(None)).collect(),
            room: max_streams.saturating_sub(1),
            may_be_h2,
            chose_h1: AtomicBool::new(false),
            next_id: AtomicU64::new(1),
        }
    }

    fn expect_h2(&self) -> bool {
        self.may_be_h2 && !self.chose_h1.load(SeqCst)
    }

    fn slot(&self, worker: usize) -> MutexGuard<'_, Option<Slot>> {
        self.slots[worker].lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Joins `worker`'s dial under egress `generation`, if there is one
    /// with room and HTTP/2 is expected.
    pub fn join(&self, worker: usize, generation: u64) -> Option<Joined> {
        if !self.expect_h2() {
            return None;
        }
        let mut slot = self.slot(worker);
        let dial = slot.as_mut().filter(|d| d.generation == generation)?;
        if dial.joined >= self.room {
            return None;
        }
        dial.joined += 1;
        Some(Joined(dial.outcome.clone()))
    }

    /// Learns what a handshake with the upstream, joinable or not, chose.
    pub fn chose(&self, h2: bool) {
        self.chose_h1.store(!h2, SeqCst);
    }

    /// Makes a new dial of `worker` joinable, unless HTTP/2 is not expected
    /// or the worker has a joinable dial already (this one then goes alone).
    pub fn start(&self, worker: usize, generation: u64) -> Option<Dialing<'_>> {
        if !self.expect_h2() {
            return None;
        }
        let mut slot = self.slot(worker);
        if slot.is_some() {
            return None;
        }
        let id = self.next_id.fetch_add(1, SeqCst);
        let (outcome, watching) = watch::channel(None);
        *slot = Some(Slot {
            id,
            generation,
            joined: 0,
            outcome: watching,
        });
        Some(Dialing {
            dials: self,
            worker,
            id,
            outcome,
        })
    }
}

impl Dialing<'_> {
    /// Tells the joiners how the dial ended.
    pub fn finish(self, outcome: Dialed) {
        self.close();
        self.outcome.send_replace(Some(outcome));
    }

    /// No longer joinable.
    fn close(&self) {
        let mut slot = self.dials.slot(self.worker);
        if slot.as_ref().is_some_and(|d| d.id == self.id) {
            *slot = None;
        }
    }
}

impl Drop for Dialing<'_> {
    fn drop(&mut self) {
        self.close();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::core::FailureKind;
    use std::time::Duration;

    async fn outcome(joined: Joined) -> Option<Dialed> {
        tokio::time::timeout(Duration::from_secs(5), joined.outcome())
            .await
            .expect("the dial's end reaches its joiners")
    }

    #[tokio::test]
    async fn joiners_learn_that_the_dial_made_an_http2_connection() {
        let dials = Dials::new(2, 100, true);
        assert!(dials.join(0, 0).is_none(), "nothing to join yet");
        let dialing = dials.start(0, 0).expect("joinable");
        assert!(dials.start(0, 0).is_none(), "one joinable dial a worker");
        assert!(dials.join(1, 0).is_none(), "the other worker's dial");
        assert!(dials.join(0, 1).is_none(), "another egress generation");
        let (a, b) = (dials.join(0, 0).unwrap(), dials.join(0, 0).unwrap());
        dialing.finish(Dialed::H2);
        assert!(matches!(outcome(a).await, Some(Dialed::H2)));
        assert!(matches!(outcome(b).await, Some(Dialed::H2)));
        assert!(dials.join(0, 0).is_none(), "over, so no longer joinable");
        assert!(dials.start(0, 0).is_some(), "the next dial is joinable");
    }

    #[tokio::test]
    async fn no_more_join_than_the_connection_has_streams_for() {
        let dials = Dials::new(1, 3, true);
        let _dialing = dials.start(0, 0).unwrap();
        let joined: Vec<_> = (0..5).filter_map(|_| dials.join(0, 0)).collect();
        assert_eq!(joined.len(), 2, "three streams: the dialer's and two");
        let dials = Dials::new(1, 1, true);
        let _dialing = dials.start(0, 0).unwrap();
        assert!(dials.join(0, 0).is_none(), "one stream: the dialer's");
    }

    #[tokio::test]
    async fn joiners_share_the_failure_and_hear_of_a_dialer_giving_up() {
        let dials = Dials::new(1, 100, true);
        let failed = AttemptError {
            kind: FailureKind::Connect,
            message: "connection refused".into(),
        };
        let dialing = dials.start(0, 0).unwrap();
        let joined = dials.join(0, 0).unwrap();
        dialing.finish(Dialed::Failed(failed));
        match outcome(joined).await {
            Some(Dialed::Failed(e)) => {
                assert_eq!(
                    (e.kind, e.message.as_str()),
                    (FailureKind::Connect, "connection refused")
                );
            }
            other => panic!("{other:?}"),
        }
        let dialing = dials.start(0, 0).unwrap();
        let joined = dials.join(0, 0).unwrap();
        drop(dialing);
        assert!(outcome(joined).await.is_none(), "gave up");
        assert!(dials.start(0, 0).is_some(), "the slot is free again");
    }

    #[tokio::test]
    async fn after_an_http1_handshake_nobody_waits_until_http2_is_chosen_again() {
        let dials = Dials::new(1, 100, true);
        let dialing = dials.start(0, 0).unwrap();
        let joined = dials.join(0, 0).unwrap();
        dials.chose(false);
        dialing.finish(Dialed::H1);
        assert!(matches!(outcome(joined).await, Some(Dialed::H1)));
        assert!(dials.start(0, 0).is_none() && dials.join(0, 0).is_none());
        // A dial that was not joinable still teaches: here, a later one
        // chose HTTP/2 (after the upstream changed its ALPN).
        dials.chose(true);
        assert!(dials.start(0, 0).is_some());
        let plain = Dials::new(1, 100, false);
        assert!(plain.start(0, 0).is_none(), "plain HTTP is HTTP/1.1 here");
    }
}
