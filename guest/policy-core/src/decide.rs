//! The decisions: admission of a new request, and what follows an attempt.
//!
//! Both are pure functions of their arguments and the policy's settings.
//! Arithmetic saturates throughout, so no input (unknown ids, an empty
//! order, huge numbers, a deadline in the past) can make them panic.

use crate::backoff;
use crate::config::{Profile, Settings};
use crate::types::{
    Admission, Attempt, Charge, ConfigError, Endpoint, ErrorKind, FailureKind, GiveUp, LimitKind,
    LimitScope, Method, NextStep, Outcome, Plan, PolicyInfo, Rejection, RequestFacts, Retry,
    TimestampMs, View,
};

mod order;
#[cfg(test)]
mod props;
#[cfg(test)]
mod tests;

/// A policy: a profile and its settings, deciding admission and retries.
///
/// It holds no state between calls; everything that changes (the clock,
/// randomness, upstream health and limits) comes in with each call.
#[derive(Clone, Debug)]
pub struct Policy {
    profile: Profile,
    settings: Settings,
}

/// What went wrong with an attempt that may be retried.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Trouble {
    /// 429 or `rate_limit_error`: this upstream's budget, not the request.
    RateLimited,
    /// 529 or `overloaded_error`: this upstream is saturated.
    Overloaded,
    /// No response head arrived.
    Network(FailureKind),
    /// Any other retryable response (5xx, 408, 409, `x-should-retry: true`).
    Error,
}

impl Policy {
    /// A policy of this profile with its default settings.
    pub fn new(profile: Profile) -> Policy {
        Policy {
            profile,
            settings: Settings::defaults(profile),
        }
    }

    /// Applies a JSON configuration over the profile's defaults (the empty
    /// string means the defaults). On error the previous settings stay.
    pub fn configure(&mut self, json: &str) -> Result<(), ConfigError> {
        self.settings = Settings::from_json(self.profile, json)?;
        Ok(())
    }

    /// The settings in force.
    pub fn settings(&self) -> &Settings {
        &self.settings
    }

    /// The policy's profile.
    pub fn profile(&self) -> Profile {
        self.profile
    }

    /// The policy's name, version and a one-line summary.
    pub fn info(&self) -> PolicyInfo {
        let (name, summary) = match self.profile {
            Profile::Standard => (
                "standard",
                "patient: honours retry-after, waits out rate limits, fails over on overload",
            ),
            Profile::Interactive => (
                "interactive",
                "impatient: fails over at once and hands long waits back to the client",
            ),
        };
        PolicyInfo {
            name: name.to_owned(),
            version: env!("CARGO_PKG_VERSION").to_owned(),
            summary: summary.to_owned(),
        }
    }

    /// The request's effective deadline: the host's, or `deadline_ms` after
    /// receipt, whichever is earlier.
    pub fn deadline(&self, req: &RequestFacts) -> TimestampMs {
        req.deadline
            .min(req.received_at.saturating_add(self.settings.deadline_ms))
    }

    /// Decides whether and how to send a new request.
    ///
    /// - Past the deadline: reject with 504 `timeout_error`.
    /// - No upstream configured: reject with 503 `api_error`.
    /// - No upstream available but one frees up at `T`: queue until `T` if
    ///   that is before the deadline and within `max_wait_ms`, otherwise
    ///   reject with 429 `rate_limit_error` and `retry-after` `T - now`.
    /// - Otherwise admit: available upstreams by group, then overloaded,
    ///   rate-limited and unhealthy ones as a last resort; open circuits
    ///   only when every circuit is open. The charges reserve one request,
    ///   one concurrency slot, the estimated input tokens and
    ///   `output_reserve_share` of `max_tokens`, for the upstream and (when
    ///   `charge_client` and the request has a client) for the client. A
    ///   `count_tokens` or batches POST generates nothing: it is charged
    ///   one request and one slot, no tokens (the host keeps its budgets
    ///   apart, as the API does); a read is charged nothing.
    pub fn on_request(&self, req: &RequestFacts, view: &View) -> Admission {
        let now = view.now;
        let deadline = self.deadline(req);
        if now >= deadline {
            return reject(
                504,
                "timeout_error",
                "deadline passed before the request could be sent".to_owned(),
                None,
                false,
            );
        }
        if view.upstreams.is_empty() {
            return reject(
                503,
                "api_error",
                "no upstream is configured".to_owned(),
                None,
                false,
            );
        }
        let ranking = order::rank(view);
        if let (false, Some(free_at)) = (ranking.any_available, ranking.soonest) {
            let wait = free_at.saturating_sub(now);
            if free_at < deadline && wait <= self.settings.max_wait_ms {
                return Admission::Queue(free_at);
            }
            return reject(
                429,
                "rate_limit_error",
                format!(
                    "every upstream is rate-limited or overloaded; the first is free again in {wait} ms"
                ),
                Some(wait),
                true,
            );
        }
        let left = u32::try_from(deadline - now).unwrap_or(u32::MAX);
        Admission::Admit(Plan {
            upstreams: ranking.order,
            try_timeout_ms: self.settings.try_timeout_ms.min(left),
            deadline,
            charges: self.charges(req),
        })
    }

    /// What to reserve with the limiter before sending `req`: tokens only
    /// for a request that generates (see [`generates`]), a request alone
    /// for a `count_tokens` or batches POST, nothing for a read.
    fn charges(&self, req: &RequestFacts) -> Vec<Charge> {
        let counted = req.method == Method::Post
            && matches!(req.endpoint, Endpoint::CountTokens | Endpoint::Batches);
        let (input, output) = if generates(req) {
            let output = req.max_tokens.map_or(0, |m| {
                // The share is within 0..=1, so the product fits; `as`
                // saturates.
                (f64::from(m) * self.settings.output_reserve_share).ceil() as u32
            });
            (req.est_input_tokens, output)
        } else if counted {
            (0, 0)
        } else {
            return Vec::new();
        };
        let amounts = [
            (LimitKind::Requests, 1),
            (LimitKind::Concurrency, 1),
            (LimitKind::InputTokens, input),
            (LimitKind::OutputTokens, output),
        ];
        let client = self.settings.charge_client && req.client.is_some();
        let scopes: &[LimitScope] = if client {
            &[LimitScope::Upstream, LimitScope::Client]
        } else {
            &[LimitScope::Upstream]
        };
        let mut charges = Vec::with_capacity(scopes.len() * amounts.len());
        for &scope in scopes {
            for &(kind, amount) in &amounts {
                if amount > 0 {
                    charges.push(Charge {
                        scope,
                        kind,
                        amount,
                    });
                }
            }
        }
        charges
    }

    /// Decides what follows an attempt, by the API's retry rules.
    ///
    /// - Below 400: deliver.
    /// - A spend cap or `x-should-retry: false`: fail, telling the client
    ///   not to retry.
    /// - Not retryable (a 4xx other than 408, 409 and 429, without
    ///   `x-should-retry: true`): deliver as is.
    /// - Out of attempts or retry budget: fail, passing on any header delay.
    /// - A 429, a 529 or a network failure moves at once to the next
    ///   available upstream in `order`, when there is one. Other retryable
    ///   errors move to it too, after a backoff (the failed upstream's
    ///   `retry-after` does not bind another upstream). A TLS failure never
    ///   retries the same upstream.
    /// - Otherwise retry the same upstream after `retry-after-ms`, else
    ///   `retry-after`, else backoff. A header wait beyond `max_wait_ms`,
    ///   or any wait that would end past the deadline, fails now instead:
    ///   with the header's `retry-after` when there was one.
    pub fn on_outcome(
        &self,
        req: &RequestFacts,
        order: &[u32],
        attempt: &Attempt,
        view: &View,
    ) -> NextStep {
        let s = &self.settings;
        let (trouble, header) = match attempt.outcome {
            Outcome::Response(r) if r.status < 400 => return NextStep::Deliver,
            Outcome::Response(r) => {
                if r.spend_cap || r.should_retry == Some(false) {
                    return fail(false, None);
                }
                let retryable = r.should_retry == Some(true)
                    || matches!(r.status, 408 | 409 | 429)
                    || r.status >= 500;
                if !retryable {
                    return NextStep::Deliver;
                }
                let header = r
                    .retry_after_ms
                    .filter(|&v| v > 0)
                    .or(r.retry_after.filter(|&v| v > 0));
                let trouble = if r.status == 429 || r.error == Some(ErrorKind::RateLimit) {
                    Trouble::RateLimited
                } else if r.status == 529 || r.error == Some(ErrorKind::Overloaded) {
                    Trouble::Overloaded
                } else {
                    Trouble::Error
                };
                (trouble, header)
            }
            Outcome::Failure(kind) => (Trouble::Network(kind), None),
        };
        if attempt.number.saturating_add(1) >= s.max_attempts || !view.retry_budget {
            return fail(false, header);
        }
        let now = view.now;
        let deadline = self.deadline(req);
        let alternative = order::alternative(order, attempt.upstream, view);
        if let (Some(alt), false) = (alternative, trouble == Trouble::Error) {
            if now < deadline {
                return retry(alt, 0);
            }
            return give_up(header);
        }
        if trouble == Trouble::Network(FailureKind::Tls) {
            return fail(false, None);
        }
        // A header's wait speaks for the upstream that sent it, not for the
        // alternative: moving to another upstream backs off instead.
        let (target, header_wait) = match alternative {
            Some(alt) => (alt, None),
            None if order::find(view, attempt.upstream).is_some() => (attempt.upstream, header),
            None => return give_up(header),
        };
        let delay = match header_wait {
            Some(wait) if wait > s.max_wait_ms => return give_up(header),
            Some(wait) => wait,
            None => backoff::delay_ms(
                s.jitter,
                s.base_ms,
                s.cap_ms,
                attempt.number,
                attempt.prev_delay_ms,
                view.random,
            ),
        };
        if now.saturating_add(delay) >= deadline {
            return give_up(header);
        }
        retry(target, delay)
    }
}

/// Stop now: with `x-should-retry: true` and the header's wait when a header
/// said when a retry can succeed, otherwise telling the client not to retry.
fn give_up(header: Option<u64>) -> NextStep {
    match header {
        Some(wait) => fail(true, Some(wait)),
        None => fail(false, None),
    }
}

/// [`NextStep::Fail`].
fn fail(should_retry: bool, retry_after_ms: Option<u64>) -> NextStep {
    NextStep::Fail(GiveUp {
        should_retry,
        retry_after_ms,
    })
}

/// [`NextStep::Retry`].
fn retry(upstream: u32, delay_ms: u64) -> NextStep {
    NextStep::Retry(Retry { upstream, delay_ms })
}

/// [`Admission::Reject`].
fn reject(
    status: u16,
    error_type: &str,
    message: String,
    retry_after_ms: Option<u64>,
    should_retry: bool,
) -> Admission {
    Admission::Reject(Rejection {
        status,
        error_type: error_type.to_owned(),
        message,
        retry_after_ms,
        should_retry,
    })
}

/// Whether `req` generates tokens and so draws on the messages limits: a
/// POST to `/v1/messages`, or to another path (the OpenAI-compatible
/// `/v1/chat/completions`, the legacy completions). `count_tokens` and
/// batches are limited apart by the API, and reads cost nothing.
pub fn generates(req: &RequestFacts) -> bool {
    req.method == Method::Post && matches!(req.endpoint, Endpoint::Messages | Endpoint::Other)
}
