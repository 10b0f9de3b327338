//! Spin's `key-value` and `variables` interfaces (`fermyon:spin@2.0.0`, as
//! spin-sdk 5.2 imports them), served from memory.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex};
use wasmtime::component::{HasData, Resource, ResourceTable};

mod bindings {
    wasmtime::component::bindgen!({
        path: "wit",
        world: "host",
        imports: { default: trappable },
        with: { "fermyon:spin/key-value.store": super::OpenStore },
    });
}

use bindings::fermyon::spin::{key_value, variables};

/// Key-value stores by label, shared by every instance of a host, as Spin
/// shares a store between requests. Clones share the same stores.
#[derive(Clone, Debug, Default)]
pub struct KeyValue(Arc<Mutex<HashMap<String, Entries>>>);

/// One store's entries, by key.
pub type Entries = BTreeMap<String, Vec<u8>>;

impl KeyValue {
    /// Stores with these labels, empty.
    pub fn with_labels<'a>(labels: impl IntoIterator<Item = &'a str>) -> KeyValue {
        let kv = KeyValue::default();
        for label in labels {
            kv.0.lock()
                .unwrap()
                .insert(label.to_owned(), BTreeMap::new());
        }
        kv
    }

    /// A copy of store `label`'s contents (`None` if there is no such store).
    pub fn snapshot(&self, label: &str) -> Option<Entries> {
        self.0.lock().unwrap().get(label).cloned()
    }

    /// Sets `key` in store `label`, as another instance would; `false` if
    /// there is no such store.
    pub fn set(&self, label: &str, key: &str, value: &[u8]) -> bool {
        match self.0.lock().unwrap().get_mut(label) {
            Some(store) => {
                store.insert(key.to_owned(), value.to_vec());
                true
            }
            None => false,
        }
    }

    fn with<R>(
        &self,
        label: &str,
        f: impl FnOnce(&mut Entries) -> R,
    ) -> Result<R, key_value::Error> {
        let mut stores = self.0.lock().unwrap();
        let store = stores.get_mut(label).ok_or(key_value::Error::NoSuchStore)?;
        Ok(f(store))
    }
}

/// An opened store: the guest's `store` resource.
pub struct OpenStore {
    label: String,
}

/// What the Spin interfaces of one instance see.
pub struct Spin {
    /// The application's variables.
    pub variables: Arc<HashMap<String, String>>,
    /// The stores.
    pub kv: KeyValue,
}

/// What the Spin interfaces see of one instance: the application's Spin
/// state and the instance's resource table.
pub struct SpinCtx<'a> {
    /// The Spin state.
    pub spin: &'a Spin,
    /// The instance's resources.
    pub table: &'a mut ResourceTable,
}

/// Store data that can lend a [`SpinCtx`].
pub trait SpinView {
    /// The instance's Spin context.
    fn spin(&mut self) -> SpinCtx<'_>;
}

struct SpinData;

impl HasData for SpinData {
    type Data<'a> = SpinCtx<'a>;
}

/// Adds Spin's `key-value` and `variables` to `linker`.
pub fn add_to_linker<T: SpinView + Send + 'static>(
    linker: &mut wasmtime::component::Linker<T>,
) -> wasmtime::Result<()> {
    key_value::add_to_linker::<T, SpinData>(linker, T::spin)?;
    variables::add_to_linker::<T, SpinData>(linker, T::spin)?;
    Ok(())
}

type Kv<T> = wasmtime::Result<Result<T, key_value::Error>>;

impl key_value::Host for SpinCtx<'_> {}

impl key_value::HostStore for SpinCtx<'_> {
    fn open(&mut self, label: String) -> Kv<Resource<OpenStore>> {
        if self.spin.kv.snapshot(&label).is_none() {
            return Ok(Err(key_value::Error::NoSuchStore));
        }
        Ok(Ok(self.table.push(OpenStore { label })?))
    }

    fn get(&mut self, store: Resource<OpenStore>, key: String) -> Kv<Option<Vec<u8>>> {
        let label = &self.table.get(&store)?.label;
        Ok(self.spin.kv.with(label, |s| s.get(&key).cloned()))
    }

    fn set(&mut self, store: Resource<OpenStore>, key: String, value: Vec<u8>) -> Kv<()> {
        let label = &self.table.get(&store)?.label;
        Ok(self.spin.kv.with(label, |s| {
            s.insert(key, value);
        }))
    }

    fn delete(&mut self, store: Resource<OpenStore>, key: String) -> Kv<()> {
        let label = &self.table.get(&store)?.label;
        Ok(self.spin.kv.with(label, |s| {
            s.remove(&key);
        }))
    }

    fn exists(&mut self, store: Resource<OpenStore>, key: String) -> Kv<bool> {
        let label = &self.table.get(&store)?.label;
        Ok(self.spin.kv.with(label, |s| s.contains_key(&key)))
    }

    fn get_keys(&mut self, store: Resource<OpenStore>) -> Kv<Vec<String>> {
        let label = &self.table.get(&store)?.label;
        Ok(self.spin.kv.with(label, |s| s.keys().cloned().collect()))
    }

    fn drop(&mut self, store: Resource<OpenStore>) -> wasmtime::Result<()> {
        self.table.delete(store)?;
        Ok(())
    }
}

/// Spin's rule for variable names: lower-case letters, digits and `_`,
/// starting with a letter.
fn valid_name(name: &str) -> bool {
    name.starts_with(|c: char| c.is_ascii_lowercase())
        && name
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_')
}

impl variables::Host for SpinCtx<'_> {
    fn get(&mut self, name: String) -> wasmtime::Result<Result<String, variables::Error>> {
        if !valid_name(&name) {
            return Ok(Err(variables::Error::InvalidName(format!(
                "{name:?}: a variable name is lower-case letters, digits and `_`"
            ))));
        }
        Ok(match self.spin.variables.get(&name) {
            Some(v) => Ok(v.clone()),
            None => Err(variables::Error::Undefined(format!(
                "no variable for {name:?}"
            ))),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn variable_names_follow_spins_rule() {
        for good in ["upstreams", "kv_store", "a1"] {
            assert!(valid_name(good), "{good}");
        }
        for bad in ["", "Upstreams", "1a", "_a", "kv-store", "LEVEE_UPSTREAMS"] {
            assert!(!valid_name(bad), "{bad}");
        }
    }

    #[test]
    fn stores_are_shared_by_clones_and_unknown_labels_are_refused() {
        let kv = KeyValue::with_labels(["default"]);
        let other = kv.clone();
        assert!(other.set("default", "k", b"1"));
        assert!(!other.set("missing", "k", b"1"));
        assert_eq!(kv.snapshot("default").unwrap()["k"], b"1");
        assert!(kv.snapshot("missing").is_none());
        assert!(matches!(
            kv.with("missing", |_| ()),
            Err(key_value::Error::NoSuchStore)
        ));
    }
}
