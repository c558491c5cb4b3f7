//! Throughput of each HTTP SIEM destination against its local stand-in (plain binary, `cargo
//! bench --bench destinations`).
//!
//! For each destination: batches of 500 realistic ECS sign-in documents (about 1.3 KB) sent one
//! after another through `Destination::send`, events/s and MB/s of document bytes, as a ratio
//! to two baselines of the same run on the same machine: plain `serde_json` parse + serialize
//! of the same bytes, and the generic `http` destination POSTing NDJSON to a receiver that only
//! answers 200. The stand-ins run in the same process and share its two cores, so the numbers
//! include the receiver's parsing: they compare protocols, they are not a SIEM's capacity.
//!
//! `BENCH_EVENTS` sets the event count per destination (default 50000).

use std::sync::Arc;
use std::time::{Duration, Instant};

use siembridge::api::{
    ElasticsearchSpec, EntraCredentials, HttpSpec, SekoiaSpec, SentinelSpec, SiemDestinationSpec, SplunkHecSpec,
};
use siembridge::collector::destinations::{build, Destination, Event, SendOutcome};
use siembridge::config::SecretSource;

#[path = "../tests/common/mod.rs"]
mod common;
#[path = "../tests/common/siem/mod.rs"]
mod siem;

const BATCH: usize = 500;
const TENANT: &str = "11111111-2222-3333-4444-555555555555";
const APP: &str = "66666666-7777-8888-9999-aaaaaaaaaaaa";

fn document(i: usize) -> String {
    serde_json::json!({
        "@timestamp": format!("2026-01-15T08:{:02}:{:02}.{:03}Z", i / 60 % 60, i % 60, i % 1000),
        "event": {"kind": "event", "category": ["authentication"], "type": ["start"], "action": "Sign-in activity",
                  "outcome": if i.is_multiple_of(7) { "failure" } else { "success" }, "dataset": "azure.signinlogs",
                  "module": "azure", "id": format!("aaaaaaaa-3333-4333-8333-{i:012}"), "duration": (i % 500) * 1_000_000},
        "cloud": {"provider": "azure", "account": {"id": TENANT}},
        "user": {"name": format!("user{}@contoso.example", i % 1000), "id": format!("cccccccc-0000-4000-8000-{:012}", i % 1000),
                 "full_name": format!("User {}", i % 1000), "domain": "contoso.example"},
        "source": {"ip": format!("198.51.100.{}", i % 250), "geo": {"city_name": "Paris", "country_iso_code": "FR",
                   "location": {"lat": 48.85, "lon": 2.35}}},
        "user_agent": {"original": "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 Edge/120.0.0", "os": {"name": "Windows10"}},
        "azure": {"signinlogs": {"category": "SignInLogs", "operation_name": "Sign-in activity", "result_type": if i.is_multiple_of(7) { "50126" } else { "0" },
                  "properties": {"app_display_name": "Microsoft Teams", "app_id": "bbbbbbbb-0000-0000-0000-000000000002",
                  "client_app_used": "Mobile Apps and Desktop clients", "conditional_access_status": "notApplied",
                  "is_interactive": i.is_multiple_of(3), "risk_level_during_signin": "none", "risk_state": "none",
                  "authentication_requirement": "singleFactorAuthentication", "correlation_id": format!("aaaaaaaa-2222-4222-8222-{i:012}"),
                  "status": {"error_code": if i.is_multiple_of(7) { 50126 } else { 0 }}}}},
        "ecs": {"version": "8.17.0"}
    })
    .to_string()
}

fn events(docs: &[String], run: &str) -> Vec<Event> {
    docs.iter()
        .enumerate()
        .map(|(i, d)| Event::detached_with_id(d.clone(), "entra", &format!("{run}/{i}")))
        .collect()
}

struct Measure {
    name: &'static str,
    events_per_s: f64,
    mb_per_s: f64,
}

async fn measure(name: &'static str, dest: Arc<dyn Destination>, docs: &[String]) -> Measure {
    let bytes: usize = docs.iter().map(String::len).sum();
    let evs = events(docs, name);
    // One warm-up batch (connections, tokens).
    let warm = events(&docs[..BATCH.min(docs.len())], &format!("{name}-warm"));
    assert_eq!(dest.send(&warm).await, SendOutcome::Delivered, "{name} warm-up");
    let started = Instant::now();
    for chunk in evs.chunks(BATCH) {
        let outcome = dest.send(chunk).await;
        assert_eq!(outcome, SendOutcome::Delivered, "{name}");
    }
    let secs = started.elapsed().as_secs_f64();
    Measure {
        name,
        events_per_s: docs.len() as f64 / secs,
        mb_per_s: bytes as f64 / secs / 1e6,
    }
}

fn json_baseline(docs: &[String]) -> Measure {
    let bytes: usize = docs.iter().map(String::len).sum();
    let started = Instant::now();
    let mut out = 0usize;
    for d in docs {
        let v: serde_json::Value = serde_json::from_str(d).expect("valid JSON");
        out += serde_json::to_vec(&v).expect("serializable").len();
    }
    std::hint::black_box(out);
    let secs = started.elapsed().as_secs_f64();
    Measure {
        name: "baseline: serde_json parse+serialize",
        events_per_s: docs.len() as f64 / secs,
        mb_per_s: bytes as f64 / secs / 1e6,
    }
}

fn secret(name: &str, key: &str, value: &str) -> siembridge::api::SecretKeySelector {
    siem::set_secret(name, key, value)
}

fn dest(spec: SiemDestinationSpec) -> Arc<dyn Destination> {
    let mut spec = spec;
    spec.retry.request_timeout_ms = 30_000;
    build("bench", &spec, &SecretSource::Environment).expect("destination builds")
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    // `cargo bench` passes `--bench`; `cargo test --all-targets` runs this binary without it, as
    // a quick smoke test of the same code.
    let bench_mode = std::env::args().any(|a| a == "--bench");
    let n: usize = std::env::var("BENCH_EVENTS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(if bench_mode { 50_000 } else { 2_000 });
    let docs: Vec<String> = (0..n).map(document).collect();
    let avg = docs.iter().map(String::len).sum::<usize>() / n.max(1);
    println!("destinations bench: {n} events of {avg} bytes on average, batches of {BATCH}, sequential sends");

    let mut results = vec![json_baseline(&docs)];

    // Generic http receiver that reads the body and answers 200. (One that answered without
    // reading it sometimes closed the connection while a large body was still being written:
    // "Broken pipe" on the client, a failed bench run.)
    let app = axum::Router::new().route(
        "/ingest",
        axum::routing::post(|body: axum::body::Bytes| async move {
            std::hint::black_box(body.len());
            "ok"
        }),
    );
    let sink = siem::serve(app).await;
    results.push(
        measure(
            "baseline: http (NDJSON POST, 200)",
            dest(SiemDestinationSpec {
                http: Some(HttpSpec {
                    url: format!("{sink}/ingest"),
                    ..Default::default()
                }),
                ..Default::default()
            }),
            &docs,
        )
        .await,
    );

    let hec = siem::hec::Hec::start("bench-hec-token", false).await;
    results.push(
        measure(
            "splunkHec",
            dest(SiemDestinationSpec {
                splunk_hec: Some(SplunkHecSpec {
                    url: hec.url.clone(),
                    token: secret("bench-hec", "token", "bench-hec-token"),
                    index: Some("m365".into()),
                    ..Default::default()
                }),
                ..Default::default()
            }),
            &docs,
        )
        .await,
    );
    hec.state.indexed.lock().unwrap().clear();

    let hec_ack = siem::hec::Hec::start("bench-hec-ack-token", true).await;
    results.push(
        measure(
            "splunkHec + indexer ack",
            dest(SiemDestinationSpec {
                splunk_hec: Some(SplunkHecSpec {
                    url: hec_ack.url.clone(),
                    token: secret("bench-hec-ack", "token", "bench-hec-ack-token"),
                    indexer_ack: true,
                    ..Default::default()
                }),
                ..Default::default()
            }),
            &docs,
        )
        .await,
    );
    hec_ack.state.indexed.lock().unwrap().clear();

    for (name, compression) in [("elasticsearch", false), ("elasticsearch + gzip", true)] {
        let es = siem::elasticsearch::Elasticsearch::start(&[]).await;
        results.push(
            measure(
                name,
                dest(SiemDestinationSpec {
                    elasticsearch: Some(ElasticsearchSpec {
                        urls: vec![es.url.clone()],
                        index: Some("logs-azure.signinlogs-default".into()),
                        compression,
                        ..Default::default()
                    }),
                    ..Default::default()
                }),
                &docs,
            )
            .await,
        );
        assert_eq!(
            es.state.docs.lock().unwrap().len(),
            n + BATCH.min(n),
            "{name}: every document stored"
        );
    }

    let sekoia = siem::sekoia::Sekoia::start("bench-intake-key").await;
    results.push(
        measure(
            "sekoia",
            dest(SiemDestinationSpec {
                sekoia: Some(SekoiaSpec {
                    intake_key: secret("bench-sekoia", "intakeKey", "bench-intake-key"),
                    url: Some(sekoia.url.clone()),
                    ..Default::default()
                }),
                ..Default::default()
            }),
            &docs,
        )
        .await,
    );

    let entra = common::entra::Entra::start(TENANT, APP, "bench-client-secret").await;
    let api = siem::logs_ingestion::LogsIngestion::start(entra.state.clone(), "dcr-bench", "Custom-Bench").await;
    results.push(
        measure(
            "sentinel (gzip)",
            dest(SiemDestinationSpec {
                sentinel: Some(SentinelSpec {
                    endpoint: api.endpoint.clone(),
                    dcr_immutable_id: "dcr-bench".into(),
                    stream_name: "Custom-Bench".into(),
                    credentials: EntraCredentials {
                        tenant_id: TENANT.into(),
                        client_id: APP.into(),
                        client_secret: Some(secret("bench-sentinel", "clientSecret", "bench-client-secret")),
                        authority_host: Some(entra.authority.clone()),
                        ..Default::default()
                    },
                }),
                ..Default::default()
            }),
            &docs,
        )
        .await,
    );

    let json = results[0].events_per_s;
    let http = results[1].events_per_s;
    println!(
        "{:<40} {:>12} {:>9} {:>12} {:>12}",
        "destination", "events/s", "MB/s", "vs json", "vs http"
    );
    for r in &results {
        println!(
            "{:<40} {:>12.0} {:>9.1} {:>12.3} {:>12.3}",
            r.name,
            r.events_per_s,
            r.mb_per_s,
            r.events_per_s / json,
            r.events_per_s / http
        );
    }
    tokio::time::sleep(Duration::from_millis(10)).await;
}
