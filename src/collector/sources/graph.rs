//! Microsoft Graph audit, sign-in, risk and security endpoints (docs/PROTOCOLS.md section 3).
//!
//! Each endpoint is one stream polled by time window on its time property (`$filter` with
//! `ge`/`lt`), `overlap` behind its cursor for records that arrive late, paged by
//! `@odata.nextLink` with `$top` at the endpoint's documented maximum. Objects already delivered
//! are dropped by `id` (exact, in memory); the checkpoint keeps a per-minute digest of them (see
//! [`super::delivered`]), and the first window after a restart is first read without delivering
//! to compare it with that digest. Each page is one unit; the last unit of a window carries the
//! window end as position.
//!
//! Requests share one budget per API family of the (app, tenant): identity and access reports
//! (`auditLogs/*`, 5 requests per 10 s), identity protection (1 per second) and security (150 per
//! minute); `Retry-After` is honoured on 429, 503 and 504.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use chrono::{DateTime, Utc};
use serde::Deserialize;
use serde_json::value::RawValue;

use super::api::{
    cursor_time, parse_time, query_time, throttled_by_status, ApiClient, ApiResponse, RateBudget, RetryPolicy,
};
use super::delivered::{DeliveredIds, MAX_EXACT_IDS};
use super::{RecordOrigin, Source, SourceBatch, SourceContext, SourceError, SourceStatus, SourceUnit};
use crate::api::{GraphBudget, GraphEndpoint, GraphSource, LostRange, SignInEventType};
use crate::collector::auth::{default_scope, CloudEndpoints, TokenProvider};
use crate::config::SecretSource;

/// Longest window per request series: keeps checkpoints moving during a backfill.
const MAX_WINDOW: chrono::TimeDelta = chrono::TimeDelta::hours(24);

/// Throttling family of an endpoint: each has its own documented limit.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
enum Family {
    Reports,
    IdentityProtection,
    Security,
}

/// What is fixed about an endpoint.
#[derive(Clone, Copy, Debug)]
pub struct EndpointInfo {
    /// Path under the version root.
    pub path: &'static str,
    /// Time property filtered on.
    pub time_field: &'static str,
    /// Largest `$top`.
    pub max_top: u32,
    family: Family,
}

/// Path, time property, page size and throttling family of `endpoint`.
pub fn endpoint_info(endpoint: GraphEndpoint) -> EndpointInfo {
    let (path, time_field, max_top, family) = match endpoint {
        GraphEndpoint::DirectoryAudits => ("auditLogs/directoryAudits", "activityDateTime", 1000, Family::Reports),
        GraphEndpoint::SignIns => ("auditLogs/signIns", "createdDateTime", 1000, Family::Reports),
        GraphEndpoint::Provisioning => ("auditLogs/provisioning", "activityDateTime", 1000, Family::Reports),
        GraphEndpoint::RiskDetections => (
            "identityProtection/riskDetections",
            "detectedDateTime",
            500,
            Family::IdentityProtection,
        ),
        GraphEndpoint::RiskyUsers => (
            "identityProtection/riskyUsers",
            "riskLastUpdatedDateTime",
            500,
            Family::IdentityProtection,
        ),
        GraphEndpoint::AlertsV2 => ("security/alerts_v2", "createdDateTime", 2000, Family::Security),
        GraphEndpoint::Incidents => ("security/incidents", "createdDateTime", 50, Family::Security),
    };
    EndpointInfo {
        path,
        time_field,
        max_top,
        family,
    }
}

/// The `signInEventTypes` filter and API version for the sign-in types asked for: v1.0 serves
/// interactive sign-ins only, anything else needs beta.
pub fn sign_in_selection(types: &[SignInEventType]) -> (&'static str, Option<String>) {
    let names: Vec<&str> = types
        .iter()
        .map(|t| match t {
            SignInEventType::InteractiveUser => "interactiveUser",
            SignInEventType::NonInteractiveUser => "nonInteractiveUser",
            SignInEventType::ServicePrincipal => "servicePrincipal",
            SignInEventType::ManagedIdentity => "managedIdentity",
        })
        .collect();
    if names.is_empty() || names == ["interactiveUser"] {
        return ("v1.0", None);
    }
    let any = names
        .iter()
        .map(|n| format!("t eq '{n}'"))
        .collect::<Vec<_>>()
        .join(" or ");
    ("beta", Some(format!("signInEventTypes/any(t: {any})")))
}

#[derive(Debug)]
struct EndpointCursor {
    stream: String,
    info: EndpointInfo,
    version: &'static str,
    extra_filter: Option<String>,
    cursor: DateTime<Utc>,
    backfill_from: DateTime<Utc>,
    ids: DeliveredIds,
    /// The window being read: its end and the next page to get.
    window: Option<(DateTime<Utc>, String)>,
    next_poll: Instant,
}

impl super::api::PolledStream for EndpointCursor {
    fn in_window(&self) -> bool {
        self.window.is_some()
    }
    fn next_poll(&self) -> Instant {
        self.next_poll
    }
    fn cursor(&self) -> DateTime<Utc> {
        self.cursor
    }
}

/// The Graph source.
pub struct GraphReader {
    clients: BTreeMap<Family, ApiClient>,
    root: String,
    streams: Vec<EndpointCursor>,
    overlap: chrono::TimeDelta,
    interval: Duration,
    status: Arc<SourceStatus>,
}

impl std::fmt::Debug for GraphReader {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("GraphReader")
            .field("root", &self.root)
            .finish_non_exhaustive()
    }
}

impl GraphReader {
    /// Build the source and read each endpoint's checkpoint. No network yet.
    pub async fn open(spec: &GraphSource, secrets: &SecretSource, ctx: SourceContext) -> Result<Self, SourceError> {
        let tokens = Arc::new(
            TokenProvider::from_spec(&spec.credentials, secrets)
                .map_err(|e| SourceError::Api(super::api::ApiError::Auth(e)))?,
        );
        let cloud = CloudEndpoints::of(spec.credentials.cloud);
        let root = spec
            .endpoint
            .clone()
            .unwrap_or_else(|| cloud.graph.to_string())
            .trim_end_matches('/')
            .to_string();
        let budget: GraphBudget = spec.budget.clone().unwrap_or_default();
        let mut clients = BTreeMap::new();
        for (family, requests, per) in [
            (Family::Reports, budget.reports_per_ten_seconds, Duration::from_secs(10)),
            (
                Family::IdentityProtection,
                budget.identity_protection_per_second,
                Duration::from_secs(1),
            ),
            (Family::Security, budget.security_per_minute, Duration::from_secs(60)),
        ] {
            let client = ApiClient::new(
                tokens.clone(),
                default_scope(cloud.graph),
                Arc::new(RateBudget::new(requests, per)),
                ctx.status.clone(),
                RetryPolicy::default(),
                throttled_by_status,
            )
            .map_err(|e| SourceError::Invalid(format!("HTTP client: {e}")))?;
            clients.insert(family, client);
        }
        let now = Utc::now();
        let backfill = chrono::TimeDelta::hours(i64::from(spec.polling.backfill_hours));
        let mut endpoints = spec.endpoints.clone();
        endpoints.sort();
        endpoints.dedup();
        let mut streams = Vec::new();
        for endpoint in endpoints {
            let info = endpoint_info(endpoint);
            let (version, extra_filter) = if endpoint == GraphEndpoint::SignIns {
                sign_in_selection(&spec.sign_in_event_types)
            } else {
                ("v1.0", None)
            };
            let stream = info.path.to_string();
            let (cursor, ids) = match ctx.checkpoints.load(&stream).await? {
                Some(cp) => (
                    parse_time(&cp.position).ok_or_else(|| {
                        SourceError::Invalid(format!(
                            "checkpoint of {stream} has position {:?}, not a time",
                            cp.position
                        ))
                    })?,
                    DeliveredIds::from_state(
                        cp.state.as_ref().and_then(|s| s.get("ids")).and_then(|v| v.as_str()),
                        MAX_EXACT_IDS,
                    )
                    .map_err(|e| SourceError::Invalid(format!("checkpoint of {stream}: {e}")))?,
                ),
                None => (now - backfill, DeliveredIds::new(MAX_EXACT_IDS)),
            };
            tracing::info!(collector = %ctx.collector, stream = %stream, version, cursor = %cursor, "Graph endpoint starts");
            streams.push(EndpointCursor {
                stream,
                info,
                version,
                extra_filter,
                cursor,
                backfill_from: cursor.min(now),
                ids,
                window: None,
                next_poll: Instant::now(),
            });
        }
        Ok(GraphReader {
            clients,
            root,
            streams,
            overlap: chrono::TimeDelta::minutes(i64::from(spec.polling.overlap_minutes)),
            interval: Duration::from_secs(u64::from(spec.polling.interval_seconds.max(1))),
            status: ctx.status,
        })
    }

    fn first_page(&self, s: &EndpointCursor, start: DateTime<Utc>, end: DateTime<Utc>) -> Result<String, SourceError> {
        let mut filter = format!(
            "{f} ge {} and {f} lt {}",
            query_time(start),
            query_time(end),
            f = s.info.time_field
        );
        if let Some(extra) = &s.extra_filter {
            filter.push_str(" and ");
            filter.push_str(extra);
        }
        let url = reqwest::Url::parse_with_params(
            &format!("{}/{}/{}", self.root, s.version, s.info.path),
            &[("$filter", filter), ("$top", s.info.max_top.to_string())],
        )
        .map_err(|e| SourceError::Invalid(format!("Graph URL: {e}")))?;
        Ok(url.to_string())
    }

    async fn advance(&mut self, i: usize) -> Result<Option<SourceBatch>, SourceError> {
        let now = Utc::now();
        if self.streams[i].window.is_none() {
            let s = &self.streams[i];
            let start = s.cursor - self.overlap;
            let end = (start + MAX_WINDOW).min(now);
            if end <= start {
                self.streams[i].next_poll = Instant::now() + self.interval;
                return Ok(None);
            }
            if s.ids.needs_verification() {
                self.verify_overlap(i, start, end).await?;
            }
            let first = self.first_page(&self.streams[i], start, end)?;
            self.streams[i].window = Some((end, first));
        }
        let (end, url) = self.streams[i].window.clone().unwrap_or_else(|| (now, String::new()));
        let client = &self.clients[&self.streams[i].info.family];
        let r: ApiResponse = match client
            .send(
                reqwest::Method::GET,
                &url,
                None,
                &[("Prefer", "include-unknown-enum-members")],
            )
            .await
        {
            Ok(r) => r,
            Err(e) if e.needs_a_human() => return Err(e.into()),
            Err(e) => {
                let s = &mut self.streams[i];
                self.status.data_loss(LostRange {
                    stream: s.stream.clone(),
                    from: cursor_time(s.cursor),
                    to: cursor_time(end),
                    reason: format!("Graph window could not be read: {e}"),
                });
                s.window = None;
                s.cursor = s.cursor.max(end);
                return Ok(None);
            }
        };
        let s = &mut self.streams[i];
        if !r.status.is_success() {
            return Err(SourceError::Invalid(format!(
                "Graph {} {}: {}",
                s.version,
                s.info.path,
                r.error_summary()
            )));
        }
        let page: Page<'_> = serde_json::from_slice(&r.body)
            .map_err(|e| SourceError::Invalid(format!("Graph {} answer is not an OData page: {e}", s.info.path)))?;
        let payload = dedupe(&page.value, &mut s.ids, s.info.time_field, end.timestamp());
        let mut units = Vec::with_capacity(1);
        match page.next_link.filter(|l| !l.is_empty()) {
            Some(next) => {
                s.window = Some((end, next));
                units.push(SourceUnit {
                    payload,
                    position: cursor_time(s.cursor),
                    state: Some(Arc::new(serde_json::json!({"ids": s.ids.to_state()}))),
                    id: None,
                });
            }
            None => {
                s.window = None;
                s.cursor = s.cursor.max(end);
                let keep_from = (s.cursor - self.overlap - chrono::TimeDelta::hours(1)).timestamp();
                s.ids.prune_before(keep_from);
                units.push(SourceUnit {
                    payload,
                    position: cursor_time(s.cursor),
                    state: Some(Arc::new(serde_json::json!({"ids": s.ids.to_state()}))),
                    id: None,
                });
                if Utc::now() - s.cursor < chrono::TimeDelta::seconds(self.interval.as_secs() as i64 + 1) {
                    s.next_poll = Instant::now() + self.interval;
                }
            }
        }
        let stream = s.stream.clone();
        self.publish_progress();
        Ok(Some(SourceBatch {
            origin: RecordOrigin::Graph(stream.clone()),
            stream,
            units,
        }))
    }

    /// First window after a restart: read the objects of `[start, end)` (from the start of its
    /// first minute) without delivering them and compare them, minute by minute, with the
    /// digest the checkpoint kept; the objects of the minutes that match are known delivered.
    /// When the re-scan cannot be read, nothing is known: the overlap is delivered again.
    async fn verify_overlap(&mut self, i: usize, start: DateTime<Utc>, end: DateTime<Utc>) -> Result<(), SourceError> {
        let s = &self.streams[i];
        let from = s.ids.bucket_floor(start.timestamp());
        let from_time = DateTime::from_timestamp(from, 0).unwrap_or(start);
        let mut url = self.first_page(s, from_time, end)?;
        let client = &self.clients[&s.info.family];
        let mut seen: Vec<(String, i64)> = Vec::new();
        loop {
            let r = match client
                .send(
                    reqwest::Method::GET,
                    &url,
                    None,
                    &[("Prefer", "include-unknown-enum-members")],
                )
                .await
            {
                Ok(r) if r.status.is_success() => r,
                Ok(r) => {
                    tracing::warn!(stream = %s.stream, error = %r.error_summary(), "overlap re-scan after restart failed; the overlap is delivered again");
                    break;
                }
                Err(e) if e.needs_a_human() => return Err(e.into()),
                Err(e) => {
                    tracing::warn!(stream = %s.stream, error = %e, "overlap re-scan after restart failed; the overlap is delivered again");
                    break;
                }
            };
            let page: Page<'_> = serde_json::from_slice(&r.body)
                .map_err(|e| SourceError::Invalid(format!("Graph {} answer is not an OData page: {e}", s.info.path)))?;
            for v in &page.value {
                if let Some((id, at)) = id_and_time(v, s.info.time_field) {
                    seen.push((id, at.unwrap_or(end.timestamp())));
                }
            }
            match page.next_link.filter(|l| !l.is_empty()) {
                Some(next) => url = next,
                None => {
                    let stream = s.stream.clone();
                    let items = seen.iter().map(|(id, at)| (id.as_str(), *at));
                    let v = self.streams[i].ids.verify(items, from, end.timestamp());
                    tracing::info!(stream = %stream, unchanged_minutes = v.unchanged_buckets, records_skipped = v.skipped_items,
                        changed_minutes = v.changed_buckets, records_delivered_again = v.redelivered_items,
                        "overlap after restart compared with the checkpoint");
                    return Ok(());
                }
            }
        }
        // Not verified: every object of the overlap is delivered again.
        let s = &mut self.streams[i];
        s.ids.verify(std::iter::empty(), 0, 0);
        Ok(())
    }

    fn publish_progress(&self) {
        let now = Utc::now();
        let slack = self.interval.as_secs() as i64 * 2 + 60;
        let mut percent = 100i32;
        let mut lag = 0i64;
        for s in &self.streams {
            let total = (now - s.backfill_from).num_seconds().max(1);
            let done = ((s.cursor - s.backfill_from).num_seconds() + slack).clamp(0, total);
            percent = percent.min((done * 100 / total) as i32);
            lag = lag.max((now - s.cursor).num_seconds().max(0));
        }
        self.status.set_backfill(Some(percent), Some(lag));
    }
}

/// One OData page.
#[derive(Deserialize)]
pub(crate) struct Page<'a> {
    #[serde(borrow, default)]
    pub value: Vec<&'a RawValue>,
    #[serde(rename = "@odata.nextLink", default)]
    pub next_link: Option<String>,
}

/// An object's `id` and its time property (unix seconds), when it has an id.
pub(crate) fn id_and_time(v: &RawValue, time_field: &str) -> Option<(String, Option<i64>)> {
    let parsed: serde_json::Map<String, serde_json::Value> = serde_json::from_str(v.get()).ok()?;
    let id = parsed.get("id")?.as_str()?.to_string();
    let at = parsed
        .get(time_field)
        .and_then(|t| t.as_str())
        .and_then(parse_time)
        .map(|t| t.timestamp());
    Some((id, at))
}

/// The objects of a page not delivered before (by `id`), as a JSON array. An object's time
/// property (or `fallback`) dates its id for pruning and for the checkpoint's digest.
pub(crate) fn dedupe(values: &[&RawValue], ids: &mut DeliveredIds, time_field: &str, fallback: i64) -> Bytes {
    let mut out = Vec::with_capacity(values.iter().map(|v| v.get().len() + 1).sum::<usize>() + 2);
    out.push(b'[');
    let mut first = true;
    for v in values {
        let keep = match id_and_time(v, time_field) {
            Some((id, at)) => ids.insert(&id, at.unwrap_or(fallback)),
            None => true,
        };
        if keep {
            if !first {
                out.push(b',');
            }
            first = false;
            out.extend_from_slice(v.get().as_bytes());
        }
    }
    out.push(b']');
    Bytes::from(out)
}

#[async_trait::async_trait]
impl Source for GraphReader {
    fn kind(&self) -> &'static str {
        "graph"
    }

    async fn next_batch(&mut self) -> Result<Option<SourceBatch>, SourceError> {
        loop {
            let i = super::api::due_stream(&self.streams, self.interval).await;
            if let Some(batch) = self.advance(i).await? {
                return Ok(Some(batch));
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sign_in_types_choose_the_version_and_filter() {
        assert_eq!(sign_in_selection(&[]), ("v1.0", None));
        assert_eq!(sign_in_selection(&[SignInEventType::InteractiveUser]), ("v1.0", None));
        let (v, f) = sign_in_selection(&[SignInEventType::NonInteractiveUser, SignInEventType::ServicePrincipal]);
        assert_eq!(v, "beta");
        assert_eq!(
            f.as_deref(),
            Some("signInEventTypes/any(t: t eq 'nonInteractiveUser' or t eq 'servicePrincipal')")
        );
    }

    #[test]
    fn every_endpoint_has_its_documented_time_property() {
        assert_eq!(endpoint_info(GraphEndpoint::SignIns).time_field, "createdDateTime");
        assert_eq!(
            endpoint_info(GraphEndpoint::DirectoryAudits).time_field,
            "activityDateTime"
        );
        assert_eq!(
            endpoint_info(GraphEndpoint::RiskyUsers).time_field,
            "riskLastUpdatedDateTime"
        );
        assert_eq!(endpoint_info(GraphEndpoint::RiskDetections).max_top, 500);
    }
}
