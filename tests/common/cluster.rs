//! The real API server of the cluster suites: `KUBECONFIG` (which `e2e/test-all.sh` sets, starting
//! the control plane of `../shared/k8s` when there is no cluster of its own). Without it a suite
//! skips and says so, except under `CI=true`, where a missing cluster fails the run: CI must run
//! every cluster suite.
#![allow(dead_code)]

use k8s_openapi::api::core::v1::Namespace;
use kube::api::{Api, DeleteParams, PostParams};
use kube::Client;

/// A client of the test cluster, or `None` (after printing why) when there is none.
pub async fn client(suite: &str) -> Option<Client> {
    if std::env::var_os("KUBECONFIG").is_none() {
        assert!(
            std::env::var("CI").as_deref() != Ok("true"),
            "{suite}: CI=true but KUBECONFIG is not set; e2e/test-all.sh starts an API server from ../shared/k8s"
        );
        println!("skipped {suite}: KUBECONFIG not set (e2e/test-all.sh starts an API server from ../shared/k8s)");
        return None;
    }
    siembridge::tls::install_crypto_provider();
    let client = Client::try_default()
        .await
        .expect("KUBECONFIG is set but no client can be made");
    Some(client)
}

/// A namespace of this test, deleted when dropped (also when the test fails).
pub struct TestNamespace {
    pub name: String,
}

impl TestNamespace {
    pub async fn create(client: &Client, prefix: &str) -> Self {
        let name = format!("{prefix}-{:08x}", rand::random::<u32>());
        let api: Api<Namespace> = Api::all(client.clone());
        api.create(
            &PostParams::default(),
            &serde_json::from_value(serde_json::json!({"metadata": {"name": name}})).unwrap(),
        )
        .await
        .unwrap_or_else(|e| panic!("namespace {name} not created: {e}"));
        TestNamespace { name }
    }
}

impl Drop for TestNamespace {
    fn drop(&mut self) {
        delete_namespaces(vec![self.name.clone()]);
    }
}

/// Namespaces a test made under names of its own, deleted when dropped (also when it fails).
#[derive(Default)]
pub struct Namespaces(pub Vec<String>);

impl Drop for Namespaces {
    fn drop(&mut self) {
        delete_namespaces(std::mem::take(&mut self.0));
    }
}

/// Delete `names`, blocking. Called from `Drop`, which may run inside a runtime this thread
/// blocks: the deletes run on a thread, runtime and client of their own.
pub fn delete_namespaces(names: Vec<String>) {
    if names.is_empty() {
        return;
    }
    let _ = std::thread::spawn(move || {
        let rt = tokio::runtime::Builder::new_current_thread().enable_all().build();
        if let Ok(rt) = rt {
            rt.block_on(async move {
                if let Ok(client) = Client::try_default().await {
                    let api: Api<Namespace> = Api::all(client);
                    for name in names {
                        let _ = api.delete(&name, &DeleteParams::default()).await;
                    }
                }
            });
        }
    })
    .join();
}

/// How long a cluster suite waits for the controllers and the API server.
pub const WAIT: std::time::Duration = std::time::Duration::from_secs(120);

/// Poll `check` until it returns `Some`, or fail after [`WAIT`].
pub async fn eventually<T, F, Fut>(what: &str, mut check: F) -> T
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Option<T>>,
{
    let deadline = tokio::time::Instant::now() + WAIT;
    loop {
        if let Some(v) = check().await {
            return v;
        }
        assert!(tokio::time::Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(std::time::Duration::from_millis(300)).await;
    }
}

/// Apply the CRDs of `crds/` with server-side apply and wait until each is established.
pub async fn install_crds(client: &Client) {
    use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
    use kube::api::{Patch, PatchParams};
    use kube::ResourceExt;
    let api: Api<CustomResourceDefinition> = Api::all(client.clone());
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("crds");
    let mut names = Vec::new();
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.extension().and_then(|e| e.to_str()) != Some("yaml") {
            continue;
        }
        let crd: CustomResourceDefinition = serde_yaml::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap();
        let name = crd.name_any();
        api.patch(
            &name,
            &PatchParams::apply("siembridge-e2e").force(),
            &Patch::Apply(&crd),
        )
        .await
        .unwrap_or_else(|e| panic!("cannot install CRD {}: {e}", path.display()));
        names.push(name);
    }
    for name in names {
        let api = api.clone();
        eventually(&format!("CRD {name} established"), || {
            let (api, name) = (api.clone(), name.clone());
            async move {
                let conditions = api.get(&name).await.ok()?.status?.conditions?;
                conditions
                    .iter()
                    .any(|c| c.type_ == "Established" && c.status == "True")
                    .then_some(())
            }
        })
        .await;
    }
}

/// The operator's controllers for `namespace` with the default collector image, running in this
/// process until the returned token is cancelled.
pub fn run_operator(
    client: &Client,
    namespace: &str,
    instance: String,
) -> (
    tokio_util::sync::CancellationToken,
    tokio::task::JoinHandle<anyhow::Result<()>>,
) {
    use siembridge::operator::{connectivity::TcpConnect, metrics::Metrics, run_controllers, ControllerSettings};
    let stop = tokio_util::sync::CancellationToken::new();
    let controllers = tokio::spawn(run_controllers(
        client.clone(),
        Metrics::unregistered(),
        ControllerSettings {
            collector_image: siembridge::operator::default_collector_image(),
            connectivity: std::sync::Arc::new(TcpConnect::default()),
            instance: Some(instance),
            watch_namespaces: vec![namespace.to_string()],
            collector_pod_defaults: Default::default(),
        },
        stop.clone(),
    ));
    (stop, controllers)
}

/// `(status, reason, message)` of condition `type_` of a resource's `status.conditions`.
pub fn condition(
    conditions: Option<&[k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition]>,
    type_: &str,
) -> Option<(String, String, String)> {
    let c = conditions?.iter().find(|c| c.type_ == type_)?;
    Some((c.status.clone(), c.reason.clone(), c.message.clone()))
}

/// The cells of `kubectl get logsource NAME` (the server-side table, printer columns included),
/// by column name.
pub async fn table_row(
    client: &Client,
    namespace: &str,
    name: &str,
) -> Option<serde_json::Map<String, serde_json::Value>> {
    let request = http::Request::get(format!(
        "/apis/siembridge.io/v1alpha1/namespaces/{namespace}/logsources/{name}"
    ))
    .header("Accept", "application/json;as=Table;v=v1;g=meta.k8s.io")
    .body(Vec::new())
    .unwrap();
    let table: serde_json::Value = client.request(request).await.ok()?;
    let columns: Vec<String> = table["columnDefinitions"]
        .as_array()?
        .iter()
        .filter_map(|c| c["name"].as_str().map(str::to_string))
        .collect();
    let cells = table["rows"][0]["cells"].as_array()?.clone();
    Some(columns.into_iter().zip(cells).collect())
}
