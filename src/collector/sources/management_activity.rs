//! The Office 365 Management Activity API (docs/PROTOCOLS.md section 2): the unified audit log read
//! per content type from content blobs.
//!
//! Each content type is one stream with its own [`ContentCursor`]. A stream lists content in
//! windows of at most 24 hours inside the 7-day retention, starting `overlap` behind its cursor so
//! that blobs listed late are still found; blobs and records already delivered are recognised by
//! their `contentId` and `Id` in memory, so the overlap never becomes duplicates downstream. The
//! checkpoint keeps a per-minute digest of the content ids delivered (see [`super::delivered`]):
//! after a restart, a minute whose listing matches it is skipped, one that differs is fetched
//! again. Each content blob is one unit: the checkpoint moves past it only
//! once every record of it is acknowledged. The last unit of a window (possibly an empty one)
//! carries the window end as position.
//!
//! Content that expired or vanished, a cursor older than the retention, and a window that could
//! not be listed are reported as data loss with their time range; nothing is skipped silently.
//! All content types share one request budget per tenant.

use std::collections::VecDeque;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use chrono::{DateTime, Utc};
use reqwest::StatusCode;
use serde::Deserialize;
use serde_json::value::RawValue;

use super::api::{cursor_time, parse_time, ApiClient, ApiResponse, RateBudget, RetryPolicy};
use super::delivered::{DeliveredIds, MAX_EXACT_IDS};
use super::{RecordOrigin, Source, SourceBatch, SourceContext, SourceError, SourceStatus, SourceUnit};
use crate::api::{ContentType, LostRange, ManagementActivitySource};
use crate::collector::auth::{default_scope, CloudEndpoints, TokenProvider};
use crate::config::SecretSource;

/// Content older than this is gone (the API keeps content 7 days); a margin keeps the first
/// window valid while the request travels.
const RETENTION: chrono::TimeDelta = chrono::TimeDelta::days(7);
const RETENTION_MARGIN: chrono::TimeDelta = chrono::TimeDelta::minutes(5);
/// Longest window the API accepts.
const MAX_WINDOW: chrono::TimeDelta = chrono::TimeDelta::hours(24);
/// Blobs fetched at once per stream.
const FETCH_CONCURRENCY: usize = 8;

/// One content blob descriptor from `subscriptions/content`.
#[derive(Clone, Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct ContentDescriptor {
    content_id: String,
    content_uri: String,
    content_created: String,
}

/// Where a content type stands.
#[derive(Debug)]
struct ContentCursor {
    content_type: ContentType,
    /// Content created before this time has been delivered (late listings aside).
    cursor: DateTime<Utc>,
    /// Start of the first backfill, for progress.
    backfill_from: DateTime<Utc>,
    /// Record ids delivered lately, in memory only: they drop a record the service put in two
    /// blobs (its documented retries). Not saved: after a restart such a copy may come twice.
    ids: DeliveredIds,
    /// Content ids fetched lately; their digest is the checkpoint state.
    blobs: DeliveredIds,
    /// The window being delivered.
    window: Option<Window>,
    /// When to poll again once caught up.
    next_poll: Instant,
}

impl super::api::PolledStream for ContentCursor {
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

#[derive(Debug)]
struct Window {
    end: DateTime<Utc>,
    pending: VecDeque<(ContentDescriptor, DateTime<Utc>)>,
}

/// The Management Activity API source.
pub struct ManagementActivityReader {
    client: ApiClient,
    base: String,
    publisher: String,
    streams: Vec<ContentCursor>,
    overlap: chrono::TimeDelta,
    interval: Duration,
    status: Arc<SourceStatus>,
    subscribed: bool,
}

impl std::fmt::Debug for ManagementActivityReader {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ManagementActivityReader")
            .field("base", &self.base)
            .finish_non_exhaustive()
    }
}

/// Throttling of this API: 429, or the documented 403 with `AF429`.
fn throttling(status: StatusCode, code: Option<&str>) -> bool {
    status == StatusCode::TOO_MANY_REQUESTS || code == Some("AF429")
}

impl ManagementActivityReader {
    /// Build the source and read each content type's checkpoint. No network yet.
    pub async fn open(
        spec: &ManagementActivitySource,
        secrets: &SecretSource,
        ctx: SourceContext,
    ) -> Result<Self, SourceError> {
        let tokens = TokenProvider::from_spec(&spec.credentials, secrets)
            .map_err(|e| SourceError::Api(super::api::ApiError::Auth(e)))?;
        let cloud = CloudEndpoints::of(spec.credentials.cloud);
        let root = spec.endpoint.clone().unwrap_or_else(|| cloud.management.to_string());
        let base = format!(
            "{}/api/v1.0/{}/activity/feed",
            root.trim_end_matches('/'),
            spec.credentials.tenant_id
        );
        let budget = Arc::new(RateBudget::new(spec.requests_per_minute, Duration::from_secs(60)));
        let client = ApiClient::new(
            Arc::new(tokens),
            default_scope(cloud.management),
            budget,
            ctx.status.clone(),
            RetryPolicy::default(),
            throttling,
        )
        .map_err(|e| SourceError::Invalid(format!("HTTP client: {e}")))?;
        let now = Utc::now();
        let oldest = now - RETENTION + RETENTION_MARGIN;
        let backfill = chrono::TimeDelta::hours(i64::from(spec.polling.backfill_hours));
        let content_types: Vec<ContentType> = if spec.content_types.is_empty() {
            ContentType::ALL.to_vec()
        } else {
            spec.content_types.clone()
        };
        let mut streams = Vec::new();
        for ct in content_types {
            let stream = ct.as_str();
            let saved = ctx.checkpoints.load(stream).await?;
            let (cursor, ids, blobs) = match saved {
                Some(cp) => {
                    let cursor = parse_time(&cp.position).ok_or_else(|| {
                        SourceError::Invalid(format!(
                            "checkpoint of {stream} has position {:?}, not a time",
                            cp.position
                        ))
                    })?;
                    let field = |k: &str| cp.state.as_ref().and_then(|s| s.get(k)).and_then(|v| v.as_str());
                    let blobs = DeliveredIds::from_state(field("blobs"), MAX_EXACT_IDS)
                        .map_err(|e| SourceError::Invalid(format!("checkpoint of {stream}: {e}")))?;
                    (cursor, DeliveredIds::new(MAX_EXACT_IDS), blobs)
                }
                None => (
                    (now - backfill).max(oldest),
                    DeliveredIds::new(MAX_EXACT_IDS),
                    DeliveredIds::new(MAX_EXACT_IDS),
                ),
            };
            let cursor = if cursor < oldest {
                ctx.status.data_loss(LostRange {
                    stream: stream.to_string(),
                    from: cursor_time(cursor),
                    to: cursor_time(oldest),
                    reason: "the checkpoint is older than the 7-day retention of the Management Activity API".into(),
                });
                oldest
            } else {
                cursor
            };
            tracing::info!(collector = %ctx.collector, stream, cursor = %cursor_time(cursor), "content type starts");
            streams.push(ContentCursor {
                content_type: ct,
                cursor,
                backfill_from: cursor.min(now),
                ids,
                blobs,
                window: None,
                next_poll: Instant::now(),
            });
        }
        Ok(ManagementActivityReader {
            client,
            base,
            publisher: spec
                .publisher_identifier
                .clone()
                .unwrap_or_else(|| spec.credentials.tenant_id.clone()),
            streams,
            overlap: chrono::TimeDelta::minutes(i64::from(spec.polling.overlap_minutes)),
            interval: Duration::from_secs(u64::from(spec.polling.interval_seconds.max(1))),
            status: ctx.status,
            subscribed: false,
        })
    }

    /// `url` with `PublisherIdentifier`, which every call carries.
    fn with_publisher(&self, url: &str) -> String {
        if url.contains("PublisherIdentifier=") {
            url.to_string()
        } else {
            let sep = if url.contains('?') { '&' } else { '?' };
            format!("{url}{sep}PublisherIdentifier={}", self.publisher)
        }
    }

    /// Start the subscriptions that are not enabled (idempotent).
    async fn subscribe(&mut self) -> Result<(), SourceError> {
        let list = self
            .client
            .get(&self.with_publisher(&format!("{}/subscriptions/list", self.base)))
            .await?;
        if !list.status.is_success() {
            return Err(fatal("listing subscriptions", &list));
        }
        #[derive(Deserialize)]
        #[serde(rename_all = "camelCase")]
        struct Subscription {
            content_type: String,
            status: String,
        }
        let current: Vec<Subscription> = serde_json::from_slice(&list.body).unwrap_or_default();
        for s in &self.streams {
            let ct = s.content_type.as_str();
            if current
                .iter()
                .any(|x| x.content_type == ct && x.status.eq_ignore_ascii_case("enabled"))
            {
                continue;
            }
            self.start_subscription(ct).await?;
        }
        self.subscribed = true;
        Ok(())
    }

    async fn start_subscription(&self, content_type: &str) -> Result<(), SourceError> {
        let url = self.with_publisher(&format!("{}/subscriptions/start?contentType={content_type}", self.base));
        let r = self.client.send(reqwest::Method::POST, &url, None, &[]).await?;
        if r.status.is_success() || r.error_code().as_deref() == Some("AF20024") {
            tracing::info!(content_type, "subscription enabled");
            return Ok(());
        }
        Err(fatal(&format!("starting the {content_type} subscription"), &r))
    }

    /// List every blob of `[start, end)` for the content type, following `NextPageUri`.
    /// `Ok(None)` when the window cannot be read (reported as data loss by the caller).
    async fn list(
        &self,
        content_type: &str,
        start: DateTime<Utc>,
        end: DateTime<Utc>,
    ) -> Result<Result<Vec<ContentDescriptor>, String>, SourceError> {
        let mut url = self.with_publisher(&format!(
            "{}/subscriptions/content?contentType={content_type}&startTime={}&endTime={}",
            self.base,
            window_time(start),
            window_time(end)
        ));
        let mut out = Vec::new();
        let mut restarted = false;
        let mut resubscribed = false;
        loop {
            let r = match self.client.get(&url).await {
                Ok(r) => r,
                Err(e) if e.needs_a_human() => return Err(e.into()),
                Err(e) => return Ok(Err(e.to_string())),
            };
            if !r.status.is_success() {
                match r.error_code().as_deref() {
                    Some("AF20022") if !resubscribed => {
                        resubscribed = true;
                        self.start_subscription(content_type).await?;
                        continue;
                    }
                    Some("AF20031") if !restarted => {
                        // A bad nextPage: list the window again from its start.
                        restarted = true;
                        out.clear();
                        url = self.with_publisher(&format!(
                            "{}/subscriptions/content?contentType={content_type}&startTime={}&endTime={}",
                            self.base,
                            window_time(start),
                            window_time(end)
                        ));
                        continue;
                    }
                    Some("AF20030") | Some("AF20055") | Some("AF20031") | Some("AF50000") => {
                        return Ok(Err(r.error_summary()))
                    }
                    _ => return Err(fatal(&format!("listing {content_type} content"), &r)),
                }
            }
            let page: Vec<ContentDescriptor> = serde_json::from_slice(&r.body).map_err(|e| {
                SourceError::Invalid(format!("{content_type} content listing is not the expected JSON: {e}"))
            })?;
            out.extend(page);
            match r
                .headers
                .get("NextPageUri")
                .and_then(|v| v.to_str().ok())
                .filter(|v| !v.is_empty())
            {
                Some(next) => url = self.with_publisher(next),
                None => return Ok(Ok(out)),
            }
        }
    }

    /// Fetch one blob: its records, or why it is gone.
    async fn fetch(&self, blob: &ContentDescriptor) -> Result<Result<Bytes, String>, SourceError> {
        let r: ApiResponse = match self.client.get(&self.with_publisher(&blob.content_uri)).await {
            Ok(r) => r,
            Err(e) if e.needs_a_human() => return Err(e.into()),
            Err(e) => return Ok(Err(e.to_string())),
        };
        if r.status.is_success() {
            return Ok(Ok(r.body));
        }
        match r.error_code().as_deref() {
            Some("AF20050") | Some("AF20051") | Some("AF20052") => Ok(Err(r.error_summary())),
            _ if r.status == StatusCode::NOT_FOUND || r.status == StatusCode::GONE => Ok(Err(r.error_summary())),
            _ => Err(fatal(&format!("fetching content {}", blob.content_id), &r)),
        }
    }

    /// The next batch of stream `i`: the next blobs of its window, or the window's end.
    async fn advance(&mut self, i: usize) -> Result<Option<SourceBatch>, SourceError> {
        let now = Utc::now();
        let oldest = now - RETENTION + RETENTION_MARGIN;
        if self.streams[i].window.is_none() {
            let s = &self.streams[i];
            let ct = s.content_type.as_str();
            // Whole digest buckets (so a re-scan after a restart covers its first bucket whole),
            // whole seconds (the window parameters have no fractions).
            let behind = s.blobs.bucket_floor((s.cursor - self.overlap).timestamp());
            let behind = DateTime::from_timestamp(behind, 0).unwrap_or(s.cursor - self.overlap);
            let start = whole_seconds(behind.max(oldest));
            let end = whole_seconds((start + MAX_WINDOW).min(now));
            if end <= start {
                self.streams[i].next_poll = Instant::now() + self.interval;
                return Ok(None);
            }
            let mut listed = match self.list(ct, start, end).await? {
                Ok(l) => l,
                Err(why) => {
                    // Only what lies past the cursor is lost: the overlap was read before.
                    let from = s.cursor.max(start);
                    self.status.data_loss(LostRange {
                        stream: ct.to_string(),
                        from: cursor_time(from),
                        to: cursor_time(end),
                        reason: format!("content listing failed: {why}"),
                    });
                    Vec::new()
                }
            };
            let s = &mut self.streams[i];
            if s.blobs.needs_verification() {
                // First listing after a restart: the blobs of every minute whose listing matches
                // the checkpoint's digest were delivered; the others are fetched again.
                let items: Vec<(&str, i64)> = listed
                    .iter()
                    .map(|d| {
                        let at = parse_time(&d.content_created).unwrap_or(start).timestamp();
                        (d.content_id.as_str(), at)
                    })
                    .collect();
                let v = s.blobs.verify(items, start.timestamp(), end.timestamp());
                tracing::info!(
                    stream = ct,
                    unchanged_minutes = v.unchanged_buckets,
                    blobs_skipped = v.skipped_items,
                    changed_minutes = v.changed_buckets,
                    blobs_delivered_again = v.redelivered_items,
                    "overlap after restart compared with the checkpoint"
                );
            }
            listed.retain(|d| !s.blobs.contains(&d.content_id));
            let mut pending: Vec<(ContentDescriptor, DateTime<Utc>)> = listed
                .into_iter()
                .map(|d| {
                    let created = parse_time(&d.content_created).unwrap_or(start);
                    (d, created)
                })
                .collect();
            pending.sort_by(|a, b| a.1.cmp(&b.1).then_with(|| a.0.content_id.cmp(&b.0.content_id)));
            pending.dedup_by(|a, b| a.0.content_id == b.0.content_id);
            tracing::debug!(stream = ct, from = %cursor_time(start), to = %cursor_time(end), blobs = pending.len(), "content window listed");
            self.streams[i].window = Some(Window {
                end,
                pending: pending.into(),
            });
        }

        let chunk: Vec<(ContentDescriptor, DateTime<Utc>)> = {
            let Some(w) = self.streams[i].window.as_mut() else {
                return Ok(None);
            };
            let n = w.pending.len().min(FETCH_CONCURRENCY);
            w.pending.drain(..n).collect()
        };
        let ct = self.streams[i].content_type.as_str().to_string();
        let mut units = Vec::with_capacity(chunk.len() + 1);
        let fetched: Vec<Result<Result<Bytes, String>, SourceError>> = {
            let this = &*self;
            let fetches: Vec<_> = chunk
                .iter()
                .map(|(d, _)| d.clone())
                .map(|d| Box::pin(async move { this.fetch(&d).await }))
                .collect();
            futures::future::join_all(fetches).await
        };
        for ((blob, created), body) in chunk.into_iter().zip(fetched) {
            let s = &mut self.streams[i];
            let at = created.timestamp();
            match body? {
                Ok(body) => {
                    let payload = dedupe(&body, &mut s.ids, at).map_err(|e| {
                        SourceError::Invalid(format!("content {} of {ct} is not a JSON array: {e}", blob.content_id))
                    })?;
                    s.blobs.insert(&blob.content_id, at);
                    s.cursor = s.cursor.max(created);
                    units.push(SourceUnit {
                        payload,
                        position: cursor_time(s.cursor),
                        state: Some(state_of(s)),
                        id: None,
                    });
                }
                Err(why) => {
                    self.status.data_loss(LostRange {
                        stream: ct.clone(),
                        from: cursor_time(created),
                        to: cursor_time(created),
                        reason: format!("content blob {} could not be read: {why}", blob.content_id),
                    });
                    s.blobs.insert(&blob.content_id, at);
                }
            }
        }
        let overlap = self.overlap;
        let interval = self.interval;
        let s = &mut self.streams[i];
        if s.window.as_ref().is_some_and(|w| w.pending.is_empty()) {
            if let Some(w) = s.window.take() {
                s.cursor = s.cursor.max(w.end);
                let keep_from = (s.cursor - overlap - chrono::TimeDelta::hours(1)).timestamp();
                s.ids.prune_before(keep_from);
                s.blobs.prune_before(keep_from);
                units.push(SourceUnit {
                    payload: Bytes::from_static(b"[]"),
                    position: cursor_time(s.cursor),
                    state: Some(state_of(s)),
                    id: None,
                });
                if Utc::now() - s.cursor < chrono::TimeDelta::seconds(interval.as_secs() as i64 + 1) {
                    s.next_poll = Instant::now() + interval;
                }
            }
        }
        self.publish_progress();
        Ok(Some(SourceBatch {
            stream: ct.clone(),
            origin: RecordOrigin::ManagementActivity(ct),
            units,
        }))
    }

    fn publish_progress(&self) {
        let now = Utc::now();
        let mut percent = 100i32;
        let mut lag = 0i64;
        // Within a poll interval (and a minute) of now is caught up.
        let slack = self.interval.as_secs() as i64 * 2 + 60;
        for s in &self.streams {
            let total = (now - s.backfill_from).num_seconds().max(1);
            let done = ((s.cursor - s.backfill_from).num_seconds() + slack).clamp(0, total);
            percent = percent.min((done * 100 / total) as i32);
            lag = lag.max((now - s.cursor).num_seconds().max(0));
        }
        self.status.set_backfill(Some(percent), Some(lag));
    }
}

/// Checkpoint state of a stream: the digest of the content blobs delivered lately.
fn state_of(s: &ContentCursor) -> crate::collector::ack::SharedState {
    Arc::new(serde_json::json!({"blobs": s.blobs.to_state()}))
}

/// The records of a blob not delivered before (by `Id`), as a JSON array.
fn dedupe(body: &[u8], ids: &mut DeliveredIds, at: i64) -> Result<Bytes, serde_json::Error> {
    #[derive(Deserialize)]
    struct IdOnly<'a> {
        #[serde(rename = "Id", borrow, default)]
        id: Option<std::borrow::Cow<'a, str>>,
    }
    let records: Vec<&RawValue> = serde_json::from_slice(body)?;
    let mut out = Vec::with_capacity(body.len() + 2);
    out.push(b'[');
    let mut first = true;
    for r in records {
        let keep = match serde_json::from_str::<IdOnly<'_>>(r.get()) {
            Ok(IdOnly { id: Some(id) }) => ids.insert(&id, at),
            // Without an id a record cannot be a known duplicate: keep it.
            _ => true,
        };
        if keep {
            if !first {
                out.push(b',');
            }
            first = false;
            out.extend_from_slice(r.get().as_bytes());
        }
    }
    out.push(b']');
    Ok(Bytes::from(out))
}

/// A window bound in a documented format (`YYYY-MM-DDTHH:MM:SS`, UTC).
fn window_time(t: DateTime<Utc>) -> String {
    t.format("%Y-%m-%dT%H:%M:%S").to_string()
}

fn whole_seconds(t: DateTime<Utc>) -> DateTime<Utc> {
    DateTime::from_timestamp(t.timestamp(), 0).unwrap_or(t)
}

/// An answer that needs a human, as a source error naming the API's code.
fn fatal(what: &str, r: &ApiResponse) -> SourceError {
    SourceError::Invalid(format!("Management Activity API, {what}: {}", r.error_summary()))
}

#[async_trait::async_trait]
impl Source for ManagementActivityReader {
    fn kind(&self) -> &'static str {
        "managementActivityApi"
    }

    async fn next_batch(&mut self) -> Result<Option<SourceBatch>, SourceError> {
        if !self.subscribed {
            self.subscribe().await?;
        }
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
    fn dedupe_drops_known_ids_and_keeps_records_without_one() {
        let mut ids = DeliveredIds::new(10);
        ids.insert("a", 1);
        let out = dedupe(br#"[{"Id":"a","n":1},{"Id":"b"},{"n":2},{"Id":"b"}]"#, &mut ids, 5).unwrap();
        assert_eq!(&out[..], br#"[{"Id":"b"},{"n":2}]"#);
        assert!(ids.contains("b"));
        assert_eq!(&dedupe(b"[]", &mut ids, 5).unwrap()[..], b"[]");
        assert!(dedupe(b"{}", &mut ids, 5).is_err());
    }

    #[test]
    fn af429_with_403_is_throttling() {
        assert!(throttling(StatusCode::FORBIDDEN, Some("AF429")));
        assert!(throttling(StatusCode::TOO_MANY_REQUESTS, None));
        assert!(!throttling(StatusCode::FORBIDDEN, Some("AF10001")));
    }
}
