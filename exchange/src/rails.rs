//! The rails: the hard limits a host puts on every retry a policy asks
//! for, and the retry budget's word on it. No policy can loosen them, and
//! they only ever turn a retry into a give-up, never the other way round.

use levee_policy_core::{GiveUp, Retry};

/// The host's hard limits on one request.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Rails {
    /// Attempts at most, the first included.
    pub max_attempts: u32,
    /// Upstreams configured: a plan's or a retry's upstream id must be
    /// below this.
    pub upstreams: usize,
}

/// Which rail refused a retry.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Rail {
    /// `max_attempts` were made.
    Ceiling,
    /// The retry named an upstream that is not configured.
    UnknownUpstream,
    /// The retry's delay would end at or past the request's deadline.
    Deadline,
    /// The retry budget had no room for it before its deadline.
    Budget,
}

impl Rail {
    /// Every rail.
    pub const ALL: [Rail; 4] = [
        Rail::Ceiling,
        Rail::UnknownUpstream,
        Rail::Deadline,
        Rail::Budget,
    ];

    /// The rail's name in logs and replays.
    pub fn label(self) -> &'static str {
        match self {
            Rail::Ceiling => "attempt ceiling",
            Rail::UnknownUpstream => "unknown upstream",
            Rail::Deadline => "deadline",
            Rail::Budget => "retry budget",
        }
    }

    /// The rail's name in a trace: its label, kebab-cased.
    pub fn name(self) -> &'static str {
        match self {
            Rail::Ceiling => "attempt-ceiling",
            Rail::UnknownUpstream => "unknown-upstream",
            Rail::Deadline => "deadline",
            Rail::Budget => "retry-budget",
        }
    }

    /// The rail a trace names.
    pub fn from_name(name: &str) -> Option<Rail> {
        Rail::ALL.into_iter().find(|r| r.name() == name)
    }
}

impl Rails {
    /// Whether `retry` may follow the `attempts` already made, at `now`,
    /// with the request's `deadline`; otherwise which rail refuses it and
    /// how to give up.
    ///
    /// - At the attempt ceiling, or for an upstream id beyond those
    ///   configured: tell the client not to retry (levee has spent the
    ///   retries, or the policy is broken).
    /// - When the delay would end at or past the deadline: tell the client
    ///   that a retry after the delay can succeed.
    pub fn check(
        &self,
        retry: &Retry,
        attempts: u32,
        now: u64,
        deadline: u64,
    ) -> Result<(), (Rail, GiveUp)> {
        if attempts >= self.max_attempts {
            return Err((Rail::Ceiling, spent()));
        }
        if retry.upstream as usize >= self.upstreams {
            return Err((Rail::UnknownUpstream, spent()));
        }
        if now.saturating_add(retry.delay_ms) >= deadline {
            return Err((
                Rail::Deadline,
                GiveUp {
                    should_retry: true,
                    retry_after_ms: Some(retry.delay_ms),
                },
            ));
        }
        Ok(())
    }

    /// The latest time a retry slot may be granted for `retry` and still
    /// leave its delay before `deadline`.
    pub fn slot_by(retry: &Retry, deadline: u64) -> u64 {
        deadline.saturating_sub(retry.delay_ms).saturating_sub(1)
    }

    /// How to give up when the retry budget had no room for `retry` in
    /// time. The budget is levee's own limit, not the upstream's word, so
    /// the client is never told not to retry on its account: a retry of
    /// its own, after the delay the policy chose, can succeed.
    pub fn budget_spent(retry: &Retry) -> (Rail, GiveUp) {
        (
            Rail::Budget,
            GiveUp {
                should_retry: true,
                retry_after_ms: (retry.delay_ms > 0).then_some(retry.delay_ms),
            },
        )
    }
}

/// The rails' defaults and bounds, the same in every host: a setting left
/// out of the gateway's TOML or the edge's variables takes the default,
/// and one outside its bounds is refused.
pub mod defaults {
    /// Attempts at most, the first included.
    pub const MAX_ATTEMPTS: u64 = 10;
    /// The most `max_attempts` may be.
    pub const MAX_ATTEMPTS_LIMIT: u64 = 20;
    /// How long a request may take, ms (20 minutes).
    pub const REQUEST_DEADLINE_MS: u64 = 20 * 60_000;
    /// The longest deadline, ms (a day).
    pub const REQUEST_DEADLINE_LIMIT_MS: u64 = 86_400_000;
    /// The largest request body accepted, bytes.
    pub const MAX_BODY_BYTES: u64 = 32 << 20;
    /// The most `max_body_bytes` may be.
    pub const MAX_BODY_BYTES_LIMIT: u64 = 1 << 30;
    /// How much of an error body is read before the policy decides.
    pub const ERROR_BODY_BYTES: u64 = 64 << 10;
    /// The least and the most `error_body_bytes` may be.
    pub const ERROR_BODY_BYTES_RANGE: (u64, u64) = (1024, 1 << 20);
    /// How long a delivered body may send nothing before it is cut, ms.
    pub const IDLE_TIMEOUT_MS: u64 = 60_000;
    /// The longest idle timeout, ms (an hour).
    pub const IDLE_TIMEOUT_LIMIT_MS: u64 = 3_600_000;
    /// How long a stream's head and first events are held back waiting
    /// for content, so that an error event before it can be retried, ms;
    /// 0 holds nothing back.
    pub const HOLD_MS: u64 = 3_000;
    /// The longest hold, ms.
    pub const HOLD_LIMIT_MS: u64 = 60_000;
}

fn spent() -> GiveUp {
    GiveUp {
        should_retry: false,
        retry_after_ms: None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const NOW: u64 = 1_000_000;

    fn retry(upstream: u32, delay_ms: u64) -> Retry {
        Retry { upstream, delay_ms }
    }

    fn rails(max_attempts: u32, upstreams: usize) -> Rails {
        Rails {
            max_attempts,
            upstreams,
        }
    }

    const SPENT: GiveUp = GiveUp {
        should_retry: false,
        retry_after_ms: None,
    };

    #[test]
    fn a_retry_that_fits_is_allowed() {
        assert_eq!(rails(4, 2).check(&retry(1, 500), 1, NOW, NOW + 501), Ok(()));
        assert_eq!(rails(4, 1).check(&retry(0, 0), 3, NOW, NOW + 1), Ok(()));
    }

    #[test]
    fn the_attempt_ceiling_ends_it_for_the_client_too() {
        for attempts in [4, 9] {
            assert_eq!(
                rails(4, 1).check(&retry(0, 0), attempts, NOW, u64::MAX),
                Err((Rail::Ceiling, SPENT))
            );
        }
    }

    #[test]
    fn an_unconfigured_upstream_is_refused() {
        assert_eq!(
            rails(4, 2).check(&retry(2, 0), 1, NOW, u64::MAX),
            Err((Rail::UnknownUpstream, SPENT))
        );
    }

    #[test]
    fn a_delay_past_the_deadline_leaves_the_retry_to_the_client() {
        let later = GiveUp {
            should_retry: true,
            retry_after_ms: Some(500),
        };
        for deadline in [NOW + 500, NOW + 100] {
            assert_eq!(
                rails(4, 1).check(&retry(0, 500), 1, NOW, deadline),
                Err((Rail::Deadline, later))
            );
        }
        // A clock near its end does not wrap around into "fits".
        assert_eq!(
            rails(4, 1).check(&retry(0, 500), 1, u64::MAX - 10, u64::MAX),
            Err((Rail::Deadline, later))
        );
    }

    #[test]
    fn each_rail_is_read_back_from_its_trace_name() {
        for rail in Rail::ALL {
            assert_eq!(Rail::from_name(rail.name()), Some(rail));
        }
        assert_eq!(Rail::from_name("ceiling"), None);
    }

    #[test]
    fn a_spent_budget_never_tells_the_client_not_to_retry() {
        let (rail, g) = Rails::budget_spent(&retry(0, 1_500));
        assert_eq!(rail, Rail::Budget);
        assert_eq!(
            g,
            GiveUp {
                should_retry: true,
                retry_after_ms: Some(1_500)
            }
        );
        // A failover asked for no delay: no wait to promise either.
        assert_eq!(
            Rails::budget_spent(&retry(1, 0)).1,
            GiveUp {
                should_retry: true,
                retry_after_ms: None
            }
        );
    }

    #[test]
    fn a_slot_is_wanted_early_enough_for_the_delay_to_fit() {
        let r = retry(0, 500);
        let by = Rails::slot_by(&r, NOW + 2_000);
        assert_eq!(by, NOW + 1_499);
        assert_eq!(rails(4, 1).check(&r, 1, by, NOW + 2_000), Ok(()));
        assert!(rails(4, 1).check(&r, 1, by + 1, NOW + 2_000).is_err());
    }
}
