//! The top-level members of a JSON object, found without parsing the rest.
//!
//! levee reads a few fields from every request body (`model`, `stream`,
//! `max_tokens`) and from every response (`usage`). Deserializing the whole
//! document to find them tokenizes and UTF-8-checks every prompt and every
//! answer: about a third of levee's own work per request, measured. This
//! walks the top level only: strings are skipped with `memchr`, nested
//! values by bracket depth, and just the wanted values go to `serde_json`.
//!
//! Nested values are not validated beyond balanced brackets and closed
//! strings: the upstream judges the request, and these fields only inform
//! the policy and the limiter. A document whose top level is not a closed
//! object yields nothing.

/// The raw values of the top-level members named `names` in the object
/// `doc`; `None` when `doc` is not an object. For a name given twice the
/// last wins, as in the API's own parser. A key written with escapes
/// matches no name.
pub fn fields<'a, const N: usize>(
    doc: &'a [u8],
    names: [&str; N],
) -> Option<[Option<&'a [u8]>; N]> {
    let mut found = [None; N];
    for_each(doc, |key, value| {
        if let Some(i) = names.iter().position(|n| n.as_bytes() == key) {
            found[i] = Some(value);
        }
    })?;
    Some(found)
}

/// Calls `visit(key, raw value)` for each top-level member of the object
/// `doc`, in order (a key as written between its quotes); `None` when
/// `doc` is not an object, possibly after some calls.
pub fn for_each<'a>(doc: &'a [u8], mut visit: impl FnMut(&'a [u8], &'a [u8])) -> Option<()> {
    let mut at = skip_ws(doc, 0);
    if doc.get(at) != Some(&b'{') {
        return None;
    }
    at = skip_ws(doc, at + 1);
    if doc.get(at) == Some(&b'}') {
        return closed(doc, at + 1);
    }
    loop {
        if doc.get(at) != Some(&b'"') {
            return None;
        }
        let key_end = string_end(doc, at)?;
        let key = &doc[at + 1..key_end - 1];
        at = skip_ws(doc, key_end);
        if doc.get(at) != Some(&b':') {
            return None;
        }
        let start = skip_ws(doc, at + 1);
        let end = value_end(doc, start)?;
        visit(key, &doc[start..end]);
        at = skip_ws(doc, end);
        match doc.get(at) {
            Some(b',') => at = skip_ws(doc, at + 1),
            Some(b'}') => return closed(doc, at + 1),
            _ => return None,
        }
    }
}

/// Nothing but whitespace after `at`.
fn closed(doc: &[u8], at: usize) -> Option<()> {
    (skip_ws(doc, at) == doc.len()).then_some(())
}

fn skip_ws(doc: &[u8], mut at: usize) -> usize {
    while let Some(b' ' | b'\t' | b'\n' | b'\r') = doc.get(at) {
        at += 1;
    }
    at
}

/// Just past the closing quote of the string that opens at `at`.
fn string_end(doc: &[u8], at: usize) -> Option<usize> {
    let mut i = at + 1;
    loop {
        i += memchr::memchr2(b'"', b'\\', doc.get(i..)?)?;
        if doc[i] == b'"' {
            return Some(i + 1);
        }
        // An escape: whatever follows the backslash is not a closing quote.
        i += 2;
    }
}

/// Just past the value that starts at `at`.
fn value_end(doc: &[u8], at: usize) -> Option<usize> {
    match *doc.get(at)? {
        b'"' => string_end(doc, at),
        b'{' | b'[' => {
            let mut depth = 0usize;
            let mut i = at;
            while let Some(&b) = doc.get(i) {
                match b {
                    b'"' => {
                        i = string_end(doc, i)?;
                        continue;
                    }
                    b'{' | b'[' => depth += 1,
                    b'}' | b']' => {
                        depth -= 1;
                        if depth == 0 {
                            return Some(i + 1);
                        }
                    }
                    _ => {}
                }
                i += 1;
            }
            None
        }
        // A number, true, false or null: up to the next delimiter.
        _ => {
            let len = doc[at..]
                .iter()
                .position(|b| matches!(b, b',' | b'}' | b']' | b' ' | b'\t' | b'\n' | b'\r'))
                .unwrap_or(doc.len() - at);
            (len > 0).then_some(at + len)
        }
    }
}

#[cfg(test)]
mod tests {
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
    fn the_last_duplicate_wins_and_escaped_keys_match_nothing() {
        let doc = br#"{"stream":false,"mod\u0065l":"x","stream":true}"#;
        assert_eq!(
            fields(doc, ["stream", "model"]),
            Some([Some(&b"true"[..]), None])
        );
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
            let parsed: serde_json::Map<String, serde_json::Value> =
                serde_json::from_str(doc).unwrap();
            let skimmed = keys(doc).unwrap();
            assert_eq!(skimmed.len(), parsed.len());
            for (k, v) in skimmed {
                let v: serde_json::Value = serde_json::from_str(&v).unwrap();
                assert_eq!(parsed[&k], v, "{k}");
            }
        }
    }
}
