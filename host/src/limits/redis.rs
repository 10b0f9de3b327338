//! The wire to Redis: the one script ([`SCRIPT`]) that applies queued
//! settlements and tries a reservation atomically, in one round trip.
//! [`super::shared::SharedLimiter`] decides what to send.

use redis::aio::{ConnectionManager, ConnectionManagerConfig};
use serde::Serialize;
use std::time::Duration;

/// The Lua source: buckets as in `bucket.rs`, on the server's clock.
pub const SCRIPT: &str = include_str!("redis.lua");

/// A change to shared state that needs no answer; queued and sent with the
/// next call.
#[derive(Clone, Debug, PartialEq, Serialize)]
#[serde(tag = "o", rename_all = "lowercase")]
pub enum Op {
    /// An estimate of `held` tokens really cost `actual`.
    Settle {
        /// The bucket's key.
        k: String,
        /// Its configured capacity.
        cap: u64,
        /// What was held.
        held: u64,
        /// What it cost.
        actual: u64,
    },
    /// `n` requests taken but never sent.
    Refund {
        /// The bucket's key.
        k: String,
        /// Its configured capacity.
        cap: u64,
        /// How many.
        n: u64,
    },
    /// Concurrency leases that ended.
    Release {
        /// The lease set's key.
        k: String,
        /// The leases (never empty).
        ids: Vec<String>,
    },
    /// Leases still in use: extend them by `ttl` ms.
    Renew {
        /// The lease set's key.
        k: String,
        /// The leases (never empty).
        ids: Vec<String>,
        /// How long they live now, in ms.
        ttl: u64,
    },
    /// The upstream's rate-limit headers.
    Correct {
        /// The bucket's key.
        k: String,
        /// Its configured capacity.
        cap: u64,
        /// The reported limit.
        #[serde(skip_serializing_if = "Option::is_none")]
        limit: Option<u64>,
        /// The reported remaining budget.
        #[serde(skip_serializing_if = "Option::is_none")]
        remaining: Option<u64>,
    },
    /// A 429: grant nothing for `wait` ms.
    Close {
        /// The bucket's key.
        k: String,
        /// Its configured capacity.
        cap: u64,
        /// For how long, in ms.
        wait: u64,
    },
}

/// One bucket a reservation takes from.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Want {
    /// The bucket's key.
    pub k: String,
    /// Its configured capacity.
    pub cap: u64,
    /// How much.
    pub n: u64,
    /// Held as an estimate (tokens), not taken for good (requests).
    pub hold: bool,
    /// An estimate above the capacity is capped to it (output tokens).
    pub cap_to_capacity: bool,
    /// The limit's name, for a "never fits" answer.
    pub kind: &'static str,
}

/// One concurrency limit a reservation takes a place in.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Seat {
    /// The lease set's key.
    pub k: String,
    /// The limit.
    pub max: u64,
    /// Places taken.
    pub n: u64,
}

/// A reservation, all or nothing.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Ask {
    /// The lease's id, unique across processes.
    pub id: String,
    /// How long a concurrency lease lives unless renewed, in ms.
    pub ttl: u64,
    /// Buckets.
    pub b: Vec<Want>,
    /// Concurrency limits.
    pub z: Vec<Seat>,
}

#[derive(Serialize)]
struct Call<'a> {
    ops: &'a [Op],
    #[serde(skip_serializing_if = "Option::is_none")]
    ask: Option<&'a Ask>,
}

/// What the script answered.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Answer {
    /// No reservation was asked.
    Done,
    /// Granted: what each [`Want`] took, in order.
    Granted(Vec<u64>),
    /// Everything fits in this many ms.
    Wait(u64),
    /// A concurrency limit is full.
    Busy,
    /// This limit is smaller than the charge.
    Never(String),
}

/// A lazily connected, self-reconnecting link to one Redis.
#[derive(Clone)]
pub struct Wire {
    conn: ConnectionManager,
    script: redis::Script,
    timeout: Duration,
}

impl Wire {
    /// A link to `url` (not connected yet) whose calls give up after
    /// `timeout`.
    pub fn new(url: &str, timeout: Duration) -> Result<Wire, String> {
        let client = redis::Client::open(url).map_err(|e| e.to_string())?;
        let config = ConnectionManagerConfig::new()
            .set_connection_timeout(Some(timeout))
            .set_response_timeout(Some(timeout))
            .set_number_of_retries(1)
            .set_max_delay(Duration::from_millis(500));
        let conn =
            ConnectionManager::new_lazy_with_config(client, config).map_err(|e| e.to_string())?;
        Ok(Wire {
            conn,
            script: redis::Script::new(SCRIPT),
            timeout,
        })
    }

    /// Applies `ops`, then tries `ask`: one round trip (two the first time
    /// a fresh server sees the script).
    pub async fn call(&self, ops: &[Op], ask: Option<&Ask>) -> Result<Answer, String> {
        let json = serde_json::to_string(&Call { ops, ask }).map_err(|e| e.to_string())?;
        let mut conn = self.conn.clone();
        let mut invocation = self.script.prepare_invoke();
        invocation.arg(json);
        let reply: Vec<redis::Value> =
            tokio::time::timeout(self.timeout * 2, invocation.invoke_async(&mut conn))
                .await
                .map_err(|_| format!("no answer within {:?}", self.timeout * 2))?
                .map_err(|e| e.to_string())?;
        parse(&reply)
    }
}

fn parse(reply: &[redis::Value]) -> Result<Answer, String> {
    use redis::Value;
    let text = |v: &Value| match v {
        Value::BulkString(b) => Some(String::from_utf8_lossy(b).into_owned()),
        Value::SimpleString(s) => Some(s.clone()),
        _ => None,
    };
    let int = |v: &Value| match v {
        Value::Int(n) => u64::try_from(*n).ok(),
        _ => None,
    };
    let bad = || format!("unexpected reply from the limiter script: {reply:?}");
    let (head, rest) = reply.split_first().ok_or_else(bad)?;
    match text(head).as_deref() {
        Some("none") => Ok(Answer::Done),
        Some("ok") => rest
            .iter()
            .map(|v| int(v).ok_or_else(bad))
            .collect::<Result<_, _>>()
            .map(Answer::Granted),
        Some("wait") => rest.first().and_then(int).map(Answer::Wait).ok_or_else(bad),
        Some("busy") => Ok(Answer::Busy),
        Some("never") => rest
            .first()
            .and_then(text)
            .map(Answer::Never)
            .ok_or_else(bad),
        _ => Err(bad()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use redis::Value;

    #[test]
    fn ops_encode_as_the_script_reads_them() {
        let ops = [
            Op::Correct {
                k: "p:u".into(),
                cap: 50,
                limit: None,
                remaining: Some(3),
            },
            Op::Release {
                k: "p:z".into(),
                ids: vec!["a:1".into()],
            },
        ];
        let json = serde_json::to_string(&Call {
            ops: &ops,
            ask: None,
        })
        .unwrap();
        assert_eq!(
            json,
            r#"{"ops":[{"o":"correct","k":"p:u","cap":50,"remaining":3},{"o":"release","k":"p:z","ids":["a:1"]}]}"#
        );
    }

    #[test]
    fn replies_parse_and_junk_is_an_error() {
        let s = |t: &str| Value::BulkString(t.as_bytes().to_vec());
        assert_eq!(
            parse(&[s("ok"), Value::Int(1), Value::Int(40)]),
            Ok(Answer::Granted(vec![1, 40]))
        );
        assert_eq!(
            parse(&[s("wait"), Value::Int(1200)]),
            Ok(Answer::Wait(1200))
        );
        assert_eq!(parse(&[s("busy")]), Ok(Answer::Busy));
        assert_eq!(
            parse(&[s("never"), s("input_tokens")]),
            Ok(Answer::Never("input_tokens".into()))
        );
        assert_eq!(parse(&[s("none")]), Ok(Answer::Done));
        assert!(parse(&[]).is_err());
        assert!(parse(&[s("wait"), Value::Int(-1)]).is_err());
        assert!(parse(&[s("what")]).is_err());
    }
}
