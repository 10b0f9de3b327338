//! `/metrics` after a scripted scenario: exact counter values and histogram
//! bucket counts, bounded labels, and never a key.

use super::{FAST_POLICY, MESSAGE, client, levee_for, post};
use levee_tests::levee::{ADMIN_TOKEN, Levee};
use levee_tests::mock::{MockUpstream, Reply, RetryAfter, Script, Step};
use std::collections::HashMap;
use std::time::Duration;

/// The API key `post` sends.
const KEY: &str = "sk-ant-test-secret-0001";

/// Scrapes `/metrics` into `series{labels} -> value`.
async fn scrape(levee: &Levee) -> (String, HashMap<String, f64>) {
    let resp = client()
        .get(format!("{}/metrics", levee.admin_url()))
        .bearer_auth(ADMIN_TOKEN)
        .send()
        .await
        .expect("admin answers");
    assert_eq!(resp.status(), 200);
    let text = resp.text().await.unwrap();
    let values = text
        .lines()
        .filter(|l| !l.starts_with('#') && !l.is_empty())
        .map(|l| {
            let (series, value) = l.rsplit_once(' ').expect("`series value`");
            (series.to_owned(), value.parse().expect("a number"))
        })
        .collect();
    (text, values)
}

fn value(values: &HashMap<String, f64>, series: &str) -> f64 {
    *values
        .get(series)
        .unwrap_or_else(|| panic!("no series {series} in {values:#?}"))
}

#[tokio::test(flavor = "multi_thread")]
async fn a_scripted_scenario_gives_exact_counts() {
    let upstream = MockUpstream::start(
        Script::of([
            // Request 1: a 429, then a 200 after the wait it asks.
            Step::Reply(Reply::rate_limited(RetryAfter::Ms(20))),
            Step::Reply(Reply::message().header("anthropic-ratelimit-requests-remaining", "41")),
            // Request 2: a 200 whose head takes 1.2 s: the (1, 2] bucket.
            Step::Reply(Reply::message().delay(Duration::from_millis(1_200))),
        ])
        // Request 3: a 200 with a hostile header, which is ignored.
        .then(Step::Reply(
            Reply::message().header("anthropic-ratelimit-tokens-remaining", "-5"),
        )),
    )
    .await;
    let levee = levee_for(
        &upstream,
        &format!("{FAST_POLICY}\n[rails]\nmax_body_bytes = 4096\n"),
    );
    // Loading a policy self-checks it through the component: count from here.
    let (_, before) = scrape(&levee).await;
    for _ in 0..3 {
        assert_eq!(post(&levee, MESSAGE).await.status(), 200);
    }
    // Request 4: too large for the rails, answered by levee itself.
    let big = format!(r#"{{"pad":"{}"}}"#, "x".repeat(5_000));
    assert_eq!(post(&levee, &big).await.status(), 413);

    let (text, v) = scrape(&levee).await;
    assert!(!text.contains(KEY), "the API key leaked into /metrics");
    assert!(
        !levee.log().contains(KEY),
        "the API key leaked into the log"
    );

    assert_eq!(
        value(&v, r#"api_requests_total{status_code="200",method="POST"}"#),
        3.0
    );
    assert_eq!(
        value(&v, r#"api_requests_total{status_code="413",method="POST"}"#),
        1.0
    );
    let bucket = |le: &str| {
        value(
            &v,
            &format!(r#"api_latency_seconds_bucket{{le="{le}",endpoint="messages"}}"#),
        )
    };
    assert_eq!(
        value(&v, r#"api_latency_seconds_count{endpoint="messages"}"#),
        4.0
    );
    assert_eq!(bucket("1.0"), 3.0, "only the delayed request took over 1 s");
    assert_eq!(bucket("2.0"), 4.0);
    assert_eq!(bucket("+Inf"), 4.0);
    // levee's own histogram measures the same, with buckets to 10 minutes.
    let head = |le: &str| {
        value(
            &v,
            &format!(r#"levee_response_head_seconds_bucket{{le="{le}",endpoint="messages"}}"#),
        )
    };
    assert_eq!(head("1.0"), 3.0, "only the delayed request took over 1 s");
    assert_eq!(head("2.5"), 4.0);
    assert_eq!(head("600.0"), 4.0);
    assert_eq!(head("+Inf"), 4.0);

    assert_eq!(
        value(
            &v,
            r#"levee_attempts_total{upstream="primary",outcome="429"}"#
        ),
        1.0
    );
    assert_eq!(
        value(
            &v,
            r#"levee_attempts_total{upstream="primary",outcome="2xx"}"#
        ),
        3.0
    );
    assert_eq!(value(&v, r#"levee_retries_total{reason="429"}"#), 1.0);
    assert_eq!(
        value(
            &v,
            r#"levee_upstream_ttfb_seconds_count{upstream="primary"}"#
        ),
        4.0
    );
    assert_eq!(
        value(
            &v,
            r#"rate_limit_remaining{upstream="primary",model_class="sonnet",dimension="requests"}"#
        ),
        41.0
    );
    assert!(
        !v.keys().any(|k| k.contains(r#"dimension="tokens""#)),
        "a negative budget must be ignored"
    );
    assert_eq!(
        value(&v, r#"levee_stream_terminations_total{cause="complete"}"#),
        3.0
    );
    assert_eq!(
        value(
            &v,
            r#"levee_local_rejections_total{reason="body_too_large"}"#
        ),
        1.0
    );
    // Three admissions (the 413 never reached the policy), one outcome (the
    // 429; a success is delivered without asking).
    assert_eq!(
        value(&v, r#"levee_policy_call_seconds_count{call="on-request"}"#),
        3.0
    );
    assert_eq!(
        value(&v, r#"levee_policy_call_seconds_count{call="on-outcome"}"#),
        1.0
    );
    assert_eq!(
        value(&v, "levee_policy_calls_total") - value(&before, "levee_policy_calls_total"),
        4.0
    );
    assert_eq!(value(&v, "levee_policy_fallbacks_total"), 0.0);
    assert_eq!(value(&v, r#"levee_policy_swaps_total{result="ok"}"#), 0.0);
    assert!(
        v.keys()
            .any(|k| k.starts_with(r#"levee_policy_info{name="standard""#)),
        "the active policy's info metric"
    );
    assert_eq!(
        value(&v, r#"levee_upstream_in_flight{upstream="primary"}"#),
        0.0
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn closed_metrics_need_the_admin_token() {
    let upstream = MockUpstream::start(Script::always(Step::Reply(Reply::message()))).await;
    let levee = levee_for(&upstream, "[admin]\nopen_metrics = false\n");
    let url = format!("{}/metrics", levee.admin_url());
    let anonymous = client().get(&url).send().await.unwrap();
    assert_eq!(anonymous.status(), 401);
    let wrong = client()
        .get(&url)
        .bearer_auth("not-the-token")
        .send()
        .await
        .unwrap();
    assert_eq!(wrong.status(), 401);
    assert!(!anonymous.text().await.unwrap().contains("api_requests"));
}

/// Every series name `/metrics` can carry, from its `# TYPE` lines.
fn exported_series(text: &str) -> Vec<String> {
    text.lines()
        .filter_map(|l| l.strip_prefix("# TYPE "))
        .flat_map(|l| {
            let (name, kind) = l.split_once(' ').expect("`# TYPE name kind`");
            let suffixes: &[&str] = match kind {
                "counter" => &["_total"],
                "histogram" => &["_bucket", "_sum", "_count"],
                "info" => &["_info"],
                _ => &[""],
            };
            suffixes.iter().map(move |s| format!("{name}{s}"))
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread")]
async fn the_dashboard_queries_only_metrics_levee_exports() {
    // Families without a series are not listed: give each one a series.
    let upstream = MockUpstream::start(
        Script::of([Step::Reply(Reply::rate_limited(RetryAfter::Ms(10)))]).then(Step::Reply(
            Reply::message().header("anthropic-ratelimit-requests-remaining", "5"),
        )),
    )
    .await;
    let levee = levee_for(
        &upstream,
        &format!("{FAST_POLICY}\n[rails]\nmax_body_bytes = 4096\n"),
    );
    assert_eq!(post(&levee, MESSAGE).await.status(), 200);
    let big = format!(r#"{{"pad":"{}"}}"#, "x".repeat(5_000));
    assert_eq!(post(&levee, &big).await.status(), 413);
    let (text, _) = scrape(&levee).await;
    let exported = exported_series(&text);
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../dashboards/levee.json");
    let dashboard: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(path).expect("the dashboard"))
            .expect("the dashboard is JSON");
    let variables: Vec<&str> = dashboard["templating"]["list"]
        .as_array()
        .expect("templating")
        .iter()
        .filter_map(|v| v["name"].as_str())
        .collect();
    assert_eq!(variables, ["datasource", "job", "instance"]);
    let mut queried = Vec::new();
    for panel in dashboard["panels"].as_array().expect("panels") {
        let targets = panel["targets"].as_array().expect("targets");
        assert!(!targets.is_empty(), "panel {} has no query", panel["title"]);
        for target in targets {
            let expr = target["expr"].as_str().expect("a PromQL expr");
            // Every metric is written with a selector, `name{...}`.
            let names: Vec<&str> = expr
                .split('{')
                .filter_map(|before| {
                    let tail = before.rsplit(|c: char| !(c.is_alphanumeric() || c == '_'));
                    tail.into_iter().next().filter(|n| !n.is_empty())
                })
                .collect();
            assert!(!names.is_empty(), "no metric in `{expr}`");
            // Each selector follows the job and instance chosen, and each
            // range Grafana's rate interval, never a fixed window.
            assert_eq!(
                expr.matches('{').count(),
                expr.matches(r#"{job=~"$job", instance=~"$instance""#)
                    .count(),
                "a selector without the job and instance variables in `{expr}`"
            );
            for range in expr.split('[').skip(1) {
                assert!(
                    range.starts_with("$__rate_interval]"),
                    "a fixed range in `{expr}`"
                );
            }
            for name in names {
                assert!(
                    exported.iter().any(|e| e == name),
                    "panel {} queries `{name}`, which levee does not export: {exported:?}",
                    panel["title"]
                );
                queried.push(name.to_owned());
            }
        }
    }
    for seed in [
        "api_requests_total",
        "api_latency_seconds_bucket",
        "rate_limit_remaining",
    ] {
        assert!(
            queried.iter().any(|q| q == seed),
            "the dashboard lacks {seed}"
        );
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn the_combined_token_budget_is_reported_beside_the_per_kind_ones() {
    let upstream = MockUpstream::start(Script::always(Reply::message_with("hi", 12, 8))).await;
    upstream.set_limits(Some(
        levee_tests::mock::RateLimits::default()
            .input_tokens(1_000)
            .output_tokens(100),
    ));
    let levee = levee_for(&upstream, "");
    assert_eq!(post(&levee, MESSAGE).await.status(), 200);
    let (_, v) = scrape(&levee).await;
    let left = |dimension: &str| {
        value(
            &v,
            &format!(
                r#"rate_limit_remaining{{upstream="primary",model_class="sonnet",dimension="{dimension}"}}"#
            ),
        )
    };
    assert_eq!(left("input_tokens"), 988.0);
    assert_eq!(left("output_tokens"), 92.0);
    assert_eq!(
        left("tokens"),
        92.0,
        "the tightest token budget, from the combined headers"
    );
}
