//! Collector pods a platform team can shape, on a real API server (`KUBECONFIG`, which
//! `e2e/test-all.sh` points at the control plane of `../shared/k8s`): the chart's collector pod
//! defaults and a resource's `podTemplate` reach the Deployments, Azure workload identity
//! annotates the ServiceAccount and labels the pods, a ConsumerGroup with more than one replica
//! gets a PodDisruptionBudget, the `scale` subresource drives `spec.replicas` (as `kubectl
//! scale`, the HPA and KEDA do), and the server rejects a `podTemplate` on an `eventHub`
//! LogSource. Without `KUBECONFIG` it prints `skipped: KUBECONFIG not set`.

use std::sync::Arc;

use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::{Namespace, ServiceAccount};
use k8s_openapi::api::policy::v1::PodDisruptionBudget;
use kube::api::{Api, DeleteParams, Patch, PatchParams, PostParams};
use serde_json::json;
use siembridge::api::{CollectorPodTemplate, ConsumerGroup, LogSource, SiemDestination};
use siembridge::operator::connectivity::TcpConnect;
use siembridge::operator::metrics::Metrics;
use siembridge::operator::{run_controllers, ControllerSettings};
use tokio_util::sync::CancellationToken;

#[path = "common/cluster.rs"]
mod cluster_env;
use cluster_env::{eventually, install_crds};

const MANAGER: &str = "siembridge-e2e-pods";

async fn apply<K>(api: &Api<K>, value: serde_json::Value) -> Result<K, kube::Error>
where
    K: kube::Resource + Clone + std::fmt::Debug + serde::de::DeserializeOwned + serde::Serialize,
{
    let name = value["metadata"]["name"].as_str().unwrap().to_string();
    api.patch(&name, &PatchParams::apply(MANAGER).force(), &Patch::Apply(&value))
        .await
}

fn env_value(d: &Deployment, name: &str) -> Option<String> {
    let pod = d.spec.template.spec.as_ref()?;
    pod.containers[0]
        .env
        .as_ref()?
        .iter()
        .find(|e| e.name == name)
        .and_then(|e| e.value.clone())
}

fn pod_label(d: &Deployment, name: &str) -> Option<String> {
    d.spec.template.metadata.as_ref()?.labels.as_ref()?.get(name).cloned()
}

#[tokio::test]
async fn collector_pods_carry_defaults_overrides_workload_identity_and_scale() {
    let Some(client) = cluster_env::client("cluster_pods").await else {
        return;
    };
    install_crds(&client).await;
    let namespace = format!("sb-pods-{:08x}", rand::random::<u32>());
    let ns_api: Api<Namespace> = Api::all(client.clone());
    apply(
        &ns_api,
        json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": namespace}}),
    )
    .await
    .unwrap();

    // The chart's `collectorPod` value, as the operator receives it.
    let defaults: CollectorPodTemplate = serde_json::from_value(json!({
        "labels": {"team": "soc", "cost-center": "default"},
        "imagePullSecrets": [{"name": "registry-credentials"}],
        "nodeSelector": {"kubernetes.io/os": "linux"},
        "env": [{"name": "HTTPS_PROXY", "value": "http://proxy.contoso.example:3128"}],
        "serviceAccountAnnotations": {"example.com/owner": "platform"}
    }))
    .unwrap();
    let stop = CancellationToken::new();
    let controllers = tokio::spawn(run_controllers(
        client.clone(),
        Metrics::unregistered(),
        ControllerSettings {
            collector_image: "registry.example.com/secops/siembridge:0.1.0".into(),
            collector_pod_defaults: defaults,
            connectivity: Arc::new(TcpConnect::default()),
            instance: Some(namespace.clone()),
            watch_namespaces: vec![namespace.clone()],
        },
        stop.clone(),
    ));

    let destinations: Api<SiemDestination> = Api::namespaced(client.clone(), &namespace);
    apply(
        &destinations,
        json!({"apiVersion": "siembridge.io/v1alpha1", "kind": "SiemDestination",
               "metadata": {"name": "console"}, "spec": {"stdout": {}}}),
    )
    .await
    .unwrap();
    let groups: Api<ConsumerGroup> = Api::namespaced(client.clone(), &namespace);
    apply(
        &groups,
        json!({"apiVersion": "siembridge.io/v1alpha1", "kind": "ConsumerGroup",
        "metadata": {"name": "entra"},
        "spec": {
            "eventHub": {"fullyQualifiedNamespace": "contoso.servicebus.windows.net",
                         "hubName": "entra", "consumerGroup": "siembridge"},
            "credentials": {"entra": {"tenantId": "00000000-0000-0000-0000-00000000000a",
                                      "clientId": "00000000-0000-0000-0000-0000000000c1",
                                      "workloadIdentity": true}},
            "replicas": 2,
            "podTemplate": {
                "labels": {"cost-center": "secops"},
                "tolerations": [{"key": "dedicated", "operator": "Equal", "value": "siem",
                                 "effect": "NoSchedule"}],
                "env": [{"name": "HTTPS_PROXY", "value": "http://proxy-b.contoso.example:3128"},
                        {"name": "NO_PROXY", "value": ".svc"}],
                "priorityClassName": "siem-critical"
            }}}),
    )
    .await
    .unwrap();
    let sources: Api<LogSource> = Api::namespaced(client.clone(), &namespace);
    apply(
        &sources,
        json!({"apiVersion": "siembridge.io/v1alpha1", "kind": "LogSource",
               "metadata": {"name": "entra-signins"},
               "spec": {"eventHub": {"consumerGroupRef": "entra", "categories": ["SignInLogs"]},
                        "destinations": [{"name": "console"}]}}),
    )
    .await
    .unwrap();

    // The ConsumerGroup's collector: defaults overridden by its podTemplate, workload identity.
    let deployments: Api<Deployment> = Api::namespaced(client.clone(), &namespace);
    let collector = siembridge::render::consumer_group_collector_name("entra");
    let d = eventually("the ConsumerGroup's collector Deployment", || {
        let (api, name) = (deployments.clone(), collector.clone());
        async move { api.get_opt(&name).await.ok()? }
    })
    .await;
    let pod = d.spec.template.spec.clone().unwrap();
    println!(
        "collector {collector}: labels {:?}",
        d.spec.template.metadata.as_ref().and_then(|m| m.labels.clone())
    );
    assert_eq!(pod_label(&d, "team").as_deref(), Some("soc"), "default label");
    assert_eq!(pod_label(&d, "cost-center").as_deref(), Some("secops"), "override wins");
    assert_eq!(pod_label(&d, "azure.workload.identity/use").as_deref(), Some("true"));
    assert_eq!(
        pod_label(&d, "app.kubernetes.io/instance").as_deref(),
        Some(collector.as_str()),
        "selector labels are the operator's"
    );
    assert_eq!(
        pod.image_pull_secrets.as_ref().map(|s| s[0].name.clone()),
        Some("registry-credentials".to_string())
    );
    assert_eq!(
        pod.node_selector
            .as_ref()
            .and_then(|n| n.get("kubernetes.io/os").cloned())
            .as_deref(),
        Some("linux")
    );
    assert_eq!(pod.tolerations.as_ref().map(|t| t.len()), Some(1));
    assert_eq!(pod.priority_class_name.as_deref(), Some("siem-critical"));
    assert_eq!(
        env_value(&d, "HTTPS_PROXY").as_deref(),
        Some("http://proxy-b.contoso.example:3128"),
        "env merged by name"
    );
    assert_eq!(env_value(&d, "NO_PROXY").as_deref(), Some(".svc"));
    assert_eq!(d.spec.replicas, Some(2));
    let sas: Api<ServiceAccount> = Api::namespaced(client.clone(), &namespace);
    let sa = sas.get(&collector).await.unwrap();
    let annotations = sa.metadata.annotations.clone().unwrap_or_default();
    println!("ServiceAccount {collector}: annotations {annotations:?}");
    assert_eq!(
        annotations.get("azure.workload.identity/client-id").map(String::as_str),
        Some("00000000-0000-0000-0000-0000000000c1")
    );
    assert_eq!(
        annotations.get("azure.workload.identity/tenant-id").map(String::as_str),
        Some("00000000-0000-0000-0000-00000000000a")
    );
    assert_eq!(
        annotations.get("example.com/owner").map(String::as_str),
        Some("platform")
    );
    let budgets: Api<PodDisruptionBudget> = Api::namespaced(client.clone(), &namespace);
    let pdb = budgets
        .get(&collector)
        .await
        .expect("a PodDisruptionBudget for 2 replicas");
    println!(
        "PodDisruptionBudget {collector}: {:?}",
        pdb.spec.as_ref().and_then(|s| s.max_unavailable.clone())
    );

    // `kubectl scale consumergroup entra --replicas=3` goes through the scale subresource.
    let scale = groups.get_scale("entra").await.unwrap();
    println!("scale before: spec {:?} status {:?}", scale.spec, scale.status);
    groups
        .patch_scale(
            "entra",
            &PatchParams::default(),
            &Patch::Merge(json!({"spec": {"replicas": 3}})),
        )
        .await
        .unwrap();
    eventually("the collector Deployment scaled to 3", || {
        let (api, name) = (deployments.clone(), collector.clone());
        async move { (api.get(&name).await.ok()?.spec.replicas == Some(3)).then_some(()) }
    })
    .await;
    let selector = eventually("the scale subresource's selector", || {
        let api = groups.clone();
        async move {
            api.get_scale("entra")
                .await
                .ok()?
                .status?
                .selector
                .filter(|s| !s.is_empty())
        }
    })
    .await;
    println!("scale selector: {selector}");
    assert!(selector.contains(&format!("app.kubernetes.io/instance={collector}")));
    // Down to one pod: no budget any more.
    groups
        .patch_scale(
            "entra",
            &PatchParams::default(),
            &Patch::Merge(json!({"spec": {"replicas": 1}})),
        )
        .await
        .unwrap();
    eventually("the PodDisruptionBudget removed at 1 replica", || {
        let (api, name) = (budgets.clone(), collector.clone());
        async move { api.get_opt(&name).await.ok()?.is_none().then_some(()) }
    })
    .await;

    // The server refuses a podTemplate where no pod of the LogSource's own exists.
    let refused = sources
        .create(
            &PostParams::default(),
            &serde_json::from_value(json!({"apiVersion": "siembridge.io/v1alpha1", "kind": "LogSource",
                "metadata": {"name": "misplaced"},
                "spec": {"eventHub": {"consumerGroupRef": "entra"}, "destinations": [{"name": "console"}],
                         "podTemplate": {"nodeSelector": {"a": "b"}}}}))
            .unwrap(),
        )
        .await
        .expect_err("podTemplate on an eventHub LogSource is rejected");
    println!("rejected: {refused}");
    assert!(refused
        .to_string()
        .contains("set podTemplate and resources on the ConsumerGroup"));

    stop.cancel();
    let _ = controllers.await;
    ns_api.delete(&namespace, &DeleteParams::background()).await.unwrap();
}
