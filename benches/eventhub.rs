//! Event Hubs source throughput (plain binary, `cargo bench --bench eventhub`).
//!
//! The AMQP stand-in (tests/common/eventhubs.rs) runs in this process on its own runtime thread
//! and serves hubs of 4 partitions holding `BENCH_RECORDS` realistic diagnostic records (default
//! 100 000: Entra sign-ins and audit, Intune, Defender; 1-2 KB each), packed 1, 20 and 100 to an
//! event as diagnostic settings send them (`{"records":[...]}`). The collector runs in a child
//! process (this binary again) on one core (a current-thread runtime) and on two (a two-worker
//! runtime): SDK receivers, balancer, decode, route, raw encode, into a destination that
//! discards. Printed per run: events/s and MB/s per collector core (the child's CPU time),
//! wall-clock events/s, the child's peak RSS, system calls per record (the one-core run again
//! under `strace -f -c`; every thread of the child counted, start-up included), and the ratio
//! to plain `serde_json` parse + serialize of the same bodies in the same run.

#![recursion_limit = "256"]

#[path = "../tests/common/mod.rs"]
mod common;
#[path = "../tests/common/eventhub_collector.rs"]
mod eventhub_collector;
#[path = "../tests/common/eventhubs.rs"]
mod eventhubs;
#[path = "common/records.rs"]
mod records;

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use async_trait::async_trait;
use bytes::Bytes;
use records::{peak_rss_mib, process_cpu_seconds, run_child, serde_json_baseline};
use siembridge::collector::destinations::{Destination, Event, SendOutcome};
use siembridge::collector::Collector;
use tokio_util::sync::CancellationToken;

const NS: &str = "contoso-ns.servicebus.windows.net";
const KEY: &str = "YmVuY2gta2V5";
const GROUPS: [&str; 3] = ["one", "two", "strace"];
/// How long a child may go without delivering a record before the run fails.
const STALL: Duration = Duration::from_secs(60);

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

/// The child: one collector reading a hub until it has delivered every record.
fn child() {
    siembridge::tls::install_crypto_provider();
    let var = |k: &str| std::env::var(k).expect(k);
    let cores: usize = var("BENCH_CORES").parse().expect("cores");
    let n: u64 = var("BENCH_RECORDS").parse().expect("records");
    let dir = std::path::PathBuf::from(var("BENCH_DIR"));
    let mut spec =
        eventhub_collector::consumer_group_spec(NS, &var("BENCH_HUB"), &var("BENCH_GROUP"), &var("BENCH_ENDPOINT"));
    spec.prefetch = 1000;
    let config = eventhub_collector::eventhub_config(spec, &dir, &dir.join("unused.ndjson"), None);
    let rt = if cores <= 1 {
        tokio::runtime::Builder::new_current_thread().enable_all().build()
    } else {
        tokio::runtime::Builder::new_multi_thread()
            .worker_threads(cores)
            .enable_all()
            .build()
    }
    .expect("runtime");
    let discard = Arc::new(Discard::default());
    let cpu0 = process_cpu_seconds();
    let t0 = Instant::now();
    let d = discard.clone();
    rt.block_on(async move {
        let stop = CancellationToken::new();
        let collector = Collector::new(config).with_destination("file", d.clone());
        let handle = tokio::spawn(collector.run(stop.clone()));
        // A run that stops making progress is a failure, not a hang.
        let (mut seen, mut progress_at) = (0, Instant::now());
        while seen < n {
            tokio::time::sleep(Duration::from_millis(5)).await;
            let now = d.events.load(Ordering::Relaxed);
            if now > seen {
                (seen, progress_at) = (now, Instant::now());
            } else if progress_at.elapsed() > STALL {
                eprintln!("no record delivered for {} s: {seen} of {n} delivered", STALL.as_secs());
                std::process::exit(1);
            }
        }
        stop.cancel();
        let _ = handle.await;
    });
    let wall = t0.elapsed().as_secs_f64();
    let cpu = process_cpu_seconds() - cpu0;
    println!(
        "RESULT records={} cpu={cpu:.3} wall={wall:.3} rss={:.1}",
        discard.events.load(Ordering::Relaxed),
        peak_rss_mib()
    );
}

fn main() {
    if std::env::var("BENCH_CHILD").is_ok() {
        return child();
    }
    siembridge::tls::install_crypto_provider();
    // `cargo bench` passes `--bench`; `cargo test --all-targets` runs this binary without it, as
    // a quick smoke test of the same code.
    let bench_mode = std::env::args().any(|a| a == "--bench");
    let n: usize = std::env::var("BENCH_RECORDS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(if bench_mode { 100_000 } else { 2_000 });
    let strace = bench_mode || std::env::var("BENCH_STRACE").is_ok();

    // The stand-in on its own thread.
    let standin_rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .expect("runtime");
    let standin = standin_rt.block_on(async {
        let s = eventhubs::EventHubsStandIn::start(NS).await;
        s.state.add_policy("listen", KEY, eventhubs::Rights::LISTEN);
        s
    });
    println!("eventhub bench: {n} records (1-2 KB each) per run, hubs of 4 partitions");
    for per_event in [1usize, 20, 100] {
        let hub = format!("hub-{per_event}");
        let bodies: Vec<Bytes> = records::bodies(n, per_event).into_iter().map(Bytes::from).collect();
        let mb = bodies.iter().map(|b| b.len()).sum::<usize>() as f64 / 1e6;
        let (base_rps, _) = serde_json_baseline(&bodies, n);
        standin.state.add_hub(&hub, 4, &GROUPS);
        standin.state.publish(&hub, None, bodies);
        println!(
            "{per_event} record(s)/event: {mb:.1} MB; serde_json parse+serialize {base_rps:.0} records/s per core"
        );
        let mut wall_one = f64::NAN;
        for (group, cores, under_strace) in [("one", 1usize, false), ("two", 2, false), ("strace", 1, true)] {
            if under_strace && !strace {
                continue;
            }
            let dir = tempfile::tempdir().expect("temp dir");
            let env = vec![
                ("BENCH_CHILD", "1".to_string()),
                ("BENCH_CORES", cores.to_string()),
                ("BENCH_RECORDS", n.to_string()),
                ("BENCH_DIR", dir.path().display().to_string()),
                ("BENCH_HUB", hub.clone()),
                ("BENCH_GROUP", group.to_string()),
                ("BENCH_ENDPOINT", standin.endpoint()),
                (
                    eventhub_collector::connection_string_env().leak(),
                    standin.connection_string("listen", KEY, Some(&hub)),
                ),
                ("SIEMBRIDGE_EVENTHUB_BALANCE_INTERVAL_MS", "200".to_string()),
            ];
            let (r, calls) = run_child(&env, under_strace);
            if under_strace {
                println!(
                    "  syscalls/record (one core, every thread of the collector process): {}",
                    calls
                        .map(|c| format!("{:.3}", c as f64 / n as f64))
                        .unwrap_or_else(|| "n/a".into())
                );
                continue;
            }
            let (cpu, wall, rss) = (
                r.get("cpu").copied().unwrap_or(f64::NAN),
                r.get("wall").copied().unwrap_or(f64::NAN),
                r.get("rss").copied().unwrap_or(f64::NAN),
            );
            let per_core = n as f64 / cpu;
            let scaling = if cores == 1 {
                wall_one = wall;
                String::new()
            } else {
                format!("; {:.2}x the wall-clock rate of one core", wall_one / wall)
            };
            println!(
                "  {cores} core(s): {per_core:.0} events/s per core, {:.1} MB/s per core ({cpu:.2} s CPU), {:.0} events/s wall ({wall:.2} s); peak RSS {rss:.1} MiB; ratio to serde_json per core {:.2}{scaling}",
                mb / cpu,
                n as f64 / wall,
                per_core / base_rps
            );
        }
    }
    drop(standin);
    standin_rt.shutdown_background();
}
