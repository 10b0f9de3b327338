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
    /// Opens (creates or appends to) the trace file. A new file is made
    /// readable by its owner only (it records requests' facts); an existing
    /// one that others may read gets a warning.
    pub fn open(path: &Path, max_bytes: u64) -> std::io::Result<TraceWriter> {
        use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
        let file = File::options()
            .create(true)
            .append(true)
            .mode(0o600)
            .open(path)?;
        let mode = file.metadata()?.permissions().mode();
        if mode & 0o077 != 0 {
            tracing::warn!(
                path = %path.display(),
                mode = format_args!("{:o}", mode & 0o777),
                "the trace file can be read by others than its owner; chmod 600 it"
            );
        }
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

#[cfg(test)]
mod tests {
    use super::*;
    use levee_policy_core::{Endpoint, Method, RequestFacts, View};

    fn record(id: u64) -> Record {
        Record {
            req: RequestFacts {
                id,
                method: Method::Post,
                endpoint: Endpoint::Messages,
                model: None,
                stream: false,
                max_tokens: None,
                est_input_tokens: 1,
                client: None,
                priority: 0,
                client_retry_count: None,
                received_at: 1,
                deadline: 2,
            },
            view: View {
                now: 1,
                random: 7,
                upstreams: vec![],
                retry_budget: true,
            },
            admission: None,
            attempts: vec![],
            model_class: Some("sonnet".into()),
        }
    }

    #[test]
    fn a_new_trace_file_is_for_its_owner_only() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("trace.jsonl");
        TraceWriter::open(&path, 1_000).unwrap();
        let mode = std::fs::metadata(&path).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600);
    }

    #[test]
    fn records_are_lines_and_the_file_stays_within_its_bound() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("trace.jsonl");
        let line_len = record(1).to_json().to_string().len() as u64 + 1;
        let w = TraceWriter::open(&path, 3 * line_len + line_len / 2).unwrap();
        for id in 1..=10 {
            w.write(&record(id));
        }
        let text = std::fs::read_to_string(&path).unwrap();
        assert_eq!(text.lines().count(), 3, "{text}");
        let ids: Vec<u64> = text
            .lines()
            .map(|l| {
                Record::from_json(&serde_json::from_str(l).unwrap())
                    .unwrap()
                    .req
                    .id
            })
            .collect();
        assert_eq!(ids, [1, 2, 3], "the first records are kept whole");

        // Reopened, the bound counts what is already there.
        let again = TraceWriter::open(&path, 4 * line_len + line_len / 2).unwrap();
        again.write(&record(11));
        again.write(&record(12));
        assert_eq!(std::fs::read_to_string(&path).unwrap().lines().count(), 4);
    }
}
