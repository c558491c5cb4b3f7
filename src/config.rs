//! The collector configuration: the contract between the operator (or the standalone mode),
//! which renders it from the resources, and the collector, which runs it.
//!
//! It is one serde type, versioned by [`CONFIG_VERSION`], stored in a ConfigMap as YAML. It holds
//! no secret value: it names Secret keys, and [`SecretSource`] says where the collector finds
//! them (files mounted by the operator, or environment variables in standalone mode).

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::api::{
    BlobCheckpointStore, BlobSource, ConsumerGroupSpec, GraphSource, LostRange, ManagementActivitySource, RecordFilter,
    ReplaySource, SecretKeySelector, SiemDestinationSpec,
};

/// Version of the configuration format. A collector refuses a config of another version.
pub const CONFIG_VERSION: &str = "siembridge.io/collector-config/v1";

/// Everything one collector process runs: one source, the LogSources fed from it, and their
/// destinations.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct CollectorConfig {
    /// Always [`CONFIG_VERSION`].
    pub version: String,
    /// Name of the collector (also its Deployment, ConfigMap and Lease prefix).
    pub collector: String,
    /// Namespace of the resources it was rendered from.
    pub namespace: String,
    /// The one source this collector reads.
    pub source: SourceConfig,
    /// The LogSources fed from the source: which records each takes and where they go.
    pub routes: Vec<Route>,
    /// Destinations by SiemDestination name.
    pub destinations: BTreeMap<String, SiemDestinationSpec>,
    /// Where ownership and checkpoints are kept.
    pub checkpoint: CheckpointConfig,
    /// Where Secret values are read from.
    pub secrets: SecretSource,
    /// Where permanently rejected records go.
    pub dead_letter: DeadLetterConfig,
    /// Metrics and health endpoint.
    #[serde(default)]
    pub telemetry: TelemetryConfig,
    /// Where the collector reports progress for the operator to show in status.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub report: Option<ReportTarget>,
}

/// The source a collector reads.
// One value per collector, read once: the size difference between variants costs nothing.
#[allow(clippy::large_enum_variant)]
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", tag = "kind")]
pub enum SourceConfig {
    /// A ConsumerGroup; its records are routed by category to the LogSources that name it.
    #[serde(rename_all = "camelCase")]
    EventHub {
        /// Name of the ConsumerGroup resource.
        consumer_group: String,
        /// Its spec.
        spec: ConsumerGroupSpec,
    },
    /// The Office 365 Management Activity API (or the Graph audit log query API).
    ManagementActivityApi(ManagementActivitySource),
    /// Microsoft Graph endpoints.
    Graph(GraphSource),
    /// Diagnostic-settings archives in Blob Storage.
    AzureBlob(BlobSource),
    /// Recorded files; paths are absolute once rendered.
    Replay(ReplaySource),
}

impl SourceConfig {
    pub fn kind_name(&self) -> &'static str {
        match self {
            SourceConfig::EventHub { .. } => "eventHub",
            SourceConfig::ManagementActivityApi(_) => "managementActivityApi",
            SourceConfig::Graph(_) => "graph",
            SourceConfig::AzureBlob(_) => "azureBlob",
            SourceConfig::Replay(_) => "replay",
        }
    }
}

/// One LogSource fed from the collector's source.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Route {
    /// Name of the LogSource.
    pub log_source: String,
    /// Categories taken from a shared source (Event Hub); empty takes all.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub categories: Vec<String>,
    /// Further filtering of records.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub filter: Option<RecordFilter>,
    /// Names of the destinations (keys of [`CollectorConfig::destinations`]).
    pub destinations: Vec<String>,
}

/// Where checkpoints are kept.
#[allow(clippy::large_enum_variant)]
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", tag = "kind")]
pub enum CheckpointConfig {
    /// One file per stream under `dir`, written atomically (standalone mode).
    File { dir: String },
    /// One Lease per partition or stream, named `<leasePrefix>-<stream>`.
    #[serde(rename_all = "camelCase")]
    Kubernetes { namespace: String, lease_prefix: String },
    /// Blobs in the Azure SDK event processor layout.
    AzureBlob(BlobCheckpointStore),
}

/// Where the collector finds Secret values.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", tag = "kind")]
pub enum SecretSource {
    /// Files `<dir>/<secret name>/<key>`, as the operator mounts them.
    Mounted { dir: String },
    /// Environment variables `SIEMBRIDGE_SECRET_<NAME>_<KEY>` (upper case, every character that
    /// is not a letter or digit replaced by `_`), for standalone mode.
    Environment,
}

impl SecretSource {
    /// Directory the operator mounts Secrets under in collector pods.
    pub const MOUNT_DIR: &'static str = "/var/run/secrets/siembridge";

    /// Name of the environment variable that holds a Secret key in standalone mode.
    pub fn env_var_name(selector: &SecretKeySelector) -> String {
        let clean = |s: &str| -> String {
            s.chars()
                .map(|c| {
                    if c.is_ascii_alphanumeric() {
                        c.to_ascii_uppercase()
                    } else {
                        '_'
                    }
                })
                .collect()
        };
        format!("SIEMBRIDGE_SECRET_{}_{}", clean(&selector.name), clean(&selector.key))
    }
}

/// The dead-letter sink: NDJSON files of rejected records with the reason.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct DeadLetterConfig {
    /// Directory of the dead-letter files.
    pub dir: String,
    /// Size at which a dead-letter file is rotated.
    #[serde(default = "DeadLetterConfig::default_max_file_bytes")]
    pub max_file_bytes: u64,
}

impl DeadLetterConfig {
    fn default_max_file_bytes() -> u64 {
        64 * 1024 * 1024
    }

    pub fn in_dir(dir: impl Into<String>) -> Self {
        DeadLetterConfig {
            dir: dir.into(),
            max_file_bytes: Self::default_max_file_bytes(),
        }
    }
}

/// The metrics and health endpoint.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct TelemetryConfig {
    /// Address of `/metrics` and `/healthz`, e.g. `0.0.0.0:9464`; none when unset.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub listen: Option<String>,
}

/// Where a collector publishes its [`CollectorReport`].
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", tag = "kind")]
pub enum ReportTarget {
    /// Key `report.json` of a ConfigMap the collector may update.
    #[serde(rename_all = "camelCase")]
    ConfigMap { namespace: String, name: String },
    /// A JSON file (standalone mode).
    File { path: String },
}

/// Progress a collector publishes; the operator turns it into LogSource and ConsumerGroup status.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct CollectorReport {
    /// Pod (or process) that wrote the report.
    pub reporter: String,
    /// RFC 3339 time of the report.
    pub time: String,
    /// Per LogSource.
    #[serde(default)]
    pub log_sources: BTreeMap<String, LogSourceReport>,
    /// Per destination.
    #[serde(default)]
    pub destinations: BTreeMap<String, DestinationReport>,
    /// Per partition this collector reads (Event Hubs), by partition id.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub partitions: BTreeMap<String, PartitionReport>,
}

/// Progress of one Event Hubs partition as its current reader sees it.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct PartitionReport {
    /// Replica reading the partition.
    pub owner: String,
    /// Sequence number of the last event handed to the pipeline.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub read_sequence_number: Option<i64>,
    /// Sequence number of the last event in the partition (service side).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_enqueued_sequence_number: Option<i64>,
    /// Enqueued time (RFC 3339) of the last event in the partition.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_enqueued_time: Option<String>,
}

/// Progress of one LogSource.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct LogSourceReport {
    pub events_forwarded: u64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_event_time: Option<String>,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub cursors: BTreeMap<String, String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub lag_seconds: Option<i64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub source_error: Option<String>,
    #[serde(default)]
    pub throttled: bool,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub data_loss: Vec<LostRange>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub backfill_percent: Option<i32>,
}

/// Health of one destination as the collector sees it.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct DestinationReport {
    pub healthy: bool,
    pub events_sent: u64,
    pub events_dead_lettered: u64,
    pub queue_depth: u64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_success_time: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_error: Option<String>,
}
