//! `splunkHec` inside a running collector against the HEC stand-in: busy answers are retried,
//! a batch counts only once its indexer ack arrives (a lost ack is resent), an
//! `invalid-event-number` dead-letters that one event, and every record ends up indexed at least
//! once or dead-lettered with its reason. A refused token: `destination_credentials.rs`.

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::atomic::Ordering;

use siembridge::api::{BatchSpec, EventFormat, SiemDestinationSpec, SplunkHecSpec};
use siembridge::config::{CollectorConfig, ReportTarget};

mod common;
#[path = "common/siem/mod.rs"]
mod siem;

use siem::hec::Hec;

fn config(dir: &Path, url: &str, token_secret: &str, records: &Path, indexer_ack: bool) -> CollectorConfig {
    let dest = SiemDestinationSpec {
        splunk_hec: Some(SplunkHecSpec {
            url: url.to_string(),
            token: siem::set_secret(token_secret, "token", &format!("tok-{token_secret}")),
            index: Some("m365".into()),
            indexer_ack,
            ..Default::default()
        }),
        format: EventFormat::Raw,
        batch: BatchSpec {
            max_events: 7,
            max_bytes: 1024 * 1024,
            max_latency_ms: 20,
        },
        retry: siem::fast_retry(),
        concurrency: 2,
        ..Default::default()
    };
    let mut cfg = common::replay_config(dir, records, "entra", BTreeMap::from([("hec".to_string(), dest)]));
    cfg.report = Some(ReportTarget::File {
        path: dir.join("report.json").display().to_string(),
    });
    cfg
}

fn indexed_record_ids(hec: &Hec) -> Vec<u64> {
    hec.state
        .indexed
        .lock()
        .unwrap()
        .iter()
        .filter_map(|e| e["event"]["id"].as_u64())
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn busy_lost_acks_and_invalid_events_end_with_every_record_indexed_or_dead_lettered() {
    let dir = tempfile::tempdir().unwrap();
    let n = 200;
    let poison = [13usize, 150];
    let records = siem::write_records(dir.path(), n, &poison);
    let hec = Hec::start("tok-hec-ack", true).await;
    hec.state.busy_next.store(3, Ordering::SeqCst);
    hec.state.lose_ack_next.store(1, Ordering::SeqCst);
    hec.state.ack_after_polls.store(2, Ordering::SeqCst);
    let mut cfg = config(dir.path(), &hec.url, "hec-ack", &records, true);
    // A lost ack is given up on after the request timeout; keep it short.
    cfg.destinations.get_mut("hec").unwrap().retry.request_timeout_ms = 800;
    let summary = siem::run(cfg).await;
    assert!(summary.fully_checkpointed, "{summary:?}");

    let ids = indexed_record_ids(&hec);
    let per_id = siem::counts(&ids);
    let duplicates: usize = per_id.values().map(|c| c - 1).sum();
    let dead = siem::dead_lettered_ids(dir.path());
    println!(
        "hec: {n} records, {} envelopes indexed, {} distinct, {duplicates} duplicates, {} dead-lettered, {} event requests, {} ack polls",
        ids.len(),
        per_id.len(),
        dead.len(),
        hec.state.event_requests.load(Ordering::SeqCst),
        hec.state.ack_requests.load(Ordering::SeqCst)
    );
    assert_eq!(dead, poison.iter().map(|&p| p as u64).collect::<Vec<_>>());
    for i in 1..=n as u64 {
        if poison.contains(&(i as usize)) {
            assert!(!per_id.contains_key(&i), "poison record {i} indexed");
        } else {
            assert!(per_id.contains_key(&i), "record {i} lost");
        }
    }
    assert!(duplicates > 0, "the lost ack must have caused a resend");
    for l in siem::dead_letters(dir.path()) {
        let reason = l["reason"].as_str().unwrap();
        assert!(reason.contains("code 6"), "{reason}");
        assert_eq!(l["destination"], "hec");
    }
    // Envelopes carry the metadata HEC indexes.
    let first = hec.state.indexed.lock().unwrap()[0].clone();
    assert_eq!(first["index"], "m365");
    assert_eq!(first["source"], "entra");
    assert_eq!(first["sourcetype"], "azure:aad:signin");
    assert!(first["time"].as_f64().unwrap() > 1.7e9);
    assert!(first["fields"]["siembridge_id"].as_str().unwrap().contains('#'));
    assert!(hec.state.ack_requests.load(Ordering::SeqCst) > 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_indexer_ack_every_record_is_indexed_once() {
    let dir = tempfile::tempdir().unwrap();
    let records = siem::write_records(dir.path(), 50, &[]);
    let hec = Hec::start("tok-hec-noack", false).await;
    hec.state.busy_next.store(2, Ordering::SeqCst);
    let summary = siem::run(config(
        dir.path(),
        &format!("{}/services/collector", hec.url),
        "hec-noack",
        &records,
        false,
    ))
    .await;
    assert!(summary.fully_checkpointed);
    let ids = indexed_record_ids(&hec);
    println!("hec without ack: 50 records, {} indexed", ids.len());
    assert_eq!(siem::counts(&ids).len(), 50);
    assert_eq!(ids.len(), 50, "no duplicates when nothing is ambiguous");
    assert_eq!(hec.state.ack_requests.load(Ordering::SeqCst), 0);
}
