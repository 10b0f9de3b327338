//! One client request, from admission to delivery.
//!
//! 1. Read the body (bounded by `rails.max_body_bytes`) and its facts.
//! 2. Ask the policy for admission: admit, queue until a time, or reject.
//! 3. Attempt: send to the planned upstream, wait for the head (per-try
//!    timeout), and for an error status read a bounded prefix of the body.
//! 4. Ask the policy what follows; the rails (attempt ceiling, deadline,
//!    retry budget) may overrule a retry, never the other way round.
//! 5. Deliver: the response as it came (plus `x-levee-attempts`, and the
//!    verdict headers when levee gave up), streamed under watch.

use super::admission::{self, Settle};
use super::record::Recorder;
use super::reply::{
    Body, LocalError, RETRY_AFTER_MS, SHOULD_RETRY, set_attempts, set_verdict, strip_hop_by_hop,
};
use super::server::Gateway;
use super::stream::{Guarded, Termination, Watch};
use super::{Runtime, facts};
use crate::clock::now_ms;
use crate::core::{
    Admission, Attempt, FailureKind, GiveUp, NextStep, Outcome, RequestFacts, ResponseFacts,
    headers, rails::check_retry,
};
use crate::limits::ClientKey;
use crate::limits::admit::Reservation;
use crate::limits::headers::Found;
use crate::telemetry::access::{Access, Head};
use crate::telemetry::metrics::attempt_outcome;
use crate::upstream::{AttemptError, UpstreamBody, layer_name};
use bytes::{Bytes, BytesMut};
use http::{HeaderMap, HeaderName, Request, Response, StatusCode};
use http_body_util::{BodyExt, Full, Limited};
use hyper::body::Incoming;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// Serves one client request, and counts it.
pub async fn handle(gw: Arc<Gateway>, req: Request<Incoming>) -> Response<Body> {
    let arrived = Instant::now();
    let method = facts::method_label(req.method());
    let endpoint = facts::endpoint_label(facts::endpoint(req.uri().path()));
    let resp = respond(gw.clone(), req, arrived).await;
    gw.metrics
        .request(resp.status().as_u16(), method, endpoint, arrived.elapsed());
    resp
}

async fn respond(gw: Arc<Gateway>, req: Request<Incoming>, arrived: Instant) -> Response<Body> {
    let id = gw.next_request_id();
    let request_id = request_id(id);
    let rt = gw.runtime();
    let access = Arc::new(Access::new(rt.access_log, arrived));
    let (parts, body) = req.into_parts();
    let body = match Limited::new(body, rt.rails.max_body_bytes).collect().await {
        Ok(collected) => collected.to_bytes(),
        Err(e) if e.is::<http_body_util::LengthLimitError>() => {
            let message = format!(
                "request body is larger than the {} bytes levee accepts",
                rt.rails.max_body_bytes
            );
            gw.metrics.local_rejection("body_too_large");
            let resp = LocalError {
                status: StatusCode::PAYLOAD_TOO_LARGE,
                error_type: "request_too_large",
                message: &message,
                should_retry: false,
                retry_after_ms: None,
            }
            .into_response(&request_id, 0);
            access.head(Head::local(request_id, parts.method, &parts.uri, &resp));
            return resp;
        }
        Err(e) => {
            let message = format!("could not read the request body: {e}");
            gw.metrics.local_rejection("body_unreadable");
            let resp = LocalError {
                status: StatusCode::BAD_REQUEST,
                error_type: "invalid_request_error",
                message: &message,
                should_retry: false,
                retry_after_ms: None,
            }
            .into_response(&request_id, 0);
            access.head(Head::local(request_id, parts.method, &parts.uri, &resp));
            return resp;
        }
    };
    let received = now_ms();
    let body_facts = facts::body_facts(&body);
    let mut deadline = received.saturating_add(rt.rails.request_deadline.as_millis() as u64);
    if let Some(client_ms) = facts::client_timeout_ms(&parts.headers) {
        deadline = deadline.min(received.saturating_add(client_ms));
    }
    let client = admission::client_key(&rt, &parts.headers);
    let request = RequestFacts {
        id,
        method: facts::method(&parts.method),
        endpoint: facts::endpoint(parts.uri.path()),
        model: body_facts.model,
        stream: body_facts.stream,
        max_tokens: body_facts.max_tokens,
        est_input_tokens: facts::estimate_input_tokens(&body),
        client: client.as_ref().map(|k| k.hex()),
        priority: rt.limits.priority(&parts.headers),
        client_retry_count: facts::client_retry_count(&parts.headers),
        received_at: received,
        deadline,
    };
    let endpoint = request.endpoint;
    let started = Instant::now();
    let exchange = Exchange {
        gw: &gw,
        rt: &rt,
        request_id: &request_id,
        parts: &parts,
        body,
        facts: request,
        client,
        reservation: Mutex::default(),
        access: access.clone(),
        served_by: AtomicU32::new(NO_UPSTREAM),
    };
    let resp = exchange.run().await;
    let upstream = exchange.served_by();
    drop(exchange);
    access.head(Head {
        request_id,
        method: parts.method,
        endpoint: facts::endpoint_label(endpoint),
        status: resp.status().as_u16(),
        upstream,
        attempts: resp
            .headers()
            .get(super::reply::ATTEMPTS)
            .and_then(|v| v.to_str().ok()?.parse().ok())
            .unwrap_or(0),
        head_ms: started.elapsed().as_millis() as u64,
    });
    resp
}

/// `levee_` and the id in 16 hex digits, as `format!("levee_{id:016x}")`
/// would write it, without the formatting machinery's cost on every request.
fn request_id(id: u64) -> String {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    let mut s = String::with_capacity(22);
    s.push_str("levee_");
    for shift in (0..16).rev() {
        s.push(char::from(HEX[(id >> (shift * 4)) as usize & 0xf]));
    }
    s
}

/// [`Exchange::served_by`] before any upstream answered or failed.
const NO_UPSTREAM: u32 = u32::MAX;

struct Exchange<'a> {
    gw: &'a Arc<Gateway>,
    rt: &'a Arc<Runtime>,
    request_id: &'a str,
    parts: &'a http::request::Parts,
    body: Bytes,
    facts: RequestFacts,
    /// The client's key, when client limits are set.
    client: Option<ClientKey>,
    /// The admitted charges, until the response body takes them.
    reservation: Mutex<Option<Reservation>>,
    /// The access line, written when the response is over.
    access: Arc<Access>,
    /// The upstream whose answer (or failure) the response carries, for
    /// the access line; [`NO_UPSTREAM`] for a response levee made up alone.
    served_by: AtomicU32,
}

/// The last thing an attempt produced, kept for delivery if levee gives up.
enum Last {
    Response {
        upstream: u32,
        head: http::response::Parts,
        prefix: Bytes,
        rest: Option<UpstreamBody>,
    },
    Failure {
        upstream: u32,
        error: AttemptError,
    },
}

impl Exchange<'_> {
    async fn run(&self) -> Response<Body> {
        let _active = self.gw.budget.enter();
        // The whole request is decided by one policy, even across a swap.
        let policy = self.gw.policy.current();
        let mut trace = Recorder::start(self.gw, &self.facts);
        // A request the policy queues holds its place in the admission
        // queue while it waits, and keeps it for admission.
        let mut place = None;
        // Nothing has waited since the request was received.
        let mut now = self.facts.received_at;
        let plan = loop {
            let view = self.rt.view(now, self.gw.budget.has_room());
            let asked = Instant::now();
            let admission = policy.on_request(&self.facts, &view);
            self.gw.metrics.policy_call("on-request", asked.elapsed());
            trace.admission(&view, &admission);
            match admission {
                Admission::Admit(plan) => break plan,
                Admission::Queue(until) => {
                    if until >= self.facts.deadline {
                        self.gw.metrics.local_rejection("queue_deadline");
                        return self.local(
                            StatusCode::TOO_MANY_REQUESTS,
                            "rate_limit_error",
                            "every upstream is busy beyond this request's deadline",
                            true,
                            Some(until.saturating_sub(now)),
                            0,
                        );
                    }
                    if place.is_none() {
                        place = self.rt.admitter.line_up(self.facts.priority);
                        if place.is_none() {
                            let wait = until.saturating_sub(now);
                            return admission::queue_full(&self.gw.metrics, self.request_id, wait);
                        }
                    }
                    tokio::time::sleep(Duration::from_millis(until.saturating_sub(now).max(1)))
                        .await;
                    now = now_ms();
                }
                Admission::Reject(r) => {
                    let status =
                        StatusCode::from_u16(r.status).unwrap_or(StatusCode::SERVICE_UNAVAILABLE);
                    self.gw.metrics.local_rejection("policy_reject");
                    return self.local(
                        status,
                        &r.error_type,
                        &r.message,
                        r.should_retry,
                        r.retry_after_ms,
                        0,
                    );
                }
            }
        };
        let order: Vec<u32> = plan
            .upstreams
            .iter()
            .copied()
            .filter(|&id| (id as usize) < self.rt.upstreams.len())
            .collect();
        if order.is_empty() {
            self.gw.metrics.local_rejection("no_upstream");
            return self.local(
                StatusCode::SERVICE_UNAVAILABLE,
                "api_error",
                "the policy planned no configured upstream",
                false,
                None,
                0,
            );
        }
        let deadline = plan.deadline.min(self.facts.deadline);
        let admitted = admission::admit(
            self.rt,
            &self.gw.metrics,
            self.request_id,
            &self.facts,
            self.client.as_ref(),
            &order,
            &plan.charges,
            deadline,
            place,
        )
        .await;
        let first = match admitted {
            Ok((admitted_on, mut reservation)) => {
                reservation.sent();
                *self.reservation() = Some(reservation);
                admitted_on
            }
            Err(refused) => return refused,
        };
        let mut upstream = first;
        let mut prev_delay_ms = 0;
        let mut number = 0u32;
        let mut _retry_token = None;
        loop {
            let now = now_ms();
            let try_timeout = u64::from(plan.try_timeout_ms)
                .min(deadline.saturating_sub(now))
                .max(1);
            let attempts = number + 1;
            let (last, outcome) = match self
                .attempt(upstream, Duration::from_millis(try_timeout), now)
                .await
            {
                Ok((resp, took)) => {
                    let status = resp.status().as_u16();
                    trace.delivered(number, upstream, prev_delay_ms, status, took);
                    return self.deliver(upstream, resp, attempts);
                }
                Err(failed) => failed,
            };
            let view = self.rt.view(now_ms(), self.gw.budget.has_room());
            let attempt = Attempt {
                number,
                upstream,
                prev_delay_ms,
                outcome,
            };
            let asked = Instant::now();
            let decided = policy.on_outcome(&self.facts, &order, &attempt, &view);
            self.gw.metrics.policy_call("on-outcome", asked.elapsed());
            trace.outcome(&attempt, &view, &decided);
            let step = match decided {
                NextStep::Retry(r) => {
                    let rails = &self.rt.rails;
                    let upstreams = self.rt.upstreams.len();
                    match check_retry(
                        &r,
                        attempts,
                        rails.max_attempts,
                        upstreams,
                        now_ms(),
                        deadline,
                    ) {
                        Ok(()) => match self.gw.budget.try_retry() {
                            Some(token) => {
                                _retry_token = Some(token);
                                NextStep::Retry(r)
                            }
                            None => {
                                self.gw.metrics.retry_budget_exhausted();
                                NextStep::Fail(GiveUp {
                                    should_retry: false,
                                    retry_after_ms: None,
                                })
                            }
                        },
                        Err(give_up) => NextStep::Fail(give_up),
                    }
                }
                other => other,
            };
            match step {
                NextStep::Retry(r) => {
                    self.gw.metrics.retry(outcome_label(&attempt.outcome));
                    tracing::debug!(
                        request_id = self.request_id,
                        attempt = number,
                        next = r.upstream,
                        delay_ms = r.delay_ms,
                        "retrying"
                    );
                    drop(last);
                    tokio::time::sleep(Duration::from_millis(r.delay_ms)).await;
                    upstream = r.upstream;
                    prev_delay_ms = r.delay_ms;
                    number += 1;
                }
                NextStep::Deliver => return self.give_up(last, None, attempts),
                NextStep::Fail(g) => return self.give_up(last, Some(g), attempts),
            }
        }
    }

    /// One attempt, sent at `now`: the response when it is a success, with
    /// the time it took to its head; otherwise what to keep for delivery and
    /// the outcome for the policy.
    async fn attempt(
        &self,
        id: u32,
        timeout: Duration,
        now: u64,
    ) -> Result<(Response<UpstreamBody>, Duration), (Last, Outcome)> {
        let up = &self.rt.upstreams[id as usize];
        let _in_flight = up.state.start();
        let _probe = up.health.begin(now);
        let started = Instant::now();
        let sent = up.client().send(self.upstream_request(id), timeout).await;
        let took = started.elapsed();
        let now = now_ms();
        let elapsed_ms = took.as_millis().min(u128::from(u32::MAX)) as u32;
        let resp = match sent {
            Ok(resp) => resp,
            Err(error) => {
                up.health.record(now, true);
                self.gw
                    .metrics
                    .attempt(&up.label, layer_name(error.kind), None);
                tracing::debug!(request_id = self.request_id, upstream = %up.config.name, %error.message, "attempt failed");
                let outcome = Outcome::Failure(error.kind);
                return Err((
                    Last::Failure {
                        upstream: id,
                        error,
                    },
                    outcome,
                ));
            }
        };
        up.state.observe_ttfb(elapsed_ms, now);
        let metrics = &self.gw.metrics;
        metrics.attempt(
            &up.label,
            attempt_outcome(Ok(resp.status().as_u16())),
            Some(took),
        );
        let limits = Found::of(resp.headers());
        for (dimension, left) in facts::remaining_budgets(&limits) {
            metrics.rate_limit_remaining(&up.label, dimension, left);
        }
        admission::observe(self.rt, id, &limits, now);
        if resp.status().as_u16() < 400 {
            up.health.record(now, false);
            return Ok((resp, took));
        }
        let (head, body) = resp.into_parts();
        let (prefix, rest) = read_prefix(body, self.rt.rails.error_body_bytes, timeout).await;
        let facts = self.response_facts(&head.headers, head.status.as_u16(), &prefix, elapsed_ms);
        let now = now_ms();
        let header_wait = facts
            .retry_after_ms
            .filter(|&v| v > 0)
            .or(facts.retry_after);
        match facts.status {
            429 if !facts.spend_cap => {
                up.state.rate_limited(now, header_wait.unwrap_or(0));
                admission::rate_limited(self.rt, id, header_wait);
            }
            529 => up.state.overloaded(now, header_wait),
            _ => {}
        }
        up.health
            .record(now, crate::upstream::health::is_broken(facts.status));
        Err((
            Last::Response {
                upstream: id,
                head,
                prefix,
                rest,
            },
            Outcome::Response(facts),
        ))
    }

    fn response_facts(
        &self,
        h: &HeaderMap,
        status: u16,
        body: &[u8],
        elapsed_ms: u32,
    ) -> ResponseFacts {
        let text = |name: HeaderName| h.get(name).and_then(|v| v.to_str().ok());
        let (error, spend_cap) = if body.is_empty() {
            (None, false)
        } else {
            headers::parse_error_body(body)
        };
        ResponseFacts {
            status,
            should_retry: text(SHOULD_RETRY).and_then(headers::parse_should_retry),
            retry_after_ms: text(RETRY_AFTER_MS).and_then(headers::parse_retry_after_ms),
            retry_after: text(http::header::RETRY_AFTER)
                .and_then(|v| headers::parse_retry_after(v, now_ms())),
            error,
            spend_cap,
            elapsed_ms,
        }
    }

    fn upstream_request(&self, id: u32) -> Request<Full<Bytes>> {
        let up = &self.rt.upstreams[id as usize];
        let mut req = Request::new(Full::new(self.body.clone()));
        *req.method_mut() = self.parts.method.clone();
        *req.uri_mut() = up.uri(self.parts.uri.path_and_query());
        let headers = req.headers_mut();
        headers.clone_from(&self.parts.headers);
        strip_hop_by_hop(headers);
        headers.remove(http::header::HOST);
        headers.remove(http::header::CONTENT_LENGTH);
        req
    }

    fn deliver(
        &self,
        upstream: u32,
        resp: Response<UpstreamBody>,
        attempts: u32,
    ) -> Response<Body> {
        let (mut head, body) = resp.into_parts();
        self.serve_from(upstream);
        let sse = is_sse(&head.headers);
        strip_hop_by_hop(&mut head.headers);
        set_attempts(&mut head.headers, attempts);
        let body = self.guard(upstream, body, Bytes::new(), sse, false);
        Response::from_parts(head, body)
    }

    fn give_up(&self, last: Last, verdict: Option<GiveUp>, attempts: u32) -> Response<Body> {
        match last {
            Last::Response {
                upstream,
                mut head,
                prefix,
                rest,
            } => {
                self.serve_from(upstream);
                strip_hop_by_hop(&mut head.headers);
                set_attempts(&mut head.headers, attempts);
                if let Some(g) = verdict {
                    set_verdict(&mut head.headers, g.should_retry, g.retry_after_ms, false);
                }
                let body = match rest {
                    Some(rest) => self.guard(upstream, rest, prefix, false, true),
                    None => {
                        self.settle(upstream, &prefix);
                        super::reply::full(prefix)
                    }
                };
                Response::from_parts(head, body)
            }
            Last::Failure { upstream, error } => {
                let name = &self.rt.upstreams[upstream as usize].config.name;
                let (status, error_type) = match error.kind {
                    FailureKind::Timeout => (StatusCode::GATEWAY_TIMEOUT, "timeout_error"),
                    _ => (StatusCode::BAD_GATEWAY, "api_error"),
                };
                let message = format!(
                    "{}: {} (upstream `{name}`, after {attempts} attempt{})",
                    crate::upstream::layer_name(error.kind),
                    error.message,
                    if attempts == 1 { "" } else { "s" }
                );
                let g = verdict.unwrap_or(GiveUp {
                    should_retry: false,
                    retry_after_ms: None,
                });
                self.serve_from(upstream);
                self.local(
                    status,
                    error_type,
                    &message,
                    g.should_retry,
                    g.retry_after_ms,
                    attempts,
                )
            }
        }
    }

    /// Notes that the response carries `upstream`'s answer or failure.
    fn serve_from(&self, upstream: u32) {
        self.served_by.store(upstream, Ordering::Relaxed);
    }

    /// The label of the upstream the response came from, if any.
    fn served_by(&self) -> Option<Arc<String>> {
        let id = self.served_by.load(Ordering::Relaxed);
        let up = self.rt.upstreams.get(id as usize)?;
        Some(up.label.clone())
    }

    fn reservation(&self) -> std::sync::MutexGuard<'_, Option<Reservation>> {
        self.reservation.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Settles the reservation on an error body read whole.
    fn settle(&self, upstream: u32, body: &[u8]) {
        let mut settle = Settle::new(false, self.reservation().take(), true);
        settle.feed(body);
        let usage = settle.finish(&self.gw.metrics, &self.rt.upstreams[upstream as usize]);
        self.access
            .body_ended(usage, Termination::Complete, false, body.len() as u64);
    }

    fn guard(
        &self,
        upstream: u32,
        body: UpstreamBody,
        prefix: Bytes,
        sse: bool,
        error: bool,
    ) -> Body {
        self.access.expect_body();
        let watch = Box::new(Delivery {
            settle: Settle::new(sse, self.reservation().take(), error),
            gw: self.gw.clone(),
            rt: self.rt.clone(),
            upstream,
            access: self.access.clone(),
            sse,
            request_id: self.request_id.to_owned(),
        });
        Guarded::new(body, prefix, sse, self.rt.streaming.idle_timeout, watch).boxed()
    }

    #[allow(clippy::too_many_arguments)]
    fn local(
        &self,
        status: StatusCode,
        error_type: &str,
        message: &str,
        should_retry: bool,
        retry_after_ms: Option<u64>,
        attempts: u32,
    ) -> Response<Body> {
        LocalError {
            status,
            error_type,
            message,
            should_retry,
            retry_after_ms,
        }
        .into_response(self.request_id, attempts)
    }
}

/// A delivered body's watch: its usage settles the reservation and the
/// token counts, and its end completes the access line.
struct Delivery {
    settle: Settle,
    gw: Arc<Gateway>,
    rt: Arc<Runtime>,
    upstream: u32,
    access: Arc<Access>,
    sse: bool,
    /// For the debug line.
    request_id: String,
}

impl Watch for Delivery {
    fn bytes(&mut self, data: &[u8]) {
        self.settle.feed(data);
    }

    fn end(self: Box<Self>, how: Termination, sent: u64) {
        let up = &self.rt.upstreams[self.upstream as usize];
        let usage = self.settle.finish(&self.gw.metrics, up);
        self.gw.metrics.stream_end(how);
        self.access.body_ended(usage, how, self.sse, sent);
        tracing::debug!(
            request_id = self.request_id,
            termination = how.label(),
            bytes = sent,
            "response body ended"
        );
    }
}

/// The label of an attempt's outcome, as `levee_attempts_total` has it.
fn outcome_label(outcome: &Outcome) -> &'static str {
    match outcome {
        Outcome::Response(r) => attempt_outcome(Ok(r.status)),
        Outcome::Failure(kind) => attempt_outcome(Err(*kind)),
    }
}

fn is_sse(h: &HeaderMap) -> bool {
    h.get(http::header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| {
            v.trim_start()
                .to_ascii_lowercase()
                .starts_with("text/event-stream")
        })
}

/// Reads up to `limit` bytes of an error body (within `timeout`); returns
/// them and, when more remains, the rest of the body.
async fn read_prefix(
    mut body: UpstreamBody,
    limit: usize,
    timeout: Duration,
) -> (Bytes, Option<UpstreamBody>) {
    let mut buf = BytesMut::new();
    let read = async {
        while buf.len() < limit {
            match body.frame().await {
                Some(Ok(frame)) => {
                    if let Ok(data) = frame.into_data() {
                        buf.extend_from_slice(&data);
                    }
                }
                Some(Err(_)) | None => return true,
            }
        }
        false
    };
    match tokio::time::timeout(timeout, read).await {
        Ok(true) => (buf.freeze(), None),
        Ok(false) | Err(_) => (buf.freeze(), Some(body)),
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn request_ids_are_levee_and_sixteen_hex_digits() {
        for id in [
            0,
            1,
            0xabc,
            0x0123_4567_89ab_cdef,
            u64::MAX,
            0xffff_ffff_0000_0000,
        ] {
            assert_eq!(super::request_id(id), format!("levee_{id:016x}"));
        }
    }
}
