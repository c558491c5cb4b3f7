//! Objects of the operator's cluster suites: Secrets, a Splunk HEC SiemDestination whose
//! connectivity check reaches a listener of the test, and API-polled LogSources.
#![allow(dead_code)]

use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::Secret;
use kube::api::{Api, PostParams};
use kube::Client;
use serde_json::json;
use siembridge::api::{LogSource, SiemDestination};

/// A TCP listener on 127.0.0.1 accepting and dropping connections (the destination's
/// connectivity check passes), until the returned task is aborted.
pub async fn listener() -> (u16, tokio::task::JoinHandle<()>) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let task = tokio::spawn(async move {
        loop {
            if let Ok((conn, _)) = listener.accept().await {
                drop(conn);
            }
        }
    });
    (port, task)
}

/// Secrets `splunk-hec` (key `token`) and `o365-app` (key `clientSecret`) with synthetic values,
/// and the SiemDestination `splunk` delivering to 127.0.0.1:`port`.
pub async fn destination(client: &Client, namespace: &str, port: u16) {
    let secrets: Api<Secret> = Api::namespaced(client.clone(), namespace);
    for (name, key) in [("splunk-hec", "token"), ("o365-app", "clientSecret")] {
        let secret: Secret = serde_json::from_value(json!({
            "metadata": {"name": name}, "stringData": {key: format!("synthetic-{name}-value")}
        }))
        .unwrap();
        secrets.create(&PostParams::default(), &secret).await.unwrap();
    }
    let dests: Api<SiemDestination> = Api::namespaced(client.clone(), namespace);
    let dest: SiemDestination = serde_json::from_value(json!({
        "apiVersion": "siembridge.io/v1alpha1", "kind": "SiemDestination",
        "metadata": {"name": "splunk"},
        "spec": {"splunkHec": {"url": format!("https://127.0.0.1:{port}"),
                               "token": {"name": "splunk-hec", "key": "token"}}}
    }))
    .unwrap();
    dests.create(&PostParams::default(), &dest).await.unwrap();
}

/// An API-polled LogSource `name` reading with Secret `o365-app` and delivering to `splunk`.
pub async fn log_source(client: &Client, namespace: &str, name: &str) {
    let api: Api<LogSource> = Api::namespaced(client.clone(), namespace);
    let ls: LogSource = serde_json::from_value(json!({
        "apiVersion": "siembridge.io/v1alpha1", "kind": "LogSource",
        "metadata": {"name": name},
        "spec": {
            "managementActivityApi": {
                "credentials": {
                    "tenantId": "11111111-2222-3333-4444-555555555555",
                    "clientId": "66666666-7777-8888-9999-aaaaaaaaaaaa",
                    "clientSecret": {"name": "o365-app", "key": "clientSecret"}
                },
                "contentTypes": ["Audit.General"]
            },
            "destinations": [{"name": "splunk"}]
        }
    }))
    .unwrap();
    api.create(&PostParams::default(), &ls).await.unwrap();
}

/// The collector Deployment of LogSource `name` once the LogSource has a `Ready` condition for
/// its generation and the Deployment exists; `None` before.
pub async fn reconciled(client: &Client, namespace: &str, name: &str) -> Option<Deployment> {
    let ls = Api::<LogSource>::namespaced(client.clone(), namespace)
        .get(name)
        .await
        .ok()?;
    let status = ls.status.as_ref()?;
    status
        .conditions
        .iter()
        .find(|c| c.type_ == "Ready" && c.observed_generation == ls.metadata.generation)?;
    Api::<Deployment>::namespaced(client.clone(), namespace)
        .get(&siembridge::render::log_source_collector_name(name))
        .await
        .ok()
}
