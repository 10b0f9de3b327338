//! The contract's values as JSON: one canonical form, shared by the
//! decision vectors (`tests/vectors/`), replay traces, and the hosts in
//! other languages.
//!
//! - A record is an object keyed by its WIT field names (`max-tokens`).
//!   An `option` is `null` or its value; a missing `option` field reads as
//!   `null`, any other missing field is an error, and so is an unknown one.
//! - An enum is its WIT case name (`"count-tokens"`).
//! - A variant is `{"tag": CASE}` or `{"tag": CASE, "val": PAYLOAD}`.
//! - A `u64` is a number up to 2^53 − 1 and a decimal string beyond, so
//!   that JavaScript reads it without loss; either form is read.
//!
//! Errors name the dotted path of the value at fault.

use serde_json::{Map, Value};
use std::fmt;

mod impls;

/// The largest integer every JSON reader holds exactly (2^53 − 1).
pub const MAX_EXACT: u64 = (1 << 53) - 1;

/// A value that has a canonical JSON form.
pub trait Wire: Sized {
    /// The canonical JSON form.
    fn to_json(&self) -> Value;
    /// Reads the canonical form (u64s also as any exact number or string).
    fn from_json(v: &Value) -> Result<Self, WireError>;
    /// The value of a record field that is absent; `None` means required.
    fn absent() -> Option<Self> {
        None
    }
}

/// A value that could not be read, and where it sits.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct WireError {
    path: Vec<String>,
    /// What is wrong with it.
    pub message: String,
}

impl WireError {
    /// An error at the value itself.
    pub fn new(message: impl Into<String>) -> WireError {
        WireError {
            path: Vec::new(),
            message: message.into(),
        }
    }

    /// The same error, one level further out (`key` contains the value).
    pub fn within(mut self, key: impl Into<String>) -> WireError {
        self.path.push(key.into());
        self
    }

    /// The dotted path, outermost first (`view.upstreams[1].id`); empty
    /// at the top level.
    pub fn path(&self) -> String {
        let mut out = String::new();
        for part in self.path.iter().rev() {
            if !out.is_empty() && !part.starts_with('[') {
                out.push('.');
            }
            out.push_str(part);
        }
        out
    }
}

impl fmt::Display for WireError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.path() {
            p if p.is_empty() => f.write_str(&self.message),
            p => write!(f, "`{p}`: {}", self.message),
        }
    }
}

impl std::error::Error for WireError {}

/// A short rendering of `v` for messages.
fn shown(v: &Value) -> String {
    let s = v.to_string();
    if s.len() > 40 {
        format!("{}...", &s[..s.floor_char_boundary(37)])
    } else {
        s
    }
}

/// Reads field `key` of a record object.
pub fn field<T: Wire>(m: &Map<String, Value>, key: &str) -> Result<T, WireError> {
    match m.get(key) {
        Some(v) => T::from_json(v).map_err(|e| e.within(key)),
        None => T::absent().ok_or_else(|| WireError::new("is missing").within(key)),
    }
}

/// `v` as an object with only the `known` keys.
pub fn object<'a>(v: &'a Value, known: &[&str]) -> Result<&'a Map<String, Value>, WireError> {
    let m = v
        .as_object()
        .ok_or_else(|| WireError::new(format!("expected an object, got {}", shown(v))))?;
    if let Some(k) = m.keys().find(|k| !known.contains(&k.as_str())) {
        return Err(WireError::new(format!(
            "unknown field; expected one of: {}",
            known.join(", ")
        ))
        .within(k.as_str()));
    }
    Ok(m)
}

/// `v` as a variant: its tag and payload.
pub fn variant<'a>(
    v: &'a Value,
    cases: &[&str],
) -> Result<(&'a str, Option<&'a Value>), WireError> {
    let m = object(v, &["tag", "val"])?;
    let tag = m
        .get("tag")
        .and_then(Value::as_str)
        .ok_or_else(|| WireError::new(format!("expected a `tag`, one of: {}", cases.join(", "))))?;
    if !cases.contains(&tag) {
        return Err(WireError::new(format!(
            "unknown case `{tag}`; expected one of: {}",
            cases.join(", ")
        ))
        .within("tag"));
    }
    Ok((tag, m.get("val")))
}

/// The payload of a variant case that has one.
pub fn payload<T: Wire>(val: Option<&Value>, tag: &str) -> Result<T, WireError> {
    let v = val.ok_or_else(|| WireError::new(format!("case `{tag}` needs a `val`")))?;
    T::from_json(v).map_err(|e| e.within("val"))
}

/// `{"tag": tag, "val": val}`, or `{"tag": tag}`.
pub fn tagged(tag: &str, val: Option<Value>) -> Value {
    let mut m = Map::new();
    m.insert("tag".into(), Value::String(tag.into()));
    if let Some(v) = val {
        m.insert("val".into(), v);
    }
    Value::Object(m)
}

impl Wire for u64 {
    fn to_json(&self) -> Value {
        if *self <= MAX_EXACT {
            Value::from(*self)
        } else {
            Value::String(self.to_string())
        }
    }
    fn from_json(v: &Value) -> Result<Self, WireError> {
        let bad = || {
            WireError::new(format!(
                "expected an integer from 0 to 2^64-1, got {}",
                shown(v)
            ))
        };
        match v {
            Value::Number(n) => n.as_u64().ok_or_else(bad),
            Value::String(s) if !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit()) => {
                s.parse().map_err(|_| bad())
            }
            _ => Err(bad()),
        }
    }
}

macro_rules! small_uint {
    ($($t:ty),*) => {$(
        impl Wire for $t {
            fn to_json(&self) -> Value {
                Value::from(*self)
            }
            fn from_json(v: &Value) -> Result<Self, WireError> {
                v.as_u64().and_then(|n| <$t>::try_from(n).ok()).ok_or_else(|| {
                    WireError::new(format!(
                        "expected an integer from 0 to {}, got {}",
                        <$t>::MAX,
                        shown(v)
                    ))
                })
            }
        }
    )*};
}
small_uint!(u8, u16, u32);

impl Wire for bool {
    fn to_json(&self) -> Value {
        Value::Bool(*self)
    }
    fn from_json(v: &Value) -> Result<Self, WireError> {
        v.as_bool()
            .ok_or_else(|| WireError::new(format!("expected true or false, got {}", shown(v))))
    }
}

impl Wire for String {
    fn to_json(&self) -> Value {
        Value::String(self.clone())
    }
    fn from_json(v: &Value) -> Result<Self, WireError> {
        v.as_str()
            .map(str::to_owned)
            .ok_or_else(|| WireError::new(format!("expected a string, got {}", shown(v))))
    }
}

impl<T: Wire> Wire for Option<T> {
    fn to_json(&self) -> Value {
        self.as_ref().map_or(Value::Null, T::to_json)
    }
    fn from_json(v: &Value) -> Result<Self, WireError> {
        match v {
            Value::Null => Ok(None),
            v => T::from_json(v).map(Some),
        }
    }
    fn absent() -> Option<Self> {
        Some(None)
    }
}

impl<T: Wire> Wire for Vec<T> {
    fn to_json(&self) -> Value {
        Value::Array(self.iter().map(T::to_json).collect())
    }
    fn from_json(v: &Value) -> Result<Self, WireError> {
        let items = v
            .as_array()
            .ok_or_else(|| WireError::new(format!("expected an array, got {}", shown(v))))?;
        items
            .iter()
            .enumerate()
            .map(|(i, item)| T::from_json(item).map_err(|e| e.within(format!("[{i}]"))))
            .collect()
    }
}

#[cfg(test)]
mod tests;
