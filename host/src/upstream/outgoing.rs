//! The body of a request to an upstream. Every attempt sends it again from
//! its start, so it is kept whole: in memory, or, for a large body levee
//! only passes on (a batch, a file upload), in a spool file on disk that
//! each attempt reads with positioned reads of its own.

use bytes::Bytes;
use http_body::{Body, Frame, SizeHint};
use http_body_util::Full;
use std::fs::File;
use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll, ready};
use tokio::task::JoinHandle;

/// How much of a spool file one read takes.
const CHUNK: usize = 256 << 10;

/// A request body that was too large to hold in memory, in an unnamed
/// temporary file: nothing is left on disk once the last handle goes,
/// whatever way levee ends.
#[derive(Clone, Debug)]
pub struct Spool {
    file: Arc<File>,
    len: u64,
}

impl Spool {
    /// `file`, written in full with `len` bytes.
    pub fn new(file: File, len: u64) -> Spool {
        Spool {
            file: Arc::new(file),
            len,
        }
    }
}

/// One attempt's body.
pub enum Outgoing {
    /// Held in memory.
    Memory(Full<Bytes>),
    /// Read from a spool file, from its start.
    Spooled(SpoolReader),
}

impl Outgoing {
    /// A body of the bytes `body`.
    pub fn memory(body: Bytes) -> Outgoing {
        Outgoing::Memory(Full::new(body))
    }

    /// A body read from `spool`, from its start.
    pub fn spooled(spool: &Spool) -> Outgoing {
        Outgoing::Spooled(SpoolReader {
            spool: spool.clone(),
            at: 0,
            reading: None,
        })
    }
}

impl From<Full<Bytes>> for Outgoing {
    fn from(body: Full<Bytes>) -> Outgoing {
        Outgoing::Memory(body)
    }
}

/// Reads a spool in chunks on the blocking pool. Positioned reads share no
/// file offset, so a reader of an abandoned attempt never disturbs the
/// next attempt's.
pub struct SpoolReader {
    spool: Spool,
    at: u64,
    reading: Option<JoinHandle<io::Result<Bytes>>>,
}

impl SpoolReader {
    fn poll_chunk(&mut self, cx: &mut Context<'_>) -> Poll<Option<io::Result<Bytes>>> {
        if self.reading.is_none() {
            let left = self.spool.len - self.at;
            if left == 0 {
                return Poll::Ready(None);
            }
            let (file, at) = (self.spool.file.clone(), self.at);
            let n = left.min(CHUNK as u64) as usize;
            self.reading = Some(tokio::task::spawn_blocking(move || {
                let mut buf = vec![0; n];
                read_exact_at(&file, &mut buf, at)?;
                Ok(Bytes::from(buf))
            }));
        }
        let handle = self.reading.as_mut().expect("a read in flight");
        let read = ready!(Pin::new(handle).poll(cx));
        self.reading = None;
        let chunk = read.map_err(io::Error::other).and_then(|r| r);
        if let Ok(chunk) = &chunk {
            self.at += chunk.len() as u64;
        }
        Poll::Ready(Some(chunk))
    }
}

#[cfg(unix)]
fn read_exact_at(file: &File, buf: &mut [u8], at: u64) -> io::Result<()> {
    std::os::unix::fs::FileExt::read_exact_at(file, buf, at)
}

#[cfg(windows)]
fn read_exact_at(file: &File, mut buf: &mut [u8], mut at: u64) -> io::Result<()> {
    use std::os::windows::fs::FileExt;
    while !buf.is_empty() {
        match file.seek_read(buf, at)? {
            0 => return Err(io::ErrorKind::UnexpectedEof.into()),
            n => {
                buf = &mut buf[n..];
                at += n as u64;
            }
        }
    }
    Ok(())
}

impl Body for Outgoing {
    type Data = Bytes;
    type Error = io::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, io::Error>>> {
        match self.get_mut() {
            Outgoing::Memory(full) => Pin::new(full)
                .poll_frame(cx)
                .map_err(|never| match never {}),
            Outgoing::Spooled(reader) => reader
                .poll_chunk(cx)
                .map(|chunk| chunk.map(|r| r.map(Frame::data))),
        }
    }

    fn is_end_stream(&self) -> bool {
        match self {
            Outgoing::Memory(full) => full.is_end_stream(),
            Outgoing::Spooled(r) => r.reading.is_none() && r.at == r.spool.len,
        }
    }

    fn size_hint(&self) -> SizeHint {
        match self {
            Outgoing::Memory(full) => full.size_hint(),
            Outgoing::Spooled(r) => SizeHint::with_exact(r.spool.len - r.at),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use http_body_util::BodyExt;
    use std::io::Write;

    fn spool_of(bytes: &[u8]) -> Spool {
        let mut file = tempfile::tempfile().unwrap();
        file.write_all(bytes).unwrap();
        Spool::new(file, bytes.len() as u64)
    }

    #[tokio::test]
    async fn every_reader_of_a_spool_reads_it_whole_from_its_start() {
        let bytes: Vec<u8> = (0..(CHUNK * 2 + 17)).map(|i| (i % 251) as u8).collect();
        let spool = spool_of(&bytes);
        let mut first = Outgoing::spooled(&spool);
        assert_eq!(first.size_hint().exact(), Some(bytes.len() as u64));
        // An abandoned attempt read one chunk; the next reads from 0.
        let frame = first.frame().await.unwrap().unwrap();
        assert_eq!(frame.into_data().unwrap().len(), CHUNK);
        let second = Outgoing::spooled(&spool).collect().await.unwrap();
        assert_eq!(second.to_bytes(), bytes);
        let rest = first.collect().await.unwrap().to_bytes();
        assert_eq!(rest, bytes[CHUNK..]);
    }

    #[tokio::test]
    async fn a_spool_shorter_than_its_length_is_an_error_not_a_short_body() {
        let mut spool = spool_of(b"abc");
        spool.len = 10;
        let read = Outgoing::spooled(&spool).collect().await;
        let Err(e) = read else {
            panic!("the missing bytes are an error");
        };
        assert_eq!(e.kind(), io::ErrorKind::UnexpectedEof);
    }
}
