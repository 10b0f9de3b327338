//! levee's request loop, once, without I/O.
//!
//! A request's life (admit or queue, attempt, ask the policy, apply the
//! rails, wait for retry room, retry or fail over, deliver or give up) is
//! the state machine [`Exchange`]. It never sleeps, sends or reads a
//! clock: it tells its driver what to do next ([`Action`]) and is told
//! what happened. Three drivers step it: the gateway (`host/src/gateway`),
//! the edge component (`guest/edge`) and `levee policy replay`
//! (`host/src/trace/replay.rs`), so a replayed trace meets the very rules
//! the gateway applied.
//!
//! Around the machine sit the other pieces both hosts need alike:
//! - [`reply`]: every response levee makes itself, from one table, and the
//!   verdict headers of a give-up;
//! - [`sse`]: event framing, the stream's end, the terminal error frame;
//!   [`early`]: a stream's first events, held until content flows;
//! - [`classes`]: the model class a request's limits are kept under;
//! - [`facts`] and [`json_fields`]: what a request tells before it is sent;
//!   [`body`]: what a delivered body tells when it is over;
//! - [`body_limits`]: each endpoint's body limit, and which bodies levee
//!   never reads.

pub mod body;
pub mod body_limits;
pub mod classes;
pub mod early;
pub mod estimate;
pub mod facts;
pub mod json_fields;
mod machine;
pub mod rails;
pub mod reply;
pub mod sse;

pub use machine::{Action, Exchange, GiveUpAt, Why};
pub use rails::{Rail, Rails};
pub use reply::{LocalReply, Reason};
