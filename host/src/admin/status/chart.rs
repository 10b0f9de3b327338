//! A small bar chart of one upstream's last 15 minutes, as inline SVG: no
//! script, no external file. Each 10-second slot is a light bar for its
//! attempts with a dark bar inside for its errors, so it reads without
//! colour; the title and label say the same in words.

use super::page::escape;
use std::fmt::Write;

/// Plot height and bar pitch, in SVG units.
const HEIGHT: u64 = 60;
const PITCH: u64 = 4;

/// The chart for `name`, from attempts and errors per slot (oldest first,
/// `slot_s` seconds each), with `id` as its element id.
pub fn chart(id: &str, name: &str, attempts: &[u64], errors: &[u64], slot_s: u64) -> String {
    let slots = attempts.len() as u64;
    let width = slots * PITCH;
    let total: u64 = attempts.iter().sum();
    let failed: u64 = errors.iter().sum();
    let peak = attempts.iter().copied().max().unwrap_or(0);
    let minutes = slots * slot_s / 60;
    let summary = if total == 0 {
        format!("{name}: no traffic in the last {minutes} minutes")
    } else {
        format!(
            "{name}: {} and {} in the last {minutes} minutes; at most {peak} in {slot_s} s",
            count(total, "attempt"),
            count(failed, "error"),
        )
    };
    let summary = escape(&summary);
    let mut out = String::with_capacity(2_048);
    let _ = write!(
        out,
        "<svg class=\"chart\" id=\"{id}\" role=\"img\" aria-label=\"{summary}\" \
         viewBox=\"0 0 {width} {h}\" width=\"{width}\" height=\"{h}\" \
         xmlns=\"http://www.w3.org/2000/svg\"><title>{summary}</title>\
         <rect class=\"frame\" x=\"0\" y=\"0\" width=\"{width}\" height=\"{HEIGHT}\"/>",
        h = HEIGHT + 14,
    );
    let bar = |out: &mut String, class: &str, i: usize, n: u64| {
        if n == 0 {
            return;
        }
        // At least one unit high, so a single error in a busy slot shows.
        let h = (n * HEIGHT).div_ceil(peak).max(1);
        let _ = write!(
            out,
            "<rect class=\"{class}\" x=\"{}\" y=\"{}\" width=\"{}\" height=\"{h}\"/>",
            i as u64 * PITCH,
            HEIGHT - h,
            PITCH - 1,
        );
    };
    for (i, (&a, &e)) in attempts.iter().zip(errors).enumerate() {
        bar(&mut out, "all", i, a);
        bar(&mut out, "err", i, e);
    }
    if total == 0 {
        let _ = write!(
            out,
            "<text x=\"{}\" y=\"{}\" text-anchor=\"middle\">no traffic yet</text>",
            width / 2,
            HEIGHT / 2 + 4
        );
    }
    let _ = write!(
        out,
        "<text x=\"0\" y=\"{y}\">−{minutes} min</text>\
         <text x=\"{width}\" y=\"{y}\" text-anchor=\"end\">now</text></svg>",
        y = HEIGHT + 12,
    );
    out
}

/// `1 error`, `2 errors`.
fn count(n: u64, noun: &str) -> String {
    if n == 1 {
        format!("1 {noun}")
    } else {
        format!("{n} {noun}s")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The bars of `class` as (x, height).
    fn bars(svg: &str, class: &str) -> Vec<(u64, u64)> {
        let tag = format!("<rect class=\"{class}\" x=\"");
        svg.match_indices(&tag)
            .map(|(at, _)| {
                let rest = &svg[at + tag.len()..];
                let x = rest[..rest.find('"').unwrap()].parse().unwrap();
                let h = rest.split("height=\"").nth(1).unwrap();
                (x, h[..h.find('"').unwrap()].parse().unwrap())
            })
            .collect()
    }

    #[test]
    fn bars_scale_to_the_busiest_slot_and_errors_sit_inside_them() {
        let mut attempts = vec![0; 90];
        let mut errors = vec![0; 90];
        attempts[0] = 10;
        attempts[89] = 100;
        errors[89] = 1;
        errors[0] = 10;
        let svg = chart("c0", "a<b", &attempts, &errors, 10);
        assert_eq!(bars(&svg, "all"), [(0, 6), (356, 60)]);
        assert_eq!(bars(&svg, "err"), [(0, 6), (356, 1)]);
        assert!(svg.contains("aria-label=\"a&lt;b: 110 attempts and 11 errors in the last 15 minutes; at most 100 in 10 s\""), "{svg}");
        assert!(!svg.contains("no traffic yet"));
        assert!(!svg.contains("<script"));
    }

    #[test]
    fn an_idle_chart_says_so() {
        let svg = chart("c1", "idle", &[0; 90], &[0; 90], 10);
        assert!(bars(&svg, "all").is_empty());
        assert!(svg.contains(">no traffic yet</text>"));
        assert!(svg.contains("idle: no traffic in the last 15 minutes"));
    }
}
