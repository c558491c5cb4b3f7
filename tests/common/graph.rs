//! Stand-in of Microsoft Graph (docs/PROTOCOLS.md sections 0 and 3): the audit, sign-in, risk and
//! security collections with `$filter` on their time property (`ge`/`lt`), `$top` capped per
//! endpoint, opaque `@odata.nextLink` with `$skiptoken`, the beta `signInEventTypes` filter
//! (v1.0 serves interactive sign-ins only and refuses the filter), the reports limit (requests
//! per window per app and tenant, 429 + `Retry-After`), injected 429/503 with `Retry-After`,
//! and the audit log query API (`security/auditLog/queries`: notStarted -> running ->
//! succeeded or failed, records paged). Every request is logged with its time.
#![allow(dead_code)]
#![allow(clippy::result_large_err, clippy::type_complexity)]

use std::collections::HashMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::Json;
use chrono::{DateTime, Utc};

use super::entra::EntraState;

/// Token audience of Graph.
pub const SCOPE: &str = "https://graph.microsoft.com/.default";

/// One request as the stand-in saw it.
#[derive(Clone, Debug)]
pub struct Logged {
    pub at: Instant,
    pub method: String,
    /// `v1.0/auditLogs/signIns`.
    pub path: String,
    pub filter: Option<String>,
    pub status: u16,
}

/// A seeded object and when it becomes visible.
#[derive(Clone, Debug)]
pub struct Seeded {
    pub value: serde_json::Value,
    pub visible_after: Option<Instant>,
}

/// An audit log query.
#[derive(Clone, Debug)]
pub struct AuditQuery {
    pub id: String,
    pub start: DateTime<Utc>,
    pub end: DateTime<Utc>,
    pub record_types: Vec<String>,
    /// Status reads so far (drives notStarted -> running -> final).
    pub polls: usize,
    pub fails: bool,
}

/// Switches and state, shared with the test.
pub struct GraphState {
    pub entra: Arc<EntraState>,
    /// Collection path (`auditLogs/signIns`) -> objects.
    pub collections: Mutex<HashMap<String, Vec<Seeded>>>,
    /// Largest page the server returns, whatever `$top` asks.
    pub page_cap: AtomicUsize,
    /// Throttle every n-th request (0: never) with 429, or 503 when `throttle_with_503`.
    pub throttle_every: AtomicUsize,
    pub throttle_with_503: std::sync::atomic::AtomicBool,
    pub retry_after_seconds: AtomicUsize,
    /// Reports limit: at most this many `auditLogs` requests per `reports_window` (0: none).
    pub reports_limit: AtomicUsize,
    pub reports_window: Mutex<Duration>,
    pub log: Mutex<Vec<Logged>>,
    pub throttled: Mutex<Vec<(Instant, Instant)>>,
    pub early: AtomicUsize,
    /// Unified audit log records for the query API (with `createdDateTime`, `auditLogRecordType`).
    pub audit_records: Mutex<Vec<serde_json::Value>>,
    pub queries: Mutex<Vec<AuditQuery>>,
    /// The next this-many queries fail.
    pub fail_queries: AtomicUsize,
    counter: AtomicUsize,
    base: Mutex<String>,
}

/// A running stand-in.
pub struct Graph {
    /// `http://127.0.0.1:PORT`, the Graph root to configure.
    pub root: String,
    pub state: Arc<GraphState>,
}

fn graph_error(status: StatusCode, code: &str, message: &str) -> Response {
    (
        status,
        Json(serde_json::json!({"error": {"code": code, "message": message,
            "innerError": {"date": "2026-01-01T00:00:00", "request-id": "aaaaaaaa-0000-0000-0000-000000000003"}}})),
    )
        .into_response()
}

/// Time property of a collection.
pub fn time_field(path: &str) -> &'static str {
    match path {
        "auditLogs/directoryAudits" | "auditLogs/provisioning" => "activityDateTime",
        "identityProtection/riskDetections" => "detectedDateTime",
        "identityProtection/riskyUsers" => "riskLastUpdatedDateTime",
        _ => "createdDateTime",
    }
}

/// `{field} ge {t} and {field} lt {t}` plus an optional `signInEventTypes/any(...)`.
fn parse_filter(
    filter: &str,
    field: &str,
) -> Result<(Option<DateTime<Utc>>, Option<DateTime<Utc>>, Option<Vec<String>>), String> {
    let mut ge = None;
    let mut lt = None;
    let mut types = None;
    let (times, any) = match filter.find("signInEventTypes/any(") {
        Some(i) => (&filter[..i], Some(&filter[i..])),
        None => (filter, None),
    };
    for clause in times.split(" and ").map(str::trim).filter(|c| !c.is_empty()) {
        let parts: Vec<&str> = clause.split_whitespace().collect();
        let [f, op, value] = parts.as_slice() else {
            return Err(format!("unsupported clause {clause:?}"));
        };
        if *f != field {
            return Err(format!("{f} is not filterable here"));
        }
        let t = DateTime::parse_from_rfc3339(value)
            .map_err(|_| format!("{value} is not a datetime literal"))?
            .with_timezone(&Utc);
        match *op {
            "ge" => ge = Some(t),
            "lt" => lt = Some(t),
            other => return Err(format!("operator {other} not supported by the stand-in")),
        }
    }
    if let Some(any) = any {
        let names: Vec<String> = any
            .split('\'')
            .enumerate()
            .filter(|(i, _)| i % 2 == 1)
            .map(|(_, s)| s.to_string())
            .collect();
        types = Some(names);
    }
    Ok((ge, lt, types))
}

impl GraphState {
    fn admit(&self, method: &str, path: &str, filter: Option<String>, headers: &HeaderMap) -> Result<(), Response> {
        let now = Instant::now();
        if self
            .throttled
            .lock()
            .unwrap()
            .iter()
            .any(|(sent, until)| now > *sent + Duration::from_millis(50) && now < *until)
        {
            self.early.fetch_add(1, Ordering::SeqCst);
        }
        let outcome = self.check(path, headers, now);
        let status = match &outcome {
            Ok(()) => 200,
            Err(r) => r.status().as_u16(),
        };
        self.log.lock().unwrap().push(Logged {
            at: now,
            method: method.into(),
            path: path.into(),
            filter,
            status,
        });
        outcome
    }

    fn check(&self, path: &str, headers: &HeaderMap, now: Instant) -> Result<(), Response> {
        let token = headers
            .get("authorization")
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.strip_prefix("Bearer "))
            .unwrap_or("");
        if !self.entra.valid_now(token, SCOPE) {
            return Err(graph_error(
                StatusCode::UNAUTHORIZED,
                "InvalidAuthenticationToken",
                "Access token has expired or is not yet valid.",
            ));
        }
        let limit = self.reports_limit.load(Ordering::SeqCst);
        if limit > 0 && path.contains("auditLogs/") && !path.contains("security/") {
            let window = *self.reports_window.lock().unwrap();
            let log = self.log.lock().unwrap();
            let recent: Vec<Instant> = log
                .iter()
                .filter(|l| l.path.contains("auditLogs/") && l.status == 200 && now.duration_since(l.at) < window)
                .map(|l| l.at)
                .collect();
            if recent.len() >= limit {
                let oldest = recent.iter().min().copied().unwrap_or(now);
                let wait = window.saturating_sub(now.duration_since(oldest));
                let secs = wait.as_secs() + 1;
                drop(log);
                return Err(self.throttle(StatusCode::TOO_MANY_REQUESTS, secs as usize));
            }
        }
        let n = self.counter.fetch_add(1, Ordering::SeqCst) + 1;
        let every = self.throttle_every.load(Ordering::SeqCst);
        if every > 0 && n.is_multiple_of(every) {
            let status = if self.throttle_with_503.load(Ordering::SeqCst) {
                StatusCode::SERVICE_UNAVAILABLE
            } else {
                StatusCode::TOO_MANY_REQUESTS
            };
            return Err(self.throttle(status, self.retry_after_seconds.load(Ordering::SeqCst).max(1)));
        }
        Ok(())
    }

    fn throttle(&self, status: StatusCode, secs: usize) -> Response {
        let mut r = graph_error(status, "TooManyRequests", "Too many requests.");
        r.headers_mut()
            .insert("Retry-After", HeaderValue::from_str(&secs.to_string()).unwrap());
        let now = Instant::now();
        self.throttled
            .lock()
            .unwrap()
            .push((now, now + Duration::from_secs(secs as u64)));
        r
    }

    /// Add an object to a collection, visible now or after `visible_after`.
    pub fn add(&self, path: &str, value: serde_json::Value, visible_after: Option<Instant>) {
        self.collections
            .lock()
            .unwrap()
            .entry(path.to_string())
            .or_default()
            .push(Seeded { value, visible_after });
    }

    pub fn requests(&self) -> Vec<Logged> {
        self.log.lock().unwrap().clone()
    }
}

fn page(
    base: &str,
    path_for_link: &str,
    items: Vec<serde_json::Value>,
    q: &HashMap<String, String>,
    cap: usize,
) -> Response {
    let top = q
        .get("$top")
        .and_then(|t| t.parse::<usize>().ok())
        .unwrap_or(100)
        .min(cap.max(1));
    let offset = match q.get("$skiptoken") {
        None => 0,
        Some(t) => match usize::from_str_radix(t.trim_start_matches("0x"), 16) {
            Ok(n) => n,
            Err(_) => return graph_error(StatusCode::BAD_REQUEST, "BadRequest", "Invalid $skiptoken."),
        },
    };
    let slice: Vec<_> = items.iter().skip(offset).take(top).cloned().collect();
    let mut body = serde_json::json!({
        "@odata.context": format!("{base}/$metadata#{path_for_link}"),
        "value": slice,
    });
    if offset + top < items.len() {
        let mut url = reqwest::Url::parse(&format!("{base}/{path_for_link}")).unwrap();
        {
            let mut pairs = url.query_pairs_mut();
            if let Some(f) = q.get("$filter") {
                pairs.append_pair("$filter", f);
            }
            pairs.append_pair("$top", &top.to_string());
            pairs.append_pair("$skiptoken", &format!("0x{:x}", offset + top));
        }
        body["@odata.nextLink"] = serde_json::Value::String(url.to_string());
    }
    Json(body).into_response()
}

async fn collection(
    State(s): State<Arc<GraphState>>,
    Path((version, rest)): Path<(String, String)>,
    Query(q): Query<HashMap<String, String>>,
    headers: HeaderMap,
) -> Response {
    let logged_path = format!("{version}/{rest}");
    if let Err(r) = s.admit("GET", &logged_path, q.get("$filter").cloned(), &headers) {
        return r;
    }
    let base = s.base.lock().unwrap().clone();
    let cap = s.page_cap.load(Ordering::SeqCst);
    if let Some(query_path) = rest.strip_prefix("security/auditLog/queries/") {
        return audit_query_get(&s, &base, &version, query_path, &q, cap);
    }
    let field = time_field(&rest);
    let (ge, lt, types) = match q.get("$filter").map(|f| parse_filter(f, field)).transpose() {
        Ok(v) => v.unwrap_or((None, None, None)),
        Err(e) => {
            return graph_error(
                StatusCode::BAD_REQUEST,
                "BadRequest",
                &format!("Invalid filter clause: {e}"),
            )
        }
    };
    let is_sign_ins = rest == "auditLogs/signIns";
    if types.is_some() && (version != "beta" || !is_sign_ins) {
        return graph_error(
            StatusCode::BAD_REQUEST,
            "BadRequest",
            "Could not find a property named 'signInEventTypes' on type 'microsoft.graph.signIn'.",
        );
    }
    let now = Instant::now();
    let Some(all) = s.collections.lock().unwrap().get(&rest).cloned() else {
        return graph_error(
            StatusCode::NOT_FOUND,
            "ResourceNotFound",
            "Resource not found for the segment.",
        );
    };
    let wanted_types = types.unwrap_or_else(|| vec!["interactiveUser".to_string()]);
    let mut items: Vec<serde_json::Value> = all
        .into_iter()
        .filter(|x| x.visible_after.is_none_or(|t| now >= t))
        .map(|x| x.value)
        .filter(|v| {
            let t = v[field]
                .as_str()
                .and_then(|t| DateTime::parse_from_rfc3339(t).ok())
                .map(|t| t.with_timezone(&Utc));
            let Some(t) = t else { return false };
            ge.is_none_or(|g| t >= g) && lt.is_none_or(|l| t < l)
        })
        .filter(|v| {
            if !is_sign_ins {
                return true;
            }
            let kinds: Vec<&str> = v["signInEventTypes"]
                .as_array()
                .map(|a| a.iter().filter_map(|x| x.as_str()).collect())
                .unwrap_or_default();
            kinds.iter().any(|k| wanted_types.iter().any(|w| w == k))
        })
        .collect();
    // Sign-ins come newest first, as documented.
    items.sort_by(|a, b| b[field].as_str().cmp(&a[field].as_str()));
    page(&base, &logged_path, items, &q, cap)
}

fn audit_query_get(
    s: &GraphState,
    base: &str,
    version: &str,
    rest: &str,
    q: &HashMap<String, String>,
    cap: usize,
) -> Response {
    let (id, records) = match rest.split_once('/') {
        Some((id, "records")) => (id, true),
        Some(_) => return graph_error(StatusCode::NOT_FOUND, "ResourceNotFound", "Resource not found."),
        None => (rest, false),
    };
    let mut queries = s.queries.lock().unwrap();
    let Some(query) = queries.iter_mut().find(|x| x.id == id) else {
        return graph_error(StatusCode::NOT_FOUND, "ResourceNotFound", "Query not found.");
    };
    let status = |polls: usize, fails: bool| match polls {
        0 => "notStarted",
        1 => "running",
        _ if fails => "failed",
        _ => "succeeded",
    };
    if !records {
        let st = status(query.polls, query.fails);
        query.polls += 1;
        return Json(serde_json::json!({
            "@odata.type": "#microsoft.graph.security.auditLogQuery",
            "id": query.id,
            "filterStartDateTime": query.start.to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
            "filterEndDateTime": query.end.to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
            "recordTypeFilters": query.record_types,
            "status": st,
        }))
        .into_response();
    }
    if status(query.polls, query.fails) != "succeeded" {
        return graph_error(StatusCode::BAD_REQUEST, "BadRequest", "The query has not succeeded.");
    }
    let (start, end, types) = (query.start, query.end, query.record_types.clone());
    drop(queries);
    let items: Vec<serde_json::Value> = s
        .audit_records
        .lock()
        .unwrap()
        .iter()
        .filter(|r| {
            let t = r["createdDateTime"]
                .as_str()
                .and_then(|t| DateTime::parse_from_rfc3339(t).ok())
                .map(|t| t.with_timezone(&Utc));
            t.is_some_and(|t| t >= start && t < end)
                && (types.is_empty()
                    || types
                        .iter()
                        .any(|x| Some(x.as_str()) == r["auditLogRecordType"].as_str()))
        })
        .cloned()
        .collect();
    page(
        base,
        &format!("{version}/security/auditLog/queries/{id}/records"),
        items,
        q,
        cap,
    )
}

async fn create_query(
    State(s): State<Arc<GraphState>>,
    Path(version): Path<String>,
    headers: HeaderMap,
    Json(body): Json<serde_json::Value>,
) -> Response {
    if let Err(r) = s.admit("POST", &format!("{version}/security/auditLog/queries"), None, &headers) {
        return r;
    }
    let parse = |k: &str| {
        body[k]
            .as_str()
            .and_then(|t| DateTime::parse_from_rfc3339(t).ok())
            .map(|t| t.with_timezone(&Utc))
    };
    let (Some(start), Some(end)) = (parse("filterStartDateTime"), parse("filterEndDateTime")) else {
        return graph_error(
            StatusCode::BAD_REQUEST,
            "BadRequest",
            "filterStartDateTime and filterEndDateTime are required.",
        );
    };
    let record_types: Vec<String> = body["recordTypeFilters"]
        .as_array()
        .map(|a| a.iter().filter_map(|x| x.as_str().map(String::from)).collect())
        .unwrap_or_default();
    let fails = s
        .fail_queries
        .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1))
        .is_ok();
    let mut queries = s.queries.lock().unwrap();
    let id = format!("aaaaaaaa-5555-4555-8555-{:012x}", queries.len() + 1);
    queries.push(AuditQuery {
        id: id.clone(),
        start,
        end,
        record_types: record_types.clone(),
        polls: 0,
        fails,
    });
    (
        StatusCode::CREATED,
        Json(serde_json::json!({
            "@odata.type": "#microsoft.graph.security.auditLogQuery",
            "id": id,
            "displayName": body["displayName"],
            "filterStartDateTime": body["filterStartDateTime"],
            "filterEndDateTime": body["filterEndDateTime"],
            "recordTypeFilters": record_types,
            "status": "notStarted",
        })),
    )
        .into_response()
}

impl Graph {
    /// Start on 127.0.0.1, accepting tokens `entra` issued for Graph.
    pub async fn start(entra: Arc<EntraState>) -> Graph {
        let state = Arc::new(GraphState {
            entra,
            collections: Mutex::default(),
            page_cap: AtomicUsize::new(1000),
            throttle_every: AtomicUsize::new(0),
            throttle_with_503: Default::default(),
            retry_after_seconds: AtomicUsize::new(1),
            reports_limit: AtomicUsize::new(0),
            reports_window: Mutex::new(Duration::from_secs(10)),
            log: Mutex::default(),
            throttled: Mutex::default(),
            early: AtomicUsize::new(0),
            audit_records: Mutex::default(),
            queries: Mutex::default(),
            fail_queries: AtomicUsize::new(0),
            counter: AtomicUsize::new(0),
            base: Mutex::default(),
        });
        let app = axum::Router::new()
            .route(
                "/{version}/security/auditLog/queries",
                axum::routing::post(create_query),
            )
            .route("/{version}/{*rest}", get(collection))
            .with_state(state.clone());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let root = format!("http://{}", listener.local_addr().unwrap());
        *state.base.lock().unwrap() = root.clone();
        tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
        Graph { root, state }
    }
}
