//! `azureBlob`: archives in Azure Blob Storage read incrementally (docs/PROTOCOLS.md, Blob
//! section).
//!
//! Each container is one stream, read by its own task; the tasks share one client whose calls in
//! flight are bounded by `concurrency` ([`lister::BlobCalls`]) and one bounded channel of
//! batches, so a slow destination stops the reads.
//!
//! **Diagnostic settings** (`format: diagnosticSettings`): Azure Monitor appends one JSON record
//! per line to the hourly append blob `<root>y=YYYY/m=MM/d=DD/h=HH/m=00/PT1H.json` of each
//! resource root. A container's cursor ([`cursor::HourCursor`]) is the first hour not closed and
//! the byte offset reached in each blob of the open hours. Each poll lists the roots (one call
//! grouped at `/y=`), then each hour from the cursor to now by its prefix, and reads every blob
//! from its offset to its listed length with ranged Get Blob calls: a blob that grew is read
//! again from where it stopped, a partial last line is left for the next read. Units are cut at
//! line ends and carry the offsets reached after them, so the checkpoint (saved only once a
//! unit and all units before it are delivered or durably dead-lettered) never passes a record
//! that was not. An hour closes once it ended `overlapMinutes` ago and its blobs are read to
//! their end (then a final line without newline counts). Records get the id
//! `<container>/<blob>@<offset of their unit>/<index in the unit>`.
//!
//! **siembridge archives** (`format: siembridgeArchive`): the objects the `azureBlob`
//! destination wrote under `prefix`, immutable, each read whole (gunzipped) as one unit, in name
//! order; the checkpoint is the name of the last object delivered. Records keep their own ids
//! (`event.id` of ECS, `Id`, `id`) so an idempotent destination does not duplicate a replay;
//! other records get `<container>/<object>/<index>`, stable since objects never change. Once
//! every object is read the source waits (a replay has no more to do).
//!
//! With `to` set, a container stops once its cursor reaches `to`; the source then idles (the
//! report shows backfill 100 %) instead of exiting, so a pod is not restarted in a loop.

pub mod cursor;
pub mod lister;
pub mod reader;

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use chrono::{DateTime, TimeDelta, Utc};
use tokio::sync::{mpsc, Semaphore};

use self::cursor::{hour_of, hour_path, hour_text, HourCursor};
use self::lister::BlobCalls;
use self::reader::{archive_text, whole_lines, READ_BYTES};
use super::{RecordOrigin, Source, SourceBatch, SourceContext, SourceError, SourceUnit};
use crate::api::{BlobFormat, BlobSource};
use crate::collector::azure_blob::{BlobError, BlobItem, BlobService};
use crate::collector::sources::api::parse_time;
use crate::config::SecretSource;

/// Units per batch handed to the pipeline.
const UNITS_PER_BATCH: usize = 16;

/// The Blob source.
pub struct BlobReader {
    batches: mpsc::Receiver<Result<SourceBatch, SourceError>>,
    _tasks: tokio::task::JoinSet<()>,
}

impl std::fmt::Debug for BlobReader {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("BlobReader").finish_non_exhaustive()
    }
}

/// What the container tasks share.
struct Shared {
    calls: BlobCalls,
    prefix: String,
    overlap: TimeDelta,
    interval: Duration,
    to: Option<DateTime<Utc>>,
    progress: Progress,
    batches: mpsc::Sender<Result<SourceBatch, SourceError>>,
}

/// Progress of every container, published to the report.
#[derive(Default)]
struct Progress {
    containers: Mutex<BTreeMap<String, ContainerProgress>>,
    blobs: AtomicU64,
    bytes: AtomicU64,
}

#[derive(Clone, Copy, Default)]
struct ContainerProgress {
    start: Option<DateTime<Utc>>,
    cursor: Option<DateTime<Utc>>,
    /// Newest hour with a blob.
    newest: Option<DateTime<Utc>>,
    /// Hour being read now; `None` once a poll read every blob it listed.
    reading: Option<DateTime<Utc>>,
    done: bool,
}

impl Progress {
    fn update(&self, container: &str, f: impl FnOnce(&mut ContainerProgress)) {
        let mut m = self.containers.lock().unwrap_or_else(|p| p.into_inner());
        f(m.entry(container.to_string()).or_default());
    }

    /// Publish backfill percent, lag behind the newest blob and blobs / bytes read.
    fn publish(&self, status: &super::SourceStatus, to: Option<DateTime<Utc>>) {
        let m = self.containers.lock().unwrap_or_else(|p| p.into_inner());
        let now = hour_of(Utc::now());
        let mut lag: Option<i64> = None;
        let mut percent: Option<i32> = None;
        for p in m.values() {
            let (Some(start), Some(cursor)) = (p.start, p.cursor) else {
                continue;
            };
            // Behind the newest blob: from the hour being read to the newest hour with a blob
            // (0 once a poll read every blob it listed, even while the last hours stay open).
            let behind = match (p.reading, p.newest) {
                (Some(r), Some(n)) => (n - r).num_seconds().max(0),
                _ => 0,
            };
            lag = Some(lag.map_or(behind, |l| l.max(behind)));
            let end = to.map_or(now, |t| t.min(now + TimeDelta::hours(1)));
            let pc = if p.done || end <= start {
                100
            } else {
                (((cursor - start).num_seconds().max(0) * 100) / (end - start).num_seconds().max(1)).min(100) as i32
            };
            percent = Some(percent.map_or(pc, |x| x.min(pc)));
        }
        status.set_backfill(percent, lag);
        status.set_blob_reads(self.blobs.load(Ordering::Relaxed), self.bytes.load(Ordering::Relaxed));
    }
}

impl BlobReader {
    /// Build the client, read each container's checkpoint and start reading.
    pub async fn open(spec: &BlobSource, secrets: &SecretSource, ctx: SourceContext) -> Result<Self, SourceError> {
        spec.validate().map_err(|e| SourceError::Invalid(e.to_string()))?;
        let service = BlobService::from_credentials(&spec.account_url, &spec.credentials, secrets)
            .map_err(|e| SourceError::Invalid(e.to_string()))?;
        let now = Utc::now();
        let from = match &spec.from {
            Some(f) => parse_time(f).ok_or_else(|| SourceError::Invalid(format!("from {f:?} is not a time")))?,
            None => now - TimeDelta::hours(i64::from(spec.polling.backfill_hours)),
        };
        let to = spec.to.as_deref().and_then(parse_time);
        let concurrency = spec.concurrency.max(1) as usize;
        let (tx, rx) = mpsc::channel(concurrency * 2);
        let shared = Arc::new(Shared {
            calls: BlobCalls {
                service,
                in_flight: Semaphore::new(concurrency),
                status: ctx.status.clone(),
                health: ctx.health.clone(),
            },
            prefix: spec.prefix.clone().unwrap_or_default(),
            overlap: TimeDelta::minutes(i64::from(spec.polling.overlap_minutes)),
            interval: Duration::from_secs(u64::from(spec.polling.interval_seconds.max(1))),
            to,
            progress: Progress::default(),
            batches: tx,
        });
        let mut tasks = tokio::task::JoinSet::new();
        for container in spec.all_containers() {
            let saved = ctx.checkpoints.load(&container).await?;
            tracing::info!(collector = %ctx.collector, container, checkpoint = ?saved.as_ref().map(|c| &c.position), "container starts");
            let sh = shared.clone();
            match spec.format {
                BlobFormat::DiagnosticSettings => {
                    let cursor = match &saved {
                        Some(cp) => HourCursor::from_checkpoint(&container, cp).map_err(SourceError::Invalid)?,
                        None => HourCursor::at(from),
                    };
                    sh.progress.update(&container, |p| {
                        p.start = Some(cursor.hour);
                        p.cursor = Some(cursor.hour);
                    });
                    tasks.spawn(async move {
                        if let Err(e) = read_diagnostic(&sh, &container, cursor).await {
                            let _ = sh.batches.send(Err(e)).await;
                        }
                    });
                }
                BlobFormat::SiembridgeArchive => {
                    let after = saved.map(|c| c.position).unwrap_or_default();
                    tasks.spawn(async move {
                        if let Err(e) = read_archive(&sh, &container, after).await {
                            let _ = sh.batches.send(Err(e)).await;
                        }
                    });
                }
            }
        }
        Ok(BlobReader {
            batches: rx,
            _tasks: tasks,
        })
    }
}

#[async_trait]
impl Source for BlobReader {
    fn kind(&self) -> &'static str {
        "azureBlob"
    }

    async fn next_batch(&mut self) -> Result<Option<SourceBatch>, SourceError> {
        match self.batches.recv().await {
            Some(Ok(b)) => Ok(Some(b)),
            Some(Err(e)) => Err(e),
            // Every container is done (`to` reached, archive read): stay up, idle.
            None => std::future::pending().await,
        }
    }
}

fn config_error(e: BlobError) -> SourceError {
    SourceError::Invalid(e.to_string())
}

/// Batches of one container's units, sent when full.
struct Outbox<'a> {
    sh: &'a Shared,
    container: &'a str,
    origin: RecordOrigin,
    units: Vec<SourceUnit>,
}

impl Outbox<'_> {
    async fn push(&mut self, unit: SourceUnit) -> Result<(), SourceError> {
        self.units.push(unit);
        if self.units.len() >= UNITS_PER_BATCH {
            self.flush().await?;
        }
        Ok(())
    }

    async fn flush(&mut self) -> Result<(), SourceError> {
        if self.units.is_empty() {
            return Ok(());
        }
        let batch = SourceBatch {
            stream: self.container.to_string(),
            origin: self.origin.clone(),
            units: std::mem::take(&mut self.units),
        };
        self.sh
            .batches
            .send(Ok(batch))
            .await
            .map_err(|_| SourceError::Invalid("the collector stopped reading".into()))
    }
}

/// Read a diagnostic-settings container for ever (or up to `to`).
async fn read_diagnostic(sh: &Shared, container: &str, mut cursor: HourCursor) -> Result<(), SourceError> {
    let mut out = Outbox {
        sh,
        container,
        origin: RecordOrigin::Diagnostic,
        units: Vec::new(),
    };
    loop {
        let now = Utc::now();
        if sh.to.is_some_and(|to| cursor.hour >= to) {
            sh.progress.update(container, |p| p.done = true);
            sh.progress.publish(&sh.calls.status, sh.to);
            tracing::info!(container, hour = %hour_text(cursor.hour), "container read up to `to`");
            return Ok(());
        }
        let last_hour = match sh.to {
            Some(to) => hour_of(now).min(hour_of(to - TimeDelta::seconds(1))),
            None => hour_of(now),
        };
        let roots = sh.calls.roots(container, &sh.prefix).await.map_err(config_error)?;
        let mut hour = cursor.hour;
        while hour <= last_hour {
            sh.progress.update(container, |p| p.reading = Some(hour));
            let mut blobs: Vec<BlobItem> = Vec::new();
            for root in &roots {
                let prefix = format!("{root}{}", hour_path(hour));
                blobs.extend(sh.calls.list_all(container, &prefix).await.map_err(config_error)?);
            }
            blobs.sort_by(|a, b| a.name.cmp(&b.name));
            if !blobs.is_empty() {
                sh.progress
                    .update(container, |p| p.newest = Some(p.newest.map_or(hour, |n| n.max(hour))));
            }
            // The hour will not grow any more: its blobs are final.
            let closed = hour + TimeDelta::hours(1) + sh.overlap <= now;
            for blob in &blobs {
                read_blob(sh, &mut out, &mut cursor, blob, closed).await?;
            }
            if hour == cursor.hour && closed {
                let names: Vec<String> = blobs.into_iter().map(|b| b.name).collect();
                cursor.close_hour(&names);
                // An empty unit carries the closed hour to the checkpoint.
                out.push(SourceUnit {
                    payload: bytes::Bytes::new(),
                    position: hour_text(cursor.hour),
                    state: Some(cursor.offsets.clone()),
                    id: None,
                })
                .await?;
                sh.progress.update(container, |p| p.cursor = Some(cursor.hour));
            }
            out.flush().await?;
            sh.progress.publish(&sh.calls.status, sh.to);
            hour += TimeDelta::hours(1);
        }
        sh.progress.update(container, |p| p.reading = None);
        sh.progress.publish(&sh.calls.status, sh.to);
        if sh.to.is_some_and(|to| cursor.hour >= to) {
            continue;
        }
        tokio::time::sleep(sh.interval).await;
    }
}

/// Read one blob from its offset to its listed length.
async fn read_blob(
    sh: &Shared,
    out: &mut Outbox<'_>,
    cursor: &mut HourCursor,
    blob: &BlobItem,
    closed: bool,
) -> Result<(), SourceError> {
    let container = out.container;
    let mut offset = cursor.offset(&blob.name);
    let length = blob.content_length;
    if offset > length {
        // Append blobs only grow: this one was replaced. Read it again whole (duplicates are
        // better than a loss) and say so.
        tracing::warn!(container, blob = %blob.name, offset, length, "blob is shorter than its checkpoint: read again from the start");
        offset = 0;
    }
    let mut read_any = false;
    while offset < length {
        let end = length.min(offset + READ_BYTES) - 1;
        let Some(range) = sh
            .calls
            .range(container, &blob.name, offset, end)
            .await
            .map_err(config_error)?
        else {
            sh.calls.status.data_loss(crate::api::LostRange {
                stream: container.to_string(),
                from: hour_text(cursor.hour),
                to: hour_text(cursor.hour + TimeDelta::hours(1)),
                reason: format!(
                    "blob {} was deleted after offset {offset} before it was read",
                    blob.name
                ),
            });
            break;
        };
        read_any = true;
        sh.progress.bytes.fetch_add(range.body.len() as u64, Ordering::Relaxed);
        let reached = offset + range.body.len() as u64;
        let at_end = reached >= range.item.content_length.max(length);
        // A line longer than a whole read cannot be left for later: it goes on (and is
        // dead-lettered as too large).
        let overlong = range.body.len() as u64 >= READ_BYTES && !range.body.contains(&b'\n');
        let (units, next) = whole_lines(offset, &range.body, (closed && at_end) || overlong);
        for (start, payload) in units {
            cursor.set_offset(&blob.name, start + payload.len() as u64);
            out.push(SourceUnit {
                payload,
                position: hour_text(cursor.hour),
                state: Some(cursor.offsets.clone()),
                id: Some(Arc::from(format!("{container}/{}@{start}", blob.name).as_str())),
            })
            .await?;
        }
        if next > offset {
            cursor.set_offset(&blob.name, next);
        }
        if next == offset || range.body.is_empty() {
            break; // only a partial line: wait for the rest
        }
        offset = next;
    }
    if read_any {
        sh.progress.blobs.fetch_add(1, Ordering::Relaxed);
    }
    Ok(())
}

/// Read every archive object under the prefix whose name sorts after `after`, then idle.
async fn read_archive(sh: &Shared, container: &str, after: String) -> Result<(), SourceError> {
    let mut out = Outbox {
        sh,
        container,
        origin: RecordOrigin::Archive,
        units: Vec::new(),
    };
    let mut items = sh.calls.list_all(container, &sh.prefix).await.map_err(config_error)?;
    items.sort_by(|a, b| a.name.cmp(&b.name));
    let todo: Vec<BlobItem> = items.into_iter().filter(|i| i.name > after).collect();
    let total = todo.len().max(1);
    for (n, item) in todo.into_iter().enumerate() {
        let got = sh
            .calls
            .retry("reading an archive object", || {
                sh.service().get_blob(container, &item.name)
            })
            .await
            .map_err(config_error)?;
        let Some((_, body)) = got else {
            sh.calls.status.data_loss(crate::api::LostRange {
                stream: container.to_string(),
                from: item.name.clone(),
                to: item.name.clone(),
                reason: format!("archive object {} was deleted before it was read", item.name),
            });
            continue;
        };
        sh.progress.bytes.fetch_add(body.len() as u64, Ordering::Relaxed);
        sh.progress.blobs.fetch_add(1, Ordering::Relaxed);
        // Not gzip after all: the raw bytes go on and are dead-lettered as undecodable.
        let payload = archive_text(&item.name, body.clone()).unwrap_or_else(|e| {
            tracing::error!(container, error = %e, "archive object is not valid gzip");
            body
        });
        out.push(SourceUnit {
            payload,
            position: item.name.clone(),
            state: None,
            id: Some(Arc::from(format!("{container}/{}", item.name).as_str())),
        })
        .await?;
        sh.calls
            .status
            .set_backfill(Some((((n + 1) * 100) / total) as i32), Some(0));
    }
    out.flush().await?;
    sh.progress.publish(&sh.calls.status, sh.to);
    sh.calls.status.set_backfill(Some(100), Some(0));
    Ok(())
}

impl Shared {
    fn service(&self) -> &BlobService {
        &self.calls.service
    }
}
