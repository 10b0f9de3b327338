//! SSE event boundaries, as the bundled host keeps them: whole events pass
//! at once, a partial one waits, and the stream is complete only after
//! `message_stop` (or the upstream's own `error` event).

/// Tracks event boundaries over a byte stream.
#[derive(Default)]
pub struct Cursor {
    pending: Vec<u8>,
    /// `message_stop` or an upstream `error` event has passed.
    pub complete: bool,
}

impl Cursor {
    /// Takes new bytes; returns the complete events ready to forward.
    pub fn push(&mut self, data: &[u8]) -> Vec<u8> {
        self.pending.extend_from_slice(data);
        let ready = match last_boundary(&self.pending) {
            Some(end) => {
                let rest = self.pending.split_off(end);
                std::mem::replace(&mut self.pending, rest)
            }
            None => Vec::new(),
        };
        if !ready.is_empty() && !self.complete {
            self.complete = finishes_stream(&ready);
        }
        ready
    }

    /// What is held back (a partial event).
    pub fn take_rest(&mut self) -> Vec<u8> {
        std::mem::take(&mut self.pending)
    }
}

/// Just past the last blank line.
fn last_boundary(data: &[u8]) -> Option<usize> {
    let n = data.len();
    (1..n).rev().find_map(|i| match (data[i - 1], data[i]) {
        (b'\n', b'\n') | (b'\r', b'\r') => Some(i + 1),
        (b'\n', b'\r') if data.get(i + 1) == Some(&b'\n') => Some(i + 2),
        _ => None,
    })
}

/// Whether these events include the stream's last.
fn finishes_stream(events: &[u8]) -> bool {
    events.split(|&b| b == b'\n').any(|line| {
        let line = line.strip_suffix(b"\r").unwrap_or(line);
        matches!(
            line,
            b"event: message_stop" | b"event:message_stop" | b"event: error" | b"event:error"
        )
    })
}

/// The terminal frame for a broken stream, in the API's error shape.
pub fn error_frame(why: &str) -> Vec<u8> {
    let message = format!("levee: {why}; the response is incomplete");
    let json = crate::reply::error_json("api_error", &message, "");
    format!("event: error\ndata: {json}\n\n").into_bytes()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn whole_events_pass_and_partial_ones_wait() {
        let mut c = Cursor::default();
        assert_eq!(
            c.push(b"event: a\ndata: 1\n\nevent: b\nda"),
            b"event: a\ndata: 1\n\n"
        );
        assert_eq!(c.push(b"ta: 2\n"), b"");
        assert_eq!(c.push(b"\n"), b"event: b\ndata: 2\n\n");
        assert!(!c.complete);
        c.push(b"event: message_stop\ndata: {}\n\n");
        assert!(c.complete);
        assert_eq!(c.push(b"data: 1\r\n\r\ndata: 2"), b"data: 1\r\n\r\n");
        assert_eq!(c.take_rest(), b"data: 2");
    }

    #[test]
    fn the_error_frame_is_the_apis_shape() {
        let frame = String::from_utf8(error_frame("upstream stalled")).unwrap();
        let data = frame
            .strip_prefix("event: error\ndata: ")
            .and_then(|f| f.strip_suffix("\n\n"))
            .unwrap();
        let v: serde_json::Value = serde_json::from_str(data).unwrap();
        assert_eq!(v["error"]["type"], "api_error");
        assert_eq!(
            v["error"]["message"],
            "levee: upstream stalled; the response is incomplete"
        );
    }
}
