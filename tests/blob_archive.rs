//! The `azureBlob` archive destination inside a running collector, against real Azurite (npm
//! `azurite@3.37.0`): objects are read back, gunzipped and every record counted. A proxy between
//! the collector and Azurite injects failures: 503 before the write, and a lost answer after a
//! successful write (the write happened, the collector sees a 500). Deterministic object names
//! make the retry overwrite, so every record is archived exactly once.

#[path = "common/azurite.rs"]
mod azurite;
mod common;

use std::collections::{BTreeMap, HashMap};
use std::io::Read;
use std::path::Path;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, Method, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use siembridge::api::{
    AzureBlobArchiveSpec, BatchSpec, BlobCredentials, EntraCredentials, EventFormat, RetrySpec, SecretKeySelector,
    SiemDestinationSpec,
};
use siembridge::collector::azure_blob::BlobService;
use siembridge::collector::secrets::SecretValue;
use siembridge::collector::Collector;
use tokio_util::sync::CancellationToken;

/// What the proxy does to the n-th Put Blob (1-based).
type Fault = Arc<dyn Fn(usize) -> Injected + Send + Sync>;

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Injected {
    Pass,
    /// 503 with `Retry-After: 0`, nothing forwarded.
    BusyBefore,
    /// Forwarded (Azurite stores the object), then answered 500.
    LostAnswer,
    /// 403 `AuthenticationFailed`, nothing forwarded (retried: credentials can be rotated).
    AuthFailed,
    /// 400 `InvalidHeaderValue`, nothing forwarded (the events are dead-lettered).
    BadRequest,
}

#[derive(Clone)]
struct Proxy {
    upstream: String,
    http: reqwest::Client,
    puts: Arc<AtomicUsize>,
    fault: Fault,
    injected: Arc<Mutex<HashMap<&'static str, usize>>>,
}

async fn forward(State(p): State<Proxy>, method: Method, uri: Uri, headers: HeaderMap, body: Bytes) -> Response {
    let is_put_blob = method == Method::PUT && headers.contains_key("x-ms-blob-type");
    let injected = if is_put_blob {
        (p.fault)(p.puts.fetch_add(1, Ordering::SeqCst) + 1)
    } else {
        Injected::Pass
    };
    if injected == Injected::BusyBefore {
        *p.injected.lock().unwrap().entry("busy_before").or_default() += 1;
        return (
            StatusCode::SERVICE_UNAVAILABLE,
            [("retry-after", "0"), ("x-ms-error-code", "ServerBusy")],
            "<Error><Code>ServerBusy</Code><Message>injected</Message></Error>",
        )
            .into_response();
    }
    if injected == Injected::AuthFailed {
        *p.injected.lock().unwrap().entry("auth_failed").or_default() += 1;
        return (
            StatusCode::FORBIDDEN,
            [("x-ms-error-code", "AuthenticationFailed")],
            "<Error><Code>AuthenticationFailed</Code><Message>Server failed to authenticate the request.</Message></Error>",
        )
            .into_response();
    }
    if injected == Injected::BadRequest {
        *p.injected.lock().unwrap().entry("bad_request").or_default() += 1;
        return (
            StatusCode::BAD_REQUEST,
            [("x-ms-error-code", "InvalidHeaderValue")],
            "<Error><Code>InvalidHeaderValue</Code><Message>injected</Message></Error>",
        )
            .into_response();
    }
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
    if injected == Injected::LostAnswer && resp.status().is_success() {
        *p.injected.lock().unwrap().entry("lost_answer").or_default() += 1;
        return (StatusCode::INTERNAL_SERVER_ERROR, "injected").into_response();
    }
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

/// Start the proxy; returns its account URL (same path as Azurite's, so Shared Key signatures
/// stay valid) and the injected-failure counts.
async fn proxy(az: &azurite::Azurite, fault: Fault) -> (String, Arc<Mutex<HashMap<&'static str, usize>>>) {
    let p = Proxy {
        upstream: format!("http://127.0.0.1:{}", az.port),
        http: reqwest::Client::new(),
        puts: Arc::default(),
        fault,
        injected: Arc::default(),
    };
    let injected = p.injected.clone();
    let app = axum::Router::new().fallback(forward).with_state(p);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    (format!("http://{addr}/{}", azurite::ACCOUNT), injected)
}

const CATEGORIES: [&str; 3] = ["SignInLogs", "AuditLogs", "DeviceComplianceOrg"];

/// `n` Azure Monitor style records over three categories and several hours, each with a unique
/// `seq`.
fn write_records(dir: &Path, n: usize) -> std::path::PathBuf {
    let p = dir.join("records.ndjson");
    let mut text = String::new();
    for i in 0..n {
        let hour = i % 5;
        text.push_str(&format!(
            "{{\"time\":\"2026-01-02T{hour:02}:{:02}:00Z\",\"category\":\"{}\",\"seq\":{i},\"properties\":{{\"userPrincipalName\":\"user{i}@contoso.example\",\"ipAddress\":\"203.0.113.{}\"}}}}\n",
            i % 60,
            CATEGORIES[i % 3],
            i % 250
        ));
    }
    std::fs::write(&p, text).unwrap();
    p
}

fn destination(account_url: &str, credentials: BlobCredentials, container: &str) -> SiemDestinationSpec {
    SiemDestinationSpec {
        azure_blob: Some(AzureBlobArchiveSpec {
            account_url: account_url.to_string(),
            container: container.to_string(),
            path_template: "{source}/{category}/y={yyyy}/m={MM}/d={dd}/h={HH}".into(),
            gzip: true,
            credentials,
        }),
        format: EventFormat::Raw,
        batch: BatchSpec {
            max_events: 40,
            max_bytes: 1024 * 1024,
            max_latency_ms: 20,
        },
        retry: RetrySpec {
            initial_backoff_ms: 5,
            max_backoff_ms: 40,
            max_attempts: None,
            request_timeout_ms: 10_000,
        },
        concurrency: 2,
        ..Default::default()
    }
}

fn secret(name: &str, key: &str, value: &str) -> SecretKeySelector {
    let sel = SecretKeySelector {
        name: name.into(),
        key: key.into(),
    };
    // Each test uses its own Secret name, so parallel tests never share a variable.
    std::env::set_var(siembridge::config::SecretSource::env_var_name(&sel), value);
    sel
}

/// Every object under the container: (name, records).
async fn read_archive(az: &azurite::Azurite, container: &str) -> Vec<(String, Vec<serde_json::Value>)> {
    let svc = BlobService::from_connection_string(&SecretValue::new(az.connection_string()), None).unwrap();
    let mut out = Vec::new();
    for item in svc.list_blobs(container, "").await.unwrap() {
        let (_, gz) = svc.get_blob(container, &item.name).await.unwrap().unwrap();
        let mut text = String::new();
        flate2::read::GzDecoder::new(&gz[..]).read_to_string(&mut text).unwrap();
        let records = text.lines().map(|l| serde_json::from_str(l).unwrap()).collect();
        out.push((item.name, records));
    }
    out
}

/// seq -> times archived.
fn count(objects: &[(String, Vec<serde_json::Value>)]) -> BTreeMap<u64, usize> {
    let mut seen = BTreeMap::new();
    for (_, records) in objects {
        for r in records {
            *seen.entry(r["seq"].as_u64().unwrap()).or_default() += 1;
        }
    }
    seen
}

async fn run(config: siembridge::config::CollectorConfig) -> siembridge::collector::RunSummary {
    tokio::time::timeout(
        Duration::from_secs(120),
        Collector::new(config).run(CancellationToken::new()),
    )
    .await
    .expect("collector finished")
    .expect("collector ran")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn archive_through_injected_failures_holds_every_record_exactly_once() {
    siembridge::tls::install_crypto_provider();
    let Some(az) = azurite::start() else { return };
    let dir = tempfile::tempdir().unwrap();
    const N: usize = 1500;
    let records = write_records(dir.path(), N);
    let (url, injected) = proxy(
        &az,
        Arc::new(|n| match n % 7 {
            1 | 4 => Injected::BusyBefore,
            2 => Injected::LostAnswer,
            _ => Injected::Pass,
        }),
    )
    .await;
    let cs = secret("archive-exactly-once", "connectionString", &az.connection_string());
    let creds = BlobCredentials {
        connection_string: Some(cs),
        ..Default::default()
    };
    let dest = destination(&url, creds, "archive");
    let config = common::replay_config(
        dir.path(),
        &records,
        "entra-audit",
        BTreeMap::from([("archive".into(), dest)]),
    );
    let summary = run(config).await;
    assert!(summary.fully_checkpointed, "{summary:?}");

    let objects = read_archive(&az, "archive").await;
    let seen = count(&objects);
    let duplicates: usize = seen.values().map(|c| c - 1).sum();
    let injected = injected.lock().unwrap().clone();
    println!(
        "azureBlob archive: {} records sent, {} archived distinct, {} duplicates, {} objects, injected {:?}",
        N,
        seen.len(),
        duplicates,
        objects.len(),
        injected
    );
    assert_eq!(seen.len(), N, "every record archived");
    assert_eq!(duplicates, 0, "no record archived twice");
    assert!(injected.get("busy_before").copied().unwrap_or(0) > 0);
    assert!(
        injected.get("lost_answer").copied().unwrap_or(0) > 0,
        "a write whose answer was lost"
    );
    for (name, records) in &objects {
        let first = &records[0];
        let category = first["category"].as_str().unwrap();
        let hour = &first["time"].as_str().unwrap()[11..13];
        assert!(
            name.starts_with(&format!("entra-audit/{category}/y=2026/m=01/d=02/h={hour}/")),
            "{name}"
        );
        assert!(name.ends_with(".ndjson.gz"));
        for r in records {
            assert_eq!(r["category"], first["category"], "one category per object: {name}");
            assert_eq!(
                &r["time"].as_str().unwrap()[11..13],
                hour,
                "one hour per object: {name}"
            );
        }
    }
    let dead = std::fs::read_dir(dir.path().join("dead-letter"))
        .map(|d| d.count())
        .unwrap_or(0);
    assert_eq!(dead, 0, "nothing dead-lettered");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn archive_with_a_sas_token_creates_the_container() {
    siembridge::tls::install_crypto_provider();
    let Some(az) = azurite::start() else { return };
    let dir = tempfile::tempdir().unwrap();
    let records = write_records(dir.path(), 120);
    let sas = secret(
        "archive-sas",
        "sasToken",
        &format!("?{}", azurite::account_sas("rwdlac")),
    );
    let creds = BlobCredentials {
        sas_token: Some(sas),
        ..Default::default()
    };
    let dest = destination(&az.account_url(), creds, "fresh-container");
    let config = common::replay_config(
        dir.path(),
        &records,
        "intune",
        BTreeMap::from([("archive".into(), dest)]),
    );
    let summary = run(config).await;
    assert!(summary.fully_checkpointed);
    let seen = count(&read_archive(&az, "fresh-container").await);
    assert_eq!(seen.len(), 120);
    assert!(seen.values().all(|&c| c == 1));
}

/// A stand-in Blob endpoint that only accepts Put Blob with a bearer token the Entra stand-in
/// issued for the storage scope (Azurite takes OAuth only over HTTPS with its own certificate).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn archive_with_entra_sends_a_storage_bearer_token() {
    siembridge::tls::install_crypto_provider();
    let entra = common::entra::Entra::start(
        "11111111-2222-3333-4444-555555555555",
        "66666666-7777-8888-9999-aaaaaaaaaaaa",
        "archive-client-secret-value",
    )
    .await;
    let state = entra.state.clone();
    let stored: Arc<Mutex<Vec<Bytes>>> = Arc::default();
    let s2 = stored.clone();
    let app = axum::Router::new().fallback(move |headers: HeaderMap, body: Bytes| {
        let state = state.clone();
        let stored = s2.clone();
        async move {
            let token = headers
                .get("authorization")
                .and_then(|v| v.to_str().ok())
                .and_then(|v| v.strip_prefix("Bearer "))
                .unwrap_or_default()
                .to_string();
            if !state.valid(&token, "https://storage.azure.com/.default") {
                return (StatusCode::FORBIDDEN, [("x-ms-error-code", "AuthenticationFailed")], "").into_response();
            }
            stored.lock().unwrap().push(body);
            (StatusCode::CREATED, [("etag", "\"0x1\"")], "").into_response()
        }
    });
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });

    let dir = tempfile::tempdir().unwrap();
    let records = write_records(dir.path(), 30);
    let creds = BlobCredentials {
        entra: Some(EntraCredentials {
            tenant_id: "11111111-2222-3333-4444-555555555555".into(),
            client_id: "66666666-7777-8888-9999-aaaaaaaaaaaa".into(),
            client_secret: Some(secret("archive-entra", "clientSecret", "archive-client-secret-value")),
            authority_host: Some(entra.authority.clone()),
            ..Default::default()
        }),
        ..Default::default()
    };
    let dest = destination(&format!("http://{addr}/account"), creds, "c");
    let config = common::replay_config(
        dir.path(),
        &records,
        "entra",
        BTreeMap::from([("archive".into(), dest)]),
    );
    let summary = run(config).await;
    assert!(summary.fully_checkpointed);
    let total: usize = stored
        .lock()
        .unwrap()
        .iter()
        .map(|gz| {
            let mut t = String::new();
            flate2::read::GzDecoder::new(&gz[..]).read_to_string(&mut t).unwrap();
            t.lines().count()
        })
        .sum();
    assert_eq!(total, 30);
    assert!(!entra.state.issued.lock().unwrap().is_empty());
}

/// Log lines of every test of this binary, captured at DEBUG (TRACE for siembridge).
fn captured_logs() -> &'static Arc<Mutex<Vec<u8>>> {
    static LOGS: std::sync::OnceLock<Arc<Mutex<Vec<u8>>>> = std::sync::OnceLock::new();
    LOGS.get_or_init(|| {
        let buf: Arc<Mutex<Vec<u8>>> = Arc::default();
        let writer = buf.clone();
        let subscriber = tracing_subscriber::fmt()
            .with_env_filter(tracing_subscriber::EnvFilter::new("debug,siembridge=trace"))
            .with_writer(move || LogWriter(writer.clone()))
            .with_ansi(false)
            .finish();
        tracing::subscriber::set_global_default(subscriber).expect("one global subscriber");
        buf
    })
}

struct LogWriter(Arc<Mutex<Vec<u8>>>);

impl std::io::Write for LogWriter {
    fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(b);
        Ok(b.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

fn dead_letters(dir: &Path) -> String {
    std::fs::read_dir(dir.join("dead-letter"))
        .map(|d| {
            d.map(|e| std::fs::read_to_string(e.unwrap().path()).unwrap_or_default())
                .collect()
        })
        .unwrap_or_default()
}

/// Account key, SAS signature and Entra client secret, through 403s, 503s, 400s (dead letters)
/// and token endpoint failures: none of them appears in the captured logs, the dead letters, the
/// errors or the run summary.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn secrets_never_appear_in_logs_dead_letters_or_errors() {
    siembridge::tls::install_crypto_provider();
    let logs = captured_logs().clone();
    let Some(az) = azurite::start() else { return };
    let fault: Fault = Arc::new(|n| match n % 6 {
        1 => Injected::AuthFailed,
        2 => Injected::BusyBefore,
        3 if n < 10 => Injected::BadRequest,
        _ => Injected::Pass,
    });
    let mut evidence = String::new();

    // Account key (connection string) and SAS token.
    let sas = azurite::account_sas("rwdlac");
    let sas_sig = percent_encoding::percent_decode_str(sas.split("sig=").nth(1).unwrap())
        .decode_utf8()
        .unwrap()
        .to_string();
    for (i, creds) in [
        BlobCredentials {
            connection_string: Some(secret("leak-cs", "connectionString", &az.connection_string())),
            ..Default::default()
        },
        BlobCredentials {
            sas_token: Some(secret("leak-sas", "sasToken", &sas)),
            ..Default::default()
        },
    ]
    .into_iter()
    .enumerate()
    {
        let dir = tempfile::tempdir().unwrap();
        let records = write_records(dir.path(), 200);
        let (url, injected) = proxy(&az, fault.clone()).await;
        let dest = destination(&url, creds, &format!("leak{i}"));
        let config = common::replay_config(dir.path(), &records, "leak", BTreeMap::from([("archive".into(), dest)]));
        let summary = run(config).await;
        assert!(summary.fully_checkpointed);
        let injected = injected.lock().unwrap().clone();
        assert!(
            injected.contains_key("auth_failed") && injected.contains_key("bad_request"),
            "{injected:?}"
        );
        let dead = dead_letters(dir.path());
        assert!(
            dead.contains("InvalidHeaderValue"),
            "the 400 dead-lettered its events with the reason"
        );
        evidence.push_str(&dead);
        evidence.push_str(&format!("{summary:?}"));
    }

    // Entra client secret: token endpoint failures first, then a wrong secret.
    let client_secret = "leak-check-client-secret-7f3a9c";
    let entra = common::entra::Entra::start(
        "11111111-2222-3333-4444-555555555555",
        "66666666-7777-8888-9999-aaaaaaaaaaaa",
        client_secret,
    )
    .await;
    entra.state.fail_next.store(2, Ordering::SeqCst);
    for (name, value) in [
        ("leak-entra-ok", client_secret),
        ("leak-entra-bad", "wrong-secret-0b1d2e"),
    ] {
        let creds = BlobCredentials {
            entra: Some(EntraCredentials {
                tenant_id: "11111111-2222-3333-4444-555555555555".into(),
                client_id: "66666666-7777-8888-9999-aaaaaaaaaaaa".into(),
                client_secret: Some(secret(name, "clientSecret", value)),
                authority_host: Some(entra.authority.clone()),
                ..Default::default()
            }),
            ..Default::default()
        };
        let service = BlobService::from_credentials(
            &az.account_url(),
            &creds,
            &siembridge::config::SecretSource::Environment,
        )
        .unwrap();
        // Azurite takes no bearer token over plain HTTP: the call fails after the token request.
        let err = service.create_container("entra").await.unwrap_err();
        evidence.push_str(&format!("{err} {err:?} {service:?}\n"));
    }

    let logs = String::from_utf8_lossy(&logs.lock().unwrap()).into_owned();
    evidence.push_str(&logs);
    assert!(logs.contains("archive write failed"), "failures were logged");
    for (what, value) in [
        ("account key", azurite::ACCOUNT_KEY),
        ("SAS signature", sas_sig.as_str()),
        ("SAS token", sas.as_str()),
        ("client secret", client_secret),
        ("wrong client secret", "wrong-secret-0b1d2e"),
    ] {
        assert!(!evidence.contains(value), "{what} leaked");
    }
    println!(
        "secrets check: {} bytes of logs, dead letters and errors searched; no account key, SAS or client secret",
        evidence.len()
    );
}
