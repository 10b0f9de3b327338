//! HTTP-dates (RFC 9110 §5.6.7) and RFC 3339 timestamps to Unix
//! milliseconds, with civil-calendar arithmetic done by hand (no clock, no
//! dependency).

const DAYS: [&[u8]; 7] = [b"Mon", b"Tue", b"Wed", b"Thu", b"Fri", b"Sat", b"Sun"];
const LONG_DAYS: [&[u8]; 7] = [
    b"Monday",
    b"Tuesday",
    b"Wednesday",
    b"Thursday",
    b"Friday",
    b"Saturday",
    b"Sunday",
];
const MONTHS: [&[u8]; 12] = [
    b"Jan", b"Feb", b"Mar", b"Apr", b"May", b"Jun", b"Jul", b"Aug", b"Sep", b"Oct", b"Nov", b"Dec",
];

/// An HTTP-date as Unix milliseconds.
///
/// Accepts the three forms RFC 9110 §5.6.7 obliges a recipient to read:
/// IMF-fixdate (`Sun, 06 Nov 1994 08:49:37 GMT`), RFC 850
/// (`Sunday, 06-Nov-94 08:49:37 GMT`) and asctime
/// (`Sun Nov  6 08:49:37 1994`). Names are case-sensitive, as the grammar
/// says. The day name must be a valid one but is not checked against the
/// date. A leap second (`:60`) reads as `:59`. An RFC 850 two-digit year
/// below 70 is 20xx, otherwise 19xx. Dates before 1970, impossible dates
/// (`31 Feb`) and any other text give `None`. Surrounding whitespace is
/// ignored.
pub fn parse_http_date(value: &str) -> Option<u64> {
    let b = value.trim().as_bytes();
    imf_fixdate(b)
        .or_else(|| rfc850_date(b))
        .or_else(|| asctime_date(b))
}

/// An RFC 3339 timestamp as Unix milliseconds, for example
/// `2026-11-28T23:14:00Z`, `2026-11-28T23:14:00.123456Z` or
/// `2026-11-29T00:14:00+01:00`.
///
/// `T` and `Z` may be lower case (RFC 3339 §5.6). Fractional seconds beyond
/// milliseconds are truncated; a leap second (`:60`) reads as `:59`.
/// Impossible dates, offsets beyond 23:59, instants before 1970 and any
/// other text give `None`. Surrounding whitespace is ignored.
pub fn parse_rfc3339(value: &str) -> Option<u64> {
    let b = value.trim().as_bytes();
    if b.len() < 20 {
        return None;
    }
    let year = digits(&b[0..4])?;
    expect(b, 4, b'-')?;
    let month = digits(&b[5..7])?;
    expect(b, 7, b'-')?;
    let day = digits(&b[8..10])?;
    if !matches!(b[10], b'T' | b't') {
        return None;
    }
    let (hour, minute, second) = time(&b[11..19])?;
    let mut rest = &b[19..];
    let mut millis = 0;
    if let Some((b'.', frac)) = rest.split_first() {
        let n = frac.iter().take_while(|c| c.is_ascii_digit()).count();
        if n == 0 {
            return None;
        }
        for i in 0..3 {
            millis = millis * 10
                + frac
                    .get(i)
                    .filter(|_| i < n)
                    .map_or(0, |c| u64::from(c - b'0'));
        }
        rest = &frac[n..];
    }
    let offset_secs: i64 = match rest {
        [b'Z' | b'z'] => 0,
        [sign @ (b'+' | b'-'), h1, h2, b':', m1, m2] => {
            let hours = digits(&[*h1, *h2])?;
            let minutes = digits(&[*m1, *m2])?;
            if hours > 23 || minutes > 59 {
                return None;
            }
            let secs = (hours * 3600 + minutes * 60) as i64;
            if *sign == b'-' { -secs } else { secs }
        }
        _ => return None,
    };
    let local = civil_seconds(year, month, day, hour, minute, second)?;
    let utc = u64::try_from(local - offset_secs).ok()?;
    Some(utc * 1000 + millis)
}

/// `Sun, 06 Nov 1994 08:49:37 GMT`
fn imf_fixdate(b: &[u8]) -> Option<u64> {
    if b.len() != 29 || !DAYS.contains(&&b[0..3]) || &b[3..5] != b", " {
        return None;
    }
    let day = digits(&b[5..7])?;
    expect(b, 7, b' ')?;
    let month = month(&b[8..11])?;
    expect(b, 11, b' ')?;
    let year = digits(&b[12..16])?;
    expect(b, 16, b' ')?;
    let (hour, minute, second) = time(&b[17..25])?;
    if &b[25..29] != b" GMT" {
        return None;
    }
    Some(civil_seconds(year, month, day, hour, minute, second)? as u64 * 1000)
}

/// `Sunday, 06-Nov-94 08:49:37 GMT`
fn rfc850_date(b: &[u8]) -> Option<u64> {
    let comma = b.iter().position(|&c| c == b',')?;
    let (name, rest) = b.split_at(comma);
    if !LONG_DAYS.contains(&name) || rest.len() != 24 || &rest[..2] != b", " {
        return None;
    }
    let r = &rest[2..];
    let day = digits(&r[0..2])?;
    expect(r, 2, b'-')?;
    let month = month(&r[3..6])?;
    expect(r, 6, b'-')?;
    let yy = digits(&r[7..9])?;
    expect(r, 9, b' ')?;
    let (hour, minute, second) = time(&r[10..18])?;
    if &r[18..22] != b" GMT" {
        return None;
    }
    let year = if yy < 70 { 2000 + yy } else { 1900 + yy };
    Some(civil_seconds(year, month, day, hour, minute, second)? as u64 * 1000)
}

/// `Sun Nov  6 08:49:37 1994` (the day may also be two digits).
fn asctime_date(b: &[u8]) -> Option<u64> {
    if b.len() != 24 || !DAYS.contains(&&b[0..3]) {
        return None;
    }
    expect(b, 3, b' ')?;
    let month = month(&b[4..7])?;
    expect(b, 7, b' ')?;
    let day = match b[8] {
        b' ' => digits(&b[9..10])?,
        _ => digits(&b[8..10])?,
    };
    expect(b, 10, b' ')?;
    let (hour, minute, second) = time(&b[11..19])?;
    expect(b, 19, b' ')?;
    let year = digits(&b[20..24])?;
    Some(civil_seconds(year, month, day, hour, minute, second)? as u64 * 1000)
}

/// `HH:MM:SS` → (hour, minute, second), validated; second 60 reads as 59.
fn time(b: &[u8]) -> Option<(u64, u64, u64)> {
    let hour = digits(b.get(0..2)?)?;
    expect(b, 2, b':')?;
    let minute = digits(b.get(3..5)?)?;
    expect(b, 5, b':')?;
    let second = digits(b.get(6..8)?)?;
    if b.len() != 8 || hour > 23 || minute > 59 || second > 60 {
        return None;
    }
    Some((hour, minute, second.min(59)))
}

/// A three-letter month name → 1..=12.
fn month(b: &[u8]) -> Option<u64> {
    MONTHS.iter().position(|m| *m == b).map(|i| i as u64 + 1)
}

/// All-ASCII-digit bytes (at most 4 of them) → their value.
fn digits(b: &[u8]) -> Option<u64> {
    if b.is_empty() || b.len() > 4 || !b.iter().all(u8::is_ascii_digit) {
        return None;
    }
    Some(b.iter().fold(0, |n, c| n * 10 + u64::from(c - b'0')))
}

/// `Some(())` when `b[i] == want`.
fn expect(b: &[u8], i: usize, want: u8) -> Option<()> {
    (b.get(i) == Some(&want)).then_some(())
}

/// Seconds since the Unix epoch for a validated civil date-time, or `None`
/// when the date does not exist or lies before 1970.
fn civil_seconds(year: u64, month: u64, day: u64, hour: u64, min: u64, sec: u64) -> Option<i64> {
    if year < 1970 || !(1..=12).contains(&month) || day < 1 || day > days_in_month(year, month) {
        return None;
    }
    let days = days_from_civil(year as i64, month as i64, day as i64);
    Some(days * 86_400 + (hour * 3600 + min * 60 + sec) as i64)
}

/// Whether `year` is a Gregorian leap year.
fn is_leap(year: u64) -> bool {
    year.is_multiple_of(4) && (!year.is_multiple_of(100) || year.is_multiple_of(400))
}

/// The number of days in `month` (1..=12) of `year`.
fn days_in_month(year: u64, month: u64) -> u64 {
    match month {
        2 if is_leap(year) => 29,
        2 => 28,
        4 | 6 | 9 | 11 => 30,
        _ => 31,
    }
}

/// Days since 1970-01-01 of a proleptic Gregorian date (Howard Hinnant's
/// `days_from_civil`).
fn days_from_civil(year: i64, month: i64, day: i64) -> i64 {
    let y = if month <= 2 { year - 1 } else { year };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = (month + 9) % 12;
    let doy = (153 * mp + 2) / 5 + day - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    /// Hinnant's `civil_from_days`: the inverse of `days_from_civil`.
    fn civil_from_days(z: i64) -> (i64, usize, i64) {
        let z = z + 719_468;
        let era = z.div_euclid(146_097);
        let doe = z - era * 146_097;
        let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
        let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
        let mp = (5 * doy + 2) / 153;
        let d = doy - (153 * mp + 2) / 5 + 1;
        let m = if mp < 10 { mp + 3 } else { mp - 9 };
        let y = yoe + era * 400 + i64::from(m <= 2);
        (y, m as usize, d)
    }

    /// Splits Unix seconds into civil fields and a weekday index (Mon = 0).
    fn fields(secs: i64) -> (i64, usize, i64, i64, i64, i64, usize) {
        let days = secs.div_euclid(86_400);
        let rem = secs.rem_euclid(86_400);
        let (y, m, d) = civil_from_days(days);
        let weekday = (days + 3).rem_euclid(7) as usize; // 1970-01-01 was a Thursday.
        (y, m, d, rem / 3600, rem / 60 % 60, rem % 60, weekday)
    }

    fn name(b: &[u8]) -> &str {
        std::str::from_utf8(b).unwrap()
    }

    fn format_imf(secs: i64) -> String {
        let (y, m, d, h, mi, s, wd) = fields(secs);
        let (day, mon) = (name(DAYS[wd]), name(MONTHS[m - 1]));
        format!("{day}, {d:02} {mon} {y:04} {h:02}:{mi:02}:{s:02} GMT")
    }

    fn format_rfc850(secs: i64) -> String {
        let (y, m, d, h, mi, s, wd) = fields(secs);
        let (day, mon) = (name(LONG_DAYS[wd]), name(MONTHS[m - 1]));
        format!(
            "{day}, {d:02}-{mon}-{:02} {h:02}:{mi:02}:{s:02} GMT",
            y % 100
        )
    }

    fn format_asctime(secs: i64) -> String {
        let (y, m, d, h, mi, s, wd) = fields(secs);
        let (day, mon) = (name(DAYS[wd]), name(MONTHS[m - 1]));
        format!("{day} {mon} {d:>2} {h:02}:{mi:02}:{s:02} {y:04}")
    }

    fn format_rfc3339(secs: i64) -> String {
        let (y, m, d, h, mi, s, _) = fields(secs);
        format!("{y:04}-{m:02}-{d:02}T{h:02}:{mi:02}:{s:02}Z")
    }

    const EXAMPLE_MS: u64 = 784_111_777_000;

    #[test]
    fn reads_the_three_rfc_9110_examples() {
        assert_eq!(
            parse_http_date("Sun, 06 Nov 1994 08:49:37 GMT"),
            Some(EXAMPLE_MS)
        );
        assert_eq!(
            parse_http_date("Sunday, 06-Nov-94 08:49:37 GMT"),
            Some(EXAMPLE_MS)
        );
        assert_eq!(
            parse_http_date("Sun Nov  6 08:49:37 1994"),
            Some(EXAMPLE_MS)
        );
        assert_eq!(
            parse_http_date("Sun Nov 06 08:49:37 1994"),
            Some(EXAMPLE_MS)
        );
        assert_eq!(
            parse_http_date(" Sun, 06 Nov 1994 08:49:37 GMT "),
            Some(EXAMPLE_MS)
        );
    }

    #[test]
    fn reads_epoch_leap_day_and_leap_second() {
        assert_eq!(parse_http_date("Thu, 01 Jan 1970 00:00:00 GMT"), Some(0));
        assert_eq!(
            parse_http_date("Tue, 29 Feb 2000 12:00:00 GMT"),
            Some(951_825_600_000)
        );
        assert_eq!(
            parse_http_date("Sat, 31 Dec 2016 23:59:60 GMT"),
            parse_http_date("Sat, 31 Dec 2016 23:59:59 GMT")
        );
        // RFC 850 two-digit years pivot at 70.
        assert_eq!(parse_http_date("Thursday, 01-Jan-70 00:00:00 GMT"), Some(0));
        assert_eq!(
            parse_http_date("Saturday, 01-Jan-00 00:00:00 GMT"),
            Some(946_684_800_000)
        );
    }

    #[test]
    fn refuses_invalid_http_dates() {
        for bad in [
            "",
            "Sun, 06 Nov 1994 08:49:37 UTC",
            "Sun, 06 Nov 1994 08:49:37 gmt",
            "sun, 06 Nov 1994 08:49:37 GMT",
            "Sun, 06 nov 1994 08:49:37 GMT",
            "Xyz, 06 Nov 1994 08:49:37 GMT",
            "Sun, 31 Nov 1994 08:49:37 GMT",
            "Sun, 29 Feb 1900 08:49:37 GMT",
            "Sun, 00 Nov 1994 08:49:37 GMT",
            "Sun, 06 Nov 1994 24:00:00 GMT",
            "Sun, 06 Nov 1994 08:60:00 GMT",
            "Sun, 06 Nov 1994 08:49:61 GMT",
            "Sun, 6 Nov 1994 08:49:37 GMT",
            "Sun, 06 Nov 1969 08:49:37 GMT",
            "Sun, 06 Nov 94 08:49:37 GMT",
            "Sun, 06 Nov 1994 08:49:37 GMT extra",
            "Sun, +6 Nov 1994 08:49:37 GMT",
            "Sun, 06 Nov 1994 08:49:3 GMT",
            "Sunday, 06-Nov-1994 08:49:37 GMT",
            "Sun, 06-Nov-94 08:49:37 GMT",
            "Funday, 06-Nov-94 08:49:37 GMT",
            "Sun Nov  6 08:49:37 94",
            "Sun Nov 6 08:49:37 1994",
            "Sun Nov  6 08:49:37 1994 GMT",
            "1994-11-06T08:49:37Z",
            "Sun, 06 Nov 1994 08:49:37 GMTé",
        ] {
            assert_eq!(parse_http_date(bad), None, "{bad:?}");
        }
    }

    #[test]
    fn reads_rfc3339_with_fraction_and_offsets() {
        let base = parse_rfc3339("2026-11-28T23:14:00Z").unwrap();
        assert_eq!(base, 1_795_907_640_000);
        assert_eq!(parse_rfc3339("2026-11-28t23:14:00z"), Some(base));
        assert_eq!(parse_rfc3339("2026-11-28T23:14:00.5Z"), Some(base + 500));
        assert_eq!(
            parse_rfc3339("2026-11-28T23:14:00.123456789Z"),
            Some(base + 123)
        );
        assert_eq!(parse_rfc3339("2026-11-29T00:14:00+01:00"), Some(base));
        assert_eq!(parse_rfc3339("2026-11-28T18:44:00-04:30"), Some(base));
        assert_eq!(parse_rfc3339("2026-11-28T23:14:00-00:00"), Some(base));
        assert_eq!(parse_rfc3339("1970-01-01T00:00:00Z"), Some(0));
        assert_eq!(
            parse_rfc3339("2016-12-31T23:59:60Z"),
            parse_rfc3339("2016-12-31T23:59:59Z")
        );
    }

    #[test]
    fn refuses_invalid_rfc3339() {
        for bad in [
            "",
            "2026-11-28",
            "2026-11-28T23:14:00",
            "2026-11-28 23:14:00Z",
            "2026-11-28T23:14Z",
            "2026-13-28T23:14:00Z",
            "2026-02-29T23:14:00Z",
            "2026-11-31T23:14:00Z",
            "2026-11-28T24:14:00Z",
            "2026-11-28T23:14:00.Z",
            "2026-11-28T23:14:00+0100",
            "2026-11-28T23:14:00+24:00",
            "2026-11-28T23:14:00+01:60",
            "2026-11-28T23:14:00ZZ",
            "1969-12-31T23:59:59Z",
            "1970-01-01T00:30:00+01:00",
            "+2026-11-28T23:14:00Z",
            "2026-11-28T23:14:00.1é",
            "Sun, 06 Nov 1994 08:49:37 GMT",
        ] {
            assert_eq!(parse_rfc3339(bad), None, "{bad:?}");
        }
    }

    const MAX_SECS: i64 = 253_402_300_799; // 9999-12-31T23:59:59Z
    const MAX_2069: i64 = 3_155_759_999; // 2069-12-31T23:59:59Z

    proptest! {
        #[test]
        fn imf_fixdate_round_trips(secs in 0..=MAX_SECS) {
            let text = format_imf(secs);
            prop_assert_eq!(parse_http_date(&text), Some(secs as u64 * 1000), "{}", text);
        }

        #[test]
        fn rfc850_round_trips_within_its_century(secs in 0..=MAX_2069) {
            let text = format_rfc850(secs);
            prop_assert_eq!(parse_http_date(&text), Some(secs as u64 * 1000), "{}", text);
        }

        #[test]
        fn asctime_round_trips(secs in 0..=MAX_SECS) {
            let text = format_asctime(secs);
            prop_assert_eq!(parse_http_date(&text), Some(secs as u64 * 1000), "{}", text);
        }

        #[test]
        fn rfc3339_round_trips(secs in 0..=MAX_SECS, millis in 0u64..1000) {
            let text = format_rfc3339(secs);
            prop_assert_eq!(parse_rfc3339(&text), Some(secs as u64 * 1000), "{}", text);
            let with_ms = text.replace('Z', &format!(".{millis:03}Z"));
            prop_assert_eq!(parse_rfc3339(&with_ms), Some(secs as u64 * 1000 + millis));
        }

        #[test]
        fn days_from_civil_inverts(days in -1_000_000i64..3_000_000) {
            let (y, m, d) = civil_from_days(days);
            prop_assert_eq!(days_from_civil(y, m as i64, d), days);
        }
    }
}
