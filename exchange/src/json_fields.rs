//! The top-level members of a JSON object, found without parsing the rest.
//!
//! levee reads a few fields from every request body (`model`, `stream`,
//! `max_tokens`) and from every response (`usage`). Deserializing the whole
//! document to find them tokenizes and UTF-8-checks every prompt and every
//! answer: about a third of levee's own work per request, measured. This
//! walks the top level only: strings are skipped eight bytes at a time (and
//! long ones with `memchr`), nested values by bracket depth, and just the
//! wanted values go to `serde_json`. A member known to come last is found
//! from the end ([`LastMember`]).
//!
//! Nested values are not validated beyond balanced brackets and closed
//! strings: the upstream judges the request, and these fields only inform
//! the policy and the limiter. A document whose top level is not a closed
//! object yields nothing.

/// The raw values of the top-level members named `names` in the object
/// `doc`; `None` when `doc` is not an object. For a name given twice the
/// last wins, as in the API's own parser. A key is matched by the text it
/// decodes to (`"max_\u0074okens"` is `max_tokens`), as the API reads it.
pub fn fields<'a, const N: usize>(
    doc: &'a [u8],
    names: [&str; N],
) -> Option<[Option<&'a [u8]>; N]> {
    let mut found = [None; N];
    members(doc, |key, escaped, value| {
        let at = if escaped {
            let decoded = decode_key(key);
            names.iter().position(|n| Some(*n) == decoded.as_deref())
        } else {
            names.iter().position(|n| n.as_bytes() == key)
        };
        if let Some(i) = at {
            found[i] = Some(value);
        }
    })?;
    Some(found)
}

/// The text of a key written with escapes (given without its quotes).
fn decode_key(key: &[u8]) -> Option<String> {
    let mut quoted = Vec::with_capacity(key.len() + 2);
    quoted.push(b'"');
    quoted.extend_from_slice(key);
    quoted.push(b'"');
    serde_json::from_slice(&quoted).ok()
}

/// Finds the last top-level member of an object when it has one name,
/// from the end of the document, without walking what precedes it. The API
/// ends its answers with `usage`; anywhere else, the caller walks the
/// object with [`fields`].
///
/// Why the end is enough: the match is the last `"name"` in the document
/// with a `,` or `{` before it and a `:` after. A quote after a comma or a
/// brace is unescaped, so it delimits a string; it cannot close one
/// (`name"` would then stand outside a string), so it opens the key
/// `"name"`. When that key's value is followed only by the document's
/// closing `}`, the member is the top-level object's last. On a document
/// that is not valid JSON this may find a value where [`fields`] finds
/// none.
pub struct LastMember {
    key: memchr::memmem::FinderRev<'static>,
}

/// How far from the end [`LastMember`] looks for the member's key.
const TAIL: usize = 1024;

impl LastMember {
    /// A finder for the member `name`: plain ASCII, without quotes or
    /// backslashes.
    pub fn new(name: &str) -> LastMember {
        LastMember {
            key: memchr::memmem::FinderRev::new(format!("\"{name}\"").as_bytes()).into_owned(),
        }
    }

    /// The raw value of `doc`'s last member when it has this finder's name.
    pub fn find<'a>(&self, doc: &'a [u8]) -> Option<&'a [u8]> {
        let close = doc.iter().rposition(|b| !is_ws(*b))?;
        if doc[close] != b'}' {
            return None;
        }
        // The last match may sit inside the member's own value (a `usage`
        // within `usage`): a few earlier ones are tried too. The search
        // spans the document's tail only, so that a member that is not
        // last costs little.
        let from = close.saturating_sub(TAIL);
        let mut before = close;
        for _ in 0..4 {
            let key = from + self.key.rfind(&doc[from..before])?;
            if let Some(value) = self.value_at(doc, key, close) {
                return Some(value);
            }
            before = key;
        }
        None
    }

    /// The value of the key at `key` when it is a member that ends at the
    /// object's `close`.
    fn value_at<'a>(&self, doc: &'a [u8], key: usize, close: usize) -> Option<&'a [u8]> {
        let before = doc[..key].iter().rposition(|b| !is_ws(*b))?;
        if !matches!(doc[before], b',' | b'{') {
            return None;
        }
        let colon = skip_ws(doc, key + self.key.needle().len());
        if doc.get(colon) != Some(&b':') {
            return None;
        }
        let start = skip_ws(doc, colon + 1);
        let end = value_end(doc, start)?;
        (skip_ws(doc, end) == close).then(|| &doc[start..end])
    }
}

/// Calls `visit(key, raw value)` for each top-level member of the object
/// `doc`, in order (a key as written between its quotes); `None` when
/// `doc` is not an object, possibly after some calls.
pub fn for_each<'a>(doc: &'a [u8], mut visit: impl FnMut(&'a [u8], &'a [u8])) -> Option<()> {
    members(doc, |key, _, value| visit(key, value))
}

/// As [`for_each`], also telling whether the key holds an escape (found
/// while its end is looked for, so it costs nothing more).
fn members<'a>(doc: &'a [u8], mut visit: impl FnMut(&'a [u8], bool, &'a [u8])) -> Option<()> {
    let mut at = skip_ws(doc, 0);
    if doc.get(at) != Some(&b'{') {
        return None;
    }
    at = skip_ws(doc, at + 1);
    if doc.get(at) == Some(&b'}') {
        return closed(doc, at + 1);
    }
    loop {
        if doc.get(at) != Some(&b'"') {
            return None;
        }
        let (key_end, escaped) = string_end_escaped(doc, at)?;
        let key = &doc[at + 1..key_end - 1];
        at = skip_ws(doc, key_end);
        if doc.get(at) != Some(&b':') {
            return None;
        }
        let start = skip_ws(doc, at + 1);
        let end = value_end(doc, start)?;
        visit(key, escaped, &doc[start..end]);
        at = skip_ws(doc, end);
        match doc.get(at) {
            Some(b',') => at = skip_ws(doc, at + 1),
            Some(b'}') => return closed(doc, at + 1),
            _ => return None,
        }
    }
}

/// Nothing but whitespace after `at`.
fn closed(doc: &[u8], at: usize) -> Option<()> {
    (skip_ws(doc, at) == doc.len()).then_some(())
}

fn skip_ws(doc: &[u8], mut at: usize) -> usize {
    while doc.get(at).is_some_and(|b| is_ws(*b)) {
        at += 1;
    }
    at
}

fn is_ws(b: u8) -> bool {
    matches!(b, b' ' | b'\t' | b'\n' | b'\r')
}

/// Just past the closing quote of the string that opens at `at`.
fn string_end(doc: &[u8], at: usize) -> Option<usize> {
    string_end_escaped(doc, at).map(|(end, _)| end)
}

/// Just past the closing quote of the string that opens at `at`, and
/// whether the string holds an escape.
fn string_end_escaped(doc: &[u8], at: usize) -> Option<(usize, bool)> {
    let mut i = at + 1;
    let mut escaped = false;
    loop {
        i += quote_or_backslash(doc.get(i..)?)?;
        if doc[i] == b'"' {
            return Some((i + 1, escaped));
        }
        // An escape: whatever follows the backslash is not a closing quote.
        escaped = true;
        i += 2;
    }
}

/// How far a string is searched eight bytes at a time before `memchr2`
/// takes over: keys and short values end before it has set up.
const SHORT: usize = 64;

/// The first `"` or `\\` in `s`.
fn quote_or_backslash(s: &[u8]) -> Option<usize> {
    const ONES: u64 = u64::from_ne_bytes([1; 8]);
    let zero_bytes = |v: u64| v.wrapping_sub(ONES) & !v & (ONES << 7);
    let near = s.len().min(SHORT);
    let mut i = 0;
    while i + 8 <= near {
        let word = u64::from_le_bytes(s[i..i + 8].try_into().expect("eight bytes"));
        // The lowest flag is exact: a false one needs a true zero below it.
        let hits = zero_bytes(word ^ (ONES * u64::from(b'"')))
            | zero_bytes(word ^ (ONES * u64::from(b'\\')));
        if hits != 0 {
            return Some(i + (hits.trailing_zeros() / 8) as usize);
        }
        i += 8;
    }
    let found = if near < s.len() {
        memchr::memchr2(b'"', b'\\', &s[i..])
    } else {
        s[i..].iter().position(|&b| b == b'"' || b == b'\\')
    };
    found.map(|at| i + at)
}

/// Just past the value that starts at `at`.
fn value_end(doc: &[u8], at: usize) -> Option<usize> {
    match *doc.get(at)? {
        b'"' => string_end(doc, at),
        b'{' | b'[' => {
            let mut depth = 0usize;
            let mut i = at;
            loop {
                i += doc
                    .get(i..)?
                    .iter()
                    .position(|&b| BRACKET_OR_QUOTE[usize::from(b)])?;
                match doc[i] {
                    b'"' => {
                        i = string_end(doc, i)?;
                        continue;
                    }
                    b'{' | b'[' => depth += 1,
                    _ => {
                        depth -= 1;
                        if depth == 0 {
                            return Some(i + 1);
                        }
                    }
                }
                i += 1;
            }
        }
        // A number, true, false or null: up to the next delimiter.
        _ => {
            let len = doc[at..]
                .iter()
                .position(|b| matches!(b, b',' | b'}' | b']' | b' ' | b'\t' | b'\n' | b'\r'))
                .unwrap_or(doc.len() - at);
            (len > 0).then_some(at + len)
        }
    }
}

/// The bytes a walk through a nested value stops at.
static BRACKET_OR_QUOTE: [bool; 256] = {
    let mut table = [false; 256];
    let mut i = 0;
    while i < 5 {
        table[b"\"{}[]"[i] as usize] = true;
        i += 1;
    }
    table
};

#[cfg(test)]
mod tests;
