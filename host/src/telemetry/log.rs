//! Log lines go to stderr. Access lines (target `levee::access`, one per
//! request) are batched: appended to a buffer that a background thread
//! writes out 20 ms after a line lands in it, or written at once when
//! 64 KiB are pending, so the request path pays no `write(2)` of its own
//! for them. With nothing pending the thread is parked: an idle gateway
//! does not wake for it. Each worker thread has a buffer of its own: one
//! shared buffer had both cores take its lock and write its cache lines
//! for every request. So within one 20 ms batch, lines are grouped by
//! worker (each keeps its timestamp). Any other line first writes out what
//! is pending, then itself: start-up, warnings and the shutdown messages
//! are never held back or reordered before earlier access lines. A process
//! killed outright loses at most the last 20 ms of access lines; one that
//! exits writes them all out first.
//!
//! The access line itself is formatted in `access.rs`, straight into the
//! buffer, in the shape the `tracing` formatter gives every other line:
//! formatting it through `tracing-subscriber` cost several times more per
//! request.

use super::per_thread::PerThread;
use std::io::{self, Write};
use std::sync::{Arc, Mutex, MutexGuard, OnceLock};
use std::thread::Thread;
use std::time::Duration;
use tracing_subscriber::fmt::MakeWriter;

/// How long after a line lands in an empty buffer it is written out.
const FLUSH_EVERY: Duration = Duration::from_millis(20);
/// Pending bytes that are written out at once.
const MAX_PENDING: usize = 64 * 1024;
/// The batched target.
const ACCESS: &str = "levee::access";

/// The writer `init_logging` gives the formatter.
#[derive(Clone)]
pub struct Stderr {
    pending: Arc<Pending>,
}

/// Access lines not yet written, a buffer per thread.
#[derive(Default)]
pub struct Pending {
    buffers: PerThread<Mutex<Vec<u8>>>,
    /// The flushing thread: unparked when a line lands in an empty buffer.
    flusher: OnceLock<Thread>,
}

impl Pending {
    /// Appends to this thread's buffer with `append`. A full buffer is
    /// written out at once; a line in an empty one wakes the flusher.
    fn append(&self, append: impl FnOnce(&mut Vec<u8>)) {
        let mut buf = lock(self.buffers.mine());
        let was_empty = buf.is_empty();
        if buf.capacity() == 0 {
            buf.reserve(MAX_PENDING);
        }
        append(&mut buf);
        if buf.len() >= MAX_PENDING {
            let full = std::mem::replace(&mut *buf, Vec::with_capacity(MAX_PENDING));
            drop(buf);
            write_out(full);
        } else if was_empty {
            drop(buf);
            self.wake_flusher();
        }
    }

    fn wake_flusher(&self) {
        if let Some(t) = self.flusher.get() {
            t.unpark();
        }
    }

    /// Writes out every buffer's pending lines.
    fn write_all_out(&self) {
        for b in self.buffers.all() {
            write_out(take(b));
        }
    }
}

impl Drop for Pending {
    fn drop(&mut self) {
        // A parked flusher would never see that it is no longer needed.
        self.wake_flusher();
    }
}

/// Where access lines go once logging is set up: the buffers, and whether
/// lines are JSON.
static ACCESS_SINK: OnceLock<(Arc<Pending>, bool)> = OnceLock::new();

/// Appends one access line, formatted by `format` (given the buffer and
/// whether to write JSON); `false` when logging was not set up through
/// [`Stderr::new`] (then the caller logs through `tracing`).
pub(crate) fn access_line(format: impl FnOnce(&mut Vec<u8>, bool)) -> bool {
    let Some((pending, json)) = ACCESS_SINK.get() else {
        return false;
    };
    pending.append(|buf| format(buf, *json));
    true
}

/// Writes out every pending access line: called as the process exits,
/// after the last request ended.
pub fn flush_access_lines() {
    if let Some((pending, _)) = ACCESS_SINK.get() {
        pending.write_all_out();
    }
}

impl Stderr {
    /// A writer with its flushing thread (which ends with the writer); the
    /// first one made also takes the access lines, as JSON when `json`.
    pub fn new(json: bool) -> Stderr {
        let pending = Arc::new(Pending::default());
        let weak = Arc::downgrade(&pending);
        let flusher = std::thread::Builder::new()
            .name("levee-log".into())
            .spawn(move || {
                loop {
                    // Until a line is pending; then let a batch gather.
                    std::thread::park();
                    std::thread::sleep(FLUSH_EVERY);
                    let Some(pending) = weak.upgrade() else {
                        return;
                    };
                    pending.write_all_out();
                }
            });
        if let Ok(handle) = flusher {
            let _ = pending.flusher.set(handle.thread().clone());
        }
        let _ = ACCESS_SINK.set((pending.clone(), json));
        Stderr { pending }
    }
}

fn lock(p: &Mutex<Vec<u8>>) -> MutexGuard<'_, Vec<u8>> {
    p.lock().unwrap_or_else(|e| e.into_inner())
}

/// The pending bytes, leaving the buffer empty (its next line reserves
/// room again).
fn take(p: &Mutex<Vec<u8>>) -> Vec<u8> {
    std::mem::take(&mut *lock(p))
}

fn write_out(bytes: Vec<u8>) {
    if !bytes.is_empty() {
        let _ = io::stderr().lock().write_all(&bytes);
    }
}

/// One event's writer.
pub enum Line<'a> {
    /// An access line: into this thread's buffer.
    Batched(&'a Pending),
    /// Anything else: after what is pending, straight out.
    Direct(&'a Pending),
}

impl Write for Line<'_> {
    fn write(&mut self, data: &[u8]) -> io::Result<usize> {
        match self {
            Line::Batched(p) => p.append(|buf| buf.extend_from_slice(data)),
            Line::Direct(p) => {
                let mut err = io::stderr().lock();
                for b in p.buffers.all() {
                    err.write_all(&take(b))?;
                }
                err.write_all(data)?;
            }
        }
        Ok(data.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

impl<'a> MakeWriter<'a> for Stderr {
    type Writer = Line<'a>;

    fn make_writer(&'a self) -> Line<'a> {
        Line::Direct(&self.pending)
    }

    fn make_writer_for(&'a self, meta: &tracing::Metadata<'_>) -> Line<'a> {
        if meta.target() == ACCESS {
            Line::Batched(&self.pending)
        } else {
            Line::Direct(&self.pending)
        }
    }
}
