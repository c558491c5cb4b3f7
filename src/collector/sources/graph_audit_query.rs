//! The Microsoft Graph audit log query API (`security/auditLog/queries`, docs/PROTOCOLS.md section 3),
//! the path Microsoft recommends for the unified audit log: a LogSource with
//! `managementActivityApi.api: graphAuditLogQuery` reads the same content this way.
//!
//! One stream (`security/auditLog/queries`). Per window (at most 24 h, `overlap` behind the
//! cursor): create a query for the window and the record types of the configured content types,
//! poll its status (`notStarted`, `running`) until `succeeded`, then page its `records`; each page
//! is one unit, deduplicated by record `id` (exact in memory; a per-minute digest in the
//! checkpoint, compared with the first query's records after a restart: [`super::delivered`]). A query
//! that fails is created again once; a window whose queries keep failing is reported as data
//! loss with its range.

use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Utc};

use super::api::{cursor_time, parse_time, query_time, throttled_by_status, ApiClient, RateBudget, RetryPolicy};
use super::delivered::{DeliveredIds, MAX_EXACT_IDS};
use super::graph::{dedupe, id_and_time, Page};
use super::{RecordOrigin, Source, SourceBatch, SourceContext, SourceError, SourceStatus, SourceUnit};
use crate::api::{ContentType, LostRange, ManagementActivitySource};
use crate::collector::auth::{default_scope, CloudEndpoints, TokenProvider};
use crate::config::SecretSource;

/// Stream (checkpoint key) of this source.
pub const STREAM: &str = "security/auditLog/queries";
const MAX_WINDOW: chrono::TimeDelta = chrono::TimeDelta::hours(24);
/// Attempts per window before its range is reported lost.
const QUERY_ATTEMPTS: u32 = 2;

/// `auditLogRecordType` values of a content type; `None` when the content type has no closed
/// list (`Audit.General` is "every other workload"), so the query must not filter.
pub fn record_types(content_type: ContentType) -> Option<&'static [&'static str]> {
    match content_type {
        ContentType::AuditAzureActiveDirectory => Some(&[
            "azureActiveDirectory",
            "azureActiveDirectoryAccountLogon",
            "azureActiveDirectoryStsLogon",
        ]),
        ContentType::AuditExchange => Some(&[
            "exchangeAdmin",
            "exchangeItem",
            "exchangeItemGroup",
            "exchangeAggregatedOperation",
            "exchangeItemAggregated",
        ]),
        ContentType::AuditSharePoint => Some(&[
            "sharePoint",
            "sharePointFileOperation",
            "oneDrive",
            "sharePointSharingOperation",
            "sharePointListOperation",
        ]),
        ContentType::DlpAll => Some(&["complianceDLPSharePoint", "complianceDLPExchange", "dlpEndpoint"]),
        ContentType::AuditGeneral => None,
    }
}

/// The query being run for the current window.
#[derive(Debug)]
enum Phase {
    /// No query yet for the window.
    Create { attempt: u32 },
    /// Waiting for the query to finish.
    Poll { id: String, attempt: u32 },
    /// Paging records: the next page.
    Records { next: String },
}

/// The audit log query source.
pub struct AuditLogQueryReader {
    client: ApiClient,
    base: String,
    record_types: Vec<&'static str>,
    cursor: DateTime<Utc>,
    backfill_from: DateTime<Utc>,
    ids: DeliveredIds,
    window: Option<(DateTime<Utc>, DateTime<Utc>, Phase)>,
    overlap: chrono::TimeDelta,
    interval: Duration,
    status: Arc<SourceStatus>,
    /// When the next window may start once caught up.
    next_poll: tokio::time::Instant,
}

impl AuditLogQueryReader {
    /// Build the source from a `managementActivityApi` spec with `api: graphAuditLogQuery`.
    pub async fn open(
        spec: &ManagementActivitySource,
        secrets: &SecretSource,
        ctx: SourceContext,
    ) -> Result<Self, SourceError> {
        let tokens = TokenProvider::from_spec(&spec.credentials, secrets)
            .map_err(|e| SourceError::Api(super::api::ApiError::Auth(e)))?;
        let cloud = CloudEndpoints::of(spec.credentials.cloud);
        // With `api: graphAuditLogQuery`, `endpoint` overrides the Graph root.
        let root = spec.endpoint.clone().unwrap_or_else(|| cloud.graph.to_string());
        let client = ApiClient::new(
            Arc::new(tokens),
            default_scope(cloud.graph),
            Arc::new(RateBudget::new(spec.requests_per_minute, Duration::from_secs(60))),
            ctx.status.clone(),
            RetryPolicy::default(),
            throttled_by_status,
        )
        .map_err(|e| SourceError::Invalid(format!("HTTP client: {e}")))?;
        let types: Vec<ContentType> = if spec.content_types.is_empty() {
            ContentType::ALL.to_vec()
        } else {
            spec.content_types.clone()
        };
        let mut record_types = Vec::new();
        for ct in &types {
            match self::record_types(*ct) {
                Some(list) => record_types.extend_from_slice(list),
                None => {
                    record_types.clear();
                    break;
                }
            }
        }
        let now = Utc::now();
        let (cursor, ids) = match ctx.checkpoints.load(STREAM).await? {
            Some(cp) => (
                parse_time(&cp.position).ok_or_else(|| {
                    SourceError::Invalid(format!("checkpoint of {STREAM} has position {:?}", cp.position))
                })?,
                DeliveredIds::from_state(
                    cp.state.as_ref().and_then(|s| s.get("ids")).and_then(|v| v.as_str()),
                    MAX_EXACT_IDS,
                )
                .map_err(|e| SourceError::Invalid(format!("checkpoint of {STREAM}: {e}")))?,
            ),
            None => (
                now - chrono::TimeDelta::hours(i64::from(spec.polling.backfill_hours)),
                DeliveredIds::new(MAX_EXACT_IDS),
            ),
        };
        Ok(AuditLogQueryReader {
            client,
            base: format!("{}/v1.0/security/auditLog/queries", root.trim_end_matches('/')),
            record_types,
            cursor,
            backfill_from: cursor.min(now),
            ids,
            window: None,
            overlap: chrono::TimeDelta::minutes(i64::from(spec.polling.overlap_minutes)),
            interval: Duration::from_secs(u64::from(spec.polling.interval_seconds.max(1))),
            status: ctx.status,
            next_poll: tokio::time::Instant::now(),
        })
    }

    fn fatal(&self, what: &str, r: &super::api::ApiResponse) -> SourceError {
        SourceError::Invalid(format!("Graph audit log query, {what}: {}", r.error_summary()))
    }

    fn lose_window(&mut self, end: DateTime<Utc>, why: String) {
        self.status.data_loss(LostRange {
            stream: STREAM.into(),
            from: cursor_time(self.cursor),
            to: cursor_time(end),
            reason: why,
        });
        self.cursor = self.cursor.max(end);
        self.window = None;
    }

    /// One step of the current window; a batch when a page of records was read.
    async fn step(&mut self) -> Result<Option<SourceBatch>, SourceError> {
        let Some((start, end, phase)) = self.window.take() else {
            // Caught up: one query per poll interval, not one after the other.
            tokio::time::sleep_until(self.next_poll).await;
            let now = Utc::now();
            let mut start = self.cursor - self.overlap;
            if self.ids.needs_verification() {
                // After a restart: from the start of a digest bucket, so the re-scan covers it whole.
                let floor = self.ids.bucket_floor(start.timestamp());
                start = DateTime::from_timestamp(floor, 0).unwrap_or(start);
            }
            let end = (start + MAX_WINDOW).min(now);
            if end - start < chrono::TimeDelta::seconds(1) {
                tokio::time::sleep(self.interval).await;
                return Ok(None);
            }
            self.window = Some((start, end, Phase::Create { attempt: 1 }));
            return Ok(None);
        };
        match phase {
            Phase::Create { attempt } => {
                let body = serde_json::json!({
                    "@odata.type": "#microsoft.graph.security.auditLogQuery",
                    "displayName": format!("siembridge {}..{}", query_time(start), query_time(end)),
                    "filterStartDateTime": query_time(start),
                    "filterEndDateTime": query_time(end),
                    "recordTypeFilters": self.record_types,
                });
                let r = self
                    .client
                    .send(reqwest::Method::POST, &self.base, Some(&body), &[])
                    .await?;
                if !r.status.is_success() {
                    return Err(self.fatal("creating a query", &r));
                }
                let id = serde_json::from_slice::<serde_json::Value>(&r.body)
                    .ok()
                    .and_then(|v| v.get("id").and_then(|i| i.as_str()).map(String::from))
                    .ok_or_else(|| SourceError::Invalid("created audit log query has no id".into()))?;
                tracing::debug!(query = %id, from = %query_time(start), to = %query_time(end), "audit log query created");
                self.window = Some((start, end, Phase::Poll { id, attempt }));
                Ok(None)
            }
            Phase::Poll { id, attempt } => {
                let r = self.client.get(&format!("{}/{id}", self.base)).await?;
                if !r.status.is_success() {
                    return Err(self.fatal("reading a query's status", &r));
                }
                let status = serde_json::from_slice::<serde_json::Value>(&r.body)
                    .ok()
                    .and_then(|v| v.get("status").and_then(|s| s.as_str()).map(String::from))
                    .unwrap_or_default();
                match status.as_str() {
                    "succeeded" => {
                        self.window = Some((
                            start,
                            end,
                            Phase::Records {
                                next: format!("{}/{id}/records", self.base),
                            },
                        ));
                    }
                    "failed" | "cancelled" => {
                        tracing::warn!(query = %id, status = %status, attempt, "audit log query did not succeed");
                        if attempt < QUERY_ATTEMPTS {
                            self.window = Some((start, end, Phase::Create { attempt: attempt + 1 }));
                        } else {
                            self.lose_window(end, format!("audit log query {id} {status} {attempt} times"));
                        }
                    }
                    _ => {
                        // notStarted, running: ask again later.
                        self.window = Some((start, end, Phase::Poll { id, attempt }));
                        tokio::time::sleep(self.interval.min(Duration::from_secs(5))).await;
                    }
                }
                Ok(None)
            }
            Phase::Records { next } => {
                if self.ids.needs_verification() {
                    self.verify_overlap(&next, start, end).await?;
                }
                let r = self.client.get(&next).await?;
                if !r.status.is_success() {
                    return Err(self.fatal("reading query records", &r));
                }
                let page: Page<'_> = serde_json::from_slice(&r.body)
                    .map_err(|e| SourceError::Invalid(format!("query records are not an OData page: {e}")))?;
                let payload = dedupe(&page.value, &mut self.ids, "createdDateTime", end.timestamp());
                let more = page.next_link.filter(|l| !l.is_empty());
                match more {
                    Some(next) => self.window = Some((start, end, Phase::Records { next })),
                    None => {
                        self.cursor = self.cursor.max(end);
                        if Utc::now() - self.cursor < chrono::TimeDelta::seconds(self.interval.as_secs() as i64 + 1) {
                            self.next_poll = tokio::time::Instant::now() + self.interval;
                        }
                        let keep_from = (self.cursor - self.overlap - chrono::TimeDelta::hours(1)).timestamp();
                        self.ids.prune_before(keep_from);
                        self.publish_progress();
                    }
                }
                Ok(Some(SourceBatch {
                    stream: STREAM.into(),
                    origin: RecordOrigin::Graph(STREAM.into()),
                    units: vec![SourceUnit {
                        payload,
                        position: cursor_time(self.cursor),
                        state: Some(Arc::new(serde_json::json!({"ids": self.ids.to_state()}))),
                        id: None,
                    }],
                }))
            }
        }
    }

    /// First query after a restart: read all its records from `first` without delivering them
    /// and compare them, minute by minute, with the digest the checkpoint kept; the records of
    /// the minutes that match are known delivered (see [`super::delivered`]). When the records
    /// cannot be read, nothing is known: the overlap is delivered again.
    async fn verify_overlap(
        &mut self,
        first: &str,
        start: DateTime<Utc>,
        end: DateTime<Utc>,
    ) -> Result<(), SourceError> {
        let mut url = first.to_string();
        let mut seen: Vec<(String, i64)> = Vec::new();
        let complete = loop {
            let r = match self.client.get(&url).await {
                Ok(r) if r.status.is_success() => r,
                Ok(r) => {
                    tracing::warn!(error = %r.error_summary(), "overlap re-scan after restart failed; the overlap is delivered again");
                    break false;
                }
                Err(e) if e.needs_a_human() => return Err(e.into()),
                Err(e) => {
                    tracing::warn!(error = %e, "overlap re-scan after restart failed; the overlap is delivered again");
                    break false;
                }
            };
            let page: Page<'_> = serde_json::from_slice(&r.body)
                .map_err(|e| SourceError::Invalid(format!("query records are not an OData page: {e}")))?;
            for v in &page.value {
                if let Some((id, at)) = id_and_time(v, "createdDateTime") {
                    seen.push((id, at.unwrap_or(end.timestamp())));
                }
            }
            match page.next_link.filter(|l| !l.is_empty()) {
                Some(next) => url = next,
                None => break true,
            }
        };
        let (from, to) = if complete {
            (start.timestamp(), end.timestamp())
        } else {
            (0, 0)
        };
        let v = self
            .ids
            .verify(seen.iter().map(|(id, at)| (id.as_str(), *at)), from, to);
        tracing::info!(
            stream = STREAM,
            unchanged_minutes = v.unchanged_buckets,
            records_skipped = v.skipped_items,
            changed_minutes = v.changed_buckets,
            records_delivered_again = v.redelivered_items,
            "overlap after restart compared with the checkpoint"
        );
        Ok(())
    }

    fn publish_progress(&self) {
        let now = Utc::now();
        let total = (now - self.backfill_from).num_seconds().max(1);
        let slack = self.interval.as_secs() as i64 * 2 + 60;
        let done = ((self.cursor - self.backfill_from).num_seconds() + slack).clamp(0, total);
        self.status.set_backfill(
            Some((done * 100 / total) as i32),
            Some((now - self.cursor).num_seconds().max(0)),
        );
    }
}

#[async_trait::async_trait]
impl Source for AuditLogQueryReader {
    fn kind(&self) -> &'static str {
        "graphAuditLogQuery"
    }

    async fn next_batch(&mut self) -> Result<Option<SourceBatch>, SourceError> {
        loop {
            if let Some(batch) = self.step().await? {
                return Ok(Some(batch));
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn general_content_is_not_filtered_by_record_type() {
        assert!(record_types(ContentType::AuditGeneral).is_none());
        assert!(record_types(ContentType::AuditAzureActiveDirectory)
            .unwrap()
            .contains(&"azureActiveDirectoryStsLogon"));
    }
}
