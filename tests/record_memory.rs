//! Memory stays bounded whatever the records contain: adversarial streams, each measured as
//! the peak resident set of this test process (`VmHWM` of `/proc/self/status`, reset before each
//! stream through `/proc/self/clear_refs`), must stay under 128 MiB.
//!
//! 1. 4,096 records with distinct 64 KB keys through the normalizer (its key and shape caches).
//! 2. 200,000 distinct categories for the `category` label of
//!    `siembridge_collector_records_unmapped_total` (20,000 of them as records through the
//!    collector, all of them through the metrics it counts with).
//! 3. 10,000 units of an API source in flight at once, each with the checkpoint state of its id
//!    sets (shared, not copied per unit).
//! 4. One 50 MB record replayed to three destinations (dead-lettered by `maxRecordBytes`; the
//!    dead letter keeps its first 64 KiB).
//!
//! One test function, so nothing else runs in the process while it measures.

use std::collections::BTreeMap;
use std::io::Write;
use std::path::Path;

use siembridge::api::{BatchSpec, EventFormat, FileSpec, ReplaySource, SiemDestinationSpec};
use siembridge::collector::ack::StreamTracker;
use siembridge::collector::metrics::{CollectorMetrics, MAX_CONTENT_LABELS};
use siembridge::collector::sources::delivered::DeliveredIds;
use siembridge::collector::Collector;
use siembridge::config::{
    CheckpointConfig, CollectorConfig, DeadLetterConfig, Route, SecretSource, SourceConfig, TelemetryConfig,
    CONFIG_VERSION,
};
use siembridge::normalize::{normalize_json_recognized, parse_record, recognize, EcsContext, SourceHint};
use tokio_util::sync::CancellationToken;

const LIMIT_MIB: u64 = 128;

/// Peak resident set since the last reset, in KiB.
fn peak_kib() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .expect("VmHWM in /proc/self/status")
}

fn reset_peak() {
    // "5" resets the peak resident set (Linux 4.0 and later).
    std::fs::write("/proc/self/clear_refs", "5").expect("reset VmHWM");
}

fn measure(name: &str, f: impl FnOnce() -> String) -> u64 {
    reset_peak();
    let started = std::time::Instant::now();
    let what = f();
    let peak = peak_kib() / 1024;
    println!(
        "{name}: peak RSS {peak} MiB in {:.1} s ({what})",
        started.elapsed().as_secs_f64()
    );
    peak
}

fn collector(dir: &Path, records: &Path, destinations: &[(&str, EventFormat, bool)]) -> CollectorConfig {
    let destinations: BTreeMap<String, SiemDestinationSpec> = destinations
        .iter()
        .map(|(name, format, keep_original)| {
            (
                name.to_string(),
                SiemDestinationSpec {
                    file: Some(FileSpec {
                        path: dir.join(format!("{name}.ndjson")).display().to_string(),
                        max_bytes: 1 << 30,
                    }),
                    format: *format,
                    keep_original: *keep_original,
                    batch: BatchSpec {
                        max_events: 1000,
                        max_bytes: 1 << 20,
                        max_latency_ms: 50,
                    },
                    ..Default::default()
                },
            )
        })
        .collect();
    CollectorConfig {
        version: CONFIG_VERSION.to_string(),
        collector: "memory".into(),
        namespace: "default".into(),
        source: SourceConfig::Replay(ReplaySource {
            paths: vec![records.display().to_string()],
            ..Default::default()
        }),
        routes: vec![Route {
            log_source: "adversarial".into(),
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

fn run(config: CollectorConfig) -> siembridge::collector::RunSummary {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let registry = prometheus::Registry::new();
    let summary = rt
        .block_on(
            Collector::new(config)
                .with_registry(registry.clone())
                .run(CancellationToken::new()),
        )
        .unwrap();
    let series = registry
        .gather()
        .iter()
        .filter(|f| f.name() == "siembridge_collector_records_unmapped_total")
        .map(|f| f.get_metric().len())
        .sum::<usize>();
    println!("  records_unmapped_total series: {series}");
    assert!(series <= MAX_CONTENT_LABELS + 1, "{series} series");
    summary
}

#[test]
fn adversarial_streams_stay_under_128_mib() {
    let dir = tempfile::tempdir().unwrap();
    let mut peaks = Vec::new();

    peaks.push(measure("4,096 records with distinct 64 KB keys", || {
        let mut written = 0usize;
        let filler = "x".repeat(64 * 1024);
        for i in 0..4096 {
            let text = format!(
                r#"{{"time":"2026-11-02T10:00:00Z","category":"SignInLogs","resourceId":"/tenants/t/providers/Microsoft.aadiam","operationName":"Sign-in activity","properties":{{"Key{i:05}{filler}":1}}}}"#
            );
            let p = parse_record(&text).unwrap();
            let r = recognize(&p.value, SourceHint::Diagnostic);
            let ctx = EcsContext {
                source: SourceHint::Diagnostic,
                event_id: Some("e"),
                original: None,
            };
            written += normalize_json_recognized(&p.value, r, &ctx).unwrap().json.len();
        }
        format!("{} MB of ECS written", written >> 20)
    }));

    peaks.push(measure("200,000 distinct categories", || {
        // Through the collector (20,000 records: the label is bounded on the record path)...
        let records = dir.path().join("categories.ndjson");
        let mut f = std::io::BufWriter::new(std::fs::File::create(&records).unwrap());
        for i in 0..20_000 {
            writeln!(
                f,
                r#"{{"time":"2026-11-02T10:00:00Z","category":"Category{i}","resourceId":"/providers/Contoso.Widgets","n":{i}}}"#
            )
            .unwrap();
        }
        f.flush().unwrap();
        drop(f);
        let out = dir.path().join("categories");
        let summary = run(collector(&out, &records, &[("ecs", EventFormat::Ecs, false)]));
        assert!(summary.fully_checkpointed);
        // ...and all 200,000 through the metrics the record path uses (the collector would take
        // half a minute for them in a debug build).
        let registry = prometheus::Registry::new();
        let metrics = CollectorMetrics::register(&registry).unwrap();
        for i in 0..200_000 {
            metrics.count_unmapped(&format!("Category{i}"));
        }
        let series: usize = registry
            .gather()
            .iter()
            .filter(|f| f.name() == "siembridge_collector_records_unmapped_total")
            .map(|f| f.get_metric().len())
            .sum();
        assert!(series <= MAX_CONTENT_LABELS + 1, "{series} series");
        format!("{} records through the collector, {series} series for 200,000 categories", summary.records)
    }));

    peaks.push(measure("one 50 MB record to three destinations", || {
        let records = dir.path().join("huge.ndjson");
        let mut f = std::io::BufWriter::new(std::fs::File::create(&records).unwrap());
        write!(
            f,
            r#"{{"time":"2026-11-02T10:00:00Z","category":"SignInLogs","rid":"huge","blob":""#
        )
        .unwrap();
        let chunk = "0123456789abcdef".repeat(4096);
        for _ in 0..(50 << 20) / chunk.len() {
            f.write_all(chunk.as_bytes()).unwrap();
        }
        writeln!(f, r#""}}"#).unwrap();
        writeln!(
            f,
            r#"{{"time":"2026-11-02T10:00:00Z","category":"SignInLogs","rid":"small"}}"#
        )
        .unwrap();
        f.flush().unwrap();
        drop(f);
        let out = dir.path().join("huge");
        let summary = run(collector(
            &out,
            &records,
            &[
                ("raw", EventFormat::Raw, false),
                ("ecs", EventFormat::Ecs, false),
                ("ecs-original", EventFormat::Ecs, true),
            ],
        ));
        assert!(summary.fully_checkpointed);
        let dead: String = std::fs::read_dir(out.join("dead-letter"))
            .unwrap()
            .map(|e| std::fs::read_to_string(e.unwrap().path()).unwrap())
            .collect();
        assert_eq!(dead.lines().count(), 3, "dead-lettered once per destination");
        assert!(dead
            .lines()
            .all(|l| l.contains("maxRecordBytes") && l.len() < 96 * 1024));
        for name in ["raw", "ecs", "ecs-original"] {
            let got = std::fs::read_to_string(out.join(format!("{name}.ndjson"))).unwrap();
            assert_eq!(got.lines().count(), 1, "{name}: the small record only");
        }
        "dead-lettered at each destination".to_string()
    }));

    // Last: the allocator keeps what this stream held, which would count against the next one.
    peaks.push(measure("10,000 API units in flight", || {
        // Each unit carries the checkpoint state of its moment: the per-minute digest of the ids
        // delivered (bounded by the checkpoint budget whatever the volume), not the ids.
        let mut ids = DeliveredIds::new(1_000_000);
        for i in 0..20_000 {
            ids.insert(&format!("aaaaaaaa-0000-0000-0000-{i:012}"), 1_700_000_000 + i / 2);
        }
        let stream = StreamTracker::new("Audit.General", None);
        let mut held = Vec::new();
        let mut first_state = String::new();
        for unit in 0..10_000i64 {
            for k in 0..5 {
                ids.insert(&format!("bbbbbbbb-0000-0000-{unit:04}-{k:012}"), 1_700_010_000 + unit);
            }
            let text = ids.to_state();
            if unit == 0 {
                first_state = text.clone();
            }
            let state: std::sync::Arc<dyn siembridge::collector::ack::UnitState> =
                std::sync::Arc::new(serde_json::json!({ "ids": text }));
            held.push(stream.register_with_state(format!("p{unit}"), Some(state), 1));
        }
        // The oldest unit's checkpoint state is the digest as it was when that unit was read.
        held[0].ack();
        let state = stream.lock().watermark_state().unwrap().to_json();
        assert_eq!(state["ids"].as_str(), Some(first_state.as_str()));
        format!(
            "{} units open, state {} bytes per unit",
            stream.lock().open_units(),
            first_state.len()
        )
    }));

    for p in &peaks {
        assert!(*p < LIMIT_MIB, "peak RSS {p} MiB >= {LIMIT_MIB} MiB: {peaks:?}");
    }
}
