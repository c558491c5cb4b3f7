//! The shared delivery machinery with a destination that answers per event (as Elasticsearch
//! `_bulk` and Splunk HEC will): delivered events are acknowledged, rejected ones dead-lettered,
//! only the ones to retry are sent again, and the checkpoint passes all of them at the end.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use siembridge::api::{BatchSpec, EventFormat, ReplaySource, RetrySpec, SiemDestinationSpec, StdoutSpec};
use siembridge::collector::destinations::{Destination, Event, EventOutcome, SendOutcome};
use siembridge::collector::Collector;
use siembridge::config::{
    CheckpointConfig, CollectorConfig, DeadLetterConfig, Route, SecretSource, SourceConfig, CONFIG_VERSION,
};
use tokio_util::sync::CancellationToken;

/// Rejects id 2, asks to retry id 3 once, delivers everything else.
#[derive(Default)]
struct PerItem {
    batches: Mutex<Vec<Vec<u64>>>,
    delivered: Mutex<Vec<u64>>,
}

fn id_of(e: &Event) -> u64 {
    serde_json::from_slice::<serde_json::Value>(&e.body).unwrap()["id"]
        .as_u64()
        .unwrap()
}

#[async_trait]
impl Destination for PerItem {
    async fn send(&self, batch: &[Event]) -> SendOutcome {
        let ids: Vec<u64> = batch.iter().map(id_of).collect();
        let first_attempt = self.batches.lock().unwrap().is_empty();
        self.batches.lock().unwrap().push(ids.clone());
        SendOutcome::PerEvent(
            ids.iter()
                .map(|&id| match id {
                    2 => EventOutcome::Rejected {
                        reason: "mapper_parsing_exception".into(),
                    },
                    3 if first_attempt => EventOutcome::Retry {
                        reason: "es_rejected_execution_exception".into(),
                    },
                    _ => {
                        self.delivered.lock().unwrap().push(id);
                        EventOutcome::Delivered
                    }
                })
                .collect(),
        )
    }
}

#[tokio::test]
async fn per_event_outcomes_ack_retry_and_dead_letter_individually() {
    let dir = tempfile::tempdir().unwrap();
    let records = dir.path().join("r.ndjson");
    std::fs::write(&records, "{\"id\":1}\n{\"id\":2}\n{\"id\":3}\n{\"id\":4}\n").unwrap();
    let config = CollectorConfig {
        version: CONFIG_VERSION.to_string(),
        collector: "per-item".into(),
        namespace: "default".into(),
        source: SourceConfig::Replay(ReplaySource {
            paths: vec![records.display().to_string()],
            ..Default::default()
        }),
        routes: vec![Route {
            log_source: "ls".into(),
            destinations: vec!["es".into()],
            ..Default::default()
        }],
        destinations: BTreeMap::from([(
            "es".to_string(),
            SiemDestinationSpec {
                stdout: Some(StdoutSpec::default()),
                format: EventFormat::Raw,
                batch: BatchSpec {
                    max_events: 10,
                    max_bytes: 1 << 20,
                    max_latency_ms: 200,
                },
                retry: RetrySpec {
                    initial_backoff_ms: 1,
                    max_backoff_ms: 5,
                    ..Default::default()
                },
                ..Default::default()
            },
        )]),
        checkpoint: CheckpointConfig::File {
            dir: dir.path().join("cp").display().to_string(),
        },
        secrets: SecretSource::Environment,
        dead_letter: DeadLetterConfig::in_dir(dir.path().join("dl").display().to_string()),
        telemetry: Default::default(),
        report: None,
    };
    let dest = Arc::new(PerItem::default());
    let summary = tokio::time::timeout(
        Duration::from_secs(20),
        Collector::new(config)
            .with_destination("es", dest.clone())
            .run(CancellationToken::new()),
    )
    .await
    .unwrap()
    .unwrap();
    assert_eq!(*dest.batches.lock().unwrap(), vec![vec![1, 2, 3, 4], vec![3]]);
    let mut delivered = dest.delivered.lock().unwrap().clone();
    delivered.sort();
    assert_eq!(delivered, vec![1, 3, 4]);
    assert!(summary.fully_checkpointed);
    assert!(summary.positions["replay"].ends_with("r.ndjson@4"));
    let dl = std::fs::read_dir(dir.path().join("dl"))
        .unwrap()
        .next()
        .unwrap()
        .unwrap();
    let lines: Vec<serde_json::Value> = std::fs::read_to_string(dl.path())
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(lines.len(), 1);
    assert_eq!(lines[0]["record"]["id"], 2);
    assert_eq!(lines[0]["reason"], "mapper_parsing_exception");
}

#[tokio::test]
async fn a_collector_without_routes_does_not_read_or_checkpoint_its_source() {
    let dir = tempfile::tempdir().unwrap();
    let records = dir.path().join("r.ndjson");
    std::fs::write(&records, "{\"id\":1}\n").unwrap();
    let config = CollectorConfig {
        version: CONFIG_VERSION.to_string(),
        collector: "suspended".into(),
        namespace: "default".into(),
        source: SourceConfig::Replay(ReplaySource {
            paths: vec![records.display().to_string()],
            ..Default::default()
        }),
        routes: vec![],
        destinations: BTreeMap::new(),
        checkpoint: CheckpointConfig::File {
            dir: dir.path().join("cp").display().to_string(),
        },
        secrets: SecretSource::Environment,
        dead_letter: DeadLetterConfig::in_dir(dir.path().join("dl").display().to_string()),
        telemetry: Default::default(),
        report: None,
    };
    let summary = Collector::new(config).run(CancellationToken::new()).await.unwrap();
    assert_eq!(summary.units, 0);
    assert!(!dir.path().join("cp").join("replay.json").exists());
}
