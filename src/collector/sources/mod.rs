//! Sources: where records come from, and how far they have been read.
//!
//! A source yields [`SourceBatch`]es of [`SourceUnit`]s. A unit is what the source checkpoints as
//! a whole (an Event Hubs event, a replay line, an O365 content blob): its payload is decoded by
//! the pipeline (envelopes, arrays, NDJSON) and its `position` is saved once every record of it
//! is acknowledged by every destination. Units of one stream must be yielded in order.
//!
//! Back-pressure is free: the pipeline only asks for the next batch when the previous one is in
//! the destination buffers, so a source that reads only in `next_batch` slows down on its own
//! (an Event Hubs source grants AMQP credit there, an API source polls there).
//!
//! # Adding a source (e.g. the Management Activity API)
//! 1. Create `sources/management_activity.rs` with a struct built from its config. On start, read
//!    each stream's [`Checkpoint`](crate::collector::checkpoint::Checkpoint) from
//!    [`SourceContext::checkpoints`]; keep small state (recently seen ids) in
//!    [`SourceUnit::state`], it is saved with the position.
//! 2. Implement [`Source::next_batch`]; return `Ok(None)` only if the source has a natural end.
//!    Transient errors are retried inside (honour `Retry-After`); return `Err` for what needs a
//!    human.
//! 3. Add one arm to [`build`]. Tests beside the module against a local stand-in API.

pub mod api;
pub mod blob;
pub mod delivered;
pub mod eventhub;
pub mod graph;
pub mod graph_audit_query;
pub mod management_activity;
pub mod replay;

use std::sync::Arc;

use async_trait::async_trait;
use bytes::Bytes;

use crate::collector::checkpoint::{CheckpointError, CheckpointStore};
use crate::config::{PartitionReport, SecretSource, SourceConfig};
use crate::normalize::SourceHint;

/// What a source knows about the records it yields; helps recognition.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub enum RecordOrigin {
    #[default]
    Unknown,
    /// Azure diagnostic-settings or Defender streaming records.
    Diagnostic,
    /// Management Activity API records of this content type.
    ManagementActivity(String),
    /// Graph objects of this endpoint.
    Graph(String),
    /// Records of siembridge's own `azureBlob` archive: they carry their ids.
    Archive,
}

impl RecordOrigin {
    /// As the normalizer's hint.
    pub fn hint(&self) -> SourceHint<'_> {
        match self {
            RecordOrigin::Unknown => SourceHint::Unknown,
            RecordOrigin::Diagnostic => SourceHint::Diagnostic,
            RecordOrigin::ManagementActivity(c) => SourceHint::ManagementActivity(c),
            RecordOrigin::Graph(e) => SourceHint::Graph(e),
            RecordOrigin::Archive => SourceHint::Unknown,
        }
    }
}

/// One checkpointable unit.
#[derive(Clone, Debug)]
pub struct SourceUnit {
    /// Bytes to decode.
    pub payload: Bytes,
    /// Position to checkpoint once the unit is fully acknowledged.
    pub position: String,
    /// Source state to save with the position, if the source keeps one. Shared, and rendered
    /// only when a checkpoint is written (see [`crate::collector::ack::UnitState`]).
    pub state: Option<crate::collector::ack::SharedState>,
    /// Stable, globally unique id of the unit (Event Hubs: `namespace/hub/partition/sequence`);
    /// a record without an id of its own gets `{id}/{index in the unit}`. `None`: the runtime
    /// uses `{stream}/{position}#{index}`.
    pub id: Option<Arc<str>>,
}

/// Units of one stream, in order.
#[derive(Clone, Debug)]
pub struct SourceBatch {
    /// Stream id (checkpoint key): partition, content type, `replay`.
    pub stream: String,
    pub origin: RecordOrigin,
    pub units: Vec<SourceUnit>,
}

/// Why a source stopped.
#[derive(Debug, thiserror::Error)]
pub enum SourceError {
    #[error("{0}")]
    Checkpoint(#[from] CheckpointError),
    #[error("{path}: {source}")]
    Io {
        path: String,
        #[source]
        source: std::io::Error,
    },
    #[error("source kind {0} is not available in this collector yet")]
    NotYetSupported(&'static str),
    #[error("{0}")]
    Invalid(String),
    /// The source API refused or stayed unreachable; the message names the AADSTS or API code.
    #[error("{0}")]
    Api(#[from] api::ApiError),
}

/// What a source gets from the runtime.
#[derive(Clone)]
pub struct SourceContext {
    /// Name of the collector (for logs).
    pub collector: String,
    /// Where the source reads its start positions.
    pub checkpoints: Arc<dyn CheckpointStore>,
    /// What the source tells the report (connection, throttling, data loss, backfill, lag).
    pub status: Arc<SourceStatus>,
    /// Where Secret values (credentials) are read from.
    pub secrets: SecretSource,
    /// What the source reports while it runs (shown in the collector report).
    pub health: Arc<SourceHealth>,
}

/// Progress a polled source publishes for the collector report; the runtime copies it into
/// every LogSource it feeds.
#[derive(Debug, Default)]
pub struct SourceStatus {
    progress: std::sync::Mutex<SourceProgress>,
    requests: std::sync::atomic::AtomicU64,
    data_loss_seconds: Option<prometheus::IntCounterVec>,
}

/// A snapshot of [`SourceStatus`].
#[derive(Clone, Debug, Default, PartialEq)]
pub struct SourceProgress {
    /// Last answer of the source API: reachable and accepting the credentials.
    pub connected: Option<bool>,
    /// When the API last throttled a request.
    pub last_throttled: Option<std::time::Instant>,
    /// Ranges that could not be collected.
    pub data_loss: Vec<crate::api::LostRange>,
    /// Backfill progress, 0 to 100.
    pub backfill_percent: Option<i32>,
    /// Seconds the slowest stream's cursor is behind now.
    pub lag_seconds: Option<i64>,
    /// Blob sources: blobs read so far.
    pub blobs_read: Option<u64>,
    /// Blob sources: bytes read so far.
    pub bytes_read: Option<u64>,
}

/// How long a throttling answer keeps `Throttled` set.
pub const THROTTLED_FOR: std::time::Duration = std::time::Duration::from_secs(120);

impl SourceStatus {
    /// A status whose data-loss seconds are also counted in `metric` (label `stream`).
    pub fn with_metric(metric: prometheus::IntCounterVec) -> Self {
        SourceStatus {
            data_loss_seconds: Some(metric),
            ..Default::default()
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, SourceProgress> {
        self.progress.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// A copy of the progress.
    pub fn snapshot(&self) -> SourceProgress {
        self.lock().clone()
    }

    /// Whether a request was throttled lately.
    pub fn is_throttled(&self) -> bool {
        self.lock().last_throttled.is_some_and(|t| t.elapsed() < THROTTLED_FOR)
    }

    pub fn set_connected(&self, connected: bool) {
        self.lock().connected = Some(connected);
    }

    pub fn throttled(&self) {
        self.lock().last_throttled = Some(std::time::Instant::now());
    }

    /// Record a lost range; never silent: logged, counted, reported.
    pub fn data_loss(&self, range: crate::api::LostRange) {
        let seconds = match (
            chrono::DateTime::parse_from_rfc3339(&range.from),
            chrono::DateTime::parse_from_rfc3339(&range.to),
        ) {
            (Ok(a), Ok(b)) => (b - a).num_seconds().max(0) as u64,
            _ => 0,
        };
        tracing::error!(stream = %range.stream, from = %range.from, to = %range.to, reason = %range.reason,
            "records lost: this range could not be collected");
        if let Some(m) = &self.data_loss_seconds {
            m.with_label_values(&[&range.stream]).inc_by(seconds);
        }
        let mut p = self.lock();
        if !p.data_loss.contains(&range) {
            p.data_loss.push(range);
        }
    }

    pub fn set_backfill(&self, percent: Option<i32>, lag_seconds: Option<i64>) {
        let mut p = self.lock();
        p.backfill_percent = percent;
        p.lag_seconds = lag_seconds;
    }

    /// Blobs and bytes a Blob source has read so far.
    pub fn set_blob_reads(&self, blobs: u64, bytes: u64) {
        let mut p = self.lock();
        p.blobs_read = Some(blobs);
        p.bytes_read = Some(bytes);
    }

    pub fn count_request(&self) {
        self.requests.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    }

    /// Requests sent to the source API so far.
    pub fn requests(&self) -> u64 {
        self.requests.load(std::sync::atomic::Ordering::Relaxed)
    }
}

/// Live state a source shares with the collector report: an error that keeps it from reading
/// (it keeps retrying) and, for partitioned sources, per-partition progress.
#[derive(Debug, Default)]
pub struct SourceHealth {
    error: std::sync::Mutex<Option<String>>,
    partitions: std::sync::Mutex<std::collections::BTreeMap<String, PartitionReport>>,
}

impl SourceHealth {
    /// Set or clear the current error.
    pub fn set_error(&self, error: Option<String>) {
        *self.error.lock().unwrap_or_else(|p| p.into_inner()) = error;
    }
    /// The current error.
    pub fn error(&self) -> Option<String> {
        self.error.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }
    /// Replace the per-partition progress.
    pub fn set_partitions(&self, partitions: std::collections::BTreeMap<String, PartitionReport>) {
        *self.partitions.lock().unwrap_or_else(|p| p.into_inner()) = partitions;
    }
    /// Per-partition progress.
    pub fn partitions(&self) -> std::collections::BTreeMap<String, PartitionReport> {
        self.partitions.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }
}

/// A source of records.
#[async_trait]
pub trait Source: Send {
    /// Short kind name for metrics and logs (`replay`, `eventHub`).
    fn kind(&self) -> &'static str;
    /// The next batch; `Ok(None)` when the source is finished.
    async fn next_batch(&mut self) -> Result<Option<SourceBatch>, SourceError>;
    /// Called once after the last checkpoint is written: release shared resources (partition
    /// ownership) so other replicas take over at once.
    async fn close(&mut self) {}
}

/// Build the source a collector config names. The one registration point of source kinds.
/// Whether this collector can run a source of this kind: the one place that says so. Rendering
/// ([`crate::render::render_log_source`]) refuses the others, so the operator shows a
/// `SourceNotSupported` condition and `siembridge run` stops before starting anything, instead of a
/// collector that fails at start and crash-loops. A new source kind: its arm in [`build`], and
/// `true` here.
pub fn supports(config: &SourceConfig) -> bool {
    match config {
        SourceConfig::EventHub { .. }
        | SourceConfig::ManagementActivityApi(_)
        | SourceConfig::Graph(_)
        | SourceConfig::Replay(_)
        | SourceConfig::AzureBlob(_) => true,
    }
}

pub async fn build(
    config: &SourceConfig,
    secrets: &crate::config::SecretSource,
    ctx: SourceContext,
) -> Result<Box<dyn Source>, SourceError> {
    match config {
        SourceConfig::Replay(spec) => Ok(Box::new(replay::ReplayReader::open(spec, ctx).await?)),
        SourceConfig::ManagementActivityApi(spec) => match spec.api {
            crate::api::AuditApi::ManagementActivity => Ok(Box::new(
                management_activity::ManagementActivityReader::open(spec, secrets, ctx).await?,
            )),
            crate::api::AuditApi::GraphAuditLogQuery => Ok(Box::new(
                graph_audit_query::AuditLogQueryReader::open(spec, secrets, ctx).await?,
            )),
        },
        SourceConfig::Graph(spec) => Ok(Box::new(graph::GraphReader::open(spec, secrets, ctx).await?)),
        SourceConfig::EventHub { consumer_group, spec } => Ok(Box::new(eventhub::EventHubSource::open(
            consumer_group,
            spec,
            secrets,
            ctx,
        )?)),
        SourceConfig::AzureBlob(spec) => Ok(Box::new(blob::BlobReader::open(spec, secrets, ctx).await?)),
    }
}
