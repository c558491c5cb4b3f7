//! Closing numbers of the API sources: a Management Activity API backfill against the local
//! stand-ins (Entra token endpoint, Management Activity API) through a whole collector into a
//! file destination. Prints records per second and requests per minute used against the budget.
//!
//! `cargo bench --bench api_backfill` (release). Sizes: `API_BENCH_BLOBS` blobs per content type
//! (default 400), `API_BENCH_RECORDS` records per blob (default 25), `API_BENCH_RPM` budget
//! (default 60000, the most the spec allows).

#[path = "../tests/common/mod.rs"]
mod common;

use std::collections::HashSet;
use std::time::{Duration, Instant};

use chrono::Utc;
use common::entra::Entra;
use common::o365::O365;
use siembridge::api::{ContentType, EntraCredentials, ManagementActivitySource, PollingSpec, SecretKeySelector};
use siembridge::collector::Collector;
use siembridge::config::SourceConfig;
use tokio_util::sync::CancellationToken;

const TENANT: &str = "11111111-2222-3333-4444-555555555555";
const APP: &str = "aaaaaaaa-bbbb-cccc-dddd-eeeeeeeeeeee";
const SECRET: &str = "bench-secret";

fn env(name: &str, default: usize) -> usize {
    std::env::var(name).ok().and_then(|v| v.parse().ok()).unwrap_or(default)
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    // `cargo bench` passes `--bench`; `cargo test --all-targets` runs this binary without it, as
    // a quick smoke test of the same code.
    let bench_mode = std::env::args().any(|a| a == "--bench");
    let blobs = env("API_BENCH_BLOBS", if bench_mode { 400 } else { 20 });
    let per_blob = env("API_BENCH_RECORDS", 25);
    let rpm = env("API_BENCH_RPM", 60_000) as u32;
    let dir = tempfile::tempdir().expect("temp dir");
    let entra = Entra::start(TENANT, APP, SECRET).await;
    let o365 = O365::start(TENANT, entra.state.clone()).await;
    common::write_secret(dir.path(), "o365", "clientSecret", SECRET);

    let now = Utc::now();
    let span = chrono::TimeDelta::days(7) - chrono::TimeDelta::minutes(30);
    let mut ids = HashSet::new();
    let mut n = 0usize;
    for ct in ContentType::ALL {
        for b in 0..blobs {
            let created = now - span + span * (b as i32) / (blobs as i32);
            let records: Vec<serde_json::Value> = (0..per_blob)
                .map(|_| {
                    n += 1;
                    let id = format!("cccccccc-1111-4111-8111-{n:012x}");
                    ids.insert(id.clone());
                    serde_json::json!({
                        "Id": id, "RecordType": 15, "CreationTime": created.format("%Y-%m-%dT%H:%M:%S").to_string(),
                        "Operation": "UserLoggedIn", "OrganizationId": TENANT, "UserType": 0,
                        "UserKey": "aaaaaaaa-1111-4111-8111-0000000000aa", "Workload": "AzureActiveDirectory",
                        "UserId": "alex@contoso.example", "ClientIP": "203.0.113.10", "ResultStatus": "Success",
                    })
                })
                .collect();
            o365.state.add_blob(ct.as_str(), created, records);
        }
    }
    let source = SourceConfig::ManagementActivityApi(ManagementActivitySource {
        credentials: EntraCredentials {
            tenant_id: TENANT.into(),
            client_id: APP.into(),
            client_secret: Some(SecretKeySelector {
                name: "o365".into(),
                key: "clientSecret".into(),
            }),
            authority_host: Some(entra.authority.clone()),
            ..Default::default()
        },
        requests_per_minute: rpm,
        polling: PollingSpec {
            interval_seconds: 60,
            backfill_hours: 168,
            overlap_minutes: 120,
        },
        endpoint: Some(o365.root.clone()),
        ..Default::default()
    });
    let config = common::api_config(dir.path(), source, "bench");
    let stop = CancellationToken::new();
    let started = Instant::now();
    let handle = tokio::spawn(Collector::new(config).run(stop.clone()));
    let want = ids.len();
    let out = dir.path().join("out.ndjson");
    loop {
        // Count lines cheaply: one per record.
        let lines = std::fs::read(&out).map(|b| bytecount(&b)).unwrap_or(0);
        if lines >= want || started.elapsed() > Duration::from_secs(600) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let elapsed = started.elapsed();
    stop.cancel();
    let _ = handle.await;
    let delivered = common::delivered_ids(dir.path(), "Id");
    let distinct: HashSet<&String> = delivered.iter().collect();
    let requests = o365.state.requests();
    let per_minute = requests.len() as f64 / elapsed.as_secs_f64() * 60.0;
    println!(
        "api_backfill: {} content blobs, {} records ({} delivered, {} distinct) in {:.2} s = {:.0} records/s",
        blobs * 5,
        want,
        delivered.len(),
        distinct.len(),
        elapsed.as_secs_f64(),
        want as f64 / elapsed.as_secs_f64()
    );
    println!(
        "api_backfill: {} requests = {:.0} requests/min used of a budget of {rpm}/min ({:.0}%); at the default budget of 600/min this backfill needs {:.1} min",
        requests.len(),
        per_minute,
        per_minute / f64::from(rpm) * 100.0,
        requests.len() as f64 / 600.0
    );
}

fn bytecount(b: &[u8]) -> usize {
    b.iter().filter(|&&c| c == b'\n').count()
}
