//! The thinnest reverse proxy hyper makes, for the gateway benchmark: the
//! floor under levee's throughput and latency.
//!
//! `hyper-proxy --listen 127.0.0.1:PORT --upstream HOST:PORT [--workers N]`
//!
//! It is levee's stack with none of levee's work: the same threading (one
//! single-threaded tokio runtime per worker, an acceptor handing each
//! connection to one of them), the same allocator (mimalloc), hyper-util's
//! server, levee's own upstream client and pool
//! (`levee::upstream::UpstreamClient`), and the request body read whole before
//! it is sent, as levee does to replay it. No policy, limits, metrics, logs,
//! header handling or body watch. What levee costs beyond this is levee's;
//! what this costs beyond nginx is the stack's. An upstream failure is a
//! bare 502. It prints `listening on ADDR` once bound.

use bytes::Bytes;
use http::{Request, Response, StatusCode, Uri};
use http_body_util::{BodyExt, Either, Empty};
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto;
use levee::upstream::{Outgoing, UpstreamBody, UpstreamClient};
use levee_tests::flags;
use std::convert::Infallible;
use std::io::Write;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::mpsc;

#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

const USAGE: &str = "usage: hyper-proxy --listen ADDR --upstream HOST:PORT [--workers N]";

struct Args {
    listen: SocketAddr,
    upstream: String,
    workers: usize,
}

fn parse_args() -> Result<Args, String> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let (mut listen, mut upstream, mut workers) = (None, None, 2);
    for (name, value) in flags::pairs(&args)? {
        match name {
            "--listen" => listen = Some(flags::parse(name, value)?),
            "--upstream" => upstream = Some(value.to_owned()),
            "--workers" => {
                workers = flags::parse(name, value)?;
                if workers == 0 {
                    return Err(format!("{name} {value}: not a positive number"));
                }
            }
            other => return Err(format!("unknown argument {other}")),
        }
    }
    Ok(Args {
        listen: listen.ok_or("--listen is required")?,
        upstream: upstream.ok_or("--upstream is required")?,
        workers,
    })
}

fn main() {
    let args = parse_args().unwrap_or_else(|e| {
        eprintln!("hyper-proxy: {e}\n{USAGE}");
        std::process::exit(2);
    });
    let clients = clients(&args.upstream, args.workers).unwrap_or_else(|e| {
        eprintln!("hyper-proxy: --upstream {}: {e:#}", args.upstream);
        std::process::exit(2);
    });
    let upstream: Arc<str> = args.upstream.into();
    let queues: Vec<_> = (0..args.workers)
        .map(|i| {
            let (tx, rx) = mpsc::unbounded_channel();
            let (upstream, clients) = (upstream.clone(), clients.clone());
            std::thread::spawn(move || worker(rx, upstream, clients, i));
            tx
        })
        .collect();
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("a tokio runtime");
    runtime.block_on(async move {
        let listener = tokio::net::TcpListener::bind(args.listen)
            .await
            .unwrap_or_else(|e| {
                eprintln!("hyper-proxy: bind {}: {e}", args.listen);
                std::process::exit(1);
            });
        let addr = listener.local_addr().expect("a bound address");
        let mut stdout = std::io::stdout();
        let _ = writeln!(stdout, "listening on {addr}");
        let _ = stdout.flush();
        for next in (0..queues.len()).cycle() {
            let stream = match listener.accept().await {
                Ok((stream, _)) => stream.into_std(),
                Err(e) => {
                    eprintln!("hyper-proxy: accept: {e}");
                    continue;
                }
            };
            if let Ok(stream) = stream {
                let _ = queues[next].send(stream);
            }
        }
    });
}

/// levee's clients for the upstream, one per worker, as levee builds them
/// (with room for every benchmark connection).
fn clients(upstream: &str, workers: usize) -> anyhow::Result<Arc<[UpstreamClient]>> {
    let toml = format!(
        "[[upstreams]]\nname = \"floor\"\nurl = \"http://{upstream}\"\nmax_connections = 512\n"
    );
    let config = levee::config::Config::from_toml(&toml, None, &Default::default())?;
    Ok(UpstreamClient::per_worker(&config.upstreams[0], workers, None, &config.dns)?.into())
}

type Reply = Response<Either<UpstreamBody, Empty<Bytes>>>;

/// One worker: serves every connection it is handed, with its own client.
fn worker(
    mut handed: mpsc::UnboundedReceiver<std::net::TcpStream>,
    upstream: Arc<str>,
    clients: Arc<[UpstreamClient]>,
    index: usize,
) {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("a tokio runtime");
    runtime.block_on(async move {
        let server = auto::Builder::new(TokioExecutor::new());
        while let Some(stream) = handed.recv().await {
            let Ok(stream) = tokio::net::TcpStream::from_std(stream) else {
                continue;
            };
            let _ = stream.set_nodelay(true);
            let (clients, upstream) = (clients.clone(), upstream.clone());
            let service = service_fn(move |req| {
                let (clients, upstream) = (clients.clone(), upstream.clone());
                async move { Ok::<_, Infallible>(forward(&clients[index], &upstream, req).await) }
            });
            let conn = server
                .serve_connection(TokioIo::new(stream), service)
                .into_owned();
            tokio::spawn(conn);
        }
    });
}

async fn forward(client: &UpstreamClient, upstream: &str, req: Request<Incoming>) -> Reply {
    let (mut parts, body) = req.into_parts();
    let Ok(body) = body.collect().await else {
        return bad_gateway();
    };
    let path = parts.uri.path_and_query().map_or("/", |p| p.as_str());
    let Ok(uri) = format!("http://{upstream}{path}").parse::<Uri>() else {
        return bad_gateway();
    };
    parts.uri = uri;
    parts.headers.remove(http::header::HOST);
    let req = Request::from_parts(parts, Outgoing::memory(body.to_bytes()));
    match client.send(req, Duration::from_secs(60)).await {
        Ok(resp) => resp.map(Either::Left),
        Err(_) => bad_gateway(),
    }
}

fn bad_gateway() -> Reply {
    let mut resp = Response::new(Either::Right(Empty::new()));
    *resp.status_mut() = StatusCode::BAD_GATEWAY;
    resp
}
