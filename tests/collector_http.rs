//! The `http` destination inside a running collector: `Retry-After` is honoured, a permanent
//! 4xx dead-letters the records (with status and body excerpt) without stalling the pipeline.

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime};

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use siembridge::api::{BatchSpec, EventFormat, HttpSpec, RetrySpec, SiemDestinationSpec};
use siembridge::collector::Collector;
use siembridge::config::{CollectorConfig, SecretSource};
use tokio_util::sync::CancellationToken;

mod common;

fn config(dir: &Path, url: &str, records: &Path, max_events: u32) -> CollectorConfig {
    let dest = SiemDestinationSpec {
        http: Some(HttpSpec {
            url: url.to_string(),
            ..Default::default()
        }),
        format: EventFormat::Raw,
        batch: BatchSpec {
            max_events,
            max_bytes: 1024 * 1024,
            max_latency_ms: 20,
        },
        retry: RetrySpec {
            initial_backoff_ms: 10,
            // Also the longest `Retry-After` honoured: above the 2-3 s the receivers ask for.
            max_backoff_ms: 5_000,
            max_attempts: None,
            request_timeout_ms: 5000,
        },
        concurrency: 1,
        ..Default::default()
    };
    common::replay_config(dir, records, "entra", BTreeMap::from([("receiver".to_string(), dest)]))
}

type Handler = Arc<dyn Fn(usize, &[u8]) -> Response + Send + Sync>;

/// One request as received: when (monotonic and wall clock) and its body.
type Received = (Instant, SystemTime, Vec<u8>);

#[derive(Clone)]
struct Receiver {
    requests: Arc<Mutex<Vec<Received>>>,
    headers: Arc<Mutex<Vec<HeaderMap>>>,
    handler: Handler,
}

async fn ingest(State(r): State<Receiver>, h: HeaderMap, body: Bytes) -> Response {
    let n = {
        let mut reqs = r.requests.lock().unwrap();
        reqs.push((Instant::now(), SystemTime::now(), body.to_vec()));
        r.headers.lock().unwrap().push(h);
        reqs.len()
    };
    (r.handler)(n, &body)
}

async fn serve(handler: Handler) -> (String, Receiver) {
    let r = Receiver {
        requests: Arc::default(),
        headers: Arc::default(),
        handler,
    };
    let app = axum::Router::new().route("/ingest", post(ingest)).with_state(r.clone());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    (format!("http://{addr}/ingest"), r)
}

fn write_records(dir: &Path, n: usize, poison: &[usize]) -> std::path::PathBuf {
    let p = dir.join("records.ndjson");
    let mut text = String::new();
    for i in 1..=n {
        text.push_str(&format!(
            "{{\"id\":{i},\"category\":\"SignInLogs\",\"poison\":{}}}\n",
            poison.contains(&i)
        ));
    }
    std::fs::write(&p, text).unwrap();
    p
}

async fn run(config: CollectorConfig) -> siembridge::collector::RunSummary {
    tokio::time::timeout(
        Duration::from_secs(60),
        Collector::new(config).run(CancellationToken::new()),
    )
    .await
    .expect("collector finished")
    .expect("collector ran")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn retry_after_seconds_on_429_is_waited_before_the_next_request() {
    let dir = tempfile::tempdir().unwrap();
    let records = write_records(dir.path(), 3, &[]);
    let (url, r) = serve(Arc::new(|n, _| {
        if n == 1 {
            (StatusCode::TOO_MANY_REQUESTS, [("retry-after", "2")], "slow down").into_response()
        } else {
            StatusCode::OK.into_response()
        }
    }))
    .await;
    let summary = run(config(dir.path(), &url, &records, 10)).await;
    assert!(summary.fully_checkpointed);
    let reqs = r.requests.lock().unwrap();
    assert_eq!(reqs.len(), 2, "one throttled request, one retry");
    let waited = reqs[1].0 - reqs[0].0;
    assert!(
        waited >= Duration::from_secs(2),
        "retried after {waited:?}, before Retry-After elapsed"
    );
    assert_eq!(reqs[1].2, reqs[0].2, "the same batch is sent again");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn retry_after_http_date_on_503_is_waited_before_the_next_request() {
    let dir = tempfile::tempdir().unwrap();
    let records = write_records(dir.path(), 3, &[]);
    let not_before: Arc<Mutex<Option<SystemTime>>> = Arc::default();
    let nb = not_before.clone();
    let (url, r) = serve(Arc::new(move |n, _| {
        if n == 1 {
            // HTTP dates have whole seconds: the retry must not come before this instant.
            let at = SystemTime::now() + Duration::from_secs(3);
            let header = httpdate::fmt_http_date(at);
            let at = httpdate::parse_http_date(&header).unwrap();
            *nb.lock().unwrap() = Some(at);
            (
                StatusCode::SERVICE_UNAVAILABLE,
                [("retry-after", header)],
                "maintenance",
            )
                .into_response()
        } else {
            StatusCode::OK.into_response()
        }
    }))
    .await;
    let summary = run(config(dir.path(), &url, &records, 10)).await;
    assert!(summary.fully_checkpointed);
    let reqs = r.requests.lock().unwrap();
    assert_eq!(reqs.len(), 2);
    let at = not_before.lock().unwrap().unwrap();
    assert!(reqs[1].1 >= at, "retried before the Retry-After date");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn permanent_4xx_dead_letters_the_records_and_the_pipeline_goes_on() {
    let dir = tempfile::tempdir().unwrap();
    let poison = [3usize, 7];
    let records = write_records(dir.path(), 10, &poison);
    let (url, r) = serve(Arc::new(|_, body| {
        if String::from_utf8_lossy(body).contains("\"poison\":true") {
            (StatusCode::BAD_REQUEST, "field poison is not allowed").into_response()
        } else {
            StatusCode::OK.into_response()
        }
    }))
    .await;
    let summary = run(config(dir.path(), &url, &records, 1)).await;
    assert!(
        summary.fully_checkpointed,
        "dead-lettered records count as acknowledged"
    );
    assert!(
        summary.positions["replay"].ends_with("records.ndjson@10"),
        "{summary:?}"
    );

    // Every good record delivered once; each poison record tried once (no retry on 400).
    let reqs = r.requests.lock().unwrap();
    assert_eq!(reqs.len(), 10);

    let dl_dir = dir.path().join("dead-letter");
    let mut lines = Vec::new();
    for f in std::fs::read_dir(&dl_dir).unwrap() {
        let text = std::fs::read_to_string(f.unwrap().path()).unwrap();
        lines.extend(
            text.lines()
                .map(|l| serde_json::from_str::<serde_json::Value>(l).unwrap()),
        );
    }
    let mut ids: Vec<u64> = lines.iter().map(|l| l["record"]["id"].as_u64().unwrap()).collect();
    ids.sort();
    assert_eq!(ids, vec![3, 7]);
    for l in &lines {
        let reason = l["reason"].as_str().unwrap();
        assert!(reason.contains("HTTP 400"), "{reason}");
        assert!(reason.contains("field poison is not allowed"), "{reason}");
        assert_eq!(l["destination"], "receiver");
        assert_eq!(l["logSource"], "entra");
        assert_eq!(l["stage"], "deliver");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn malformed_records_are_dead_lettered_with_the_reason_and_passed() {
    let dir = tempfile::tempdir().unwrap();
    let records = dir.path().join("records.ndjson");
    std::fs::write(&records, "{\"id\":1}\n{\"id\":\n{\"id\":3}\n").unwrap();
    let (url, r) = serve(Arc::new(|_, _| StatusCode::OK.into_response())).await;
    let summary = run(config(dir.path(), &url, &records, 10)).await;
    assert!(summary.fully_checkpointed);
    assert_eq!(r.requests.lock().unwrap().len(), 1);
    let f = std::fs::read_dir(dir.path().join("dead-letter"))
        .unwrap()
        .next()
        .unwrap()
        .unwrap();
    let text = std::fs::read_to_string(f.path()).unwrap();
    let line: serde_json::Value = serde_json::from_str(text.lines().next().unwrap()).unwrap();
    assert_eq!(line["stage"], "decode");
    assert!(line["reason"].as_str().unwrap().starts_with("malformed JSON"));
    // Not JSON: the original bytes, base64-encoded, never re-encoded text.
    assert_eq!(line["recordBase64"], "eyJpZCI6");
    assert!(line.get("record").is_none());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn headers_come_literally_or_from_secrets_and_secrets_are_never_printed() {
    use siembridge::api::{HttpHeader, SecretKeySelector};
    let dir = tempfile::tempdir().unwrap();
    let records = write_records(dir.path(), 2, &[]);
    let (url, r) = serve(Arc::new(|_, _| StatusCode::OK.into_response())).await;
    let mut cfg = config(dir.path(), &url, &records, 10);
    let selector = SecretKeySelector {
        name: "receiver-token-http-test".into(),
        key: "authorization".into(),
    };
    // Only this test reads this variable.
    std::env::set_var(SecretSource::env_var_name(&selector), "Bearer s3cr3t-value");
    let http = cfg.destinations.get_mut("receiver").unwrap().http.as_mut().unwrap();
    http.headers = vec![
        HttpHeader {
            name: "X-Tenant".into(),
            value: Some("contoso".into()),
            value_from: None,
        },
        HttpHeader {
            name: "Authorization".into(),
            value: None,
            value_from: Some(selector),
        },
    ];
    let http_dest = siembridge::collector::destinations::http::HttpDestination::new(
        "receiver",
        cfg.destinations["receiver"].http.as_ref().unwrap(),
        &cfg.destinations["receiver"].retry,
        &SecretSource::Environment,
    )
    .unwrap();
    assert!(!format!("{http_dest:?}").contains("s3cr3t"), "secret leaked in Debug");

    run(cfg).await;
    let headers = r.headers.lock().unwrap();
    assert_eq!(headers[0]["x-tenant"], "contoso");
    assert_eq!(headers[0]["authorization"], "Bearer s3cr3t-value");
    assert_eq!(headers[0]["content-type"], "application/x-ndjson");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn missing_secret_stops_the_collector_with_the_variable_name() {
    use siembridge::api::{HttpHeader, SecretKeySelector};
    let dir = tempfile::tempdir().unwrap();
    let records = write_records(dir.path(), 1, &[]);
    let mut cfg = config(dir.path(), "http://127.0.0.1:9/ingest", &records, 10);
    cfg.destinations
        .get_mut("receiver")
        .unwrap()
        .http
        .as_mut()
        .unwrap()
        .headers = vec![HttpHeader {
        name: "Authorization".into(),
        value: None,
        value_from: Some(SecretKeySelector {
            name: "absent-secret-http-test".into(),
            key: "token".into(),
        }),
    }];
    let err = Collector::new(cfg)
        .run(CancellationToken::new())
        .await
        .unwrap_err()
        .to_string();
    assert!(err.contains("SIEMBRIDGE_SECRET_ABSENT_SECRET_HTTP_TEST_TOKEN"), "{err}");
}
