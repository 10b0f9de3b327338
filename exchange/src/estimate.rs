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

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use serde::de::{DeserializeSeed, Deserializer, MapAccess, SeqAccess, Visitor};
use std::borrow::Cow;
use std::fmt;

/// The API's long-edge limit before it resizes an image.
pub const IMAGE_MAX_EDGE: u64 = 1_568;
/// The most an image costs after the API's resize, tokens.
pub const IMAGE_MAX_TOKENS: u64 = 1_600;
/// What one PDF page costs: the API's documented range for a page's text
/// is 1,500 to 3,000 tokens, and each page is also seen as an image.
pub const PDF_TOKENS_PER_PAGE: u64 = 3_000;
/// How much of a JPEG is searched for its frame header (EXIF data may come
/// first).
const JPEG_SCAN_BYTES: usize = 1 << 20;

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

/// What a base64 payload of `media_type` costs.
fn media_tokens(media_type: &str, data: &str) -> u64 {
    let decoded_len = data.len() / 4 * 3;
    match media_type {
        "application/pdf" => pdf_pages(data).max(1).saturating_mul(PDF_TOKENS_PER_PAGE),
        t if t.starts_with("image/") => {
            let head = decode_prefix(data, JPEG_SCAN_BYTES);
            image_size(&head).map_or(IMAGE_MAX_TOKENS, |(w, h)| image_tokens(w, h))
        }
        _ => (decoded_len as u64).div_ceil(4),
    }
}

/// The API's rule: `width × height / 750`, after scaling down (keeping the
/// aspect ratio) to at most [`IMAGE_MAX_EDGE`] on the long edge and
/// [`IMAGE_MAX_TOKENS`] in all.
pub fn image_tokens(width: u64, height: u64) -> u64 {
    if width == 0 || height == 0 {
        return 0;
    }
    let (w, h) = (width as f64, height as f64);
    let by_edge = IMAGE_MAX_EDGE as f64 / w.max(h);
    let by_area = (IMAGE_MAX_TOKENS as f64 * 750.0 / (w * h)).sqrt();
    let scale = by_edge.min(by_area).min(1.0);
    let (w, h) = ((w * scale).floor().max(1.0), (h * scale).floor().max(1.0));
    ((w * h / 750.0).ceil() as u64).min(IMAGE_MAX_TOKENS)
}

/// The first `limit` bytes (about) that `data` decodes to; what decodes.
fn decode_prefix(data: &str, limit: usize) -> Vec<u8> {
    let chars = (limit.div_ceil(3) * 4).min(data.len() / 4 * 4);
    STANDARD
        .decode(&data.as_bytes()[..chars])
        .unwrap_or_default()
}

/// An image's `(width, height)` from its header: PNG, GIF, WebP or JPEG.
pub fn image_size(b: &[u8]) -> Option<(u64, u64)> {
    let be16 = |i: usize| {
        Some(u64::from(u16::from_be_bytes(
            b.get(i..i + 2)?.try_into().ok()?,
        )))
    };
    let le16 = |i: usize| {
        Some(u64::from(u16::from_le_bytes(
            b.get(i..i + 2)?.try_into().ok()?,
        )))
    };
    let be32 = |i: usize| {
        Some(u64::from(u32::from_be_bytes(
            b.get(i..i + 4)?.try_into().ok()?,
        )))
    };
    let le24 = |i: usize| {
        let s = b.get(i..i + 3)?;
        Some(u64::from(s[0]) | u64::from(s[1]) << 8 | u64::from(s[2]) << 16)
    };
    if b.starts_with(b"\x89PNG\r\n\x1a\n") && b.get(12..16) == Some(b"IHDR") {
        return Some((be32(16)?, be32(20)?));
    }
    if b.starts_with(b"GIF87a") || b.starts_with(b"GIF89a") {
        return Some((le16(6)?, le16(8)?));
    }
    if b.starts_with(b"RIFF") && b.get(8..12) == Some(b"WEBP") {
        return match b.get(12..16)? {
            b"VP8 " => Some((le16(26)? & 0x3fff, le16(28)? & 0x3fff)),
            b"VP8L" => {
                let bits = u32::from_le_bytes(b.get(21..25)?.try_into().ok()?);
                Some((
                    u64::from(bits & 0x3fff) + 1,
                    u64::from(bits >> 14 & 0x3fff) + 1,
                ))
            }
            b"VP8X" => Some((le24(24)? + 1, le24(27)? + 1)),
            _ => None,
        };
    }
    if b.starts_with(b"\xff\xd8") {
        // Segments until a start-of-frame marker, which holds the size.
        let mut i = 2;
        while i + 4 <= b.len() {
            if b[i] != 0xff {
                return None;
            }
            let marker = b[i + 1];
            if marker == 0xff {
                i += 1;
                continue;
            }
            let len = be16(i + 2)? as usize;
            let sof = matches!(marker, 0xc0..=0xcf) && !matches!(marker, 0xc4 | 0xc8 | 0xcc);
            if sof {
                return Some((be16(i + 7)?, be16(i + 5)?));
            }
            i += 2 + len;
        }
    }
    None
}

/// The pages of a base64 PDF: its `/Type /Page` objects, else the largest
/// `/Count` of a page tree; 0 when neither shows (compressed object
/// streams hide both).
fn pdf_pages(data: &str) -> u64 {
    // Decoded a window at a time, overlapping so that no name is split.
    const WINDOW: usize = 64 << 10;
    const OVERLAP: usize = 64;
    let bytes = data.as_bytes();
    let (mut pages, mut count, mut start) = (0u64, 0u64, 0usize);
    let mut carry: Vec<u8> = Vec::new();
    let whole = bytes.len() / 4 * 4;
    while start < whole {
        let end = (start + WINDOW).min(whole);
        let Ok(decoded) = STANDARD.decode(&bytes[start..end]) else {
            break;
        };
        let text = [carry.as_slice(), &decoded].concat();
        // The last window counted every name in the carry but one that
        // ended it (at the carry's last byte).
        let fresh = carry.len().saturating_sub(1);
        pages += page_objects(&text, fresh, end == whole);
        count = count.max(largest_count(&text));
        carry = text[text.len().saturating_sub(OVERLAP)..].to_vec();
        start = end;
    }
    if pages > 0 { pages } else { count }
}

/// `/Type /Page` names (not `/Pages`) in `text` that end past `fresh`
/// (those before were counted with the last window); one at the very end
/// is left for the next window, unless this is the `last`.
fn page_objects(text: &[u8], fresh: usize, last: bool) -> u64 {
    let found = memchr::memmem::find_iter(text, b"/Type").filter(|&at| {
        let name = at
            + 5
            + text[at + 5..]
                .iter()
                .take_while(|b| b.is_ascii_whitespace())
                .count();
        let end = name + 5;
        let next = text.get(end);
        text.get(name..end) == Some(b"/Page")
            && !next.is_some_and(u8::is_ascii_alphanumeric)
            && (next.is_some() || last)
            && end > fresh
    });
    found.count() as u64
}

/// The largest `/Count N` in `text`.
fn largest_count(text: &[u8]) -> u64 {
    memchr::memmem::find_iter(text, b"/Count")
        .filter_map(|at| {
            let rest = &text[at + 6..];
            let rest = &rest[rest.iter().take_while(|b| b.is_ascii_whitespace()).count()..];
            let digits = rest.iter().take_while(|b| b.is_ascii_digit()).count();
            std::str::from_utf8(&rest[..digits.min(9)])
                .ok()?
                .parse()
                .ok()
        })
        .max()
        .unwrap_or(0)
}

#[cfg(test)]
mod tests;
