//! Stand-ins of the SIEM receivers that exist only as services (docs/PROTOCOLS.md section 0): Splunk
//! HEC, Elasticsearch `_bulk`, the Sekoia.io intake and the Azure Monitor Logs Ingestion API.
//! Each speaks the real wire protocol, keeps what it accepted so a test can count deliveries and
//! duplicates, and reproduces the documented errors on demand. Test code only.
#![allow(dead_code)]

pub mod elasticsearch;
pub mod hec;
pub mod logs_ingestion;
pub mod sekoia;
pub mod tls;

use std::io::Read;

use axum::http::HeaderMap;

/// Serve `app` on 127.0.0.1 (ephemeral port); returns `http://127.0.0.1:PORT`.
pub async fn serve(app: axum::Router) -> String {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    url
}

/// The request body, gunzipped when `Content-Encoding: gzip` says so.
pub fn decoded_body(headers: &HeaderMap, body: &[u8]) -> Result<Vec<u8>, String> {
    let gz = headers
        .get("content-encoding")
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.eq_ignore_ascii_case("gzip"));
    if !gz {
        return Ok(body.to_vec());
    }
    let mut out = Vec::new();
    flate2::read::GzDecoder::new(body)
        .read_to_end(&mut out)
        .map_err(|e| format!("bad gzip body: {e}"))?;
    Ok(out)
}

/// Take one from a countdown of injected failures.
pub fn take(counter: &std::sync::atomic::AtomicUsize) -> bool {
    counter
        .fetch_update(
            std::sync::atomic::Ordering::SeqCst,
            std::sync::atomic::Ordering::SeqCst,
            |n| n.checked_sub(1),
        )
        .is_ok()
}

/// `n` raw sign-in records with ids 1..=n, one a line; those in `poison` carry `"poison":true`,
/// which every stand-in refuses as its receiver refuses a malformed document.
pub fn write_records(dir: &std::path::Path, n: usize, poison: &[usize]) -> std::path::PathBuf {
    let p = dir.join("records.ndjson");
    let mut text = String::new();
    for i in 1..=n {
        text.push_str(&format!(
            "{{\"id\":{i},\"time\":\"2026-01-15T08:{:02}:{:02}.123Z\",\"category\":\"SignInLogs\",\"poison\":{},\"properties\":{{\"userPrincipalName\":\"user{i}@contoso.example\",\"ipAddress\":\"198.51.100.{}\"}}}}\n",
            i / 60 % 60,
            i % 60,
            poison.contains(&i),
            i % 250
        ));
    }
    std::fs::write(&p, text).unwrap();
    p
}

/// Every dead-letter entry written under `dir/dead-letter`.
pub fn dead_letters(dir: &std::path::Path) -> Vec<serde_json::Value> {
    let mut lines = Vec::new();
    let Ok(entries) = std::fs::read_dir(dir.join("dead-letter")) else {
        return lines;
    };
    for f in entries {
        let text = std::fs::read_to_string(f.unwrap().path()).unwrap();
        lines.extend(
            text.lines()
                .map(|l| serde_json::from_str::<serde_json::Value>(l).unwrap()),
        );
    }
    lines
}

/// The record ids (`id` field) of dead-lettered records, sorted.
pub fn dead_lettered_ids(dir: &std::path::Path) -> Vec<u64> {
    let mut ids: Vec<u64> = dead_letters(dir)
        .iter()
        .filter_map(|l| l["record"]["id"].as_u64())
        .collect();
    ids.sort();
    ids
}

/// Run a collector to the end of its replay source (at most 60 s).
pub async fn run(config: siembridge::config::CollectorConfig) -> siembridge::collector::RunSummary {
    tokio::time::timeout(
        std::time::Duration::from_secs(60),
        siembridge::collector::Collector::new(config).run(tokio_util::sync::CancellationToken::new()),
    )
    .await
    .expect("collector finished within 60 s")
    .expect("collector ran")
}

/// Quick retries for tests.
pub fn fast_retry() -> siembridge::api::RetrySpec {
    siembridge::api::RetrySpec {
        initial_backoff_ms: 10,
        max_backoff_ms: 100,
        max_attempts: None,
        request_timeout_ms: 3000,
    }
}

/// Put a secret where `SecretSource::Environment` reads it.
pub fn set_secret(name: &str, key: &str, value: &str) -> siembridge::api::SecretKeySelector {
    let sel = siembridge::api::SecretKeySelector {
        name: name.into(),
        key: key.into(),
    };
    std::env::set_var(siembridge::config::SecretSource::env_var_name(&sel), value);
    sel
}

/// Count how often each value occurs.
pub fn counts<T: Ord + Clone>(items: &[T]) -> std::collections::BTreeMap<T, usize> {
    let mut m = std::collections::BTreeMap::new();
    for i in items {
        *m.entry(i.clone()).or_insert(0) += 1;
    }
    m
}
