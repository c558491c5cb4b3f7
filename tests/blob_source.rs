//! The `azureBlob` source against real Azurite (npm `azurite@3.37.0`), with a counting proxy in
//! front of it that can also answer 503 `ServerBusy` / 429:
//! - diagnostic-settings append blobs written while they are read (lines appended in steps, one
//!   line split across two appends), the collector binary SIGKILLed mid-blob and restarted:
//!   every record delivered, duplicates only after the checkpoint on disk at the kill;
//! - a backfill of 24 hours x 10 categories (100,800 records): counts match, requests per blob
//!   bounded;
//! - throttling answers honoured with their `Retry-After`;
//! - siembridge's own archive (written by the `azureBlob` destination) read back into an
//!   idempotent destination (the Elasticsearch stand-in): every record once.

#[path = "common/azurite.rs"]
mod azurite;
mod common;
#[path = "common/siem/mod.rs"]
mod siem;

use std::collections::BTreeMap;
use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, Method, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use chrono::{DateTime, DurationRound, TimeDelta, Utc};
use siembridge::api::{BlobCredentials, BlobFormat, BlobSource, PollingSpec, SecretKeySelector};
use siembridge::collector::azure_blob::BlobService;
use siembridge::collector::secrets::SecretValue;
use siembridge::config::{CollectorConfig, SourceConfig};
use tokio_util::sync::CancellationToken;

/// What the proxy answers instead of forwarding the n-th request (1-based), if anything.
type Fault = Arc<dyn Fn(usize) -> Option<(u16, &'static str)> + Send + Sync>;

/// A proxy in front of Azurite counting requests by kind.
#[derive(Clone)]
struct Proxy {
    upstream: String,
    http: reqwest::Client,
    requests: Arc<AtomicUsize>,
    /// (kind, blob or prefix) of every request forwarded: `list`, `roots`, `get`.
    log: Arc<Mutex<Vec<(String, String)>>>,
    fault: Fault,
    /// When each injected answer was sent, and when the next request after it arrived.
    injected: Arc<Mutex<Vec<Instant>>>,
    after_injected: Arc<Mutex<Vec<Duration>>>,
}

async fn forward(State(p): State<Proxy>, method: Method, uri: Uri, headers: HeaderMap, body: Bytes) -> Response {
    let n = p.requests.fetch_add(1, Ordering::SeqCst) + 1;
    {
        let mut inj = p.injected.lock().unwrap();
        if let Some(last) = inj.pop() {
            p.after_injected.lock().unwrap().push(last.elapsed());
        }
        if let Some((status, code)) = (p.fault)(n) {
            inj.push(Instant::now());
            return (
                StatusCode::from_u16(status).unwrap(),
                [("retry-after", "1"), ("x-ms-error-code", code)],
                format!("<Error><Code>{code}</Code><Message>injected</Message></Error>"),
            )
                .into_response();
        }
    }
    let query = uri.query().unwrap_or("");
    let kind = if query.contains("comp=list") && query.contains("delimiter=") {
        "roots"
    } else if query.contains("comp=list") {
        "list"
    } else if method == Method::GET {
        "get"
    } else {
        "other"
    };
    p.log.lock().unwrap().push((kind.to_string(), uri.path().to_string()));
    let url = format!(
        "{}{}",
        p.upstream,
        uri.path_and_query().map(|q| q.as_str()).unwrap_or("/")
    );
    let mut req = p.http.request(method, url).body(body);
    for (k, v) in &headers {
        if k != "host" {
            req = req.header(k, v);
        }
    }
    let resp = match req.send().await {
        Ok(r) => r,
        Err(e) => return (StatusCode::BAD_GATEWAY, e.to_string()).into_response(),
    };
    let status = StatusCode::from_u16(resp.status().as_u16()).unwrap();
    let mut out = HeaderMap::new();
    for (k, v) in resp.headers() {
        if k != "transfer-encoding" && k != "connection" {
            out.insert(k.clone(), v.clone());
        }
    }
    let body = resp.bytes().await.unwrap_or_default();
    (status, out, body).into_response()
}

/// Start the proxy; returns it and its account URL (same path as Azurite's, so Shared Key
/// signatures stay valid).
async fn proxy(az: &azurite::Azurite, fault: Fault) -> (Proxy, String) {
    let p = Proxy {
        upstream: format!("http://127.0.0.1:{}", az.port),
        http: reqwest::Client::new(),
        requests: Arc::default(),
        log: Arc::default(),
        fault,
        injected: Arc::default(),
        after_injected: Arc::default(),
    };
    let app = axum::Router::new().fallback(forward).with_state(p.clone());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    (p, format!("http://{addr}/{}", azurite::ACCOUNT))
}

fn service(az: &azurite::Azurite) -> BlobService {
    BlobService::from_connection_string(&SecretValue::new(az.connection_string()), None).unwrap()
}

const TENANT_ROOT: &str = "tenantId=00000000-0000-4000-8000-000000000001/y=";

/// The diagnostic-settings blob name of `hour`.
fn blob_name(root: &str, hour: DateTime<Utc>) -> String {
    format!("{root}{}m=00/PT1H.json", hour.format("%Y/m=%m/d=%d/h=%H/"))
}

/// One sign-in record line with a unique `seq`.
fn record(seq: u64, hour: DateTime<Utc>, category: &str) -> String {
    format!(
        "{{\"time\":\"{}\",\"category\":\"{category}\",\"operationName\":\"Sign-in activity\",\"seq\":{seq},\
         \"properties\":{{\"userPrincipalName\":\"user{}@contoso.example\",\"ipAddress\":\"203.0.113.{}\"}}}}\n",
        (hour + TimeDelta::seconds((seq % 3600) as i64)).to_rfc3339(),
        seq % 97,
        seq % 250
    )
}

fn source(
    account_url: &str,
    containers: Vec<String>,
    from: Option<DateTime<Utc>>,
    to: Option<DateTime<Utc>>,
) -> BlobSource {
    BlobSource {
        account_url: account_url.to_string(),
        containers,
        credentials: BlobCredentials {
            connection_string: Some(SecretKeySelector {
                name: "storage".into(),
                key: "connectionString".into(),
            }),
            ..Default::default()
        },
        polling: PollingSpec {
            interval_seconds: 1,
            backfill_hours: 3,
            overlap_minutes: 30,
        },
        from: from.map(|t| t.to_rfc3339()),
        to: to.map(|t| t.to_rfc3339()),
        concurrency: 4,
        lag_threshold_seconds: 7200,
        ..Default::default()
    }
}

fn config(dir: &Path, az: &azurite::Azurite, spec: BlobSource) -> CollectorConfig {
    common::write_secret(dir, "storage", "connectionString", &az.connection_string());
    common::api_config(dir, SourceConfig::AzureBlob(spec), "entra-archive")
}

/// `seq` of every delivered line.
fn delivered(dir: &Path) -> Vec<u64> {
    std::fs::read_to_string(dir.join("out.ndjson"))
        .unwrap_or_default()
        .lines()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .filter_map(|v| v["seq"].as_u64())
        .collect()
}

/// (lost, duplicated) of `expected` sequence numbers in `got`; prints both by id.
fn lost_and_duplicated(label: &str, expected: u64, got: &[u64]) -> (Vec<u64>, BTreeMap<u64, usize>) {
    let counts = siem::counts(got);
    let lost: Vec<u64> = (0..expected).filter(|s| !counts.contains_key(s)).collect();
    let dup: BTreeMap<u64, usize> = counts.into_iter().filter(|(_, n)| *n > 1).collect();
    println!(
        "{label}: expected {expected}, delivered {} lines, lost {} {:?}, duplicated {} {:?}",
        got.len(),
        lost.len(),
        &lost[..lost.len().min(10)],
        dup.len(),
        dup.iter().take(10).collect::<Vec<_>>()
    );
    (lost, dup)
}

fn report(dir: &Path) -> serde_json::Value {
    let text = std::fs::read_to_string(dir.join("report.json")).unwrap_or_default();
    serde_json::from_str(&text).unwrap_or_default()
}

/// Wait until `f` is true (at most `secs`).
async fn until(what: &str, secs: u64, mut f: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(secs);
    while !f() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

fn spawn_collector(config: &Path, log: &Path) -> common::child::Reaped {
    let log = std::fs::OpenOptions::new().create(true).append(true).open(log).unwrap();
    common::child::Reaped(
        Command::new(env!("CARGO_BIN_EXE_siembridge"))
            .args(["--log-format", "json", "collector", "--config"])
            .arg(config)
            .env("RUST_LOG", "info")
            .stdout(Stdio::null())
            .stderr(Stdio::from(log))
            .spawn()
            .unwrap(),
    )
}

/// Offset of `blob` in the container's checkpoint on disk (0 when none).
fn checkpointed_offset(dir: &Path, container: &str, blob: &str) -> u64 {
    let Ok(b) = std::fs::read(dir.join("checkpoints").join(format!("{container}.json"))) else {
        return 0;
    };
    let v: serde_json::Value = serde_json::from_slice(&b).unwrap();
    v["state"]["offsets"][blob].as_u64().unwrap_or(0)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn append_blobs_read_while_written_and_a_sigkill_mid_blob_lose_nothing() {
    siembridge::tls::install_crypto_provider();
    let Some(az) = azurite::start() else { return };
    let svc = service(&az);
    let container = "insights-logs-signinlogs";
    svc.create_container(container).await.unwrap();
    let now = Utc::now();
    let hour = now.duration_trunc(TimeDelta::hours(1)).unwrap();
    // A closed hour (two hours ago) whose last line has no newline, and the open current hour.
    let old = blob_name(TENANT_ROOT, hour - TimeDelta::hours(2));
    let open = blob_name(TENANT_ROOT, hour);
    svc.create_append_blob(container, &old, "application/json")
        .await
        .unwrap();
    let mut old_text = String::new();
    for seq in 0..100 {
        old_text.push_str(&record(seq, hour - TimeDelta::hours(2), "SignInLogs"));
    }
    let old_text = old_text.trim_end_matches('\n').to_string();
    svc.append_block(container, &old, Bytes::from(old_text)).await.unwrap();
    svc.create_append_blob(container, &open, "application/json")
        .await
        .unwrap();

    const STEPS: u64 = 12;
    const PER_STEP: u64 = 1500;
    const TOTAL: u64 = 100 + STEPS * PER_STEP;
    // The open blob's whole text, its line start offsets by seq, and the appends: each step's
    // lines, its last line split in the middle (the second half goes with the next append).
    let mut full = String::new();
    let mut line_start: BTreeMap<u64, u64> = BTreeMap::new();
    let mut cuts = Vec::new();
    for step in 0..STEPS {
        let mut last_start = 0;
        for seq in 100 + step * PER_STEP..100 + (step + 1) * PER_STEP {
            last_start = full.len();
            line_start.insert(seq, full.len() as u64);
            full.push_str(&record(seq, hour, "SignInLogs"));
        }
        cuts.push(if step + 1 < STEPS {
            last_start + (full.len() - last_start) / 2
        } else {
            full.len()
        });
    }
    let append_step = |step: u64| -> (Bytes, u64) {
        let start = if step == 0 { 0 } else { cuts[step as usize - 1] };
        let end = cuts[step as usize];
        (Bytes::from(full[start..end].to_string()), end as u64)
    };

    let dir = tempfile::tempdir().unwrap();
    let (proxy, account_url) = proxy(&az, Arc::new(|_| None)).await;
    let cfg = config(
        dir.path(),
        &az,
        source(&account_url, vec![container.into()], None, None),
    );
    let cfg_path = dir.path().join("collector.yaml");
    std::fs::write(&cfg_path, serde_yaml::to_string(&cfg).unwrap()).unwrap();
    let log = dir.path().join("collector.log");

    // Run 1: appends in steps while the collector reads; killed mid-blob.
    let mut child = spawn_collector(&cfg_path, &log);
    let mut step = 0;
    while step < STEPS / 2 {
        let (bytes, _) = append_step(step);
        svc.append_block(container, &open, bytes).await.unwrap();
        step += 1;
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
    until("records of the open blob delivered and checkpointed", 60, || {
        delivered(dir.path()).len() as u64 > 100 + PER_STEP && checkpointed_offset(dir.path(), container, &open) > 0
    })
    .await;
    // One more append, then the kill lands while it is being read.
    let (bytes, end) = append_step(step);
    svc.append_block(container, &open, bytes).await.unwrap();
    let written = end;
    step += 1;
    tokio::time::sleep(Duration::from_millis(150)).await;
    child.kill().unwrap(); // SIGKILL
    child.wait().unwrap();
    let at_kill = checkpointed_offset(dir.path(), container, &open);
    let delivered_at_kill = delivered(dir.path()).len();
    println!(
        "run 1 killed: checkpoint offset {at_kill} of {written} bytes written; {delivered_at_kill} lines delivered"
    );
    assert!(
        at_kill > 0 && at_kill < written,
        "the kill must land mid-blob: {at_kill} of {written}"
    );

    // Run 2: the rest is appended while the restarted collector reads.
    let mut child = spawn_collector(&cfg_path, &log);
    while step < STEPS {
        let (bytes, _) = append_step(step);
        svc.append_block(container, &open, bytes).await.unwrap();
        step += 1;
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    until("every record delivered", 90, || {
        let got = delivered(dir.path());
        let distinct: std::collections::BTreeSet<_> = got.iter().collect();
        distinct.len() as u64 >= TOTAL
    })
    .await;
    // Wait for the report of the final state (written every few seconds).
    until("the report shows the blobs read", 30, || {
        let r = report(dir.path());
        r["logSources"]["entra-archive"]["bytesRead"].as_u64().unwrap_or(0) > 0
    })
    .await;
    let r = report(dir.path());
    child.kill().unwrap();
    child.wait().unwrap();

    let got = delivered(dir.path());
    let (lost, dup) = lost_and_duplicated("append blobs + SIGKILL", TOTAL, &got);
    assert!(lost.is_empty(), "lost {} records", lost.len());
    // Duplicates only of lines at or after the checkpoint on disk at the kill.
    let bad: Vec<u64> = dup
        .keys()
        .filter(|s| **s < 100 || line_start.get(s).is_none_or(|o| *o < at_kill))
        .copied()
        .collect();
    println!(
        "duplicates after the checkpoint (allowed): {}; before it (must be 0): {}",
        dup.len() - bad.len(),
        bad.len()
    );
    assert!(
        bad.is_empty(),
        "records before the checkpoint were delivered twice: {bad:?}"
    );
    assert!(dup.values().all(|n| *n == 2), "a record came more than twice: {dup:?}");
    let ls = &r["logSources"]["entra-archive"];
    println!(
        "report: cursors {} blobsRead {} bytesRead {} lagSeconds {} requests through the proxy {}",
        ls["cursors"],
        ls["blobsRead"],
        ls["bytesRead"],
        ls["lagSeconds"],
        proxy.requests.load(Ordering::SeqCst)
    );
    // The cursor is the first hour not closed: the current one, or the one before while it is
    // still within `overlapMinutes` (30) of its end.
    let cursor = ls["cursors"][container].as_str().unwrap().to_string();
    let secs = chrono::SecondsFormat::Secs;
    assert!(
        [
            hour.to_rfc3339_opts(secs, true),
            (hour - TimeDelta::hours(1)).to_rfc3339_opts(secs, true)
        ]
        .contains(&cursor),
        "{cursor}"
    );
    assert_eq!(ls["blobsRead"].as_u64().map(|n| n >= 2), Some(true));
    assert_eq!(ls["lagSeconds"].as_i64(), Some(0));
}

/// 24 hours x 10 categories of hourly blobs, backfilled with `from`/`to`, with every 25th call
/// answered 503 `ServerBusy` or 429 (with `Retry-After: 1`).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_backfill_of_24_hours_by_10_categories_delivers_every_record_with_bounded_requests() {
    siembridge::tls::install_crypto_provider();
    let Some(az) = azurite::start() else { return };
    let svc = Arc::new(service(&az));
    const CATEGORIES: u64 = 10;
    const HOURS: u64 = 24;
    const PER_BLOB: u64 = 420;
    let from = (Utc::now() - TimeDelta::hours(30))
        .duration_trunc(TimeDelta::hours(1))
        .unwrap();
    let to = from + TimeDelta::hours(HOURS as i64);
    let mut writes = tokio::task::JoinSet::new();
    let mut containers = Vec::new();
    for c in 0..CATEGORIES {
        let container = format!("insights-logs-category{c}");
        containers.push(container.clone());
        svc.create_container(&container).await.unwrap();
        for h in 0..HOURS {
            let svc = svc.clone();
            let container = container.clone();
            writes.spawn(async move {
                let hour = from + TimeDelta::hours(h as i64);
                // Two resource roots per container: one carries the even hours, one the odd.
                let root = if h % 2 == 0 {
                    TENANT_ROOT.to_string()
                } else {
                    "resourceId=/SUBSCRIPTIONS/00000000-0000-4000-8000-0000000000AA/PROVIDERS/MICROSOFT.AADIAM/y="
                        .to_string()
                };
                let name = blob_name(&root, hour);
                let mut text = String::new();
                for i in 0..PER_BLOB {
                    let seq = (c * HOURS + h) * PER_BLOB + i;
                    text.push_str(&record(seq, hour, &format!("Category{c}")));
                }
                svc.create_append_blob(&container, &name, "application/json")
                    .await
                    .unwrap();
                svc.append_block(&container, &name, Bytes::from(text)).await.unwrap();
            });
        }
    }
    while let Some(r) = writes.join_next().await {
        r.unwrap();
    }
    let total = CATEGORIES * HOURS * PER_BLOB;
    let blobs = CATEGORIES * HOURS;

    let fault: Fault = Arc::new(|n| match n % 50 {
        0 => Some((503, "ServerBusy")),
        25 => Some((429, "TooManyRequests")),
        _ => None,
    });
    let (proxy, account_url) = proxy(&az, fault).await;
    let dir = tempfile::tempdir().unwrap();
    let cfg = config(
        dir.path(),
        &az,
        source(&account_url, containers.clone(), Some(from), Some(to)),
    );
    let started = Instant::now();
    let cancel = CancellationToken::new();
    let run = tokio::spawn(siembridge::collector::Collector::new(cfg).run(cancel.clone()));
    until("every record of the backfill delivered", 120, || {
        delivered(dir.path()).len() as u64 >= total
    })
    .await;
    let elapsed = started.elapsed();
    until("every container checkpointed at `to`", 30, || {
        containers.iter().all(|c| {
            std::fs::read(dir.path().join("checkpoints").join(format!("{c}.json")))
                .ok()
                .and_then(|b| serde_json::from_slice::<serde_json::Value>(&b).ok())
                .is_some_and(|v| v["position"].as_str() == Some(&to.to_rfc3339_opts(chrono::SecondsFormat::Secs, true)))
        })
    })
    .await;
    cancel.cancel();
    let summary = tokio::time::timeout(Duration::from_secs(30), run)
        .await
        .unwrap()
        .unwrap()
        .unwrap();
    let got = delivered(dir.path());
    let (lost, dup) = lost_and_duplicated("backfill 24h x 10 categories", total, &got);
    assert!(lost.is_empty());
    assert!(dup.is_empty(), "a backfill without crash duplicates nothing");
    assert!(summary.fully_checkpointed);

    let log = proxy.log.lock().unwrap().clone();
    let count = |k: &str| log.iter().filter(|(kind, _)| kind == k).count();
    let gets = count("get");
    let lists = count("list");
    let roots = count("roots");
    let mut per_blob: BTreeMap<String, usize> = BTreeMap::new();
    for (kind, path) in &log {
        if kind == "get" {
            *per_blob.entry(path.clone()).or_default() += 1;
        }
    }
    let max_gets = per_blob.values().copied().max().unwrap_or(0);
    let injected = proxy.after_injected.lock().unwrap().clone();
    let min_wait = injected.iter().min().copied().unwrap_or_default();
    println!(
        "backfill: {total} records in {blobs} blobs in {:.1}s ({:.0} records/s); requests forwarded: {} ranged GETs \
         ({:.2} per blob, at most {max_gets} for one blob), {lists} hour listings, {roots} root listings, {:.2} requests \
         per blob in all; throttling answers injected {} (503 ServerBusy and 429), shortest wait before the next \
         request {:?}",
        elapsed.as_secs_f64(),
        total as f64 / elapsed.as_secs_f64(),
        gets,
        gets as f64 / blobs as f64,
        (gets + lists + roots) as f64 / blobs as f64,
        injected.len(),
        min_wait
    );
    assert_eq!(per_blob.len() as u64, blobs, "every blob read");
    // One ranged GET per blob (each is under the 8 MiB read size); retried throttled calls are
    // answered by the proxy, not forwarded. Listings: one per root per hour, plus root discovery.
    assert!(max_gets <= 2, "a blob took {max_gets} GETs");
    assert!(lists as u64 <= CATEGORIES * HOURS * 2 + 10, "{lists} hour listings");
    assert!(!injected.is_empty(), "throttling was injected");
    // `Retry-After: 1` honoured (the next request to the service waited, within a timer slack;
    // other containers' calls may come in between, so only the bound is checked on the whole).
    let r = report(dir.path());
    println!("report: {}", r["logSources"]["entra-archive"]);
}

/// After a throttling answer with `Retry-After: 1`, the same container's next call waits for it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn server_busy_and_429_are_retried_after_their_retry_after() {
    siembridge::tls::install_crypto_provider();
    let Some(az) = azurite::start() else { return };
    let svc = service(&az);
    let container = "insights-logs-auditlogs";
    svc.create_container(container).await.unwrap();
    let from = (Utc::now() - TimeDelta::hours(5))
        .duration_trunc(TimeDelta::hours(1))
        .unwrap();
    for h in 0..2 {
        let hour = from + TimeDelta::hours(h);
        let name = blob_name(TENANT_ROOT, hour);
        let mut text = String::new();
        for i in 0..50 {
            text.push_str(&record(h as u64 * 50 + i, hour, "AuditLogs"));
        }
        svc.create_append_blob(container, &name, "application/json")
            .await
            .unwrap();
        svc.append_block(container, &name, Bytes::from(text)).await.unwrap();
    }
    // Every other call: 503 ServerBusy, then 429.
    let fault: Fault = Arc::new(|n| match n % 4 {
        1 => Some((503, "ServerBusy")),
        3 => Some((429, "TooManyRequests")),
        _ => None,
    });
    let (proxy, account_url) = proxy(&az, fault).await;
    let dir = tempfile::tempdir().unwrap();
    let cfg = config(
        dir.path(),
        &az,
        source(
            &account_url,
            vec![container.into()],
            Some(from),
            Some(from + TimeDelta::hours(2)),
        ),
    );
    let cancel = CancellationToken::new();
    let run = tokio::spawn(siembridge::collector::Collector::new(cfg).run(cancel.clone()));
    until("every record delivered despite throttling", 60, || {
        delivered(dir.path()).len() >= 100
    })
    .await;
    until("the report shows the throttling", 30, || {
        report(dir.path())["logSources"]["entra-archive"]["throttled"].as_bool() == Some(true)
    })
    .await;
    cancel.cancel();
    let _ = tokio::time::timeout(Duration::from_secs(30), run).await.unwrap();
    let got = delivered(dir.path());
    let (lost, dup) = lost_and_duplicated("throttled reads", 100, &got);
    assert!(lost.is_empty() && dup.is_empty());
    let waits = proxy.after_injected.lock().unwrap().clone();
    println!(
        "throttling answers: {}; waits before the next call: min {:?} max {:?}",
        waits.len(),
        waits.iter().min(),
        waits.iter().max()
    );
    assert!(waits.len() >= 3);
    // One container, one call at a time: every retry waited for `Retry-After: 1`.
    assert!(
        waits.iter().all(|w| *w >= Duration::from_millis(950)),
        "a retry came before its Retry-After: {waits:?}"
    );
}

/// siembridge's own archive, written by the `azureBlob` destination twice (a re-run of the same
/// records grouped differently, as after a crash of the archiving collector), read back into
/// the Elasticsearch stand-in: every record once, by its stable id.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn siembridge_archives_read_back_deliver_every_record_once_at_an_idempotent_destination() {
    use siembridge::api::{AzureBlobArchiveSpec, BatchSpec, ElasticsearchSpec, EventFormat, SiemDestinationSpec};
    siembridge::tls::install_crypto_provider();
    let Some(az) = azurite::start() else { return };
    const N: usize = 3000;
    let dir = tempfile::tempdir().unwrap();
    let records = dir.path().join("records.ndjson");
    let mut text = String::new();
    for i in 0..N {
        text.push_str(&format!(
            "{{\"time\":\"2026-01-02T{:02}:{:02}:00Z\",\"category\":\"SignInLogs\",\"operationName\":\"Sign-in activity\",\
             \"seq\":{i},\"properties\":{{\"userPrincipalName\":\"user{i}@contoso.example\"}}}}\n",
            i % 4,
            i % 60
        ));
    }
    std::fs::write(&records, text).unwrap();
    let cs = siem::set_secret("archivestorage", "cs", &az.connection_string());
    let archive = |max_events: u32| SiemDestinationSpec {
        azure_blob: Some(AzureBlobArchiveSpec {
            account_url: az.account_url(),
            container: "siembridge-archive".into(),
            path_template: "{source}/{category}/y={yyyy}/m={MM}/d={dd}/h={HH}".into(),
            gzip: true,
            credentials: BlobCredentials {
                connection_string: Some(cs.clone()),
                ..Default::default()
            },
        }),
        format: EventFormat::Ecs,
        batch: BatchSpec {
            max_events,
            max_bytes: 1024 * 1024,
            max_latency_ms: 20,
        },
        retry: siem::fast_retry(),
        ..Default::default()
    };
    for (run, max_events) in [(0, 40u32), (1, 70)] {
        let d = dir.path().join(format!("write{run}"));
        let cfg = common::replay_config(
            &d,
            &records,
            "entra",
            BTreeMap::from([("archive".to_string(), archive(max_events))]),
        );
        let s = siem::run(cfg).await;
        assert!(s.fully_checkpointed);
    }
    let svc = service(&az);
    let objects = svc.list_blobs("siembridge-archive", "").await.unwrap();
    println!(
        "archive: {} objects written by two runs of {N} records each",
        objects.len()
    );

    let es = siem::elasticsearch::Elasticsearch::start(&[]).await;
    let read_dir = dir.path().join("read");
    let mut cfg = config(
        &read_dir,
        &az,
        BlobSource {
            format: BlobFormat::SiembridgeArchive,
            prefix: Some("entra/".into()),
            ..source(&az.account_url(), vec!["siembridge-archive".into()], None, None)
        },
    );
    cfg.destinations.insert(
        "es".into(),
        SiemDestinationSpec {
            elasticsearch: Some(ElasticsearchSpec {
                urls: vec![es.url.clone()],
                index: Some("replayed".into()),
                ..Default::default()
            }),
            format: EventFormat::Raw,
            retry: siem::fast_retry(),
            ..Default::default()
        },
    );
    cfg.routes[0].destinations = vec!["es".into()];
    let cancel = CancellationToken::new();
    let run = tokio::spawn(siembridge::collector::Collector::new(cfg).run(cancel.clone()));
    until("every archived copy offered to Elasticsearch", 60, || {
        es.state.actions.load(Ordering::Relaxed) >= 2 * N
    })
    .await;
    until("the archive checkpointed", 30, || {
        report(&read_dir)["logSources"]["entra"]["eventsForwarded"].as_u64() == Some(2 * N as u64)
            || std::fs::read(read_dir.join("checkpoints").join("siembridge-archive.json")).is_ok_and(|b| {
                serde_json::from_slice::<serde_json::Value>(&b).unwrap()["position"].as_str()
                    == objects
                        .iter()
                        .map(|o| o.name.as_str())
                        .filter(|n| n.starts_with("entra/"))
                        .max()
            })
    })
    .await;
    cancel.cancel();
    let _ = tokio::time::timeout(Duration::from_secs(30), run).await.unwrap();
    let docs = es.state.docs.lock().unwrap().clone();
    println!(
        "a document: {}",
        docs.values().next().map(|d| d.to_string()).unwrap_or_default()
    );
    let seqs: Vec<u64> = docs
        .values()
        .filter_map(|d| {
            // ECS keeps the user, not the test's `seq`: `user{seq}@contoso.example`.
            d["user"]["name"]
                .as_str()?
                .strip_prefix("user")?
                .split('@')
                .next()?
                .parse()
                .ok()
        })
        .collect();
    let (lost, dup) = lost_and_duplicated("archive read back (Elasticsearch documents)", N as u64, &seqs);
    println!(
        "Elasticsearch: {} create actions, {} answered 409 (copies already indexed), {} documents",
        es.state.actions.load(Ordering::Relaxed),
        es.state.conflicts.load(Ordering::Relaxed),
        docs.len()
    );
    assert!(lost.is_empty(), "lost {}", lost.len());
    assert!(dup.is_empty(), "duplicated: {dup:?}");
    assert_eq!(docs.len(), N);
}

/// Checkpoints in Leases of a real API server (`KUBECONFIG`; skipped without one outside CI):
/// two closed hours and an open blob read, the collector stopped, the open blob grown (its last
/// line split across two appends), the collector restarted from what the Lease holds: every
/// record once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn checkpoints_in_leases_resume_mid_blob() {
    use k8s_openapi::api::coordination::v1::Lease;
    use kube::api::{Api, ListParams};
    let Some(client) = common::cluster::client("blob_source").await else {
        return;
    };
    let Some(az) = azurite::start() else { return };
    let ns = common::cluster::TestNamespace::create(&client, "sb-blob-lease").await;
    let svc = service(&az);
    let container = "insights-logs-auditlogs";
    svc.create_container(container).await.unwrap();
    let hour = Utc::now().duration_trunc(TimeDelta::hours(1)).unwrap();
    let mut seq = 0u64;
    for h in [3, 2] {
        let at = hour - TimeDelta::hours(h);
        let mut text = String::new();
        for _ in 0..500 {
            text.push_str(&record(seq, at, "AuditLogs"));
            seq += 1;
        }
        let name = blob_name(TENANT_ROOT, at);
        svc.create_append_blob(container, &name, "application/json")
            .await
            .unwrap();
        svc.append_block(container, &name, Bytes::from(text)).await.unwrap();
    }
    let open = blob_name(TENANT_ROOT, hour);
    svc.create_append_blob(container, &open, "application/json")
        .await
        .unwrap();
    let mut later = String::new();
    let mut now_text = String::new();
    for i in 0..600 {
        let line = record(seq, hour, "AuditLogs");
        seq += 1;
        if i < 300 {
            now_text.push_str(&line);
        } else {
            later.push_str(&line);
        }
    }
    // The first part ends with half a line; the rest comes after the restart.
    let half = now_text.len() + later.find('\n').unwrap() / 2;
    let whole = format!("{now_text}{later}");
    svc.append_block(container, &open, Bytes::from(whole[..half].to_string()))
        .await
        .unwrap();

    let dir = tempfile::tempdir().unwrap();
    let mut spec = source(
        &az.account_url(),
        vec![container.into()],
        Some(hour - TimeDelta::hours(3)),
        None,
    );
    spec.polling.backfill_hours = 0;
    let mut cfg = config(dir.path(), &az, spec);
    cfg.checkpoint = siembridge::config::CheckpointConfig::Kubernetes {
        namespace: ns.name.clone(),
        lease_prefix: "sb-ls-blob".into(),
        owner: None,
    };
    let leases = || async {
        let api: Api<Lease> = Api::namespaced(client.clone(), &ns.name);
        api.list(&ListParams::default())
            .await
            .unwrap()
            .items
            .into_iter()
            .map(|l| l.metadata.annotations.unwrap_or_default())
            .collect::<Vec<_>>()
    };
    for (run, expect) in [(1, 1300usize), (2, 1600)] {
        let cancel = CancellationToken::new();
        let task = tokio::spawn(siembridge::collector::Collector::new(cfg.clone()).run(cancel.clone()));
        until(&format!("run {run}: {expect} records"), 60, || {
            delivered(dir.path()).len() >= expect
        })
        .await;
        tokio::time::sleep(Duration::from_millis(1500)).await; // a checkpoint written
        cancel.cancel();
        let summary = tokio::time::timeout(Duration::from_secs(30), task)
            .await
            .unwrap()
            .unwrap()
            .unwrap();
        assert!(summary.fully_checkpointed);
        let annotations = leases().await;
        let bytes: usize = annotations
            .iter()
            .flat_map(|a| a.iter())
            .map(|(k, v)| k.len() + v.len())
            .sum();
        println!(
            "run {run}: {} delivered; Lease annotations {bytes} bytes: {annotations:?}",
            delivered(dir.path()).len()
        );
        assert!(
            annotations
                .iter()
                .flat_map(|a| a.values())
                .any(|v| v.contains("PT1H.json")),
            "the Lease holds the open blob's offset"
        );
        if run == 1 {
            svc.append_block(container, &open, Bytes::from(whole[half..].to_string()))
                .await
                .unwrap();
        }
    }
    let (lost, dup) = lost_and_duplicated("Lease checkpoints, restart mid-blob", 1600, &delivered(dir.path()));
    assert!(lost.is_empty() && dup.is_empty());
}
