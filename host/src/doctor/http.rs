//! HTTP: one minimal request (`GET /v1/models`) over the session the layers
//! below made. 200 against 401 tells whether the key works (the key is sent,
//! never printed); the rate-limit headers are read back as budgets.

use super::{Layer, Options, Target, Verdict};
use bytes::Bytes;
use http_body_util::{BodyExt, Empty, Limited};
use hyper_util::rt::{TokioExecutor, TokioIo};

/// Sends the probe over `io`, with the key only when `key_safe` (TLS, or
/// plain HTTP to a loopback address): a key sent in the clear across a
/// network is a key given away.
pub async fn check<T>(io: T, target: &Target, options: &Options, key_safe: bool) -> Layer
where
    T: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
{
    let mut layer = Layer::new("http");
    let withheld = options.api_key.is_some() && !key_safe;
    if withheld {
        layer
            .evidence
            .push("the key was not sent: plain HTTP to another machine would expose it".to_owned());
    }
    let key = options.api_key.as_ref().filter(|_| key_safe);
    let h2 = alpn_is_h2(&io);
    let path = format!("{}/v1/models", target.base_path);
    let mut req = http::Request::get(&path)
        .header(http::header::HOST, host_header(target))
        .header("anthropic-version", "2023-06-01")
        .header(
            http::header::USER_AGENT,
            concat!("levee-doctor/", env!("CARGO_PKG_VERSION")),
        );
    if let Some(key) = key {
        req = req.header("x-api-key", key);
    }
    let Ok(req) = req.body(Empty::<Bytes>::new()) else {
        layer.worsen(Verdict::Fail);
        layer
            .evidence
            .push("the key is not a valid header value".to_owned());
        return layer;
    };
    let sent = tokio::time::timeout(options.timeout, send(io, req, h2)).await;
    let (head, body) = match sent {
        Ok(Ok(v)) => v,
        Ok(Err(e)) => {
            layer.worsen(Verdict::Fail);
            layer.evidence.push(format!("GET {path}: {e}"));
            return layer;
        }
        Err(_) => {
            layer.worsen(Verdict::Fail);
            layer.evidence.push(format!(
                "GET {path}: no response within {:?}: the server accepts connections but does \
                 not answer HTTP",
                options.timeout
            ));
            return layer;
        }
    };
    let status = head.status.as_u16();
    let detail = error_message(&body).unwrap_or_default();
    layer.evidence.push(format!(
        "GET {path} over {}: {status}{detail}",
        if h2 { "HTTP/2" } else { "HTTP/1.1" }
    ));
    if let Some(id) = head.headers.get("request-id").and_then(|v| v.to_str().ok()) {
        layer.evidence.push(format!("request-id {id}"));
    }
    for budget in budgets(&head.headers) {
        layer.evidence.push(budget);
    }
    let keyed = key.is_some();
    match status {
        200..=299 if keyed => layer.evidence.push("the key works".to_owned()),
        200..=299 => {}
        401 if keyed => {
            layer.worsen(Verdict::Fail);
            layer.fix = Some(
                "the key was refused: check that it is current and belongs to this API".to_owned(),
            );
        }
        401 if withheld => {
            layer.worsen(Verdict::Warn);
            layer.fix = Some(
                "the API answers (401 without a key, as expected); use https:// to check the key too"
                    .to_owned(),
            );
        }
        401 => {
            layer.worsen(Verdict::Warn);
            layer.fix = Some(
                "the API answers (401 without a key, as expected); set ANTHROPIC_API_KEY to check the key too"
                    .to_owned(),
            );
        }
        403 => {
            layer.worsen(Verdict::Fail);
            layer.fix = Some(
                "the key lacks permission for this API, or the organization is blocked".to_owned(),
            );
        }
        404 => {
            layer.worsen(Verdict::Warn);
            layer.fix = Some("the path is unknown here: check the upstream's base path".to_owned());
        }
        429 => {
            layer.worsen(Verdict::Warn);
            layer.fix = Some(
                "rate-limited right now; levee paces and queues, see the budgets above".to_owned(),
            );
        }
        _ => {
            layer.worsen(Verdict::Fail);
            layer.fix = Some(format!(
                "the server answered {status}: it or a proxy before it is failing"
            ));
        }
    }
    if let Some(key) = &options.api_key {
        for line in layer.evidence.iter_mut() {
            *line = line.replace(key.as_str(), "[redacted]");
        }
    }
    layer
}

async fn send<T>(
    io: T,
    req: http::Request<Empty<Bytes>>,
    h2: bool,
) -> Result<(http::response::Parts, Bytes), String>
where
    T: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
{
    let io = TokioIo::new(io);
    let resp = if h2 {
        let (mut sender, conn) = hyper::client::conn::http2::handshake(TokioExecutor::new(), io)
            .await
            .map_err(|e| e.to_string())?;
        tokio::spawn(conn);
        sender.send_request(req).await.map_err(|e| e.to_string())?
    } else {
        let (mut sender, conn) = hyper::client::conn::http1::handshake(io)
            .await
            .map_err(|e| e.to_string())?;
        tokio::spawn(conn);
        sender.send_request(req).await.map_err(|e| e.to_string())?
    };
    let (head, body) = resp.into_parts();
    let body = Limited::new(body, 64 << 10)
        .collect()
        .await
        .map_or(Bytes::new(), |c| c.to_bytes());
    Ok((head, body))
}

/// Whether the TLS session (if `io` is one) negotiated HTTP/2.
fn alpn_is_h2<T: 'static>(io: &T) -> bool {
    let any = io as &dyn std::any::Any;
    any.downcast_ref::<tokio_rustls::client::TlsStream<tokio::net::TcpStream>>()
        .is_some_and(|s| s.get_ref().1.alpn_protocol() == Some(b"h2"))
}

fn host_header(target: &Target) -> String {
    let default = if target.https { 443 } else { 80 };
    if target.port == default {
        target.host.clone()
    } else {
        format!("{}:{}", target.host, target.port)
    }
}

/// ` (error_type: message)` from an API error body.
fn error_message(body: &[u8]) -> Option<String> {
    let v: serde_json::Value = serde_json::from_slice(body).ok()?;
    let e = v.get("error")?;
    Some(format!(
        " ({}: {})",
        e.get("type")?.as_str()?,
        e.get("message").and_then(|m| m.as_str()).unwrap_or("")
    ))
}

/// The rate-limit headers as `budget DIMENSION: remaining/limit, resets AT`.
fn budgets(h: &http::HeaderMap) -> Vec<String> {
    let get = |name: String| h.get(name).and_then(|v| v.to_str().ok()).map(str::to_owned);
    ["requests", "tokens", "input-tokens", "output-tokens"]
        .into_iter()
        .filter_map(|dim| {
            let remaining = get(format!("anthropic-ratelimit-{dim}-remaining"))?;
            let limit = get(format!("anthropic-ratelimit-{dim}-limit")).unwrap_or("?".into());
            let reset = get(format!("anthropic-ratelimit-{dim}-reset"))
                .map_or(String::new(), |r| format!(", resets {r}"));
            Some(format!(
                "budget {dim}: {remaining}/{limit} remaining{reset}"
            ))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    /// Probes a server on the other end of a pipe that answers 401; the
    /// request head it read, and the layer.
    async fn probe(key_safe: bool) -> (String, Layer) {
        let (client, mut server) = tokio::io::duplex(64 * 1024);
        let served = tokio::spawn(async move {
            let mut head = Vec::new();
            while !head.ends_with(b"\r\n\r\n") {
                let mut byte = [0u8; 1];
                server.read_exact(&mut byte).await.unwrap();
                head.push(byte[0]);
            }
            let body = r#"{"type":"error","error":{"type":"authentication_error","message":"x"}}"#;
            let reply = format!(
                "HTTP/1.1 401 Unauthorized\r\ncontent-length: {}\r\n\r\n{body}",
                body.len()
            );
            server.write_all(reply.as_bytes()).await.unwrap();
            String::from_utf8(head).unwrap()
        });
        let target = Target {
            https: false,
            host: "api.example".into(),
            port: 80,
            base_path: String::new(),
            tls: Default::default(),
            proxies: vec![],
            proxy_from_env: false,
        };
        let options = Options {
            resolvers: vec![],
            api_key: Some("sk-ant-unit-secret".into()),
            timeout: std::time::Duration::from_secs(5),
        };
        let layer = check(client, &target, &options, key_safe).await;
        (served.await.unwrap(), layer)
    }

    #[tokio::test]
    async fn the_key_crosses_plain_http_only_to_this_machine() {
        let (head, layer) = probe(false).await;
        assert!(head.starts_with("GET /v1/models HTTP/1.1\r\n"), "{head}");
        assert!(!head.to_ascii_lowercase().contains("x-api-key"), "{head}");
        assert!(layer.evidence[0].starts_with("the key was not sent"));
        assert!(layer.fix.unwrap().contains("use https://"));

        let (head, layer) = probe(true).await;
        assert!(head.contains("x-api-key: sk-ant-unit-secret\r\n"), "{head}");
        assert_eq!(layer.verdict, Verdict::Fail, "a sent key was refused");
    }
}
