//! Large request bodies, and how much memory a process spends on them.

use crate::mock::{MockUpstream, Reply, Script};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread::JoinHandle;
use std::time::Duration;

/// A Message Batches body of about `size` bytes: requests of the shape the
/// API takes, each with its own id.
pub fn batch_body(size: usize) -> Vec<u8> {
    let mut body = br#"{"requests":["#.to_vec();
    let mut i = 0;
    while body.len() < size {
        if i > 0 {
            body.push(b',');
        }
        let line = format!(
            r#"{{"custom_id":"req-{i}","params":{{"model":"claude-sonnet-4-5","max_tokens":64,"messages":[{{"role":"user","content":"Summarise item {i} of the catalogue in one line."}}]}}}}"#
        );
        body.extend_from_slice(line.as_bytes());
        i += 1;
    }
    body.extend_from_slice(b"]}");
    body
}

/// What the API answers a batch it accepted with.
pub const BATCH_CREATED: &str =
    r#"{"id":"msgbatch_01","type":"message_batch","processing_status":"in_progress"}"#;

/// A mock that accepts a batch, answers the next with 529, then accepts
/// every one after.
pub async fn batches_overloaded_once() -> MockUpstream {
    let created = || Reply::json(200, BATCH_CREATED);
    MockUpstream::start(Script::of([created(), Reply::overloaded()]).otherwise(created())).await
}

/// A line of `/proc/PID/status`, in kB.
pub fn proc_kb(pid: u32, field: &str) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).expect("proc status");
    status
        .lines()
        .find_map(|l| l.strip_prefix(field))
        .and_then(|v| v.split_whitespace().next()?.parse().ok())
        .unwrap_or_else(|| panic!("no {field} in /proc/{pid}/status"))
}

/// Samples a process's resident size every 2 ms on a thread of its own,
/// until stopped. The kernel's own peak (VmHWM) misses memory an allocator
/// gives back with `madvise`; a body held in memory stays for its whole
/// exchange, far longer than a sample's gap.
pub struct RssSampler {
    stop: Arc<AtomicBool>,
    thread: JoinHandle<(u64, u32)>,
}

impl RssSampler {
    /// Starts sampling `pid`.
    pub fn start(pid: u32) -> RssSampler {
        let stop = Arc::new(AtomicBool::new(false));
        let stopped = stop.clone();
        let thread = std::thread::spawn(move || {
            let (mut peak, mut samples) = (0, 0);
            while !stopped.load(Ordering::Relaxed) {
                peak = peak.max(proc_kb(pid, "VmRSS:"));
                samples += 1;
                std::thread::sleep(Duration::from_millis(2));
            }
            (peak, samples)
        });
        RssSampler { stop, thread }
    }

    /// The largest resident size seen, kB, and how many samples were taken.
    pub fn stop(self) -> (u64, u32) {
        self.stop.store(true, Ordering::Relaxed);
        self.thread.join().expect("the sampler")
    }
}
