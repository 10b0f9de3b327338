//! The policy components embedded in the binary, so levee runs with no
//! files at all. `build.rs` compiles them from `guest/`.

/// The default policy.
pub const STANDARD: &[u8] = include_bytes!(concat!(env!("OUT_DIR"), "/standard.wasm"));
/// The interactive policy.
pub const INTERACTIVE: &[u8] = include_bytes!(concat!(env!("OUT_DIR"), "/interactive.wasm"));

/// Every built-in, by name.
pub const ALL: [(&str, &[u8]); 2] = [("standard", STANDARD), ("interactive", INTERACTIVE)];

/// A built-in by name (without the `builtin:` prefix).
pub fn lookup(name: &str) -> Option<(&'static str, &'static [u8])> {
    ALL.iter().find(|(n, _)| *n == name).copied()
}
