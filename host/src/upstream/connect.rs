//! Connecting to an upstream, layer by layer: DNS, TCP, TLS. Each failure
//! says which layer failed, so the client, the policy and the logs can tell
//! a DNS problem from a refused port from a certificate problem.

use super::dns::Resolver;
use super::egress::Egress;
use crate::config::{Scheme, Upstream};
use crate::core::FailureKind;
use hyper::rt::{Read, ReadBufCursor, Write};
use hyper_util::rt::TokioIo;
use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;
use tokio::net::TcpStream;
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tokio_rustls::TlsConnector;
use tokio_rustls::client::TlsStream;

/// A failed connection attempt, with the layer that failed.
#[derive(Clone, Debug, thiserror::Error)]
#[error("{}: {message}", layer_name(*.kind))]
pub struct ConnectError {
    /// The layer.
    pub kind: FailureKind,
    /// What happened, in words.
    pub message: String,
}

/// The lower-case name of a failure layer, as used in messages and metrics.
pub use levee_exchange::reply::layer_name;

/// Opens connections to one upstream, at most `max_connections` at once.
#[derive(Clone)]
pub struct Connector {
    host: Arc<str>,
    port: u16,
    tls: Option<TlsConnector>,
    connect_timeout: Duration,
    permits: Arc<Semaphore>,
    egress: Option<Arc<Egress>>,
    dns: Resolver,
}

impl Connector {
    /// A connector for `upstream`, with its TLS config when it is https,
    /// opening connections under `permits` (shared by every worker's
    /// connector for the upstream).
    pub fn new(
        upstream: &Upstream,
        tls: Option<Arc<rustls::ClientConfig>>,
        permits: Arc<Semaphore>,
        egress: Option<Arc<Egress>>,
        dns: Resolver,
    ) -> Connector {
        Connector {
            host: upstream.host.as_str().into(),
            port: upstream.port,
            tls: match upstream.scheme {
                Scheme::Https => tls.map(TlsConnector::from),
                Scheme::Http => None,
            },
            connect_timeout: upstream.connect_timeout,
            permits,
            egress,
            dns,
        }
    }

    /// A TCP connection straight to the upstream: the resolved addresses
    /// raced by Happy Eyeballs (`eyeballs.rs`), each attempt bounded by
    /// the connect timeout.
    async fn direct(&self) -> Result<TcpStream, ConnectError> {
        let addrs = self.dns.resolve(&self.host, self.port).await?;
        let failed = |why: String| ConnectError {
            kind: FailureKind::Connect,
            message: format!("cannot connect to {}:{} ({why})", self.host, self.port),
        };
        if let [addr] = addrs[..] {
            // One address: nothing to race.
            return match tokio::time::timeout(self.connect_timeout, TcpStream::connect(addr)).await
            {
                Ok(Ok(stream)) => Ok(stream),
                Ok(Err(e)) => Err(failed(format!("{addr}: {e}"))),
                Err(_) => Err(failed(format!(
                    "{addr}: no answer within {:?}",
                    self.connect_timeout
                ))),
            };
        }
        let raced = super::eyeballs::race(&addrs, self.connect_timeout, false).await;
        let mut last = None;
        for t in &raced.tried {
            if let Err(e) = &t.result {
                let failed = format!("{}: {e}", t.addr);
                tracing::debug!(host = %self.host, "connect failed, {failed}");
                last = Some(failed);
            }
        }
        match raced.stream {
            Some((stream, _)) => Ok(stream),
            None => Err(failed(last.unwrap_or_default())),
        }
    }

    /// A permit to open a connection, at once if one is free.
    pub fn try_permit(&self) -> Option<OwnedSemaphorePermit> {
        self.permits.clone().try_acquire_owned().ok()
    }

    /// A permit to open a connection, once one is free.
    pub async fn permit(&self) -> Result<OwnedSemaphorePermit, ConnectError> {
        self.permits
            .clone()
            .acquire_owned()
            .await
            .map_err(|_| ConnectError {
                kind: FailureKind::Connect,
                message: "connector closed".into(),
            })
    }

    /// A new connection, once a permit is free.
    pub async fn connect(self) -> Result<Conn, ConnectError> {
        let permit = self.permit().await?;
        self.connect_with(permit).await
    }

    /// A new connection under `permit`: DNS, TCP (or a tunnel through the
    /// egress proxy), then TLS.
    pub async fn connect_with(self, permit: OwnedSemaphorePermit) -> Result<Conn, ConnectError> {
        let fail = |kind, message: String| ConnectError { kind, message };
        let tcp = match &self.egress {
            Some(egress) => {
                egress
                    .tunnel(&self.host, self.port, &self.dns, self.connect_timeout)
                    .await?
            }
            None => self.direct().await?,
        };
        let _ = tcp.set_nodelay(true);
        let io = match &self.tls {
            None => Io::Plain(tcp),
            Some(tls) => {
                let name = rustls::pki_types::ServerName::try_from(self.host.to_string()).map_err(
                    |e| {
                        fail(
                            FailureKind::Tls,
                            format!("{} is not a valid TLS name: {e}", self.host),
                        )
                    },
                )?;
                let handshake = tls.connect(name, tcp);
                let stream = tokio::time::timeout(self.connect_timeout, handshake)
                    .await
                    .map_err(|_| {
                        fail(
                            FailureKind::Tls,
                            format!("handshake with {} timed out", self.host),
                        )
                    })?
                    .map_err(|e| fail(FailureKind::Tls, super::tls::explain(&e, &self.host)))?;
                Io::Tls(Box::new(stream))
            }
        };
        let h2 = matches!(&io, Io::Tls(s) if s.get_ref().1.alpn_protocol() == Some(b"h2"));
        Ok(Conn {
            io: TokioIo::new(io),
            h2,
            _permit: permit,
        })
    }
}

enum Io {
    Plain(TcpStream),
    Tls(Box<TlsStream<TcpStream>>),
}

impl tokio::io::AsyncRead for Io {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut tokio::io::ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Io::Plain(s) => Pin::new(s).poll_read(cx, buf),
            Io::Tls(s) => Pin::new(s.as_mut()).poll_read(cx, buf),
        }
    }
}

impl tokio::io::AsyncWrite for Io {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        match self.get_mut() {
            Io::Plain(s) => Pin::new(s).poll_write(cx, buf),
            Io::Tls(s) => Pin::new(s.as_mut()).poll_write(cx, buf),
        }
    }
    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Io::Plain(s) => Pin::new(s).poll_flush(cx),
            Io::Tls(s) => Pin::new(s.as_mut()).poll_flush(cx),
        }
    }
    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Io::Plain(s) => Pin::new(s).poll_shutdown(cx),
            Io::Tls(s) => Pin::new(s.as_mut()).poll_shutdown(cx),
        }
    }
    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        match self.get_mut() {
            Io::Plain(s) => Pin::new(s).poll_write_vectored(cx, bufs),
            Io::Tls(s) => Pin::new(s.as_mut()).poll_write_vectored(cx, bufs),
        }
    }
    fn is_write_vectored(&self) -> bool {
        match self {
            Io::Plain(s) => s.is_write_vectored(),
            Io::Tls(s) => s.is_write_vectored(),
        }
    }
}

/// One upstream connection. Holds a connection permit for its lifetime.
pub struct Conn {
    io: TokioIo<Io>,
    h2: bool,
    _permit: OwnedSemaphorePermit,
}

impl Conn {
    /// Whether TLS negotiated HTTP/2 by ALPN.
    pub fn is_h2(&self) -> bool {
        self.h2
    }
}

impl Read for Conn {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: ReadBufCursor<'_>,
    ) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().io).poll_read(cx, buf)
    }
}

impl Write for Conn {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().io).poll_write(cx, buf)
    }
    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().io).poll_flush(cx)
    }
    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().io).poll_shutdown(cx)
    }
    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().io).poll_write_vectored(cx, bufs)
    }
    fn is_write_vectored(&self) -> bool {
        self.io.is_write_vectored()
    }
}
