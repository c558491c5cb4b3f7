//! Dead letters as the API server shows them, when `KUBECONFIG` points at one (otherwise the
//! test prints `skipped: KUBECONFIG not set`): a collector report with dead letters becomes
//! `status.eventsDeadLettered`, the `Dead-Lettered` printer column of `kubectl get`, the
//! `DeadLettered` condition and a `DeadLettered` Event; a LogSource without a dead-letter
//! destination is `DeadLettersDurable=False`, one with it `True`.

use std::time::Duration;

use k8s_openapi::api::core::v1::{ConfigMap, Namespace};
use k8s_openapi::api::events::v1::Event;
use kube::api::{Api, DeleteParams, ListParams, Patch, PatchParams};
use serde_json::json;
use siembridge::api::{LogSource, SiemDestination};

#[path = "common/cluster.rs"]
mod cluster_env;
use cluster_env::{eventually, install_crds, table_row};

const MANAGER: &str = "siembridge-e2e-dead-letter";

fn condition(ls: &LogSource, type_: &str) -> Option<(String, String, String)> {
    cluster_env::condition(ls.status.as_ref().map(|s| s.conditions.as_slice()), type_)
}

#[tokio::test]
async fn dead_letters_show_in_status_printer_column_condition_and_event() {
    let Some(client) = cluster_env::client("cluster_dead_letter").await else {
        return;
    };
    install_crds(&client).await;

    let run_id = format!("{:08x}", rand::random::<u32>());
    let namespace = format!("sb-e2e-{run_id}-dead-letter");
    let ns_api: Api<Namespace> = Api::all(client.clone());
    let ns: Namespace =
        serde_json::from_value(json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": namespace}}))
            .unwrap();
    ns_api
        .patch(&namespace, &PatchParams::apply(MANAGER).force(), &Patch::Apply(&ns))
        .await
        .unwrap();

    let (stop, controllers) = cluster_env::run_operator(&client, &namespace, format!("e2e-{run_id}"));

    let pp = PatchParams::apply(MANAGER).force();
    let cms: Api<ConfigMap> = Api::namespaced(client.clone(), &namespace);
    let sample: ConfigMap = serde_json::from_value(json!({"apiVersion": "v1", "kind": "ConfigMap",
        "metadata": {"name": "sample-events"},
        "data": {"events.json": "{\"records\": [{\"category\": \"SignInLogs\"}]}"}}))
    .unwrap();
    cms.patch("sample-events", &pp, &Patch::Apply(&sample)).await.unwrap();
    let dests: Api<SiemDestination> = Api::namespaced(client.clone(), &namespace);
    for name in ["console", "archive"] {
        let d: SiemDestination = serde_json::from_value(json!({"apiVersion": "siembridge.io/v1alpha1",
            "kind": "SiemDestination", "metadata": {"name": name}, "spec": {"stdout": {}}}))
        .unwrap();
        dests.patch(name, &pp, &Patch::Apply(&d)).await.unwrap();
    }
    let sources: Api<LogSource> = Api::namespaced(client.clone(), &namespace);
    let plain: LogSource = serde_json::from_value(json!({"apiVersion": "siembridge.io/v1alpha1",
        "kind": "LogSource", "metadata": {"name": "plain"},
        "spec": {"replay": {"configMap": "sample-events"}, "destinations": [{"name": "console"}]}}))
    .unwrap();
    sources.patch("plain", &pp, &Patch::Apply(&plain)).await.unwrap();
    let archived: LogSource = serde_json::from_value(json!({"apiVersion": "siembridge.io/v1alpha1",
        "kind": "LogSource", "metadata": {"name": "archived"},
        "spec": {"replay": {"configMap": "sample-events"}, "destinations": [{"name": "console"}],
                 "deadLetter": {"destination": "archive"}}}))
    .unwrap();
    sources.patch("archived", &pp, &Patch::Apply(&archived)).await.unwrap();

    // Durability follows the spec.
    for (name, expected) in [("plain", "False"), ("archived", "True")] {
        let (status, reason, message) = eventually(&format!("DeadLettersDurable on {name}"), || {
            let sources = sources.clone();
            async move { condition(&sources.get(name).await.ok()?, "DeadLettersDurable") }
        })
        .await;
        println!("{name}: DeadLettersDurable={status} {reason}: {message}");
        assert_eq!(status, expected, "{name}");
    }

    // The collector of `plain` reports two dead letters (no kubelet runs pods here: the test
    // writes the report a collector pod would, into the ConfigMap the operator made for it).
    let collector = siembridge::render::log_source_collector_name("plain");
    let report_cm = format!("{collector}-report");
    eventually("the report ConfigMap", || {
        let cms = cms.clone();
        let name = report_cm.clone();
        async move { cms.get_opt(&name).await.ok()? }
    })
    .await;
    let report = json!({
        "reporter": "pod-a",
        "time": chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
        "logSources": {"plain": {
            "eventsForwarded": 40,
            "eventsDeadLettered": 2,
            "lastDeadLetterReason": "HTTP 400: field poison is not allowed",
            "deadLettersDurable": false
        }},
        "destinations": {}
    });
    let data = json!({"data": {"report-pod-a.json": report.to_string()}});
    cms.patch(&report_cm, &PatchParams::default(), &Patch::Merge(&data))
        .await
        .unwrap();
    // Nudge a reconcile instead of waiting for the periodic one.
    let nudge = json!({"metadata": {"annotations": {"e2e.siembridge.io/nudge": run_id}}});
    sources
        .patch("plain", &PatchParams::default(), &Patch::Merge(&nudge))
        .await
        .unwrap();

    let ls = eventually("eventsDeadLettered in status", || {
        let sources = sources.clone();
        async move {
            let ls = sources.get("plain").await.ok()?;
            (ls.status.as_ref()?.events_dead_lettered == Some(2)).then_some(ls)
        }
    })
    .await;
    let status = ls.status.as_ref().unwrap();
    println!(
        "plain: forwarded {:?}, dead-lettered {:?}, last reason {:?}",
        status.events_forwarded, status.events_dead_lettered, status.last_dead_letter_reason
    );
    assert_eq!(
        status.events_forwarded,
        Some(40),
        "dead letters are not forwarded events"
    );
    assert_eq!(
        status.last_dead_letter_reason.as_deref(),
        Some("HTTP 400: field poison is not allowed")
    );
    let (cstatus, reason, message) = condition(&ls, "DeadLettered").unwrap();
    assert_eq!((cstatus.as_str(), reason.as_str()), ("True", "RecordsDeadLettered"));
    assert!(
        message.contains("2 record(s)") && message.contains("poison"),
        "{message}"
    );
    let data_loss = condition(&ls, "DataLoss").unwrap();
    assert_eq!(data_loss.0, "False", "dead letters are not lost ranges");

    let row = eventually("the Dead-Lettered printer column", || {
        table_row(&client, &namespace, "plain")
    })
    .await;
    println!("kubectl get logsource plain: {row:?}");
    assert_eq!(row.get("Dead-Lettered"), Some(&json!(2)));
    assert_eq!(row.get("Forwarded"), Some(&json!(40)));

    let events: Api<Event> = Api::namespaced(client.clone(), &namespace);
    let note = eventually("a DeadLettered Event", || {
        let events = events.clone();
        async move {
            events
                .list(&ListParams::default())
                .await
                .ok()?
                .items
                .into_iter()
                .find(|e| {
                    e.reason.as_deref() == Some("DeadLettered")
                        && e.regarding.as_ref().and_then(|r| r.name.as_deref()) == Some("plain")
                })
                .and_then(|e| e.note)
        }
    })
    .await;
    println!("Event: {note}");
    assert!(note.contains("2 more record(s)") && note.contains("poison"), "{note}");

    stop.cancel();
    let _ = tokio::time::timeout(Duration::from_secs(30), controllers).await;
    let _ = ns_api.delete(&namespace, &DeleteParams::default()).await;
}
