//! Shared limits: several levee processes share one set of budgets in a
//! real `redis-server`; when it goes away they fall back (open: each
//! enforces its share; closed: refuse), say so once, and recover when it
//! returns.

use super::limits::{post_within, until_metric};
use super::{FAST_POLICY, MESSAGE, client, header, metric};
use levee_tests::levee::Levee;
use levee_tests::mock::{MockUpstream, Reply, Script};
use levee_tests::redis::RedisServer;
use std::time::{Duration, Instant};

/// A levee sharing `limits` for `upstream` through `redis`.
fn replica(upstream: &MockUpstream, redis: &RedisServer, limits: &str, shared: &str) -> Levee {
    Levee::start(&format!(
        "{FAST_POLICY}\n[limits.redis]\nurl = \"{}\"\n{shared}\n\n\
         [[upstreams]]\nname = \"primary\"\nurl = \"{}\"\n[upstreams.limits]\n{limits}\n",
        redis.url(),
        upstream.url()
    ))
}

/// POSTs `MESSAGE` in the background, with a client timeout of `secs`
/// when given; the task yields the status.
fn spawn_post(levee: &Levee, secs: Option<f64>) -> tokio::task::JoinHandle<u16> {
    let mut request = client()
        .post(format!("{}/v1/messages", levee.url()))
        .header("content-type", "application/json")
        .body(MESSAGE);
    if let Some(secs) = secs {
        request = request.header("x-stainless-timeout", secs.to_string());
    }
    tokio::spawn(async move {
        request
            .send()
            .await
            .expect("levee answers")
            .status()
            .as_u16()
    })
}

fn count(log: &str, needle: &str) -> usize {
    log.lines().filter(|l| l.contains(needle)).count()
}

const AWAY: &str = "the shared limiter (Redis) cannot be reached";
const BACK: &str = "the shared limiter (Redis) is back";

/// The load is lopsided so that one shared budget and three local shares
/// of it (10 each, the fail-open fallback) give different answers: one
/// replica spends most of the 30, and the others get only what it left.
#[tokio::test(flavor = "multi_thread")]
async fn three_replicas_share_one_budget() {
    let upstream = MockUpstream::start(Script::new()).await;
    let redis = RedisServer::start();
    let replicas: Vec<Levee> = (0..3)
        .map(|_| {
            replica(
                &upstream,
                &redis,
                "requests_per_minute = 30",
                "replicas = 3\ntimeout_ms = 2000",
            )
        })
        .collect();
    /// `n` requests to `levee` at once; how many were admitted.
    async fn admitted(levee: &Levee, n: usize) -> usize {
        let asks: Vec<_> = (0..n).map(|_| spawn_post(levee, Some(0.3))).collect();
        let mut ok = 0;
        for ask in asks {
            match ask.await.unwrap() {
                200 => ok += 1,
                429 => {}
                other => panic!("status {other}"),
            }
        }
        ok
    }
    // One request refills every 2 s while the test runs.
    let started = Instant::now();
    let first = admitted(&replicas[0], 24).await;
    assert_eq!(first, 24, "one replica may spend 24 of the shared 30");
    let second = admitted(&replicas[1], 12).await;
    let third = admitted(&replicas[2], 6).await;
    // Each refusal comes at once (the client allows 0.3 s): so few refill.
    let took = started.elapsed();
    assert!(
        took < Duration::from_secs(4),
        "the three rounds took {took:?}"
    );
    let refilled = (took.as_millis() / 2_000) as usize + 1;
    assert!(
        (6..=6 + refilled).contains(&second),
        "the second replica got {second} of the 6 the first one left"
    );
    assert!(
        third <= refilled,
        "the third replica got {third} of what was left"
    );
    assert!(first + second + third <= 30 + refilled);
    assert_eq!(
        upstream.requests().len(),
        first + second + third,
        "every admitted request reached the upstream"
    );
    for levee in &replicas {
        assert_eq!(
            metric(levee, "levee_limiter_backend{backend=\"redis\"}").await,
            1.0
        );
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn losing_redis_falls_back_to_the_local_share_and_recovers() {
    // The second answer takes 600 ms: it is in flight when Redis dies.
    let upstream = MockUpstream::start(Script::of([
        Reply::message(),
        Reply::message().delay(Duration::from_millis(600)),
    ]))
    .await;
    let mut redis = RedisServer::start();
    let levee = replica(
        &upstream,
        &redis,
        "requests_per_minute = 20",
        "replicas = 2\ntimeout_ms = 1000",
    );
    assert_eq!(post_within(&levee, 5.0).await.status(), 200);
    let in_flight = spawn_post(&levee, None);
    let deadline = Instant::now() + Duration::from_secs(10);
    while upstream.requests().len() < 2 {
        assert!(Instant::now() < deadline, "the second request never left");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    redis.kill();
    assert_eq!(in_flight.await.unwrap(), 200, "an admitted request is kept");
    // Fail-open: this process's share is 20 / 2 = 10 a minute, full.
    let mut statuses = Vec::new();
    for _ in 0..11 {
        statuses.push(post_within(&levee, 0.3).await.status().as_u16());
    }
    assert_eq!(&statuses[..10], &[200; 10], "the local share admits 10");
    assert_eq!(statuses[10], 429, "and no more: {statuses:?}");
    assert_eq!(
        metric(&levee, "levee_limiter_switches_total{to=\"fallback\"}").await,
        1.0,
        "one switch, however many requests"
    );
    assert_eq!(count(&levee.log(), AWAY), 1, "logged once");
    // Back: shared limits again, said once, through a fresh connection.
    redis.restart();
    until_metric(&levee, "levee_limiter_backend{backend=\"redis\"}", 1.0).await;
    assert_eq!(
        metric(&levee, "levee_limiter_switches_total{to=\"redis\"}").await,
        1.0
    );
    assert_eq!(count(&levee.log(), BACK), 1);
    let resp = post_within(&levee, 5.0).await;
    assert_eq!(resp.status(), 200, "the fresh Redis has a full bucket");
    let keys = redis.command("KEYS *").expect("redis answers");
    assert!(
        keys.contains("{levee}:u:primary:sonnet:requests"),
        "the grant was taken in Redis: {keys}"
    );
    let status = super::status(&levee).await;
    let switches = super::status::event_details(&status, "limiter-backend");
    assert_eq!(switches.len(), 2, "{switches:?}");
    assert!(switches[0].starts_with("fallback: "), "{switches:?}");
    assert_eq!(switches[1], "redis: Redis answers again");
}

/// Each model class has its own shared bucket: Sonnet's, spent through one
/// replica, refuses Sonnet at the other, which still admits Haiku.
#[tokio::test(flavor = "multi_thread")]
async fn the_shared_buckets_are_per_model_class() {
    let upstream = MockUpstream::start(Script::new()).await;
    let redis = RedisServer::start();
    let (a, b) = (
        replica(
            &upstream,
            &redis,
            "requests_per_minute = 2",
            "timeout_ms = 2000",
        ),
        replica(
            &upstream,
            &redis,
            "requests_per_minute = 2",
            "timeout_ms = 2000",
        ),
    );
    for _ in 0..2 {
        assert_eq!(spawn_post(&a, Some(0.5)).await.unwrap(), 200);
    }
    assert_eq!(
        spawn_post(&b, Some(0.5)).await.unwrap(),
        429,
        "Sonnet's shared bucket is spent"
    );
    let haiku = client()
        .post(format!("{}/v1/messages", b.url()))
        .header("content-type", "application/json")
        .header("x-stainless-timeout", "0.5")
        .body(MESSAGE.replace("claude-sonnet-4-5", "claude-haiku-4-5"))
        .send()
        .await
        .expect("levee answers");
    assert_eq!(haiku.status(), 200, "Haiku's bucket is its own");
    let keys = redis.command("KEYS *").expect("redis answers");
    for class in ["sonnet", "haiku"] {
        let key = format!("{{levee}}:u:primary:{class}:requests");
        assert!(keys.contains(&key), "no {key} in {keys}");
    }
    assert_eq!(upstream.requests().len(), 3);
}

#[tokio::test(flavor = "multi_thread")]
async fn fail_closed_refuses_while_redis_is_away() {
    let upstream = MockUpstream::start(Script::new()).await;
    let mut redis = RedisServer::start();
    let levee = replica(
        &upstream,
        &redis,
        "requests_per_minute = 1000",
        "on_failure = \"closed\"\ntimeout_ms = 200",
    );
    assert_eq!(post_within(&levee, 5.0).await.status(), 200);
    redis.kill();
    let refused = post_within(&levee, 5.0).await;
    assert_eq!(refused.status(), 503);
    assert_eq!(header(&refused, "x-should-retry"), Some("true"));
    let body: serde_json::Value = refused.json().await.expect("JSON error");
    assert_eq!(body["type"], "error");
    assert_eq!(body["error"]["type"], "api_error");
    let message = body["error"]["message"].as_str().unwrap();
    assert!(
        message.contains("limits.redis.on_failure"),
        "the message names the setting: {message}"
    );
    assert_eq!(upstream.requests().len(), 1, "nothing unlimited went out");
    assert_eq!(
        metric(&levee, "levee_limiter_backend{backend=\"refusing\"}").await,
        1.0
    );
    redis.restart();
    until_metric(&levee, "levee_limiter_backend{backend=\"redis\"}", 1.0).await;
    assert_eq!(post_within(&levee, 5.0).await.status(), 200);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_concurrency_limit_holds_across_replicas() {
    let upstream = MockUpstream::start(Script::always(
        Reply::message().delay(Duration::from_millis(800)),
    ))
    .await;
    let redis = RedisServer::start();
    let a = replica(
        &upstream,
        &redis,
        "max_concurrency = 1",
        "timeout_ms = 2000",
    );
    let b = replica(
        &upstream,
        &redis,
        "max_concurrency = 1",
        "timeout_ms = 2000",
    );
    let first = spawn_post(&a, None);
    let deadline = Instant::now() + Duration::from_secs(10);
    while upstream.requests().is_empty() {
        assert!(Instant::now() < deadline, "the first request never left");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    // The other replica finds the one place taken.
    let refused = post_within(&b, 0.2).await;
    assert_eq!(refused.status(), 429);
    assert_eq!(first.await.unwrap(), 200);
    // Released in Redis within a flush: the other replica gets in (it
    // waits in its queue for the place rather than failing).
    let admitted = post_within(&b, 5.0).await;
    assert_eq!(admitted.status(), 200);
    assert_eq!(upstream.requests().len(), 2);
}

#[tokio::test(flavor = "multi_thread")]
async fn the_script_keeps_the_buckets_model() {
    use levee::limits::redis::{Answer, Ask, Op, Want, Wire};
    let redis = RedisServer::start();
    let wire = Wire::new(&redis.url(), Duration::from_secs(2)).expect("wire");
    let want = |k: &str, n: u64, hold: bool| Ask {
        id: format!("t:{k}:{n}"),
        ttl: 30_000,
        b: vec![Want {
            k: k.to_owned(),
            cap: 6_000,
            n,
            hold,
            cap_to_capacity: false,
            kind: "input_tokens",
        }],
        z: Vec::new(),
    };
    let ask = |a: Ask| {
        let wire = wire.clone();
        async move { wire.call(&[], Some(&a)).await.expect("redis answers") }
    };
    // 6000 a minute refill 100 a second.
    assert_eq!(
        ask(want("in", 5_000, true)).await,
        Answer::Granted(vec![5_000])
    );
    match ask(want("in", 3_000, true)).await {
        Answer::Wait(ms) => assert!((19_000..=20_000).contains(&ms), "wait {ms}"),
        other => panic!("{other:?}"),
    }
    // The estimate was 4000 too high: refunded, the next one fits.
    let settle = Op::Settle {
        k: "in".into(),
        cap: 6_000,
        held: 5_000,
        actual: 1_000,
    };
    assert_eq!(wire.call(&[settle], None).await, Ok(Answer::Done));
    assert_eq!(
        ask(want("in", 3_000, true)).await,
        Answer::Granted(vec![3_000])
    );
    assert_eq!(
        ask(want("in", 7_000, true)).await,
        Answer::Never("input_tokens".into())
    );
    // The upstream says 10 remain: the level drops to that.
    let correct = Op::Correct {
        k: "rq".into(),
        cap: 6_000,
        limit: None,
        remaining: Some(10),
    };
    wire.call(&[correct], None).await.unwrap();
    assert_eq!(ask(want("rq", 10, false)).await, Answer::Granted(vec![10]));
    assert!(matches!(ask(want("rq", 5, false)).await, Answer::Wait(_)));
    // A 429's retry-after closes a full bucket.
    let close = Op::Close {
        k: "cl".into(),
        cap: 6_000,
        wait: 5_000,
    };
    wire.call(&[close], None).await.unwrap();
    match ask(want("cl", 1, false)).await {
        Answer::Wait(ms) => assert!((4_000..=5_000).contains(&ms), "wait {ms}"),
        other => panic!("{other:?}"),
    }
}
