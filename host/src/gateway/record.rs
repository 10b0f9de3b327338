//! Trace recording on the request path: what the policy was asked and
//! answered, written as one line when the request is done (see
//! [`crate::trace`]). Off unless `[trace] file` is set.

use super::server::Gateway;
use crate::config::Config;
use crate::core::{Admission, Attempt, NextStep, RequestFacts, View};
use crate::trace::{AttemptRecord, Record, TraceWriter};
use anyhow::Context;
use levee_exchange::{GiveUpAt, Why};

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
}

impl<'a> Recorder<'a> {
    /// A record, if the gateway records at all.
    pub fn start(gw: &'a Gateway) -> Recorder<'a> {
        Recorder {
            writer: gw.trace.as_ref(),
            record: None,
        }
    }

    /// The first admission asked for about `req` (of model class `class`),
    /// and its answer.
    pub fn admission(
        &mut self,
        req: &RequestFacts,
        class: &str,
        view: &View,
        admission: &Admission,
    ) {
        if self.writer.is_some() && self.record.is_none() {
            self.record = Some(Record {
                req: req.clone(),
                view: view.clone(),
                admission: Some(admission.clone()),
                attempts: Vec::new(),
                model_class: Some(class.to_owned()),
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
                overruled: None,
            });
        }
    }

    /// The end of the retries: a rail that overruled the policy's last
    /// retry is noted on that attempt.
    pub fn gave_up(&mut self, at: &GiveUpAt) {
        if let (Some(r), Why::Overruled(rail)) = (&mut self.record, at.why)
            && let Some(last) = r.attempts.last_mut()
        {
            last.overruled = Some(rail);
        }
    }

    /// A success, delivered without asking the policy.
    pub fn delivered(&mut self, attempt: &Attempt) {
        if let Some(r) = &mut self.record {
            r.attempts.push(AttemptRecord {
                attempt: *attempt,
                view: None,
                step: None,
                overruled: None,
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
