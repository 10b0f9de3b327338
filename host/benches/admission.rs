//! What admission costs a request on the in-memory limiter: reserving a
//! plan's charges and settling them with the response's usage, through the
//! [`Admitter`] (the request path's entry) and on the limiter alone. A bare
//! `Mutex<HashMap>` lookup runs in the same process as the yardstick, so
//! the ratio means something on a noisy machine.
//!
//! `cargo bench -p levee --bench admission` (add `-- --quick` for a short
//! run).

#![allow(missing_docs)] // criterion's macros generate undocumented items

use criterion::{Criterion, criterion_group, criterion_main};
use levee::core::{Charge, LimitKind, LimitScope};
use levee::limits::admit::{Admitter, Ask};
use levee::limits::memory::MemoryLimiter;
use levee::limits::{ClientKey, Lane, LimitSpec, Limiter, Usage};
use prometheus_client::metrics::gauge::Gauge;
use std::collections::HashMap;
use std::hint::black_box;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// Limits so large that the bench never waits: every admission takes the
/// free path.
fn roomy() -> LimitSpec {
    LimitSpec {
        requests_per_minute: Some(1_000_000_000),
        input_tokens_per_minute: Some(1_000_000_000_000),
        output_tokens_per_minute: Some(1_000_000_000_000),
        max_concurrency: Some(1_000_000),
    }
}

/// What the standard policy charges a typical request: one request, one
/// slot, its input estimate and its `max_tokens`, on the upstream and (with
/// `client`, when client limits are configured) on the client.
fn charges(client: bool) -> Vec<Charge> {
    let mut all = Vec::new();
    let scopes: &[LimitScope] = if client {
        &[LimitScope::Upstream, LimitScope::Client]
    } else {
        &[LimitScope::Upstream]
    };
    for &scope in scopes {
        for (kind, amount) in [
            (LimitKind::Requests, 1),
            (LimitKind::Concurrency, 1),
            (LimitKind::InputTokens, 250),
            (LimitKind::OutputTokens, 1_024),
        ] {
            all.push(Charge {
                scope,
                kind,
                amount,
            });
        }
    }
    all
}

/// The response's usage: fewer tokens than reserved, so settling refunds.
const USAGE: Usage = Usage {
    input: Some(230),
    output: Some(310),
    cache_write: None,
    cache_read: None,
};

fn admission(c: &mut Criterion) {
    let now = levee::clock::now_ms;
    let client = ClientKey::of(b"sk-ant-bench-key");
    let mut group = c.benchmark_group("admission");

    // The yardstick: one lock, one hash lookup, one add.
    let map: Mutex<HashMap<u32, u64>> = Mutex::new((0..8).map(|i| (i, 0)).collect());
    group.bench_function("baseline_mutex_hashmap", |b| {
        b.iter(|| {
            let mut m = map.lock().unwrap();
            *m.get_mut(black_box(&3)).unwrap() += 1;
        })
    });

    // With client limits, each request's key is hashed first.
    group.bench_function("client_key_of", |b| {
        b.iter(|| ClientKey::of(black_box(b"sk-ant-api03-bench-key-0123456789")))
    });

    for (name, with_client) in [("upstream", false), ("upstream_and_client", true)] {
        let charges = charges(with_client);
        let client = with_client.then_some(&client);
        let limiter = MemoryLimiter::new(&[roomy(), roomy()], roomy(), now());
        group.bench_function(format!("limiter_reserve_settle/{name}"), |b| {
            b.iter(|| {
                let t = now();
                let grant = limiter
                    .try_reserve(black_box(Lane::new(1, 1)), client, black_box(&charges), t)
                    .expect("room");
                limiter.settle(&grant, USAGE, t);
            })
        });

        let limiter: Arc<dyn Limiter> =
            Arc::new(MemoryLimiter::new(&[roomy(), roomy()], roomy(), now()));
        let admitter = Arc::new(Admitter::new(limiter, 1024, Gauge::default()));
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_time()
            .build()
            .unwrap();
        let order = [1u32, 0];
        group.bench_function(format!("admitter_admit_finish/{name}"), |b| {
            b.iter_custom(|iters| {
                runtime.block_on(async {
                    let started = Instant::now();
                    for _ in 0..iters {
                        let ask = Ask {
                            order: black_box(&order),
                            class: 1,
                            client,
                            charges: black_box(&charges),
                            priority: 0,
                            deadline: u64::MAX,
                        };
                        let (_, mut reservation) = admitter.admit(ask, None).await.expect("room");
                        reservation.sent();
                        reservation.finish(USAGE);
                    }
                    started.elapsed()
                })
            })
        });
    }
    group.finish();
}

criterion_group! {
    name = benches;
    config = Criterion::default().measurement_time(Duration::from_secs(3));
    targets = admission
}
criterion_main!(benches);
