//! Reading and writing `wasi:io` streams without blocking the executor:
//! every wait is a pollable handed to spin-sdk's executor.

use crate::clock::wait_on;
use wasi::io::streams::{InputStream, OutputStream, StreamError};

/// How much one read asks for.
const READ_SIZE: u64 = 16 * 1024;

/// What one read gave.
#[derive(Debug, PartialEq, Eq)]
pub enum Chunk {
    /// Some bytes.
    Data(Vec<u8>),
    /// The stream ended cleanly.
    End,
    /// The stream failed; why.
    Failed(String),
}

/// Reads the next bytes of `stream`, waiting for them if needed.
pub async fn read(stream: &InputStream) -> Chunk {
    loop {
        match stream.read(READ_SIZE) {
            Ok(bytes) if bytes.is_empty() => wait_on(|| stream.subscribe()).await,
            Ok(bytes) => return Chunk::Data(bytes),
            Err(StreamError::Closed) => return Chunk::End,
            Err(StreamError::LastOperationFailed(e)) => return Chunk::Failed(e.to_debug_string()),
        }
    }
}

/// Why a write failed, and how many of its bytes went out first.
#[derive(Debug)]
pub struct WriteError {
    /// Bytes of the data written before the failure.
    pub written: usize,
    /// What happened.
    pub message: String,
}

/// Writes all of `data` and waits until it is flushed.
pub async fn write_all(stream: &OutputStream, data: &[u8]) -> Result<(), WriteError> {
    let mut written = 0;
    let fail = |written: usize, e: StreamError| WriteError {
        written,
        message: match e {
            StreamError::Closed => "the peer closed the stream".to_owned(),
            StreamError::LastOperationFailed(e) => e.to_debug_string(),
        },
    };
    while written < data.len() {
        let room = stream.check_write().map_err(|e| fail(written, e))?;
        if room == 0 {
            wait_on(|| stream.subscribe()).await;
            continue;
        }
        let n = usize::try_from(room)
            .unwrap_or(usize::MAX)
            .min(data.len() - written);
        stream
            .write(&data[written..written + n])
            .map_err(|e| fail(written, e))?;
        written += n;
    }
    stream.flush().map_err(|e| fail(written, e))?;
    while stream.check_write().map_err(|e| fail(written, e))? == 0 {
        wait_on(|| stream.subscribe()).await;
    }
    Ok(())
}

/// Copies `from` to `to` until `from` ends, at most `limit` bytes; how many
/// were copied. It stops with why when `from` failed or ran past `limit`,
/// and with `None` when writing to `to` failed (its owner knows why).
pub async fn pipe(
    from: &InputStream,
    to: &OutputStream,
    limit: usize,
) -> Result<u64, Option<String>> {
    let mut copied = 0u64;
    loop {
        match read(from).await {
            Chunk::Data(d) => {
                copied += d.len() as u64;
                if copied > limit as u64 {
                    return Err(Some(format!(
                        "request body is larger than the {limit} bytes levee accepts"
                    )));
                }
                write_all(to, &d).await.map_err(|_| None)?;
            }
            Chunk::End => return Ok(copied),
            Chunk::Failed(e) => return Err(Some(format!("could not read the request body: {e}"))),
        }
    }
}
