//! Pipeline throughput and memory benchmark (plain binary, `cargo bench --bench pipeline`).
//!
//! 1. Peak RSS of a collector whose destination is stalled: the replay file is much larger than
//!    the destination buffer, so memory must stay near the buffer's size (measured first, so the
//!    rest of the run does not raise the high-water mark).
//! 2. Throughput of one collector on one core (current-thread runtime): replay of realistic
//!    diagnostic records (Entra sign-ins and audit, Intune, Defender; 1-2 KB each, ten to an Event
//!    Hubs body) through decode -> normalize (ECS) -> encode (NDJSON) to a destination that
//!    discards, against plain `serde_json` parse + serialize of the same bytes in the same run.
//!
//! `BENCH_RECORDS` sets the record count (default 100000).

#![recursion_limit = "256"]

use std::collections::BTreeMap;
use std::io::Write;
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use async_trait::async_trait;
use siembridge::api::{BatchSpec, BufferSpec, EventFormat, ReplaySource, SiemDestinationSpec, StdoutSpec};
use siembridge::collector::destinations::{http::encode, Destination, Event, SendOutcome};
use siembridge::collector::Collector;
use siembridge::config::{
    CheckpointConfig, CollectorConfig, DeadLetterConfig, Route, SecretSource, SourceConfig, CONFIG_VERSION,
};
use tokio_util::sync::CancellationToken;

#[path = "common/records.rs"]
mod records;

use records::{peak_rss_mib, process_cpu_seconds, record, run_child, serde_json_baseline};

const PER_BODY: usize = 10;

/// Write `n` records, ten to an Event Hubs body, one body a line; returns (bytes, bodies).
fn write_records(path: &Path, n: usize) -> u64 {
    let mut f = std::io::BufWriter::new(std::fs::File::create(path).expect("create records"));
    let mut bytes = 0;
    let mut i = 0;
    while i < n {
        let records: Vec<_> = (i..(i + PER_BODY).min(n)).map(record).collect();
        let line = serde_json::to_string(&serde_json::json!({ "records": records })).expect("json");
        bytes += line.len() as u64 + 1;
        writeln!(f, "{line}").expect("write");
        i += PER_BODY;
    }
    f.flush().expect("flush");
    bytes
}

/// Discards batches after encoding them as the `http` destination would.
#[derive(Default)]
struct Discard {
    events: AtomicU64,
    bytes: AtomicU64,
}

#[async_trait]
impl Destination for Discard {
    async fn send(&self, batch: &[Event]) -> SendOutcome {
        let body = encode(batch, siembridge::api::HttpEncoding::Ndjson);
        self.events.fetch_add(batch.len() as u64, Ordering::Relaxed);
        self.bytes
            .fetch_add(std::hint::black_box(body).len() as u64, Ordering::Relaxed);
        SendOutcome::Delivered
    }
}

/// Never answers.
struct Stalled;

#[async_trait]
impl Destination for Stalled {
    async fn send(&self, _batch: &[Event]) -> SendOutcome {
        std::future::pending().await
    }
}

fn config(dir: &Path, records: &Path, format: EventFormat, buffer: BufferSpec) -> CollectorConfig {
    let dest = SiemDestinationSpec {
        stdout: Some(StdoutSpec::default()), // replaced by the benchmark's destination
        format,
        batch: BatchSpec {
            max_events: 500,
            max_bytes: 4 * 1024 * 1024,
            max_latency_ms: 100,
        },
        buffer,
        ..Default::default()
    };
    CollectorConfig {
        version: CONFIG_VERSION.to_string(),
        collector: "bench".into(),
        namespace: "default".into(),
        source: SourceConfig::Replay(ReplaySource {
            paths: vec![records.display().to_string()],
            ..Default::default()
        }),
        routes: vec![Route {
            log_source: "bench".into(),
            destinations: vec!["sink".into()],
            ..Default::default()
        }],
        destinations: BTreeMap::from([("sink".to_string(), dest)]),
        checkpoint: CheckpointConfig::File {
            dir: dir.join(format!("checkpoints-{format:?}")).display().to_string(),
        },
        secrets: SecretSource::Environment,
        dead_letter: DeadLetterConfig::in_dir(dir.join("dead-letter").display().to_string()),
        telemetry: Default::default(),
        report: None,
    }
}

fn vm_hwm_kb() -> Option<u64> {
    Some((peak_rss_mib() * 1024.0) as u64)
}

fn runtime(cores: usize) -> tokio::runtime::Runtime {
    if cores <= 1 {
        tokio::runtime::Builder::new_current_thread().enable_all().build()
    } else {
        tokio::runtime::Builder::new_multi_thread()
            .worker_threads(cores)
            .enable_all()
            .build()
    }
    .expect("runtime")
}

/// The child: one collector run over the replay file, printing its CPU, wall time and peak RSS.
fn child() {
    let var = |k: &str| std::env::var(k).expect(k);
    let format = if var("BENCH_FORMAT") == "raw" {
        EventFormat::Raw
    } else {
        EventFormat::Ecs
    };
    let cores: usize = var("BENCH_CORES").parse().expect("cores");
    let n: usize = var("BENCH_RECORDS").parse().expect("records");
    let dir = std::path::PathBuf::from(var("BENCH_DIR"));
    let records = std::path::PathBuf::from(var("BENCH_FILE"));
    let rt = runtime(cores);
    let discard = Arc::new(Discard::default());
    let cpu0 = process_cpu_seconds();
    let started = Instant::now();
    let summary = rt
        .block_on(
            Collector::new(config(&dir, &records, format, BufferSpec::default()))
                .with_destination("sink", discard.clone())
                .with_checkpoint_interval(Duration::from_secs(1))
                .run(CancellationToken::new()),
        )
        .expect("collector run");
    let wall = started.elapsed().as_secs_f64();
    let cpu = process_cpu_seconds() - cpu0;
    assert_eq!(summary.records as usize, n);
    assert_eq!(discard.events.load(Ordering::Relaxed) as usize, n);
    println!(
        "RESULT records={n} cpu={cpu:.3} wall={wall:.3} rss={:.1} out={}",
        peak_rss_mib(),
        discard.bytes.load(Ordering::Relaxed)
    );
}

fn main() {
    if std::env::var("BENCH_CHILD").is_ok() {
        return child();
    }
    // `cargo bench` passes `--bench`; `cargo test --all-targets` runs this binary without it,
    // as a quick smoke test of the same code.
    let bench_mode = std::env::args().any(|a| a == "--bench");
    let n: usize = std::env::var("BENCH_RECORDS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(if bench_mode { 100_000 } else { 2_000 });
    let stall = if bench_mode {
        Duration::from_secs(2)
    } else {
        Duration::from_millis(300)
    };
    let dir = tempfile::tempdir().expect("tempdir");
    let records = dir.path().join("records.ndjson");
    let file_bytes = write_records(&records, n);
    println!(
        "pipeline bench: {n} records, {:.1} MB ({:.0} bytes/record, {PER_BODY} per Event Hubs body)",
        file_bytes as f64 / 1e6,
        file_bytes as f64 / n as f64
    );

    // 1. Memory under a stalled destination.
    let rt = runtime(1);
    let buffer = BufferSpec::default();
    let bound = buffer.max_events;
    let hwm_before = vm_hwm_kb().unwrap_or(0);
    let (depth, hwm) = rt.block_on(async {
        let collector = Collector::new(config(dir.path(), &records, EventFormat::Ecs, buffer))
            .with_destination("sink", Arc::new(Stalled))
            .with_drain_timeout(Duration::from_millis(10));
        let registry = collector.registry().clone();
        let stop = CancellationToken::new();
        let run = tokio::spawn(collector.run(stop.clone()));
        tokio::time::sleep(stall).await;
        let depth: i64 = registry
            .gather()
            .iter()
            .filter(|m| m.name() == "siembridge_destination_queue_depth")
            .flat_map(|m| m.get_metric().iter().map(|x| x.get_gauge().get_value() as i64))
            .sum();
        let hwm = vm_hwm_kb().unwrap_or(0);
        stop.cancel();
        let _ = run.await;
        (depth, hwm)
    });
    drop(rt);
    println!(
        "stalled destination: queue depth {depth} (bound {bound}), peak RSS {:.1} MB (VmHWM; {:.1} MB before the collector started; replay file {:.1} MB)",
        hwm as f64 / 1024.0,
        hwm_before as f64 / 1024.0,
        file_bytes as f64 / 1e6
    );

    // 2. Throughput: each run in a child process of its own (clean peak RSS, its own CPU time),
    // then once more under `strace -f -c` for the system calls per record.
    let text = std::fs::read_to_string(&records).expect("read");
    let lines: Vec<&str> = text.lines().collect();
    let (base_rps, base_bps) = serde_json_baseline(&lines, n);
    println!(
        "serde_json parse+serialize baseline (same bytes, this run): {base_rps:.0} records/s, {:.1} MB/s per core",
        base_bps / 1e6
    );
    let strace = bench_mode || std::env::var("BENCH_STRACE").is_ok();
    let mut wall_one = std::collections::BTreeMap::new();
    for format in ["ecs", "raw"] {
        for cores in [1usize, 2] {
            let run_dir = tempfile::tempdir_in(dir.path()).expect("run dir");
            let env = vec![
                ("BENCH_CHILD", "1".to_string()),
                ("BENCH_FORMAT", format.to_string()),
                ("BENCH_CORES", cores.to_string()),
                ("BENCH_RECORDS", n.to_string()),
                ("BENCH_DIR", run_dir.path().display().to_string()),
                ("BENCH_FILE", records.display().to_string()),
            ];
            let (r, _) = run_child(&env, false);
            let (cpu, wall, rss) = (
                r.get("cpu").copied().unwrap_or(f64::NAN),
                r.get("wall").copied().unwrap_or(f64::NAN),
                r.get("rss").copied().unwrap_or(f64::NAN),
            );
            let per_core = n as f64 / cpu;
            let syscalls = if strace && cores == 1 {
                let strace_dir = tempfile::tempdir_in(dir.path()).expect("run dir");
                let mut env = env.clone();
                env[4].1 = strace_dir.path().display().to_string();
                run_child(&env, true).1
            } else {
                None
            };
            let scaling = if cores == 1 {
                wall_one.insert(format, wall);
                String::new()
            } else {
                format!("; {:.2}x the wall-clock rate of one core", wall_one[format] / wall)
            };
            println!(
                "format {format}, {cores} core(s): {per_core:.0} events/s per core, {:.1} MB/s per core ({cpu:.2} s CPU), {:.0} events/s wall ({wall:.2} s); peak RSS {rss:.1} MiB; syscalls/record {}; ratio to serde_json per core {:.2}{scaling}",
                file_bytes as f64 / 1e6 / cpu,
                n as f64 / wall,
                syscalls.map(|c| format!("{:.3}", c as f64 / n as f64)).unwrap_or_else(|| "n/a".into()),
                per_core / base_rps,
            );
        }
    }
}
