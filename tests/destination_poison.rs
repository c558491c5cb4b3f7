//! A record the receiver refuses (a "poison" record) costs only itself: 2,000 records of which 20
//! are poison go through the http, Elasticsearch, Sekoia and Sentinel destinations in batches of
//! 100; the receivers that refuse a whole request for one bad record (http, Sekoia, the Logs
//! Ingestion API) make the collector split the batch until the poison records are alone. Every
//! run ends with the 1,980 good records delivered, the 20 poison records dead-lettered once each
//! with the receiver's reason, none lost, and a bounded number of extra requests.

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use siembridge::api::{
    BatchSpec, ElasticsearchSpec, EntraCredentials, EventFormat, HttpSpec, SekoiaSpec, SentinelSpec,
    SiemDestinationSpec,
};
use siembridge::config::ReportTarget;

mod common;
#[path = "common/siem/mod.rs"]
mod siem;

use common::entra::Entra;
use siem::elasticsearch::Elasticsearch;
use siem::logs_ingestion::LogsIngestion;
use siem::sekoia::Sekoia;

const N: usize = 2000;
const BATCH: u32 = 100;

/// 20 poison record ids spread over the 2,000.
fn poison() -> Vec<usize> {
    (0..20).map(|i| i * 97 + 13).collect()
}

/// Most requests a run may take: one per batch (twice for slack on short batches), plus two per
/// halving for each poison record.
fn request_bound() -> usize {
    let halvings = (BATCH as f64).log2().ceil() as usize;
    N.div_ceil(BATCH as usize) * 2 + 2 * poison().len() * halvings
}

async fn run_through(
    name: &str,
    mut dest: SiemDestinationSpec,
) -> (tempfile::TempDir, siembridge::collector::RunSummary) {
    let dir = tempfile::tempdir().unwrap();
    let records = siem::write_records(dir.path(), N, &poison());
    dest.format = EventFormat::Raw;
    dest.batch = BatchSpec {
        max_events: BATCH,
        max_bytes: 4 * 1024 * 1024,
        max_latency_ms: 200,
    };
    dest.retry = siem::fast_retry();
    dest.concurrency = 2;
    let mut cfg = common::replay_config(
        dir.path(),
        &records,
        "entra",
        BTreeMap::from([(name.to_string(), dest)]),
    );
    cfg.report = Some(ReportTarget::File {
        path: dir.path().join("report.json").display().to_string(),
    });
    let summary = siem::run(cfg).await;
    (dir, summary)
}

/// Print and check the counts by record id.
fn check(
    name: &str,
    dir: &Path,
    summary: &siembridge::collector::RunSummary,
    delivered: &[u64],
    requests: usize,
    reason: &str,
) {
    let poison: Vec<u64> = poison().iter().map(|&p| p as u64).collect();
    let per_id = siem::counts(delivered);
    let dead = siem::dead_lettered_ids(dir);
    let lost: Vec<u64> = (1..=N as u64)
        .filter(|i| !per_id.contains_key(i) && !dead.contains(i))
        .collect();
    let good_dead: Vec<u64> = dead.iter().copied().filter(|i| !poison.contains(i)).collect();
    let poison_delivered: Vec<u64> = poison.iter().copied().filter(|i| per_id.contains_key(i)).collect();
    let duplicates: usize = per_id.values().map(|c| c - 1).sum();
    println!(
        "{name}: {N} records ({} poison) -> {} delivered ({} distinct, {duplicates} duplicates), {} dead-lettered ({} good ones), {} lost, {requests} requests (bound {})",
        poison.len(),
        delivered.len(),
        per_id.len(),
        dead.len(),
        good_dead.len(),
        lost.len(),
        request_bound()
    );
    assert!(summary.fully_checkpointed, "{summary:?}");
    assert!(lost.is_empty(), "lost {lost:?}");
    assert!(good_dead.is_empty(), "good records dead-lettered: {good_dead:?}");
    assert!(poison_delivered.is_empty(), "poison delivered: {poison_delivered:?}");
    assert_eq!(per_id.len(), N - poison.len());
    assert_eq!(dead, poison, "each poison record dead-lettered once");
    for l in siem::dead_letters(dir) {
        assert_eq!(l["destination"], name);
        assert_eq!(l["stage"], "deliver");
        let why = l["reason"].as_str().unwrap();
        assert!(why.contains(reason), "{why}");
    }
    assert!(requests <= request_bound(), "{requests} requests");
    let report: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(dir.join("report.json")).unwrap()).unwrap();
    assert_eq!(report["destinations"][name]["eventsSent"], (N - poison.len()) as u64);
    assert_eq!(report["destinations"][name]["eventsDeadLettered"], poison.len() as u64);
}

fn ids_of(values: &[serde_json::Value]) -> Vec<u64> {
    values.iter().filter_map(|v| v["id"].as_u64()).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn http_receiver_refusing_whole_requests_gets_every_good_record() {
    use axum::body::Bytes;
    use axum::http::StatusCode;

    let received: Arc<Mutex<Vec<u64>>> = Arc::default();
    let requests = Arc::new(AtomicUsize::new(0));
    let (r, q) = (received.clone(), requests.clone());
    let app = axum::Router::new().route(
        "/ingest",
        axum::routing::post(move |body: Bytes| {
            let (r, q) = (r.clone(), q.clone());
            async move {
                q.fetch_add(1, Ordering::SeqCst);
                let text = String::from_utf8_lossy(&body);
                if text.contains("\"poison\":true") {
                    return (StatusCode::BAD_REQUEST, "field poison is not allowed");
                }
                let mut ids = r.lock().unwrap();
                for line in text.lines() {
                    let v: serde_json::Value = serde_json::from_str(line).unwrap();
                    ids.push(v["id"].as_u64().unwrap());
                }
                (StatusCode::OK, "")
            }
        }),
    );
    let url = siem::serve(app).await;
    let (dir, summary) = run_through(
        "webhook",
        SiemDestinationSpec {
            http: Some(HttpSpec {
                url: format!("{url}/ingest"),
                ..Default::default()
            }),
            ..Default::default()
        },
    )
    .await;
    let delivered = received.lock().unwrap().clone();
    check(
        "webhook",
        dir.path(),
        &summary,
        &delivered,
        requests.load(Ordering::SeqCst),
        "field poison is not allowed",
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn elasticsearch_per_item_refusals_get_every_good_record() {
    let es = Elasticsearch::start(&[]).await;
    let (dir, summary) = run_through(
        "es",
        SiemDestinationSpec {
            elasticsearch: Some(ElasticsearchSpec {
                urls: vec![es.url.clone()],
                // Raw records are no data stream documents (no `@timestamp`): a plain index.
                index: Some("siembridge-raw".into()),
                ..Default::default()
            }),
            ..Default::default()
        },
    )
    .await;
    let docs: Vec<serde_json::Value> = es.state.docs.lock().unwrap().values().cloned().collect();
    check(
        "es",
        dir.path(),
        &summary,
        &ids_of(&docs),
        es.state.requests.load(Ordering::SeqCst),
        "mapper_parsing_exception",
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sekoia_intake_refusing_whole_requests_gets_every_good_record() {
    let sekoia = Sekoia::start("poison-intake-key").await;
    let (dir, summary) = run_through(
        "sekoia",
        SiemDestinationSpec {
            sekoia: Some(SekoiaSpec {
                intake_key: siem::set_secret("sekoia-poison", "intakeKey", "poison-intake-key"),
                url: Some(sekoia.url.clone()),
                ..Default::default()
            }),
            ..Default::default()
        },
    )
    .await;
    println!(
        "sekoia: {} requests refused for a poison event",
        sekoia.state.poison_refusals.load(Ordering::SeqCst)
    );
    check(
        "sekoia",
        dir.path(),
        &summary,
        &ids_of(&sekoia.events("poison-intake-key")),
        sekoia.state.requests.load(Ordering::SeqCst),
        "HTTP 400",
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sentinel_refusing_whole_requests_gets_every_good_record() {
    const TENANT: &str = "11111111-2222-3333-4444-555555555555";
    const APP: &str = "66666666-7777-8888-9999-aaaaaaaaaaaa";
    let entra = Entra::start(TENANT, APP, "poison-client-secret").await;
    let api = LogsIngestion::start(entra.state.clone(), "dcr-1", "Custom-Events").await;
    let (dir, summary) = run_through(
        "sentinel",
        SiemDestinationSpec {
            sentinel: Some(SentinelSpec {
                endpoint: api.endpoint.clone(),
                dcr_immutable_id: "dcr-1".into(),
                stream_name: "Custom-Events".into(),
                credentials: EntraCredentials {
                    tenant_id: TENANT.into(),
                    client_id: APP.into(),
                    client_secret: Some(siem::set_secret(
                        "sentinel-poison",
                        "clientSecret",
                        "poison-client-secret",
                    )),
                    authority_host: Some(entra.authority.clone()),
                    ..Default::default()
                },
            }),
            ..Default::default()
        },
    )
    .await;
    println!(
        "sentinel: {} requests refused for a poison row",
        api.state.poison_refusals.load(Ordering::SeqCst)
    );
    let rows = api.state.rows.lock().unwrap().clone();
    check(
        "sentinel",
        dir.path(),
        &summary,
        &ids_of(&rows),
        api.state.requests.load(Ordering::SeqCst),
        "InvalidContent",
    );
}
