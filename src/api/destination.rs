//! `SiemDestination`: where events go and in which shape.

use k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition;
use kube::CustomResource;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::common::{BatchSpec, BlobCredentials, BufferSpec, EntraCredentials, RetrySpec, SecretKeySelector, TlsSpec};
use super::InvalidSpec;

/// A SIEM, archive or receiver that siembridge delivers events to. Set exactly one destination
/// kind.
#[derive(CustomResource, Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[kube(
    group = "siembridge.io",
    version = "v1alpha1",
    kind = "SiemDestination",
    doc = "A SIEM, archive or receiver that siembridge delivers events to, with the format, batching, retries and buffer used for it.",
    namespaced,
    status = "SiemDestinationStatus",
    shortname = "siemdest",
    shortname = "sd",
    category = "siembridge",
    printcolumn = r#"{"name":"Type","type":"string","jsonPath":".status.destinationType"}"#,
    printcolumn = r#"{"name":"Format","type":"string","jsonPath":".spec.format"}"#,
    printcolumn = r#"{"name":"Ready","type":"string","jsonPath":".status.conditions[?(@.type==\"Ready\")].status"}"#,
    printcolumn = r#"{"name":"Used By","type":"integer","jsonPath":".status.usedByCount"}"#,
    printcolumn = r#"{"name":"Reason","type":"string","jsonPath":".status.conditions[?(@.type==\"Ready\")].reason","priority":1}"#,
    printcolumn = r#"{"name":"Age","type":"date","jsonPath":".metadata.creationTimestamp"}"#
)]
#[serde(rename_all = "camelCase")]
#[schemars(extend("x-kubernetes-validations" = [
    {"rule": "[has(self.splunkHec), has(self.elasticsearch), has(self.syslog), has(self.sekoia), has(self.sentinel), has(self.azureBlob), has(self.http), has(self.stdout), has(self.file)].filter(x, x).size() == 1",
     "message": "set exactly one of splunkHec, elasticsearch, syslog, sekoia, sentinel, azureBlob, http, stdout, file"}
]))]
pub struct SiemDestinationSpec {
    /// Splunk HTTP Event Collector.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub splunk_hec: Option<SplunkHecSpec>,
    /// Elasticsearch or OpenSearch `_bulk` API.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub elasticsearch: Option<ElasticsearchSpec>,
    /// Syslog receiver (RFC 5424 over TCP, TLS, RELP or UDP), e.g. IBM QRadar or rsyslog.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub syslog: Option<SyslogSpec>,
    /// Sekoia.io HTTP intake.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sekoia: Option<SekoiaSpec>,
    /// Microsoft Sentinel through the Azure Monitor Logs Ingestion API.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sentinel: Option<SentinelSpec>,
    /// Azure Blob Storage archive of gzip NDJSON objects.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub azure_blob: Option<AzureBlobArchiveSpec>,
    /// Generic HTTP receiver of NDJSON or JSON arrays.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub http: Option<HttpSpec>,
    /// Standard output of the collector, one JSON document a line. For local use and tests.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stdout: Option<StdoutSpec>,
    /// NDJSON file on the collector's filesystem, rotated by size. For local use and tests.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub file: Option<FileSpec>,

    /// Shape of each event: `ecs` (Elastic Common Schema, the default) or `raw` (the original
    /// record).
    #[serde(default)]
    pub format: EventFormat,
    /// With `format: ecs`, keep the untouched record as `event.original`. Off by default: it
    /// roughly doubles the volume sent.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub keep_original: bool,
    /// Batching of events into requests.
    #[serde(default)]
    pub batch: BatchSpec,
    /// Retries of failed sends.
    #[serde(default)]
    pub retry: RetrySpec,
    /// Buffer of events waiting for this destination, and what happens when it is full.
    #[serde(default)]
    pub buffer: BufferSpec,
    /// Requests in flight at once.
    #[serde(default = "default_concurrency")]
    #[schemars(range(min = 1, max = 64))]
    pub concurrency: u32,
}

fn default_concurrency() -> u32 {
    2
}

/// The shape of an event on the wire.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub enum EventFormat {
    /// Elastic Common Schema document, vendor detail kept under the names Elastic's integrations
    /// use.
    #[default]
    Ecs,
    /// The original record as received.
    Raw,
}

/// Which destination kind a spec selects, borrowed from the spec.
#[derive(Clone, Copy, Debug)]
pub enum DestinationKind<'a> {
    SplunkHec(&'a SplunkHecSpec),
    Elasticsearch(&'a ElasticsearchSpec),
    Syslog(&'a SyslogSpec),
    Sekoia(&'a SekoiaSpec),
    Sentinel(&'a SentinelSpec),
    AzureBlob(&'a AzureBlobArchiveSpec),
    Http(&'a HttpSpec),
    Stdout(&'a StdoutSpec),
    File(&'a FileSpec),
}

impl DestinationKind<'_> {
    /// The spec field name of this kind, as shown in status and printer columns.
    pub fn name(&self) -> &'static str {
        match self {
            DestinationKind::SplunkHec(_) => "splunkHec",
            DestinationKind::Elasticsearch(_) => "elasticsearch",
            DestinationKind::Syslog(_) => "syslog",
            DestinationKind::Sekoia(_) => "sekoia",
            DestinationKind::Sentinel(_) => "sentinel",
            DestinationKind::AzureBlob(_) => "azureBlob",
            DestinationKind::Http(_) => "http",
            DestinationKind::Stdout(_) => "stdout",
            DestinationKind::File(_) => "file",
        }
    }
}

impl SiemDestinationSpec {
    /// The one destination kind this spec selects, or why the spec is invalid.
    pub fn kind(&self) -> Result<DestinationKind<'_>, InvalidSpec> {
        let mut kinds = Vec::new();
        if let Some(s) = &self.splunk_hec {
            kinds.push(DestinationKind::SplunkHec(s));
        }
        if let Some(s) = &self.elasticsearch {
            kinds.push(DestinationKind::Elasticsearch(s));
        }
        if let Some(s) = &self.syslog {
            kinds.push(DestinationKind::Syslog(s));
        }
        if let Some(s) = &self.sekoia {
            kinds.push(DestinationKind::Sekoia(s));
        }
        if let Some(s) = &self.sentinel {
            kinds.push(DestinationKind::Sentinel(s));
        }
        if let Some(s) = &self.azure_blob {
            kinds.push(DestinationKind::AzureBlob(s));
        }
        if let Some(s) = &self.http {
            kinds.push(DestinationKind::Http(s));
        }
        if let Some(s) = &self.stdout {
            kinds.push(DestinationKind::Stdout(s));
        }
        if let Some(s) = &self.file {
            kinds.push(DestinationKind::File(s));
        }
        match kinds.as_slice() {
            [one] => Ok(*one),
            [] => Err(InvalidSpec::new("no destination kind is set; set exactly one of splunkHec, elasticsearch, syslog, sekoia, sentinel, azureBlob, http, stdout, file")),
            many => Err(InvalidSpec::new(format!(
                "more than one destination kind is set ({}); set exactly one",
                many.iter().map(|k| k.name()).collect::<Vec<_>>().join(", ")
            ))),
        }
    }

    /// Every Secret key this destination reads.
    pub fn secret_refs(&self) -> Vec<&SecretKeySelector> {
        let mut refs = Vec::new();
        if let Some(s) = &self.splunk_hec {
            refs.push(&s.token);
            refs.extend(tls_refs(&s.tls));
        }
        if let Some(s) = &self.elasticsearch {
            if let Some(b) = &s.basic_auth {
                refs.push(&b.password);
            }
            refs.extend(&s.api_key);
            refs.extend(tls_refs(&s.tls));
        }
        if let Some(s) = &self.syslog {
            refs.extend(tls_refs(&s.tls));
        }
        if let Some(s) = &self.sekoia {
            refs.push(&s.intake_key);
            refs.extend(tls_refs(&s.tls));
        }
        if let Some(s) = &self.sentinel {
            refs.extend(s.credentials.secret_refs());
        }
        if let Some(s) = &self.azure_blob {
            refs.extend(s.credentials.secret_refs());
        }
        if let Some(s) = &self.http {
            refs.extend(s.headers.iter().filter_map(|h| h.value_from.as_ref()));
            refs.extend(tls_refs(&s.tls));
        }
        refs
    }
}

/// Secret keys of optional TLS options.
pub fn tls_refs(tls: &Option<TlsSpec>) -> Vec<&SecretKeySelector> {
    match tls {
        Some(t) => t.ca.iter().chain(&t.client_certificate).chain(&t.client_key).collect(),
        None => Vec::new(),
    }
}

/// Splunk HTTP Event Collector (`/services/collector/event`).
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct SplunkHecSpec {
    /// Base URL of HEC, e.g. `https://splunk.example:8088`.
    #[schemars(regex(pattern = r"^https?://"))]
    pub url: String,
    /// Secret key holding the HEC token (sent as `Authorization: Splunk <token>`).
    pub token: SecretKeySelector,
    /// Index for events; the token's default index when unset.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub index: Option<String>,
    /// Sourcetype; when unset siembridge picks the one the Splunk add-on for the record's family
    /// and category uses (`azure:monitor:aad`, `o365:management:activity`,
    /// `ms:defender:eventhub`...) with `format: raw`, and `siembridge:ecs:<product>` with
    /// `format: ecs` (the table is in the README).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sourcetype: Option<String>,
    /// `source` field of every event; defaults to the LogSource name.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub source: Option<String>,
    /// Wait for indexer acknowledgement before a batch counts as delivered. The token must have
    /// indexer acknowledgement enabled.
    #[serde(default)]
    pub indexer_ack: bool,
    /// TLS options.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tls: Option<TlsSpec>,
}

/// Elasticsearch or OpenSearch `_bulk` API.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
#[schemars(extend("x-kubernetes-validations" = [
    {"rule": "!(has(self.basicAuth) && has(self.apiKey))",
     "message": "basicAuth and apiKey are mutually exclusive"}
]))]
pub struct ElasticsearchSpec {
    /// Base URLs of the cluster nodes, e.g. `https://es.example:9200`.
    #[schemars(length(min = 1), inner(regex(pattern = r"^https?://")))]
    pub urls: Vec<String>,
    /// Index, alias or data stream every event is written to, as it is. When unset (the
    /// default) each event goes to the data stream of its dataset,
    /// `logs-<dataset>-<namespace>`, so the dashboards and rules of Elastic's integrations
    /// apply: with `format: ecs` the document's `event.dataset` (`logs-azure.signinlogs-default`);
    /// with `format: raw` the data stream of the Elastic integration that parses the record
    /// (`azure.signinlogs`, `o365.audit`, `m365_defender.event`...), the record shipped as Elastic
    /// Agent ships it (`message` holding the record, `@timestamp`, `data_stream.*`) for the
    /// integration's pipeline to parse (see the README). Every write is a `create` with the
    /// event's stable id as `_id`, which data streams require.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 255))]
    pub index: Option<String>,
    /// Namespace of the data streams when `index` is unset (`logs-<dataset>-<namespace>`):
    /// lowercase letters, digits, `_` and `.`, at most 100 characters (Elastic's data stream
    /// naming scheme forbids `-` in it).
    #[serde(default = "ElasticsearchSpec::default_namespace")]
    #[schemars(length(min = 1, max = 100), regex(pattern = r"^[a-z0-9_.]+$"))]
    pub namespace: String,
    /// Ingest pipeline to run on every document (the `pipeline` of each `_bulk` action); when
    /// unset, the target's default pipeline runs (an installed integration's, for its data
    /// streams).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 255))]
    pub pipeline: Option<String>,
    /// Basic authentication.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub basic_auth: Option<BasicAuth>,
    /// Secret key holding an API key, already base64 encoded as `id:key`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub api_key: Option<SecretKeySelector>,
    /// Send request bodies gzip-compressed.
    #[serde(default)]
    pub compression: bool,
    /// TLS options.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tls: Option<TlsSpec>,
}

impl Default for ElasticsearchSpec {
    fn default() -> Self {
        ElasticsearchSpec {
            urls: Vec::new(),
            index: None,
            namespace: ElasticsearchSpec::default_namespace(),
            pipeline: None,
            basic_auth: None,
            api_key: None,
            compression: false,
            tls: None,
        }
    }
}

impl ElasticsearchSpec {
    /// The default of `namespace`.
    pub fn default_namespace() -> String {
        "default".to_string()
    }
}

/// User name and password.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct BasicAuth {
    /// User name.
    pub username: String,
    /// Secret key holding the password.
    pub password: SecretKeySelector,
}

/// Transport of a syslog destination.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub enum SyslogTransport {
    /// TCP with RFC 6587 octet counting; no acknowledgement (see `confirmDelayMs`).
    Tcp,
    /// TLS (RFC 5425) with octet counting; no acknowledgement (see `confirmDelayMs`).
    #[default]
    Tls,
    /// UDP (RFC 5426); lossy, messages over `maxMessageBytes` are dead-lettered.
    Udp,
    /// RELP, the Reliable Event Logging Protocol (rsyslog `imrelp`): every message is
    /// acknowledged by the receiver; unacknowledged ones are sent again.
    Relp,
    /// RELP inside TLS from the first byte (rsyslog `imrelp` with `tls="on"`), `tls` options apply.
    RelpTls,
}

impl SyslogTransport {
    /// Whether the connection is TLS.
    pub fn is_tls(self) -> bool {
        matches!(self, SyslogTransport::Tls | SyslogTransport::RelpTls)
    }

    /// Whether the receiver acknowledges each message (RELP).
    pub fn is_relp(self) -> bool {
        matches!(self, SyslogTransport::Relp | SyslogTransport::RelpTls)
    }
}

/// Message body of a syslog destination.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub enum SyslogPayload {
    /// The event as JSON.
    #[default]
    Json,
    /// LEEF 2.0, for IBM QRadar.
    Leef,
    /// ArcSight CEF.
    Cef,
}

/// Syslog receiver.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct SyslogSpec {
    /// Host name or address of the receiver.
    #[schemars(length(min = 1, max = 253))]
    pub host: String,
    /// Port; when unset 6514 for `tls` (RFC 5425), 2514 for `relp` and `relpTls` (the port of
    /// rsyslog's imrelp documentation; RELP has no registered port) and 514 otherwise.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1, max = 65535))]
    pub port: Option<u16>,
    /// Transport: `tls` (default), `tcp`, `relp` (each message acknowledged by the receiver),
    /// `relpTls` or `udp`.
    #[serde(default)]
    pub transport: SyslogTransport,
    /// Message body.
    #[serde(default)]
    pub payload: SyslogPayload,
    /// RFC 5424 HOSTNAME of every message. QRadar names (and auto-detects) a log source by it,
    /// so it must not change across restarts, rollouts and replicas. When unset, the name of the
    /// event's LogSource: one stable QRadar log source per LogSource, whichever collector pod
    /// sends. The host an event is about stays in the payload (`host.name`; LEEF
    /// `identHostName`, CEF `dvchost`). Printable ASCII without spaces.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 255), regex(pattern = r"^[!-~]+$"))]
    pub hostname: Option<String>,
    /// RFC 5424 APP-NAME.
    #[serde(default = "SyslogSpec::default_app_name")]
    #[schemars(length(min = 1, max = 48))]
    pub app_name: String,
    /// Syslog facility number (0-23); 13 is "log audit".
    #[serde(default = "SyslogSpec::default_facility")]
    #[schemars(range(min = 0, max = 23))]
    pub facility: u8,
    /// Largest message sent, in bytes; larger events are dead-lettered.
    #[serde(default = "SyslogSpec::default_max_message_bytes")]
    #[schemars(range(min = 480, max = 1048576))]
    pub max_message_bytes: u32,
    /// TLS options (transports `tls` and `relpTls`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tls: Option<TlsSpec>,
    /// Transports `tcp` and `tls`, which have no acknowledgement: a batch counts as delivered
    /// only once the connection has stayed up this long after the write; a reset or close
    /// within it sends the batch again. 0 counts a batch delivered as soon as it is written.
    /// RELP and UDP ignore it.
    #[serde(default = "SyslogSpec::default_confirm_delay_ms")]
    #[schemars(range(min = 0, max = 60000))]
    pub confirm_delay_ms: u32,
}

impl SyslogSpec {
    /// The port connected to: `port`, else the transport's default.
    pub fn port_or_default(&self) -> u16 {
        self.port.unwrap_or(match self.transport {
            SyslogTransport::Tls => 6514,
            SyslogTransport::Relp | SyslogTransport::RelpTls => 2514,
            SyslogTransport::Tcp | SyslogTransport::Udp => 514,
        })
    }
    /// The default of `confirmDelayMs`.
    pub fn default_confirm_delay_ms() -> u32 {
        100
    }
    fn default_app_name() -> String {
        "siembridge".to_string()
    }
    fn default_facility() -> u8 {
        13
    }
    fn default_max_message_bytes() -> u32 {
        65_536
    }
}

/// Sekoia.io HTTP intake.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct SekoiaSpec {
    /// Secret key holding the intake key.
    pub intake_key: SecretKeySelector,
    /// Intake base URL; when unset, the intake of `region`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(regex(pattern = r"^https?://"))]
    pub url: Option<String>,
    /// Region of the Sekoia.io community, which selects the intake when `url` is unset; `fra1`
    /// (`https://intake.sekoia.io`) when unset.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub region: Option<SekoiaRegion>,
    /// TLS options.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tls: Option<TlsSpec>,
}

/// A Sekoia.io region.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub enum SekoiaRegion {
    /// Europe, France 1: `https://intake.sekoia.io`.
    #[default]
    Fra1,
    /// Europe, France 2.
    Fra2,
    /// Europe, Monaco 1.
    Mco1,
    /// Middle East, UAE 1.
    Uae1,
    /// United States 1.
    Usa1,
}

impl SekoiaRegion {
    /// The HTTP intake base URL of the region.
    pub fn intake_url(self) -> &'static str {
        match self {
            SekoiaRegion::Fra1 => "https://intake.sekoia.io",
            SekoiaRegion::Fra2 => "https://app.fra2.sekoia.io/api/v1/intake-http",
            SekoiaRegion::Mco1 => "https://app.mco1.sekoia.io/api/v1/intake-http",
            SekoiaRegion::Uae1 => "https://app.uae1.sekoia.io/api/v1/intake-http",
            SekoiaRegion::Usa1 => "https://app.usa1.sekoia.io/api/v1/intake-http",
        }
    }
}

impl SekoiaSpec {
    /// The intake base URL: `url`, else the region's.
    pub fn intake_url(&self) -> &str {
        self.url
            .as_deref()
            .unwrap_or_else(|| self.region.unwrap_or_default().intake_url())
    }
}

/// Azure Monitor Logs Ingestion API (Microsoft Sentinel).
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct SentinelSpec {
    /// Data collection endpoint or the DCR's logs ingestion endpoint.
    #[schemars(regex(pattern = r"^https?://"))]
    pub endpoint: String,
    /// Immutable id of the data collection rule (`dcr-...`).
    #[schemars(length(min = 1))]
    pub dcr_immutable_id: String,
    /// Stream declared in the DCR, e.g. `Custom-SiembridgeEvents`.
    #[schemars(regex(pattern = r"^(Custom|Microsoft)-"))]
    pub stream_name: String,
    /// App with Monitoring Metrics Publisher on the DCR.
    pub credentials: EntraCredentials,
}

/// Azure Blob Storage archive.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct AzureBlobArchiveSpec {
    /// Blob service URL, e.g. `https://account.blob.core.windows.net`.
    #[schemars(regex(pattern = r"^https?://"))]
    pub account_url: String,
    /// Container the objects are written to.
    #[schemars(length(min = 3, max = 63))]
    pub container: String,
    /// Object path template. Placeholders: `{source}`, `{category}`, `{yyyy}`, `{MM}`, `{dd}`,
    /// `{HH}`. The batch's first stable id completes the name, so a retried batch overwrites.
    #[serde(default = "AzureBlobArchiveSpec::default_path_template")]
    pub path_template: String,
    /// Gzip the NDJSON objects.
    #[serde(default = "default_true")]
    pub gzip: bool,
    /// Credentials.
    pub credentials: BlobCredentials,
}

impl AzureBlobArchiveSpec {
    fn default_path_template() -> String {
        "{source}/{category}/y={yyyy}/m={MM}/d={dd}/h={HH}".to_string()
    }
}

fn default_true() -> bool {
    true
}

/// Body encoding of the generic HTTP destination.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub enum HttpEncoding {
    /// One JSON document a line (`application/x-ndjson`).
    #[default]
    Ndjson,
    /// One JSON array (`application/json`).
    JsonArray,
}

/// A header sent with every request.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
#[schemars(extend("x-kubernetes-validations" = [
    {"rule": "has(self.value) != has(self.valueFrom)", "message": "set exactly one of value or valueFrom"}
]))]
pub struct HttpHeader {
    /// Header name.
    #[schemars(length(min = 1, max = 256))]
    pub name: String,
    /// Literal value, for headers that are not secret.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub value: Option<String>,
    /// Secret key holding the value (e.g. an `Authorization` header).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub value_from: Option<SecretKeySelector>,
}

/// Generic HTTP receiver.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct HttpSpec {
    /// URL events are POSTed to.
    #[schemars(regex(pattern = r"^https?://"))]
    pub url: String,
    /// Body encoding.
    #[serde(default)]
    pub encoding: HttpEncoding,
    /// Headers sent with every request.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub headers: Vec<HttpHeader>,
    /// TLS options.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tls: Option<TlsSpec>,
}

/// Standard output.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct StdoutSpec {
    /// Pretty-print each document over several lines.
    #[serde(default)]
    pub pretty: bool,
}

/// NDJSON file.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct FileSpec {
    /// Path of the file; rotated files get a numeric suffix. Only a regular file is rotated: a
    /// device or FIFO (`/dev/null`) is written to as it is.
    #[schemars(length(min = 1))]
    pub path: String,
    /// Size at which the file is rotated, in bytes.
    #[serde(default = "FileSpec::default_max_bytes")]
    #[schemars(range(min = 1024))]
    pub max_bytes: u64,
}

impl FileSpec {
    fn default_max_bytes() -> u64 {
        100 * 1024 * 1024
    }
}

/// Observed state of a SiemDestination.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct SiemDestinationStatus {
    /// Conditions: `Ready` from a connectivity check of the destination.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(extend("x-kubernetes-list-type" = "map", "x-kubernetes-list-map-keys" = ["type"]))]
    pub conditions: Vec<Condition>,
    /// Generation of the spec this status describes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,
    /// The destination kind set in the spec.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub destination_type: Option<String>,
    /// LogSources that deliver to this destination.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub used_by: Vec<String>,
    /// Number of LogSources that deliver to this destination.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub used_by_count: Option<i32>,
    /// Time of the last successful connectivity check or delivery.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_success_time: Option<String>,
    /// Last error seen, with secrets redacted.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_error: Option<String>,
}
