//! One client request, from admission to delivery: the gateway's driver of
//! the exchange core (`levee_exchange::Exchange`), which decides every
//! step. This file does what each step says, with hyper and tokio:
//!
//! 1. Read the body (bounded by its endpoint's limit; `intake.rs`) and
//!    its facts.
//! 2. Ask the policy for admission; queue, reserve the limits.
//! 3. Attempt: send to the planned upstream, wait for the head (per-try
//!    timeout), and for an error status read a bounded prefix of the body.
//! 4. Ask the policy what follows; the core's rails may overrule a retry.
//!    A retry waits for a slot of the retry budget, then for its delay.
//! 5. Deliver: the response as it came (plus `x-levee-attempts`, and the
//!    verdict headers when levee gave up), streamed under watch.

use super::admission::{self, Settle};
use super::encoding::{self, Coding};
use super::intake::{self, RequestBody};
use super::record::Recorder;
use super::reply::{self, Body, set_attempts, strip_hop_by_hop};
use super::server::Gateway;
use super::stream::{Guarded, Sse, Termination, Watch};
use super::{Runtime, facts};
use crate::clock::now_ms;
use crate::core::{Admission, FailureKind, NextStep, Outcome, RequestFacts};
use crate::limits::admit::Reservation;
use crate::limits::headers::Found;
use crate::limits::{Class, ClientKey, Lane};
use crate::telemetry::access::{Access, Head, UpstreamIds};
use crate::telemetry::activity::answer_message;
use crate::telemetry::activity::events::EventKind;
use crate::telemetry::activity::window::Kind;
use crate::telemetry::metrics::attempt_outcome;
use crate::telemetry::otel::RequestSpan;
use crate::upstream::{AttemptError, Outgoing, UpstreamBody, layer_name};
use bytes::{Bytes, BytesMut};
use http::{Request, Response};
use http_body_util::BodyExt;
use hyper::body::Incoming;
use levee_exchange::body_limits::Route;
use levee_exchange::early::{self, Early};
use levee_exchange::reply::set_verdict;
use levee_exchange::sse::Dialect;
use levee_exchange::{Action, Exchange, GiveUpAt, LocalReply, Rails, Why};
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
    let (parts, body) = req.into_parts();
    let mut span = gw.otel.as_ref().and_then(|t| t.begin(&parts, arrived));
    let access = Arc::new(Access::new(rt.access_log, span.is_some(), arrived));
    // A reply levee makes before the request is read, with its access line.
    let refuse = |refused: &LocalReply, parts: http::request::Parts, span| {
        let resp = local(&gw, refused, &request_id, 0);
        let status = resp.status().as_u16();
        let head = Head::local(request_id.clone(), parts.method, &parts.uri, status, span);
        access.head(head);
        resp
    };
    if levee_exchange::facts::has_dot_segment(parts.uri.path()) {
        return refuse(&LocalReply::dot_segment(), parts, span);
    }
    let route = Route::of(parts.uri.path());
    let limit = rt.rails.body_limits.of(route);
    let spool = route
        .passes_through()
        .then_some(rt.rails.spool_dir.as_path());
    let body = match intake::read(body, limit, spool).await {
        Ok(body) => body,
        Err(refused) => return refuse(&refused, parts, span),
    };
    let received = now_ms();
    let body_facts = facts::body_facts(body.readable());
    if let Some(s) = &mut span {
        let endpoint = facts::endpoint(parts.uri.path());
        let model = body_facts.model.as_deref();
        s.request(endpoint, model, body_facts.max_tokens, body_facts.stream);
    }
    let mut deadline = received.saturating_add(rt.rails.request_deadline.as_millis() as u64);
    let client_deadline =
        facts::client_timeout_ms(&parts.headers).map(|ms| received.saturating_add(ms));
    if let Some(client) = client_deadline {
        deadline = deadline.min(client);
    }
    let client = admission::client_key(&rt, &parts.headers);
    let request = RequestFacts {
        id,
        method: levee_exchange::facts::method(parts.method.as_str()),
        endpoint: facts::endpoint(parts.uri.path()),
        model: body_facts.model,
        stream: body_facts.stream,
        max_tokens: body_facts.max_tokens,
        est_input_tokens: facts::estimate_input_tokens(body.readable()),
        client: client.as_ref().map(|k| k.hex()),
        priority: rt.limits.priority(&parts.headers),
        client_retry_count: facts::client_retry_count(&parts.headers),
        received_at: received,
        deadline,
    };
    let endpoint = request.endpoint;
    let started = Instant::now();
    let class = rt
        .limits
        .classes
        .of_request(request.endpoint, request.model.as_deref());
    if let Some(s) = &mut span {
        s.model_class(rt.limits.classes.name(class));
    }
    let driver = Driver {
        gw: &gw,
        rt: &rt,
        request_id: &request_id,
        parts: &parts,
        body,
        client,
        client_deadline,
        reservation: Mutex::default(),
        access: access.clone(),
        served_by: AtomicU32::new(NO_UPSTREAM),
        dialect: Dialect::of_path(parts.uri.path()),
        stream: request.stream,
        class,
    };
    let resp = driver.run(request, &mut span).await;
    let upstream = driver.served_by();
    drop(driver);
    let upstream_ids = match upstream {
        Some(_) => UpstreamIds::of(resp.headers(), &request_id),
        None => UpstreamIds::default(),
    };
    access.head(Head {
        request_id,
        method: parts.method,
        endpoint: facts::endpoint_label(endpoint),
        model_class: Some(rt.limits.classes.name(class).clone()),
        status: resp.status().as_u16(),
        upstream,
        attempts: resp
            .headers()
            .get(reply::ATTEMPTS)
            .and_then(|v| v.to_str().ok()?.parse().ok())
            .unwrap_or(0),
        upstream_ids,
        head_ms: started.elapsed().as_millis() as u64,
        span,
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

/// A response levee makes itself, counted under its reason when it
/// refuses a request.
fn local(gw: &Gateway, r: &LocalReply, request_id: &str, attempts: u32) -> Response<Body> {
    if r.reason.is_rejection() {
        gw.metrics.local_rejection(r.reason.label());
    }
    reply::local(r, request_id, attempts)
}

/// [`Driver::served_by`] before any upstream answered or failed.
const NO_UPSTREAM: u32 = u32::MAX;

/// What the gateway keeps of one request while it drives its exchange.
struct Driver<'a> {
    gw: &'a Arc<Gateway>,
    rt: &'a Arc<Runtime>,
    request_id: &'a str,
    parts: &'a http::request::Parts,
    body: RequestBody,
    /// The client's key, when client limits are set.
    client: Option<ClientKey>,
    /// The deadline the client's own timeout (`x-stainless-timeout`) sets,
    /// ms since the Unix epoch.
    client_deadline: Option<u64>,
    /// The admitted charges, until the response body takes them.
    reservation: Mutex<Option<Reservation>>,
    /// The access line, written when the response is over.
    access: Arc<Access>,
    /// The upstream whose answer (or failure) the response carries, for
    /// the access line; [`NO_UPSTREAM`] for a response levee made up alone.
    served_by: AtomicU32,
    /// The format of the streams this request is answered with.
    dialect: Dialect,
    /// The request asked for a stream (`"stream": true`).
    stream: bool,
    /// The request's model class: the lane its limits are kept in.
    class: Class,
}

/// What follows the prefix of an error body that levee read.
enum Rest {
    /// Nothing: the body ended with the prefix.
    Ended,
    /// The body broke off after the prefix, for this reason.
    Broken(String),
    /// The rest of the body, still to read.
    More(UpstreamBody),
}

/// How a delivered body is read for its usage.
#[derive(Clone, Copy)]
struct Read {
    /// An event stream (`text/event-stream`), compressed or not.
    event_stream: bool,
    /// Its `content-encoding`, when levee reads it.
    coding: Option<Coding>,
    /// An error response: it produced no output.
    error: bool,
}

/// What holding a stream's start back found.
enum Hold {
    /// Content flowed, or the window ended: deliver the stream, these
    /// bytes first.
    Released(UpstreamBody, Bytes),
    /// An error event before content: its status and JSON.
    Error { status: u16, body: Bytes },
    /// The stream ended or broke before content.
    Broken(String),
}

/// Makes a stream's head the head of the error response its in-band error
/// stands for: that status, and a JSON body.
fn in_band_head(head: &mut http::response::Parts, status: u16) {
    head.status =
        http::StatusCode::from_u16(status).unwrap_or(http::StatusCode::INTERNAL_SERVER_ERROR);
    head.headers.insert(
        http::header::CONTENT_TYPE,
        http::HeaderValue::from_static("application/json"),
    );
    head.headers.remove(http::header::CONTENT_LENGTH);
    head.headers.remove(http::header::CACHE_CONTROL);
}

/// The last thing an attempt produced, kept for delivery if levee gives up.
enum Last {
    Response {
        upstream: u32,
        head: http::response::Parts,
        prefix: Bytes,
        rest: Rest,
    },
    Failure {
        upstream: u32,
        error: AttemptError,
    },
}

impl Driver<'_> {
    /// Drives the exchange to its response; `span` (when traced) records
    /// the admission, each attempt and each decision.
    async fn run(
        &self,
        request: RequestFacts,
        span: &mut Option<Box<RequestSpan>>,
    ) -> Response<Body> {
        let gw = self.gw;
        let _active = gw.budget.enter();
        // The whole request is decided by one policy, even across a swap.
        let policy = gw.policy.current();
        let mut trace = Recorder::start(gw);
        let rails = Rails {
            max_attempts: self.rt.rails.max_attempts,
            upstreams: self.rt.upstreams.len(),
        };
        // Nothing has waited since the request was received.
        let mut now = request.received_at;
        let mut x = Exchange::new(request, rails);
        // A request the policy queues holds its place in the admission
        // queue while it waits, and keeps it for admission.
        let mut place = None;
        // The last failed attempt, kept for delivery if levee gives up,
        // and its outcome.
        let mut last = None;
        let mut failed = None;
        // A retry's slot of the budget, held through its wait and attempt.
        let mut _slot = None;
        let mut next = x.start();
        loop {
            next = match next {
                Action::AskAdmission => {
                    let view = self.rt.view(now, self.class);
                    let asked = Instant::now();
                    let admission = policy.on_request(x.request(), &view);
                    gw.metrics.policy_call("on-request", asked.elapsed());
                    let class = self.rt.limits.classes.name(self.class);
                    trace.admission(x.request(), class, &view, &admission);
                    if let Some(s) = span {
                        s.admission(admission_label(&admission));
                    }
                    x.admission(admission, now)
                }
                Action::Queue { until, take_place } => {
                    let wait = until.saturating_sub(now);
                    if take_place {
                        place = self.rt.admitter.line_up(self.class, x.request().priority);
                        if place.is_none() {
                            let full = LocalReply::queue_full(wait.max(1));
                            return local(gw, &full, self.request_id, 0);
                        }
                    }
                    tokio::time::sleep(Duration::from_millis(wait)).await;
                    now = now_ms();
                    x.woke()
                }
                Action::Reserve => {
                    let client = self.client.as_ref();
                    let lane = (self.class, place.take());
                    match admission::admit(self.rt, &gw.metrics, &x, client, lane).await {
                        Ok((admitted_on, mut reservation)) => {
                            reservation.sent();
                            *self.reservation() = Some(reservation);
                            x.reserved(admitted_on, now_ms())
                        }
                        Err(refused) => return local(gw, &refused, self.request_id, 0),
                    }
                }
                Action::Send {
                    upstream,
                    try_timeout_ms,
                    ..
                } => {
                    let timeout = Duration::from_millis(try_timeout_ms);
                    let now = now_ms();
                    // The attempt may run until the client's own deadline:
                    // its timeout is then the client's, not the upstream's.
                    let clients = self
                        .client_deadline
                        .is_some_and(|d| now.saturating_add(try_timeout_ms) >= d);
                    let up = &self.rt.upstreams[upstream as usize];
                    let traceparent = span
                        .as_mut()
                        .map(|s| s.attempt(&up.label, &up.config.host, up.config.port));
                    match self
                        .attempt(upstream, timeout, clients, now, traceparent)
                        .await
                    {
                        Ok((resp, held, took)) => {
                            let status = resp.status().as_u16();
                            if let Some(s) = span {
                                s.answered(status, true);
                            }
                            let outcome = levee_exchange::facts::success(status, millis(took));
                            let Action::Deliver(attempt) = x.answered(outcome) else {
                                unreachable!("a success is delivered")
                            };
                            trace.delivered(&attempt);
                            return self.deliver(upstream, resp, held, attempt.number + 1);
                        }
                        Err((kept, outcome)) => {
                            if let Some(s) = span {
                                match &outcome {
                                    Outcome::Response(r) => s.answered(r.status, false),
                                    Outcome::Failure(kind) => s.failed(*kind),
                                }
                            }
                            last = Some(kept);
                            x.answered(outcome)
                        }
                    }
                }
                Action::AskOutcome(attempt) => {
                    // The retry's attempt is over: its slot goes back.
                    _slot = None;
                    let view = self.rt.view(now_ms(), self.class);
                    let asked = Instant::now();
                    let step = policy.on_outcome(x.request(), x.order(), &attempt, &view);
                    gw.metrics.policy_call("on-outcome", asked.elapsed());
                    trace.outcome(&attempt, &view, &step);
                    if let Some(s) = span {
                        let next = match step {
                            NextStep::Retry(r) => self.rt.upstreams.get(r.upstream as usize),
                            _ => None,
                        };
                        s.decided(step, next.map(|u| &u.label));
                    }
                    failed = Some(attempt.outcome);
                    x.decided(step, now_ms())
                }
                Action::TakeSlot { by } => {
                    let wait = Duration::from_millis(by.saturating_sub(now_ms()));
                    _slot = gw.budget.retry(wait).await;
                    if _slot.is_none() {
                        gw.metrics.retry_budget_exhausted();
                    }
                    x.slot(_slot.is_some())
                }
                Action::Wait { delay_ms, upstream } => {
                    if let Some(outcome) = &failed {
                        gw.metrics.retry(outcome_label(outcome));
                    }
                    tracing::debug!(
                        request_id = self.request_id,
                        next = upstream,
                        delay_ms,
                        "retrying"
                    );
                    last = None;
                    tokio::time::sleep(Duration::from_millis(delay_ms)).await;
                    x.waited(now_ms())
                }
                Action::GiveUp(at) => {
                    trace.gave_up(&at);
                    if let (Some(s), Why::Overruled(rail)) = (span.as_mut(), at.why) {
                        s.overruled(rail.label());
                    }
                    let last = last.take().expect("a give-up follows a failed attempt");
                    return self.give_up(last, at);
                }
                Action::Reply(r) => return local(gw, &r, self.request_id, 0),
                Action::Deliver(_) => unreachable!("a success is delivered where it is sent"),
            };
        }
    }

    /// One attempt, sent at `now`: the response when it is a success, with
    /// the first bytes of its body already read (a stream's held start) and
    /// the time it took to its head; otherwise what to keep for delivery and
    /// the outcome for the policy. `clients`: `timeout` ends at the
    /// client's own deadline. `traceparent` names the attempt's span.
    async fn attempt(
        &self,
        id: u32,
        timeout: Duration,
        clients: bool,
        now: u64,
        traceparent: Option<http::HeaderValue>,
    ) -> Result<(Response<UpstreamBody>, Bytes, Duration), (Last, Outcome)> {
        let up = &self.rt.upstreams[id as usize];
        let _in_flight = up.state.start();
        let _probe = up.health.begin(now);
        let started = Instant::now();
        let req = self.upstream_request(id, traceparent);
        let sent = up.client().send(req, timeout).await;
        let took = started.elapsed();
        let now = now_ms();
        let elapsed_ms = millis(took);
        let resp = match sent {
            Ok(resp) => resp,
            Err(error) => return Err(self.failed(id, error, started + took, now, clients)),
        };
        up.state.observe_ttfb(elapsed_ms, now);
        let metrics = &self.gw.metrics;
        let limits = Found::of(resp.headers());
        let lane = Lane::new(id, self.class);
        let class = self.rt.limits.classes.name(self.class);
        for (dimension, left) in facts::remaining_budgets(&limits) {
            metrics.rate_limit_remaining(&up.label, class, dimension, left);
        }
        admission::observe(self.rt, lane, &limits, now);
        let (mut head, body) = resp.into_parts();
        let (status, prefix, rest) = if head.status.as_u16() < 400 {
            match self.hold(&head, body).await {
                Hold::Released(body, held) => {
                    let status = head.status.as_u16();
                    up.track
                        .record(started + took, Kind::of_status(status), Some(took));
                    metrics.attempt(&up.label, attempt_outcome(Ok(status)), Some(took));
                    up.health.record(now, false);
                    return Ok((Response::from_parts(head, body), held, took));
                }
                Hold::Broken(why) => {
                    let error = AttemptError {
                        kind: FailureKind::Reset,
                        message: format!("the stream broke off before any content: {why}"),
                    };
                    return Err(self.failed(id, error, started + took, now, false));
                }
                // The error event is the answer, as if its status had said it.
                Hold::Error { status, body } => {
                    in_band_head(&mut head, status);
                    (status, body, Rest::Ended)
                }
            }
        } else {
            let (prefix, rest) = read_prefix(body, self.rt.rails.error_body_bytes, timeout).await;
            (head.status.as_u16(), prefix, rest)
        };
        // A compressed error body is read through a decoded copy.
        let decoded = match Coding::of(&head.headers) {
            Ok(Some(coding)) => {
                let limit = self.rt.rails.error_body_bytes;
                Some(encoding::decode_prefix(coding, &prefix, limit))
            }
            _ => None,
        };
        let inspected = decoded.as_deref().unwrap_or(&prefix);
        let kind = Kind::of_status(status);
        up.track.record(started + took, kind, Some(took));
        metrics.attempt(&up.label, attempt_outcome(Ok(status)), Some(took));
        let now = now_ms();
        let facts = levee_exchange::facts::response_facts(
            status,
            |name| head.headers.get(name).and_then(|v| v.to_str().ok()),
            inspected,
            elapsed_ms,
            now,
        );
        let header_wait = levee_exchange::facts::header_wait(&facts);
        if kind.is_error() {
            up.track.failed("http", &answer_message(&facts, inspected));
        }
        let events = &self.gw.metrics.activity.events;
        match facts.status {
            429 if !facts.spend_cap => {
                let wait = header_wait.unwrap_or(0);
                if up.state.rate_limited(self.class, now, wait) {
                    let class = self.rt.limits.classes.name(self.class);
                    let detail = format!("{class} closed for {wait} ms (retry-after)");
                    events.record(EventKind::RateLimited, Some(&up.config.name), detail);
                }
                admission::rate_limited(self.rt, lane, header_wait);
            }
            529 => {
                if let Some(for_ms) = up.state.overloaded(now, header_wait) {
                    let detail = format!("marked overloaded for {for_ms} ms");
                    events.record(EventKind::Overloaded, Some(&up.config.name), detail);
                }
            }
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

    /// An attempt that got no answer (`at`, the time it failed): counted
    /// against the upstream unless the client's own deadline (`clients`)
    /// ran out first; what to keep for delivery, and the outcome.
    fn failed(
        &self,
        id: u32,
        error: AttemptError,
        at: Instant,
        now: u64,
        clients: bool,
    ) -> (Last, Outcome) {
        let up = &self.rt.upstreams[id as usize];
        let layer = layer_name(error.kind);
        up.track.record(at, Kind::Failed(error.kind), None);
        if clients && error.kind == FailureKind::Timeout {
            // The client ran out of time, not the upstream: one
            // client's short deadline must not eject it for all.
            up.track
                .failed(layer, "the client's own deadline came first");
        } else {
            up.health.record(now, true);
            up.track.failed(layer, &error.message);
        }
        self.gw.metrics.attempt(&up.label, layer, None);
        tracing::debug!(request_id = self.request_id, upstream = %up.config.name, %error.message, "attempt failed");
        let outcome = Outcome::Failure(error.kind);
        (
            Last::Failure {
                upstream: id,
                error,
            },
            outcome,
        )
    }

    /// Holds a Messages stream's head and first events back until content
    /// flows, for at most the hold window (`levee_exchange::early`): an
    /// error event, or the stream's end, before content is the attempt's
    /// outcome, since the client has seen nothing yet.
    async fn hold(&self, head: &http::response::Parts, mut body: UpstreamBody) -> Hold {
        let window = self.rt.streaming.hold;
        let sse = head
            .headers
            .get(http::header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .is_some_and(levee_exchange::sse::is_event_stream);
        let plain = !head.headers.contains_key(http::header::CONTENT_ENCODING);
        if !sse || !plain || window.is_zero() || self.dialect != Dialect::Messages {
            return Hold::Released(body, Bytes::new());
        }
        let mut held = early::Held::new(self.request_id);
        let read = async {
            loop {
                match body.frame().await {
                    Some(Ok(frame)) => {
                        let Ok(data) = frame.into_data() else {
                            continue;
                        };
                        match held.push(&data) {
                            Early::Holding => {}
                            other => return Ok(other),
                        }
                    }
                    Some(Err(e)) => return Err(e.to_string()),
                    None => return Err("the upstream closed it".to_owned()),
                }
            }
        };
        match tokio::time::timeout(window, read).await {
            Ok(Ok(Early::Error { status, body })) => Hold::Error { status, body },
            Ok(Err(why)) => Hold::Broken(why),
            Ok(Ok(_)) | Err(_) => Hold::Released(body, held.into_bytes()),
        }
    }

    fn upstream_request(
        &self,
        id: u32,
        traceparent: Option<http::HeaderValue>,
    ) -> Request<Outgoing> {
        let up = &self.rt.upstreams[id as usize];
        let mut req = Request::new(self.body.outgoing());
        *req.method_mut() = self.parts.method.clone();
        *req.uri_mut() = up.uri(self.parts.uri.path_and_query());
        let headers = req.headers_mut();
        headers.clone_from(&self.parts.headers);
        strip_hop_by_hop(headers);
        headers.remove(http::header::HOST);
        headers.remove(http::header::CONTENT_LENGTH);
        let asked = headers.get(http::header::ACCEPT_ENCODING);
        let accept = encoding::upstream_accept(asked, self.stream);
        if asked != Some(&accept) {
            headers.insert(http::header::ACCEPT_ENCODING, accept);
        }
        if let Some(tp) = traceparent {
            headers.insert(TRACEPARENT, tp);
        }
        req
    }

    /// Delivers a success, whose first bytes `held` were already read.
    fn deliver(
        &self,
        upstream: u32,
        resp: Response<UpstreamBody>,
        held: Bytes,
        attempts: u32,
    ) -> Response<Body> {
        let (mut head, body) = resp.into_parts();
        self.serve_from(upstream);
        let coding = Coding::of(&head.headers).ok().flatten();
        let event_stream = head
            .headers
            .get(http::header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .is_some_and(levee_exchange::sse::is_event_stream);
        // A compressed stream passes as it came: no event framing, and a
        // break aborts it rather than appending a frame it cannot take.
        let sse = (event_stream && coding.is_none()).then(|| Sse {
            dialect: self.dialect,
            request_id: head
                .headers
                .get(levee_exchange::reply::REQUEST_ID)
                .and_then(|v| v.to_str().ok())
                .unwrap_or(self.request_id)
                .to_owned(),
        });
        strip_hop_by_hop(&mut head.headers);
        set_attempts(&mut head.headers, attempts);
        let read = Read {
            event_stream,
            coding,
            error: false,
        };
        let body = self.guard(upstream, body, held, sse, read);
        Response::from_parts(head, body)
    }

    /// The answer when the exchange gave up: the last response, with the
    /// verdict's headers, or the last failure as levee's own reply.
    fn give_up(&self, last: Last, at: GiveUpAt) -> Response<Body> {
        if let Why::Overruled(rail) = at.why {
            tracing::debug!(
                request_id = self.request_id,
                rail = rail.label(),
                "retry overruled"
            );
        }
        match last {
            Last::Response {
                upstream,
                mut head,
                prefix,
                rest,
            } => {
                self.serve_from(upstream);
                strip_hop_by_hop(&mut head.headers);
                set_attempts(&mut head.headers, at.attempts);
                if let Some(g) = at.verdict {
                    set_verdict(&mut head.headers, g, false);
                }
                let read = Read {
                    event_stream: false,
                    coding: Coding::of(&head.headers).ok().flatten(),
                    error: true,
                };
                let body = match rest {
                    Rest::More(rest) => self.guard(upstream, rest, prefix, None, read),
                    Rest::Ended => {
                        self.settle(upstream, &prefix, read, Termination::Complete);
                        reply::full(prefix)
                    }
                    // The head keeps the upstream's content-length: the
                    // client must see the body fail, not end short of it
                    // (or, with the prefix's length, end as if whole).
                    Rest::Broken(e) => {
                        let why = format!("upstream failed mid-stream: {e}");
                        tracing::warn!(termination = Termination::UpstreamCut.label(), reason = %why, "response body broke off");
                        self.gw.metrics.stream_end(Termination::UpstreamCut);
                        self.settle(upstream, &prefix, read, Termination::UpstreamCut);
                        reply::broken_off(prefix, why)
                    }
                };
                Response::from_parts(head, body)
            }
            Last::Failure { upstream, error } => {
                let name = &self.rt.upstreams[upstream as usize].config.name;
                let failure = LocalReply::upstream_failure(
                    error.kind,
                    &error.message,
                    name,
                    at.attempts,
                    at.verdict,
                );
                self.serve_from(upstream);
                local(self.gw, &failure, self.request_id, at.attempts)
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

    /// Whether the request's class's input limits count cache reads.
    fn cache_reads_count(&self) -> bool {
        self.rt.limits.classes.cache_reads_count(self.class)
    }

    fn reservation(&self) -> std::sync::MutexGuard<'_, Option<Reservation>> {
        self.reservation.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Settles the reservation on an error body read to its end, `how` it
    /// ended.
    fn settle(&self, upstream: u32, body: &[u8], read: Read, how: Termination) {
        let reservation = self.reservation().take();
        let mut settle = Settle::new(false, reservation, true)
            .decoding(read.coding)
            .counting_cache_reads(self.cache_reads_count());
        settle.feed(body);
        let usage = settle.finish(&self.gw.metrics, &self.rt.upstreams[upstream as usize]);
        self.access.body_ended(usage, how, false, body.len() as u64);
    }

    fn guard(
        &self,
        upstream: u32,
        body: UpstreamBody,
        prefix: Bytes,
        sse: Option<Sse>,
        read: Read,
    ) -> Body {
        self.access.expect_body();
        let reservation = self.reservation().take();
        let settle = Settle::new(read.event_stream, reservation, read.error)
            .decoding(read.coding)
            .counting_cache_reads(self.cache_reads_count());
        let watch = Box::new(Delivery {
            settle,
            gw: self.gw.clone(),
            rt: self.rt.clone(),
            upstream,
            access: self.access.clone(),
            sse: read.event_stream,
            request_id: self.request_id.to_owned(),
        });
        Guarded::new(body, prefix, sse, self.rt.streaming.idle_timeout, watch).boxed()
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
        if let Termination::UpstreamError { status } = how {
            self.upstream_error(status);
        }
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

impl Delivery {
    /// The upstream ended a stream that had sent content with its own
    /// error event: too late to retry, but it counts for the upstream as
    /// the same error status would.
    fn upstream_error(&self, status: u16) {
        let up = &self.rt.upstreams[self.upstream as usize];
        let now = now_ms();
        let message = format!("an error event ({status}) ended a stream after content");
        up.track.failed("http", &message);
        if status == 529
            && let Some(for_ms) = up.state.overloaded(now, None)
        {
            let detail = format!("marked overloaded for {for_ms} ms (an error event in a stream)");
            let events = &self.gw.metrics.activity.events;
            events.record(EventKind::Overloaded, Some(&up.config.name), detail);
        }
        up.health
            .record(now, crate::upstream::health::is_broken(status));
    }
}

/// W3C Trace Context's header.
const TRACEPARENT: http::HeaderName = http::HeaderName::from_static("traceparent");

/// The policy's answer to admission, as a span attribute.
fn admission_label(a: &Admission) -> &'static str {
    match a {
        Admission::Admit(_) => "admit",
        Admission::Queue(_) => "queue",
        Admission::Reject(_) => "reject",
    }
}

/// The label of an attempt's outcome, as `levee_attempts_total` has it.
fn outcome_label(outcome: &Outcome) -> &'static str {
    match outcome {
        Outcome::Response(r) => attempt_outcome(Ok(r.status)),
        Outcome::Failure(kind) => attempt_outcome(Err(*kind)),
    }
}

/// A duration in whole milliseconds, saturated to `u32`.
fn millis(d: Duration) -> u32 {
    d.as_millis().min(u128::from(u32::MAX)) as u32
}

/// Reads up to `limit` bytes of an error body (within `timeout`); returns
/// them and what follows: the end, the error the body broke off with, or
/// the rest of the body.
async fn read_prefix(mut body: UpstreamBody, limit: usize, timeout: Duration) -> (Bytes, Rest) {
    let mut buf = BytesMut::new();
    let read = async {
        while buf.len() < limit {
            match body.frame().await {
                Some(Ok(frame)) => {
                    if let Ok(data) = frame.into_data() {
                        buf.extend_from_slice(&data);
                    }
                }
                Some(Err(e)) => return Some(Err(e)),
                None => return Some(Ok(())),
            }
        }
        None
    };
    match tokio::time::timeout(timeout, read).await {
        Ok(Some(Ok(()))) => (buf.freeze(), Rest::Ended),
        Ok(Some(Err(e))) => (buf.freeze(), Rest::Broken(e.to_string())),
        Ok(None) | Err(_) => (buf.freeze(), Rest::More(body)),
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
