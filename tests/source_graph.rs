//! The Graph source and the Graph audit log query source against the Entra and Graph
//! stand-ins, through a whole collector into a file destination: all seven endpoints paged and
//! resumed after a restart, throttling and the reports limit honoured, beta sign-in types chosen
//! by the spec, audit log queries through notStarted -> running -> succeeded (and failed).

mod common;

use std::collections::HashSet;
use std::path::Path;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use chrono::Utc;
use common::entra::Entra;
use common::graph::{time_field, Graph};
use siembridge::api::{
    AuditApi, ContentType, EntraCredentials, GraphBudget, GraphEndpoint, GraphSource, ManagementActivitySource,
    PollingSpec, SecretKeySelector, SignInEventType,
};
use siembridge::collector::Collector;
use siembridge::config::{CollectorConfig, CollectorReport, SourceConfig};
use tokio_util::sync::CancellationToken;

const TENANT: &str = "11111111-2222-3333-4444-555555555555";
const APP: &str = "aaaaaaaa-bbbb-cccc-dddd-eeeeeeeeeeee";
const SECRET: &str = "graph-test-secret-never-logged";

const ALL: [(GraphEndpoint, &str); 7] = [
    (GraphEndpoint::DirectoryAudits, "auditLogs/directoryAudits"),
    (GraphEndpoint::SignIns, "auditLogs/signIns"),
    (GraphEndpoint::Provisioning, "auditLogs/provisioning"),
    (GraphEndpoint::RiskDetections, "identityProtection/riskDetections"),
    (GraphEndpoint::RiskyUsers, "identityProtection/riskyUsers"),
    (GraphEndpoint::AlertsV2, "security/alerts_v2"),
    (GraphEndpoint::Incidents, "security/incidents"),
];

fn credentials(entra: &Entra) -> EntraCredentials {
    EntraCredentials {
        tenant_id: TENANT.into(),
        client_id: APP.into(),
        client_secret: Some(SecretKeySelector {
            name: "graph".into(),
            key: "clientSecret".into(),
        }),
        authority_host: Some(entra.authority.clone()),
        ..Default::default()
    }
}

fn polling() -> PollingSpec {
    PollingSpec {
        interval_seconds: 1,
        backfill_hours: 48,
        overlap_minutes: 30,
    }
}

/// A generous test budget: reports 10 per second, identity protection 20 per second.
fn budget() -> GraphBudget {
    GraphBudget {
        reports_per_ten_seconds: 100,
        identity_protection_per_second: 20,
        security_per_minute: 1200,
    }
}

fn graph_source(graph: &Graph, entra: &Entra, endpoints: &[GraphEndpoint], types: &[SignInEventType]) -> SourceConfig {
    SourceConfig::Graph(GraphSource {
        credentials: credentials(entra),
        endpoints: endpoints.to_vec(),
        sign_in_event_types: types.to_vec(),
        polling: polling(),
        budget: Some(budget()),
        endpoint: Some(graph.root.clone()),
    })
}

/// An object of `path` at `minutes_ago`, with id `<path-tag>-<n>`.
fn object(path: &str, n: usize, minutes_ago: i64, kind: &str) -> serde_json::Value {
    let t = (Utc::now() - chrono::TimeDelta::minutes(minutes_ago)).to_rfc3339_opts(chrono::SecondsFormat::Secs, true);
    let mut v = serde_json::json!({
        "id": format!("{}-{n:05}", path.replace('/', "-")),
        "userPrincipalName": "alex@contoso.example",
        "ipAddress": "203.0.113.10",
    });
    v[time_field(path)] = serde_json::Value::String(t);
    if path == "auditLogs/signIns" {
        v["signInEventTypes"] = serde_json::json!([kind]);
        v["isInteractive"] = serde_json::Value::Bool(kind == "interactiveUser");
    }
    v
}

/// Seed `per` objects per endpoint over the last 47 hours; returns their ids.
fn seed(graph: &Graph, per: usize, from: usize) -> HashSet<String> {
    let mut ids = HashSet::new();
    for (_, path) in ALL {
        for n in from..from + per {
            let minutes_ago = 5 + ((n - from) as i64 * 47 * 60) / per as i64;
            let v = object(path, n, minutes_ago, "interactiveUser");
            ids.insert(v["id"].as_str().unwrap().to_string());
            graph.state.add(path, v, None);
        }
    }
    ids
}

async fn start(dir: &Path) -> (Entra, Graph) {
    let entra = Entra::start(TENANT, APP, SECRET).await;
    let graph = Graph::start(entra.state.clone()).await;
    common::write_secret(dir, "graph", "clientSecret", SECRET);
    (entra, graph)
}

async fn run_until(config: CollectorConfig, timeout: Duration, mut done: impl FnMut() -> bool) {
    let stop = CancellationToken::new();
    let handle = tokio::spawn(Collector::new(config).run(stop.clone()));
    let deadline = Instant::now() + timeout;
    while !handle.is_finished() && !done() && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    stop.cancel();
    handle.await.unwrap().unwrap();
}

fn assert_exactly_once(dir: &Path, expected: &HashSet<String>) {
    let delivered = common::delivered_ids(dir, "id");
    let distinct: HashSet<&String> = delivered.iter().collect();
    assert_eq!(distinct.len(), delivered.len(), "duplicates delivered");
    let missing: Vec<_> = expected.iter().filter(|id| !distinct.contains(id)).take(5).collect();
    assert!(missing.is_empty(), "lost: {missing:?}");
    assert_eq!(distinct.len(), expected.len());
}

fn report(dir: &Path) -> CollectorReport {
    serde_json::from_slice(&std::fs::read(dir.join("report.json")).unwrap()).unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn all_seven_endpoints_are_paged_and_resumed_after_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    let (entra, graph) = start(dir.path()).await;
    graph.state.page_cap.store(7, Ordering::SeqCst);
    let mut expected = seed(&graph, 40, 0);
    let endpoints: Vec<GraphEndpoint> = ALL.iter().map(|(e, _)| *e).collect();
    let config = common::api_config(dir.path(), graph_source(&graph, &entra, &endpoints, &[]), "graph");
    let out = dir.path().to_path_buf();
    let want = expected.len();
    run_until(config.clone(), Duration::from_secs(60), || {
        common::delivered_ids(&out, "id").len() >= want
    })
    .await;
    assert_exactly_once(dir.path(), &expected);
    let log = graph.state.requests();
    assert!(
        log.iter().any(|r| r.filter.is_some() && r.path.ends_with("signIns")),
        "time filter sent"
    );
    for (_, path) in ALL {
        let pages = log.iter().filter(|r| r.path == format!("v1.0/{path}")).count();
        assert!(pages >= 6, "{path} paged ({pages} requests)");
    }
    let cursors = report(dir.path()).log_sources["graph"].cursors.clone();
    assert_eq!(cursors.len(), 7, "{cursors:?}");

    // New objects, and one that arrives late (dated before the cursor): read after a restart,
    // the earlier ones not again.
    for (_, path) in ALL {
        for n in 1000..1003 {
            let v = object(path, n, 1, "interactiveUser");
            expected.insert(v["id"].as_str().unwrap().to_string());
            graph.state.add(path, v, None);
        }
    }
    for (_, path) in ALL {
        let late = object(path, 5000, 10, "interactiveUser");
        expected.insert(late["id"].as_str().unwrap().to_string());
        graph.state.add(path, late, None);
    }
    let want = expected.len();
    run_until(config, Duration::from_secs(60), || {
        common::delivered_ids(&out, "id").len() >= want
    })
    .await;
    assert_exactly_once(dir.path(), &expected);
    assert_eq!(graph.state.early.load(Ordering::SeqCst), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn throttling_and_the_reports_limit_are_honoured() {
    for with_503 in [false, true] {
        let dir = tempfile::tempdir().unwrap();
        let (entra, graph) = start(dir.path()).await;
        graph.state.page_cap.store(10, Ordering::SeqCst);
        graph.state.throttle_every.store(4, Ordering::SeqCst);
        graph.state.throttle_with_503.store(with_503, Ordering::SeqCst);
        let mut expected = HashSet::new();
        for n in 0..40 {
            let v = object("auditLogs/directoryAudits", n, 5 + n as i64 * 60, "");
            expected.insert(v["id"].as_str().unwrap().to_string());
            graph.state.add("auditLogs/directoryAudits", v, None);
        }
        let config = common::api_config(
            dir.path(),
            graph_source(&graph, &entra, &[GraphEndpoint::DirectoryAudits], &[]),
            "graph",
        );
        let out = dir.path().to_path_buf();
        let want = expected.len();
        run_until(config, Duration::from_secs(60), || {
            common::delivered_ids(&out, "id").len() >= want
        })
        .await;
        assert_exactly_once(dir.path(), &expected);
        let throttled = graph.state.requests().iter().filter(|r| r.status != 200).count();
        assert!(throttled >= 1);
        assert_eq!(
            graph.state.early.load(Ordering::SeqCst),
            0,
            "request before Retry-After"
        );
    }

    // The reports limit of the server equals the client's budget: never exceeded.
    let dir = tempfile::tempdir().unwrap();
    let (entra, graph) = start(dir.path()).await;
    graph.state.page_cap.store(5, Ordering::SeqCst);
    // The documented reports limit is 5 per 10 s; this server allows 10 per 10 s, and so does
    // the client's budget.
    graph.state.reports_limit.store(10, Ordering::SeqCst);
    *graph.state.reports_window.lock().unwrap() = Duration::from_secs(10);
    let mut expected = HashSet::new();
    for n in 0..60 {
        let v = object("auditLogs/provisioning", n, 5 + n as i64 * 30, "");
        expected.insert(v["id"].as_str().unwrap().to_string());
        graph.state.add("auditLogs/provisioning", v, None);
    }
    let mut source = graph_source(&graph, &entra, &[GraphEndpoint::Provisioning], &[]);
    if let SourceConfig::Graph(g) = &mut source {
        g.budget = Some(GraphBudget {
            reports_per_ten_seconds: 10,
            ..budget()
        });
    }
    let config = common::api_config(dir.path(), source, "graph");
    let out = dir.path().to_path_buf();
    let want = expected.len();
    run_until(config, Duration::from_secs(60), || {
        common::delivered_ids(&out, "id").len() >= want
    })
    .await;
    assert_exactly_once(dir.path(), &expected);
    let log = graph.state.requests();
    assert_eq!(
        log.iter().filter(|r| r.status == 429).count(),
        0,
        "reports limit never hit"
    );
    let times: Vec<Instant> = log.iter().map(|r| r.at).collect();
    common::assert_within_window(&times, 10, Duration::from_secs(10));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn beta_sign_in_types_are_selected_by_the_spec() {
    let dir = tempfile::tempdir().unwrap();
    let (entra, graph) = start(dir.path()).await;
    let path = "auditLogs/signIns";
    let mut wanted = HashSet::new();
    for (n, kind) in [
        "interactiveUser",
        "nonInteractiveUser",
        "servicePrincipal",
        "managedIdentity",
    ]
    .iter()
    .cycle()
    .take(40)
    .enumerate()
    {
        let v = object(path, n, 5 + n as i64 * 20, kind);
        if *kind == "nonInteractiveUser" || *kind == "servicePrincipal" {
            wanted.insert(v["id"].as_str().unwrap().to_string());
        }
        graph.state.add(path, v, None);
    }
    let config = common::api_config(
        dir.path(),
        graph_source(
            &graph,
            &entra,
            &[GraphEndpoint::SignIns],
            &[SignInEventType::NonInteractiveUser, SignInEventType::ServicePrincipal],
        ),
        "graph",
    );
    let out = dir.path().to_path_buf();
    let want = wanted.len();
    run_until(config, Duration::from_secs(30), || {
        common::delivered_ids(&out, "id").len() >= want
    })
    .await;
    assert_exactly_once(dir.path(), &wanted);
    let log = graph.state.requests();
    assert!(log.iter().all(|r| r.path == "beta/auditLogs/signIns"), "beta endpoint");
    let filter = log[0].filter.clone().unwrap();
    assert!(
        filter.contains("signInEventTypes/any(t: t eq 'nonInteractiveUser' or t eq 'servicePrincipal')"),
        "{filter}"
    );
}

fn audit_record(n: usize, minutes_ago: i64, record_type: &str) -> serde_json::Value {
    let t = (Utc::now() - chrono::TimeDelta::minutes(minutes_ago)).to_rfc3339_opts(chrono::SecondsFormat::Secs, true);
    serde_json::json!({
        "id": format!("bbbbbbbb-6666-4666-8666-{n:012x}"),
        "createdDateTime": t,
        "auditLogRecordType": record_type,
        "operation": "UserLoggedIn",
        "organizationId": TENANT,
        "userPrincipalName": "alex@contoso.example",
        "service": "AzureActiveDirectory",
        "auditData": {"Id": format!("bbbbbbbb-6666-4666-8666-{n:012x}"), "RecordType": 15},
    })
}

fn query_source(graph: &Graph, entra: &Entra) -> SourceConfig {
    SourceConfig::ManagementActivityApi(ManagementActivitySource {
        credentials: credentials(entra),
        content_types: vec![ContentType::AuditAzureActiveDirectory],
        api: AuditApi::GraphAuditLogQuery,
        requests_per_minute: 6000,
        polling: PollingSpec {
            interval_seconds: 1,
            backfill_hours: 30,
            overlap_minutes: 30,
        },
        endpoint: Some(graph.root.clone()),
        ..Default::default()
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn audit_log_queries_run_to_success_and_their_records_are_delivered_once() {
    let dir = tempfile::tempdir().unwrap();
    let (entra, graph) = start(dir.path()).await;
    graph.state.page_cap.store(9, Ordering::SeqCst);
    let mut expected = HashSet::new();
    for n in 0..50 {
        let r = audit_record(n, 5 + n as i64 * 30, "azureActiveDirectoryStsLogon");
        expected.insert(r["id"].as_str().unwrap().to_string());
        graph.state.audit_records.lock().unwrap().push(r);
    }
    // Other workloads are not asked for.
    graph
        .state
        .audit_records
        .lock()
        .unwrap()
        .push(audit_record(999, 10, "exchangeItem"));
    // The first query fails; it is created again.
    graph.state.fail_queries.store(1, Ordering::SeqCst);
    let config = common::api_config(dir.path(), query_source(&graph, &entra), "ual");
    let out = dir.path().to_path_buf();
    let want = expected.len();
    run_until(config, Duration::from_secs(60), || {
        common::delivered_ids(&out, "id").len() >= want
    })
    .await;
    assert_exactly_once(dir.path(), &expected);
    let queries = graph.state.queries.lock().unwrap().clone();
    assert!(queries.len() >= 3, "two windows plus one retry: {}", queries.len());
    assert!(queries[0].fails && queries[0].polls >= 3, "first query seen failed");
    assert!(queries
        .iter()
        .all(|q| q.record_types.contains(&"azureActiveDirectoryStsLogon".to_string())));
    // (The last one may still run when the test stops the collector.)
    let finished = &queries[1..queries.len() - 1];
    assert!(
        finished.iter().all(|q| q.polls >= 3),
        "polled through notStarted and running: {queries:?}"
    );
    assert!(report(dir.path()).log_sources["ual"].data_loss.is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_audit_log_query_that_keeps_failing_is_reported_as_data_loss() {
    let dir = tempfile::tempdir().unwrap();
    let (entra, graph) = start(dir.path()).await;
    for n in 0..5 {
        graph.state.audit_records.lock().unwrap().push(audit_record(
            n,
            60 * 20 + n as i64,
            "azureActiveDirectoryStsLogon",
        ));
    }
    graph.state.fail_queries.store(2, Ordering::SeqCst);
    let config = common::api_config(dir.path(), query_source(&graph, &entra), "ual");
    let report_path = dir.path().join("report.json");
    let stop = CancellationToken::new();
    let handle = tokio::spawn(Collector::new(config).run(stop.clone()));
    let deadline = Instant::now() + Duration::from_secs(30);
    while graph.state.queries.lock().unwrap().len() < 3 && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    stop.cancel();
    handle.await.unwrap().unwrap();
    let r: CollectorReport = serde_json::from_slice(&std::fs::read(report_path).unwrap()).unwrap();
    let loss = &r.log_sources["ual"].data_loss;
    assert_eq!(loss.len(), 1, "{loss:?}");
    assert_eq!(loss[0].stream, "security/auditLog/queries");
    assert!(loss[0].reason.contains("failed"), "{loss:?}");
    let from = chrono::DateTime::parse_from_rfc3339(&loss[0].from).unwrap();
    let to = chrono::DateTime::parse_from_rfc3339(&loss[0].to).unwrap();
    // The first 24 h window started an overlap (30 min) before the cursor; what is lost is the
    // part past the cursor.
    assert_eq!(
        (to - from).num_minutes(),
        24 * 60 - 30,
        "the first window is named: {loss:?}"
    );
}
