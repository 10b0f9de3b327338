//! Rate limiting and admission: levee paces requests before the upstream
//! would answer 429, and queues what does not fit instead of bouncing it.
//!
//! - [`bucket`]: the continuously refilling bucket, the API's own model.
//! - [`Limiter`]: reserves a request's charges atomically for an upstream
//!   and optionally a client key, and settles them from the response.
//!   [`memory::MemoryLimiter`] is the in-process implementation.
//! - [`headers`]: the upstream's `*-ratelimit-*` headers, read defensively.
//! - [`queue`]: the bounded wait line, FIFO per priority.
//! - [`usage`]: the response's token usage, from JSON or SSE.

pub mod admit;
pub mod bucket;
pub mod headers;
pub mod memory;
pub mod queue;
pub mod redis;
pub mod shared;
pub mod usage;

use crate::core::{Budget, Charge, LimitKind};
use std::fmt;
use std::future::Future;
use std::pin::Pin;

pub use crate::config::{LimitSpec, ScopeLimits};
pub use levee_exchange::classes::{Class, Classes};

/// Where rate limits are kept: an upstream and a model class (the API
/// limits each class apart). Concurrency is the upstream's as a whole.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct Lane {
    /// The upstream's index.
    pub upstream: u32,
    /// The request's model class.
    pub class: Class,
}

impl Lane {
    /// `upstream`'s lane for `class`.
    pub fn new(upstream: u32, class: Class) -> Lane {
        Lane { upstream, class }
    }
}

/// A client, as the limiter knows it: a hash of its API key, never the
/// key itself.
/// Sixteen bytes: cheap to hash and to copy, which admission does per
/// request.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct ClientKey([u8; 16]);

impl ClientKey {
    /// The key for an API key: the first 16 bytes of its SHA-256.
    pub fn of(api_key: &[u8]) -> ClientKey {
        use sha2::Digest;
        let digest = sha2::Sha256::digest(api_key);
        let mut key = [0u8; 16];
        key.copy_from_slice(&digest[..16]);
        ClientKey(key)
    }

    /// The client's key for a request: its `x-api-key`, else its
    /// `authorization` header; `None` for an anonymous request.
    pub fn from_headers(h: &http::HeaderMap) -> Option<ClientKey> {
        const X_API_KEY: http::HeaderName = http::HeaderName::from_static("x-api-key");
        let value = h
            .get(X_API_KEY)
            .or_else(|| h.get(http::header::AUTHORIZATION))?;
        Some(ClientKey::of(value.as_bytes()))
    }

    /// The hash, in hex.
    pub fn hex(&self) -> String {
        self.to_string()
    }
}

impl fmt::Display for ClientKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.iter().try_for_each(|b| write!(f, "{b:02x}"))
    }
}

impl fmt::Debug for ClientKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "ClientKey({self})")
    }
}

/// What a grant took from one bucket.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Taken {
    /// The upstream's buckets or the client's.
    pub client: bool,
    /// Which limit.
    pub kind: LimitKind,
    /// How much.
    pub amount: u64,
}

/// What a successful reservation took, so it can be settled.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Grant {
    /// The upstream and class the charges were reserved on.
    pub lane: Lane,
    /// The client, when client charges were taken.
    pub client: Option<ClientKey>,
    /// What was taken.
    pub taken: Vec<Taken>,
    /// The lease of the shared (Redis) part of the grant, when there is
    /// one; `taken` is then the local part alone.
    pub shared: Option<u64>,
}

/// Why a reservation was refused.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Denied {
    /// Everything fits at this time, at the earliest.
    Until(u64),
    /// A concurrency limit is full; it frees when a request ends.
    Busy,
    /// The charge of this kind is larger than the limit: it never fits.
    Never(LimitKind),
    /// The shared limiter cannot be reached, and its configuration says
    /// to refuse rather than guess.
    Unavailable,
}

/// A reservation under way: ready at once for in-process limits, one
/// round trip for shared ones.
pub type Reserving<'a> = Pin<Box<dyn Future<Output = Result<Grant, Denied>> + Send + 'a>>;

pub use levee_exchange::body::Usage;

/// One dimension of an upstream's rate-limit report.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Reported {
    /// The limit, per minute.
    pub limit: Option<u64>,
    /// What is left.
    pub remaining: Option<u64>,
    /// When the bucket is full again (ms since the epoch).
    pub reset_at: Option<u64>,
}

/// Enforces limits. Every method takes `now` (ms since the epoch), so an
/// implementation is testable without a clock.
pub trait Limiter: Send + Sync {
    /// Reserves every charge of `charges` on `lane` (and `client`'s lane
    /// of the same class, for client-scoped ones) atomically: all or
    /// nothing.
    fn reserve<'a>(
        &'a self,
        lane: Lane,
        client: Option<&'a ClientKey>,
        charges: &'a [Charge],
        now: u64,
    ) -> Reserving<'a>;

    /// A granted request was never sent: gives everything back. This and
    /// the methods below never wait: a shared limiter sends them later.
    fn cancel(&self, grant: &Grant, now: u64);

    /// A sent request ended: releases its concurrency, and settles its
    /// token charges with the actual `usage` where known.
    fn settle(&self, grant: &Grant, usage: Usage, now: u64);

    /// Corrects a lane's buckets from the headers of an answer in it.
    fn observe(&self, lane: Lane, kind: LimitKind, report: Reported, now: u64);

    /// Grants nothing on `lane` before `until` (a 429's `retry-after`).
    fn close_until(&self, lane: Lane, until: u64);

    /// The lane's budgets (its rates, and its upstream's concurrency), for
    /// the policy's view; empty when the lane has none.
    fn budgets(&self, lane: Lane, now: u64) -> Vec<Budget>;
}
