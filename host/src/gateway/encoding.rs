//! Compressed upstream bodies.
//!
//! levee inspects what it must (an error body's prefix, the usage a body
//! reports) through a decoded copy; the client still gets the bytes the
//! upstream sent, `content-encoding` and all. So the upstream is offered
//! only codings levee reads (gzip, deflate, br, zstd: the client's own
//! list, filtered), and a stream is asked for `identity`: an event stream
//! is framed event by event and may end with levee's error frame, which a
//! compressed stream could not take. (The API does not compress streams.)
//!
//! Decoding is bounded: input goes to the decoder a kilobyte at a time,
//! and once a body has decoded to [`MAX_DECODED`] bytes the copy stops,
//! so a compression bomb costs at most that much work.

use http::HeaderValue;
use std::io::Write;
use std::sync::{Arc, Mutex};

/// The most one body is decoded to for inspection.
pub const MAX_DECODED: usize = 64 << 20;

/// The codings levee reads, as `content-encoding` names them.
const READABLE: [&str; 4] = ["gzip", "deflate", "br", "zstd"];

/// A body's coding, from its `content-encoding`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Coding {
    /// gzip (RFC 1952).
    Gzip,
    /// deflate: zlib-wrapped (RFC 1950), as HTTP means it.
    Deflate,
    /// Brotli.
    Br,
    /// Zstandard.
    Zstd,
}

impl Coding {
    /// The coding of a body with these headers: `Ok(None)` for none (or
    /// `identity`), `Err` with the value for one levee cannot read (an
    /// unknown name, or more than one coding).
    pub fn of(headers: &http::HeaderMap) -> Result<Option<Coding>, String> {
        let Some(v) = headers.get(http::header::CONTENT_ENCODING) else {
            return Ok(None);
        };
        let text = v.to_str().unwrap_or("").trim();
        match text.to_ascii_lowercase().as_str() {
            "" | "identity" => Ok(None),
            "gzip" | "x-gzip" => Ok(Some(Coding::Gzip)),
            "deflate" => Ok(Some(Coding::Deflate)),
            "br" => Ok(Some(Coding::Br)),
            "zstd" => Ok(Some(Coding::Zstd)),
            _ => Err(text.chars().take(64).collect()),
        }
    }
}

const IDENTITY: HeaderValue = HeaderValue::from_static("identity");

/// The `accept-encoding` levee sends upstream: `identity` for a stream;
/// otherwise the codings the client accepts that levee reads, in the
/// client's order and with its weights, or `identity` if none.
///
/// A client sends the same value on every request, so each worker keeps
/// its last answer: filtering it again cost 2.5 k instructions a request.
pub fn upstream_accept(client: Option<&HeaderValue>, stream: bool) -> HeaderValue {
    thread_local! {
        static LAST: std::cell::RefCell<Option<(HeaderValue, HeaderValue)>> =
            const { std::cell::RefCell::new(None) };
    }
    let Some(client) = client.filter(|_| !stream) else {
        return IDENTITY;
    };
    LAST.with_borrow_mut(|last| {
        if let Some((asked, answer)) = last.as_ref()
            && asked == client
        {
            return answer.clone();
        }
        let answer = readable(client);
        *last = Some((client.clone(), answer.clone()));
        answer
    })
}

/// The codings in `client` that levee reads, or `identity`.
fn readable(client: &HeaderValue) -> HeaderValue {
    let Ok(text) = client.to_str() else {
        return IDENTITY;
    };
    let kept: Vec<&str> = text
        .split(',')
        .map(str::trim)
        .filter(|item| {
            let name = item.split(';').next().unwrap_or("").trim();
            READABLE.iter().any(|r| r.eq_ignore_ascii_case(name))
        })
        .collect();
    if kept.is_empty() {
        return IDENTITY;
    }
    HeaderValue::from_str(&kept.join(", ")).unwrap_or(IDENTITY)
}

/// Where a decoder writes: the decoded bytes not yet taken, and how many
/// there were in all.
#[derive(Clone, Default)]
struct Sink(Arc<Mutex<(Vec<u8>, usize)>>);

impl Write for Sink {
    fn write(&mut self, data: &[u8]) -> std::io::Result<usize> {
        let mut s = self.0.lock().unwrap_or_else(|p| p.into_inner());
        s.0.extend_from_slice(data);
        s.1 = s.1.saturating_add(data.len());
        Ok(data.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// Decodes a body as it arrives, for inspection.
pub struct Decoder {
    inner: Box<dyn Write + Send + Sync>,
    sink: Sink,
    /// The body stopped decoding: corrupt, or past [`MAX_DECODED`].
    done: bool,
}

impl Decoder {
    /// A decoder of `coding`.
    pub fn new(coding: Coding) -> Decoder {
        let sink = Sink::default();
        let out = sink.clone();
        let inner: Box<dyn Write + Send + Sync> = match coding {
            Coding::Gzip => Box::new(flate2::write::GzDecoder::new(out)),
            Coding::Deflate => Box::new(flate2::write::ZlibDecoder::new(out)),
            Coding::Br => Box::new(brotli_decompressor::DecompressorWriter::new(out, 4096)),
            Coding::Zstd => match zstd::stream::write::Decoder::new(out) {
                Ok(d) => Box::new(d),
                Err(_) => Box::new(std::io::sink()),
            },
        };
        Decoder {
            inner,
            sink,
            done: false,
        }
    }

    /// Takes the next encoded bytes; returns what they decoded to (nothing
    /// once the body is corrupt or decoded past [`MAX_DECODED`]).
    pub fn feed(&mut self, data: &[u8]) -> Vec<u8> {
        for piece in data.chunks(1024) {
            if self.done {
                break;
            }
            if self.inner.write_all(piece).is_err() {
                self.done = true;
            }
            let total = self.sink.0.lock().unwrap_or_else(|p| p.into_inner()).1;
            if total > MAX_DECODED {
                self.done = true;
            }
        }
        let _ = self.inner.flush();
        std::mem::take(&mut self.sink.0.lock().unwrap_or_else(|p| p.into_inner()).0)
    }
}

/// `data`, decoded, at most `limit` bytes of it (what decodes of a
/// prefix, for an error body).
pub fn decode_prefix(coding: Coding, data: &[u8], limit: usize) -> Vec<u8> {
    let mut decoded = Decoder::new(coding).feed(data);
    decoded.truncate(limit);
    decoded
}

#[cfg(test)]
mod tests {
    use super::*;

    fn gzip(data: &[u8]) -> Vec<u8> {
        let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
        e.write_all(data).unwrap();
        e.finish().unwrap()
    }

    fn deflate(data: &[u8]) -> Vec<u8> {
        let mut e = flate2::write::ZlibEncoder::new(Vec::new(), flate2::Compression::default());
        e.write_all(data).unwrap();
        e.finish().unwrap()
    }

    #[test]
    fn every_readable_coding_decodes_in_pieces() {
        let body =
            br#"{"type":"error","error":{"type":"overloaded_error","message":"Overloaded"}}"#
                .repeat(50);
        let zstd = zstd::encode_all(&body[..], 3).unwrap();
        for (coding, encoded) in [
            (Coding::Gzip, gzip(&body)),
            (Coding::Deflate, deflate(&body)),
            (Coding::Zstd, zstd),
        ] {
            let mut d = Decoder::new(coding);
            let mut out = Vec::new();
            for piece in encoded.chunks(7) {
                out.extend(d.feed(piece));
            }
            assert_eq!(out, body, "{coding:?}");
        }
    }

    #[test]
    fn brotli_decodes() {
        // "hello" compressed with `brotli -q 11`.
        let encoded = [0x0b, 0x02, 0x80, 0x68, 0x65, 0x6c, 0x6c, 0x6f, 0x03];
        assert_eq!(Decoder::new(Coding::Br).feed(&encoded), b"hello");
    }

    #[test]
    fn a_bomb_stops_at_the_cap_and_junk_stops_at_once() {
        let zeros = vec![0u8; MAX_DECODED + (8 << 20)];
        let bomb = gzip(&zeros);
        assert!(bomb.len() < 1 << 20);
        let mut d = Decoder::new(Coding::Gzip);
        let decoded: usize = bomb.chunks(64 << 10).map(|c| d.feed(c).len()).sum();
        assert!(decoded <= MAX_DECODED + (1 << 20), "{decoded}");
        assert!(decoded >= MAX_DECODED);
        let mut junk = Decoder::new(Coding::Gzip);
        assert!(junk.feed(b"not gzip at all, not at all").is_empty());
        assert!(
            junk.feed(&gzip(b"later")).is_empty(),
            "a corrupt body stays done"
        );
    }

    #[test]
    fn the_coding_is_read_from_content_encoding() {
        let of = |v: &str| {
            let mut h = http::HeaderMap::new();
            h.insert(
                http::header::CONTENT_ENCODING,
                HeaderValue::from_str(v).unwrap(),
            );
            Coding::of(&h)
        };
        assert_eq!(of("gzip"), Ok(Some(Coding::Gzip)));
        assert_eq!(of(" BR "), Ok(Some(Coding::Br)));
        assert_eq!(of("identity"), Ok(None));
        assert_eq!(of("gzip, br"), Err("gzip, br".into()));
        assert_eq!(of("compress"), Err("compress".into()));
        assert_eq!(Coding::of(&http::HeaderMap::new()), Ok(None));
    }

    #[test]
    fn the_upstream_is_offered_only_what_levee_reads_and_a_stream_identity() {
        let v = |s: &'static str| HeaderValue::from_static(s);
        assert_eq!(
            upstream_accept(Some(&v("gzip, deflate")), false),
            "gzip, deflate"
        );
        assert_eq!(
            upstream_accept(Some(&v("br;q=1.0, compress, zstd;q=0.5, *;q=0.1")), false),
            "br;q=1.0, zstd;q=0.5"
        );
        assert_eq!(upstream_accept(Some(&v("compress")), false), "identity");
        assert_eq!(upstream_accept(None, false), "identity");
        assert_eq!(upstream_accept(Some(&v("gzip")), true), "identity");
        // Asked again, the same answers (from the worker's last).
        for _ in 0..2 {
            assert_eq!(upstream_accept(Some(&v("gzip, compress")), false), "gzip");
            assert_eq!(upstream_accept(Some(&v("compress")), false), "identity");
        }
    }
}
