//! Prometheus counters and histograms for the request path, recorded in a
//! cell per thread.
//!
//! prometheus-client's `Histogram` takes a mutex for every observation, and
//! its `Counter` is one atomic. Several of each are recorded per request,
//! so both workers took the same locks and wrote the same cache lines for
//! every request: with metrics on, levee spent about 5 % more CPU per
//! request (bench/overhead.sh), though the instructions added were under
//! 2 %. Here each thread adds to its own cell (threads beyond the shard
//! count share one, safely); a scrape sums the cells. A histogram's
//! `_count` is the sum of its buckets, so a scrape never shows a count
//! that disagrees with its `+Inf` bucket.

use super::per_thread::PerThread;
use prometheus_client::encoding::{EncodeMetric, MetricEncoder, NoLabelSet};
use prometheus_client::metrics::{MetricType, TypedMetric};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};

/// Buckets a histogram may have, `+Inf` included.
const MAX_BUCKETS: usize = 16;

/// A histogram; clones share their counts.
#[derive(Clone, Debug)]
pub struct Histogram {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    /// Upper bounds, ascending, ending with `+Inf`.
    bounds: Vec<f64>,
    cells: PerThread<Cell>,
}

/// One thread's counts.
#[derive(Debug, Default)]
struct Cell {
    /// The sum of observations, as `f64` bits.
    sum: AtomicU64,
    /// Observations per bucket (not cumulative).
    buckets: [AtomicU64; MAX_BUCKETS],
}

impl Histogram {
    /// A histogram with these upper bounds (non-finite ones are dropped;
    /// `+Inf` is added).
    pub fn new(bounds: impl IntoIterator<Item = f64>) -> Histogram {
        let mut bounds: Vec<f64> = bounds.into_iter().filter(|b| b.is_finite()).collect();
        bounds.push(f64::INFINITY);
        assert!(bounds.len() <= MAX_BUCKETS, "too many histogram buckets");
        Histogram {
            inner: Arc::new(Inner {
                bounds,
                cells: Default::default(),
            }),
        }
    }

    /// Records `v` (NaN lands in `+Inf`, as in prometheus-client).
    pub fn observe(&self, v: f64) {
        let inner = &*self.inner;
        let cell = inner.cells.mine();
        let last = inner.bounds.len() - 1;
        let i = inner.bounds.iter().position(|b| v <= *b).unwrap_or(last);
        cell.buckets[i].fetch_add(1, Relaxed);
        let _ = cell.sum.fetch_update(Relaxed, Relaxed, |bits| {
            Some((f64::from_bits(bits) + v).to_bits())
        });
    }

    /// Sum, count and per-bucket counts across the cells.
    fn totals(&self) -> (f64, u64, Vec<(f64, u64)>) {
        let inner = &*self.inner;
        let mut buckets: Vec<(f64, u64)> = inner.bounds.iter().map(|b| (*b, 0)).collect();
        let mut sum = 0.0;
        for cell in inner.cells.all() {
            sum += f64::from_bits(cell.sum.load(Relaxed));
            for (total, n) in buckets.iter_mut().zip(&cell.buckets) {
                total.1 += n.load(Relaxed);
            }
        }
        let count = buckets.iter().map(|b| b.1).sum();
        (sum, count, buckets)
    }
}

/// A counter; clones share their count.
#[derive(Clone, Debug, Default)]
pub struct Counter {
    cells: Arc<PerThread<AtomicU64>>,
}

impl Counter {
    /// Adds one.
    pub fn inc(&self) {
        self.inc_by(1);
    }

    /// Adds `n`.
    pub fn inc_by(&self, n: u64) {
        self.cells.mine().fetch_add(n, Relaxed);
    }

    /// The count, across the cells.
    pub fn get(&self) -> u64 {
        self.cells.all().map(|c| c.load(Relaxed)).sum()
    }
}

impl TypedMetric for Counter {
    const TYPE: MetricType = MetricType::Counter;
}

impl EncodeMetric for Counter {
    fn encode(&self, mut encoder: MetricEncoder) -> Result<(), std::fmt::Error> {
        encoder.encode_counter::<NoLabelSet, _, u64>(&self.get(), None)
    }

    fn metric_type(&self) -> MetricType {
        Self::TYPE
    }
}

impl TypedMetric for Histogram {
    const TYPE: MetricType = MetricType::Histogram;
}

impl EncodeMetric for Histogram {
    fn encode(&self, mut encoder: MetricEncoder) -> Result<(), std::fmt::Error> {
        let (sum, count, buckets) = self.totals();
        encoder.encode_histogram::<NoLabelSet>(sum, count, &buckets, None)
    }

    fn metric_type(&self) -> MetricType {
        Self::TYPE
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use prometheus_client::encoding::text::encode;
    use prometheus_client::registry::Registry;

    /// The text exposition of ours and of prometheus-client's histogram,
    /// each registered as `h` and fed `values` from several threads
    /// (values whose sums are exact in any order).
    fn exposition(values: &[f64]) -> (String, String) {
        let ours = Histogram::new([0.1, 0.5, 1.0]);
        let theirs = prometheus_client::metrics::histogram::Histogram::new([0.1, 0.5, 1.0]);
        std::thread::scope(|s| {
            for chunk in values.chunks(2) {
                let (ours, theirs) = (&ours, &theirs);
                s.spawn(move || {
                    for v in chunk {
                        ours.observe(*v);
                        theirs.observe(*v);
                    }
                });
            }
        });
        let render = |register: &dyn Fn(&mut Registry)| {
            let mut r = Registry::default();
            register(&mut r);
            let mut out = String::new();
            encode(&mut out, &r).unwrap();
            out
        };
        (
            render(&|r| r.register("h", "test", ours.clone())),
            render(&|r| r.register("h", "test", theirs.clone())),
        )
    }

    #[test]
    fn exposes_what_prometheus_client_would_across_threads() {
        let (ours, theirs) = exposition(&[0.0625, 0.125, 0.25, 0.75, 2.0, 8.0, 0.5]);
        assert_eq!(ours, theirs);
        assert!(ours.contains("h_bucket{le=\"0.5\"} 4\n"), "{ours}");
        assert!(ours.contains("h_count 7\n"), "{ours}");
    }

    #[test]
    fn a_counter_sums_its_threads_cells() {
        let c = Counter::default();
        std::thread::scope(|s| {
            for n in 1..=4 {
                let c = c.clone();
                s.spawn(move || c.inc_by(n));
            }
        });
        c.inc();
        assert_eq!(c.get(), 11);
        let mut r = Registry::default();
        r.register("c", "test", c);
        let mut out = String::new();
        encode(&mut out, &r).unwrap();
        assert!(out.contains("# TYPE c counter\nc_total 11\n"), "{out}");
    }

    #[test]
    fn nan_lands_in_inf() {
        let h = Histogram::new([1.0]);
        h.observe(f64::NAN);
        h.observe(0.5);
        let (_, count, buckets) = h.totals();
        assert_eq!(count, 2);
        assert_eq!(buckets, vec![(1.0, 1), (f64::INFINITY, 1)]);
    }
}
