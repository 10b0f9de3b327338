//! What levee tells about itself: Prometheus metrics, the access log and
//! the other log lines, and the per-thread cells that keep recording them
//! off the request path's shared cache lines.

pub(crate) mod access;
pub mod activity;
pub mod few;
pub mod limits;
mod log;
pub(crate) mod metrics;
pub mod otel;
pub mod per_thread;
pub(crate) mod sharded;

pub use log::{Stderr as LogWriter, flush_access_lines};
pub use metrics::Metrics;
