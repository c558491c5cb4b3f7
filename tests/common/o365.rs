//! Stand-in of the Office 365 Management Activity API (docs/PROTOCOLS.md sections 0 and 2):
//! subscriptions per content type, content listing on `contentCreated` with the window rules
//! (<= 24 h, inside 7 days) and `NextPageUri` paging, content blobs as JSON arrays, expired
//! content (AF20051), content listed late, duplicate records across blobs, throttling with 429
//! or 403 `AF429` and `Retry-After`, and a request log with times so a test can check the
//! client's rate and that it never sent a request before a `Retry-After` ran out.
#![allow(dead_code)]
// Handlers answer with a `Response` as their error; boxing it would only add noise to test code.
#![allow(clippy::result_large_err, clippy::type_complexity)]

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::Json;
use chrono::{DateTime, Utc};

use super::entra::EntraState;

/// Token audience of the API.
pub const SCOPE: &str = "https://manage.office.com/.default";

/// One content blob.
#[derive(Clone, Debug)]
pub struct Blob {
    pub content_type: String,
    pub content_id: String,
    pub created: DateTime<Utc>,
    /// Not listed before this instant (late arrival in the listing).
    pub listed_after: Option<Instant>,
    /// GET answers AF20051.
    pub expired: bool,
    pub records: Vec<serde_json::Value>,
}

/// One request as the stand-in saw it.
#[derive(Clone, Debug)]
pub struct Logged {
    pub at: Instant,
    pub method: String,
    pub path: String,
    pub status: u16,
    pub publisher: Option<String>,
}

/// Switches and state, shared with the test.
pub struct O365State {
    pub tenant: String,
    pub entra: Arc<EntraState>,
    pub blobs: Mutex<Vec<Blob>>,
    /// content type -> enabled.
    pub subscriptions: Mutex<HashMap<String, bool>>,
    /// Subscription start calls.
    pub starts: AtomicUsize,
    /// Descriptors per listing page.
    pub page_size: AtomicUsize,
    /// Throttle every n-th request (0: never).
    pub throttle_every: AtomicUsize,
    /// Answer throttling with 403 `AF429` instead of 429.
    pub throttle_with_403: AtomicBool,
    /// `Retry-After` seconds sent with throttling.
    pub retry_after_seconds: AtomicUsize,
    /// Every request.
    pub log: Mutex<Vec<Logged>>,
    /// Throttling answers given: (sent at, no request expected before).
    pub throttled: Mutex<Vec<(Instant, Instant)>>,
    /// Requests that came before a `Retry-After` had run out.
    pub early: AtomicUsize,
    counter: AtomicUsize,
    base: Mutex<String>,
}

/// A running stand-in.
pub struct O365 {
    /// Root to configure as `endpoint`, `http://127.0.0.1:PORT`.
    pub root: String,
    pub state: Arc<O365State>,
}

fn af(status: StatusCode, code: &str, message: &str) -> Response {
    (
        status,
        Json(serde_json::json!({"error": {"code": code, "message": message}})),
    )
        .into_response()
}

/// Documented window formats: `YYYY-MM-DD`, `YYYY-MM-DDTHH:MM`, `YYYY-MM-DDTHH:MM:SS` (UTC).
fn parse_window_time(s: &str) -> Option<DateTime<Utc>> {
    for f in ["%Y-%m-%dT%H:%M:%S", "%Y-%m-%dT%H:%M"] {
        if let Ok(t) = chrono::NaiveDateTime::parse_from_str(s, f) {
            return Some(t.and_utc());
        }
    }
    chrono::NaiveDate::parse_from_str(s, "%Y-%m-%d")
        .ok()
        .and_then(|d| d.and_hms_opt(0, 0, 0))
        .map(|t| t.and_utc())
}

impl O365State {
    /// Log, check the token and the throttling switch. `Err` is the answer to give.
    fn admit(
        &self,
        method: &str,
        path: &str,
        headers: &HeaderMap,
        query: &HashMap<String, String>,
    ) -> Result<(), Response> {
        let now = Instant::now();
        {
            let throttled = self.throttled.lock().unwrap();
            // A request sent while the throttling answer travelled is not early.
            if throttled
                .iter()
                .any(|(sent, until)| now > *sent + Duration::from_millis(50) && now < *until)
            {
                self.early.fetch_add(1, Ordering::SeqCst);
            }
        }
        let mut entry = Logged {
            at: now,
            method: method.into(),
            path: path.into(),
            status: 200,
            publisher: query.get("PublisherIdentifier").cloned(),
        };
        let result = self.check(headers);
        if let Err((status, _)) = &result {
            entry.status = *status;
        }
        self.log.lock().unwrap().push(entry);
        result.map_err(|(_, r)| r)
    }

    fn check(&self, headers: &HeaderMap) -> Result<(), (u16, Response)> {
        let token = headers
            .get("authorization")
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.strip_prefix("Bearer "))
            .unwrap_or("");
        if !self.entra.valid_now(token, SCOPE) {
            return Err((
                401,
                af(
                    StatusCode::UNAUTHORIZED,
                    "AF10001",
                    "The token is missing, expired or lacks ActivityFeed.Read.",
                ),
            ));
        }
        let n = self.counter.fetch_add(1, Ordering::SeqCst) + 1;
        let every = self.throttle_every.load(Ordering::SeqCst);
        if every > 0 && n.is_multiple_of(every) {
            let secs = self.retry_after_seconds.load(Ordering::SeqCst).max(1);
            let status = if self.throttle_with_403.load(Ordering::SeqCst) {
                StatusCode::FORBIDDEN
            } else {
                StatusCode::TOO_MANY_REQUESTS
            };
            let mut r = af(
                status,
                "AF429",
                "Too many requests. Method=GET, PublisherId=11111111-2222-3333-4444-555555555555",
            );
            r.headers_mut()
                .insert("Retry-After", HeaderValue::from_str(&secs.to_string()).unwrap());
            let now = Instant::now();
            self.throttled
                .lock()
                .unwrap()
                .push((now, now + Duration::from_secs(secs as u64)));
            return Err((status.as_u16(), r));
        }
        Ok(())
    }

    /// Add a blob; its `contentId` and URI are derived from the content type and a counter.
    pub fn add_blob(&self, content_type: &str, created: DateTime<Utc>, records: Vec<serde_json::Value>) -> String {
        let mut blobs = self.blobs.lock().unwrap();
        let id = format!(
            "{}${}${:06}",
            created.format("%Y%m%d%H%M%S%3f"),
            content_type.replace('.', "_").to_lowercase(),
            blobs.len()
        );
        blobs.push(Blob {
            content_type: content_type.into(),
            content_id: id.clone(),
            created,
            listed_after: None,
            expired: false,
            records,
        });
        id
    }

    /// Requests (all outcomes) in order of arrival.
    pub fn requests(&self) -> Vec<Logged> {
        self.log.lock().unwrap().clone()
    }
}

async fn list_subscriptions(
    State(s): State<Arc<O365State>>,
    Path(p): Path<HashMap<String, String>>,
    Query(q): Query<HashMap<String, String>>,
    headers: HeaderMap,
) -> Response {
    if let Err(r) = s.admit("GET", "subscriptions/list", &headers, &q) {
        return r;
    }
    let tenant = p.get("tenant").cloned().unwrap_or_default();
    if tenant != s.tenant {
        return af(
            StatusCode::FORBIDDEN,
            "AF20010",
            "The tenant ID in the URL does not match the token.",
        );
    }
    let subs: Vec<_> = s
        .subscriptions
        .lock()
        .unwrap()
        .iter()
        .map(|(ct, on)| serde_json::json!({"contentType": ct, "status": if *on {"enabled"} else {"disabled"}, "webhook": null}))
        .collect();
    Json(subs).into_response()
}

async fn start(
    State(s): State<Arc<O365State>>,
    Path(p): Path<HashMap<String, String>>,
    Query(q): Query<HashMap<String, String>>,
    headers: HeaderMap,
) -> Response {
    if let Err(r) = s.admit("POST", "subscriptions/start", &headers, &q) {
        return r;
    }
    let tenant = p.get("tenant").cloned().unwrap_or_default();
    if tenant != s.tenant {
        return af(
            StatusCode::FORBIDDEN,
            "AF20010",
            "The tenant ID in the URL does not match the token.",
        );
    }
    let Some(ct) = q.get("contentType") else {
        return af(StatusCode::BAD_REQUEST, "AF20001", "Missing parameter contentType.");
    };
    s.starts.fetch_add(1, Ordering::SeqCst);
    let mut subs = s.subscriptions.lock().unwrap();
    if subs.get(ct) == Some(&true) {
        return af(
            StatusCode::BAD_REQUEST,
            "AF20024",
            "The subscription is already enabled.",
        );
    }
    subs.insert(ct.clone(), true);
    Json(serde_json::json!({"contentType": ct, "status": "enabled", "webhook": null})).into_response()
}

async fn content(
    State(s): State<Arc<O365State>>,
    Path(p): Path<HashMap<String, String>>,
    Query(q): Query<HashMap<String, String>>,
    headers: HeaderMap,
) -> Response {
    if let Err(r) = s.admit("GET", "subscriptions/content", &headers, &q) {
        return r;
    }
    let tenant = p.get("tenant").cloned().unwrap_or_default();
    if tenant != s.tenant {
        return af(
            StatusCode::FORBIDDEN,
            "AF20010",
            "The tenant ID in the URL does not match the token.",
        );
    }
    let Some(ct) = q.get("contentType") else {
        return af(StatusCode::BAD_REQUEST, "AF20001", "Missing parameter contentType.");
    };
    if s.subscriptions.lock().unwrap().get(ct) != Some(&true) {
        return af(
            StatusCode::BAD_REQUEST,
            "AF20022",
            "No subscription found for the specified content type.",
        );
    }
    let (Some(start), Some(end)) = (
        q.get("startTime").and_then(|t| parse_window_time(t)),
        q.get("endTime").and_then(|t| parse_window_time(t)),
    ) else {
        return af(
            StatusCode::BAD_REQUEST,
            "AF20055",
            "Start time and end time must both be specified and valid.",
        );
    };
    let now = Utc::now();
    if end <= start || end - start > chrono::TimeDelta::hours(24) || start < now - chrono::TimeDelta::days(7) {
        return af(
            StatusCode::BAD_REQUEST,
            "AF20055",
            "Start time and end time must be within 24 hours, and the start time no older than 7 days.",
        );
    }
    let offset = match q.get("nextPage") {
        None => 0,
        Some(p) => match p.parse::<usize>() {
            Ok(n) => n,
            Err(_) => return af(StatusCode::BAD_REQUEST, "AF20031", "Invalid nextPage input."),
        },
    };
    let base = s.base.lock().unwrap().clone();
    let instant = Instant::now();
    let mut matching: Vec<Blob> = s
        .blobs
        .lock()
        .unwrap()
        .iter()
        .filter(|b| &b.content_type == ct && b.created >= start && b.created < end)
        .filter(|b| b.listed_after.is_none_or(|t| instant >= t))
        .cloned()
        .collect();
    matching.sort_by(|a, b| a.content_id.cmp(&b.content_id));
    let page = s.page_size.load(Ordering::SeqCst).max(1);
    let slice: Vec<_> = matching
        .iter()
        .skip(offset)
        .take(page)
        .map(|b| {
            serde_json::json!({
                "contentType": b.content_type,
                "contentId": b.content_id,
                "contentUri": format!("{base}/api/v1.0/{tenant}/activity/feed/audit/{}", b.content_id),
                "contentCreated": b.created.to_rfc3339_opts(chrono::SecondsFormat::Millis, true),
                "contentExpiration": (b.created + chrono::TimeDelta::days(7)).to_rfc3339_opts(chrono::SecondsFormat::Millis, true),
            })
        })
        .collect();
    let mut r = Json(slice).into_response();
    if offset + page < matching.len() {
        // As documented: no PublisherIdentifier in it, `api/v1` not `api/v1.0`.
        let next = format!(
            "{base}/api/v1/{tenant}/activity/feed/subscriptions/content?contentType={ct}&startTime={}&endTime={}&nextPage={}",
            q["startTime"],
            q["endTime"],
            offset + page
        );
        r.headers_mut()
            .insert("NextPageUri", HeaderValue::from_str(&next).unwrap());
    }
    r
}

async fn blob(
    State(s): State<Arc<O365State>>,
    Path(p): Path<HashMap<String, String>>,
    Query(q): Query<HashMap<String, String>>,
    headers: HeaderMap,
) -> Response {
    if let Err(r) = s.admit("GET", "audit", &headers, &q) {
        return r;
    }
    let tenant = p.get("tenant").cloned().unwrap_or_default();
    if tenant != s.tenant {
        return af(
            StatusCode::FORBIDDEN,
            "AF20010",
            "The tenant ID in the URL does not match the token.",
        );
    }
    let id = p.get("id").cloned().unwrap_or_default();
    let found = s.blobs.lock().unwrap().iter().find(|b| b.content_id == id).cloned();
    match found {
        None => af(
            StatusCode::NOT_FOUND,
            "AF20050",
            "The specified content does not exist.",
        ),
        Some(b) if b.expired => af(
            StatusCode::BAD_REQUEST,
            "AF20051",
            "Content requested with the key has already expired.",
        ),
        Some(b) => Json(b.records).into_response(),
    }
}

impl O365 {
    /// Start on 127.0.0.1 for `tenant`, accepting tokens `entra` issued for the Management API.
    pub async fn start(tenant: &str, entra: Arc<EntraState>) -> O365 {
        let state = Arc::new(O365State {
            tenant: tenant.into(),
            entra,
            blobs: Mutex::default(),
            subscriptions: Mutex::default(),
            starts: AtomicUsize::new(0),
            page_size: AtomicUsize::new(100),
            throttle_every: AtomicUsize::new(0),
            throttle_with_403: AtomicBool::new(false),
            retry_after_seconds: AtomicUsize::new(1),
            log: Mutex::default(),
            throttled: Mutex::default(),
            early: AtomicUsize::new(0),
            counter: AtomicUsize::new(0),
            base: Mutex::default(),
        });
        // `{version}` accepts both `v1.0` and the `v1` of documented NextPageUri samples.
        let feed = "/api/{version}/{tenant}/activity/feed";
        let app = axum::Router::new()
            .route(&format!("{feed}/subscriptions/list"), get(list_subscriptions))
            .route(&format!("{feed}/subscriptions/start"), post(start))
            .route(&format!("{feed}/subscriptions/content"), get(content))
            .route(&format!("{feed}/audit/{{id}}"), get(blob))
            .with_state(state.clone());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let root = format!("http://{}", listener.local_addr().unwrap());
        *state.base.lock().unwrap() = root.clone();
        tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
        O365 { root, state }
    }
}
