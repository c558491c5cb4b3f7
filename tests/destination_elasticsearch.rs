//! `elasticsearch` inside a running collector against the `_bulk` stand-in: item 429s are sent
//! again alone, mapping errors dead-lettered with their reason, whole-request 429/503 retried,
//! 413 split (a 401 is in `destination_credentials.rs`); the stable id as `_id` makes every record indexed exactly once, even
//! when the whole source is replayed.

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::atomic::Ordering;

use siembridge::api::{BasicAuth, BatchSpec, ElasticsearchSpec, EventFormat, SiemDestinationSpec};
use siembridge::config::{CollectorConfig, ReportTarget};

mod common;
#[path = "common/siem/mod.rs"]
mod siem;

use siem::elasticsearch::Elasticsearch;

fn config(dir: &Path, es: ElasticsearchSpec, records: &Path) -> CollectorConfig {
    let dest = SiemDestinationSpec {
        elasticsearch: Some(es),
        format: EventFormat::Raw,
        batch: BatchSpec {
            max_events: 25,
            max_bytes: 1024 * 1024,
            max_latency_ms: 20,
        },
        retry: siem::fast_retry(),
        concurrency: 2,
        ..Default::default()
    };
    let mut cfg = common::replay_config(dir, records, "entra", BTreeMap::from([("es".to_string(), dest)]));
    cfg.report = Some(ReportTarget::File {
        path: dir.join("report.json").display().to_string(),
    });
    cfg
}

fn stored_record_ids(es: &Elasticsearch) -> Vec<u64> {
    es.state
        .docs
        .lock()
        .unwrap()
        .values()
        .filter_map(|d| d["id"].as_u64())
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn item_and_request_failures_end_with_every_record_indexed_exactly_once_even_after_a_replay() {
    let dir = tempfile::tempdir().unwrap();
    let n = 300;
    let poison = [5usize, 200];
    let records = siem::write_records(dir.path(), n, &poison);
    // elastic:changeme-es-test, base64.
    let es = Elasticsearch::start(&["Basic ZWxhc3RpYzpjaGFuZ2VtZS1lcy10ZXN0"]).await;
    es.state.reject_items_next.store(40, Ordering::SeqCst);
    es.state.fail_next.lock().unwrap().extend([429, 503]);
    let spec = ElasticsearchSpec {
        urls: vec![es.url.clone()],
        index: "logs-m365.audit-default".into(),
        basic_auth: Some(BasicAuth {
            username: "elastic".into(),
            password: siem::set_secret("es-basic", "password", "changeme-es-test"),
        }),
        compression: true,
        ..Default::default()
    };
    let summary = siem::run(config(dir.path(), spec.clone(), &records)).await;
    assert!(summary.fully_checkpointed, "{summary:?}");
    let first_actions = es.state.actions.load(Ordering::SeqCst);

    // Replay everything, as after a crash before the checkpoint: ids make it a no-op.
    std::fs::remove_dir_all(dir.path().join("checkpoints")).unwrap();
    let again = siem::run(config(dir.path(), spec, &records)).await;
    assert!(again.fully_checkpointed);

    let ids = stored_record_ids(&es);
    let dead = siem::dead_lettered_ids(dir.path());
    println!(
        "elasticsearch: {n} records, {} documents, {} create actions in the first run, {} in total, {} conflicts (409), {} dead-lettered",
        ids.len(),
        first_actions,
        es.state.actions.load(Ordering::SeqCst),
        es.state.conflicts.load(Ordering::SeqCst),
        dead.len()
    );
    assert_eq!(ids.len(), n - poison.len(), "exactly once per record");
    let per_id = siem::counts(&ids);
    for i in 1..=n as u64 {
        let expected = usize::from(!poison.contains(&(i as usize)));
        assert_eq!(per_id.get(&i).copied().unwrap_or(0), expected, "record {i}");
    }
    assert!(first_actions >= n + 40, "the 40 throttled items were sent again");
    assert_eq!(
        es.state.conflicts.load(Ordering::SeqCst),
        n - poison.len(),
        "the replay answered 409 for every record"
    );
    // Each poison record is dead-lettered once per run, with the mapping error.
    assert_eq!(dead, vec![5, 5, 200, 200]);
    for l in siem::dead_letters(dir.path()) {
        assert!(
            l["reason"].as_str().unwrap().contains("mapper_parsing_exception"),
            "{l}"
        );
    }
    assert!(es.state.gzip_requests.load(Ordering::SeqCst) > 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_too_large_request_is_split_and_api_keys_are_sent() {
    let dir = tempfile::tempdir().unwrap();
    let records = siem::write_records(dir.path(), 40, &[]);
    let es = Elasticsearch::start(&["ApiKey aWQ6a2V5LWVzLXRlc3Q="]).await;
    // About eight documents fit in a request.
    es.state.max_content_length.store(3000, Ordering::SeqCst);
    let spec = ElasticsearchSpec {
        urls: vec!["http://127.0.0.1:9".into(), es.url.clone()],
        index: "siembridge-events".into(),
        api_key: Some(siem::set_secret("es-apikey", "key", "aWQ6a2V5LWVzLXRlc3Q=")),
        ..Default::default()
    };
    let summary = siem::run(config(dir.path(), spec, &records)).await;
    assert!(summary.fully_checkpointed);
    let ids = stored_record_ids(&es);
    println!(
        "elasticsearch split: 40 records, {} documents, {} requests",
        ids.len(),
        es.state.requests.load(Ordering::SeqCst)
    );
    assert_eq!(ids.len(), 40);
    assert!(es.state.requests.load(Ordering::SeqCst) > 5, "413 made it split");
    assert!(siem::dead_letters(dir.path()).is_empty());
}
