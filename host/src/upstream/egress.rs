//! Egress through HTTP CONNECT proxies: an upstream's ordered proxy list,
//! each probed in the background, the first healthy one preferred. A
//! connect failure through one proxy falls through to the next within the
//! same attempt. Proxies are named by `host:port` only: credentials never
//! reach a log line, an error or a metric.

use super::connect::ConnectError;
use super::dns::Resolver;
use crate::clock::now_ms;
use crate::config::{ProxyEndpoint, Secret, Upstream, parse_proxy, redact_proxy};
use crate::core::FailureKind;
use crate::telemetry::activity::events::{EventKind, Events};
use crate::telemetry::activity::window::Kind;
use crate::telemetry::activity::{Activity, Track};
use std::net::ToSocketAddrs;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Weak};
use std::time::{Duration, Instant};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// The most a proxy's answer to CONNECT may take, head and all.
const MAX_HEAD: usize = 8 * 1024;
/// `active` when no proxy is healthy.
const NONE: usize = usize::MAX;

/// One upstream's proxies and their health.
pub struct Egress {
    upstream: Arc<String>,
    proxies: Box<[Proxy]>,
    /// The preferred (first healthy) proxy's index, or [`NONE`].
    active: AtomicUsize,
    /// Bumped on every switch, so clients can retire pooled connections
    /// made through the proxy left behind.
    generation: AtomicU64,
    /// Where a switch is told, for `/status`.
    events: Arc<Events>,
}

struct Proxy {
    endpoint: ProxyEndpoint,
    label: String,
    healthy: AtomicBool,
    /// When `healthy` last changed (or the proxy was set up), ms since
    /// the Unix epoch.
    since: AtomicU64,
    /// Its tunnels and their failures, for `/status`.
    track: Arc<Track>,
}

impl Proxy {
    /// Counts a tunnel that failed in `kind`'s way (`connect`: the proxy
    /// could not be reached; `proxy`: it refused), and keeps why.
    fn failed(&self, kind: FailureKind, why: &str) {
        self.track.record(Instant::now(), Kind::Failed(kind), None);
        self.track.failed(super::layer_name(kind), why);
    }
}

/// One proxy as `/status` shows it.
pub struct ProxyStatus<'a> {
    /// `host:port`.
    pub label: &'a str,
    /// Whether new connections go through it.
    pub in_use: bool,
    /// Whether it was reachable when last tried.
    pub healthy: bool,
    /// When `healthy` last changed, ms since the Unix epoch.
    pub since_ms: u64,
    /// Its tunnels: [`Kind::Ok`], [`Kind::Failed`] with `connect` (the
    /// proxy could not be reached) or `proxy` (it refused the tunnel).
    pub track: &'a Track,
}

impl Egress {
    /// The proxies for `upstream` (configured, or from the environment),
    /// with a prober thread; `None` when it connects directly.
    pub fn for_upstream(
        upstream: &Upstream,
        activity: &Activity,
    ) -> anyhow::Result<Option<Arc<Egress>>> {
        let proxies = if !upstream.proxies.is_empty() {
            upstream.proxies.clone()
        } else if upstream.proxy_from_env {
            let https = upstream.scheme == crate::config::Scheme::Https;
            from_env(
                |k| std::env::var(k).ok(),
                https,
                &upstream.host,
                upstream.port,
            )?
            .into_iter()
            .collect()
        } else {
            Vec::new()
        };
        if proxies.is_empty() {
            return Ok(None);
        }
        let egress = Arc::new(Egress::new(
            Arc::new(upstream.name.clone()),
            proxies,
            activity,
        ));
        tracing::info!(upstream = %upstream.name, proxy = %egress.proxies[0].label, "egress through proxy");
        spawn_prober(
            Arc::downgrade(&egress),
            upstream.proxy_check_interval,
            upstream.connect_timeout,
        );
        Ok(Some(egress))
    }

    fn new(upstream: Arc<String>, proxies: Vec<ProxyEndpoint>, activity: &Activity) -> Egress {
        let now = now_ms();
        Egress {
            proxies: proxies
                .into_iter()
                .map(|endpoint| {
                    let label = endpoint.label();
                    Proxy {
                        track: activity.proxy(&upstream, &label),
                        label,
                        endpoint,
                        healthy: AtomicBool::new(true),
                        since: AtomicU64::new(now),
                    }
                })
                .collect(),
            upstream,
            active: AtomicUsize::new(0),
            generation: AtomicU64::new(0),
            events: activity.events.clone(),
        }
    }

    /// Each proxy, in configured order.
    pub fn status(&self) -> impl Iterator<Item = ProxyStatus<'_>> {
        let active = self.active.load(Ordering::Relaxed);
        self.proxies
            .iter()
            .enumerate()
            .map(move |(i, p)| ProxyStatus {
                label: &p.label,
                in_use: i == active,
                healthy: p.healthy.load(Ordering::Relaxed),
                since_ms: p.since.load(Ordering::Relaxed),
                track: &p.track,
            })
    }

    /// Changes on every switch of the preferred proxy.
    pub fn generation(&self) -> u64 {
        self.generation.load(Ordering::Acquire)
    }

    /// Each proxy's `host:port` and whether it is the one in use.
    pub fn in_use(&self) -> impl Iterator<Item = (&str, bool)> {
        let active = self.active.load(Ordering::Relaxed);
        self.proxies
            .iter()
            .enumerate()
            .map(move |(i, p)| (p.label.as_str(), i == active))
    }

    /// Healthy proxies in configured order, then the others as a last
    /// resort.
    fn order(&self) -> Vec<usize> {
        let (mut up, down): (Vec<usize>, Vec<usize>) =
            (0..self.proxies.len()).partition(|&i| self.proxies[i].healthy.load(Ordering::Relaxed));
        up.extend(down);
        up
    }

    /// Records a probe or connect result and logs a switch, once.
    fn set_health(&self, i: usize, ok: bool) {
        if self.proxies[i].healthy.swap(ok, Ordering::Relaxed) != ok {
            self.proxies[i].since.store(now_ms(), Ordering::Relaxed);
        }
        let preferred = (0..self.proxies.len())
            .find(|&j| self.proxies[j].healthy.load(Ordering::Relaxed))
            .unwrap_or(NONE);
        let before = self.active.swap(preferred, Ordering::AcqRel);
        if before == preferred {
            return;
        }
        self.generation.fetch_add(1, Ordering::AcqRel);
        let name = |i: usize| self.proxies.get(i).map_or("none", |p| p.label.as_str());
        if preferred == NONE {
            tracing::warn!(upstream = %self.upstream, from = name(before), "every egress proxy is down");
            let detail = format!("none reachable; was {}", name(before));
            self.events
                .record(EventKind::ProxiesDown, Some(&self.upstream), detail);
        } else {
            tracing::warn!(upstream = %self.upstream, from = name(before), to = name(preferred), "egress proxy switched");
            let detail = format!("{} → {}", name(before), name(preferred));
            self.events
                .record(EventKind::ProxySwitch, Some(&self.upstream), detail);
        }
    }

    /// A TCP stream tunnelled to `host:port` through the first proxy that
    /// takes it. Each proxy gets `timeout`.
    pub async fn tunnel(
        &self,
        host: &str,
        port: u16,
        dns: &Resolver,
        timeout: Duration,
    ) -> Result<TcpStream, ConnectError> {
        let mut failures = Vec::new();
        for i in self.order() {
            let proxy = &self.proxies[i];
            let attempt = tokio::time::timeout(timeout, open(proxy, host, port, dns, timeout));
            let outcome = match attempt.await {
                Ok(r) => r,
                Err(_) => Err(Failure::Reach(format!("no answer within {timeout:?}"))),
            };
            match outcome {
                Ok(stream) => {
                    proxy.track.record(Instant::now(), Kind::Ok, None);
                    if !proxy.healthy.load(Ordering::Relaxed) {
                        self.set_health(i, true);
                    }
                    return Ok(stream);
                }
                Err(Failure::Reach(why)) => {
                    self.set_health(i, false);
                    proxy.failed(FailureKind::Connect, &why);
                    failures.push(format!("proxy {}: {why}", proxy.label));
                }
                Err(Failure::Refused(why, _)) => {
                    proxy.failed(FailureKind::Proxy, &why);
                    failures.push(format!("proxy {}: {why}", proxy.label))
                }
            }
        }
        Err(ConnectError {
            kind: FailureKind::Proxy,
            message: failures.join("; "),
        })
    }
}

/// Why a proxy gave no tunnel.
#[derive(Debug)]
pub(crate) enum Failure {
    /// The proxy itself could not be reached: it is marked down.
    Reach(String),
    /// It answered, but not with a tunnel; its status, when it sent one.
    Refused(String, Option<u16>),
}

async fn open(
    proxy: &Proxy,
    host: &str,
    port: u16,
    dns: &Resolver,
    timeout: Duration,
) -> Result<TcpStream, Failure> {
    let addrs = dns
        .resolve(&proxy.endpoint.host, proxy.endpoint.port)
        .await
        .map_err(|e| Failure::Reach(e.message))?;
    let raced = super::eyeballs::race(&addrs, timeout, false).await;
    let last = raced
        .tried
        .iter()
        .rev()
        .find_map(|t| {
            Some(format!(
                "cannot connect to {}: {}",
                t.addr,
                t.result.as_ref().err()?
            ))
        })
        .unwrap_or_default();
    let stream = raced.stream.map(|(s, _)| s);
    let mut stream = stream.ok_or(Failure::Reach(last))?;
    let _ = stream.set_nodelay(true);
    handshake(&mut stream, host, port, proxy.endpoint.auth.as_ref()).await?;
    Ok(stream)
}

/// Sends CONNECT and reads the proxy's answer head (bounded). Only a 2xx
/// opens the tunnel. `levee doctor` uses it as is.
pub(crate) async fn handshake(
    stream: &mut TcpStream,
    host: &str,
    port: u16,
    auth: Option<&Secret>,
) -> Result<(), Failure> {
    let authority = if host.contains(':') {
        format!("[{host}]:{port}")
    } else {
        format!("{host}:{port}")
    };
    let mut head = format!("CONNECT {authority} HTTP/1.1\r\nHost: {authority}\r\n");
    if let Some(auth) = auth {
        head += &format!(
            "Proxy-Authorization: Basic {}\r\n",
            base64(auth.expose().as_bytes())
        );
    }
    head += "\r\n";
    let io = |e: std::io::Error| Failure::Reach(format!("lost during CONNECT: {e}"));
    stream.write_all(head.as_bytes()).await.map_err(io)?;
    let mut buf = Vec::with_capacity(512);
    let mut chunk = [0u8; 512];
    let end = loop {
        let n = stream.read(&mut chunk).await.map_err(io)?;
        if n == 0 {
            return Err(Failure::Reach(
                "closed the connection during CONNECT".into(),
            ));
        }
        buf.extend_from_slice(&chunk[..n]);
        if let Some(at) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            break at + 4;
        }
        if buf.len() > MAX_HEAD {
            return Err(Failure::Refused(
                format!("answered CONNECT with a head over {MAX_HEAD} bytes"),
                None,
            ));
        }
    };
    let line = String::from_utf8_lossy(&buf[..end]);
    let line = line.lines().next().unwrap_or_default().trim();
    let status = line
        .strip_prefix("HTTP/1.")
        .and_then(|rest| rest.get(2..5))
        .and_then(|s| s.parse::<u16>().ok());
    match status {
        Some(200..=299) if end == buf.len() => Ok(()),
        Some(code @ 200..=299) => Err(Failure::Refused(
            "sent data before the tunnel opened".into(),
            Some(code),
        )),
        Some(code) => Err(Failure::Refused(
            format!(
                "refused CONNECT to {authority}: {}",
                line.get(9..).unwrap_or(line)
            ),
            Some(code),
        )),
        None => Err(Failure::Refused(
            format!(
                "answered CONNECT with no HTTP status line: {:?}",
                line.chars().take(64).collect::<String>()
            ),
            None,
        )),
    }
}

/// Probes every proxy with a TCP connect each `interval`, until the
/// egress is dropped (a reload replaced it).
fn spawn_prober(egress: Weak<Egress>, interval: Duration, timeout: Duration) {
    let spawned = std::thread::Builder::new()
        .name("levee-egress-probe".into())
        .spawn(move || {
            loop {
                std::thread::sleep(interval);
                let Some(egress) = egress.upgrade() else {
                    return;
                };
                for (i, p) in egress.proxies.iter().enumerate() {
                    let target = (p.endpoint.host.as_str(), p.endpoint.port);
                    let ok = target.to_socket_addrs().is_ok_and(|mut addrs| {
                        addrs.any(|a| std::net::TcpStream::connect_timeout(&a, timeout).is_ok())
                    });
                    egress.set_health(i, ok);
                }
            }
        });
    if let Err(e) = spawned {
        tracing::error!("cannot start the egress proxy prober: {e}");
    }
}

/// The proxy the environment names for an upstream, unless `NO_PROXY`
/// exempts it. `get` reads a variable; lower-case names win, as in curl.
pub fn from_env(
    get: impl Fn(&str) -> Option<String>,
    https: bool,
    host: &str,
    port: u16,
) -> anyhow::Result<Option<ProxyEndpoint>> {
    let first = |names: [&'static str; 2]| {
        names
            .into_iter()
            .find_map(|n| get(n).filter(|v| !v.trim().is_empty()).map(|v| (n, v)))
    };
    let names = if https {
        ["https_proxy", "HTTPS_PROXY"]
    } else {
        ["http_proxy", "HTTP_PROXY"]
    };
    let Some((name, value)) = first(names) else {
        return Ok(None);
    };
    if let Some((_, no)) = first(["no_proxy", "NO_PROXY"])
        && super::no_proxy::matches(&no, host, port)
    {
        return Ok(None);
    }
    parse_proxy(value.trim()).map(Some).map_err(|why| {
        anyhow::anyhow!(
            "{name}={:?} is not a usable proxy ({why}); fix it, or set proxy_from_env = false",
            redact_proxy(value.trim())
        )
    })
}

fn base64(input: &[u8]) -> String {
    use base64::Engine;
    base64::engine::general_purpose::STANDARD.encode(input)
}

#[cfg(test)]
#[path = "egress_tests.rs"]
mod tests;
