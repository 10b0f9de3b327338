use super::*;
use crate::types::*;
use serde_json::json;

fn response(status: u16) -> Outcome {
    Outcome::Response(ResponseFacts {
        status,
        should_retry: Some(false),
        retry_after_ms: Some(u64::MAX),
        retry_after: None,
        error: Some(ErrorKind::RateLimit),
        spend_cap: false,
        elapsed_ms: 12,
    })
}

#[test]
fn values_round_trip_in_their_wit_names() {
    let attempt = Attempt {
        number: 1,
        upstream: 2,
        prev_delay_ms: 500,
        outcome: response(429),
    };
    let json = attempt.to_json();
    assert_eq!(json["prev-delay-ms"], json!(500));
    assert_eq!(json["outcome"]["tag"], json!("response"));
    assert_eq!(json["outcome"]["val"]["error"], json!("rate-limit"));
    assert_eq!(Attempt::from_json(&json), Ok(attempt));
    for step in [
        NextStep::Deliver,
        NextStep::Retry(Retry {
            upstream: 1,
            delay_ms: 0,
        }),
        NextStep::Fail(GiveUp {
            should_retry: true,
            retry_after_ms: None,
        }),
    ] {
        assert_eq!(NextStep::from_json(&step.to_json()), Ok(step));
    }
    assert_eq!(NextStep::Deliver.to_json(), json!({"tag": "deliver"}));
}

#[test]
fn u64_is_exact_for_javascript() {
    assert_eq!(MAX_EXACT.to_json(), json!(9_007_199_254_740_991u64));
    assert_eq!((MAX_EXACT + 1).to_json(), json!("9007199254740992"));
    assert_eq!(u64::from_json(&json!("18446744073709551615")), Ok(u64::MAX));
    assert_eq!(u64::from_json(&json!(7)), Ok(7));
    for bad in [
        json!(-1),
        json!(1.5),
        json!("1e3"),
        json!(""),
        json!("18446744073709551616"),
    ] {
        assert!(u64::from_json(&bad).is_err(), "{bad}");
    }
}

#[test]
fn absent_options_read_as_none_and_other_fields_are_required() {
    let v = json!({"upstream": 0, "delay-ms": 10});
    assert_eq!(
        Retry::from_json(&v),
        Ok(Retry {
            upstream: 0,
            delay_ms: 10
        })
    );
    let g = GiveUp::from_json(&json!({"should-retry": false})).unwrap();
    assert_eq!(g.retry_after_ms, None);
    let e = Retry::from_json(&json!({"upstream": 0})).unwrap_err();
    assert_eq!(e.to_string(), "`delay-ms`: is missing");
}

#[test]
fn errors_name_the_path_and_what_would_be_valid() {
    let v = json!({"now": 1, "random": 2, "retry-budget": true, "upstreams": [
        {"id": 0, "group": 0, "weight": 1, "health": "healthy", "circuit": "closed",
         "in-flight": 0, "budgets": [], "slow": false},
        {"id": 1, "group": 0, "weight": 1, "health": "fine", "circuit": "closed",
         "in-flight": 0, "budgets": [], "slow": false}]});
    let e = View::from_json(&v).unwrap_err();
    assert_eq!(
        e.to_string(),
        "`upstreams[1].health`: expected one of: unknown, healthy, unhealthy; got \"fine\""
    );
    let e = Retry::from_json(&json!({"upstream": 0, "delay-ms": 1, "delay": 2})).unwrap_err();
    assert_eq!(
        e.to_string(),
        "`delay`: unknown field; expected one of: upstream, delay-ms"
    );
    let e = NextStep::from_json(&json!({"tag": "wait"})).unwrap_err();
    assert_eq!(
        e.to_string(),
        "`tag`: unknown case `wait`; expected one of: deliver, retry, fail"
    );
    let e = Admission::from_json(&json!({"tag": "queue"})).unwrap_err();
    assert_eq!(e.to_string(), "case `queue` needs a `val`");
}
