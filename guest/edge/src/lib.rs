//! levee at the edge: a `wasi:http@0.2` component (spin-sdk 5.2) that does
//! the gateway's job and asks an *imported* `levee:policy/policy` for every
//! decision. Compose it with any policy component into one deployable
//! component (`levee-compose`), or wire the policy in with Spin component
//! dependencies.
//!
//! Built without features it needs only `wasi:*` (settings from
//! `LEVEE_*` environment variables, state per instance), so `wasmtime
//! serve` and any wasi:http 0.2 host run it. With feature `spin` it reads
//! Spin variables and keeps limiter and circuit state in Spin key-value.

/// `eprintln!` in one write: std writes a formatted line piece by piece,
/// and the pieces of instances running at the same time can interleave in
/// the runtime's log.
macro_rules! log_line {
    ($($arg:tt)*) => {
        $crate::write_line(format!($($arg)*))
    };
}

mod bindings;
mod clock;
pub mod config;
mod deliver;
mod forward;
mod io;
mod reply;
pub mod state;
mod upstream;

use config::{ConfigError, Settings};
use levee_exchange::{LocalReply, Reason};
use spin_sdk::http::{IncomingRequest, ResponseOutparam};
use state::State;

/// The export exists only in the wasm build: a native build (for unit
/// tests and clippy) cannot link its `wasi:http/...` symbol names.
#[cfg(target_arch = "wasm32")]
#[allow(unsafe_code)]
mod entry {
    use spin_sdk::http::{IncomingRequest, ResponseOutparam};

    /// The component's `wasi:http/incoming-handler`.
    #[spin_sdk::http_component]
    async fn handle(req: IncomingRequest, out: ResponseOutparam) {
        super::serve(req, out).await
    }
}

/// Serves one request, and writes one access-log line to stderr.
#[cfg_attr(not(target_arch = "wasm32"), allow(dead_code))]
async fn serve(req: IncomingRequest, out: ResponseOutparam) {
    let request_id = format!("levee_{:016x}", wasi::random::random::get_random_u64());
    let started = clock::now_ms();
    let method = req.method().to_string();
    let (status, attempts) = match setup() {
        Err(e) => {
            log_line!("levee edge: configuration error: {e}");
            let local = LocalReply::new(
                Reason::Misconfigured,
                format!("levee edge is misconfigured: {e}"),
                None,
            );
            (reply::send(&local, out, &request_id, 0).await, 0)
        }
        Ok((settings, store)) => {
            let state = State::new(store, &settings.upstreams, settings.limits);
            match forward::accept(&settings, &state, &request_id, req).await {
                Ok(exchange) => exchange.run(out).await,
                Err(local) => (reply::send(&local, out, &request_id, 0).await, 0),
            }
        }
    };
    log_line!(
        "levee::access request_id={request_id} method={method} status={status} attempts={attempts} ms={}",
        clock::now_ms().saturating_sub(started)
    );
}

/// Writes `line` and a newline to stderr in one write.
fn write_line(mut line: String) {
    line.push('\n');
    let _ = std::io::Write::write_all(&mut std::io::stderr(), line.as_bytes());
}

/// Settings, the configured policy, and the state store.
fn setup() -> Result<(Settings, Box<dyn state::Store>), ConfigError> {
    let settings = Settings::load(source().as_ref())?;
    if let Err(e) = bindings::policy::configure(&settings.policy_config) {
        return Err(ConfigError {
            key: source().spell("policy_config"),
            message: if e.key.is_empty() {
                e.message
            } else {
                format!("`{}`: {}", e.key, e.message)
            },
        });
    }
    let store = store(&settings);
    Ok((settings, store))
}

#[cfg(not(feature = "spin"))]
fn source() -> Box<dyn config::Source> {
    Box::new(config::Env)
}

#[cfg(not(feature = "spin"))]
fn store(_: &Settings) -> Box<dyn state::Store> {
    log_line!(
        "levee edge: no key-value store in this build; limiter and circuit state are per instance, not shared"
    );
    Box::<state::Local>::default()
}

#[cfg(feature = "spin")]
mod spin;

#[cfg(feature = "spin")]
fn source() -> Box<dyn config::Source> {
    Box::new(spin::Variables)
}

#[cfg(feature = "spin")]
fn store(settings: &Settings) -> Box<dyn state::Store> {
    spin::open_store(&settings.kv_store)
}
