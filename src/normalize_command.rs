//! `siembridge normalize`: what a SIEM would receive for some records, without running a
//! pipeline. Records come on standard input, one output line per record, in order.
//!
//! Input: one JSON value a line (NDJSON; a line may hold a record, an Azure envelope
//! `{"records":[...]}`, a Graph page `{"value":[...]}` or an array of them), or, when the first
//! line is not a JSON value on its own, one JSON document over several lines (a pretty-printed
//! envelope, page or array), read whole up to `--max-input-bytes`.
//!
//! It takes the collector's path, not a second parser: the decoder splits what the sources
//! split ([`crate::collector::decode`]), [`crate::normalize::parse_record`] parses each record
//! once, and the document is the one the collector sends (`normalize_json_recognized` for ECS,
//! the CEF and LEEF encoders of the syslog destination on it, the record's own bytes for raw).
//!
//! What cannot be read gives one error document on the output, in place of the record:
//! `{"error":{"line":N,"stage":"decode"|"normalize","reason":"..."},"input":"<first 200 bytes>"}`
//! (`line` is the input line, 1-based; `null` for a multi-line document, with `record`, the
//! index of the record in it). Errors of a line come after the records of that line. A line
//! longer than `--max-record-bytes` (default 1 MiB, the LogSource default) is skipped while it
//! is read, never held in memory, and reported with its size. The command exits non-zero when
//! any record failed.

use std::io::{self, BufRead, Read, Write};

use bytes::Bytes;
use serde_json::json;

use crate::api::DEFAULT_MAX_RECORD_BYTES;
use crate::collector::decode::{decode_bytes, Decoded};
use crate::normalize::cef::{self, CefOptions};
use crate::normalize::leef::{self, LeefOptions};
use crate::normalize::{normalize_json_recognized, normalize_owned, parse_record, recognize, EcsContext, SourceHint};

/// How much of a failed input an error document repeats.
const EXCERPT_BYTES: usize = 200;

/// Default of `--max-input-bytes`: the largest `maxRecordBytes` a LogSource may set.
pub const DEFAULT_MAX_INPUT_BYTES: u64 = 64 * 1024 * 1024;

/// `siembridge normalize` options.
#[derive(clap::Args, Clone, Debug)]
pub struct NormalizeArgs {
    /// Output: `ecs` (the JSON document `format: ecs` destinations get), `cef` or `leef` (the
    /// syslog payloads), `raw` (the record as received, on one line).
    #[arg(long, value_enum, default_value = "ecs")]
    pub format: OutputFormat,
    /// Keep each record as `event.original` (as a SiemDestination's `keepOriginal`).
    #[arg(long)]
    pub keep_original: bool,
    /// Largest record or input line read, in bytes; larger ones give an error line.
    #[arg(long, default_value_t = DEFAULT_MAX_RECORD_BYTES)]
    pub max_record_bytes: u64,
    /// Largest multi-line JSON document read whole, in bytes.
    #[arg(long, default_value_t = DEFAULT_MAX_INPUT_BYTES)]
    pub max_input_bytes: u64,
}

impl Default for NormalizeArgs {
    fn default() -> Self {
        NormalizeArgs {
            format: OutputFormat::Ecs,
            keep_original: false,
            max_record_bytes: DEFAULT_MAX_RECORD_BYTES,
            max_input_bytes: DEFAULT_MAX_INPUT_BYTES,
        }
    }
}

/// The shape written for each record.
#[derive(clap::ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
pub enum OutputFormat {
    Ecs,
    Cef,
    Leef,
    Raw,
}

/// What a run did.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Summary {
    /// Output lines that are a record's document.
    pub records: u64,
    /// Output lines that are error documents.
    pub failed: u64,
}

/// Why `siembridge normalize` failed as a whole.
#[derive(Debug, thiserror::Error)]
pub enum NormalizeCommandError {
    #[error("cannot read standard input or write standard output: {0}")]
    Io(#[from] io::Error),
    #[error("{failed} of {total} records could not be read or normalized (see the error lines)")]
    RecordsFailed { failed: u64, total: u64 },
}

/// Run on standard input and output.
pub fn main(args: &NormalizeArgs) -> Result<(), NormalizeCommandError> {
    let stdin = io::stdin();
    let stdout = io::stdout();
    let mut out = io::BufWriter::new(stdout.lock());
    let summary = run(args, stdin.lock(), &mut out)?;
    out.flush()?;
    if summary.failed > 0 {
        return Err(NormalizeCommandError::RecordsFailed {
            failed: summary.failed,
            total: summary.records + summary.failed,
        });
    }
    Ok(())
}

/// Read records from `input` and write one line per record to `output`.
pub fn run(args: &NormalizeArgs, mut input: impl BufRead, output: impl Write) -> io::Result<Summary> {
    let max_line = usize::try_from(args.max_record_bytes).unwrap_or(usize::MAX);
    let mut w = Writer {
        args,
        out: output,
        summary: Summary::default(),
    };
    let mut line_no = 0usize;
    let mut first = true;
    let mut line = Vec::new();
    loop {
        let read = read_line_bounded(&mut input, max_line, &mut line)?;
        let Some(length) = read else { break };
        line_no += 1;
        if length > max_line {
            w.error(
                Some(line_no),
                None,
                "decode",
                &format!(
                    "line of {length} bytes is larger than --max-record-bytes ({max_line}); it was skipped unread"
                ),
                &line,
            )?;
            first = false;
            continue;
        }
        if line.iter().all(u8::is_ascii_whitespace) {
            continue;
        }
        if first {
            first = false;
            if serde_json::from_slice::<&serde_json::value::RawValue>(trim(&line)).is_err()
                && std::str::from_utf8(&line).is_ok()
            {
                // Not a value on its own line: one document over several lines.
                return document(&mut w, std::mem::take(&mut line), input).map(|()| w.summary);
            }
        }
        let decoded = decode_bytes(&graph_page(&line).unwrap_or_else(|| Bytes::copy_from_slice(&line)));
        w.decoded(Some(line_no), decoded)?;
    }
    Ok(w.summary)
}

/// The rest of the input as one document, `head` being its first line.
fn document(w: &mut Writer<'_, impl Write>, mut head: Vec<u8>, input: impl BufRead) -> io::Result<()> {
    let limit = w.args.max_input_bytes;
    // The first line was read without its newline; tokens of two lines must not run together.
    head.push(b'\n');
    let mut rest = Vec::new();
    let taken = input
        .take(limit.saturating_sub(head.len() as u64) + 1)
        .read_to_end(&mut rest)?;
    head.extend_from_slice(&rest);
    if head.len() as u64 > limit || taken as u64 > limit {
        return w.error(
            None,
            None,
            "decode",
            &format!(
                "the input is one JSON document over several lines and larger than --max-input-bytes ({limit}); \
                 give one record per line instead"
            ),
            &head,
        );
    }
    let decoded = decode_bytes(&graph_page(&head).unwrap_or_else(|| Bytes::from(head)));
    w.decoded(None, decoded)
}

/// The `value` array of a Microsoft Graph page (`{"@odata.context":..,"value":[...]}`: only
/// `value` and `@odata.*` members), which the decoder then splits like any array.
fn graph_page(text: &[u8]) -> Option<Bytes> {
    let text = trim(text);
    if text.first() != Some(&b'{') {
        return None;
    }
    let members: std::collections::BTreeMap<String, &serde_json::value::RawValue> =
        serde_json::from_slice(text).ok()?;
    let value = members.get("value")?;
    let only_page = members.keys().all(|k| k == "value" || k.starts_with("@odata."));
    (only_page && value.get().starts_with('[')).then(|| Bytes::copy_from_slice(value.get().as_bytes()))
}

/// Read one line (without its `\n`) into `buf`, keeping at most `max` bytes of it: `None` at
/// the end of the input, else the line's full length (more than `max` when it was cut; the rest
/// of the line is consumed without being kept).
fn read_line_bounded(input: &mut impl BufRead, max: usize, buf: &mut Vec<u8>) -> io::Result<Option<usize>> {
    buf.clear();
    let mut length = 0usize;
    let mut any = false;
    loop {
        let chunk = input.fill_buf()?;
        if chunk.is_empty() {
            return Ok(any.then_some(length));
        }
        any = true;
        let (part, done) = match chunk.iter().position(|&b| b == b'\n') {
            Some(i) => (&chunk[..i], i + 1),
            None => (chunk, chunk.len()),
        };
        length += part.len();
        if buf.len() < max {
            let room = max - buf.len();
            buf.extend_from_slice(&part[..part.len().min(room)]);
        }
        let ended = done > part.len();
        input.consume(done);
        if ended {
            if buf.last() == Some(&b'\r') && length <= max {
                buf.pop();
                length -= 1;
            }
            return Ok(Some(length));
        }
    }
}

fn trim(b: &[u8]) -> &[u8] {
    let start = b.iter().position(|c| !c.is_ascii_whitespace()).unwrap_or(b.len());
    let end = b
        .iter()
        .rposition(|c| !c.is_ascii_whitespace())
        .map_or(start, |e| e + 1);
    &b[start..end]
}

struct Writer<'a, W: Write> {
    args: &'a NormalizeArgs,
    out: W,
    summary: Summary,
}

impl<W: Write> Writer<'_, W> {
    fn decoded(&mut self, line: Option<usize>, decoded: Decoded) -> io::Result<()> {
        let max = usize::try_from(self.args.max_record_bytes).unwrap_or(usize::MAX);
        for (index, raw) in decoded.records.iter().enumerate() {
            let at = |i: usize| match line {
                Some(l) => format!("stdin/{l}#{i}"),
                None => format!("stdin#{i}"),
            };
            let record_index = line.is_none().then_some(index);
            if raw.len() > max {
                self.error(
                    line,
                    record_index,
                    "decode",
                    &format!(
                        "record of {} bytes is larger than --max-record-bytes ({max})",
                        raw.len()
                    ),
                    raw.get().as_bytes(),
                )?;
                continue;
            }
            match self.render(raw.get(), &at(index)) {
                Ok(text) => {
                    self.out.write_all(text.as_bytes())?;
                    self.out.write_all(b"\n")?;
                    self.summary.records += 1;
                }
                Err(reason) => self.error(line, record_index, "normalize", &reason, raw.get().as_bytes())?,
            }
        }
        for f in &decoded.failures {
            self.error(line, None, "decode", &f.error.to_string(), f.text.as_bytes())?;
        }
        Ok(())
    }

    /// One record in the output format, on one line.
    fn render(&self, text: &str, event_id: &str) -> Result<String, String> {
        if self.args.format == OutputFormat::Raw {
            // The bytes a raw destination gets, whether or not they parse; a record split out
            // of a multi-line document is put on one line.
            return Ok(one_line(text));
        }
        let parsed = parse_record(text).map_err(|e| e.to_string())?;
        let ctx = EcsContext {
            source: SourceHint::Unknown,
            event_id: Some(event_id),
            original: self.args.keep_original.then_some(text),
        };
        match self.args.format {
            OutputFormat::Ecs => {
                let recognized = recognize(&parsed.value, ctx.source);
                let n = normalize_json_recognized(&parsed.value, recognized, &ctx).map_err(|e| e.to_string())?;
                String::from_utf8(n.json).map_err(|e| e.to_string())
            }
            OutputFormat::Cef => {
                let n = normalize_owned(parsed.value, &ctx).map_err(|e| e.to_string())?;
                Ok(cef::encode(&n.doc, &CefOptions::default()))
            }
            OutputFormat::Leef => {
                let n = normalize_owned(parsed.value, &ctx).map_err(|e| e.to_string())?;
                Ok(leef::encode(&n.doc, &LeefOptions::default()))
            }
            OutputFormat::Raw => unreachable!("handled above"),
        }
    }

    fn error(
        &mut self,
        line: Option<usize>,
        record: Option<usize>,
        stage: &str,
        reason: &str,
        input: &[u8],
    ) -> io::Result<()> {
        let mut cut = input.len().min(EXCERPT_BYTES);
        while cut > 0 && std::str::from_utf8(&input[..cut]).is_err() && input.len() - cut < 4 {
            cut -= 1;
        }
        let mut error = json!({"line": line, "stage": stage, "reason": reason});
        if let Some(r) = record {
            error["record"] = json!(r);
        }
        let doc = json!({"error": error, "input": String::from_utf8_lossy(&input[..cut])});
        serde_json::to_writer(&mut self.out, &doc)?;
        self.out.write_all(b"\n")?;
        self.summary.failed += 1;
        Ok(())
    }
}

/// A JSON text on one line: whitespace between tokens removed when it spans lines (inside
/// strings a newline is always escaped, so only insignificant whitespace is dropped).
fn one_line(text: &str) -> String {
    if !text.contains(['\n', '\r']) {
        return text.to_string();
    }
    let mut out = String::with_capacity(text.len());
    let mut in_string = false;
    let mut escaped = false;
    for c in text.chars() {
        if in_string {
            out.push(c);
            if escaped {
                escaped = false;
            } else if c == '\\' {
                escaped = true;
            } else if c == '"' {
                in_string = false;
            }
        } else if c == '"' {
            in_string = true;
            out.push(c);
        } else if !c.is_whitespace() {
            out.push(c);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn lines(args: &NormalizeArgs, input: &str) -> (Vec<serde_json::Value>, Summary) {
        let mut out = Vec::new();
        let s = run(args, input.as_bytes(), &mut out).unwrap();
        let text = String::from_utf8(out).unwrap();
        (
            text.lines()
                .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{e}: {l}")))
                .collect(),
            s,
        )
    }

    #[test]
    fn long_lines_are_skipped_without_being_kept() {
        let mut input = io::Cursor::new(format!("{}\n{{\"a\":1}}\r\nlast", "x".repeat(10_000)).into_bytes());
        let mut buf = Vec::new();
        assert_eq!(read_line_bounded(&mut input, 100, &mut buf).unwrap(), Some(10_000));
        assert_eq!(buf.len(), 100);
        assert_eq!(read_line_bounded(&mut input, 100, &mut buf).unwrap(), Some(7));
        assert_eq!(buf, b"{\"a\":1}");
        assert_eq!(read_line_bounded(&mut input, 100, &mut buf).unwrap(), Some(4));
        assert_eq!(read_line_bounded(&mut input, 100, &mut buf).unwrap(), None);
    }

    #[test]
    fn pretty_printed_documents_are_read_whole_and_raw_records_put_on_one_line() {
        let args = NormalizeArgs {
            format: OutputFormat::Raw,
            ..Default::default()
        };
        let (out, s) = lines(
            &args,
            "{\n  \"records\": [\n    {\"a\": \"x y\\n\"},\n    {\"b\": 2}\n  ]\n}\n",
        );
        assert_eq!(s, Summary { records: 2, failed: 0 });
        assert_eq!(out, vec![json!({"a": "x y\n"}), json!({"b": 2})]);
        assert_eq!(one_line("{\"a\" :\n \"b \\\" c\"}"), "{\"a\":\"b \\\" c\"}");
        // Tokens at the ends of two lines stay apart.
        let (out, s) = lines(&args, "{\"a\":1\n2}\n");
        assert_eq!(s, Summary { records: 0, failed: 1 }, "{out:?}");
        let (out, s) = lines(
            &NormalizeArgs {
                format: OutputFormat::Raw,
                ..Default::default()
            },
            "[{\"a\":1\n}, {\"b\":\n2}]",
        );
        assert_eq!(s.records, 2);
        assert_eq!(out, vec![json!({"a": 1}), json!({"b": 2})]);
    }

    #[test]
    fn graph_pages_are_split_and_other_value_members_are_not() {
        assert_eq!(
            graph_page(br#"{"@odata.context":"x","value":[{"id":"1"},{"id":"2"}]}"#).as_deref(),
            Some(&br#"[{"id":"1"},{"id":"2"}]"#[..])
        );
        assert_eq!(graph_page(br#"{"value":[1],"category":"X"}"#), None);
        assert_eq!(graph_page(br#"[{"value":[1]}]"#), None);
    }

    #[test]
    fn errors_name_their_line_and_reason() {
        let (out, s) = lines(
            &NormalizeArgs::default(),
            "{\"time\":\"2026-01-01T00:00:00Z\",\"category\":\"SignInLogs\"}\n{\"x\":\n{\"n\":1e400}\n",
        );
        assert_eq!(s, Summary { records: 1, failed: 2 });
        assert_eq!(out[1]["error"]["line"], 2);
        assert_eq!(out[1]["error"]["stage"], "decode");
        assert_eq!(out[2]["error"]["line"], 3);
        assert_eq!(out[2]["error"]["stage"], "normalize");
        assert!(out[2]["error"]["reason"]
            .as_str()
            .unwrap()
            .contains("number out of range"));
    }
}
