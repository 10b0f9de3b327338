//! Happy Eyeballs (RFC 8305): connecting to a name's addresses as a race,
//! not in turn. The addresses are interleaved by family (the resolver's
//! first family first), the next attempt starts when the one before fails
//! or after the connection attempt delay (250 ms, the RFC's
//! recommendation) without an answer, and the first connection wins; the
//! others are dropped. A black-holed address then costs 250 ms, not a
//! whole connect timeout.

use std::net::SocketAddr;
use std::time::Duration;
use tokio::net::TcpStream;
use tokio::task::JoinSet;
use tokio::time::Instant;

/// RFC 8305's recommended connection attempt delay.
pub const ATTEMPT_DELAY: Duration = Duration::from_millis(250);

/// One address tried.
#[derive(Debug)]
pub struct Tried {
    pub addr: SocketAddr,
    /// When its attempt started, from the race's start.
    pub started: Duration,
    /// How long it took to connect, or why it did not.
    pub result: Result<Duration, String>,
}

/// What a race came to: the winner, and every attempt that finished.
#[derive(Debug)]
pub struct Raced {
    pub stream: Option<(TcpStream, SocketAddr)>,
    pub tried: Vec<Tried>,
}

/// Races connections to `addrs`, each attempt bounded by `timeout`. With
/// `every`, the race goes on after a winner until every address has
/// answered or timed out (for `levee doctor`, which reports them all);
/// otherwise it ends with the first connection.
pub async fn race(addrs: &[SocketAddr], timeout: Duration, every: bool) -> Raced {
    let order = interleave(addrs);
    let began = Instant::now();
    let mut attempts = JoinSet::new();
    let mut next = 0;
    let mut next_at = began;
    let mut raced = Raced {
        stream: None,
        tried: Vec::with_capacity(order.len()),
    };
    loop {
        let more = next < order.len() && (every || raced.stream.is_none());
        if !more && attempts.is_empty() {
            return raced;
        }
        tokio::select! {
            biased;
            joined = attempts.join_next(), if !attempts.is_empty() => {
                let Some(Ok((i, started, result))) = joined else { continue };
                let addr: SocketAddr = order[i];
                let (stream, result) = match result {
                    Ok((stream, took)) => (Some(stream), Ok(took)),
                    Err(why) => {
                        // A failure starts the next attempt at once.
                        next_at = Instant::now();
                        (None, Err(why))
                    }
                };
                raced.tried.push(Tried { addr, started, result });
                if let (Some(stream), None) = (stream, &raced.stream) {
                    raced.stream = Some((stream, addr));
                    if !every {
                        return raced;
                    }
                }
            }
            () = tokio::time::sleep_until(next_at), if more => {
                let addr = order[next];
                let started = began.elapsed();
                let i = next;
                attempts.spawn(async move {
                    let at = Instant::now();
                    let result = match tokio::time::timeout(timeout, TcpStream::connect(addr)).await {
                        Ok(Ok(stream)) => Ok((stream, at.elapsed())),
                        Ok(Err(e)) => Err(e.to_string()),
                        Err(_) => Err(format!("no answer within {timeout:?}")),
                    };
                    (i, started, result)
                });
                next += 1;
                next_at = Instant::now() + ATTEMPT_DELAY;
            }
        }
    }
}

/// The addresses alternating by family, each family in the resolver's
/// order, starting with the family of the first (RFC 8305, section 4).
fn interleave(addrs: &[SocketAddr]) -> Vec<SocketAddr> {
    let Some(first) = addrs.first() else {
        return Vec::new();
    };
    let (mut same, mut other): (Vec<SocketAddr>, Vec<SocketAddr>) =
        addrs.iter().partition(|a| a.is_ipv6() == first.is_ipv6());
    same.reverse();
    other.reverse();
    let mut out = Vec::with_capacity(addrs.len());
    while !same.is_empty() || !other.is_empty() {
        out.extend(same.pop());
        out.extend(other.pop());
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn a(s: &str) -> SocketAddr {
        s.parse().unwrap()
    }

    #[test]
    fn families_alternate_from_the_first_answers() {
        let given = [
            a("[2001:db8::1]:443"),
            a("[2001:db8::2]:443"),
            a("[2001:db8::3]:443"),
            a("192.0.2.1:443"),
        ];
        assert_eq!(interleave(&given), [given[0], given[3], given[1], given[2]]);
        let v4_first = [a("192.0.2.1:1"), a("[::1]:1"), a("192.0.2.2:1")];
        assert_eq!(
            interleave(&v4_first),
            [v4_first[0], v4_first[1], v4_first[2]]
        );
        assert!(interleave(&[]).is_empty());
    }

    #[tokio::test(start_paused = false)]
    async fn a_refused_address_hands_over_at_once_and_the_live_one_wins() {
        let live = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = live.local_addr().unwrap().port();
        // 127.0.0.2 on the same port: nothing listens, the connect is refused.
        let refused = SocketAddr::from(([127, 0, 0, 2], port));
        let raced = race(
            &[refused, live.local_addr().unwrap()],
            Duration::from_secs(5),
            false,
        )
        .await;
        let (_, addr) = raced.stream.expect("a connection");
        assert_eq!(addr, live.local_addr().unwrap());
        assert_eq!(raced.tried.len(), 2);
        assert!(raced.tried[0].result.is_err());
        // The second started when the first failed, not after the delay.
        assert!(raced.tried[1].started < ATTEMPT_DELAY, "{:?}", raced.tried);
    }
}
