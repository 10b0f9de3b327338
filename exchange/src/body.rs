//! What a delivered body tells when it is over: how it ended, and the
//! tokens it reported. The gateway's watch, the access log, the metrics
//! and the limiter's settlement all read these.

use levee_policy_core::LimitKind;

/// How a delivered body ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Termination {
    /// Every byte arrived (and, for SSE, `message_stop` or an upstream
    /// `error` event was seen).
    Complete,
    /// The client went away first.
    ClientGone,
    /// No bytes for the idle timeout.
    Stall,
    /// The upstream failed or closed early.
    UpstreamCut,
    /// The upstream ended the stream with its own `error` event, after
    /// content had reached the client; the status the API gives that
    /// error's type.
    UpstreamError {
        /// 529 for `overloaded_error`, 500 for `api_error`…
        status: u16,
    },
}

impl Termination {
    /// The label used in logs and metrics.
    pub fn label(self) -> &'static str {
        match self {
            Termination::Complete => "complete",
            Termination::ClientGone => "client_gone",
            Termination::Stall => "stall",
            Termination::UpstreamCut => "upstream_cut",
            Termination::UpstreamError { .. } => "upstream_error",
        }
    }
}

/// Actual usage from a response, for reconciliation.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Usage {
    /// `input_tokens`: the input neither read from nor written to the
    /// prompt cache, when reported.
    pub input: Option<u64>,
    /// `cache_creation_input_tokens`: input written to the cache, billed
    /// and limited as input.
    pub cache_write: Option<u64>,
    /// `cache_read_input_tokens`: input read from the cache, which the
    /// API's input-token limits do not count for current models.
    pub cache_read: Option<u64>,
    /// Output tokens produced, when known.
    pub output: Option<u64>,
}

impl Usage {
    /// The input that counts toward input-token limits, by the API's rule:
    /// `input_tokens + cache_creation_input_tokens`.
    pub fn limited_input(&self) -> Option<u64> {
        let input = self.input?;
        Some(input.saturating_add(self.cache_write.unwrap_or(0)))
    }

    /// The usage as input-token limits see it where they count cache
    /// reads too (`reads_count`, older models): the reads join the input.
    pub fn limited_as(mut self, reads_count: bool) -> Usage {
        if reads_count && let Some(reads) = self.cache_read.take() {
            self.input = self.input.map(|input| input.saturating_add(reads));
        }
        self
    }

    /// What a charge of `kind` reserved at `reserved` really cost: the
    /// reported usage, else the estimate; `None` for concurrency, which
    /// has nothing to settle.
    pub fn actual(&self, kind: LimitKind, reserved: u64) -> Option<u64> {
        match kind {
            LimitKind::Requests => Some(reserved),
            LimitKind::InputTokens => Some(self.limited_input().unwrap_or(reserved)),
            LimitKind::OutputTokens => Some(self.output.unwrap_or(reserved)),
            LimitKind::Concurrency => None,
        }
    }
}
