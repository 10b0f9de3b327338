//! The slow-upstream signal, from time to first byte.
//!
//! The rule: take every upstream's smoothed TTFB that is fresh (a sample
//! within [`FRESH_MS`]); with at least two, the reference is their lower
//! median. An upstream is slow when its fresh TTFB is at least
//! `slow_ttfb_factor` times the reference *and* at least
//! `slow_ttfb_min_ms` above it. A slow upstream gets less traffic, so its
//! TTFB goes stale; once stale it is no longer slow, gets traffic again
//! and is measured anew.

use crate::config::Outlier;

/// How recent a TTFB sample must be to count.
pub const FRESH_MS: u64 = 60_000;

/// Which of `ttfbs` (each upstream's fresh smoothed TTFB, if any) are
/// slow under `cfg`.
pub fn mark(ttfbs: &[Option<u32>], cfg: &Outlier) -> Vec<bool> {
    let mut known: Vec<u32> = ttfbs.iter().flatten().copied().collect();
    if known.len() < 2 {
        return vec![false; ttfbs.len()];
    }
    known.sort_unstable();
    let reference = f64::from(known[(known.len() - 1) / 2]);
    ttfbs
        .iter()
        .map(|t| {
            t.is_some_and(|t| {
                let t = f64::from(t);
                t >= reference * cfg.slow_ttfb_factor
                    && t - reference >= f64::from(cfg.slow_ttfb_min_ms)
            })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cfg() -> Outlier {
        Outlier {
            slow_ttfb_factor: 3.0,
            slow_ttfb_min_ms: 500,
            ..Outlier::default()
        }
    }

    #[test]
    fn an_outlier_far_above_the_lower_median_is_slow() {
        let slow = mark(&[Some(300), Some(2_000), Some(350)], &cfg());
        assert_eq!(slow, [false, true, false]);
    }

    #[test]
    fn two_upstreams_compare_with_the_faster() {
        assert_eq!(mark(&[Some(3_000), Some(900)], &cfg()), [true, false]);
        assert_eq!(mark(&[Some(2_600), Some(900)], &cfg()), [false, false]);
    }

    #[test]
    fn a_small_gap_is_not_slow_whatever_the_ratio() {
        // 40 ms against 10 ms is four times, but only 30 ms more.
        assert_eq!(mark(&[Some(10), Some(40)], &cfg()), [false, false]);
    }

    #[test]
    fn one_measured_upstream_or_none_is_never_slow() {
        assert_eq!(mark(&[Some(9_000), None], &cfg()), [false, false]);
        assert_eq!(mark(&[None, None, None], &cfg()), [false; 3]);
        assert!(mark(&[], &cfg()).is_empty());
    }
}
