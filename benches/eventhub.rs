//! Event Hubs source throughput (plain binary, `cargo bench --bench eventhub`).
//!
//! The AMQP stand-in (tests/common/eventhubs.rs) runs on its own runtime threads and serves a hub
//! of 4 partitions holding `BENCH_EVENTS` diagnostic bodies (default 200 000, one Entra sign-in
//! record each, about 600 bytes). One collector reads them on one core (a current-thread runtime
//! on the main thread: the SDK receivers, balancer, decode, route, raw encode) into a destination
//! that discards. Printed: events/s and MB/s per collector core (collector thread CPU time from
//! /proc/thread-self/stat), wall-clock events/s, peak RSS of the process (stand-in included),
//! and the ratio to plain `serde_json` parse + serialize of the same bodies in the same run.

#[path = "../tests/common/mod.rs"]
mod common;
#[path = "../tests/common/eventhub_collector.rs"]
mod eventhub_collector;
#[path = "../tests/common/eventhubs.rs"]
mod eventhubs;

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use async_trait::async_trait;
use bytes::Bytes;
use siembridge::collector::destinations::{Destination, Event, SendOutcome};
use siembridge::collector::Collector;
use tokio_util::sync::CancellationToken;

const NS: &str = "contoso-ns.servicebus.windows.net";
const KEY: &str = "YmVuY2gta2V5";

#[derive(Default)]
struct Discard {
    events: AtomicU64,
    bytes: AtomicU64,
}

#[async_trait]
impl Destination for Discard {
    async fn send(&self, batch: &[Event]) -> SendOutcome {
        self.events.fetch_add(batch.len() as u64, Ordering::Relaxed);
        self.bytes
            .fetch_add(batch.iter().map(|e| e.body.len() as u64).sum(), Ordering::Relaxed);
        SendOutcome::Delivered
    }
}

/// CPU seconds of the calling thread.
fn thread_cpu_seconds() -> f64 {
    let stat = std::fs::read_to_string("/proc/thread-self/stat").unwrap_or_default();
    let after = stat.rsplit_once(')').map(|(_, r)| r).unwrap_or("");
    let fields: Vec<&str> = after.split_whitespace().collect();
    // utime and stime are fields 14 and 15 of stat; after the `)` they are at 11 and 12.
    let ticks: f64 = fields.get(11).and_then(|v| v.parse().ok()).unwrap_or(0.0)
        + fields.get(12).and_then(|v| v.parse().ok()).unwrap_or(0.0);
    ticks / 100.0
}

fn peak_rss_mb() -> f64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    status
        .lines()
        .find(|l| l.starts_with("VmHWM:"))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|kb| kb.parse::<f64>().ok())
        .unwrap_or(0.0)
        / 1024.0
}

fn main() {
    siembridge::tls::install_crypto_provider();
    // `cargo bench` passes `--bench`; `cargo test --all-targets` runs this binary without it, as
    // a quick smoke test of the same code.
    let bench_mode = std::env::args().any(|a| a == "--bench");
    let n: u64 = std::env::var("BENCH_EVENTS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(if bench_mode { 200_000 } else { 5_000 });
    let bodies: Vec<Bytes> = (0..n).map(eventhub_collector::diagnostic_body).collect();
    let total_bytes: u64 = bodies.iter().map(|b| b.len() as u64).sum();

    // Baseline: serde_json parse + serialize of the same bodies, on this thread.
    let cpu0 = thread_cpu_seconds();
    let t0 = Instant::now();
    let mut sink = 0usize;
    for b in &bodies {
        let v: serde_json::Value = serde_json::from_slice(b).expect("valid JSON");
        sink += serde_json::to_vec(&v).expect("serializes").len();
    }
    let baseline_wall = t0.elapsed().as_secs_f64();
    let baseline_cpu = (thread_cpu_seconds() - cpu0).max(baseline_wall.min(0.01));
    assert!(sink > 0);

    // The stand-in on its own threads.
    let standin_rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .expect("runtime");
    let standin = standin_rt.block_on(async {
        let s = eventhubs::EventHubsStandIn::start(NS).await;
        s.state.add_hub("entra-logs", 4, &["bench"]);
        s.state.add_policy("listen", KEY, eventhubs::Rights::LISTEN);
        s.state.publish("entra-logs", None, bodies.clone());
        s
    });
    std::env::set_var(
        eventhub_collector::connection_string_env(),
        standin.connection_string("listen", KEY, Some("entra-logs")),
    );
    std::env::set_var("SIEMBRIDGE_EVENTHUB_BALANCE_INTERVAL_MS", "200");

    // One collector on this thread.
    let dir = tempfile::tempdir().expect("temp dir");
    let mut spec = eventhub_collector::consumer_group_spec(NS, "entra-logs", "bench", &standin.endpoint());
    spec.prefetch = 1000;
    let config = eventhub_collector::eventhub_config(spec, dir.path(), &dir.path().join("unused.ndjson"), None);
    let discard = Arc::new(Discard::default());
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    let cpu1 = thread_cpu_seconds();
    let t1 = Instant::now();
    let d = discard.clone();
    rt.block_on(async move {
        let stop = CancellationToken::new();
        let collector = Collector::new(config).with_destination("file", d.clone());
        let handle = tokio::spawn(collector.run(stop.clone()));
        while d.events.load(Ordering::Relaxed) < n {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        stop.cancel();
        let _ = handle.await;
    });
    let wall = t1.elapsed().as_secs_f64();
    let cpu = (thread_cpu_seconds() - cpu1).max(0.01);
    let mb = total_bytes as f64 / 1e6;
    println!("eventhub bench: {n} events, {mb:.1} MB of bodies, 4 partitions");
    println!(
        "  collector:  {:.0} events/s per core, {:.1} MB/s per core ({cpu:.2} s CPU on its thread), {:.0} events/s wall ({wall:.2} s)",
        n as f64 / cpu,
        mb / cpu,
        n as f64 / wall
    );
    println!(
        "  baseline serde_json parse+serialize: {:.0} events/s, {:.1} MB/s ({baseline_cpu:.2} s CPU)",
        n as f64 / baseline_cpu,
        mb / baseline_cpu
    );
    println!(
        "  ratio collector/baseline (per core): {:.2}",
        (n as f64 / cpu) / (n as f64 / baseline_cpu)
    );
    println!(
        "  peak RSS (process, stand-in and its {mb:.0} MB log included): {:.0} MB",
        peak_rss_mb()
    );
    println!("  delivered {} bytes", discard.bytes.load(Ordering::Relaxed));
    drop(standin);
    standin_rt.shutdown_background();
}
