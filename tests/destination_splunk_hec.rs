//! `splunkHec` inside a running collector against the HEC stand-in: busy answers are retried,
//! a batch counts only once its indexer ack arrives (a lost ack is resent), an
//! `invalid-event-number` dead-letters that one event, and every record ends up indexed at least
//! once or dead-lettered with its reason; each event carries the sourcetype of the Splunk add-on
//! for its family and format (`siembridge::normalize::content`). A refused token:
//! `destination_credentials.rs`.

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::atomic::Ordering;

use siembridge::api::{BatchSpec, EventFormat, SiemDestinationSpec, SplunkHecSpec};
use siembridge::config::{CollectorConfig, ReportTarget};

mod common;
#[path = "common/mixed.rs"]
mod mixed;
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
    // Raw Entra diagnostic records: the sourcetype of the Splunk Add-on for Microsoft Cloud
    // Services (Event Hubs), which Splunk's detections search.
    assert_eq!(first["sourcetype"], "azure:monitor:aad");
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

/// Every family of the mixed corpus in both formats: the sourcetype comes from the one table,
/// from what normalization recognised (an Intune `AuditLogs` record is not Entra's).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_family_gets_its_add_on_sourcetype_in_raw_and_its_own_in_ecs() {
    for (format, keep_original) in [(EventFormat::Raw, false), (EventFormat::Ecs, true)] {
        let dir = tempfile::tempdir().unwrap();
        let records = mixed::write(dir.path(), 3);
        let hec = Hec::start("tok-hec-types", false).await;
        let mut cfg = config(dir.path(), &hec.url, "hec-types", &records, false);
        let dest = cfg.destinations.get_mut("hec").unwrap();
        dest.format = format;
        dest.keep_original = keep_original;
        let summary = siem::run(cfg).await;
        assert!(summary.fully_checkpointed, "{summary:?}");
        let indexed = hec.state.indexed.lock().unwrap().clone();
        let mut by_tag: BTreeMap<String, Vec<String>> = BTreeMap::new();
        for e in &indexed {
            let text = match format {
                EventFormat::Raw => e["event"].to_string(),
                EventFormat::Ecs => e["event"]["event"]["original"].as_str().unwrap().to_string(),
            };
            by_tag
                .entry(mixed::tag(&text))
                .or_default()
                .push(e["sourcetype"].as_str().unwrap().to_string());
        }
        let n = mixed::RECORDS.len() * 3;
        println!(
            "hec sourcetypes ({format:?}): {n} records, {} indexed, lost {}: {:?}",
            indexed.len(),
            n - indexed.len().min(n),
            by_tag
                .iter()
                .map(|(t, s)| (t.as_str(), s[0].as_str()))
                .collect::<Vec<_>>()
        );
        assert_eq!(indexed.len(), n, "every record indexed once");
        for (tag, family, category, _) in mixed::RECORDS {
            let want = siembridge::normalize::content::splunk_sourcetype(family, category, format);
            let got = &by_tag[*tag];
            assert_eq!(got.len(), 3, "{tag}");
            assert!(
                got.iter().all(|s| s == want),
                "{tag} ({format:?}): {got:?}, want {want}"
            );
        }
        let (raw_intune, raw_entra) = ("mscs:azure:eventhub", "azure:monitor:aad");
        if format == EventFormat::Raw {
            assert_eq!(by_tag["intune-audit"][0], raw_intune);
            assert_eq!(by_tag["entra-audit"][0], raw_entra);
            assert_eq!(by_tag["o365-login"][0], "o365:management:activity");
            assert_eq!(by_tag["defender-process"][0], "ms:defender:eventhub");
            assert_eq!(by_tag["graph-alert"][0], "ms365:defender:incident:alerts");
        } else {
            assert_eq!(by_tag["intune-audit"][0], "siembridge:ecs:intune");
            assert_eq!(by_tag["entra-signin-ok"][0], "siembridge:ecs:entra");
        }
    }
}
