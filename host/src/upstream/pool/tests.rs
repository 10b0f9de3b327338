use super::*;
use hyper_util::rt::TokioIo;

/// An HTTP/1 sender over an in-memory pipe, and the pipe's far end (the
/// connection closes when it is dropped).
async fn h1() -> (http1::SendRequest<ReqBody>, tokio::io::DuplexStream) {
    let (sender, far, _driver) = h1_driven().await;
    (sender, far)
}

/// As [`h1`], with the connection's driver task.
async fn h1_driven() -> (
    http1::SendRequest<ReqBody>,
    tokio::io::DuplexStream,
    tokio::task::JoinHandle<()>,
) {
    let (near, far) = tokio::io::duplex(1024);
    let (sender, driver) = http1::handshake(TokioIo::new(near)).await.unwrap();
    let driver = tokio::spawn(async move {
        let _ = driver.await;
    });
    (sender, far, driver)
}

fn is_h1(s: Option<Sender>) -> bool {
    matches!(s, Some(Sender::H1(_)))
}

#[tokio::test]
async fn a_returned_connection_is_reused_by_its_worker_only() {
    let pools = Pools::new(2, 100);
    let (sender, _far) = h1().await;
    pools.put(0, sender, 0);
    assert!(pools.checkout(1, 0).is_none());
    assert!(is_h1(pools.checkout(0, 0)));
    assert!(pools.checkout(0, 0).is_none(), "taken");
}

#[tokio::test]
async fn a_connection_goes_to_a_request_waiting_on_another_worker() {
    let pools = Pools::new(2, 100);
    let returned = pools.returned(1);
    let waiting = pools.wait(1);
    let (sender, _far) = h1().await;
    pools.put(0, sender, 0);
    tokio::time::timeout(std::time::Duration::from_secs(5), returned)
        .await
        .expect("the waiting worker is told");
    drop(waiting);
    assert!(pools.checkout(0, 0).is_none());
    assert!(is_h1(pools.checkout(1, 0)));
}

#[tokio::test]
async fn a_worker_with_its_own_waiter_keeps_its_connection() {
    let pools = Pools::new(2, 100);
    let _other = pools.wait(1);
    let _own = pools.wait(0);
    let (sender, _far) = h1().await;
    pools.put(0, sender, 0);
    assert!(pools.checkout(1, 0).is_none());
    assert!(is_h1(pools.checkout(0, 0)));
}

#[tokio::test]
async fn a_waiter_takes_another_workers_idle_connection() {
    let pools = Pools::new(2, 100);
    let (sender, _far) = h1().await;
    pools.put(0, sender, 0);
    assert!(pools.steal_idle(0, 0).is_none(), "only from others");
    assert!(pools.steal_idle(1, 7).is_none(), "only of its generation");
    assert!(pools.steal_idle(1, 0).is_some());
    assert!(pools.checkout(0, 0).is_none());
}

#[tokio::test]
async fn closed_connections_and_old_generations_are_not_reused() {
    let pools = Pools::new(1, 100);
    let (old, _far) = h1().await;
    pools.put(0, old, 0);
    assert!(pools.checkout(0, 1).is_none(), "a new egress generation");
    let (stale, far) = h1().await;
    pools.put(0, stale, 0);
    assert!(
        pools.checkout(0, 1).is_none(),
        "put under the old generation"
    );

    drop(far);

    let (closing, far, driver) = h1_driven().await;
    pools.put(0, closing, 1);
    drop(far);
    driver.await.unwrap();
    assert!(pools.checkout(0, 1).is_none(), "closed while idle");

    let (closed, far, driver) = h1_driven().await;
    drop(far);
    driver.await.unwrap();
    pools.put(0, closed, 1);
    assert!(
        pools.state_of(0).idle.is_empty(),
        "closed before it came back"
    );
}

#[tokio::test]
async fn a_connection_idle_too_long_is_dropped_not_reused() {
    let pools = Pools::new(2, 100);
    let mut far_ends = Vec::new();
    for _ in 0..2 {
        let (sender, far) = h1().await;
        pools.put(0, sender, 0);
        far_ends.push(far);
    }
    let long_ago = Instant::now() - POOL_IDLE - Duration::from_secs(1);
    pools.state_of(0).idle[0].since = long_ago;
    assert!(is_h1(pools.checkout(0, 0)), "the fresh one");
    assert!(pools.checkout(0, 0).is_none(), "not the stale one");

    let (sender, far) = h1().await;
    pools.put(0, sender, 0);
    far_ends.push(far);
    pools.state_of(0).idle[0].since = long_ago;
    assert!(
        pools.steal_idle(1, 0).is_none(),
        "nor taken by another worker"
    );
}

/// An HTTP/2 sender over an in-memory pipe, and the pipe's far end.
async fn h2() -> (http2::SendRequest<ReqBody>, tokio::io::DuplexStream) {
    let (near, far) = tokio::io::duplex(64 * 1024);
    let (sender, driver) =
        http2::handshake(hyper_util::rt::TokioExecutor::new(), TokioIo::new(near))
            .await
            .unwrap();
    tokio::spawn(async move {
        let _ = driver.await;
    });
    (sender, far)
}

fn open_streams(pools: &Pools, worker: usize) -> Vec<usize> {
    let state = pools.state_of(worker);
    state.h2.iter().map(H2::open).collect()
}

#[tokio::test]
async fn an_http2_connection_carries_up_to_the_stream_limit() {
    let pools = Pools::new(1, 2);
    let (sender, _far) = h2().await;
    let first = pools.keep_h2(0, sender, 0);
    let second = pools.checkout(0, 0);
    assert!(
        matches!(second, Some(Sender::H2(..))),
        "one stream to spare"
    );
    assert_eq!(open_streams(&pools, 0), [2]);
    assert!(pools.checkout(0, 0).is_none(), "full: another is needed");

    let (sender, _far2) = h2().await;
    let third = pools.keep_h2(0, sender, 0);
    assert_eq!(open_streams(&pools, 0), [2, 1]);
    drop(first);
    let fourth = pools.checkout(0, 0);
    assert_eq!(
        open_streams(&pools, 0),
        [2, 1],
        "a released stream is taken again, on the oldest connection"
    );
    drop((second, third, fourth));
    assert_eq!(open_streams(&pools, 0), [0, 0]);
}

#[tokio::test]
async fn at_the_cap_a_request_rides_the_least_busy_http2_connection_even_if_full() {
    let pools = Pools::new(2, 1);
    let (busy, _far) = h2().await;
    let (quiet, _far2) = h2().await;
    let _a = pools.keep_h2(0, busy, 0);
    assert!(pools.checkout(0, 0).is_none(), "full");
    let _b = pools.borrow_h2(0);
    let _c = pools.keep_h2(1, quiet, 0);
    assert_eq!(
        (open_streams(&pools, 0), open_streams(&pools, 1)),
        (vec![2], vec![1])
    );
    assert!(pools.borrow_h2(7).is_none(), "only of its generation");
    let _d = pools.borrow_h2(0);
    assert_eq!(
        (open_streams(&pools, 0), open_streams(&pools, 1)),
        (vec![2], vec![2]),
        "the other worker's, less busy"
    );
}

#[tokio::test]
async fn a_new_http2_connection_wakes_requests_waiting_at_the_cap_on_every_worker() {
    let pools = Pools::new(2, 100);
    let (own, other) = (pools.returned(0), pools.returned(1));
    let (sender, _far) = h2().await;
    let _first = pools.keep_h2(0, sender, 0);
    let both = async { tokio::join!(own, other) };
    tokio::time::timeout(Duration::from_secs(5), both)
        .await
        .expect("both woken");
    assert!(
        matches!(pools.borrow_h2(0), Some(Sender::H2(..))),
        "and it rides"
    );
}

#[tokio::test]
async fn closed_http2_connections_and_old_generations_are_forgotten() {
    let pools = Pools::new(1, 10);
    let (sender, far) = h2().await;
    let _kept = pools.keep_h2(0, sender, 0);
    assert!(pools.checkout(0, 1).is_none(), "a new egress generation");
    assert!(open_streams(&pools, 0).is_empty());
    let (sender, _far2) = h2().await;
    let _late = pools.keep_h2(0, sender, 0);
    assert!(
        open_streams(&pools, 0).is_empty(),
        "opened under the old one"
    );

    let (sender, far3) = h2().await;
    let _kept = pools.keep_h2(0, sender, 1);
    drop((far, far3));
    let closed = async {
        while pools.checkout(0, 1).is_some() {
            tokio::task::yield_now().await;
        }
    };
    tokio::time::timeout(Duration::from_secs(5), closed)
        .await
        .expect("the connection closes with its far end");
    assert!(open_streams(&pools, 0).is_empty(), "forgotten");
}

#[tokio::test]
async fn http2_connections_fill_oldest_first_and_idle_out() {
    let pools = Pools::new(1, 2);
    let (a, _far_a) = h2().await;
    let (b, _far_b) = h2().await;
    // Two opened at once, as a burst of first requests does.
    let one = pools.keep_h2(0, a, 0);
    let two = pools.keep_h2(0, b, 0);
    let three = pools.checkout(0, 0);
    assert_eq!(open_streams(&pools, 0), [2, 1], "the oldest filled first");
    drop(two);
    let long_ago = Instant::now() - POOL_IDLE - Duration::from_secs(1);
    for h2 in &pools.state_of(0).h2 {
        *h2.streams.idle_since.lock().unwrap() = long_ago;
    }
    assert!(
        pools.checkout(0, 0).is_none(),
        "the oldest is full, the other idled out"
    );
    assert_eq!(open_streams(&pools, 0), [2], "a busy one never idles out");
    drop((one, three));
    assert!(pools.checkout(0, 0).is_some(), "idle since just now");
}
