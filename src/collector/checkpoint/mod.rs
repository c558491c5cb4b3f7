//! Checkpoint stores: where a collector keeps, per stream, how far it has delivered.
//!
//! A *stream* is the unit a source checkpoints independently: an Event Hubs partition, a
//! Management Activity content type, a Graph endpoint, the replay. Its [`Checkpoint`] is an
//! opaque position string the source understands (sequence number, cursor, `file@line`) plus an
//! optional small state blob (e.g. the ids recently seen by an API source, to drop overlap).
//!
//! Adding a store (`lease.rs` for Kubernetes Leases, `blob.rs` for the Azure SDK blob layout):
//! implement [`CheckpointStore`] in its own module and add one arm to [`open`]. Ownership of
//! partitions (who reads what) is a separate concern of the Event Hubs source, not of this trait.
//!
//! # Event Hubs checkpoints (the contract between the Event Hubs source and the stores)
//! `stream` is the partition id (`"0"`, `"1"`, ...); the store knows namespace, hub and consumer
//! group from its own configuration. `position` is the event's service `offset` (as the service
//! sends it, a string); `state` is `{"sequenceNumber": <i64>, "enqueuedTime": "<RFC 3339>"}`. The
//! Blob store writes them as the Azure SDKs do (metadata `offset`, `sequencenumber`), the Lease
//! store as Lease annotations, so both read back what other Event Hubs readers wrote.

pub mod blob;
pub mod file;
pub mod lease;
pub mod ownership;

use std::sync::Arc;

use async_trait::async_trait;
use serde::{Deserialize, Serialize};

use crate::config::{CheckpointConfig, SecretSource, SourceConfig};

/// Largest checkpoint a store accepts: position plus state as JSON. A Lease holds 256 KiB of
/// annotations in total, and the API sources keep their state under
/// [`crate::collector::sources::delivered::STATE_BUDGET_BYTES`], so a checkpoint above this is a
/// bug to report, not something to truncate: the store refuses it ([`CheckpointError::TooLarge`])
/// and the stream's checkpoint stays where it was (shown in the collector report and the
/// `siembridge_collector_checkpoint_failures_total` metric).
pub const MAX_STATE_BYTES: usize = 192 * 1024;

/// How far one stream has been delivered.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Checkpoint {
    /// Position after the last acknowledged unit, in the source's own format.
    pub position: String,
    /// Small source state kept with the position (a few KB; at most [`MAX_STATE_BYTES`]).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub state: Option<serde_json::Value>,
    /// RFC 3339 time the checkpoint was written.
    #[serde(default)]
    pub updated: String,
}

/// Why a checkpoint could not be read or written.
#[derive(Debug, thiserror::Error)]
pub enum CheckpointError {
    #[error("checkpoint store {store}: {source}")]
    Io {
        store: String,
        #[source]
        source: std::io::Error,
    },
    #[error("checkpoint of stream {stream:?} is corrupt: {message}")]
    Corrupt { stream: String, message: String },
    #[error("checkpoint store kind {0} is not available in this collector yet")]
    Unsupported(&'static str),
    #[error("checkpoint of stream {stream:?} is {bytes} bytes, over the {limit}-byte limit: not written")]
    TooLarge { stream: String, bytes: usize, limit: usize },
}

impl Checkpoint {
    /// Bytes of position and state as stored.
    pub fn size(&self) -> usize {
        self.position.len() + self.state.as_ref().map_or(0, |s| s.to_string().len())
    }

    /// [`CheckpointError::TooLarge`] when over [`MAX_STATE_BYTES`].
    pub fn check_size(&self, stream: &str) -> Result<(), CheckpointError> {
        let bytes = self.size();
        if bytes > MAX_STATE_BYTES {
            return Err(CheckpointError::TooLarge {
                stream: stream.to_string(),
                bytes,
                limit: MAX_STATE_BYTES,
            });
        }
        Ok(())
    }
}

/// A store of per-stream checkpoints. Implementations must make `save` atomic: after a crash,
/// `load` returns either the previous or the new checkpoint, never a torn one.
#[async_trait]
pub trait CheckpointStore: Send + Sync {
    /// The checkpoint of `stream`, or `None` when the stream was never checkpointed.
    async fn load(&self, stream: &str) -> Result<Option<Checkpoint>, CheckpointError>;
    /// Replace the checkpoint of `stream`.
    async fn save(&self, stream: &str, checkpoint: &Checkpoint) -> Result<(), CheckpointError>;
    /// A short description for logs (`file:/path`, `lease:ns/prefix`).
    fn describe(&self) -> String;
    /// Where partitioned sources (Event Hubs) keep who reads which partition, when this store
    /// can hold it beside the checkpoints.
    fn partition_ownership(&self) -> Option<Arc<dyn ownership::PartitionOwnership>> {
        None
    }
}

/// Open the store a collector configuration names. The Blob store keeps Event Hubs checkpoints
/// under the hub's namespace, hub and consumer group, so it needs the `source` it checkpoints.
pub async fn open(
    config: &CheckpointConfig,
    source: &SourceConfig,
    secrets: &SecretSource,
) -> Result<Arc<dyn CheckpointStore>, CheckpointError> {
    match config {
        CheckpointConfig::File { dir } => Ok(Arc::new(file::FileCheckpointStore::open(dir).await?)),
        CheckpointConfig::Kubernetes {
            namespace,
            lease_prefix,
            owner,
        } => Ok(Arc::new(
            lease::LeaseStore::connect(namespace, lease_prefix)
                .await?
                .owned_by(owner.clone()),
        )),
        CheckpointConfig::AzureBlob(spec) => match source {
            SourceConfig::EventHub { spec: cg, .. } => Ok(Arc::new(blob::BlobCheckpointStore::from_spec(
                spec,
                &cg.event_hub,
                secrets,
            )?)),
            _ => Err(CheckpointError::Unsupported(
                "azureBlob (the Azure SDK blob layout holds Event Hubs checkpoints only)",
            )),
        },
    }
}
