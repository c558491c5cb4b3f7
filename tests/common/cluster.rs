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
