//! The status snapshot as a self-contained HTML page: no scripts,
//! refreshed every five seconds.

use serde_json::Value;
use std::fmt::Write;

/// The snapshot as a self-contained HTML page (no scripts, refreshed every
/// five seconds).
pub fn page(s: &Value) -> String {
    let mut out = String::with_capacity(4096);
    out.push_str(concat!(
        "<!doctype html><html lang=\"en\"><head><meta charset=\"utf-8\">",
        "<meta http-equiv=\"refresh\" content=\"5\"><title>levee status</title>",
        "<style>body{font:14px system-ui,sans-serif;margin:2em}",
        "table{border-collapse:collapse}td,th{border:1px solid #ccc;padding:.3em .6em;text-align:left}",
        ".bad{color:#b00}.ok{color:#070}</style></head><body>",
    ));
    let _ = write!(out, "<h1>levee {}</h1>", text(&s["version"]));
    out.push_str("<h2>Upstreams</h2><table id=\"upstreams\"><tr><th>name</th><th>url</th><th>group</th><th>weight</th><th>health</th><th>circuit</th><th>in flight</th><th>rate-limited for</th><th>overloaded for</th><th>budgets</th><th>TTFB</th></tr>");
    let now = s["now_ms"].as_u64().unwrap_or(0);
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
                format!(
                    "{} {}/{}",
                    text(&b["kind"]),
                    text(&b["remaining"]),
                    text(&b["limit"])
                )
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
            text(&u["health"]),
            class(u["circuit"] == "closed"),
            text(&u["circuit"]),
            text(&u["in_flight"]),
            until("rate_limited_until_ms"),
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
    out.push_str("</table>");
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
        escape(&p["config"].to_string()),
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
         <table id=\"budgets\"><tr><th>upstream</th><th>budget</th><th>remaining</th><th>limit</th><th>resets in</th></tr>",
        text(&q["depth"]),
        text(&q["capacity"]),
    );
    for u in a["upstreams"].as_array().into_iter().flatten() {
        for b in u["budgets"].as_array().into_iter().flatten() {
            let _ = write!(
                out,
                "<tr><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td></tr>",
                text(&u["name"]),
                text(&b["kind"]),
                text(&b["remaining"]),
                text(&b["limit"]),
                b["reset_at_ms"]
                    .as_u64()
                    .map_or("-".to_owned(), |t| format!("{} ms", t.saturating_sub(now))),
            );
        }
    }
    out.push_str("</table>");
}

/// A JSON value as escaped HTML text (strings without their quotes).
fn text(v: &Value) -> String {
    match v {
        Value::String(s) => escape(s),
        Value::Null => "-".to_owned(),
        other => escape(&other.to_string()),
    }
}

fn escape(s: &str) -> String {
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
                "<tr><td>a</td><td>requests</td><td>3</td><td>50</td><td>250 ms</td></tr>"
            ),
            "{html}"
        );
    }
}
