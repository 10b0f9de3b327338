use super::*;

fn keys(doc: &str) -> Option<Vec<(String, String)>> {
    let mut out = Vec::new();
    for_each(doc.as_bytes(), |k, v| {
        out.push((
            String::from_utf8(k.to_vec()).unwrap(),
            String::from_utf8(v.to_vec()).unwrap(),
        ))
    })?;
    Some(out)
}

fn pairs(p: &[(&str, &str)]) -> Option<Vec<(String, String)>> {
    Some(
        p.iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect(),
    )
}

#[test]
fn members_are_the_top_level_only() {
    let doc = r#" { "model" : "m", "n": -1.5e3 ,"messages":[{"model":"inner","c":"a \"}]\\"}],
        "o":{"usage":{"x":[1,{}]}}, "t":true, "z":null } "#;
    assert_eq!(
        keys(doc),
        pairs(&[
            ("model", r#""m""#),
            ("n", "-1.5e3"),
            ("messages", r#"[{"model":"inner","c":"a \"}]\\"}]"#),
            ("o", r#"{"usage":{"x":[1,{}]}}"#),
            ("t", "true"),
            ("z", "null"),
        ])
    );
    let long = format!(r#"{{"a":"{}\"}} \\","b":1}}"#, "x".repeat(40));
    assert_eq!(
        keys(&long),
        pairs(&[("a", &long[5..long.len() - 7]), ("b", "1")])
    );
    assert_eq!(keys("{}"), pairs(&[]));
    assert_eq!(keys(" {\n}\n"), pairs(&[]));
}

/// Strings end at their first unescaped quote, wherever the escape
/// falls and however long they are (`memchr` takes short and long
/// haystacks by different paths).
#[test]
fn strings_end_right_at_every_length_and_escape_position() {
    for len in 0..100 {
        for escape_at in 0..=len {
            let text = format!(
                "{}\\\"{}",
                "x".repeat(escape_at),
                "y".repeat(len - escape_at)
            );
            let doc = format!(r#"{{"k":"{text}","n":1}}"#);
            assert_eq!(
                keys(&doc),
                pairs(&[("k", &format!("\"{text}\"")), ("n", "1")]),
                "{doc}"
            );
            let unclosed = format!(r#"{{"k":"{text}"#);
            assert_eq!(keys(&unclosed), None, "{unclosed}");
        }
    }
}

#[test]
fn anything_but_a_closed_object_yields_nothing() {
    for bad in [
        "",
        "not json",
        "[1,2]",
        r#""s""#,
        "{",
        r#"{"a":1"#,
        r#"{"a":1,}"#,
        r#"{"a" 1}"#,
        r#"{"a":}"#,
        r#"{"a":"unclosed}"#,
        r#"{"a":[1,2}"#,
        r#"{"a":{"b":1}"#,
        r#"{"a":1} x"#,
        r#"{"a":1}}"#,
        r#"{a:1}"#,
        r#"{"a":"\"#,
    ] {
        assert_eq!(keys(bad), None, "{bad:?}");
    }
}

#[test]
fn the_last_duplicate_wins_and_escaped_keys_match_what_they_decode_to() {
    let doc = br#"{"stream":false,"mod\u0065l":"x","stream":true,"max_\u0074okens":1,"a\"b":2}"#;
    assert_eq!(
        fields(
            doc,
            ["stream", "model", "max_tokens", "a\"b", "mod\\u0065l"]
        ),
        Some([
            Some(&b"true"[..]),
            Some(&b"\"x\""[..]),
            Some(&b"1"[..]),
            Some(&b"2"[..]),
            None
        ])
    );
    // The last one wins whichever way each was written.
    let doc = br#"{"model":"a","m\u006fdel":"b"}"#;
    assert_eq!(fields(doc, ["model"]), Some([Some(&b"\"b\""[..])]));
}

/// Whatever serde_json accepts as an object, `for_each` splits into the
/// same members.
#[test]
fn agrees_with_serde_json_on_real_bodies() {
    let docs = [
        r#"{"model":"claude-sonnet-4-5","max_tokens":1024,"stream":true,"messages":[{"role":"user","content":"hi \u00e9 \\ \" } ]"}]}"#,
        r#"{"id":"msg_01","type":"message","role":"assistant","content":[{"type":"tool_use","id":"t","name":"n","input":{"usage":{"input_tokens":999}}}],"stop_reason":"tool_use","usage":{"input_tokens":10,"output_tokens":7}}"#,
        r#"{"type":"error","error":{"type":"overloaded_error","message":"Overloaded"}}"#,
    ];
    for doc in docs {
        let parsed: serde_json::Map<String, serde_json::Value> = serde_json::from_str(doc).unwrap();
        let skimmed = keys(doc).unwrap();
        assert_eq!(skimmed.len(), parsed.len());
        for (k, v) in skimmed {
            let v: serde_json::Value = serde_json::from_str(&v).unwrap();
            assert_eq!(parsed[&k], v, "{k}");
        }
    }
}

fn last_usage(doc: &str) -> Option<&str> {
    let found = LastMember::new("usage").find(doc.as_bytes())?;
    Some(std::str::from_utf8(found).unwrap())
}

#[test]
fn the_last_member_is_found_from_the_end() {
    assert_eq!(
        last_usage(r#"{"a":1,"usage":{"x":[1,"}"]}}"#),
        Some(r#"{"x":[1,"}"]}"#)
    );
    assert_eq!(last_usage(" {\n \"usage\" :\t[1] \r\n} \n"), Some("[1]"));
    assert_eq!(last_usage(r#"{"usage":2}"#), Some("2"));
    // Of two, the last wins, as in `fields`.
    assert_eq!(last_usage(r#"{"usage":1,"usage":"two"}"#), Some(r#""two""#));
    // A `usage` inside the last one's value is passed over.
    assert_eq!(
        last_usage(r#"{"usage":{"a":{"usage":1},"usage":[{"usage":2}]}}"#),
        Some(r#"{"a":{"usage":1},"usage":[{"usage":2}]}"#)
    );
}

#[test]
fn anything_but_a_last_top_level_member_named_so_is_not_found() {
    for doc in [
        r#"{"usage":1,"b":2}"#,
        r#"{"a":{"usage":1}}"#,
        r#"{"a":{"b":1,"usage":2}}"#,
        r#"{"a":[{"usage":1}]}"#,
        r#"{"a":"usage"}"#,
        r#"{"a":["usage"]}"#,
        r#"{"a":[1,"usage"]}"#,
        r#"{"a":"x,\"usage\":1}"}"#,
        r#"{"my_usage":1}"#,
        r#"{"usage_2":1}"#,
        r#"[{"usage":1}]"#,
        r#"{"usage":}"#,
        r#"{"usage" 1}"#,
        r#"{"usage":1} x"#,
        "",
        "}",
    ] {
        assert_eq!(last_usage(doc), None, "{doc}");
    }
}

/// JSON values whose strings and keys are full of the characters the
/// walks look for: quotes, backslashes, brackets and the name itself.
fn json() -> impl proptest::strategy::Strategy<Value = serde_json::Value> {
    use proptest::prelude::*;
    use serde_json::Value;
    let text = "(usage|[\"\\\\{}\\[\\]:, a-z]){0,12}";
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        any::<i64>().prop_map(Value::from),
        text.prop_map(Value::String),
    ];
    leaf.prop_recursive(4, 32, 6, move |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..6).prop_map(Value::Array),
            prop::collection::vec((text, inner), 0..6)
                .prop_map(|members| Value::Object(members.into_iter().collect())),
        ]
    })
}

proptest::proptest! {
    /// Wherever `usage` sits in a real document, the end-first finder either
    /// finds what the walk finds or nothing, and it finds it when `usage`
    /// is the last member (unless that member's value holds more `usage`
    /// keys than the finder tries, or is longer than the tail it searches).
    #[test]
    fn the_end_first_finder_agrees_with_the_walk(
        members in proptest::collection::vec(("(usage|[a-z\"\\\\]{1,6})", json()), 0..6),
        last in proptest::option::of(json()),
        spaced in proptest::bool::ANY,
    ) {
        let mut parts: Vec<String> = members
            .iter()
            .map(|(k, v)| format!("{}:{v}", serde_json::Value::from(k.as_str())))
            .collect();
        if let Some(v) = &last {
            parts.push(format!(r#""usage":{v}"#));
        }
        let sep = if spaced { " , " } else { "," };
        let doc = format!("{{{}}}", parts.join(sep));
        let walked = fields(doc.as_bytes(), ["usage"]).expect("an object")[0];
        let found = LastMember::new("usage").find(doc.as_bytes());
        if found.is_some() {
            proptest::prop_assert_eq!(found, walked, "{}", doc);
        }
        let text = last.as_ref().map(|v| v.to_string()).unwrap_or_default();
        let nested = text.matches(r#""usage""#).count();
        if last.is_some() && nested < 4 && text.len() + 10 < TAIL {
            proptest::prop_assert!(found.is_some(), "{}", doc);
        }
    }
}
