//! Input tokens, estimated before the request is sent.
//!
//! Text is one token per four bytes of body, as before: JSON syntax and
//! field names inflate it, non-Latin scripts deflate it, and the response's
//! `usage` corrects the limiter either way. Base64 payloads are never
//! counted as text: the API does not read them as text, and a phone photo
//! would otherwise look like 50,000 tokens. Each `{"type": "base64",
//! "media_type": …, "data": …}` source is charged by the API's own rule
//! instead:
//!
//! - an image by its pixel dimensions, read from its header (PNG, GIF, WebP,
//!   JPEG) without decoding the image: `width × height / 750`, after the
//!   API's resize to at most 1,568 px on the long edge and about 1,600
//!   tokens; an image whose size cannot be read counts as that cap;
//! - a PDF by its page count ([`PDF_TOKENS_PER_PAGE`] each: the text, and
//!   the page's image);
//! - anything else by its decoded size, a quarter of it.
//!
//! Bodies without `base64` take the fast path: nothing is parsed.

use serde::de::{DeserializeSeed, Deserializer, MapAccess, SeqAccess, Visitor};
use std::borrow::Cow;
use std::fmt;

mod media;

use media::media_tokens;
pub use media::{IMAGE_MAX_EDGE, IMAGE_MAX_TOKENS, PDF_TOKENS_PER_PAGE, image_size, image_tokens};

/// The estimate for a request body.
pub fn input_tokens(body: &[u8]) -> u32 {
    let quarter = |n: usize| u64::try_from(n.div_ceil(4)).unwrap_or(u64::MAX);
    let tokens = match memchr::memmem::find(body, b"base64") {
        None => quarter(body.len()),
        Some(_) => match walk(body) {
            Some(w) => quarter(body.len().saturating_sub(w.base64_bytes)) + w.media_tokens,
            None => quarter(body.len()),
        },
    };
    u32::try_from(tokens).unwrap_or(u32::MAX)
}

/// What a walk over the body found.
#[derive(Debug, Default)]
struct Found {
    /// Bytes of base64 payload in the body (not counted as text).
    base64_bytes: usize,
    /// What those payloads cost by the API's rules.
    media_tokens: u64,
}

/// Walks the JSON body; `None` when it is not JSON (or nests beyond
/// serde_json's limit), and the plain estimate stands.
fn walk(body: &[u8]) -> Option<Found> {
    let mut found = Found::default();
    let mut de = serde_json::Deserializer::from_slice(body);
    Node(&mut found).deserialize(&mut de).ok()?;
    Some(found)
}

/// A JSON string, borrowed from the body when it has no escapes.
type Str<'de> = Cow<'de, str>;

/// Any JSON value, walked for base64 sources.
struct Node<'w>(&'w mut Found);

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
        Ok(())
    }
    fn visit_i64<E>(self, _: i64) -> Result<(), E> {
        Ok(())
    }
    fn visit_u64<E>(self, _: u64) -> Result<(), E> {
        Ok(())
    }
    fn visit_f64<E>(self, _: f64) -> Result<(), E> {
        Ok(())
    }
    fn visit_str<E>(self, _: &str) -> Result<(), E> {
        Ok(())
    }
    fn visit_unit<E>(self) -> Result<(), E> {
        Ok(())
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<(), A::Error> {
        while seq.next_element_seed(Node(self.0))?.is_some() {}
        Ok(())
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<(), A::Error> {
        let (mut kind, mut media_type, mut data) = (None, None, None);
        while let Some(key) = map.next_key_seed(Text)? {
            let slot = match key.as_deref() {
                Some("type") => &mut kind,
                Some("media_type") => &mut media_type,
                Some("data") => &mut data,
                _ => {
                    map.next_value_seed(Node(self.0))?;
                    continue;
                }
            };
            *slot = map.next_value_seed(Field(self.0))?;
        }
        if let (Some("base64"), Some(data)) = (kind.as_deref(), data) {
            self.0.base64_bytes += data.len();
            let cost = media_tokens(media_type.as_deref().unwrap_or(""), &data);
            self.0.media_tokens = self.0.media_tokens.saturating_add(cost);
        }
        Ok(())
    }
}

/// A member's value: its text when it is a string, else walked.
struct Field<'w>(&'w mut Found);

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
        Ok(None)
    }
    fn visit_i64<E>(self, _: i64) -> Result<Self::Value, E> {
        Ok(None)
    }
    fn visit_u64<E>(self, _: u64) -> Result<Self::Value, E> {
        Ok(None)
    }
    fn visit_f64<E>(self, _: f64) -> Result<Self::Value, E> {
        Ok(None)
    }
    fn visit_unit<E>(self) -> Result<Self::Value, E> {
        Ok(None)
    }
    fn visit_seq<A: SeqAccess<'de>>(self, seq: A) -> Result<Self::Value, A::Error> {
        Node(self.0).visit_seq(seq).map(|()| None)
    }
    fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<Self::Value, A::Error> {
        Node(self.0).visit_map(map).map(|()| None)
    }
}

/// A key, as text (keys are always strings).
struct Text;

impl<'de> DeserializeSeed<'de> for Text {
    type Value = Option<Str<'de>>;
    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<Self::Value, D::Error> {
        d.deserialize_str(Field(&mut Found::default()))
    }
}

#[cfg(test)]
mod tests;
