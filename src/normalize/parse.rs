//! Parsing a record once into the `Value` that recognition, routing and normalization share.
//!
//! A record reaches this point as syntactically valid JSON (the decoder split it with
//! `RawValue`, which checks syntax only). Three kinds of valid JSON do not fit a `Value`:
//! - a lone UTF-16 surrogate escape (`"\ud800"`), which no Rust string can hold. Real logs carry
//!   them (truncated UTF-16 text). [`parse_record`] replaces each unpaired surrogate escape with
//!   `\ufffd` (U+FFFD, the Unicode replacement character) and parses again: the ECS document
//!   then holds U+FFFD where the record had the broken escape, `event.original` and `raw`
//!   destinations keep the original bytes, and [`ParsedRecord::repaired`] says it happened (the
//!   collector counts it). The second parse happens only for such records.
//! - a number beyond `f64` (`1e400`): [`RecordError::Unparsable`]. serde_json's
//!   `arbitrary_precision` would accept it, but it changes every number of every crate in the
//!   process (Kubernetes types included) into a string-backed one; not worth it for a case
//!   that is, in practice, broken input.
//! - nesting deeper than [`MAX_DEPTH`]: [`RecordError::TooDeep`]. The limit is serde_json's
//!   recursion guard, kept because lifting it lets one record overflow the stack.
//!
//! The collector dead-letters records it cannot parse for `ecs` destinations, with the reason,
//! and still delivers them to `raw` ones.

use serde::Deserialize;
use serde_json::Value;

/// Deepest nesting of objects and arrays a record may have to be normalized (serde_json's
/// recursion limit: 128 nested containers fail).
pub const MAX_DEPTH: usize = 127;

/// Deepest nesting [`parse_document`] reads: an ECS document nests a record at most a few levels
/// further down than the record itself.
pub const MAX_DOCUMENT_DEPTH: usize = MAX_DEPTH + 16;

/// Why a record cannot be normalized (it may still be delivered to `raw` destinations).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RecordError {
    /// Objects and arrays nest deeper than [`MAX_DEPTH`] levels.
    #[error("record nests objects and arrays deeper than {MAX_DEPTH} levels")]
    TooDeep,
    /// Valid JSON that does not fit a JSON value (e.g. a number beyond `f64`).
    #[error("record cannot be parsed for normalization: {0}")]
    Unparsable(String),
    /// The record is not a JSON object.
    #[error("record is not a JSON object")]
    NotAnObject,
}

/// A record parsed for normalization.
#[derive(Debug, Clone, PartialEq)]
pub struct ParsedRecord {
    /// The record.
    pub value: Value,
    /// Unpaired surrogate escapes were replaced with U+FFFD to parse it.
    pub repaired: bool,
}

/// Parse a record once (see the module documentation for what does not parse and why).
pub fn parse_record(text: &str) -> Result<ParsedRecord, RecordError> {
    let (value, repaired) = match serde_json::from_str::<Value>(text) {
        Ok(v) => (v, false),
        Err(first) => match replace_lone_surrogates(text) {
            Some(fixed) => match serde_json::from_str::<Value>(&fixed) {
                Ok(v) => (v, true),
                Err(e) => return Err(classify(e)),
            },
            None => return Err(classify(first)),
        },
    };
    if !value.is_object() {
        return Err(RecordError::NotAnObject);
    }
    Ok(ParsedRecord { value, repaired })
}

fn classify(e: serde_json::Error) -> RecordError {
    let message = e.to_string();
    // serde_json has no error code for its recursion guard; its message is stable.
    if message.starts_with("recursion limit exceeded") {
        RecordError::TooDeep
    } else {
        RecordError::Unparsable(message)
    }
}

/// The record's top-level `category` string, read without building the record (for routing a
/// record that [`parse_record`] refused). Deep nesting and odd numbers elsewhere do not matter
/// here: serde skips the other fields without recursion.
pub fn category_field(text: &str) -> Option<String> {
    #[derive(Deserialize)]
    struct Head {
        #[serde(default)]
        category: Option<String>,
    }
    let head = |t: &str| serde_json::from_str::<Head>(t).ok();
    head(text)
        .or_else(|| replace_lone_surrogates(text).and_then(|t| head(&t)))?
        .category
}

/// `text` with each unpaired UTF-16 surrogate escape replaced by `\ufffd`, or `None` when it
/// has none. `text` must be valid JSON syntax: a backslash then only occurs inside strings,
/// so escapes are found without tracking quotes.
pub fn replace_lone_surrogates(text: &str) -> Option<String> {
    let b = text.as_bytes();
    let hex4 = |i: usize| -> Option<u16> {
        let s = b.get(i..i + 4)?;
        u16::from_str_radix(std::str::from_utf8(s).ok()?, 16).ok()
    };
    // `\uXXXX` at i, as its code unit.
    let unit_at = |i: usize| -> Option<u16> {
        if b.get(i) == Some(&b'\\') && b.get(i + 1) == Some(&b'u') {
            hex4(i + 2)
        } else {
            None
        }
    };
    let mut out: Option<Vec<u8>> = None;
    let mut copied = 0;
    let mut i = 0;
    while i < b.len() {
        if b[i] != b'\\' {
            i += 1;
            continue;
        }
        let Some(unit) = unit_at(i) else {
            // Any other escape is two bytes (`\"`, `\\`, `\n`, ...).
            i += 2;
            continue;
        };
        let lone = match unit {
            0xD800..=0xDBFF => match unit_at(i + 6) {
                Some(0xDC00..=0xDFFF) => {
                    i += 12; // a proper pair
                    continue;
                }
                _ => true,
            },
            0xDC00..=0xDFFF => true,
            _ => false,
        };
        if lone {
            let o = out.get_or_insert_with(|| Vec::with_capacity(b.len()));
            o.extend_from_slice(&b[copied..i]);
            o.extend_from_slice(b"\\ufffd");
            copied = i + 6;
        }
        i += 6;
    }
    let mut o = out?;
    o.extend_from_slice(&b[copied..]);
    // Only ASCII escapes were swapped for ASCII: still UTF-8.
    String::from_utf8(o).ok()
}

/// Parse a JSON document for reading its fields (an ECS body, to encode it as CEF or LEEF).
/// An ECS document nests its record's detail a few levels below its own fields, so a record
/// just under [`MAX_DEPTH`] makes a document serde_json refuses as a whole. Here a container too
/// deep to parse is split into its members, each parsed on its own, for up to
/// [`MAX_DOCUMENT_DEPTH`] levels; what lies deeper still becomes `null` (the vendor copy, which
/// no CEF or LEEF field reads). `None` only for text that is not JSON.
pub fn parse_document(bytes: &[u8]) -> Option<Value> {
    let text = std::str::from_utf8(bytes).ok()?;
    let raw: &serde_json::value::RawValue = serde_json::from_str(text).ok()?;
    Some(parse_pruned(raw, MAX_DOCUMENT_DEPTH - MAX_DEPTH))
}

/// `raw` as a value; if it nests too deep, its members one by one, `splits` levels at most.
fn parse_pruned(raw: &serde_json::value::RawValue, splits: usize) -> Value {
    use serde_json::value::RawValue;
    if let Ok(v) = serde_json::from_str::<Value>(raw.get()) {
        return v;
    }
    if splits == 0 {
        return Value::Null;
    }
    let text = raw.get();
    if let Ok(members) = serde_json::from_str::<std::collections::BTreeMap<String, &RawValue>>(text) {
        return Value::Object(
            members
                .into_iter()
                .map(|(k, v)| (k, parse_pruned(v, splits - 1)))
                .collect(),
        );
    }
    if let Ok(items) = serde_json::from_str::<Vec<&RawValue>>(text) {
        return Value::Array(items.into_iter().map(|v| parse_pruned(v, splits - 1)).collect());
    }
    Value::Null
}

#[cfg(test)]
mod tests {
    use super::*;

    fn nested(levels: usize) -> String {
        // An object holding `levels - 1` nested arrays: `levels` containers in all.
        format!(
            r#"{{"category":"X","a":{}1{}}}"#,
            "[".repeat(levels - 1),
            "]".repeat(levels - 1)
        )
    }

    #[test]
    fn lone_surrogates_are_replaced_and_pairs_kept() {
        assert_eq!(replace_lone_surrogates(r#"{"a":"x"}"#), None);
        assert_eq!(replace_lone_surrogates(r#"{"a":"\ud83d\ude00"}"#), None);
        assert_eq!(
            replace_lone_surrogates(r#"{"a":"\ud800 \udc00\\ud800\ud800\ud83d\ude00"}"#).as_deref(),
            Some(r#"{"a":"\ufffd \ufffd\\ud800\ufffd\ud83d\ude00"}"#)
        );
        let p = parse_record(r#"{"m":"bad \uD800 end","n":1}"#).unwrap();
        assert!(p.repaired);
        assert_eq!(p.value["m"], "bad \u{fffd} end");
        assert!(!parse_record(r#"{"m":"\u00e9"}"#).unwrap().repaired);
    }

    #[test]
    fn numbers_beyond_f64_and_deep_nesting_are_refused_with_a_reason() {
        let e = parse_record(r#"{"n":1e400}"#).unwrap_err();
        assert!(
            matches!(&e, RecordError::Unparsable(m) if m.contains("number out of range")),
            "{e}"
        );
        assert!(parse_record(&nested(MAX_DEPTH)).is_ok());
        assert_eq!(parse_record(&nested(MAX_DEPTH + 1)), Err(RecordError::TooDeep));
        assert_eq!(parse_record(&nested(5000)), Err(RecordError::TooDeep));
        assert_eq!(parse_record("[1]"), Err(RecordError::NotAnObject));
        assert_eq!(category_field(&nested(5000)).as_deref(), Some("X"));
        assert_eq!(
            category_field(r#"{"category":"\ud800A","n":1e400}"#).as_deref(),
            Some("\u{fffd}A")
        );
    }

    #[test]
    fn documents_a_little_deeper_than_records_keep_their_fields() {
        for levels in [MAX_DEPTH + 5, 100_000] {
            let doc = format!(r#"{{"event":{{"id":"e1"}},"azure":{{"x":{}}}}}"#, nested(levels));
            let v = parse_document(doc.as_bytes()).unwrap();
            assert_eq!(v["event"]["id"], "e1", "{levels}");
            assert_eq!(v["azure"]["x"]["category"], "X", "{levels}");
        }
        assert!(parse_document(b"{} x").is_none());
    }
}
