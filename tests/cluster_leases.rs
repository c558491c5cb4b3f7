//! Checkpoint Leases on a real API server and its garbage collector (`KUBECONFIG`, which
//! `e2e/test-all.sh` points at the control plane of `../shared/k8s`): a collector rendered for a
//! LogSource or ConsumerGroup writes Leases owned by that resource, so deleting it leaves no
//! checkpoint behind; `keepCheckpointsOnDelete: true` writes them without the owner reference
//! (and removes one a Lease already had), so they outlive the resource. The Leases are written
//! through the rendered configuration and the collector's own store, as a collector pod does.
//! Without `KUBECONFIG` it prints `skipped: KUBECONFIG not set`.

use std::sync::Arc;

use k8s_openapi::api::coordination::v1::Lease;
use kube::api::{Api, DeleteParams, Patch, PatchParams};
use kube::ResourceExt;
use serde_json::json;
use siembridge::api::{ConsumerGroup, LogSource, SiemDestination};
use siembridge::collector::checkpoint::{self, Checkpoint, CheckpointStore};
use siembridge::config::{CheckpointConfig, SecretSource};
use siembridge::render::{render_consumer_group, render_log_source, RenderTarget};

#[path = "common/cluster.rs"]
mod cluster_env;
use cluster_env::{eventually, install_crds, TestNamespace};

const MANAGER: &str = "siembridge-e2e-leases";

async fn apply<K>(client: &kube::Client, namespace: &str, value: serde_json::Value) -> K
where
    K: kube::Resource<Scope = k8s_openapi::NamespaceResourceScope, DynamicType = ()>
        + Clone
        + std::fmt::Debug
        + serde::de::DeserializeOwned
        + serde::Serialize,
{
    let api: Api<K> = Api::namespaced(client.clone(), namespace);
    let name = value["metadata"]["name"].as_str().unwrap().to_string();
    api.patch(&name, &PatchParams::apply(MANAGER).force(), &Patch::Apply(&value))
        .await
        .unwrap_or_else(|e| panic!("{name} not applied: {e}"))
}

fn log_source(name: &str, keep: bool) -> serde_json::Value {
    json!({
        "apiVersion": "siembridge.io/v1alpha1", "kind": "LogSource",
        "metadata": {"name": name},
        "spec": {
            "managementActivityApi": {
                "credentials": {
                    "tenantId": "00000000-0000-4000-8000-000000000001",
                    "clientId": "00000000-0000-4000-8000-000000000002",
                    "clientSecret": {"name": "o365-app", "key": "clientSecret"}
                },
                "contentTypes": ["Audit.General"]
            },
            "destinations": [{"name": "out"}],
            "keepCheckpointsOnDelete": keep
        }
    })
}

fn consumer_group(keep: bool) -> serde_json::Value {
    json!({
        "apiVersion": "siembridge.io/v1alpha1", "kind": "ConsumerGroup",
        "metadata": {"name": "entra"},
        "spec": {
            "eventHub": {
                "fullyQualifiedNamespace": "contoso.servicebus.windows.net",
                "hubName": "entra-diagnostics",
                "consumerGroup": "siembridge"
            },
            "credentials": {"connectionString": {"name": "entra-hub", "key": "connectionString"}},
            "keepCheckpointsOnDelete": keep
        }
    })
}

/// Write one checkpoint through the store the rendered `config` names; returns the Lease name.
async fn write_checkpoint(config: &siembridge::config::CollectorConfig, stream: &str) -> String {
    let store: Arc<dyn CheckpointStore> =
        checkpoint::open(&config.checkpoint, &config.source, &SecretSource::Environment)
            .await
            .expect("the rendered checkpoint store opens");
    store
        .save(
            stream,
            &Checkpoint {
                position: "2026-12-07T10:00:00Z".into(),
                state: None,
                updated: "2026-12-07T10:00:01Z".into(),
            },
        )
        .await
        .expect("checkpoint written");
    let CheckpointConfig::Kubernetes { lease_prefix, .. } = &config.checkpoint else {
        panic!("a cluster collector checkpoints in Leases: {:?}", config.checkpoint);
    };
    let client = kube::Client::try_default().await.unwrap();
    siembridge::collector::checkpoint::lease::LeaseStore::new(client, "unused", lease_prefix, "unused", 1)
        .lease_name(stream)
}

fn owners(lease: &Lease) -> Vec<(String, String)> {
    lease
        .owner_references()
        .iter()
        .map(|o| (o.kind.clone(), o.name.clone()))
        .collect()
}

#[tokio::test]
async fn checkpoint_leases_are_garbage_collected_with_their_resource_unless_kept() {
    let Some(client) = cluster_env::client("cluster_leases").await else {
        return;
    };
    install_crds(&client).await;
    let ns = TestNamespace::create(&client, "sb-leases").await;
    let leases: Api<Lease> = Api::namespaced(client.clone(), &ns.name);
    let dest: SiemDestination = apply(
        &client,
        &ns.name,
        json!({"apiVersion": "siembridge.io/v1alpha1", "kind": "SiemDestination",
            "metadata": {"name": "out"}, "spec": {"stdout": {}}}),
    )
    .await;

    // An API-polled LogSource of each kind of deletion.
    let owned: LogSource = apply(&client, &ns.name, log_source("audit", false)).await;
    let kept: LogSource = apply(&client, &ns.name, log_source("audit-kept", true)).await;
    let mut names = Vec::new();
    for ls in [&owned, &kept] {
        let rendered = render_log_source(ls, std::slice::from_ref(&dest), &RenderTarget::Cluster)
            .unwrap()
            .expect("an API-polled LogSource has its own collector");
        names.push(write_checkpoint(&rendered.config, "Audit.General").await);
    }
    let (owned_lease, kept_lease) = (names[0].clone(), names[1].clone());
    assert_eq!(
        owners(&leases.get(&owned_lease).await.unwrap()),
        vec![("LogSource".to_string(), "audit".to_string())]
    );
    assert_eq!(owners(&leases.get(&kept_lease).await.unwrap()), vec![]);

    // A ConsumerGroup's partition Lease, first owned, then kept: the next write drops the
    // reference (the collector rolls with the new configuration and writes again).
    let cg: ConsumerGroup = apply(&client, &ns.name, consumer_group(false)).await;
    let (rendered, _) = render_consumer_group(&cg, &[], std::slice::from_ref(&dest), &RenderTarget::Cluster).unwrap();
    let cg_lease = write_checkpoint(&rendered.config, "0").await;
    assert_eq!(
        owners(&leases.get(&cg_lease).await.unwrap()),
        vec![("ConsumerGroup".to_string(), "entra".to_string())]
    );
    let cg: ConsumerGroup = apply(&client, &ns.name, consumer_group(true)).await;
    let (rendered, _) = render_consumer_group(&cg, &[], std::slice::from_ref(&dest), &RenderTarget::Cluster).unwrap();
    write_checkpoint(&rendered.config, "0").await;
    assert_eq!(owners(&leases.get(&cg_lease).await.unwrap()), vec![]);

    // Delete all three; the garbage collector removes only the owned LogSource's Lease.
    let ls_api: Api<LogSource> = Api::namespaced(client.clone(), &ns.name);
    let cg_api: Api<ConsumerGroup> = Api::namespaced(client.clone(), &ns.name);
    ls_api.delete("audit-kept", &DeleteParams::default()).await.unwrap();
    cg_api.delete("entra", &DeleteParams::default()).await.unwrap();
    ls_api.delete("audit", &DeleteParams::default()).await.unwrap();
    eventually("the owned LogSource's Lease to be garbage-collected", || {
        let leases = leases.clone();
        let name = owned_lease.clone();
        async move { leases.get_opt(&name).await.unwrap().is_none().then_some(()) }
    })
    .await;
    // The collector deleted the owned Lease after the kept ones were orphaned: they stay.
    let left: Vec<String> = leases
        .list(&Default::default())
        .await
        .unwrap()
        .items
        .iter()
        .map(|l| l.name_any())
        .collect();
    println!("Leases left after deleting the three resources: {left:?}");
    assert!(left.contains(&kept_lease), "{kept_lease} was kept: {left:?}");
    assert!(left.contains(&cg_lease), "{cg_lease} was kept: {left:?}");
    assert!(!left.contains(&owned_lease));
}
