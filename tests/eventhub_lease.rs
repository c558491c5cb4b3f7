//! The Kubernetes (Lease) checkpoint and ownership store against an in-memory API server
//! (tower-test mock behind `kube::Client`) that enforces `resourceVersion` like the real one:
//! claim, renew, steal after expiry, 409 on a stale version, checkpoints in annotations.
//!
//! Run: `cargo test --test eventhub_lease`.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

use chrono::Utc;
use http::{Request, Response};
use kube::client::Body;
use kube::Client;
use serde_json::{json, Value};
use siembridge::collector::checkpoint::lease::LeaseStore;
use siembridge::collector::checkpoint::ownership::{OwnershipClaim, OwnershipError, PartitionOwnership};
use siembridge::collector::checkpoint::{Checkpoint, CheckpointStore};
use siembridge::collector::sources::eventhub::balance;
use siembridge::config::lease::{ENQUEUED_TIME, OFFSET, SEQUENCE_NUMBER};

const NS: &str = "soc";

#[derive(Default)]
struct Leases {
    objects: BTreeMap<String, Value>,
    version: u64,
    /// Answer this many writes with 409 before serving them.
    conflicts: usize,
    writes: usize,
}

fn status(code: u16, reason: &str) -> Value {
    json!({"kind": "Status", "apiVersion": "v1", "status": "Failure", "reason": reason, "code": code, "message": reason})
}

fn api_server() -> (Client, Arc<Mutex<Leases>>) {
    let (service, mut handle) = tower_test::mock::pair::<Request<Body>, Response<Body>>();
    let state: Arc<Mutex<Leases>> = Arc::default();
    let st = state.clone();
    tokio::spawn(async move {
        while let Some((request, send)) = handle.next_request().await {
            let (parts, body) = request.into_parts();
            let bytes = body.collect_bytes().await.unwrap_or_default();
            let body: Option<Value> = serde_json::from_slice(&bytes).ok();
            let path = parts.uri.path().to_string();
            let prefix = format!("/apis/coordination.k8s.io/v1/namespaces/{NS}/leases");
            let name = path
                .strip_prefix(&prefix)
                .unwrap_or("")
                .trim_start_matches('/')
                .to_string();
            let (code, answer) = {
                let mut s = st.lock().unwrap();
                match (parts.method.as_str(), name.is_empty()) {
                    ("GET", true) => {
                        let items: Vec<Value> = s.objects.values().cloned().collect();
                        (
                            200,
                            json!({"kind": "LeaseList", "apiVersion": "coordination.k8s.io/v1", "metadata": {"resourceVersion": s.version.to_string()}, "items": items}),
                        )
                    }
                    ("GET", false) => match s.objects.get(&name) {
                        Some(o) => (200, o.clone()),
                        None => (404, status(404, "NotFound")),
                    },
                    ("POST", true) | ("PUT", false) => {
                        let mut obj = body.expect("a body");
                        let name = obj["metadata"]["name"].as_str().unwrap().to_string();
                        s.writes += 1;
                        if s.conflicts > 0 {
                            s.conflicts -= 1;
                            (409, status(409, "Conflict"))
                        } else if parts.method == "POST" && s.objects.contains_key(&name) {
                            (409, status(409, "AlreadyExists"))
                        } else if parts.method == "PUT"
                            && s.objects.get(&name).map(|o| o["metadata"]["resourceVersion"].clone())
                                != Some(obj["metadata"]["resourceVersion"].clone())
                        {
                            (409, status(409, "Conflict"))
                        } else {
                            s.version += 1;
                            obj["metadata"]["resourceVersion"] = json!(s.version.to_string());
                            obj["apiVersion"] = json!("coordination.k8s.io/v1");
                            obj["kind"] = json!("Lease");
                            s.objects.insert(name, obj.clone());
                            (if parts.method == "POST" { 201 } else { 200 }, obj)
                        }
                    }
                    _ => (405, status(405, "MethodNotAllowed")),
                }
            };
            send.send_response(
                Response::builder()
                    .status(code)
                    .header("content-type", "application/json")
                    .body(Body::from(serde_json::to_vec(&answer).unwrap()))
                    .unwrap(),
            );
        }
    });
    (Client::new(service, NS), state)
}

fn store(client: &Client, identity: &str) -> LeaseStore {
    LeaseStore::new(client.clone(), NS, "sb-cg-entra", identity, 60)
}

#[tokio::test]
async fn claim_renew_and_conflict_on_a_stale_resource_version() {
    let (client, state) = api_server();
    let a = store(&client, "pod-a");
    let b = store(&client, "pod-b");
    let claimed = a.write("0", None, OwnershipClaim::owner("pod-a")).await.expect("claim");
    assert_eq!(claimed.owner, "pod-a");
    // The Lease holds the owner, renew time and duration.
    {
        let s = state.lock().unwrap();
        let lease = &s.objects["sb-cg-entra-0"];
        assert_eq!(lease["spec"]["holderIdentity"], "pod-a");
        assert_eq!(lease["spec"]["leaseDurationSeconds"], 60);
        assert!(lease["spec"]["renewTime"].is_string());
        assert_eq!(lease["metadata"]["labels"]["siembridge.io/lease-prefix"], "sb-cg-entra");
    }
    // A second claim of a new record loses.
    assert!(matches!(
        b.write("0", None, OwnershipClaim::owner("pod-b")).await,
        Err(OwnershipError::Conflict { .. })
    ));
    // Renew with the version read; the old version is stale afterwards (409).
    let renewed = a
        .write("0", Some(&claimed.version), OwnershipClaim::owner("pod-a"))
        .await
        .expect("renew");
    assert_ne!(renewed.version, claimed.version);
    assert!(matches!(
        b.write("0", Some(&claimed.version), OwnershipClaim::owner("pod-b"))
            .await,
        Err(OwnershipError::Conflict { .. })
    ));
    let listed = b.list().await.unwrap();
    assert_eq!(listed.len(), 1);
    assert_eq!(listed[0].owner, "pod-a");
    assert_eq!(listed[0].version, renewed.version);
}

#[tokio::test]
async fn an_expired_lease_is_stolen_and_a_live_one_is_not() {
    let (client, state) = api_server();
    let a = store(&client, "pod-a");
    let b = store(&client, "pod-b");
    a.write("0", None, OwnershipClaim::owner("pod-a")).await.unwrap();
    a.write("1", None, OwnershipClaim::owner("pod-a")).await.unwrap();
    // pod-a stops renewing partition 0: its renewTime is two minutes old.
    {
        let mut s = state.lock().unwrap();
        let old = (Utc::now() - chrono::Duration::seconds(120))
            .format("%Y-%m-%dT%H:%M:%S%.6fZ")
            .to_string();
        s.objects.get_mut("sb-cg-entra-0").unwrap()["spec"]["renewTime"] = json!(old);
    }
    let partitions = vec!["0".to_string(), "1".to_string()];
    let records = b.list().await.unwrap();
    let plan = balance::plan(
        "pod-b",
        &partitions,
        &records,
        Utc::now(),
        chrono::Duration::seconds(60),
    );
    assert_eq!(plan.claim.len(), 1, "{plan:?}");
    assert_eq!(plan.claim[0].0, "0");
    let stolen = b
        .write("0", plan.claim[0].1.as_deref(), OwnershipClaim::owner("pod-b"))
        .await
        .expect("steal after expiry");
    assert_eq!(stolen.owner, "pod-b");
    let s = state.lock().unwrap();
    assert_eq!(s.objects["sb-cg-entra-0"]["spec"]["holderIdentity"], "pod-b");
    assert_eq!(s.objects["sb-cg-entra-0"]["spec"]["leaseTransitions"], 2);
    assert_eq!(s.objects["sb-cg-entra-1"]["spec"]["holderIdentity"], "pod-a");
}

#[tokio::test]
async fn checkpoints_live_in_annotations_and_are_fenced_by_the_holder() {
    let (client, state) = api_server();
    let a = store(&client, "pod-a");
    let b = store(&client, "pod-b");
    assert_eq!(a.load("3").await.unwrap(), None);
    a.write("3", None, OwnershipClaim::owner("pod-a")).await.unwrap();
    let cp = Checkpoint {
        position: "8589934592".into(),
        state: Some(json!({"sequenceNumber": 41873, "enqueuedTime": "2026-01-01T10:00:05.000Z"})),
        updated: "2026-01-01T10:00:06.000Z".into(),
    };
    // One 409 (someone renewed meanwhile) is retried with a fresh read.
    state.lock().unwrap().conflicts = 1;
    a.save("3", &cp).await.expect("checkpoint written");
    assert_eq!(a.load("3").await.unwrap(), Some(cp.clone()));
    {
        let s = state.lock().unwrap();
        let ann = &s.objects["sb-cg-entra-3"]["metadata"]["annotations"];
        assert_eq!(ann[OFFSET], "8589934592");
        assert_eq!(ann[SEQUENCE_NUMBER], "41873");
        assert_eq!(ann[ENQUEUED_TIME], "2026-01-01T10:00:05.000Z");
        // The checkpoint write kept the holder.
        assert_eq!(s.objects["sb-cg-entra-3"]["spec"]["holderIdentity"], "pod-a");
    }
    // A replica that does not hold the live Lease may not move its checkpoint.
    assert!(b.save("3", &Checkpoint::default()).await.is_err());
    assert_eq!(a.load("3").await.unwrap(), Some(cp));
    // A hand-over request keeps the holder's renew time.
    let before = state.lock().unwrap().objects["sb-cg-entra-3"]["spec"]["renewTime"].clone();
    let current = b.list().await.unwrap().remove(0);
    let asked = b
        .write("3", Some(&current.version), OwnershipClaim::request("pod-a", "pod-b"))
        .await
        .unwrap();
    assert_eq!(asked.requested_by.as_deref(), Some("pod-b"));
    assert_eq!(
        state.lock().unwrap().objects["sb-cg-entra-3"]["spec"]["renewTime"],
        before
    );
}
