//! Dead letters: records that could not be delivered, kept durably with the reason, counted apart
//! from forwarded events, and never acknowledged before they are safe.
//!
//! # The document
//! Each dead letter is one JSON object (one NDJSON line in the files):
//!
//! ```json
//! {"time":"2026-12-07T10:00:00.000Z","category":"siembridge.deadLetter","stage":"deliver",
//!  "reason":"HTTP 400: ...","logSource":"entra","destination":"splunk","id":"...","record":{...}}
//! ```
//!
//! - `stage`: `decode` (the payload is not JSON or not UTF-8), `normalize`, `overflow` (a
//!   `whenFull: deadLetter` buffer was full) or `deliver` (refused for good, or retries
//!   exhausted).
//! - The original bytes, unchanged: `record` holds them verbatim when they are exactly one JSON
//!   value on one line (no byte added, removed or re-encoded), otherwise `recordBase64` holds
//!   them in standard base64 (invalid UTF-8, a truncated envelope, a fragment, a pretty-printed
//!   record over several lines, surrounding whitespace). Every document is one line. For records that were
//!   read fine, these are the record as the source delivered it (not the ECS document), so a
//!   dead letter can be replayed once its cause is fixed.
//! - A payload that cannot be decoded at all (a truncated `{"records":[...` envelope) is one dead
//!   letter holding the whole payload, not one per line fragment. It is written once for each
//!   LogSource the collector feeds, since any of them could have wanted it.
//!
//! # Where it goes
//! A LogSource with `deadLetter.destination` sends its dead letters to that SiemDestination
//! through the destination's own queue (the document is the event body; its id is the record's
//! id plus `/dead-letter/<stage>/<destination>`). The record is acknowledged only when that
//! destination has delivered the dead letter. A dead letter the dead-letter destination refuses
//! is not dead-lettered again (no loop): its record stays unacknowledged, so the checkpoint does
//! not pass it, and the refusal shows as `deadLetterError` in the report.
//!
//! Without one, dead letters go to NDJSON files in the collector's dead-letter directory: created
//! `0600` (directory `0700`), fsynced before the record is acknowledged, rotated by size, and
//! bounded in total ([`DeadLetterConfig::max_total_bytes`]): when full, records are not
//! acknowledged (the checkpoint holds) and the report says why.

use std::collections::HashMap;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use base64::Engine;
use bytes::Bytes;
use serde::Serialize;
use serde_json::value::RawValue;
use tokio::sync::mpsc;

use crate::collector::ack::{ack_all, AckRef};
use crate::collector::destinations::Event;
use crate::config::DeadLetterConfig;

/// Where in the pipeline a record was given up on.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize)]
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

impl Stage {
    /// The name in documents and metric labels.
    pub fn as_str(self) -> &'static str {
        match self {
            Stage::Decode => "decode",
            Stage::Normalize => "normalize",
            Stage::Overflow => "overflow",
            Stage::Deliver => "deliver",
        }
    }
}

/// One record given up on, with what its acknowledgement waits for.
#[derive(Debug)]
pub struct Letter {
    pub stage: Stage,
    pub reason: String,
    /// The LogSource the record was read for.
    pub log_source: Arc<str>,
    /// The destination that gave up on it (none for decode failures).
    pub destination: Option<Arc<str>>,
    /// Stable id of the record, when it got one.
    pub id: Option<Arc<str>>,
    /// The original bytes.
    pub record: Bytes,
    /// Acknowledged once the dead letter is safe.
    pub ack: AckRef,
}

/// What a dead-letter event carries so its delivery is counted as a dead letter, not a forward.
#[derive(Clone, Debug)]
pub struct DeadLetterMark {
    pub stage: Stage,
    pub reason: Arc<str>,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct Document<'a> {
    time: &'a str,
    category: &'static str,
    stage: Stage,
    reason: &'a str,
    log_source: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    destination: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    id: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    record: Option<&'a RawValue>,
    #[serde(skip_serializing_if = "Option::is_none")]
    record_base64: Option<String>,
}

/// `category` of every dead-letter document, so destinations that file by category or dataset
/// (blob paths, Splunk sourcetypes) keep dead letters apart.
pub const CATEGORY: &str = "siembridge.deadLetter";

/// The bytes as one JSON value on one line, when they are exactly that (verbatim round trip; a
/// line break between tokens would split the NDJSON line).
fn as_exact_json(bytes: &[u8]) -> Option<&RawValue> {
    if bytes.iter().any(|b| matches!(b, b'\n' | b'\r')) {
        return None;
    }
    let text = std::str::from_utf8(bytes).ok()?;
    let raw: &RawValue = serde_json::from_str(text).ok()?;
    (raw.get().len() == text.len()).then_some(raw)
}

/// The dead-letter document of a letter, as compact JSON.
pub fn document(letter: &Letter, time: &str) -> Vec<u8> {
    let record = as_exact_json(&letter.record);
    let doc = Document {
        time,
        category: CATEGORY,
        stage: letter.stage,
        reason: &letter.reason,
        log_source: &letter.log_source,
        destination: letter.destination.as_deref(),
        id: letter.id.as_deref(),
        record,
        record_base64: record
            .is_none()
            .then(|| base64::engine::general_purpose::STANDARD.encode(&letter.record)),
    };
    // Serializing string keys, strings and verbatim valid JSON cannot fail.
    serde_json::to_vec(&doc).unwrap_or_default()
}

fn now() -> String {
    chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Millis, true)
}

/// Why the dead-letter files could not take an entry. The records stay unacknowledged.
#[derive(Debug, thiserror::Error)]
pub enum DeadLetterError {
    #[error("dead-letter files in {dir}: {source}")]
    Io {
        dir: String,
        #[source]
        source: std::io::Error,
    },
    #[error("dead-letter files in {dir} are full ({used} of {cap} bytes): records are held unacknowledged until space is freed")]
    Full { dir: String, used: u64, cap: u64 },
}

/// NDJSON dead-letter files in one directory: `0600`, fsynced, rotated by size, capped in total.
#[derive(Debug)]
pub struct DeadLetterSink {
    dir: PathBuf,
    max_file_bytes: u64,
    max_total_bytes: u64,
    state: Mutex<FileState>,
}

#[derive(Debug, Default)]
struct FileState {
    /// The open file and its size.
    file: Option<(std::fs::File, u64)>,
    /// Bytes of every dead-letter file of the directory, once counted.
    total: Option<u64>,
}

const FILE_PREFIX: &str = "dead-letter-";

impl DeadLetterSink {
    /// A sink writing under `config.dir` (created on first write).
    pub fn new(config: &DeadLetterConfig) -> Self {
        DeadLetterSink {
            dir: PathBuf::from(&config.dir),
            max_file_bytes: config.max_file_bytes.max(1024),
            max_total_bytes: config.max_total_bytes,
            state: Mutex::new(FileState::default()),
        }
    }

    /// Directory of the files.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    fn io(&self, source: std::io::Error) -> DeadLetterError {
        DeadLetterError::Io {
            dir: self.dir.display().to_string(),
            source,
        }
    }

    /// Append NDJSON lines and sync them to disk. All or nothing: on an error nothing of `buf`
    /// is left in the file.
    pub fn append(&self, buf: &[u8]) -> Result<(), DeadLetterError> {
        if buf.is_empty() {
            return Ok(());
        }
        let mut state = self.state.lock().unwrap_or_else(|p| p.into_inner());
        let total = match state.total {
            Some(t) => t,
            None => self.count_total().map_err(|e| self.io(e))?,
        };
        let total = if total + buf.len() as u64 > self.max_total_bytes {
            // Someone may have moved files away since: count again before refusing.
            let recount = self.count_total().map_err(|e| self.io(e))?;
            if recount + buf.len() as u64 > self.max_total_bytes {
                state.total = Some(recount);
                return Err(DeadLetterError::Full {
                    dir: self.dir.display().to_string(),
                    used: recount,
                    cap: self.max_total_bytes,
                });
            }
            recount
        } else {
            total
        };
        state.total = Some(total);
        let rotate = match &state.file {
            None => true,
            Some((_, size)) => *size > 0 && size + buf.len() as u64 > self.max_file_bytes,
        };
        if rotate {
            state.file = Some((self.create_file().map_err(|e| self.io(e))?, 0));
        }
        let Some((f, size)) = state.file.as_mut() else {
            return Ok(());
        };
        let written = f.write_all(buf).and_then(|()| f.sync_data());
        match written {
            Ok(()) => {
                *size += buf.len() as u64;
                state.total = Some(total + buf.len() as u64);
                Ok(())
            }
            Err(e) => {
                // Cut off a partial write so the file stays whole lines, and start a new file
                // next time (the disk may have been freed or the file moved).
                let _ = f.set_len(*size);
                state.file = None;
                state.total = None;
                Err(self.io(e))
            }
        }
    }

    fn create_file(&self) -> std::io::Result<std::fs::File> {
        let mut builder = std::fs::DirBuilder::new();
        builder.recursive(true);
        #[cfg(unix)]
        std::os::unix::fs::DirBuilderExt::mode(&mut builder, 0o700);
        builder.create(&self.dir)?;
        let name = format!(
            "{FILE_PREFIX}{}-{}.ndjson",
            chrono::Utc::now().format("%Y%m%dT%H%M%S%.3fZ"),
            std::process::id()
        );
        let mut options = std::fs::OpenOptions::new();
        options.create(true).append(true);
        #[cfg(unix)]
        std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
        let f = options.open(self.dir.join(name))?;
        // The new directory entry must survive a crash too.
        std::fs::File::open(&self.dir)?.sync_all()?;
        Ok(f)
    }

    fn count_total(&self) -> std::io::Result<u64> {
        let entries = match std::fs::read_dir(&self.dir) {
            Ok(e) => e,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(0),
            Err(e) => return Err(e),
        };
        let mut total = 0;
        for entry in entries {
            let entry = entry?;
            if entry.file_name().to_string_lossy().starts_with(FILE_PREFIX) {
                total += entry.metadata().map(|m| m.len()).unwrap_or(0);
            }
        }
        Ok(total)
    }
}

/// Dead letters of one LogSource, for the report.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Tally {
    /// Dead letters made safe.
    pub count: u64,
    pub last_reason: Option<String>,
    /// Why the newest dead letter that could not be made safe failed.
    pub error: Option<String>,
}

/// The dead-letter side of a collector: where each LogSource's dead letters go, and what came of
/// them.
#[derive(Debug)]
pub struct DeadLetters {
    files: DeadLetterSink,
    files_durable: bool,
    /// Dead-letter destination by LogSource.
    targets: HashMap<Arc<str>, Arc<str>>,
    /// Queues of the dead-letter destinations, by destination; emptied by [`DeadLetters::close`].
    queues: Mutex<HashMap<Arc<str>, mpsc::UnboundedSender<Event>>>,
    tallies: Mutex<HashMap<Arc<str>, Tally>>,
    metric: Option<prometheus::IntCounterVec>,
    /// Records whose dead letter could not be made safe, over the collector's life.
    failed: std::sync::atomic::AtomicU64,
}

impl DeadLetters {
    /// Dead letters to files under `config.dir` for every LogSource not in `targets` (LogSource
    /// → dead-letter destination). `metric`: a counter with labels `logsource`, `stage`.
    pub fn new(
        config: &DeadLetterConfig,
        targets: HashMap<Arc<str>, Arc<str>>,
        metric: Option<prometheus::IntCounterVec>,
    ) -> Self {
        DeadLetters {
            files: DeadLetterSink::new(config),
            files_durable: config.durable,
            targets,
            queues: Mutex::default(),
            tallies: Mutex::default(),
            metric,
            failed: Default::default(),
        }
    }

    /// The dead-letter destinations named by the routes.
    pub fn destinations(&self) -> impl Iterator<Item = &str> {
        self.targets.values().map(|d| &**d)
    }

    /// Give the queue of a dead-letter destination.
    pub(crate) fn attach(&self, destination: &str, queue: mpsc::UnboundedSender<Event>) {
        self.queues
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert(Arc::from(destination), queue);
    }

    /// Let go of the dead-letter destinations' queues so their senders can finish (shutdown,
    /// once every other destination has drained). Later dead letters stay unacknowledged.
    pub fn close(&self) {
        self.queues.lock().unwrap_or_else(|p| p.into_inner()).clear();
    }

    /// Whether the LogSource's dead letters outlive the collector.
    pub fn durable_for(&self, log_source: &str) -> bool {
        self.targets.contains_key(log_source) || self.files_durable
    }

    /// The dead letters of a LogSource so far.
    pub fn tally(&self, log_source: &str) -> Tally {
        self.tallies
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get(log_source)
            .cloned()
            .unwrap_or_default()
    }

    /// Dead-letter records. Each record is acknowledged once its dead letter is safe (synced to
    /// the files, or delivered by the dead-letter destination); one that cannot be made safe
    /// stays unacknowledged and its error is reported.
    pub fn submit(&self, letters: Vec<Letter>) {
        if letters.is_empty() {
            return;
        }
        let time = now();
        let mut to_files: Vec<Letter> = Vec::new();
        for mut letter in letters {
            // A reason may quote a remote answer that echoed a credential.
            letter.reason = crate::collector::secrets::redact(&letter.reason).into_owned();
            tracing::warn!(
                logsource = %letter.log_source,
                destination = letter.destination.as_deref().unwrap_or(""),
                stage = letter.stage.as_str(),
                reason = %letter.reason,
                "record dead-lettered"
            );
            match self.targets.get(&letter.log_source) {
                None => to_files.push(letter),
                Some(target) => self.send(target, letter, &time),
            }
        }
        if to_files.is_empty() {
            return;
        }
        let mut buf = Vec::new();
        for l in &to_files {
            buf.extend_from_slice(&document(l, &time));
            buf.push(b'\n');
        }
        match self.files.append(&buf) {
            Ok(()) => {
                for l in &to_files {
                    self.count(&l.log_source, l.stage, &l.reason);
                }
                ack_all(to_files.iter().map(|l| &l.ack));
            }
            Err(e) => {
                tracing::error!(error = %e, "dead letters could not be written; their records stay unacknowledged");
                let message = e.to_string();
                for l in &to_files {
                    self.fail(&l.log_source, &message);
                }
            }
        }
    }

    fn send(&self, target: &Arc<str>, letter: Letter, time: &str) {
        let queue = self
            .queues
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get(target)
            .cloned();
        let body = Bytes::from(document(&letter, time));
        let id = format!(
            "{}/dead-letter/{}/{}",
            letter.id.as_deref().unwrap_or(""),
            letter.stage.as_str(),
            letter.destination.as_deref().unwrap_or("")
        );
        let event = Event {
            record: body.clone(),
            body,
            id: Arc::from(id.as_str()),
            log_source: letter.log_source.clone(),
            recognized: None,
            ack: letter.ack,
            dead_letter: Some(DeadLetterMark {
                stage: letter.stage,
                reason: Arc::from(letter.reason.as_str()),
            }),
            _slot: None,
        };
        // No buffer slot: dead letters replace records that held one, so they are bounded by
        // the buffers already, and a destination dead-lettering into itself cannot wait on
        // itself.
        let sent = queue.map(|q| q.send(event).is_ok()).unwrap_or(false);
        if !sent {
            let message = format!("dead-letter destination {target} is stopped; the record stays unacknowledged");
            tracing::error!(logsource = %letter.log_source, "{message}");
            self.fail(&letter.log_source, &message);
        }
    }

    /// Dead-letter events their destination delivered: count them and acknowledge their records.
    pub(crate) fn delivered(&self, events: &[&Event]) {
        for e in events {
            if let Some(mark) = &e.dead_letter {
                self.count(&e.log_source, mark.stage, &mark.reason);
            }
        }
        ack_all(events.iter().map(|e| &e.ack));
    }

    /// Dead-letter events their destination refused: never dead-lettered again (no loop), their
    /// records stay unacknowledged and the refusal is reported.
    pub(crate) fn refused(&self, destination: &str, events: &[&Event], reason: &str) {
        let message = format!(
            "dead-letter destination {destination} refused a dead letter: {}",
            crate::collector::secrets::redact(reason)
        );
        tracing::error!(
            destination,
            events = events.len(),
            reason,
            "dead letters refused; their records stay unacknowledged"
        );
        for e in events {
            self.fail(&e.log_source, &message);
        }
    }

    fn count(&self, log_source: &Arc<str>, stage: Stage, reason: &str) {
        if let Some(m) = &self.metric {
            m.with_label_values(&[&**log_source, stage.as_str()]).inc();
        }
        let mut tallies = self.tallies.lock().unwrap_or_else(|p| p.into_inner());
        let t = tallies.entry(log_source.clone()).or_default();
        t.count += 1;
        t.last_reason = Some(bounded(reason));
    }

    /// Records whose dead letter could not be made safe so far (they stay unacknowledged).
    pub fn failed_records(&self) -> u64 {
        self.failed.load(std::sync::atomic::Ordering::Relaxed)
    }

    fn fail(&self, log_source: &Arc<str>, message: &str) {
        self.failed.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let mut tallies = self.tallies.lock().unwrap_or_else(|p| p.into_inner());
        tallies.entry(log_source.clone()).or_default().error = Some(bounded(message));
    }
}

/// A reason short enough for a status field.
fn bounded(reason: &str) -> String {
    const MAX: usize = 512;
    if reason.len() <= MAX {
        return reason.to_string();
    }
    let mut end = MAX;
    while !reason.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}...", &reason[..end])
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::collector::ack::StreamTracker;

    fn letter(stream: &StreamTracker, stage: Stage, record: &[u8]) -> Letter {
        Letter {
            stage,
            reason: "HTTP 400: bad".into(),
            log_source: Arc::from("entra"),
            destination: Some(Arc::from("siem")),
            id: Some(Arc::from("rec-1")),
            record: Bytes::copy_from_slice(record),
            ack: stream.register("p1".into(), 1),
        }
    }

    #[derive(serde::Deserialize)]
    #[serde(rename_all = "camelCase")]
    struct Read {
        record: Option<Box<RawValue>>,
        record_base64: Option<String>,
    }

    fn original(line: &str) -> Vec<u8> {
        let r: Read = serde_json::from_str(line).unwrap();
        match (r.record, r.record_base64) {
            (Some(raw), None) => raw.get().as_bytes().to_vec(),
            (None, Some(b)) => base64::engine::general_purpose::STANDARD.decode(b).unwrap(),
            other => panic!("exactly one of record, recordBase64: {other:?}"),
        }
    }

    fn files(dir: &Path) -> Vec<PathBuf> {
        std::fs::read_dir(dir).unwrap().map(|e| e.unwrap().path()).collect()
    }

    #[test]
    fn the_files_keep_the_original_bytes_and_ack_only_once_written() {
        let dir = tempfile::tempdir().unwrap();
        let dl = DeadLetters::new(
            &DeadLetterConfig::in_dir(dir.path().display().to_string()),
            HashMap::new(),
            None,
        );
        let stream = StreamTracker::new("s", None);
        let originals: Vec<&[u8]> = vec![
            br#"{"b":2,  "a":1}"#,
            b"{\"name\":\"caf\xff\xfe\"}",
            b"{\"records\":[\n  {\"x\":1},\n  {\"x\":",
            b" {\"padded\":true}\n",
            b"{\n  \"id\": 6,\n  \"note\": \"two\\nlines\"\n}",
        ];
        let letters = originals.iter().map(|o| letter(&stream, Stage::Deliver, o)).collect();
        dl.submit(letters);
        assert_eq!(stream.watermark().as_deref(), Some("p1"));
        let f = files(dir.path());
        assert_eq!(f.len(), 1);
        let text = std::fs::read_to_string(&f[0]).unwrap();
        let back: Vec<Vec<u8>> = text.lines().map(original).collect();
        assert_eq!(back, originals.iter().map(|o| o.to_vec()).collect::<Vec<_>>());
        assert!(text.lines().next().unwrap().contains(r#""record":{"b":2,  "a":1}"#));
        let line: serde_json::Value = serde_json::from_str(text.lines().next().unwrap()).unwrap();
        assert_eq!(line["stage"], "deliver");
        assert_eq!(line["logSource"], "entra");
        assert_eq!(line["destination"], "siem");
        assert_eq!(line["category"], CATEGORY);
        assert_eq!(dl.tally("entra").count, 5);
    }

    #[cfg(unix)]
    #[test]
    fn files_are_private() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let sub = dir.path().join("dl");
        let sink = DeadLetterSink::new(&DeadLetterConfig::in_dir(sub.display().to_string()));
        sink.append(b"{}\n").unwrap();
        let f = &files(&sub)[0];
        assert_eq!(std::fs::metadata(f).unwrap().permissions().mode() & 0o777, 0o600);
        assert_eq!(std::fs::metadata(&sub).unwrap().permissions().mode() & 0o777, 0o700);
    }

    #[test]
    fn a_full_directory_holds_the_records_and_says_why() {
        let dir = tempfile::tempdir().unwrap();
        let mut config = DeadLetterConfig::in_dir(dir.path().display().to_string());
        config.max_total_bytes = 600;
        let dl = DeadLetters::new(&config, HashMap::new(), None);
        let stream = StreamTracker::new("s", None);
        let big = format!("{{\"pad\":\"{}\"}}", "x".repeat(300));
        dl.submit(vec![letter(&stream, Stage::Deliver, big.as_bytes())]);
        assert_eq!(stream.watermark().as_deref(), Some("p1"));
        let held = Letter {
            ack: stream.register("p2".into(), 1),
            ..letter(&stream, Stage::Deliver, big.as_bytes())
        };
        dl.submit(vec![held]);
        assert_eq!(
            stream.watermark().as_deref(),
            Some("p1"),
            "the checkpoint must not pass p2"
        );
        let t = dl.tally("entra");
        assert_eq!(t.count, 1);
        assert!(t.error.unwrap().contains("full"), "the report says why");
        // Space freed: the next dead letter goes through.
        for f in files(dir.path()) {
            std::fs::remove_file(f).unwrap();
        }
        dl.submit(vec![Letter {
            ack: stream.register("p3".into(), 1),
            ..letter(&stream, Stage::Deliver, b"{}")
        }]);
        assert_eq!(dl.tally("entra").count, 2);
    }

    #[test]
    fn a_named_destination_acks_only_on_delivery_and_a_refusal_does_not_loop() {
        let dir = tempfile::tempdir().unwrap();
        let dl = DeadLetters::new(
            &DeadLetterConfig::in_dir(dir.path().display().to_string()),
            HashMap::from([(Arc::from("entra"), Arc::from("archive"))]),
            None,
        );
        let (tx, mut rx) = mpsc::unbounded_channel();
        dl.attach("archive", tx);
        let stream = StreamTracker::new("s", None);
        dl.submit(vec![letter(&stream, Stage::Normalize, b"\xff")]);
        assert!(std::fs::read_dir(dir.path()).unwrap().next().is_none(), "no file");
        let e = rx.try_recv().unwrap();
        assert_eq!(&*e.id, "rec-1/dead-letter/normalize/siem");
        assert_eq!(original(std::str::from_utf8(&e.body).unwrap()), b"\xff");
        assert_eq!(stream.watermark(), None, "not before the destination has it");
        dl.refused("archive", &[&e], "HTTP 400");
        assert_eq!(stream.watermark(), None);
        assert!(rx.try_recv().is_err(), "a refused dead letter is not sent again");
        assert!(dl.tally("entra").error.unwrap().contains("refused"));
        dl.delivered(&[&e]);
        assert_eq!(stream.watermark().as_deref(), Some("p1"));
        assert_eq!(dl.tally("entra").count, 1);
        dl.close();
        dl.submit(vec![Letter {
            ack: stream.register("p2".into(), 1),
            ..letter(&stream, Stage::Deliver, b"{}")
        }]);
        assert_eq!(
            stream.watermark().as_deref(),
            Some("p1"),
            "closed: held, not written elsewhere"
        );
    }
}
