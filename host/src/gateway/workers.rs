//! Worker threads: each runs a single-threaded tokio runtime and serves the
//! client connections handed to it, start to finish, with its own upstream
//! connection pools.
//!
//! Why not one multi-threaded runtime: a proxied request wakes tasks on
//! both of its connections, and a work-stealing scheduler spreads those
//! wake-ups across threads, each one a futex and a context switch. Measured
//! with wrk on this 2-core machine, the same request cost 70-80 µs of CPU
//! on the multi-threaded runtime and 51-53 µs on a single-threaded one.
//! So levee works like nginx: one event loop per core, a connection never
//! changes thread, and neither do the upstream connections its requests
//! use. One acceptor hands each new connection to the worker serving the
//! fewest, which balances keep-alive clients better than `SO_REUSEPORT`'s
//! hashing and needs no port tricks. The price is that one client
//! connection is served by one core, which a single HTTP/2 connection
//! carrying thousands of requests a second would notice; LLM API traffic
//! is far from that.

use super::server::{Gateway, serve_connections};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::thread::JoinHandle;
use std::time::Duration;
use tokio::sync::mpsc;

pub use crate::worker::current;

/// How many connections the workers are serving, readable after
/// [`Workers::finish`] took them.
pub struct OpenConnections(Vec<Arc<AtomicUsize>>);

impl OpenConnections {
    /// The count now.
    pub fn now(&self) -> usize {
        self.0.iter().map(|l| l.load(Ordering::Relaxed)).sum()
    }
}

/// The worker threads, and the acceptor's handles on them.
pub struct Workers {
    queues: Vec<mpsc::UnboundedSender<std::net::TcpStream>>,
    /// Connections each worker is serving.
    load: Vec<Arc<AtomicUsize>>,
    threads: Vec<JoinHandle<()>>,
}

impl Workers {
    /// Starts `n` workers. Each serves what it is handed until
    /// [`Workers::finish`], then lets its connections finish for up to
    /// `grace`.
    pub fn start(
        gw: &Arc<Gateway>,
        n: usize,
        grace: Duration,
        header_timeout: Duration,
    ) -> std::io::Result<Workers> {
        let n = n.max(1);
        let load: Vec<Arc<AtomicUsize>> = (0..n).map(|_| Arc::default()).collect();
        let mut queues = Vec::with_capacity(n);
        let mut threads = Vec::with_capacity(n);
        for (index, worker_load) in load.iter().enumerate() {
            let (tx, rx) = mpsc::unbounded_channel();
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()?;
            let (gw, worker_load) = (gw.clone(), worker_load.clone());
            let thread = std::thread::Builder::new()
                .name(format!("levee-worker-{index}"))
                .spawn(move || {
                    crate::worker::set_current(index);
                    runtime.block_on(serve_connections(
                        gw,
                        rx,
                        worker_load,
                        grace,
                        header_timeout,
                    ));
                })?;
            queues.push(tx);
            threads.push(thread);
        }
        Ok(Workers {
            queues,
            load,
            threads,
        })
    }

    /// Hands a new connection to the worker serving the fewest.
    pub fn dispatch(&self, stream: tokio::net::TcpStream) {
        let stream = match stream.into_std() {
            Ok(s) => s,
            Err(e) => {
                tracing::warn!(error = %e, "cannot hand a connection to a worker");
                return;
            }
        };
        let index = (0..self.queues.len())
            .min_by_key(|&i| self.load[i].load(Ordering::Relaxed))
            .unwrap_or(0);
        // Counted here, not when the worker gets to it, so that a burst of
        // connections spreads out; the worker uncounts it when it ends.
        self.load[index].fetch_add(1, Ordering::Relaxed);
        if self.queues[index].send(stream).is_err() {
            tracing::warn!(worker = index, "worker has stopped; connection dropped");
        }
    }

    /// A handle on how many connections the workers are serving.
    pub fn open(&self) -> OpenConnections {
        OpenConnections(self.load.clone())
    }

    /// Stops handing out connections and waits for every worker to finish
    /// its own (each within the grace period).
    pub fn finish(self) {
        drop(self.queues);
        for thread in self.threads {
            if thread.join().is_err() {
                tracing::error!("a worker thread panicked");
            }
        }
    }
}
