//! Proxies: each egress proxy the upstream goes through (configured, or
//! `HTTPS_PROXY`/`HTTP_PROXY` when none is), reached with timings, asked to
//! CONNECT to the upstream, and — for https — a TLS handshake through the
//! tunnel. Proxies are named `host:port`: credentials are never shown.
//!
//! The verdict: every proxy works → ok; some fail while another works → WARN
//! (levee fails over to the working one); none works → FAIL.

use super::{Layer, Target, Verdict};
use crate::config::ProxyEndpoint;
use crate::upstream::egress::{self, Failure};
use std::time::{Duration, Instant};
use tokio::net::TcpStream;

/// Checks every proxy of `target`, in the configured order.
pub async fn check(target: &Target, timeout: Duration) -> Layer {
    let mut layer = Layer::new("proxies");
    let (proxies, source) = match list(target) {
        Ok(Some(found)) => found,
        Ok(None) => {
            return Layer::skipped(
                "proxies",
                "no egress proxy: none configured, none in the environment",
            );
        }
        Err(e) => {
            layer.worsen(Verdict::Fail);
            layer.evidence.push(e);
            return layer;
        }
    };
    let mut fixes = Vec::new();
    let mut working = 0;
    for (i, proxy) in proxies.iter().enumerate() {
        let role = match (source, i) {
            ("configured", 0) => "primary",
            ("configured", _) => "backup",
            _ => source,
        };
        let label = proxy.label();
        let auth = if proxy.auth.is_some() {
            ", with credentials"
        } else {
            ""
        };
        match probe(proxy, target, timeout).await {
            Ok(facts) => {
                working += 1;
                layer
                    .evidence
                    .push(format!("proxy {label} ({role}{auth}): ok; {facts}"));
            }
            Err((facts, fix)) => {
                layer
                    .evidence
                    .push(format!("proxy {label} ({role}{auth}): FAIL; {facts}"));
                fixes.push(format!("proxy {label}: {fix}"));
            }
        }
    }
    if working == 0 {
        layer.worsen(Verdict::Fail);
    } else if working < proxies.len() {
        layer.worsen(Verdict::Warn);
        fixes.push(format!(
            "{working} of {} proxies work; levee fails over to a working one, but fix or remove \
             the others",
            proxies.len()
        ));
    }
    if !fixes.is_empty() {
        layer.fix = Some(fixes.join("; "));
    }
    layer
}

/// The proxies levee would use for `target`, and where they come from.
/// Whether `target`'s traffic goes through egress proxies (or would, but
/// the environment's are malformed): then the proxies carry the verdict.
pub fn apply(target: &Target) -> bool {
    !matches!(list(target), Ok(None))
}

fn list(target: &Target) -> Result<Option<(Vec<ProxyEndpoint>, &'static str)>, String> {
    if !target.proxies.is_empty() {
        return Ok(Some((target.proxies.clone(), "configured")));
    }
    if !target.proxy_from_env {
        return Ok(None);
    }
    let found = egress::from_env(
        |k| std::env::var(k).ok(),
        target.https,
        &target.host,
        target.port,
    )
    .map_err(|e| format!("{e:#}"))?;
    let source = if target.https {
        "from HTTPS_PROXY"
    } else {
        "from HTTP_PROXY"
    };
    Ok(found.map(|p| (vec![p], source)))
}

/// One proxy: what was seen when it works, or that and the fix.
async fn probe(
    proxy: &ProxyEndpoint,
    target: &Target,
    timeout: Duration,
) -> Result<String, (String, String)> {
    let started = Instant::now();
    let ms = |since: Instant| format!("{:.1} ms", since.elapsed().as_secs_f64() * 1e3);
    let unreachable = "start it, fix its address, or remove it from `proxies`".to_owned();
    let addrs = match tokio::net::lookup_host((proxy.host.as_str(), proxy.port)).await {
        Ok(addrs) => addrs.collect::<Vec<_>>(),
        Err(e) => return Err((format!("cannot resolve its host: {e}"), unreachable)),
    };
    let mut tried = Vec::new();
    let mut tcp = None;
    for addr in addrs {
        match tokio::time::timeout(timeout, TcpStream::connect(addr)).await {
            Ok(Ok(s)) => {
                tcp = Some((s, addr));
                break;
            }
            Ok(Err(e)) => tried.push(format!("{addr}: {e}")),
            Err(_) => tried.push(format!("{addr}: no answer within {timeout:?}")),
        }
    }
    let Some((mut tcp, addr)) = tcp else {
        return Err((tried.join(", "), unreachable));
    };
    let mut facts = format!("connected to {addr} in {}", ms(started));
    let asked = Instant::now();
    let authority = if target.host.contains(':') {
        format!("[{}]:{}", target.host, target.port)
    } else {
        format!("{}:{}", target.host, target.port)
    };
    let handshake = egress::handshake(&mut tcp, &target.host, target.port, proxy.auth.as_ref());
    match tokio::time::timeout(timeout, handshake).await {
        Ok(Ok(())) => facts += &format!("; CONNECT {authority}: tunnel open in {}", ms(asked)),
        Ok(Err(failure)) => {
            let fix = advice(&failure, proxy, target.port);
            let (Failure::Reach(why) | Failure::Refused(why, _)) = failure;
            return Err((format!("{facts}; {why}"), fix));
        }
        Err(_) => {
            return Err((
                format!("{facts}; no answer to CONNECT {authority} within {timeout:?}"),
                "the proxy accepts connections but does not answer CONNECT: is it an HTTP \
                 proxy, and can it reach the upstream?"
                    .to_owned(),
            ));
        }
    }
    if target.https {
        let (tls, _) = super::tls::over(target, tcp, timeout).await;
        let first = tls.evidence.first().cloned().unwrap_or_default();
        if tls.verdict == Verdict::Fail {
            let fix = tls.fix.unwrap_or_else(|| {
                "the TLS handshake fails only through this proxy: it may re-sign TLS; trust its \
                 root with `ca_file`"
                    .to_owned()
            });
            return Err((format!("{facts}; TLS through the tunnel: {first}"), fix));
        }
        facts += &format!("; TLS through the tunnel: {first}");
    }
    Ok(facts)
}

/// The fix for a proxy that refused to open the tunnel.
fn advice(failure: &Failure, proxy: &ProxyEndpoint, port: u16) -> String {
    match failure {
        Failure::Reach(_) => {
            "the proxy dropped the connection during CONNECT: check that it is an HTTP proxy"
                .to_owned()
        }
        Failure::Refused(_, Some(401 | 407)) if proxy.auth.is_some() => {
            "the proxy refuses these credentials: check user:pass in the proxy URL".to_owned()
        }
        Failure::Refused(_, Some(401 | 407)) => {
            "the proxy wants credentials: put user:pass in the proxy URL \
             (http://user:pass@host:port)"
                .to_owned()
        }
        Failure::Refused(_, Some(403)) => format!(
            "the proxy forbids CONNECT to this host or port: allow port {port} in its config \
             (tinyproxy: `ConnectPort {port}`; squid: the SSL_ports acl)"
        ),
        Failure::Refused(_, Some(code)) => format!(
            "the proxy answered {code} instead of opening a tunnel: check its logs and its \
             access rules for this upstream"
        ),
        Failure::Refused(_, None) => {
            "the proxy does not speak HTTP CONNECT: use an HTTP proxy's address".to_owned()
        }
    }
}
