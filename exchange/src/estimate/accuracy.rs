//! The estimator measured on a set of shaped requests against the API's
//! own counts where its documentation gives them, and its documented rules
//! elsewhere. Run with `--nocapture` for the table of errors.

use super::*;
use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use serde_json::{Value, json};

/// One shaped request, what the API counts for it, and how far the
/// estimate may stray from that (as a ratio).
struct Shape {
    name: &'static str,
    body: Value,
    reference: u64,
    /// Where the reference comes from.
    source: &'static str,
    within: (f64, f64),
}

/// The documented rule for English text: 3.5 characters a token.
fn rule_text(chars: usize) -> u64 {
    (chars as u64 * 2).div_ceil(7)
}

const PROSE: &str = "Rate limits protect the API from bursts. A client that sends more than its tier allows is answered with 429 and a retry-after header; a gateway that paces requests before they leave avoids most of those answers. ";

const CODE: &str = "fn settle(&mut self, grant: Grant, usage: Usage) -> Result<(), Error> {\n    let cost = usage.actual(grant.kind, grant.amount);\n    if let Some(bucket) = self.buckets.get_mut(&grant.lane) {\n        bucket.refund(grant.amount.saturating_sub(cost));\n    }\n    Ok(())\n}\n";

fn repeat(s: &str, at_least: usize) -> String {
    s.repeat(at_least.div_ceil(s.len()))
}

fn png(w: u32, h: u32) -> String {
    let mut b = b"\x89PNG\r\n\x1a\n\0\0\0\x0dIHDR".to_vec();
    b.extend_from_slice(&w.to_be_bytes());
    b.extend_from_slice(&h.to_be_bytes());
    b.extend_from_slice(&[8, 6, 0, 0, 0]);
    b.extend((0..(w * h / 8) as usize).map(|i| (i * 7919 % 251) as u8));
    STANDARD.encode(b)
}

fn pdf(pages: usize) -> String {
    let mut b =
        format!("%PDF-1.7\n2 0 obj << /Type /Pages /Count {pages} >> endobj\n").into_bytes();
    for i in 0..pages {
        b.extend_from_slice(format!("{} 0 obj << /Type /Page >> endobj\n", i + 3).as_bytes());
        b.extend(std::iter::repeat_n(b'x', 50_000));
    }
    STANDARD.encode(b)
}

fn weather_tool() -> Value {
    json!({
        "name": "get_weather",
        "description": "Get the current weather in a given location",
        "input_schema": {
            "type": "object",
            "properties": {"location": {"type": "string", "description": "The city and state, e.g. San Francisco, CA"}},
            "required": ["location"],
        },
    })
}

fn shapes() -> Vec<Shape> {
    let prose = repeat(PROSE, 4000);
    let code = repeat(CODE, 4000);
    let user = |content: Value| json!({"model": "claude-sonnet-4-5", "max_tokens": 1024, "messages": [{"role": "user", "content": content}]});
    let image = |w: u32, h: u32| {
        user(json!([
            {"type": "image", "source": {"type": "base64", "media_type": "image/png", "data": png(w, h)}},
            {"type": "text", "text": "What is in this image?"},
        ]))
    };
    let question = rule_text("What is in this image?".len()) + MESSAGE_TOKENS;
    let result = r#"{"temperature": 18, "unit": "celsius", "conditions": "fog"}"#;
    let tool_input = r#"{"location":"San Francisco, CA"}"#;
    vec![
        // MESSAGE_TOKENS is fitted to this one.
        Shape {
            name: "system and one message",
            body: json!({"model": "claude-opus-4-1", "max_tokens": 1024, "system": "You are a scientist", "messages": [{"role": "user", "content": "Hello, Claude"}]}),
            reference: 14,
            source: "the API's count (token-counting docs)",
            within: (0.9, 1.1),
        },
        Shape {
            name: "one tool and one message",
            body: json!({"model": "claude-sonnet-4-5", "max_tokens": 1024, "tools": [weather_tool()], "messages": [{"role": "user", "content": "What's the weather like in San Francisco?"}]}),
            reference: 403,
            source: "the API's count (token-counting docs)",
            within: (0.9, 1.1),
        },
        Shape {
            name: "prose, 4 KB",
            body: user(json!(prose)),
            reference: rule_text(prose.len()) + MESSAGE_TOKENS,
            source: "3.5 characters a token",
            within: (0.99, 1.01),
        },
        Shape {
            name: "code, 4 KB",
            body: user(json!(code)),
            reference: rule_text(code.len()) + MESSAGE_TOKENS,
            source: "3.5 characters a token",
            within: (0.99, 1.01),
        },
        Shape {
            name: "tool use and its result",
            body: json!({"model": "claude-sonnet-4-5", "max_tokens": 1024, "tools": [weather_tool()], "messages": [
                {"role": "user", "content": "What's the weather like in San Francisco?"},
                {"role": "assistant", "content": [{"type": "tool_use", "id": "toolu_01", "name": "get_weather", "input": {"location": "San Francisco, CA"}}]},
                {"role": "user", "content": [{"type": "tool_result", "tool_use_id": "toolu_01", "content": result}]},
            ]}),
            // The docs' 403 for the tool and question, then the call and
            // its result by the text rule, with two more messages.
            reference: 403
                + rule_text("get_weather".len() + tool_input.len() + result.len())
                + 2 * MESSAGE_TOKENS,
            source: "403, plus 3.5 characters a token",
            within: (0.9, 1.15),
        },
        Shape {
            name: "image 200 x 200",
            body: image(200, 200),
            reference: 200 * 200 / 750 + question,
            source: "width x height / 750",
            within: (0.95, 1.05),
        },
        Shape {
            name: "image 1000 x 1000",
            body: image(1000, 1000),
            reference: 1334 + question,
            source: "width x height / 750",
            within: (0.95, 1.05),
        },
        Shape {
            name: "image 4032 x 3024 (resized)",
            body: image(4032, 3024),
            // The docs' largest 4:3 size that stays under about 1,600
            // tokens: 1268 x 951.
            reference: 1268 * 951 / 750 + question,
            source: "resized to 1268 x 951, then width x height / 750",
            within: (0.95, 1.05),
        },
        Shape {
            name: "PDF, 8 pages",
            body: user(json!([
                {"type": "document", "source": {"type": "base64", "media_type": "application/pdf", "data": pdf(8)}},
                {"type": "text", "text": "Summarise."},
            ])),
            // The middle of the documented 1,500 to 3,000 a page: levee
            // charges the top, so it never admits more than fits.
            reference: 8 * 2250,
            source: "1,500 to 3,000 a page",
            within: (1.0, 1.4),
        },
    ]
}

#[test]
fn the_estimator_stays_near_the_apis_counts_on_every_shape() {
    println!(
        "{:<30} {:>9} {:>9} {:>7} {:>11}  reference",
        "shape", "estimate", "reference", "error", "bytes/4"
    );
    let mut misses = Vec::new();
    for shape in shapes() {
        let body = shape.body.to_string();
        let est = u64::from(input_tokens(body.as_bytes()));
        let ratio = est as f64 / shape.reference as f64;
        // A token per four bytes of body: levee's estimate of text before
        // it read the structure (base64 payloads aside), for comparison.
        let quarter = body.len() as u64 / 4;
        let quarter_ratio = quarter as f64 / shape.reference as f64;
        println!(
            "{:<30} {est:>9} {:>9} {:>+6.0}% {:>+10.0}%  {}",
            shape.name,
            shape.reference,
            (ratio - 1.0) * 100.0,
            (quarter_ratio - 1.0) * 100.0,
            shape.source
        );
        if !(shape.within.0..=shape.within.1).contains(&ratio) {
            misses.push(format!("{}: {est} against {}", shape.name, shape.reference));
        }
    }
    assert!(misses.is_empty(), "{misses:?}");
}
