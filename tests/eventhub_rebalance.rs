//! Acceptance: 8 partitions, 3 collector processes sharing them, 300 000 events published while
//! one collector is SIGKILLed and another one started. Every event reaches the destination,
//! duplicates come only from the killed owner's unsaved progress, partitions end evenly spread,
//! and the stand-in never sees two readers of one partition at once. Run twice: with the file
//! ownership store (standalone mode), and with Lease ownership and checkpoints on a real API
//! server (`KUBECONFIG`, which `e2e/test-all.sh` points at the control plane of `../shared/k8s`;
//! without it that run prints that it skipped, except under `CI=true` where it fails).
//!
//! Run: `cargo test --test eventhub_rebalance -- --nocapture` (prints the counts).

mod common;
#[path = "common/eventhub_collector.rs"]
mod eventhub_collector;
#[path = "common/eventhubs.rs"]
mod eventhubs;

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use bytes::Bytes;
use k8s_openapi::api::coordination::v1::Lease;
use kube::api::{Api, ListParams};
use kube::ResourceExt;
use siembridge::config::CheckpointConfig;

use eventhub_collector::*;
use eventhubs::{EventHubsStandIn, Rights};

const NS: &str = "contoso-ns.servicebus.windows.net";
const KEY: &str = "c2VjcmV0LWtleS1mb3ItdGVzdHM=";
const HUB: &str = "entra-logs";
const PARTITIONS: usize = 8;
const EVENTS: u64 = 300_000;
const LEASE_PREFIX: &str = "sb-cg-entra";

/// Where the collectors keep ownership and checkpoints.
enum Store {
    /// The file store under the test folder.
    File,
    /// Leases of a namespace of the test cluster.
    Leases { client: kube::Client, namespace: String },
}

impl Store {
    /// Ownership expiry: how long a silent owner keeps its partitions. A live owner whose
    /// renewals take longer loses them (and its progress since the last checkpoint is read again,
    /// by design). Renewals through the API server of a loaded 2-core test machine (the
    /// control plane, four collectors, another suite) have taken over 3 s, so the Lease run uses
    /// 15 s (production: 60 s); the file store renews locally.
    fn expiry_ms(&self) -> u64 {
        match self {
            Store::File => 3_000,
            Store::Leases { .. } => 15_000,
        }
    }
}

struct Proc {
    name: String,
    child: common::child::Reaped,
    out: PathBuf,
    log: PathBuf,
}

fn spawn(
    name: &str,
    dir: &Path,
    config: &siembridge::config::CollectorConfig,
    connection_string: &str,
    expiry_ms: u64,
) -> Proc {
    let cfg_path = dir.join(format!("{name}.yaml"));
    std::fs::write(&cfg_path, serde_yaml::to_string(config).unwrap()).unwrap();
    let log = dir.join(format!("{name}.log"));
    let child = common::child::Reaped(
        Command::new(env!("CARGO_BIN_EXE_siembridge"))
            .args(["collector", "--config"])
            .arg(&cfg_path)
            .env(connection_string_env(), connection_string)
            .env("SIEMBRIDGE_OWNER_ID", name)
            .env("SIEMBRIDGE_EVENTHUB_BALANCE_INTERVAL_MS", "300")
            .env("SIEMBRIDGE_EVENTHUB_OWNERSHIP_EXPIRY_MS", expiry_ms.to_string())
            .env("RUST_LOG", "info")
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&log).unwrap())
            .spawn()
            .expect("collector starts"),
    );
    Proc {
        name: name.into(),
        child,
        out: dir.join(format!("{name}.ndjson")),
        log,
    }
}

/// Partition -> owner ("" when released), as the store holds it.
async fn owners(store: &Store, dir: &Path) -> BTreeMap<String, String> {
    match store {
        Store::File => file_owners(dir),
        Store::Leases { client, namespace } => {
            let api: Api<Lease> = Api::namespaced(client.clone(), namespace);
            let Ok(list) = api.list(&ListParams::default()).await else {
                return BTreeMap::new();
            };
            list.items
                .iter()
                .filter_map(|l| {
                    let partition = l.name_any().strip_prefix(&format!("{LEASE_PREFIX}-"))?.to_string();
                    let holder = l
                        .spec
                        .as_ref()
                        .and_then(|s| s.holder_identity.clone())
                        .unwrap_or_default();
                    Some((partition, holder))
                })
                .collect()
        }
    }
}

fn file_owners(dir: &Path) -> BTreeMap<String, String> {
    let Ok(text) = std::fs::read_to_string(dir.join("checkpoints/ownership/ownership.json")) else {
        return BTreeMap::new();
    };
    let v: serde_json::Value = serde_json::from_str(&text).unwrap_or_default();
    v.as_object()
        .map(|m| {
            m.iter()
                .map(|(p, r)| (p.clone(), r["owner"].as_str().unwrap_or_default().to_string()))
                .collect()
        })
        .unwrap_or_default()
}

fn spread(owners: &BTreeMap<String, String>) -> Vec<usize> {
    let mut counts: BTreeMap<&str, usize> = BTreeMap::new();
    for o in owners.values() {
        *counts.entry(o.as_str()).or_default() += 1;
    }
    let mut v: Vec<usize> = counts.values().copied().collect();
    v.sort();
    v
}

fn tail(p: &Path) -> String {
    let text = std::fs::read_to_string(p).unwrap_or_default();
    let lines: Vec<&str> = text
        .lines()
        .filter(|l| {
            [
                "WARN",
                "ERROR",
                "handed",
                "claimed",
                "hand-over",
                "reader ended",
                "reading partition",
                "released",
                "lost",
            ]
            .iter()
            .any(|k| l.contains(k))
        })
        .collect();
    lines[lines.len().saturating_sub(40)..].join("\n")
}

/// A small diagnostic body; the correlation id is the event number.
fn body(n: u64) -> Bytes {
    Bytes::from(format!(
        "{{\"records\":[{{\"time\":\"2026-01-01T10:00:05Z\",\"category\":\"SignInLogs\",\"operationName\":\"Sign-in activity\",\"correlationId\":\"{n}\"}}]}}"
    ))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_collectors_share_eight_partitions_through_a_kill_and_a_restart() {
    rebalance(Store::File).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_collectors_share_eight_partitions_through_a_kill_and_a_restart_on_real_leases() {
    let Some(client) = common::cluster::client("eventhub_rebalance (Leases)").await else {
        return;
    };
    let ns = common::cluster::TestNamespace::create(&client, "sb-ehrb").await;
    rebalance(Store::Leases {
        client,
        namespace: ns.name.clone(),
    })
    .await;
}

async fn rebalance(store: Store) {
    siembridge::tls::install_crypto_provider();
    let started = Instant::now();
    let s = EventHubsStandIn::start(NS).await;
    s.state.add_hub(HUB, PARTITIONS, &["siem"]);
    s.state.add_policy("listen", KEY, Rights::LISTEN);
    let cs = s.connection_string("listen", KEY, Some(HUB));
    let dir = tempfile::tempdir().unwrap();
    let config_for = |name: &str| {
        let mut spec = consumer_group_spec(NS, HUB, "siem", &s.endpoint());
        spec.prefetch = 1000;
        let mut config = eventhub_config(spec, dir.path(), &dir.path().join(format!("{name}.ndjson")), None);
        if let Store::Leases { namespace, .. } = &store {
            config.checkpoint = CheckpointConfig::Kubernetes {
                namespace: namespace.clone(),
                lease_prefix: LEASE_PREFIX.into(),
                owner: None,
            };
        }
        config
    };
    let mut procs: Vec<Proc> = ["c1", "c2", "c3"]
        .iter()
        .map(|n| spawn(n, dir.path(), &config_for(n), &cs, store.expiry_ms()))
        .collect();

    // Publish in steps: a third, kill c3, a third, start c4, the rest.
    let step = EVENTS / 30;
    let mut published = 0u64;
    let mut killed_owned: BTreeSet<String> = BTreeSet::new();
    for round in 0..30 {
        s.state
            .publish(HUB, None, (published..published + step).map(body).collect());
        published += step;
        if round == 10 {
            // Wait until c3 reads, then kill it hard mid-stream.
            let deadline = Instant::now() + Duration::from_secs(20);
            loop {
                let o = owners(&store, dir.path()).await;
                if o.values().any(|v| v == "c3")
                    && std::fs::metadata(&procs[2].out).map(|m| m.len() > 0).unwrap_or(false)
                {
                    killed_owned = o.iter().filter(|(_, v)| *v == "c3").map(|(p, _)| p.clone()).collect();
                    break;
                }
                assert!(Instant::now() < deadline, "c3 never read: {}", tail(&procs[2].log));
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
            procs[2].child.kill().unwrap();
            let _ = procs[2].child.wait();
            eprintln!("killed c3 at {:?}, it owned {killed_owned:?}", started.elapsed());
        }
        if round == 20 {
            procs.push(spawn("c4", dir.path(), &config_for("c4"), &cs, store.expiry_ms()));
            eprintln!("started c4 at {:?}", started.elapsed());
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    assert_eq!(published, EVENTS);

    // Every event delivered.
    let outs: Vec<PathBuf> = procs.iter().map(|p| p.out.clone()).collect();
    let deadline = Instant::now() + Duration::from_secs(90);
    let ids = loop {
        let refs: Vec<&Path> = outs.iter().map(|p| p.as_path()).collect();
        let ids = delivered_ids(&refs);
        if ids.len() as u64 == EVENTS {
            break ids;
        }
        if Instant::now() > deadline {
            for p in &procs {
                eprintln!("--- {} ---\n{}", p.name, tail(&p.log));
            }
            let per: Vec<usize> = (0..PARTITIONS as u64)
                .map(|p| ids.keys().filter(|n| *n % PARTITIONS as u64 == p).count())
                .collect();
            panic!(
                "only {} of {EVENTS} events delivered (per partition {per:?}); owners {:?}, readers {:?}",
                ids.len(),
                owners(&store, dir.path()).await,
                s.state.readers(HUB, "siem")
            );
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    };
    let delivered_at = started.elapsed();

    // Balanced over the three live collectors.
    let deadline = Instant::now() + Duration::from_secs(20);
    let final_owners = loop {
        let o = owners(&store, dir.path()).await;
        let live: BTreeSet<&str> = o.values().map(|v| v.as_str()).collect();
        if o.len() == PARTITIONS && spread(&o) == vec![2, 3, 3] && !live.contains("c3") && !live.contains("") {
            break o;
        }
        assert!(Instant::now() < deadline, "partitions not evenly spread: {o:?}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    };

    // Clean shutdown of the survivors.
    for p in procs.iter_mut().filter(|p| p.name != "c3") {
        let _ = Command::new("kill").args(["-TERM", &p.child.id().to_string()]).status();
    }
    for p in procs.iter_mut().filter(|p| p.name != "c3") {
        let status = p.child.wait().unwrap();
        assert!(status.success(), "{} exited with {status}: {}", p.name, tail(&p.log));
    }
    let released = owners(&store, dir.path()).await;
    assert_eq!(
        released.len(),
        PARTITIONS,
        "every partition has its record: {released:?}"
    );
    assert!(
        released.values().all(|o| o.is_empty()),
        "clean shutdown releases: {released:?}"
    );

    // Duplicates: only events the killed owner delivered past its last checkpoint.
    let c3_ids = delivered_ids(&[&procs[2].out]);
    let duplicates: Vec<u64> = ids.iter().filter(|(_, c)| **c > 1).map(|(n, _)| *n).collect();
    let dup_count: u32 = ids.values().map(|c| c - 1).sum();
    let outside: Vec<&u64> = duplicates.iter().filter(|n| !c3_ids.contains_key(n)).collect();
    let wrong_partition: Vec<&u64> = duplicates
        .iter()
        .filter(|n| !killed_owned.contains(&((**n % PARTITIONS as u64).to_string())))
        .collect();
    let overlaps = s.state.overlaps(HUB);
    let steals = s.state.steals.load(Ordering::Relaxed);
    eprintln!(
        "rebalance ({}): {EVENTS} events, {} distinct delivered in {delivered_at:?}, {dup_count} duplicates \
         ({} events re-read after the kill), reader overlaps {overlaps}, epoch steals {steals}, \
         attaches {}, final owners {final_owners:?}, total {:?}",
        match store {
            Store::File => "file store",
            Store::Leases { .. } => "Leases of a real API server",
        },
        ids.len(),
        duplicates.len(),
        s.state.reader_attaches.load(Ordering::Relaxed),
        started.elapsed()
    );
    if !outside.is_empty() || !wrong_partition.is_empty() {
        for p in &procs {
            eprintln!("--- {} ---\n{}", p.name, tail(&p.log));
        }
    }
    assert!(
        outside.is_empty(),
        "{} duplicated events were never read by the killed collector: a live owner re-read them",
        outside.len()
    );
    assert!(
        wrong_partition.is_empty(),
        "{} duplicated events are outside the partitions the killed collector owned",
        wrong_partition.len()
    );
    assert_eq!(overlaps, 0, "two readers of one partition at once");
}
