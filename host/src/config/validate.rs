//! From [`RawConfig`] to [`Config`]: every section checked, every problem
//! collected, so one run reports all of them.

use super::check::{Checker, Key};
use super::raw::{RawAdmin, RawConfig, RawLog, RawRails, RawStreaming, RawTrace};
use super::types::{Admin, Log, LogFormat, Rails, Secret, Streaming, Trace};
use super::{Config, ConfigError, Overrides, policy_settings, upstream};
use levee_exchange::body_limits::{self, BodyLimits, Route};
use levee_exchange::rails::defaults;
use std::net::SocketAddr;
use std::path::Path;
use std::time::Duration;

const DEFAULT_LISTEN: &str = "127.0.0.1:8787";
const DEFAULT_ADMIN_LISTEN: &str = "127.0.0.1:8788";
const DEFAULT_SHUTDOWN_GRACE: Duration = Duration::from_secs(30);
/// nginx's `client_header_timeout`.
const DEFAULT_HEADER_TIMEOUT: Duration = Duration::from_secs(60);
const DEFAULT_LOG_LEVEL: &str = "info";

/// Checks `raw` with `overrides` applied. What an override replaces is not
/// checked: a flag's value stands in for the file's.
pub(super) fn build(
    raw: RawConfig,
    origin: Option<&Path>,
    overrides: &Overrides,
) -> Result<Config, ConfigError> {
    let mut c = Checker::new(origin);
    let listen = match (&overrides.listen, &raw.listen) {
        (Some(given), _) => address(&mut c, &Key::Flag("--listen"), given),
        (None, Some(given)) => address(&mut c, &Key::file("listen"), given),
        (None, None) => DEFAULT_LISTEN.parse().ok(),
    };
    let shutdown_grace = c.millis(
        "shutdown_grace_ms",
        raw.shutdown_grace_ms,
        0..=600_000,
        DEFAULT_SHUTDOWN_GRACE,
    );
    let header_timeout = c.millis(
        "header_timeout_ms",
        raw.header_timeout_ms,
        100..=600_000,
        DEFAULT_HEADER_TIMEOUT,
    );
    let workers = c.int("workers", raw.workers, 0..=256, 0);
    // Before the upstreams: their limits name its model classes.
    let limits = super::limits::limits(&mut c, raw.limits);
    let upstreams = if overrides.upstreams.is_empty() {
        upstream::from_file(&mut c, raw.upstreams, &limits.classes)
    } else {
        upstream::from_flags(&mut c, &overrides.upstreams)
    };
    let policy = policy_settings::build(&mut c, raw.policy, overrides);
    let rails = rails(&mut c, raw.rails);
    let streaming = streaming(&mut c, raw.streaming);
    let admin = admin(&mut c, raw.admin, listen);
    let log = log(&mut c, raw.log);
    let trace = trace(&mut c, raw.trace);
    let outlier = super::health::outlier(&mut c, raw.outlier);
    let dns = super::egress::dns(&mut c, raw.dns);
    let otel = super::otel::otel(&mut c, raw.otel);
    c.finish()?;
    Ok(Config {
        // `None` only after a reported problem, so `finish` has returned.
        listen: listen.unwrap_or(SocketAddr::from(([127, 0, 0, 1], 8787))),
        shutdown_grace,
        header_timeout,
        workers,
        upstreams,
        policy,
        rails,
        streaming,
        admin,
        log,
        trace,
        outlier,
        dns,
        limits,
        otel,
        path: origin.map(Path::to_path_buf),
    })
}

/// A socket address: an IP and a port, no host names.
fn address(c: &mut Checker<'_>, key: &Key, given: &str) -> Option<SocketAddr> {
    let parsed = listen_address(given);
    if let Err(why) = &parsed {
        let example = match key {
            Key::File(k) if k.starts_with("admin.") => DEFAULT_ADMIN_LISTEN,
            _ => DEFAULT_LISTEN,
        };
        c.report(
            key,
            format_args!(
                "{key} must be an address like {example}, :8787, 8787 or localhost:8787, \
                 got {given:?}: {why}"
            ),
        );
    }
    parsed.ok()
}

/// A listen address in the forms peers accept: `IP:PORT` (`[::1]:8787`
/// for IPv6); `:PORT` or a bare `PORT` for every interface (as Go, Caddy
/// and nginx read them); `HOST:PORT` with a name, resolved now, its first
/// address (`localhost:8787` is 127.0.0.1:8787).
pub(super) fn listen_address(given: &str) -> Result<SocketAddr, String> {
    use std::net::{Ipv4Addr, ToSocketAddrs};
    if let Ok(addr) = given.parse() {
        return Ok(addr);
    }
    let port = |p: &str| p.parse::<u16>().map_err(|_| format!("{p:?} is not a port"));
    if let Some(p) = given.strip_prefix(':') {
        return Ok(SocketAddr::from((Ipv4Addr::UNSPECIFIED, port(p)?)));
    }
    if !given.is_empty() && given.bytes().all(|b| b.is_ascii_digit()) {
        return Ok(SocketAddr::from((Ipv4Addr::UNSPECIFIED, port(given)?)));
    }
    let Some((host, p)) = given.rsplit_once(':') else {
        return Err("no port".into());
    };
    let p = port(p)?;
    if host == "localhost" {
        return Ok(SocketAddr::from((Ipv4Addr::LOCALHOST, p)));
    }
    if host.is_empty() || host.contains(char::is_whitespace) || host.contains(['[', ']', '/']) {
        return Err(format!("{host:?} is not a host"));
    }
    let mut found = (host, p)
        .to_socket_addrs()
        .map_err(|e| format!("cannot resolve {host:?}: {e}"))?;
    found
        .next()
        .ok_or_else(|| format!("{host:?} resolves to no address"))
}

fn rails(c: &mut Checker<'_>, raw: RawRails) -> Rails {
    let ratio = c.ratio("rails.retry_budget_ratio", raw.retry_budget_ratio, 0.2);
    let max_body_bytes = c.int(
        "rails.max_body_bytes",
        raw.max_body_bytes,
        1..=defaults::MAX_BODY_BYTES_LIMIT as i64,
        defaults::MAX_BODY_BYTES as usize,
    );
    let mut body_limits = BodyLimits::with_standard(max_body_bytes);
    let given = raw.body_limits.unwrap_or_default();
    for (route, name) in Route::KEYED {
        let limit = body_limits.of_mut(route);
        let key = format!("rails.body_limits.{name}");
        *limit = c.int(&key, given.get(name), 1..=body_limits::MOST as i64, *limit);
    }
    let spool_dir = match raw.spool_dir {
        Some(dir) => c.resolve(&Key::file("rails.spool_dir"), &dir),
        None => std::env::temp_dir(),
    };
    Rails {
        max_attempts: c.int(
            "rails.max_attempts",
            raw.max_attempts,
            1..=defaults::MAX_ATTEMPTS_LIMIT as i64,
            defaults::MAX_ATTEMPTS as u32,
        ),
        request_deadline: c.millis(
            "rails.request_deadline_ms",
            raw.request_deadline_ms,
            1..=defaults::REQUEST_DEADLINE_LIMIT_MS as i64,
            Duration::from_millis(defaults::REQUEST_DEADLINE_MS),
        ),
        max_body_bytes,
        body_limits,
        spool_dir,
        retry_budget_ratio: ratio,
        retry_budget_min_retries: c.int(
            "rails.retry_budget_min_retries",
            raw.retry_budget_min_retries,
            0..=i64::from(u32::MAX),
            3,
        ),
        error_body_bytes: c.int(
            "rails.error_body_bytes",
            raw.error_body_bytes,
            {
                let (least, most) = defaults::ERROR_BODY_BYTES_RANGE;
                least as i64..=most as i64
            },
            defaults::ERROR_BODY_BYTES as usize,
        ),
    }
}

fn trace(c: &mut Checker<'_>, raw: RawTrace) -> Trace {
    let max_mb: u64 = c.int("trace.max_mb", raw.max_mb, 1..=65_536, 64);
    Trace {
        file: raw.file.map(|f| c.resolve(&Key::file("trace.file"), &f)),
        max_bytes: max_mb << 20,
    }
}

fn streaming(c: &mut Checker<'_>, raw: RawStreaming) -> Streaming {
    Streaming {
        idle_timeout: c.millis(
            "streaming.idle_timeout_ms",
            raw.idle_timeout_ms,
            1..=defaults::IDLE_TIMEOUT_LIMIT_MS as i64,
            Duration::from_millis(defaults::IDLE_TIMEOUT_MS),
        ),
        hold: c.millis(
            "streaming.hold_ms",
            raw.hold_ms,
            0..=defaults::HOLD_LIMIT_MS as i64,
            Duration::from_millis(defaults::HOLD_MS),
        ),
    }
}

fn admin(c: &mut Checker<'_>, raw: RawAdmin, main: Option<SocketAddr>) -> Admin {
    let listen_key = Key::file("admin.listen");
    let metrics = raw.metrics.unwrap_or(true);
    let listen = match raw.listen.as_deref() {
        Some("off") => None,
        Some(given) => address(c, &listen_key, given),
        None => DEFAULT_ADMIN_LISTEN.parse().ok(),
    };
    let token = match (raw.token_env, raw.token_file) {
        (Some(_), Some(_)) => {
            c.report(
                &Key::file("admin.token_env"),
                "`admin.token_env` and `admin.token_file` cannot both be set; keep one",
            );
            None
        }
        (Some(name), None) => token_from_env(c, &name),
        (None, Some(given)) => {
            let key = Key::file("admin.token_file");
            let path = c.resolve(&key, &given);
            match std::fs::read_to_string(&path) {
                Err(e) => {
                    c.report(
                        &key,
                        format_args!("{key}: cannot read {}: {e}", path.display()),
                    );
                    None
                }
                Ok(t) if t.trim().is_empty() => {
                    c.report(&key, format_args!("{key} {} is empty", path.display()));
                    None
                }
                Ok(t) => Some(Secret::new(t.trim())),
            }
        }
        (None, None) => None,
    };
    if let Some(addr) = listen {
        if !addr.ip().is_loopback() {
            if raw.allow_remote != Some(true) {
                c.report(
                    &listen_key,
                    format_args!(
                        "{listen_key} {addr} is not a loopback address; \
                         set admin.allow_remote = true to expose the admin API"
                    ),
                );
            } else if token.is_none() {
                c.report(
                    &Key::file("admin.allow_remote"),
                    format_args!(
                        "`admin.allow_remote` exposes the admin API on {addr}, which needs a \
                         token; set admin.token_env or admin.token_file"
                    ),
                );
            }
        }
        if Some(addr) == main && addr.port() != 0 {
            c.report(
                &listen_key,
                format_args!(
                    "{listen_key} {addr} is also the proxy's `listen` address; \
                     give the admin API its own port"
                ),
            );
        }
    }
    let loopback = listen.is_none_or(|a| a.ip().is_loopback());
    Admin {
        listen,
        token,
        metrics,
        open_metrics: raw.open_metrics.unwrap_or(loopback),
    }
}

fn token_from_env(c: &mut Checker<'_>, name: &str) -> Option<Secret> {
    let key = Key::file("admin.token_env");
    if name.is_empty() || name.contains(['=', '\0']) {
        c.report(
            &key,
            format_args!("{key} must be the name of an environment variable, got {name:?}"),
        );
        return None;
    }
    let problem = match std::env::var(name) {
        Ok(v) if !v.trim().is_empty() => return Some(Secret::new(v.trim())),
        Ok(_) => "is empty",
        Err(std::env::VarError::NotPresent) => "is not set",
        Err(std::env::VarError::NotUnicode(_)) => "is not valid UTF-8",
    };
    c.report(&key, format_args!("{key} names {name}, which {problem}"));
    None
}

fn log(c: &mut Checker<'_>, raw: RawLog) -> Log {
    let format = match raw.format.as_deref() {
        None | Some("human") => LogFormat::Human,
        Some("json") => LogFormat::Json,
        Some(other) => {
            let key = Key::file("log.format");
            c.report(
                &key,
                format_args!("{key} must be \"human\" or \"json\", got {other:?}"),
            );
            LogFormat::Human
        }
    };
    let level = raw.level.unwrap_or_else(|| DEFAULT_LOG_LEVEL.to_string());
    let parsed = if level.trim().is_empty() {
        Err("it is empty".to_string())
    } else {
        tracing_subscriber::EnvFilter::builder()
            .parse(&level)
            .map(drop)
            .map_err(|e| e.to_string())
    };
    if let Err(e) = parsed {
        let key = Key::file("log.level");
        c.report(
            &key,
            format_args!(
                "{key} must be a tracing filter like \"info\" or \"warn,levee=debug\", \
                 got {level:?}: {e}"
            ),
        );
    }
    Log {
        format,
        level,
        access: raw.access.unwrap_or(true),
    }
}
