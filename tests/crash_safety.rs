//! Crash safety of the built binary: SIGKILL the collector several times while it replays 200k
//! records to a slow, flaky HTTP receiver; after the last run every record has been received,
//! and the only duplicates are records after the checkpoint that was on disk at each kill.

use std::collections::BTreeMap;
use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::body::Bytes;
use axum::extract::State;
use axum::http::StatusCode;
use axum::routing::post;
use siembridge::api::{BatchSpec, EventFormat, HttpSpec, RetrySpec, SiemDestinationSpec};
use siembridge::config::CollectorConfig;

mod common;

const RECORDS: u64 = 200_000;
const KILLS: usize = 4;

#[derive(Clone, Default)]
struct Receiver {
    /// Per record id, the runs it was received in.
    seen: Arc<Mutex<Vec<Vec<u8>>>>,
    run: Arc<AtomicUsize>,
    received: Arc<AtomicUsize>,
    requests: Arc<AtomicUsize>,
}

async fn ingest(State(r): State<Receiver>, body: Bytes) -> StatusCode {
    let n = r.requests.fetch_add(1, Ordering::Relaxed) + 1;
    // Slow acks, and some failures that the collector must retry.
    tokio::time::sleep(Duration::from_millis(20 + (n as u64 * 7) % 30)).await;
    if n.is_multiple_of(9) {
        return StatusCode::SERVICE_UNAVAILABLE;
    }
    if n.is_multiple_of(13) {
        return StatusCode::INTERNAL_SERVER_ERROR;
    }
    let run = r.run.load(Ordering::Relaxed) as u8;
    let mut seen = r.seen.lock().unwrap();
    for line in body.split(|b| *b == b'\n').filter(|l| !l.is_empty()) {
        let Ok(v) = serde_json::from_slice::<serde_json::Value>(line) else {
            return StatusCode::BAD_REQUEST;
        };
        let Some(id) = v["id"].as_u64() else {
            return StatusCode::BAD_REQUEST;
        };
        seen[id as usize].push(run);
        r.received.fetch_add(1, Ordering::Relaxed);
    }
    StatusCode::OK
}

fn config(dir: &Path, url: &str, records: &Path) -> CollectorConfig {
    let dest = SiemDestinationSpec {
        http: Some(HttpSpec {
            url: url.to_string(),
            ..Default::default()
        }),
        format: EventFormat::Raw,
        batch: BatchSpec {
            max_events: 250,
            max_bytes: 1024 * 1024,
            max_latency_ms: 50,
        },
        retry: RetrySpec {
            initial_backoff_ms: 5,
            max_backoff_ms: 100,
            max_attempts: None,
            // A request that times out is sent again: a legitimate at-least-once duplicate within
            // one run. This test counts only crash duplicates, so the timeout is far above what a
            // loaded 2-core machine needs to answer (5 s was hit under load 20).
            request_timeout_ms: 60_000,
        },
        concurrency: 2,
        ..Default::default()
    };
    common::replay_config(
        dir,
        records,
        "replayed",
        BTreeMap::from([("receiver".to_string(), dest)]),
    )
}

fn spawn(config: &Path, log: &Path) -> common::child::Reaped {
    let log = std::fs::OpenOptions::new().create(true).append(true).open(log).unwrap();
    common::child::Reaped(
        Command::new(env!("CARGO_BIN_EXE_siembridge"))
            .args(["--log-format", "json", "collector", "--config"])
            .arg(config)
            .env("RUST_LOG", "warn")
            .stdout(Stdio::null())
            .stderr(Stdio::from(log))
            .spawn()
            .unwrap(),
    )
}

/// Line number in the checkpoint on disk (0 when none yet).
fn checkpointed_line(dir: &Path) -> u64 {
    let path = dir.join("checkpoints").join("replay.json");
    match std::fs::read(&path) {
        Ok(b) => {
            let v: serde_json::Value = serde_json::from_slice(&b).unwrap();
            let pos = v["position"].as_str().unwrap();
            pos.rsplit_once('@').unwrap().1.parse().unwrap()
        }
        Err(_) => 0,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigkill_during_replay_loses_nothing_and_duplicates_only_after_the_checkpoint() {
    let dir = tempfile::tempdir().unwrap();
    let records = dir.path().join("records.ndjson");
    {
        let mut text = String::with_capacity(RECORDS as usize * 60);
        for id in 1..=RECORDS {
            text.push_str(&format!(
                "{{\"id\":{id},\"category\":\"SignInLogs\",\"user\":\"u{}\"}}\n",
                id % 97
            ));
        }
        std::fs::write(&records, text).unwrap();
    }
    let receiver = Receiver {
        seen: Arc::new(Mutex::new(vec![Vec::new(); RECORDS as usize + 1])),
        ..Default::default()
    };
    let app = axum::Router::new()
        .route("/ingest", post(ingest))
        .with_state(receiver.clone());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/ingest", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });

    let config_path = dir.path().join("collector.yaml");
    std::fs::write(
        &config_path,
        serde_yaml::to_string(&config(dir.path(), &url, &records)).unwrap(),
    )
    .unwrap();
    let log = dir.path().join("collector.log");
    let started = Instant::now();

    // Kill runs 0..KILLS part way; each must make progress first so the kill lands mid-stream.
    let mut checkpoints = Vec::new();
    for run in 0..KILLS {
        receiver.run.store(run, Ordering::Relaxed);
        let before = receiver.received.load(Ordering::Relaxed);
        let mut child = spawn(&config_path, &log);
        let deadline = Instant::now() + Duration::from_secs(30);
        let previous = checkpointed_line(dir.path());
        while receiver.received.load(Ordering::Relaxed) < before + 20_000 + run * 3_000
            || checkpointed_line(dir.path()) <= previous
        {
            assert!(
                Instant::now() < deadline,
                "run {run} made no progress; see {}",
                log.display()
            );
            assert!(
                child.try_wait().unwrap().is_none(),
                "collector exited early in run {run}"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        tokio::time::sleep(Duration::from_millis(37 * run as u64)).await;
        child.kill().unwrap(); // SIGKILL
        child.wait().unwrap();
        // The process is gone: this is the checkpoint the next run starts from.
        let line = checkpointed_line(dir.path());
        checkpoints.push(line);
        eprintln!(
            "run {run}: killed; checkpoint at line {line}; received so far {}",
            receiver.received.load(Ordering::Relaxed)
        );
    }
    assert!(
        checkpoints.windows(2).all(|w| w[0] < w[1]),
        "checkpoints must move forward: {checkpoints:?}"
    );
    assert!(
        checkpoints[KILLS - 1] < RECORDS,
        "the kills must land before the end: {checkpoints:?}"
    );

    // Last run: to completion.
    receiver.run.store(KILLS, Ordering::Relaxed);
    let mut child = spawn(&config_path, &log);
    let deadline = Instant::now() + Duration::from_secs(90);
    let status = loop {
        if let Some(s) = child.try_wait().unwrap() {
            break s;
        }
        if Instant::now() > deadline {
            child.kill().unwrap();
            panic!("final run did not finish; see {}", log.display());
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    assert!(status.success(), "final run failed; see {}", log.display());
    assert_eq!(
        checkpointed_line(dir.path()),
        RECORDS,
        "final checkpoint at the last line"
    );

    let seen = receiver.seen.lock().unwrap();
    let lost: Vec<u64> = (1..=RECORDS).filter(|&id| seen[id as usize].is_empty()).collect();
    let duplicates: usize = seen.iter().map(|runs| runs.len().saturating_sub(1)).sum();
    let duplicated_ids = seen.iter().filter(|runs| runs.len() > 1).count();
    eprintln!(
        "crash safety: {RECORDS} records, {KILLS} SIGKILLs, checkpoints at kills {checkpoints:?}, lost {}, duplicate deliveries {duplicates} ({duplicated_ids} ids), {} requests, {:.1}s",
        lost.len(),
        receiver.requests.load(Ordering::Relaxed),
        started.elapsed().as_secs_f64()
    );
    assert!(
        lost.is_empty(),
        "lost {} records, first {:?}",
        lost.len(),
        &lost[..lost.len().min(10)]
    );

    // A record received in run k and again later must lie after the checkpoint on disk when
    // run k was killed; anything at or before it was acknowledged and must never come again.
    for (id, runs) in seen.iter().enumerate().skip(1) {
        for (i, &run) in runs.iter().enumerate() {
            let later = runs[i + 1..].iter().any(|&r| r > run);
            if later {
                let cp = checkpoints[run as usize];
                assert!(
                    id as u64 > cp,
                    "record {id} was re-sent after run {run} although the checkpoint ({cp}) covered it"
                );
            }
            // Within one run a record is sent once (failures here never record ids).
            assert!(
                runs[i + 1..].iter().all(|&r| r != run),
                "record {id} received twice in run {run}"
            );
        }
    }
}
