//! One attempt on the wire: the outbound `wasi:http` request, its timeout,
//! and the failure layer named the way the policy and the client expect.

use crate::clock::timeout;
use crate::config::Upstream;
use crate::io::{Chunk, pipe, read, write_all};
use crate::reply::Headers;
use levee_policy_core::FailureKind;
use spin_sdk::http::{
    ErrorCode, Fields, IncomingResponse, Method, OutgoingBody, OutgoingRequest, Scheme, SendError,
};
use spin_sdk::wit::wasi::http0_2_0::types::IncomingBody;
use wasi::io::streams::InputStream;

/// A response head and the body still to read.
pub struct Upstreaming {
    // Field order is drop order: the stream before its body before the
    // response it came from.
    stream: InputStream,
    _body: IncomingBody,
    /// Held so the runtime keeps the exchange open.
    _resp: IncomingResponse,
    /// The status.
    pub status: u16,
    /// The headers, lower-case names.
    pub headers: Headers,
}

impl Upstreaming {
    /// The next body bytes.
    pub async fn next(&self) -> Chunk {
        read(&self.stream).await
    }
}

/// A client's body that levee passes on as it arrives, once, never
/// holding it (a batch, a file upload): bounded memory, no retry.
pub struct Passing {
    // The stream before the body it came from.
    stream: InputStream,
    _body: IncomingBody,
    /// The client's `content-length`, sent on when it gave one.
    length: Option<u64>,
    /// The most it may carry.
    limit: usize,
}

impl Passing {
    /// The body of a client request, of `length` bytes if it said so.
    pub fn of(body: IncomingBody, length: Option<u64>, limit: usize) -> Option<Passing> {
        let stream = body.stream().ok()?;
        Some(Passing {
            stream,
            _body: body,
            length,
            limit,
        })
    }
}

/// What an attempt sends.
pub enum Outbound<'a> {
    /// A held body, sent again on every attempt.
    Held(&'a [u8]),
    /// A passed-on body: its only attempt.
    Passing(Passing),
}

/// Why an attempt got no response head.
pub struct Failure {
    /// The layer, for the policy.
    pub kind: FailureKind,
    /// What happened, for the client.
    pub message: String,
    /// The runtime refused the destination: a permission no retry can
    /// change, and no fault of the upstream's.
    pub denied: bool,
}

impl Failure {
    fn new(kind: FailureKind, message: String) -> Failure {
        Failure {
            kind,
            message,
            denied: false,
        }
    }
}

/// Sends one attempt and waits at most `timeout_ms` for the head.
pub async fn send(
    up: &Upstream,
    method: &Method,
    path_and_query: &str,
    headers: &Headers,
    body: Outbound<'_>,
    timeout_ms: u64,
) -> Result<Upstreaming, Failure> {
    let fields = Fields::new();
    for (name, value) in headers {
        let _ = fields.append(name, value);
    }
    let length = match &body {
        Outbound::Held(b) => {
            let sends =
                !b.is_empty() || matches!(method, Method::Post | Method::Put | Method::Patch);
            sends.then_some(b.len() as u64)
        }
        Outbound::Passing(p) => p.length,
    };
    if let Some(n) = length {
        let _ = fields.set("content-length", &[n.to_string().into_bytes()]);
    }
    let req = OutgoingRequest::new(fields);
    let _ = req.set_method(method);
    let _ = req.set_scheme(Some(if up.https {
        &Scheme::Https
    } else {
        &Scheme::Http
    }));
    let _ = req.set_authority(Some(&up.authority));
    let _ = req.set_path_with_query(Some(&format!("{}{path_and_query}", up.base_path)));
    let out_body = req.body().expect("a new request's body is taken once");
    let exchange = async {
        let sent = spin_sdk::http::send::<OutgoingRequest, IncomingResponse>(req);
        let write = async {
            let stream = out_body.write().expect("a new body is written once");
            // A failed write to the upstream shows up as the exchange's own
            // error, named by its layer. A passed-on body that the client
            // broke off, or that ran past its limit, is never finished, so
            // the upstream sees it fail, not end short; that is the why.
            let written = match body {
                Outbound::Held(b) => write_all(&stream, b).await.map_err(|_| None),
                Outbound::Passing(p) => pipe(&p.stream, &stream, p.limit).await.map(|_| ()),
            };
            drop(stream);
            match written {
                Ok(()) => {
                    let _ = OutgoingBody::finish(out_body, None);
                    None
                }
                Err(why) => why,
            }
        };
        futures::join!(sent, write)
    };
    let resp = match timeout(timeout_ms, exchange).await {
        // The body could not be passed on: that, not what the broken
        // exchange says, is why.
        Some((Err(_), Some(why))) => return Err(Failure::new(FailureKind::Reset, why)),
        Some((sent, _)) => sent,
        None => {
            return Err(Failure::new(
                FailureKind::Timeout,
                format!("no response head within {timeout_ms} ms"),
            ));
        }
    };
    let resp = match resp {
        Ok(resp) => resp,
        Err(SendError::Http(code)) => return Err(classify(&code, up)),
        Err(other) => {
            return Err(Failure::new(
                FailureKind::Reset,
                format!("the exchange with {} failed: {other}", up.authority),
            ));
        }
    };
    let status = resp.status();
    let headers: Headers = resp
        .headers()
        .entries()
        .into_iter()
        .map(|(k, v)| (k.to_ascii_lowercase(), v))
        .collect();
    let body = resp.consume().expect("a response body is consumed once");
    let stream = body.stream().expect("a body's stream is taken once");
    Ok(Upstreaming {
        stream,
        _body: body,
        _resp: resp,
        status,
        headers,
    })
}

/// Names the layer a `wasi:http` error code belongs to.
fn classify(code: &ErrorCode, up: &Upstream) -> Failure {
    use ErrorCode as E;
    let at = &up.authority;
    let (kind, message) = match code {
        E::DnsTimeout | E::DnsError(_) => {
            (FailureKind::Dns, format!("cannot resolve {at}: {code:?}"))
        }
        E::DestinationNotFound => (FailureKind::Dns, format!("cannot resolve {at}")),
        E::ConnectionRefused => (
            FailureKind::Connect,
            format!("cannot connect to {at}: Connection refused"),
        ),
        E::DestinationUnavailable
        | E::DestinationIpProhibited
        | E::DestinationIpUnroutable
        | E::ConnectionTimeout
        | E::ConnectionLimitReached => (
            FailureKind::Connect,
            format!("cannot connect to {at}: {code:?}"),
        ),
        E::TlsProtocolError | E::TlsCertificateError | E::TlsAlertReceived(_) => {
            (FailureKind::Tls, format!("TLS with {at} failed: {code:?}"))
        }
        E::HttpRequestDenied => {
            let origin = up.origin();
            return Failure {
                kind: FailureKind::Connect,
                message: format!(
                    "the runtime denied the request to {origin} (upstream `{}`): {}",
                    up.name,
                    allow_hint(&origin)
                ),
                denied: true,
            };
        }
        E::ConnectionReadTimeout | E::HttpResponseTimeout => (
            FailureKind::Timeout,
            format!("{at} sent no response head in time"),
        ),
        other => (
            FailureKind::Reset,
            format!("the connection to {at} failed before the response head: {other:?}"),
        ),
    };
    Failure::new(kind, message)
}

/// How to grant the edge `origin`, in this build's runtime.
#[cfg(feature = "spin")]
fn allow_hint(origin: &str) -> String {
    format!(
        "allow it in spin.toml's allowed_outbound_hosts, with one of levee's \
         `allowed_host_*` variables (e.g. SPIN_VARIABLE_ALLOWED_HOST_B={origin})"
    )
}

/// How to grant the edge `origin`, in this build's runtime.
#[cfg(not(feature = "spin"))]
fn allow_hint(_origin: &str) -> String {
    "allow it in the runtime's outbound hosts".to_owned()
}
