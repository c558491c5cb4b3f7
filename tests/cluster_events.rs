//! What a LogSource's collector reports becomes conditions, `kubectl get` columns and Events on
//! the real API server (when `KUBECONFIG` points at one; otherwise the test prints `skipped`):
//! a source that received nothing for longer than its `silenceThresholdMinutes` is
//! `SourceSilent=True` with a `NoRecordsReceived` Event and `SourceSilentResolved` once records
//! arrive again; throttling and lost ranges raise `Throttled` and `RecordsLost` Events; the
//! backfill percentage is a printer column; rotating a Secret the collector reads rolls it out
//! with a `SecretRotated` Event; deleting its SiemDestination shows at once.

use std::time::Duration;

use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::{ConfigMap, Secret};
use k8s_openapi::api::events::v1::Event;
use kube::api::{Api, ListParams, Patch, PatchParams};
use serde_json::json;
use siembridge::api::{LogSource, SiemDestination};

#[path = "common/cluster.rs"]
mod cluster_env;
use cluster_env::{eventually, install_crds, table_row};

const MANAGER: &str = "siembridge-e2e-events";

fn condition(ls: &LogSource, type_: &str) -> Option<(String, String, String)> {
    cluster_env::condition(ls.status.as_ref().map(|s| s.conditions.as_slice()), type_)
}

/// The rollout hash on a collector Deployment's pod template.
fn config_hash(d: Deployment) -> Option<String> {
    d.spec
        .template
        .metadata?
        .annotations?
        .get("siembridge.io/config-hash")
        .cloned()
}

/// Notes of the Events about LogSource `name` with `reason`, one per occurrence (an Event the
/// recorder repeated as a series counts as often as it occurred).
async fn events(api: &Api<Event>, name: &str, reason: &str) -> Vec<String> {
    api.list(&ListParams::default())
        .await
        .map(|l| l.items)
        .unwrap_or_default()
        .into_iter()
        .filter(|e| {
            e.reason.as_deref() == Some(reason) && e.regarding.as_ref().and_then(|r| r.name.as_deref()) == Some(name)
        })
        .flat_map(|e| {
            let times = e.series.as_ref().map_or(1, |s| s.count.max(1)) as usize;
            std::iter::repeat_n(e.note.unwrap_or_default(), times)
        })
        .collect()
}

/// Write the report a collector pod would (no kubelet runs pods here) and nudge a reconcile.
async fn report(cms: &Api<ConfigMap>, sources: &Api<LogSource>, name: &str, log_source: serde_json::Value, n: u32) {
    let collector = siembridge::render::log_source_collector_name(name);
    let report = json!({
        "reporter": "pod-a",
        "time": chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
        "logSources": {name: log_source},
        "destinations": {}
    });
    let data = json!({"data": {"report-pod-a.json": report.to_string()}});
    cms.patch(
        &format!("{collector}-report"),
        &PatchParams::default(),
        &Patch::Merge(&data),
    )
    .await
    .unwrap();
    let nudge = json!({"metadata": {"annotations": {"e2e.siembridge.io/nudge": n.to_string()}}});
    sources
        .patch(name, &PatchParams::default(), &Patch::Merge(&nudge))
        .await
        .unwrap();
}

#[tokio::test]
async fn reported_problems_become_conditions_columns_and_events() {
    let Some(client) = cluster_env::client("cluster_events").await else {
        return;
    };
    install_crds(&client).await;

    let ns = cluster_env::TestNamespace::create(&client, "sb-e2e-events").await;
    let namespace = ns.name.clone();
    let pp = PatchParams::apply(MANAGER).force();
    let (stop, controllers) = cluster_env::run_operator(&client, &namespace, format!("e2e-{namespace}"));

    let cms: Api<ConfigMap> = Api::namespaced(client.clone(), &namespace);
    let secrets: Api<Secret> = Api::namespaced(client.clone(), &namespace);
    let sample: ConfigMap = serde_json::from_value(json!({"apiVersion": "v1", "kind": "ConfigMap",
        "metadata": {"name": "sample-events"},
        "data": {"events.json": "{\"records\": [{\"category\": \"SignInLogs\"}]}"}}))
    .unwrap();
    cms.patch("sample-events", &pp, &Patch::Apply(&sample)).await.unwrap();
    let token = |value: &str| -> Secret {
        serde_json::from_value(json!({"apiVersion": "v1", "kind": "Secret",
            "metadata": {"name": "splunk-hec"}, "stringData": {"token": value}}))
        .unwrap()
    };
    secrets
        .patch("splunk-hec", &pp, &Patch::Apply(&token("first-token")))
        .await
        .unwrap();
    let dests: Api<SiemDestination> = Api::namespaced(client.clone(), &namespace);
    let splunk: SiemDestination = serde_json::from_value(json!({"apiVersion": "siembridge.io/v1alpha1",
        "kind": "SiemDestination", "metadata": {"name": "splunk"},
        "spec": {"splunkHec": {"url": "https://127.0.0.1:1", "token": {"name": "splunk-hec", "key": "token"}}}}))
    .unwrap();
    dests.patch("splunk", &pp, &Patch::Apply(&splunk)).await.unwrap();
    let sources: Api<LogSource> = Api::namespaced(client.clone(), &namespace);
    let quiet: LogSource = serde_json::from_value(json!({"apiVersion": "siembridge.io/v1alpha1",
        "kind": "LogSource", "metadata": {"name": "quiet"},
        "spec": {"replay": {"configMap": "sample-events"}, "destinations": [{"name": "splunk"}],
                 "silenceThresholdMinutes": 60}}))
    .unwrap();
    sources.patch("quiet", &pp, &Patch::Apply(&quiet)).await.unwrap();
    let collector = siembridge::render::log_source_collector_name("quiet");
    eventually("the report ConfigMap", || {
        let cms = cms.clone();
        let name = format!("{collector}-report");
        async move { cms.get_opt(&name).await.ok()? }
    })
    .await;
    let events_api: Api<Event> = Api::namespaced(client.clone(), &namespace);

    // Nothing received for two hours (threshold one), throttled, a lost range, backfilling.
    let two_hours_ago =
        (chrono::Utc::now() - chrono::Duration::hours(2)).to_rfc3339_opts(chrono::SecondsFormat::Secs, true);
    report(
        &cms,
        &sources,
        "quiet",
        json!({"eventsForwarded": 10, "lastReceivedTime": two_hours_ago, "throttled": true, "backfillPercent": 40,
               "dataLoss": [{"stream": "Audit.General", "from": "2026-05-01T00:00:00Z", "to": "2026-05-01T01:00:00Z",
                             "reason": "content expired"}]}),
        1,
    )
    .await;
    let (status, reason, message) = eventually("SourceSilent=True", || {
        let sources = sources.clone();
        async move { condition(&sources.get("quiet").await.ok()?, "SourceSilent").filter(|c| c.0 == "True") }
    })
    .await;
    println!("SourceSilent={status} {reason}: {message}");
    assert_eq!(reason, "NoRecordsReceived");
    assert!(message.contains(&two_hours_ago) && message.contains("60m"), "{message}");
    for (reason, what) in [
        ("NoRecordsReceived", "no record received since"),
        ("Throttled", "throttling"),
        ("RecordsLost", "content expired"),
    ] {
        let notes = eventually(&format!("a {reason} Event"), || {
            let api = events_api.clone();
            async move { Some(events(&api, "quiet", reason).await).filter(|n| !n.is_empty()) }
        })
        .await;
        println!("Event {reason}: {notes:?}");
        assert!(notes[0].contains(what), "{reason}: {notes:?}");
    }
    let row = eventually("the Backfill % column", || table_row(&client, &namespace, "quiet")).await;
    println!("kubectl get logsource quiet: {row:?}");
    assert_eq!(row.get("Backfill %"), Some(&json!(40)));

    // Records again: resolved, once.
    let now = chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Secs, true);
    report(
        &cms,
        &sources,
        "quiet",
        json!({"eventsForwarded": 20, "lastReceivedTime": now, "backfillPercent": 100}),
        2,
    )
    .await;
    eventually("SourceSilent=False", || {
        let sources = sources.clone();
        async move { condition(&sources.get("quiet").await.ok()?, "SourceSilent").filter(|c| c.0 == "False") }
    })
    .await;
    for reason in [
        "SourceSilentResolved",
        "ThrottledResolved",
        "NoRecordsReceived",
        "Throttled",
    ] {
        let notes = eventually(&format!("a {reason} Event"), || {
            let api = events_api.clone();
            async move { Some(events(&api, "quiet", reason).await).filter(|n| !n.is_empty()) }
        })
        .await;
        assert_eq!(notes.len(), 1, "{reason} announced once: {notes:?}");
    }

    // A rotated Secret rolls the collector out, announced.
    let deployments: Api<Deployment> = Api::namespaced(client.clone(), &namespace);
    let hash_before = eventually("the collector Deployment", || {
        let d = deployments.clone();
        let name = collector.clone();
        async move { config_hash(d.get_opt(&name).await.ok()??) }
    })
    .await;
    secrets
        .patch("splunk-hec", &pp, &Patch::Apply(&token("second-token")))
        .await
        .unwrap();
    let notes = eventually("a SecretRotated Event", || {
        let api = events_api.clone();
        async move { Some(events(&api, "quiet", "SecretRotated").await).filter(|n| !n.is_empty()) }
    })
    .await;
    println!("Event SecretRotated: {notes:?}");
    assert!(notes[0].contains("\"splunk-hec\""), "{notes:?}");
    assert!(!notes[0].contains("second-token") && !notes[0].contains("first-token"));
    let hash_after = config_hash(deployments.get(&collector).await.unwrap());
    assert_ne!(
        hash_after.as_ref(),
        Some(&hash_before),
        "the pod template changed: pods roll"
    );

    // A deleted SiemDestination reaches the LogSource at once, not at its next periodic
    // reconcile (two minutes when healthy): kube's shared watch streams carry no deletions, the
    // operator forwards them itself.
    let deleted_at = std::time::Instant::now();
    dests.delete("splunk", &Default::default()).await.unwrap();
    let (status, reason, _) = eventually("Ready=False DestinationNotFound", || {
        let sources = sources.clone();
        async move { condition(&sources.get("quiet").await.ok()?, "Ready").filter(|c| c.1 == "DestinationNotFound") }
    })
    .await;
    let took = deleted_at.elapsed();
    println!(
        "SiemDestination deleted: Ready={status} {reason} after {:.1} s",
        took.as_secs_f64()
    );
    assert!(took < Duration::from_secs(20), "took {took:?}");

    stop.cancel();
    let _ = tokio::time::timeout(Duration::from_secs(30), controllers).await;
}
