//! Input tokens, estimated before the request is sent, from what the model
//! reads: the request's structure, not its bytes.
//!
//! - **Text** the model reads (the system prompt, message text, tool names
//!   and descriptions, tool results, thinking, a plain-text document's
//!   data) counts by the API's documented rule of thumb, about 3.5
//!   characters of English a token ([`ASCII_PER_TOKEN`]); a character
//!   outside ASCII counts a token of its own (CJK text is about one a
//!   character; other scripts are over-counted, the safe side).
//! - **JSON the model reads** (a tool's `input_schema` or `parameters`, a
//!   `tool_use`'s `input`) counts as text, keys and punctuation included.
//! - **The envelope** (`model`, `max_tokens`, `role`, block types, ids,
//!   metadata) is not read as text and counts nothing; each message adds
//!   [`MESSAGE_TOKENS`] for its turn markers, and tools add the API's
//!   documented tool-use system prompt ([`TOOL_PROMPT_TOKENS`]).
//! - **Base64 payloads** are never text: each `{"type": "base64",
//!   "media_type": …, "data": …}` source, and each `data:` URL, is charged
//!   by the API's own rule (`media.rs`): an image by its pixel size, read
//!   from its header; a PDF by its pages; anything else by a quarter of
//!   its decoded size.
//!
//! A body that is not JSON counts a token per four bytes. The response's
//! `usage` corrects the limiter either way; `tests.rs` keeps the set of
//! shaped requests the rules are measured on, with their error.

use serde::de::{DeserializeSeed, Deserializer, IgnoredAny, MapAccess, SeqAccess, Visitor};
use std::borrow::Cow;
use std::fmt;

mod media;

use media::media_tokens;
pub use media::{IMAGE_MAX_EDGE, IMAGE_MAX_TOKENS, PDF_TOKENS_PER_PAGE, image_size, image_tokens};

/// English characters a token, by the API's documentation (its glossary:
/// "approximately 3.5 English characters"), as a ratio: 7 per 2.
pub const ASCII_PER_TOKEN: (u64, u64) = (7, 2);
/// A message's turn markers, tokens. The API counts the documented example
/// of a system prompt and one message ("You are a scientist", "Hello,
/// Claude") as 14 tokens: 10 of text, and these.
pub const MESSAGE_TOKENS: u64 = 4;
/// The system prompt the API adds when a request has tools, tokens: its
/// documented size for current models (`tool_choice` auto or none).
pub const TOOL_PROMPT_TOKENS: u64 = 346;

/// Members whose string value is text the model reads.
const TEXT_KEYS: [&str; 10] = [
    "text",
    "system",
    "content",
    "description",
    "name",
    "thinking",
    "title",
    "context",
    "arguments",
    "prompt",
];
/// Envelope members that never hold what the model reads: skipped without
/// parsing their strings.
const SKIP_KEYS: [&str; 14] = [
    "model",
    "max_tokens",
    "max_completion_tokens",
    "stream",
    "temperature",
    "top_p",
    "top_k",
    "stop_sequences",
    "metadata",
    "id",
    "tool_use_id",
    "signature",
    "cache_control",
    "service_tier",
];
/// Members whose value is JSON the model reads whole.
const JSON_KEYS: [&str; 3] = ["input_schema", "parameters", "input"];

/// The estimate for a request body.
pub fn input_tokens(body: &[u8]) -> u32 {
    let tokens = match walk(body) {
        Some(found) => found.tokens(),
        None => u64::try_from(body.len().div_ceil(4)).unwrap_or(u64::MAX),
    };
    u32::try_from(tokens).unwrap_or(u32::MAX)
}

/// What a walk over the body found.
#[derive(Debug, Default)]
struct Found {
    /// ASCII characters of text.
    ascii: u64,
    /// Other characters of text.
    wide: u64,
    /// What base64 payloads cost by the API's rules.
    media_tokens: u64,
    /// Messages (members with a `role`).
    messages: u64,
    /// Whether the request defines tools.
    tools: bool,
}

impl Found {
    fn tokens(&self) -> u64 {
        let (chars, per) = ASCII_PER_TOKEN;
        let text = (self.ascii.saturating_mul(per)).div_ceil(chars);
        let tools = if self.tools { TOOL_PROMPT_TOKENS } else { 0 };
        text.saturating_add(self.wide)
            .saturating_add(self.media_tokens)
            .saturating_add(self.messages.saturating_mul(MESSAGE_TOKENS))
            .saturating_add(tools)
    }

    /// Counts `s` as text, plus `extra` ASCII characters (quotes, commas).
    fn text(&mut self, s: &str, extra: u64) {
        let mut wide = 0;
        for &b in s.as_bytes() {
            // A character's first byte outside ASCII; continuation bytes
            // (0b10xx_xxxx) are not characters of their own.
            wide += u64::from(b >= 0xc0);
        }
        let ascii = s.bytes().filter(u8::is_ascii).count() as u64;
        self.ascii = self.ascii.saturating_add(ascii + extra);
        self.wide = self.wide.saturating_add(wide);
    }

    /// A `data:<media type>;base64,<data>` URL, charged as its payload.
    fn data_url(&mut self, url: &str) {
        let Some(rest) = url.strip_prefix("data:") else {
            return;
        };
        if let Some((media_type, data)) = rest.split_once(";base64,") {
            let cost = media_tokens(media_type, data);
            self.media_tokens = self.media_tokens.saturating_add(cost);
        }
    }
}

/// Walks the JSON body; `None` when it is not JSON (or nests beyond
/// serde_json's limit), and the plain estimate stands.
fn walk(body: &[u8]) -> Option<Found> {
    let mut found = Found::default();
    let mut de = serde_json::Deserializer::from_slice(body);
    Node(&mut found, Mode::Envelope).deserialize(&mut de).ok()?;
    Some(found)
}

/// How a value is read.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Mode {
    /// Structure around the text: its strings are not read.
    Envelope,
    /// A member whose string is text; an array or object there is
    /// envelope again (`"content": [blocks]`).
    Text,
    /// JSON the model reads: every key, string and value counts.
    Json,
}

/// A JSON string, borrowed from the body when it has no escapes.
type Str<'de> = Cow<'de, str>;

/// Any JSON value, walked in a mode.
struct Node<'w>(&'w mut Found, Mode);

impl<'de> DeserializeSeed<'de> for Node<'_> {
    type Value = ();
    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<(), D::Error> {
        d.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for Node<'_> {
    type Value = ();

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("any JSON value")
    }

    fn visit_bool<E>(self, _: bool) -> Result<(), E> {
        self.scalar();
        Ok(())
    }
    fn visit_i64<E>(self, _: i64) -> Result<(), E> {
        self.scalar();
        Ok(())
    }
    fn visit_u64<E>(self, _: u64) -> Result<(), E> {
        self.scalar();
        Ok(())
    }
    fn visit_f64<E>(self, _: f64) -> Result<(), E> {
        self.scalar();
        Ok(())
    }
    fn visit_unit<E>(self) -> Result<(), E> {
        self.scalar();
        Ok(())
    }
    fn visit_str<E>(self, v: &str) -> Result<(), E> {
        match self.1 {
            Mode::Envelope => {}
            Mode::Text => self.0.text(v, 0),
            Mode::Json => self.0.text(v, 3),
        }
        Ok(())
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<(), A::Error> {
        let mode = self.inner();
        while seq.next_element_seed(Node(self.0, mode))?.is_some() {}
        Ok(())
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<(), A::Error> {
        let Node(found, mode) = self;
        let mode = match mode {
            Mode::Text => Mode::Envelope,
            m => m,
        };
        let (mut kind, mut media_type, mut data) = (None, None, None);
        while let Some(key) = map.next_key_seed(Key)? {
            let key = key.as_deref().unwrap_or("");
            if mode == Mode::Json {
                found.text(key, 3);
            }
            let slot = match key {
                "type" => &mut kind,
                "media_type" => &mut media_type,
                "data" => &mut data,
                "url" if mode == Mode::Envelope => {
                    if let Some(url) = map.next_value_seed(Field(found, mode))? {
                        found.data_url(&url);
                    }
                    continue;
                }
                _ => {
                    let inner = match (mode, key) {
                        (Mode::Json, _) => Mode::Json,
                        (_, "role") => {
                            found.messages += 1;
                            map.next_value::<IgnoredAny>()?;
                            continue;
                        }
                        (_, k) if SKIP_KEYS.contains(&k) => {
                            map.next_value::<IgnoredAny>()?;
                            continue;
                        }
                        (_, k) if TEXT_KEYS.contains(&k) => Mode::Text,
                        (_, k) if JSON_KEYS.contains(&k) => {
                            found.tools |= k != "input";
                            Mode::Json
                        }
                        _ => Mode::Envelope,
                    };
                    map.next_value_seed(Node(found, inner))?;
                    continue;
                }
            };
            *slot = map.next_value_seed(Field(found, mode))?;
        }
        match (kind.as_deref(), data) {
            (Some("base64"), Some(data)) => {
                let cost = media_tokens(media_type.as_deref().unwrap_or(""), &data);
                found.media_tokens = found.media_tokens.saturating_add(cost);
            }
            // A plain-text document's data is text; in JSON the model
            // reads, every string is.
            (Some("text"), Some(data)) if mode == Mode::Envelope => found.text(&data, 0),
            (_, data) if mode == Mode::Json => {
                for s in [kind, media_type, data].iter().flatten() {
                    found.text(s, 3);
                }
            }
            _ => {}
        }
        Ok(())
    }
}

impl Node<'_> {
    /// A number, boolean or null: text only in JSON the model reads.
    fn scalar(self) {
        if self.1 == Mode::Json {
            self.0.ascii = self.0.ascii.saturating_add(4);
        }
    }

    /// The mode of an array's elements.
    fn inner(&self) -> Mode {
        match self.1 {
            Mode::Text => Mode::Text,
            m => m,
        }
    }
}

/// A member's value: its text when it is a string, else walked in `mode`.
struct Field<'w>(&'w mut Found, Mode);

impl<'de> DeserializeSeed<'de> for Field<'_> {
    type Value = Option<Str<'de>>;
    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<Self::Value, D::Error> {
        d.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for Field<'_> {
    type Value = Option<Str<'de>>;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("any JSON value")
    }

    fn visit_borrowed_str<E>(self, v: &'de str) -> Result<Self::Value, E> {
        Ok(Some(Cow::Borrowed(v)))
    }
    fn visit_str<E>(self, v: &str) -> Result<Self::Value, E> {
        Ok(Some(Cow::Owned(v.to_owned())))
    }
    fn visit_bool<E>(self, _: bool) -> Result<Self::Value, E> {
        Node(self.0, self.1).scalar();
        Ok(None)
    }
    fn visit_i64<E>(self, _: i64) -> Result<Self::Value, E> {
        Node(self.0, self.1).scalar();
        Ok(None)
    }
    fn visit_u64<E>(self, _: u64) -> Result<Self::Value, E> {
        Node(self.0, self.1).scalar();
        Ok(None)
    }
    fn visit_f64<E>(self, _: f64) -> Result<Self::Value, E> {
        Node(self.0, self.1).scalar();
        Ok(None)
    }
    fn visit_unit<E>(self) -> Result<Self::Value, E> {
        Node(self.0, self.1).scalar();
        Ok(None)
    }
    fn visit_seq<A: SeqAccess<'de>>(self, seq: A) -> Result<Self::Value, A::Error> {
        Node(self.0, self.1).visit_seq(seq).map(|()| None)
    }
    fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<Self::Value, A::Error> {
        Node(self.0, self.1).visit_map(map).map(|()| None)
    }
}

/// A key, as text (keys are always strings).
struct Key;

impl<'de> DeserializeSeed<'de> for Key {
    type Value = Option<Str<'de>>;
    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<Self::Value, D::Error> {
        d.deserialize_str(Field(&mut Found::default(), Mode::Envelope))
    }
}

#[cfg(test)]
mod accuracy;
#[cfg(test)]
mod tests;
