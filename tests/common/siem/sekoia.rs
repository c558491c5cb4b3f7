//! Sekoia.io HTTP intake stand-in (docs/PROTOCOLS.md 7.5): `POST /jsons` (JSON array of events,
//! strings or objects), `/batch` (`{"intake_key","jsons":[...]}`) and `/plain/batch` (lines),
//! the intake key from `X-SEKOIAIO-INTAKE-KEY`, HTTP Basic password or `?intake_key=`, replies
//! `{"event_ids":[...]}`; unknown key 401, payload over 10 MiB 413, injected 429 (with
//! `Retry-After`) and 500, a request with an event carrying `"poison":true` refused whole with
//! 400 (the code Sekoia gives a malformed request is unconfirmed). Events over 250 000 bytes are
//! counted: a client must never send one.

use std::collections::{HashMap, VecDeque};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use axum::body::Bytes;
use axum::extract::{Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use axum::Json;
use serde_json::{json, Value};

/// State shared with the test.
#[derive(Default)]
pub struct SekoiaState {
    /// Known intake keys.
    pub keys: Mutex<Vec<String>>,
    /// Accepted events per intake key, as the text Sekoia parses.
    pub events: Mutex<HashMap<String, Vec<String>>>,
    /// Statuses to answer next (429, 500...).
    pub fail_next: Mutex<VecDeque<u16>>,
    /// Requests received.
    pub requests: AtomicUsize,
    /// Events over 250 000 bytes received (should stay 0).
    pub oversized: AtomicUsize,
    /// Every intake key presented.
    pub presented: Mutex<Vec<String>>,
    /// Requests refused with 400 for a poison event.
    pub poison_refusals: AtomicUsize,
}

/// A running intake.
pub struct Sekoia {
    /// `http://127.0.0.1:PORT`.
    pub url: String,
    pub state: Arc<SekoiaState>,
}

const MAX_PAYLOAD: usize = 10_485_760;

fn key_of(headers: &HeaderMap, query: &HashMap<String, String>) -> Option<String> {
    use base64::Engine;
    if let Some(k) = headers.get("x-sekoiaio-intake-key").and_then(|v| v.to_str().ok()) {
        return Some(k.to_string());
    }
    if let Some(basic) = headers
        .get("authorization")
        .and_then(|v| v.to_str().ok())
        .and_then(|a| a.strip_prefix("Basic "))
    {
        let decoded = base64::engine::general_purpose::STANDARD.decode(basic).ok()?;
        let text = String::from_utf8(decoded).ok()?;
        return text.split_once(':').map(|(_, p)| p.to_string());
    }
    query.get("intake_key").cloned()
}

fn accept(state: &SekoiaState, key: Option<String>, events: Vec<String>) -> Response {
    let Some(key) = key else {
        return (StatusCode::UNAUTHORIZED, Json(json!({"message": "missing intake key"}))).into_response();
    };
    state.presented.lock().unwrap().push(key.clone());
    if !state.keys.lock().unwrap().contains(&key) {
        return (StatusCode::UNAUTHORIZED, Json(json!({"message": "unknown intake key"}))).into_response();
    }
    if events.iter().any(|e| e.contains("\"poison\":true")) {
        state.poison_refusals.fetch_add(1, Ordering::SeqCst);
        return (
            StatusCode::BAD_REQUEST,
            Json(json!({"message": "event rejected: invalid field poison"})),
        )
            .into_response();
    }
    for e in &events {
        if e.len() > 250_000 {
            state.oversized.fetch_add(1, Ordering::SeqCst);
        }
    }
    let ids: Vec<String> = (0..events.len())
        .map(|i| {
            format!(
                "aaaaaaaa-0000-4000-8000-{:012}",
                state.requests.load(Ordering::SeqCst) * 100_000 + i
            )
        })
        .collect();
    state.events.lock().unwrap().entry(key).or_default().extend(events);
    Json(json!({ "event_ids": ids })).into_response()
}

fn precheck(state: &SekoiaState, body: &[u8]) -> Option<Response> {
    state.requests.fetch_add(1, Ordering::SeqCst);
    if let Some(status) = state.fail_next.lock().unwrap().pop_front() {
        let status = StatusCode::from_u16(status).unwrap();
        return Some(if status == StatusCode::TOO_MANY_REQUESTS {
            (
                status,
                [("retry-after", "1")],
                Json(json!({"message": "Too Many Requests"})),
            )
                .into_response()
        } else {
            (status, Json(json!({"message": "Internal Server Error"}))).into_response()
        });
    }
    if body.len() > MAX_PAYLOAD {
        return Some(
            (
                StatusCode::PAYLOAD_TOO_LARGE,
                Json(json!({"message": "Payload Too Large"})),
            )
                .into_response(),
        );
    }
    None
}

fn as_text(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

async fn jsons(
    State(state): State<Arc<SekoiaState>>,
    Query(query): Query<HashMap<String, String>>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    if let Some(r) = precheck(&state, &body) {
        return r;
    }
    let Ok(Value::Array(items)) = serde_json::from_slice::<Value>(&body) else {
        return (
            StatusCode::BAD_REQUEST,
            Json(json!({"message": "a JSON array is expected"})),
        )
            .into_response();
    };
    accept(&state, key_of(&headers, &query), items.iter().map(as_text).collect())
}

async fn batch(State(state): State<Arc<SekoiaState>>, body: Bytes) -> Response {
    if let Some(r) = precheck(&state, &body) {
        return r;
    }
    let Ok(v) = serde_json::from_slice::<Value>(&body) else {
        return (StatusCode::BAD_REQUEST, Json(json!({"message": "invalid JSON"}))).into_response();
    };
    let events = v["jsons"]
        .as_array()
        .map(|a| a.iter().map(as_text).collect())
        .unwrap_or_default();
    accept(&state, v["intake_key"].as_str().map(str::to_string), events)
}

async fn plain_batch(
    State(state): State<Arc<SekoiaState>>,
    Query(query): Query<HashMap<String, String>>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    if let Some(r) = precheck(&state, &body) {
        return r;
    }
    let text = String::from_utf8_lossy(&body);
    let events = text.lines().filter(|l| !l.is_empty()).map(str::to_string).collect();
    accept(&state, key_of(&headers, &query), events)
}

impl Sekoia {
    /// Start with one known intake key.
    pub async fn start(key: &str) -> Sekoia {
        let state = Arc::new(SekoiaState::default());
        state.keys.lock().unwrap().push(key.to_string());
        let app = axum::Router::new()
            .route("/jsons", post(jsons))
            .route("/batch", post(batch))
            .route("/plain/batch", post(plain_batch))
            .layer(axum::extract::DefaultBodyLimit::max(64 * 1024 * 1024))
            .with_state(state.clone());
        let url = super::serve(app).await;
        Sekoia { url, state }
    }

    /// Accepted events of `key`, parsed.
    pub fn events(&self, key: &str) -> Vec<Value> {
        self.state
            .events
            .lock()
            .unwrap()
            .get(key)
            .map(|v| v.iter().filter_map(|e| serde_json::from_str(e).ok()).collect())
            .unwrap_or_default()
    }
}
