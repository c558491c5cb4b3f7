//! Refused credentials reach the resources on a real API server (when `KUBECONFIG` points at
//! one; without it the test prints `skipped: KUBECONFIG not set` and returns).
//!
//! The operator runs in this process. A SiemDestination whose connectivity check passes (a TCP
//! listener on 127.0.0.1) is `Ready`; when its collector's report (written here as the collector
//! writes it: its own key in the report ConfigMap) says the destination refuses the credentials,
//! the SiemDestination turns `Ready=False` with reason `Forbidden` and the LogSource
//! `DestinationsReady=False`; once a report shows a delivery after that, both are ready again.

use std::time::Duration;

use k8s_openapi::api::core::v1::{ConfigMap, Namespace};
use kube::api::{Api, DeleteParams, Patch, PatchParams};
use kube::Client;
use serde_json::json;
use siembridge::api::{LogSource, SiemDestination};
use siembridge::config::{CollectorReport, DestinationReport};

#[path = "common/cluster.rs"]
mod cluster_env;
use cluster_env::{eventually, install_crds};

const MANAGER: &str = "siembridge-e2e";

async fn apply(client: &Client, namespace: &str, value: serde_json::Value) {
    let kind = value["kind"].as_str().unwrap().to_string();
    let name = value["metadata"]["name"].as_str().unwrap().to_string();
    let pp = PatchParams::apply(MANAGER).force();
    match kind.as_str() {
        "Secret" => {
            let api: Api<k8s_openapi::api::core::v1::Secret> = Api::namespaced(client.clone(), namespace);
            api.patch(&name, &pp, &Patch::Apply(&value)).await.unwrap();
        }
        "ConfigMap" => {
            let api: Api<ConfigMap> = Api::namespaced(client.clone(), namespace);
            api.patch(&name, &pp, &Patch::Apply(&value)).await.unwrap();
        }
        "SiemDestination" => {
            let api: Api<SiemDestination> = Api::namespaced(client.clone(), namespace);
            api.patch(&name, &pp, &Patch::Apply(&value)).await.unwrap();
        }
        "LogSource" => {
            let api: Api<LogSource> = Api::namespaced(client.clone(), namespace);
            api.patch(&name, &pp, &Patch::Apply(&value)).await.unwrap();
        }
        other => panic!("unexpected kind {other}"),
    }
}

/// `(status, reason, message)` of condition `type_` of a SiemDestination or LogSource.
fn condition(
    conds: &[k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition],
    type_: &str,
) -> Option<(String, String, String)> {
    conds
        .iter()
        .find(|c| c.type_ == type_)
        .map(|c| (c.status.clone(), c.reason.clone(), c.message.clone()))
}

/// Write a replica's report into the collector's report ConfigMap, as a collector pod does.
async fn report(client: &Client, namespace: &str, collector: &str, destination: DestinationReport) {
    let now = chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Secs, true);
    let mut r = CollectorReport {
        reporter: format!("{collector}-pod-1"),
        time: now,
        ..Default::default()
    };
    r.destinations.insert("receiver".into(), destination);
    let cm = siembridge::operator::builders::report_config_map_name(collector);
    let api: Api<ConfigMap> = Api::namespaced(client.clone(), namespace);
    let key = siembridge::config::report_key(&r.reporter);
    let patch = json!({
        "apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": cm},
        "data": {key: serde_json::to_string(&r).unwrap()},
    });
    api.patch(
        &cm,
        &PatchParams::apply("siembridge-collector-e2e").force(),
        &Patch::Apply(&patch),
    )
    .await
    .unwrap();
}

#[tokio::test]
async fn a_collector_reporting_refused_credentials_makes_the_destination_and_log_source_not_ready() {
    let Some(client) = cluster_env::client("cluster_credentials").await else {
        return;
    };
    install_crds(&client).await;
    let run_id = format!("{:08x}", rand::random::<u32>());
    let namespace = format!("sb-e2e-{run_id}-creds");
    let ns_api: Api<Namespace> = Api::all(client.clone());
    ns_api
        .patch(
            &namespace,
            &PatchParams::apply(MANAGER).force(),
            &Patch::Apply(json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": namespace}})),
        )
        .await
        .unwrap();
    // A receiver that accepts connections: the operator's credential-free check passes.
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    tokio::spawn(async move {
        loop {
            if let Ok((socket, _)) = listener.accept().await {
                drop(socket);
            }
        }
    });

    let (stop, controllers) = cluster_env::run_operator(&client, &namespace, format!("e2e-{run_id}"));

    apply(
        &client,
        &namespace,
        json!({"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "receiver-auth"},
        "stringData": {"authorization": "Bearer synthetic-wrong"}}),
    )
    .await;
    apply(&client, &namespace, json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "sample-events"},
        "data": {"events.json": "{\"records\": [{\"category\": \"SignInLogs\", \"time\": \"2026-11-01T00:00:00Z\"}]}"}})).await;
    apply(
        &client,
        &namespace,
        json!({"apiVersion": "siembridge.io/v1alpha1", "kind": "SiemDestination",
        "metadata": {"name": "receiver"},
        "spec": {"http": {"url": format!("http://127.0.0.1:{port}/ingest"),
            "headers": [{"name": "Authorization", "valueFrom": {"name": "receiver-auth", "key": "authorization"}}]}}}),
    )
    .await;
    apply(
        &client,
        &namespace,
        json!({"apiVersion": "siembridge.io/v1alpha1", "kind": "LogSource",
        "metadata": {"name": "replayed"},
        "spec": {"replay": {"configMap": "sample-events", "loop": true}, "destinations": [{"name": "receiver"}]}}),
    )
    .await;

    let dests: Api<SiemDestination> = Api::namespaced(client.clone(), &namespace);
    let sources: Api<LogSource> = Api::namespaced(client.clone(), &namespace);
    let destination_ready = |want: &'static str| {
        let dests = dests.clone();
        move || {
            let dests = dests.clone();
            async move {
                let d = dests.get("receiver").await.ok()?;
                let c = condition(&d.status?.conditions, "Ready")?;
                (c.0 == want).then_some(c)
            }
        }
    };
    let destinations_ready = |want: &'static str| {
        let sources = sources.clone();
        move || {
            let sources = sources.clone();
            async move {
                let ls = sources.get("replayed").await.ok()?;
                let c = condition(&ls.status?.conditions, "DestinationsReady")?;
                (c.0 == want).then_some(c)
            }
        }
    };
    let ready = eventually("the SiemDestination Ready after its check", destination_ready("True")).await;
    println!("before: SiemDestination Ready={} {}", ready.0, ready.1);
    let collector = siembridge::render::log_source_collector_name("replayed");
    let cm_api: Api<ConfigMap> = Api::namespaced(client.clone(), &namespace);
    let cm_name = siembridge::operator::builders::report_config_map_name(&collector);
    eventually("the report ConfigMap", || {
        let (api, name) = (cm_api.clone(), cm_name.clone());
        async move { api.get_opt(&name).await.ok().flatten() }
    })
    .await;

    // The collector's report: the receiver answers 403.
    report(
        &client,
        &namespace,
        &collector,
        DestinationReport {
            healthy: false,
            last_error: Some("HTTP 403: forbidden (check the credentials in the headers' Secrets)".into()),
            reason: Some("Forbidden".into()),
            queue_depth: 60,
            ..Default::default()
        },
    )
    .await;
    let refused = eventually("the SiemDestination Ready=False", destination_ready("False")).await;
    println!(
        "refused: SiemDestination Ready={} {}: {}",
        refused.0, refused.1, refused.2
    );
    assert_eq!(refused.1, "Forbidden");
    assert!(refused.2.contains("HTTP 403"), "{}", refused.2);
    assert!(!refused.2.contains("synthetic-wrong"));
    let dr = eventually("the LogSource DestinationsReady=False", destinations_ready("False")).await;
    println!("refused: LogSource DestinationsReady={} {}: {}", dr.0, dr.1, dr.2);
    assert!(dr.2.contains("Forbidden"), "{}", dr.2);

    // The Secret is fixed; the (new) collector delivers and says so.
    report(
        &client,
        &namespace,
        &collector,
        DestinationReport {
            healthy: true,
            events_sent: 60,
            last_success_time: Some(chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Secs, true)),
            ..Default::default()
        },
    )
    .await;
    let back = eventually("the SiemDestination Ready again", destination_ready("True")).await;
    println!("fixed: SiemDestination Ready={} {}", back.0, back.1);
    let dr = eventually("the LogSource DestinationsReady again", destinations_ready("True")).await;
    println!("fixed: LogSource DestinationsReady={} {}", dr.0, dr.1);

    stop.cancel();
    let _ = tokio::time::timeout(Duration::from_secs(20), controllers).await;
    ns_api.delete(&namespace, &DeleteParams::default()).await.unwrap();
}
