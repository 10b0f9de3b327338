//! One client request, from admission to delivery, as the bundled host
//! does it: this is a driver of the exchange core
//! (`levee_exchange::Exchange`), which decides every step. The driver asks
//! the imported policy, sends attempts over `wasi:http`, sleeps on wasi
//! clocks and delivers. The edge has no retry budget of its own (each
//! request runs in its own instance), so a retry's slot is granted at once.

use crate::bindings::policy;
use crate::clock::{now_ms, sleep_ms, timeout};
use crate::config::Settings;
use crate::deliver::{Delivery, Prefix, give_up, stream_body};
use crate::io::Chunk;
use crate::reply::{self, Headers, get, set, strip_hop_by_hop};
use crate::state::State;
use crate::upstream::{self, Failure, Outbound, Upstreaming};
use levee_exchange::body_limits::Route;
use levee_exchange::early::{self, Early};
use levee_exchange::sse::{Dialect, is_event_stream};
use levee_exchange::{Action, LocalReply, Rails, Reason, facts};
use levee_policy_core::{FailureKind, Outcome, RequestFacts, View};
use spin_sdk::http::{IncomingRequest, Method, ResponseOutparam};
use subtle::ConstantTimeEq;

/// The last thing an attempt produced, kept in case levee gives up.
pub enum Last {
    /// An error response: its head, the prefix read, and the rest.
    Response(Upstreaming, Prefix),
    /// No response head.
    Failure(u32, Failure),
}

/// A client request's body.
pub enum Body {
    /// Read whole: levee reads it, and sends it again on every attempt.
    Held(Vec<u8>),
    /// A body levee only passes on (a batch, a file upload): streamed to
    /// the one attempt it gets, never held, so a body of hundreds of MB
    /// costs the component no memory. The edge has no disk to spool it
    /// to, so such a request is not retried.
    Passing(std::cell::RefCell<Option<upstream::Passing>>),
}

/// A client request being served.
pub struct Exchange<'a> {
    /// Settings.
    pub settings: &'a Settings,
    /// Shared state.
    pub state: &'a State<'a>,
    /// `levee_<hex>`.
    pub request_id: &'a str,
    /// The client's method.
    pub method: Method,
    /// The client's path and query.
    pub path: String,
    /// Headers to send upstream.
    pub headers: Headers,
    /// The body: held and replayed on every attempt, or passed on once.
    pub body: Body,
    /// Facts for the policy.
    pub facts: RequestFacts,
    /// The model's class (`classes`): its windows and closures.
    pub class: std::sync::Arc<str>,
}

impl Exchange<'_> {
    fn view(&self) -> View {
        let now = now_ms();
        View {
            now,
            random: wasi::random::random::get_random_u64(),
            upstreams: self.state.view(now, &self.class),
            // No retry is ever refused for a budget here.
            retry_budget: true,
        }
    }

    /// Runs the request; returns the status and attempt count for the log.
    pub async fn run(self, out: ResponseOutparam) -> (u16, u32) {
        let rails = Rails {
            max_attempts: match self.body {
                Body::Held(_) => self.settings.max_attempts,
                Body::Passing(_) => 1,
            },
            upstreams: self.settings.upstreams.len(),
        };
        let mut x = levee_exchange::Exchange::new(self.facts.clone(), rails);
        let mut last = None;
        let mut next = x.start();
        loop {
            next = match next {
                Action::AskAdmission => {
                    let admission = policy::on_request(x.request(), &self.view());
                    x.admission(admission, now_ms())
                }
                Action::Queue { until, .. } => {
                    sleep_ms(until.saturating_sub(now_ms()).max(1)).await;
                    x.woke()
                }
                // The edge keeps no limiter of its own: its buckets are
                // charged per attempt, on the upstream it goes to.
                Action::Reserve => x.reserved(x.order()[0], now_ms()),
                Action::Send {
                    upstream,
                    number,
                    try_timeout_ms,
                } => {
                    if let Some(plan) = x.plan() {
                        self.state
                            .charge(upstream, &self.class, now_ms(), &plan.charges);
                    }
                    match self.attempt(upstream, try_timeout_ms).await {
                        Ok((resp, held, elapsed_ms)) => {
                            let status = resp.status;
                            let answered = x.answered(facts::success(status, elapsed_ms));
                            let Action::Deliver(attempt) = answered else {
                                unreachable!("a success is delivered")
                            };
                            let attempts = attempt.number + 1;
                            let delivery = Delivery {
                                request_id: self.request_id,
                                attempts,
                                verdict: None,
                                dialect: self.dialect(),
                            };
                            stream_body(out, resp, held, delivery, self.settings).await;
                            return (status, attempts);
                        }
                        // A destination the runtime refuses is a setting to
                        // fix, not a failure to retry or to hold against
                        // the upstream.
                        Err((Last::Failure(_, f), _)) if f.denied => {
                            log_line!("levee edge: configuration error: {}", f.message);
                            let message = format!("levee edge is misconfigured: {}", f.message);
                            let local = LocalReply::new(Reason::Misconfigured, message, None);
                            let attempts = number + 1;
                            return (
                                reply::send(&local, out, self.request_id, attempts).await,
                                attempts,
                            );
                        }
                        Err((kept, outcome)) => {
                            last = Some(kept);
                            x.answered(outcome)
                        }
                    }
                }
                Action::AskOutcome(attempt) => {
                    let step = policy::on_outcome(x.request(), x.order(), attempt, &self.view());
                    x.decided(step, now_ms())
                }
                Action::TakeSlot { .. } => x.slot(true),
                Action::Wait { delay_ms, .. } => {
                    last = None;
                    sleep_ms(delay_ms).await;
                    x.waited(now_ms())
                }
                Action::Deliver(_) => unreachable!("delivered where it was sent"),
                Action::GiveUp(at) => {
                    let last = last.expect("a give-up follows an attempt");
                    let dialect = self.dialect();
                    let status =
                        give_up(self.settings, self.request_id, out, last, at, dialect).await;
                    return (status, at.attempts);
                }
                Action::Reply(local) => {
                    return (reply::send(&local, out, self.request_id, 0).await, 0);
                }
            };
        }
    }

    /// The format of the streams this request is answered with.
    fn dialect(&self) -> Dialect {
        Dialect::of_path(&self.path)
    }

    /// One attempt: a success to deliver (with its body's first bytes, a
    /// stream's held start), or what to keep and the outcome.
    async fn attempt(
        &self,
        id: u32,
        timeout_ms: u64,
    ) -> Result<(Upstreaming, Prefix, u32), (Last, Outcome)> {
        let up = &self.settings.upstreams[id as usize];
        let started = now_ms();
        let outbound = match &self.body {
            Body::Held(b) => Outbound::Held(b),
            Body::Passing(p) => match p.borrow_mut().take() {
                Some(p) => Outbound::Passing(p),
                None => {
                    let message = "the request body was passed on already".to_owned();
                    let failure = Failure {
                        kind: FailureKind::Reset,
                        message,
                        denied: false,
                    };
                    return Err((
                        Last::Failure(id, failure),
                        Outcome::Failure(FailureKind::Reset),
                    ));
                }
            },
        };
        let sent = upstream::send(
            up,
            &self.method,
            &self.path,
            &self.headers,
            outbound,
            timeout_ms,
        )
        .await;
        let elapsed_ms = now_ms().saturating_sub(started).min(u64::from(u32::MAX)) as u32;
        let (resp, prefix) = match sent {
            Ok(resp) if resp.status < 400 => match self.hold(resp).await {
                Hold::Released(resp, held) => return Ok((resp, held, elapsed_ms)),
                // The error event is the answer, as if its status had said it.
                Hold::Error(resp, prefix) => (resp, prefix),
                Hold::Broken(why) => {
                    let failure = Failure {
                        kind: FailureKind::Reset,
                        message: format!("the stream broke off before any content: {why}"),
                        denied: false,
                    };
                    return Err((
                        Last::Failure(id, failure),
                        Outcome::Failure(FailureKind::Reset),
                    ));
                }
            },
            Ok(resp) => {
                let prefix = read_prefix(&resp, self.settings.error_body_bytes, timeout_ms).await;
                (resp, prefix)
            }
            Err(failure) => {
                let outcome = Outcome::Failure(failure.kind);
                return Err((Last::Failure(id, failure), outcome));
            }
        };
        let facts = facts::response_facts(
            resp.status,
            |name| get(&resp.headers, name),
            &prefix.bytes,
            elapsed_ms,
            now_ms(),
        );
        let now = now_ms();
        let header_wait = facts::header_wait(&facts);
        match facts.status {
            429 if !facts.spend_cap => {
                let wait = header_wait.unwrap_or(0);
                self.state.rate_limited(id, &self.class, now, wait);
            }
            529 => self.state.overloaded(id, now, header_wait),
            _ => {}
        }
        Err((Last::Response(resp, prefix), Outcome::Response(facts)))
    }
}

/// What holding a stream's start back found.
enum Hold {
    /// Content flowed, or the window ended: deliver, the held bytes first.
    Released(Upstreaming, Prefix),
    /// An error event before content: the response made the error
    /// response it stands for (its status, a JSON head), and its body.
    Error(Upstreaming, Prefix),
    /// The stream ended or broke before content.
    Broken(String),
}

impl Exchange<'_> {
    /// Holds a Messages stream's head and first events back until content
    /// flows, for at most `hold_ms` (`levee_exchange::early`): an error
    /// event, or the stream's end, before content is the attempt's
    /// outcome, since the client has seen nothing yet.
    async fn hold(&self, mut resp: Upstreaming) -> Hold {
        let window = self.settings.hold_ms;
        let sse = get(&resp.headers, "content-type").is_some_and(is_event_stream);
        if !sse || window == 0 || self.dialect() != Dialect::Messages {
            return Hold::Released(resp, Prefix::default());
        }
        let mut held = early::Held::new(self.request_id);
        let read = async {
            loop {
                match resp.next().await {
                    Chunk::Data(d) => match held.push(&d) {
                        Early::Holding => {}
                        other => return Ok(other),
                    },
                    Chunk::Failed(e) => return Err(e),
                    Chunk::End => return Err("the upstream closed it".to_owned()),
                }
            }
        };
        let seen = timeout(window, read).await;
        match seen {
            Some(Ok(Early::Error { status, body })) => {
                resp.status = status;
                resp.headers
                    .retain(|(k, _)| k != "content-length" && k != "cache-control");
                set(&mut resp.headers, "content-type", "application/json");
                let prefix = Prefix {
                    bytes: body.to_vec(),
                    ended: Some(None),
                };
                Hold::Error(resp, prefix)
            }
            Some(Err(why)) => Hold::Broken(why),
            Some(Ok(_)) | None => {
                let prefix = Prefix {
                    bytes: held.into_bytes().to_vec(),
                    ended: None,
                };
                Hold::Released(resp, prefix)
            }
        }
    }
}

/// Reads up to `limit` bytes of an error body within `timeout_ms`.
async fn read_prefix(resp: &Upstreaming, limit: usize, timeout_ms: u64) -> Prefix {
    let mut prefix = Prefix::default();
    let read = async {
        while prefix.bytes.len() < limit {
            match resp.next().await {
                Chunk::Data(d) => prefix.bytes.extend_from_slice(&d),
                Chunk::End => {
                    prefix.ended = Some(None);
                    return;
                }
                Chunk::Failed(e) => {
                    prefix.ended = Some(Some(e));
                    return;
                }
            }
        }
    };
    let _ = timeout(timeout_ms, read).await;
    prefix
}

/// Reads a client request into an [`Exchange`], or answers it with an
/// error (too large, unreadable, unauthorized).
pub async fn accept<'a>(
    settings: &'a Settings,
    state: &'a State<'a>,
    request_id: &'a str,
    req: IncomingRequest,
) -> Result<Exchange<'a>, LocalReply> {
    let method = req.method();
    let full = req.path_with_query().unwrap_or_else(|| "/".into());
    if facts::has_dot_segment(&full) {
        return Err(LocalReply::dot_segment());
    }
    let path = match full.strip_prefix(settings.strip_prefix.as_str()) {
        Some(rest) if rest.is_empty() || rest.starts_with(['/', '?']) => {
            format!("/{}", rest.trim_start_matches('/'))
        }
        _ => {
            let message = format!("levee edge serves only under `{}`", settings.strip_prefix);
            return Err(LocalReply::new(Reason::NotFound, message, None));
        }
    };
    let mut headers: Headers = req
        .headers()
        .entries()
        .into_iter()
        .map(|(k, v)| (k.to_ascii_lowercase(), v))
        .collect();
    if let Some(token) = &settings.access_token {
        let sent = get(&headers, "authorization").and_then(|v| v.strip_prefix("Bearer "));
        // Compared in constant time: how long a wrong token took to refuse
        // tells nothing about the right one.
        let matches = sent.is_some_and(|s| bool::from(s.as_bytes().ct_eq(token.0.as_bytes())));
        if !matches {
            let message =
                "levee edge: missing or wrong access token (send `authorization: Bearer <token>`)";
            return Err(LocalReply::new(Reason::Unauthorized, message, None));
        }
        // The token is for the edge alone, never for the upstream.
        headers.retain(|(k, _)| k != "authorization");
    }
    let route = Route::of(&path);
    let limit = settings.body_limits.of(route);
    let body = if route.passes_through() {
        let length = get(&headers, "content-length").and_then(|v| v.trim().parse::<u64>().ok());
        if length.is_some_and(|n| n > limit as u64) {
            return Err(LocalReply::body_too_large(limit));
        }
        let unreadable = || LocalReply::body_unreadable("the runtime gave no body stream");
        let incoming = req.consume().map_err(|()| unreadable())?;
        let passing = upstream::Passing::of(incoming, length, limit).ok_or_else(unreadable)?;
        Body::Passing(std::cell::RefCell::new(Some(passing)))
    } else {
        Body::Held(read_body(req, limit).await?)
    };
    let readable: &[u8] = match &body {
        Body::Held(b) => b,
        Body::Passing(_) => &[],
    };
    let client_timeout = get(&headers, facts::CLIENT_TIMEOUT).and_then(facts::client_timeout_ms);
    let retry_count = get(&headers, facts::CLIENT_RETRY_COUNT).and_then(facts::client_retry_count);
    strip_hop_by_hop(&mut headers);
    // The edge reads error bodies and usage as they come, and decodes no
    // compression: it asks for none, and the client gets what was sent.
    set(&mut headers, "accept-encoding", "identity");
    if let Some(key) = &settings.api_key {
        headers.retain(|(k, _)| k != "authorization" && k != "x-api-key");
        set(&mut headers, "x-api-key", key.0.as_bytes());
    }
    let received = now_ms();
    let mut deadline = received.saturating_add(settings.deadline_ms);
    if let Some(ms) = client_timeout {
        deadline = deadline.min(received.saturating_add(ms));
    }
    let body_facts = facts::body_facts(readable);
    let method_name = method.to_string();
    let facts = RequestFacts {
        id: wasi::random::random::get_random_u64(),
        method: facts::method(&method_name),
        endpoint: facts::endpoint(&path),
        model: body_facts.model,
        stream: body_facts.stream,
        max_tokens: body_facts.max_tokens,
        est_input_tokens: facts::estimate_input_tokens(readable),
        client: None,
        priority: 0,
        client_retry_count: retry_count,
        received_at: received,
        deadline,
    };
    let classes = &settings.classes;
    let class = classes.name(classes.of_request(facts.endpoint, facts.model.as_deref()));
    let class = class.clone();
    Ok(Exchange {
        settings,
        state,
        request_id,
        method,
        path,
        headers,
        body,
        facts,
        class,
    })
}

/// The whole request body, at most `limit` bytes.
async fn read_body(req: IncomingRequest, limit: usize) -> Result<Vec<u8>, LocalReply> {
    let unreadable = LocalReply::body_unreadable("the runtime gave no body stream");
    let Ok(body) = req.consume() else {
        return Err(unreadable);
    };
    let Ok(stream) = body.stream() else {
        return Err(unreadable);
    };
    let mut out = Vec::new();
    loop {
        match crate::io::read(&stream).await {
            Chunk::Data(d) => {
                out.extend_from_slice(&d);
                if out.len() > limit {
                    return Err(LocalReply::body_too_large(limit));
                }
            }
            Chunk::End => return Ok(out),
            Chunk::Failed(e) => return Err(LocalReply::body_unreadable(&e)),
        }
    }
}
