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

pub mod eventhub;
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
}

impl RecordOrigin {
    /// As the normalizer's hint.
    pub fn hint(&self) -> SourceHint<'_> {
        match self {
            RecordOrigin::Unknown => SourceHint::Unknown,
            RecordOrigin::Diagnostic => SourceHint::Diagnostic,
            RecordOrigin::ManagementActivity(c) => SourceHint::ManagementActivity(c),
            RecordOrigin::Graph(e) => SourceHint::Graph(e),
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
    /// Source state to save with the position, if the source keeps one.
    pub state: Option<Arc<serde_json::Value>>,
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
}

/// What a source gets from the runtime.
#[derive(Clone)]
pub struct SourceContext {
    /// Name of the collector (for logs).
    pub collector: String,
    /// Where the source reads its start positions.
    pub checkpoints: Arc<dyn CheckpointStore>,
    /// Where Secret values (credentials) are read from.
    pub secrets: SecretSource,
    /// What the source reports while it runs (shown in the collector report).
    pub health: Arc<SourceHealth>,
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
pub async fn build(config: &SourceConfig, ctx: SourceContext) -> Result<Box<dyn Source>, SourceError> {
    match config {
        SourceConfig::Replay(spec) => Ok(Box::new(replay::ReplayReader::open(spec, ctx).await?)),
        SourceConfig::EventHub { consumer_group, spec } => {
            let secrets = ctx.secrets.clone();
            Ok(Box::new(eventhub::EventHubSource::open(
                consumer_group,
                spec,
                &secrets,
                ctx,
            )?))
        }
        other => Err(SourceError::NotYetSupported(other.kind_name())),
    }
}
