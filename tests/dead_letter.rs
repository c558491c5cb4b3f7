//! Dead letters through `siembridge run`: the original bytes kept unchanged (invalid UTF-8, a
//! truncated envelope as one entry, a record over several lines), counted apart from forwarded
//! events in the report, written `0600` to the local files or sent to a dead-letter
//! SiemDestination (`file`, `http`), and a dead-letter destination that refuses holds the
//! checkpoint instead of losing the record.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

use axum::body::Bytes;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use base64::Engine;
use serde_json::value::RawValue;

const BIN: &str = env!("CARGO_BIN_EXE_siembridge");

/// NDJSON lines: record 2 is not UTF-8.
const LINES: &[u8] = b"{\"id\":1,\"category\":\"SignInLogs\"}\n{\"id\":2,\"name\":\"caf\xff\xfe\"}\n{\"id\":3,\"category\":\"SignInLogs\"}\n";
/// A pretty-printed envelope cut short: records 4 and 5 can only be dead-lettered, whole.
const TRUNCATED: &[u8] = b"{\n  \"records\": [\n    {\"id\": 4, \"category\": \"AuditLogs\"},\n    {\"id\": 5, \"category\": \"AuditLogs\"}\n";
/// One record over several lines that the SIEM refuses (record 6).
const PRETTY: &[u8] = b"{\n  \"id\": 6,\n  \"poison\": true,\n  \"note\": \"two\\nlines\"\n}\n";

/// What each input should become as a dead letter: its exact bytes.
fn expected_dead_letters() -> Vec<(&'static str, Vec<u8>)> {
    vec![
        ("decode", b"{\"id\":2,\"name\":\"caf\xff\xfe\"}".to_vec()),
        ("decode", TRUNCATED.to_vec()),
        ("deliver", PRETTY.strip_suffix(b"\n").unwrap().to_vec()),
    ]
}

#[derive(Clone, Default)]
struct Receiver {
    /// Bodies the SIEM accepted.
    siem: Arc<Mutex<Vec<Vec<u8>>>>,
    /// Bodies the dead-letter receiver accepted.
    dlq: Arc<Mutex<Vec<Vec<u8>>>>,
    /// The dead-letter receiver refuses everything while set.
    dlq_refuses: Arc<AtomicBool>,
}

async fn siem(State(r): State<Receiver>, body: Bytes) -> Response {
    if String::from_utf8_lossy(&body).contains("\"poison\"") {
        return (StatusCode::BAD_REQUEST, "field poison is not allowed").into_response();
    }
    r.siem.lock().unwrap().push(body.to_vec());
    StatusCode::OK.into_response()
}

async fn dlq(State(r): State<Receiver>, body: Bytes) -> Response {
    if r.dlq_refuses.load(Ordering::SeqCst) {
        return (StatusCode::UNPROCESSABLE_ENTITY, "schema mismatch").into_response();
    }
    r.dlq.lock().unwrap().push(body.to_vec());
    StatusCode::OK.into_response()
}

async fn serve() -> (String, Receiver) {
    let r = Receiver::default();
    let app = axum::Router::new()
        .route("/siem", post(siem))
        .route("/dlq", post(dlq))
        .with_state(r.clone());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    (url, r)
}

/// Manifests and records under `dir/manifests`; `dead_letter`: the `deadLetter` block of the
/// LogSource and any extra SiemDestination documents.
fn write_manifests(dir: &Path, url: &str, dead_letter: &str, extra: &str) -> PathBuf {
    let m = dir.join("manifests");
    let records = m.join("records");
    std::fs::create_dir_all(&records).unwrap();
    std::fs::write(records.join("1-lines.ndjson"), LINES).unwrap();
    std::fs::write(records.join("2-truncated.json"), TRUNCATED).unwrap();
    std::fs::write(records.join("3-pretty.json"), PRETTY).unwrap();
    let yaml = format!(
        r#"apiVersion: siembridge.io/v1alpha1
kind: SiemDestination
metadata:
  name: siem
spec:
  http:
    url: {url}/siem
  format: raw
  batch:
    maxEvents: 1
    maxLatencyMs: 10
  retry:
    initialBackoffMs: 10
    maxBackoffMs: 50
---
apiVersion: siembridge.io/v1alpha1
kind: LogSource
metadata:
  name: entra
spec:
  replay:
    paths: [records]
  destinations:
    - name: siem
{dead_letter}
{extra}"#
    );
    std::fs::write(m.join("pipeline.yaml"), yaml).unwrap();
    m
}

async fn run(manifests: &Path, state: &Path) {
    let stderr = run_expecting(manifests, state, true).await;
    assert!(!stderr.contains("panicked"), "{stderr}");
}

/// Run `siembridge run` and check its exit status; returns its stderr.
async fn run_expecting(manifests: &Path, state: &Path, success: bool) -> String {
    let out = tokio::process::Command::new(BIN)
        .args(["run", "-f"])
        .arg(manifests)
        .arg("--state-dir")
        .arg(state)
        .env("RUST_LOG", "info")
        .output()
        .await
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    assert_eq!(out.status.success(), success, "{stderr}");
    stderr
}

fn report(state: &Path) -> serde_json::Value {
    let p = state.join("sb-ls-entra/report.json");
    serde_json::from_slice(&std::fs::read(p).unwrap()).unwrap()
}

fn checkpoint(state: &Path) -> String {
    let p = state.join("sb-ls-entra/checkpoints/replay.json");
    let v: serde_json::Value = serde_json::from_slice(&std::fs::read(p).unwrap()).unwrap();
    v["position"].as_str().unwrap().to_string()
}

#[derive(serde::Deserialize)]
#[serde(rename_all = "camelCase")]
struct Document {
    stage: String,
    reason: String,
    log_source: String,
    #[serde(default)]
    destination: Option<String>,
    record: Option<Box<RawValue>>,
    record_base64: Option<String>,
}

impl Document {
    /// The original bytes the dead letter carries.
    fn original(&self) -> Vec<u8> {
        match (&self.record, &self.record_base64) {
            (Some(raw), None) => raw.get().as_bytes().to_vec(),
            (None, Some(b)) => base64::engine::general_purpose::STANDARD.decode(b).unwrap(),
            _ => panic!("a dead letter carries exactly one of record and recordBase64"),
        }
    }
}

/// Dead-letter documents, one a line (a line that is not one document fails the test).
fn documents(ndjson: &[u8]) -> Vec<Document> {
    ndjson
        .split(|b| *b == b'\n')
        .filter(|l| !l.is_empty())
        .map(|l| serde_json::from_slice(l).unwrap_or_else(|e| panic!("not one document a line: {e}")))
        .collect()
}

fn files_under(dir: &Path) -> Vec<PathBuf> {
    match std::fs::read_dir(dir) {
        Ok(entries) => entries.map(|e| e.unwrap().path()).collect(),
        Err(_) => Vec::new(),
    }
}

/// Record ids the SIEM received, and a summary line by id.
fn delivered_ids(r: &Receiver) -> Vec<u64> {
    let mut ids: Vec<u64> = r
        .siem
        .lock()
        .unwrap()
        .iter()
        .flat_map(|b| {
            b.split(|c| *c == b'\n')
                .filter(|l| !l.is_empty())
                .map(|l| {
                    serde_json::from_slice::<serde_json::Value>(l).unwrap()["id"]
                        .as_u64()
                        .unwrap()
                })
                .collect::<Vec<_>>()
        })
        .collect();
    ids.sort();
    ids
}

/// Checks the dead letters against the inputs and prints lost / duplicated / dead-lettered by id.
fn check_every_record_accounted_for(r: &Receiver, docs: &[Document]) {
    let delivered = delivered_ids(r);
    let unique: BTreeSet<u64> = delivered.iter().copied().collect();
    let duplicated = delivered.len() - unique.len();
    let expected = expected_dead_letters();
    let dead: Vec<(String, Vec<u8>)> = docs.iter().map(|d| (d.stage.clone(), d.original())).collect();
    // Records 2, 4, 5 (in the truncated envelope) and 6 are in the dead letters' bytes.
    let dead_ids: BTreeSet<u64> = [2u64, 4, 5, 6]
        .into_iter()
        .filter(|id| {
            let needle = [format!("\"id\":{id}"), format!("\"id\": {id}")];
            dead.iter()
                .any(|(_, b)| needle.iter().any(|n| String::from_utf8_lossy(b).contains(n.as_str())))
        })
        .collect();
    let lost: Vec<u64> = (1..=6)
        .filter(|i| !unique.contains(i) && !dead_ids.contains(i))
        .collect();
    println!("delivered ids {unique:?}; dead-lettered ids {dead_ids:?}; lost {lost:?}; duplicated {duplicated}");
    assert!(lost.is_empty(), "lost {lost:?}");
    assert_eq!(unique, BTreeSet::from([1, 3]));
    assert_eq!(dead.len(), 3, "one dead letter per input, the truncated envelope whole");
    for (stage, bytes) in &expected {
        assert!(
            dead.iter().any(|(s, b)| s == stage && b == bytes),
            "no {stage} dead letter with the original bytes {:?}",
            String::from_utf8_lossy(bytes)
        );
    }
    for d in docs {
        assert_eq!(d.log_source, "entra");
        assert!(!d.reason.is_empty());
        if d.stage == "deliver" {
            assert_eq!(d.destination.as_deref(), Some("siem"));
            assert!(
                d.reason.contains("HTTP 400") && d.reason.contains("poison"),
                "{}",
                d.reason
            );
        }
    }
}

fn check_report(state: &Path, durable: bool, forwarded: u64) {
    let report = report(state);
    let ls = &report["logSources"]["entra"];
    println!("report: {ls}");
    assert_eq!(
        ls["eventsForwarded"], forwarded,
        "dead letters are not forwarded events"
    );
    assert_eq!(ls["eventsDeadLettered"], 3);
    assert_eq!(ls["deadLettersDurable"], durable);
    assert!(ls["lastDeadLetterReason"].as_str().is_some_and(|r| !r.is_empty()));
    assert!(ls.get("deadLetterError").is_none(), "{ls}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn local_dead_letters_keep_the_original_bytes_are_private_and_count_apart() {
    let dir = tempfile::tempdir().unwrap();
    let (url, r) = serve().await;
    let manifests = write_manifests(dir.path(), &url, "", "");
    let state = dir.path().join("state");
    run(&manifests, &state).await;

    let dl_dir = state.join("sb-ls-entra/dead-letter");
    let files = files_under(&dl_dir);
    assert_eq!(files.len(), 1, "{files:?}");
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(&files[0]).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600, "dead letters hold security records: owner only");
    }
    let docs = documents(&std::fs::read(&files[0]).unwrap());
    check_every_record_accounted_for(&r, &docs);
    check_report(&state, true, 2);
    assert!(checkpoint(&state).ends_with("3-pretty.json@1"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_file_dead_letter_destination_gets_the_documents_and_no_local_file_is_written() {
    let dir = tempfile::tempdir().unwrap();
    let (url, r) = serve().await;
    let archive = dir.path().join("pv/dead-letters.ndjson");
    let manifests = write_manifests(
        dir.path(),
        &url,
        "  deadLetter:\n    destination: archive",
        &format!(
            "---\napiVersion: siembridge.io/v1alpha1\nkind: SiemDestination\nmetadata:\n  name: archive\nspec:\n  file:\n    path: {}\n  format: raw\n",
            archive.display()
        ),
    );
    let state = dir.path().join("state");
    run(&manifests, &state).await;

    assert!(files_under(&state.join("sb-ls-entra/dead-letter")).is_empty());
    let docs = documents(&std::fs::read(&archive).unwrap());
    check_every_record_accounted_for(&r, &docs);
    check_report(&state, true, 2);
    let report = report(&state);
    assert_eq!(
        report["destinations"]["archive"]["eventsSent"], 3,
        "the archive took the dead letters"
    );
    assert!(checkpoint(&state).ends_with("3-pretty.json@1"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_http_dead_letter_destination_that_refuses_holds_the_checkpoint_until_it_takes_them() {
    let dir = tempfile::tempdir().unwrap();
    let (url, r) = serve().await;
    let manifests = write_manifests(
        dir.path(),
        &url,
        "  deadLetter:\n    destination: dlq",
        &format!(
            "---\napiVersion: siembridge.io/v1alpha1\nkind: SiemDestination\nmetadata:\n  name: dlq\nspec:\n  http:\n    url: {url}/dlq\n  format: raw\n  batch:\n    maxLatencyMs: 10\n"
        ),
    );
    let state = dir.path().join("state");

    // The dead-letter receiver refuses: nothing may pass the first undeliverable record.
    r.dlq_refuses.store(true, Ordering::SeqCst);
    let stderr = run_expecting(&manifests, &state, false).await;
    assert!(
        stderr.contains("not delivered") && stderr.contains("dead-letter writes failed"),
        "the run says what it left: {stderr}"
    );
    let position = checkpoint(&state);
    println!("checkpoint while the dead-letter destination refuses: {position}");
    assert!(
        position.ends_with("1-lines.ndjson@1"),
        "the checkpoint passed a record whose dead letter was refused: {position}"
    );
    let ls = &report(&state)["logSources"]["entra"];
    assert_eq!(ls["eventsDeadLettered"], 0);
    let error = ls["deadLetterError"].as_str().unwrap();
    assert!(error.contains("dlq") && error.contains("HTTP 422"), "{error}");
    assert!(
        files_under(&state.join("sb-ls-entra/dead-letter")).is_empty(),
        "no silent fallback"
    );

    // It takes them now: the next run resumes at the held record and the checkpoint passes all.
    // Record 3 came after the held record: it is read and delivered again (at least once).
    r.dlq_refuses.store(false, Ordering::SeqCst);
    run(&manifests, &state).await;
    let bodies = r.dlq.lock().unwrap().concat();
    let docs = documents(&bodies);
    check_every_record_accounted_for(&r, &docs);
    // This run read from the held record on: record 3 is its only forwarded one.
    check_report(&state, true, 1);
    assert!(checkpoint(&state).ends_with("3-pretty.json@1"));
}
