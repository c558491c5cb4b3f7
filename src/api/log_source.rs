//! `LogSource`: one logical stream, e.g. "Entra sign-ins of tenant X" or "Intune audit logs".

use k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition;
use kube::CustomResource;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

use super::common::{BlobCredentials, CollectorPodTemplate, EntraCredentials, Resources, SecretKeySelector};
use super::InvalidSpec;

/// A stream of Microsoft security or audit records delivered to one or more SiemDestinations.
/// Set exactly one source kind.
#[derive(CustomResource, Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[kube(
    group = "siembridge.io",
    version = "v1alpha1",
    kind = "LogSource",
    doc = "A stream of Microsoft security or audit records (Entra, Intune, Defender, Microsoft 365) that siembridge collects and delivers to SiemDestinations.",
    namespaced,
    status = "LogSourceStatus",
    shortname = "ls",
    shortname = "logsrc",
    category = "siembridge",
    printcolumn = r#"{"name":"Type","type":"string","jsonPath":".status.sourceType"}"#,
    printcolumn = r#"{"name":"Ready","type":"string","jsonPath":".status.conditions[?(@.type==\"Ready\")].status"}"#,
    printcolumn = r#"{"name":"Forwarded","type":"integer","jsonPath":".status.eventsForwarded"}"#,
    printcolumn = r#"{"name":"Dead-Lettered","type":"integer","jsonPath":".status.eventsDeadLettered"}"#,
    printcolumn = r#"{"name":"Lag","type":"string","jsonPath":".status.lag"}"#,
    printcolumn = r#"{"name":"Backfill %","type":"integer","jsonPath":".status.backfillPercent"}"#,
    printcolumn = r#"{"name":"Silent","type":"string","jsonPath":".status.conditions[?(@.type==\"SourceSilent\")].status","priority":1}"#,
    printcolumn = r#"{"name":"Last Event","type":"date","jsonPath":".status.lastEventTime","priority":1}"#,
    printcolumn = r#"{"name":"Reason","type":"string","jsonPath":".status.conditions[?(@.type==\"Ready\")].reason","priority":1}"#,
    printcolumn = r#"{"name":"Age","type":"date","jsonPath":".metadata.creationTimestamp"}"#
)]
#[serde(rename_all = "camelCase")]
#[schemars(extend("x-kubernetes-validations" = [
    {"rule": "[has(self.eventHub), has(self.managementActivityApi), has(self.graph), has(self.azureBlob), has(self.replay)].filter(x, x).size() == 1",
     "message": "set exactly one of eventHub, managementActivityApi, graph, azureBlob, replay"},
    {"rule": "!has(self.eventHub) || (!has(self.podTemplate) && !has(self.resources))",
     "message": "an eventHub LogSource is read by its ConsumerGroup's collector: set podTemplate and resources on the ConsumerGroup"}
]))]
pub struct LogSourceSpec {
    /// Records read by a ConsumerGroup from an Event Hub (Entra and Intune diagnostic settings,
    /// Defender XDR streaming API).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub event_hub: Option<EventHubSource>,
    /// The Office 365 Management Activity API (unified audit log).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub management_activity_api: Option<ManagementActivitySource>,
    /// Microsoft Graph audit, sign-in, risk and security endpoints.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub graph: Option<GraphSource>,
    /// Diagnostic-settings archives in Azure Blob Storage (`insights-logs-*` containers).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub azure_blob: Option<BlobSource>,
    /// Files of recorded records, for demos and tests.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub replay: Option<ReplaySource>,

    /// SiemDestinations, in this namespace, that receive every record of this source.
    #[schemars(length(min = 1, max = 16))]
    pub destinations: Vec<DestinationRef>,
    /// Where records go that cannot be delivered (rejected for good by a destination, not
    /// decodable, not normalizable, or overflowing a `whenFull: deadLetter` buffer). Unset: local
    /// files of the collector, which in a cluster are lost with the pod (`DeadLettersDurable`
    /// is then `False`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dead_letter: Option<DeadLetterSpec>,
    /// Which records this source keeps.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub filter: Option<RecordFilter>,
    /// Stop collecting without deleting anything; checkpoints are kept.
    #[serde(default)]
    pub suspend: bool,
    /// Keep the checkpoint Leases of an API-polled source when the LogSource is deleted, so a
    /// LogSource re-created under the same name resumes where this one stopped. By default they
    /// are owned by the LogSource and garbage-collected with it.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub keep_checkpoints_on_delete: bool,
    /// CPU and memory of the collector pod of an API-polled or replay source.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub resources: Option<Resources>,
    /// Shape of the collector pod of an API-polled or replay source (labels, annotations, pull
    /// secrets, scheduling, extra environment such as a proxy, ServiceAccount annotations); it
    /// overrides the chart's `collectorPod` defaults.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pod_template: Option<CollectorPodTemplate>,
    /// Largest record, in bytes of its JSON text, that this source delivers (default 1 MiB). A
    /// larger record is dead-lettered at every destination with its size in the reason (the dead
    /// letter keeps its first 64 KiB), so one huge record cannot exhaust the collector's memory.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1024, max = 67108864))]
    pub max_record_bytes: Option<u64>,
    /// Minutes without a single record after which this source counts as silent (the
    /// `SiembridgeSourceSilent` alert, through the collector's
    /// `siembridge_collector_silence_threshold_seconds`): the logs just stopped, e.g. a
    /// diagnostic setting was removed. Default per kind: eventHub 60, managementActivityApi 720
    /// (content can take hours to appear), graph 360, azureBlob 180 (hourly blobs), replay 60.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1, max = 10080))]
    pub silence_threshold_minutes: Option<u32>,
}

impl LogSourceSpec {
    /// [`Self::silence_threshold_minutes`], or the default of the source kind.
    pub fn silence_threshold_minutes(&self) -> u32 {
        if let Some(m) = self.silence_threshold_minutes {
            return m;
        }
        match self.kind() {
            Ok(SourceKind::ManagementActivityApi(_)) => 720,
            Ok(SourceKind::Graph(_)) => 360,
            Ok(SourceKind::AzureBlob(_)) => 180,
            Ok(SourceKind::EventHub(_) | SourceKind::Replay(_)) | Err(_) => 60,
        }
    }
}

/// Default of [`LogSourceSpec::max_record_bytes`]: 1 MiB (an Event Hubs event holds at most
/// 1 MB; Microsoft 365 and Graph records are far smaller).
pub const DEFAULT_MAX_RECORD_BYTES: u64 = 1024 * 1024;

/// Which source kind a spec selects, borrowed from the spec.
#[derive(Clone, Copy, Debug)]
pub enum SourceKind<'a> {
    EventHub(&'a EventHubSource),
    ManagementActivityApi(&'a ManagementActivitySource),
    Graph(&'a GraphSource),
    AzureBlob(&'a BlobSource),
    Replay(&'a ReplaySource),
}

impl SourceKind<'_> {
    /// The spec field name of this kind, as shown in status and printer columns.
    pub fn name(&self) -> &'static str {
        match self {
            SourceKind::EventHub(_) => "eventHub",
            SourceKind::ManagementActivityApi(_) => "managementActivityApi",
            SourceKind::Graph(_) => "graph",
            SourceKind::AzureBlob(_) => "azureBlob",
            SourceKind::Replay(_) => "replay",
        }
    }
}

impl LogSourceSpec {
    /// The one source kind this spec selects, or why the spec is invalid.
    pub fn kind(&self) -> Result<SourceKind<'_>, InvalidSpec> {
        let mut kinds = Vec::new();
        if let Some(s) = &self.event_hub {
            kinds.push(SourceKind::EventHub(s));
        }
        if let Some(s) = &self.management_activity_api {
            kinds.push(SourceKind::ManagementActivityApi(s));
        }
        if let Some(s) = &self.graph {
            kinds.push(SourceKind::Graph(s));
        }
        if let Some(s) = &self.azure_blob {
            kinds.push(SourceKind::AzureBlob(s));
        }
        if let Some(s) = &self.replay {
            kinds.push(SourceKind::Replay(s));
        }
        match kinds.as_slice() {
            [one] => Ok(*one),
            [] => Err(InvalidSpec::new(
                "no source kind is set; set exactly one of eventHub, managementActivityApi, graph, azureBlob, replay",
            )),
            many => Err(InvalidSpec::new(format!(
                "more than one source kind is set ({}); set exactly one",
                many.iter().map(|k| k.name()).collect::<Vec<_>>().join(", ")
            ))),
        }
    }

    /// Names of every SiemDestination this source uses: its `destinations` and its `deadLetter`
    /// destination.
    pub fn destination_names(&self) -> impl Iterator<Item = &str> {
        self.destinations
            .iter()
            .map(|d| d.name.as_str())
            .chain(self.dead_letter.as_ref().map(|d| d.destination.as_str()))
    }

    /// Every Secret key this source reads itself (not those of its destinations).
    pub fn secret_refs(&self) -> Vec<&SecretKeySelector> {
        let mut refs = Vec::new();
        if let Some(s) = &self.management_activity_api {
            refs.extend(s.credentials.secret_refs());
        }
        if let Some(s) = &self.graph {
            refs.extend(s.credentials.secret_refs());
        }
        if let Some(s) = &self.azure_blob {
            refs.extend(s.credentials.secret_refs());
        }
        refs
    }
}

/// Where a LogSource's dead letters go.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct DeadLetterSpec {
    /// Name of a SiemDestination in this namespace (an `azureBlob` archive, a `file` on a
    /// PersistentVolume, an `http` receiver, ...). Each dead letter is one JSON document sent to
    /// it: `time`, `stage`, `reason`, `logSource`, `destination`, `id` and the original bytes
    /// (`record` when they are JSON, else `recordBase64`). A record counts as done only once
    /// this destination has taken its dead letter; if it refuses one, the record stays
    /// unacknowledged (the checkpoint holds) and the refusal shows in `DeadLettered`.
    #[schemars(length(min = 1, max = 253))]
    pub destination: String,
}

/// A reference to a SiemDestination in the same namespace.
#[derive(Clone, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct DestinationRef {
    /// Name of the SiemDestination.
    #[schemars(length(min = 1, max = 253))]
    pub name: String,
}

/// Records taken from a ConsumerGroup.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct EventHubSource {
    /// Name of the ConsumerGroup, in this namespace, that reads the hub.
    #[schemars(length(min = 1, max = 253))]
    pub consumer_group_ref: String,
    /// Categories taken (`SignInLogs`, `AuditLogs`, `DeviceComplianceOrg`,
    /// `AdvancedHunting-DeviceProcessEvents`, ...). Empty takes every category.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub categories: Vec<String>,
}

/// Content types of the Management Activity API.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize, JsonSchema)]
pub enum ContentType {
    /// Entra ID (Azure AD) audit and sign-in records.
    #[serde(rename = "Audit.AzureActiveDirectory")]
    AuditAzureActiveDirectory,
    /// Exchange admin and mailbox records.
    #[serde(rename = "Audit.Exchange")]
    AuditExchange,
    /// SharePoint and OneDrive records.
    #[serde(rename = "Audit.SharePoint")]
    AuditSharePoint,
    /// Every other workload (Teams, Power BI, Defender, Copilot, ...).
    #[serde(rename = "Audit.General")]
    AuditGeneral,
    /// DLP events of every workload.
    #[serde(rename = "DLP.All")]
    DlpAll,
}

impl ContentType {
    /// Every content type.
    pub const ALL: [ContentType; 5] = [
        ContentType::AuditAzureActiveDirectory,
        ContentType::AuditExchange,
        ContentType::AuditSharePoint,
        ContentType::AuditGeneral,
        ContentType::DlpAll,
    ];

    /// Name on the wire.
    pub fn as_str(&self) -> &'static str {
        match self {
            ContentType::AuditAzureActiveDirectory => "Audit.AzureActiveDirectory",
            ContentType::AuditExchange => "Audit.Exchange",
            ContentType::AuditSharePoint => "Audit.SharePoint",
            ContentType::AuditGeneral => "Audit.General",
            ContentType::DlpAll => "DLP.All",
        }
    }
}

/// How unified audit log content is read.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub enum AuditApi {
    /// The Office 365 Management Activity API (subscriptions and content blobs).
    #[default]
    ManagementActivity,
    /// The Microsoft Graph audit log query API (`security/auditLog/queries`).
    GraphAuditLogQuery,
}

/// The Office 365 Management Activity API.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ManagementActivitySource {
    /// App with the `ActivityFeed.Read` application role (and `ActivityFeed.ReadDlp` for DLP
    /// detail).
    pub credentials: EntraCredentials,
    /// Content types collected; all five when empty.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub content_types: Vec<ContentType>,
    /// Tenant id (GUID) of the publisher, sent as `PublisherIdentifier` on every call so requests
    /// count against the tenant's own quota. Defaults to the credentials' tenant.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(regex(pattern = r"^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$"))]
    pub publisher_identifier: Option<String>,
    /// API used to read the content.
    #[serde(default)]
    pub api: AuditApi,
    /// Requests per minute for this tenant, shared by all content types.
    #[serde(default = "ManagementActivitySource::default_requests_per_minute")]
    #[schemars(range(min = 1, max = 60000))]
    pub requests_per_minute: u32,
    /// Polling behaviour.
    #[serde(default)]
    pub polling: PollingSpec,
    /// Override of the API root, e.g. for a proxy: the Management API root, or the Graph root
    /// with `api: graphAuditLogQuery`. Defaults to the cloud's host.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(regex(pattern = r"^https?://"))]
    pub endpoint: Option<String>,
}

impl ManagementActivitySource {
    fn default_requests_per_minute() -> u32 {
        600
    }
}

/// Polling of an API source.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct PollingSpec {
    /// Seconds between polls once caught up.
    #[serde(default = "PollingSpec::default_interval_seconds")]
    #[schemars(range(min = 10, max = 3600))]
    pub interval_seconds: u32,
    /// Hours read back on first start (at most the API's retention).
    #[serde(default = "PollingSpec::default_backfill_hours")]
    #[schemars(range(min = 0, max = 720))]
    pub backfill_hours: u32,
    /// Minutes re-scanned behind the cursor for late arrivals; duplicates are dropped by id.
    #[serde(default = "PollingSpec::default_overlap_minutes")]
    #[schemars(range(min = 0, max = 1440))]
    pub overlap_minutes: u32,
}

impl PollingSpec {
    fn default_interval_seconds() -> u32 {
        60
    }
    fn default_backfill_hours() -> u32 {
        168
    }
    fn default_overlap_minutes() -> u32 {
        120
    }
}

impl Default for PollingSpec {
    fn default() -> Self {
        PollingSpec {
            interval_seconds: Self::default_interval_seconds(),
            backfill_hours: Self::default_backfill_hours(),
            overlap_minutes: Self::default_overlap_minutes(),
        }
    }
}

/// Graph endpoints collected by a `graph` source.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub enum GraphEndpoint {
    /// `auditLogs/directoryAudits`.
    DirectoryAudits,
    /// `auditLogs/signIns`.
    SignIns,
    /// `auditLogs/provisioning`.
    Provisioning,
    /// `identityProtection/riskDetections`.
    RiskDetections,
    /// `identityProtection/riskyUsers`.
    RiskyUsers,
    /// `security/alerts_v2`.
    AlertsV2,
    /// `security/incidents`.
    Incidents,
}

/// Sign-in event types (the beta `signInEventTypes` filter).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub enum SignInEventType {
    /// Interactive user sign-ins.
    InteractiveUser,
    /// Non-interactive user sign-ins.
    NonInteractiveUser,
    /// Service principal sign-ins.
    ServicePrincipal,
    /// Managed identity sign-ins.
    ManagedIdentity,
}

/// Microsoft Graph.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct GraphSource {
    /// App with the application permissions of the endpoints (e.g. `AuditLog.Read.All`).
    pub credentials: EntraCredentials,
    /// Endpoints collected.
    #[schemars(length(min = 1))]
    pub endpoints: Vec<GraphEndpoint>,
    /// Sign-in types for `signIns`; anything but `interactiveUser` alone uses the beta endpoint.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub sign_in_event_types: Vec<SignInEventType>,
    /// Polling behaviour.
    #[serde(default)]
    pub polling: PollingSpec,
    /// Request budgets of this app in this tenant; the documented Graph limits when unset.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub budget: Option<GraphBudget>,
    /// Override of the Graph root, e.g. for a proxy. Defaults to the cloud's host.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(regex(pattern = r"^https?://"))]
    pub endpoint: Option<String>,
}

/// Request budgets of a Graph source, per (app, tenant) and API family, shared by its endpoints.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct GraphBudget {
    /// Identity and access reports (`auditLogs/*`): requests per 10 seconds (documented: 5).
    #[serde(default = "GraphBudget::default_reports")]
    #[schemars(range(min = 1))]
    pub reports_per_ten_seconds: u32,
    /// Identity protection: requests per second (documented: 1 per tenant).
    #[serde(default = "GraphBudget::default_identity_protection")]
    #[schemars(range(min = 1))]
    pub identity_protection_per_second: u32,
    /// Security alerts and incidents: requests per minute (documented: 150).
    #[serde(default = "GraphBudget::default_security")]
    #[schemars(range(min = 1))]
    pub security_per_minute: u32,
}

impl GraphBudget {
    fn default_reports() -> u32 {
        5
    }
    fn default_identity_protection() -> u32 {
        1
    }
    fn default_security() -> u32 {
        150
    }
}

impl Default for GraphBudget {
    fn default() -> Self {
        GraphBudget {
            reports_per_ten_seconds: Self::default_reports(),
            identity_protection_per_second: Self::default_identity_protection(),
            security_per_minute: Self::default_security(),
        }
    }
}

/// Archives in Azure Blob Storage read incrementally: Azure Monitor diagnostic-settings archives
/// (`insights-logs-<category>` containers of hourly append blobs
/// `.../y=YYYY/m=MM/d=DD/h=HH/m=00/PT1H.json`, one JSON record per line) or siembridge's own
/// `azureBlob` destination archives (gzip NDJSON).
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
#[schemars(extend("x-kubernetes-validations" = [
    {"rule": "(has(self.containers) && size(self.containers) > 0) || (has(self.categories) && size(self.categories) > 0)",
     "message": "set containers or categories"}
]))]
pub struct BlobSource {
    /// Blob service URL (`https://<account>.blob.core.windows.net`, a national cloud's host, or
    /// an emulator such as `http://127.0.0.1:10000/devstoreaccount1`).
    #[schemars(regex(pattern = r"^https?://"))]
    pub account_url: String,
    /// Containers read, e.g. `insights-logs-signinlogs`, `insights-activity-logs`, or the
    /// container of an `azureBlob` destination.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 64))]
    pub containers: Vec<String>,
    /// Diagnostic categories read, each from its container `insights-logs-<category in lower
    /// case>` (e.g. `SignInLogs`, `AuditLogs`, `IntuneAuditLogs`); added to `containers`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 64))]
    pub categories: Vec<String>,
    /// Only blobs under this prefix (e.g. `tenantId=<tenant>/`, or an archive's folder).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub prefix: Option<String>,
    /// Layout of the blobs.
    #[serde(default)]
    pub format: BlobFormat,
    /// Credentials.
    pub credentials: BlobCredentials,
    /// Polling: `intervalSeconds` between listings once caught up; `backfillHours` read back on
    /// first start when `from` is unset; `overlapMinutes` an hour's blobs are still read as they
    /// grow after the hour ended.
    #[serde(default)]
    pub polling: PollingSpec,
    /// Start of the hours read (RFC 3339), for a backfill; replaces `polling.backfillHours` on
    /// first start (a checkpoint, once saved, wins).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub from: Option<String>,
    /// End of the hours read (RFC 3339, exclusive): a container stops there and the source then
    /// idles. Unset: new hours are read as they arrive.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub to: Option<String>,
    /// Blob calls in flight at once, over all containers (each container is read in order by
    /// its own task).
    #[serde(default = "BlobSource::default_concurrency")]
    #[schemars(range(min = 1, max = 64))]
    pub concurrency: u32,
    /// Seconds behind the newest blob after which the LogSource is `Lagging`.
    #[serde(default = "BlobSource::default_lag_threshold_seconds")]
    #[schemars(range(min = 60))]
    pub lag_threshold_seconds: i64,
}

impl BlobSource {
    fn default_concurrency() -> u32 {
        4
    }
    fn default_lag_threshold_seconds() -> i64 {
        2 * 3600
    }

    /// What the schema cannot check: times that parse and are in order, a window only for
    /// hourly archives.
    pub fn validate(&self) -> Result<(), InvalidSpec> {
        if self.all_containers().is_empty() {
            return Err(InvalidSpec::new("azureBlob: set containers or categories"));
        }
        let time = |name: &str, v: &Option<String>| -> Result<Option<chrono::DateTime<chrono::Utc>>, InvalidSpec> {
            match v {
                None => Ok(None),
                Some(t) => chrono::DateTime::parse_from_rfc3339(t)
                    .map(|t| Some(t.with_timezone(&chrono::Utc)))
                    .map_err(|e| InvalidSpec::new(format!("azureBlob.{name} {t:?} is not an RFC 3339 time: {e}"))),
            }
        };
        let (from, to) = (time("from", &self.from)?, time("to", &self.to)?);
        if let (Some(f), Some(t)) = (from, to) {
            if f >= t {
                return Err(InvalidSpec::new("azureBlob: from must be before to"));
            }
        }
        if self.format == BlobFormat::SiembridgeArchive && (from.is_some() || to.is_some()) {
            return Err(InvalidSpec::new(
                "azureBlob: from and to select hours of diagnosticSettings archives; a siembridgeArchive is selected \
                 by prefix",
            ));
        }
        Ok(())
    }

    /// Containers read: `containers`, then `insights-logs-<category>` of each category.
    pub fn all_containers(&self) -> Vec<String> {
        let mut out = self.containers.clone();
        for c in &self.categories {
            let name = format!("insights-logs-{}", c.to_ascii_lowercase());
            if !out.contains(&name) {
                out.push(name);
            }
        }
        out
    }
}

/// Layout of the blobs a Blob source reads.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub enum BlobFormat {
    /// Azure Monitor diagnostic settings: hourly append blobs of JSON lines, read as they grow.
    #[default]
    DiagnosticSettings,
    /// siembridge's `azureBlob` destination: immutable (gzip) NDJSON objects, read once in name
    /// order; records keep their ids (`event.id`, `Id` or `id`).
    SiembridgeArchive,
}

/// Files of recorded records: Azure diagnostic envelopes, JSON arrays, NDJSON or single objects.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
#[schemars(extend("x-kubernetes-validations" = [
    {"rule": "(has(self.paths) && size(self.paths) > 0) || has(self.configMap)", "message": "set paths or configMap"}
]))]
pub struct ReplaySource {
    /// Files or folders read in name order. Relative paths are relative to the manifest (standalone)
    /// or to the mounted ConfigMap (cluster).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub paths: Vec<String>,
    /// ConfigMap whose keys are the recorded files, mounted into the collector pod.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub config_map: Option<String>,
    /// Records per second; as fast as the destinations take them when unset.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1))]
    pub rate_per_second: Option<u32>,
    /// Start again from the first file after the last one.
    #[serde(default, rename = "loop")]
    pub loop_: bool,
}

/// Which records a LogSource keeps.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct RecordFilter {
    /// Keep only these categories (diagnostic category, Defender table, O365 `Workload`, Graph
    /// endpoint). Empty keeps all.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub include_categories: Vec<String>,
    /// Drop these categories.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub exclude_categories: Vec<String>,
}

/// A time range whose records could not be collected.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct LostRange {
    /// Content type, endpoint or partition concerned.
    pub stream: String,
    /// Start of the range (RFC 3339).
    pub from: String,
    /// End of the range (RFC 3339).
    pub to: String,
    /// Why the range was lost.
    pub reason: String,
}

/// Observed state of a LogSource.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct LogSourceStatus {
    /// Conditions: `Ready`, `Progressing`, `Degraded`, `SourceConnected`, `DestinationsReady`,
    /// `Lagging`, `Throttled`, `DataLoss`, `DeadLettered`, `DeadLettersDurable`, `SourceSilent`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(extend("x-kubernetes-list-type" = "map", "x-kubernetes-list-map-keys" = ["type"]))]
    pub conditions: Vec<Condition>,
    /// Generation of the spec this status describes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,
    /// The source kind set in the spec.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub source_type: Option<String>,
    /// Events delivered to every destination (dead letters not included).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub events_forwarded: Option<i64>,
    /// Records dead-lettered durably (written to the dead-letter files or taken by the
    /// `deadLetter` destination), counted since the collectors started.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub events_dead_lettered: Option<i64>,
    /// Reason of the most recent dead letter (or of a dead letter that could not be written).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_dead_letter_reason: Option<String>,
    /// Event time of the newest forwarded event.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_event_time: Option<String>,
    /// Human-readable lag, e.g. `42s` or `1200 events`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub lag: Option<String>,
    /// Cursor per content type, endpoint or file.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub cursors: BTreeMap<String, String>,
    /// Backfill progress, 0 to 100.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub backfill_percent: Option<i32>,
    /// Ranges that could not be collected.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub data_loss: Vec<LostRange>,
    /// Blob sources: blobs read (a blob read again as it grew counts again).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub blobs_read: Option<i64>,
    /// Blob sources: bytes read.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub bytes_read: Option<i64>,
}
