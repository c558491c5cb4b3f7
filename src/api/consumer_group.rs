//! `ConsumerGroup`: one reader of one Event Hub consumer group, the physical, scalable unit.

use k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition;
use kube::CustomResource;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::common::{BlobCredentials, CollectorPodTemplate, EntraCredentials, Resources, SecretKeySelector};

/// Reads one consumer group of one Event Hub with `replicas` collector pods that share its
/// partitions. LogSources of kind `eventHub` name it and take the categories they want.
#[derive(CustomResource, Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[kube(
    group = "siembridge.io",
    version = "v1alpha1",
    kind = "ConsumerGroup",
    doc = "One reader of one Azure Event Hub consumer group: collector pods that share the hub's partitions and keep their checkpoints.",
    namespaced,
    status = "ConsumerGroupStatus",
    // `kubectl scale`, the HorizontalPodAutoscaler and KEDA drive `spec.replicas` through this.
    scale(
        spec_replicas_path = ".spec.replicas",
        status_replicas_path = ".status.replicas",
        label_selector_path = ".status.selector"
    ),
    shortname = "cg",
    shortname = "sbcg",
    category = "siembridge",
    printcolumn = r#"{"name":"Hub","type":"string","jsonPath":".spec.eventHub.hubName"}"#,
    printcolumn = r#"{"name":"Ready","type":"string","jsonPath":".status.conditions[?(@.type==\"Ready\")].status"}"#,
    printcolumn = r#"{"name":"Replicas","type":"string","jsonPath":".status.replicasSummary"}"#,
    printcolumn = r#"{"name":"Partitions","type":"string","jsonPath":".status.partitionsSummary"}"#,
    printcolumn = r#"{"name":"Max Lag","type":"integer","jsonPath":".status.maxLagEvents"}"#,
    printcolumn = r#"{"name":"Lag Seconds","type":"integer","jsonPath":".status.maxLagSeconds","priority":1}"#,
    printcolumn = r#"{"name":"Age","type":"date","jsonPath":".metadata.creationTimestamp"}"#
)]
#[serde(rename_all = "camelCase")]
pub struct ConsumerGroupSpec {
    /// The Event Hub and consumer group read.
    pub event_hub: EventHubRef,
    /// How the collector authenticates to Event Hubs.
    pub credentials: EventHubCredentials,
    /// Where reading starts for a partition that has no checkpoint yet.
    #[serde(default)]
    pub start_position: StartPosition,
    /// Collector pods sharing the partitions. Each partition is read by one pod at a time.
    #[serde(default = "ConsumerGroupSpec::default_replicas")]
    #[schemars(range(min = 0, max = 32))]
    pub replicas: i32,
    /// Where partition ownership and checkpoints are kept.
    #[serde(default)]
    pub checkpoint_store: CheckpointStoreSpec,
    /// Keep the partition Leases (`checkpointStore.kind: kubernetes`) when the ConsumerGroup is
    /// deleted, so one re-created under the same name resumes where this one stopped. By default
    /// they are owned by the ConsumerGroup and garbage-collected with it. Blob checkpoints are
    /// never deleted by siembridge.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub keep_checkpoints_on_delete: bool,
    /// Events a partition receiver may have in flight (AMQP link credit). Credit is granted only
    /// as the pipeline accepts events.
    #[serde(default = "ConsumerGroupSpec::default_prefetch")]
    #[schemars(range(min = 1, max = 10000))]
    pub prefetch: u32,
    /// When the consumer group counts as lagging.
    #[serde(default)]
    pub lag_threshold: LagThreshold,
    /// CPU and memory of each collector pod.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub resources: Option<Resources>,
    /// Shape of the collector pods (labels, annotations, pull secrets, scheduling, extra
    /// environment such as a proxy, ServiceAccount annotations); it overrides the chart's
    /// `collectorPod` defaults.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pod_template: Option<CollectorPodTemplate>,
}

impl ConsumerGroupSpec {
    fn default_replicas() -> i32 {
        1
    }
    fn default_prefetch() -> u32 {
        300
    }

    /// Every Secret key this consumer group reads.
    pub fn secret_refs(&self) -> Vec<&SecretKeySelector> {
        let mut refs: Vec<&SecretKeySelector> = self.credentials.connection_string.iter().collect();
        if let Some(e) = &self.credentials.entra {
            refs.extend(e.secret_refs());
        }
        if let Some(b) = &self.checkpoint_store.azure_blob {
            refs.extend(b.credentials.secret_refs());
        }
        refs
    }
}

/// An Event Hub consumer group.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct EventHubRef {
    /// Fully qualified namespace, e.g. `contoso-ns.servicebus.windows.net`.
    #[schemars(length(min = 1, max = 253), regex(pattern = r"^[A-Za-z0-9.-]+(:[0-9]+)?$"))]
    pub fully_qualified_namespace: String,
    /// Event Hub (entity) name.
    #[schemars(length(min = 1, max = 256))]
    pub hub_name: String,
    /// Consumer group name; `$Default` when unset. Give every SIEM reader its own.
    #[serde(default = "EventHubRef::default_consumer_group")]
    #[schemars(length(min = 1, max = 50))]
    pub consumer_group: String,
    /// Custom endpoint (e.g. `amqps://host:5671` behind a private link, or a local emulator).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(regex(pattern = r"^(amqps?|sb)://"))]
    pub custom_endpoint: Option<String>,
}

impl EventHubRef {
    fn default_consumer_group() -> String {
        "$Default".to_string()
    }
}

/// Event Hubs credentials. Exactly one is set.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
#[schemars(extend("x-kubernetes-validations" = [
    {"rule": "has(self.connectionString) != has(self.entra)",
     "message": "set exactly one of connectionString or entra"}
]))]
pub struct EventHubCredentials {
    /// Secret key holding a SAS connection string with Listen rights (with or without
    /// `EntityPath`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub connection_string: Option<SecretKeySelector>,
    /// Entra app with the Azure Event Hubs Data Receiver role.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub entra: Option<EntraCredentials>,
}

/// Where to start reading a partition without a checkpoint.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
#[schemars(extend("x-kubernetes-validations" = [
    {"rule": "(has(self.from) && self.from == 'enqueuedTime') == has(self.enqueuedTime)",
     "message": "enqueuedTime is set exactly when from is enqueuedTime"}
]))]
pub struct StartPosition {
    /// `earliest` (oldest retained event), `latest` (only new events) or `enqueuedTime`.
    #[serde(default)]
    pub from: StartFrom,
    /// RFC 3339 time, with `from: enqueuedTime`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub enqueued_time: Option<String>,
}

/// Start of reading without a checkpoint.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub enum StartFrom {
    /// The oldest event the hub retains.
    #[default]
    Earliest,
    /// Only events enqueued after the reader starts.
    Latest,
    /// Events enqueued after `enqueuedTime`.
    EnqueuedTime,
}

/// Kind of checkpoint store.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub enum CheckpointStoreKind {
    /// One Lease per partition holds its owner and checkpoint.
    #[default]
    Kubernetes,
    /// Blobs in the Azure SDK event processor layout, shared with other readers of the same
    /// consumer group.
    AzureBlob,
}

/// Where ownership and checkpoints are kept.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
#[schemars(extend("x-kubernetes-validations" = [
    {"rule": "(has(self.kind) && self.kind == 'azureBlob') == has(self.azureBlob)",
     "message": "azureBlob is set exactly when kind is azureBlob"}
]))]
pub struct CheckpointStoreSpec {
    /// Store kind.
    #[serde(default)]
    pub kind: CheckpointStoreKind,
    /// Blob container, with kind `azureBlob`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub azure_blob: Option<BlobCheckpointStore>,
}

/// A Blob container holding checkpoints in the Azure SDK layout.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct BlobCheckpointStore {
    /// Blob service URL, e.g. `https://account.blob.core.windows.net`.
    #[schemars(regex(pattern = r"^https?://"))]
    pub account_url: String,
    /// Container name.
    #[schemars(length(min = 3, max = 63))]
    pub container: String,
    /// Credentials.
    pub credentials: BlobCredentials,
}

/// Lag above which the `Lagging` condition is set.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct LagThreshold {
    /// Events behind the last enqueued event, on any partition.
    #[serde(default = "LagThreshold::default_events")]
    #[schemars(range(min = 0))]
    pub events: i64,
    /// Seconds behind the last enqueued event, on any partition.
    #[serde(default = "LagThreshold::default_seconds")]
    #[schemars(range(min = 0))]
    pub seconds: i64,
}

impl LagThreshold {
    fn default_events() -> i64 {
        100_000
    }
    fn default_seconds() -> i64 {
        600
    }
}

impl Default for LagThreshold {
    fn default() -> Self {
        LagThreshold {
            events: Self::default_events(),
            seconds: Self::default_seconds(),
        }
    }
}

/// Observed state of a ConsumerGroup.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ConsumerGroupStatus {
    /// Conditions: `Ready`, `Progressing`, `Degraded`, `Balanced`, `Lagging`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(extend("x-kubernetes-list-type" = "map", "x-kubernetes-list-map-keys" = ["type"]))]
    pub conditions: Vec<Condition>,
    /// Generation of the spec this status describes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,
    /// Collector pods that exist (the scale subresource's `status.replicas`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub replicas: Option<i32>,
    /// Label selector of the collector pods, as a string (the scale subresource's selector, used
    /// by the HorizontalPodAutoscaler).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub selector: Option<String>,
    /// Collector pods ready.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ready_replicas: Option<i32>,
    /// `ready/desired` collector pods.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub replicas_summary: Option<String>,
    /// `owned/total` partitions.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub partitions_summary: Option<String>,
    /// Largest lag in events over all partitions.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_lag_events: Option<i64>,
    /// Largest lag in seconds over all partitions.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_lag_seconds: Option<i64>,
    /// Per partition: owner, checkpoint and lag.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub partitions: Vec<PartitionStatus>,
}

/// One partition's owner, checkpoint and lag.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct PartitionStatus {
    /// Partition id.
    pub id: String,
    /// Collector pod that owns the partition.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub owner: Option<String>,
    /// Offset of the last checkpointed event (opaque).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub offset: Option<String>,
    /// Sequence number of the last checkpointed event.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sequence_number: Option<i64>,
    /// Enqueued time of the last checkpointed event.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub enqueued_time: Option<String>,
    /// Sequence number of the last event in the partition.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_enqueued_sequence_number: Option<i64>,
    /// Events between the checkpoint and the last enqueued event.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub lag_events: Option<i64>,
    /// Seconds between the checkpointed event and the last enqueued event.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub lag_seconds: Option<i64>,
}
