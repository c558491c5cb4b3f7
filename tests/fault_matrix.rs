//! The HTTP fault matrix (issue 12, "Delivery integrity"): the built collector replays records to
//! the HTTP destinations (`http`, `splunkHec`, `elasticsearch`, `sekoia`, and `sentinel` for
//! redirects) behind a scripted
//! hostile receiver (tests/common/hostile.rs), one fault per test so each runs alone:
//!
//! `cargo test --test fault_matrix <name>`
//!
//! Every test prints, per destination, the records sent, lost, duplicated and dead-lettered (by
//! record id), and asserts that none is lost (delivered or dead-lettered with a reason), that no
//! redirect is followed (nothing reaches the other host, no POST turns into a GET), that no
//! secret value appears in the collector's log, its report or a dead letter, and that the
//! duplicates stay within what the fault can explain.
//!
//! The token client, the Blob client and the API source client are checked for redirects and
//! huge `Retry-After` values in-process at the end.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use common::hostile::{record_id, Answer, Hostile, Request};
use siembridge::api::{
    BasicAuth, BatchSpec, ElasticsearchSpec, EntraCredentials, EventFormat, HttpHeader, HttpSpec, RetrySpec,
    SecretKeySelector, SekoiaSpec, SentinelSpec, SiemDestinationSpec, SplunkHecSpec,
};
use siembridge::config::{CollectorConfig, ReportTarget};

mod common;

/// Secret values of the destinations (synthetic); none may leave towards another host or appear
/// in a log line, the report or a dead letter.
const API_KEY: &str = "hostile-api-key-7f3c9a1e5b";
const HEC_TOKEN: &str = "hec-token-2b8d4f6a0c1e9d";
const ES_PASSWORD: &str = "es-password-9e7c5a3b1d";
const SEKOIA_KEY: &str = "sekoia-intake-key-4a6c8e0f2d";
const SENTINEL_SECRET: &str = "sentinel-client-secret-6b8d0f2a4c";
const TENANT: &str = "contoso.example";
const SENTINEL_APP: &str = "22222222-3333-4444-8555-666666666666";

fn secret_env() -> Vec<(String, String)> {
    [
        ("HOSTILE", "API_KEY", API_KEY),
        ("HEC", "TOKEN", HEC_TOKEN),
        ("ES", "PASSWORD", ES_PASSWORD),
        ("SEKOIA", "KEY", SEKOIA_KEY),
        ("SENTINEL", "SECRET", SENTINEL_SECRET),
    ]
    .iter()
    .map(|(n, k, v)| (format!("SIEMBRIDGE_SECRET_{n}_{k}"), v.to_string()))
    .collect()
}

/// The secret values and the forms they travel in (the Basic pair is sent base64-encoded).
fn secret_forms() -> Vec<String> {
    use base64::Engine;
    vec![
        API_KEY.into(),
        HEC_TOKEN.into(),
        ES_PASSWORD.into(),
        SEKOIA_KEY.into(),
        SENTINEL_SECRET.into(),
        base64::engine::general_purpose::STANDARD.encode(format!("elastic:{ES_PASSWORD}")),
    ]
}

fn selector(name: &str, key: &str) -> SecretKeySelector {
    SecretKeySelector {
        name: name.into(),
        key: key.into(),
    }
}

/// Batching and retries of every destination here: small batches, quick retries, a short
/// request timeout (hung requests), retry until delivered (never give up).
fn common_spec() -> SiemDestinationSpec {
    SiemDestinationSpec {
        format: EventFormat::Raw,
        batch: BatchSpec {
            max_events: 100,
            max_bytes: 1024 * 1024,
            max_latency_ms: 20,
        },
        retry: RetrySpec {
            initial_backoff_ms: 10,
            max_backoff_ms: 200,
            max_attempts: None,
            request_timeout_ms: 1500,
        },
        concurrency: 2,
        ..Default::default()
    }
}

fn http_dest(url: &str) -> SiemDestinationSpec {
    SiemDestinationSpec {
        http: Some(HttpSpec {
            url: url.into(),
            headers: vec![HttpHeader {
                name: "x-api-key".into(),
                value: None,
                value_from: Some(selector("hostile", "api-key")),
            }],
            ..Default::default()
        }),
        ..common_spec()
    }
}

fn hec_dest(url: &str, indexer_ack: bool) -> SiemDestinationSpec {
    SiemDestinationSpec {
        splunk_hec: Some(SplunkHecSpec {
            url: url.into(),
            token: selector("hec", "token"),
            indexer_ack,
            ..Default::default()
        }),
        ..common_spec()
    }
}

fn es_dest(url: &str) -> SiemDestinationSpec {
    SiemDestinationSpec {
        elasticsearch: Some(ElasticsearchSpec {
            urls: vec![url.into()],
            index: Some("siembridge-m365".into()),
            basic_auth: Some(BasicAuth {
                username: "elastic".into(),
                password: selector("es", "password"),
            }),
            ..Default::default()
        }),
        ..common_spec()
    }
}

fn sekoia_dest(url: &str) -> SiemDestinationSpec {
    SiemDestinationSpec {
        sekoia: Some(SekoiaSpec {
            intake_key: selector("sekoia", "key"),
            url: Some(url.into()),
            ..Default::default()
        }),
        ..common_spec()
    }
}

/// Microsoft Sentinel (Logs Ingestion API) at `url`, with tokens from the Entra stand-in at
/// `authority`.
fn sentinel_dest(url: &str, authority: &str) -> SiemDestinationSpec {
    SiemDestinationSpec {
        sentinel: Some(SentinelSpec {
            endpoint: url.into(),
            dcr_immutable_id: "dcr-00000000000000000000000000000000".into(),
            stream_name: "Custom-SiembridgeEvents".into(),
            credentials: EntraCredentials {
                tenant_id: TENANT.into(),
                client_id: SENTINEL_APP.into(),
                client_secret: Some(selector("sentinel", "secret")),
                authority_host: Some(authority.into()),
                ..Default::default()
            },
        }),
        ..common_spec()
    }
}

/// `n` records `rid-000001`...; each is JSON with the id the receivers count.
fn write_records(dir: &Path, n: usize) -> PathBuf {
    let p = dir.join("records.ndjson");
    let mut text = String::with_capacity(n * 80);
    for i in 1..=n {
        text.push_str(&format!(
            "{{\"id\":\"{}\",\"category\":\"SignInLogs\",\"user\":\"u{}@contoso.example\"}}\n",
            record_id(i),
            i % 97
        ));
    }
    std::fs::write(&p, text).unwrap();
    p
}

fn config(dir: &Path, records: &Path, destinations: BTreeMap<String, SiemDestinationSpec>) -> PathBuf {
    let mut config: CollectorConfig = common::replay_config(dir, records, "replayed", destinations);
    config.report = Some(ReportTarget::File {
        path: dir.join("report.json").display().to_string(),
    });
    let path = dir.join("collector.yaml");
    std::fs::write(&path, serde_yaml::to_string(&config).unwrap()).unwrap();
    path
}

fn spawn(config: &Path, log: &Path) -> common::child::Reaped {
    let log = std::fs::OpenOptions::new().create(true).append(true).open(log).unwrap();
    common::child::Reaped(
        Command::new(env!("CARGO_BIN_EXE_siembridge"))
            .args(["--log-format", "json", "collector", "--config"])
            .arg(config)
            .envs(secret_env())
            .env("RUST_LOG", "info")
            .stdout(Stdio::null())
            .stderr(Stdio::from(log))
            .spawn()
            .unwrap(),
    )
}

/// Run the collector to the end of the replay; panics (with the log's tail) past `limit`.
async fn run_to_end(dir: &Path, config: &Path, limit: Duration) {
    let log = dir.join("collector.log");
    let mut child = spawn(config, &log);
    let deadline = Instant::now() + limit;
    let status = loop {
        if let Some(s) = child.try_wait().unwrap() {
            break s;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            panic!(
                "the collector did not finish within {limit:?}; log tail:\n{}",
                tail(&log)
            );
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    assert!(status.success(), "collector failed; log tail:\n{}", tail(&log));
}

fn tail(log: &Path) -> String {
    let text = std::fs::read_to_string(log).unwrap_or_default();
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(20)..].join("\n")
}

/// Dead letters: (record id, destination, reason).
fn dead_letters(dir: &Path) -> Vec<(String, String, String)> {
    let mut out = Vec::new();
    let Ok(files) = std::fs::read_dir(dir.join("dead-letter")) else {
        return out;
    };
    for f in files {
        let text = std::fs::read_to_string(f.unwrap().path()).unwrap();
        for line in text.lines() {
            let v: serde_json::Value = serde_json::from_str(line).unwrap();
            out.push((
                v["record"]["id"].as_str().unwrap_or_default().to_string(),
                v["destination"].as_str().unwrap_or_default().to_string(),
                v["reason"].as_str().unwrap_or_default().to_string(),
            ));
        }
    }
    out
}

/// What happened to the records at one destination.
#[derive(Debug)]
struct Account {
    lost: Vec<String>,
    duplicates: usize,
    duplicated_ids: usize,
    dead_lettered: BTreeSet<String>,
}

/// Count what receiver `r` stored and what was dead-lettered for `destination`, print it, and
/// assert that nothing was lost.
fn account(fault: &str, destination: &str, n: usize, r: &Hostile, dir: &Path) -> Account {
    let stored = r.stored();
    let dead_lettered: BTreeSet<String> = dead_letters(dir)
        .into_iter()
        .filter(|(_, d, _)| d == destination)
        .map(|(id, _, _)| id)
        .collect();
    let lost: Vec<String> = (1..=n)
        .map(record_id)
        .filter(|id| !stored.contains_key(id) && !dead_lettered.contains(id))
        .collect();
    let duplicates: usize = stored.values().map(|v| v.len().saturating_sub(1)).sum();
    let duplicated_ids = stored.values().filter(|v| v.len() > 1).count();
    let a = Account {
        lost,
        duplicates,
        duplicated_ids,
        dead_lettered,
    };
    eprintln!(
        "fault {fault} / {destination}: {n} records, stored {}, lost {}, duplicate deliveries {} ({} ids), \
         dead-lettered {} {:?}, {} requests",
        stored.len(),
        a.lost.len(),
        a.duplicates,
        a.duplicated_ids,
        a.dead_lettered.len(),
        a.dead_lettered.iter().take(10).collect::<Vec<_>>(),
        r.request_count()
    );
    assert!(
        a.lost.is_empty(),
        "{fault} / {destination}: lost {} records, first {:?}",
        a.lost.len(),
        &a.lost[..a.lost.len().min(10)]
    );
    a
}

/// No secret value in the collector's log, its report or a dead letter.
fn assert_no_secret_in_outputs(dir: &Path) {
    let mut texts = vec![
        (
            "log",
            std::fs::read_to_string(dir.join("collector.log")).unwrap_or_default(),
        ),
        (
            "report",
            std::fs::read_to_string(dir.join("report.json")).unwrap_or_default(),
        ),
    ];
    if let Ok(files) = std::fs::read_dir(dir.join("dead-letter")) {
        for f in files {
            texts.push(("dead letters", std::fs::read_to_string(f.unwrap().path()).unwrap()));
        }
    }
    for (what, text) in &texts {
        for s in secret_forms() {
            assert!(!text.contains(&s), "a secret value is in the {what}");
        }
    }
}

/// No request reached `other`, and no request was turned into a GET at `r`.
fn assert_no_redirect_followed(r: &Hostile, other: &Hostile) {
    let stolen = other.requests();
    for req in &stolen {
        for s in secret_forms() {
            assert!(!req.text().contains(&s), "a secret value went to another host");
        }
    }
    assert!(
        stolen.is_empty(),
        "{} requests reached the other host (first: {} {})",
        stolen.len(),
        stolen[0].method,
        stolen[0].path
    );
    let methods: BTreeSet<String> = r.requests().iter().map(|q| q.method.clone()).collect();
    assert!(
        methods.iter().all(|m| m == "POST"),
        "a POST was turned into another method: {methods:?}"
    );
}

fn report(dir: &Path) -> String {
    std::fs::read_to_string(dir.join("report.json")).unwrap_or_default()
}

/// A receiver that stores everything it is sent, wherever (the "other host" of a redirect).
async fn sink() -> Hostile {
    Hostile::start(|_, _| Answer::ok()).await
}

const N: usize = 2000;

// ---------------------------------------------------------------------------------------------
// Redirects

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redirect_302_same_host_is_a_retried_error_not_a_bodiless_get() {
    let dir = tempfile::tempdir().unwrap();
    let records = write_records(dir.path(), N);
    let redirected = Arc::new(AtomicUsize::new(0));
    let red = redirected.clone();
    // The receiver moves to a landing page that answers 200 to anything (and keeps nothing).
    let r = Hostile::start(move |_, req| {
        if req.path == "/ingest" && red.fetch_add(1, Ordering::Relaxed) < 5 {
            Answer::redirect(302, "/landing?session=abc")
        } else if req.path == "/ingest" {
            Answer::ok()
        } else {
            Answer::lie(200, "<html>welcome</html>")
        }
    })
    .await;
    let config = config(
        dir.path(),
        &records,
        BTreeMap::from([("receiver".to_string(), http_dest(&r.url("/ingest")))]),
    );
    run_to_end(dir.path(), &config, Duration::from_secs(60)).await;
    let a = account("302 same host", "receiver", N, &r, dir.path());
    assert!(a.dead_lettered.is_empty(), "a redirect is not a reason to dead-letter");
    let paths: BTreeSet<String> = r
        .requests()
        .iter()
        .map(|q| format!("{} {}", q.method, q.path))
        .collect();
    assert_eq!(
        paths,
        BTreeSet::from(["POST /ingest".to_string()]),
        "the redirect was followed"
    );
    let report = report(dir.path());
    assert!(
        report.contains("redirect to Location http://127.0.0.1") && report.contains("/landing"),
        "the report names the Location: {report}"
    );
    assert!(!report.contains("session=abc"), "the Location's query is left out");
    assert_no_secret_in_outputs(dir.path());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redirect_307_same_host_is_not_followed() {
    let dir = tempfile::tempdir().unwrap();
    let records = write_records(dir.path(), N);
    let redirected = Arc::new(AtomicUsize::new(0));
    let red = redirected.clone();
    let r = Hostile::start(move |_, req| {
        if req.path == "/ingest" && red.fetch_add(1, Ordering::Relaxed) < 5 {
            Answer::redirect(307, "/moved")
        } else {
            Answer::ok()
        }
    })
    .await;
    let config = config(
        dir.path(),
        &records,
        BTreeMap::from([("receiver".to_string(), http_dest(&r.url("/ingest")))]),
    );
    run_to_end(dir.path(), &config, Duration::from_secs(60)).await;
    let a = account("307 same host", "receiver", N, &r, dir.path());
    assert!(a.dead_lettered.is_empty());
    assert_eq!(a.duplicates, 0, "a refused redirect delivers nothing twice");
    assert!(
        r.requests().iter().all(|q| q.path == "/ingest"),
        "a request went to the Location"
    );
    assert!(report(dir.path()).contains("HTTP 307: redirect to Location"));
    assert_no_secret_in_outputs(dir.path());
}

/// Every HTTP destination at once, each behind a receiver that first answers 307 (then 302) to
/// another host: nothing reaches that host (no records, no `x-api-key`, no HEC token, no Basic
/// credential, no intake key), nothing is lost, nothing is dead-lettered.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redirects_to_another_host_send_nothing_there_from_any_http_destination() {
    let dir = tempfile::tempdir().unwrap();
    let records = write_records(dir.path(), N);
    let other = sink().await;
    let steal = other.url("/steal");
    let redirecting = |ok: Answer| {
        let steal = steal.clone();
        let count = AtomicUsize::new(0);
        move |_: usize, _: &Request| match count.fetch_add(1, Ordering::Relaxed) {
            0..=2 => Answer::redirect(307, &steal),
            3..=5 => Answer::redirect(302, &steal),
            _ => ok.clone(),
        }
    };
    let http = Hostile::start(redirecting(Answer::ok())).await;
    let hec = Hostile::start(redirecting(Answer::json(200, r#"{"text":"Success","code":0}"#))).await;
    let sekoia = Hostile::start(redirecting(Answer::json(202, r#"{"event_ids":[]}"#))).await;
    let sentinel = Hostile::start(redirecting(Answer::status(204, ""))).await;
    let entra = common::entra::Entra::start(TENANT, SENTINEL_APP, SENTINEL_SECRET).await;
    // Elasticsearch answers one `create` result per document.
    let es_steal = steal.clone();
    let es_count = AtomicUsize::new(0);
    let es = Hostile::start(move |_, req| match es_count.fetch_add(1, Ordering::Relaxed) {
        0..=2 => Answer::redirect(307, &es_steal),
        3..=5 => Answer::redirect(302, &es_steal),
        _ => bulk_ok(req),
    })
    .await;
    let config = config(
        dir.path(),
        &records,
        BTreeMap::from([
            ("http".to_string(), http_dest(&http.url("/ingest"))),
            ("hec".to_string(), hec_dest(&hec.url(""), false)),
            ("es".to_string(), es_dest(&es.url(""))),
            ("sekoia".to_string(), sekoia_dest(&sekoia.url(""))),
            (
                "sentinel".to_string(),
                sentinel_dest(&sentinel.url(""), &entra.authority),
            ),
        ]),
    );
    run_to_end(dir.path(), &config, Duration::from_secs(90)).await;
    for (name, r) in [
        ("http", &http),
        ("hec", &hec),
        ("es", &es),
        ("sekoia", &sekoia),
        ("sentinel", &sentinel),
    ] {
        let a = account("307/302 to another host", name, N, r, dir.path());
        assert!(
            a.dead_lettered.is_empty(),
            "{name}: a redirect is not a reason to dead-letter"
        );
        assert_no_redirect_followed(r, &other);
    }
    assert_eq!(other.request_count(), 0);
    let report = report(dir.path());
    assert!(report.contains(&format!("redirect to Location {steal}")), "{report}");
    assert_no_secret_in_outputs(dir.path());
}

/// The `_bulk` answer of a healthy cluster: one `create` 201 per document of the request.
fn bulk_ok(req: &Request) -> Answer {
    let items: Vec<String> = req
        .ids
        .iter()
        .map(|_| r#"{"create":{"status":201,"result":"created"}}"#.to_string())
        .collect();
    Answer::json(
        200,
        &format!(r#"{{"took":1,"errors":false,"items":[{}]}}"#, items.join(",")),
    )
}

// ---------------------------------------------------------------------------------------------
// Credentials refused for a while (needs the credentials-refused outcome of helper H3)

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn credentials_refused_401_then_403_until_fixed_are_retried_never_dead_lettered() {
    let dir = tempfile::tempdir().unwrap();
    let records = write_records(dir.path(), N);
    let started = Instant::now();
    let r = Hostile::start(move |_, _| match started.elapsed().as_millis() {
        0..=1999 => Answer::json(401, r#"{"error":"invalid api key"}"#),
        2000..=3999 => Answer::json(403, r#"{"error":"key disabled"}"#),
        _ => Answer::ok(),
    })
    .await;
    let config = config(
        dir.path(),
        &records,
        BTreeMap::from([("receiver".to_string(), http_dest(&r.url("/ingest")))]),
    );
    run_to_end(dir.path(), &config, Duration::from_secs(60)).await;
    let a = account("401/403 fixed after 4 s", "receiver", N, &r, dir.path());
    assert!(
        a.dead_lettered.is_empty(),
        "a refused credential is an outage, not a reason to dead-letter: {} dead-lettered",
        a.dead_lettered.len()
    );
    assert_no_secret_in_outputs(dir.path());
}

// ---------------------------------------------------------------------------------------------
// Poison records inside batches (needs the batch bisection of helper H3)

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn poison_records_inside_batches_dead_letter_only_themselves() {
    let dir = tempfile::tempdir().unwrap();
    let records = write_records(dir.path(), N);
    let poison: BTreeSet<String> = [137, 555, 1234, 1235].into_iter().map(record_id).collect();
    let p = poison.clone();
    let r = Hostile::start(move |_, req| {
        if req.ids.iter().any(|id| p.contains(id)) {
            Answer::json(400, r#"{"error":"field user is not allowed"}"#)
        } else {
            Answer::ok()
        }
    })
    .await;
    let config = config(
        dir.path(),
        &records,
        BTreeMap::from([("receiver".to_string(), http_dest(&r.url("/ingest")))]),
    );
    run_to_end(dir.path(), &config, Duration::from_secs(60)).await;
    let a = account("400 for poison records in batches", "receiver", N, &r, dir.path());
    assert_eq!(
        a.dead_lettered,
        poison,
        "only the poison records are dead-lettered ({} were)",
        a.dead_lettered.len()
    );
    assert_no_secret_in_outputs(dir.path());
}

// ---------------------------------------------------------------------------------------------
// Throttling, server errors, hangs, broken connections

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn huge_retry_after_is_capped_by_max_backoff() {
    let dir = tempfile::tempdir().unwrap();
    let records = write_records(dir.path(), N);
    let r = Hostile::start(|n, _| match n {
        1 | 2 => Answer::retry_after(429, "100000"),
        3 => Answer::retry_after(
            503,
            &httpdate::fmt_http_date(std::time::SystemTime::now() + Duration::from_secs(86_400)),
        ),
        _ => Answer::ok(),
    })
    .await;
    let config = config(
        dir.path(),
        &records,
        BTreeMap::from([("receiver".to_string(), http_dest(&r.url("/ingest")))]),
    );
    let started = Instant::now();
    run_to_end(dir.path(), &config, Duration::from_secs(60)).await;
    eprintln!("huge Retry-After: finished in {:.1}s", started.elapsed().as_secs_f64());
    let a = account("429 Retry-After: 100000", "receiver", N, &r, dir.path());
    assert!(a.dead_lettered.is_empty());
    assert_eq!(a.duplicates, 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_third_request_500_loses_and_duplicates_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let records = write_records(dir.path(), N);
    let r = Hostile::start(|n, _| {
        if n % 3 == 0 {
            Answer::json(500, r#"{"error":"internal"}"#)
        } else {
            Answer::ok()
        }
    })
    .await;
    let config = config(
        dir.path(),
        &records,
        BTreeMap::from([("receiver".to_string(), http_dest(&r.url("/ingest")))]),
    );
    run_to_end(dir.path(), &config, Duration::from_secs(60)).await;
    let a = account("500 on every third request", "receiver", N, &r, dir.path());
    assert!(a.dead_lettered.is_empty());
    assert_eq!(a.duplicates, 0, "a 500 stores nothing, so nothing comes twice");
}

/// The receiver stores the records of every fourth request and then never answers: the
/// collector times out, sends them again; each such record may arrive twice, no more.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hung_requests_are_sent_again_with_bounded_duplicates() {
    let dir = tempfile::tempdir().unwrap();
    let records = write_records(dir.path(), N);
    let hung_records = Arc::new(AtomicUsize::new(0));
    let hr = hung_records.clone();
    let r = Hostile::start(move |n, req| {
        if n % 4 == 1 && n < 40 {
            hr.fetch_add(req.ids.len(), Ordering::Relaxed);
            Answer::Hang
        } else {
            Answer::ok()
        }
    })
    .await;
    let config = config(
        dir.path(),
        &records,
        BTreeMap::from([("receiver".to_string(), http_dest(&r.url("/ingest")))]),
    );
    run_to_end(dir.path(), &config, Duration::from_secs(90)).await;
    let a = account("hung requests", "receiver", N, &r, dir.path());
    let bound = hung_records.load(Ordering::Relaxed);
    eprintln!(
        "hung requests: duplicates {} within the {bound} records of hung requests",
        a.duplicates
    );
    assert!(a.dead_lettered.is_empty());
    assert!(a.duplicates <= bound, "{} duplicates > {bound}", a.duplicates);
}

/// The receiver stores the records, then closes the connection before answering (every third
/// request) or after half an answer (every fifth): for `http` and Splunk HEC.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connections_closed_mid_response_lose_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let records = write_records(dir.path(), N);
    let closing = |ok: Answer, closed: Arc<AtomicUsize>| {
        move |n: usize, req: &Request| {
            if n % 3 == 1 && n < 60 {
                closed.fetch_add(req.ids.len(), Ordering::Relaxed);
                Answer::Close
            } else if n % 5 == 2 && n < 60 {
                Answer::CloseMidResponse
            } else {
                ok.clone()
            }
        }
    };
    let http_closed = Arc::new(AtomicUsize::new(0));
    let hec_closed = Arc::new(AtomicUsize::new(0));
    let http = Hostile::start(closing(Answer::ok(), http_closed.clone())).await;
    let hec = Hostile::start(closing(
        Answer::json(200, r#"{"text":"Success","code":0}"#),
        hec_closed.clone(),
    ))
    .await;
    let config = config(
        dir.path(),
        &records,
        BTreeMap::from([
            ("http".to_string(), http_dest(&http.url("/ingest"))),
            ("hec".to_string(), hec_dest(&hec.url(""), false)),
        ]),
    );
    run_to_end(dir.path(), &config, Duration::from_secs(90)).await;
    for (name, r, closed) in [("http", &http, &http_closed), ("hec", &hec, &hec_closed)] {
        let a = account("connection closed mid-response", name, N, r, dir.path());
        let bound = closed.load(Ordering::Relaxed);
        assert!(a.dead_lettered.is_empty(), "{name}");
        assert!(a.duplicates <= bound, "{name}: {} duplicates > {bound}", a.duplicates);
    }
}

// ---------------------------------------------------------------------------------------------
// Secrets echoed back

/// Receivers that echo the request headers in their error bodies (500s that are retried, 400s
/// that dead-letter): the secrets stay out of the log, the report and the dead letters, which
/// show `<redacted>` instead.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn secrets_echoed_by_a_receiver_stay_out_of_logs_reports_and_dead_letters() {
    let dir = tempfile::tempdir().unwrap();
    let records = write_records(dir.path(), N);
    let poison: BTreeSet<String> = [42, 1500].into_iter().map(record_id).collect();
    let echoing = |ok: fn(&Request) -> Answer| {
        let p = poison.clone();
        move |n: usize, req: &Request| {
            if req.ids.iter().any(|id| p.contains(id)) {
                Answer::echo_headers(400, req)
            } else if n % 4 == 2 {
                Answer::echo_headers(500, req)
            } else {
                ok(req)
            }
        }
    };
    let http = Hostile::start(echoing(|_| Answer::ok())).await;
    let hec = Hostile::start(echoing(|_| Answer::json(200, r#"{"text":"Success","code":0}"#))).await;
    let es = Hostile::start(echoing(bulk_ok)).await;
    let sekoia = Hostile::start(echoing(|_| Answer::json(202, r#"{"event_ids":[]}"#))).await;
    let config = config(
        dir.path(),
        &records,
        BTreeMap::from([
            ("http".to_string(), http_dest(&http.url("/ingest"))),
            ("hec".to_string(), hec_dest(&hec.url(""), false)),
            ("es".to_string(), es_dest(&es.url(""))),
            ("sekoia".to_string(), sekoia_dest(&sekoia.url(""))),
        ]),
    );
    run_to_end(dir.path(), &config, Duration::from_secs(90)).await;
    for (name, r) in [("http", &http), ("hec", &hec), ("es", &es), ("sekoia", &sekoia)] {
        let a = account("headers echoed in error bodies", name, N, r, dir.path());
        assert!(
            poison.is_subset(&a.dead_lettered),
            "{name}: the poison records are dead-lettered"
        );
    }
    // The echo reached the outputs (so the test can fail), redacted.
    let dead = dead_letters(dir.path());
    assert!(
        dead.iter().any(|(_, _, reason)| reason.contains("<redacted>")),
        "the dead-letter reasons quote the echo"
    );
    assert!(std::fs::read_to_string(dir.path().join("collector.log"))
        .unwrap()
        .contains("<redacted>"));
    assert_no_secret_in_outputs(dir.path());
}

// ---------------------------------------------------------------------------------------------
// Answers that prove nothing

/// Splunk HEC with `indexerAck`: a receiver that answers success without an `ackId` (and keeps
/// nothing) has not delivered anything; once it answers with ack ids, every record arrives.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hec_success_without_ack_id_under_indexer_ack_is_not_delivered() {
    let dir = tempfile::tempdir().unwrap();
    let records = write_records(dir.path(), N);
    let next_ack = Arc::new(AtomicU64::new(0));
    let events = Arc::new(AtomicUsize::new(0));
    let r = Hostile::start(move |_, req| {
        if req.path.starts_with("/services/collector/ack") {
            let asked: serde_json::Value = serde_json::from_slice(&req.body).unwrap_or_default();
            let acks: serde_json::Map<String, serde_json::Value> = asked["acks"]
                .as_array()
                .into_iter()
                .flatten()
                .map(|id| (id.to_string(), serde_json::Value::Bool(true)))
                .collect();
            return Answer::lie(200, &serde_json::json!({ "acks": acks }).to_string());
        }
        if events.fetch_add(1, Ordering::Relaxed) < 5 {
            return Answer::lie(200, r#"{"text":"Success","code":0}"#);
        }
        let id = next_ack.fetch_add(1, Ordering::Relaxed);
        Answer::json(200, &format!(r#"{{"text":"Success","code":0,"ackId":{id}}}"#))
    })
    .await;
    let config = config(
        dir.path(),
        &records,
        BTreeMap::from([("hec".to_string(), hec_dest(&r.url(""), true))]),
    );
    run_to_end(dir.path(), &config, Duration::from_secs(60)).await;
    let a = account("HEC success without ackId", "hec", N, &r, dir.path());
    assert!(a.dead_lettered.is_empty());
    assert!(report(dir.path()).contains("without an ackId"));
}

/// Elasticsearch: a 2xx without per-item results (a proxy, a wrong path) proves nothing.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn elasticsearch_2xx_without_items_is_not_delivered() {
    let dir = tempfile::tempdir().unwrap();
    let records = write_records(dir.path(), N);
    let r = Hostile::start(|n, req| {
        if n <= 5 {
            Answer::lie(200, r#"{"took":1,"errors":false}"#)
        } else {
            bulk_ok(req)
        }
    })
    .await;
    let config = config(
        dir.path(),
        &records,
        BTreeMap::from([("es".to_string(), es_dest(&r.url("")))]),
    );
    run_to_end(dir.path(), &config, Duration::from_secs(60)).await;
    let a = account("Elasticsearch 2xx without items", "es", N, &r, dir.path());
    assert!(a.dead_lettered.is_empty());
    assert!(report(dir.path()).contains("only per-item results prove indexing"));
}

// ---------------------------------------------------------------------------------------------
// SIGKILL

/// Line number in the replay checkpoint on disk (0 when none yet).
fn checkpointed_line(dir: &Path) -> u64 {
    match std::fs::read(dir.join("checkpoints").join("replay.json")) {
        Ok(b) => {
            let v: serde_json::Value = serde_json::from_slice(&b).unwrap();
            let pos = v["position"].as_str().unwrap();
            pos.rsplit_once('@').unwrap().1.parse().unwrap()
        }
        Err(_) => 0,
    }
}

/// SIGKILL of the collector five times while the receiver throttles with a huge `Retry-After`,
/// answers 500 to every third request and redirects now and then: nothing is lost, and a record
/// comes again only if it lay after the checkpoint on disk when the run that sent it was killed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigkill_five_times_under_faults_loses_nothing() {
    const RECORDS: usize = 40_000;
    const KILLS: usize = 5;
    let dir = tempfile::tempdir().unwrap();
    let records = write_records(dir.path(), RECORDS);
    let other = sink().await;
    let steal = other.url("/steal");
    let r = Hostile::start(move |n, _| {
        if n % 3 == 0 {
            Answer::json(500, r#"{"error":"internal"}"#)
        } else if n % 17 == 0 {
            Answer::retry_after(429, "100000")
        } else if n % 23 == 0 {
            Answer::redirect(307, &steal)
        } else {
            Answer::ok()
        }
    })
    .await;
    // A slow receiver (about 4,000 records a second) so that each run is killed part way.
    r.set_latency(Duration::from_millis(50));
    let mut dest = http_dest(&r.url("/ingest"));
    // A request that times out is sent again: a legitimate duplicate within a run. This test
    // counts crash duplicates only, so the timeout is far above what a loaded machine needs.
    dest.retry.request_timeout_ms = 60_000;
    let config = config(dir.path(), &records, BTreeMap::from([("receiver".to_string(), dest)]));
    let log = dir.path().join("collector.log");
    let mut checkpoints = Vec::new();
    for run in 0..KILLS {
        r.set_epoch(run as u32);
        let before = r.stored_count();
        let previous = checkpointed_line(dir.path());
        let mut child = spawn(&config, &log);
        let deadline = Instant::now() + Duration::from_secs(60);
        while r.stored_count() < before + 2_000 + run * 500 || checkpointed_line(dir.path()) <= previous {
            assert!(Instant::now() < deadline, "run {run} made no progress:\n{}", tail(&log));
            assert!(
                child.try_wait().unwrap().is_none(),
                "collector exited early in run {run}"
            );
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        tokio::time::sleep(Duration::from_millis(23 * run as u64)).await;
        child.kill().unwrap(); // SIGKILL
        child.wait().unwrap();
        let line = checkpointed_line(dir.path());
        checkpoints.push(line);
        eprintln!(
            "run {run}: killed; checkpoint at line {line}; stored so far {}",
            r.stored_count()
        );
    }
    assert!(
        checkpoints.windows(2).all(|w| w[0] < w[1]),
        "checkpoints move forward: {checkpoints:?}"
    );
    assert!(
        checkpoints[KILLS - 1] < RECORDS as u64,
        "the kills landed before the end: {checkpoints:?}"
    );
    r.set_epoch(KILLS as u32);
    run_to_end(dir.path(), &config, Duration::from_secs(120)).await;
    assert_eq!(checkpointed_line(dir.path()), RECORDS as u64);
    let a = account("SIGKILL x5", "receiver", RECORDS, &r, dir.path());
    eprintln!("SIGKILL x5: checkpoints at kills {checkpoints:?}");
    assert!(a.dead_lettered.is_empty());
    assert_eq!(other.request_count(), 0, "a redirect was followed");
    // A record stored in run k and again later lay after the checkpoint on disk at run k's kill.
    for (id, epochs) in r.stored() {
        let line: u64 = id.trim_start_matches("rid-").parse().unwrap();
        for (i, &run) in epochs.iter().enumerate() {
            assert!(
                epochs[i + 1..].iter().all(|&e| e != run),
                "{id} stored twice in run {run}"
            );
            if epochs[i + 1..].iter().any(|&e| e > run) {
                let cp = checkpoints[run as usize];
                assert!(
                    line > cp,
                    "{id} was sent again after run {run} although checkpoint {cp} covered it"
                );
            }
        }
    }
    assert_no_secret_in_outputs(dir.path());
}

// ---------------------------------------------------------------------------------------------
// The token client, the Blob client and the API source client (in-process)

/// A token endpoint answering 307 to another host: the client secret goes nowhere else, the
/// failure is transient and names the Location.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn token_client_refuses_a_redirect_to_another_host() {
    use siembridge::collector::auth::{ClientCredential, TokenProvider};
    use siembridge::collector::secrets::SecretValue;
    let other = Hostile::start(|_, _| {
        Answer::json(
            200,
            r#"{"access_token":"stolen-token-value","expires_in":3600,"token_type":"Bearer"}"#,
        )
    })
    .await;
    let steal = other.url("/steal/oauth2/v2.0/token");
    let entra = Hostile::start(move |_, _| Answer::redirect(307, &steal)).await;
    let secret = "entra-client-secret-5d7f9b";
    let provider = TokenProvider::new(
        &entra.url(""),
        "contoso.example",
        "11111111-2222-4333-8444-555555555555",
        ClientCredential::Secret(SecretValue::new(secret)),
    )
    .unwrap();
    let err = provider
        .token("https://graph.microsoft.com/.default")
        .await
        .expect_err("a redirect is no token");
    let text = err.to_string();
    eprintln!("token client, 307 to another host: {text}");
    assert!(err.is_transient(), "{text}");
    assert!(
        text.contains(&format!("redirect to Location {}", other.url("/steal"))),
        "{text}"
    );
    assert_eq!(other.request_count(), 0, "the token request went to the other host");
    assert_eq!(entra.request_count(), 1);
}

/// A token endpoint throttling with `Retry-After: 100000`: the API client waits at most its
/// longest backoff, and a resource answering 302 to another host gets nothing sent there.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn api_source_client_caps_retry_after_and_refuses_redirects() {
    use siembridge::collector::auth::{ClientCredential, TokenProvider};
    use siembridge::collector::secrets::SecretValue;
    use siembridge::collector::sources::api::{throttled_by_status, ApiClient, RateBudget, RetryPolicy};
    use siembridge::collector::sources::SourceStatus;
    let other = sink().await;
    let steal = other.url("/steal");
    let token_requests = Arc::new(Mutex::new(0usize));
    let tr = token_requests.clone();
    let to_other = steal.clone();
    let server = Hostile::start(move |_, req| {
        if req.path.contains("/oauth2/v2.0/token") {
            let mut n = tr.lock().unwrap();
            *n += 1;
            if *n == 1 {
                return Answer::retry_after(429, "100000");
            }
            return Answer::json(200, r#"{"access_token":"api-token-3c5e7a9b1d","expires_in":3600}"#);
        }
        match req.path.as_str() {
            "/throttled" if req.method == "GET" => Answer::retry_after(429, "100000"),
            _ => Answer::redirect(302, &to_other),
        }
    })
    .await;
    let provider = TokenProvider::new(
        &server.url(""),
        "contoso.example",
        "11111111-2222-4333-8444-555555555555",
        ClientCredential::Secret(SecretValue::new("api-client-secret-8e6c4a")),
    )
    .unwrap();
    let client = ApiClient::new(
        Arc::new(provider),
        "https://graph.microsoft.com/.default".into(),
        Arc::new(RateBudget::new(1000, Duration::from_secs(1))),
        Arc::new(SourceStatus::default()),
        RetryPolicy {
            max_attempts: 3,
            base: Duration::from_millis(10),
            cap: Duration::from_millis(300),
        },
        throttled_by_status,
    )
    .unwrap();
    let started = Instant::now();
    let err = tokio::time::timeout(Duration::from_secs(30), client.get(&server.url("/auditLogs")))
        .await
        .expect("a huge Retry-After of the token endpoint is capped")
        .expect_err("a redirect is no answer");
    let text = err.to_string();
    eprintln!(
        "API client: token 429 Retry-After 100000 then resource 302 to another host: {text} ({:.1}s)",
        started.elapsed().as_secs_f64()
    );
    assert!(text.contains(&format!("redirect to Location {steal}")), "{text}");
    assert_eq!(other.request_count(), 0, "the request went to the other host");

    // A resource throttling with a huge Retry-After pauses at most the longest backoff: three
    // throttled answers take about a second, not 83 hours.
    let throttled = Arc::new(AtomicUsize::new(0));
    let th = throttled.clone();
    server.set_script(move |_, req| {
        if req.path.contains("/oauth2/v2.0/token") {
            return Answer::json(200, r#"{"access_token":"api-token-3c5e7a9b1d","expires_in":3600}"#);
        }
        if th.fetch_add(1, Ordering::Relaxed) < 3 {
            Answer::retry_after(429, "100000")
        } else {
            Answer::json(200, r#"{"value":[]}"#)
        }
    });
    let started = Instant::now();
    let ok = tokio::time::timeout(Duration::from_secs(30), client.get(&server.url("/throttled")))
        .await
        .expect("a huge Retry-After of the resource is capped")
        .expect("answered after the throttling");
    assert_eq!(ok.status.as_u16(), 200);
    eprintln!(
        "API client: 3 x 429 Retry-After 100000 answered in {:.1}s",
        started.elapsed().as_secs_f64()
    );
}

/// A Blob service answering 307 to another host: the SAS token goes nowhere else (neither in the
/// URL nor in a `Referer`), and the failure is transient, naming the Location without a query.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn blob_client_refuses_a_redirect_and_leaks_no_sas() {
    use siembridge::collector::azure_blob::{BlobService, Condition};
    use siembridge::collector::secrets::SecretValue;
    let other = sink().await;
    let steal = other.url("/steal/archive/blob.json?copied=1");
    let blob = Hostile::start(move |_, _| Answer::redirect(307, &steal)).await;
    let sig = "c2lnbmF0dXJlLXNlY3JldC1zYXM%3D";
    let sas = format!("sv=2023-11-03&ss=b&srt=co&sp=rwl&se=2030-01-01T00%3A00%3A00Z&sig={sig}");
    let service = BlobService::with_sas(&blob.url("/devstoreaccount1"), SecretValue::new(sas)).unwrap();
    let err = service
        .put_block_blob(
            "archive",
            "blob.json",
            bytes::Bytes::from_static(b"{\"id\":\"rid-000001\"}\n"),
            "application/x-ndjson",
            &[],
            &Condition::None,
        )
        .await
        .expect_err("a redirect is no write");
    let text = err.to_string();
    eprintln!("Blob client, 307 to another host: {text}");
    assert!(err.is_transient(), "{text}");
    assert!(text.contains(&other.url("/steal/archive/blob.json")), "{text}");
    assert!(!text.contains("copied=1") && !text.contains(sig), "{text}");
    assert_eq!(other.request_count(), 0, "the Blob request went to the other host");
    assert!(blob.requests().iter().all(|q| q.header("referer").is_none()));
}
