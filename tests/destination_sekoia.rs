//! `sekoia` inside a running collector against the intake stand-in: throttling and server
//! errors are retried, an event over 250 000 bytes is dead-lettered before it is sent, and every
//! other record is received at least once (an unknown intake key: `destination_credentials.rs`).

use std::collections::BTreeMap;
use std::io::Write;
use std::path::Path;
use std::sync::atomic::Ordering;

use siembridge::api::{BatchSpec, EventFormat, SekoiaSpec, SiemDestinationSpec};
use siembridge::config::{CollectorConfig, ReportTarget};

mod common;
#[path = "common/siem/mod.rs"]
mod siem;

use siem::sekoia::Sekoia;

fn config(dir: &Path, url: &str, secret: &str, key: &str, records: &Path) -> CollectorConfig {
    let dest = SiemDestinationSpec {
        sekoia: Some(SekoiaSpec {
            intake_key: siem::set_secret(secret, "intakeKey", key),
            url: Some(url.to_string()),
            ..Default::default()
        }),
        format: EventFormat::Raw,
        batch: BatchSpec {
            max_events: 30,
            max_bytes: 4 * 1024 * 1024,
            max_latency_ms: 20,
        },
        retry: siem::fast_retry(),
        concurrency: 2,
        ..Default::default()
    };
    let mut cfg = common::replay_config(dir, records, "intune", BTreeMap::from([("sekoia".to_string(), dest)]));
    cfg.report = Some(ReportTarget::File {
        path: dir.join("report.json").display().to_string(),
    });
    cfg
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn throttling_and_oversized_events_end_with_every_record_received_or_dead_lettered() {
    let dir = tempfile::tempdir().unwrap();
    let n = 120;
    let records = siem::write_records(dir.path(), n, &[]);
    // Record n+1 is over Sekoia's event limit.
    let mut f = std::fs::OpenOptions::new().append(true).open(&records).unwrap();
    writeln!(
        f,
        "{{\"id\":{},\"category\":\"IntuneAuditLogs\",\"blob\":\"{}\"}}",
        n + 1,
        "x".repeat(260_000)
    )
    .unwrap();
    drop(f);
    let key = "11111111-aaaa-4bbb-8ccc-000000000001";
    let sekoia = Sekoia::start(key).await;
    sekoia.state.fail_next.lock().unwrap().extend([429, 500, 503]);
    let summary = siem::run(config(dir.path(), &sekoia.url, "sekoia-ok", key, &records)).await;
    assert!(summary.fully_checkpointed, "{summary:?}");

    let ids: Vec<u64> = sekoia.events(key).iter().filter_map(|e| e["id"].as_u64()).collect();
    let per_id = siem::counts(&ids);
    let dead = siem::dead_letters(dir.path());
    println!(
        "sekoia: {} records, {} events received, {} distinct, {} requests, {} dead-lettered",
        n + 1,
        ids.len(),
        per_id.len(),
        sekoia.state.requests.load(Ordering::SeqCst),
        dead.len()
    );
    for i in 1..=n as u64 {
        assert!(per_id.contains_key(&i), "record {i} lost");
    }
    assert!(!per_id.contains_key(&(n as u64 + 1)));
    assert_eq!(
        sekoia.state.oversized.load(Ordering::SeqCst),
        0,
        "an oversized event was sent"
    );
    assert_eq!(dead.len(), 1);
    assert_eq!(dead[0]["record"]["id"], n + 1);
    assert!(dead[0]["reason"].as_str().unwrap().contains("250000"), "{}", dead[0]);
    // The intake got the key in its header, never anything else.
    assert!(sekoia.state.presented.lock().unwrap().iter().all(|k| k == key));
}
