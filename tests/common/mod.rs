//! Scaffolding shared by the collector tests. Each test binary uses a part of it.
#![allow(dead_code)]

pub mod entra;

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
