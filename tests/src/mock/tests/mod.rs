//! The mock's own tests: each step, over a plain hyper client or a raw
//! socket, on HTTP/1.1 and on HTTP/2 over TLS.

mod ratelimit;
mod sse;
mod steps;
mod tls;

use bytes::{Bytes, BytesMut};
use http::Request;
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::client::conn::{http1, http2};
use hyper_util::rt::{TokioExecutor, TokioIo};
use rustls_pki_types::ServerName;
use std::io;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// A short window, used only to assert that nothing arrives.
const QUIET: Duration = Duration::from_millis(300);

/// An HTTP/1.1 connection to `addr`.
async fn h1(addr: SocketAddr) -> http1::SendRequest<Full<Bytes>> {
    let tcp = TcpStream::connect(addr).await.expect("connect");
    let (sender, conn) = http1::handshake(TokioIo::new(tcp)).await.expect("h1");
    tokio::spawn(conn);
    sender
}

/// Sends `request` on `client` once the connection is ready for it.
async fn send(
    client: &mut http1::SendRequest<Full<Bytes>>,
    request: Request<Full<Bytes>>,
) -> hyper::Result<http::Response<Incoming>> {
    client.ready().await?;
    client.send_request(request).await
}

/// A TLS connection to `addr` as `localhost` with `config`; returns the
/// stream and whether ALPN chose h2.
async fn tls(
    addr: SocketAddr,
    config: Arc<rustls::ClientConfig>,
) -> io::Result<tokio_rustls::client::TlsStream<TcpStream>> {
    let tcp = TcpStream::connect(addr).await?;
    let name = ServerName::try_from("localhost").expect("name");
    tokio_rustls::TlsConnector::from(config)
        .connect(name, tcp)
        .await
}

/// An HTTP/2 connection over an established TLS stream.
async fn h2(stream: tokio_rustls::client::TlsStream<TcpStream>) -> http2::SendRequest<Full<Bytes>> {
    let (sender, conn) = http2::handshake(TokioExecutor::new(), TokioIo::new(stream))
        .await
        .expect("h2");
    tokio::spawn(conn);
    sender
}

/// `POST uri` with a Messages-shaped JSON body.
fn post(uri: &str, body: &str) -> Request<Full<Bytes>> {
    Request::post(uri)
        .header("content-type", "application/json")
        .header("host", "localhost")
        .body(Full::new(Bytes::copy_from_slice(body.as_bytes())))
        .expect("request")
}

const BODY: &str =
    r#"{"model":"claude-mock-1","max_tokens":16,"messages":[{"role":"user","content":"hi"}]}"#;

/// Reads a response body frame by frame: the bytes that arrived, and the
/// error that ended it (`None` for a clean end).
async fn drain(mut body: Incoming) -> (Bytes, Option<hyper::Error>) {
    let mut all = BytesMut::new();
    loop {
        match body.frame().await {
            None => return (all.freeze(), None),
            Some(Err(e)) => return (all.freeze(), Some(e)),
            Some(Ok(frame)) => {
                if let Ok(data) = frame.into_data() {
                    all.extend_from_slice(&data);
                }
            }
        }
    }
}

/// Sends a raw HTTP/1.1 POST with `connection: close` and reads until the
/// peer closes: every byte received, and the error (if any) that ended it.
async fn raw_exchange(addr: SocketAddr) -> (Vec<u8>, Option<io::Error>) {
    let mut tcp = raw_send(addr).await;
    raw_read_to_end(&mut tcp).await
}

async fn raw_send(addr: SocketAddr) -> TcpStream {
    let mut tcp = TcpStream::connect(addr).await.expect("connect");
    let request = format!(
        "POST /v1/messages HTTP/1.1\r\nhost: localhost\r\ncontent-type: application/json\r\n\
         connection: close\r\ncontent-length: {}\r\n\r\n{BODY}",
        BODY.len()
    );
    tcp.write_all(request.as_bytes()).await.expect("send");
    tcp
}

async fn raw_read_to_end(tcp: &mut TcpStream) -> (Vec<u8>, Option<io::Error>) {
    let mut all = Vec::new();
    let mut buf = [0u8; 4096];
    loop {
        match tcp.read(&mut buf).await {
            Ok(0) => return (all, None),
            Ok(n) => all.extend_from_slice(&buf[..n]),
            Err(e) => return (all, Some(e)),
        }
    }
}

/// A raw HTTP/1.1 response split into its head and its chunked body: the
/// chunks as framed (the last may be truncated), and whether the final
/// zero-size chunk arrived.
struct Chunked {
    head: String,
    chunks: Vec<Bytes>,
    terminated: bool,
}

impl Chunked {
    fn parse(raw: &[u8]) -> Chunked {
        let end = raw
            .windows(4)
            .position(|w| w == b"\r\n\r\n")
            .expect("a complete head");
        let head = String::from_utf8(raw[..end].to_vec()).expect("ascii head");
        let mut rest = &raw[end + 4..];
        let mut chunks = Vec::new();
        while let Some(line) = rest.windows(2).position(|w| w == b"\r\n") {
            let size = std::str::from_utf8(&rest[..line]).expect("hex");
            let size = usize::from_str_radix(size, 16).expect("chunk size");
            rest = &rest[line + 2..];
            if size == 0 {
                return Chunked {
                    head,
                    chunks,
                    terminated: true,
                };
            }
            let take = size.min(rest.len());
            chunks.push(Bytes::copy_from_slice(&rest[..take]));
            rest = &rest[(take + 2).min(rest.len())..];
        }
        Chunked {
            head,
            chunks,
            terminated: false,
        }
    }

    fn body(&self) -> Bytes {
        self.chunks.concat().into()
    }
}
