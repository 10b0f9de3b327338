//! What a base64 payload costs by the API's rules: an image by its pixel
//! size, read from its header; a PDF by its pages; anything else by its
//! decoded size.

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;

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

/// What a base64 payload of `media_type` costs.
pub(super) fn media_tokens(media_type: &str, data: &str) -> u64 {
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
pub(super) fn pdf_pages(data: &str) -> u64 {
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
