//! The listener, the per-connection tasks, and the request handler that
//! plays one [`Step`] per request.

use super::body::MockBody;
use super::conn::{ConnCtl, Kill, MockIo, TcpSide};
use super::ratelimit::{Buckets, RateLimits, limited_step};
use super::script::{Reply, Script, Step, header_value};
use super::sse::SseScript;
use bytes::{Bytes, BytesMut};
use http::{HeaderName, HeaderValue, Request, Response, Version};
use http_body_util::BodyExt;
use hyper::body::Incoming;
use hyper::server::conn::{http1, http2};
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::graceful::GracefulConnection;
use std::io;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Instant;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{Notify, watch};
use tokio::task::{JoinHandle, JoinSet};
use tokio_rustls::TlsAcceptor;

/// One request the mock received.
#[derive(Clone, Debug)]
pub struct Recorded {
    /// Arrival order across the whole mock, from 1.
    pub seq: u64,
    /// `POST`, `GET`, …
    pub method: String,
    /// Path with query, e.g. `/v1/messages?beta=true`.
    pub path: String,
    /// HTTP version the request came with.
    pub version: Version,
    /// Headers, names lower-case (repeated names grouped together).
    pub headers: Vec<(String, String)>,
    /// The whole request body (as much as arrived, if the peer gave up).
    pub body: Bytes,
    /// When the request head arrived.
    pub at: Instant,
    /// Id of the TCP connection it came on, from 1 in accept order.
    pub connection: u64,
}

impl Recorded {
    /// The first value of header `name` (case-insensitive).
    pub fn header(&self, name: &str) -> Option<&str> {
        header_value(&self.headers, name)
    }

    /// The body parsed as JSON (`Null` if it is not JSON).
    pub fn json(&self) -> serde_json::Value {
        serde_json::from_slice(&self.body).unwrap_or_default()
    }
}

/// State shared by the listener, the connections and the handle.
pub(crate) struct Shared {
    script: Mutex<Script>,
    /// The mock's own rate limit, when set.
    limits: Mutex<Option<Buckets>>,
    /// Rate limits of their own for the models whose id contains a
    /// substring, as the API limits each model class apart.
    class_limits: Mutex<Vec<(String, Buckets)>>,
    /// Requests answered 429 by that limit.
    rate_limited: AtomicU64,
    next_seq: AtomicU64,
    next_conn: AtomicU64,
    /// Connections open now, and the most ever open at once.
    open: AtomicU64,
    peak_open: AtomicU64,
    requests: Mutex<Vec<Recorded>>,
    recorded: Notify,
    stop: watch::Sender<bool>,
    /// While true, TLS handshakes wait (their TCP connections are counted).
    hold_handshakes: watch::Sender<bool>,
}

/// A scriptable stand-in for the Anthropic API on `127.0.0.1:0`.
///
/// Each request takes the next [`Step`] of its [`Script`]; every request is
/// recorded. Dropping it (or [`MockUpstream::stop`]) closes the listener and
/// every connection.
pub struct MockUpstream {
    addr: SocketAddr,
    scheme: &'static str,
    shared: Arc<Shared>,
    task: Option<JoinHandle<()>>,
}

impl MockUpstream {
    /// Serves plain HTTP/1.1.
    pub async fn start(script: Script) -> MockUpstream {
        Self::bind(script, None).await
    }

    /// Serves HTTPS: HTTP/2 or HTTP/1.1 as ALPN decides. A config without
    /// ALPN protocols gets `["h2", "http/1.1"]`; set `["http/1.1"]` on it to
    /// force HTTP/1.1. The certificates from [`super::TestPki`] name both
    /// `localhost` and `127.0.0.1`.
    pub async fn start_tls(script: Script, tls: Arc<rustls::ServerConfig>) -> MockUpstream {
        let tls = if tls.alpn_protocols.is_empty() {
            let mut config = (*tls).clone();
            config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
            Arc::new(config)
        } else {
            tls
        };
        Self::bind(script, Some(TlsAcceptor::from(tls))).await
    }

    async fn bind(script: Script, tls: Option<TlsAcceptor>) -> MockUpstream {
        let listener = TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind 127.0.0.1:0");
        let addr = listener.local_addr().expect("local addr");
        let shared = Arc::new(Shared {
            script: Mutex::new(script),
            limits: Mutex::new(None),
            class_limits: Mutex::new(Vec::new()),
            rate_limited: AtomicU64::new(0),
            next_seq: AtomicU64::new(1),
            next_conn: AtomicU64::new(1),
            open: AtomicU64::new(0),
            peak_open: AtomicU64::new(0),
            requests: Mutex::new(Vec::new()),
            recorded: Notify::new(),
            stop: watch::channel(false).0,
            hold_handshakes: watch::channel(false).0,
        });
        let scheme = if tls.is_some() { "https" } else { "http" };
        let task = tokio::spawn(accept_loop(listener, tls, shared.clone()));
        MockUpstream {
            addr,
            scheme,
            shared,
            task: Some(task),
        }
    }

    /// `http://127.0.0.1:PORT` or `https://127.0.0.1:PORT`.
    pub fn url(&self) -> String {
        format!("{}://{}", self.scheme, self.addr)
    }

    /// The listening address.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Every request received so far, in arrival order. A request appears
    /// once its body has been read (before its step is played).
    pub fn requests(&self) -> Vec<Recorded> {
        self.shared.requests.lock().expect("requests").clone()
    }

    /// Waits until at least `n` requests have been recorded, then returns
    /// them all.
    pub async fn wait_requests(&self, n: usize) -> Vec<Recorded> {
        loop {
            let notified = self.shared.recorded.notified();
            tokio::pin!(notified);
            notified.as_mut().enable();
            let requests = self.requests();
            if requests.len() >= n {
                return requests;
            }
            notified.await;
        }
    }

    /// How many TCP connections have been accepted (including those whose
    /// TLS handshake failed).
    pub fn connections(&self) -> u64 {
        self.shared.next_conn.load(Ordering::SeqCst) - 1
    }

    /// The most TCP connections that were ever open at once.
    pub fn peak_connections(&self) -> u64 {
        self.shared.peak_open.load(Ordering::SeqCst)
    }

    /// Gives the mock a rate limit of its own (full buckets from now), or
    /// takes it away with `None`. While set, every answer carries the
    /// API's `anthropic-ratelimit-*` headers, and a request that does not
    /// fit is answered `429 rate_limit_error` with `retry-after` (seconds)
    /// instead of its step, which stays queued. See [`super::RateLimits`].
    pub fn set_limits(&self, limits: Option<RateLimits>) {
        let buckets = limits.map(|l| Buckets::new(l, Instant::now()));
        *self.shared.limits.lock().expect("limits") = buckets;
    }

    /// Gives the models whose id contains each substring a rate limit of
    /// their own (the first that matches), apart from [`Self::set_limits`]'s,
    /// as the API limits each model class apart. The model is read from
    /// the request's body, so while these are set the mock takes a
    /// request's step once its body has arrived rather than on arrival.
    pub fn set_class_limits(&self, classes: &[(&str, RateLimits)]) {
        let now = Instant::now();
        *self.shared.class_limits.lock().expect("class limits") = classes
            .iter()
            .map(|(s, l)| ((*s).to_owned(), Buckets::new(*l, now)))
            .collect();
    }

    /// How many requests the mock's own rate limit has answered 429.
    pub fn rate_limited(&self) -> u64 {
        self.shared.rate_limited.load(Ordering::SeqCst)
    }

    /// Replaces the script; the next request takes its first step.
    pub fn set_script(&self, script: Script) {
        *self.shared.script.lock().expect("script") = script;
    }

    /// Holds TLS handshakes (`true`) until released (`false`): connects
    /// made meanwhile are accepted and counted, and wait for their TLS.
    pub fn hold_handshakes(&self, hold: bool) {
        self.shared.hold_handshakes.send_replace(hold);
    }

    /// Appends a step to the queue.
    pub fn push(&self, step: impl Into<Step>) {
        self.shared
            .script
            .lock()
            .expect("script")
            .steps
            .push_back(step.into());
    }

    /// Stops listening and closes every connection; once this returns, a
    /// connect to [`MockUpstream::addr`] is refused.
    pub async fn stop(mut self) {
        self.shared.stop.send_replace(true);
        if let Some(task) = self.task.take() {
            let _ = task.await;
        }
    }
}

impl Drop for MockUpstream {
    fn drop(&mut self) {
        self.shared.stop.send_replace(true);
    }
}

async fn accept_loop(listener: TcpListener, tls: Option<TlsAcceptor>, shared: Arc<Shared>) {
    let mut stop = shared.stop.subscribe();
    let mut conns = JoinSet::new();
    loop {
        tokio::select! {
            () = stopped(&mut stop) => break,
            accepted = listener.accept() => {
                let Ok((tcp, _)) = accepted else {
                    // Out of descriptors or similar: let it clear.
                    tokio::time::sleep(std::time::Duration::from_millis(5)).await;
                    continue;
                };
                let _ = tcp.set_nodelay(true);
                let id = shared.next_conn.fetch_add(1, Ordering::SeqCst);
                conns.spawn(serve_tcp(tcp, tls.clone(), shared.clone(), id));
            }
            Some(_) = conns.join_next(), if !conns.is_empty() => {}
        }
    }
    drop(listener);
    conns.shutdown().await;
}

async fn serve_tcp(tcp: TcpStream, tls: Option<TlsAcceptor>, shared: Arc<Shared>, id: u64) {
    let open = shared.open.fetch_add(1, Ordering::SeqCst) + 1;
    shared.peak_open.fetch_max(open, Ordering::SeqCst);
    let _closed = Closed(shared.clone());
    match tls {
        None => serve(tcp, false, shared, id).await,
        Some(acceptor) => {
            let mut held = shared.hold_handshakes.subscribe();
            let _ = held.wait_for(|hold| !*hold).await;
            let Ok(stream) = acceptor.accept(tcp).await else {
                return;
            };
            let h2 = stream.get_ref().1.alpn_protocol() == Some(b"h2");
            serve(stream, h2, shared, id).await;
        }
    }
}

/// Counts a connection closed when its task ends, however it ends.
struct Closed(Arc<Shared>);

impl Drop for Closed {
    fn drop(&mut self) {
        self.0.open.fetch_sub(1, Ordering::SeqCst);
    }
}

async fn serve<S>(io: S, h2: bool, shared: Arc<Shared>, id: u64)
where
    S: TcpSide + AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let ctl = ConnCtl::new(id, h2);
    let io = TokioIo::new(MockIo::new(io, ctl.clone()));
    let service = {
        let ctl = ctl.clone();
        service_fn(move |req| handle(shared.clone(), ctl.clone(), req))
    };
    if h2 {
        let conn = http2::Builder::new(TokioExecutor::new()).serve_connection(io, service);
        drive(conn, &ctl).await;
    } else {
        let conn = http1::Builder::new()
            .header_read_timeout(None)
            .serve_connection(io, service);
        drive(conn, &ctl).await;
    }
}

/// Runs a connection until it ends or is killed; shuts it down gracefully
/// when asked to (and runs it on until it ends).
async fn drive(conn: impl GracefulConnection, ctl: &ConnCtl) {
    tokio::pin!(conn);
    let mut going_away = false;
    loop {
        tokio::select! {
            _ = conn.as_mut() => return,
            () = ctl.killed() => return,
            () = ctl.asked_to_go_away(), if !going_away => {
                going_away = true;
                conn.as_mut().graceful_shutdown();
            }
        }
    }
}

/// What a request's handler fails with: hyper resets an HTTP/2 stream
/// with the `h2::Reason` found in it (else `INTERNAL_ERROR`), and drops an
/// HTTP/1.1 connection.
type HandlerError = Box<dyn std::error::Error + Send + Sync>;

/// Called by hyper in request order on each connection (the synchronous
/// part runs at once, so arrival order and HTTP/2 stream ids line up).
fn handle(
    shared: Arc<Shared>,
    ctl: Arc<ConnCtl>,
    req: Request<Incoming>,
) -> impl Future<Output = Result<Response<MockBody>, HandlerError>> {
    let stream_id = ctl.is_h2().then(|| ctl.next_stream_id());
    let by_class = !shared.class_limits.lock().expect("class limits").is_empty();
    let (seq, at, step) = {
        let mut script = shared.script.lock().expect("script");
        let seq = shared.next_seq.fetch_add(1, Ordering::SeqCst);
        let at = Instant::now();
        let mut limits = shared.limits.lock().expect("limits");
        let step = (!by_class).then(|| {
            limited_step(
                limits.as_mut(),
                &mut script,
                &shared.rate_limited,
                at,
                req.headers(),
            )
        });
        (seq, at, step)
    };
    async move {
        let (parts, body) = req.into_parts();
        let body = read_all(body).await;
        let step = match step {
            Some(step) => step,
            None => class_step(&shared, &parts.headers, &body),
        };
        let recorded = Recorded {
            seq,
            method: parts.method.to_string(),
            path: parts
                .uri
                .path_and_query()
                .map_or_else(|| parts.uri.path().to_owned(), |p| p.as_str().to_owned()),
            version: parts.version,
            headers: parts
                .headers
                .iter()
                .map(|(k, v)| {
                    let v = String::from_utf8_lossy(v.as_bytes()).into_owned();
                    (k.as_str().to_owned(), v)
                })
                .collect(),
            body,
            at,
            connection: ctl.id,
        };
        {
            let mut requests = shared.requests.lock().expect("requests");
            let at = requests.partition_point(|r| r.seq < seq);
            requests.insert(at, recorded);
        }
        shared.recorded.notify_waiters();
        let mut stop = shared.stop.subscribe();
        match step {
            Step::Reply(reply) => {
                if reply.go_away {
                    go_away(&ctl).await;
                }
                tokio::time::sleep(reply.head_delay).await;
                Ok(reply_response(reply, ctl, stream_id, stop))
            }
            Step::Sse(script) => {
                if script.go_away {
                    go_away(&ctl).await;
                }
                tokio::time::sleep(script.head_delay).await;
                Ok(sse_response(script, ctl, stream_id, stop))
            }
            Step::RefuseStream if ctl.is_h2() => {
                Err(h2::Error::from(h2::Reason::REFUSED_STREAM).into())
            }
            Step::RefuseStream => Ok(script_error("RefuseStream needs HTTP/2")),
            step => {
                match step {
                    Step::Reset => ctl.kill(Kill::Reset),
                    Step::Close => ctl.kill(Kill::Close),
                    _ => {}
                }
                // Never answer: on stop, fail the exchange (hyper then drops
                // the HTTP/1.1 connection, or resets the HTTP/2 stream).
                stopped(&mut stop).await;
                Err(io::Error::other("mock stopped").into())
            }
        }
    }
}

/// The next step under the limits of the class of `body`'s model (or the
/// mock's own, when no class names it).
fn class_step(shared: &Shared, headers: &http::HeaderMap, body: &[u8]) -> Step {
    let json: serde_json::Value = serde_json::from_slice(body).unwrap_or_default();
    let model = json["model"].as_str().unwrap_or_default();
    let mut script = shared.script.lock().expect("script");
    let mut classes = shared.class_limits.lock().expect("class limits");
    let mut limits = shared.limits.lock().expect("limits");
    let buckets = match classes.iter_mut().find(|(s, _)| model.contains(s.as_str())) {
        Some((_, b)) => Some(b),
        None => limits.as_mut(),
    };
    limited_step(
        buckets,
        &mut script,
        &shared.rate_limited,
        Instant::now(),
        headers,
    )
}

/// Starts a graceful shutdown of the connection; on HTTP/2, returns once
/// the peer has read the `GOAWAY`.
async fn go_away(ctl: &ConnCtl) {
    ctl.go_away();
    ctl.h2_gone_away().await;
}

/// Resolves once the mock is stopping.
pub(crate) async fn stopped(stop: &mut watch::Receiver<bool>) {
    let _ = stop.wait_for(|stopped| *stopped).await;
}

/// Reads a request body to its end, or as far as the peer sent it.
async fn read_all(mut body: Incoming) -> Bytes {
    let mut all = BytesMut::new();
    while let Some(Ok(frame)) = body.frame().await {
        if let Ok(data) = frame.into_data() {
            all.extend_from_slice(&data);
        }
    }
    all.freeze()
}

fn reply_response(
    reply: Reply,
    ctl: Arc<ConnCtl>,
    stream_id: Option<u32>,
    stop: watch::Receiver<bool>,
) -> Response<MockBody> {
    let has_length = header_value(&reply.headers, "content-length").is_some();
    let length = (!has_length).then(|| ("content-length".to_owned(), reply.body.len().to_string()));
    let headers = reply.headers.iter().cloned().chain(length);
    let body = match reply.pieces() {
        Some((pieces, end)) => MockBody::played(pieces, end, ctl, stream_id, stop),
        None => MockBody::full(reply.body),
    };
    build(reply.status, headers, body)
}

fn sse_response(
    script: SseScript,
    ctl: Arc<ConnCtl>,
    stream_id: Option<u32>,
    stop: watch::Receiver<bool>,
) -> Response<MockBody> {
    let (status, headers) = (script.status, script.headers.clone());
    build(status, headers, MockBody::sse(script, ctl, stream_id, stop))
}

/// A response with these headers; a script error (bad status or header)
/// becomes a 500 that says what was wrong.
fn build(
    status: u16,
    headers: impl IntoIterator<Item = (String, String)>,
    body: MockBody,
) -> Response<MockBody> {
    let mut response = Response::new(body);
    let result = (|| -> Result<(), String> {
        *response.status_mut() = http::StatusCode::from_u16(status).map_err(|e| e.to_string())?;
        for (name, value) in headers {
            let name = HeaderName::from_bytes(name.as_bytes()).map_err(|e| e.to_string())?;
            let value = HeaderValue::from_str(&value).map_err(|e| e.to_string())?;
            response.headers_mut().append(name, value);
        }
        Ok(())
    })();
    match result {
        Ok(()) => response,
        Err(e) => script_error(&e),
    }
}

/// A 500 that says what was wrong with the script.
fn script_error(what: &str) -> Response<MockBody> {
    let mut bad = Response::new(MockBody::full(format!("mock script error: {what}").into()));
    *bad.status_mut() = http::StatusCode::INTERNAL_SERVER_ERROR;
    bad
}
