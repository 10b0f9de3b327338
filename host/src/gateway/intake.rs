//! Reading a client's request body, bounded by its endpoint's limit
//! (`[rails.body_limits]`).
//!
//! A body levee reads (messages, count_tokens, chat completions, any other
//! path) is held in memory. A body it only passes on (a batch, a file
//! upload: up to 256 and 500 MB) is held in memory up to [`SPOOL_ABOVE`];
//! past that it goes to an unnamed file in `rails.spool_dir`, which every
//! attempt reads again, so retries and failover work for it as for any
//! request, and memory stays bounded whatever the body's size.

use crate::upstream::{Outgoing, Spool};
use bytes::{Bytes, BytesMut};
use http_body_util::{BodyExt, Limited};
use hyper::body::Incoming;
use levee_exchange::LocalReply;
use std::fs::File;
use std::io::Write;
use std::path::{Path, PathBuf};

/// The most of a passed-on body held in memory; past it the body is
/// spooled, and written in pieces of this size.
pub const SPOOL_ABOVE: usize = 1 << 20;

/// A request body, whole.
pub enum RequestBody {
    Memory(Bytes),
    Spooled(Spool),
}

impl RequestBody {
    /// The bytes levee may read: none of a spooled body, which levee only
    /// passes on.
    pub fn readable(&self) -> &[u8] {
        match self {
            RequestBody::Memory(bytes) => bytes,
            RequestBody::Spooled(_) => &[],
        }
    }

    /// An attempt's body: the whole body, from its start.
    pub fn outgoing(&self) -> Outgoing {
        match self {
            RequestBody::Memory(bytes) => Outgoing::memory(bytes.clone()),
            RequestBody::Spooled(spool) => Outgoing::spooled(spool),
        }
    }
}

/// Reads `body`, at most `limit` bytes. With a `spool` directory, a body
/// past [`SPOOL_ABOVE`] is written there instead of held.
pub async fn read(
    body: Incoming,
    limit: usize,
    spool: Option<&Path>,
) -> Result<RequestBody, LocalReply> {
    let Some(dir) = spool else {
        return match Limited::new(body, limit).collect().await {
            Ok(collected) => Ok(RequestBody::Memory(collected.to_bytes())),
            Err(e) if e.is::<http_body_util::LengthLimitError>() => {
                Err(LocalReply::body_too_large(limit))
            }
            Err(e) => Err(LocalReply::body_unreadable(&e.to_string())),
        };
    };
    let mut body = body;
    let mut held = BytesMut::new();
    let mut file: Option<File> = None;
    let mut total = 0usize;
    while let Some(frame) = body.frame().await {
        let frame = frame.map_err(|e| LocalReply::body_unreadable(&e.to_string()))?;
        let Ok(data) = frame.into_data() else {
            continue;
        };
        total += data.len();
        if total > limit {
            return Err(LocalReply::body_too_large(limit));
        }
        held.extend_from_slice(&data);
        if held.len() > SPOOL_ABOVE {
            let piece = held.split().freeze();
            file = Some(write(file, dir.to_path_buf(), piece).await?);
        }
    }
    match file {
        None => Ok(RequestBody::Memory(held.freeze())),
        Some(f) => {
            let f = write(Some(f), dir.to_path_buf(), held.freeze()).await?;
            Ok(RequestBody::Spooled(Spool::new(f, total as u64)))
        }
    }
}

/// Appends `piece` to the spool `file`, made first in `dir` if there is
/// none yet, on the blocking pool.
async fn write(file: Option<File>, dir: PathBuf, piece: Bytes) -> Result<File, LocalReply> {
    let written = tokio::task::spawn_blocking(move || {
        let mut file = match file {
            Some(f) => f,
            None => tempfile::tempfile_in(&dir)?,
        };
        file.write_all(&piece)?;
        Ok::<_, std::io::Error>(file)
    })
    .await
    .map_err(std::io::Error::other)
    .and_then(|r| r);
    written.map_err(|e| {
        tracing::warn!(error = %e, "could not spool a request body");
        LocalReply::body_unspooled(&e.to_string())
    })
}
