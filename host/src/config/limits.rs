//! `[limits]` and each upstream's `[upstreams.limits]`: rates per minute,
//! concurrency, and the admission queue.

use super::check::{Checker, Key};
use super::raw::{RawClass, RawLimitSpec, RawLimits, RawRates, RawRedis};
use super::types::{LimitSpec, Ramp, ScopeLimits, Secret};
use levee_exchange::classes::{Class, Classes};
use std::time::Duration;

/// The admission queue's default length.
pub const DEFAULT_QUEUE_SIZE: usize = 1024;
/// After a minute full and unused, a bucket grants half its capacity at
/// once, and the rest over the next minute.
pub const DEFAULT_RAMP: Ramp = Ramp {
    idle_ms: 60_000,
    start: 0.5,
    over_ms: 60_000,
};
/// The header a client may set its priority with, when enabled.
pub const PRIORITY_HEADER: &str = "x-levee-priority";

/// Admission settings (`[limits]`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Limits {
    /// Requests that may wait for room at once; 0 refuses at once.
    pub queue_size: usize,
    /// The priority of a request (higher is admitted first).
    pub default_priority: u8,
    /// Whether a client's `x-levee-priority` header (0 to 255) replaces
    /// the default.
    pub priority_header: bool,
    /// Limits per client key (a hash of the API key), on top of the
    /// upstream's.
    pub client: ScopeLimits,
    /// The model classes limits are kept per.
    pub classes: Classes,
    /// How an in-process bucket comes back after idle.
    pub ramp: Ramp,
    /// Shared budgets in Redis, when set; otherwise each process keeps its
    /// own.
    pub redis: Option<RedisLimits>,
}

/// `[limits.redis]`: budgets shared by every levee process that names the
/// same Redis and key prefix.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RedisLimits {
    /// `redis://[user:password@]host[:port][/db]`; it may hold a password.
    pub url: Secret,
    /// What admission does while Redis cannot be reached.
    pub on_failure: OnFailure,
    /// How many levee processes share the budgets: while Redis is away,
    /// each enforces its share (the limits divided by this) locally.
    pub replicas: u32,
    /// How long one admission waits for Redis before it counts as away.
    pub timeout: Duration,
    /// Prefix of every key levee writes; processes with different
    /// prefixes share nothing.
    pub key_prefix: String,
}

/// What admission does while the shared limiter cannot be reached.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum OnFailure {
    /// Admit under local limits, scaled down by the replica count.
    Open,
    /// Refuse with 503 until Redis is back.
    Closed,
}

impl Default for Limits {
    fn default() -> Limits {
        Limits {
            queue_size: DEFAULT_QUEUE_SIZE,
            default_priority: 0,
            priority_header: false,
            client: ScopeLimits::default(),
            classes: Classes::default(),
            ramp: DEFAULT_RAMP,
            redis: None,
        }
    }
}

impl Limits {
    /// A request's priority: its header's when enabled and valid, else the
    /// default.
    pub fn priority(&self, headers: &http::HeaderMap) -> u8 {
        self.priority_header
            .then(|| {
                headers
                    .get(PRIORITY_HEADER)?
                    .to_str()
                    .ok()?
                    .trim()
                    .parse()
                    .ok()
            })
            .flatten()
            .unwrap_or(self.default_priority)
    }
}

pub(super) fn limits(c: &mut Checker<'_>, raw: RawLimits) -> Limits {
    let d = Limits::default();
    let classes = raw.classes.map_or(d.classes, |r| classes(c, r));
    Limits {
        queue_size: c.int(
            "limits.queue_size",
            raw.queue_size,
            0..=1_000_000,
            d.queue_size,
        ),
        default_priority: c.int("limits.default_priority", raw.default_priority, 0..=255, 0),
        priority_header: raw.priority_header.unwrap_or(false),
        client: raw.client.map_or_else(ScopeLimits::default, |r| {
            scope(c, "limits.client", r, &classes)
        }),
        redis: raw.redis.and_then(|r| redis(c, r)),
        classes,
        ramp: Ramp {
            idle_ms: ms(c.millis(
                "limits.ramp_idle_ms",
                raw.ramp_idle_ms,
                0..=86_400_000,
                Duration::from_millis(DEFAULT_RAMP.idle_ms),
            )),
            start: c.ratio("limits.ramp_start", raw.ramp_start, DEFAULT_RAMP.start),
            over_ms: ms(c.millis(
                "limits.ramp_ms",
                raw.ramp_ms,
                0..=3_600_000,
                Duration::from_millis(DEFAULT_RAMP.over_ms),
            )),
        },
    }
}

fn ms(d: Duration) -> u64 {
    d.as_millis() as u64
}

/// `[[limits.classes]]`, or the defaults (reported) when they are wrong.
fn classes(c: &mut Checker<'_>, raw: Vec<RawClass>) -> Classes {
    let key = Key::file("limits.classes");
    let mut given = Vec::with_capacity(raw.len());
    for (i, class) in raw.iter().enumerate() {
        let (Some(name), Some(contains)) = (&class.name, &class.contains) else {
            let key = Key::file(format!("limits.classes[{i}]"));
            c.report(
                &key,
                format_args!(
                    "{key} needs a name and contains, e.g. \
                     {{ name = \"haiku\", contains = [\"haiku\"] }}"
                ),
            );
            return Classes::default();
        };
        let contains: Vec<&str> = contains.iter().map(String::as_str).collect();
        given.push((name.as_str(), contains));
    }
    let given: Vec<(&str, &[&str])> = given.iter().map(|(n, s)| (*n, &s[..])).collect();
    let counted = raw
        .iter()
        .enumerate()
        .filter(|(_, r)| r.cache_reads_count == Some(true));
    match Classes::new(&given) {
        Ok(classes) => classes.with_cache_reads_counted(counted.map(|(i, _)| i as Class)),
        Err(why) => {
            c.report(&key, format_args!("{key}: {why}"));
            Classes::default()
        }
    }
}

/// One scope's limits under `prefix`, its classes' among them.
pub(super) fn scope(
    c: &mut Checker<'_>,
    prefix: &str,
    mut raw: RawLimitSpec,
    classes: &Classes,
) -> ScopeLimits {
    let own = raw.classes.take().unwrap_or_default();
    let base = spec(c, prefix, raw);
    let mut out = ScopeLimits::uniform(base);
    for (name, rates) in own {
        let at = format!("{prefix}.classes.{name}");
        let Some(class) = classes.by_name(&name) else {
            let key = Key::file(&at);
            let known: Vec<&str> = classes.names().map(|n| &**n).collect();
            c.report(
                &key,
                format_args!("{key}: no model class {name:?}; the classes are {known:?}"),
            );
            continue;
        };
        let RawRates {
            requests_per_minute,
            input_tokens_per_minute,
            output_tokens_per_minute,
        } = rates;
        let raw = RawLimitSpec {
            requests_per_minute,
            input_tokens_per_minute,
            output_tokens_per_minute,
            ..RawLimitSpec::default()
        };
        out.classes.push((class, spec(c, &at, raw)));
    }
    out
}

/// `[limits.redis]`, or `None` (reported) when its URL is missing or bad.
fn redis(c: &mut Checker<'_>, raw: RawRedis) -> Option<RedisLimits> {
    let on_failure = match raw.on_failure.as_deref() {
        None | Some("open") => OnFailure::Open,
        Some("closed") => OnFailure::Closed,
        Some(other) => {
            let key = Key::file("limits.redis.on_failure");
            c.report(
                &key,
                format_args!("{key} must be \"open\" or \"closed\", got {other:?}"),
            );
            OnFailure::Open
        }
    };
    let replicas = c.int("limits.redis.replicas", raw.replicas, 1..=10_000, 1);
    let timeout = c.millis(
        "limits.redis.timeout_ms",
        raw.timeout_ms,
        1..=60_000,
        Duration::from_millis(100),
    );
    let key_prefix = raw.key_prefix.unwrap_or_else(|| "levee".to_owned());
    if key_prefix.is_empty()
        || key_prefix.contains(|ch: char| ch.is_whitespace() || ch.is_control())
    {
        let key = Key::file("limits.redis.key_prefix");
        c.report(
            &key,
            format_args!("{key} must be non-empty, without spaces, got {key_prefix:?}"),
        );
    }
    let key = Key::file("limits.redis.url");
    let Some(url) = raw.url else {
        c.report(
            &key,
            format_args!("{key} is required in [limits.redis], e.g. \"redis://127.0.0.1:6379/0\""),
        );
        return None;
    };
    if let Err(why) = check_redis_url(&url) {
        // The URL may hold a password: say why, never quote it.
        c.report(&key, format_args!("{key} is not a usable Redis URL: {why}"));
        return None;
    }
    Some(RedisLimits {
        url: Secret::new(url),
        on_failure,
        replicas,
        timeout,
        key_prefix,
    })
}

/// Why `url` is no `redis://` URL the client can open.
fn check_redis_url(url: &str) -> Result<(), String> {
    if !url.starts_with("redis://") {
        return Err("it must start with redis:// (TLS and unix sockets are not supported)".into());
    }
    redis::Client::open(url)
        .map(drop)
        .map_err(|e| e.to_string().replace(url, "<url>"))
}

/// One scope's limits, each under `prefix`.
pub(super) fn spec(c: &mut Checker<'_>, prefix: &str, raw: RawLimitSpec) -> LimitSpec {
    let mut rate = |name: &str, v: Option<i64>, max: i64| {
        v.map(|_| c.int(&format!("{prefix}.{name}"), v, 1..=max, 0u64))
            .filter(|&n| n > 0)
    };
    let requests_per_minute = rate(
        "requests_per_minute",
        raw.requests_per_minute,
        1_000_000_000,
    );
    let input_tokens_per_minute = rate(
        "input_tokens_per_minute",
        raw.input_tokens_per_minute,
        1_000_000_000_000,
    );
    let output_tokens_per_minute = rate(
        "output_tokens_per_minute",
        raw.output_tokens_per_minute,
        1_000_000_000_000,
    );
    let max_concurrency = raw
        .max_concurrency
        .map(|_| {
            c.int(
                &format!("{prefix}.max_concurrency"),
                raw.max_concurrency,
                1..=1_000_000,
                0u32,
            )
        })
        .filter(|&n| n > 0);
    LimitSpec {
        requests_per_minute,
        input_tokens_per_minute,
        output_tokens_per_minute,
        max_concurrency,
    }
}
