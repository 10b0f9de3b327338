//! An on-disk cache of compiled policy components.
//!
//! The key hashes the component's bytes together with the engine's
//! compatibility hash (wasmtime's version, target, tunables, features), so a
//! wasmtime upgrade or an engine config change can never load a stale
//! artifact.
//!
//! A compiled artifact is native code that wasmtime maps and runs without
//! checking it, so the cache loads only what it can prove levee wrote:
//! - the directory must be this user's and writable by no one else;
//! - each artifact has an HMAC-SHA256 tag over its name and contents
//!   beside it (`NAME.cwasm.tag`), under a random per-install key (`key`,
//!   0600, this user's);
//! - a file that fails any check is refused, said why, recompiled and
//!   replaced; a directory or key that fails one turns the cache off.
//!
//! Files are written under a temporary name no other process can guess or
//! share (containers all run as pid 1), then renamed into place.

use hmac::{Hmac, Mac};
use sha2::{Digest, Sha256};
use std::hash::{Hash, Hasher};
use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use wasmtime::Engine;
use wasmtime::component::Component;

/// The integrity tag's length: an HMAC-SHA256.
const TAG: usize = 32;
/// The per-install key's file name and length.
const KEY_FILE: &str = "key";
const KEY_BYTES: usize = 32;
/// The largest artifact read back; a policy compiles to a few MiB.
const MAX_ARTIFACT: u64 = 256 << 20;

/// Where compiled components are kept; `None` compiles every time.
#[derive(Clone, Debug, PartialEq, Eq)]
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
    /// Compiled; there is no cache, it cannot be trusted, or writing to it
    /// failed.
    Compiled,
}

impl CompileCache {
    /// A cache in `dir`, created (mode 0700) when first used.
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
        let compile = || Ok((Component::new(engine, bytes)?, CacheOutcome::Compiled));
        let Some(path) = self.path_for(engine, bytes) else {
            return compile();
        };
        let dir = path.parent().expect("cache paths have a parent");
        let secret = match install_key(dir) {
            Ok(secret) => secret,
            Err(why) => {
                tracing::warn!(dir = %dir.display(), "not using the policy cache: {why}");
                return compile();
            }
        };
        match verify(&path, &secret) {
            Ok(true) => {
                // SAFETY: the artifact carries the tag only levee can make
                // (the key is this user's alone, in a directory only this
                // user can write), over this name and these contents, which
                // came from wasmtime's own `precompile_component`. wasmtime
                // still checks the header and engine compatibility. Mapped
                // from the file, as wasmtime prefers: its memory images are
                // then shared with the page cache rather than copied.
                #[allow(unsafe_code)]
                match unsafe { Component::deserialize_file(engine, &path) } {
                    Ok(component) => return Ok((component, CacheOutcome::Hit)),
                    Err(e) => {
                        tracing::warn!(path = %path.display(), error = %e, "discarding unusable compiled policy")
                    }
                }
            }
            Ok(false) => {}
            Err(why) => tracing::warn!(
                path = %path.display(),
                "refusing a compiled policy levee cannot vouch for ({why}); recompiling"
            ),
        }
        let compiled = engine.precompile_component(bytes)?;
        let outcome = match store(&path, &compiled, &secret) {
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

/// The tag over an artifact, fed its file name: its contents follow.
fn tag(secret: &[u8; KEY_BYTES], path: &Path) -> Hmac<Sha256> {
    let mut mac = <Hmac<Sha256> as Mac>::new_from_slice(secret).expect("HMAC takes any key");
    let name = path
        .file_name()
        .map(|n| n.as_encoded_bytes())
        .unwrap_or_default();
    mac.update(&(name.len() as u64).to_le_bytes());
    mac.update(name);
    mac
}

/// The directory's key, made on first use: the directory is created
/// private, and both must be this user's and writable by no one else.
fn install_key(dir: &Path) -> Result<[u8; KEY_BYTES], String> {
    create_private_dir(dir).map_err(|e| format!("cannot create it: {e}"))?;
    let meta = std::fs::symlink_metadata(dir).map_err(|e| e.to_string())?;
    if !meta.is_dir() {
        return Err("it is not a directory (a symlink is not followed)".into());
    }
    private::check(&meta, private::euid(), "the directory")?;
    let path = dir.join(KEY_FILE);
    let mut secret = [0u8; KEY_BYTES];
    if std::fs::symlink_metadata(&path).is_err() {
        // Written whole under a fresh name, then linked into place: a link
        // never replaces a key another process put there first, and no
        // one ever reads a key half written.
        getrandom::getrandom(&mut secret).map_err(|e| format!("no randomness: {e}"))?;
        let tmp = dir.join(temporary_name());
        let linked = private::create_new(&tmp)
            .and_then(|mut file| file.write_all(&secret).and_then(|()| file.sync_all()))
            .and_then(|()| std::fs::hard_link(&tmp, &path));
        let _ = std::fs::remove_file(&tmp);
        match linked {
            Ok(()) => return Ok(secret),
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {}
            Err(e) => return Err(format!("cannot create its key: {e}")),
        }
    }
    let mut file = private::open(&path).map_err(|e| format!("cannot open its key: {e}"))?;
    let meta = file.metadata().map_err(|e| e.to_string())?;
    private::check(&meta, private::euid(), "its key")?;
    if meta.permissions_mode() & 0o077 != 0 || meta.len() != KEY_BYTES as u64 {
        return Err("its key is readable by others or not 32 bytes".into());
    }
    file.read_exact(&mut secret)
        .map_err(|e| format!("cannot read its key: {e}"))?;
    Ok(secret)
}

/// The tag's file, beside its artifact.
fn tag_path(path: &Path) -> PathBuf {
    path.with_extension("cwasm.tag")
}

/// Whether there is an artifact at `path` with a valid tag beside it; an
/// error says why a file there cannot be trusted. The artifact stays on
/// disk for wasmtime to map, as it was when checked: only this user can
/// replace it (see [`install_key`]).
fn verify(path: &Path, secret: &[u8; KEY_BYTES]) -> Result<bool, String> {
    let mut file = match private::open(path) {
        Ok(f) => f,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(false),
        Err(e) => return Err(format!("cannot open it: {e}")),
    };
    let meta = file.metadata().map_err(|e| e.to_string())?;
    if !meta.is_file() {
        return Err("not a regular file".into());
    }
    private::check(&meta, private::euid(), "the file")?;
    if meta.len() > MAX_ARTIFACT {
        return Err(format!("{} bytes", meta.len()));
    }
    let mut expected = [0u8; TAG];
    let mut tag_file =
        private::open(&tag_path(path)).map_err(|e| format!("no integrity tag: {e}"))?;
    let tag_meta = tag_file.metadata().map_err(|e| e.to_string())?;
    private::check(&tag_meta, private::euid(), "its tag")?;
    tag_file
        .read_exact(&mut expected)
        .map_err(|e| format!("cannot read its tag: {e}"))?;
    let mut mac = tag(secret, path);
    let mut chunk = vec![0u8; 64 << 10];
    loop {
        let n = file.read(&mut chunk).map_err(|e| e.to_string())?;
        if n == 0 {
            break;
        }
        mac.update(&chunk[..n]);
    }
    mac.verify_slice(&expected)
        .map_err(|_| "its integrity tag does not match".to_owned())?;
    Ok(true)
}

/// Writes the artifact, then its tag, each atomically: a reader sees a
/// whole file or none (and a tag from before is refused, not trusted).
fn store(path: &Path, compiled: &[u8], secret: &[u8; KEY_BYTES]) -> std::io::Result<()> {
    let mut mac = tag(secret, path);
    mac.update(compiled);
    replace(path, compiled)?;
    replace(&tag_path(path), &mac.finalize().into_bytes())
}

/// Writes `bytes` to `path` through a fresh temporary file and a rename.
fn replace(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    let dir = path.parent().expect("cache paths have a parent");
    let tmp = dir.join(temporary_name());
    let written = private::create_new(&tmp).and_then(|mut file| {
        file.write_all(bytes)?;
        file.sync_all()
    });
    match written.and_then(|()| std::fs::rename(&tmp, path)) {
        Ok(()) => Ok(()),
        Err(e) => {
            let _ = std::fs::remove_file(&tmp);
            Err(e)
        }
    }
}

/// A name no other writer picks: random, so that processes with the same
/// pid (one per container) never share one.
fn temporary_name() -> String {
    let mut nonce = [0u8; 12];
    if getrandom::getrandom(&mut nonce).is_err() {
        // Without randomness, the time and pid still differ between tries;
        // `create_new` refuses a name that exists.
        let t = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos());
        nonce[..8].copy_from_slice(&(t as u64).to_le_bytes());
    }
    let hex: String = nonce.iter().map(|b| format!("{b:02x}")).collect();
    format!(".{}.{hex}.tmp", std::process::id())
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

/// Ownership and modes, on unix; elsewhere only what the platform has.
trait PermissionsMode {
    fn permissions_mode(&self) -> u32;
}

impl PermissionsMode for std::fs::Metadata {
    #[cfg(unix)]
    fn permissions_mode(&self) -> u32 {
        std::os::unix::fs::PermissionsExt::mode(&self.permissions())
    }
    #[cfg(not(unix))]
    fn permissions_mode(&self) -> u32 {
        0o600
    }
}

#[cfg(unix)]
mod private {
    use super::PermissionsMode;
    use std::os::unix::fs::{MetadataExt, OpenOptionsExt};
    use std::path::Path;

    /// This process's effective user.
    pub fn euid() -> u32 {
        // SAFETY: geteuid has no preconditions and cannot fail.
        #[allow(unsafe_code)]
        unsafe {
            libc::geteuid()
        }
    }

    /// Whether `meta` is `euid`'s and writable by no one else.
    pub fn check(meta: &std::fs::Metadata, euid: u32, what: &str) -> Result<(), String> {
        if meta.uid() != euid {
            return Err(format!(
                "{what} belongs to uid {}, not to levee's uid {euid}",
                meta.uid()
            ));
        }
        if meta.permissions_mode() & 0o022 != 0 {
            return Err(format!(
                "{what} is writable by its group or by others (mode {:o})",
                meta.permissions_mode() & 0o777
            ));
        }
        Ok(())
    }

    /// A new file, 0600, never an existing one or a symlink.
    pub fn create_new(path: &Path) -> std::io::Result<std::fs::File> {
        std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(path)
    }

    /// Opens for reading without following a symlink.
    pub fn open(path: &Path) -> std::io::Result<std::fs::File> {
        std::fs::OpenOptions::new()
            .read(true)
            .custom_flags(libc::O_NOFOLLOW)
            .open(path)
    }
}

#[cfg(not(unix))]
mod private {
    use std::path::Path;

    pub fn euid() -> u32 {
        0
    }

    pub fn check(_: &std::fs::Metadata, _: u32, _: &str) -> Result<(), String> {
        Ok(())
    }

    pub fn create_new(path: &Path) -> std::io::Result<std::fs::File> {
        std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .open(path)
    }

    pub fn open(path: &Path) -> std::io::Result<std::fs::File> {
        std::fs::File::open(path)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const EMPTY_COMPONENT: &[u8] = b"\0asm\x0d\0\x01\0";
    /// Another component, which compiles to other code.
    const OTHER_COMPONENT: &[u8] = super::super::builtin::STANDARD;

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
    fn cache_dir_and_key_are_private() {
        let dir = tempfile::tempdir().unwrap();
        let cache = CompileCache::at(dir.path().join("c"));
        cache
            .load(&engine(wasmtime::OptLevel::Speed), EMPTY_COMPONENT)
            .unwrap();
        assert_eq!(mode(&dir.path().join("c")), 0o700);
        assert_eq!(mode(&dir.path().join("c").join(KEY_FILE)), 0o600);
    }

    #[cfg(unix)]
    fn mode(path: &Path) -> u32 {
        std::fs::metadata(path).unwrap().permissions_mode() & 0o777
    }

    #[cfg(unix)]
    fn chmod(path: &Path, mode: u32) {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode)).unwrap();
    }

    /// A cache that has stored `EMPTY_COMPONENT`, with its artifact's path.
    fn stored() -> (tempfile::TempDir, CompileCache, Engine, PathBuf) {
        let dir = tempfile::tempdir().unwrap();
        let cache = CompileCache::at(dir.path().join("c"));
        let engine = engine(wasmtime::OptLevel::Speed);
        let (_, outcome) = cache.load(&engine, EMPTY_COMPONENT).unwrap();
        assert_eq!(outcome, CacheOutcome::Stored);
        let path = cache.path_for(&engine, EMPTY_COMPONENT).unwrap();
        (dir, cache, engine, path)
    }

    #[test]
    fn a_planted_artifact_without_levees_tag_is_refused_and_replaced() {
        let (_dir, cache, engine, path) = stored();
        // Another component's real compiled code, under this name: the
        // tag beside it is the old one. wasmtime would load it.
        let planted = engine.precompile_component(OTHER_COMPONENT).unwrap();
        std::fs::write(&path, &planted).unwrap();
        let (_, outcome) = cache.load(&engine, EMPTY_COMPONENT).unwrap();
        assert_eq!(outcome, CacheOutcome::Stored, "refused, recompiled");
        assert_ne!(std::fs::read(&path).unwrap(), planted, "and replaced");
        let (_, outcome) = cache.load(&engine, EMPTY_COMPONENT).unwrap();
        assert_eq!(outcome, CacheOutcome::Hit);
    }

    #[test]
    fn another_components_artifact_under_this_name_is_refused() {
        let (_dir, cache, engine, path) = stored();
        let other = OTHER_COMPONENT;
        let (_, outcome) = cache.load(&engine, other).unwrap();
        assert_eq!(outcome, CacheOutcome::Stored);
        let other_path = cache.path_for(&engine, other).unwrap();
        assert_ne!(other_path, path);
        std::fs::copy(&path, &other_path).unwrap();
        std::fs::copy(tag_path(&path), tag_path(&other_path)).unwrap();
        let (_, outcome) = cache.load(&engine, other).unwrap();
        assert_eq!(
            outcome,
            CacheOutcome::Stored,
            "a tag is for one name: a renamed artifact is refused"
        );
    }

    #[cfg(unix)]
    #[test]
    fn a_directory_others_can_write_turns_the_cache_off() {
        let dir = tempfile::tempdir().unwrap();
        let shared = dir.path().join("c");
        std::fs::create_dir(&shared).unwrap();
        chmod(&shared, 0o777);
        let cache = CompileCache::at(&shared);
        let engine = engine(wasmtime::OptLevel::Speed);
        let (_, outcome) = cache.load(&engine, EMPTY_COMPONENT).unwrap();
        assert_eq!(outcome, CacheOutcome::Compiled);
        assert_eq!(
            std::fs::read_dir(&shared).unwrap().count(),
            0,
            "nothing written"
        );
        let why = install_key(&shared).unwrap_err();
        assert!(
            why.contains("writable by its group or by others (mode 777)"),
            "{why}"
        );
    }

    #[cfg(unix)]
    #[test]
    fn a_key_or_artifact_others_could_change_is_not_trusted() {
        let (dir, cache, engine, path) = stored();
        chmod(&path, 0o666);
        let (_, outcome) = cache.load(&engine, EMPTY_COMPONENT).unwrap();
        assert_eq!(outcome, CacheOutcome::Stored, "refused and replaced");
        assert_eq!(mode(&path), 0o600);
        let key = dir.path().join("c").join(KEY_FILE);
        chmod(&key, 0o644);
        let (_, outcome) = cache.load(&engine, EMPTY_COMPONENT).unwrap();
        assert_eq!(
            outcome,
            CacheOutcome::Compiled,
            "a readable key is no secret"
        );
    }

    #[cfg(unix)]
    #[test]
    fn a_file_of_another_user_is_not_trusted() {
        let dir = tempfile::tempdir().unwrap();
        let meta = std::fs::metadata(dir.path()).unwrap();
        let me = private::euid();
        assert_eq!(private::check(&meta, me, "the directory"), Ok(()));
        let why = private::check(&meta, me + 1, "the directory").unwrap_err();
        assert_eq!(
            why,
            format!(
                "the directory belongs to uid {me}, not to levee's uid {}",
                me + 1
            )
        );
    }

    #[test]
    fn processes_starting_together_agree_on_one_key() {
        let dir = tempfile::tempdir().unwrap();
        let shared = dir.path().join("c");
        let keys: Vec<_> = std::thread::scope(|s| {
            let racers: Vec<_> = (0..8).map(|_| s.spawn(|| install_key(&shared))).collect();
            racers.into_iter().map(|r| r.join().unwrap()).collect()
        });
        let first = keys[0].clone().expect("a key");
        for key in keys {
            assert_eq!(key, Ok(first), "every racer reads the one key written");
        }
        let left: Vec<_> = std::fs::read_dir(&shared).unwrap().collect();
        assert_eq!(left.len(), 1, "no temporary file is left: {left:?}");
    }

    #[test]
    fn temporary_names_are_never_shared() {
        let (a, b) = (temporary_name(), temporary_name());
        assert_ne!(a, b);
        assert!(a.starts_with(&format!(".{}.", std::process::id())), "{a}");
    }
}
