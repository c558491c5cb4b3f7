//! SIGTERM drains and checkpoints: after a graceful stop the checkpoint covers exactly what the
//! destination received, so a restart neither loses nor repeats a record.

#[path = "common/child.rs"]
mod child;

use std::collections::BTreeMap;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use siembridge::api::{BatchSpec, EventFormat, FileSpec, ReplaySource, SiemDestinationSpec};
use siembridge::config::{
    CheckpointConfig, CollectorConfig, DeadLetterConfig, Route, SecretSource, SourceConfig, CONFIG_VERSION,
};

fn checkpoint_line(dir: &std::path::Path) -> u64 {
    let v: serde_json::Value =
        serde_json::from_slice(&std::fs::read(dir.join("checkpoints/replay.json")).unwrap()).unwrap();
    v["position"]
        .as_str()
        .unwrap()
        .rsplit_once('@')
        .unwrap()
        .1
        .parse()
        .unwrap()
}

#[test]
fn sigterm_drains_and_checkpoints_what_was_delivered() {
    let dir = tempfile::tempdir().unwrap();
    let records = dir.path().join("r.ndjson");
    let total = 5_000u64;
    let text: String = (1..=total).map(|i| format!("{{\"id\":{i}}}\n")).collect();
    std::fs::write(&records, text).unwrap();
    let out = dir.path().join("out.ndjson");
    let config = CollectorConfig {
        version: CONFIG_VERSION.to_string(),
        collector: "term".into(),
        namespace: "default".into(),
        source: SourceConfig::Replay(ReplaySource {
            paths: vec![records.display().to_string()],
            rate_per_second: Some(1000),
            ..Default::default()
        }),
        routes: vec![Route {
            log_source: "ls".into(),
            destinations: vec!["out".into()],
            ..Default::default()
        }],
        destinations: BTreeMap::from([(
            "out".to_string(),
            SiemDestinationSpec {
                file: Some(FileSpec {
                    path: out.display().to_string(),
                    max_bytes: 1 << 30,
                }),
                format: EventFormat::Raw,
                batch: BatchSpec {
                    max_events: 50,
                    max_bytes: 1 << 20,
                    max_latency_ms: 500,
                },
                ..Default::default()
            },
        )]),
        checkpoint: CheckpointConfig::File {
            dir: dir.path().join("checkpoints").display().to_string(),
        },
        secrets: SecretSource::Environment,
        dead_letter: DeadLetterConfig::in_dir(dir.path().join("dl").display().to_string()),
        telemetry: Default::default(),
        report: None,
    };
    let cfg = dir.path().join("c.yaml");
    std::fs::write(&cfg, serde_yaml::to_string(&config).unwrap()).unwrap();
    let mut child = child::Reaped(
        Command::new(env!("CARGO_BIN_EXE_siembridge"))
            .args(["collector", "--config"])
            .arg(&cfg)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap(),
    );
    std::thread::sleep(Duration::from_millis(1500));
    let status = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(status.success());
    let deadline = Instant::now() + Duration::from_secs(20);
    let exit = loop {
        if let Some(s) = child.try_wait().unwrap() {
            break s;
        }
        assert!(Instant::now() < deadline, "collector did not stop on SIGTERM");
        std::thread::sleep(Duration::from_millis(20));
    };
    assert!(exit.success(), "graceful stop exits 0");
    let delivered: Vec<u64> = std::fs::read_to_string(&out)
        .unwrap()
        .lines()
        .map(|l| {
            serde_json::from_str::<serde_json::Value>(l).unwrap()["id"]
                .as_u64()
                .unwrap()
        })
        .collect();
    assert!(
        !delivered.is_empty() && (delivered.len() as u64) < total,
        "stopped mid-replay"
    );
    assert_eq!(delivered, (1..=delivered.len() as u64).collect::<Vec<_>>());
    assert_eq!(
        checkpoint_line(dir.path()),
        delivered.len() as u64,
        "the checkpoint covers exactly what was delivered (the partial batch was drained)"
    );
}
