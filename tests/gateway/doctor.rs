//! `levee doctor`: the verdict per layer, with the evidence and the fix,
//! against real failures: an unknown CA, a missing intermediate, a name only
//! another resolver knows (a real dnsmasq), a port that accepts TCP but
//! never answers HTTP, dead and live tinyproxies.

use levee_tests::egress::{Dnsmasq, Tinyproxy};
use levee_tests::mock::{Chain, MockUpstream, Script, TestPki};
use std::net::TcpListener;
use std::process::{Command, Stdio};

const KEY: &str = "sk-ant-doctor-secret-0042";

/// Runs `levee doctor ARGS` with the key in the environment; its exit code
/// and what it printed.
fn doctor(args: &[&str]) -> (i32, String) {
    let out = Command::new(levee_tests::levee_bin())
        .arg("doctor")
        .args(["--timeout-ms", "2000"])
        .args(args)
        .env("ANTHROPIC_API_KEY", KEY)
        .stdin(Stdio::null())
        .output()
        .expect("levee doctor runs");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(!text.contains(KEY), "the key never appears: {text}");
    (out.status.code().unwrap_or(-1), text)
}

/// What a layer printed: its verdict line and its indented evidence.
fn layer(report: &str, name: &str) -> String {
    let mut lines = report
        .lines()
        .skip_while(|l| !l.starts_with(&format!("  {name:<5} ")));
    let head = lines
        .next()
        .unwrap_or_else(|| panic!("no {name} layer in:\n{report}"));
    let mut out = head.trim_start().to_owned();
    for l in lines.take_while(|l| l.starts_with("        ")) {
        out.push('\n');
        out.push_str(l.trim());
    }
    out
}

#[tokio::test(flavor = "multi_thread")]
async fn an_unknown_ca_is_explained_and_ca_file_fixes_it() {
    let pki = TestPki::new();
    let upstream = MockUpstream::start_tls(Script::new(), pki.server_config(Chain::Full)).await;
    let url = format!("https://localhost:{}", upstream.addr().port());

    let (code, report) = doctor(&[&url]);
    assert_eq!(code, 1, "a failed layer fails the command:\n{report}");
    assert!(layer(&report, "dns").starts_with("dns   ok"), "{report}");
    assert!(layer(&report, "tcp").starts_with("tcp   ok"), "{report}");
    let tls = layer(&report, "tls");
    assert!(tls.starts_with("tls   FAIL"), "{report}");
    assert!(tls.contains("unknown issuer for localhost"), "{tls}");
    assert!(
        tls.contains("cert 0: subject CN=localhost"),
        "the chain as presented: {tls}"
    );
    assert!(tls.contains("days left"), "{tls}");
    assert!(tls.contains("fix:") && tls.contains("`ca_file`"), "{tls}");
    assert!(
        layer(&report, "http").starts_with("http  skipped"),
        "{report}"
    );
    assert!(
        upstream.requests().is_empty(),
        "nothing crossed an unverified session"
    );

    let dir = tempfile::tempdir().unwrap();
    let ca = pki.write_ca(dir.path());
    let (code, report) = doctor(&[&url, "--ca-file", ca.to_str().unwrap()]);
    assert_eq!(code, 0, "{report}");
    let tls = layer(&report, "tls");
    assert!(tls.starts_with("tls   ok"), "{report}");
    assert!(tls.contains("ALPN h2"), "{tls}");
    let http = layer(&report, "http");
    assert!(http.contains("GET /v1/models over HTTP/2: 200"), "{http}");
    assert!(http.contains("the key works"), "{http}");
    let seen = upstream.requests();
    assert_eq!(seen.len(), 1);
    assert_eq!(seen[0].path, "/v1/models");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_missing_intermediate_is_named() {
    let pki = TestPki::new();
    let upstream = MockUpstream::start_tls(Script::new(), pki.server_config(Chain::LeafOnly)).await;
    let dir = tempfile::tempdir().unwrap();
    let ca = pki.write_ca(dir.path());
    let url = format!("https://localhost:{}", upstream.addr().port());
    let (code, report) = doctor(&[&url, "--ca-file", ca.to_str().unwrap()]);
    assert_eq!(code, 1, "{report}");
    let tls = layer(&report, "tls");
    assert!(tls.contains("sent 1 certificate(s)"), "{tls}");
    assert!(tls.contains("omits an intermediate"), "{tls}");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_port_that_never_answers_http_fails_the_http_layer_only() {
    let silent = TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://127.0.0.1:{}", silent.local_addr().unwrap().port());
    let (code, report) = doctor(&[&url]);
    assert_eq!(code, 1, "{report}");
    assert!(layer(&report, "tcp").starts_with("tcp   ok"), "{report}");
    let http = layer(&report, "http");
    assert!(http.starts_with("http  FAIL"), "{report}");
    assert!(http.contains("does not answer HTTP"), "{http}");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_name_only_another_resolver_knows_gets_a_static_override() {
    let upstream = MockUpstream::start(Script::new()).await;
    let dns = Dnsmasq::start(&[("levee-doctor.invalid", "127.0.0.1")], 60);
    let resolver = dns.addr();
    let url = format!("http://levee-doctor.invalid:{}", upstream.addr().port());
    let (_, report) = doctor(&[&url, "--resolver", &resolver]);
    assert!(
        report.contains(&format!("{resolver}: 127.0.0.1")),
        "dnsmasq's answer: {report}"
    );
    let dns = layer(&report, "dns");
    assert!(
        dns.starts_with("dns   FAIL"),
        "the system resolver fails: {report}"
    );
    assert!(
        dns.contains(r#"`"levee-doctor.invalid" = ["127.0.0.1"]`"#),
        "the override to pin: {dns}"
    );
    assert!(layer(&report, "tcp").starts_with("tcp   ok"), "{report}");
    assert!(
        layer(&report, "http").contains("200"),
        "the layers above use the other resolver's answer: {report}"
    );
}

const PROXY_PASSWORD: &str = "pw-doctor-Xk4-never-printed";

/// A config file with one upstream at `url` going through `proxies`.
fn proxied(
    dir: &std::path::Path,
    url: &str,
    ca: Option<&std::path::Path>,
    proxies: &[String],
) -> String {
    let list: Vec<String> = proxies.iter().map(|p| format!("\"{p}\"")).collect();
    let mut text = format!(
        "[[upstreams]]\nname = \"primary\"\nurl = \"{url}\"\nproxies = [{}]\n",
        list.join(", ")
    );
    if let Some(ca) = ca {
        text += &format!("[upstreams.tls]\nca_file = \"{}\"\n", ca.display());
    }
    let path = dir.join("levee.toml");
    std::fs::write(&path, text).unwrap();
    path.to_str().unwrap().to_owned()
}

#[tokio::test(flavor = "multi_thread")]
async fn a_dead_backup_proxy_warns_and_a_dead_only_proxy_fails() {
    let pki = TestPki::new();
    let upstream = MockUpstream::start_tls(Script::new(), pki.server_config(Chain::Full)).await;
    let port = upstream.addr().port();
    let dir = tempfile::tempdir().unwrap();
    let ca = pki.write_ca(dir.path());
    let live = Tinyproxy::start(port, Some(("doc", PROXY_PASSWORD)));
    let mut dead = Tinyproxy::start(port, None);
    dead.kill();
    let url = format!("https://localhost:{port}");

    let config = proxied(dir.path(), &url, Some(&ca), &[live.url(), dead.url()]);
    let (code, report) = doctor(&["--config", &config]);
    assert!(!report.contains(PROXY_PASSWORD), "{report}");
    assert_eq!(code, 0, "a dead backup is a warning:\n{report}");
    let proxies = layer(&report, "proxies");
    assert!(proxies.starts_with("proxies WARN"), "{report}");
    let ok = format!(
        "proxy 127.0.0.1:{} (primary, with credentials): ok;",
        live.port
    );
    assert!(proxies.contains(&ok), "{proxies}");
    assert!(
        proxies.contains(&format!("CONNECT localhost:{port}: tunnel open in")),
        "{proxies}"
    );
    assert!(
        proxies.contains("TLS through the tunnel: handshake ok with SNI localhost"),
        "{proxies}"
    );
    let down = format!("proxy 127.0.0.1:{} (backup): FAIL;", dead.port);
    assert!(proxies.contains(&down), "{proxies}");
    assert!(proxies.contains("Connection refused"), "{proxies}");
    assert!(
        proxies.contains("remove it from `proxies`") && proxies.contains("1 of 2 proxies work"),
        "{proxies}"
    );
    assert_eq!(live.connects(), 1, "one CONNECT through the live proxy");

    let (code, json) = doctor(&["--config", &config, "--json"]);
    assert_eq!(code, 0, "{json}");
    let doc: serde_json::Value = serde_json::from_str(&json).expect("--json is JSON");
    assert_eq!(doc["ok"], true, "{json}");
    let layers = doc["targets"][0]["layers"].as_array().unwrap();
    let verdicts: Vec<(&str, &str)> = layers
        .iter()
        .map(|l| (l["name"].as_str().unwrap(), l["verdict"].as_str().unwrap()))
        .collect();
    assert_eq!(
        verdicts,
        [
            ("dns", "ok"),
            ("tcp", "ok"),
            ("tls", "ok"),
            ("http", "ok"),
            ("proxies", "warn")
        ],
        "{json}"
    );

    let config = proxied(dir.path(), &url, Some(&ca), &[dead.url()]);
    let (code, report) = doctor(&["--config", &config]);
    assert_eq!(code, 1, "the only proxy is dead:\n{report}");
    let proxies = layer(&report, "proxies");
    assert!(proxies.starts_with("proxies FAIL"), "{report}");
    assert!(proxies.contains("fix: proxy 127.0.0.1:"), "{proxies}");
    assert!(layer(&report, "http").starts_with("http  ok"), "{report}");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_proxy_wanting_credentials_or_refusing_the_port_is_explained() {
    let upstream = MockUpstream::start(Script::new()).await;
    let port = upstream.addr().port();
    let dir = tempfile::tempdir().unwrap();
    let url = format!("http://127.0.0.1:{port}");

    let locked = Tinyproxy::start(port, Some(("doc", PROXY_PASSWORD)));
    let bare = format!("http://127.0.0.1:{}", locked.port);
    let config = proxied(dir.path(), &url, None, &[bare]);
    let (code, report) = doctor(&["--config", &config]);
    assert_eq!(code, 1, "{report}");
    let proxies = layer(&report, "proxies");
    assert!(proxies.starts_with("proxies FAIL"), "{report}");
    assert!(
        proxies.contains("407 Proxy Authentication Required"),
        "{proxies}"
    );
    assert!(
        proxies.contains("the proxy wants credentials: put user:pass in the proxy URL"),
        "{proxies}"
    );

    let elsewhere = Tinyproxy::start(port.wrapping_add(1).max(1), None);
    let config = proxied(dir.path(), &url, None, &[elsewhere.url()]);
    let (code, report) = doctor(&["--config", &config]);
    assert_eq!(code, 1, "{report}");
    let proxies = layer(&report, "proxies");
    assert!(proxies.contains("403 Access violation"), "{proxies}");
    assert!(
        proxies.contains(&format!("tinyproxy: `ConnectPort {port}`")),
        "{proxies}"
    );
    assert_eq!(
        upstream.requests().len(),
        2,
        "only the direct HTTP probes reached the upstream"
    );
}

#[test]
fn each_layer_is_printed_the_moment_it_completes() {
    use std::io::{BufRead, BufReader};
    use std::time::{Duration, Instant};
    // TCP connects at once; HTTP then waits its whole 2 s timeout.
    let silent = TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://127.0.0.1:{}", silent.local_addr().unwrap().port());
    let started = Instant::now();
    let mut child = Command::new(levee_tests::levee_bin())
        .args(["doctor", "--timeout-ms", "2000", &url])
        .env_remove("ANTHROPIC_API_KEY")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .spawn()
        .expect("levee doctor runs");
    let lines: Vec<(Duration, String)> = BufReader::new(child.stdout.take().unwrap())
        .lines()
        .map(|l| (started.elapsed(), l.unwrap()))
        .collect();
    child.wait().unwrap();
    let at = |name: &str| {
        lines
            .iter()
            .find(|(_, l)| l.starts_with(&format!("  {name:<5} ")))
            .unwrap_or_else(|| panic!("no {name} line in {lines:?}"))
            .0
    };
    let (tcp, http) = (at("tcp"), at("http"));
    assert!(
        tcp < Duration::from_millis(1_500),
        "the tcp line waited {tcp:?} for the layers after it: {lines:?}"
    );
    assert!(
        http >= tcp + Duration::from_millis(1_500) && http < Duration::from_secs(10),
        "tcp at {tcp:?}, http at {http:?}"
    );
    // Not a terminal: plain lines, no spinner.
    assert!(
        lines
            .iter()
            .all(|(_, l)| !l.contains('\r') && !l.contains('\x1b'))
    );
    let tcp_evidence = &lines
        .iter()
        .find(|(_, l)| l.contains("connected in"))
        .unwrap()
        .1;
    assert!(
        tcp_evidence.contains("(started at +") && tcp_evidence.ends_with(" ms, first: used)"),
        "{tcp_evidence}"
    );
}
