//! Interop of the Blob checkpoint store with the official Python SDK
//! (`azure-eventhub-checkpointstoreblob-aio`, its `BlobCheckpointStore`) on real Azurite: a
//! checkpoint and an ownership written by the SDK are read back exactly by siembridge, and
//! siembridge's checkpoints and claims are read back by the SDK. ETag claims: a stale `If-Match`
//! and a repeated create both lose the race instead of failing.
//!
//! Needs `SIEMBRIDGE_TEST_PYTHON` (or `e2e/.venv`, created by `e2e/test-all.sh`) with the
//! packages of `e2e/requirements.txt`.

#[path = "common/azurite.rs"]
mod azurite;
#[path = "common/python.rs"]
mod python;

use std::process::Command;

use serde_json::{json, Value};
use siembridge::collector::azure_blob::BlobService;
use siembridge::collector::checkpoint::blob::BlobCheckpointStore;
use siembridge::collector::checkpoint::{Checkpoint, CheckpointStore};
use siembridge::collector::secrets::SecretValue;

const FQNS: &str = "contoso-ns.servicebus.windows.net";
const HUB: &str = "entra-logs";
const CG: &str = "$Default";

const SCRIPT: &str = r#"
import asyncio, json, sys
from azure.eventhub.extensions.checkpointstoreblobaio import BlobCheckpointStore

FQNS, HUB, CG = "contoso-ns.servicebus.windows.net", "entra-logs", "$Default"

async def main():
    conn, container, mode = sys.argv[1], sys.argv[2], sys.argv[3]
    store = BlobCheckpointStore.from_connection_string(conn, container)
    async with store:
        if mode == "write":
            await store.update_checkpoint({
                "fully_qualified_namespace": FQNS, "eventhub_name": HUB, "consumer_group": CG,
                "partition_id": "0", "offset": "8589934592", "sequence_number": 41873})
            owned = await store.claim_ownership([{
                "fully_qualified_namespace": FQNS, "eventhub_name": HUB, "consumer_group": CG,
                "partition_id": "0", "owner_id": "python-processor-1"}])
            print(json.dumps([{"partition_id": o["partition_id"], "owner_id": o["owner_id"], "etag": o["etag"]}
                              for o in owned]))
        else:
            cps = await store.list_checkpoints(FQNS, HUB, CG)
            owns = await store.list_ownership(FQNS, HUB, CG)
            print(json.dumps({
                "checkpoints": sorted([{"partition_id": c["partition_id"], "offset": c["offset"],
                                        "sequence_number": c["sequence_number"]} for c in cps],
                                      key=lambda c: c["partition_id"]),
                "ownership": sorted([{"partition_id": o["partition_id"], "owner_id": o["owner_id"],
                                      "etag": o["etag"]} for o in owns],
                                    key=lambda o: o["partition_id"]),
            }))

asyncio.run(main())
"#;

/// Whether the SDK is importable; outside CI its absence skips the test.
fn sdk_available(python: &str) -> bool {
    python::can_import(python, "azure.eventhub.extensions.checkpointstoreblobaio, aiohttp")
}

fn run_sdk(python: &str, conn: &str, container: &str, mode: &str) -> Value {
    let out = Command::new(python)
        .args(["-c", SCRIPT, conn, container, mode])
        .output()
        .expect("run python");
    assert!(
        out.status.success(),
        "python SDK {mode} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).unwrap_or_else(|e| panic!("{e}: {}", String::from_utf8_lossy(&out.stdout)))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn python_sdk_and_siembridge_read_each_others_checkpoints_and_ownership() {
    siembridge::tls::install_crypto_provider();
    let python = python::python();
    if !sdk_available(&python) {
        return;
    }
    let Some(az) = azurite::start() else { return };
    let conn = az.connection_string();
    let container = "eventhub-checkpoints";
    let service = BlobService::from_connection_string(&SecretValue::new(conn.clone()), None).unwrap();
    let store = BlobCheckpointStore::new(service, container, FQNS, HUB, CG);
    store.ensure_container().await.unwrap();

    // 1. The official SDK writes; siembridge reads exactly what it wrote.
    let written = run_sdk(&python, &conn, container, "write");
    let py_etag = written[0]["etag"].as_str().unwrap().to_string();
    let cp = store.load("0").await.unwrap().expect("checkpoint of partition 0");
    assert_eq!(cp.position, "8589934592");
    assert_eq!(cp.state, Some(json!({"sequenceNumber": 41873})));
    assert!(store.load("1").await.unwrap().is_none());
    let owners = store.list_ownership().await.unwrap();
    assert_eq!(owners.len(), 1);
    assert_eq!(owners[0].partition_id, "0");
    assert_eq!(owners[0].owner_id, "python-processor-1");
    assert_eq!(owners[0].etag, py_etag, "same ETag as the SDK saw");
    assert!(owners[0].last_modified.is_some());

    // 2. Claims: take over with the current ETag; a stale ETag and a repeated create lose.
    let mine = store
        .claim_ownership("0", "siembridge-collector-0", Some(&owners[0].etag))
        .await
        .unwrap()
        .expect("claim with the current ETag");
    assert_ne!(mine.etag, py_etag);
    assert!(store
        .claim_ownership("0", "python-processor-1", Some(&py_etag))
        .await
        .unwrap()
        .is_none());
    assert!(store
        .claim_ownership("1", "siembridge-collector-0", None)
        .await
        .unwrap()
        .is_some());
    assert!(store
        .claim_ownership("1", "python-processor-1", None)
        .await
        .unwrap()
        .is_none());

    // 3. siembridge checkpoints; the SDK reads them back.
    store
        .save(
            "0",
            &Checkpoint {
                position: "8589936000".into(),
                state: Some(json!({"sequenceNumber": 41900, "enqueuedTime": "2026-01-02T03:04:05Z"})),
                ..Default::default()
            },
        )
        .await
        .unwrap();
    store
        .save(
            "1",
            &Checkpoint {
                position: "4294967296".into(),
                state: Some(json!({"sequenceNumber": 7, "enqueuedTime": "2026-01-02T03:04:06Z"})),
                ..Default::default()
            },
        )
        .await
        .unwrap();
    let read = run_sdk(&python, &conn, container, "read");
    println!("python SDK reads: {read}");
    assert_eq!(
        read["checkpoints"],
        json!([
            {"partition_id": "0", "offset": "8589936000", "sequence_number": 41900},
            {"partition_id": "1", "offset": "4294967296", "sequence_number": 7},
        ])
    );
    let ours = store.list_ownership().await.unwrap();
    let sdk_owners = read["ownership"].as_array().unwrap();
    assert_eq!(sdk_owners.len(), 2);
    for (sdk, ours) in sdk_owners.iter().zip(&ours) {
        assert_eq!(sdk["partition_id"], ours.partition_id.as_str());
        assert_eq!(sdk["owner_id"], "siembridge-collector-0");
        // The SDK lists ETags as the XML has them (unquoted); the value is the same.
        assert_eq!(
            sdk["etag"].as_str().unwrap().trim_matches('"'),
            ours.etag.trim_matches('"')
        );
    }
    // And siembridge's own reading of its checkpoints keeps the enqueued time.
    let cps = store.list_checkpoints().await.unwrap();
    assert_eq!(cps.len(), 2);
    assert_eq!(
        cps[1].1.state,
        Some(json!({"sequenceNumber": 7, "enqueuedTime": "2026-01-02T03:04:06Z"}))
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn first_checkpoint_creates_the_container_and_the_blob() {
    siembridge::tls::install_crypto_provider();
    let Some(az) = azurite::start() else { return };
    let service = BlobService::from_connection_string(&SecretValue::new(az.connection_string()), None).unwrap();
    let store = BlobCheckpointStore::new(service, "not-yet-there", FQNS, HUB, "siem-qradar");
    assert!(
        store.load("2").await.unwrap().is_none(),
        "missing container reads as no checkpoint"
    );
    assert!(store.list_ownership().await.unwrap().is_empty());
    let cp = Checkpoint {
        position: "12".into(),
        state: Some(json!({"sequenceNumber": 3, "enqueuedTime": "2026-01-02T03:04:05Z"})),
        ..Default::default()
    };
    store.save("2", &cp).await.unwrap();
    let back = store.load("2").await.unwrap().unwrap();
    assert_eq!(back.position, cp.position);
    assert_eq!(back.state, cp.state);
    assert!(!back.updated.is_empty());
    let bad = Checkpoint {
        position: "12".into(),
        state: None,
        ..Default::default()
    };
    assert!(
        store.save("2", &bad).await.is_err(),
        "an Event Hubs checkpoint needs a sequence number"
    );
}

/// The ownership blobs as the balancer's records: create once, compare-and-write on the ETag, a
/// hand-over request that does not renew the owner's claim, release.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ownership_records_compare_and_write_on_the_etag() {
    use siembridge::collector::checkpoint::ownership::{OwnershipClaim, OwnershipError, PartitionOwnership};
    siembridge::tls::install_crypto_provider();
    let Some(az) = azurite::start() else { return };
    let service = BlobService::from_connection_string(&SecretValue::new(az.connection_string()), None).unwrap();
    let store = BlobCheckpointStore::new(service, "balancer", FQNS, HUB, CG);
    assert!(store.list().await.unwrap().is_empty(), "no container yet: no records");

    let a = store
        .write("5", None, OwnershipClaim::owner("replica-a"))
        .await
        .unwrap();
    assert_eq!(a.owner, "replica-a");
    assert!(
        matches!(
            store.write("5", None, OwnershipClaim::owner("replica-b")).await,
            Err(OwnershipError::Conflict { .. })
        ),
        "a second create loses"
    );
    let listed = store.list().await.unwrap();
    assert_eq!(listed.len(), 1);
    assert_eq!(
        (listed[0].partition.as_str(), listed[0].owner.as_str()),
        ("5", "replica-a")
    );
    assert_eq!(listed[0].version, a.version);
    let renewed_at = listed[0].renewed;

    // A request keeps the owner's renewal time although Last-Modified moves.
    tokio::time::sleep(std::time::Duration::from_millis(1100)).await;
    let asked = store
        .write("5", Some(&a.version), OwnershipClaim::request("replica-a", "replica-b"))
        .await
        .unwrap();
    let listed = store.list().await.unwrap();
    assert_eq!(listed[0].requested_by.as_deref(), Some("replica-b"));
    assert_eq!(listed[0].owner, "replica-a");
    assert!(
        (listed[0].renewed - renewed_at).num_milliseconds().abs() < 1000,
        "request must not renew: {} vs {renewed_at}",
        listed[0].renewed
    );
    assert!(
        matches!(
            store
                .write("5", Some(&a.version), OwnershipClaim::owner("replica-a"))
                .await,
            Err(OwnershipError::Conflict { .. })
        ),
        "a stale ETag loses"
    );
    // The owner hands over; the record names the requester, without the request.
    let handed = store
        .write("5", Some(&asked.version), OwnershipClaim::owner("replica-b"))
        .await
        .unwrap();
    let listed = store.list().await.unwrap();
    assert_eq!(listed[0].owner, "replica-b");
    assert_eq!(listed[0].requested_by, None);
    assert!(listed[0].renewed > renewed_at);
    store
        .write("5", Some(&handed.version), OwnershipClaim::release())
        .await
        .unwrap();
    assert_eq!(store.list().await.unwrap()[0].owner, "", "released");
}
