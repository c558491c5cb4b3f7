//! The operator against a real API server, when `KUBECONFIG` points at one (`e2e/test-all.sh`
//! starts one from `../shared/k8s`; kind, k3d or a test cluster work too). Without it the test
//! prints that it skipped, except under `CI=true` where it fails.
//!
//! It installs the CRDs from `crds/`, applies every `examples/*/*.yaml` (one namespace per
//! example folder), runs the controllers in this process, and checks that collectors appear
//! with owner references and conditions, that a Secret rotation rolls the pod template, that
//! re-applying changes nothing, and that deleting a LogSource removes its children.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::{ConfigMap, Namespace, Secret, ServiceAccount};
use k8s_openapi::api::rbac::v1::{Role, RoleBinding};
use kube::api::{Api, DeleteParams, DynamicObject, Patch, PatchParams};
use kube::discovery::{Discovery, Scope};
use kube::{Client, ResourceExt};
use serde::Deserialize;
use serde_json::json;
use siembridge::api::{LogSource, SiemDestination};
use siembridge::operator::connectivity::TcpConnect;
use siembridge::operator::metrics::Metrics;
use siembridge::operator::{run_controllers, ControllerSettings};
use tokio_util::sync::CancellationToken;

#[path = "common/cluster.rs"]
mod cluster_env;
use cluster_env::{eventually, install_crds};

const MANAGER: &str = "siembridge-e2e";

fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// Every YAML document with `apiVersion` and `kind` in the files of a folder.
fn manifests(dir: &Path) -> Vec<serde_yaml::Value> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(dir)
        .map(|entries| entries.filter_map(|e| e.ok().map(|e| e.path())).collect())
        .unwrap_or_default();
    files.retain(|p| matches!(p.extension().and_then(|e| e.to_str()), Some("yaml" | "yml")));
    files.sort();
    let mut docs = Vec::new();
    for file in files {
        let text = std::fs::read_to_string(&file).unwrap();
        for doc in serde_yaml::Deserializer::from_str(&text) {
            let Ok(value) = serde_yaml::Value::deserialize(doc) else {
                continue;
            };
            if value.get("apiVersion").is_some() && value.get("kind").is_some() {
                docs.push(value);
            }
        }
    }
    docs
}

/// Apply manifests into `namespace` with server-side apply. Returns how many were applied.
async fn apply_all(client: &Client, discovery: &Discovery, namespace: &str, docs: &[serde_yaml::Value]) -> usize {
    let mut applied = 0;
    for doc in docs {
        let mut obj: DynamicObject = serde_yaml::from_value(doc.clone()).unwrap();
        let Some(types) = obj.types.clone() else { continue };
        let gvk = kube::api::GroupVersionKind::try_from(&types).unwrap();
        let Some((resource, caps)) = discovery.resolve_gvk(&gvk) else {
            eprintln!("skipping {}/{}: kind not served", types.kind, obj.name_any());
            continue;
        };
        let api: Api<DynamicObject> = if caps.scope == Scope::Namespaced {
            obj.metadata.namespace = Some(namespace.to_string());
            Api::namespaced_with(client.clone(), namespace, &resource)
        } else {
            // Cluster-scoped objects of the examples (a Namespace) are not needed here.
            continue;
        };
        api.patch(
            &obj.name_any(),
            &PatchParams::apply(MANAGER).force(),
            &Patch::Apply(&obj),
        )
        .await
        .unwrap_or_else(|e| panic!("cannot apply {} {}: {e}", types.kind, obj.name_any()));
        applied += 1;
    }
    applied
}

async fn create_namespace(client: &Client, name: &str) {
    let api: Api<Namespace> = Api::all(client.clone());
    let ns: Namespace =
        serde_json::from_value(json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": name}})).unwrap();
    api.patch(name, &PatchParams::apply(MANAGER).force(), &Patch::Apply(&ns))
        .await
        .unwrap();
}

async fn children_versions(client: &Client, namespace: &str, collector: &str) -> Option<BTreeMap<String, String>> {
    let mut out = BTreeMap::new();
    let cm = Api::<ConfigMap>::namespaced(client.clone(), namespace)
        .get_opt(collector)
        .await
        .ok()??;
    let dep = Api::<Deployment>::namespaced(client.clone(), namespace)
        .get_opt(collector)
        .await
        .ok()??;
    let sa = Api::<ServiceAccount>::namespaced(client.clone(), namespace)
        .get_opt(collector)
        .await
        .ok()??;
    let role = Api::<Role>::namespaced(client.clone(), namespace)
        .get_opt(collector)
        .await
        .ok()??;
    let rb = Api::<RoleBinding>::namespaced(client.clone(), namespace)
        .get_opt(collector)
        .await
        .ok()??;
    for (kind, meta) in [
        ("ConfigMap", &cm.metadata),
        ("Deployment", &dep.metadata),
        ("ServiceAccount", &sa.metadata),
        ("Role", &role.metadata),
        ("RoleBinding", &rb.metadata),
    ] {
        let owner = meta.owner_references.as_ref()?.first()?;
        assert_eq!(
            owner.controller,
            Some(true),
            "{kind} {collector} has a controller owner"
        );
        // The Deployment's status moves with its pods: its spec generation is what an apply
        // would change. Every other child has no status, so its resourceVersion is compared.
        let version = if kind == "Deployment" {
            format!("generation {}", meta.generation?)
        } else {
            meta.resource_version.clone()?
        };
        out.insert(kind.to_string(), version);
    }
    Some(out)
}

fn config_hash(d: &Deployment) -> Option<String> {
    d.spec
        .template
        .metadata
        .as_ref()?
        .annotations
        .as_ref()?
        .get("siembridge.io/config-hash")
        .cloned()
}

#[tokio::test]
async fn operator_runs_collectors_on_a_real_cluster() {
    let Some(client) = cluster_env::client("cluster").await else {
        return;
    };
    install_crds(&client).await;
    let discovery = Discovery::new(client.clone()).run().await.unwrap();

    let run_id = format!("{:08x}", rand::random::<u32>());
    let stop = CancellationToken::new();
    let controllers = tokio::spawn(run_controllers(
        client.clone(),
        Metrics::unregistered(),
        ControllerSettings {
            collector_image: siembridge::operator::default_collector_image(),
            collector_pod_defaults: Default::default(),
            connectivity: Arc::new(TcpConnect::default()),
            instance: Some(format!("e2e-{run_id}")),
            watch_namespaces: Vec::new(),
        },
        stop.clone(),
    ));

    // Every example folder in its own namespace.
    // Deleted at the end, also when the test fails.
    let mut namespaces = cluster_env::Namespaces::default();
    let mut applied_examples = Vec::new();
    let examples = repo().join("examples");
    let mut folders: Vec<PathBuf> = std::fs::read_dir(&examples)
        .map(|e| {
            e.filter_map(|e| e.ok().map(|e| e.path()))
                .filter(|p| p.is_dir())
                .collect()
        })
        .unwrap_or_default();
    folders.sort();
    for folder in folders {
        let docs = manifests(&folder);
        if docs.is_empty() {
            continue;
        }
        let example = folder.file_name().unwrap().to_string_lossy().to_string();
        let namespace = format!("sb-e2e-{run_id}-{}", example.chars().take(30).collect::<String>())
            .to_lowercase()
            .replace('_', "-");
        create_namespace(&client, &namespace).await;
        let n = apply_all(&client, &discovery, &namespace, &docs).await;
        println!("example {example}: {n} objects applied in {namespace}");
        namespaces.0.push(namespace.clone());
        applied_examples.push((namespace, docs));
    }

    // Every LogSource of the examples gets conditions; those not blocked by a placeholder
    // reference get their collector.
    for (namespace, _) in &applied_examples {
        let api: Api<LogSource> = Api::namespaced(client.clone(), namespace);
        for ls in api.list(&Default::default()).await.unwrap() {
            let name = ls.name_any();
            let ready = eventually(&format!("conditions on LogSource {namespace}/{name}"), || {
                let api = api.clone();
                let name = name.clone();
                let destinations: Api<SiemDestination> = Api::namespaced(client.clone(), namespace);
                async move {
                    let ls = api.get(&name).await.ok()?;
                    let ready = ls.status?.conditions.into_iter().find(|c| c.type_ == "Ready")?;
                    // A LogSource applied before its destination says so until the operator sees
                    // the destination: wait for that to pass.
                    if ready.reason == "DestinationNotFound" {
                        let existing: Vec<String> = destinations
                            .list(&Default::default())
                            .await
                            .ok()?
                            .iter()
                            .map(|d| d.name_any())
                            .collect();
                        if ls.spec.destinations.iter().all(|d| existing.contains(&d.name)) {
                            return None;
                        }
                    }
                    Some(ready)
                }
            })
            .await;
            println!("LogSource {namespace}/{name}: Ready={} {}", ready.status, ready.reason);
            let blocked = [
                "SecretNotFound",
                "DestinationNotFound",
                "ConsumerGroupNotFound",
                "InvalidSpec",
            ];
            if ls.spec.event_hub.is_none() && !blocked.contains(&ready.reason.as_str()) {
                let collector = siembridge::render::log_source_collector_name(&name);
                eventually(&format!("children of {namespace}/{name}"), || {
                    children_versions(&client, namespace, &collector)
                })
                .await;
            }
        }
    }

    // Our own scenario: a replay LogSource delivering to an HTTP destination with a Secret.
    let namespace = format!("sb-e2e-{run_id}-own");
    create_namespace(&client, &namespace).await;
    namespaces.0.push(namespace.clone());
    let own: Vec<serde_yaml::Value> = serde_yaml::Deserializer::from_str(
        r#"
apiVersion: v1
kind: Secret
metadata: {name: receiver-auth}
stringData: {authorization: "Bearer synthetic-1"}
---
apiVersion: v1
kind: ConfigMap
metadata: {name: sample-events}
data:
  events.json: '{"records": [{"category": "SignInLogs", "time": "2026-11-01T00:00:00Z"}]}'
---
apiVersion: siembridge.io/v1alpha1
kind: SiemDestination
metadata: {name: receiver}
spec:
  http:
    url: http://192.0.2.10:8080/ingest
    headers:
    - name: Authorization
      valueFrom: {name: receiver-auth, key: authorization}
---
apiVersion: siembridge.io/v1alpha1
kind: LogSource
metadata: {name: replayed}
spec:
  replay: {configMap: sample-events, loop: true}
  destinations: [{name: receiver}]
"#,
    )
    .map(|d| serde_yaml::Value::deserialize(d).unwrap())
    .collect();
    apply_all(&client, &discovery, &namespace, &own).await;
    let collector = siembridge::render::log_source_collector_name("replayed");
    let deployments: Api<Deployment> = Api::namespaced(client.clone(), &namespace);
    let before = eventually("the collector of the own scenario", || {
        let deployments = deployments.clone();
        let collector = collector.clone();
        async move { config_hash(&deployments.get_opt(&collector).await.ok()??) }
    })
    .await;
    children_versions(&client, &namespace, &collector)
        .await
        .expect("children with owner references");
    let destinations: Api<SiemDestination> = Api::namespaced(client.clone(), &namespace);
    eventually("the destination to list its LogSource and have Ready", || {
        let destinations = destinations.clone();
        async move {
            let status = destinations.get("receiver").await.ok()?.status?;
            let listed = status.used_by.contains(&"replayed".to_string());
            let has_ready = status.conditions.iter().any(|c| c.type_ == "Ready");
            (listed && has_ready).then_some(())
        }
    })
    .await;

    // Secret rotation rolls the pod template.
    let secrets: Api<Secret> = Api::namespaced(client.clone(), &namespace);
    let rotated = json!({"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "receiver-auth"},
        "stringData": {"authorization": "Bearer synthetic-2"}});
    secrets
        .patch(
            "receiver-auth",
            &PatchParams::apply(MANAGER).force(),
            &Patch::Apply(&rotated),
        )
        .await
        .unwrap();
    eventually("a new config hash after the Secret rotation", || {
        let deployments = deployments.clone();
        let collector = collector.clone();
        let before = before.clone();
        async move {
            let hash = config_hash(&deployments.get_opt(&collector).await.ok()??)?;
            (hash != before).then_some(())
        }
    })
    .await;

    // Re-applying the same manifests changes no child.
    tokio::time::sleep(Duration::from_secs(3)).await;
    let settled = children_versions(&client, &namespace, &collector).await.unwrap();
    apply_all(&client, &discovery, &namespace, &own[1..]).await;
    for (ns, docs) in &applied_examples {
        apply_all(&client, &discovery, ns, docs).await;
    }
    tokio::time::sleep(Duration::from_secs(5)).await;
    let after = children_versions(&client, &namespace, &collector).await.unwrap();
    assert_eq!(settled, after, "re-applying the same resources changes no child");

    // Deleting the LogSource removes its children (garbage collection by owner reference).
    Api::<LogSource>::namespaced(client.clone(), &namespace)
        .delete("replayed", &DeleteParams::foreground())
        .await
        .unwrap();
    eventually("the children to go", || {
        let client = client.clone();
        let namespace = namespace.clone();
        let collector = collector.clone();
        async move {
            let dep = Api::<Deployment>::namespaced(client.clone(), &namespace)
                .get_opt(&collector)
                .await
                .ok()?;
            let cm = Api::<ConfigMap>::namespaced(client.clone(), &namespace)
                .get_opt(&collector)
                .await
                .ok()?;
            (dep.is_none() && cm.is_none()).then_some(())
        }
    })
    .await;

    stop.cancel();
    let _ = tokio::time::timeout(Duration::from_secs(30), controllers).await;
    drop(namespaces);
}
