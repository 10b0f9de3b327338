//! The connections an upstream's clients keep: one pool per worker, and the
//! rules for handing connections between workers at the connection cap.
//!
//! - HTTP/1: idle connections are reused newest first and dropped after
//!   [`POOL_IDLE`]. A connection comes back when its response body has been
//!   read to the end ([`UpstreamBody`]); a body dropped early closes it.
//! - HTTP/2: a worker's connections each carry up to the upstream's
//!   `max_streams_per_connection` requests at once, the oldest filled
//!   first; a request finding them all full opens another (or joins one
//!   being opened: `dial.rs`). A request holds
//!   its stream ([`StreamSlot`]) until its response body ends or is
//!   dropped. Without that count, requests past the server's stream limit
//!   would queue inside the connection, behind answers that may stream for
//!   minutes, and time out. A connection with no request open for
//!   [`POOL_IDLE`] is dropped, as an idle HTTP/1 one is.
//! - At the cap, a request of one worker may ride another worker's HTTP/2
//!   connection (the least busy, full or not) or take its idle HTTP/1 one,
//!   and an HTTP/1 connection that comes back goes to a request waiting on
//!   any worker. A connection's driver stays on the worker that opened it.

use bytes::Bytes;
use hyper::body::{Body, Frame, Incoming, SizeHint};
use hyper::client::conn::{http1, http2};
use std::pin::Pin;
use std::sync::atomic::{AtomicUsize, Ordering::SeqCst};
use std::sync::{Arc, Mutex, MutexGuard};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};
use tokio::sync::Notify;
use tokio::sync::futures::Notified;

/// How long an idle pooled connection is kept.
const POOL_IDLE: Duration = Duration::from_secs(90);

/// The body of a request to the upstream: whole, so it can be replayed.
pub type ReqBody = super::outgoing::Outgoing;

/// A connection to send one request on.
pub enum Sender {
    H1(http1::SendRequest<ReqBody>),
    H2(http2::SendRequest<ReqBody>, StreamSlot),
}

/// One pool per worker of one upstream.
pub struct Pools {
    pools: Box<[Pool]>,
    /// Requests one HTTP/2 connection carries before another is opened.
    max_streams: usize,
}

struct Pool {
    state: Mutex<PoolState>,
    /// Signalled when an HTTP/1 connection comes back or is handed over,
    /// or an HTTP/2 one is opened.
    returned: Notify,
    /// Requests of this worker waiting at the connection cap.
    waiting: AtomicUsize,
}

#[derive(Default)]
struct PoolState {
    /// The egress generation the pooled connections were opened under.
    generation: u64,
    /// Idle HTTP/1 connections, oldest first.
    idle: Vec<Idle>,
    /// HTTP/2 connections, shared by requests up to the stream limit.
    h2: Vec<H2>,
}

#[derive(Clone)]
struct H2 {
    sender: http2::SendRequest<ReqBody>,
    streams: Arc<Streams>,
}

/// The requests open on an HTTP/2 connection.
struct Streams {
    open: AtomicUsize,
    /// When the last one closed.
    idle_since: Mutex<Instant>,
}

impl H2 {
    fn new(sender: http2::SendRequest<ReqBody>) -> H2 {
        H2 {
            sender,
            streams: Arc::new(Streams {
                open: AtomicUsize::new(0),
                idle_since: Mutex::new(Instant::now()),
            }),
        }
    }

    fn open(&self) -> usize {
        self.streams.open.load(SeqCst)
    }

    /// Idle for longer than [`POOL_IDLE`].
    fn expired(&self) -> bool {
        self.open() == 0
            && self
                .streams
                .idle_since
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .elapsed()
                > POOL_IDLE
    }

    fn claim(&self) -> Sender {
        self.streams.open.fetch_add(1, SeqCst);
        Sender::H2(self.sender.clone(), StreamSlot(self.streams.clone()))
    }
}

/// A request's stream on an HTTP/2 connection, counted until dropped.
pub struct StreamSlot(Arc<Streams>);

impl Drop for StreamSlot {
    fn drop(&mut self) {
        if self.0.open.fetch_sub(1, SeqCst) == 1 {
            *self.0.idle_since.lock().unwrap_or_else(|p| p.into_inner()) = Instant::now();
        }
    }
}

struct Idle {
    sender: http1::SendRequest<ReqBody>,
    since: Instant,
}

impl Pool {
    fn state(&self) -> MutexGuard<'_, PoolState> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Pools an idle HTTP/1 connection, unless the egress generation moved
    /// on meanwhile.
    fn give(&self, sender: http1::SendRequest<ReqBody>, generation: u64) {
        let mut state = self.state();
        if state.generation == generation {
            state.push_idle(sender);
            drop(state);
            self.returned.notify_one();
        }
    }
}

impl PoolState {
    /// Forgets the HTTP/2 connections that closed or idled past
    /// [`POOL_IDLE`] (the last sender dropped closes a connection).
    fn prune_h2(&mut self) {
        self.h2.retain(|h2| !h2.sender.is_closed() && !h2.expired());
    }

    /// The oldest live HTTP/2 connection with a stream to spare. Filling
    /// the oldest first lets connections opened for a burst idle out.
    fn h2_with_room(&mut self, max_streams: usize) -> Option<&H2> {
        self.prune_h2();
        self.h2.iter().find(|h2| h2.open() < max_streams)
    }

    /// The live HTTP/2 connection with the fewest open requests.
    fn least_busy_h2(&mut self) -> Option<(&H2, usize)> {
        self.prune_h2();
        self.h2
            .iter()
            .map(|h2| (h2, h2.open()))
            .min_by_key(|(_, n)| *n)
    }

    fn push_idle(&mut self, sender: http1::SendRequest<ReqBody>) {
        self.idle.push(Idle {
            sender,
            since: Instant::now(),
        });
    }

    /// The newest live idle HTTP/1 connection, after dropping those idle
    /// longer than [`POOL_IDLE`] (a middlebox may have forgotten them).
    fn pop_idle(&mut self) -> Option<http1::SendRequest<ReqBody>> {
        let expired = self
            .idle
            .iter()
            .take_while(|i| i.since.elapsed() > POOL_IDLE)
            .count();
        self.idle.drain(..expired);
        while let Some(idle) = self.idle.pop() {
            if !idle.sender.is_closed() {
                return Some(idle.sender);
            }
        }
        None
    }
}

/// Counts a request as waiting at the cap while it lives.
pub struct Waiting<'a>(&'a AtomicUsize);

impl Drop for Waiting<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, SeqCst);
    }
}

impl Pools {
    /// Empty pools for `workers` workers, whose HTTP/2 connections carry
    /// up to `max_streams` requests each.
    pub fn new(workers: usize, max_streams: usize) -> Pools {
        Pools {
            pools: (0..workers.max(1))
                .map(|_| Pool {
                    state: Mutex::default(),
                    returned: Notify::new(),
                    waiting: AtomicUsize::new(0),
                })
                .collect(),
            max_streams: max_streams.max(1),
        }
    }

    /// A live connection of `worker`'s pool: an HTTP/2 one with a stream
    /// to spare, else an idle HTTP/1 one. A new egress `generation` empties
    /// the pool first.
    pub fn checkout(&self, worker: usize, generation: u64) -> Option<Sender> {
        let mut state = self.pools[worker].state();
        if state.generation != generation {
            state.generation = generation;
            state.idle.clear();
            state.h2.clear();
        }
        if let Some(h2) = state.h2_with_room(self.max_streams) {
            return Some(h2.claim());
        }
        state.pop_idle().map(Sender::H1)
    }

    /// Resolves when a connection comes back to `worker`'s pool, or an
    /// HTTP/2 one opens on any worker, after this call (or an HTTP/1 one
    /// came back unclaimed before it).
    pub fn returned(&self, worker: usize) -> Notified<'_> {
        self.pools[worker].returned.notified()
    }

    /// Counts a request of `worker` as waiting at the cap, until the guard
    /// is dropped. Count before looking for [`Pools::steal_idle`]: see
    /// [`Pools::put`].
    pub fn wait(&self, worker: usize) -> Waiting<'_> {
        let count = &self.pools[worker].waiting;
        count.fetch_add(1, SeqCst);
        Waiting(count)
    }

    /// Pools a new HTTP/2 connection as `worker`'s (unless the egress
    /// generation moved on meanwhile), and claims a stream on it. Requests
    /// waiting at the connection cap, on any worker, are woken to ride it.
    pub fn keep_h2(
        &self,
        worker: usize,
        sender: http2::SendRequest<ReqBody>,
        generation: u64,
    ) -> Sender {
        let h2 = H2::new(sender);
        let claimed = h2.claim();
        let mut state = self.pools[worker].state();
        if state.generation == generation {
            state.h2.push(h2);
            drop(state);
            for pool in &self.pools {
                pool.returned.notify_waiters();
            }
        }
        claimed
    }

    /// Forgets `worker`'s HTTP/2 connections that have closed (or idled
    /// out).
    pub fn forget_closed_h2(&self, worker: usize) {
        self.pools[worker].state().prune_h2();
    }

    /// The least busy live HTTP/2 connection of any worker, full or not:
    /// for a request at the connection cap.
    pub fn borrow_h2(&self, generation: u64) -> Option<Sender> {
        let least = self.pools.iter().filter_map(|pool| {
            let mut state = pool.state();
            if state.generation != generation {
                return None;
            }
            state.least_busy_h2().map(|(h2, open)| (h2.clone(), open))
        });
        least
            .min_by_key(|(_, open)| *open)
            .map(|(h2, _)| h2.claim())
    }

    /// The newest live idle HTTP/1 connection of another worker.
    pub fn steal_idle(
        &self,
        worker: usize,
        generation: u64,
    ) -> Option<http1::SendRequest<ReqBody>> {
        let others = self.pools.iter().enumerate().filter(|(i, _)| *i != worker);
        others.map(|(_, p)| p).find_map(|pool| {
            let mut state = pool.state();
            if state.generation != generation {
                return None;
            }
            state.pop_idle()
        })
    }

    /// Takes back `worker`'s HTTP/1 connection whose exchange is over. A
    /// request of another worker waiting at the cap gets it, unless one of
    /// `worker`'s own waits; otherwise it is pooled.
    ///
    /// The waiting counts are read under the pool's lock, and a waiter
    /// counts itself before it looks for idle connections under the same
    /// locks: so either the waiter finds the connection idle, or this sees
    /// the waiter.
    fn put(&self, worker: usize, sender: http1::SendRequest<ReqBody>, generation: u64) {
        if sender.is_closed() {
            return;
        }
        let own = &self.pools[worker];
        let mut state = own.state();
        let taker = match own.waiting.load(SeqCst) {
            0 => self.pools.iter().position(|p| p.waiting.load(SeqCst) > 0),
            _ => None,
        };
        match taker {
            Some(other) => {
                drop(state);
                self.pools[other].give(sender, generation);
            }
            None if state.generation == generation => {
                state.push_idle(sender);
                drop(state);
                own.returned.notify_one();
            }
            None => {}
        }
    }
}

/// An upstream response body. An HTTP/1 connection goes back to its pool,
/// and an HTTP/2 stream is released, once the body has been read to the
/// end.
pub struct UpstreamBody {
    inner: Incoming,
    at_end: Option<AtEnd>,
}

/// What a body's end frees.
enum AtEnd {
    /// An HTTP/1 connection, to go back to its pool.
    Return(http1::SendRequest<ReqBody>, Back),
    /// An HTTP/2 stream, released when this is dropped.
    Release { _stream: StreamSlot },
}

/// Where an HTTP/1 connection goes back to.
pub struct Back {
    pub pools: Arc<Pools>,
    pub worker: usize,
    pub generation: u64,
}

impl UpstreamBody {
    /// A body on an HTTP/2 `stream`.
    pub fn on_stream(inner: Incoming, stream: StreamSlot) -> UpstreamBody {
        UpstreamBody::ending(inner, AtEnd::Release { _stream: stream })
    }

    /// A body whose HTTP/1 connection goes `back` when it ends.
    pub fn returning(
        inner: Incoming,
        sender: http1::SendRequest<ReqBody>,
        back: Back,
    ) -> UpstreamBody {
        UpstreamBody::ending(inner, AtEnd::Return(sender, back))
    }

    fn ending(inner: Incoming, at_end: AtEnd) -> UpstreamBody {
        let mut body = UpstreamBody {
            inner,
            at_end: Some(at_end),
        };
        body.return_if_done();
        body
    }

    fn return_if_done(&mut self) {
        if self.inner.is_end_stream() {
            self.give_back();
        }
    }

    fn give_back(&mut self) {
        if let Some(AtEnd::Return(sender, back)) = self.at_end.take() {
            back.pools.put(back.worker, sender, back.generation);
        }
    }
}

impl Body for UpstreamBody {
    type Data = Bytes;
    type Error = hyper::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, hyper::Error>>> {
        let polled = Pin::new(&mut self.inner).poll_frame(cx);
        match &polled {
            Poll::Ready(None) => self.give_back(),
            Poll::Ready(Some(Ok(_))) => self.return_if_done(),
            // An error ends the connection (or the stream); it is not
            // returned.
            Poll::Ready(Some(Err(_))) => self.at_end = None,
            Poll::Pending => {}
        }
        polled
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

#[cfg(test)]
impl Pools {
    fn state_of(&self, worker: usize) -> MutexGuard<'_, PoolState> {
        self.pools[worker].state()
    }
}

#[cfg(test)]
mod tests;
