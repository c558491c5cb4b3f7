//! Throughput of the `azureBlob` source reading diagnostic-settings archives from Azurite (npm
//! `azurite@3.37.0`, in memory) inside a running collector (plain binary, `cargo bench --bench
//! blob_source`): records/s and MB/s, per core of collector CPU time, and peak RSS, as a ratio
//! to plain `serde_json` parse + serialize of the same records in the same run.
//!
//! The records (Entra sign-ins, ~1.2 KB each) are written as hourly append blobs of 4
//! categories; the collector backfills them (`from` / `to`) into a raw file destination and the
//! clock stops when the file holds every byte. CPU time is this process's (`/proc/self/stat`:
//! the collector runs in it; Azurite is another process), so "per core" is records per CPU
//! second. `BENCH_EVENTS` sets the record count (default 100000; 2000 when `cargo test
//! --all-targets` runs it as a smoke test). Azurite missing: skipped (outside CI).

#[path = "../tests/common/azurite.rs"]
mod azurite;

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use bytes::Bytes;
use chrono::{DurationRound, TimeDelta, Utc};
use siembridge::api::{
    BatchSpec, BlobCredentials, BlobSource, EventFormat, FileSpec, PollingSpec, SecretKeySelector, SiemDestinationSpec,
};
use siembridge::collector::azure_blob::BlobService;
use siembridge::collector::secrets::SecretValue;
use siembridge::config::{
    CheckpointConfig, CollectorConfig, DeadLetterConfig, Route, SecretSource, SourceConfig, TelemetryConfig,
    CONFIG_VERSION,
};
use tokio_util::sync::CancellationToken;

const TENANT: &str = "11111111-2222-3333-4444-555555555555";
const CATEGORIES: [&str; 4] = [
    "SignInLogs",
    "NonInteractiveUserSignInLogs",
    "AuditLogs",
    "ServicePrincipalSignInLogs",
];

fn signin(i: usize, category: &str) -> String {
    serde_json::json!({
        "time": format!("2026-01-15T{:02}:{:02}:{:02}.{:07}Z", i / 3600 % 24, i / 60 % 60, i % 60, i % 9_999_999),
        "resourceId": format!("/tenants/{TENANT}/providers/Microsoft.aadiam"),
        "operationName": "Sign-in activity", "category": category,
        "tenantId": TENANT, "resultType": if i.is_multiple_of(7) { "50126" } else { "0" },
        "callerIpAddress": format!("198.51.100.{}", i % 250),
        "correlationId": format!("aaaaaaaa-2222-4222-8222-{i:012}"),
        "properties": {
            "id": format!("aaaaaaaa-3333-4333-8333-{i:012}"),
            "createdDateTime": format!("2026-01-15T08:{:02}:{:02}+00:00", i / 60 % 60, i % 60),
            "userDisplayName": format!("User {}", i % 1000),
            "userPrincipalName": format!("user{}@contoso.example", i % 1000),
            "userId": format!("cccccccc-0000-4000-8000-{:012}", i % 1000),
            "appId": "bbbbbbbb-0000-0000-0000-000000000002", "appDisplayName": "Microsoft Teams",
            "ipAddress": format!("198.51.100.{}", i % 250), "clientAppUsed": "Mobile Apps and Desktop clients",
            "status": {"errorCode": if i.is_multiple_of(7) { 50126 } else { 0 }, "failureReason": "Other."},
            "deviceDetail": {"operatingSystem": "Windows10", "browser": "Edge 120.0.0", "isCompliant": false},
            "location": {"city": "Paris", "countryOrRegion": "FR", "geoCoordinates": {"latitude": 48.85, "longitude": 2.35}},
            "conditionalAccessStatus": "notApplied", "riskLevelDuringSignIn": "none",
            "authenticationRequirement": "singleFactorAuthentication",
        }
    })
    .to_string()
}

/// User + system CPU seconds of this process.
fn cpu_seconds() -> f64 {
    let stat = std::fs::read_to_string("/proc/self/stat").unwrap_or_default();
    // Fields after the `(comm)`: state is field 3; utime and stime are fields 14 and 15.
    let rest = stat.rsplit_once(')').map(|(_, r)| r).unwrap_or("");
    let f: Vec<&str> = rest.split_whitespace().collect();
    let ticks = |i: usize| f.get(i).and_then(|v| v.parse::<f64>().ok()).unwrap_or(0.0);
    (ticks(11) + ticks(12)) / 100.0
}

/// Peak resident set size (`VmHWM`), MB.
fn peak_rss_mb() -> f64 {
    std::fs::read_to_string("/proc/self/status")
        .unwrap_or_default()
        .lines()
        .find(|l| l.starts_with("VmHWM:"))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|kb| kb.parse::<f64>().ok())
        .map_or(0.0, |kb| kb / 1024.0)
}

fn main() {
    siembridge::tls::install_crypto_provider();
    let n: usize = std::env::var("BENCH_EVENTS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(if std::env::args().any(|a| a == "--bench") {
            100_000
        } else {
            2_000
        });
    let Some(az) = azurite::start() else { return };
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime");
    rt.block_on(run(&az, n));
}

async fn run(az: &azurite::Azurite, n: usize) {
    let svc = BlobService::from_connection_string(&SecretValue::new(az.connection_string()), None).expect("client");
    let hours = 6usize;
    let from = (Utc::now() - TimeDelta::hours(hours as i64 + 3))
        .duration_trunc(TimeDelta::hours(1))
        .expect("hour");
    let to = from + TimeDelta::hours(hours as i64);
    let mut records = Vec::with_capacity(n);
    let mut blobs: BTreeMap<(usize, usize), String> = BTreeMap::new();
    for i in 0..n {
        let c = i % CATEGORIES.len();
        let h = (i / CATEGORIES.len()) % hours;
        let r = signin(i, CATEGORIES[c]);
        let text = blobs.entry((c, h)).or_default();
        text.push_str(&r);
        text.push('\n');
        records.push(r);
    }
    let bytes: usize = records.iter().map(|r| r.len() + 1).sum();
    let mut containers = Vec::new();
    for (c, cat) in CATEGORIES.iter().enumerate() {
        let container = format!("insights-logs-{}", cat.to_ascii_lowercase());
        svc.create_container(&container).await.expect("container");
        for h in 0..hours {
            let hour = from + TimeDelta::hours(h as i64);
            let name = format!(
                "tenantId={TENANT}/y={}m=00/PT1H.json",
                hour.format("%Y/m=%m/d=%d/h=%H/")
            );
            svc.create_append_blob(&container, &name, "application/json")
                .await
                .expect("blob");
            // Append blocks of at most 4 MiB, as Azure Monitor does in many small appends.
            let text = blobs.remove(&(c, h)).unwrap_or_default();
            let mut at = 0;
            while at < text.len() {
                let mut end = (at + 4 * 1024 * 1024 - 1).min(text.len());
                if end < text.len() {
                    end = text[..end].rfind('\n').map_or(end, |i| i + 1);
                }
                svc.append_block(&container, &name, Bytes::from(text[at..end].to_string()))
                    .await
                    .expect("append");
                at = end;
            }
        }
        containers.push(container);
    }

    // Baseline: plain serde_json parse + serialize of the same records.
    let started = Instant::now();
    let mut out = 0usize;
    for r in &records {
        let v: serde_json::Value = serde_json::from_str(r).expect("record");
        out += serde_json::to_vec(&v).expect("serialize").len();
    }
    std::hint::black_box(out);
    let base_secs = started.elapsed().as_secs_f64();
    drop(records);

    let dir = tempfile::tempdir().expect("dir");
    let sel = SecretKeySelector {
        name: "benchstorage".into(),
        key: "cs".into(),
    };
    std::env::set_var(SecretSource::env_var_name(&sel), az.connection_string());
    let out_path = dir.path().join("out.ndjson");
    let config = CollectorConfig {
        version: CONFIG_VERSION.to_string(),
        collector: "bench".into(),
        namespace: "default".into(),
        source: SourceConfig::AzureBlob(BlobSource {
            account_url: az.account_url(),
            containers: containers.clone(),
            credentials: BlobCredentials {
                connection_string: Some(sel),
                ..Default::default()
            },
            polling: PollingSpec {
                interval_seconds: 1,
                backfill_hours: 0,
                overlap_minutes: 30,
            },
            from: Some(from.to_rfc3339()),
            to: Some(to.to_rfc3339()),
            concurrency: 4,
            lag_threshold_seconds: 7200,
            ..Default::default()
        }),
        routes: vec![Route {
            log_source: "bench".into(),
            destinations: vec!["out".into()],
            ..Default::default()
        }],
        destinations: BTreeMap::from([(
            "out".to_string(),
            SiemDestinationSpec {
                file: Some(FileSpec {
                    path: out_path.display().to_string(),
                    max_bytes: 1 << 34,
                }),
                format: EventFormat::Raw,
                batch: BatchSpec {
                    max_events: 2000,
                    max_bytes: 4 << 20,
                    max_latency_ms: 50,
                },
                ..Default::default()
            },
        )]),
        checkpoint: CheckpointConfig::File {
            dir: dir.path().join("checkpoints").display().to_string(),
        },
        secrets: SecretSource::Environment,
        dead_letter: DeadLetterConfig::in_dir(dir.path().join("dead-letter").display().to_string()),
        telemetry: TelemetryConfig::default(),
        report: None,
    };
    let rss_before = peak_rss_mb();
    let cpu_before = cpu_seconds();
    let started = Instant::now();
    let cancel = CancellationToken::new();
    let run = tokio::spawn(siembridge::collector::Collector::new(config).run(cancel.clone()));
    let deadline = Instant::now() + Duration::from_secs(600);
    while std::fs::metadata(&out_path).map_or(0, |m| m.len() as usize) < bytes {
        assert!(Instant::now() < deadline, "the collector did not deliver every record");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let elapsed = started.elapsed().as_secs_f64();
    let cpu = (cpu_seconds() - cpu_before).max(0.01);
    cancel.cancel();
    let _ = run.await;
    let delivered = std::fs::read_to_string(&out_path).map_or(0, |t| t.lines().count());
    assert_eq!(delivered, n, "records delivered");
    let mb = bytes as f64 / 1e6;
    let base_eps = n as f64 / base_secs;
    println!(
        "serde_json parse+serialize (baseline, 1 core)   {:>10.0} records/s {:>8.1} MB/s",
        base_eps,
        mb / base_secs
    );
    println!(
        "azureBlob source from Azurite -> file (wall)     {:>10.0} records/s {:>8.1} MB/s  ({n} records, {:.1} MB, {} blobs, {elapsed:.2} s)",
        n as f64 / elapsed,
        mb / elapsed,
        mb,
        containers.len() * hours
    );
    println!(
        "azureBlob source per core of collector CPU       {:>10.0} records/s {:>8.1} MB/s  ({cpu:.2} CPU s; {:.3} x baseline)",
        n as f64 / cpu,
        mb / cpu,
        (n as f64 / cpu) / base_eps
    );
    println!(
        "peak RSS {:.1} MB (VmHWM; {:.1} MB before the collector started, records written to Azurite and dropped)",
        peak_rss_mb(),
        rss_before
    );
}
