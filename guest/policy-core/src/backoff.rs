//! Backoff delays: full, equal and decorrelated jitter.
//!
//! The formulas are AWS's ("Exponential Backoff and Jitter"). The random
//! draw comes in as an argument, so a delay is a pure function of its
//! inputs. All arithmetic saturates: any retry index, base or cap is safe.

/// The jitter shape (AWS "Exponential Backoff and Jitter").
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Jitter {
    /// `U(0, min(cap, base * 2^n))`
    Full,
    /// `v = min(cap, base * 2^n)`; `v/2 + U(0, v/2)`
    Equal,
    /// `min(cap, U(base, prev * 3))`
    Decorrelated,
}

/// Maps a uniformly random `u64` to a uniformly random `f64` in `[0, 1)`,
/// using its top 53 bits (the precision of an `f64` mantissa).
pub fn unit(random: u64) -> f64 {
    const SCALE: f64 = 1.0 / (1u64 << 53) as f64;
    (random >> 11) as f64 * SCALE
}

/// The delay before retry number `retry_index` (0 for the first retry), in
/// milliseconds, drawn with `random`.
///
/// - [`Jitter::Full`]: `U(0, v)` with `v = min(cap, base * 2^n)`;
/// - [`Jitter::Equal`]: `v/2 + U(0, v/2)`;
/// - [`Jitter::Decorrelated`]: `min(cap, U(base, max(base, prev * 3)))`,
///   where a `prev_delay_ms` of 0 counts as `base`.
///
/// The result never exceeds `cap_ms`. Uniform draws are half-open and
/// computed in integers from the top 53 bits of `random`, so the same
/// inputs give the same delay on every platform.
pub fn delay_ms(
    jitter: Jitter,
    base_ms: u64,
    cap_ms: u64,
    retry_index: u32,
    prev_delay_ms: u64,
    random: u64,
) -> u64 {
    let delay = match jitter {
        Jitter::Full => uniform(0, ceiling(base_ms, cap_ms, retry_index), random),
        Jitter::Equal => {
            let v = ceiling(base_ms, cap_ms, retry_index);
            let half = v / 2;
            half + uniform(0, half, random)
        }
        Jitter::Decorrelated => {
            let prev = if prev_delay_ms == 0 {
                base_ms
            } else {
                prev_delay_ms
            };
            let high = base_ms.max(prev.saturating_mul(3));
            uniform(base_ms, high, random)
        }
    };
    delay.min(cap_ms)
}

/// `min(cap, base * 2^n)`, saturating.
fn ceiling(base_ms: u64, cap_ms: u64, retry_index: u32) -> u64 {
    let grown = if base_ms == 0 {
        0
    } else if retry_index >= 64 {
        u64::MAX
    } else {
        base_ms.saturating_mul(1u64 << retry_index)
    };
    grown.min(cap_ms)
}

/// A draw from `[low, high)` (just `low` when the range is empty).
fn uniform(low: u64, high: u64, random: u64) -> u64 {
    if high <= low {
        return low;
    }
    let span = u128::from(high - low);
    let offset = (span * u128::from(random >> 11)) >> 53;
    // offset < span, so the sum stays below `high`.
    low + offset as u64
}

/// The splitmix64 output function: a cheap, well-mixing bijection on `u64`.
/// Used to derive several independent draws from one host-supplied random
/// value.
pub fn mix64(mut z: u64) -> u64 {
    z = z.wrapping_add(0x9E37_79B9_7F4A_7C15);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn unit_spans_zero_to_below_one() {
        assert_eq!(unit(0), 0.0);
        assert!(unit(u64::MAX) < 1.0);
        assert!(unit(u64::MAX) > 0.999_999);
        assert_eq!(unit(1 << 63), 0.5);
    }

    #[test]
    fn full_jitter_matches_sdk_ceiling() {
        // The SDK's 0.5 s * 2^n capped at 8 s: the top of the range.
        for (n, top) in [
            (0, 500),
            (1, 1000),
            (2, 2000),
            (3, 4000),
            (4, 8000),
            (5, 8000),
        ] {
            assert_eq!(delay_ms(Jitter::Full, 500, 8000, n, 0, 0), 0);
            assert_eq!(delay_ms(Jitter::Full, 500, 8000, n, 0, u64::MAX), top - 1);
            assert_eq!(delay_ms(Jitter::Full, 500, 8000, n, 0, 1 << 63), top / 2);
        }
    }

    #[test]
    fn equal_jitter_keeps_half() {
        assert_eq!(delay_ms(Jitter::Equal, 500, 8000, 2, 0, 0), 1000);
        assert_eq!(delay_ms(Jitter::Equal, 500, 8000, 2, 0, u64::MAX), 1999);
        assert_eq!(delay_ms(Jitter::Equal, 500, 8000, 40, 0, 0), 4000);
    }

    #[test]
    fn decorrelated_grows_from_previous_delay() {
        // prev 0 counts as base: U(500, 1500).
        assert_eq!(delay_ms(Jitter::Decorrelated, 500, 8000, 0, 0, 0), 500);
        assert_eq!(
            delay_ms(Jitter::Decorrelated, 500, 8000, 0, 0, u64::MAX),
            1499
        );
        // prev 2000: U(500, 6000).
        assert_eq!(
            delay_ms(Jitter::Decorrelated, 500, 8000, 3, 2000, 1 << 63),
            3250
        );
        // Capped.
        assert_eq!(
            delay_ms(Jitter::Decorrelated, 500, 8000, 3, 7000, u64::MAX),
            8000
        );
    }

    #[test]
    fn huge_inputs_saturate() {
        for jitter in [Jitter::Full, Jitter::Equal, Jitter::Decorrelated] {
            let d = delay_ms(jitter, u64::MAX, 1_000, u32::MAX, u64::MAX, u64::MAX);
            assert!((999..=1_000).contains(&d), "{jitter:?} {d}");
            let _ = delay_ms(jitter, u64::MAX, u64::MAX, u32::MAX, u64::MAX, u64::MAX);
            assert_eq!(delay_ms(jitter, 500, 0, 7, 9, 11), 0);
        }
    }

    #[test]
    fn mix64_is_not_identity() {
        assert_ne!(mix64(0), 0);
        assert_ne!(mix64(1), mix64(2));
    }

    proptest! {
        #[test]
        fn delay_never_exceeds_cap(
            jitter in prop_oneof![Just(Jitter::Full), Just(Jitter::Equal), Just(Jitter::Decorrelated)],
            base in any::<u64>(),
            cap in any::<u64>(),
            n in any::<u32>(),
            prev in any::<u64>(),
            random in any::<u64>(),
        ) {
            prop_assert!(delay_ms(jitter, base, cap, n, prev, random) <= cap);
        }

        #[test]
        fn full_and_equal_stay_below_exponential_ceiling(
            base in 1u64..10_000,
            cap in 1u64..1_000_000,
            n in 0u32..80,
            random in any::<u64>(),
        ) {
            let v = ceiling(base, cap, n);
            prop_assert!(delay_ms(Jitter::Full, base, cap, n, 0, random) < v);
            let e = delay_ms(Jitter::Equal, base, cap, n, 0, random);
            prop_assert!(e >= v / 2 && e <= v);
        }

        #[test]
        fn decorrelated_stays_at_least_base_under_cap(
            base in 1u64..10_000,
            extra in 0u64..1_000_000,
            prev in any::<u64>(),
            random in any::<u64>(),
        ) {
            let cap = base + extra;
            let d = delay_ms(Jitter::Decorrelated, base, cap, 0, prev, random);
            prop_assert!(d >= base && d <= cap);
        }

        #[test]
        fn unit_is_in_range(random in any::<u64>()) {
            let u = unit(random);
            prop_assert!((0.0..1.0).contains(&u));
        }
    }
}
