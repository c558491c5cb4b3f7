//! `elasticsearch` inside a running collector against the `_bulk` stand-in, which enforces the
//! rules of data streams (`create` only, `@timestamp`, `logs-<dataset>-<namespace>` names): ECS
//! documents go to the data stream of their `event.dataset`, raw records in `message` to the
//! data stream of the Elastic integration that parses them, with the `pipeline` named. Item 429s are sent
//! again alone, mapping errors dead-lettered with their reason, whole-request 429/503 retried,
//! 413 split (a 401 is in `destination_credentials.rs`); the stable id as `_id` makes every record indexed exactly once, even
//! when the whole source is replayed.

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::atomic::Ordering;

use siembridge::api::{BasicAuth, BatchSpec, ElasticsearchSpec, EventFormat, SiemDestinationSpec};
use siembridge::config::{CollectorConfig, ReportTarget};

mod common;
#[path = "common/mixed.rs"]
mod mixed;
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
        index: Some("siembridge-m365-audit".into()),
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
        index: Some("siembridge-events".into()),
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

fn mixed_config(dir: &Path, es: ElasticsearchSpec, format: EventFormat, copies: usize) -> CollectorConfig {
    let records = mixed::write(dir, copies);
    let mut cfg = config(dir, es, &records);
    let dest = cfg.destinations.get_mut("es").unwrap();
    dest.format = format;
    dest.keep_original = format == EventFormat::Ecs;
    cfg
}

/// Documents stored, as `(index, tag, document)`.
fn stored(
    es: &Elasticsearch,
    tag_of: impl Fn(&serde_json::Value) -> String,
) -> Vec<(String, String, serde_json::Value)> {
    es.state
        .docs
        .lock()
        .unwrap()
        .iter()
        .map(|((index, _), d)| (index.clone(), tag_of(d), d.clone()))
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ecs_documents_go_to_the_data_stream_of_their_dataset_through_the_pipeline() {
    let dir = tempfile::tempdir().unwrap();
    let es = Elasticsearch::start(&[]).await;
    let spec = ElasticsearchSpec {
        urls: vec![es.url.clone()],
        namespace: "prod".into(),
        pipeline: Some("siembridge-enrich".into()),
        ..Default::default()
    };
    let copies = 4;
    let summary = siem::run(mixed_config(dir.path(), spec, EventFormat::Ecs, copies)).await;
    assert!(summary.fully_checkpointed, "{summary:?}");
    let docs = stored(&es, |d| mixed::tag(d["event"]["original"].as_str().unwrap_or_default()));
    let dead = siem::dead_letters(dir.path());
    let n = mixed::RECORDS.len() * copies;
    let mut streams = BTreeMap::new();
    for (index, tag, doc) in &docs {
        let dataset = doc["event"]["dataset"].as_str().unwrap();
        assert_eq!(index, &format!("logs-{dataset}-prod"), "{tag}");
        assert!(siem::elasticsearch::data_stream_name_error(index).is_none(), "{index}");
        *streams.entry(index.clone()).or_insert(0) += 1;
    }
    println!(
        "elasticsearch ecs data streams: {n} records, {} documents, lost {}, {} dead-lettered: {streams:?}",
        docs.len(),
        n - docs.len(),
        dead.len()
    );
    assert_eq!(docs.len(), n, "every record indexed");
    assert!(dead.is_empty(), "{dead:?}");
    assert_eq!(streams["logs-azure.signinlogs-prod"], 2 * copies);
    let pipelines = es.state.pipelines.lock().unwrap();
    assert_eq!(pipelines.len(), n);
    assert!(pipelines.values().all(|p| p == "siembridge-enrich"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn raw_records_are_shipped_in_message_to_the_data_stream_of_their_elastic_integration() {
    let dir = tempfile::tempdir().unwrap();
    let es = Elasticsearch::start(&[]).await;
    let spec = ElasticsearchSpec {
        urls: vec![es.url.clone()],
        ..Default::default()
    };
    let copies = 3;
    let summary = siem::run(mixed_config(dir.path(), spec, EventFormat::Raw, copies)).await;
    assert!(summary.fully_checkpointed, "{summary:?}");
    let docs = stored(&es, |d| mixed::tag(d["message"].as_str().unwrap_or_default()));
    let n = mixed::RECORDS.len() * copies;
    println!(
        "elasticsearch integration documents: {n} records, {} documents, lost {}, {} dead-lettered",
        docs.len(),
        n - docs.len(),
        siem::dead_letters(dir.path()).len()
    );
    assert_eq!(docs.len(), n);
    let expected = BTreeMap::from([
        ("entra-signin-ok", "azure.signinlogs"),
        ("entra-signin-failed", "azure.signinlogs"),
        ("entra-audit", "azure.auditlogs"),
        ("intune-audit", "microsoft_intune.audit"),
        ("defender-process", "m365_defender.event"),
        ("o365-login", "o365.audit"),
        ("graph-alert", "m365_defender.alert"),
    ]);
    for (index, tag, doc) in &docs {
        let dataset = expected[tag.as_str()];
        assert_eq!(index, &format!("logs-{dataset}-default"), "{tag}");
        let record = mixed::RECORDS.iter().find(|r| r.0 == tag).unwrap().3;
        // The integration's pipeline parses `message` (a `json` processor on it): the record as
        // received, byte for byte.
        assert_eq!(doc["message"], record, "{tag}");
        assert_eq!(
            doc["data_stream"],
            serde_json::json!({"type": "logs", "dataset": dataset, "namespace": "default"})
        );
        assert!(
            doc["@timestamp"].as_str().unwrap().starts_with("2026-01-15T08:00:0"),
            "{doc}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_stand_in_refuses_what_data_streams_refuse() {
    let es = Elasticsearch::start(&[]).await;
    let bulk = |body: String| {
        let url = format!("{}/_bulk", es.url);
        async move {
            let r = reqwest::Client::new()
                .post(url)
                .header("content-type", "application/x-ndjson")
                .body(body)
                .send()
                .await
                .unwrap();
            let v: serde_json::Value = r.json().await.unwrap();
            let item = v["items"][0].as_object().unwrap().values().next().unwrap().clone();
            (
                item["status"].as_u64().unwrap(),
                item["error"]["type"].as_str().unwrap_or("").to_string(),
            )
        }
    };
    let ok_doc = r#"{"@timestamp":"2026-01-01T00:00:00Z","message":"m"}"#;
    assert_eq!(
        bulk(format!(
            "{{\"index\":{{\"_index\":\"logs-x-default\",\"_id\":\"1\"}}}}\n{ok_doc}\n"
        ))
        .await,
        (400, "illegal_argument_exception".into()),
        "index op"
    );
    for bad in ["logs-Azure.SignIn-default", "logs-a-b-c", "logs-x-", "logs-x-prod eu"] {
        assert_eq!(
            bulk(format!(
                "{{\"create\":{{\"_index\":\"{bad}\",\"_id\":\"1\"}}}}\n{ok_doc}\n"
            ))
            .await,
            (400, "invalid_index_name_exception".into()),
            "{bad}"
        );
    }
    assert_eq!(
        bulk("{\"create\":{\"_index\":\"logs-x-default\",\"_id\":\"2\"}}\n{\"message\":\"m\"}\n".into()).await,
        (400, "document_parsing_exception".into()),
        "no @timestamp"
    );
    assert_eq!(
        bulk(
            "{\"create\":{\"_index\":\"logs-x-default\",\"_id\":\"3\"}}\n{\"@timestamp\":\"2026-01-01T00:00:00Z\",\"data_stream\":{\"dataset\":\"y\"}}\n"
                .to_string(),
        )
        .await,
        (400, "document_parsing_exception".into()),
        "data_stream.dataset not the name's"
    );
    assert_eq!(
        bulk(format!(
            "{{\"create\":{{\"_index\":\"logs-x-default\",\"_id\":\"4\"}}}}\n{ok_doc}\n"
        ))
        .await,
        (201, String::new())
    );
}
