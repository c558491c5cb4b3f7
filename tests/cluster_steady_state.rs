//! At steady state the operator writes nothing (issue 14): once every resource is reconciled,
//! two minutes with nothing changing make zero API writes, though the controllers keep
//! requeueing (a collector without pods is re-checked every 30 s). Counted on the operator's
//! own client (`siembridge::operator::api_requests`, the counter behind its
//! `siembridge_operator_api_requests_total`). Real API server (`KUBECONFIG`); own namespace.

#[path = "common/cluster.rs"]
mod cluster;
#[path = "common/operator_fixtures.rs"]
mod fixtures;

use std::time::Duration;

use cluster::{client, eventually, install_crds, TestNamespace};
use siembridge::operator::api_requests::ApiRequests;
use siembridge::operator::{connectivity::TcpConnect, metrics::Metrics, run_controllers, ControllerSettings};

/// The window of nothing changing.
const AT_REST: Duration = Duration::from_secs(120);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn at_steady_state_the_operator_writes_nothing() {
    let Some(admin) = client("cluster_steady_state").await else {
        return;
    };
    install_crds(&admin).await;
    let ns = TestNamespace::create(&admin, "sb-rest").await;
    let (port, listener) = fixtures::listener().await;
    fixtures::destination(&admin, &ns.name, port).await;
    let names = ["audit-a", "audit-b", "audit-c"];
    for name in names {
        fixtures::log_source(&admin, &ns.name, name).await;
    }

    let requests = ApiRequests::unregistered();
    let config = kube::Config::infer().await.expect("kubeconfig");
    let operator_client = requests.client(config).expect("operator client");
    let stop = tokio_util::sync::CancellationToken::new();
    let controllers = tokio::spawn(run_controllers(
        operator_client,
        Metrics::unregistered(),
        ControllerSettings {
            collector_image: siembridge::operator::default_collector_image(),
            connectivity: std::sync::Arc::new(TcpConnect::default()),
            instance: Some("steady-state-test".into()),
            watch_namespaces: vec![ns.name.clone()],
            collector_pod_defaults: Default::default(),
        },
        stop.clone(),
    ));

    for name in names {
        eventually(&format!("LogSource {name} reconciled with its Deployment"), || {
            fixtures::reconciled(&admin, &ns.name, name)
        })
        .await;
    }
    // Let the reconciles the first status writes trigger run out.
    tokio::time::sleep(Duration::from_secs(10)).await;

    let status_of = |name: &'static str| {
        let api: kube::Api<siembridge::api::LogSource> = kube::Api::namespaced(admin.clone(), &ns.name);
        async move { serde_json::to_string(&api.get(name).await.ok()?.status).ok() }
    };
    let status_before = status_of("audit-a").await;
    let before = requests.snapshot();
    tokio::time::sleep(AT_REST).await;
    let after = requests.snapshot();
    let status_after = status_of("audit-a").await;
    if status_before != status_after {
        println!("audit-a status before the window: {status_before:?}\naudit-a status after: {status_after:?}");
    }
    stop.cancel();
    let _ = controllers.await;
    listener.abort();

    let delta: Vec<((String, String), u64)> = after
        .iter()
        .map(|(k, v)| (k.clone(), v - before.get(k).copied().unwrap_or(0)))
        .filter(|(_, n)| *n > 0)
        .collect();
    let writes: Vec<_> = delta
        .iter()
        .filter(|((verb, _), _)| !siembridge::operator::api_requests::READ_VERBS.contains(&verb.as_str()))
        .collect();
    println!(
        "{} s at rest with {} LogSources: {} API write(s) {:?}; all requests {:?}",
        AT_REST.as_secs(),
        names.len(),
        writes.iter().map(|(_, n)| n).sum::<u64>(),
        writes,
        delta
    );
    let reconciled_at_all: u64 = after.values().sum();
    assert!(reconciled_at_all > 0, "the counting client made no request at all");
    assert!(writes.is_empty(), "the operator wrote at rest: {writes:?}");
}
