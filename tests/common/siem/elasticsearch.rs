//! Elasticsearch `_bulk` stand-in (docs/PROTOCOLS.md 7.2): `POST /_bulk` and `/{target}/_bulk` with
//! NDJSON action/source pairs (final newline required), documents kept by `(index, _id)` so a
//! second `create` of an id answers 409, per-item 429 (`es_rejected_execution_exception`) and 400
//! (`mapper_parsing_exception` for documents with `"poison":true`) injection, whole-request
//! 401/413/429/503, basic and API-key authentication, gzip bodies, `GET /` cluster info.
//! Indices named `logs-*` are data streams (the built-in `logs-*-*` index template): only
//! `create` is accepted, every document needs `@timestamp`, `data_stream.*` fields must match
//! the name, and the name must follow Elastic's data stream naming scheme
//! `logs-<dataset>-<namespace>` (lowercase, `[a-z0-9_.]`, no `-` inside a part, at most 100
//! bytes a part, 255 in all), which integrations rely on (ES itself would create an unrelated
//! data stream for `logs-a-b-c`; the stand-in refuses it with `invalid_index_name_exception`).
//! The `pipeline` of each action is recorded.

use std::collections::{BTreeMap, VecDeque};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::Json;
use serde_json::{json, Value};

/// State shared with the test.
#[derive(Default)]
pub struct EsState {
    /// `(index, _id)` -> document.
    pub docs: Mutex<BTreeMap<(String, String), Value>>,
    /// Accepted `Authorization` header values; empty: no authentication.
    pub accepted_auth: Mutex<Vec<String>>,
    /// Whole-request statuses to answer next, in order (429, 503, 401, 413...).
    pub fail_next: Mutex<VecDeque<u16>>,
    /// Answer this many items with 429 (one per item, across requests).
    pub reject_items_next: AtomicUsize,
    /// Largest body accepted (decompressed), bytes; 0: 100 MB.
    pub max_content_length: AtomicUsize,
    /// `create` actions received (including refused and conflicting ones).
    pub actions: AtomicUsize,
    /// Items answered 409.
    pub conflicts: AtomicUsize,
    /// Requests received, and how many were gzip.
    pub requests: AtomicUsize,
    pub gzip_requests: AtomicUsize,
    /// `(index, _id)` -> the `pipeline` its action named.
    pub pipelines: Mutex<BTreeMap<(String, String), String>>,
}

/// Why a data stream name is off Elastic's naming scheme, if it is.
pub fn data_stream_name_error(index: &str) -> Option<String> {
    let parts: Vec<&str> = index.split('-').collect();
    let part_ok = |p: &str| {
        !p.is_empty()
            && p.len() <= 100
            && p.bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_' || b == b'.')
    };
    if index.len() > 255 {
        return Some(format!("data stream name [{index}] is longer than 255 bytes"));
    }
    match parts.as_slice() {
        ["logs", dataset, namespace] if part_ok(dataset) && part_ok(namespace) => None,
        _ => Some(format!(
            "invalid data stream name [{index}], must be logs-<dataset>-<namespace>, lowercase [a-z0-9_.], no '-' in a part"
        )),
    }
}

/// Why a document cannot go to data stream `index`, if it cannot.
fn data_stream_document_error(index: &str, doc: &Value) -> Option<String> {
    if doc.get("@timestamp").and_then(Value::as_str).is_none() {
        return Some("data stream timestamp field [@timestamp] is missing".into());
    }
    let parts: Vec<&str> = index.split('-').collect();
    if let Some(ds) = doc.get("data_stream") {
        for (field, expected) in [("type", parts[0]), ("dataset", parts[1]), ("namespace", parts[2])] {
            if let Some(v) = ds.get(field) {
                if v.as_str() != Some(expected) {
                    return Some(format!(
                        "[data_stream.{field}] must be [{expected}] for data stream [{index}], not [{v}]"
                    ));
                }
            }
        }
    }
    None
}

/// A running Elasticsearch stand-in.
pub struct Elasticsearch {
    /// `http://127.0.0.1:PORT`.
    pub url: String,
    pub state: Arc<EsState>,
}

fn es_error(status: StatusCode, kind: &str, reason: &str) -> Response {
    (
        status,
        Json(json!({"error": {"root_cause": [{"type": kind, "reason": reason}], "type": kind, "reason": reason}, "status": status.as_u16()})),
    )
        .into_response()
}

fn authorized(state: &EsState, headers: &HeaderMap) -> bool {
    let accepted = state.accepted_auth.lock().unwrap();
    accepted.is_empty()
        || headers
            .get("authorization")
            .and_then(|v| v.to_str().ok())
            .is_some_and(|a| accepted.iter().any(|x| x == a))
}

fn unauthorized() -> Response {
    es_error(
        StatusCode::UNAUTHORIZED,
        "security_exception",
        "missing authentication credentials for REST request [/_bulk]",
    )
}

async fn bulk_default(State(state): State<Arc<EsState>>, headers: HeaderMap, body: Bytes) -> Response {
    bulk(&state, None, &headers, &body)
}

async fn bulk_target(
    State(state): State<Arc<EsState>>,
    Path(target): Path<String>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    bulk(&state, Some(target), &headers, &body)
}

fn bulk(state: &EsState, target: Option<String>, headers: &HeaderMap, body: &[u8]) -> Response {
    state.requests.fetch_add(1, Ordering::SeqCst);
    if !authorized(state, headers) {
        return unauthorized();
    }
    if let Some(status) = state.fail_next.lock().unwrap().pop_front() {
        let status = StatusCode::from_u16(status).unwrap();
        return match status.as_u16() {
            429 => es_error(
                status,
                "es_rejected_execution_exception",
                "rejected execution of coordinating operation",
            ),
            401 => unauthorized(),
            413 => es_error(status, "content_too_long", "request body is too large"),
            _ => es_error(status, "unavailable_shards_exception", "primary shard is not active"),
        };
    }
    if headers.get("content-encoding").is_some() {
        state.gzip_requests.fetch_add(1, Ordering::SeqCst);
    }
    let body = match super::decoded_body(headers, body) {
        Ok(b) => b,
        Err(e) => return es_error(StatusCode::BAD_REQUEST, "parse_exception", &e),
    };
    let limit = match state.max_content_length.load(Ordering::SeqCst) {
        0 => 100 * 1024 * 1024,
        n => n,
    };
    if body.len() > limit {
        return es_error(
            StatusCode::PAYLOAD_TOO_LARGE,
            "content_too_long",
            "request body is too large",
        );
    }
    if !body.ends_with(b"\n") {
        return es_error(
            StatusCode::BAD_REQUEST,
            "illegal_argument_exception",
            "The bulk request must be terminated by a newline [\\n]",
        );
    }
    let lines: Vec<&[u8]> = body.split(|b| *b == b'\n').filter(|l| !l.is_empty()).collect();
    if !lines.len().is_multiple_of(2) {
        return es_error(
            StatusCode::BAD_REQUEST,
            "illegal_argument_exception",
            "Malformed action/metadata line",
        );
    }
    let mut items = Vec::new();
    let mut errors = false;
    let mut docs = state.docs.lock().unwrap();
    for pair in lines.chunks(2) {
        let Ok(action) = serde_json::from_slice::<Value>(pair[0]) else {
            return es_error(
                StatusCode::BAD_REQUEST,
                "x_content_parse_exception",
                "malformed action line",
            );
        };
        let Some((op, meta)) = action.as_object().and_then(|o| o.iter().next()) else {
            return es_error(StatusCode::BAD_REQUEST, "illegal_argument_exception", "empty action");
        };
        state.actions.fetch_add(1, Ordering::SeqCst);
        let index = meta["_index"]
            .as_str()
            .map(str::to_string)
            .or(target.clone())
            .unwrap_or_default();
        let id = meta["_id"].as_str().unwrap_or_default().to_string();
        let (status, error) = if super::take(&state.reject_items_next) {
            (
                429,
                Some((
                    "es_rejected_execution_exception",
                    "rejected execution of primary operation".to_string(),
                )),
            )
        } else {
            let data_stream = index.starts_with("logs-");
            let name_error = data_stream.then(|| data_stream_name_error(&index)).flatten();
            let doc_error = |doc: &Value| data_stream.then(|| data_stream_document_error(&index, doc)).flatten();
            match serde_json::from_slice::<Value>(pair[1]) {
                Err(_) => (400, Some(("mapper_parsing_exception", "failed to parse".to_string()))),
                Ok(_) if name_error.is_some() => (400, Some(("invalid_index_name_exception", name_error.unwrap()))),
                Ok(doc) if doc["poison"] == Value::Bool(true) => (
                    400,
                    Some((
                        "mapper_parsing_exception",
                        "failed to parse field [poison] of type [long]".to_string(),
                    )),
                ),
                Ok(_) if op != "create" && index.starts_with("logs-") => (
                    400,
                    Some((
                        "illegal_argument_exception",
                        "only write ops with an op_type of create are allowed in data streams".to_string(),
                    )),
                ),
                Ok(doc) if doc_error(&doc).is_some() => {
                    (400, Some(("document_parsing_exception", doc_error(&doc).unwrap())))
                }
                Ok(_) if op == "create" && docs.contains_key(&(index.clone(), id.clone())) => {
                    state.conflicts.fetch_add(1, Ordering::SeqCst);
                    (
                        409,
                        Some((
                            "version_conflict_engine_exception",
                            "document already exists".to_string(),
                        )),
                    )
                }
                Ok(doc) => {
                    if let Some(p) = meta["pipeline"].as_str() {
                        state
                            .pipelines
                            .lock()
                            .unwrap()
                            .insert((index.clone(), id.clone()), p.to_string());
                    }
                    docs.insert((index.clone(), id.clone()), doc);
                    (201, None)
                }
            }
        };
        let mut item = json!({"_index": index, "_id": id, "status": status});
        match error {
            Some((kind, reason)) => {
                errors = true;
                item["error"] = json!({"type": kind, "reason": reason});
            }
            None => item["result"] = json!("created"),
        }
        items.push(json!({ op.clone(): item }));
    }
    Json(json!({"took": 3, "errors": errors, "items": items})).into_response()
}

async fn root(State(state): State<Arc<EsState>>, headers: HeaderMap) -> Response {
    if !authorized(&state, &headers) {
        return unauthorized();
    }
    Json(json!({"name": "standin-0", "cluster_name": "siembridge-test", "version": {"number": "8.17.0"}, "tagline": "You Know, for Search"}))
        .into_response()
}

impl Elasticsearch {
    /// Start; `auth` lists the accepted `Authorization` values (empty: none needed).
    pub async fn start(auth: &[&str]) -> Elasticsearch {
        let (app, state) = Self::app(auth);
        let url = super::serve(app).await;
        Elasticsearch { url, state }
    }

    /// Start over TLS with the server certificate of `pki`, optionally requiring a client one.
    pub async fn start_tls(auth: &[&str], pki: &super::tls::TestPki, require_client_cert: bool) -> Elasticsearch {
        let (app, state) = Self::app(auth);
        let url = super::tls::serve_tls(app, pki, require_client_cert).await;
        Elasticsearch { url, state }
    }

    fn app(auth: &[&str]) -> (axum::Router, Arc<EsState>) {
        let state = Arc::new(EsState::default());
        *state.accepted_auth.lock().unwrap() = auth.iter().map(|s| s.to_string()).collect();
        let app = axum::Router::new()
            .route("/", get(root))
            .route("/_bulk", post(bulk_default))
            .route("/{target}/_bulk", post(bulk_target))
            .with_state(state.clone());
        (app, state)
    }

    /// Documents stored, by `_id`.
    pub fn ids(&self) -> Vec<String> {
        self.state
            .docs
            .lock()
            .unwrap()
            .keys()
            .map(|(_, id)| id.clone())
            .collect()
    }
}
