//! The `azureBlob` checkpoint store end to end: two `siembridge collector` processes read one
//! consumer group of the Event Hubs stand-in and share its partitions through the ownership
//! blobs of the Azure SDK layout, on real Azurite. The official Python SDK
//! (`azure-eventhub-checkpointstoreblob-aio`) writes a checkpoint first, and claims a partition
//! as a foreign processor that then dies: siembridge resumes exactly after that checkpoint, takes
//! the dead processor's partition once its claim expires, and leaves checkpoints and ownership
//! that the SDK lists back (released on a clean shutdown).
//!
//! Run: `cargo test --test eventhub_blob -- --nocapture` (needs `e2e/test-all.sh` for Azurite and
//! the Python venv).

#[path = "common/azurite.rs"]
mod azurite;
mod common;
#[path = "common/eventhub_collector.rs"]
mod eventhub_collector;
#[path = "common/eventhubs.rs"]
mod eventhubs;
#[path = "common/python.rs"]
mod python;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use eventhub_collector::*;
use eventhubs::{EventHubsStandIn, Rights};
use serde_json::Value;
use siembridge::api::{BlobCheckpointStore, BlobCredentials, SecretKeySelector};
use siembridge::collector::azure_blob::BlobService;
use siembridge::collector::secrets::SecretValue;
use siembridge::config::{CheckpointConfig, SecretSource};

const NS: &str = "contoso-ns.servicebus.windows.net";
const KEY: &str = "c2VjcmV0LWtleS1mb3ItdGVzdHM=";
const HUB: &str = "entra-logs";
const GROUP: &str = "siem";
const CONTAINER: &str = "eventhub-checkpoints";
const PARTITIONS: usize = 4;
const PER_PARTITION: u64 = 400;
/// The SDK's checkpoint on partition 0: after the event with this sequence number.
const CHECKPOINT_SEQUENCE: u64 = 199;

const SCRIPT: &str = r#"
import asyncio, json, sys
from azure.eventhub.extensions.checkpointstoreblobaio import BlobCheckpointStore

async def main():
    conn, container, fqns, hub, cg, mode = sys.argv[1:7]
    store = BlobCheckpointStore.from_connection_string(conn, container)
    async with store:
        if mode == "seed":
            offset, sequence = sys.argv[7], int(sys.argv[8])
            await store.update_checkpoint({
                "fully_qualified_namespace": fqns, "eventhub_name": hub, "consumer_group": cg,
                "partition_id": "0", "offset": offset, "sequence_number": sequence})
            owned = await store.claim_ownership([{
                "fully_qualified_namespace": fqns, "eventhub_name": hub, "consumer_group": cg,
                "partition_id": "3", "owner_id": "python-processor-1"}])
            print(json.dumps({"claimed": [o["partition_id"] for o in owned]}))
        else:
            cps = await store.list_checkpoints(fqns, hub, cg)
            owns = await store.list_ownership(fqns, hub, cg)
            print(json.dumps({
                "checkpoints": {c["partition_id"]: {"offset": c["offset"], "sequence_number": c["sequence_number"]}
                                for c in cps},
                "ownership": {o["partition_id"]: o["owner_id"] for o in owns},
            }))

asyncio.run(main())
"#;

fn run_sdk(python: &str, conn: &str, args: &[&str]) -> Value {
    let out = Command::new(python)
        .args(["-c", SCRIPT, conn, CONTAINER, NS, HUB, GROUP])
        .args(args)
        .output()
        .expect("run python");
    assert!(
        out.status.success(),
        "python SDK {args:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).unwrap_or_else(|e| panic!("{e}: {}", String::from_utf8_lossy(&out.stdout)))
}

/// A body whose correlation id tells partition and index: `partition * 1_000_000 + index`.
fn id(partition: usize, index: u64) -> u64 {
    partition as u64 * 1_000_000 + index
}

/// Collector processes, SIGKILLed if the test fails before it stops them.
struct Procs(Vec<(String, common::child::Reaped, PathBuf)>);

fn log_tail(p: &Path) -> String {
    let text = std::fs::read_to_string(p).unwrap_or_default();
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(30)..].join("\n")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn collectors_share_partitions_and_resume_through_sdk_blob_checkpoints() {
    siembridge::tls::install_crypto_provider();
    let python = python::python();
    if !python::can_import(&python, "azure.eventhub.extensions.checkpointstoreblobaio, aiohttp") {
        return;
    }
    let Some(az) = azurite::start() else { return };
    let conn = az.connection_string();
    let service = BlobService::from_connection_string(&SecretValue::new(conn.clone()), None).unwrap();
    service.create_container(CONTAINER).await.unwrap();

    let s = EventHubsStandIn::start(NS).await;
    s.state.add_hub(HUB, PARTITIONS, &[GROUP]);
    s.state.add_policy("listen", KEY, Rights::LISTEN);
    // Offset of each partition's last event; the stand-in's offsets are byte positions in the
    // partition, as the service's are.
    let mut last_offsets = Vec::new();
    let mut checkpoint_offset = 0u64;
    for p in 0..PARTITIONS {
        let bodies: Vec<bytes::Bytes> = (0..PER_PARTITION).map(|i| diagnostic_body(id(p, i))).collect();
        let mut at = 0u64;
        let mut last = 0u64;
        for (i, b) in bodies.iter().enumerate() {
            if p == 0 && i as u64 == CHECKPOINT_SEQUENCE {
                checkpoint_offset = at;
            }
            last = at;
            at += b.len() as u64;
        }
        last_offsets.push(last);
        s.state.publish(HUB, Some(p), bodies);
    }

    // The official SDK leaves a checkpoint on partition 0 and a claim on partition 3 (a
    // processor that then died).
    let seeded = run_sdk(
        &python,
        &conn,
        &["seed", &checkpoint_offset.to_string(), &CHECKPOINT_SEQUENCE.to_string()],
    );
    assert_eq!(seeded["claimed"], serde_json::json!(["3"]), "{seeded}");

    let dir = tempfile::tempdir().unwrap();
    let blob_secret = SecretKeySelector {
        name: "checkpoints".into(),
        key: "connection-string".into(),
    };
    let mut procs = Procs(Vec::new());
    for name in ["c1", "c2"] {
        let out = dir.path().join(format!("{name}.ndjson"));
        let mut config = eventhub_config(
            consumer_group_spec(NS, HUB, GROUP, &s.endpoint()),
            dir.path(),
            &out,
            None,
        );
        config.checkpoint = CheckpointConfig::AzureBlob(BlobCheckpointStore {
            account_url: az.account_url(),
            container: CONTAINER.into(),
            credentials: BlobCredentials {
                connection_string: Some(blob_secret.clone()),
                ..Default::default()
            },
        });
        let cfg_path = dir.path().join(format!("{name}.yaml"));
        std::fs::write(&cfg_path, serde_yaml::to_string(&config).unwrap()).unwrap();
        let log = dir.path().join(format!("{name}.log"));
        let child = Command::new(env!("CARGO_BIN_EXE_siembridge"))
            .args(["collector", "--config"])
            .arg(&cfg_path)
            .env(connection_string_env(), s.connection_string("listen", KEY, Some(HUB)))
            .env(SecretSource::env_var_name(&blob_secret), &conn)
            .env("SIEMBRIDGE_OWNER_ID", name)
            .env("SIEMBRIDGE_EVENTHUB_BALANCE_INTERVAL_MS", "300")
            .env("SIEMBRIDGE_EVENTHUB_OWNERSHIP_EXPIRY_MS", "3000")
            .env("RUST_LOG", "info")
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&log).unwrap())
            .spawn()
            .expect("collector starts");
        procs.0.push((name.to_string(), common::child::Reaped(child), out));
    }

    // Every event after the SDK's checkpoint, and none before it, exactly once.
    let expected: Vec<u64> = (0..PARTITIONS)
        .flat_map(|p| {
            let from = if p == 0 { CHECKPOINT_SEQUENCE + 1 } else { 0 };
            (from..PER_PARTITION).map(move |i| id(p, i))
        })
        .collect();
    let outs: Vec<PathBuf> = procs.0.iter().map(|(_, _, o)| o.clone()).collect();
    let deadline = Instant::now() + Duration::from_secs(60);
    let ids = loop {
        let refs: Vec<&Path> = outs.iter().map(|p| p.as_path()).collect();
        let ids = delivered_ids(&refs);
        if ids.len() >= expected.len() {
            break ids;
        }
        if Instant::now() > deadline {
            for (name, _, out) in &procs.0 {
                eprintln!("--- {name} ---\n{}", log_tail(&out.with_extension("log")));
            }
            panic!("{} of {} events delivered", ids.len(), expected.len());
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    let got: Vec<u64> = ids.keys().copied().collect();
    assert_eq!(got, expected, "delivered exactly the events after the SDK's checkpoint");
    let duplicates: u32 = ids.values().map(|c| c - 1).sum();
    assert_eq!(duplicates, 0, "nothing read twice");

    // The SDK lists siembridge's checkpoints (last event of each partition) and an even spread
    // of owners, the dead processor's partition taken over.
    let deadline = Instant::now() + Duration::from_secs(30);
    let listed = loop {
        let listed = run_sdk(&python, &conn, &["list"]);
        let done = (0..PARTITIONS)
            .all(|p| listed["checkpoints"][p.to_string()]["sequence_number"].as_u64() == Some(PER_PARTITION - 1));
        let mut per_owner: BTreeMap<String, usize> = BTreeMap::new();
        for o in listed["ownership"].as_object().into_iter().flat_map(|m| m.values()) {
            *per_owner.entry(o.as_str().unwrap_or_default().to_string()).or_default() += 1;
        }
        let spread = per_owner.get("c1") == Some(&2) && per_owner.get("c2") == Some(&2);
        if done && spread {
            break listed;
        }
        assert!(Instant::now() < deadline, "SDK view never settled: {listed}");
        tokio::time::sleep(Duration::from_millis(300)).await;
    };
    for (p, last) in last_offsets.iter().enumerate() {
        assert_eq!(
            listed["checkpoints"][p.to_string()]["offset"].as_str(),
            Some(last.to_string().as_str()),
            "partition {p}: checkpoint at the offset of its last event"
        );
    }

    // A clean shutdown relinquishes every partition: an empty owner id, as the SDKs write it
    // (Blob storage keeps no empty metadata value, so the SDK lists no owner).
    for (name, child, out) in &mut procs.0 {
        let _ = Command::new("kill").args(["-TERM", &child.id().to_string()]).status();
        let status = child.wait().unwrap();
        assert!(
            status.success(),
            "{name}: {status}\n{}",
            log_tail(&out.with_extension("log"))
        );
    }
    let released = run_sdk(&python, &conn, &["list"]);
    let owners: Vec<&str> = released["ownership"]
        .as_object()
        .unwrap()
        .values()
        .map(|v| if v.is_null() { "" } else { v.as_str().unwrap_or("?") })
        .collect();
    assert!(
        owners.len() == PARTITIONS && owners.iter().all(|o| o.is_empty()),
        "{released}"
    );
    eprintln!(
        "blob store: {} events delivered once, partition 0 resumed after the SDK's sequence \
         {CHECKPOINT_SEQUENCE}, SDK sees checkpoints {} and owners released",
        got.len(),
        listed["checkpoints"]
    );
}
