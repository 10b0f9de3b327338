//! An on-disk cache of compiled policy components.
//!
//! The key hashes the component's bytes together with the engine's
//! compatibility hash (wasmtime's version, target, tunables, features), so a
//! wasmtime upgrade or an engine config change can never load a stale
//! artifact. Even a key collision is harmless: wasmtime checks compatibility
//! again on load, and a file that fails to load is recompiled and replaced.

use sha2::{Digest, Sha256};
use std::hash::{Hash, Hasher};
use std::path::{Path, PathBuf};
use wasmtime::Engine;
use wasmtime::component::Component;

/// Where compiled components are kept; `None` compiles every time.
#[derive(Clone, Debug)]
pub struct CompileCache {
    dir: Option<PathBuf>,
}

/// How a component was obtained, for logs and benchmarks.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CacheOutcome {
    /// Loaded from the cache.
    Hit,
    /// Compiled, and written to the cache.
    Stored,
    /// Compiled; there is no cache, or writing to it failed.
    Compiled,
}

impl CompileCache {
    /// A cache in `dir`, created (mode 0700) when first written.
    pub fn at(dir: impl Into<PathBuf>) -> CompileCache {
        CompileCache {
            dir: Some(dir.into()),
        }
    }

    /// No cache.
    pub fn disabled() -> CompileCache {
        CompileCache { dir: None }
    }

    /// `$XDG_CACHE_HOME/levee/policies`, or `~/.cache/levee/policies`.
    pub fn default_location() -> CompileCache {
        let base = std::env::var_os("XDG_CACHE_HOME")
            .map(PathBuf::from)
            .or_else(|| std::env::var_os("HOME").map(|h| Path::new(&h).join(".cache")));
        CompileCache {
            dir: base.map(|b| b.join("levee").join("policies")),
        }
    }

    /// The cache directory, if any.
    pub fn dir(&self) -> Option<&Path> {
        self.dir.as_deref()
    }

    /// The file a component's compiled form is kept in.
    pub fn path_for(&self, engine: &Engine, bytes: &[u8]) -> Option<PathBuf> {
        let dir = self.dir.as_ref()?;
        Some(dir.join(format!("{}.cwasm", key(engine, bytes))))
    }

    /// Compiles `bytes`, or loads its compiled form from the cache.
    pub fn load(
        &self,
        engine: &Engine,
        bytes: &[u8],
    ) -> wasmtime::Result<(Component, CacheOutcome)> {
        let Some(path) = self.path_for(engine, bytes) else {
            return Ok((Component::new(engine, bytes)?, CacheOutcome::Compiled));
        };
        if path.exists() {
            // SAFETY: the file was written by `store` below from wasmtime's
            // own `precompile_component`, into a directory only this user
            // can write (0700). wasmtime verifies the header and engine
            // compatibility before using it; on any error we recompile.
            #[allow(unsafe_code)]
            match unsafe { Component::deserialize_file(engine, &path) } {
                Ok(component) => return Ok((component, CacheOutcome::Hit)),
                Err(e) => {
                    tracing::warn!(path = %path.display(), error = %e, "discarding unusable compiled policy")
                }
            }
        }
        let compiled = engine.precompile_component(bytes)?;
        let outcome = match store(&path, &compiled) {
            Ok(()) => CacheOutcome::Stored,
            Err(e) => {
                tracing::warn!(path = %path.display(), error = %e, "cannot write the policy cache; continuing without it");
                CacheOutcome::Compiled
            }
        };
        // SAFETY: `compiled` came from `precompile_component` on this engine.
        #[allow(unsafe_code)]
        let component = unsafe { Component::deserialize(engine, &compiled)? };
        Ok((component, outcome))
    }
}

fn key(engine: &Engine, bytes: &[u8]) -> String {
    let mut engine_hash = std::collections::hash_map::DefaultHasher::new();
    engine
        .precompile_compatibility_hash()
        .hash(&mut engine_hash);
    let mut digest = Sha256::new();
    digest.update(b"levee-policy-cache-v1\0");
    digest.update(engine_hash.finish().to_le_bytes());
    digest.update(bytes);
    digest
        .finalize()
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// Writes atomically: a reader sees the whole file or none.
fn store(path: &Path, compiled: &[u8]) -> std::io::Result<()> {
    let dir = path.parent().expect("cache paths have a parent");
    create_private_dir(dir)?;
    let tmp = dir.join(format!(".{}.tmp", std::process::id()));
    std::fs::write(&tmp, compiled)?;
    std::fs::rename(&tmp, path)
}

fn create_private_dir(dir: &Path) -> std::io::Result<()> {
    #[cfg(unix)]
    {
        use std::os::unix::fs::DirBuilderExt;
        std::fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(dir)
    }
    #[cfg(not(unix))]
    std::fs::create_dir_all(dir)
}

#[cfg(test)]
mod tests {
    use super::*;

    const EMPTY_COMPONENT: &[u8] = b"\0asm\x0d\0\x01\0";

    fn engine(opt: wasmtime::OptLevel) -> Engine {
        let mut config = wasmtime::Config::new();
        config.cranelift_opt_level(opt);
        Engine::new(&config).unwrap()
    }

    #[test]
    fn key_depends_on_bytes_and_engine_config() {
        let fast = engine(wasmtime::OptLevel::Speed);
        let none = engine(wasmtime::OptLevel::None);
        let a = key(&fast, EMPTY_COMPONENT);
        assert_eq!(a, key(&fast, EMPTY_COMPONENT), "the key is stable");
        assert_ne!(
            a,
            key(&none, EMPTY_COMPONENT),
            "engine config is part of the key"
        );
        assert_ne!(
            a,
            key(&fast, b"\0asm\x0d\0\x01\0\0"),
            "bytes are part of the key"
        );
    }

    #[test]
    fn second_load_hits_and_corrupt_file_is_recompiled() {
        let dir = tempfile::tempdir().unwrap();
        let cache = CompileCache::at(dir.path().join("c"));
        let engine = engine(wasmtime::OptLevel::Speed);
        let (_, first) = cache.load(&engine, EMPTY_COMPONENT).unwrap();
        assert_eq!(first, CacheOutcome::Stored);
        let (_, second) = cache.load(&engine, EMPTY_COMPONENT).unwrap();
        assert_eq!(second, CacheOutcome::Hit);

        let path = cache.path_for(&engine, EMPTY_COMPONENT).unwrap();
        std::fs::write(&path, b"garbage").unwrap();
        let (_, third) = cache.load(&engine, EMPTY_COMPONENT).unwrap();
        assert_eq!(
            third,
            CacheOutcome::Stored,
            "a corrupt artifact is replaced"
        );
        let (_, fourth) = cache.load(&engine, EMPTY_COMPONENT).unwrap();
        assert_eq!(fourth, CacheOutcome::Hit);
    }

    #[cfg(unix)]
    #[test]
    fn cache_dir_is_private() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let cache = CompileCache::at(dir.path().join("c"));
        cache
            .load(&engine(wasmtime::OptLevel::Speed), EMPTY_COMPONENT)
            .unwrap();
        let mode = std::fs::metadata(dir.path().join("c"))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o700);
    }
}
