//! `elasticsearch`: the `_bulk` API of Elasticsearch and OpenSearch (docs/PROTOCOLS.md section 7.2).
//!
//! Every event is a `create` of the event's stable id as `_id` (data streams accept only
//! `create`), so a re-delivery is answered 409 and counted as delivered: exactly once per id.
//!
//! Where an event goes: the spec's `index` when set, the document as it is. Otherwise the data
//! stream of its dataset, `logs-<dataset>-<namespace>` (Elastic's data stream naming scheme):
//! - `format: ecs`: the document's `event.dataset` (`logs-azure.signinlogs-default`), the data
//!   stream the Elastic integration of that dataset owns, so its dashboards and rules apply.
//! - `format: raw`: the record is shipped as Elastic Agent ships it, for the installed
//!   integration's ingest pipeline to parse: `{"@timestamp", "message": "<the record>",
//!   "data_stream": {"type": "logs", "dataset", "namespace"}}` to the data stream of the
//!   integration that reads that record (`crate::normalize::content`: `azure.signinlogs`,
//!   `o365.audit`, `m365_defender.event`...; `siembridge.original` where none does). The
//!   integrations' pipelines read the record from `message` (e.g. the `azure` package's
//!   `signinlogs` pipeline starts with a `json` processor on `message`) and set `@timestamp`
//!   from the record's own time.
//!
//! Dataset and namespace keep lowercase letters, digits, `_` and `.` (others become `_`; `-`
//! is the separator of the name) and at most 100 bytes each. `pipeline`, when set, names the
//! ingest pipeline of every action; otherwise the target's default pipeline runs.
//!
//! Per-item answers: 2xx and 409 delivered, 429 and 5xx sent again alone, 401/403
//! (`security_exception`: the role may not write this index) kept as refused credentials, other
//! 4xx (`mapper_parsing_exception`...) dead-lettered with the error type and reason.
//! Whole-request answers: 429/5xx retried (`Retry-After` honoured), 413 split, 401/403 refused
//! credentials (retried until they work, never dead-lettered), other 4xx rejected (the delivery
//! machinery splits the batch to find the documents at fault). A 2xx without one item per
//! document (whatever its `errors` flag says) proves nothing and is retried; a 3xx is never
//! followed (a retried failure naming the `Location`).
//! Nodes are used in turn; a node that cannot be reached hands the request to the next one.

use std::sync::atomic::{AtomicUsize, Ordering};

use async_trait::async_trait;
use reqwest::header::{HeaderValue, AUTHORIZATION, CONTENT_ENCODING, CONTENT_TYPE};
use reqwest::StatusCode;
use serde::Deserialize;
use sha2::{Digest, Sha256};

use super::document::facts;
use super::http_client::{self, excerpt, request_error, uniform};
use super::{AuthFailure, BuildError, Destination, Event, EventOutcome, SendOutcome};
use crate::api::{ElasticsearchSpec, EventFormat, RetrySpec};
use crate::collector::secrets;
use crate::config::SecretSource;
use crate::normalize::content;

/// Longest `_id` Elasticsearch accepts, in bytes; longer ids are replaced by their SHA-256.
const MAX_ID_BYTES: usize = 512;

/// Longest dataset or namespace of a data stream name, in bytes (Elastic's naming scheme).
const MAX_NAME_PART: usize = 100;

/// The dataset of raw records no Elastic integration reads.
pub const UNPARSED_DATASET: &str = "siembridge.original";

/// The dataset of ECS documents without `event.dataset`.
pub const FALLBACK_DATASET: &str = "siembridge";

/// Sends batches to a cluster's `_bulk` endpoint.
#[derive(Debug)]
pub struct ElasticsearchDestination {
    client: reqwest::Client,
    bulk_urls: Vec<String>,
    next_node: AtomicUsize,
    /// A fixed target; `None`: the data stream of each event's dataset.
    index: Option<String>,
    namespace: String,
    pipeline: Option<String>,
    format: EventFormat,
    authorization: Option<HeaderValue>,
    compression: bool,
}

/// `text` as a data stream dataset or namespace: lowercase, `[a-z0-9_.]` (anything else
/// becomes `_`), at most 100 bytes, never empty.
pub fn name_part(text: &str) -> String {
    let mut out: String = text
        .chars()
        .flat_map(char::to_lowercase)
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '_' || c == '.' {
                c
            } else {
                '_'
            }
        })
        .take(MAX_NAME_PART)
        .collect();
    if out.is_empty() {
        out.push('_');
    }
    out
}

#[derive(Debug, Deserialize)]
struct BulkResponse {
    #[serde(default)]
    items: Vec<std::collections::HashMap<String, BulkItem>>,
}

#[derive(Debug, Deserialize)]
struct BulkItem {
    status: u16,
    #[serde(default)]
    error: Option<ItemError>,
}

#[derive(Debug, Deserialize)]
struct ItemError {
    #[serde(default, rename = "type")]
    kind: String,
    #[serde(default)]
    reason: String,
}

/// The `_id` of an event: its stable id, hashed when Elasticsearch would refuse its length.
pub fn document_id(id: &str) -> std::borrow::Cow<'_, str> {
    if id.len() <= MAX_ID_BYTES {
        std::borrow::Cow::Borrowed(id)
    } else {
        std::borrow::Cow::Owned(hex::encode(Sha256::digest(id.as_bytes())))
    }
}

/// What one `_bulk` item answer means.
fn item_outcome(item: &BulkItem) -> EventOutcome {
    let status = item.status;
    let what = item
        .error
        .as_ref()
        .map(|e| format!("{}: {}", e.kind, e.reason))
        .unwrap_or_default();
    match status {
        200..=299 => EventOutcome::Delivered,
        // `create` of an `_id` that exists: an earlier attempt got through.
        409 => EventOutcome::Delivered,
        429 | 500..=599 => EventOutcome::Retry {
            reason: format!("Elasticsearch item {status}: {what}"),
        },
        401 | 403 => EventOutcome::Unauthorized {
            kind: AuthFailure::of_status(status).unwrap_or(AuthFailure::Forbidden),
            reason: format!(
                "Elasticsearch item {status}: {what} (check the credentials Secret and the role's privileges on the index)"
            ),
        },
        _ => EventOutcome::Rejected {
            reason: format!("Elasticsearch item {status}: {what}"),
        },
    }
}

impl ElasticsearchDestination {
    /// Build from the spec; credentials and TLS Secrets are read now. `format` is the
    /// SiemDestination's: it decides how data streams are chosen and what a raw record becomes.
    pub fn new(
        name: &str,
        spec: &ElasticsearchSpec,
        format: EventFormat,
        retry: &RetrySpec,
        secrets: &SecretSource,
    ) -> Result<Self, BuildError> {
        if spec.urls.is_empty() {
            return Err(http_client::invalid(name, "urls: at least one node URL is needed"));
        }
        if name_part(&spec.namespace) != spec.namespace {
            return Err(http_client::invalid(
                name,
                "namespace: lowercase letters, digits, `_` and `.` only, at most 100 characters",
            ));
        }
        let bulk_urls = spec
            .urls
            .iter()
            .map(|u| http_client::base_url(name, "urls", u).map(|b| format!("{b}/_bulk")))
            .collect::<Result<Vec<_>, _>>()?;
        let authorization = match (&spec.basic_auth, &spec.api_key) {
            (Some(_), Some(_)) => {
                return Err(http_client::invalid(
                    name,
                    "basicAuth and apiKey are mutually exclusive",
                ))
            }
            (Some(basic), None) => {
                use base64::Engine;
                let password = http_client::secret(name, secrets, &basic.password)?;
                let pair = format!("{}:{}", basic.username, password.expose());
                Some(format!(
                    "Basic {}",
                    base64::engine::general_purpose::STANDARD.encode(pair)
                ))
            }
            (None, Some(key)) => Some(format!("ApiKey {}", http_client::secret(name, secrets, key)?.expose())),
            (None, None) => None,
        };
        let authorization = match authorization {
            Some(value) => {
                // The encoded Basic pair is a credential too, should a receiver echo it.
                secrets::register(&value);
                let mut v = HeaderValue::from_str(&value)
                    .map_err(|_| http_client::invalid(name, "credentials are not a valid header value"))?;
                v.set_sensitive(true);
                Some(v)
            }
            None => None,
        };
        Ok(ElasticsearchDestination {
            client: http_client::client(name, retry, spec.tls.as_ref(), secrets)?,
            bulk_urls,
            next_node: AtomicUsize::new(0),
            index: spec.index.clone(),
            namespace: spec.namespace.clone(),
            pipeline: spec.pipeline.clone(),
            format,
            authorization,
            compression: spec.compression,
        })
    }

    /// Where an event goes and the document written there: the fixed `index` and the body, or
    /// the data stream of its dataset and (raw records) the document an integration parses.
    pub fn target(&self, e: &Event) -> (String, Option<Vec<u8>>) {
        if let Some(index) = &self.index {
            return (index.clone(), None);
        }
        let stream = |dataset: &str| format!("logs-{}-{}", name_part(dataset), self.namespace);
        match self.format {
            EventFormat::Ecs => {
                let dataset = facts(&e.body).dataset;
                (stream(dataset.as_deref().unwrap_or(FALLBACK_DATASET)), None)
            }
            EventFormat::Raw => {
                let dataset = e
                    .recognized
                    .as_ref()
                    .and_then(|r| content::elastic_integration_dataset(r.family, &r.category))
                    .unwrap_or(UNPARSED_DATASET);
                let dataset = name_part(dataset);
                let time = facts(&e.body)
                    .time_rfc3339()
                    .unwrap_or_else(|| chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Millis, true));
                let doc = serde_json::json!({
                    "@timestamp": time,
                    "message": String::from_utf8_lossy(&e.body),
                    "data_stream": {"type": "logs", "dataset": dataset, "namespace": self.namespace},
                });
                (stream(&dataset), Some(doc.to_string().into_bytes()))
            }
        }
    }

    /// The NDJSON body of a batch: a `create` action and the document per event, with the
    /// final newline `_bulk` requires.
    pub fn encode(&self, batch: &[Event]) -> Vec<u8> {
        let mut body = Vec::with_capacity(batch.iter().map(|e| e.body.len() + 128).sum());
        for e in batch {
            let (index, wrapped) = self.target(e);
            body.extend_from_slice(b"{\"create\":{\"_index\":");
            // Serializing a str cannot fail.
            let _ = serde_json::to_writer(&mut body, &index);
            body.extend_from_slice(b",\"_id\":");
            let _ = serde_json::to_writer(&mut body, &*document_id(&e.id));
            if let Some(p) = &self.pipeline {
                body.extend_from_slice(b",\"pipeline\":");
                let _ = serde_json::to_writer(&mut body, p);
            }
            body.extend_from_slice(b"}}\n");
            body.extend_from_slice(wrapped.as_deref().unwrap_or(&e.body));
            body.push(b'\n');
        }
        body
    }

    async fn post(&self, body: &[u8]) -> Result<reqwest::Response, String> {
        let nodes = self.bulk_urls.len();
        let first = self.next_node.fetch_add(1, Ordering::Relaxed);
        let payload = if self.compression {
            http_client::gzip(body)
        } else {
            body.to_vec()
        };
        let mut last = String::new();
        for k in 0..nodes {
            let url = &self.bulk_urls[(first + k) % nodes];
            let mut req = self
                .client
                .post(url)
                .header(CONTENT_TYPE, "application/x-ndjson")
                .body(payload.clone());
            if self.compression {
                req = req.header(CONTENT_ENCODING, "gzip");
            }
            if let Some(a) = &self.authorization {
                req = req.header(AUTHORIZATION, a.clone());
            }
            match req.send().await {
                Ok(r) => {
                    return match http_client::redirect_refused(&r) {
                        Some(reason) => Err(reason),
                        None => Ok(r),
                    }
                }
                // Only a node that could not be reached is skipped; a timeout may have indexed.
                Err(e) if e.is_connect() => last = request_error(&e),
                Err(e) => return Err(request_error(&e)),
            }
        }
        Err(last)
    }

    async fn send_events(&self, batch: &[Event]) -> (Vec<EventOutcome>, Option<std::time::Duration>) {
        let all = |o: EventOutcome| vec![o; batch.len()];
        let response = match self.post(&self.encode(batch)).await {
            Ok(r) => r,
            Err(reason) => return (all(EventOutcome::Retry { reason }), None),
        };
        let status = response.status();
        let after = http_client::retry_after(response.headers());
        let body = response.bytes().await.unwrap_or_default();
        if status.is_success() {
            let parsed: BulkResponse = match serde_json::from_slice(&body) {
                Ok(p) => p,
                Err(e) => {
                    let reason = format!("Elasticsearch _bulk answer is not the expected JSON: {e}");
                    return (all(EventOutcome::Retry { reason }), None);
                }
            };
            // Only per-item results prove indexing: a 2xx without them (a proxy, a wrong path)
            // delivered nothing that can be checked.
            if parsed.items.len() != batch.len() {
                let reason = format!(
                    "Elasticsearch _bulk HTTP {} answered {} items for {} documents; only per-item results prove \
                     indexing (is the URL a _bulk API?); sending again",
                    status.as_u16(),
                    parsed.items.len(),
                    batch.len()
                );
                return (all(EventOutcome::Retry { reason }), None);
            }
            let outcomes = parsed
                .items
                .iter()
                .map(|item| match item.values().next() {
                    Some(i) => item_outcome(i),
                    None => EventOutcome::Retry {
                        reason: "Elasticsearch _bulk item without an action".into(),
                    },
                })
                .collect();
            return (outcomes, None);
        }
        let reason = format!(
            "Elasticsearch _bulk HTTP {}: {}",
            status.as_u16(),
            excerpt(&String::from_utf8_lossy(&body))
        );
        if status == StatusCode::PAYLOAD_TOO_LARGE && batch.len() > 1 {
            let (a, b) = batch.split_at(batch.len() / 2);
            let (mut out, after_a) = Box::pin(self.send_events(a)).await;
            let (rest, after_b) = Box::pin(self.send_events(b)).await;
            out.extend(rest);
            return (out, after_a.max(after_b));
        }
        if status == StatusCode::TOO_MANY_REQUESTS || status.is_server_error() || status == StatusCode::REQUEST_TIMEOUT
        {
            return (all(EventOutcome::Retry { reason }), after);
        }
        if let Some(kind) = AuthFailure::of_status(status.as_u16()) {
            let reason = format!("{reason} (check the credentials Secret and the role's privileges on the index)");
            return (all(EventOutcome::Unauthorized { kind, reason }), None);
        }
        (all(EventOutcome::Rejected { reason }), None)
    }
}

#[async_trait]
impl Destination for ElasticsearchDestination {
    async fn send(&self, batch: &[Event]) -> SendOutcome {
        let (outcomes, after) = self.send_events(batch).await;
        uniform(outcomes, after)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn long_ids_are_hashed_to_a_valid_length() {
        assert_eq!(document_id("abc"), "abc");
        let long = "x".repeat(600);
        let id = document_id(&long);
        assert_eq!(id.len(), 64);
        assert_eq!(id, document_id(&long), "the same id every time");
    }

    #[test]
    fn item_statuses_map_to_outcomes() {
        let item = |status, kind: &str| BulkItem {
            status,
            error: Some(ItemError {
                kind: kind.into(),
                reason: "r".into(),
            }),
        };
        assert_eq!(item_outcome(&item(201, "")), EventOutcome::Delivered);
        assert_eq!(
            item_outcome(&item(409, "version_conflict_engine_exception")),
            EventOutcome::Delivered
        );
        assert!(matches!(
            item_outcome(&item(429, "es_rejected_execution_exception")),
            EventOutcome::Retry { .. }
        ));
        assert!(
            matches!(item_outcome(&item(400, "mapper_parsing_exception")), EventOutcome::Rejected { reason } if reason.contains("mapper_parsing_exception"))
        );
        assert!(matches!(
            item_outcome(&item(403, "security_exception")),
            EventOutcome::Unauthorized {
                kind: AuthFailure::Forbidden,
                ..
            }
        ));
    }

    fn destination(spec: ElasticsearchSpec, format: EventFormat) -> ElasticsearchDestination {
        ElasticsearchDestination::new("es", &spec, format, &RetrySpec::default(), &SecretSource::Environment).unwrap()
    }

    #[test]
    fn bulk_bodies_are_create_pairs_ending_with_a_newline() {
        let spec = ElasticsearchSpec {
            urls: vec!["http://127.0.0.1:9200/".into()],
            index: Some("logs-m365.audit-default".into()),
            ..Default::default()
        };
        let d = destination(spec, EventFormat::Ecs);
        assert_eq!(d.bulk_urls, vec!["http://127.0.0.1:9200/_bulk"]);
        let body = d.encode(&[Event::detached_with_id("{\"a\":1}", "ls", "id\"1")]);
        assert_eq!(
            String::from_utf8(body).unwrap(),
            "{\"create\":{\"_index\":\"logs-m365.audit-default\",\"_id\":\"id\\\"1\"}}\n{\"a\":1}\n"
        );
    }

    #[test]
    fn ecs_documents_go_to_the_data_stream_of_their_dataset_with_the_pipeline() {
        let spec = ElasticsearchSpec {
            urls: vec!["http://127.0.0.1:9200".into()],
            namespace: "prod".into(),
            pipeline: Some("siembridge-extra".into()),
            ..Default::default()
        };
        let d = destination(spec, EventFormat::Ecs);
        let e = Event::detached_with_id(
            r#"{"@timestamp":"2026-01-01T00:00:00Z","event":{"dataset":"azure.signinlogs"}}"#,
            "ls",
            "i",
        );
        let body = String::from_utf8(d.encode(&[e])).unwrap();
        let action: serde_json::Value = serde_json::from_str(body.lines().next().unwrap()).unwrap();
        assert_eq!(action["create"]["_index"], "logs-azure.signinlogs-prod");
        assert_eq!(action["create"]["pipeline"], "siembridge-extra");
        let odd = Event::detached_with_id(r#"{"event":{"dataset":"Weird-Name/X"}}"#, "ls", "j");
        assert_eq!(d.target(&odd).0, "logs-weird_name_x-prod");
        assert_eq!(d.target(&Event::detached("{}", "ls")).0, "logs-siembridge-prod");
    }

    #[test]
    fn raw_records_are_shipped_in_message_to_the_integration_data_stream() {
        let d = destination(
            ElasticsearchSpec {
                urls: vec!["http://127.0.0.1:9200".into()],
                ..Default::default()
            },
            EventFormat::Raw,
        );
        let record = r#"{"time":"2026-01-15T08:00:01.1234567Z","category":"SignInLogs","properties":{}}"#;
        let mut e = Event::detached_with_id(record, "ls", "i");
        e.recognized = Some(std::sync::Arc::new(crate::normalize::Recognized {
            family: "entra",
            category: "SignInLogs".into(),
        }));
        let (index, doc) = d.target(&e);
        assert_eq!(index, "logs-azure.signinlogs-default");
        let doc: serde_json::Value = serde_json::from_slice(&doc.unwrap()).unwrap();
        assert_eq!(doc["message"], record);
        assert_eq!(doc["@timestamp"], "2026-01-15T08:00:01.123Z");
        assert_eq!(
            doc["data_stream"],
            serde_json::json!({"type": "logs", "dataset": "azure.signinlogs", "namespace": "default"})
        );
        let (index, _) = d.target(&Event::detached("{}", "ls"));
        assert_eq!(index, "logs-siembridge.original-default");
    }

    #[test]
    fn invalid_namespaces_are_refused() {
        let spec = ElasticsearchSpec {
            urls: vec!["http://127.0.0.1:9200".into()],
            namespace: "Prod-EU".into(),
            ..Default::default()
        };
        let e = ElasticsearchDestination::new(
            "es",
            &spec,
            EventFormat::Ecs,
            &RetrySpec::default(),
            &SecretSource::Environment,
        )
        .unwrap_err();
        assert!(e.to_string().contains("namespace"), "{e}");
    }
}
