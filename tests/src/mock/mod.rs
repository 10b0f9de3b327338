//! A scriptable mock of the Anthropic API for levee's tests: it answers,
//! fails, stalls and cuts exactly as scripted, and records every request.
//!
//! ```no_run
//! # async fn demo() {
//! use levee_tests::mock::{MockUpstream, Reply, RetryAfter, Script, SseScript, Step};
//!
//! let upstream = MockUpstream::start(Script::of([
//!     Step::Reply(Reply::rate_limited(RetryAfter::Secs(1))),
//!     Step::Reset,
//!     Step::Sse(SseScript::message("Hello there").cut_after(3, 10)),
//! ]))
//! .await;
//! // point levee at upstream.url(), send requests, then:
//! let attempts = upstream.wait_requests(3).await;
//! assert_eq!(attempts[0].path, "/v1/messages");
//! # }
//! ```

mod body;
mod conn;
mod pki;
mod ratelimit;
mod script;
mod server;
mod sse;

#[cfg(test)]
mod tests;

pub use pki::{Chain, TestPki};
pub use ratelimit::{Admission, Buckets, Cost, RateLimits};
pub use script::{FirstSight, Reply, RetryAfter, Script, Step, http_date, rfc3339};
pub use server::{MockUpstream, Recorded};
pub use sse::{SseEnd, SseScript, error_event, event};
