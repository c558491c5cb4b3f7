//! `sentinel` inside a running collector against the Logs Ingestion API stand-in and the Entra
//! token endpoint stand-in: batches over 1 MB are split, a row alone over it is dead-lettered, a
//! refused token is replaced once, throttling waits for `Retry-After` (a wrong client secret:
//! `destination_credentials.rs`).

use std::collections::BTreeMap;
use std::io::Write;
use std::path::Path;
use std::sync::atomic::Ordering;

use siembridge::api::{BatchSpec, EntraCredentials, EventFormat, SentinelSpec, SiemDestinationSpec};
use siembridge::config::{CollectorConfig, ReportTarget};

mod common;
#[path = "common/siem/mod.rs"]
mod siem;

use common::entra::Entra;
use siem::logs_ingestion::LogsIngestion;

const TENANT: &str = "11111111-2222-3333-4444-555555555555";
const APP: &str = "66666666-7777-8888-9999-aaaaaaaaaaaa";
const DCR: &str = "dcr-00000000000000000000000000000001";
const STREAM: &str = "Custom-SiembridgeEvents";

fn config(dir: &Path, endpoint: &str, authority: &str, secret: &str, records: &Path) -> CollectorConfig {
    let dest = SiemDestinationSpec {
        sentinel: Some(SentinelSpec {
            endpoint: endpoint.to_string(),
            dcr_immutable_id: DCR.into(),
            stream_name: STREAM.into(),
            credentials: EntraCredentials {
                tenant_id: TENANT.into(),
                client_id: APP.into(),
                client_secret: Some(siem::set_secret(&format!("sentinel-{secret}"), "clientSecret", secret)),
                authority_host: Some(authority.to_string()),
                ..Default::default()
            },
        }),
        format: EventFormat::Raw,
        batch: BatchSpec {
            max_events: 1000,
            max_bytes: 8 * 1024 * 1024,
            max_latency_ms: 50,
        },
        retry: siem::fast_retry(),
        concurrency: 2,
        ..Default::default()
    };
    let mut cfg = common::replay_config(dir, records, "entra", BTreeMap::from([("sentinel".to_string(), dest)]));
    cfg.report = Some(ReportTarget::File {
        path: dir.join("report.json").display().to_string(),
    });
    cfg
}

/// `n` records of about 4 KB, and one of 1.1 MB with id n+1.
fn write_large_records(dir: &Path, n: usize) -> std::path::PathBuf {
    let p = dir.join("records.ndjson");
    let mut f = std::fs::File::create(&p).unwrap();
    for i in 1..=n {
        writeln!(
            f,
            "{{\"id\":{i},\"time\":\"2026-01-15T08:00:{:02}Z\",\"category\":\"AuditLogs\",\"properties\":{{\"detail\":\"{}\"}}}}",
            i % 60,
            "d".repeat(4000)
        )
        .unwrap();
    }
    writeln!(
        f,
        "{{\"id\":{},\"time\":\"2026-01-15T08:00:00Z\",\"blob\":\"{}\"}}",
        n + 1,
        "x".repeat(1_010_000) // over the 1 MB row limit, under maxRecordBytes (1 MiB)
    )
    .unwrap();
    p
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn large_batches_are_split_tokens_renewed_throttling_retried_and_every_row_arrives() {
    let dir = tempfile::tempdir().unwrap();
    let n = 600;
    let records = write_large_records(dir.path(), n);
    let secret = "sentinel-client-secret-value-1";
    let entra = Entra::start(TENANT, APP, secret).await;
    let api = LogsIngestion::start(entra.state.clone(), DCR, STREAM).await;
    api.state.revoke_next.store(1, Ordering::SeqCst);
    api.state.fail_next.lock().unwrap().extend([429, 503]);
    let summary = siem::run(config(dir.path(), &api.endpoint, &entra.authority, secret, &records)).await;
    assert!(summary.fully_checkpointed, "{summary:?}");

    let rows = api.state.rows.lock().unwrap().clone();
    let ids: Vec<u64> = rows.iter().filter_map(|r| r["id"].as_u64()).collect();
    let per_id = siem::counts(&ids);
    let dead = siem::dead_letters(dir.path());
    println!(
        "sentinel: {} records, {} rows received, {} distinct, {} requests, largest body {} bytes, {} answered 413, {} tokens issued, {} dead-lettered",
        n + 1,
        ids.len(),
        per_id.len(),
        api.state.requests.load(Ordering::SeqCst),
        api.state.largest.load(Ordering::SeqCst),
        api.state.too_large.load(Ordering::SeqCst),
        entra.state.issued.lock().unwrap().len(),
        dead.len()
    );
    for i in 1..=n as u64 {
        assert!(per_id.contains_key(&i), "record {i} lost");
    }
    assert_eq!(
        api.state.too_large.load(Ordering::SeqCst),
        0,
        "requests stay under 1 MB"
    );
    assert!(api.state.largest.load(Ordering::SeqCst) <= 1_000_000);
    assert!(
        api.state.requests.load(Ordering::SeqCst) >= 3,
        "2.4 MB needs several requests"
    );
    assert_eq!(
        entra.state.issued.lock().unwrap().len(),
        2,
        "one token, renewed once after the 401"
    );
    assert_eq!(dead.len(), 1);
    assert_eq!(dead[0]["record"]["id"], n + 1);
    assert!(dead[0]["reason"].as_str().unwrap().contains("1000000"));
    // Rows carry TimeGenerated from the record's time.
    assert_eq!(
        rows[0]["TimeGenerated"].as_str().unwrap().len(),
        24,
        "{}",
        rows[0]["TimeGenerated"]
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_refused_token_is_renewed_once_and_retry_after_is_waited() {
    let dir = tempfile::tempdir().unwrap();
    let records = siem::write_records(dir.path(), 20, &[]);
    let secret = "sentinel-client-secret-value-2";
    let entra = Entra::start(TENANT, APP, secret).await;
    let api = LogsIngestion::start(entra.state.clone(), DCR, STREAM).await;
    api.state.revoke_next.store(1, Ordering::SeqCst);
    api.state.fail_next.lock().unwrap().push_back(429);
    let mut cfg = config(dir.path(), &api.endpoint, &entra.authority, secret, &records);
    cfg.destinations.get_mut("sentinel").unwrap().concurrency = 1;
    // `Retry-After` is honoured up to `maxBackoffMs`: above the 1 s the stand-in asks for.
    cfg.destinations.get_mut("sentinel").unwrap().retry.max_backoff_ms = 5_000;
    let started = std::time::Instant::now();
    let summary = siem::run(cfg).await;
    let took = started.elapsed();
    assert!(summary.fully_checkpointed);
    // 401 -> new token -> 429 with `Retry-After: 1` -> wait -> 204.
    assert!(
        took >= std::time::Duration::from_secs(1),
        "Retry-After not waited: {took:?}"
    );
    assert_eq!(entra.state.issued.lock().unwrap().len(), 2);
    let rows = api.state.rows.lock().unwrap().len();
    println!(
        "sentinel token renewal: 20 records, {rows} rows, {} requests in {took:?}",
        api.state.requests.load(Ordering::SeqCst)
    );
    assert_eq!(rows, 20);
}
