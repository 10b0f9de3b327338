//! Model classes: the API keeps a separate rate limit for each class of
//! model (Opus, Sonnet, Haiku), so levee keeps its buckets, learned
//! limits and 429 closures per (upstream, class).
//!
//! A class names the substrings a model id may contain; the first class
//! whose substring the id contains is the request's. A request with no
//! model, or one that no class names, falls in the catch-all, `other`.
//!
//! `count_tokens` and the batches endpoints have limits of their own at
//! the API, whatever the model: their requests are in the classes
//! `count_tokens` and `batches`, always there after the configured ones.

use levee_policy_core::Endpoint;
use std::sync::Arc;

/// The most classes there may be, the built-in ones included: the class is
/// a metric label, so it stays few.
pub const MAX_CLASSES: usize = 16;

/// The catch-all class's name.
pub const OTHER: &str = "other";

/// The built-in classes of the endpoints the API limits apart, then the
/// catch-all: the last classes, in this order.
pub const BUILT_IN: [&str; 3] = ["count_tokens", "batches", OTHER];

/// A class, by its index in [`Classes`].
pub type Class = u8;

/// The classes, in the order they are tried.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Classes {
    /// Names, the catch-all last.
    names: Vec<Arc<str>>,
    /// (substring, class), in order.
    rules: Vec<(Box<str>, Class)>,
    /// One bit per class whose input-token limits count cache reads too.
    cache_reads_count: u16,
}

impl Default for Classes {
    /// Today's model ids: `claude-opus-4-…`, `claude-3-5-sonnet-…`,
    /// `us.anthropic.claude-haiku-…` and so on.
    fn default() -> Classes {
        Classes::new(&[
            ("opus", &["opus"]),
            ("sonnet", &["sonnet"]),
            ("haiku", &["haiku"]),
        ])
        .expect("the default classes are valid")
    }
}

impl Classes {
    /// Classes of `(name, substrings)`, tried in order, and the catch-all.
    /// The error says what is wrong: an empty or repeated name, the
    /// catch-all's name, an empty substring, or too many classes.
    pub fn new(classes: &[(&str, &[&str])]) -> Result<Classes, String> {
        if classes.len() > MAX_CLASSES - BUILT_IN.len() {
            return Err(format!(
                "at most {} classes besides the built-in {BUILT_IN:?}, got {}",
                MAX_CLASSES - BUILT_IN.len(),
                classes.len()
            ));
        }
        let mut names: Vec<Arc<str>> = Vec::with_capacity(classes.len() + 1);
        let mut rules = Vec::new();
        for (i, (name, contains)) in classes.iter().enumerate() {
            if !valid_name(name) {
                return Err(format!(
                    "class names are 1 to 32 of a-z, 0-9, _ and -, got {name:?}"
                ));
            }
            if BUILT_IN.contains(name) || names.iter().any(|n| &**n == *name) {
                return Err(format!(
                    "class {name:?} is named twice (or is a built-in one, {BUILT_IN:?})"
                ));
            }
            if contains.is_empty() || contains.iter().any(|s| s.is_empty()) {
                return Err(format!(
                    "class {name:?} needs one or more non-empty substrings of a model id"
                ));
            }
            names.push(Arc::from(*name));
            let class = Class::try_from(i).expect("fewer than MAX_CLASSES");
            rules.extend(contains.iter().map(|s| (Box::from(*s), class)));
        }
        names.extend(BUILT_IN.map(Arc::from));
        Ok(Classes {
            names,
            rules,
            cache_reads_count: 0,
        })
    }

    /// The class of a request to `endpoint` for `model`: the endpoint's
    /// own for `count_tokens` and batches, else the model's.
    pub fn of_request(&self, endpoint: Endpoint, model: Option<&str>) -> Class {
        let built_in = |i: usize| (self.names.len() - BUILT_IN.len() + i) as Class;
        match endpoint {
            Endpoint::CountTokens => built_in(0),
            Endpoint::Batches => built_in(1),
            _ => self.of(model),
        }
    }

    /// The class of a request for `model`.
    pub fn of(&self, model: Option<&str>) -> Class {
        let other = self.other();
        let Some(model) = model else { return other };
        self.rules
            .iter()
            .find(|(needle, _)| model.contains(&**needle))
            .map_or(other, |&(_, class)| class)
    }

    /// The catch-all.
    pub fn other(&self) -> Class {
        (self.names.len() - 1) as Class
    }

    /// How many classes there are, the catch-all included.
    pub fn len(&self) -> usize {
        self.names.len()
    }

    /// Never: the catch-all is always there.
    pub fn is_empty(&self) -> bool {
        false
    }

    /// The class's name; the catch-all's for an unknown index.
    pub fn name(&self, class: Class) -> &Arc<str> {
        self.names
            .get(usize::from(class))
            .unwrap_or_else(|| self.names.last().expect("the catch-all"))
    }

    /// The classes whose input-token limits count cache reads as well:
    /// the API's rule for its older models (Claude 3 Haiku, 3.5 Haiku).
    /// Current models' limits do not count them, which is the default.
    pub fn with_cache_reads_counted(mut self, classes: impl IntoIterator<Item = Class>) -> Self {
        for class in classes {
            self.cache_reads_count |= 1 << class;
        }
        self
    }

    /// Whether `class`'s input-token limits count cache reads.
    pub fn cache_reads_count(&self, class: Class) -> bool {
        self.cache_reads_count & (1 << class) != 0
    }

    /// The class named `name`.
    pub fn by_name(&self, name: &str) -> Option<Class> {
        self.names
            .iter()
            .position(|n| &**n == name)
            .map(|i| i as Class)
    }

    /// Every class's name, in index order.
    pub fn names(&self) -> impl Iterator<Item = &Arc<str>> {
        self.names.iter()
    }
}

fn valid_name(name: &str) -> bool {
    (1..=32).contains(&name.len())
        && name
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_' || b == b'-')
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_the_classes_named_count_cache_reads() {
        let classes = Classes::new(&[("haiku-3", &["claude-3-haiku"]), ("sonnet", &["sonnet"])])
            .unwrap()
            .with_cache_reads_counted([0]);
        let old = classes.of(Some("claude-3-haiku-20240307"));
        assert!(classes.cache_reads_count(old));
        assert!(!classes.cache_reads_count(classes.of(Some("claude-sonnet-4-5"))));
        assert!(!classes.cache_reads_count(classes.other()));
        assert!(!Classes::default().cache_reads_count(0));
    }

    #[test]
    fn todays_model_ids_fall_in_their_class() {
        let c = Classes::default();
        let name = |m: Option<&str>| c.name(c.of(m)).to_string();
        for (model, class) in [
            ("claude-opus-4-1-20250805", "opus"),
            ("claude-3-opus-20240229", "opus"),
            ("claude-sonnet-4-5", "sonnet"),
            ("claude-3-7-sonnet-latest", "sonnet"),
            ("us.anthropic.claude-sonnet-4-20250514-v1:0", "sonnet"),
            ("claude-haiku-4-5", "haiku"),
            ("claude-3-5-haiku-20241022", "haiku"),
            ("gpt-4o", "other"),
            ("", "other"),
        ] {
            assert_eq!(name(Some(model)), class, "{model}");
        }
        assert_eq!(name(None), "other");
        assert_eq!(c.len(), 6);
    }

    #[test]
    fn count_tokens_and_batches_have_classes_of_their_own() {
        let c = Classes::default();
        let name = |e, m| c.name(c.of_request(e, m)).to_string();
        let sonnet = Some("claude-sonnet-4-5");
        assert_eq!(name(Endpoint::CountTokens, sonnet), "count_tokens");
        assert_eq!(name(Endpoint::Batches, sonnet), "batches");
        assert_eq!(name(Endpoint::Messages, sonnet), "sonnet");
        assert_eq!(name(Endpoint::Other, None), "other");
    }

    #[test]
    fn the_first_class_that_matches_wins() {
        let c = Classes::new(&[("fast", &["haiku", "mini"]), ("big", &["claude"])]).unwrap();
        assert_eq!(c.name(c.of(Some("claude-haiku-4-5"))).as_ref(), "fast");
        assert_eq!(c.name(c.of(Some("claude-opus-4"))).as_ref(), "big");
        assert_eq!(c.name(c.of(Some("gpt-4o-mini"))).as_ref(), "fast");
        assert_eq!(c.by_name("big"), Some(1));
        assert_eq!(c.by_name("count_tokens"), Some(2));
        assert_eq!(c.by_name("other"), Some(4));
        assert_eq!(c.by_name("opus"), None);
    }

    #[test]
    fn bad_classes_say_what_is_wrong() {
        for (classes, says) in [
            (vec![("Opus", &["opus"][..])], "class names"),
            (vec![("other", &["x"][..])], "named twice"),
            (vec![("batches", &["x"][..])], "built-in"),
            (vec![("a", &["x"][..]), ("a", &["y"][..])], "named twice"),
            (vec![("a", &[][..])], "non-empty substrings"),
            (vec![("a", &[""][..])], "non-empty substrings"),
        ] {
            let err = Classes::new(&classes).unwrap_err();
            assert!(err.contains(says), "{err}");
        }
        let many: Vec<String> = (0..MAX_CLASSES).map(|i| format!("c{i}")).collect();
        let many: Vec<(&str, &[&str])> = many.iter().map(|n| (n.as_str(), &["x"][..])).collect();
        assert!(Classes::new(&many[2..]).unwrap_err().contains("at most 13"));
        assert!(Classes::new(&many[3..]).is_ok());
    }
}
