//! Trace recording on the request path: what the policy was asked and
//! answered, written as one line when the request is done (see
//! [`crate::trace`]). Off unless `[trace] file` is set.

use super::server::Gateway;
use crate::config::Config;
use crate::core::{Admission, Attempt, NextStep, Outcome, RequestFacts, ResponseFacts, View};
use crate::trace::{AttemptRecord, Record, TraceWriter};
use anyhow::Context;
use std::time::Duration;

/// Opens the trace file, when the config asks for one.
pub fn open(config: &Config) -> anyhow::Result<Option<TraceWriter>> {
    let Some(path) = &config.trace.file else {
        return Ok(None);
    };
    let writer = TraceWriter::open(path, config.trace.max_bytes)
        .with_context(|| format!("cannot open the trace file {}", path.display()))?;
    tracing::info!(path = %path.display(), "recording a trace");
    Ok(Some(writer))
}

/// One request's record; written when dropped, on every path out.
pub struct Recorder<'a> {
    writer: Option<&'a TraceWriter>,
    record: Option<Record>,
    req: &'a RequestFacts,
}

impl<'a> Recorder<'a> {
    /// Records `req` if the gateway records at all.
    pub fn start(gw: &'a Gateway, req: &'a RequestFacts) -> Recorder<'a> {
        Recorder {
            writer: gw.trace.as_ref(),
            record: None,
            req,
        }
    }

    /// The first admission asked for, and its answer.
    pub fn admission(&mut self, view: &View, admission: &Admission) {
        if self.writer.is_some() && self.record.is_none() {
            self.record = Some(Record {
                req: self.req.clone(),
                view: view.clone(),
                admission: Some(admission.clone()),
                attempts: Vec::new(),
            });
        }
    }

    /// A failed attempt, the view the policy saw and what it decided.
    pub fn outcome(&mut self, attempt: &Attempt, view: &View, step: &NextStep) {
        if let Some(r) = &mut self.record {
            r.attempts.push(AttemptRecord {
                attempt: *attempt,
                view: Some(view.clone()),
                step: Some(*step),
            });
        }
    }

    /// A success, delivered without asking the policy.
    pub fn delivered(
        &mut self,
        number: u32,
        upstream: u32,
        prev_delay_ms: u64,
        status: u16,
        took: Duration,
    ) {
        if let Some(r) = &mut self.record {
            let outcome = Outcome::Response(ResponseFacts {
                status,
                should_retry: None,
                retry_after_ms: None,
                retry_after: None,
                error: None,
                spend_cap: false,
                elapsed_ms: took.as_millis().min(u128::from(u32::MAX)) as u32,
            });
            r.attempts.push(AttemptRecord {
                attempt: Attempt {
                    number,
                    upstream,
                    prev_delay_ms,
                    outcome,
                },
                view: None,
                step: None,
            });
        }
    }
}

impl Drop for Recorder<'_> {
    fn drop(&mut self) {
        if let (Some(w), Some(r)) = (self.writer, &self.record) {
            w.write(r);
        }
    }
}
