//! Azure Monitor Logs Ingestion API stand-in (docs/PROTOCOLS.md 7.6): `POST
//! /dataCollectionRules/{dcr}/streams/{stream}?api-version=2023-01-01` with a (gzip) JSON array,
//! bearer tokens checked against the Entra stand-in for the Azure Monitor scope, 204 on success,
//! 400 (not an array, missing api-version, a row with `"poison":true`: the request is refused
//! whole, as the service refuses a body that does not match the stream), 401 (token), 403 (the
//! app lacks *Monitoring Metrics Publisher*: `forbidden`), 404 (DCR or stream), 413 (over 1 MB),
//! injected 429 with `Retry-After` and 503.

use std::collections::HashSet;
use std::collections::VecDeque;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use axum::body::Bytes;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use axum::Json;
use serde_json::{json, Value};

use crate::common::entra::EntraState;

/// The scope tokens must have been issued for.
pub const MONITOR_SCOPE: &str = "https://monitor.azure.com/.default";
/// Largest request, bytes.
pub const MAX_BYTES: usize = 1024 * 1024;

/// State shared with the test.
pub struct IngestionState {
    pub entra: Arc<EntraState>,
    pub dcr: String,
    pub stream: String,
    /// Rows accepted.
    pub rows: Mutex<Vec<Value>>,
    /// Statuses to answer next (429, 503...).
    pub fail_next: Mutex<VecDeque<u16>>,
    /// Refuse this many requests with 401 although their token is valid (a revoked token).
    pub revoke_next: AtomicUsize,
    /// Tokens refused since they were revoked.
    pub revoked: Mutex<HashSet<String>>,
    /// Answer 403: the app has no role on the DCR.
    pub forbidden: AtomicBool,
    /// Requests refused with 400 for a poison row.
    pub poison_refusals: AtomicUsize,
    /// Requests received; 413s answered; largest body seen (decompressed).
    pub requests: AtomicUsize,
    pub too_large: AtomicUsize,
    pub largest: AtomicUsize,
}

/// A running Logs Ingestion endpoint (a DCE).
pub struct LogsIngestion {
    /// `http://127.0.0.1:PORT`, the endpoint to configure.
    pub endpoint: String,
    pub state: Arc<IngestionState>,
}

fn error(status: StatusCode, code: &str, message: &str) -> Response {
    (status, Json(json!({"error": {"code": code, "message": message}}))).into_response()
}

async fn ingest(
    State(state): State<Arc<IngestionState>>,
    Path((dcr, stream)): Path<(String, String)>,
    Query(query): Query<std::collections::HashMap<String, String>>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    state.requests.fetch_add(1, Ordering::SeqCst);
    if query.get("api-version").map(String::as_str) != Some("2023-01-01") {
        return error(
            StatusCode::BAD_REQUEST,
            "InvalidApiVersion",
            "api-version 2023-01-01 is required",
        );
    }
    let token = headers
        .get("authorization")
        .and_then(|v| v.to_str().ok())
        .and_then(|a| a.strip_prefix("Bearer "))
        .unwrap_or_default()
        .to_string();
    if !state.entra.valid(&token, MONITOR_SCOPE) || state.revoked.lock().unwrap().contains(&token) {
        return error(
            StatusCode::UNAUTHORIZED,
            "InvalidToken",
            "The provided token is not valid for this resource.",
        );
    }
    if super::take(&state.revoke_next) {
        state.revoked.lock().unwrap().insert(token);
        return error(
            StatusCode::UNAUTHORIZED,
            "InvalidToken",
            "The access token has expired.",
        );
    }
    if state.forbidden.load(Ordering::SeqCst) {
        return error(
            StatusCode::FORBIDDEN,
            "Forbidden",
            "The authentication token provided does not have access to ingest data for the data collection rule.",
        );
    }
    if dcr != state.dcr {
        return error(StatusCode::NOT_FOUND, "NotFound", "Data collection rule not found.");
    }
    if stream != state.stream {
        return error(
            StatusCode::NOT_FOUND,
            "InvalidStream",
            "Stream is not declared in the data collection rule.",
        );
    }
    if let Some(status) = state.fail_next.lock().unwrap().pop_front() {
        let status = StatusCode::from_u16(status).unwrap();
        return if status == StatusCode::TOO_MANY_REQUESTS {
            (
                status,
                [("retry-after", "1")],
                Json(json!({"error": {"code": "TooManyRequests", "message": "Rate limit exceeded."}})),
            )
                .into_response()
        } else {
            error(status, "ServiceUnavailable", "The service is unavailable.")
        };
    }
    let decoded = match super::decoded_body(&headers, &body) {
        Ok(b) => b,
        Err(e) => return error(StatusCode::BAD_REQUEST, "InvalidContentEncoding", &e),
    };
    state.largest.fetch_max(decoded.len(), Ordering::SeqCst);
    if body.len() > MAX_BYTES || decoded.len() > MAX_BYTES {
        state.too_large.fetch_add(1, Ordering::SeqCst);
        return error(
            StatusCode::PAYLOAD_TOO_LARGE,
            "ContentLengthLimitExceeded",
            "Maximum allowed content length: 1048576 bytes.",
        );
    }
    let Ok(Value::Array(rows)) = serde_json::from_slice::<Value>(&decoded) else {
        return error(
            StatusCode::BAD_REQUEST,
            "InvalidContent",
            "The request body must be a JSON array.",
        );
    };
    if rows.iter().any(|r| r["poison"] == Value::Bool(true)) {
        state.poison_refusals.fetch_add(1, Ordering::SeqCst);
        return error(
            StatusCode::BAD_REQUEST,
            "InvalidContent",
            "Column 'poison' of type bool does not match the stream declaration (long).",
        );
    }
    state.rows.lock().unwrap().extend(rows);
    StatusCode::NO_CONTENT.into_response()
}

impl LogsIngestion {
    /// Start an endpoint for one DCR stream, trusting tokens of `entra`.
    pub async fn start(entra: Arc<EntraState>, dcr: &str, stream: &str) -> LogsIngestion {
        let state = Arc::new(IngestionState {
            entra,
            dcr: dcr.to_string(),
            stream: stream.to_string(),
            rows: Mutex::default(),
            fail_next: Mutex::default(),
            revoke_next: AtomicUsize::new(0),
            revoked: Mutex::default(),
            forbidden: AtomicBool::new(false),
            poison_refusals: AtomicUsize::new(0),
            requests: AtomicUsize::new(0),
            too_large: AtomicUsize::new(0),
            largest: AtomicUsize::new(0),
        });
        let app = axum::Router::new()
            .route("/dataCollectionRules/{dcr}/streams/{stream}", post(ingest))
            .layer(axum::extract::DefaultBodyLimit::max(16 * 1024 * 1024))
            .with_state(state.clone());
        let endpoint = super::serve(app).await;
        LogsIngestion { endpoint, state }
    }
}
