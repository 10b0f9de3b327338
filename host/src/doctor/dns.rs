//! DNS: the system resolver's answer against each configured resolver's.
//! NXDOMAIN, timeouts and answers that share no address are flagged; two
//! resolvers that disagree entirely is what DNS pollution looks like.

use super::wire::{self, A, AAAA};
use super::{Layer, Options, Verdict};
use std::collections::BTreeSet;
use std::net::{IpAddr, SocketAddr};
use std::time::{Duration, Instant};
use tokio::net::UdpSocket;

/// Checks `host`; returns the layer and the addresses to try above it.
pub async fn check(host: &str, port: u16, options: &Options) -> (Layer, Vec<SocketAddr>) {
    let mut layer = Layer::new("dns");
    if let Ok(ip) = host.trim_matches(['[', ']']).parse::<IpAddr>() {
        layer
            .evidence
            .push(format!("{ip} is an address: no lookup"));
        return (layer, vec![SocketAddr::new(ip, port)]);
    }
    let started = Instant::now();
    let system = tokio::time::timeout(options.timeout, tokio::net::lookup_host((host, port))).await;
    let system: Result<BTreeSet<IpAddr>, String> = match system {
        Ok(Ok(addrs)) => Ok(addrs.map(|a| a.ip()).collect()),
        Ok(Err(e)) => Err(e.to_string()),
        Err(_) => Err(format!("no answer within {:?}", options.timeout)),
    };
    match &system {
        Ok(ips) => layer.evidence.push(format!(
            "system resolver: {} in {:.1} ms",
            list(ips),
            started.elapsed().as_secs_f64() * 1e3
        )),
        Err(e) => {
            layer.worsen(Verdict::Fail);
            layer.evidence.push(format!("system resolver: {e}"));
        }
    }
    let mut agreed: Option<BTreeSet<IpAddr>> = None;
    for &resolver in &options.resolvers {
        match ask(resolver, host, options.timeout).await {
            Ok(answer) if answer.rcode != 0 => {
                layer.worsen(Verdict::Warn);
                layer
                    .evidence
                    .push(format!("{resolver}: {}", wire::rcode_name(answer.rcode)));
            }
            Ok(answer) => {
                let ips: BTreeSet<IpAddr> = answer.addrs.iter().map(|(ip, _)| *ip).collect();
                let ttl = answer.addrs.iter().map(|(_, t)| *t).min().unwrap_or(0);
                layer
                    .evidence
                    .push(format!("{resolver}: {} (ttl {ttl} s)", list(&ips)));
                if let Ok(sys) = &system
                    && !ips.is_empty()
                    && sys.is_disjoint(&ips)
                {
                    layer.worsen(Verdict::Warn);
                    layer.evidence.push(format!(
                        "{resolver} and the system resolver share no address: possible DNS \
                         pollution or a split-horizon network"
                    ));
                    layer.fix = Some(override_fix(host, &ips));
                }
                agreed.get_or_insert(ips);
            }
            Err(e) => {
                layer.worsen(Verdict::Warn);
                layer.evidence.push(format!("{resolver}: {e}"));
            }
        }
    }
    let addrs: BTreeSet<IpAddr> = match (&system, &agreed) {
        (Ok(sys), _) => sys.clone(),
        (Err(_), Some(theirs)) if !theirs.is_empty() => {
            layer.fix = Some(format!(
                "the system resolver fails where another answers: {}",
                override_fix(host, theirs)
            ));
            theirs.clone()
        }
        (Err(e), _) => {
            layer.fix.get_or_insert(
                if e.contains("failed to lookup") || e.contains("not known") {
                    format!(
                        "`{host}` does not resolve: check its spelling; if the network's resolver \
                     is broken or polluted, configure resolvers or a static override"
                    )
                } else {
                    "check /etc/resolv.conf, or configure resolvers (for example 1.1.1.1:53)"
                        .to_owned()
                },
            );
            BTreeSet::new()
        }
    };
    let addrs = addrs
        .into_iter()
        .map(|ip| SocketAddr::new(ip, port))
        .collect();
    (layer, addrs)
}

fn override_fix(host: &str, ips: &BTreeSet<IpAddr>) -> String {
    let quoted: Vec<String> = ips.iter().map(|ip| format!("\"{ip}\"")).collect();
    format!(
        "if you trust that resolver, pin the addresses: a static override \
         `\"{host}\" = [{}]`, or list the resolver in the config",
        quoted.join(", ")
    )
}

/// A and AAAA from one resolver over UDP.
async fn ask(resolver: SocketAddr, host: &str, timeout: Duration) -> Result<wire::Answer, String> {
    let bind: SocketAddr = if resolver.is_ipv4() {
        "0.0.0.0:0".parse().unwrap()
    } else {
        "[::]:0".parse().unwrap()
    };
    let socket = UdpSocket::bind(bind).await.map_err(|e| e.to_string())?;
    socket.connect(resolver).await.map_err(|e| e.to_string())?;
    let mut all = wire::Answer {
        rcode: 0,
        addrs: Vec::new(),
    };
    // A resolver may refuse one type (some answer AAAA with REFUSED when
    // they know only an A record): an error counts only if no type gave an
    // address.
    let mut refusal = None;
    for qtype in [A, AAAA] {
        let id = fastrand::u16(..);
        let q = wire::query(id, host, qtype)?;
        socket.send(&q).await.map_err(|e| e.to_string())?;
        let mut buf = [0u8; 1500];
        let n = tokio::time::timeout(timeout, socket.recv(&mut buf))
            .await
            .map_err(|_| format!("no answer within {timeout:?}"))?
            .map_err(|e| e.to_string())?;
        let answer = wire::parse(id, &buf[..n])?;
        if answer.rcode == 0 {
            all.addrs.extend(answer.addrs);
        } else {
            refusal.get_or_insert(answer);
        }
    }
    match refusal {
        Some(refusal) if all.addrs.is_empty() => Ok(refusal),
        _ => Ok(all),
    }
}

fn list(ips: &BTreeSet<IpAddr>) -> String {
    if ips.is_empty() {
        return "no addresses".to_owned();
    }
    ips.iter()
        .map(IpAddr::to_string)
        .collect::<Vec<_>>()
        .join(", ")
}
