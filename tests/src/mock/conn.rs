//! One accepted connection: the control block that steps use to reset,
//! close, cut or shut it down, and the I/O wrapper that knows what reached
//! the socket.
//!
//! A cut must land *after* the bytes before it have been written to the
//! socket, or the peer would see less than scripted. The wrapper observes
//! flushes: on HTTP/1.1 the cut fires at the first flush after the body
//! asked for it (hyper polls the body and flushes in the same task); on
//! HTTP/2 it parses the outgoing frames and counts each stream's flushed
//! `DATA` bytes (and the `GOAWAY`s, for a graceful shutdown).

use std::collections::HashMap;
use std::io;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpStream;
use tokio::sync::Notify;

/// How a step ends its connection.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Kill {
    /// Abortive close: `SO_LINGER 0`, the peer sees a RST.
    Reset,
    /// Orderly close: the peer sees a FIN.
    Close,
}

/// Shared between a connection's task, its I/O wrapper and its requests.
pub(crate) struct ConnCtl {
    /// The connection's id, as recorded in [`super::Recorded::connection`].
    pub id: u64,
    killed: Notify,
    /// Asks the connection's task for a graceful shutdown.
    going_away: Notify,
    reset_on_drop: AtomicBool,
    /// HTTP/1.1: kill (as `reset_on_drop` says) at the next completed flush.
    cut_on_flush: AtomicBool,
    /// HTTP/2 only: flushed frames per stream, and who waits on them.
    h2: Option<Mutex<H2Frames>>,
    h2_flushed: Notify,
    next_stream: AtomicU32,
}

impl ConnCtl {
    pub fn new(id: u64, h2: bool) -> Arc<Self> {
        Arc::new(ConnCtl {
            id,
            killed: Notify::new(),
            going_away: Notify::new(),
            reset_on_drop: AtomicBool::new(false),
            cut_on_flush: AtomicBool::new(false),
            h2: h2.then(|| Mutex::new(H2Frames::default())),
            h2_flushed: Notify::new(),
            next_stream: AtomicU32::new(1),
        })
    }

    /// Whether this is an HTTP/2 connection.
    pub fn is_h2(&self) -> bool {
        self.h2.is_some()
    }

    /// The HTTP/2 stream id of the next request: hyper calls the service in
    /// stream order, and clients open streams 1, 3, 5, …
    pub fn next_stream_id(&self) -> u32 {
        self.next_stream.fetch_add(2, Ordering::Relaxed)
    }

    /// Asks the connection's task to drop the connection now.
    pub fn kill(&self, how: Kill) {
        if how == Kill::Reset {
            self.reset_on_drop.store(true, Ordering::SeqCst);
        }
        self.killed.notify_one();
    }

    /// Resolves once [`ConnCtl::kill`] has been called.
    pub async fn killed(&self) {
        self.killed.notified().await;
    }

    /// Asks the connection's task to shut the connection down gracefully:
    /// on HTTP/2 a GOAWAY (streams in flight finish), on HTTP/1.1 a close
    /// once the response in flight is sent.
    pub fn go_away(&self) {
        self.going_away.notify_one();
    }

    /// Resolves once [`ConnCtl::go_away`] has been called.
    pub async fn asked_to_go_away(&self) {
        self.going_away.notified().await;
    }

    /// HTTP/2: waits until the peer has read the GOAWAY. A graceful
    /// shutdown sends a GOAWAY and a PING, and only once the peer's PING
    /// ack is in, a second GOAWAY with the last stream processed: with that
    /// one flushed, the peer has read the first.
    pub async fn h2_gone_away(&self) {
        let Some(h2) = &self.h2 else { return };
        loop {
            let notified = self.h2_flushed.notified();
            tokio::pin!(notified);
            notified.as_mut().enable();
            if h2.lock().expect("h2 frames").flushed_goaways >= 2 {
                return;
            }
            notified.await;
        }
    }

    /// HTTP/1.1 cut: end the connection (`how`) as soon as what is buffered
    /// now has been flushed to the socket.
    pub fn cut_at_next_flush(&self, how: Kill) {
        if how == Kill::Reset {
            self.reset_on_drop.store(true, Ordering::SeqCst);
        }
        self.cut_on_flush.store(true, Ordering::SeqCst);
    }

    /// HTTP/2: waits until stream `id`'s HEADERS and at least `data` bytes of
    /// its DATA have been flushed to the socket.
    pub async fn h2_flushed(&self, id: u32, data: u64) {
        let Some(h2) = &self.h2 else { return };
        loop {
            let notified = self.h2_flushed.notified();
            tokio::pin!(notified);
            notified.as_mut().enable();
            if let Some(s) = h2.lock().expect("h2 frames").flushed.get(&id)
                && s.headers
                && s.data >= data
            {
                return;
            }
            notified.await;
        }
    }

    fn wrote(&self, bytes: &[u8]) {
        if let Some(h2) = &self.h2 {
            h2.lock().expect("h2 frames").feed(bytes);
        }
    }

    fn flushed(&self) {
        if self.cut_on_flush.load(Ordering::SeqCst) {
            self.killed.notify_one();
        }
        if let Some(h2) = &self.h2 {
            h2.lock().expect("h2 frames").flush();
            self.h2_flushed.notify_waiters();
        }
    }
}

/// What has gone out on one HTTP/2 stream.
#[derive(Clone, Copy, Debug, Default)]
struct StreamOut {
    headers: bool,
    data: u64,
}

/// A parser of the server's outgoing HTTP/2 frames (plaintext side).
#[derive(Debug, Default)]
struct H2Frames {
    header: [u8; 9],
    header_len: usize,
    /// Payload bytes left in the current frame.
    remaining: usize,
    /// The current frame's stream, if it is a DATA frame.
    data_stream: Option<u32>,
    written: HashMap<u32, StreamOut>,
    flushed: HashMap<u32, StreamOut>,
    /// GOAWAY frames written, and flushed.
    written_goaways: u32,
    flushed_goaways: u32,
}

impl H2Frames {
    fn feed(&mut self, mut bytes: &[u8]) {
        while !bytes.is_empty() {
            if self.remaining > 0 {
                let n = self.remaining.min(bytes.len());
                if let Some(id) = self.data_stream {
                    self.written.entry(id).or_default().data += n as u64;
                }
                self.remaining -= n;
                bytes = &bytes[n..];
                continue;
            }
            let n = (9 - self.header_len).min(bytes.len());
            self.header[self.header_len..self.header_len + n].copy_from_slice(&bytes[..n]);
            self.header_len += n;
            bytes = &bytes[n..];
            if self.header_len == 9 {
                let h = self.header;
                self.header_len = 0;
                self.remaining =
                    usize::from(h[0]) << 16 | usize::from(h[1]) << 8 | usize::from(h[2]);
                let id = u32::from_be_bytes([h[5], h[6], h[7], h[8]]) & 0x7fff_ffff;
                self.data_stream = None;
                match h[3] {
                    0 => self.data_stream = Some(id),
                    1 => self.written.entry(id).or_default().headers = true,
                    7 => self.written_goaways += 1,
                    _ => {}
                }
            }
        }
    }

    fn flush(&mut self) {
        self.flushed.clone_from(&self.written);
        self.flushed_goaways = self.written_goaways;
    }
}

/// The socket a (possibly TLS-wrapped) stream runs on.
pub(crate) trait TcpSide {
    /// The underlying TCP stream.
    fn tcp(&self) -> &TcpStream;
}

impl TcpSide for TcpStream {
    fn tcp(&self) -> &TcpStream {
        self
    }
}

impl TcpSide for tokio_rustls::server::TlsStream<TcpStream> {
    fn tcp(&self) -> &TcpStream {
        self.get_ref().0
    }
}

/// Wraps a connection's stream: reports writes and flushes to its
/// [`ConnCtl`], and resets the socket on drop when asked to.
pub(crate) struct MockIo<S: TcpSide> {
    inner: S,
    ctl: Arc<ConnCtl>,
}

impl<S: TcpSide> MockIo<S> {
    pub fn new(inner: S, ctl: Arc<ConnCtl>) -> Self {
        MockIo { inner, ctl }
    }
}

impl<S: TcpSide> Drop for MockIo<S> {
    fn drop(&mut self) {
        if self.ctl.reset_on_drop.load(Ordering::SeqCst) {
            // The RST goes out when the socket closes, right after this.
            let _ = self.inner.tcp().set_zero_linger();
        }
    }
}

impl<S: TcpSide + AsyncRead + Unpin> AsyncRead for MockIo<S> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_read(cx, buf)
    }
}

impl<S: TcpSide + AsyncWrite + Unpin> AsyncWrite for MockIo<S> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let this = &mut *self;
        let written = Pin::new(&mut this.inner).poll_write(cx, buf);
        if let Poll::Ready(Ok(n)) = written {
            this.ctl.wrote(&buf[..n]);
        }
        written
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let this = &mut *self;
        let written = Pin::new(&mut this.inner).poll_write_vectored(cx, bufs);
        if let Poll::Ready(Ok(mut n)) = written {
            for buf in bufs {
                let take = n.min(buf.len());
                this.ctl.wrote(&buf[..take]);
                n -= take;
                if n == 0 {
                    break;
                }
            }
        }
        written
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = &mut *self;
        let flushed = Pin::new(&mut this.inner).poll_flush(cx);
        if let Poll::Ready(Ok(())) = flushed {
            this.ctl.flushed();
        }
        flushed
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}
