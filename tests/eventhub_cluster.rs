//! Two collector processes sharing an Event Hub through Leases of a real API server, when
//! `KUBECONFIG` points at one (`e2e/test-all.sh` starts one from `../shared/k8s`). Without it the
//! test prints that it skipped, except under `CI=true` where it fails. The hub is the local AMQP stand-in; only the
//! ownership and checkpoint store is the cluster's.
//!
//! Run: `KUBECONFIG=... cargo test --test eventhub_cluster -- --nocapture`.

mod common;
#[path = "common/eventhub_collector.rs"]
mod eventhub_collector;
#[path = "common/eventhubs.rs"]
mod eventhubs;

use std::collections::BTreeMap;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use k8s_openapi::api::coordination::v1::Lease;
use kube::api::{Api, ListParams};
use siembridge::config::CheckpointConfig;

use eventhub_collector::*;
use eventhubs::{EventHubsStandIn, Rights};

const NS: &str = "contoso-ns.servicebus.windows.net";
const KEY: &str = "c2VjcmV0LWtleS1mb3ItdGVzdHM=";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_collectors_share_partitions_through_leases() {
    let Some(client) = common::cluster::client("eventhub_cluster").await else {
        return;
    };
    let test_ns = common::cluster::TestNamespace::create(&client, "sb-eh").await;
    let namespace = test_ns.name.clone();

    let s = EventHubsStandIn::start(NS).await;
    s.state.add_hub("entra-logs", 4, &["siem"]);
    s.state.add_policy("listen", KEY, Rights::LISTEN);
    s.state
        .publish("entra-logs", None, (0..20_000).map(diagnostic_body).collect());
    let dir = tempfile::tempdir().unwrap();
    let mut children = Vec::new();
    for name in ["pod-a", "pod-b"] {
        let spec = consumer_group_spec(NS, "entra-logs", "siem", &s.endpoint());
        let mut config = eventhub_config(spec, dir.path(), &dir.path().join(format!("{name}.ndjson")), None);
        config.checkpoint = CheckpointConfig::Kubernetes {
            namespace: namespace.clone(),
            lease_prefix: "sb-cg-entra".into(),
            owner: None,
        };
        let path = dir.path().join(format!("{name}.yaml"));
        std::fs::write(&path, serde_yaml::to_string(&config).unwrap()).unwrap();
        children.push(common::child::Reaped(
            Command::new(env!("CARGO_BIN_EXE_siembridge"))
                .args(["collector", "--config"])
                .arg(&path)
                .env(
                    connection_string_env(),
                    s.connection_string("listen", KEY, Some("entra-logs")),
                )
                .env("SIEMBRIDGE_OWNER_ID", name)
                .env("SIEMBRIDGE_EVENTHUB_BALANCE_INTERVAL_MS", "500")
                .env("SIEMBRIDGE_EVENTHUB_OWNERSHIP_EXPIRY_MS", "5000")
                .stdout(Stdio::null())
                .stderr(std::fs::File::create(dir.path().join(format!("{name}.log"))).unwrap())
                .spawn()
                .expect("collector starts"),
        ));
    }
    let outs = [dir.path().join("pod-a.ndjson"), dir.path().join("pod-b.ndjson")];
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        let ids = delivered_ids(&[&outs[0], &outs[1]]);
        if ids.len() == 20_000 {
            break;
        }
        assert!(Instant::now() < deadline, "only {} of 20000 delivered", ids.len());
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    // Both pods hold two partitions each, in Leases with checkpoints.
    let leases: Api<Lease> = Api::namespaced(client.clone(), &namespace);
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let list = leases.list(&ListParams::default()).await.unwrap();
        let mut counts: BTreeMap<String, usize> = BTreeMap::new();
        for l in &list.items {
            let holder = l
                .spec
                .as_ref()
                .and_then(|s| s.holder_identity.clone())
                .unwrap_or_default();
            *counts.entry(holder).or_default() += 1;
        }
        let checkpointed = list
            .items
            .iter()
            .filter(|l| {
                l.metadata
                    .annotations
                    .as_ref()
                    .is_some_and(|a| a.contains_key("siembridge.io/sequence-number"))
            })
            .count();
        if counts.get("pod-a") == Some(&2) && counts.get("pod-b") == Some(&2) && checkpointed == 4 {
            break;
        }
        assert!(Instant::now() < deadline, "leases not balanced: {counts:?}");
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    for c in &children {
        let _ = Command::new("kill").args(["-TERM", &c.id().to_string()]).status();
    }
    for mut c in children {
        assert!(c.wait().unwrap().success());
    }
    let list = leases.list(&ListParams::default()).await.unwrap();
    let held: Vec<(String, String)> = list
        .items
        .iter()
        .map(|l| {
            (
                l.metadata.name.clone().unwrap_or_default(),
                l.spec
                    .as_ref()
                    .and_then(|s| s.holder_identity.clone())
                    .unwrap_or_default(),
            )
        })
        .filter(|(_, holder)| !holder.is_empty())
        .collect();
    if !held.is_empty() {
        for name in ["pod-a", "pod-b"] {
            let log = std::fs::read_to_string(dir.path().join(format!("{name}.log"))).unwrap_or_default();
            println!("--- {name}.log (partition lines)");
            for line in log.lines().filter(|l| l.contains("partition") || l.contains("WARN")) {
                println!("{line}");
            }
        }
    }
    assert!(
        held.is_empty(),
        "Leases still held after both collectors stopped: {held:?}"
    );
    let ids = delivered_ids(&[&outs[0], &outs[1]]);
    assert_eq!(
        ids.values().filter(|c| **c > 1).count(),
        0,
        "no duplicates without failures"
    );
    drop(test_ns);
}
