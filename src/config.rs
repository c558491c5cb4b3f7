//! The collector configuration: the contract between the operator (or the standalone mode),
//! which renders it from the resources, and the collector, which runs it.
//!
//! It is one serde type, versioned by [`CONFIG_VERSION`], stored in a ConfigMap as YAML. It holds
//! no secret value: it names Secret keys, and [`SecretSource`] says where the collector finds
//! them (files mounted by the operator, or environment variables in standalone mode).

pub mod lease;

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
    /// The destination (a key of [`CollectorConfig::destinations`]) that takes this LogSource's
    /// dead letters; unset: the collector's dead-letter files ([`DeadLetterConfig`]).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dead_letter: Option<String>,
    /// Largest record delivered; larger ones are dead-lettered (default
    /// [`crate::api::DEFAULT_MAX_RECORD_BYTES`]).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_record_bytes: Option<u64>,
    /// Seconds without a record after which the LogSource counts as silent (exported as
    /// `siembridge_collector_silence_threshold_seconds`); unset: no threshold is exported.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub silence_threshold_seconds: Option<u64>,
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
    Kubernetes {
        namespace: String,
        lease_prefix: String,
        /// The resource the Leases belong to: they carry its owner reference and are
        /// garbage-collected with it. `None` when the resource keeps its checkpoints on deletion
        /// (`keepCheckpointsOnDelete`), and then the collector removes a siembridge owner
        /// reference a Lease still has.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        owner: Option<k8s_openapi::apimachinery::pkg::apis::meta::v1::OwnerReference>,
    },
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

/// The local dead-letter sink: NDJSON files of records that could not be delivered, for the
/// LogSources whose route names no dead-letter destination.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct DeadLetterConfig {
    /// Directory of the dead-letter files.
    pub dir: String,
    /// Size at which a dead-letter file is rotated.
    #[serde(default = "DeadLetterConfig::default_max_file_bytes")]
    pub max_file_bytes: u64,
    /// Size of all dead-letter files of the directory together. When a write would pass it, the
    /// records are not acknowledged (the checkpoint holds) and the LogSource reports why.
    #[serde(default = "DeadLetterConfig::default_max_total_bytes")]
    pub max_total_bytes: u64,
    /// Whether the directory outlives the collector (a local disk in standalone mode) or not (a
    /// pod's `emptyDir`); reported as `deadLettersDurable`.
    #[serde(default = "DeadLetterConfig::default_durable")]
    pub durable: bool,
}

impl DeadLetterConfig {
    fn default_max_file_bytes() -> u64 {
        64 * 1024 * 1024
    }

    fn default_max_total_bytes() -> u64 {
        1024 * 1024 * 1024
    }

    fn default_durable() -> bool {
        true
    }

    pub fn in_dir(dir: impl Into<String>) -> Self {
        DeadLetterConfig {
            dir: dir.into(),
            max_file_bytes: Self::default_max_file_bytes(),
            max_total_bytes: Self::default_max_total_bytes(),
            durable: Self::default_durable(),
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
    /// A ConfigMap the collector may update: each replica writes its own key
    /// ([`report_key`]), the operator merges them ([`CollectorReport::merge`]).
    #[serde(rename_all = "camelCase")]
    ConfigMap { namespace: String, name: String },
    /// A JSON file (standalone mode).
    File { path: String },
}

/// Reports older than this, next to a newer one, are from replicas that are gone.
pub const REPORT_STALE_SECONDS: i64 = 300;

/// Key of a replica's report in the report ConfigMap: `report-<reporter>.json`, the reporter
/// (pod name) reduced to the characters a ConfigMap key allows.
pub fn report_key(reporter: &str) -> String {
    let clean: String = reporter
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.') {
                c
            } else {
                '-'
            }
        })
        .take(200)
        .collect();
    format!("report-{clean}.json")
}

/// Whether a ConfigMap key holds a replica's report (`report.json` from older collectors, or
/// `report-<reporter>.json`).
pub fn is_report_key(key: &str) -> bool {
    key == "report.json" || (key.starts_with("report-") && key.ends_with(".json"))
}

fn report_time(t: &str) -> Option<chrono::DateTime<chrono::FixedOffset>> {
    chrono::DateTime::parse_from_rfc3339(t).ok()
}

/// The later of two optional RFC 3339 times.
fn later(a: Option<String>, b: &Option<String>) -> Option<String> {
    match (a, b) {
        (Some(a), Some(b)) => match (report_time(&a), report_time(b)) {
            (Some(x), Some(y)) if y > x => Some(b.clone()),
            _ => Some(a),
        },
        (None, b) => b.clone(),
        (a, None) => a,
    }
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

impl CollectorReport {
    /// One report from the reports of a collector's replicas: counters add up, a destination is
    /// healthy when every replica finds it so, errors and cursors come from the newest report
    /// that has them, partitions from the replica that reported them last. Reports more than
    /// [`REPORT_STALE_SECONDS`] older than the newest are left out (replicas that are gone).
    pub fn merge(mut reports: Vec<CollectorReport>) -> Option<CollectorReport> {
        let newest = reports.iter().filter_map(|r| report_time(&r.time)).max();
        if let Some(newest) = newest {
            let horizon = newest - chrono::Duration::seconds(REPORT_STALE_SECONDS);
            reports.retain(|r| report_time(&r.time).is_none_or(|t| t >= horizon));
        }
        // Oldest first, so that the newest report's values are applied last.
        reports.sort_by_key(|r| report_time(&r.time));
        let refusals = DestinationReport::latest_refusals(&reports);
        let mut iter = reports.into_iter();
        let mut merged = iter.next()?;
        let mut reporters = vec![merged.reporter.clone()];
        for r in iter {
            reporters.push(r.reporter.clone());
            merged.time = r.time.clone();
            for (name, ls) in r.log_sources {
                let m = merged.log_sources.entry(name).or_default();
                m.events_forwarded += ls.events_forwarded;
                m.events_dead_lettered += ls.events_dead_lettered;
                if ls.last_dead_letter_reason.is_some() {
                    m.last_dead_letter_reason = ls.last_dead_letter_reason;
                }
                if ls.dead_letter_error.is_some() {
                    m.dead_letter_error = ls.dead_letter_error;
                }
                m.dead_letters_durable &= ls.dead_letters_durable;
                m.last_event_time = later(m.last_event_time.take(), &ls.last_event_time);
                m.last_received_time = later(m.last_received_time.take(), &ls.last_received_time);
                m.cursors.extend(ls.cursors);
                m.lag_seconds = m.lag_seconds.max(ls.lag_seconds);
                if ls.source_error.is_some() {
                    m.source_error = ls.source_error;
                }
                m.throttled |= ls.throttled;
                for range in ls.data_loss {
                    if !m.data_loss.contains(&range) {
                        m.data_loss.push(range);
                    }
                }
                m.backfill_percent = match (m.backfill_percent, ls.backfill_percent) {
                    (Some(a), Some(b)) => Some(a.min(b)),
                    (a, b) => a.or(b),
                };
            }
            for (name, d) in r.destinations {
                match merged.destinations.get_mut(&name) {
                    None => {
                        merged.destinations.insert(name, d);
                    }
                    Some(m) => {
                        m.healthy &= d.healthy;
                        m.events_sent += d.events_sent;
                        m.events_dead_lettered += d.events_dead_lettered;
                        m.queue_depth += d.queue_depth;
                        m.last_success_time = later(m.last_success_time.take(), &d.last_success_time);
                        if d.last_error.is_some() {
                            m.last_error = d.last_error;
                        }
                    }
                }
            }
            merged.partitions.extend(r.partitions);
        }
        for (name, d) in merged.destinations.iter_mut() {
            d.reason = DestinationReport::standing_refusal(refusals.get(name), &d.last_success_time);
        }
        reporters.sort();
        reporters.dedup();
        merged.reporter = reporters.join(",");
        Some(merged)
    }
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
    /// Enqueued time (RFC 3339) of the last event handed to the pipeline.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub read_enqueued_time: Option<String>,
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
    /// Events delivered to every destination of the LogSource (dead letters not included).
    pub events_forwarded: u64,
    /// Records dead-lettered durably: written (and synced) to the dead-letter files, or taken
    /// by the dead-letter destination.
    #[serde(default)]
    pub events_dead_lettered: u64,
    /// Reason of the newest dead letter.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_dead_letter_reason: Option<String>,
    /// Why the newest dead letter could not be written (sink full, dead-letter destination
    /// refused it); its record stays unacknowledged.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dead_letter_error: Option<String>,
    /// Dead letters survive the collector: a dead-letter destination is named, or the files are
    /// on a lasting disk (standalone). `false` for files on a pod's `emptyDir`.
    #[serde(default)]
    pub dead_letters_durable: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_event_time: Option<String>,
    /// Wall-clock time (RFC 3339) a record of the LogSource was last received, or the
    /// collector's start while none has been: the operator's `SourceSilent` condition counts
    /// from it (the same moment as `siembridge_collector_last_event_timestamp_seconds`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_received_time: Option<String>,
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
    /// Blob sources: blobs read.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub blobs_read: Option<u64>,
    /// Blob sources: bytes read.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub bytes_read: Option<u64>,
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
    /// Why the destination does not take events, machine-readable: `Unauthorized` or
    /// `Forbidden` while it refuses the credentials (the events wait, none is dead-lettered).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
}

impl DestinationReport {
    /// Per destination, the newest refusal among `reports` (oldest first) and its report time.
    fn latest_refusals(reports: &[CollectorReport]) -> BTreeMap<String, (String, String)> {
        let mut out = BTreeMap::new();
        for r in reports {
            for (name, d) in &r.destinations {
                if let Some(reason) = &d.reason {
                    out.insert(name.clone(), (reason.clone(), r.time.clone()));
                }
            }
        }
        out
    }

    /// A refusal still stands unless some replica delivered to the destination since it was
    /// reported (after a Secret fix the new pods succeed while the old pods' last reports remain).
    fn standing_refusal(refusal: Option<&(String, String)>, last_success: &Option<String>) -> Option<String> {
        let (reason, reported) = refusal?;
        let success = last_success.as_deref().and_then(report_time);
        match (success, report_time(reported)) {
            (Some(s), Some(r)) if s >= r => None,
            _ => Some(reason.clone()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn replica(name: &str, time: &str, forwarded: u64, partitions: &[(&str, i64)]) -> CollectorReport {
        CollectorReport {
            reporter: name.into(),
            time: time.into(),
            log_sources: BTreeMap::from([(
                "entra".to_string(),
                LogSourceReport {
                    events_forwarded: forwarded,
                    last_event_time: Some(time.into()),
                    ..Default::default()
                },
            )]),
            destinations: BTreeMap::from([(
                "siem".to_string(),
                DestinationReport {
                    healthy: true,
                    events_sent: forwarded,
                    ..Default::default()
                },
            )]),
            partitions: partitions
                .iter()
                .map(|(p, last)| {
                    (
                        p.to_string(),
                        PartitionReport {
                            owner: name.into(),
                            last_enqueued_sequence_number: Some(*last),
                            ..Default::default()
                        },
                    )
                })
                .collect(),
        }
    }

    #[test]
    fn replicas_reports_add_up_and_keep_every_partition() {
        let a = replica("pod-a", "2026-05-01T12:00:10Z", 100, &[("0", 10), ("1", 11)]);
        let mut b = replica("pod-b", "2026-05-01T12:00:05Z", 50, &[("2", 12), ("3", 13)]);
        b.destinations.get_mut("siem").unwrap().healthy = false;
        b.destinations.get_mut("siem").unwrap().last_error = Some("503".into());
        b.log_sources.get_mut("entra").unwrap().source_error = Some("unauthorized".into());
        let m = CollectorReport::merge(vec![a, b]).unwrap();
        assert_eq!(m.reporter, "pod-a,pod-b");
        assert_eq!(m.time, "2026-05-01T12:00:10Z");
        let ls = &m.log_sources["entra"];
        assert_eq!(ls.events_forwarded, 150);
        assert_eq!(ls.last_event_time.as_deref(), Some("2026-05-01T12:00:10Z"));
        assert_eq!(ls.source_error.as_deref(), Some("unauthorized"));
        let d = &m.destinations["siem"];
        assert!(!d.healthy, "unhealthy when one replica finds it so");
        assert_eq!((d.events_sent, d.last_error.as_deref()), (150, Some("503")));
        let owners: Vec<(&str, &str)> = m
            .partitions
            .iter()
            .map(|(p, r)| (p.as_str(), r.owner.as_str()))
            .collect();
        assert_eq!(
            owners,
            vec![("0", "pod-a"), ("1", "pod-a"), ("2", "pod-b"), ("3", "pod-b")]
        );
    }

    #[test]
    fn gone_replicas_are_left_out_and_the_newest_reader_of_a_partition_wins() {
        let gone = replica("pod-old", "2026-05-01T11:00:00Z", 1000, &[("0", 5)]);
        let before = replica("pod-a", "2026-05-01T12:00:00Z", 10, &[("0", 8)]);
        let now = replica("pod-b", "2026-05-01T12:00:20Z", 20, &[("0", 9)]);
        let m = CollectorReport::merge(vec![now, gone, before]).unwrap();
        assert_eq!(m.reporter, "pod-a,pod-b");
        assert_eq!(m.log_sources["entra"].events_forwarded, 30);
        assert_eq!(m.partitions["0"].owner, "pod-b");
        assert_eq!(m.partitions["0"].last_enqueued_sequence_number, Some(9));
        assert!(CollectorReport::merge(Vec::new()).is_none());
    }

    #[test]
    fn replicas_dead_letters_add_up_apart_from_forwarded() {
        let mut a = replica("pod-a", "2026-05-01T12:00:00Z", 10, &[]);
        let mut b = replica("pod-b", "2026-05-01T12:00:10Z", 20, &[]);
        for (r, dead, reason) in [(&mut a, 1, "HTTP 400: a"), (&mut b, 2, "HTTP 400: b")] {
            let ls = r.log_sources.get_mut("entra").unwrap();
            ls.events_dead_lettered = dead;
            ls.last_dead_letter_reason = Some(reason.into());
            ls.dead_letters_durable = true;
        }
        b.log_sources.get_mut("entra").unwrap().dead_letters_durable = false;
        let m = CollectorReport::merge(vec![b, a]).unwrap();
        let ls = &m.log_sources["entra"];
        assert_eq!((ls.events_forwarded, ls.events_dead_lettered), (30, 3));
        assert_eq!(ls.last_dead_letter_reason.as_deref(), Some("HTTP 400: b"), "the newest");
        assert!(!ls.dead_letters_durable, "durable only when every replica's are");
    }

    #[test]
    fn a_refusal_stands_until_a_replica_delivers_after_it() {
        let refused = |name: &str, time: &str| {
            let mut r = replica(name, time, 0, &[]);
            let d = r.destinations.get_mut("siem").unwrap();
            d.healthy = false;
            d.reason = Some("Forbidden".into());
            d.last_success_time = Some("2026-05-01T11:59:00Z".into());
            r
        };
        // Two replicas of a bad token: still refused, even when the newer one had nothing to send.
        let idle = replica("pod-b", "2026-05-01T12:00:20Z", 0, &[]);
        let m = CollectorReport::merge(vec![refused("pod-a", "2026-05-01T12:00:10Z"), idle.clone()]).unwrap();
        assert_eq!(m.destinations["siem"].reason.as_deref(), Some("Forbidden"));
        // After the Secret fix the new pod delivers; the old pod's last report no longer counts.
        let mut fixed = idle;
        fixed.destinations.get_mut("siem").unwrap().last_success_time = Some("2026-05-01T12:00:15Z".into());
        let m = CollectorReport::merge(vec![refused("pod-a", "2026-05-01T12:00:10Z"), fixed]).unwrap();
        assert_eq!(m.destinations["siem"].reason, None);
        // A single replica keeps its own reason.
        let m = CollectorReport::merge(vec![refused("pod-a", "2026-05-01T12:00:10Z")]).unwrap();
        assert_eq!(m.destinations["siem"].reason.as_deref(), Some("Forbidden"));
    }

    #[test]
    fn report_keys() {
        assert!(is_report_key("report.json"));
        assert!(is_report_key(&report_key("pod-a")));
        assert!(!is_report_key("collector.yaml"));
    }
}
