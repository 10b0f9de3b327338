//! The streaming half of `bench/gateway.sh`: holds many SSE streams open,
//! and times the first event of a stream.
//!
//! ```text
//! sse-hold hold --addr HOST:PORT --streams N [--rss-pid PID] [--timeout-s S]
//! sse-hold ttfb --addr NAME=HOST:PORT [--addr NAME=HOST:PORT ...] [--count N] [--warmup N]
//! ```
//!
//! `hold` opens `N` connections at once, each with one streaming
//! `POST /v1/messages`, and waits until every one of them has received its
//! first SSE event (counted, not guessed). It then prints one line,
//! `hold streams=N ok=N failed=0 all_first_event_ms=T` followed by
//! `rss_kb=… hwm_kb=…` of `--rss-pid` read at that moment, and exits,
//! dropping the streams. It exits 1 if any stream failed or the timeout
//! passed first.
//!
//! `ttfb` sends `N` streaming requests one after another over one kept-alive
//! connection per target, alternating between the targets request by
//! request (so drift on a noisy machine hits all of them alike), reads each
//! stream to its end, and prints per target the median and p90 of the time
//! from sending the request to the response headers and to the first SSE
//! event, in microseconds.

use bytes::Bytes;
use http::{Method, Request, header};
use http_body_util::{BodyExt, Full};
use hyper::client::conn::http1;
use hyper_util::rt::TokioIo;
use levee_tests::flags::{pairs, parse};
use std::net::SocketAddr;
use std::process::ExitCode;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};
use tokio::net::TcpStream;
use tokio::sync::Notify;

const USAGE: &str = "usage:
  sse-hold hold --addr HOST:PORT --streams N [--rss-pid PID] [--timeout-s S]
  sse-hold ttfb --addr NAME=HOST:PORT [--addr NAME=HOST:PORT ...] [--count N] [--warmup N]";

const BODY: &str = concat!(
    r#"{"model":"claude-mock-1","max_tokens":256,"stream":true,"#,
    r#""messages":[{"role":"user","content":"Say hello to the benchmark."}]}"#
);

type Sender = http1::SendRequest<Full<Bytes>>;

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("tokio runtime");
    let result = match args.first().map(String::as_str) {
        Some("hold") => runtime.block_on(hold(&args[1..])),
        Some("ttfb") => runtime.block_on(ttfb(&args[1..])),
        _ => Err(String::new()),
    };
    match result {
        Ok(code) => code,
        Err(e) => {
            if !e.is_empty() {
                eprintln!("sse-hold: {e}");
            }
            eprintln!("{USAGE}");
            ExitCode::from(2)
        }
    }
}

fn request(addr: SocketAddr) -> Request<Full<Bytes>> {
    Request::builder()
        .method(Method::POST)
        .uri("/v1/messages")
        .header(header::HOST, addr.to_string())
        .header(header::CONTENT_TYPE, "application/json")
        .header("anthropic-version", "2023-06-01")
        .header("x-api-key", "bench")
        .body(Full::new(Bytes::from_static(BODY.as_bytes())))
        .expect("request")
}

async fn connect(addr: SocketAddr) -> Result<Sender, String> {
    let tcp = TcpStream::connect(addr)
        .await
        .map_err(|e| format!("connect {addr}: {e}"))?;
    let _ = tcp.set_nodelay(true);
    let (sender, conn) = http1::handshake(TokioIo::new(tcp))
        .await
        .map_err(|e| format!("handshake {addr}: {e}"))?;
    tokio::spawn(conn);
    Ok(sender)
}

/// Sends one streaming request; returns (time to headers, time to the first
/// event, the rest of the body) — the body is left unread.
async fn first_event(
    sender: &mut Sender,
    addr: SocketAddr,
) -> Result<(Duration, Duration, hyper::body::Incoming), String> {
    sender
        .ready()
        .await
        .map_err(|e| format!("not ready: {e}"))?;
    let start = Instant::now();
    let response = sender
        .send_request(request(addr))
        .await
        .map_err(|e| format!("request: {e}"))?;
    let headers = start.elapsed();
    if !response.status().is_success() {
        return Err(format!("status {}", response.status()));
    }
    let mut body = response.into_body();
    let mut seen = Vec::new();
    loop {
        let frame = body
            .frame()
            .await
            .ok_or("stream ended before its first event")?
            .map_err(|e| format!("body: {e}"))?;
        if let Ok(data) = frame.into_data() {
            seen.extend_from_slice(&data);
            // One complete event: an `event:` line and the blank line after it.
            if seen.starts_with(b"event:") && seen.windows(2).any(|w| w == b"\n\n") {
                return Ok((headers, start.elapsed(), body));
            }
        }
    }
}

fn proc_status_kb(pid: u32, key: &str) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let line = status.lines().find(|l| l.starts_with(key))?;
    line[key.len()..]
        .trim()
        .trim_end_matches("kB")
        .trim()
        .parse()
        .ok()
}

async fn hold(args: &[String]) -> Result<ExitCode, String> {
    let mut addr = None;
    let mut streams = 1000usize;
    let mut rss_pid = None;
    let mut timeout = Duration::from_secs(60);
    for (name, value) in pairs(args)? {
        match name {
            "--addr" => addr = Some(parse::<SocketAddr>(name, value)?),
            "--streams" => streams = parse(name, value)?,
            "--rss-pid" => rss_pid = Some(parse::<u32>(name, value)?),
            "--timeout-s" => timeout = Duration::from_secs(parse(name, value)?),
            other => return Err(format!("unknown argument {other}")),
        }
    }
    let addr = addr.ok_or("--addr is required")?;
    let ok = Arc::new(AtomicUsize::new(0));
    let failed = Arc::new(AtomicUsize::new(0));
    let finished = Arc::new(AtomicUsize::new(0));
    let done = Arc::new(Notify::new());
    let release = Arc::new(Notify::new());
    let start = Instant::now();
    let mut tasks = Vec::with_capacity(streams);
    for _ in 0..streams {
        let (ok, failed, finished) = (ok.clone(), failed.clone(), finished.clone());
        let (done, release) = (done.clone(), release.clone());
        tasks.push(tokio::spawn(async move {
            let released = release.notified();
            let outcome = async {
                let mut sender = connect(addr).await?;
                let held = first_event(&mut sender, addr).await?;
                Ok::<_, String>((sender, held))
            }
            .await;
            match &outcome {
                Ok(_) => {
                    ok.fetch_add(1, Ordering::SeqCst);
                }
                Err(e) => {
                    if failed.fetch_add(1, Ordering::SeqCst) < 3 {
                        eprintln!("sse-hold: stream failed: {e}");
                    }
                }
            }
            if finished.fetch_add(1, Ordering::SeqCst) + 1 == streams {
                done.notify_one();
            }
            // Keep the stream (and its connection) open until released.
            released.await;
            drop(outcome);
        }));
    }
    let all = tokio::time::timeout(timeout, done.notified()).await.is_ok();
    let elapsed = start.elapsed();
    let (rss, hwm) = match rss_pid {
        Some(pid) => (
            proc_status_kb(pid, "VmRSS:").unwrap_or(0),
            proc_status_kb(pid, "VmHWM:").unwrap_or(0),
        ),
        None => (0, 0),
    };
    let (ok, failed) = (ok.load(Ordering::SeqCst), failed.load(Ordering::SeqCst));
    println!(
        "hold streams={streams} ok={ok} failed={failed} all_first_event_ms={} rss_kb={rss} hwm_kb={hwm}",
        elapsed.as_millis()
    );
    release.notify_waiters();
    for task in tasks {
        task.abort();
    }
    Ok(if all && failed == 0 && ok == streams {
        ExitCode::SUCCESS
    } else {
        eprintln!("sse-hold: only {ok} of {streams} streams got their first event");
        ExitCode::FAILURE
    })
}

fn quantile(sorted: &[Duration], q: f64) -> f64 {
    let at = ((sorted.len() - 1) as f64 * q).round() as usize;
    sorted[at].as_secs_f64() * 1e6
}

async fn ttfb(args: &[String]) -> Result<ExitCode, String> {
    let mut targets: Vec<(String, SocketAddr)> = Vec::new();
    let mut count = 200usize;
    let mut warmup = 20usize;
    for (name, value) in pairs(args)? {
        match name {
            "--addr" => {
                let (label, addr) = value
                    .split_once('=')
                    .ok_or(format!("--addr {value}: expected NAME=HOST:PORT"))?;
                targets.push((label.to_string(), parse(name, addr)?));
            }
            "--count" => count = parse(name, value)?,
            "--warmup" => warmup = parse(name, value)?,
            other => return Err(format!("unknown argument {other}")),
        }
    }
    if targets.is_empty() || count == 0 {
        return Err("at least one --addr and a --count above 0 are needed".into());
    }
    let mut senders = Vec::new();
    for (_, addr) in &targets {
        senders.push(connect(*addr).await?);
    }
    let mut headers: Vec<Vec<Duration>> = vec![Vec::new(); targets.len()];
    let mut events: Vec<Vec<Duration>> = vec![Vec::new(); targets.len()];
    for round in 0..warmup + count {
        for (i, (_, addr)) in targets.iter().enumerate() {
            let (h, e, mut body) = first_event(&mut senders[i], *addr).await?;
            // Read the stream to its end, so the connection is reused.
            while let Some(frame) = body.frame().await {
                frame.map_err(|e| format!("body: {e}"))?;
            }
            if round >= warmup {
                headers[i].push(h);
                events[i].push(e);
            }
        }
    }
    for (i, (label, _)) in targets.iter().enumerate() {
        headers[i].sort();
        events[i].sort();
        println!(
            "ttfb target={label} n={count} headers_p50_us={:.0} headers_p90_us={:.0} first_event_p50_us={:.0} first_event_p90_us={:.0}",
            quantile(&headers[i], 0.5),
            quantile(&headers[i], 0.9),
            quantile(&events[i], 0.5),
            quantile(&events[i], 0.9),
        );
    }
    Ok(ExitCode::SUCCESS)
}
