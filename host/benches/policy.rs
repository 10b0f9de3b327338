//! What the policy costs a request, through wasm and natively, and how long
//! a swap takes from "requested" to "serving".
//!
//! `cargo bench -p levee --bench policy`

#![allow(missing_docs)] // criterion's macros generate undocumented items

use criterion::{Criterion, criterion_group, criterion_main};
use levee::core::sample::Sampler;
use levee::core::{Policy, Profile};
use levee::policy::{CompileCache, EngineOptions, PolicyEngine, PolicyHandle, PolicySource};
use std::hint::black_box;

/// One typical request: admission, then the outcome of its first attempt
/// (a 429 with `retry-after`, from `Sampler::typical`).
fn request_decisions(c: &mut Criterion) {
    let engine = PolicyEngine::new(EngineOptions {
        cache: CompileCache::disabled(),
        ..EngineOptions::default()
    })
    .unwrap();
    let wasm = engine.load(&PolicySource::Builtin("standard"), "").unwrap();
    let native = Policy::new(Profile::Standard);
    let case = Sampler::new(1).typical();

    let mut group = c.benchmark_group("request_decisions");
    group.bench_function("wasm", |b| {
        b.iter(|| {
            let a = wasm
                .try_on_request(black_box(&case.req), black_box(&case.view))
                .unwrap();
            let n = wasm
                .try_on_outcome(&case.req, &case.order, black_box(&case.attempt), &case.view)
                .unwrap();
            (a, n)
        })
    });
    group.bench_function("native", |b| {
        b.iter(|| {
            let a = native.on_request(black_box(&case.req), black_box(&case.view));
            let n = native.on_outcome(&case.req, &case.order, black_box(&case.attempt), &case.view);
            (a, n)
        })
    });
    group.finish();
}

/// Compiling without a cache, loading from a warm compile cache (instances
/// created, configured and self-checked), and a whole swap: requested to
/// serving.
fn swap(c: &mut Criterion) {
    let dir = tempfile::tempdir().unwrap();
    let engine = PolicyEngine::new(EngineOptions {
        cache: CompileCache::at(dir.path()),
        ..EngineOptions::default()
    })
    .unwrap();
    let standard = PolicySource::Builtin("standard");
    let interactive = PolicySource::Builtin("interactive");
    let handle = PolicyHandle::new(engine.load(&standard, "").unwrap());
    engine.load(&interactive, "").unwrap(); // warm the cache

    let mut group = c.benchmark_group("policy_swap");
    group.sample_size(30);
    let uncached = PolicyEngine::new(EngineOptions {
        cache: CompileCache::disabled(),
        ..EngineOptions::default()
    })
    .unwrap();
    group.bench_function("compile_uncached", |b| {
        b.iter(|| uncached.load(&standard, "").unwrap())
    });
    group.bench_function("load_from_cache", |b| {
        b.iter(|| engine.load(&standard, "").unwrap())
    });
    let mut flip = false;
    group.bench_function("swap_requested_to_serving", |b| {
        b.iter(|| {
            flip = !flip;
            let source = if flip { &interactive } else { &standard };
            handle.swap(&engine, source, "").unwrap()
        })
    });
    group.finish();
}

criterion_group!(benches, request_decisions, swap);
criterion_main!(benches);
