//! The rails: the hard limits a host puts on every retry a policy asks
//! for. No policy can loosen them; both hosts (the native gateway and the
//! edge component) check each retry here before making it.

use crate::{GiveUp, Retry};

/// Whether `retry` may follow the `attempts` already made, at `now`, with
/// the request's `deadline`; otherwise how to give up.
///
/// - At the attempt ceiling (`max_attempts`), or for an upstream id beyond
///   the `upstreams` configured: give up, and tell the client not to retry
///   (levee has spent the retries, or the policy is broken).
/// - When the delay would end at or past the deadline: give up, and tell
///   the client that a retry after the delay can succeed.
pub fn check_retry(
    retry: &Retry,
    attempts: u32,
    max_attempts: u32,
    upstreams: usize,
    now: u64,
    deadline: u64,
) -> Result<(), GiveUp> {
    if attempts >= max_attempts || retry.upstream as usize >= upstreams {
        return Err(GiveUp {
            should_retry: false,
            retry_after_ms: None,
        });
    }
    if now.saturating_add(retry.delay_ms) >= deadline {
        return Err(GiveUp {
            should_retry: true,
            retry_after_ms: Some(retry.delay_ms),
        });
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    const NOW: u64 = 1_000_000;

    fn retry(upstream: u32, delay_ms: u64) -> Retry {
        Retry { upstream, delay_ms }
    }

    const SPENT: GiveUp = GiveUp {
        should_retry: false,
        retry_after_ms: None,
    };

    #[test]
    fn a_retry_that_fits_is_allowed() {
        assert_eq!(check_retry(&retry(1, 500), 1, 4, 2, NOW, NOW + 501), Ok(()));
        assert_eq!(check_retry(&retry(0, 0), 3, 4, 1, NOW, NOW + 1), Ok(()));
    }

    #[test]
    fn the_attempt_ceiling_ends_it_for_the_client_too() {
        assert_eq!(
            check_retry(&retry(0, 0), 4, 4, 1, NOW, u64::MAX),
            Err(SPENT)
        );
        assert_eq!(
            check_retry(&retry(0, 0), 9, 4, 1, NOW, u64::MAX),
            Err(SPENT)
        );
    }

    #[test]
    fn an_unconfigured_upstream_is_refused() {
        assert_eq!(
            check_retry(&retry(2, 0), 1, 4, 2, NOW, u64::MAX),
            Err(SPENT)
        );
    }

    #[test]
    fn a_delay_past_the_deadline_leaves_the_retry_to_the_client() {
        let later = GiveUp {
            should_retry: true,
            retry_after_ms: Some(500),
        };
        assert_eq!(
            check_retry(&retry(0, 500), 1, 4, 1, NOW, NOW + 500),
            Err(later)
        );
        assert_eq!(
            check_retry(&retry(0, 500), 1, 4, 1, NOW, NOW + 100),
            Err(later)
        );
        // A clock near its end does not wrap around into "fits".
        assert_eq!(
            check_retry(&retry(0, 500), 1, 4, 1, u64::MAX - 10, u64::MAX),
            Err(later)
        );
    }
}
