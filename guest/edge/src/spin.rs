//! Spin's side: settings from Spin variables, state in Spin key-value.

use crate::config::{ConfigError, Source};
use crate::state::{Local, Store};
use spin_sdk::key_value;

/// Spin variables; `upstreams` is the variable `upstreams`.
pub struct Variables;

impl Source for Variables {
    fn get(&self, name: &str) -> Result<Option<String>, ConfigError> {
        match spin_sdk::variables::get(name) {
            Ok(v) => Ok(Some(v).filter(|v| !v.trim().is_empty())),
            Err(spin_sdk::variables::Error::Undefined(_)) => Ok(None),
            Err(e) => Err(ConfigError {
                key: name.to_owned(),
                message: format!("cannot be read: {e}"),
            }),
        }
    }
    fn spell(&self, name: &str) -> String {
        name.to_owned()
    }
}

/// A Spin key-value store, numbers as decimal text.
struct Kv(key_value::Store);

impl Store for Kv {
    fn get(&self, key: &str) -> Option<u64> {
        let bytes = self.0.get(key).ok()??;
        std::str::from_utf8(&bytes).ok()?.parse().ok()
    }
    fn set(&self, key: &str, value: u64) {
        if let Err(e) = self.0.set(key, value.to_string().as_bytes()) {
            log_line!("levee edge: key-value write failed for {key}: {e}");
        }
    }
    fn delete(&self, key: &str) {
        let _ = self.0.delete(key);
    }
    fn shared(&self) -> bool {
        true
    }
}

/// Opens the store `label`; without it, runs on per-instance state and
/// says so.
pub fn open_store(label: &str) -> Box<dyn Store> {
    match key_value::Store::open(label) {
        Ok(store) => Box::new(Kv(store)),
        Err(e) => {
            log_line!(
                "levee edge: key-value store `{label}` is not available ({e}); limiter and circuit state are per instance, not shared"
            );
            Box::<Local>::default()
        }
    }
}
