//! API-source checkpoints in Leases of a real API server (`KUBECONFIG`; `e2e/test-all.sh` starts
//! one from `../shared/k8s`), at the size of a large tenant: 100,000 records per hour per content
//! type through a 3-hour overlap window. The whole collector runs (Entra, Management Activity API
//! and Graph stand-ins, a file destination), is stopped mid-way and restarted from what the Lease
//! holds; every test prints lost and duplicated counts by record id. Without an API server the
//! tests skip, saying so (under `CI=true` they fail).
//!
//! Run: `KUBECONFIG=... cargo test --test api_checkpoint_cluster -- --nocapture`.

mod common;

use std::collections::{BTreeMap, HashMap, HashSet};
use std::path::Path;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use common::cluster::TestNamespace;
use common::entra::Entra;
use common::graph::Graph;
use common::o365::O365;
use k8s_openapi::api::coordination::v1::Lease;
use kube::api::{Api, ListParams, PostParams};
use siembridge::api::{
    ContentType, EntraCredentials, GraphBudget, GraphEndpoint, GraphSource, ManagementActivitySource, PollingSpec,
    SecretKeySelector,
};
use siembridge::collector::Collector;
use siembridge::config::{CheckpointConfig, CollectorConfig, CollectorReport, SourceConfig};
use tokio_util::sync::CancellationToken;

const TENANT: &str = "11111111-2222-3333-4444-555555555555";
const APP: &str = "aaaaaaaa-bbbb-cccc-dddd-eeeeeeeeeeee";
const SECRET: &str = "api-lease-test-secret-never-logged";
/// Records per hour of the large tenant, per content type.
const PER_HOUR: usize = 100_000;
const OVERLAP_MINUTES: u32 = 180;

fn credentials(entra: &Entra, secret: &str) -> EntraCredentials {
    EntraCredentials {
        tenant_id: TENANT.into(),
        client_id: APP.into(),
        client_secret: Some(SecretKeySelector {
            name: secret.into(),
            key: "clientSecret".into(),
        }),
        authority_host: Some(entra.authority.clone()),
        ..Default::default()
    }
}

fn polling(backfill_hours: u32) -> PollingSpec {
    PollingSpec {
        interval_seconds: 1,
        backfill_hours,
        overlap_minutes: OVERLAP_MINUTES,
    }
}

/// Checkpoints in Leases `<prefix>-*` of `namespace`.
fn in_leases(mut config: CollectorConfig, namespace: &str, prefix: &str) -> CollectorConfig {
    config.checkpoint = CheckpointConfig::Kubernetes {
        namespace: namespace.into(),
        lease_prefix: prefix.into(),
        owner: None,
    };
    config
}

/// Lines of `<dir>/out.ndjson` (cheap: no JSON parse).
fn delivered_lines(dir: &Path) -> usize {
    std::fs::read(dir.join("out.ndjson"))
        .map(|b| b.iter().filter(|c| **c == b'\n').count())
        .unwrap_or(0)
}

/// Run a collector until `want` lines are out (or the timeout), then stop it as a pod is stopped.
/// With `settle`, also until no line came for 3 s (the source has caught up: lines count
/// duplicates too, so reaching `want` does not mean every record came).
async fn run_until_lines(
    config: CollectorConfig,
    dir: &Path,
    want: usize,
    settle: bool,
    timeout: Duration,
) -> Duration {
    let started = Instant::now();
    let stop = CancellationToken::new();
    let handle = tokio::spawn(Collector::new(config).run(stop.clone()));
    let (mut last, mut since) = (0, Instant::now());
    while !handle.is_finished() && started.elapsed() < timeout {
        let lines = delivered_lines(dir);
        if lines != last {
            (last, since) = (lines, Instant::now());
        }
        if lines >= want && (!settle || since.elapsed() > Duration::from_secs(3)) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    stop.cancel();
    let summary = handle.await.unwrap().expect("collector runs");
    println!(
        "  run stopped after {:.1}s: {summary:?}",
        started.elapsed().as_secs_f64()
    );
    started.elapsed()
}

/// Lost and duplicated records by id, printed; returns (lost, duplicated).
fn tally(dir: &Path, field: &str, expected: &HashSet<String>) -> (usize, usize) {
    let delivered = common::delivered_ids(dir, field);
    let mut counts: HashMap<&str, usize> = HashMap::new();
    for id in &delivered {
        *counts.entry(id.as_str()).or_default() += 1;
    }
    let lost: Vec<&String> = expected.iter().filter(|id| !counts.contains_key(id.as_str())).collect();
    let duplicated: usize = counts.values().map(|c| c - 1).sum();
    let unexpected = counts.keys().filter(|id| !expected.contains(**id)).count();
    println!(
        "  expected {} records, delivered {} lines: lost {}, duplicated {}, unexpected {unexpected}{}",
        expected.len(),
        delivered.len(),
        lost.len(),
        duplicated,
        if lost.is_empty() {
            String::new()
        } else {
            format!(" (e.g. {:?})", &lost[..lost.len().min(5)])
        }
    );
    (lost.len(), duplicated)
}

/// The checkpoint annotations of every Lease of the namespace: (name, position, total
/// annotation bytes).
async fn leases(client: &kube::Client, namespace: &str) -> Vec<(String, String, usize)> {
    let api: Api<Lease> = Api::namespaced(client.clone(), namespace);
    let list = api.list(&ListParams::default()).await.unwrap();
    list.items
        .iter()
        .map(|l| {
            let a = l.metadata.annotations.clone().unwrap_or_default();
            (
                l.metadata.name.clone().unwrap_or_default(),
                a.get("siembridge.io/position").cloned().unwrap_or_default(),
                a.iter().map(|(k, v)| k.len() + v.len()).sum(),
            )
        })
        .collect()
}

fn report(dir: &Path) -> CollectorReport {
    serde_json::from_slice(&std::fs::read(dir.join("report.json")).unwrap()).unwrap()
}

/// Records of one blob: `Id`, `CreationTime`, workload fields, about 200 bytes.
fn audit_record(n: usize, created: DateTime<Utc>) -> serde_json::Value {
    serde_json::json!({
        "Id": format!("0000000e-1111-4111-8111-{n:012x}"),
        "RecordType": 2,
        "CreationTime": created.format("%Y-%m-%dT%H:%M:%S").to_string(),
        "Operation": "MailItemsAccessed",
        "OrganizationId": TENANT,
        "Workload": "Exchange",
        "UserId": "alex@contoso.example",
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn management_activity_checkpoints_of_a_large_tenant_fit_a_lease_and_resume_without_loss() {
    let Some(client) = common::cluster::client("api_checkpoint_cluster").await else {
        return;
    };
    let ns = TestNamespace::create(&client, "sb-api-ma").await;
    let dir = tempfile::tempdir().unwrap();
    let entra = Entra::start(TENANT, APP, SECRET).await;
    let o365 = O365::start(TENANT, entra.state.clone()).await;
    common::write_secret(dir.path(), "o365", "clientSecret", SECRET);
    o365.state.page_size.store(1000, Ordering::SeqCst);

    // Four hours of Audit.Exchange at 100,000 records per hour: a blob of 100 records every
    // 3.6 s, so the 3-hour overlap holds 300,000 records.
    let now = Utc::now();
    let hours = 4;
    let blobs = PER_HOUR / 100 * hours;
    let first = now - chrono::TimeDelta::hours(hours as i64) + chrono::TimeDelta::seconds(30);
    let mut expected = HashSet::new();
    let mut per_minute: BTreeMap<i64, usize> = BTreeMap::new();
    for b in 0..blobs {
        let created = first + chrono::TimeDelta::milliseconds(3_600 * b as i64);
        let records: Vec<serde_json::Value> = (0..100)
            .map(|i| audit_record(b * 100 + i, created - chrono::TimeDelta::minutes(40)))
            .collect();
        for r in &records {
            expected.insert(r["Id"].as_str().unwrap().to_string());
        }
        *per_minute.entry(created.timestamp().div_euclid(60)).or_default() += records.len();
        o365.state.add_blob("Audit.Exchange", created, records);
    }
    let busiest_minute = per_minute.values().copied().max().unwrap_or(0);
    println!("seeded {} records in {blobs} blobs over {hours} h", expected.len());

    let source = SourceConfig::ManagementActivityApi(ManagementActivitySource {
        credentials: credentials(&entra, "o365"),
        content_types: vec![ContentType::AuditExchange],
        requests_per_minute: 60_000,
        polling: polling(hours as u32),
        endpoint: Some(o365.root.clone()),
        ..Default::default()
    });
    let config = in_leases(
        common::api_config(dir.path(), source, "o365-audit"),
        &ns.name,
        "sb-ls-o365",
    );

    // First run: stopped when a little more than half is delivered (the cursor is then about
    // 1.8 h behind now, so the restart's overlap covers everything delivered).
    println!("run 1");
    run_until_lines(
        config.clone(),
        dir.path(),
        expected.len() * 55 / 100,
        false,
        Duration::from_secs(300),
    )
    .await;
    let first_run = delivered_lines(dir.path());
    let saved = leases(&client, &ns.name).await;
    println!("  Leases after run 1: {saved:?}");
    assert_eq!(saved.len(), 1, "one Lease for the content type");
    let (_, position, bytes) = &saved[0];
    assert!(*bytes < 32 * 1024, "the checkpoint of 220,000 records is {bytes} bytes");
    let cursor = report(dir.path()).log_sources["o365-audit"]
        .cursors
        .get("Audit.Exchange")
        .cloned();
    assert_eq!(
        cursor.as_deref(),
        Some(position.as_str()),
        "the reported cursor is the saved one"
    );
    let saved_at = chrono::DateTime::parse_from_rfc3339(position)
        .unwrap()
        .with_timezone(&Utc);
    assert!(
        saved_at > first + chrono::TimeDelta::minutes(60),
        "the checkpoint moved with the delivery: {position}"
    );

    // Restart from the Lease: the 3-hour overlap is listed again; only what was not delivered
    // (and the minute the stop cut) is fetched.
    println!("run 2");
    let gets_before = o365.state.requests().iter().filter(|r| r.path == "audit").count();
    let d = dir.path().to_path_buf();
    run_until_lines(config, &d, expected.len(), true, Duration::from_secs(300)).await;
    let gets = o365.state.requests().iter().filter(|r| r.path == "audit").count() - gets_before;
    println!("  run 1 delivered {first_run} lines; run 2 fetched {gets} blobs");
    let (lost, duplicated) = tally(dir.path(), "Id", &expected);
    assert_eq!(lost, 0, "no record lost");
    // The bound: the blobs of the minute the stop cut (delivered again whole).
    assert!(
        duplicated <= busiest_minute,
        "{duplicated} duplicates, more than the {busiest_minute} records of one minute"
    );
    let r = report(dir.path());
    assert!(r.log_sources["o365-audit"].data_loss.is_empty());
    assert!(r.log_sources["o365-audit"].source_error.is_none());
}

fn sign_in(n: usize, at: DateTime<Utc>) -> serde_json::Value {
    serde_json::json!({
        "id": format!("aaaaaaaa-3333-4333-8333-{n:012x}"),
        "createdDateTime": at.to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
        "userPrincipalName": "alex@contoso.example",
        "ipAddress": "203.0.113.10",
        "signInEventTypes": ["interactiveUser"],
        "isInteractive": true,
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn graph_restart_skips_the_minutes_the_lease_digest_matches_and_delivers_late_arrivals() {
    let Some(client) = common::cluster::client("api_checkpoint_cluster").await else {
        return;
    };
    let ns = TestNamespace::create(&client, "sb-api-graph").await;
    let dir = tempfile::tempdir().unwrap();
    let entra = Entra::start(TENANT, APP, SECRET).await;
    let graph = Graph::start(entra.state.clone()).await;
    common::write_secret(dir.path(), "graph", "clientSecret", SECRET);

    // Three hours of interactive sign-ins, 10,000 per hour (the stand-in sorts the whole
    // collection per request, so this one stays smaller than the Management Activity test).
    let now = Utc::now();
    let total = 30_000usize;
    let span = chrono::TimeDelta::hours(3) - chrono::TimeDelta::minutes(2);
    let first = now - chrono::TimeDelta::hours(3) + chrono::TimeDelta::minutes(1);
    let mut expected = HashSet::new();
    let mut per_minute: BTreeMap<i64, usize> = BTreeMap::new();
    for n in 0..total {
        let at = first + span * (n as i32) / (total as i32);
        let v = sign_in(n, at);
        expected.insert(v["id"].as_str().unwrap().to_string());
        *per_minute
            .entry(
                DateTime::parse_from_rfc3339(v["createdDateTime"].as_str().unwrap())
                    .unwrap()
                    .timestamp()
                    .div_euclid(60),
            )
            .or_default() += 1;
        graph.state.add("auditLogs/signIns", v, None);
    }
    let busiest_minute = per_minute.values().copied().max().unwrap_or(0);

    let source = SourceConfig::Graph(GraphSource {
        credentials: credentials(&entra, "graph"),
        endpoints: vec![GraphEndpoint::SignIns],
        sign_in_event_types: vec![],
        polling: polling(3),
        budget: Some(GraphBudget {
            reports_per_ten_seconds: 1000,
            identity_protection_per_second: 20,
            security_per_minute: 1200,
        }),
        endpoint: Some(graph.root.clone()),
    });
    let config = in_leases(
        common::api_config(dir.path(), source, "sign-ins"),
        &ns.name,
        "sb-ls-graph",
    );

    println!("run 1");
    run_until_lines(config.clone(), dir.path(), total / 2, false, Duration::from_secs(300)).await;
    let saved = leases(&client, &ns.name).await;
    println!("  Leases after run 1: {saved:?}");
    assert_eq!(saved.len(), 1);
    // Graph pages come newest first, so the first run delivered the newest half. Late arrivals
    // land in three minutes of it (and one in a minute not yet delivered).
    let delivered: HashSet<String> = common::delivered_ids(dir.path(), "id").into_iter().collect();
    let newest_delivered = first + span - chrono::TimeDelta::minutes(10);
    let mut changed_minutes = BTreeMap::new();
    for (k, minutes_back) in [(0usize, 10i64), (1, 20), (2, 30), (3, 170)] {
        let at = newest_delivered - chrono::TimeDelta::minutes(minutes_back - 10) + chrono::TimeDelta::seconds(7);
        let v = sign_in(1_000_000 + k, at);
        expected.insert(v["id"].as_str().unwrap().to_string());
        changed_minutes.insert(at.timestamp().div_euclid(60), ());
        graph.state.add("auditLogs/signIns", v, None);
    }
    println!(
        "  run 1 delivered {} distinct; {} late arrivals added",
        delivered.len(),
        changed_minutes.len()
    );

    println!("run 2");
    run_until_lines(config, dir.path(), expected.len(), true, Duration::from_secs(300)).await;
    let (lost, duplicated) = tally(dir.path(), "id", &expected);
    assert_eq!(lost, 0, "no record lost");
    // The bound: the minutes that changed (late arrivals) and the one the stop cut, whole.
    let bound = (changed_minutes.len() + 1) * busiest_minute;
    assert!(
        duplicated <= bound,
        "{duplicated} duplicates, more than {bound} (the records of the changed minutes)"
    );
    let saved = leases(&client, &ns.name).await;
    assert!(saved[0].2 < 32 * 1024, "{saved:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_refused_checkpoint_write_is_reported_and_the_cursor_stays_at_what_was_saved() {
    let Some(client) = common::cluster::client("api_checkpoint_cluster").await else {
        return;
    };
    let ns = TestNamespace::create(&client, "sb-api-refused").await;
    let dir = tempfile::tempdir().unwrap();
    let entra = Entra::start(TENANT, APP, SECRET).await;
    let o365 = O365::start(TENANT, entra.state.clone()).await;
    common::write_secret(dir.path(), "o365", "clientSecret", SECRET);
    let now = Utc::now();
    let mut expected = HashSet::new();
    for b in 0..20usize {
        let created = now - chrono::TimeDelta::minutes(100 - b as i64);
        let records: Vec<serde_json::Value> = (0..5).map(|i| audit_record(b * 5 + i, created)).collect();
        for r in &records {
            expected.insert(r["Id"].as_str().unwrap().to_string());
        }
        o365.state.add_blob("Audit.Exchange", created, records);
    }
    // The content type's Lease is held by another live replica: every checkpoint write of this
    // collector is refused (fencing), as any refused write would be.
    let probe =
        siembridge::collector::checkpoint::lease::LeaseStore::new(client.clone(), &ns.name, "sb-ls-x", "probe", 3600);
    let name = probe.lease_name("Audit.Exchange");
    let lease: Lease = serde_json::from_value(serde_json::json!({
        "metadata": {"name": name, "namespace": ns.name},
        "spec": {"holderIdentity": "another-replica", "leaseDurationSeconds": 3600,
                 "renewTime": Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Micros, true)},
    }))
    .unwrap();
    Api::<Lease>::namespaced(client.clone(), &ns.name)
        .create(&PostParams::default(), &lease)
        .await
        .unwrap();

    let source = SourceConfig::ManagementActivityApi(ManagementActivitySource {
        credentials: credentials(&entra, "o365"),
        content_types: vec![ContentType::AuditExchange],
        requests_per_minute: 6_000,
        polling: polling(2),
        endpoint: Some(o365.root.clone()),
        ..Default::default()
    });
    let config = in_leases(
        common::api_config(dir.path(), source, "o365-audit"),
        &ns.name,
        "sb-ls-x",
    );
    let registry = prometheus::Registry::new();
    let stop = CancellationToken::new();
    let handle = tokio::spawn(Collector::new(config).with_registry(registry.clone()).run(stop.clone()));
    let deadline = Instant::now() + Duration::from_secs(60);
    while delivered_lines(dir.path()) < expected.len() && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    tokio::time::sleep(Duration::from_secs(3)).await;
    stop.cancel();
    let summary = handle.await.unwrap().unwrap();
    let (lost, duplicated) = tally(dir.path(), "Id", &expected);
    assert_eq!((lost, duplicated), (0, 0));
    assert!(!summary.fully_checkpointed, "nothing was checkpointed: {summary:?}");
    assert!(summary.positions.is_empty(), "no position was saved: {summary:?}");
    let r = report(dir.path());
    let ls = &r.log_sources["o365-audit"];
    println!("  report: cursors {:?}, sourceError {:?}", ls.cursors, ls.source_error);
    assert!(
        ls.cursors.is_empty(),
        "no cursor ahead of the saved one: {:?}",
        ls.cursors
    );
    let error = ls.source_error.clone().unwrap_or_default();
    assert!(
        error.contains("checkpoint of Audit.Exchange not written") && error.contains("another-replica"),
        "{error}"
    );
    let failures: u64 = registry
        .gather()
        .iter()
        .filter(|f| f.name() == "siembridge_collector_checkpoint_failures_total")
        .flat_map(|f| f.get_metric().iter().map(|m| m.get_counter().get_value() as u64))
        .sum();
    println!("  siembridge_collector_checkpoint_failures_total = {failures}");
    assert!(failures >= 1);
}
