//! The token usage a response reports, for reconciliation.
//!
//! - JSON: the body's `usage` (the body is kept up to [`MAX_JSON`]).
//! - SSE: `message_start` holds `usage.input_tokens` (and the cache
//!   fields), `message_delta` the cumulative `usage.output_tokens`. A stream
//!   cut before any `message_delta` still charges one output token per
//!   `content_block_delta` seen, a lower bound of what was produced.

use super::Usage;
use levee_exchange::json_fields::{self, LastMember};
use std::sync::LazyLock;

/// The most of a JSON body kept to find its `usage`.
pub const MAX_JSON: usize = 4 << 20;

/// The `usage` member of a JSON object's top level: read from the end when
/// it is the last member, as in the API's answers, else by walking the
/// object.
fn usage_of(object: &[u8]) -> Option<Usage> {
    static LAST: LazyLock<LastMember> = LazyLock::new(|| LastMember::new("usage"));
    let raw = match LAST.find(object) {
        Some(raw) => raw,
        None => json_fields::fields(object, ["usage"])?[0]?,
    };
    parse_usage(raw)
}

/// A `usage` object, each count apart. OpenAI's format (chat
/// completions) says `prompt_tokens` and `completion_tokens`.
fn parse_usage(raw: &[u8]) -> Option<Usage> {
    let [input, cache_write, cache_read, output, prompt, completion] = json_fields::fields(
        raw,
        [
            "input_tokens",
            "cache_creation_input_tokens",
            "cache_read_input_tokens",
            "output_tokens",
            "prompt_tokens",
            "completion_tokens",
        ],
    )?;
    let count = |v: Option<&[u8]>| std::str::from_utf8(v?).ok()?.parse::<u64>().ok();
    Some(Usage {
        input: count(input).or_else(|| count(prompt)),
        cache_write: count(cache_write),
        cache_read: count(cache_read),
        output: count(output).or_else(|| count(completion)),
    })
}

/// Watches a response body for its usage.
#[derive(Default)]
pub struct UsageScan {
    sse: bool,
    /// The unfinished line (SSE) or the body so far (JSON).
    buf: Vec<u8>,
    too_long: bool,
    usage: Usage,
    deltas: u64,
}

impl UsageScan {
    /// A scan of an SSE body, or of a JSON one.
    pub fn new(sse: bool) -> UsageScan {
        UsageScan {
            sse,
            ..UsageScan::default()
        }
    }

    /// Takes the next bytes of the body.
    pub fn feed(&mut self, data: &[u8]) {
        if !self.sse {
            if self.buf.len() + data.len() > MAX_JSON {
                self.too_long = true;
                self.buf = Vec::new();
            } else if !self.too_long {
                self.buf.extend_from_slice(data);
            }
            return;
        }
        let mut rest = data;
        while let Some(nl) = rest.iter().position(|&b| b == b'\n') {
            if self.buf.is_empty() {
                self.line(&rest[..nl]);
            } else {
                self.buf.extend_from_slice(&rest[..nl]);
                let line = std::mem::take(&mut self.buf);
                self.line(&line);
            }
            rest = &rest[nl + 1..];
        }
        if self.buf.len() + rest.len() <= MAX_JSON {
            self.buf.extend_from_slice(rest);
        }
    }

    /// The usage seen so far (call when the body ended, however it ended).
    pub fn usage(&self) -> Usage {
        if !self.sse {
            if self.too_long {
                return Usage::default();
            }
            return usage_of(&self.buf).unwrap_or_default();
        }
        let mut u = self.usage;
        if u.input.is_some() || self.deltas > 0 {
            u.output = Some(u.output.unwrap_or(0).max(self.deltas));
        }
        u
    }

    fn line(&mut self, line: &[u8]) {
        let line = line.strip_suffix(b"\r").unwrap_or(line);
        let Some(data) = line.strip_prefix(b"data:") else {
            return;
        };
        let Some([kind, message, usage]) = json_fields::fields(data, ["type", "message", "usage"])
        else {
            return;
        };
        match kind {
            Some(br#""message_start""#) => {
                if let Some(u) = message.and_then(usage_of) {
                    self.usage = u;
                }
            }
            // Cumulative counts: each one given replaces the last.
            Some(br#""message_delta""#) => {
                if let Some(u) = usage.and_then(parse_usage) {
                    let was = self.usage;
                    self.usage = Usage {
                        input: u.input.or(was.input),
                        cache_write: u.cache_write.or(was.cache_write),
                        cache_read: u.cache_read.or(was.cache_read),
                        output: u.output.or(was.output),
                    };
                }
            }
            Some(br#""content_block_delta""#) => self.deltas += 1,
            // OpenAI's chunks have no `type`; the last one (with
            // `stream_options.include_usage`) carries the whole usage.
            None => {
                if let Some(u) = usage.and_then(parse_usage) {
                    self.usage = u;
                }
            }
            _ => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn json_usage_keeps_each_count_and_limits_cache_writes_but_not_reads() {
        let mut s = UsageScan::new(false);
        let body = br#"{"id":"m","usage":{"input_tokens":10,"cache_creation_input_tokens":5,"cache_read_input_tokens":100,"output_tokens":7}}"#;
        s.feed(&body[..20]);
        s.feed(&body[20..]);
        assert_eq!(
            s.usage(),
            Usage {
                input: Some(10),
                cache_write: Some(5),
                cache_read: Some(100),
                output: Some(7)
            }
        );
        assert_eq!(
            s.usage().limited_input(),
            Some(15),
            "writes count, reads do not"
        );
        assert_eq!(
            s.usage().limited_as(true).limited_input(),
            Some(115),
            "where the class's limits count reads, they count"
        );
        assert_eq!(s.usage().limited_as(false), s.usage());
        // A `usage` inside the content is the model's, not the bill.
        let mut nested = UsageScan::new(false);
        nested.feed(br#"{"content":[{"type":"tool_use","input":{"usage":{"input_tokens":999}}}],"usage":{"input_tokens":4,"output_tokens":2}}"#);
        assert_eq!(
            nested.usage(),
            Usage {
                input: Some(4),
                output: Some(2),
                ..Usage::default()
            }
        );
        let mut bad = UsageScan::new(false);
        bad.feed(b"{not json");
        assert_eq!(bad.usage(), Usage::default());
    }

    #[test]
    fn sse_usage_follows_message_start_and_delta_across_chunks() {
        let stream = "event: message_start\ndata: {\"type\":\"message_start\",\"message\":{\"usage\":{\"input_tokens\":25,\"output_tokens\":1}}}\n\n\
            event: content_block_delta\ndata: {\"type\":\"content_block_delta\",\"delta\":{}}\n\n\
            event: message_delta\ndata: {\"type\":\"message_delta\",\"usage\":{\"output_tokens\":42}}\n\n";
        let mut s = UsageScan::new(true);
        for chunk in stream.as_bytes().chunks(7) {
            s.feed(chunk);
        }
        assert_eq!(
            s.usage(),
            Usage {
                input: Some(25),
                output: Some(42),
                ..Usage::default()
            }
        );
    }

    #[test]
    fn openai_usage_is_read_from_the_body_and_from_the_streams_usage_chunk() {
        let mut json = UsageScan::new(false);
        json.feed(br#"{"id":"c","object":"chat.completion","choices":[],"usage":{"prompt_tokens":11,"completion_tokens":9,"total_tokens":20}}"#);
        let want = Usage {
            input: Some(11),
            output: Some(9),
            ..Usage::default()
        };
        assert_eq!(json.usage(), want);
        let mut sse = UsageScan::new(true);
        sse.feed(b"data: {\"object\":\"chat.completion.chunk\",\"choices\":[{\"delta\":{\"content\":\"hi\"}}],\"usage\":null}\n\n");
        assert_eq!(sse.usage(), Usage::default(), "a null usage is no usage");
        sse.feed(b"data: {\"object\":\"chat.completion.chunk\",\"choices\":[],\"usage\":{\"prompt_tokens\":11,\"completion_tokens\":9}}\n\ndata: [DONE]\n\n");
        assert_eq!(sse.usage(), want);
    }

    #[test]
    fn a_streams_cache_counts_come_from_message_start_and_the_delta_updates_them() {
        let mut s = UsageScan::new(true);
        s.feed(b"data: {\"type\":\"message_start\",\"message\":{\"usage\":{\"input_tokens\":3,\"cache_creation_input_tokens\":2000,\"cache_read_input_tokens\":0,\"output_tokens\":1}}}\n\n");
        s.feed(b"data: {\"type\":\"message_delta\",\"usage\":{\"cache_read_input_tokens\":500,\"output_tokens\":9}}\n\n");
        assert_eq!(
            s.usage(),
            Usage {
                input: Some(3),
                cache_write: Some(2000),
                cache_read: Some(500),
                output: Some(9),
            }
        );
    }

    #[test]
    fn a_cut_stream_charges_the_deltas_it_produced() {
        let mut s = UsageScan::new(true);
        s.feed(b"data: {\"type\":\"message_start\",\"message\":{\"usage\":{\"input_tokens\":3,\"output_tokens\":1}}}\n\n");
        for _ in 0..5 {
            s.feed(b"data: {\"type\":\"content_block_delta\"}\n\n");
        }
        assert_eq!(
            s.usage(),
            Usage {
                input: Some(3),
                output: Some(5),
                ..Usage::default()
            }
        );
        assert_eq!(UsageScan::new(true).usage(), Usage::default());
    }
}
