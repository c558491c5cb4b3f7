//! `replay`: recorded files, read in name order.
//!
//! A file whose first line is a complete JSON value (or empty) is read line by line, one unit a
//! line (NDJSON, or one Event Hubs body a line). Any other file (a pretty-printed envelope or
//! array) is one document whose records are the units. The position is `<file>@<n>`: the line
//! number, or the record number, of the last acknowledged unit, so a restart resumes exactly.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use async_trait::async_trait;
use bytes::Bytes;
use tokio::io::{AsyncBufReadExt, BufReader};

use super::{RecordOrigin, Source, SourceBatch, SourceContext, SourceError, SourceUnit};
use crate::api::ReplaySource;

/// Checkpoint stream id of a replay.
pub const STREAM: &str = "replay";
const MAX_BATCH_UNITS: usize = 512;
const MAX_BATCH_BYTES: usize = 1024 * 1024;

/// Reads replay files.
pub struct ReplayReader {
    files: Vec<PathBuf>,
    next_file: usize,
    current: Option<OpenFile>,
    /// Units of the current file up to this number were acknowledged before a restart.
    skip_through: u64,
    rate_per_second: Option<u32>,
    loop_: bool,
    started: Instant,
    emitted: u64,
}

enum OpenFile {
    Lines {
        path: String,
        reader: BufReader<tokio::fs::File>,
        line_no: u64,
    },
    Document {
        path: String,
        units: std::vec::IntoIter<Bytes>,
        index: u64,
    },
}

/// Split a position `<file>@<n>`.
pub fn parse_position(position: &str) -> Option<(&str, u64)> {
    let (file, n) = position.rsplit_once('@')?;
    Some((file, n.parse().ok()?))
}

fn io_err(path: &Path) -> impl FnOnce(std::io::Error) -> SourceError + '_ {
    move |source| SourceError::Io {
        path: path.display().to_string(),
        source,
    }
}

/// Files of the given paths: files as given, folders' files (recursively, hidden ones skipped)
/// in name order.
pub fn list_files(paths: &[String]) -> Result<Vec<PathBuf>, SourceError> {
    fn walk(dir: &Path, out: &mut Vec<PathBuf>) -> Result<(), SourceError> {
        let mut entries: Vec<PathBuf> = std::fs::read_dir(dir)
            .map_err(io_err(dir))?
            .filter_map(|e| e.ok().map(|e| e.path()))
            .filter(|p| !p.file_name().is_some_and(|n| n.to_string_lossy().starts_with('.')))
            .collect();
        entries.sort();
        for p in entries {
            if p.is_dir() {
                walk(&p, out)?;
            } else {
                out.push(p);
            }
        }
        Ok(())
    }
    let mut out = Vec::new();
    for p in paths {
        let path = PathBuf::from(p);
        let meta = std::fs::metadata(&path).map_err(io_err(&path))?;
        if meta.is_dir() {
            walk(&path, &mut out)?;
        } else {
            out.push(path);
        }
    }
    Ok(out)
}

impl ReplayReader {
    /// List the files and find where the checkpoint says to resume.
    pub async fn open(spec: &ReplaySource, ctx: SourceContext) -> Result<Self, SourceError> {
        let files = list_files(&spec.paths)?;
        if files.is_empty() {
            return Err(SourceError::Invalid(format!(
                "replay paths {:?} hold no files",
                spec.paths
            )));
        }
        let mut reader = ReplayReader {
            files,
            next_file: 0,
            current: None,
            skip_through: 0,
            rate_per_second: spec.rate_per_second.filter(|r| *r > 0),
            loop_: spec.loop_,
            started: Instant::now(),
            emitted: 0,
        };
        if let Some(cp) = ctx.checkpoints.load(STREAM).await? {
            match parse_position(&cp.position) {
                Some((file, n)) => {
                    let at = reader.files.iter().position(|f| f.display().to_string() == file);
                    match at {
                        Some(i) => {
                            reader.next_file = i;
                            reader.skip_through = n;
                        }
                        None => {
                            reader.next_file = reader
                                .files
                                .iter()
                                .position(|f| f.display().to_string().as_str() > file)
                                .unwrap_or(reader.files.len());
                            tracing::warn!(collector = %ctx.collector, file, "checkpointed replay file is gone; resuming at the next file by name");
                        }
                    }
                    tracing::info!(
                        collector = %ctx.collector,
                        position = %cp.position,
                        "replay resumes from checkpoint {} (delete the checkpoint, or run with --from-start, to replay from the beginning)",
                        cp.position
                    );
                }
                None => {
                    return Err(SourceError::Invalid(format!(
                        "replay checkpoint position {:?} is not <file>@<n>",
                        cp.position
                    )))
                }
            }
        }
        Ok(reader)
    }

    async fn open_next(&mut self) -> Result<bool, SourceError> {
        if self.next_file >= self.files.len() {
            if !self.loop_ {
                return Ok(false);
            }
            self.next_file = 0;
        }
        let path = self.files[self.next_file].clone();
        self.next_file += 1;
        let name = path.display().to_string();
        let file = tokio::fs::File::open(&path).await.map_err(io_err(&path))?;
        let mut reader = BufReader::new(file);
        let mut first = Vec::new();
        reader.read_until(b'\n', &mut first).await.map_err(io_err(&path))?;
        let first = String::from_utf8_lossy(&first);
        let whole_first_line =
            first.trim().is_empty() || serde_json::from_str::<&serde_json::value::RawValue>(first.trim()).is_ok();
        if whole_first_line {
            // Start again from the top so the first line is a unit like the others.
            let file = tokio::fs::File::open(&path).await.map_err(io_err(&path))?;
            self.current = Some(OpenFile::Lines {
                path: name,
                reader: BufReader::new(file),
                line_no: 0,
            });
        } else {
            let bytes = tokio::fs::read(&path).await.map_err(io_err(&path))?;
            let decoded = crate::collector::decode::decode(&bytes);
            let mut units: Vec<Bytes> = decoded
                .records
                .iter()
                .map(|r| Bytes::copy_from_slice(r.get().as_bytes()))
                .collect();
            if units.is_empty() && !decoded.failures.is_empty() {
                // Nothing readable (not UTF-8, a truncated document): the file is one unit with
                // its bytes unchanged, so its dead letter is the file as it is.
                units.push(Bytes::from(bytes));
            } else {
                units.extend(decoded.failures.into_iter().map(|f| Bytes::from(f.text.into_bytes())));
            }
            self.current = Some(OpenFile::Document {
                path: name,
                units: units.into_iter(),
                index: 0,
            });
        }
        Ok(true)
    }

    /// Next unit of the open file, `None` at its end.
    async fn next_unit(&mut self) -> Result<Option<SourceUnit>, SourceError> {
        loop {
            let skip = self.skip_through;
            let unit = match self.current.as_mut() {
                None => return Ok(None),
                Some(OpenFile::Lines { path, reader, line_no }) => {
                    let mut line = Vec::new();
                    let n = reader
                        .read_until(b'\n', &mut line)
                        .await
                        .map_err(|source| SourceError::Io {
                            path: path.clone(),
                            source,
                        })?;
                    if n == 0 {
                        return Ok(None);
                    }
                    *line_no += 1;
                    if *line_no <= skip || line.iter().all(|b| b.is_ascii_whitespace()) {
                        // Already delivered, or blank: still a position to checkpoint past.
                        if *line_no > skip {
                            return Ok(Some(SourceUnit {
                                payload: Bytes::new(),
                                position: format!("{path}@{line_no}"),
                                state: None,
                                id: None,
                            }));
                        }
                        continue;
                    }
                    // The line without its terminator: the unit is the record's own bytes.
                    if line.ends_with(b"\n") {
                        line.pop();
                        if line.ends_with(b"\r") {
                            line.pop();
                        }
                    }
                    SourceUnit {
                        payload: Bytes::from(line),
                        position: format!("{path}@{line_no}"),
                        state: None,
                        id: None,
                    }
                }
                Some(OpenFile::Document { path, units, index }) => match units.next() {
                    None => return Ok(None),
                    Some(payload) => {
                        *index += 1;
                        if *index <= skip {
                            continue;
                        }
                        SourceUnit {
                            payload,
                            position: format!("{path}@{index}"),
                            state: None,
                            id: None,
                        }
                    }
                },
            };
            return Ok(Some(unit));
        }
    }

    async fn pace(&mut self) {
        if let Some(rate) = self.rate_per_second {
            let due = self.started + Duration::from_secs_f64(self.emitted as f64 / f64::from(rate));
            tokio::time::sleep_until(due.into()).await;
        }
        self.emitted += 1;
    }
}

#[async_trait]
impl Source for ReplayReader {
    fn kind(&self) -> &'static str {
        "replay"
    }

    async fn next_batch(&mut self) -> Result<Option<SourceBatch>, SourceError> {
        let max_units = match self.rate_per_second {
            Some(r) => (r as usize / 10).clamp(1, MAX_BATCH_UNITS),
            None => MAX_BATCH_UNITS,
        };
        let mut units = Vec::new();
        let mut bytes = 0;
        while units.len() < max_units && bytes < MAX_BATCH_BYTES {
            if self.current.is_none() && !self.open_next().await? {
                break;
            }
            match self.next_unit().await? {
                Some(unit) => {
                    self.pace().await;
                    bytes += unit.payload.len();
                    units.push(unit);
                }
                None => {
                    self.current = None;
                    self.skip_through = 0;
                }
            }
        }
        if units.is_empty() {
            return Ok(None);
        }
        Ok(Some(SourceBatch {
            stream: STREAM.to_string(),
            origin: RecordOrigin::Unknown,
            units,
        }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::collector::checkpoint::file::FileCheckpointStore;
    use crate::collector::checkpoint::{Checkpoint, CheckpointStore};
    use std::sync::Arc;

    async fn all_units(r: &mut ReplayReader) -> Vec<SourceUnit> {
        let mut out = Vec::new();
        while let Some(b) = r.next_batch().await.unwrap() {
            out.extend(b.units);
        }
        out
    }

    #[tokio::test]
    async fn reads_lines_and_documents_in_name_order_and_resumes_exactly() {
        let dir = tempfile::tempdir().unwrap();
        let data = dir.path().join("data");
        std::fs::create_dir_all(&data).unwrap();
        std::fs::write(data.join("b.ndjson"), "{\"n\":3}\n{\"n\":4}\n").unwrap();
        std::fs::write(
            data.join("a.json"),
            "{\n \"records\": [\n {\"n\":1},\n {\"n\":2}\n ]\n}\n",
        )
        .unwrap();
        std::fs::write(data.join(".hidden"), "x").unwrap();
        let store = Arc::new(FileCheckpointStore::open(dir.path().join("cp")).await.unwrap());
        let ctx = SourceContext {
            collector: "t".into(),
            checkpoints: store.clone(),
            status: Default::default(),
            secrets: crate::config::SecretSource::Environment,
            health: Default::default(),
        };
        let spec = ReplaySource {
            paths: vec![data.display().to_string()],
            ..Default::default()
        };
        let mut r = ReplayReader::open(&spec, ctx.clone()).await.unwrap();
        let units = all_units(&mut r).await;
        let payloads: Vec<String> = units
            .iter()
            .map(|u| String::from_utf8_lossy(&u.payload).trim().to_string())
            .collect();
        assert_eq!(payloads, vec!["{\"n\":1}", "{\"n\":2}", "{\"n\":3}", "{\"n\":4}"]);
        assert!(units[1].position.ends_with("a.json@2"));
        assert!(units[2].position.ends_with("b.ndjson@1"));

        store
            .save(
                STREAM,
                &Checkpoint {
                    position: units[2].position.clone(),
                    ..Default::default()
                },
            )
            .await
            .unwrap();
        let mut r = ReplayReader::open(&spec, ctx).await.unwrap();
        let rest = all_units(&mut r).await;
        assert_eq!(rest.len(), 1);
        assert_eq!(String::from_utf8_lossy(&rest[0].payload).trim(), "{\"n\":4}");
    }

    #[tokio::test]
    async fn long_lines_are_read_one_by_one_not_as_a_document() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("long.ndjson");
        let line = format!("{{\"records\":[{{\"pad\":\"{}\"}}]}}\n", "x".repeat(20_000));
        std::fs::write(&file, line.repeat(3)).unwrap();
        let store = Arc::new(FileCheckpointStore::open(dir.path().join("cp")).await.unwrap());
        let spec = ReplaySource {
            paths: vec![file.display().to_string()],
            ..Default::default()
        };
        let mut r = ReplayReader::open(
            &spec,
            SourceContext {
                collector: "t".into(),
                checkpoints: store,
                status: Default::default(),
                secrets: crate::config::SecretSource::Environment,
                health: Default::default(),
            },
        )
        .await
        .unwrap();
        let units = all_units(&mut r).await;
        assert_eq!(units.len(), 3);
        assert!(units[2].position.ends_with("long.ndjson@3"));
        // One unit per line, without its line terminator (the record's bytes, as dead letters keep them).
        assert_eq!(units[0].payload.len(), line.trim_end().len());
    }

    #[test]
    fn positions_parse() {
        assert_eq!(parse_position("/a/b@c.json@12"), Some(("/a/b@c.json", 12)));
        assert_eq!(parse_position("nope"), None);
    }
}
