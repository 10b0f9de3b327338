//! Recording: one line per finished request, appended to a file, until the
//! file reaches its size bound.

use super::Record;
use levee_policy_core::wire::Wire;
use std::fs::File;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Mutex;

/// Appends trace records to a file, at most `max_bytes` in all; past that,
/// it logs once and records nothing more.
#[derive(Debug)]
pub struct TraceWriter {
    path: PathBuf,
    max_bytes: u64,
    state: Mutex<State>,
}

#[derive(Debug)]
struct State {
    file: File,
    written: u64,
    full: bool,
}

impl TraceWriter {
    /// Opens (creates or appends to) the trace file.
    pub fn open(path: &Path, max_bytes: u64) -> std::io::Result<TraceWriter> {
        let file = File::options().create(true).append(true).open(path)?;
        let written = file.metadata()?.len();
        Ok(TraceWriter {
            path: path.to_path_buf(),
            max_bytes,
            state: Mutex::new(State {
                file,
                written,
                full: false,
            }),
        })
    }

    /// Appends one record as a line; drops it when the bound would be
    /// passed. A write error is logged, never fatal to the request.
    pub fn write(&self, record: &Record) {
        let mut line = record.to_json().to_string();
        line.push('\n');
        let mut s = self.state.lock().unwrap_or_else(|p| p.into_inner());
        if s.full {
            return;
        }
        if s.written + line.len() as u64 > self.max_bytes {
            s.full = true;
            tracing::warn!(path = %self.path.display(), max_bytes = self.max_bytes, "trace file is full; recording stops");
            return;
        }
        match s.file.write_all(line.as_bytes()) {
            Ok(()) => s.written += line.len() as u64,
            Err(e) => {
                tracing::warn!(path = %self.path.display(), error = %e, "cannot write the trace; recording stops");
                s.full = true;
            }
        }
    }
}
