//! Several SIEM destinations in one collector: one down for a while does not stop the other,
//! and catches up from its buffer (or, with `whenFull: deadLetter`, overflows into the
//! dead-letter sink and says so); per-destination metrics count both; and the collector binary,
//! run with `RUST_LOG=debug` against every HTTP SIEM with wrong and right credentials (the wrong
//! ones retried until the collector is stopped), never writes a token, password, intake key or
//! client secret in its logs, report or dead letters.

use std::collections::BTreeMap;
use std::sync::atomic::Ordering;
use std::time::Duration;

use siembridge::api::{
    BasicAuth, BatchSpec, BufferSpec, ElasticsearchSpec, EntraCredentials, EventFormat, OverflowPolicy, SekoiaSpec,
    SentinelSpec, SiemDestinationSpec, SplunkHecSpec,
};
use siembridge::collector::Collector;
use siembridge::config::ReportTarget;
use tokio_util::sync::CancellationToken;

mod common;
#[path = "common/siem/mod.rs"]
mod siem;

use siem::elasticsearch::Elasticsearch;
use siem::hec::Hec;

fn shape(mut spec: SiemDestinationSpec, buffer: BufferSpec) -> SiemDestinationSpec {
    spec.format = EventFormat::Raw;
    spec.batch = BatchSpec {
        max_events: 20,
        max_bytes: 1024 * 1024,
        max_latency_ms: 20,
    };
    spec.retry = siem::fast_retry();
    spec.buffer = buffer;
    spec.concurrency = 1;
    spec
}

fn hec_spec(url: &str, secret: &str, value: &str, buffer: BufferSpec) -> SiemDestinationSpec {
    shape(
        SiemDestinationSpec {
            splunk_hec: Some(SplunkHecSpec {
                url: url.to_string(),
                token: siem::set_secret(secret, "token", value),
                ..Default::default()
            }),
            ..Default::default()
        },
        buffer,
    )
}

fn es_spec(url: &str) -> SiemDestinationSpec {
    shape(
        SiemDestinationSpec {
            elasticsearch: Some(ElasticsearchSpec {
                urls: vec![url.to_string()],
                // Raw records are no data stream documents (no `@timestamp`): a plain index.
                index: Some("siembridge-raw".into()),
                ..Default::default()
            }),
            ..Default::default()
        },
        BufferSpec::default(),
    )
}

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
        .map(|m| m.get_counter().get_value())
        .sum()
}

async fn wait_for(what: &str, mut done: impl FnMut() -> bool) {
    for _ in 0..400 {
        if done() {
            return;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("timed out waiting for {what}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_destination_down_for_a_while_catches_up_from_its_buffer_while_the_other_delivers() {
    let dir = tempfile::tempdir().unwrap();
    let n = 400;
    let records = siem::write_records(dir.path(), n, &[]);
    let es = Elasticsearch::start(&[]).await;
    let hec = Hec::start("tok-outage", false).await;
    hec.state.busy_next.store(usize::MAX / 2, Ordering::SeqCst);
    let buffer = BufferSpec {
        max_events: 1000,
        when_full: OverflowPolicy::Block,
    };
    let dests = BTreeMap::from([
        ("es".to_string(), es_spec(&es.url)),
        (
            "hec".to_string(),
            hec_spec(&hec.url, "hec-outage", "tok-outage", buffer),
        ),
    ]);
    let cfg = common::replay_config(dir.path(), &records, "entra", dests);
    let registry = prometheus::Registry::new();
    let collector = Collector::new(cfg).with_registry(registry.clone());
    let run = tokio::spawn(collector.run(CancellationToken::new()));

    // Elasticsearch gets everything while HEC answers 503 (server busy).
    wait_for("elasticsearch to have every record", || {
        es.state.docs.lock().unwrap().len() == n
    })
    .await;
    assert!(hec.state.indexed.lock().unwrap().is_empty());
    let busy_answers = hec.state.event_requests.load(Ordering::SeqCst);
    assert!(busy_answers > 1, "HEC was retried while busy");
    assert!(!run.is_finished(), "the run waits for HEC");

    // HEC comes back and catches up from its buffer.
    hec.state.busy_next.store(0, Ordering::SeqCst);
    let summary = tokio::time::timeout(Duration::from_secs(60), run)
        .await
        .unwrap()
        .unwrap()
        .unwrap();
    assert!(summary.fully_checkpointed);
    let ids: Vec<u64> = hec
        .state
        .indexed
        .lock()
        .unwrap()
        .iter()
        .filter_map(|e| e["event"]["id"].as_u64())
        .collect();
    println!(
        "outage (block, buffer 1000): {n} records; elasticsearch {} docs during the outage; hec answered busy {busy_answers} times, then indexed {} ({} distinct)",
        n,
        ids.len(),
        siem::counts(&ids).len()
    );
    assert_eq!(siem::counts(&ids).len(), n, "HEC caught up with every record");
    assert!(siem::dead_letters(dir.path()).is_empty());
    assert_eq!(
        metric(&registry, "siembridge_destination_events_sent_total", "hec"),
        n as f64
    );
    assert_eq!(
        metric(&registry, "siembridge_destination_events_sent_total", "es"),
        n as f64
    );
    assert!(metric(&registry, "siembridge_destination_events_failed_total", "hec") > 0.0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_buffer_with_dead_letter_policy_overflows_and_reports_it_while_the_other_delivers() {
    let dir = tempfile::tempdir().unwrap();
    let n = 300;
    let capacity = 50;
    let records = siem::write_records(dir.path(), n, &[]);
    let es = Elasticsearch::start(&[]).await;
    let hec = Hec::start("tok-overflow", false).await;
    hec.state.busy_next.store(usize::MAX / 2, Ordering::SeqCst);
    let buffer = BufferSpec {
        max_events: capacity,
        when_full: OverflowPolicy::DeadLetter,
    };
    let dests = BTreeMap::from([
        ("es".to_string(), es_spec(&es.url)),
        (
            "hec".to_string(),
            hec_spec(&hec.url, "hec-overflow", "tok-overflow", buffer),
        ),
    ]);
    let mut cfg = common::replay_config(dir.path(), &records, "entra", dests);
    cfg.report = Some(ReportTarget::File {
        path: dir.path().join("report.json").display().to_string(),
    });
    let registry = prometheus::Registry::new();
    let run = tokio::spawn(
        Collector::new(cfg)
            .with_registry(registry.clone())
            .run(CancellationToken::new()),
    );
    wait_for("elasticsearch to have every record", || {
        es.state.docs.lock().unwrap().len() == n
    })
    .await;
    hec.state.busy_next.store(0, Ordering::SeqCst);
    let summary = tokio::time::timeout(Duration::from_secs(60), run)
        .await
        .unwrap()
        .unwrap()
        .unwrap();
    assert!(summary.fully_checkpointed);

    let indexed: Vec<u64> = hec
        .state
        .indexed
        .lock()
        .unwrap()
        .iter()
        .filter_map(|e| e["event"]["id"].as_u64())
        .collect();
    let overflow: Vec<u64> = siem::dead_letters(dir.path())
        .iter()
        .filter(|l| l["stage"] == "overflow")
        .map(|l| l["record"]["id"].as_u64().unwrap())
        .collect();
    println!(
        "outage (deadLetter, buffer {capacity}): {n} records; elasticsearch {}; hec indexed {} after the outage, {} overflowed to dead-letter",
        es.state.docs.lock().unwrap().len(),
        indexed.len(),
        overflow.len()
    );
    assert!(
        indexed.len() <= capacity as usize + 1,
        "no more than the buffer was held"
    );
    let mut all: Vec<u64> = indexed.iter().chain(&overflow).copied().collect();
    all.sort();
    all.dedup();
    assert_eq!(all.len(), n, "every record is indexed or dead-lettered: none lost");
    assert!(overflow.len() >= n - capacity as usize - 1);
    let report: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(dir.path().join("report.json")).unwrap()).unwrap();
    assert_eq!(
        report["destinations"]["hec"]["eventsDeadLettered"],
        overflow.len() as u64
    );
    assert_eq!(report["destinations"]["es"]["eventsSent"], n as u64);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_collector_never_logs_or_reports_credentials() {
    use common::entra::Entra;
    use siem::logs_ingestion::LogsIngestion;
    use siem::sekoia::Sekoia;

    const TENANT: &str = "11111111-2222-3333-4444-555555555555";
    const APP: &str = "66666666-7777-8888-9999-aaaaaaaaaaaa";
    let secrets = [
        ("hec-good", "token", "hec-token-Zq81xP"),
        ("hec-bad", "token", "hec-wrong-token-Wd72kL"),
        ("es", "password", "es-password-Rt55mN"),
        ("sekoia", "intakeKey", "sekoia-intake-key-Hs09vB"),
        ("sentinel-good", "clientSecret", "sentinel-secret-Kp33cJ"),
        ("sentinel-bad", "clientSecret", "sentinel-wrong-secret-Ym61aQ"),
    ];
    let dir = tempfile::tempdir().unwrap();
    let records = siem::write_records(dir.path(), 60, &[7]);
    let hec = Hec::start("hec-token-Zq81xP", true).await;
    hec.state.busy_next.store(2, Ordering::SeqCst);
    let es = Elasticsearch::start(&["Basic ZWxhc3RpYzplcy1wYXNzd29yZC1SdDU1bU4="]).await;
    es.state.reject_items_next.store(5, Ordering::SeqCst);
    let sekoia = Sekoia::start("sekoia-intake-key-Hs09vB").await;
    sekoia.state.fail_next.lock().unwrap().push_back(429);
    let entra = Entra::start(TENANT, APP, "sentinel-secret-Kp33cJ").await;
    let api = LogsIngestion::start(entra.state.clone(), "dcr-1", "Custom-Events").await;
    api.state.revoke_next.store(1, Ordering::SeqCst);

    let sel = |name: &str, key: &str| siembridge::api::SecretKeySelector {
        name: name.into(),
        key: key.into(),
    };
    let sentinel = |secret: &str| SentinelSpec {
        endpoint: api.endpoint.clone(),
        dcr_immutable_id: "dcr-1".into(),
        stream_name: "Custom-Events".into(),
        credentials: EntraCredentials {
            tenant_id: TENANT.into(),
            client_id: APP.into(),
            client_secret: Some(sel(secret, "clientSecret")),
            authority_host: Some(entra.authority.clone()),
            ..Default::default()
        },
    };
    let one = |s: SiemDestinationSpec| shape(s, BufferSpec::default());
    let dests = BTreeMap::from([
        (
            "hec-good".to_string(),
            one(SiemDestinationSpec {
                splunk_hec: Some(SplunkHecSpec {
                    url: hec.url.clone(),
                    token: sel("hec-good", "token"),
                    indexer_ack: true,
                    ..Default::default()
                }),
                ..Default::default()
            }),
        ),
        (
            "hec-bad".to_string(),
            one(SiemDestinationSpec {
                splunk_hec: Some(SplunkHecSpec {
                    url: hec.url.clone(),
                    token: sel("hec-bad", "token"),
                    ..Default::default()
                }),
                ..Default::default()
            }),
        ),
        (
            "es".to_string(),
            one(SiemDestinationSpec {
                elasticsearch: Some(ElasticsearchSpec {
                    urls: vec![es.url.clone()],
                    // Raw records are no data stream documents (no `@timestamp`): a plain index.
                    index: Some("siembridge-raw".into()),
                    basic_auth: Some(BasicAuth {
                        username: "elastic".into(),
                        password: sel("es", "password"),
                    }),
                    ..Default::default()
                }),
                ..Default::default()
            }),
        ),
        (
            "sekoia".to_string(),
            one(SiemDestinationSpec {
                sekoia: Some(SekoiaSpec {
                    intake_key: sel("sekoia", "intakeKey"),
                    url: Some(sekoia.url.clone()),
                    ..Default::default()
                }),
                ..Default::default()
            }),
        ),
        (
            "sentinel-good".to_string(),
            one(SiemDestinationSpec {
                sentinel: Some(sentinel("sentinel-good")),
                ..Default::default()
            }),
        ),
        (
            "sentinel-bad".to_string(),
            one(SiemDestinationSpec {
                sentinel: Some(sentinel("sentinel-bad")),
                ..Default::default()
            }),
        ),
    ]);
    let mut cfg = common::replay_config(dir.path(), &records, "entra", dests);
    cfg.report = Some(ReportTarget::File {
        path: dir.path().join("report.json").display().to_string(),
    });
    let config_path = dir.path().join("collector.yaml");
    std::fs::write(&config_path, serde_yaml::to_string(&cfg).unwrap()).unwrap();

    let mut command = tokio::process::Command::new(env!("CARGO_BIN_EXE_siembridge"));
    command
        .arg("collector")
        .arg("--config")
        .arg(&config_path)
        .env("RUST_LOG", "debug")
        .kill_on_drop(true);
    for (name, key, value) in secrets {
        command.env(siembridge::config::SecretSource::env_var_name(&sel(name, key)), value);
    }
    // The refused ones (hec-bad, sentinel-bad) wait for their credentials forever: once the
    // others have everything and the refusals are in the report, stop the collector as Kubernetes
    // does (SIGTERM).
    // Logs go to a file: a pipe nobody reads while the collector runs would fill and stall it.
    let log_path = dir.path().join("collector.log");
    let log_file = std::fs::File::create(&log_path).unwrap();
    command.stdout(log_file.try_clone().unwrap()).stderr(log_file);
    let mut child = command.spawn().unwrap();
    let pid = child.id().unwrap();
    let report_path = dir.path().join("report.json");
    let settled = || {
        let report = std::fs::read_to_string(&report_path).unwrap_or_default();
        (
            report.contains("Invalid token"),
            report.contains("7000215"),
            es.state.docs.lock().unwrap().len(),
            api.state.rows.lock().unwrap().len(),
        )
    };
    for _ in 0..1200 {
        if settled() == (true, true, 59, 59) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(
        settled(),
        (true, true, 59, 59),
        "(refused HEC token reported, refused Entra secret reported, ES docs, Sentinel rows)"
    );
    let killed = std::process::Command::new("kill")
        .args(["-TERM", &pid.to_string()])
        .status()
        .unwrap();
    assert!(killed.success());
    let status = tokio::time::timeout(Duration::from_secs(60), child.wait())
        .await
        .expect("collector stopped")
        .unwrap();
    let logs = std::fs::read_to_string(&log_path).unwrap();
    // Stopped with the refused destinations' records undelivered: it says so and exits non-zero.
    assert!(!status.success() && logs.contains("not delivered"), "{logs}");
    let report = std::fs::read_to_string(dir.path().join("report.json")).unwrap();
    let dead = serde_json::to_string(&siem::dead_letters(dir.path())).unwrap();
    println!(
        "secrets: {} log lines, report {} bytes, {} dead letters scanned for {} secret values",
        logs.lines().count(),
        report.len(),
        siem::dead_letters(dir.path()).len(),
        secrets.len()
    );
    // The runs did go through the error paths that could leak.
    assert!(logs.lines().count() > 20, "debug logging is on");
    assert!(
        report.contains("Invalid token") && report.contains("7000215"),
        "{report}"
    );
    assert_eq!(es.state.docs.lock().unwrap().len(), 59);
    assert!(!api.state.rows.lock().unwrap().is_empty());
    for (_, _, value) in secrets {
        assert!(!logs.contains(value), "{value} in the logs");
        assert!(!report.contains(value), "{value} in the report");
        assert!(!dead.contains(value), "{value} in a dead letter");
    }
    // Nor the forms a value takes on the wire.
    for wire in ["ZWxhc3RpYzplcy1wYXNzd29yZC1SdDU1bU4=", "eyJ0eXAiOiJKV1QifQ.synthetic"] {
        assert!(!logs.contains(wire) && !report.contains(wire), "{wire} leaked");
    }
}
