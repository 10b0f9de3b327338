//! What reading a body's few fields costs: the request's `model`, `stream`
//! and `max_tokens`, and the response's `usage` (JSON and SSE), the scans
//! levee runs on every request. Parsing the same documents whole with
//! `serde_json` runs in the same process as the yardstick, so the ratio
//! means something on a noisy machine.
//!
//! `cargo bench -p levee --bench scan` (add `-- --quick` for a short run).

#![allow(missing_docs)] // criterion's macros generate undocumented items

use criterion::{Criterion, criterion_group, criterion_main};
use levee::gateway::encoding::{Coding, Decoder};
use levee::limits::usage::UsageScan;
use levee_exchange::json_fields;
use std::hint::black_box;

const REQUEST: &str = r#"{"model":"claude-sonnet-4-5","max_tokens":1024,"messages":[{"role":"user","content":"Summarize the following text in three bullet points: The quick brown fox jumps over the lazy dog. It was a sunny day and the fox was feeling energetic."}],"stream":false}"#;

/// An answer shaped like the API's: `usage` last.
const ANSWER: &str = r#"{"id":"msg_01XFDUDYJgAACzvnptvVoYEL","type":"message","role":"assistant","model":"claude-sonnet-4-5","content":[{"type":"text","text":"Here are three bullet points:\n\n- A quick brown fox jumps over a lazy dog.\n- The day was sunny.\n- The fox felt energetic."}],"stop_reason":"end_turn","stop_sequence":null,"usage":{"input_tokens":42,"cache_creation_input_tokens":0,"cache_read_input_tokens":0,"output_tokens":31,"service_tier":"standard"}}"#;

/// The same answer with `usage` first: the scan cannot start from the end.
const ANSWER_USAGE_FIRST: &str = r#"{"usage":{"input_tokens":42,"cache_creation_input_tokens":0,"cache_read_input_tokens":0,"output_tokens":31,"service_tier":"standard"},"id":"msg_01XFDUDYJgAACzvnptvVoYEL","type":"message","role":"assistant","model":"claude-sonnet-4-5","content":[{"type":"text","text":"Here are three bullet points:\n\n- A quick brown fox jumps over a lazy dog.\n- The day was sunny.\n- The fox felt energetic."}],"stop_reason":"end_turn","stop_sequence":null}"#;

fn stream() -> String {
    let mut s = String::from(
        "event: message_start\ndata: {\"type\":\"message_start\",\"message\":{\"id\":\"msg_1\",\"type\":\"message\",\"role\":\"assistant\",\"model\":\"claude-sonnet-4-5\",\"content\":[],\"stop_reason\":null,\"stop_sequence\":null,\"usage\":{\"input_tokens\":42,\"output_tokens\":1}}}\n\n\
         event: content_block_start\ndata: {\"type\":\"content_block_start\",\"index\":0,\"content_block\":{\"type\":\"text\",\"text\":\"\"}}\n\n",
    );
    for word in [
        "Here ", "are ", "three ", "bullet ", "points ", "about ", "a ", "fox.",
    ] {
        s.push_str(&format!(
            "event: content_block_delta\ndata: {{\"type\":\"content_block_delta\",\"index\":0,\"delta\":{{\"type\":\"text_delta\",\"text\":\"{word}\"}}}}\n\n"
        ));
    }
    s.push_str(
        "event: content_block_stop\ndata: {\"type\":\"content_block_stop\",\"index\":0}\n\n\
         event: message_delta\ndata: {\"type\":\"message_delta\",\"delta\":{\"stop_reason\":\"end_turn\",\"stop_sequence\":null},\"usage\":{\"output_tokens\":31}}\n\n\
         event: message_stop\ndata: {\"type\":\"message_stop\"}\n\n",
    );
    s
}

fn usage_of(body: &[u8], sse: bool) -> levee::limits::Usage {
    let mut scan = UsageScan::new(sse);
    scan.feed(body);
    scan.usage()
}

fn bench(c: &mut Criterion) {
    let mut g = c.benchmark_group("scan");
    g.bench_function("request fields", |b| {
        b.iter(|| {
            json_fields::fields(
                black_box(REQUEST.as_bytes()),
                ["model", "stream", "max_tokens"],
            )
            .map(|f| f.map(|v| v.map(<[u8]>::len)))
        })
    });
    g.bench_function("request, serde_json whole (yardstick)", |b| {
        b.iter(|| serde_json::from_slice::<serde_json::Value>(black_box(REQUEST.as_bytes())).ok())
    });
    g.bench_function("answer usage", |b| {
        b.iter(|| usage_of(black_box(ANSWER.as_bytes()), false))
    });
    g.bench_function("answer usage, usage first", |b| {
        b.iter(|| usage_of(black_box(ANSWER_USAGE_FIRST.as_bytes()), false))
    });
    let long = ANSWER.replace(
        "The fox felt energetic.",
        &"The fox felt energetic. ".repeat(160),
    );
    g.bench_function("answer usage, 4 KiB of text", |b| {
        b.iter(|| usage_of(black_box(long.as_bytes()), false))
    });
    g.bench_function("answer, serde_json whole (yardstick)", |b| {
        b.iter(|| serde_json::from_slice::<serde_json::Value>(black_box(ANSWER.as_bytes())).ok())
    });
    let sse = stream();
    g.bench_function("stream usage", |b| {
        b.iter(|| usage_of(black_box(sse.as_bytes()), true))
    });
    // A gzipped answer: decoding the copy levee reads, then the same scan.
    let gzipped = {
        use std::io::Write as _;
        let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
        e.write_all(ANSWER.as_bytes()).unwrap();
        e.finish().unwrap()
    };
    g.bench_function("answer usage, gzipped", |b| {
        b.iter(|| {
            let mut d = Decoder::new(Coding::Gzip);
            let mut scan = UsageScan::new(false);
            scan.feed(&d.feed(black_box(&gzipped)));
            scan.usage()
        })
    });
    // The input estimate: a text request (no base64: one memmem pass),
    // and one with a 200 KB image (a streaming walk of the body).
    g.bench_function("estimate, text request", |b| {
        b.iter(|| levee_exchange::estimate::input_tokens(black_box(REQUEST.as_bytes())))
    });
    let image = {
        let data: String =
            std::iter::repeat_n("iVBORw0KGgoAAAANSUhEUgAABAAAAAMACAYAAAA", 6_000).collect();
        format!(
            r#"{{"model":"m","max_tokens":8,"messages":[{{"role":"user","content":[{{"type":"image","source":{{"type":"base64","media_type":"image/png","data":"{data}"}}}}]}}]}}"#
        )
    };
    g.bench_function("estimate, 200 KB image", |b| {
        b.iter(|| levee_exchange::estimate::input_tokens(black_box(image.as_bytes())))
    });
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
