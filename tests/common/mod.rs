//! Scaffolding shared by the collector tests. Each test binary uses a part of it.
#![allow(dead_code)]

pub mod child;
pub mod cluster;
pub mod entra;
pub mod graph;
pub mod hostile;
pub mod o365;

use std::collections::BTreeMap;
use std::path::Path;

use siembridge::api::{ReplaySource, SiemDestinationSpec};
use siembridge::config::{
    CheckpointConfig, CollectorConfig, DeadLetterConfig, Route, SecretSource, SourceConfig, TelemetryConfig,
    CONFIG_VERSION,
};

/// A collector replaying `records` for one LogSource that feeds every destination given, with
/// its checkpoints and dead letters under `dir`.
pub fn replay_config(
    dir: &Path,
    records: &Path,
    log_source: &str,
    destinations: BTreeMap<String, SiemDestinationSpec>,
) -> CollectorConfig {
    CollectorConfig {
        version: CONFIG_VERSION.to_string(),
        collector: "test".into(),
        namespace: "default".into(),
        source: SourceConfig::Replay(ReplaySource {
            paths: vec![records.display().to_string()],
            ..Default::default()
        }),
        routes: vec![Route {
            log_source: log_source.into(),
            destinations: destinations.keys().cloned().collect(),
            ..Default::default()
        }],
        destinations,
        checkpoint: CheckpointConfig::File {
            dir: dir.join("checkpoints").display().to_string(),
        },
        secrets: SecretSource::Environment,
        dead_letter: DeadLetterConfig::in_dir(dir.join("dead-letter").display().to_string()),
        telemetry: TelemetryConfig::default(),
        report: None,
    }
}

/// A collector reading `source` for LogSource `log_source` into one raw file destination
/// `<dir>/out.ndjson`, with file checkpoints, mounted secrets under `<dir>/secrets` and a report
/// file `<dir>/report.json`.
pub fn api_config(dir: &Path, source: SourceConfig, log_source: &str) -> CollectorConfig {
    use siembridge::api::{BatchSpec, EventFormat, FileSpec};
    use siembridge::config::ReportTarget;
    let destinations = BTreeMap::from([(
        "out".to_string(),
        SiemDestinationSpec {
            file: Some(FileSpec {
                path: dir.join("out.ndjson").display().to_string(),
                max_bytes: 1 << 30,
            }),
            format: EventFormat::Raw,
            batch: BatchSpec {
                max_events: 500,
                max_bytes: 1 << 20,
                max_latency_ms: 50,
            },
            ..Default::default()
        },
    )]);
    CollectorConfig {
        version: CONFIG_VERSION.to_string(),
        collector: "api-test".into(),
        namespace: "default".into(),
        source,
        routes: vec![Route {
            log_source: log_source.into(),
            destinations: vec!["out".into()],
            ..Default::default()
        }],
        destinations,
        checkpoint: CheckpointConfig::File {
            dir: dir.join("checkpoints").display().to_string(),
        },
        secrets: SecretSource::Mounted {
            dir: dir.join("secrets").display().to_string(),
        },
        dead_letter: DeadLetterConfig::in_dir(dir.join("dead-letter").display().to_string()),
        telemetry: TelemetryConfig::default(),
        report: Some(ReportTarget::File {
            path: dir.join("report.json").display().to_string(),
        }),
    }
}

/// Write a mounted secret value `<dir>/secrets/<name>/<key>`.
pub fn write_secret(dir: &Path, name: &str, key: &str, value: &str) {
    let d = dir.join("secrets").join(name);
    std::fs::create_dir_all(&d).unwrap();
    std::fs::write(d.join(key), value).unwrap();
}

/// Values of `field` of every line of `<dir>/out.ndjson`, in order.
pub fn delivered_ids(dir: &Path, field: &str) -> Vec<String> {
    std::fs::read_to_string(dir.join("out.ndjson"))
        .unwrap_or_default()
        .lines()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .filter_map(|v| v.get(field).and_then(|x| x.as_str()).map(String::from))
        .collect()
}

/// Check a request log against a budget of at most `n` requests in any window of `per`. Times
/// are arrival times at the server, so the window is shortened by 25 ms of network jitter.
pub fn assert_within_window(times: &[std::time::Instant], n: usize, per: std::time::Duration) {
    let per = per.saturating_sub(std::time::Duration::from_millis(25));
    let mut sorted = times.to_vec();
    sorted.sort();
    for i in 0..sorted.len() {
        let in_window = sorted[i..]
            .iter()
            .take_while(|t| t.duration_since(sorted[i]) < per)
            .count();
        assert!(
            in_window <= n,
            "{in_window} requests within {per:?} exceed the budget of {n}"
        );
    }
}
