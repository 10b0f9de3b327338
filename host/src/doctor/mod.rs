//! `levee doctor`: the troubleshooting manual, executable. For each target
//! it checks one layer after another — DNS, TCP, TLS, HTTP, then the egress
//! proxies — and prints a verdict per layer with the evidence and, when
//! something is wrong, the fix. A layer that cannot run because one below it
//! failed says so.

mod dns;
mod http;
mod proxies;
mod tls;
mod wire;

use std::fmt::Write;
use std::net::SocketAddr;
use std::time::Duration;

/// What to check and how.
#[derive(Debug, Clone)]
pub struct Target {
    /// `https` or `http`.
    pub https: bool,
    /// Host name or IP literal.
    pub host: String,
    /// Port.
    pub port: u16,
    /// Path prefix for the HTTP probe (the upstream's base path).
    pub base_path: String,
    /// Trust and versions, as the upstream's.
    pub tls: crate::config::Tls,
    /// Its egress proxies, in order of preference.
    pub proxies: Vec<crate::config::ProxyEndpoint>,
    /// With no `proxies`: check the environment's (`HTTPS_PROXY`…).
    pub proxy_from_env: bool,
}

/// Settings shared by every target.
#[derive(Debug, Clone)]
pub struct Options {
    /// Resolvers to compare with the system's, e.g. `1.1.1.1:53`.
    pub resolvers: Vec<SocketAddr>,
    /// The API key for the HTTP layer; never printed.
    pub api_key: Option<String>,
    /// Timeout for each network step.
    pub timeout: Duration,
}

/// A layer's verdict.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    /// Works.
    Ok,
    /// Works, but something is off.
    Warn,
    /// Broken.
    Fail,
    /// Not checked, because a layer below failed.
    Skipped,
}

/// One layer's result.
#[derive(Debug, Clone)]
pub struct Layer {
    /// `dns`, `tcp`, `tls`, `http`, `proxies`.
    pub name: &'static str,
    /// The verdict.
    pub verdict: Verdict,
    /// What was seen, one fact per line.
    pub evidence: Vec<String>,
    /// What to do, when something is wrong.
    pub fix: Option<String>,
}

impl Layer {
    fn new(name: &'static str) -> Layer {
        Layer {
            name,
            verdict: Verdict::Ok,
            evidence: Vec::new(),
            fix: None,
        }
    }

    fn skipped(name: &'static str, why: &str) -> Layer {
        Layer {
            verdict: Verdict::Skipped,
            evidence: vec![why.to_owned()],
            ..Layer::new(name)
        }
    }

    /// Lowers the verdict to `v` if that is worse.
    fn worsen(&mut self, v: Verdict) {
        let rank = |v: Verdict| match v {
            Verdict::Ok => 0,
            Verdict::Skipped => 1,
            Verdict::Warn => 2,
            Verdict::Fail => 3,
        };
        if rank(v) > rank(self.verdict) {
            self.verdict = v;
        }
    }
}

impl Verdict {
    /// As `--json` and the report name it.
    pub fn name(self) -> &'static str {
        match self {
            Verdict::Ok => "ok",
            Verdict::Warn => "WARN",
            Verdict::Fail => "FAIL",
            Verdict::Skipped => "skipped",
        }
    }
}

/// What [`check`] tells as it goes.
pub enum Progress<'a> {
    /// A layer's check has started.
    Checking(&'static str),
    /// A layer's check is done.
    Done(&'a Layer),
}

/// The layers so far, each told to the caller the moment it is done.
struct Report<'a> {
    layers: Vec<Layer>,
    /// Traffic goes through egress proxies: the direct path only warns.
    via_proxies: bool,
    tell: &'a mut dyn FnMut(Progress<'_>),
}

impl Report<'_> {
    fn checking(&mut self, name: &'static str) {
        (self.tell)(Progress::Checking(name));
    }

    fn push(&mut self, mut layer: Layer) {
        if self.via_proxies && layer.name != "proxies" {
            not_the_path(&mut layer);
        }
        (self.tell)(Progress::Done(&layer));
        self.layers.push(layer);
    }
}

/// Checks one target, layer by layer: the direct path, then the proxies.
/// `tell` hears of each layer as it starts and as it completes.
pub async fn check(
    target: &Target,
    options: &Options,
    tell: &mut dyn FnMut(Progress<'_>),
) -> Vec<Layer> {
    let mut report = Report {
        layers: Vec::new(),
        via_proxies: proxies::apply(target),
        tell,
    };
    direct(target, options, &mut report).await;
    report.checking("proxies");
    report.push(proxies::check(target, options.timeout).await);
    report.layers
}

/// levee's traffic goes through egress proxies (which resolve the name and
/// connect themselves), so the direct path is shown but not used: on a
/// network that only lets proxies out, its failures are warnings, and the
/// proxies layer carries the verdict.
fn not_the_path(layer: &mut Layer) {
    if layer.verdict == Verdict::Fail {
        layer.verdict = Verdict::Warn;
        layer.evidence.push(
            "not levee's path: its traffic goes through the egress proxies (see `proxies`)"
                .to_owned(),
        );
    }
}

/// DNS, TCP, TLS and HTTP, straight to the upstream.
async fn direct(target: &Target, options: &Options, report: &mut Report<'_>) {
    report.checking("dns");
    let (dns, addrs) = dns::check(&target.host, target.port, options).await;
    report.push(dns);
    if addrs.is_empty() {
        for name in ["tcp", "tls", "http"] {
            report.push(Layer::skipped(name, "no address to connect to"));
        }
        return;
    }
    report.checking("tcp");
    let (tcp, reachable) = tcp_check(&addrs, options.timeout).await;
    report.push(tcp);
    let Some(addr) = reachable else {
        for name in ["tls", "http"] {
            report.push(Layer::skipped(name, "no address accepted a connection"));
        }
        return;
    };
    if target.https {
        report.checking("tls");
        let (tls, stream) = tls::check(target, addr, options.timeout).await;
        report.push(tls);
        match stream {
            Some(stream) => {
                report.checking("http");
                report.push(http::check(stream, target, options, true).await)
            }
            None => report.push(Layer::skipped("http", "no TLS session")),
        }
    } else {
        report.push(Layer {
            evidence: vec!["plain HTTP upstream: no TLS".to_owned()],
            ..Layer::skipped("tls", "")
        });
        report.checking("http");
        match tokio::net::TcpStream::connect(addr).await {
            // In the clear, the key goes only to this machine.
            Ok(stream) => {
                let key_safe = addr.ip().is_loopback();
                report.push(http::check(stream, target, options, key_safe).await)
            }
            Err(e) => {
                let mut l = Layer::new("http");
                l.worsen(Verdict::Fail);
                l.evidence.push(format!("reconnect to {addr} failed: {e}"));
                report.push(l);
            }
        }
    }
}

/// TCP: every address raced as levee connects (Happy Eyeballs: families
/// interleaved, the next one started 250 ms after the last or as soon as
/// it fails), and waited for, with each one's start and time; the first
/// that connects is the one the layers above use, as it would be levee's.
async fn tcp_check(addrs: &[SocketAddr], timeout: Duration) -> (Layer, Option<SocketAddr>) {
    let mut layer = Layer::new("tcp");
    let raced = crate::upstream::eyeballs::race(addrs, timeout, true).await;
    let first = raced.stream.map(|(_, addr)| addr);
    let mut tried = raced.tried;
    tried.sort_by_key(|t| t.started);
    let mut failed = 0;
    for t in &tried {
        let at = t.started.as_secs_f64() * 1e3;
        let chosen = if Some(t.addr) == first {
            ", first: used"
        } else {
            ""
        };
        match &t.result {
            Ok(took) => layer.evidence.push(format!(
                "{}: connected in {:.1} ms (started at +{at:.0} ms{chosen})",
                t.addr,
                took.as_secs_f64() * 1e3
            )),
            Err(e) => {
                failed += 1;
                layer
                    .evidence
                    .push(format!("{}: {e} (started at +{at:.0} ms)", t.addr));
            }
        }
    }
    if first.is_none() {
        layer.worsen(Verdict::Fail);
        layer.fix = Some(
            "nothing accepts connections on that port: check the port, a firewall, or use an \
             egress proxy (`proxies` on the upstream)"
                .to_owned(),
        );
    } else if failed > 0 {
        layer.worsen(Verdict::Warn);
        layer.fix = Some(format!(
            "{failed} of {} addresses refuse or drop connections; levee races them (Happy \
             Eyeballs), so each costs it up to 250 ms, but a static override with only the \
             working ones avoids that",
            addrs.len()
        ));
    }
    (layer, first)
}

impl Target {
    /// `scheme://host:port`.
    pub fn url(&self) -> String {
        let scheme = if self.https { "https" } else { "http" };
        if self.host.contains(':') {
            format!("{scheme}://[{}]:{}", self.host, self.port)
        } else {
            format!("{scheme}://{}:{}", self.host, self.port)
        }
    }
}

/// The report for one target, as JSON (`--json`).
pub fn to_json(target: &Target, layers: &[Layer]) -> serde_json::Value {
    let layers: Vec<serde_json::Value> = layers
        .iter()
        .map(|l| {
            serde_json::json!({
                "name": l.name,
                "verdict": l.verdict.name().to_ascii_lowercase(),
                "evidence": l.evidence.iter().filter(|e| !e.is_empty()).collect::<Vec<_>>(),
                "fix": l.fix,
            })
        })
        .collect();
    serde_json::json!({ "url": target.url(), "layers": layers })
}

/// The report for one target, as text.
pub fn render(target: &Target, layers: &[Layer]) -> String {
    let mut out = format!("{}\n", target.url());
    for l in layers {
        out.push_str(&render_layer(l));
    }
    out
}

/// One layer's lines of the text report.
pub fn render_layer(l: &Layer) -> String {
    let mut out = String::new();
    let _ = writeln!(out, "  {:<5} {}", l.name, l.verdict.name());
    for e in l.evidence.iter().filter(|e| !e.is_empty()) {
        let _ = writeln!(out, "        {e}");
    }
    if let Some(fix) = &l.fix {
        let _ = writeln!(out, "        fix: {fix}");
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn behind_proxies_a_failing_direct_path_only_warns() {
        let mut failed = Layer::new("tcp");
        failed.worsen(Verdict::Fail);
        not_the_path(&mut failed);
        assert_eq!(failed.verdict, Verdict::Warn);
        assert!(failed.evidence[0].contains("egress proxies"));
        let mut skipped = Layer::skipped("tls", "no address");
        not_the_path(&mut skipped);
        assert_eq!(skipped.verdict, Verdict::Skipped);
    }
}
