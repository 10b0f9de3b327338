use super::*;

type List = Vec<(String, Vec<u8>)>;

fn get<'a>(h: &'a List, name: &str) -> Option<&'a str> {
    h.iter()
        .find(|(k, _)| k == name)
        .map(|(_, v)| std::str::from_utf8(v).unwrap())
}

fn list(pairs: &[(&str, &str)]) -> List {
    pairs
        .iter()
        .map(|(k, v)| (k.to_string(), v.as_bytes().to_vec()))
        .collect()
}

#[test]
fn every_reason_has_an_error_status_a_type_and_its_own_label() {
    let mut labels = std::collections::HashSet::new();
    for reason in Reason::ALL {
        let (status, error_type, _, label) = reason.row();
        assert!((400..=599).contains(&status), "{reason:?}");
        assert!(
            !error_type.is_empty() && error_type.ends_with("error")
                || error_type == "request_too_large"
        );
        assert!(labels.insert(label), "{label} twice");
    }
}

#[test]
fn a_reply_that_forbids_a_retry_names_no_time_to_retry() {
    let r = LocalReply::new(Reason::TooLargeForLimit, "x", Some(5_000));
    assert_eq!(
        r.verdict,
        GiveUp {
            should_retry: false,
            retry_after_ms: None
        }
    );
    let r = LocalReply::queue_full(1_200);
    assert_eq!(
        (
            r.status,
            &*r.error_type,
            r.verdict.should_retry,
            r.verdict.retry_after_ms
        ),
        (429, "rate_limit_error", true, Some(1_200))
    );
}

#[test]
fn the_head_carries_attempts_the_request_id_and_the_verdict() {
    let r = LocalReply::queue_deadline(2_500);
    let mut h = List::new();
    r.head(&mut h, "levee_1", 0);
    assert_eq!(get(&h, "content-type"), Some("application/json"));
    assert_eq!(get(&h, "request-id"), Some("levee_1"));
    assert_eq!(get(&h, "x-levee-attempts"), Some("0"));
    assert_eq!(get(&h, "x-should-retry"), Some("true"));
    assert_eq!(get(&h, "retry-after"), Some("3"));
    assert_eq!(get(&h, "retry-after-ms"), Some("2500"));
    let body: serde_json::Value = serde_json::from_str(&r.body("levee_1")).unwrap();
    assert_eq!(body["type"], "error");
    assert_eq!(body["error"]["type"], "rate_limit_error");
    assert_eq!(body["request_id"], "levee_1");
}

#[test]
fn a_policy_rejection_keeps_its_status_and_type_unless_they_are_unusable() {
    let mut rej = Rejection {
        status: 402,
        error_type: "billing_error".into(),
        message: "no".into(),
        retry_after_ms: Some(9),
        should_retry: false,
    };
    let r = LocalReply::policy_reject(&rej);
    assert_eq!((r.status, &*r.error_type), (402, "billing_error"));
    assert_eq!(r.verdict.retry_after_ms, None, "no retry, so no time");
    assert_eq!(r.reason.label(), "policy_reject");
    rej.status = 200;
    rej.error_type.clear();
    let r = LocalReply::policy_reject(&rej);
    assert_eq!((r.status, &*r.error_type), (503, "api_error"));
}

#[test]
fn an_upstream_failure_names_its_layer_upstream_and_attempts() {
    let r = LocalReply::upstream_failure(FailureKind::Timeout, "no head", "primary", 1, None);
    assert_eq!((r.status, &*r.error_type), (504, "timeout_error"));
    assert_eq!(
        r.message,
        "timeout: no head (upstream `primary`, after 1 attempt)"
    );
    assert!(!r.reason.is_rejection());
    let g = GiveUp {
        should_retry: true,
        retry_after_ms: Some(700),
    };
    let r = LocalReply::upstream_failure(FailureKind::Connect, "refused", "b", 3, Some(g));
    assert_eq!((r.status, r.verdict), (502, g));
    assert!(r.message.ends_with("after 3 attempts)"));
}

#[test]
fn verdict_keeps_an_upstream_retry_after_unless_told() {
    let retry = |ms| GiveUp {
        should_retry: true,
        retry_after_ms: Some(ms),
    };
    let mut h = list(&[("retry-after", "15")]);
    set_verdict(&mut h, retry(2_500), false);
    assert_eq!(get(&h, "retry-after"), Some("15"));
    assert_eq!(get(&h, "retry-after-ms"), None);
    assert_eq!(get(&h, "x-should-retry"), Some("true"));
    set_verdict(&mut h, retry(2_500), true);
    assert_eq!(get(&h, "retry-after"), Some("3"));
    assert_eq!(get(&h, "retry-after-ms"), Some("2500"));
}

#[test]
fn do_not_retry_removes_any_time_to_retry_even_the_upstreams() {
    let mut h = list(&[("retry-after", "1"), ("retry-after-ms", "800")]);
    let g = GiveUp {
        should_retry: false,
        retry_after_ms: Some(1_000),
    };
    set_verdict(&mut h, g, false);
    assert_eq!(get(&h, "x-should-retry"), Some("false"));
    assert_eq!(get(&h, "retry-after"), None);
    assert_eq!(get(&h, "retry-after-ms"), None);
}

#[test]
fn error_json_is_the_api_shape() {
    let v: serde_json::Value =
        serde_json::from_str(&error_json("api_error", "say \"hi\"", "levee_1")).unwrap();
    assert_eq!(v["type"], "error");
    assert_eq!(v["error"]["type"], "api_error");
    assert_eq!(v["error"]["message"], "say \"hi\"");
    assert_eq!(v["request_id"], "levee_1");
}
