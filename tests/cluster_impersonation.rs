//! Least privilege on a real API server (`KUBECONFIG`), checked by impersonation (issue 14):
//!
//! - a collector's ServiceAccount reads exactly the Secrets its collector names, its own report
//!   ConfigMap and the namespace's Leases, and nothing else: another Secret, listing Secrets,
//!   another ConfigMap, Deployments are refused by the API server;
//! - the operator, running as the ServiceAccount with the Role the Helm chart renders for
//!   `watchNamespaces: [<ns>]`, does its work (collector children applied, a Secret rotation
//!   rolls the collector) and never receives a Secret value: every request it makes on
//!   `secrets` is a LIST or WATCH asking for `PartialObjectMetadata` (the `Accept` header of each
//!   request is recorded), never a GET. The chart's Role still grants `get` on Secrets: the
//!   API server lets the operator write a collector Role granting `get` on named Secrets only if
//!   the operator holds that permission itself (RBAC escalation prevention); holding it is not
//!   using it, which is what the recorded requests prove.
//!
//! Needs a Python with `helm_python` for the chart (`SIEMBRIDGE_TEST_PYTHON`, else `e2e/.venv`,
//! which `e2e/test-all.sh` creates).

#[path = "common/cluster.rs"]
mod cluster;
#[path = "common/operator_fixtures.rs"]
mod fixtures;

use std::path::Path;
use std::sync::{Arc, Mutex};

use cluster::{client, eventually, install_crds, TestNamespace};
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::coordination::v1::Lease;
use k8s_openapi::api::core::v1::{ConfigMap, Secret, ServiceAccount};
use k8s_openapi::api::rbac::v1::{Role, RoleBinding};
use kube::api::{Api, ListParams, Patch, PatchParams, PostParams};
use kube::Client;
use serde_json::{json, Value};
use siembridge::operator::{connectivity::TcpConnect, metrics::Metrics, run_controllers, ControllerSettings};

/// A client acting as `system:serviceaccount:<namespace>:<name>`.
async fn impersonating(namespace: &str, name: &str) -> kube::Config {
    let mut config = kube::Config::infer().await.expect("kubeconfig");
    config.auth_info.impersonate = Some(format!("system:serviceaccount:{namespace}:{name}"));
    config.auth_info.impersonate_groups = Some(vec![
        "system:serviceaccounts".into(),
        format!("system:serviceaccounts:{namespace}"),
        "system:authenticated".into(),
    ]);
    config
}

fn refused<T: std::fmt::Debug>(what: &str, result: Result<T, kube::Error>) {
    match result {
        Err(kube::Error::Api(status)) if status.code == 403 => println!("  refused as it must be: {what}"),
        other => panic!("{what}: expected 403 Forbidden, got {other:?}"),
    }
}

fn allowed<T>(what: &str, result: Result<T, kube::Error>) {
    match result {
        Ok(_) => println!("  allowed as it must be: {what}"),
        Err(e) => panic!("{what}: expected to be allowed, got {e}"),
    }
}

/// The objects the chart renders with `values` into release namespace `namespace`.
fn chart_objects(namespace: &str, values: Value) -> Vec<Value> {
    let repo = Path::new(env!("CARGO_MANIFEST_DIR"));
    let python = std::env::var("SIEMBRIDGE_TEST_PYTHON").unwrap_or_else(|_| {
        let venv = repo.join("e2e/.venv/bin/python");
        if venv.exists() {
            venv.display().to_string()
        } else {
            "python3".into()
        }
    });
    let output = std::process::Command::new(&python)
        .current_dir(repo)
        .args(["e2e/helm_render.py", "charts/siembridge", "--namespace", namespace])
        .args(["--name", "siembridge", "--json", "--set-json"])
        .arg(values.to_string())
        .output()
        .unwrap_or_else(|e| {
            panic!("cannot run {python}: {e} (run e2e/test-all.sh once, or set SIEMBRIDGE_TEST_PYTHON)")
        });
    assert!(
        output.status.success(),
        "helm_render.py failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    let out: Value = serde_json::from_slice(&output.stdout).expect("helm_render.py --json prints JSON");
    let mut objects = Vec::new();
    for text in out["manifests"].as_object().expect("manifests").values() {
        for doc in serde_yaml::Deserializer::from_str(text.as_str().unwrap_or_default()) {
            let value: Value = serde::Deserialize::deserialize(doc).expect("rendered YAML");
            if !value.is_null() {
                objects.push(value);
            }
        }
    }
    objects
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn collectors_read_only_their_secrets_and_the_operator_never_reads_secret_data() {
    let Some(admin) = client("cluster_impersonation").await else {
        return;
    };
    install_crds(&admin).await;
    let ns = TestNamespace::create(&admin, "sb-rbac").await;
    let (port, listener) = fixtures::listener().await;
    fixtures::destination(&admin, &ns.name, port).await;
    let secrets: Api<Secret> = Api::namespaced(admin.clone(), &ns.name);
    secrets
        .create(
            &PostParams::default(),
            &serde_json::from_value(json!({"metadata": {"name": "unrelated"}, "stringData": {"k": "synthetic"}}))
                .unwrap(),
        )
        .await
        .unwrap();

    // The operator as the chart makes it: its ServiceAccount, Role and RoleBinding for
    // watchNamespaces: [ns], with the release in the same namespace.
    let objects = chart_objects(&ns.name, json!({"watchNamespaces": [ns.name]}));
    let of_kind = |kind: &str| -> Vec<Value> { objects.iter().filter(|o| o["kind"] == kind).cloned().collect() };
    assert!(
        of_kind("ClusterRole").is_empty(),
        "a ClusterRole for one watched namespace"
    );
    let sa: ServiceAccount = serde_json::from_value(of_kind("ServiceAccount")[0].clone()).unwrap();
    let operator_sa = sa.metadata.name.clone().unwrap();
    let roles = of_kind("Role");
    assert_eq!(roles.len(), 1, "one Role when the release namespace is the watched one");
    let pp = PatchParams::apply("cluster-impersonation-test");
    Api::<ServiceAccount>::namespaced(admin.clone(), &ns.name)
        .patch(&operator_sa, &pp, &Patch::Apply(&sa))
        .await
        .unwrap();
    let role: Role = serde_json::from_value(roles[0].clone()).unwrap();
    Api::<Role>::namespaced(admin.clone(), &ns.name)
        .patch(role.metadata.name.as_deref().unwrap(), &pp, &Patch::Apply(&role))
        .await
        .unwrap();
    let binding: RoleBinding = serde_json::from_value(of_kind("RoleBinding")[0].clone()).unwrap();
    Api::<RoleBinding>::namespaced(admin.clone(), &ns.name)
        .patch(binding.metadata.name.as_deref().unwrap(), &pp, &Patch::Apply(&binding))
        .await
        .unwrap();

    // The operator's client: the chart's ServiceAccount, every request on secrets recorded.
    let recorded: Arc<Mutex<Vec<(String, String, String)>>> = Arc::default();
    let layer = {
        let recorded = recorded.clone();
        tower::util::MapRequestLayer::new(move |request: http::Request<kube::client::Body>| {
            let (verb, resource) = siembridge::operator::api_requests::classify(&request);
            if resource.starts_with("secrets") {
                let accept = request
                    .headers()
                    .get(http::header::ACCEPT)
                    .and_then(|v| v.to_str().ok())
                    .unwrap_or("")
                    .to_string();
                recorded
                    .lock()
                    .unwrap()
                    .push((verb.to_string(), request.uri().to_string(), accept));
            }
            request
        })
    };
    let operator_client = kube::client::ClientBuilder::try_from(impersonating(&ns.name, &operator_sa).await)
        .unwrap()
        .with_layer(&layer)
        .build();
    let stop = tokio_util::sync::CancellationToken::new();
    let controllers = tokio::spawn(run_controllers(
        operator_client,
        Metrics::unregistered(),
        ControllerSettings {
            collector_image: siembridge::operator::default_collector_image(),
            connectivity: Arc::new(TcpConnect::default()),
            instance: Some("impersonation-test".into()),
            watch_namespaces: vec![ns.name.clone()],
            collector_pod_defaults: Default::default(),
        },
        stop.clone(),
    ));

    fixtures::log_source(&admin, &ns.name, "audit").await;
    let deployment = eventually(
        "the operator (as the chart's ServiceAccount) reconciled the LogSource",
        || fixtures::reconciled(&admin, &ns.name, "audit"),
    )
    .await;
    let hash_of = |d: &Deployment| {
        d.spec
            .template
            .metadata
            .as_ref()
            .and_then(|m| m.annotations.as_ref())
            .and_then(|a| a.get(siembridge::operator::builders::CONFIG_HASH_ANNOTATION).cloned())
    };
    let first_hash = hash_of(&deployment).expect("config hash on the pod template");

    // A rotation of the Secret rolls the collector, from metadata alone.
    secrets
        .patch(
            "o365-app",
            &PatchParams::default(),
            &Patch::Merge(json!({"stringData": {"clientSecret": "synthetic-rotated-value"}})),
        )
        .await
        .unwrap();
    let collector = siembridge::render::log_source_collector_name("audit");
    let deployments: Api<Deployment> = Api::namespaced(admin.clone(), &ns.name);
    eventually("the Secret rotation rolled the collector", || {
        let (deployments, collector, first_hash) = (deployments.clone(), collector.clone(), first_hash.clone());
        async move {
            let d = deployments.get(&collector).await.ok()?;
            (hash_of(&d)? != first_hash).then_some(())
        }
    })
    .await;
    stop.cancel();
    let _ = controllers.await;

    let requests = recorded.lock().unwrap().clone();
    println!("operator requests on secrets: {}", requests.len());
    for (verb, uri, accept) in &requests {
        println!("  {verb} {uri} Accept: {accept}");
    }
    assert!(!requests.is_empty(), "the operator watched no Secrets");
    let bodies: Vec<_> = requests
        .iter()
        .filter(|(verb, _, accept)| {
            !matches!(verb.as_str(), "LIST" | "WATCH") || !accept.contains("as=PartialObjectMetadata")
        })
        .collect();
    println!("operator requests that could return Secret data: {}", bodies.len());
    assert!(bodies.is_empty(), "the operator asked for Secret bodies: {bodies:?}");

    // The collector's ServiceAccount: its own Secrets, report ConfigMap and Leases; nothing else.
    println!("collector ServiceAccount {collector}:");
    let as_collector = Client::try_from(impersonating(&ns.name, &collector).await).unwrap();
    let c_secrets: Api<Secret> = Api::namespaced(as_collector.clone(), &ns.name);
    allowed("get its Secret o365-app", c_secrets.get("o365-app").await);
    allowed(
        "get its destination's Secret splunk-hec",
        c_secrets.get("splunk-hec").await,
    );
    refused("get Secret unrelated", c_secrets.get("unrelated").await);
    refused("list Secrets", c_secrets.list(&ListParams::default()).await);
    let c_maps: Api<ConfigMap> = Api::namespaced(as_collector.clone(), &ns.name);
    let report = siembridge::operator::builders::report_config_map_name(&collector);
    allowed("get its report ConfigMap", c_maps.get(&report).await);
    allowed(
        "patch its report ConfigMap",
        c_maps
            .patch(
                &report,
                &PatchParams::default(),
                &Patch::Merge(json!({"data": {"probe": "x"}})),
            )
            .await,
    );
    refused("get ConfigMap kube-root-ca.crt", c_maps.get("kube-root-ca.crt").await);
    refused("list ConfigMaps", c_maps.list(&ListParams::default()).await);
    let c_leases: Api<Lease> = Api::namespaced(as_collector.clone(), &ns.name);
    let lease: Lease =
        serde_json::from_value(json!({"metadata": {"name": format!("{collector}-probe")}, "spec": {}})).unwrap();
    allowed(
        "create a checkpoint Lease",
        c_leases.create(&PostParams::default(), &lease).await,
    );
    allowed(
        "get its checkpoint Lease",
        c_leases.get(&format!("{collector}-probe")).await,
    );
    refused(
        "list Deployments",
        Api::<Deployment>::namespaced(as_collector.clone(), &ns.name)
            .list(&ListParams::default())
            .await,
    );
    refused(
        "get Secret o365-app in another namespace",
        Api::<Secret>::namespaced(as_collector, "default").get("o365-app").await,
    );
    listener.abort();
}
