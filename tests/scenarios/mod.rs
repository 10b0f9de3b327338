//! Scenarios that every levee gateway must pass, written once and run by
//! each suite against its own gateway: the bundled host (`tests/gateway`)
//! and the composed edge component on each runtime (`tests/edge`).
//!
//! A suite implements [`Gateway`] and calls [`all_scenarios!`], which makes
//! one `#[tokio::test]` per scenario.

pub mod bodies;
pub mod classes;
pub mod errors;
pub mod failover;
pub mod paths;
pub mod retries;
pub mod streaming;

use levee_tests::mock::MockUpstream;

/// What a scenario asks of the gateway besides its upstreams.
#[derive(Clone, Debug)]
pub struct Setup {
    /// The standard policy's configuration (JSON).
    pub policy: serde_json::Value,
    /// The host's attempt ceiling, when the scenario sets one.
    pub max_attempts: Option<u32>,
    /// The streaming idle timeout, when the scenario sets one.
    pub idle_timeout_ms: Option<u64>,
    /// How long a stream's start is held back for content, when the
    /// scenario sets it.
    pub hold_ms: Option<u64>,
}

impl Default for Setup {
    /// A short-scale standard policy: small backoff, four attempts.
    fn default() -> Self {
        Setup {
            policy: serde_json::json!({"max_attempts": 4, "backoff": {"base_ms": 20, "cap_ms": 100}}),
            max_attempts: None,
            idle_timeout_ms: None,
            hold_ms: None,
        }
    }
}

/// A gateway under test, in front of named upstreams, with the standard
/// policy.
pub trait Gateway: Sized {
    /// Starts it in front of `upstreams` (`(name, url)`), each in its own
    /// failover group in this order: the first is preferred.
    fn start(upstreams: &[(&str, String)], setup: &Setup) -> Self;
    /// Its base URL, `http://127.0.0.1:PORT`.
    fn url(&self) -> String;
    /// What it has logged so far (access lines included).
    fn log(&self) -> String;
    /// Whether the bytes its runtime received before a connection reset
    /// reach it. Node.js (under `jco serve`) drops what the component had
    /// not read yet when the reset arrives; the others keep it.
    fn keeps_bytes_received_before_a_reset(&self) -> bool {
        true
    }
    /// Whether what one request learns (a 429's closure, a spent window)
    /// is there for the next. The edge keeps it in Spin's key-value store;
    /// under `wasmtime serve` and `jco serve`, each request gets a new
    /// instance with nothing of the last.
    fn remembers_between_requests(&self) -> bool {
        true
    }
}

/// Waits at most 10 s until `gw`'s log has `n` access lines with
/// `field` (e.g. `status=529`); returns the log.
pub async fn access_lines<G: Gateway>(gw: &G, field: &str, n: usize) -> String {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    loop {
        let log = gw.log();
        let seen = log
            .lines()
            .filter(|l| l.contains("levee::access") && l.split(' ').any(|w| w == field))
            .count();
        if seen == n {
            return log;
        }
        assert!(
            seen < n && std::time::Instant::now() < deadline,
            "want {n} access lines with {field}, have {seen}:\n{log}"
        );
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
}

/// Starts `G` in front of one upstream named `primary`.
pub fn gateway_for<G: Gateway>(upstream: &MockUpstream, setup: &Setup) -> G {
    G::start(&[("primary", upstream.url())], setup)
}

/// POSTs `body` to `/v1/messages` with a test key.
pub async fn post<G: Gateway>(gw: &G, body: &str) -> reqwest::Response {
    post_to(gw, "/v1/messages", body).await
}

/// POSTs `body` to `path` with a test key.
pub async fn post_to<G: Gateway>(gw: &G, path: &str, body: &str) -> reqwest::Response {
    reqwest::Client::new()
        .post(format!("{}{path}", gw.url()))
        .header("x-api-key", "sk-ant-test-secret-0001")
        .header("anthropic-version", "2023-06-01")
        .header("content-type", "application/json")
        .body(body.to_owned())
        .send()
        .await
        .expect("the gateway answers")
}

/// A minimal Messages request body.
pub const MESSAGE: &str =
    r#"{"model":"claude-sonnet-4-5","max_tokens":64,"messages":[{"role":"user","content":"hi"}]}"#;

/// The same, streaming.
pub const STREAM_MESSAGE: &str = r#"{"model":"claude-sonnet-4-5","max_tokens":64,"stream":true,"messages":[{"role":"user","content":"hi"}]}"#;

/// A response header as text.
pub fn header<'a>(resp: &'a reqwest::Response, name: &str) -> Option<&'a str> {
    resp.headers().get(name).and_then(|v| v.to_str().ok())
}

/// One `#[tokio::test]` per shared scenario, run against gateway `$gw`.
#[macro_export]
macro_rules! all_scenarios {
    ($gw:ty) => {
        $crate::all_scenarios!(@each $gw;
            retries::rate_limited_three_times_then_ok_waits_what_each_429_asks,
            retries::always_overloaded_gives_up_after_the_policy_attempts_and_says_do_not_retry,
            retries::a_spend_cap_is_final,
            retries::client_errors_are_delivered_as_they_are,
            retries::x_should_retry_true_retries_even_a_400,
            retries::a_reset_before_the_head_is_retried_with_the_same_body,
            retries::a_retry_after_beyond_what_the_policy_waits_gives_up_at_once_and_passes_it_on,
            retries::a_hung_upstream_costs_one_per_try_timeout_then_a_retry,
            retries::the_hosts_attempt_ceiling_overrules_the_policy,
            retries::a_mild_overload_is_saved_by_one_retry_per_request,
            errors::an_api_error_500_is_retried_and_the_next_answer_delivered,
            errors::always_503_gives_up_after_the_policy_attempts_with_the_last_answer,
            errors::a_408_and_a_409_are_retried,
            errors::x_should_retry_false_makes_a_500_final,
            errors::an_html_502_from_a_load_balancer_is_retried,
            errors::an_html_503_is_passed_on_as_it_came_after_the_policy_attempts,
            errors::every_give_up_answer_arrives_whole_and_none_is_logged_as_broken,
            bodies::a_cut_json_body_fails_at_the_client,
            bodies::a_json_body_closed_short_fails_at_the_client,
            bodies::a_cut_error_body_fails_at_the_client,
            bodies::a_trickled_body_arrives_whole_though_it_outlasts_the_idle_timeout,
            bodies::a_json_body_that_stalls_past_the_idle_timeout_fails_the_clients_read,
            failover::an_overloaded_primary_fails_over_to_the_backup,
            failover::a_refused_primary_fails_over_to_the_backup,
            failover::a_rate_limited_primary_hands_over_without_waiting,
            streaming::a_healthy_stream_passes_byte_for_byte,
            streaming::a_cut_stream_ends_with_an_error_frame_not_a_clean_close,
            streaming::a_stalled_stream_ends_with_an_error_frame,
            streaming::a_stream_closed_before_message_stop_is_a_cut,
            streaming::an_upstream_error_event_after_content_passes_through_as_the_end,
            streaming::an_error_event_before_content_is_retried_and_the_client_sees_one_clean_stream,
            streaming::an_error_event_before_content_on_every_try_gives_up_with_its_status,
            streaming::with_no_hold_an_error_event_before_content_passes_through,
            streaming::a_stream_closed_before_content_is_retried,
            streaming::an_openai_stream_passes_byte_for_byte_ending_with_done,
            streaming::a_cut_openai_stream_ends_with_an_error_chunk_in_its_format,
            paths::a_dot_segment_in_the_path_is_refused_before_any_attempt,
            classes::a_spent_model_class_leaves_another_class_open,
        );
    };
    (@each $gw:ty; $($module:ident :: $name:ident),* $(,)?) => {
        $(
            #[tokio::test(flavor = "multi_thread")]
            async fn $name() {
                scenarios::$module::$name::<$gw>().await
            }
        )*
    };
}
