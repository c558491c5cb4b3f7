//! Refused credentials are a destination outage, never a reason to dead-letter: against the
//! Splunk HEC, Elasticsearch, Sekoia, Sentinel (Logs Ingestion API and its Entra token endpoint)
//! stand-ins and a plain HTTP receiver, a collector whose credentials are refused retries with
//! backoff (whatever `maxAttempts` says), dead-letters nothing, keeps the checkpoint before every
//! undelivered record, holds at most its buffer, reports the destination `Unauthorized` or
//! `Forbidden`, and delivers every record once the credentials work: the receiver starts
//! accepting them, or (a Secret fixed, the operator rolls the pod) a new collector reads the new
//! Secret and resumes from the checkpoint.

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use siembridge::api::{
    BatchSpec, BufferSpec, ElasticsearchSpec, EntraCredentials, EventFormat, HttpSpec, OverflowPolicy, SekoiaSpec,
    SentinelSpec, SiemDestinationSpec, SplunkHecSpec,
};
use siembridge::collector::{Collector, RunSummary};
use siembridge::config::{CollectorConfig, ReportTarget};
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

mod common;
#[path = "common/siem/mod.rs"]
mod siem;

use common::entra::Entra;
use siem::elasticsearch::Elasticsearch;
use siem::hec::{Hec, HecToken};
use siem::logs_ingestion::LogsIngestion;
use siem::sekoia::Sekoia;

/// Records held in a destination's buffer at most.
const BUFFER: u32 = 60;

/// One destination `name` fed from `records`, small batches and buffer, quick retries that give
/// up after 3 attempts (refusals must not count), a report every 100 ms.
fn config(dir: &Path, records: &Path, name: &str, mut dest: SiemDestinationSpec) -> CollectorConfig {
    dest.format = EventFormat::Raw;
    dest.batch = BatchSpec {
        max_events: 20,
        max_bytes: 1024 * 1024,
        max_latency_ms: 20,
    };
    dest.retry = siem::fast_retry();
    dest.retry.max_attempts = Some(3);
    dest.buffer = BufferSpec {
        max_events: BUFFER,
        when_full: OverflowPolicy::Block,
    };
    dest.concurrency = 2;
    let mut cfg = common::replay_config(dir, records, "entra", BTreeMap::from([(name.to_string(), dest)]));
    cfg.report = Some(ReportTarget::File {
        path: dir.join("report.json").display().to_string(),
    });
    cfg
}

struct Running {
    run: JoinHandle<Result<RunSummary, siembridge::collector::CollectorError>>,
    registry: prometheus::Registry,
    shutdown: CancellationToken,
}

fn start(cfg: CollectorConfig) -> Running {
    let registry = prometheus::Registry::new();
    let shutdown = CancellationToken::new();
    let collector = Collector::new(cfg)
        .with_registry(registry.clone())
        .with_report_interval(Duration::from_millis(100))
        .with_drain_timeout(Duration::from_secs(1));
    let run = tokio::spawn(collector.run(shutdown.clone()));
    Running {
        run,
        registry,
        shutdown,
    }
}

fn report(dir: &Path) -> serde_json::Value {
    std::fs::read_to_string(dir.join("report.json"))
        .ok()
        .and_then(|t| serde_json::from_str(&t).ok())
        .unwrap_or_default()
}

/// Wait until the report says destination `name` refuses the credentials with `reason` and the
/// destination was asked a few times (or until records were dead-lettered, the run ended or 15 s
/// passed: the checks that follow then say what went wrong).
async fn wait_for_refusal(
    dir: &Path,
    running: &Running,
    name: &str,
    reason: &str,
    requests: impl Fn() -> usize,
) -> serde_json::Value {
    for _ in 0..300 {
        let r = report(dir);
        if r["destinations"][name]["reason"] == reason && requests() >= 6 {
            return r;
        }
        if !siem::dead_lettered_ids(dir).is_empty() || running.run.is_finished() {
            tokio::time::sleep(Duration::from_millis(300)).await;
            return report(dir);
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    report(dir)
}

/// Value of a metric (counter or gauge) for `destination`.
fn metric(registry: &prometheus::Registry, name: &str, destination: &str) -> f64 {
    registry
        .gather()
        .iter()
        .filter(|f| f.name() == name)
        .flat_map(|f| f.get_metric().iter())
        .filter(|m| {
            m.get_label()
                .iter()
                .any(|l| l.name() == "destination" && l.value() == destination)
        })
        .map(|m| m.get_counter().get_value() + m.get_gauge().get_value())
        .sum()
}

fn received(registry: &prometheus::Registry) -> f64 {
    registry
        .gather()
        .iter()
        .filter(|f| f.name() == "siembridge_collector_events_received_total")
        .flat_map(|f| f.get_metric().iter())
        .map(|m| m.get_counter().get_value())
        .sum()
}

/// Line of the replay file the checkpoint has passed (0: none written).
fn checkpointed_line(dir: &Path) -> u64 {
    let Ok(entries) = std::fs::read_dir(dir.join("checkpoints")) else {
        return 0;
    };
    entries
        .filter_map(|e| std::fs::read_to_string(e.ok()?.path()).ok())
        .filter_map(|t| serde_json::from_str::<serde_json::Value>(&t).ok())
        .filter_map(|v| v["position"].as_str()?.rsplit_once('@')?.1.parse().ok())
        .max()
        .unwrap_or(0)
}

/// What the outage did: nothing delivered, nothing dead-lettered, the checkpoint before the first
/// record, the backlog within the buffer, the refusal reported and counted.
fn check_outage(dir: &Path, running: &Running, name: &str, reason: &str, delivered: usize, report: &serde_json::Value) {
    let dead = siem::dead_lettered_ids(dir);
    let checkpoint = checkpointed_line(dir);
    let taken = received(&running.registry);
    let d = &report["destinations"][name];
    println!(
        "{name} outage ({reason}): delivered {delivered}, dead-lettered {}, checkpoint at line {checkpoint}, records taken from the source {taken} (buffer {BUFFER}), queue depth {}, events failed {}, eventsForwarded {}",
        dead.len(),
        d["queueDepth"],
        metric(&running.registry, "siembridge_destination_events_failed_total", name),
        report["logSources"]["entra"]["eventsForwarded"],
    );
    assert_eq!(delivered, 0, "nothing gets through with refused credentials");
    assert_eq!(d["reason"], reason, "{report}");
    assert!(dead.is_empty(), "refused credentials dead-lettered records {dead:?}");
    assert_eq!(checkpoint, 0, "the checkpoint passed undelivered records");
    assert!(
        taken <= f64::from(BUFFER) + 1.0,
        "the source was not held back: {taken} records taken for a buffer of {BUFFER}"
    );
    let depth = d["queueDepth"].as_u64().unwrap_or(0);
    assert!(depth > 0 && depth <= u64::from(BUFFER), "queue depth {depth}: {report}");
    assert_eq!(d["healthy"], false, "{report}");
    assert_eq!(d["eventsDeadLettered"], 0);
    assert_eq!(report["logSources"]["entra"]["eventsForwarded"], 0, "{report}");
    assert!(d["lastError"].as_str().is_some_and(|e| !e.is_empty()), "{report}");
    assert_eq!(
        metric(&running.registry, "siembridge_destination_credentials_refused", name),
        1.0
    );
    assert_eq!(
        metric(
            &running.registry,
            "siembridge_destination_events_dead_lettered_total",
            name
        ),
        0.0
    );
}

/// After the fix: every record delivered (none lost), none dead-lettered, fully checkpointed,
/// the report healthy without a reason.
async fn check_recovery(dir: &Path, running: Running, name: &str, n: usize, delivered: impl Fn() -> Vec<u64>) {
    let summary = tokio::time::timeout(Duration::from_secs(60), running.run)
        .await
        .expect("the run finishes once the credentials work")
        .unwrap()
        .unwrap();
    let ids = delivered();
    let per_id = siem::counts(&ids);
    let lost: Vec<u64> = (1..=n as u64).filter(|i| !per_id.contains_key(i)).collect();
    let duplicates: usize = per_id.values().map(|c| c - 1).sum();
    let dead = siem::dead_lettered_ids(dir);
    println!(
        "{name} after the fix: {n} records, {} delivered ({} distinct), {duplicates} duplicates, {} lost, {} dead-lettered, checkpoint at line {}",
        ids.len(),
        per_id.len(),
        lost.len(),
        dead.len(),
        checkpointed_line(dir)
    );
    assert!(summary.fully_checkpointed, "{summary:?}");
    assert!(lost.is_empty(), "lost records {lost:?}");
    assert!(dead.is_empty(), "dead-lettered {dead:?}");
    assert_eq!(checkpointed_line(dir), n as u64);
    let r = report(dir);
    assert_eq!(r["destinations"][name]["healthy"], true, "{r}");
    assert!(r["destinations"][name].get("reason").is_none(), "{r}");
    assert_eq!(r["logSources"]["entra"]["eventsForwarded"], n as u64, "{r}");
    assert_eq!(
        metric(&running.registry, "siembridge_destination_credentials_refused", name),
        0.0
    );
}

fn record_ids(values: &[serde_json::Value], pointer: &str) -> Vec<u64> {
    values.iter().filter_map(|v| v.pointer(pointer)?.as_u64()).collect()
}

fn hec_spec(url: &str, secret: &str, token: &str) -> SiemDestinationSpec {
    SiemDestinationSpec {
        splunk_hec: Some(SplunkHecSpec {
            url: url.to_string(),
            token: siem::set_secret(secret, "token", token),
            ..Default::default()
        }),
        ..Default::default()
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hec_invalid_token_403_code_4_holds_every_record_until_the_token_is_accepted() {
    let dir = tempfile::tempdir().unwrap();
    let n = 300;
    let records = siem::write_records(dir.path(), n, &[]);
    let hec = Hec::start("tok-hec-old", false).await;
    let cfg = config(
        dir.path(),
        &records,
        "hec",
        hec_spec(&hec.url, "hec-rotated", "tok-hec-rotated"),
    );
    let running = start(cfg);
    let state = hec.state.clone();
    let r = wait_for_refusal(dir.path(), &running, "hec", "Forbidden", || {
        state.event_requests.load(Ordering::SeqCst)
    })
    .await;
    assert!(r["destinations"]["hec"]["lastError"]
        .as_str()
        .unwrap()
        .contains("code 4"));
    check_outage(
        dir.path(),
        &running,
        "hec",
        "Forbidden",
        hec.state.indexed.lock().unwrap().len(),
        &r,
    );
    assert!(!r.to_string().contains("tok-hec-rotated"), "token in the report");

    // HEC now knows the token (the Splunk admin created it): delivery resumes.
    hec.state.tokens.lock().unwrap().insert(
        "tok-hec-rotated".into(),
        HecToken {
            enabled: true,
            use_ack: false,
            indexes: Vec::new(),
        },
    );
    check_recovery(dir.path(), running, "hec", n, || {
        record_ids(&hec.state.indexed.lock().unwrap(), "/event/id")
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hec_disabled_token_then_a_fixed_secret_in_a_new_collector_resumes_from_the_checkpoint() {
    let dir = tempfile::tempdir().unwrap();
    let n = 200;
    let records = siem::write_records(dir.path(), n, &[]);
    let hec = Hec::start("tok-hec-good", false).await;
    // The Secret holds a token HEC has disabled (403 code 1).
    hec.state.tokens.lock().unwrap().insert(
        "tok-hec-disabled".into(),
        HecToken {
            enabled: false,
            use_ack: false,
            indexes: Vec::new(),
        },
    );
    let running = start(config(
        dir.path(),
        &records,
        "hec",
        hec_spec(&hec.url, "hec-secret", "tok-hec-disabled"),
    ));
    let state = hec.state.clone();
    let r = wait_for_refusal(dir.path(), &running, "hec", "Forbidden", || {
        state.event_requests.load(Ordering::SeqCst)
    })
    .await;
    check_outage(
        dir.path(),
        &running,
        "hec",
        "Forbidden",
        hec.state.indexed.lock().unwrap().len(),
        &r,
    );
    // The Secret is fixed; the operator rolls the pod: this collector stops...
    running.shutdown.cancel();
    let stopped = running.run.await.unwrap().unwrap();
    println!(
        "hec: the old collector stopped, fully checkpointed: {}, checkpoint at line {}",
        stopped.fully_checkpointed,
        checkpointed_line(dir.path())
    );
    assert!(!stopped.fully_checkpointed);
    assert_eq!(checkpointed_line(dir.path()), 0);
    assert!(siem::dead_lettered_ids(dir.path()).is_empty());
    // ...and its successor reads the fixed Secret and resumes from the checkpoint.
    let next = start(config(
        dir.path(),
        &records,
        "hec",
        hec_spec(&hec.url, "hec-secret", "tok-hec-good"),
    ));
    check_recovery(dir.path(), next, "hec", n, || {
        record_ids(&hec.state.indexed.lock().unwrap(), "/event/id")
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn elasticsearch_401_holds_every_record_until_the_api_key_is_accepted() {
    let dir = tempfile::tempdir().unwrap();
    let n = 250;
    let records = siem::write_records(dir.path(), n, &[]);
    let es = Elasticsearch::start(&["ApiKey the-old-key"]).await;
    let spec = SiemDestinationSpec {
        elasticsearch: Some(ElasticsearchSpec {
            urls: vec![es.url.clone()],
            // Raw records are no data stream documents (no `@timestamp`): a plain index.
            index: Some("siembridge-raw".into()),
            api_key: Some(siem::set_secret("es-key", "key", "the-new-key")),
            ..Default::default()
        }),
        ..Default::default()
    };
    let running = start(config(dir.path(), &records, "es", spec));
    let state = es.state.clone();
    let r = wait_for_refusal(dir.path(), &running, "es", "Unauthorized", || {
        state.requests.load(Ordering::SeqCst)
    })
    .await;
    assert!(r["destinations"]["es"]["lastError"]
        .as_str()
        .unwrap()
        .contains("HTTP 401"));
    check_outage(
        dir.path(),
        &running,
        "es",
        "Unauthorized",
        es.state.docs.lock().unwrap().len(),
        &r,
    );
    assert!(!r.to_string().contains("the-new-key"));
    // The cluster now accepts the key.
    es.state.accepted_auth.lock().unwrap().push("ApiKey the-new-key".into());
    check_recovery(dir.path(), running, "es", n, || {
        let docs: Vec<serde_json::Value> = es.state.docs.lock().unwrap().values().cloned().collect();
        record_ids(&docs, "/id")
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sekoia_unknown_intake_key_holds_every_record_until_the_key_is_known() {
    let dir = tempfile::tempdir().unwrap();
    let n = 250;
    let records = siem::write_records(dir.path(), n, &[]);
    let sekoia = Sekoia::start("an-old-intake-key").await;
    let spec = SiemDestinationSpec {
        sekoia: Some(SekoiaSpec {
            intake_key: siem::set_secret("sekoia-key", "intakeKey", "the-new-intake-key"),
            url: Some(sekoia.url.clone()),
            ..Default::default()
        }),
        ..Default::default()
    };
    let running = start(config(dir.path(), &records, "sekoia", spec));
    let state = sekoia.state.clone();
    let r = wait_for_refusal(dir.path(), &running, "sekoia", "Unauthorized", || {
        state.requests.load(Ordering::SeqCst)
    })
    .await;
    check_outage(
        dir.path(),
        &running,
        "sekoia",
        "Unauthorized",
        sekoia.events("the-new-intake-key").len(),
        &r,
    );
    assert!(!r.to_string().contains("the-new-intake-key"));
    sekoia.state.keys.lock().unwrap().push("the-new-intake-key".into());
    check_recovery(dir.path(), running, "sekoia", n, || {
        record_ids(&sekoia.events("the-new-intake-key"), "/id")
    })
    .await;
}

const TENANT: &str = "11111111-2222-3333-4444-555555555555";
const APP: &str = "66666666-7777-8888-9999-aaaaaaaaaaaa";

fn sentinel_spec(endpoint: &str, authority: &str, secret_value: &str) -> SiemDestinationSpec {
    SiemDestinationSpec {
        sentinel: Some(SentinelSpec {
            endpoint: endpoint.to_string(),
            dcr_immutable_id: "dcr-1".into(),
            stream_name: "Custom-Events".into(),
            credentials: EntraCredentials {
                tenant_id: TENANT.into(),
                client_id: APP.into(),
                client_secret: Some(siem::set_secret("sentinel-app", "clientSecret", secret_value)),
                authority_host: Some(authority.to_string()),
                ..Default::default()
            },
        }),
        ..Default::default()
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sentinel_wrong_client_secret_aadsts7000215_holds_every_record_until_entra_accepts_it() {
    let dir = tempfile::tempdir().unwrap();
    let n = 250;
    let records = siem::write_records(dir.path(), n, &[]);
    let entra = Entra::start(TENANT, APP, "the-old-client-secret").await;
    let api = LogsIngestion::start(entra.state.clone(), "dcr-1", "Custom-Events").await;
    let running = start(config(
        dir.path(),
        &records,
        "sentinel",
        sentinel_spec(&api.endpoint, &entra.authority, "the-new-client-secret"),
    ));
    let state = entra.state.clone();
    let r = wait_for_refusal(dir.path(), &running, "sentinel", "Unauthorized", || {
        state.requests.load(Ordering::SeqCst)
    })
    .await;
    assert!(r["destinations"]["sentinel"]["lastError"]
        .as_str()
        .unwrap()
        .contains("7000215"));
    check_outage(
        dir.path(),
        &running,
        "sentinel",
        "Unauthorized",
        api.state.rows.lock().unwrap().len(),
        &r,
    );
    assert_eq!(api.state.requests.load(Ordering::SeqCst), 0, "no token, no request");
    assert!(!r.to_string().contains("the-new-client-secret"));
    // The app's secret in Entra is now the one in the Secret.
    entra.state.apps.lock().unwrap().insert(
        TENANT.into(),
        [(APP.to_string(), "the-new-client-secret".to_string())].into(),
    );
    check_recovery(dir.path(), running, "sentinel", n, || {
        record_ids(&api.state.rows.lock().unwrap(), "/id")
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sentinel_403_without_the_publisher_role_holds_every_record_until_it_is_granted() {
    let dir = tempfile::tempdir().unwrap();
    let n = 120;
    let records = siem::write_records(dir.path(), n, &[]);
    let entra = Entra::start(TENANT, APP, "client-secret-403").await;
    let api = LogsIngestion::start(entra.state.clone(), "dcr-1", "Custom-Events").await;
    api.state.forbidden.store(true, Ordering::SeqCst);
    let running = start(config(
        dir.path(),
        &records,
        "sentinel",
        sentinel_spec(&api.endpoint, &entra.authority, "client-secret-403"),
    ));
    let state = api.state.clone();
    let r = wait_for_refusal(dir.path(), &running, "sentinel", "Forbidden", || {
        state.requests.load(Ordering::SeqCst)
    })
    .await;
    check_outage(
        dir.path(),
        &running,
        "sentinel",
        "Forbidden",
        api.state.rows.lock().unwrap().len(),
        &r,
    );
    // The role assignment arrives.
    api.state.forbidden.store(false, Ordering::SeqCst);
    check_recovery(dir.path(), running, "sentinel", n, || {
        record_ids(&api.state.rows.lock().unwrap(), "/id")
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn http_401_holds_every_record_until_the_receiver_accepts_the_header() {
    use axum::body::Bytes;
    use axum::http::{HeaderMap, StatusCode};
    use std::sync::atomic::AtomicBool;
    use std::sync::Mutex;

    #[derive(Default)]
    struct Receiver {
        accept: AtomicBool,
        requests: std::sync::atomic::AtomicUsize,
        ids: Mutex<Vec<u64>>,
    }
    let dir = tempfile::tempdir().unwrap();
    let n = 200;
    let records = siem::write_records(dir.path(), n, &[]);
    let receiver = Arc::new(Receiver::default());
    let r2 = receiver.clone();
    let app = axum::Router::new().route(
        "/ingest",
        axum::routing::post(move |headers: HeaderMap, body: Bytes| {
            let r = r2.clone();
            async move {
                r.requests.fetch_add(1, Ordering::SeqCst);
                let presented =
                    headers.get("authorization").and_then(|v| v.to_str().ok()) == Some("Bearer webhook-key");
                if !(presented && r.accept.load(Ordering::SeqCst)) {
                    return StatusCode::UNAUTHORIZED;
                }
                let text = String::from_utf8_lossy(&body);
                let mut ids = r.ids.lock().unwrap();
                for line in text.lines() {
                    let v: serde_json::Value = serde_json::from_str(line).unwrap();
                    ids.push(v["id"].as_u64().unwrap());
                }
                StatusCode::OK
            }
        }),
    );
    let url = siem::serve(app).await;
    let spec = SiemDestinationSpec {
        http: Some(HttpSpec {
            url: format!("{url}/ingest"),
            headers: vec![siembridge::api::HttpHeader {
                name: "Authorization".into(),
                value: None,
                value_from: Some(siem::set_secret("webhook", "authorization", "Bearer webhook-key")),
            }],
            ..Default::default()
        }),
        ..Default::default()
    };
    let running = start(config(dir.path(), &records, "webhook", spec));
    let state = receiver.clone();
    let r = wait_for_refusal(dir.path(), &running, "webhook", "Unauthorized", || {
        state.requests.load(Ordering::SeqCst)
    })
    .await;
    check_outage(
        dir.path(),
        &running,
        "webhook",
        "Unauthorized",
        receiver.ids.lock().unwrap().len(),
        &r,
    );
    receiver.accept.store(true, Ordering::SeqCst);
    check_recovery(dir.path(), running, "webhook", n, || {
        receiver.ids.lock().unwrap().clone()
    })
    .await;
}
