//! The epoch ticker: advances the engine's epoch, the clock by which
//! wasmtime stops a policy call that overruns its deadline.
//!
//! It ticks while calls run, every tenth of the call deadline (see
//! [`tick_for`]), and parks once no call has run for [`QUIET_TICKS`]
//! ticks, so an idle gateway never wakes for it. A call that begins while it is parked unparks it first. It never
//! parks while a call is in flight, however long that call's deadline:
//! deadlines are counted in ticks, and a ticker that stopped or slowed
//! down would let a runaway call run on (an earlier ticker napped 25 ms a
//! tick when quiet, so a looping call with a 1 s deadline ran for 23 s).

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, OnceLock, Weak};
use std::thread::{self, Thread};
use std::time::Duration;
use wasmtime::{Engine, EngineWeak};

/// The shortest and longest tick.
const MIN_TICK: Duration = Duration::from_millis(1);
const MAX_TICK: Duration = Duration::from_millis(10);
/// Ticks without a call before the ticker parks.
const QUIET_TICKS: u32 = 100;
/// One call begun, in [`Ticker::calls`]' upper half.
const BEGUN: u64 = 1 << 32;

/// What callers share with the ticker thread. The thread ends once every
/// holder (the engine and its policies' pools) has dropped this.
pub(crate) struct Ticker {
    /// How often the epoch advances while calls run.
    tick: Duration,
    /// Calls begun (upper 32 bits, wrapping) and calls in flight (lower
    /// 32 bits): one word, so that the ticker sees both in one read.
    calls: AtomicU64,
    /// The ticker is parked, or about to park: a new call must unpark it.
    parked: AtomicBool,
    thread: OnceLock<Thread>,
}

/// A call in flight; the ticker keeps ticking until it drops.
pub(crate) struct InFlight<'a>(&'a Ticker);

/// The tick for calls under `call_timeout`: a tenth of it, from 1 to
/// 10 ms. A call is then stopped between its deadline and a tenth past it
/// (a 1 ms tick did it within 1 ms, but woke a busy gateway five times as
/// often at the default 50 ms: 0.9 % of a core, 4.5 µs a request at 2000
/// requests a second).
pub fn tick_for(call_timeout: Duration) -> Duration {
    (call_timeout / 10).clamp(MIN_TICK, MAX_TICK)
}

impl Ticker {
    /// Starts the ticker thread for `engine`, advancing its epoch every
    /// `tick` while calls run.
    pub fn start(engine: &Engine, tick: Duration) -> std::io::Result<Arc<Ticker>> {
        Ticker::spawn(engine, tick).map(|(ticker, _)| ticker)
    }

    fn spawn(
        engine: &Engine,
        tick: Duration,
    ) -> std::io::Result<(Arc<Ticker>, thread::JoinHandle<()>)> {
        let ticker = Arc::new(Ticker {
            tick: tick.max(MIN_TICK),
            calls: AtomicU64::new(0),
            parked: AtomicBool::new(false),
            thread: OnceLock::new(),
        });
        let (weak, engine) = (Arc::downgrade(&ticker), engine.weak());
        let handle = thread::Builder::new()
            .name("levee-epoch".into())
            .spawn(move || run(&weak, &engine))?;
        let _ = ticker.thread.set(handle.thread().clone());
        Ok((ticker, handle))
    }

    /// Marks a call in flight until the guard drops, waking the ticker
    /// when it is parked. Also returns how many calls began before this
    /// one (wrapping), which spreads calls over a pool's instances.
    pub fn enter(&self) -> (usize, InFlight<'_>) {
        // SeqCst here and in `run`: either this call sees `parked` and
        // unparks, or the ticker sees this call and does not park.
        let before = self.calls.fetch_add(BEGUN + 1, Ordering::SeqCst);
        if self.parked.load(Ordering::SeqCst)
            && let Some(t) = self.thread.get()
        {
            t.unpark();
        }
        ((before >> 32) as usize, InFlight(self))
    }

    /// The epoch deadline, in ticks, that stops a call `timeout` after it
    /// begins: never sooner, and at most a tick and a bit later.
    pub fn deadline_ticks(&self, timeout: Duration) -> u64 {
        let ticks = timeout.as_nanos().div_ceil(self.tick.as_nanos()).max(1);
        // +1: the current tick may end a moment after the call starts.
        u64::try_from(ticks).unwrap_or(u64::MAX - 1) + 1
    }

    /// Whether the ticker is parked (or about to park).
    #[cfg(test)]
    fn is_parked(&self) -> bool {
        self.parked.load(Ordering::SeqCst)
    }
}

impl Drop for InFlight<'_> {
    fn drop(&mut self) {
        self.0.calls.fetch_sub(1, Ordering::Release);
    }
}

impl Drop for Ticker {
    fn drop(&mut self) {
        // A parked ticker would never see that it is no longer needed.
        if let Some(t) = self.thread.get() {
            t.unpark();
        }
    }
}

/// The ticker thread's loop.
fn run(ticker: &Weak<Ticker>, engine: &EngineWeak) {
    let Some(tick) = ticker.upgrade().map(|t| t.tick) else {
        return;
    };
    let (mut seen, mut quiet) = (u64::MAX, 0u32);
    loop {
        if quiet >= QUIET_TICKS {
            let Some(t) = ticker.upgrade() else { return };
            if t.thread.get().is_some() {
                t.parked.store(true, Ordering::SeqCst);
                // `seen` had no call in flight: unchanged, none began since.
                let idle = t.calls.load(Ordering::SeqCst) == seen;
                drop(t);
                if idle {
                    thread::park();
                }
                let Some(t) = ticker.upgrade() else { return };
                t.parked.store(false, Ordering::SeqCst);
            }
            quiet = 0;
        }
        thread::sleep(tick);
        match engine.upgrade() {
            Some(engine) => engine.increment_epoch(),
            None => return,
        }
        let Some(t) = ticker.upgrade() else { return };
        let now = t.calls.load(Ordering::Acquire);
        quiet = if now == seen && now as u32 == 0 {
            quiet + 1
        } else {
            0
        };
        seen = now;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Instant;

    /// Waits (up to 10 s) until `done()`.
    fn wait_for(done: impl Fn() -> bool) -> bool {
        let until = Instant::now() + Duration::from_secs(10);
        while Instant::now() < until {
            if done() {
                return true;
            }
            thread::sleep(Duration::from_millis(1));
        }
        false
    }

    fn wait_parked(ticker: &Ticker, parked: bool) -> bool {
        wait_for(|| ticker.is_parked() == parked)
    }

    #[test]
    fn it_parks_when_quiet_and_a_call_wakes_it() {
        let engine = Engine::default();
        let ticker = Ticker::start(&engine, MIN_TICK).unwrap();
        assert!(wait_parked(&ticker, true), "an idle ticker parks");
        let (_, call) = ticker.enter();
        assert!(wait_parked(&ticker, false), "a call wakes it");
        drop(call);
        assert!(wait_parked(&ticker, true), "it parks again once quiet");
    }

    #[test]
    fn it_keeps_ticking_while_a_call_is_in_flight() {
        let engine = Engine::default();
        let ticker = Ticker::start(&engine, MIN_TICK).unwrap();
        let (_, call) = ticker.enter();
        // Far more than QUIET_TICKS ticks with the call in flight: each
        // reading must find the ticker awake (it may be between ticks).
        for _ in 0..(3 * QUIET_TICKS) {
            thread::sleep(MIN_TICK);
            assert!(!ticker.is_parked(), "parked with a call in flight");
        }
        drop(call);
        assert!(wait_parked(&ticker, true));
    }

    #[test]
    fn the_tick_is_a_tenth_of_the_deadline_within_bounds() {
        let ms = Duration::from_millis;
        assert_eq!(tick_for(ms(50)), ms(5));
        assert_eq!(tick_for(ms(1)), ms(1));
        assert_eq!(tick_for(ms(15)), ms(1) + Duration::from_micros(500));
        assert_eq!(tick_for(ms(1000)), ms(10));
    }

    #[test]
    fn a_deadline_is_never_short_and_at_most_a_tick_long() {
        let ms = Duration::from_millis;
        let ticker = |tick| Ticker::start(&Engine::default(), tick).unwrap();
        // Ticks of 5 ms: 10 whole ticks, and one for the tick under way.
        assert_eq!(ticker(ms(5)).deadline_ticks(ms(50)), 11);
        // A deadline between ticks rounds up, never down.
        assert_eq!(ticker(ms(5)).deadline_ticks(ms(52)), 12);
        assert_eq!(ticker(ms(1)).deadline_ticks(ms(1)), 2);
        assert_eq!(ticker(ms(10)).deadline_ticks(ms(1000)), 101);
        assert_eq!(ticker(ms(10)).deadline_ticks(Duration::ZERO), 2);
    }

    #[test]
    fn calls_are_numbered_in_order() {
        let ticker = Ticker::start(&Engine::default(), MIN_TICK).unwrap();
        let numbers: Vec<usize> = (0..3).map(|_| ticker.enter().0).collect();
        assert_eq!(numbers, [0, 1, 2]);
    }

    #[test]
    fn the_thread_ends_with_its_last_holder() {
        let engine = Engine::default();
        let (ticker, thread) = Ticker::spawn(&engine, MIN_TICK).unwrap();
        assert!(wait_parked(&ticker, true));
        drop(ticker);
        assert!(
            wait_for(|| thread.is_finished()),
            "a parked ticker outlived its holders"
        );
    }
}
