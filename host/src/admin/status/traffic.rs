//! The page's account of what is happening: per upstream its windows, its
//! chart, its last error and its egress proxies; then the recent events.

use super::chart::chart;
use super::page::{ago, escape, text};
use crate::telemetry::activity::window::LABELS;
use serde_json::Value;
use std::fmt::Write;

/// The traffic section, one block per upstream.
pub fn traffic(out: &mut String, s: &Value, now: u64) {
    out.push_str("<h2>Traffic</h2>");
    for (i, u) in s["upstreams"].as_array().into_iter().flatten().enumerate() {
        let a = &u["activity"];
        let _ = write!(
            out,
            "<section class=\"traffic\" id=\"traffic-{i}\"><h3>{}</h3>",
            text(&u["name"])
        );
        windows(out, a);
        let series = &a["series"];
        let numbers = |key: &str| -> Vec<u64> {
            series[key]
                .as_array()
                .into_iter()
                .flatten()
                .map(|n| n.as_u64().unwrap_or(0))
                .collect()
        };
        let name = u["name"].as_str().unwrap_or_default();
        let slot_s = series["slot_s"].as_u64().unwrap_or(10);
        out.push_str(&chart(
            &format!("chart-{i}"),
            name,
            &numbers("attempts"),
            &numbers("errors"),
            slot_s,
        ));
        out.push_str(
            "<p class=\"legend\">Each bar is 10 s: light for all attempts, dark for errors \
             (429, 529, other 5xx, connection failures).</p>",
        );
        last_error(out, &a["last_error"], now);
        proxies(out, &u["proxies"], now);
        out.push_str("</section>");
    }
}

/// The windows as a table, or a line saying there was no traffic.
fn windows(out: &mut String, a: &Value) {
    let windows: Vec<&Value> = a["windows"].as_array().into_iter().flatten().collect();
    if windows.iter().all(|w| w["attempts"].as_u64() == Some(0)) {
        out.push_str(if a["ever"].as_bool() == Some(true) {
            "<p class=\"idle\">no traffic in the last 15 minutes</p>"
        } else {
            "<p class=\"idle\">no traffic yet</p>"
        });
        return;
    }
    out.push_str(
        "<div class=\"scroll\"><table class=\"windows\"><tr><th>last</th><th>attempts</th>\
         <th>per s</th><th>success</th>",
    );
    for label in LABELS {
        let _ = write!(out, "<th>{label}</th>");
    }
    out.push_str("<th>TTFB p50</th><th>TTFB p99</th></tr>");
    for w in windows {
        let _ = write!(
            out,
            "<tr><td>{}</td><td>{}</td>",
            text(&w["window"]),
            text(&w["attempts"])
        );
        if w["attempts"].as_u64() == Some(0) {
            let _ = write!(
                out,
                "<td colspan=\"{}\">no traffic</td></tr>",
                LABELS.len() + 4
            );
            continue;
        }
        let rate = w["rate_per_s"].as_f64().unwrap_or(0.0);
        let share = w["success_share"].as_f64().unwrap_or(0.0) * 100.0;
        let _ = write!(out, "<td>{rate:.2}</td><td>{share:.1} %</td>");
        for label in LABELS {
            let n = w["counts"][label].as_u64().unwrap_or(0);
            let bad = n > 0 && !matches!(label, "ok" | "4xx");
            let class = if bad { " class=\"bad\"" } else { "" };
            let _ = write!(out, "<td{class}>{n}</td>");
        }
        let _ = write!(
            out,
            "<td>{}</td><td>{}</td></tr>",
            ttfb(&w["ttfb_p50_ms"]),
            ttfb(&w["ttfb_p99_ms"])
        );
    }
    out.push_str("</table></div>");
}

/// A quantile, which is the upper bound of its bucket.
fn ttfb(ms: &Value) -> String {
    match ms.as_f64() {
        None => "-".to_owned(),
        Some(ms) if ms >= 1_000.0 => format!("≤ {:.1} s", ms / 1_000.0),
        Some(ms) if ms >= 10.0 => format!("≤ {ms:.0} ms"),
        Some(ms) => format!("≤ {ms:.2} ms"),
    }
}

fn last_error(out: &mut String, e: &Value, now: u64) {
    if e.is_null() {
        out.push_str("<p class=\"last-error\">last error: none</p>");
        return;
    }
    let _ = write!(
        out,
        "<p class=\"last-error\">last error: {}, {}: <span class=\"bad\">{}</span></p>",
        ago(now, e["at_ms"].as_u64()),
        text(&e["layer"]),
        text(&e["message"]),
    );
}

/// An upstream's egress proxies: which is in use, their health, their
/// tunnels per window.
fn proxies(out: &mut String, proxies: &Value, now: u64) {
    let Some(list) = proxies.as_array().filter(|l| !l.is_empty()) else {
        return;
    };
    out.push_str(
        "<div class=\"scroll\"><table class=\"proxies\"><tr><th>egress proxy</th><th>in use</th>\
         <th>reachable</th><th>tunnels 1m</th><th>5m</th><th>15m</th><th>last error</th></tr>",
    );
    for p in list {
        let healthy = p["healthy"].as_bool() == Some(true);
        let _ = write!(
            out,
            "<tr><td>{}</td><td>{}</td><td class=\"{}\">{} (since {})</td>",
            text(&p["proxy"]),
            if p["in_use"].as_bool() == Some(true) {
                "yes"
            } else {
                "no"
            },
            if healthy { "ok" } else { "bad" },
            if healthy { "yes" } else { "no" },
            ago(now, p["healthy_since_ms"].as_u64()),
        );
        for w in p["activity"]["windows"].as_array().into_iter().flatten() {
            let attempts = w["attempts"].as_u64().unwrap_or(0);
            let failed = w["errors"].as_u64().unwrap_or(0);
            if attempts == 0 {
                out.push_str("<td>none</td>");
            } else {
                let _ = write!(out, "<td>{} ok, {failed} failed</td>", attempts - failed);
            }
        }
        let e = &p["activity"]["last_error"];
        if e.is_null() {
            out.push_str("<td>none</td></tr>");
        } else {
            let _ = write!(
                out,
                "<td>{}: {}</td></tr>",
                ago(now, e["at_ms"].as_u64()),
                escape(e["message"].as_str().unwrap_or_default())
            );
        }
    }
    out.push_str("</table></div>");
}

/// The recent events, newest first.
pub fn events(out: &mut String, events: &Value, now: u64) {
    out.push_str("<h2>Recent events</h2>");
    let Some(list) = events.as_array().filter(|l| !l.is_empty()) else {
        out.push_str("<p id=\"events\" class=\"idle\">nothing has happened yet</p>");
        return;
    };
    out.push_str(
        "<div class=\"scroll\"><table id=\"events\"><tr><th>when</th><th>event</th>\
         <th>upstream</th><th>detail</th></tr>",
    );
    for e in list {
        let _ = write!(
            out,
            "<tr><td>{}</td><td>{}</td><td>{}</td><td>{}</td></tr>",
            ago(now, e["at_ms"].as_u64()),
            text(&e["kind"]),
            text(&e["upstream"]),
            text(&e["detail"]),
        );
    }
    out.push_str("</table></div>");
}
