//! One client request, from admission to delivery, as the bundled host
//! does it:
//!
//! 1. Read the body (bounded) and its facts.
//! 2. Ask the imported policy for admission: admit, queue, or reject.
//! 3. Attempt: send to the planned upstream under the per-try timeout; for
//!    an error status, read a bounded prefix of the body.
//! 4. Ask the policy what follows; the rails (attempt ceiling, deadline)
//!    may overrule a retry, never the other way round. Sleep on wasi clocks.
//! 5. Deliver the response as it came, streamed under watch.

use crate::bindings::policy;
use crate::clock::{now_ms, sleep_ms, timeout};
use crate::config::Settings;
use crate::deliver::{Prefix, give_up, stream_body};
use crate::facts;
use crate::io::Chunk;
use crate::reply::{Headers, Local, get, set, strip_hop_by_hop};
use crate::state::State;
use crate::upstream::{self, Failure, Upstreaming};
use levee_policy_core::{
    Admission, Attempt, NextStep, Outcome, RequestFacts, ResponseFacts, View, headers,
    rails::check_retry,
};
use spin_sdk::http::{IncomingRequest, Method, ResponseOutparam};

/// The last thing an attempt produced, kept in case levee gives up.
pub enum Last {
    /// An error response: its head, the prefix read, and the rest.
    Response(Upstreaming, Prefix),
    /// No response head.
    Failure(u32, Failure),
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
    /// The body, replayed on every attempt.
    pub body: Vec<u8>,
    /// Facts for the policy.
    pub facts: RequestFacts,
}

impl Exchange<'_> {
    fn view(&self) -> View {
        let now = now_ms();
        View {
            now,
            random: wasi::random::random::get_random_u64(),
            upstreams: self.state.view(now),
            // Each request runs in its own instance: there is no global
            // count of retries in flight to budget against.
            retry_budget: true,
        }
    }

    /// Runs the request; returns the status and attempt count for the log.
    pub async fn run(self, out: ResponseOutparam) -> (u16, u32) {
        let plan = loop {
            match policy::on_request(&self.facts, &self.view()) {
                Admission::Admit(plan) => break plan,
                Admission::Queue(until) => {
                    let now = now_ms();
                    if until >= self.facts.deadline {
                        let local = Local {
                            status: 429,
                            error_type: "rate_limit_error".into(),
                            message: "every upstream is busy beyond this request's deadline".into(),
                            should_retry: true,
                            retry_after_ms: Some(until.saturating_sub(now)),
                        };
                        return (local.send(out, self.request_id, 0).await, 0);
                    }
                    sleep_ms(until.saturating_sub(now).max(1)).await;
                }
                Admission::Reject(r) => {
                    let local = Local {
                        status: r.status,
                        error_type: r.error_type.clone(),
                        message: r.message.clone(),
                        should_retry: r.should_retry,
                        retry_after_ms: r.retry_after_ms,
                    };
                    return (local.send(out, self.request_id, 0).await, 0);
                }
            }
        };
        let n = self.settings.upstreams.len();
        let order: Vec<u32> = plan
            .upstreams
            .iter()
            .copied()
            .filter(|&id| (id as usize) < n)
            .collect();
        let Some(&first) = order.first() else {
            let local = Local {
                status: 503,
                error_type: "api_error".into(),
                message: "the policy planned no configured upstream".into(),
                should_retry: false,
                retry_after_ms: None,
            };
            return (local.send(out, self.request_id, 0).await, 0);
        };
        let deadline = plan.deadline.min(self.facts.deadline);
        let (mut upstream, mut prev_delay_ms, mut number) = (first, 0, 0u32);
        loop {
            let now = now_ms();
            let try_timeout = u64::from(plan.try_timeout_ms)
                .min(deadline.saturating_sub(now))
                .max(1);
            let attempts = number + 1;
            self.state.charge(upstream, now, &plan.charges);
            let (last, outcome) = match self.attempt(upstream, try_timeout).await {
                Ok(resp) => {
                    let status = resp.status;
                    stream_body(out, resp, Prefix::default(), attempts, None, self.settings).await;
                    return (status, attempts);
                }
                Err(failed) => failed,
            };
            let attempt = Attempt {
                number,
                upstream,
                prev_delay_ms,
                outcome,
            };
            let step = match policy::on_outcome(&self.facts, &order, attempt, &self.view()) {
                NextStep::Retry(r) => {
                    let (max, upstreams) =
                        (self.settings.max_attempts, self.settings.upstreams.len());
                    match check_retry(&r, attempts, max, upstreams, now_ms(), deadline) {
                        Ok(()) => NextStep::Retry(r),
                        Err(g) => NextStep::Fail(g),
                    }
                }
                other => other,
            };
            match step {
                NextStep::Retry(r) => {
                    drop(last);
                    sleep_ms(r.delay_ms).await;
                    upstream = r.upstream;
                    prev_delay_ms = r.delay_ms;
                    number += 1;
                }
                NextStep::Deliver => {
                    return give_up(self.settings, self.request_id, out, last, None, attempts)
                        .await;
                }
                NextStep::Fail(g) => {
                    return give_up(self.settings, self.request_id, out, last, Some(g), attempts)
                        .await;
                }
            }
        }
    }

    /// One attempt: a success to deliver, or what to keep and the outcome.
    async fn attempt(&self, id: u32, timeout_ms: u64) -> Result<Upstreaming, (Last, Outcome)> {
        let up = &self.settings.upstreams[id as usize];
        let started = now_ms();
        let sent = upstream::send(
            up,
            &self.method,
            &self.path,
            &self.headers,
            &self.body,
            timeout_ms,
        )
        .await;
        let elapsed_ms = now_ms().saturating_sub(started).min(u64::from(u32::MAX)) as u32;
        let resp = match sent {
            Ok(resp) if resp.status < 400 => return Ok(resp),
            Ok(resp) => resp,
            Err(failure) => {
                let outcome = Outcome::Failure(failure.kind);
                return Err((Last::Failure(id, failure), outcome));
            }
        };
        let prefix = read_prefix(&resp, self.settings.error_body_bytes, timeout_ms).await;
        let facts = response_facts(&resp.headers, resp.status, &prefix.bytes, elapsed_ms);
        let now = now_ms();
        let header_wait = facts
            .retry_after_ms
            .filter(|&v| v > 0)
            .or(facts.retry_after);
        match facts.status {
            429 if !facts.spend_cap => self.state.rate_limited(id, now, header_wait.unwrap_or(0)),
            529 => self.state.overloaded(id, now, header_wait),
            _ => {}
        }
        Err((Last::Response(resp, prefix), Outcome::Response(facts)))
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

/// The typed facts of an error response, parsed by the decision core.
fn response_facts(h: &Headers, status: u16, body: &[u8], elapsed_ms: u32) -> ResponseFacts {
    let (error, spend_cap) = if body.is_empty() {
        (None, false)
    } else {
        headers::parse_error_body(body)
    };
    ResponseFacts {
        status,
        should_retry: get(h, "x-should-retry").and_then(headers::parse_should_retry),
        retry_after_ms: get(h, "retry-after-ms").and_then(headers::parse_retry_after_ms),
        retry_after: get(h, "retry-after").and_then(|v| headers::parse_retry_after(v, now_ms())),
        error,
        spend_cap,
        elapsed_ms,
    }
}

/// Reads a client request into an [`Exchange`], or answers it with an
/// error (too large, unreadable, unauthorized).
pub async fn accept<'a>(
    settings: &'a Settings,
    state: &'a State<'a>,
    request_id: &'a str,
    req: IncomingRequest,
) -> Result<Exchange<'a>, Local> {
    let method = req.method();
    let full = req.path_with_query().unwrap_or_else(|| "/".into());
    let path = match full.strip_prefix(settings.strip_prefix.as_str()) {
        Some(rest) if rest.is_empty() || rest.starts_with(['/', '?']) => {
            format!("/{}", rest.trim_start_matches('/'))
        }
        _ => {
            return Err(Local {
                status: 404,
                error_type: "not_found_error".into(),
                message: format!("levee edge serves only under `{}`", settings.strip_prefix),
                should_retry: false,
                retry_after_ms: None,
            });
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
        if sent != Some(token.0.as_str()) {
            return Err(Local {
                status: 401,
                error_type: "authentication_error".into(),
                message: "levee edge: missing or wrong access token (send `authorization: Bearer <token>`)".into(),
                should_retry: false,
                retry_after_ms: None,
            });
        }
    }
    let body = read_body(req, settings.max_body_bytes).await?;
    let client_timeout = get(&headers, "x-stainless-timeout").and_then(facts::client_timeout_ms);
    let retry_count = get(&headers, "x-stainless-retry-count").and_then(|v| v.trim().parse().ok());
    strip_hop_by_hop(&mut headers);
    if let Some(key) = &settings.api_key {
        headers.retain(|(k, _)| k != "authorization" && k != "x-api-key");
        set(&mut headers, "x-api-key", key.0.as_bytes());
    }
    let received = now_ms();
    let mut deadline = received.saturating_add(settings.deadline_ms);
    if let Some(ms) = client_timeout {
        deadline = deadline.min(received.saturating_add(ms));
    }
    let body_facts = facts::body_facts(&body);
    let method_name = method.to_string();
    let facts = RequestFacts {
        id: wasi::random::random::get_random_u64(),
        method: facts::method(&method_name),
        endpoint: facts::endpoint(&path),
        model: body_facts.model,
        stream: body_facts.stream,
        max_tokens: body_facts.max_tokens,
        est_input_tokens: facts::estimate_input_tokens(&body),
        client: None,
        priority: 0,
        client_retry_count: retry_count,
        received_at: received,
        deadline,
    };
    Ok(Exchange {
        settings,
        state,
        request_id,
        method,
        path,
        headers,
        body,
        facts,
    })
}

/// The whole request body, at most `limit` bytes.
async fn read_body(req: IncomingRequest, limit: usize) -> Result<Vec<u8>, Local> {
    let unreadable = Local {
        status: 400,
        error_type: "invalid_request_error".into(),
        message: "levee edge: could not read the request body".into(),
        should_retry: false,
        retry_after_ms: None,
    };
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
                    return Err(Local {
                        status: 413,
                        error_type: "request_too_large".into(),
                        message: format!(
                            "request body is larger than the {limit} bytes levee accepts"
                        ),
                        should_retry: false,
                        retry_after_ms: None,
                    });
                }
            }
            Chunk::End => return Ok(out),
            Chunk::Failed(_) => return Err(unreadable),
        }
    }
}
