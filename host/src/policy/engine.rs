//! The policy engine: one wasmtime `Engine` per process, and the steps that
//! turn a component's bytes into a [`LoadedPolicy`] ready to serve.
//!
//! Loading a policy, step by step (each step names itself in a
//! [`LoadError`]):
//!
//! 1. `format`: the bytes are a WebAssembly component (not a core module).
//! 2. `compile`: compiled once, or loaded from the [`CompileCache`].
//! 3. `imports`: the component imports nothing, so it links against an
//!    empty linker: no WASI, no host functions, no I/O of any kind.
//! 4. `exports`: it exports `levee:policy/policy@0.1.0` with the expected
//!    types.
//! 5. `instantiate` and `configure`: a small pool of instances, each
//!    configured with the policy's own config.
//! 6. `self-check`: a few decisions on known inputs must respect the host's
//!    invariants.

use super::bindings::{POLICY_INTERFACE, PolicyPre};
use super::cache::CompileCache;
use super::loaded::{LoadedPolicy, Stats};
use super::pool::{Limits, Pool, PoolError, StoreState};
use super::selfcheck;
use super::ticker::{Ticker, tick_for};
use std::fmt;
use std::sync::Arc;
use wasmtime::component::{Component, Linker};
use wasmtime::{Config, Engine};

/// Options for a [`PolicyEngine`].
#[derive(Clone, Debug)]
pub struct EngineOptions {
    /// Where compiled components are cached.
    pub cache: CompileCache,
    /// Per-instance limits.
    pub limits: Limits,
}

impl Default for EngineOptions {
    fn default() -> Self {
        EngineOptions {
            cache: CompileCache::default_location(),
            limits: Limits::default(),
        }
    }
}

/// The step at which loading a policy failed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Stage {
    /// Reading the file.
    Read,
    /// Recognising the bytes as a component.
    Format,
    /// Compiling it.
    Compile,
    /// Checking that it imports nothing.
    Imports,
    /// Checking that it exports the policy interface.
    Exports,
    /// Creating instances.
    Instantiate,
    /// Running `configure`.
    Configure,
    /// Running the self-check decisions.
    SelfCheck,
}

impl fmt::Display for Stage {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Stage::Read => "read",
            Stage::Format => "format",
            Stage::Compile => "compile",
            Stage::Imports => "imports",
            Stage::Exports => "exports",
            Stage::Instantiate => "instantiate",
            Stage::Configure => "configure",
            Stage::SelfCheck => "self-check",
        })
    }
}

/// A policy that was refused, with the step that refused it and why.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("policy {source_name} refused at step `{stage}`: {message}")]
pub struct LoadError {
    /// Which policy (a file path or a built-in name).
    pub source_name: String,
    /// The failing step.
    pub stage: Stage,
    /// What went wrong, and what would be valid.
    pub message: String,
}

/// Where a policy comes from.
#[derive(Clone, Debug)]
pub enum PolicySource {
    /// A component embedded in this binary, by name (`standard`, `interactive`).
    Builtin(&'static str),
    /// A component file.
    File(std::path::PathBuf),
    /// Component bytes, with a name for messages.
    Bytes {
        /// Shown in messages and status.
        name: String,
        /// The component.
        bytes: Arc<[u8]>,
    },
}

impl PolicySource {
    /// `builtin:NAME` for an embedded policy; anything else is a file path.
    pub fn parse(spec: &str) -> PolicySource {
        match spec
            .strip_prefix("builtin:")
            .and_then(super::builtin::lookup)
        {
            Some((name, _)) => PolicySource::Builtin(name),
            None => PolicySource::File(spec.into()),
        }
    }

    /// The name used in messages.
    pub fn name(&self) -> String {
        match self {
            PolicySource::Builtin(n) => format!("builtin:{n}"),
            PolicySource::File(p) => p.display().to_string(),
            PolicySource::Bytes { name, .. } => name.clone(),
        }
    }

    fn bytes(&self) -> Result<Arc<[u8]>, String> {
        match self {
            PolicySource::Builtin(n) => super::builtin::lookup(n)
                .map(|(_, b)| Arc::from(b))
                .ok_or_else(|| format!("no built-in policy named `{n}`")),
            PolicySource::File(p) => read_component(p)
                .map(Arc::from)
                .map_err(|e| format!("cannot read {}: {e}", p.display())),
            PolicySource::Bytes { bytes, .. } => Ok(bytes.clone()),
        }
    }
}

/// The largest component file levee reads: policies are kilobytes to a few
/// megabytes, and a path like `/dev/zero` must not exhaust memory.
pub const MAX_COMPONENT_BYTES: u64 = 64 << 20;

/// A component file's bytes: a regular file of at most
/// [`MAX_COMPONENT_BYTES`].
fn read_component(path: &std::path::Path) -> std::io::Result<Vec<u8>> {
    use std::io::Read;
    let file = std::fs::File::open(path)?;
    if !file.metadata()?.is_file() {
        return Err(std::io::Error::other("not a regular file"));
    }
    let mut bytes = Vec::new();
    file.take(MAX_COMPONENT_BYTES + 1).read_to_end(&mut bytes)?;
    if bytes.len() as u64 > MAX_COMPONENT_BYTES {
        return Err(std::io::Error::other(format!(
            "larger than {} MiB",
            MAX_COMPONENT_BYTES >> 20
        )));
    }
    Ok(bytes)
}

/// One wasmtime engine, its epoch ticker, and the cache.
pub struct PolicyEngine {
    engine: Engine,
    linker: Linker<StoreState>,
    options: EngineOptions,
    stats: Arc<Stats>,
    /// Shared with every policy's pool; its thread ends with the last.
    ticker: Arc<Ticker>,
}

impl PolicyEngine {
    /// Starts an engine and its epoch ticker thread.
    pub fn new(options: EngineOptions) -> anyhow::Result<PolicyEngine> {
        let mut config = Config::new();
        config.epoch_interruption(true);
        let engine = Engine::new(&config)?;
        let ticker = Ticker::start(&engine, tick_for(options.limits.call_timeout))?;
        Ok(PolicyEngine {
            linker: Linker::new(&engine),
            engine,
            options,
            stats: Arc::default(),
            ticker,
        })
    }

    /// Counters across every policy this engine has loaded.
    pub fn stats(&self) -> &Stats {
        &self.stats
    }

    /// The options it was built with.
    pub fn options(&self) -> &EngineOptions {
        &self.options
    }

    /// Loads, checks and configures a policy. On success the policy is
    /// ready to serve; nothing is swapped yet.
    pub fn load(
        &self,
        source: &PolicySource,
        config: &str,
    ) -> Result<Arc<LoadedPolicy>, LoadError> {
        let name = source.name();
        let fail = |stage, message: String| LoadError {
            source_name: name.clone(),
            stage,
            message,
        };
        let bytes = source.bytes().map_err(|m| fail(Stage::Read, m))?;
        check_format(&bytes).map_err(|m| fail(Stage::Format, m))?;
        let (component, cached) = self
            .options
            .cache
            .load(&self.engine, &bytes)
            .map_err(|e| fail(Stage::Compile, format!("{e:#}")))?;
        check_imports(&self.engine, &component).map_err(|m| fail(Stage::Imports, m))?;
        let pre = self
            .linker
            .instantiate_pre(&component)
            .and_then(PolicyPre::new)
            .map_err(|e| {
                fail(
                    Stage::Exports,
                    exports_message(&self.engine, &component, &e),
                )
            })?;
        let pool = Pool::new(pre, config, self.options.limits, self.ticker.clone()).map_err(
            |e| match e {
                PoolError::Instantiate(m) => fail(Stage::Instantiate, m),
                PoolError::Configure(m) => fail(Stage::Configure, m),
            },
        )?;
        let info = pool
            .call(|p, s| p.info(s))
            .map_err(|e| fail(Stage::SelfCheck, format!("info(): {e}")))?;
        let policy =
            LoadedPolicy::new(name.clone(), &bytes, info, config, pool, self.stats.clone());
        selfcheck::run(&policy).map_err(|m| fail(Stage::SelfCheck, m))?;
        tracing::debug!(policy = %name, cache = ?cached, "policy loaded");
        Ok(Arc::new(policy))
    }
}

/// What a component imports and exports, by name.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Interface {
    /// Imported instance and function names.
    pub imports: Vec<String>,
    /// Exported instance and function names.
    pub exports: Vec<String>,
}

impl PolicyEngine {
    /// Reads and compiles `source` and lists its imports and exports,
    /// without judging them (that is [`PolicyEngine::load`]'s job).
    pub fn inspect(&self, source: &PolicySource) -> Result<Interface, LoadError> {
        let fail = |stage, message| LoadError {
            source_name: source.name(),
            stage,
            message,
        };
        let bytes = source.bytes().map_err(|m| fail(Stage::Read, m))?;
        check_format(&bytes).map_err(|m| fail(Stage::Format, m))?;
        let (component, _) = self
            .options
            .cache
            .load(&self.engine, &bytes)
            .map_err(|e| fail(Stage::Compile, format!("{e:#}")))?;
        let ty = component.component_type();
        Ok(Interface {
            imports: ty
                .imports(&self.engine)
                .map(|(n, _)| n.to_owned())
                .collect(),
            exports: ty
                .exports(&self.engine)
                .map(|(n, _)| n.to_owned())
                .collect(),
        })
    }
}

const MAGIC: &[u8; 4] = b"\0asm";
const CORE_VERSION: [u8; 4] = [1, 0, 0, 0];
const COMPONENT_VERSION: [u8; 4] = [0x0d, 0, 1, 0];

fn check_format(bytes: &[u8]) -> Result<(), String> {
    if bytes.len() < 8 || &bytes[..4] != MAGIC {
        return Err("not a WebAssembly file (no `\\0asm` header)".into());
    }
    match <[u8; 4]>::try_from(&bytes[4..8]).expect("8 bytes checked") {
        COMPONENT_VERSION => Ok(()),
        CORE_VERSION => Err(
            "this is a core WebAssembly module, not a component; wrap it with \
             `wasm-tools component new` (see docs/policy-authoring.md)"
                .into(),
        ),
        v => Err(format!("unsupported WebAssembly version/layer {v:02x?}")),
    }
}

fn check_imports(engine: &Engine, component: &Component) -> Result<(), String> {
    let imports: Vec<String> = component
        .component_type()
        .imports(engine)
        .map(|(name, _)| name.to_owned())
        .collect();
    if imports.is_empty() {
        return Ok(());
    }
    let shown: Vec<&str> = imports.iter().take(5).map(String::as_str).collect();
    let more = imports.len().saturating_sub(shown.len());
    let wasi = imports.iter().any(|i| i.starts_with("wasi:"));
    Err(format!(
        "the component imports {}{}; a policy must import nothing, so the host can run it with \
         no capabilities at all{}",
        shown.join(", "),
        if more > 0 {
            format!(" and {more} more")
        } else {
            String::new()
        },
        if wasi {
            ". A Rust std build for wasm32-wasip2 imports WASI as soon as it allocates: build for \
             wasm32-unknown-unknown and wrap it with `wasm-tools component new`"
        } else {
            ""
        }
    ))
}

fn exports_message(engine: &Engine, component: &Component, e: &wasmtime::Error) -> String {
    let exports: Vec<String> = component
        .component_type()
        .exports(engine)
        .map(|(name, _)| name.to_owned())
        .collect();
    if exports.iter().any(|x| x == POLICY_INTERFACE) {
        format!("{POLICY_INTERFACE} does not match the host's contract: {e:#}")
    } else {
        format!(
            "the component does not export {POLICY_INTERFACE}; it exports [{}]",
            exports.join(", ")
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn format_check_names_what_the_bytes_are() {
        assert!(
            check_format(b"hello world")
                .unwrap_err()
                .contains("not a WebAssembly file")
        );
        assert!(
            check_format(b"\0asm\x01\0\0\0")
                .unwrap_err()
                .contains("core WebAssembly module")
        );
        assert!(check_format(b"\0asm\x0d\0\x01\0").is_ok());
        assert!(
            check_format(b"\0asm\x0e\0\x01\0")
                .unwrap_err()
                .contains("unsupported")
        );
        assert!(
            check_format(b"\0asm")
                .unwrap_err()
                .contains("not a WebAssembly file")
        );
    }
}
