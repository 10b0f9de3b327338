//! The admin listener: loopback by default, and every endpoint except
//! the probes (`/healthz`, `/readyz`, and `/metrics` when
//! `admin.open_metrics`) requires the bearer token.
//!
//! - `GET /healthz`: liveness.
//! - `GET /readyz`: 200 once a policy is loaded and an upstream is usable
//!   (its circuit not open, not found unhealthy); else 503 saying why.
//! - `GET /status`: upstreams, budgets, the policy (see `status.rs`); JSON,
//!   or an HTML page for a browser.
//! - `GET /policy`: the active policy and recent swaps.
//! - `GET /metrics`: Prometheus metrics (see `telemetry/metrics.rs`).
//! - `POST /policy` with `{"source": "builtin:NAME" | "/path/x.wasm", "config": {...}}`:
//!   swap the policy; the answer says what changed, or why it was refused.
//! - `POST /reload`: what SIGHUP does.

mod status;

use crate::config::Secret;
use crate::gateway::Gateway;
use crate::gateway::reply::{Body, full};
use crate::policy::{LoadError, PolicySource, describe};
use bytes::Bytes;
use http::{Method, Request, Response, StatusCode};
use http_body_util::{BodyExt, Limited};
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use serde_json::json;
use std::convert::Infallible;
use std::sync::Arc;
use tokio::net::TcpListener;

/// Who may ask what.
#[derive(Clone, Debug, Default)]
pub struct Access {
    /// The bearer token every other endpoint requires.
    pub token: Option<Secret>,
    /// `/metrics` without the token.
    pub open_metrics: bool,
}

/// Serves the admin API on `listener` forever.
pub async fn serve_admin(gw: Arc<Gateway>, listener: TcpListener, access: Access) {
    let access = Arc::new(access);
    let mut failing = false;
    loop {
        let stream = match listener.accept().await {
            Ok((stream, _)) => {
                failing = false;
                stream
            }
            Err(e) => {
                // Out of descriptors and the like: back off instead of
                // spinning, and say so once until accepts work again.
                if !std::mem::replace(&mut failing, true) {
                    tracing::warn!(error = %e, "admin: accept failed; retrying every 50 ms");
                }
                tokio::time::sleep(std::time::Duration::from_millis(50)).await;
                continue;
            }
        };
        let (gw, access) = (gw.clone(), access.clone());
        tokio::spawn(async move {
            let service = service_fn(move |req| {
                let (gw, access) = (gw.clone(), access.clone());
                async move { Ok::<_, Infallible>(route(&gw, &access, req).await) }
            });
            let _ = hyper::server::conn::http1::Builder::new()
                .serve_connection(TokioIo::new(stream), service)
                .await;
        });
    }
}

async fn route(gw: &Arc<Gateway>, access: &Access, req: Request<Incoming>) -> Response<Body> {
    let get = matches!(*req.method(), Method::GET | Method::HEAD);
    match req.uri().path() {
        "/healthz" => return reply(StatusCode::OK, json!({"status": "ok"})),
        "/readyz" => return readiness(gw),
        "/metrics" if get && access.open_metrics => return metrics(gw),
        _ => {}
    }
    if let Some(refusal) = refuse_unauthorized(access.token.as_ref(), req.headers()) {
        return refusal;
    }
    if !matches!(*req.method(), Method::GET | Method::HEAD)
        && let Some(refusal) = refuse_forged_change(req.headers())
    {
        return refusal;
    }
    match (req.method().clone(), req.uri().path()) {
        (Method::GET, "/policy") => reply(StatusCode::OK, policy_status(gw)),
        (Method::GET, "/status") => {
            let snapshot = status::snapshot(gw);
            if status::wants_html(req.headers()) {
                let mut resp = Response::new(full(status::page(&snapshot)));
                resp.headers_mut().insert(
                    http::header::CONTENT_TYPE,
                    http::HeaderValue::from_static("text/html; charset=utf-8"),
                );
                resp
            } else {
                reply(StatusCode::OK, snapshot)
            }
        }
        (Method::GET, "/metrics") => metrics(gw),
        (Method::POST, "/policy") => swap(gw, req).await,
        (Method::POST, "/reload") => match off_thread(gw, |gw| gw.reload()).await {
            Ok(done) => reply(StatusCode::OK, json!({"reloaded": done})),
            Err(e) => reply(
                StatusCode::UNPROCESSABLE_ENTITY,
                json!({"refused": format!("{e:#}")}),
            ),
        },
        _ => reply(
            StatusCode::NOT_FOUND,
            json!({"error": "no such admin endpoint"}),
        ),
    }
}

fn metrics(gw: &Gateway) -> Response<Body> {
    let mut resp = Response::new(full(gw.render_metrics()));
    resp.headers_mut().insert(
        http::header::CONTENT_TYPE,
        http::HeaderValue::from_static(
            "application/openmetrics-text; version=1.0.0; charset=utf-8",
        ),
    );
    resp
}

/// Ready when the policy is loaded (it is, once the gateway exists: a
/// policy that fails to load stops the start) and some upstream is usable.
fn readiness(gw: &Gateway) -> Response<Body> {
    use crate::core::{Circuit, Health};
    let rt = gw.runtime();
    // Health is the upstream's in every class.
    let view = rt.view(crate::clock::now_ms(), rt.limits.classes.other());
    let mut usable = Vec::new();
    let mut not = Vec::new();
    for (u, v) in rt.upstreams.iter().zip(&view.upstreams) {
        let name = u.config.name.as_str();
        match (v.circuit, v.health) {
            (Circuit::Open, _) => not.push(format!("{name} (circuit open)")),
            (_, Health::Unhealthy) => not.push(format!("{name} (unhealthy)")),
            _ => usable.push(name),
        }
    }
    let policy = describe(&gw.policy.current());
    if usable.is_empty() {
        let reason = format!("no upstream is usable: {}", not.join(", "));
        reply(
            StatusCode::SERVICE_UNAVAILABLE,
            json!({"status": "not ready", "reason": reason, "policy": policy}),
        )
    } else {
        reply(
            StatusCode::OK,
            json!({"status": "ready", "policy": policy, "usable_upstreams": usable}),
        )
    }
}

/// The refusal for a request without the right bearer token, if any.
fn refuse_unauthorized(
    token: Option<&Secret>,
    headers: &http::HeaderMap,
) -> Option<Response<Body>> {
    let Some(token) = token else {
        return Some(reply(
            StatusCode::FORBIDDEN,
            json!({"error": "the admin API is disabled: set admin.token_env or admin.token_file"}),
        ));
    };
    let given = headers
        .get(http::header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(presented_token);
    match given {
        Some(given) if token.matches(&given) => None,
        _ => {
            let mut refusal = reply(
                StatusCode::UNAUTHORIZED,
                json!({"error": "a valid bearer token is required"}),
            );
            // A browser asks for it: any user name, the token as password.
            refusal.headers_mut().insert(
                http::header::WWW_AUTHENTICATE,
                http::HeaderValue::from_static("Basic realm=\"levee admin\", charset=\"UTF-8\""),
            );
            Some(refusal)
        }
    }
}

/// The refusal for a change a web page could have made a browser send, if
/// this is one. A browser that opened `/status` keeps its Basic login and
/// attaches it to any page's request to this origin; it never attaches a
/// Bearer token on its own, and says in `Sec-Fetch-Site` where a request
/// came from.
fn refuse_forged_change(headers: &http::HeaderMap) -> Option<Response<Body>> {
    let basic = headers
        .get(http::header::AUTHORIZATION)
        .is_some_and(|v| v.as_bytes().starts_with(b"Basic "));
    if basic {
        return Some(reply(
            StatusCode::UNAUTHORIZED,
            json!({"error": "a change needs `authorization: Bearer TOKEN`; a browser's Basic login only reads"}),
        ));
    }
    let site = headers
        .get("sec-fetch-site")
        .map(http::HeaderValue::as_bytes);
    if site.is_some_and(|s| s != b"same-origin" && s != b"none") {
        return Some(reply(
            StatusCode::FORBIDDEN,
            json!({"error": "a change sent from another site's page is refused (sec-fetch-site)"}),
        ));
    }
    None
}

/// The token in an `Authorization` value: `Bearer TOKEN`, or `Basic` with
/// the token as the password (what a browser sends).
fn presented_token(value: &str) -> Option<Vec<u8>> {
    use base64::Engine;
    if let Some(token) = value.strip_prefix("Bearer ") {
        return Some(token.as_bytes().to_vec());
    }
    let encoded = value.strip_prefix("Basic ")?;
    let decoded = base64::engine::general_purpose::STANDARD
        .decode(encoded.trim())
        .ok()?;
    let colon = decoded.iter().position(|&b| b == b':')?;
    Some(decoded[colon + 1..].to_vec())
}

pub(super) fn policy_status(gw: &Gateway) -> serde_json::Value {
    let p = gw.policy.current();
    let history: Vec<_> = gw
        .policy
        .history()
        .iter()
        .map(|r| {
            json!({
                "at_ms": r.at.duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_millis() as u64),
                "from": r.from, "to": r.to, "elapsed_ms": r.elapsed.as_secs_f64() * 1e3,
                "result": match &r.result { Ok(()) => "ok".to_owned(), Err(e) => e.clone() },
            })
        })
        .collect();
    json!({
        "active": describe(&p),
        "name": p.info().name, "version": p.info().version, "digest": p.digest(),
        "source": p.source(), "config": p.config(), "swaps": history,
    })
}

async fn swap(gw: &Arc<Gateway>, req: Request<Incoming>) -> Response<Body> {
    let json_body = req
        .headers()
        .get(http::header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split(';').next())
        .is_some_and(|t| t.trim().eq_ignore_ascii_case("application/json"));
    if !json_body {
        return reply(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            json!({"error": "the body must be sent as `content-type: application/json`"}),
        );
    }
    let body: Bytes = match Limited::new(req.into_body(), 1 << 20).collect().await {
        Ok(b) => b.to_bytes(),
        Err(e) => {
            return reply(
                StatusCode::BAD_REQUEST,
                json!({"error": format!("cannot read the body: {e}")}),
            );
        }
    };
    let parsed: serde_json::Value = match serde_json::from_slice(&body) {
        Ok(v) => v,
        Err(e) => {
            return reply(
                StatusCode::BAD_REQUEST,
                json!({"error": format!("the body must be JSON: {e}")}),
            );
        }
    };
    let Some(source) = parsed.get("source").and_then(|s| s.as_str()) else {
        return reply(
            StatusCode::BAD_REQUEST,
            json!({"error": "`source` (a string: builtin:NAME or a .wasm path) is required"}),
        );
    };
    let config = match parsed.get("config") {
        None | Some(serde_json::Value::Null) => String::new(),
        Some(serde_json::Value::String(s)) => s.clone(),
        Some(other) => other.to_string(),
    };
    let source = PolicySource::parse(source);
    let swapped = off_thread(gw, move |gw| {
        gw.swap_policy(&source, &config)
            .map_err(anyhow::Error::from)
    })
    .await;
    match swapped {
        Ok(record) => reply(
            StatusCode::OK,
            json!({"swapped": {"from": record.from, "to": record.to, "elapsed_ms": record.elapsed.as_secs_f64() * 1e3}}),
        ),
        Err(e) => match e.downcast::<LoadError>() {
            Ok(e) => reply(
                StatusCode::UNPROCESSABLE_ENTITY,
                json!({"refused": {"stage": e.stage.to_string(), "message": e.message, "policy": e.source_name},
                       "active": describe(&gw.policy.current())}),
            ),
            Err(e) => reply(
                StatusCode::INTERNAL_SERVER_ERROR,
                json!({"error": format!("{e:#}")}),
            ),
        },
    }
}

/// Runs `f` on the blocking pool: loading a policy compiles it, which must
/// not stall the thread that accepts connections.
async fn off_thread<T: Send + 'static>(
    gw: &Arc<Gateway>,
    f: impl FnOnce(&Gateway) -> anyhow::Result<T> + Send + 'static,
) -> anyhow::Result<T> {
    let gw = gw.clone();
    tokio::task::spawn_blocking(move || f(&gw))
        .await
        .map_err(|e| anyhow::anyhow!("the admin task failed: {e}"))?
}

fn reply(status: StatusCode, body: serde_json::Value) -> Response<Body> {
    let mut resp = Response::new(full(body.to_string()));
    *resp.status_mut() = status;
    resp.headers_mut().insert(
        http::header::CONTENT_TYPE,
        http::HeaderValue::from_static("application/json"),
    );
    resp
}

#[cfg(test)]
mod tests {
    use super::presented_token;

    #[test]
    fn the_token_comes_as_bearer_or_as_a_basic_password() {
        assert_eq!(presented_token("Bearer abc").as_deref(), Some(&b"abc"[..]));
        // "admin:s3:cret": the password may hold colons.
        assert_eq!(
            presented_token("Basic YWRtaW46czM6Y3JldA==").as_deref(),
            Some(&b"s3:cret"[..])
        );
        assert_eq!(presented_token("Basic not base64!"), None);
        assert_eq!(presented_token("Basic YWRtaW4="), None, "no colon");
        assert_eq!(presented_token("Digest x"), None);
    }
}
