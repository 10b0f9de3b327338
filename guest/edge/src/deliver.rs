//! Delivery: the response as it came, streamed as it arrives and watched
//! for stalls and cuts; and the answer when levee gives up.

use crate::clock::timeout;
use crate::config::Settings;
use crate::forward::Last;
use crate::io::Chunk;
use crate::reply::{Local, Writer, get, set, set_verdict, strip_hop_by_hop};
use crate::sse::{Cursor, error_frame};
use crate::upstream::Upstreaming;
use levee_policy_core::{FailureKind, GiveUp};
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

/// Sends `resp` to the client: its head (plus `x-levee-attempts` and the
/// verdict, if any), then `prefix` and the rest of its body.
pub async fn stream_body(
    out: ResponseOutparam,
    mut resp: Upstreaming,
    prefix: Prefix,
    attempts: u32,
    verdict: Option<GiveUp>,
    settings: &Settings,
) {
    let sse = get(&resp.headers, "content-type").is_some_and(|v| {
        v.trim_start()
            .to_ascii_lowercase()
            .starts_with("text/event-stream")
    });
    let mut headers = std::mem::take(&mut resp.headers);
    // A body whose length is known to be whole keeps its content-length.
    let length = get(&headers, "content-length").map(str::to_owned);
    strip_hop_by_hop(&mut headers);
    if let (Some(len), false) = (length, sse) {
        set(&mut headers, "content-length", len);
    }
    set(&mut headers, "x-levee-attempts", attempts.to_string());
    if let Some(g) = verdict {
        set_verdict(&mut headers, g.should_retry, g.retry_after_ms, false);
    }
    let mut w = Writer::start(out, resp.status, &headers);
    let mut cursor = sse.then(Cursor::default);
    let idle = settings.idle_timeout_ms;
    let mut pending = Some(prefix);
    let broken: Option<String> = loop {
        let chunk = match pending.take() {
            Some(p) => {
                if !p.bytes.is_empty()
                    && let Err(e) = forward(&mut w, cursor.as_mut(), &p.bytes).await
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
                if let Err(e) = forward(&mut w, cursor.as_mut(), &d).await {
                    break Some(e);
                }
            }
            Chunk::Failed(e) => break Some(format!("upstream failed mid-stream: {e}")),
            Chunk::End => match cursor.as_mut() {
                Some(c) if !c.complete => {
                    break Some("upstream closed the stream before message_stop".into());
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
            eprintln!("levee edge: response body broke off: {why}");
            let _ = w.write(&error_frame(&why)).await;
            w.finish();
        }
        (Some(why), false) => {
            eprintln!("levee edge: response body broke off: {why}");
            w.abort();
        }
    }
}

/// Passes bytes on (whole SSE events only, for a stream).
async fn forward(w: &mut Writer, cursor: Option<&mut Cursor>, data: &[u8]) -> Result<(), String> {
    let result = match cursor {
        Some(c) => {
            let ready = c.push(data);
            w.write(&ready).await
        }
        None => w.write(data).await,
    };
    result.map_err(|e| format!("the client went away: {e}"))
}

/// Answers when levee stops: the last response as it was, or, when no
/// upstream answered, an error in the API's shape naming the layer.
pub async fn give_up(
    settings: &Settings,
    request_id: &str,
    out: ResponseOutparam,
    last: Last,
    verdict: Option<GiveUp>,
    attempts: u32,
) -> (u16, u32) {
    match last {
        Last::Response(resp, prefix) => {
            let status = resp.status;
            stream_body(out, resp, prefix, attempts, verdict, settings).await;
            (status, attempts)
        }
        Last::Failure(upstream, failure) => {
            let name = &settings.upstreams[upstream as usize].name;
            let (status, error_type) = match failure.kind {
                FailureKind::Timeout => (504, "timeout_error"),
                _ => (502, "api_error"),
            };
            let message = format!(
                "{}: {} (upstream `{name}`, after {attempts} attempt{})",
                layer_name(failure.kind),
                failure.message,
                if attempts == 1 { "" } else { "s" }
            );
            let g = verdict.unwrap_or(GiveUp {
                should_retry: false,
                retry_after_ms: None,
            });
            let local = Local {
                status,
                error_type: error_type.into(),
                message,
                should_retry: g.should_retry,
                retry_after_ms: g.retry_after_ms,
            };
            (local.send(out, request_id, attempts).await, attempts)
        }
    }
}

/// The layer's name in messages, as the bundled host spells it.
fn layer_name(kind: FailureKind) -> &'static str {
    match kind {
        FailureKind::Dns => "dns",
        FailureKind::Connect => "connect",
        FailureKind::Tls => "tls",
        FailureKind::Proxy => "proxy",
        FailureKind::Timeout => "timeout",
        FailureKind::Reset => "reset",
    }
}
