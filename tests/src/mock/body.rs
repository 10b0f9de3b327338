//! Response bodies: a whole buffer, or chunks played one by one (an SSE
//! script, or a reply sent in pieces), ending as scripted.

use super::conn::{ConnCtl, Kill};
use super::sse::{SseEnd, SseScript};
use bytes::Bytes;
use futures_util::stream::{self, BoxStream, StreamExt};
use http_body::{Body, Frame, SizeHint};
use std::collections::VecDeque;
use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use tokio::sync::watch;

/// A response body the mock sends.
pub(crate) enum MockBody {
    /// A known body: content-length on HTTP/1.1.
    Full(Option<Bytes>),
    /// Streamed frames: chunked on HTTP/1.1.
    Stream(BoxStream<'static, Result<Frame<Bytes>, io::Error>>),
}

impl MockBody {
    pub fn full(bytes: Bytes) -> Self {
        MockBody::Full((!bytes.is_empty()).then_some(bytes))
    }

    /// Plays `script`'s chunks. `stream_id` is the HTTP/2 stream, `None` on
    /// HTTP/1.1; `stop` turns true when the mock stops.
    pub fn sse(
        script: SseScript,
        ctl: Arc<ConnCtl>,
        stream_id: Option<u32>,
        stop: watch::Receiver<bool>,
    ) -> Self {
        Self::played(script.chunks, script.end, ctl, stream_id, stop)
    }

    /// Plays `chunks` (`(delay before, bytes)`, each its own write), then
    /// ends as `end` says. Arguments as for [`MockBody::sse`].
    pub fn played(
        chunks: Vec<(std::time::Duration, Bytes)>,
        end: SseEnd,
        ctl: Arc<ConnCtl>,
        stream_id: Option<u32>,
        stop: watch::Receiver<bool>,
    ) -> Self {
        let state = SseState {
            chunks: chunks.into(),
            end: Some(end),
            sent: 0,
            ctl,
            stream_id,
            stop,
        };
        MockBody::Stream(stream::unfold(state, SseState::next).boxed())
    }
}

struct SseState {
    chunks: VecDeque<(std::time::Duration, Bytes)>,
    /// `None` once the end has been played.
    end: Option<SseEnd>,
    sent: u64,
    ctl: Arc<ConnCtl>,
    stream_id: Option<u32>,
    stop: watch::Receiver<bool>,
}

type Item = Result<Frame<Bytes>, io::Error>;

impl SseState {
    async fn next(mut self) -> Option<(Item, Self)> {
        if let Some((delay, bytes)) = self.chunks.pop_front() {
            if !delay.is_zero() {
                tokio::time::sleep(delay).await;
            }
            self.sent += bytes.len() as u64;
            return Some((Ok(Frame::data(bytes)), self));
        }
        match self.end.take()? {
            SseEnd::Complete => None,
            SseEnd::Stall => {
                self.stopped().await;
                Some((Err(io::Error::other("mock stopped")), self))
            }
            SseEnd::Cut => {
                match self.stream_id {
                    // hyper flushes what it has buffered right after this
                    // poll; the connection task then drops the socket.
                    None => {
                        self.ctl.cut_at_next_flush(Kill::Reset);
                        self.stopped().await;
                    }
                    Some(id) => self.ctl.h2_flushed(id, self.sent).await,
                }
                // On HTTP/2 hyper answers a body error with RST_STREAM.
                Some((Err(io::Error::other("scripted cut")), self))
            }
            SseEnd::Close => {
                match self.stream_id {
                    None => self.ctl.cut_at_next_flush(Kill::Close),
                    Some(id) => {
                        self.ctl.h2_flushed(id, self.sent).await;
                        self.ctl.kill(Kill::Close);
                    }
                }
                // The connection task drops the connection (and this body)
                // before the mock stops.
                self.stopped().await;
                Some((Err(io::Error::other("mock stopped")), self))
            }
        }
    }

    async fn stopped(&mut self) {
        let _ = self.stop.wait_for(|stopped| *stopped).await;
    }
}

impl Body for MockBody {
    type Data = Bytes;
    type Error = io::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, io::Error>>> {
        match &mut *self {
            MockBody::Full(bytes) => Poll::Ready(bytes.take().map(|b| Ok(Frame::data(b)))),
            MockBody::Stream(frames) => frames.poll_next_unpin(cx),
        }
    }

    fn is_end_stream(&self) -> bool {
        matches!(self, MockBody::Full(None))
    }

    fn size_hint(&self) -> SizeHint {
        match self {
            MockBody::Full(bytes) => {
                SizeHint::with_exact(bytes.as_ref().map_or(0, |b| b.len() as u64))
            }
            MockBody::Stream(_) => SizeHint::default(),
        }
    }
}
