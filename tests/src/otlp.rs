//! An OTLP/HTTP receiver for the trace tests: `tests/otlp/receiver.py`,
//! which decodes exports with the official `opentelemetry-proto`
//! definitions and keeps each span as a JSON line.

use std::io::{BufRead, BufReader};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// A running receiver, stopped by its PID when dropped.
pub struct OtlpReceiver {
    child: Child,
    port: u16,
    out: PathBuf,
    _dir: tempfile::TempDir,
}

impl OtlpReceiver {
    /// Starts one that accepts every export.
    pub fn start() -> OtlpReceiver {
        Self::failing_first(0)
    }

    /// Starts one that answers the first `n` exports 503.
    pub fn failing_first(n: u32) -> OtlpReceiver {
        let python = crate::workspace().join(".venv/bin/python");
        assert!(
            python.exists(),
            "{} is missing: run `make setup` (make test does)",
            python.display()
        );
        let dir = tempfile::tempdir().expect("temp dir");
        let out = dir.path().join("spans.jsonl");
        let mut child = Command::new(python)
            .arg(crate::workspace().join("tests/otlp/receiver.py"))
            .arg(&out)
            .arg("--fail")
            .arg(n.to_string())
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .spawn()
            .expect("the OTLP receiver starts");
        let mut line = String::new();
        BufReader::new(child.stdout.take().expect("piped"))
            .read_line(&mut line)
            .expect("the receiver prints its port");
        let port = line
            .trim()
            .strip_prefix("listening ")
            .and_then(|p| p.parse().ok())
            .unwrap_or_else(|| {
                panic!("the receiver did not start (is opentelemetry-proto installed? run `make setup`): {line:?}")
            });
        OtlpReceiver {
            child,
            port,
            out,
            _dir: dir,
        }
    }

    /// The endpoint for `[otel] endpoint`.
    pub fn endpoint(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// Every span received so far.
    pub fn spans(&self) -> Vec<serde_json::Value> {
        read_lines(&self.out)
    }

    /// The request headers of every export tried so far.
    pub fn exports(&self) -> Vec<serde_json::Value> {
        read_lines(&self.out.with_extension("jsonl.exports"))
    }

    /// Waits up to `limit` until `n` spans have arrived; returns them.
    pub fn wait_for(&self, n: usize, limit: Duration) -> Vec<serde_json::Value> {
        let start = Instant::now();
        loop {
            let spans = self.spans();
            if spans.len() >= n || start.elapsed() > limit {
                return spans;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

fn read_lines(path: &std::path::Path) -> Vec<serde_json::Value> {
    std::fs::read_to_string(path)
        .unwrap_or_default()
        .lines()
        .map(|l| serde_json::from_str(l).expect("the receiver writes JSON lines"))
        .collect()
}

impl Drop for OtlpReceiver {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
