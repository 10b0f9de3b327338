//! Delivery: the response as it came, streamed as it arrives and watched
//! for stalls and cuts; and the answer when levee gives up.

use crate::clock::timeout;
use crate::config::Settings;
use crate::forward::Last;
use crate::io::Chunk;
use crate::reply::{self, Writer, get, set, strip_hop_by_hop};
use crate::upstream::Upstreaming;
use bytes::Bytes;
use levee_exchange::reply::{Headers as _, set_verdict};
use levee_exchange::sse::{Cursor, Dialect, is_event_stream};
use levee_exchange::{GiveUpAt, LocalReply};
use levee_policy_core::GiveUp;
use spin_sdk::http::ResponseOutparam;

/// The part of a body already read, and how the body ended if it did:
/// `Some(None)` cleanly, `Some(Some(why))` broken.
#[derive(Default)]
pub struct Prefix {
    /// The bytes read.
    pub bytes: Vec<u8>,
    /// Whether (and how) the body already ended.
    pub ended: Option<Option<String>>,
}

/// A response on its way to the client, as [`stream_body`] sends it.
pub struct Delivery<'a> {
    /// Levee's id for the request: an error frame names it when the
    /// upstream sent no `request-id`.
    pub request_id: &'a str,
    /// Attempts made, for `x-levee-attempts`.
    pub attempts: u32,
    /// The verdict, when levee gave up.
    pub verdict: Option<GiveUp>,
    /// The streams' format.
    pub dialect: Dialect,
}

/// Sends `resp` to the client: its head (plus `x-levee-attempts` and the
/// verdict, if any), then `prefix` and the rest of its body.
pub async fn stream_body(
    out: ResponseOutparam,
    mut resp: Upstreaming,
    prefix: Prefix,
    d: Delivery<'_>,
    settings: &Settings,
) {
    let Delivery {
        attempts,
        verdict,
        dialect,
        ..
    } = d;
    let sse = get(&resp.headers, "content-type").is_some_and(is_event_stream);
    let request_id = get(&resp.headers, levee_exchange::reply::REQUEST_ID)
        .unwrap_or(d.request_id)
        .to_owned();
    let mut headers = std::mem::take(&mut resp.headers);
    // A body whose length is known to be whole keeps its content-length.
    let length = get(&headers, "content-length").map(str::to_owned);
    strip_hop_by_hop(&mut headers);
    if let (Some(len), false) = (length, sse) {
        set(&mut headers, "content-length", len);
    }
    headers.set_number(levee_exchange::reply::ATTEMPTS, u64::from(attempts));
    if let Some(g) = verdict {
        set_verdict(&mut headers, g, false);
    }
    let mut w = Writer::start(out, resp.status, &headers);
    let mut cursor = sse.then(|| Cursor::new(dialect));
    let idle = settings.idle_timeout_ms;
    let mut pending = Some(prefix);
    let broken: Option<String> = loop {
        let chunk = match pending.take() {
            Some(p) => {
                if !p.bytes.is_empty()
                    && let Err(e) = forward(&mut w, cursor.as_mut(), p.bytes).await
                {
                    break Some(e);
                }
                match p.ended {
                    None => continue,
                    Some(None) => Chunk::End,
                    Some(Some(e)) => Chunk::Failed(e),
                }
            }
            None => match timeout(idle, resp.next()).await {
                Some(c) => c,
                None => break Some(format!("upstream stalled: no bytes for {idle} ms")),
            },
        };
        match chunk {
            Chunk::Data(d) => {
                if let Err(e) = forward(&mut w, cursor.as_mut(), d).await {
                    break Some(e);
                }
            }
            Chunk::Failed(e) => break Some(format!("upstream failed mid-stream: {e}")),
            Chunk::End => match cursor.as_mut() {
                Some(c) if !c.complete() => {
                    let last = dialect.last_event();
                    break Some(format!("upstream closed the stream before {last}"));
                }
                Some(c) => {
                    let rest = c.take_rest();
                    break w.write(&rest).await.err();
                }
                None => break None,
            },
        }
    };
    match (broken, sse) {
        (None, _) => w.finish(),
        (Some(why), true) => {
            log_line!("levee edge: response body broke off: {why}");
            let _ = w
                .write(dialect.error_frame(&why, &request_id).as_bytes())
                .await;
            w.finish();
        }
        (Some(why), false) => {
            log_line!("levee edge: response body broke off: {why}");
            w.abort();
        }
    }
}

/// Passes bytes on (whole SSE events only, for a stream).
async fn forward(w: &mut Writer, cursor: Option<&mut Cursor>, data: Vec<u8>) -> Result<(), String> {
    let result = match cursor {
        Some(c) => {
            let ready = c.push(Bytes::from(data));
            w.write(&ready).await
        }
        None => w.write(&data).await,
    };
    result.map_err(|e| format!("the client went away: {e}"))
}

/// Answers when levee stops: the last response as it was, or, when no
/// upstream answered, the failure in the API's shape naming the layer.
/// Returns the status, for the access line.
pub async fn give_up(
    settings: &Settings,
    request_id: &str,
    out: ResponseOutparam,
    last: Last,
    at: GiveUpAt,
    dialect: Dialect,
) -> u16 {
    match last {
        Last::Response(resp, prefix) => {
            let status = resp.status;
            let delivery = Delivery {
                request_id,
                attempts: at.attempts,
                verdict: at.verdict,
                dialect,
            };
            stream_body(out, resp, prefix, delivery, settings).await;
            status
        }
        Last::Failure(upstream, failure) => {
            let name = &settings.upstreams[upstream as usize].name;
            let local = LocalReply::upstream_failure(
                failure.kind,
                &failure.message,
                name,
                at.attempts,
                at.verdict,
            );
            reply::send(&local, out, request_id, at.attempts).await
        }
    }
}
