//! Decoding of source payloads into records.
//!
//! A payload is one unit a source delivers (an Event Hubs event body, a line or a file of a
//! replay, a content blob). It may hold an Azure diagnostic envelope `{"records":[...]}`, a JSON
//! array, NDJSON (one value a line, envelopes allowed on each line) or a single object. Decoding
//! never panics: what cannot be read becomes a [`DecodeError`] that the pipeline dead-letters
//! with its reason.
//!
//! Decoding only splits: a record is a slice of the payload (no copy), syntactically valid JSON
//! as `RawValue` sees it. Whether it can also be *normalized* (a lone UTF-16 surrogate escape, a
//! number beyond `f64`, nesting deeper than the parser's limit) is decided once, by
//! [`crate::normalize::parse_record`]; such a record still goes byte for byte to `raw`
//! destinations.

use bytes::Bytes;
use serde::Deserialize;
use serde_json::value::RawValue;

/// One record as received: the exact bytes of one JSON object, a slice of the payload it came
/// from (sharing its memory).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RawRecord(Bytes);

impl RawRecord {
    /// The record's text.
    pub fn get(&self) -> &str {
        // Made only from `&str` slices of a payload checked as UTF-8 (see `decode_bytes`).
        std::str::from_utf8(&self.0).unwrap_or_default()
    }

    /// The record's bytes (shared with the payload, no copy).
    pub fn bytes(&self) -> &Bytes {
        &self.0
    }

    /// Length in bytes.
    pub fn len(&self) -> usize {
        self.0.len()
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

/// Why (part of) a payload could not be decoded.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DecodeError {
    /// The bytes are not UTF-8.
    #[error("payload is not UTF-8: {0}")]
    NotUtf8(String),
    /// The bytes (or one NDJSON line) are not JSON.
    #[error("malformed JSON{}: {message}", line.map(|l| format!(" at line {l}")).unwrap_or_default())]
    Malformed { line: Option<usize>, message: String },
    /// A record is JSON but not an object (e.g. a bare number in an array).
    #[error("record is not a JSON object")]
    NotAnObject,
}

/// A decoding failure with the bytes concerned, for the dead-letter sink.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Undecodable {
    pub error: DecodeError,
    /// The offending text (lossy UTF-8).
    pub text: String,
}

/// What one payload decoded into: the records, in order, and the parts that failed.
#[derive(Debug, Default)]
pub struct Decoded {
    pub records: Vec<RawRecord>,
    pub failures: Vec<Undecodable>,
}

#[derive(Deserialize)]
struct Envelope<'a> {
    #[serde(borrow)]
    records: Vec<&'a RawValue>,
}

/// Decode one payload (copied once into shared memory; see [`decode_bytes`]).
pub fn decode(payload: &[u8]) -> Decoded {
    decode_bytes(&Bytes::copy_from_slice(payload))
}

/// Decode one payload; the records are slices of it.
pub fn decode_bytes(payload: &Bytes) -> Decoded {
    let mut out = Decoded::default();
    let text = match std::str::from_utf8(payload) {
        Ok(t) => t,
        Err(e) => {
            out.failures.push(Undecodable {
                error: DecodeError::NotUtf8(e.to_string()),
                text: String::from_utf8_lossy(payload).into_owned(),
            });
            return out;
        }
    };
    let trimmed = text.trim();
    if trimmed.is_empty() {
        return out;
    }
    // The whole payload as one value first (envelope, array, object pretty-printed or not).
    let split = Split { payload };
    match serde_json::from_str::<&RawValue>(trimmed) {
        Ok(value) => split.value(value, None, &mut out),
        Err(whole_err) => {
            // NDJSON only when the first line is a value on its own: otherwise the payload is
            // one broken document (a truncated envelope, an object cut short) and fails whole,
            // so it is dead-lettered whole rather than as line fragments.
            let first_line_is_value = trimmed
                .lines()
                .next()
                .is_some_and(|l| serde_json::from_str::<&RawValue>(l.trim()).is_ok());
            if !trimmed.contains('\n') || !first_line_is_value {
                out.failures.push(Undecodable {
                    error: DecodeError::Malformed {
                        line: None,
                        message: whole_err.to_string(),
                    },
                    text: trimmed.to_string(),
                });
                return out;
            }
            // NDJSON: one value a line; a bad line does not spoil the others.
            for (i, line) in text.lines().enumerate() {
                split.line(line, i + 1, &mut out);
            }
        }
    }
    out
}

/// Cuts records out of one payload (`payload` holds every `&str` it is given).
struct Split<'p> {
    payload: &'p Bytes,
}

impl Split<'_> {
    /// Decode one NDJSON line (line numbers are 1-based, for the error message).
    fn line(&self, line: &str, line_no: usize, out: &mut Decoded) {
        let line = line.trim();
        if line.is_empty() {
            return;
        }
        match serde_json::from_str::<&RawValue>(line) {
            Ok(value) => self.value(value, Some(line_no), out),
            Err(e) => out.failures.push(Undecodable {
                error: DecodeError::Malformed {
                    line: Some(line_no),
                    message: e.to_string(),
                },
                text: line.to_string(),
            }),
        }
    }

    fn value(&self, value: &RawValue, line: Option<usize>, out: &mut Decoded) {
        let text = value.get();
        match text.as_bytes().first() {
            Some(b'{') => {
                if let Ok(env) = serde_json::from_str::<Envelope<'_>>(text) {
                    for r in env.records {
                        self.record(r, out);
                    }
                } else {
                    self.record(value, out);
                }
            }
            Some(b'[') => match serde_json::from_str::<Vec<&RawValue>>(text) {
                Ok(items) => {
                    for r in items {
                        // An array of envelopes (several event bodies) is split too.
                        if r.get().starts_with('{') {
                            self.value(r, line, out);
                        } else {
                            self.record(r, out);
                        }
                    }
                }
                Err(e) => out.failures.push(Undecodable {
                    error: DecodeError::Malformed {
                        line,
                        message: e.to_string(),
                    },
                    text: text.to_string(),
                }),
            },
            _ => out.failures.push(Undecodable {
                error: DecodeError::NotAnObject,
                text: text.to_string(),
            }),
        }
    }

    /// `text` as a slice of the payload. Every `&RawValue` here borrows from the payload's text,
    /// so this never copies; the fallback only keeps it panic-free if that ever changed.
    fn slice(&self, text: &str) -> Bytes {
        let base = self.payload.as_ptr() as usize;
        let start = (text.as_ptr() as usize).wrapping_sub(base);
        match start.checked_add(text.len()) {
            Some(end) if start <= self.payload.len() && end <= self.payload.len() => self.payload.slice(start..end),
            _ => Bytes::copy_from_slice(text.as_bytes()),
        }
    }

    fn record(&self, r: &RawValue, out: &mut Decoded) {
        if r.get().starts_with('{') {
            out.records.push(RawRecord(self.slice(r.get())));
        } else {
            out.failures.push(Undecodable {
                error: DecodeError::NotAnObject,
                text: r.get().to_string(),
            });
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn records_are_slices_of_the_payload() {
        let payload = Bytes::from_static(br#"{"records":[{"a":1},{"b":"\ud800"}]}"#);
        let d = decode_bytes(&payload);
        assert_eq!(texts(&d), vec![r#"{"a":1}"#, r#"{"b":"\ud800"}"#]);
        let range = payload.as_ptr() as usize..payload.as_ptr() as usize + payload.len();
        assert!(d.records.iter().all(|r| range.contains(&(r.bytes().as_ptr() as usize))));
    }

    fn texts(d: &Decoded) -> Vec<&str> {
        d.records.iter().map(|r| r.get()).collect()
    }

    #[test]
    fn azure_envelope_is_split_into_its_records() {
        let d = decode(br#"{"records":[{"category":"SignInLogs","a":1},{"category":"AuditLogs"}]}"#);
        assert_eq!(
            texts(&d),
            vec![r#"{"category":"SignInLogs","a":1}"#, r#"{"category":"AuditLogs"}"#]
        );
        assert!(d.failures.is_empty());
    }

    #[test]
    fn pretty_printed_envelope_over_several_lines_is_one_payload() {
        let d = decode(b"{\n  \"records\": [\n    {\"x\": 1},\n    {\"x\": 2}\n  ]\n}\n");
        assert_eq!(d.records.len(), 2);
        assert!(d.failures.is_empty());
    }

    #[test]
    fn json_array_yields_each_object() {
        let d = decode(br#"[{"x":1},{"x":2},{"x":3}]"#);
        assert_eq!(d.records.len(), 3);
    }

    #[test]
    fn ndjson_yields_each_line_and_splits_envelopes_on_lines() {
        let d = decode(b"{\"x\":1}\n{\"records\":[{\"y\":1},{\"y\":2}]}\n\n{\"x\":3}\n");
        assert_eq!(texts(&d), vec![r#"{"x":1}"#, r#"{"y":1}"#, r#"{"y":2}"#, r#"{"x":3}"#]);
    }

    #[test]
    fn single_object_is_one_record() {
        let d = decode(br#"  {"operationName":"Sign-in activity"}  "#);
        assert_eq!(texts(&d), vec![r#"{"operationName":"Sign-in activity"}"#]);
    }

    #[test]
    fn object_with_a_non_array_records_field_is_a_plain_record() {
        let d = decode(br#"{"records":"not a list"}"#);
        assert_eq!(d.records.len(), 1);
    }

    #[test]
    fn malformed_line_is_reported_with_its_line_and_others_survive() {
        let d = decode(b"{\"x\":1}\n{\"x\":\n{\"x\":3}\n");
        assert_eq!(d.records.len(), 2);
        assert_eq!(d.failures.len(), 1);
        assert!(matches!(
            d.failures[0].error,
            DecodeError::Malformed { line: Some(2), .. }
        ));
        assert_eq!(d.failures[0].text, "{\"x\":");
        assert!(d.failures[0].error.to_string().contains("line 2"));
    }

    #[test]
    fn truncated_pretty_printed_envelope_fails_whole_not_as_line_fragments() {
        let d = decode(b"{\n  \"records\": [\n    {\"x\": 1},\n    {\"x\": 2}\n");
        assert!(d.records.is_empty(), "no fragment may pass as a record");
        assert_eq!(d.failures.len(), 1);
        assert!(d.failures[0].text.ends_with("{\"x\": 2}"));
    }

    #[test]
    fn malformed_single_payload_is_a_failure_with_reason() {
        let d = decode(br#"{"records":[{"x":1},"#);
        assert!(d.records.is_empty());
        assert_eq!(d.failures.len(), 1);
        assert!(d.failures[0].error.to_string().starts_with("malformed JSON"));
    }

    #[test]
    fn non_objects_and_non_utf8_are_failures() {
        let d = decode(b"[1, {\"x\":1}, \"s\"]");
        assert_eq!(d.records.len(), 1);
        assert_eq!(d.failures.len(), 2);
        assert!(d.failures.iter().all(|f| f.error == DecodeError::NotAnObject));
        let d = decode(&[0xff, 0xfe, b'{']);
        assert!(matches!(d.failures[0].error, DecodeError::NotUtf8(_)));
        let d = decode(b"42");
        assert_eq!(d.failures[0].error, DecodeError::NotAnObject);
    }

    #[test]
    fn empty_payload_is_nothing() {
        let d = decode(b"  \n ");
        assert!(d.records.is_empty() && d.failures.is_empty());
    }

    proptest::proptest! {
        #[test]
        fn decode_never_panics(bytes in proptest::collection::vec(proptest::num::u8::ANY, 0..256)) {
            let _ = decode(&bytes);
        }

        #[test]
        fn decode_never_panics_on_jsonish_text(s in "[\\[\\]{}\":,0-9a-z\\n ]{0,64}") {
            let _ = decode(s.as_bytes());
        }
    }
}
