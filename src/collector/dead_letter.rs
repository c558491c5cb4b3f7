//! The dead-letter sink: NDJSON files of records that could not be delivered, with the reason.
//!
//! Each line: `{"time","stage","reason","logSource","destination","record"}`. `record` is the
//! record as JSON when it is JSON, otherwise the text. A dead-lettered record counts as
//! acknowledged for checkpointing: it is accounted for, not lost silently.

use std::io::Write;
use std::path::PathBuf;
use std::sync::Mutex;

use serde::Serialize;
use serde_json::value::RawValue;

use crate::config::DeadLetterConfig;

/// Where in the pipeline a record was given up on.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub enum Stage {
    /// The payload could not be decoded.
    Decode,
    /// The record could not be normalized for a destination.
    Normalize,
    /// The destination's buffer was full (`whenFull: deadLetter`).
    Overflow,
    /// The destination rejected the record, or retries were exhausted.
    Deliver,
}

/// One dead-letter entry.
#[derive(Debug)]
pub struct DeadLetter<'a> {
    pub stage: Stage,
    pub reason: &'a str,
    pub log_source: Option<&'a str>,
    pub destination: Option<&'a str>,
    /// The record (JSON text when it parses, kept as text otherwise).
    pub record: &'a [u8],
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct Line<'a> {
    time: String,
    stage: Stage,
    reason: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    log_source: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    destination: Option<&'a str>,
    record: RecordField<'a>,
}

#[derive(Serialize)]
#[serde(untagged)]
enum RecordField<'a> {
    Json(&'a RawValue),
    Text(std::borrow::Cow<'a, str>),
}

/// Why the dead-letter sink failed. The pipeline stops rather than drop records silently.
#[derive(Debug, thiserror::Error)]
#[error("dead-letter sink {dir}: {source}")]
pub struct DeadLetterError {
    dir: String,
    #[source]
    source: std::io::Error,
}

/// NDJSON dead-letter files in one directory, rotated by size.
#[derive(Debug)]
pub struct DeadLetterSink {
    dir: PathBuf,
    max_file_bytes: u64,
    file: Mutex<Option<(std::fs::File, u64)>>,
    /// Records whose write failed, over the sink's life.
    failed: std::sync::atomic::AtomicU64,
}

impl DeadLetterSink {
    /// A sink writing under `config.dir` (created on first write).
    pub fn new(config: &DeadLetterConfig) -> Self {
        DeadLetterSink {
            dir: PathBuf::from(&config.dir),
            max_file_bytes: config.max_file_bytes.max(1024),
            file: Mutex::new(None),
            failed: Default::default(),
        }
    }

    /// Records whose dead-letter write failed so far (they stay unacknowledged).
    pub fn failed_records(&self) -> u64 {
        self.failed.load(std::sync::atomic::Ordering::Relaxed)
    }

    /// Directory of the files.
    pub fn dir(&self) -> &std::path::Path {
        &self.dir
    }

    /// Append entries. Writes are small and rare, so they are synchronous.
    pub fn write(&self, entries: &[DeadLetter<'_>]) -> Result<(), DeadLetterError> {
        if entries.is_empty() {
            return Ok(());
        }
        let mut buf = Vec::new();
        let time = chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Millis, true);
        for e in entries {
            let text = String::from_utf8_lossy(e.record);
            let record = match serde_json::from_str::<&RawValue>(text.trim()) {
                Ok(raw) => RecordField::Json(raw),
                Err(_) => RecordField::Text(text.clone()),
            };
            let line = Line {
                time: time.clone(),
                stage: e.stage,
                reason: e.reason,
                log_source: e.log_source,
                destination: e.destination,
                record,
            };
            // Serializing these types cannot fail (string keys, valid raw JSON).
            if serde_json::to_writer(&mut buf, &line).is_ok() {
                buf.push(b'\n');
            }
        }
        self.append(&buf).map_err(|source| {
            self.failed
                .fetch_add(entries.len() as u64, std::sync::atomic::Ordering::Relaxed);
            DeadLetterError {
                dir: self.dir.display().to_string(),
                source,
            }
        })
    }

    fn append(&self, buf: &[u8]) -> std::io::Result<()> {
        let mut guard = self.file.lock().unwrap_or_else(|p| p.into_inner());
        let rotate = match guard.as_ref() {
            None => true,
            Some((_, size)) => *size > 0 && size + buf.len() as u64 > self.max_file_bytes,
        };
        if rotate {
            std::fs::create_dir_all(&self.dir)?;
            let name = format!(
                "dead-letter-{}-{}.ndjson",
                chrono::Utc::now().format("%Y%m%dT%H%M%S%.3fZ"),
                std::process::id()
            );
            let f = std::fs::OpenOptions::new()
                .create(true)
                .append(true)
                .open(self.dir.join(name))?;
            let size = f.metadata()?.len();
            *guard = Some((f, size));
        }
        if let Some((f, size)) = guard.as_mut() {
            f.write_all(buf)?;
            f.flush()?;
            *size += buf.len() as u64;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn writes_json_records_as_json_and_text_as_text() {
        let dir = tempfile::tempdir().unwrap();
        let sink = DeadLetterSink::new(&DeadLetterConfig::in_dir(dir.path().display().to_string()));
        sink.write(&[
            DeadLetter {
                stage: Stage::Deliver,
                reason: "HTTP 400: bad",
                log_source: Some("entra"),
                destination: Some("siem"),
                record: br#"{"a":1}"#,
            },
            DeadLetter {
                stage: Stage::Decode,
                reason: "malformed JSON",
                log_source: None,
                destination: None,
                record: b"{oops",
            },
        ])
        .unwrap();
        let files: Vec<_> = std::fs::read_dir(dir.path()).unwrap().filter_map(|e| e.ok()).collect();
        assert_eq!(files.len(), 1);
        let text = std::fs::read_to_string(files[0].path()).unwrap();
        let lines: Vec<serde_json::Value> = text.lines().map(|l| serde_json::from_str(l).unwrap()).collect();
        assert_eq!(lines[0]["record"]["a"], 1);
        assert_eq!(lines[0]["destination"], "siem");
        assert_eq!(lines[0]["logSource"], "entra");
        assert_eq!(lines[1]["record"], "{oops");
        assert_eq!(lines[1]["stage"], "decode");
    }
}
