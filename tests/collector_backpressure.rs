//! Back-pressure and failure isolation: a stalled destination bounds the queue, the source and
//! the memory of the collector; with `whenFull: deadLetter` it does not hold up the others.

use std::collections::BTreeMap;
use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use siembridge::api::{
    BatchSpec, BufferSpec, EventFormat, FileSpec, HttpSpec, OverflowPolicy, RetrySpec, SiemDestinationSpec, StdoutSpec,
};
use siembridge::collector::destinations::{Destination, Event, SendOutcome};
use siembridge::collector::Collector;
use siembridge::config::CollectorConfig;
use tokio_util::sync::CancellationToken;

mod common;

/// A destination that never answers.
struct Stalled {
    calls: AtomicUsize,
}

#[async_trait]
impl Destination for Stalled {
    async fn send(&self, _batch: &[Event]) -> SendOutcome {
        self.calls.fetch_add(1, Ordering::Relaxed);
        std::future::pending().await
    }
}

fn destination(buffer: u32, when_full: OverflowPolicy) -> SiemDestinationSpec {
    SiemDestinationSpec {
        stdout: Some(StdoutSpec::default()),
        format: EventFormat::Raw,
        batch: BatchSpec {
            max_events: 100,
            max_bytes: 1024 * 1024,
            max_latency_ms: 10,
        },
        retry: RetrySpec {
            request_timeout_ms: 600_000,
            ..Default::default()
        },
        buffer: BufferSpec {
            max_events: buffer,
            when_full,
        },
        concurrency: 2,
        ..Default::default()
    }
}

fn base_config(dir: &Path, records: &Path, destinations: BTreeMap<String, SiemDestinationSpec>) -> CollectorConfig {
    common::replay_config(dir, records, "entra", destinations)
}

fn write_records(path: &Path, n: usize, pad: usize) {
    let pad = "x".repeat(pad);
    let mut text = String::with_capacity(n * (pad.len() + 60));
    for i in 1..=n {
        text.push_str(&format!(
            "{{\"id\":{i},\"category\":\"SignInLogs\",\"pad\":\"{pad}\"}}\n"
        ));
    }
    std::fs::write(path, text).unwrap();
}

fn metric(text: &str, name: &str) -> f64 {
    text.lines()
        .filter(|l| l.starts_with(name))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stalled_destination_bounds_the_queue_and_stops_the_source() {
    let dir = tempfile::tempdir().unwrap();
    let records = dir.path().join("r.ndjson");
    write_records(&records, 20_000, 50);
    let config = base_config(
        dir.path(),
        &records,
        BTreeMap::from([("stuck".to_string(), destination(500, OverflowPolicy::Block))]),
    );
    let stalled = Arc::new(Stalled {
        calls: AtomicUsize::new(0),
    });
    let collector = Collector::new(config)
        .with_destination("stuck", stalled.clone())
        .with_drain_timeout(Duration::from_millis(200));
    let registry = collector.registry().clone();
    let shutdown = CancellationToken::new();
    let run = tokio::spawn(collector.run(shutdown.clone()));
    tokio::time::sleep(Duration::from_millis(1500)).await;

    let text = String::from_utf8(
        prometheus::TextEncoder::new()
            .encode_to_string(&registry.gather())
            .unwrap()
            .into_bytes(),
    )
    .unwrap();
    let depth = metric(&text, "siembridge_destination_queue_depth{");
    let received = metric(&text, "siembridge_collector_events_received_total{");
    let units = metric(&text, "siembridge_collector_source_units_total{");
    eprintln!("stalled: queue depth {depth}, received {received}, units read {units}");
    assert!(depth > 0.0 && depth <= 500.0, "queue depth {depth} exceeds the buffer");
    assert!(received <= 501.0, "router took {received} events for a buffer of 500");
    assert!(
        units <= 500.0 + 512.0,
        "source read {units} units while the destination is stalled"
    );
    assert_eq!(
        stalled.calls.load(Ordering::Relaxed),
        2,
        "two batches in flight (concurrency 2)"
    );

    shutdown.cancel();
    let summary = run.await.unwrap().unwrap();
    assert!(!summary.fully_checkpointed);
    assert!(
        summary.positions.is_empty(),
        "nothing delivered, nothing checkpointed: {summary:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn overflow_to_dead_letter_keeps_the_other_destination_flowing() {
    let dir = tempfile::tempdir().unwrap();
    let records = dir.path().join("r.ndjson");
    let total = 5_000;
    write_records(&records, total, 20);
    let out = dir.path().join("out.ndjson");
    let mut healthy = destination(200, OverflowPolicy::Block);
    healthy.stdout = None;
    healthy.file = Some(FileSpec {
        path: out.display().to_string(),
        max_bytes: 1 << 30,
    });
    let config = base_config(
        dir.path(),
        &records,
        BTreeMap::from([
            ("stuck".to_string(), destination(300, OverflowPolicy::DeadLetter)),
            ("archive".to_string(), healthy),
        ]),
    );
    let collector = Collector::new(config)
        .with_destination(
            "stuck",
            Arc::new(Stalled {
                calls: AtomicUsize::new(0),
            }),
        )
        .with_drain_timeout(Duration::from_millis(200));
    let shutdown = CancellationToken::new();
    let run = tokio::spawn(collector.run(shutdown.clone()));
    // The healthy destination gets everything although the other one never answers.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    loop {
        let n = std::fs::read_to_string(&out).map(|t| t.lines().count()).unwrap_or(0);
        if n == total {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "healthy destination got {n} of {total}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    shutdown.cancel();
    run.await.unwrap().unwrap();
    let mut dead = 0;
    for f in std::fs::read_dir(dir.path().join("dead-letter")).unwrap() {
        let text = std::fs::read_to_string(f.unwrap().path()).unwrap();
        for l in text.lines() {
            let v: serde_json::Value = serde_json::from_str(l).unwrap();
            assert_eq!(v["stage"], "overflow");
            assert_eq!(v["destination"], "stuck");
            dead += 1;
        }
    }
    assert_eq!(
        dead,
        total - 300,
        "everything beyond the 300-event buffer is dead-lettered"
    );
}

/// The built binary under a receiver that never answers: queue depth and peak RSS stay bounded
/// while the replay file is far larger than both.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn collector_process_memory_stays_bounded_under_a_stalled_receiver() {
    let dir = tempfile::tempdir().unwrap();
    let records = dir.path().join("big.ndjson");
    let n = 80_000;
    write_records(&records, n, 1000); // about 80 MB
    let file_bytes = std::fs::metadata(&records).unwrap().len();

    let app = axum::Router::new().route(
        "/ingest",
        axum::routing::post(|| async {
            std::future::pending::<()>().await;
            "never"
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/ingest", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    let metrics_port = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap().port()
    };
    let mut dest = destination(1000, OverflowPolicy::Block);
    dest.stdout = None;
    dest.http = Some(HttpSpec {
        url,
        ..Default::default()
    });
    let mut config = base_config(dir.path(), &records, BTreeMap::from([("siem".to_string(), dest)]));
    config.telemetry.listen = Some(format!("127.0.0.1:{metrics_port}"));
    let config_path = dir.path().join("c.yaml");
    std::fs::write(&config_path, serde_yaml::to_string(&config).unwrap()).unwrap();
    let mut child = common::child::Reaped(
        Command::new(env!("CARGO_BIN_EXE_siembridge"))
            .args(["collector", "--config"])
            .arg(&config_path)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap(),
    );
    tokio::time::sleep(Duration::from_secs(3)).await;
    let body = reqwest::get(format!("http://127.0.0.1:{metrics_port}/metrics"))
        .await
        .and_then(|r| r.error_for_status());
    let status = std::fs::read_to_string(format!("/proc/{}/status", child.id())).unwrap_or_default();
    let _ = child.kill();
    let _ = child.wait();
    let text = body.unwrap().text().await.unwrap();
    let hwm_kb: u64 = status
        .lines()
        .find(|l| l.starts_with("VmHWM:"))
        .and_then(|l| l.split_whitespace().nth(1)?.parse().ok())
        .expect("VmHWM in /proc/<pid>/status");
    let depth = metric(&text, "siembridge_destination_queue_depth{");
    let units = metric(&text, "siembridge_collector_source_units_total{");
    eprintln!(
        "stalled receiver: file {} MB, queue depth {depth}, units read {units}, peak RSS {} MB",
        file_bytes / 1_000_000,
        hwm_kb / 1024
    );
    assert!(depth > 0.0 && depth <= 1000.0, "queue depth {depth}");
    assert!(units <= 1000.0 + 512.0, "source read {units} units while stalled");
    assert!(
        hwm_kb * 1024 < file_bytes / 2,
        "peak RSS {hwm_kb} kB is not bounded by the queue (file {file_bytes} bytes)"
    );
    assert!(hwm_kb < 64 * 1024, "peak RSS {hwm_kb} kB over 64 MB");
}
