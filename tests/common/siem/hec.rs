//! Splunk HTTP Event Collector stand-in (docs/PROTOCOLS.md 7.1): `/services/collector/event` with
//! concatenated JSON envelopes, tokens (enabled, allowed indexes, indexer acknowledgement),
//! per-channel ack ids polled on `/services/collector/ack`, `/services/collector/health`, and
//! the documented error codes: 1-4 tokens, 5/6 with `invalid-event-number`, 7 index, 9 busy,
//! 10/11 channel, 12/13 event field, 14 ack disabled.

use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use axum::body::Bytes;
use axum::extract::{Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::Json;
use serde_json::{json, Value};

/// A HEC token's settings.
#[derive(Clone, Debug)]
pub struct HecToken {
    pub enabled: bool,
    pub use_ack: bool,
    /// Indexes the token may write; empty: any.
    pub indexes: Vec<String>,
}

/// An ack id of a channel: how many polls it has seen and whether it will ever be acknowledged.
#[derive(Debug, Default)]
struct PendingAck {
    polls: usize,
    never: bool,
}

/// A channel's next ack id and its pending ids.
type Channel = (u64, BTreeMap<u64, PendingAck>);

/// State shared with the test.
#[derive(Default)]
pub struct HecState {
    pub tokens: Mutex<HashMap<String, HecToken>>,
    /// Indexed envelopes, in order.
    pub indexed: Mutex<Vec<Value>>,
    /// Answer this many event requests with 503 code 9 (server busy).
    pub busy_next: AtomicUsize,
    /// Never acknowledge the ack id of this many accepted requests (a lost ack).
    pub lose_ack_next: AtomicUsize,
    /// Polls an ack id needs before it reads `true`.
    pub ack_after_polls: AtomicUsize,
    /// Answer health with 503 code 18.
    pub unhealthy: AtomicBool,
    /// Requests to `/services/collector/event`.
    pub event_requests: AtomicUsize,
    /// Requests to `/services/collector/ack`.
    pub ack_requests: AtomicUsize,
    /// channel -> next ack id and pending ids.
    channels: Mutex<HashMap<String, Channel>>,
    /// Every `Authorization` header value received (tests check which tokens came).
    pub authorizations: Mutex<Vec<String>>,
}

impl HecState {
    /// The `siembridge_id` of each indexed envelope.
    pub fn ids(&self) -> Vec<String> {
        self.indexed
            .lock()
            .unwrap()
            .iter()
            .filter_map(|e| e["fields"]["siembridge_id"].as_str().map(str::to_string))
            .collect()
    }
}

/// A running HEC stand-in.
pub struct Hec {
    /// `http://127.0.0.1:PORT`.
    pub url: String,
    pub state: Arc<HecState>,
}

fn hec(status: StatusCode, code: u64, text: &str) -> Response {
    (status, Json(json!({"text": text, "code": code}))).into_response()
}

fn with_number(status: StatusCode, code: u64, text: &str, n: usize) -> Response {
    (
        status,
        Json(json!({"text": text, "code": code, "invalid-event-number": n})),
    )
        .into_response()
}

fn is_guid(s: &str) -> bool {
    let parts: Vec<&str> = s.split('-').collect();
    parts.len() == 5
        && [8, 4, 4, 4, 12]
            .iter()
            .zip(&parts)
            .all(|(n, p)| p.len() == *n && p.chars().all(|c| c.is_ascii_hexdigit()))
}

/// The token of a request, or the HEC error for it.
fn authorize(state: &HecState, headers: &HeaderMap) -> Result<HecToken, Box<Response>> {
    let Some(auth) = headers.get("authorization").and_then(|v| v.to_str().ok()) else {
        return Err(Box::new(hec(StatusCode::UNAUTHORIZED, 2, "Token is required")));
    };
    state.authorizations.lock().unwrap().push(auth.to_string());
    let Some(token) = auth.strip_prefix("Splunk ") else {
        return Err(Box::new(hec(StatusCode::UNAUTHORIZED, 3, "Invalid authorization")));
    };
    match state.tokens.lock().unwrap().get(token) {
        None => Err(Box::new(hec(StatusCode::FORBIDDEN, 4, "Invalid token"))),
        Some(t) if !t.enabled => Err(Box::new(hec(StatusCode::FORBIDDEN, 1, "Token disabled"))),
        Some(t) => Ok(t.clone()),
    }
}

fn channel_of(headers: &HeaderMap, query: &HashMap<String, String>) -> Option<String> {
    headers
        .get("x-splunk-request-channel")
        .and_then(|v| v.to_str().ok())
        .map(str::to_string)
        .or_else(|| query.get("channel").cloned())
}

async fn event(
    State(state): State<Arc<HecState>>,
    Query(query): Query<HashMap<String, String>>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    state.event_requests.fetch_add(1, Ordering::SeqCst);
    let token = match authorize(&state, &headers) {
        Ok(t) => t,
        Err(r) => return *r,
    };
    let channel = channel_of(&headers, &query);
    if token.use_ack {
        match &channel {
            None => return hec(StatusCode::BAD_REQUEST, 10, "Data channel is missing"),
            Some(c) if !is_guid(c) => return hec(StatusCode::BAD_REQUEST, 11, "Invalid data channel"),
            Some(_) => {}
        }
    }
    if super::take(&state.busy_next) {
        return hec(StatusCode::SERVICE_UNAVAILABLE, 9, "Server is busy");
    }
    let body = match super::decoded_body(&headers, &body) {
        Ok(b) => b,
        Err(_) => return hec(StatusCode::BAD_REQUEST, 6, "Invalid data format"),
    };
    // Concatenated envelopes; events before an invalid one are indexed, as HEC does.
    let mut accepted = Vec::new();
    let mut failure = None;
    for (n, item) in serde_json::Deserializer::from_slice(&body)
        .into_iter::<Value>()
        .enumerate()
    {
        let envelope = match item {
            Ok(v) if v.is_object() => v,
            _ => {
                failure = Some(with_number(StatusCode::BAD_REQUEST, 6, "Invalid data format", n));
                break;
            }
        };
        match envelope.get("event") {
            None => {
                failure = Some(with_number(StatusCode::BAD_REQUEST, 12, "Event field is required", n));
                break;
            }
            Some(Value::String(s)) if s.is_empty() => {
                failure = Some(with_number(
                    StatusCode::BAD_REQUEST,
                    13,
                    "Event field cannot be blank",
                    n,
                ));
                break;
            }
            Some(e) if e.to_string().contains("\"poison\":true") => {
                failure = Some(with_number(StatusCode::BAD_REQUEST, 6, "Invalid data format", n));
                break;
            }
            Some(_) => {}
        }
        if let Some(index) = envelope.get("index").and_then(Value::as_str) {
            if !token.indexes.is_empty() && !token.indexes.iter().any(|i| i == index) {
                failure = Some(hec(StatusCode::BAD_REQUEST, 7, "Incorrect index"));
                break;
            }
        }
        accepted.push(envelope);
    }
    if accepted.is_empty() && failure.is_none() {
        return hec(StatusCode::BAD_REQUEST, 5, "No data");
    }
    state.indexed.lock().unwrap().extend(accepted);
    if let Some(f) = failure {
        return f;
    }
    if token.use_ack {
        let channel = channel.unwrap_or_default();
        let never = super::take(&state.lose_ack_next);
        let mut channels = state.channels.lock().unwrap();
        let (next, pending) = channels.entry(channel).or_default();
        let id = *next;
        *next += 1;
        pending.insert(id, PendingAck { polls: 0, never });
        return Json(json!({"text": "Success", "code": 0, "ackId": id})).into_response();
    }
    Json(json!({"text": "Success", "code": 0})).into_response()
}

async fn ack(
    State(state): State<Arc<HecState>>,
    Query(query): Query<HashMap<String, String>>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    state.ack_requests.fetch_add(1, Ordering::SeqCst);
    let token = match authorize(&state, &headers) {
        Ok(t) => t,
        Err(r) => return *r,
    };
    if !token.use_ack {
        return hec(StatusCode::BAD_REQUEST, 14, "ACK is disabled");
    }
    let Some(channel) = channel_of(&headers, &query) else {
        return hec(StatusCode::BAD_REQUEST, 10, "Data channel is missing");
    };
    let Ok(request) = serde_json::from_slice::<Value>(&body) else {
        return hec(StatusCode::BAD_REQUEST, 6, "Invalid data format");
    };
    let needed = state.ack_after_polls.load(Ordering::SeqCst);
    let mut channels = state.channels.lock().unwrap();
    let Some((_, pending)) = channels.get_mut(&channel) else {
        return hec(StatusCode::BAD_REQUEST, 11, "Invalid data channel");
    };
    let mut acks = serde_json::Map::new();
    for id in request["acks"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(Value::as_u64)
    {
        let done = match pending.get_mut(&id) {
            Some(p) => {
                p.polls += 1;
                !p.never && p.polls >= needed
            }
            None => false,
        };
        if done {
            pending.remove(&id);
        }
        acks.insert(id.to_string(), Value::Bool(done));
    }
    Json(json!({ "acks": acks })).into_response()
}

async fn health(State(state): State<Arc<HecState>>) -> Response {
    if state.unhealthy.load(Ordering::SeqCst) {
        hec(StatusCode::SERVICE_UNAVAILABLE, 18, "HEC is unhealthy, queues are full")
    } else {
        hec(StatusCode::OK, 17, "HEC is healthy")
    }
}

impl Hec {
    /// Start with one token.
    pub async fn start(token: &str, use_ack: bool) -> Hec {
        let (app, state) = Self::app(token, use_ack);
        let url = super::serve(app).await;
        Hec { url, state }
    }

    /// Start over TLS with the server certificate of `pki`, optionally requiring a client one.
    pub async fn start_tls(token: &str, pki: &super::tls::TestPki, require_client_cert: bool) -> Hec {
        let (app, state) = Self::app(token, false);
        let url = super::tls::serve_tls(app, pki, require_client_cert).await;
        Hec { url, state }
    }

    fn app(token: &str, use_ack: bool) -> (axum::Router, Arc<HecState>) {
        let state = Arc::new(HecState::default());
        state.tokens.lock().unwrap().insert(
            token.to_string(),
            HecToken {
                enabled: true,
                use_ack,
                indexes: Vec::new(),
            },
        );
        state.ack_after_polls.store(1, Ordering::SeqCst);
        let app = axum::Router::new()
            .route("/services/collector/event", post(event))
            .route("/services/collector", post(event))
            .route("/services/collector/ack", post(ack))
            .route("/services/collector/health", get(health))
            .with_state(state.clone());
        (app, state)
    }
}
