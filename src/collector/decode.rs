//! Decoding of source payloads into records.
//!
//! A payload is one unit a source delivers (an Event Hubs event body, a line or a file of a
//! replay, a content blob). It may hold an Azure diagnostic envelope `{"records":[...]}`, a JSON
//! array, NDJSON (one value a line, envelopes allowed on each line) or a single object. Decoding
//! never panics: what cannot be read becomes a [`DecodeError`] that the pipeline dead-letters
//! with its reason.

use serde::Deserialize;
use serde_json::value::RawValue;

/// One record as received: the exact bytes of one JSON value.
pub type RawRecord = Box<RawValue>;

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

/// Decode one payload.
pub fn decode(payload: &[u8]) -> Decoded {
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
    match serde_json::from_str::<&RawValue>(trimmed) {
        Ok(value) => decode_value(value, None, &mut out),
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
                decode_line(line, i + 1, &mut out);
            }
        }
    }
    out
}

/// Decode one NDJSON line (line numbers are 1-based, for the error message).
pub fn decode_line(line: &str, line_no: usize, out: &mut Decoded) {
    let line = line.trim();
    if line.is_empty() {
        return;
    }
    match serde_json::from_str::<&RawValue>(line) {
        Ok(value) => decode_value(value, Some(line_no), out),
        Err(e) => out.failures.push(Undecodable {
            error: DecodeError::Malformed {
                line: Some(line_no),
                message: e.to_string(),
            },
            text: line.to_string(),
        }),
    }
}

fn decode_value(value: &RawValue, line: Option<usize>, out: &mut Decoded) {
    let text = value.get();
    match text.as_bytes().first() {
        Some(b'{') => {
            if let Ok(env) = serde_json::from_str::<Envelope<'_>>(text) {
                for r in env.records {
                    push_record(r, out);
                }
            } else {
                out.records.push(value.to_owned());
            }
        }
        Some(b'[') => match serde_json::from_str::<Vec<&RawValue>>(text) {
            Ok(items) => {
                for r in items {
                    // An array of envelopes (several event bodies) is split too.
                    if r.get().starts_with('{') {
                        decode_value(r, line, out);
                    } else {
                        push_record(r, out);
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

fn push_record(r: &RawValue, out: &mut Decoded) {
    if r.get().starts_with('{') {
        out.records.push(r.to_owned());
    } else {
        out.failures.push(Undecodable {
            error: DecodeError::NotAnObject,
            text: r.get().to_string(),
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

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
