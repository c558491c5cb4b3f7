//! Collector configurations reading the Event Hubs stand-in, for the Event Hubs tests.
#![allow(dead_code)]

use std::collections::BTreeMap;
use std::path::Path;

use siembridge::api::{
    ConsumerGroupSpec, EventFormat, EventHubCredentials, EventHubRef, FileSpec, SecretKeySelector, SiemDestinationSpec,
};
use siembridge::config::{
    CheckpointConfig, CollectorConfig, DeadLetterConfig, ReportTarget, Route, SecretSource, SourceConfig,
    TelemetryConfig, CONFIG_VERSION,
};

/// The Secret key the tests put the connection string under.
pub fn connection_string_ref() -> SecretKeySelector {
    SecretKeySelector {
        name: "eventhub".into(),
        key: "connection-string".into(),
    }
}

/// Environment variable holding the connection string in standalone mode.
pub fn connection_string_env() -> String {
    SecretSource::env_var_name(&connection_string_ref())
}

/// A ConsumerGroup spec for the stand-in at `endpoint`.
pub fn consumer_group_spec(namespace: &str, hub: &str, group: &str, endpoint: &str) -> ConsumerGroupSpec {
    ConsumerGroupSpec {
        event_hub: EventHubRef {
            fully_qualified_namespace: namespace.into(),
            hub_name: hub.into(),
            consumer_group: group.into(),
            custom_endpoint: Some(endpoint.into()),
        },
        credentials: EventHubCredentials {
            connection_string: Some(connection_string_ref()),
            entra: None,
        },
        replicas: 1,
        prefetch: 300,
        ..Default::default()
    }
}

/// A collector reading `spec` into the raw file `out`, with checkpoints and ownership (shared by
/// every process given the same `shared_dir`) under `shared_dir`.
pub fn eventhub_config(
    spec: ConsumerGroupSpec,
    shared_dir: &Path,
    out: &Path,
    report: Option<&Path>,
) -> CollectorConfig {
    let mut destinations = BTreeMap::new();
    destinations.insert(
        "file".to_string(),
        SiemDestinationSpec {
            file: Some(FileSpec {
                path: out.display().to_string(),
                max_bytes: 1 << 40,
            }),
            format: EventFormat::Raw,
            ..Default::default()
        },
    );
    CollectorConfig {
        version: CONFIG_VERSION.to_string(),
        collector: "eventhub-test".into(),
        namespace: "default".into(),
        source: SourceConfig::EventHub {
            consumer_group: "entra".into(),
            spec,
        },
        routes: vec![Route {
            log_source: "entra".into(),
            destinations: vec!["file".into()],
            ..Default::default()
        }],
        destinations,
        checkpoint: CheckpointConfig::File {
            dir: shared_dir.join("checkpoints").display().to_string(),
        },
        secrets: SecretSource::Environment,
        dead_letter: DeadLetterConfig::in_dir(out.with_extension("dead-letter").display().to_string()),
        telemetry: TelemetryConfig::default(),
        report: report.map(|p| ReportTarget::File {
            path: p.display().to_string(),
        }),
    }
}

/// A diagnostic-settings body with one Entra sign-in record carrying `n` as correlation id.
pub fn diagnostic_body(n: u64) -> bytes::Bytes {
    bytes::Bytes::from(format!(
        "{{\"records\":[{{\"time\":\"2026-01-01T10:00:05Z\",\"resourceId\":\"/tenants/11111111-2222-3333-4444-555555555555/providers/Microsoft.aadiam\",\"operationName\":\"Sign-in activity\",\"category\":\"SignInLogs\",\"tenantId\":\"11111111-2222-3333-4444-555555555555\",\"resultType\":\"0\",\"correlationId\":\"{n}\",\"callerIpAddress\":\"198.51.100.7\",\"properties\":{{\"id\":\"aaaaaaaa-3333-4333-8333-{n:012}\",\"userPrincipalName\":\"alex@contoso.example\"}}}}]}}"
    ))
}

/// Correlation ids found in the raw output files, with how often each was seen.
pub fn delivered_ids(files: &[&Path]) -> BTreeMap<u64, u32> {
    let mut seen = BTreeMap::new();
    for f in files {
        let Ok(text) = std::fs::read_to_string(f) else { continue };
        for line in text.lines() {
            if let Some(i) = line.find("\"correlationId\":\"") {
                let rest = &line[i + 17..];
                if let Some(end) = rest.find('"') {
                    if let Ok(n) = rest[..end].parse::<u64>() {
                        *seen.entry(n).or_insert(0) += 1;
                    }
                }
            }
        }
    }
    seen
}
