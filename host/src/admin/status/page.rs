//! The status snapshot as a self-contained HTML page: no scripts,
//! refreshed every five seconds.

use super::traffic;
use serde_json::Value;
use std::fmt::Write;

/// The snapshot as a self-contained HTML page (no scripts, refreshed every
/// five seconds).
pub fn page(s: &Value) -> String {
    let mut out = String::with_capacity(4096);
    out.push_str(concat!(
        "<!doctype html><html lang=\"en\"><head><meta charset=\"utf-8\">",
        "<meta http-equiv=\"refresh\" content=\"5\"><title>levee status</title>",
        "<meta name=\"viewport\" content=\"width=device-width,initial-scale=1\">",
        "<style>body{font:14px system-ui,sans-serif;margin:2em}",
        "table{border-collapse:collapse}td,th{border:1px solid #ccc;padding:.3em .6em;text-align:left}",
        ".bad{color:#b00}.ok{color:#070}.idle{color:#555;font-style:italic}",
        ".scroll{overflow-x:auto;max-width:100%}.traffic{margin:1em 0 2em}",
        ".chart{display:block;max-width:100%;height:auto;margin:.5em 0}",
        ".chart .frame{fill:none;stroke:#999}.chart .all{fill:#c8c8c8}.chart .err{fill:#600}",
        ".chart text{font:10px system-ui,sans-serif;fill:#333}.legend{font-size:12px;color:#555}",
        "@media (max-width:600px){body{margin:.5em}}</style></head><body>",
    ));
    let now = s["now_ms"].as_u64().unwrap_or(0);
    let _ = write!(out, "<h1>levee {}</h1>", text(&s["version"]));
    out.push_str("<h2>Upstreams</h2><div class=\"scroll\"><table id=\"upstreams\"><tr><th>name</th><th>url</th><th>group</th><th>weight</th><th>health</th><th>circuit</th><th>in flight</th><th>rate-limited for</th><th>overloaded for</th><th>budgets</th><th>TTFB</th></tr>");
    for u in s["upstreams"].as_array().into_iter().flatten() {
        let until = |key: &str| {
            u[key]
                .as_u64()
                .map_or("-".to_owned(), |t| format!("{} ms", t.saturating_sub(now)))
        };
        let budgets: Vec<String> = u["budgets"]
            .as_array()
            .into_iter()
            .flatten()
            .map(|b| {
                let class = b["model_class"].as_str().map(|c| format!("{c} "));
                format!(
                    "{}{} {}/{}",
                    class.unwrap_or_default(),
                    text(&b["kind"]),
                    text(&b["remaining"]),
                    text(&b["limit"])
                )
            })
            .collect();
        let closed: Vec<String> = u["rate_limited"]
            .as_array()
            .into_iter()
            .flatten()
            .map(|c| {
                let left = c["until_ms"].as_u64().unwrap_or(0).saturating_sub(now);
                format!("{} {left} ms", text(&c["model_class"]))
            })
            .collect();
        let class = |good: bool| if good { "ok" } else { "bad" };
        let _ = write!(
            out,
            "<tr><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td class=\"{}\">{}</td><td class=\"{}\">{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td></tr>",
            text(&u["name"]),
            text(&u["url"]),
            text(&u["group"]),
            text(&u["weight"]),
            class(u["health"] != "unhealthy"),
            since(&u["health"], &u["health_since_ms"], now),
            class(u["circuit"] == "closed"),
            since(&u["circuit"], &u["circuit_since_ms"], now),
            text(&u["in_flight"]),
            if closed.is_empty() {
                until("rate_limited_until_ms")
            } else {
                escape(&closed.join(", "))
            },
            until("overloaded_until_ms"),
            if budgets.is_empty() {
                "-".to_owned()
            } else {
                escape(&budgets.join(", "))
            },
            u["ttfb_ms"]
                .as_u64()
                .map_or("-".to_owned(), |t| format!("{t} ms")),
        );
    }
    out.push_str("</table></div>");
    traffic::traffic(&mut out, s, now);
    traffic::events(&mut out, &s["events"], now);
    admission_html(&mut out, &s["admission"], now);
    let b = &s["retry_budget"];
    let _ = write!(
        out,
        "<h2>Retry budget</h2><p id=\"retry-budget\">{} requests and {} retries in flight; retries may reach {}; refused so far: {}</p>",
        text(&b["active"]),
        text(&b["retrying"]),
        text(&b["cap"]),
        text(&b["exhausted"]),
    );
    let p = &s["policy"];
    let _ = write!(
        out,
        "<h2>Policy</h2><p id=\"policy\">{} (sha256 {})</p><pre>{}</pre>",
        text(&p["active"]),
        text(&p["digest"]),
        match &p["config"] {
            Value::Null => "(none)".to_owned(),
            config => escape(&config.to_string()),
        },
    );
    out.push_str("<h3>Recent swaps</h3><table id=\"swaps\"><tr><th>from</th><th>to</th><th>result</th><th>ms</th></tr>");
    for r in p["swaps"].as_array().into_iter().flatten().rev() {
        let _ = write!(
            out,
            "<tr><td>{}</td><td>{}</td><td>{}</td><td>{:.1}</td></tr>",
            text(&r["from"]),
            text(&r["to"]),
            text(&r["result"]),
            r["elapsed_ms"].as_f64().unwrap_or(0.0),
        );
    }
    out.push_str("</table></body></html>");
    out
}

/// The admission section: the queue, then one row per budget.
fn admission_html(out: &mut String, a: &Value, now: u64) {
    let q = &a["queue"];
    let _ = write!(
        out,
        "<h2>Admission</h2><p id=\"queue\">{} of {} queued</p>\
         <div class=\"scroll\"><table id=\"budgets\"><tr><th>upstream</th><th>class</th><th>budget</th><th>remaining</th><th>limit</th><th>resets in</th></tr>",
        text(&q["depth"]),
        text(&q["capacity"]),
    );
    for u in a["upstreams"].as_array().into_iter().flatten() {
        for b in u["budgets"].as_array().into_iter().flatten() {
            let _ = write!(
                out,
                "<tr><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td></tr>",
                text(&u["name"]),
                b["model_class"].as_str().map_or("all".to_owned(), escape),
                text(&b["kind"]),
                text(&b["remaining"]),
                text(&b["limit"]),
                b["reset_at_ms"]
                    .as_u64()
                    .map_or("-".to_owned(), |t| format!("{} ms", t.saturating_sub(now))),
            );
        }
    }
    out.push_str("</table></div>");
}

/// A state and how long it has held, as `closed (for 4 m 2 s)`.
fn since(state: &Value, since_ms: &Value, now: u64) -> String {
    match since_ms.as_u64() {
        Some(at) => format!("{} (for {})", text(state), span(now.saturating_sub(at))),
        None => text(state),
    }
}

/// How long ago `at` was, from `now` (both ms since the Unix epoch).
pub(super) fn ago(now: u64, at: Option<u64>) -> String {
    match at {
        None => "-".to_owned(),
        Some(at) if now.saturating_sub(at) < 1_000 => "just now".to_owned(),
        Some(at) => format!("{} ago", span(now.saturating_sub(at))),
    }
}

/// A duration in ms, to the second, in its two largest units.
fn span(ms: u64) -> String {
    let s = ms / 1_000;
    match s {
        0..60 => format!("{s} s"),
        60..3_600 => format!("{} m {} s", s / 60, s % 60),
        3_600..86_400 => format!("{} h {} m", s / 3_600, s % 3_600 / 60),
        _ => format!("{} d {} h", s / 86_400, s % 86_400 / 3_600),
    }
}

/// A JSON value as escaped HTML text (strings without their quotes).
pub(super) fn text(v: &Value) -> String {
    match v {
        Value::String(s) => escape(s),
        Value::Null => "-".to_owned(),
        other => escape(&other.to_string()),
    }
}

pub(super) fn escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '&' => out.push_str("&amp;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn the_page_escapes_what_it_shows() {
        let s = json!({
            "version": "0.1.0", "now_ms": 1_000,
            "upstreams": [{"name": "<script>x</script>", "url": "http://a:1", "group": 0,
                "weight": 1, "health": "unhealthy", "circuit": "open", "in_flight": 2,
                "rate_limited_until_ms": 1_500, "overloaded_until_ms": null,
                "budgets": [{"kind": "requests", "remaining": 3, "limit": 50}], "ttfb_ms": 12}],
            "admission": {"queue": {"depth": 2, "capacity": 8}, "upstreams": [{"name": "a",
                "budgets": [{"kind": "requests", "remaining": 3, "limit": 50, "reset_at_ms": 1_250}]}]},
            "retry_budget": {"active": 1, "retrying": 0, "cap": 3, "exhausted": 0},
            "policy": {"active": "standard 0.1.0", "digest": "ab", "config": {"k": "<v>"}, "swaps": []},
        });
        let html = page(&s);
        assert!(!html.contains("<script>"));
        assert!(html.contains("&lt;script&gt;x&lt;/script&gt;"));
        assert!(
            html.contains("<td>500 ms</td>"),
            "rate-limited for, relative to now"
        );
        assert!(html.contains("requests 3/50"));
        assert!(html.contains("class=\"bad\">unhealthy"));
        assert!(html.contains("&lt;v&gt;"));
        assert!(html.contains("id=\"queue\">2 of 8 queued"));
        assert!(
            html.contains(
                "<tr><td>a</td><td>all</td><td>requests</td><td>3</td><td>50</td><td>250 ms</td></tr>"
            ),
            "{html}"
        );
    }

    /// A snapshot of two upstreams, `busy` with the activity recorded in
    /// `t` and `idle` with none, as `snapshot` builds it.
    fn two(t: &crate::telemetry::activity::Track, now: std::time::Instant) -> Value {
        use super::super::activity::track;
        let idle = crate::telemetry::activity::Track::default();
        let upstream = |name: &str, t: &crate::telemetry::activity::Track| {
            json!({"name": name, "url": "http://h:1", "group": 0, "weight": 1,
                "health": "unknown", "health_since_ms": 1_000, "circuit": "closed",
                "circuit_since_ms": 1_000, "in_flight": 0, "budgets": [],
                "activity": track(t, now), "proxies": []})
        };
        json!({
            "version": "0.1.0", "now_ms": 3_000_000,
            "upstreams": [upstream("busy", t), upstream("idle", &idle)],
            "events": [
                {"seq": 2, "at_ms": 2_990_000, "kind": "policy-swap", "upstream": null, "detail": "a → b"},
                {"seq": 1, "at_ms": 2_900_000, "kind": "ejected", "upstream": "busy", "detail": "by the consecutive rule"},
            ],
            "admission": {"queue": {"depth": 0, "capacity": 8}, "upstreams": []},
            "retry_budget": {"active": 0, "retrying": 0, "cap": 3, "exhausted": 0},
            "policy": {"active": "standard", "digest": "ab", "config": null, "swaps": []},
        })
    }

    #[test]
    fn the_page_shows_each_upstreams_windows_chart_last_error_and_the_events() {
        use crate::core::FailureKind;
        use crate::telemetry::activity::window::Kind;
        use std::time::{Duration, Instant};
        let t = crate::telemetry::activity::Track::default();
        let now = Instant::now();
        for _ in 0..3 {
            t.record(now, Kind::Ok, Some(Duration::from_millis(2)));
        }
        t.record(now, Kind::RateLimited, Some(Duration::from_millis(1)));
        t.record(now, Kind::Failed(FailureKind::Connect), None);
        t.failed("connect", "connect failed, 127.0.0.1:1: refused");
        let mut snapshot = two(&t, now);
        let html = page(&snapshot);

        assert!(!html.contains("<script"), "no script");
        assert_eq!(html.matches("<svg class=\"chart\"").count(), 2);
        assert!(
            html.contains("id=\"chart-0\" role=\"img\" aria-label=\"busy: 5 attempts and 2 errors")
        );
        assert!(html.contains("id=\"chart-1\" role=\"img\" aria-label=\"idle: no traffic"));
        let busy =
            &html[html.find("id=\"traffic-0\"").unwrap()..html.find("id=\"traffic-1\"").unwrap()];
        assert!(
            busy.contains("<tr><td>1m</td><td>5</td>") && busy.contains("<td>60.0 %</td>"),
            "{busy}"
        );
        // ok, 4xx, 429, 529, 5xx, dns, connect: the 429 and the connect
        // failure are marked.
        assert!(
            busy.contains("<td>3</td><td>0</td><td class=\"bad\">1</td><td>0</td><td>0</td><td>0</td><td class=\"bad\">1</td>"),
            "{busy}"
        );
        assert!(busy.contains("<td>≤ 2.00 ms</td>"), "p50 of 2 ms: {busy}");
        assert!(busy.contains(
            "last error: just now, connect: <span class=\"bad\">connect failed, 127.0.0.1:1: refused</span>"
        ), "{busy}");
        let idle = &html[html.find("id=\"traffic-1\"").unwrap()..];
        assert!(idle.contains("<p class=\"idle\">no traffic yet</p>"));
        assert!(idle.contains("last error: none"));
        let events = &html[html.find("<table id=\"events\">").unwrap()..];
        let swap = events.find("policy-swap").unwrap();
        let ejected = events.find("ejected").unwrap();
        assert!(swap < ejected, "newest first");
        assert!(events.contains("<td>10 s ago</td><td>policy-swap</td><td>-</td><td>a → b</td>"));
        assert!(html.contains("closed (for 49 m 59 s)"), "since when");
        assert!(html.contains("<pre>(none)</pre>"), "an empty config");
        snapshot["upstreams"][1]["activity"]["ever"] = true.into();
        let later = page(&snapshot);
        assert!(later.contains("<p class=\"idle\">no traffic in the last 15 minutes</p>"));
    }
}
