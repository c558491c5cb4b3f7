//! `azureBlob`: an archive of (gzip) NDJSON objects in Azure Blob Storage, the long-term copy that
//! outlives the 7-day retention of the Microsoft APIs (docs/PROTOCOLS.md section 7.7).
//!
//! A batch is split by object path: the path template is filled per event with `{source}` (the
//! LogSource), `{category}` (ECS `event.dataset`, else the record's `category` or `Workload`) and
//! the event's own UTC time (`{yyyy}`, `{MM}`, `{dd}`, `{HH}` from ECS `@timestamp`, else the
//! record's `time`, `CreationTime`, `createdDateTime`, `activityDateTime` or `Timestamp`). Event
//! time, not receive time, keeps the path of a re-delivered event the same.
//!
//! Object names are deterministic: `<path>/<first id>-<count>-<hash of every id>.ndjson[.gz]`.
//! The delivery machinery re-sends the same events after a failure, so a retried group lands on
//! the same name and overwrites (Put Blob replaces a block blob whole, atomically): an object
//! whose write succeeded but whose answer was lost is never duplicated. Groups of one batch are
//! written independently and reported per event, so a retry re-sends only the failed groups.
//!
//! Status handling: 2xx delivered; 408, 429, 5xx and transport errors are retried, with
//! `Retry-After` when the service sends one; refused credentials are an outage retried until they
//! work (a key rotated, a SAS renewed), never dead-lettered, and reported as the destination's
//! reason: `AuthenticationFailed` (a wrong key or expired SAS, which Azure Storage answers with
//! 403), any 401 and token errors are Unauthorized, other 403s (`AuthorizationFailure`,
//! `AuthorizationPermissionMismatch`: the identity lacks a role) Forbidden; a missing container
//! is created once and the write retried (then 404 is retried); any other 4xx is a rejection.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, Ordering};

use async_trait::async_trait;
use bytes::Bytes;
use chrono::{DateTime, Datelike, NaiveDateTime, Timelike, Utc};
use serde::Deserialize;
use sha2::{Digest, Sha256};

use super::{AuthFailure, BuildError, Destination, Event, EventOutcome, SendOutcome};
use crate::api::AzureBlobArchiveSpec;
use crate::collector::azure_blob::{BlobError, BlobService, Condition};
use crate::config::SecretSource;

/// Longest part of the first id kept in an object name.
const ID_IN_NAME: usize = 64;

/// Writes batches as objects in one container.
#[derive(Debug)]
pub struct AzureBlobDestination {
    service: BlobService,
    container: String,
    template: String,
    gzip: bool,
    /// Whether the container was created (or found) by this destination already.
    container_ready: AtomicBool,
}

impl AzureBlobDestination {
    /// Build from the spec; Secrets are read now.
    pub fn new(name: &str, spec: &AzureBlobArchiveSpec, secrets: &SecretSource) -> Result<Self, BuildError> {
        let service = BlobService::from_credentials(&spec.account_url, &spec.credentials, secrets).map_err(|e| {
            BuildError::Invalid {
                name: name.to_string(),
                message: e.to_string(),
            }
        })?;
        Ok(Self::with_service(service, spec))
    }

    /// A destination over an existing client (tests, benchmarks).
    pub fn with_service(service: BlobService, spec: &AzureBlobArchiveSpec) -> Self {
        AzureBlobDestination {
            service,
            container: spec.container.clone(),
            template: spec.path_template.trim_matches('/').to_string(),
            gzip: spec.gzip,
            container_ready: AtomicBool::new(false),
        }
    }

    /// Connectivity check for the SiemDestination `Ready` condition: create the container if
    /// missing (which proves the endpoint, the credentials and write rights), the check a destination can make without writing an object.
    pub async fn check(&self) -> Result<(), BlobError> {
        self.service.create_container(&self.container).await?;
        self.container_ready.store(true, Ordering::Relaxed);
        Ok(())
    }

    async fn put(&self, name: &str, body: Bytes, count: usize) -> Result<(), BlobError> {
        let content_type = if self.gzip {
            "application/gzip"
        } else {
            "application/x-ndjson"
        };
        let count = count.to_string();
        let metadata = [("events", count.as_str())];
        let first = self
            .service
            .put_block_blob(
                &self.container,
                name,
                body.clone(),
                content_type,
                &metadata,
                &Condition::None,
            )
            .await;
        match first {
            Err(e) if e.code() == "ContainerNotFound" && !self.container_ready.swap(true, Ordering::Relaxed) => {
                tracing::info!(container = %self.container, "container missing; creating it");
                self.service.create_container(&self.container).await?;
                self.service
                    .put_block_blob(&self.container, name, body, content_type, &metadata, &Condition::None)
                    .await
                    .map(|_| ())
            }
            other => other.map(|_| ()),
        }
    }
}

/// Fields of an event that place it in the archive. Unknown fields are skipped unparsed.
#[derive(Deserialize, Default)]
struct Placement<'a> {
    #[serde(rename = "@timestamp", borrow, default)]
    timestamp: Option<std::borrow::Cow<'a, str>>,
    #[serde(borrow, default)]
    time: Option<std::borrow::Cow<'a, str>>,
    #[serde(rename = "CreationTime", borrow, default)]
    creation_time: Option<std::borrow::Cow<'a, str>>,
    #[serde(rename = "createdDateTime", borrow, default)]
    created: Option<std::borrow::Cow<'a, str>>,
    #[serde(rename = "activityDateTime", borrow, default)]
    activity: Option<std::borrow::Cow<'a, str>>,
    #[serde(rename = "Timestamp", borrow, default)]
    timestamp_defender: Option<std::borrow::Cow<'a, str>>,
    #[serde(default)]
    event: Option<serde_json::Value>,
    #[serde(default)]
    category: Option<serde_json::Value>,
    #[serde(rename = "Workload", borrow, default)]
    workload: Option<std::borrow::Cow<'a, str>>,
}

/// Parse an event time: RFC 3339, or the zone-less `2025-01-01T10:03:19` O365 uses (UTC).
pub fn parse_time(s: &str) -> Option<DateTime<Utc>> {
    if let Ok(t) = DateTime::parse_from_rfc3339(s) {
        return Some(t.with_timezone(&Utc));
    }
    NaiveDateTime::parse_from_str(s.trim_end_matches('Z'), "%Y-%m-%dT%H:%M:%S%.f")
        .ok()
        .map(|n| n.and_utc())
}

/// A path segment safe in a blob name: letters, digits, `.`, `_`, `-`, `=`; anything else `_`.
fn segment(s: &str) -> String {
    let mut out: String = s
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-' | '=') {
                c
            } else {
                '_'
            }
        })
        .collect();
    if out.is_empty() || out.chars().all(|c| c == '.') {
        out = "_".into();
    }
    out
}

/// The object path (without the name) of one event.
pub fn object_path(template: &str, log_source: &str, body: &[u8], now: DateTime<Utc>) -> String {
    let p: Placement<'_> = serde_json::from_slice(body).unwrap_or_default();
    let time = [
        &p.timestamp,
        &p.time,
        &p.creation_time,
        &p.created,
        &p.activity,
        &p.timestamp_defender,
    ]
    .into_iter()
    .flatten()
    .find_map(|t| parse_time(t))
    .unwrap_or(now);
    let category = p
        .event
        .and_then(|e| e.get("dataset").and_then(|d| d.as_str()).map(str::to_string))
        .or_else(|| match p.category {
            Some(serde_json::Value::String(s)) => Some(s),
            Some(serde_json::Value::Number(n)) => Some(n.to_string()),
            _ => None,
        })
        .or_else(|| p.workload.map(|w| w.into_owned()))
        .unwrap_or_else(|| "uncategorized".to_string());
    template
        .replace("{source}", &segment(log_source))
        .replace("{category}", &segment(&category))
        .replace("{yyyy}", &format!("{:04}", time.year()))
        .replace("{MM}", &format!("{:02}", time.month()))
        .replace("{dd}", &format!("{:02}", time.day()))
        .replace("{HH}", &format!("{:02}", time.hour()))
}

/// The deterministic object name of a group of events under `path`.
pub fn object_name(path: &str, events: &[&Event], gzip: bool) -> String {
    let mut hash = Sha256::new();
    for e in events {
        hash.update(e.id.as_bytes());
        hash.update([0u8]);
    }
    let digest = hex::encode(hash.finalize());
    let first: String = events
        .first()
        .map(|e| segment(&e.id))
        .unwrap_or_default()
        .chars()
        .take(ID_IN_NAME)
        .collect();
    let ext = if gzip { "ndjson.gz" } else { "ndjson" };
    let prefix = if path.is_empty() {
        String::new()
    } else {
        format!("{path}/")
    };
    format!("{prefix}{first}-{}-{}.{ext}", events.len(), &digest[..16])
}

/// NDJSON of the events, gzip-compressed when asked.
pub fn encode(events: &[&Event], gzip: bool) -> Bytes {
    let mut ndjson = Vec::with_capacity(events.iter().map(|e| e.body.len() + 1).sum());
    for e in events {
        ndjson.extend_from_slice(&e.body);
        ndjson.push(b'\n');
    }
    if !gzip {
        return Bytes::from(ndjson);
    }
    use std::io::Write;
    let mut gz = flate2::write::GzEncoder::new(Vec::with_capacity(ndjson.len() / 4), flate2::Compression::new(5));
    // Writing to a Vec cannot fail.
    let _ = gz.write_all(&ndjson);
    Bytes::from(gz.finish().unwrap_or_default())
}

/// Whether an error is refused credentials, and which refusal.
pub fn refusal(e: &BlobError) -> Option<AuthFailure> {
    match e {
        BlobError::Auth(a) if !a.is_transient() => Some(AuthFailure::Unauthorized),
        BlobError::Status { code, .. } if code == "AuthenticationFailed" => Some(AuthFailure::Unauthorized),
        BlobError::Status { status, .. } => AuthFailure::of_status(*status),
        _ => None,
    }
}

fn outcome_of(e: &BlobError) -> EventOutcome {
    if let Some(kind) = refusal(e) {
        return EventOutcome::Unauthorized {
            kind,
            reason: format!("{e} (check the storage credentials Secret and the identity's role on the container)"),
        };
    }
    let retry = e.is_transient() || e.is_not_found();
    if retry {
        EventOutcome::Retry { reason: e.to_string() }
    } else {
        EventOutcome::Rejected { reason: e.to_string() }
    }
}

#[async_trait]
impl Destination for AzureBlobDestination {
    async fn send(&self, batch: &[Event]) -> SendOutcome {
        let now = Utc::now();
        let mut groups: BTreeMap<String, Vec<usize>> = BTreeMap::new();
        for (i, e) in batch.iter().enumerate() {
            groups
                .entry(object_path(&self.template, &e.log_source, &e.body, now))
                .or_default()
                .push(i);
        }
        let mut outcomes = vec![EventOutcome::Delivered; batch.len()];
        let mut retry_after = None;
        let mut all_ok = true;
        for (path, idx) in &groups {
            let events: Vec<&Event> = idx.iter().map(|&i| &batch[i]).collect();
            let name = object_name(path, &events, self.gzip);
            let body = encode(&events, self.gzip);
            if let Err(e) = self.put(&name, body, events.len()).await {
                tracing::warn!(container = %self.container, object = %name, error = %e, "archive write failed");
                all_ok = false;
                retry_after = retry_after.or(e.retry_after());
                let o = outcome_of(&e);
                for &i in idx {
                    outcomes[i] = o.clone();
                }
            }
        }
        if all_ok {
            return SendOutcome::Delivered;
        }
        super::http_client::uniform(outcomes, retry_after)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const T: &str = "{source}/{category}/y={yyyy}/m={MM}/d={dd}/h={HH}";

    #[test]
    fn ecs_events_are_placed_by_dataset_and_timestamp() {
        let now = Utc::now();
        let ecs = br#"{"@timestamp":"2025-01-01T10:03:19.123Z","event":{"dataset":"azure.signinlogs","action":"x"}}"#;
        assert_eq!(
            object_path(T, "entra-signins", ecs, now),
            "entra-signins/azure.signinlogs/y=2025/m=01/d=01/h=10"
        );
    }

    #[test]
    fn raw_records_are_placed_by_their_own_time_and_category() {
        let now = Utc::now();
        let monitor = br#"{"time":"2025-03-04T23:59:59.9Z","category":"SignInLogs"}"#;
        assert_eq!(object_path(T, "s", monitor, now), "s/SignInLogs/y=2025/m=03/d=04/h=23");
        let o365 = br#"{"CreationTime":"2025-02-01T05:00:00","Workload":"Exchange","RecordType":2}"#;
        assert_eq!(object_path(T, "s", o365, now), "s/Exchange/y=2025/m=02/d=01/h=05");
        let odd = br#"{"category":"../../etc passwd"}"#;
        let p = object_path(T, "a/b", odd, now);
        assert!(p.starts_with("a_b/.._.._etc_passwd/"), "{p}");
        let not_json = b"not json";
        assert!(object_path(T, "s", not_json, now).starts_with("s/uncategorized/"));
    }

    #[test]
    fn names_depend_on_every_id_and_nothing_else() {
        let a = [
            Event::detached_with_id("{}", "s", "id-1"),
            Event::detached_with_id("{}", "s", "id-2"),
        ];
        let b = [
            Event::detached_with_id("{\"changed\":1}", "s", "id-1"),
            Event::detached_with_id("{}", "s", "id-2"),
        ];
        let c = [
            Event::detached_with_id("{}", "s", "id-1"),
            Event::detached_with_id("{}", "s", "id-3"),
        ];
        let name = |x: &[Event]| object_name("p", &x.iter().collect::<Vec<_>>(), true);
        assert_eq!(name(&a), name(&b));
        assert_ne!(name(&a), name(&c));
        assert!(name(&a).starts_with("p/id-1-2-"));
        assert!(name(&a).ends_with(".ndjson.gz"));
        let slashy = [Event::detached_with_id("{}", "s", "ns/hub/0/123#4")];
        let n = object_name("p", &slashy.iter().collect::<Vec<_>>(), false);
        assert!(n.starts_with("p/ns_hub_0_123_4-1-") && n.ends_with(".ndjson"), "{n}");
    }

    #[test]
    fn refused_credentials_are_told_apart() {
        let e = |status, code: &str| BlobError::Status {
            status,
            code: code.into(),
            message: String::new(),
            retry_after: None,
        };
        assert_eq!(
            refusal(&e(403, "AuthenticationFailed")),
            Some(AuthFailure::Unauthorized)
        );
        assert_eq!(
            refusal(&e(403, "AuthorizationPermissionMismatch")),
            Some(AuthFailure::Forbidden)
        );
        assert_eq!(refusal(&e(401, "")), Some(AuthFailure::Unauthorized));
        assert_eq!(refusal(&e(404, "ContainerNotFound")), None);
        assert!(matches!(
            outcome_of(&e(404, "ContainerNotFound")),
            EventOutcome::Retry { .. }
        ));
        assert!(matches!(
            outcome_of(&e(400, "InvalidBlobOrBlock")),
            EventOutcome::Rejected { .. }
        ));
    }

    #[test]
    fn gzip_round_trips() {
        use std::io::Read;
        let events = [Event::detached("{\"a\":1}", "s"), Event::detached("{\"b\":\"é\"}", "s")];
        let refs: Vec<&Event> = events.iter().collect();
        let gz = encode(&refs, true);
        let mut out = String::new();
        flate2::read::GzDecoder::new(&gz[..]).read_to_string(&mut out).unwrap();
        assert_eq!(out, "{\"a\":1}\n{\"b\":\"é\"}\n");
        assert_eq!(&encode(&refs, false)[..], out.as_bytes());
    }
}
