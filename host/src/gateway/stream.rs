//! Delivering a response body: passed through as it arrives, watched for
//! stalls and cuts, and never ended silently when it breaks.
//!
//! For SSE (`text/event-stream`), levee forwards each event as soon as its
//! terminating blank line arrives, so a failure never leaves half an event
//! on the wire: the terminal `event: error` frame that follows is always
//! parseable, in the stream's own dialect. (The API writes each event
//! whole, so this adds no delay.) A stream that ends without its last event
//! (`message_stop`, or `data: [DONE]` for OpenAI's format) is cut, even if
//! the upstream closed cleanly; one the upstream ended with its own `error`
//! event ended in an upstream error. A broken non-SSE body is aborted, so
//! the client sees an incomplete response rather than a short one.

use super::reply::BoxError;
use bytes::Bytes;
use http_body::{Body, Frame};
pub use levee_exchange::body::Termination;
use levee_exchange::sse::{Cursor as SseCursor, Dialect, End};
use std::pin::Pin;
use std::task::{Context, Poll, ready};
use std::time::Duration;
use tokio::time::{Instant, Sleep};

/// What watches a delivered body: it sees every byte that goes to the
/// client, and hears once how the body ended and how many bytes were sent.
/// One object for both, so that what the bytes teach (the usage) is at
/// hand when the body ends, with no sharing between two callbacks.
pub trait Watch: Send + Sync {
    /// Bytes about to go to the client.
    fn bytes(&mut self, _data: &[u8]) {}
    /// The body ended.
    fn end(self: Box<Self>, how: Termination, sent: u64);
}

/// A closure is a watch that only hears the end.
impl<F: FnOnce(Termination, u64) + Send + Sync> Watch for F {
    fn end(self: Box<Self>, how: Termination, sent: u64) {
        self(how, sent)
    }
}

/// An event stream's format, and the request id its error frame names.
pub struct Sse {
    /// Messages, or OpenAI's chat completions.
    pub dialect: Dialect,
    /// The upstream's `request-id`, else levee's.
    pub request_id: String,
}

/// A response body under watch.
///
/// The stall timer is armed lazily: only when the upstream has nothing
/// ready, at the last byte's time plus `idle`, and moved on only when it
/// fires early. Resetting it for every frame cost a timer re-registration,
/// and tokio wakes its driver (a `write(2)` to an eventfd and one more
/// `epoll_wait`) whenever a timer lands earlier than the one it parked
/// for: one extra wake-up per proxied request. Most JSON bodies arrive
/// with their head and never arm it at all.
pub struct Guarded<B> {
    inner: B,
    prefix: Option<Bytes>,
    idle: Duration,
    /// When the last bytes arrived (or the watch began).
    last_bytes: Instant,
    timer: Option<Pin<Box<Sleep>>>,
    sse: Option<SseCursor>,
    /// The id an error frame names.
    request_id: String,
    sent: u64,
    ended: bool,
    watch: Option<Box<dyn Watch>>,
}

impl<B> Guarded<B> {
    /// Watches `inner`, whose first bytes (already read) are `prefix`; an
    /// event stream as `sse` says, or not.
    pub fn new(
        inner: B,
        prefix: Bytes,
        sse: Option<Sse>,
        idle: Duration,
        watch: Box<dyn Watch>,
    ) -> Guarded<B> {
        let (sse, request_id) = match sse {
            Some(s) => (Some(SseCursor::new(s.dialect)), s.request_id),
            None => (None, String::new()),
        };
        Guarded {
            inner,
            prefix: (!prefix.is_empty()).then_some(prefix),
            idle,
            last_bytes: Instant::now(),
            timer: None,
            request_id,
            sse,
            sent: 0,
            ended: false,
            watch: Some(watch),
        }
    }

    /// Ready once `idle` has passed since the last bytes.
    fn poll_stall(&mut self, cx: &mut Context<'_>) -> Poll<()> {
        let due = self.last_bytes + self.idle;
        let timer = self
            .timer
            .get_or_insert_with(|| Box::pin(tokio::time::sleep_until(due)));
        loop {
            ready!(timer.as_mut().poll(cx));
            // Fired at an older deadline: bytes came since, so wait on.
            if timer.deadline() >= due {
                return Poll::Ready(());
            }
            timer.as_mut().reset(due);
        }
    }

    fn finish(&mut self, how: Termination) {
        self.ended = true;
        if let Some(watch) = self.watch.take() {
            watch.end(how, self.sent);
        }
    }

    fn emit(&mut self, data: Bytes) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        self.sent += data.len() as u64;
        if let Some(watch) = self.watch.as_mut() {
            watch.bytes(&data);
        }
        Poll::Ready(Some(Ok(Frame::data(data))))
    }

    /// Ends a broken body: SSE gets a terminal error frame, anything else
    /// is aborted.
    fn break_off(
        &mut self,
        how: Termination,
        why: String,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        tracing::warn!(termination = how.label(), reason = %why, "response body broke off");
        let dialect = self.sse.as_ref().map(SseCursor::dialect);
        self.finish(how);
        if let Some(dialect) = dialect {
            let frame = dialect.error_frame(&why, &self.request_id);
            self.emit(Bytes::from(frame))
        } else {
            Poll::Ready(Some(Err(why.into())))
        }
    }
}

impl<B> Body for Guarded<B>
where
    B: Body<Data = Bytes> + Unpin,
    B::Error: std::fmt::Display,
{
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        let this = self.get_mut();
        if this.ended {
            return Poll::Ready(None);
        }
        if let Some(prefix) = this.prefix.take() {
            return match this.sse.as_mut().map(|s| s.push(prefix.clone())) {
                None => this.emit(prefix),
                Some(ready) if !ready.is_empty() => this.emit(ready),
                Some(_) => Pin::new(this).poll_frame(cx),
            };
        }
        loop {
            match Pin::new(&mut this.inner).poll_frame(cx) {
                Poll::Ready(Some(Ok(frame))) => {
                    this.last_bytes = Instant::now();
                    let frame = match frame.into_data() {
                        Ok(data) => data,
                        Err(trailers) => return Poll::Ready(Some(Ok(trailers))),
                    };
                    let out = match this.sse.as_mut() {
                        Some(sse) => sse.push(frame),
                        None => frame,
                    };
                    // A body of known length is over with its last byte,
                    // and hyper drops it then without polling for the end:
                    // finish it here, or the drop would count it as a client
                    // gone away.
                    let last = this.inner.is_end_stream() && this.sse.is_none();
                    if !out.is_empty() {
                        let poll = this.emit(out);
                        if last {
                            this.finish(Termination::Complete);
                        }
                        return poll;
                    }
                }
                Poll::Ready(Some(Err(e))) => {
                    return this.break_off(
                        Termination::UpstreamCut,
                        format!("upstream failed mid-stream: {e}"),
                    );
                }
                Poll::Ready(None) => {
                    let how = match this.sse.as_ref().map(|s| (s.dialect(), s.end())) {
                        Some((dialect, None)) => {
                            let why = format!(
                                "upstream closed the stream before {}",
                                dialect.last_event()
                            );
                            return this.break_off(Termination::UpstreamCut, why);
                        }
                        Some((_, Some(End::Error(status)))) => {
                            Termination::UpstreamError { status }
                        }
                        Some((_, Some(End::Done))) | None => Termination::Complete,
                    };
                    let rest = this
                        .sse
                        .as_mut()
                        .map(SseCursor::take_rest)
                        .unwrap_or_default();
                    if rest.is_empty() {
                        this.finish(how);
                        return Poll::Ready(None);
                    }
                    // The bytes sent, as reported, include this rest.
                    let poll = this.emit(rest);
                    this.finish(how);
                    return poll;
                }
                Poll::Pending => {
                    ready!(this.poll_stall(cx));
                    let why = format!(
                        "upstream stalled: no bytes for {} ms",
                        this.idle.as_millis()
                    );
                    return this.break_off(Termination::Stall, why);
                }
            }
        }
    }
}

impl<B> Drop for Guarded<B> {
    fn drop(&mut self) {
        if !self.ended {
            self.finish(Termination::ClientGone);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::{Arc, Mutex};

    /// Where a test body's termination (and bytes sent) lands.
    type Seen = Arc<Mutex<Option<(Termination, u64)>>>;

    /// A guarded `inner` whose termination lands in the returned slot.
    fn watched<B>(inner: B) -> (Guarded<B>, Seen) {
        let seen = Arc::new(Mutex::new(None));
        let slot = seen.clone();
        let on_end = Box::new(move |how, bytes| {
            *slot.lock().unwrap() = Some((how, bytes));
        });
        let guarded = Guarded::new(inner, Bytes::new(), None, Duration::from_secs(60), on_end);
        (guarded, seen)
    }

    #[tokio::test]
    async fn a_body_of_known_length_is_complete_with_its_last_byte() {
        use http_body_util::BodyExt;
        let (mut body, seen) = watched(http_body_util::Full::new(Bytes::from_static(b"hello")));
        let frame = body.frame().await.unwrap().unwrap();
        assert_eq!(frame.into_data().unwrap(), &b"hello"[..]);
        // hyper drops a body once its content-length is written.
        drop(body);
        assert_eq!(*seen.lock().unwrap(), Some((Termination::Complete, 5)));
    }

    /// What a [`Kept`] watch saw: the bytes, and how the body ended.
    type Sight = (Vec<u8>, Option<(Termination, u64)>);

    /// A watch that keeps what it saw.
    #[derive(Clone, Default)]
    struct Kept(Arc<Mutex<Sight>>);

    impl Watch for Kept {
        fn bytes(&mut self, data: &[u8]) {
            self.0.lock().unwrap().0.extend_from_slice(data);
        }

        fn end(self: Box<Self>, how: Termination, sent: u64) {
            self.0.lock().unwrap().1 = Some((how, sent));
        }
    }

    #[tokio::test]
    async fn the_watch_sees_every_byte_sent_including_an_sse_tail() {
        use http_body_util::BodyExt;
        let (tx, rx) = tokio::sync::mpsc::unbounded_channel();
        let kept = Kept::default();
        let prefix = Bytes::from_static(b"event: ping\n");
        let idle = Duration::from_secs(60);
        let sse = Some(Sse {
            dialect: Dialect::Messages,
            request_id: "req_1".into(),
        });
        let mut body = Guarded::new(Fed(rx), prefix, sse, idle, Box::new(kept.clone()));
        tx.send(Bytes::from_static(
            b"data: {}\n\nevent: message_stop\ndata: {}\n\n: a tail",
        ))
        .unwrap();
        drop(tx);
        let mut sent = Vec::new();
        while let Some(frame) = body.frame().await {
            sent.extend_from_slice(&frame.unwrap().into_data().unwrap());
        }
        assert_eq!(
            sent,
            b"event: ping\ndata: {}\n\nevent: message_stop\ndata: {}\n\n: a tail"
        );
        let (seen, end) = kept.0.lock().unwrap().clone();
        assert_eq!(seen, sent);
        assert_eq!(end, Some((Termination::Complete, sent.len() as u64)));
    }

    /// One data frame, then nothing, with no end in sight.
    struct OneThenSilence(Option<Bytes>);

    impl Body for OneThenSilence {
        type Data = Bytes;
        type Error = std::io::Error;
        fn poll_frame(
            mut self: Pin<&mut Self>,
            _: &mut Context<'_>,
        ) -> Poll<Option<Result<Frame<Bytes>, std::io::Error>>> {
            match self.0.take() {
                Some(data) => Poll::Ready(Some(Ok(Frame::data(data)))),
                None => Poll::Pending,
            }
        }
    }

    #[tokio::test]
    async fn a_body_dropped_before_its_end_is_a_client_gone() {
        use http_body_util::BodyExt;
        let (mut body, seen) = watched(OneThenSilence(Some(Bytes::from_static(b"part"))));
        body.frame().await.unwrap().unwrap();
        drop(body);
        assert_eq!(*seen.lock().unwrap(), Some((Termination::ClientGone, 4)));
    }

    /// Frames from a channel: whatever the test sends, when it sends it.
    struct Fed(tokio::sync::mpsc::UnboundedReceiver<Bytes>);

    impl Body for Fed {
        type Data = Bytes;
        type Error = std::io::Error;
        fn poll_frame(
            mut self: Pin<&mut Self>,
            cx: &mut Context<'_>,
        ) -> Poll<Option<Result<Frame<Bytes>, std::io::Error>>> {
            self.0.poll_recv(cx).map(|d| d.map(|d| Ok(Frame::data(d))))
        }
    }

    /// The stall is counted from the last bytes, not from the start: bytes
    /// every 80 ms keep a 100 ms idle timeout from firing, and silence
    /// ends the body exactly 100 ms after the last of them.
    #[tokio::test(start_paused = true)]
    async fn the_stall_timer_runs_from_the_last_bytes() {
        use http_body_util::BodyExt;
        let (tx, rx) = tokio::sync::mpsc::unbounded_channel();
        let seen = Arc::new(Mutex::new(None));
        let slot = seen.clone();
        let on_end = Box::new(move |how, bytes| *slot.lock().unwrap() = Some((how, bytes)));
        let idle = Duration::from_millis(100);
        let mut body = Guarded::new(Fed(rx), Bytes::new(), None, idle, on_end);
        let start = Instant::now();
        let feeder = tokio::spawn(async move {
            for _ in 0..4 {
                tokio::time::sleep(Duration::from_millis(80)).await;
                tx.send(Bytes::from_static(b"data")).unwrap();
            }
            // Keep the channel open: silence, not an end.
            tokio::time::sleep(Duration::from_secs(10)).await;
            drop(tx);
        });
        for _ in 0..4 {
            let frame = body.frame().await.unwrap().unwrap();
            assert_eq!(frame.into_data().unwrap(), &b"data"[..]);
        }
        let err = body.frame().await.unwrap().unwrap_err();
        assert!(err.to_string().contains("no bytes for 100 ms"), "{err}");
        assert_eq!(start.elapsed(), Duration::from_millis(420));
        assert_eq!(*seen.lock().unwrap(), Some((Termination::Stall, 16)));
        feeder.abort();
    }
}
