//! A fast standalone stand-in for the Messages API, for benchmarks.
//!
//! `mock-upstream --listen 127.0.0.1:PORT [--sse-interval-ms N] [--threads N]
//!  [--rpm N] [--itpm N] [--otpm N] [--tls-ca-out FILE]`
//!
//! `POST /v1/messages` answers a fixed 200 JSON message, or, when the
//! request body has `"stream": true`, the API's SSE event sequence (one
//! event per chunk, `N` ms apart with `--sse-interval-ms`, so that many
//! streams can be held open). Anything else gets a 404 in the API's error
//! shape. It prints `listening on ADDR` once bound. Every response body is
//! static: no per-request logging, allocation of bodies, or locks.
//!
//! With `--rpm`, `--itpm` or `--otpm` (requests, input tokens, output
//! tokens per minute) it has a rate limit of its own, like the API's (see
//! `levee_tests::mock::RateLimits`: one lock per request then): every
//! Messages answer carries `anthropic-ratelimit-*` headers, and a request
//! that does not fit gets `429 rate_limit_error` with `retry-after`.
//! With `--tls-ca-out` it serves HTTPS (HTTP/2 or HTTP/1.1 by ALPN) on a
//! certificate for `localhost` from a fresh test CA, whose PEM it writes to
//! FILE for the client to trust. `GET /stats` answers `{"requests":N,"rate_limited":M}` (Messages
//! requests received, and how many of them were answered 429).

use bytes::Bytes;
use http::{HeaderName, HeaderValue, Method, Request, Response, StatusCode, header};
use http_body::{Body, Frame, SizeHint};
use http_body_util::BodyExt;
use hyper::body::Incoming;
use hyper::server::conn::{http1, http2};
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo};
use levee_tests::flags;
use levee_tests::mock::{
    Buckets, Chain, Cost, RateLimits, Reply as Scripted, SseScript, Step, TestPki,
};
use std::convert::Infallible;
use std::future::Future;
use std::io::Write;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};
use std::task::{Context, Poll, ready};
use std::time::{Duration, SystemTime};
use tokio::net::TcpListener;
use tokio::time::{Instant, Sleep};

const USAGE: &str = "usage: mock-upstream --listen ADDR [--sse-interval-ms N] [--threads N] \
                     [--rpm N] [--itpm N] [--otpm N] [--tls-ca-out FILE]";

/// The fixed non-streaming answer (about 400 bytes).
const MESSAGE: &str = concat!(
    r#"{"id":"msg_bench_0123456789abcdef","type":"message","role":"assistant","#,
    r#""model":"claude-mock-1","content":[{"type":"text","text":"This is a fixed "#,
    r#"answer from the benchmark mock upstream. It is long enough to look like a "#,
    r#"short real reply, and it never changes."}],"stop_reason":"end_turn","#,
    r#""stop_sequence":null,"usage":{"input_tokens":25,"cache_creation_input_tokens":0,"#,
    r#""cache_read_input_tokens":0,"output_tokens":32}}"#
);

const RATE_LIMITED: &str = r#"{"type":"error","error":{"type":"rate_limit_error","message":"This request would exceed the rate limit for your organization."},"request_id":"req_bench"}"#;

const NOT_FOUND: &str = r#"{"type":"error","error":{"type":"not_found_error","message":"Not found"},"request_id":"req_bench"}"#;

/// What every connection shares, leaked once at startup.
struct Config {
    chunks: &'static [Bytes],
    interval: Duration,
    /// The rate limit, when one is set.
    limits: Option<Mutex<Buckets>>,
    /// What a JSON answer and a stream report (and are charged).
    costs: (Cost, Cost),
    /// Messages requests received, and those answered 429.
    requests: AtomicU64,
    rate_limited: AtomicU64,
}

struct Args {
    listen: SocketAddr,
    interval: Duration,
    threads: Option<usize>,
    limits: RateLimits,
    tls_ca_out: Option<std::path::PathBuf>,
}

fn parse_args() -> Result<Args, String> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    if args.iter().any(|a| a == "-h" || a == "--help") {
        return Err(String::new());
    }
    let mut listen = None;
    let mut interval = Duration::ZERO;
    let mut threads = None;
    let mut limits = RateLimits::default();
    let mut tls_ca_out = None;
    for (name, value) in flags::pairs(&args)? {
        match name {
            "--listen" => listen = Some(flags::parse(name, value)?),
            "--sse-interval-ms" => interval = Duration::from_millis(flags::parse(name, value)?),
            "--threads" => threads = Some(flags::parse(name, value)?),
            "--tls-ca-out" => tls_ca_out = Some(value.into()),
            "--rpm" | "--itpm" | "--otpm" => {
                let n: u64 = flags::parse(name, value)?;
                if n == 0 {
                    return Err(format!("{name} must be at least 1"));
                }
                match name {
                    "--rpm" => limits.requests_per_minute = Some(n),
                    "--itpm" => limits.input_tokens_per_minute = Some(n),
                    _ => limits.output_tokens_per_minute = Some(n),
                }
            }
            other => return Err(format!("unknown argument {other}")),
        }
    }
    let listen = listen.ok_or("--listen is required")?;
    Ok(Args {
        listen,
        interval,
        threads,
        limits,
        tls_ca_out,
    })
}

fn main() {
    let args = match parse_args() {
        Ok(args) => args,
        Err(e) => {
            if !e.is_empty() {
                eprintln!("mock-upstream: {e}");
            }
            eprintln!("{USAGE}");
            std::process::exit(2);
        }
    };
    let mut runtime = tokio::runtime::Builder::new_multi_thread();
    if let Some(threads) = args.threads {
        runtime.worker_threads(threads);
    }
    let runtime = runtime.enable_all().build().expect("tokio runtime");
    runtime.block_on(serve(args));
}

async fn serve(args: Args) {
    let script = SseScript::message("This is a fixed streamed answer from the mock.");
    let costs = (
        Cost::of(&Step::Reply(Scripted::json(200, MESSAGE))),
        Cost::of(&Step::Sse(script.clone())),
    );
    let limits = (args.limits != RateLimits::default())
        .then(|| Mutex::new(Buckets::new(args.limits, std::time::Instant::now())));
    let chunks: Vec<Bytes> = script
        .chunks
        .into_iter()
        .map(|(_, bytes)| Bytes::from_static(Box::leak(bytes.to_vec().into_boxed_slice())))
        .collect();
    let config: &'static Config = Box::leak(Box::new(Config {
        chunks: Box::leak(chunks.into_boxed_slice()),
        interval: args.interval,
        limits,
        costs,
        requests: AtomicU64::new(0),
        rate_limited: AtomicU64::new(0),
    }));
    let listener = TcpListener::bind(args.listen).await.unwrap_or_else(|e| {
        eprintln!("mock-upstream: bind {}: {e}", args.listen);
        std::process::exit(1);
    });
    let tls = args.tls_ca_out.as_deref().map(|out| {
        let pki = TestPki::new();
        std::fs::write(out, pki.ca_pem()).unwrap_or_else(|e| {
            eprintln!("mock-upstream: --tls-ca-out {}: {e}", out.display());
            std::process::exit(1);
        });
        let mut tls = (*pki.server_config(Chain::Full)).clone();
        tls.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
        tokio_rustls::TlsAcceptor::from(std::sync::Arc::new(tls))
    });
    let addr = listener.local_addr().expect("local addr");
    let mut stdout = std::io::stdout();
    let _ = writeln!(stdout, "listening on {addr}");
    let _ = stdout.flush();
    loop {
        let Ok((tcp, _)) = listener.accept().await else {
            tokio::time::sleep(Duration::from_millis(5)).await;
            continue;
        };
        let _ = tcp.set_nodelay(true);
        let tls = tls.clone();
        tokio::spawn(async move {
            let service = service_fn(move |req| handle(config, req));
            let Some(tls) = tls else {
                let _ = http1::Builder::new()
                    .serve_connection(TokioIo::new(tcp), service)
                    .await;
                return;
            };
            let Ok(tls) = tls.accept(tcp).await else {
                return;
            };
            if tls.get_ref().1.alpn_protocol() == Some(b"h2") {
                let _ = http2::Builder::new(TokioExecutor::new())
                    .serve_connection(TokioIo::new(tls), service)
                    .await;
            } else {
                let _ = http1::Builder::new()
                    .serve_connection(TokioIo::new(tls), service)
                    .await;
            }
        });
    }
}

async fn handle(
    config: &'static Config,
    req: Request<Incoming>,
) -> Result<Response<Reply>, Infallible> {
    let is_messages = req.method() == Method::POST && req.uri().path() == "/v1/messages";
    let is_stats = req.method() == Method::GET && req.uri().path() == "/stats";
    let body = match req.into_body().collect().await {
        Ok(collected) => collected.to_bytes(),
        Err(_) => Bytes::new(),
    };
    let stream = is_messages && wants_stream(&body);
    let admission = is_messages.then(|| {
        config.requests.fetch_add(1, Ordering::Relaxed);
        let cost = if stream {
            config.costs.1
        } else {
            config.costs.0
        };
        let limits = config.limits.as_ref()?;
        let admission = limits.lock().expect("buckets").admit(
            cost,
            std::time::Instant::now(),
            SystemTime::now(),
        );
        Some(admission)
    });
    let admission = admission.flatten();
    let refused = admission.as_ref().is_some_and(|a| !a.admitted);
    let (status, content_type, reply) = if is_stats {
        let stats = format!(
            r#"{{"requests":{},"rate_limited":{}}}"#,
            config.requests.load(Ordering::Relaxed),
            config.rate_limited.load(Ordering::Relaxed)
        );
        (
            StatusCode::OK,
            "application/json",
            Reply::Full(Some(stats.into())),
        )
    } else if !is_messages {
        (
            StatusCode::NOT_FOUND,
            "application/json",
            Reply::Full(Some(Bytes::from_static(NOT_FOUND.as_bytes()))),
        )
    } else if refused {
        config.rate_limited.fetch_add(1, Ordering::Relaxed);
        (
            StatusCode::TOO_MANY_REQUESTS,
            "application/json",
            Reply::Full(Some(Bytes::from_static(RATE_LIMITED.as_bytes()))),
        )
    } else if stream {
        let sse = Reply::Sse {
            chunks: config.chunks,
            next: 0,
            interval: config.interval,
            sleep: None,
            waiting: false,
        };
        (StatusCode::OK, "text/event-stream", sse)
    } else {
        (
            StatusCode::OK,
            "application/json",
            Reply::Full(Some(Bytes::from_static(MESSAGE.as_bytes()))),
        )
    };
    let mut response = Response::new(reply);
    *response.status_mut() = status;
    let headers = response.headers_mut();
    headers.insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
    headers.insert("request-id", HeaderValue::from_static("req_bench"));
    if let Some(admission) = admission {
        if refused {
            headers.insert(header::RETRY_AFTER, admission.retry_after_secs().into());
        }
        for (name, value) in admission.headers {
            if let (Ok(name), Ok(value)) = (
                HeaderName::from_bytes(name.as_bytes()),
                HeaderValue::from_str(&value),
            ) {
                headers.insert(name, value);
            }
        }
    }
    Ok(response)
}

/// Whether a JSON body sets `"stream": true` (a byte scan, no parse).
fn wants_stream(body: &[u8]) -> bool {
    const KEY: &[u8] = b"\"stream\"";
    let mut rest = body;
    while let Some(at) = rest.windows(KEY.len()).position(|w| w == KEY) {
        rest = &rest[at + KEY.len()..];
        let value = rest.trim_ascii_start();
        if let Some(value) = value.strip_prefix(b":") {
            return value.trim_ascii_start().starts_with(b"true");
        }
    }
    false
}

/// A static body, or the SSE chunks paced by `interval`.
enum Reply {
    Full(Option<Bytes>),
    Sse {
        chunks: &'static [Bytes],
        next: usize,
        interval: Duration,
        sleep: Option<Pin<Box<Sleep>>>,
        /// Whether `sleep` is armed for the next chunk.
        waiting: bool,
    },
}

impl Body for Reply {
    type Data = Bytes;
    type Error = Infallible;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Infallible>>> {
        match self.get_mut() {
            Reply::Full(bytes) => Poll::Ready(bytes.take().map(|b| Ok(Frame::data(b)))),
            Reply::Sse {
                chunks,
                next,
                interval,
                sleep,
                waiting,
            } => {
                let Some(chunk) = chunks.get(*next) else {
                    return Poll::Ready(None);
                };
                if *next > 0 && !interval.is_zero() {
                    let timer =
                        sleep.get_or_insert_with(|| Box::pin(tokio::time::sleep(*interval)));
                    if !*waiting {
                        timer.as_mut().reset(Instant::now() + *interval);
                        *waiting = true;
                    }
                    ready!(timer.as_mut().poll(cx));
                    *waiting = false;
                }
                *next += 1;
                Poll::Ready(Some(Ok(Frame::data(chunk.clone()))))
            }
        }
    }

    fn is_end_stream(&self) -> bool {
        match self {
            Reply::Full(bytes) => bytes.is_none(),
            Reply::Sse { chunks, next, .. } => *next >= chunks.len(),
        }
    }

    fn size_hint(&self) -> SizeHint {
        match self {
            Reply::Full(bytes) => {
                SizeHint::with_exact(bytes.as_ref().map_or(0, |b| b.len() as u64))
            }
            Reply::Sse { .. } => SizeHint::default(),
        }
    }
}
