//! What the polled Microsoft API sources (Management Activity API, Graph) share: one request
//! budget per (app, tenant), bearer tokens from the [`TokenProvider`], and the retry rules of
//! docs/PROTOCOLS.md section 8: `Retry-After` honoured on 429, 503, 504 and the 403 `AF429` variant,
//! exponential backoff otherwise, one token refresh on 401, no retry of other 4xx. A
//! `Retry-After` is honoured up to the longest backoff ([`RetryPolicy::cap`]). Redirects are never
//! followed (the bearer token would go along): a 3xx is a failure retried like a 5xx, whose
//! reason names the `Location`.

use std::sync::Arc;
use std::time::{Duration, Instant};

use reqwest::StatusCode;

use crate::collector::auth::{AuthError, TokenProvider};
use crate::collector::destinations::http_client;
use crate::collector::sources::SourceStatus;

/// A request budget shared by every stream of one (app, tenant): at most `requests` in any
/// window of `per` (the form Microsoft documents its limits in, e.g. 5 requests per 10 s; the
/// window is kept 5 % longer for requests delayed in transit), and,
/// for budgets of 60 or more, at most a sixtieth of them in any sixtieth of the window so the
/// requests are spread instead of sent in one burst. A `Retry-After` pauses the whole budget,
/// since the quota it protects is the tenant's, not the stream's.
#[derive(Debug)]
pub struct RateBudget {
    tiers: Vec<(usize, Duration)>,
    state: tokio::sync::Mutex<Windows>,
}

#[derive(Debug)]
struct Windows {
    /// Send times of the last requests, per tier.
    sent: Vec<std::collections::VecDeque<tokio::time::Instant>>,
    paused_until: Option<tokio::time::Instant>,
}

impl RateBudget {
    /// At most `requests` per `per`.
    pub fn new(requests: u32, per: Duration) -> Self {
        let n = requests.max(1) as usize;
        let per = per.max(Duration::from_millis(1));
        // The server counts arrivals: a margin of a twentieth of the window keeps a request that
        // was slow on the way from making the next window look one too full.
        let mut tiers = vec![(n, per + per / 20)];
        if n >= 60 {
            tiers.push((n.div_ceil(60), per / 60));
        }
        RateBudget {
            state: tokio::sync::Mutex::new(Windows {
                sent: tiers.iter().map(|_| Default::default()).collect(),
                paused_until: None,
            }),
            tiers,
        }
    }

    /// The limits enforced: (requests, window), coarsest first.
    pub fn tiers(&self) -> &[(usize, Duration)] {
        &self.tiers
    }

    /// Wait for one request's worth. Waiters are served in order (the lock is fair and held
    /// while waiting), so no stream starves another.
    pub async fn acquire(&self) {
        let mut w = self.state.lock().await;
        loop {
            let now = tokio::time::Instant::now();
            if let Some(until) = w.paused_until {
                if now < until {
                    tokio::time::sleep_until(until).await;
                    continue;
                }
                w.paused_until = None;
            }
            let mut wait_until: Option<tokio::time::Instant> = None;
            for ((n, per), sent) in self.tiers.iter().zip(w.sent.iter_mut()) {
                while sent.front().is_some_and(|t| now.duration_since(*t) >= *per) {
                    sent.pop_front();
                }
                if sent.len() >= *n {
                    if let Some(oldest) = sent.front() {
                        let free = *oldest + *per;
                        wait_until = Some(wait_until.map_or(free, |w| w.max(free)));
                    }
                }
            }
            match wait_until {
                None => {
                    for sent in w.sent.iter_mut() {
                        sent.push_back(now);
                    }
                    return;
                }
                Some(at) => tokio::time::sleep_until(at).await,
            }
        }
    }

    /// No request before `until` (a server's `Retry-After`).
    pub async fn pause_until(&self, until: Instant) {
        let until = tokio::time::Instant::from_std(until);
        let mut w = self.state.lock().await;
        if w.paused_until.is_none_or(|p| p < until) {
            w.paused_until = Some(until);
        }
    }
}

/// A response worth interpreting: 2xx, or an error the caller decides about.
#[derive(Debug)]
pub struct ApiResponse {
    pub status: StatusCode,
    pub headers: reqwest::header::HeaderMap,
    pub body: bytes::Bytes,
}

impl ApiResponse {
    /// The error code of a Microsoft error body: `{"error":{"code":"AF20051",...}}`.
    pub fn error_code(&self) -> Option<String> {
        error_of(&self.body).map(|(c, _)| c)
    }

    /// Code and message of the error body, as one line for a report.
    pub fn error_summary(&self) -> String {
        match error_of(&self.body) {
            // The message is remote text: it may echo a credential.
            Some((code, message)) => {
                crate::collector::secrets::redacted(format!("HTTP {}: {code}: {message}", self.status.as_u16()))
            }
            None => format!("HTTP {}", self.status.as_u16()),
        }
    }
}

fn error_of(body: &[u8]) -> Option<(String, String)> {
    let v: serde_json::Value = serde_json::from_slice(body).ok()?;
    let e = v.get("error")?;
    let code = e.get("code")?.as_str()?.to_string();
    let message = e
        .get("message")
        .and_then(|m| m.as_str())
        .unwrap_or("")
        .lines()
        .next()
        .unwrap_or("")
        .to_string();
    Some((code, message))
}

/// Why a request gave up.
#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    /// No token: a rejection needs a human (bad secret, unknown app), named by its AADSTS code.
    #[error("{0}")]
    Auth(#[from] AuthError),
    /// Still failing after every attempt (5xx, network).
    #[error("{url}: gave up after {attempts} attempts: {last}")]
    Exhausted { url: String, attempts: u32, last: String },
}

impl ApiError {
    /// Whether a human must act (as opposed to an outage that may pass).
    pub fn needs_a_human(&self) -> bool {
        matches!(self, ApiError::Auth(e) if !e.is_transient())
    }
}

/// Retry settings of an API client.
#[derive(Clone, Debug)]
pub struct RetryPolicy {
    /// Attempts per request for server errors and network failures (throttling does not count).
    pub max_attempts: u32,
    /// First backoff; doubled per attempt.
    pub base: Duration,
    /// Largest backoff, also used when a throttling response has no `Retry-After`.
    pub cap: Duration,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        RetryPolicy {
            max_attempts: 8,
            base: Duration::from_millis(500),
            cap: Duration::from_secs(60),
        }
    }
}

/// An authenticated, budgeted, retrying HTTP client for one API of one tenant.
pub struct ApiClient {
    http: reqwest::Client,
    tokens: Arc<TokenProvider>,
    scope: String,
    budget: Arc<RateBudget>,
    status: Arc<SourceStatus>,
    retry: RetryPolicy,
    /// Function telling whether a response is throttling (status + error code).
    throttling: fn(StatusCode, Option<&str>) -> bool,
}

impl std::fmt::Debug for ApiClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ApiClient")
            .field("scope", &self.scope)
            .finish_non_exhaustive()
    }
}

/// Default throttling rule: 429, and 503/504 (which Graph documents with `Retry-After`).
pub fn throttled_by_status(status: StatusCode, _code: Option<&str>) -> bool {
    status == StatusCode::TOO_MANY_REQUESTS
}

impl ApiClient {
    pub fn new(
        tokens: Arc<TokenProvider>,
        scope: String,
        budget: Arc<RateBudget>,
        status: Arc<SourceStatus>,
        retry: RetryPolicy,
        throttling: fn(StatusCode, Option<&str>) -> bool,
    ) -> Result<Self, reqwest::Error> {
        let http = http_client::builder(Duration::from_secs(120))
            .pool_max_idle_per_host(16)
            .build()?;
        Ok(ApiClient {
            http,
            tokens,
            scope,
            budget,
            status,
            retry,
            throttling,
        })
    }

    /// The shared budget.
    pub fn budget(&self) -> &Arc<RateBudget> {
        &self.budget
    }

    /// GET `url`.
    pub async fn get(&self, url: &str) -> Result<ApiResponse, ApiError> {
        self.send(reqwest::Method::GET, url, None, &[]).await
    }

    /// Send a request, retrying what may pass. Returns 2xx and the errors the caller must
    /// interpret (4xx other than throttling, or 401 after one token refresh).
    pub async fn send(
        &self,
        method: reqwest::Method,
        url: &str,
        body: Option<&serde_json::Value>,
        headers: &[(&str, &str)],
    ) -> Result<ApiResponse, ApiError> {
        let mut failures = 0u32;
        let mut refreshed = false;
        let mut last;
        loop {
            // The budget first: a token taken before a long wait could expire on the way.
            self.budget.acquire().await;
            let token = match self.tokens.token(&self.scope).await {
                Ok(t) => t,
                Err(e) if e.is_transient() => {
                    failures += 1;
                    if failures >= self.retry.max_attempts {
                        return Err(e.into());
                    }
                    let wait = e
                        .retry_after()
                        .map_or_else(|| self.backoff(failures), |w| w.min(self.retry.cap));
                    tracing::warn!(error = %e, wait_ms = wait.as_millis() as u64, "token request failed; retrying");
                    tokio::time::sleep(wait).await;
                    continue;
                }
                Err(e) => {
                    self.status.set_connected(false);
                    return Err(e.into());
                }
            };
            let mut request = self.http.request(method.clone(), url).bearer_auth(token.secret());
            for (k, v) in headers {
                request = request.header(*k, *v);
            }
            if let Some(b) = body {
                request = request.json(b);
            }
            self.status.count_request();
            let outcome = http_client::send(request).await;
            let response = match outcome {
                Ok(r) => r,
                Err(reason) => {
                    failures += 1;
                    last = reason;
                    if failures >= self.retry.max_attempts {
                        return Err(self.exhausted(url, failures, last));
                    }
                    tokio::time::sleep(self.backoff(failures)).await;
                    continue;
                }
            };
            let status = response.status();
            let response_headers = response.headers().clone();
            let retry_after = retry_after(&response_headers).map(|w| w.min(self.retry.cap));
            let body = match response.bytes().await {
                Ok(b) => b,
                Err(e) => {
                    failures += 1;
                    last = http_client::request_error(&e);
                    if failures >= self.retry.max_attempts {
                        return Err(self.exhausted(url, failures, last));
                    }
                    tokio::time::sleep(self.backoff(failures)).await;
                    continue;
                }
            };
            let response = ApiResponse {
                status,
                headers: response_headers,
                body,
            };
            let code = response.error_code();
            if status.is_success() {
                self.status.set_connected(true);
                return Ok(response);
            }
            if (self.throttling)(status, code.as_deref()) {
                // Throttling never exhausts attempts: the quota comes back.
                let wait = retry_after.unwrap_or(self.retry.cap / 4);
                self.status.throttled();
                tracing::info!(status = status.as_u16(), code = ?code, wait_ms = wait.as_millis() as u64, "throttled; pausing the request budget");
                self.budget.pause_until(Instant::now() + wait).await;
                continue;
            }
            if status == StatusCode::UNAUTHORIZED && !refreshed {
                refreshed = true;
                self.tokens.invalidate(&self.scope).await;
                continue;
            }
            if status.is_server_error() {
                failures += 1;
                last = response.error_summary();
                if failures >= self.retry.max_attempts {
                    return Err(self.exhausted(url, failures, last));
                }
                let wait = retry_after.unwrap_or_else(|| self.backoff(failures));
                if retry_after.is_some() {
                    self.status.throttled();
                    self.budget.pause_until(Instant::now() + wait).await;
                } else {
                    tokio::time::sleep(wait).await;
                }
                continue;
            }
            self.status
                .set_connected(status != StatusCode::UNAUTHORIZED && status != StatusCode::FORBIDDEN);
            return Ok(response);
        }
    }

    fn exhausted(&self, url: &str, attempts: u32, last: String) -> ApiError {
        ApiError::Exhausted {
            url: strip_query(url).to_string(),
            attempts,
            last,
        }
    }

    /// Exponential backoff with full jitter.
    fn backoff(&self, failures: u32) -> Duration {
        let exp = self.retry.base.saturating_mul(1u32 << failures.min(16));
        let ceiling = exp.min(self.retry.cap);
        ceiling.mul_f64(rand::random::<f64>().max(0.1))
    }
}

/// `Retry-After` in seconds (the form Microsoft APIs send) or an HTTP date, at most
/// [`http_client::MAX_RETRY_AFTER`].
pub use crate::collector::destinations::http_client::retry_after;

fn strip_query(url: &str) -> &str {
    url.split('?').next().unwrap_or(url)
}

/// What the scheduler of a polled source needs of one of its streams (a content type, an
/// endpoint).
pub trait PolledStream {
    /// Mid-way through a window: pages or blobs are left to read now.
    fn in_window(&self) -> bool;
    /// When the stream is due for its next poll.
    fn next_poll(&self) -> Instant;
    /// How far the stream has read.
    fn cursor(&self) -> chrono::DateTime<chrono::Utc>;
}

/// The stream to serve next: the ready one (mid-window or due) furthest behind, so the backfills
/// of several streams advance together; `Err(when)` if none is ready, `when` being the earliest
/// poll (or `now + idle` without streams).
pub fn next_stream<S: PolledStream>(streams: &[S], now: Instant, idle: Duration) -> Result<usize, Instant> {
    (0..streams.len())
        .filter(|&i| streams[i].in_window() || streams[i].next_poll() <= now)
        .min_by_key(|&i| streams[i].cursor())
        .ok_or_else(|| streams.iter().map(|s| s.next_poll()).min().unwrap_or(now + idle))
}

/// Wait until a stream is ready and return it ([`next_stream`], sleeping while none is).
pub async fn due_stream<S: PolledStream>(streams: &[S], idle: Duration) -> usize {
    loop {
        match next_stream(streams, Instant::now(), idle) {
            Ok(i) => return i,
            Err(wake) => tokio::time::sleep_until(wake.into()).await,
        }
    }
}

/// `2026-11-22T10:00:00.000Z` (milliseconds): stream cursors in checkpoints and status.
pub fn cursor_time(t: chrono::DateTime<chrono::Utc>) -> String {
    t.to_rfc3339_opts(chrono::SecondsFormat::Millis, true)
}

/// `2026-11-22T10:00:00Z` (whole seconds) for query parameters.
pub fn query_time(t: chrono::DateTime<chrono::Utc>) -> String {
    t.to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
}

/// Parse the timestamps Microsoft APIs send (`...Z`, offsets, or no zone meaning UTC).
pub fn parse_time(s: &str) -> Option<chrono::DateTime<chrono::Utc>> {
    if let Ok(t) = chrono::DateTime::parse_from_rfc3339(s) {
        return Some(t.with_timezone(&chrono::Utc));
    }
    chrono::NaiveDateTime::parse_from_str(s, "%Y-%m-%dT%H:%M:%S%.f")
        .ok()
        .map(|n| n.and_utc())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn times_with_and_without_zone_parse_as_utc() {
        let a = parse_time("2026-01-01T10:03:19").unwrap();
        let b = parse_time("2026-01-01T10:03:19Z").unwrap();
        let c = parse_time("2026-01-01T10:03:19.000Z").unwrap();
        assert_eq!(a, b);
        assert_eq!(b, c);
        assert!(parse_time("yesterday").is_none());
    }

    #[tokio::test(start_paused = true)]
    async fn the_budget_never_allows_more_than_its_requests_per_window() {
        let budget = RateBudget::new(5, Duration::from_secs(10));
        let start = tokio::time::Instant::now();
        let mut times = Vec::new();
        for _ in 0..12 {
            budget.acquire().await;
            times.push(start.elapsed());
        }
        // 5 at once, 5 more when the first leave the window (10 s and its 5 % margin), then the
        // rest. (The paused clock advances in whole milliseconds.)
        let near = |t: Duration, ms: u64| {
            t >= Duration::from_millis(ms) && t < Duration::from_millis(ms) + Duration::from_millis(10)
        };
        assert!(near(times[4], 0), "{times:?}");
        assert!(near(times[5], 10_500), "{times:?}");
        assert!(near(times[9], 10_500), "{times:?}");
        assert!(near(times[10], 21_000), "{times:?}");
        let smooth = RateBudget::new(600, Duration::from_secs(60));
        assert_eq!(smooth.tiers()[1], (10, Duration::from_secs(1)));
    }

    #[test]
    fn retry_after_reads_seconds() {
        let mut h = reqwest::header::HeaderMap::new();
        h.insert(reqwest::header::RETRY_AFTER, "2".parse().unwrap());
        assert_eq!(retry_after(&h), Some(Duration::from_secs(2)));
        h.insert(reqwest::header::RETRY_AFTER, "soon".parse().unwrap());
        assert_eq!(retry_after(&h), None);
    }
}
