//! Event Hubs: the stand-in against the official Azure SDK, and the collector's Event Hubs
//! source reading it (checkpoints, resume, ownership release, start positions, errors).
//!
//! Run: `cargo test --test eventhub`.

mod common;
#[path = "common/eventhub_collector.rs"]
mod eventhub_collector;
#[path = "common/eventhubs.rs"]
mod eventhubs;

use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use azure_messaging_eventhubs::{ConsumerClient, OpenReceiverOptions, ProducerClient, StartLocation, StartPosition};
use futures::StreamExt;
use siembridge::collector::Collector;
use tokio_util::sync::CancellationToken;

use eventhub_collector::*;
use eventhubs::{EventHubsStandIn, Rights};

const NS: &str = "contoso-ns.servicebus.windows.net";
const KEY: &str = "c2VjcmV0LWtleS1mb3ItdGVzdHM=";

async fn standin(partitions: usize) -> EventHubsStandIn {
    siembridge::tls::install_crypto_provider();
    let s = EventHubsStandIn::start(NS).await;
    s.state.add_hub("entra-logs", partitions, &["siem"]);
    s.state.add_policy("listen", KEY, Rights::LISTEN);
    s.state.add_policy("send", KEY, Rights::SEND);
    s
}

async fn consumer(
    s: &EventHubsStandIn,
    policy: &str,
    key: &str,
    hub: &str,
    group: &str,
) -> azure_messaging_eventhubs::Result<ConsumerClient> {
    ConsumerClient::builder()
        .with_consumer_group(group.to_string())
        .with_custom_endpoint(s.endpoint())
        .open_with_connection_string(&s.connection_string(policy, key, Some(hub)), None)
        .await
}

async fn read_n(
    receiver: &azure_messaging_eventhubs::EventReceiver,
    n: usize,
) -> Vec<azure_messaging_eventhubs::models::ReceivedEventData> {
    let mut out = Vec::new();
    let mut stream = std::pin::pin!(receiver.stream_events());
    while out.len() < n {
        let ev = tokio::time::timeout(Duration::from_secs(10), stream.next())
            .await
            .expect("event in time")
            .expect("stream open")
            .expect("event");
        out.push(ev);
    }
    out
}

#[tokio::test]
async fn standin_serves_the_official_sdk_producer_and_consumer() {
    let s = standin(2).await;
    // Publish with the official producer (batch format, SAS with EntityPath).
    let producer = ProducerClient::builder()
        .with_custom_endpoint(s.endpoint())
        .open_with_connection_string(&s.connection_string("send", KEY, Some("entra-logs")), None)
        .await
        .expect("producer opens");
    let props = producer.get_eventhub_properties().await.expect("hub properties");
    assert_eq!(props.partition_ids, vec!["0".to_string(), "1".to_string()]);
    let batch = producer
        .create_batch(Some(azure_messaging_eventhubs::EventDataBatchOptions {
            partition_id: Some("1".into()),
            ..Default::default()
        }))
        .await
        .expect("batch");
    for n in 0..5u64 {
        assert!(batch
            .try_add_event_data(diagnostic_body(n).to_vec(), None)
            .expect("add"));
    }
    producer.send_batch(batch, None).await.expect("batch sent");
    assert_eq!(s.state.partition_lengths("entra-logs"), vec![0, 5]);

    let client = consumer(&s, "listen", KEY, "entra-logs", "siem")
        .await
        .expect("consumer opens");
    let part = client
        .get_partition_properties("1")
        .await
        .expect("partition properties");
    assert_eq!(part.last_enqueued_sequence_number, 4);
    assert!(!part.is_empty);

    // Earliest: every event with typed annotations.
    let receiver = client
        .open_receiver_on_partition(
            "1".into(),
            Some(OpenReceiverOptions {
                start_position: Some(StartPosition {
                    location: StartLocation::Earliest,
                    inclusive: false,
                }),
                ..Default::default()
            }),
        )
        .await
        .expect("receiver");
    let events = read_n(&receiver, 5).await;
    let seqs: Vec<i64> = events.iter().map(|e| e.sequence_number().unwrap()).collect();
    assert_eq!(seqs, vec![0, 1, 2, 3, 4]);
    assert_eq!(events[2].event_data().body(), Some(diagnostic_body(2).as_ref()));
    assert!(events[0].enqueued_time().is_some());
    let third_offset = events[2].offset().clone().expect("offset");
    receiver.close().await.unwrap();

    // After an offset (exclusive) and after a sequence number.
    let receiver = client
        .open_receiver_on_partition(
            "1".into(),
            Some(OpenReceiverOptions {
                start_position: Some(StartPosition {
                    location: StartLocation::Offset(third_offset),
                    inclusive: false,
                }),
                ..Default::default()
            }),
        )
        .await
        .unwrap();
    let events = read_n(&receiver, 2).await;
    assert_eq!(events[0].sequence_number(), Some(3));
    receiver.close().await.unwrap();
    let receiver = client
        .open_receiver_on_partition(
            "1".into(),
            Some(OpenReceiverOptions {
                start_position: Some(StartPosition {
                    location: StartLocation::SequenceNumber(3),
                    inclusive: true,
                }),
                ..Default::default()
            }),
        )
        .await
        .unwrap();
    assert_eq!(read_n(&receiver, 1).await[0].sequence_number(), Some(3));
    receiver.close().await.unwrap();
    client.close().await.unwrap();
}

#[tokio::test]
async fn standin_enforces_epochs_reader_limits_and_authorization() {
    let s = standin(1).await;
    s.state
        .publish("entra-logs", Some(0), (0..3).map(diagnostic_body).collect());

    // Epoch: a second owner-level-0 receiver detaches the first with link:stolen.
    let a = consumer(&s, "listen", KEY, "entra-logs", "$Default").await.unwrap();
    let b = consumer(&s, "listen", KEY, "entra-logs", "$Default").await.unwrap();
    let opts = || OpenReceiverOptions {
        owner_level: Some(0),
        start_position: Some(StartPosition {
            location: StartLocation::Earliest,
            inclusive: false,
        }),
        ..Default::default()
    };
    let ra = a.open_receiver_on_partition("0".into(), Some(opts())).await.unwrap();
    read_n(&ra, 1).await;
    let rb = b.open_receiver_on_partition("0".into(), Some(opts())).await.unwrap();
    read_n(&rb, 3).await;
    let mut stream = std::pin::pin!(ra.stream_events());
    let mut stolen = false;
    let deadline = Instant::now() + Duration::from_secs(10);
    while Instant::now() < deadline {
        match tokio::time::timeout(Duration::from_secs(5), stream.next()).await {
            Ok(Some(Err(e))) => {
                assert!(
                    matches!(
                        e.kind,
                        azure_messaging_eventhubs::error::ErrorKind::ConsumerDisconnected(_)
                    ),
                    "expected a stolen link, got {e:?}"
                );
                stolen = true;
                break;
            }
            Ok(Some(Ok(_))) => continue,
            _ => break,
        }
    }
    assert!(stolen, "the older epoch reader was not disconnected");
    assert_eq!(s.state.steals.load(Ordering::Relaxed), 1);
    assert_eq!(s.state.overlaps("entra-logs"), 0);
    rb.close().await.unwrap();

    // Five non-epoch readers per partition and group; the sixth is refused. (One SDK client
    // shares one link per partition, so each reader has its own client.)
    let mut readers = Vec::new();
    for _ in 0..5 {
        let c = consumer(&s, "listen", KEY, "entra-logs", "$Default").await.unwrap();
        let r = c
            .open_receiver_on_partition(
                "0".into(),
                Some(OpenReceiverOptions {
                    start_position: Some(StartPosition {
                        location: StartLocation::Earliest,
                        inclusive: false,
                    }),
                    ..Default::default()
                }),
            )
            .await
            .unwrap();
        read_n(&r, 1).await;
        readers.push((c, r));
    }
    let c = consumer(&s, "listen", KEY, "entra-logs", "$Default").await.unwrap();
    let sixth = c
        .open_receiver_on_partition(
            "0".into(),
            Some(OpenReceiverOptions {
                start_position: Some(StartPosition {
                    location: StartLocation::Earliest,
                    inclusive: false,
                }),
                ..Default::default()
            }),
        )
        .await
        .unwrap();
    let mut stream = std::pin::pin!(sixth.stream_events());
    let err = tokio::time::timeout(Duration::from_secs(30), stream.next())
        .await
        .expect("answer in time")
        .expect("an item")
        .expect_err("sixth reader refused");
    assert!(
        format!("{err:?}").contains("resource-limit-exceeded") || format!("{err:?}").contains("ResourceLimitExceeded"),
        "{err:?}"
    );

    // Wrong key and unknown hub.
    let bad = consumer(&s, "listen", "d3Jvbmcta2V5", "entra-logs", "$Default").await;
    let err = match bad {
        Err(e) => chain(&e),
        Ok(c) => chain(&c.get_eventhub_properties().await.expect_err("wrong key refused")),
    };
    eprintln!("wrong key: {err}");
    assert!(
        err.to_lowercase().contains("401") || err.contains("nauthorized") || err.contains("InvalidSignature"),
        "{err}"
    );
    let unknown = consumer(&s, "listen", KEY, "no-such-hub", "$Default").await;
    let err = match unknown {
        Err(e) => chain(&e),
        Ok(c) => chain(&c.get_eventhub_properties().await.expect_err("unknown hub refused")),
    };
    eprintln!("unknown hub: {err}");
    assert!(
        err.contains("404") || err.to_lowercase().contains("not found") || err.contains("not-found"),
        "{err}"
    );
}

fn set_connection_string(s: &EventHubsStandIn, key: &str) {
    // SAFETY of the test: every test of this binary sets the same value before reading it.
    std::env::set_var(connection_string_env(), s.connection_string("listen", key, None));
}

#[tokio::test]
async fn collector_reads_partitions_checkpoints_and_resumes_without_duplicates() {
    std::env::set_var("SIEMBRIDGE_EVENTHUB_BALANCE_INTERVAL_MS", "200");
    std::env::set_var("SIEMBRIDGE_EVENTHUB_OWNERSHIP_EXPIRY_MS", "3000");
    let s = standin(4).await;
    set_connection_string(&s, KEY);
    s.state
        .publish("entra-logs", None, (0..2000).map(diagnostic_body).collect());
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("out.ndjson");
    let spec = consumer_group_spec(NS, "entra-logs", "siem", &s.endpoint());
    let config = eventhub_config(spec, dir.path(), &out, None);

    let run = |config| {
        let stop = CancellationToken::new();
        let handle = tokio::spawn(Collector::new(config).run(stop.clone()));
        (stop, handle)
    };
    let (stop, handle) = run(config.clone());
    wait_for(|| delivered_ids(&[&out]).len() == 2000, Duration::from_secs(60)).await;
    // Let a checkpoint land, then stop cleanly.
    tokio::time::sleep(Duration::from_millis(1500)).await;
    stop.cancel();
    handle.await.unwrap().expect("collector ran");
    // Ownership released at shutdown, checkpoints per partition.
    let owners = std::fs::read_to_string(dir.path().join("checkpoints/ownership/ownership.json")).unwrap();
    let owners: serde_json::Value = serde_json::from_str(&owners).unwrap();
    for p in 0..4 {
        assert_eq!(owners[p.to_string()]["owner"], "", "partition {p} released: {owners}");
        let cp: serde_json::Value =
            serde_json::from_str(&std::fs::read_to_string(dir.path().join(format!("checkpoints/{p}.json"))).unwrap())
                .unwrap();
        assert_eq!(cp["state"]["sequenceNumber"], 499, "partition {p}: {cp}");
    }

    // More events; a restart resumes after the checkpoints.
    s.state
        .publish("entra-logs", None, (2000..2400).map(diagnostic_body).collect());
    let (stop, handle) = run(config);
    wait_for(|| delivered_ids(&[&out]).len() == 2400, Duration::from_secs(60)).await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    stop.cancel();
    handle.await.unwrap().expect("collector ran");
    let ids = delivered_ids(&[&out]);
    assert_eq!(ids.len(), 2400);
    let dups: u32 = ids.values().map(|c| c - 1).sum();
    assert_eq!(dups, 0, "a clean restart re-reads nothing");
}

async fn wait_for(mut cond: impl FnMut() -> bool, limit: Duration) {
    let start = Instant::now();
    while !cond() {
        assert!(start.elapsed() < limit, "condition not met in {limit:?}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

fn chain(e: &dyn std::error::Error) -> String {
    let mut text = format!("{e:?}");
    let mut source = e.source();
    while let Some(s) = source {
        text.push_str(&format!(" / {s:?}"));
        source = s.source();
    }
    text
}

fn report_error(path: &std::path::Path) -> Option<String> {
    let text = std::fs::read_to_string(path).ok()?;
    let v: serde_json::Value = serde_json::from_str(&text).ok()?;
    v["logSources"]["entra"]["sourceError"].as_str().map(str::to_string)
}

#[tokio::test]
async fn wrong_key_and_unknown_group_are_reported_and_recover_when_fixed() {
    std::env::set_var("SIEMBRIDGE_EVENTHUB_BALANCE_INTERVAL_MS", "200");
    std::env::set_var("SIEMBRIDGE_EVENTHUB_OWNERSHIP_EXPIRY_MS", "3000");
    let s = standin(2).await;
    // The collector's key is not (yet) the policy's key, and its group does not exist yet.
    const NEW_KEY: &str = "cm90YXRlZC1rZXktZm9yLXRlc3Rz";
    std::env::set_var(connection_string_env(), s.connection_string("listen", NEW_KEY, None));
    s.state
        .publish("entra-logs", None, (0..100).map(diagnostic_body).collect());
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("out.ndjson");
    let report = dir.path().join("report.json");
    let spec = consumer_group_spec(NS, "entra-logs", "late-group", &s.endpoint());
    let config = eventhub_config(spec, dir.path(), &out, Some(&report));
    let stop = CancellationToken::new();
    let handle = tokio::spawn(Collector::new(config).run(stop.clone()));

    // 1. Wrong key: a clear error in the report, nothing delivered, the collector keeps running.
    wait_for(
        || report_error(&report).is_some_and(|e| e.contains("401") && e.contains("InvalidSignature")),
        Duration::from_secs(40),
    )
    .await;
    eprintln!("reported: {:?}", report_error(&report));
    assert!(delivered_ids(&[&out]).is_empty());
    assert!(!handle.is_finished(), "the collector retries instead of exiting");

    // 2. Key rotated on the hub: the collector connects, then finds the group missing.
    s.state.add_policy("listen", NEW_KEY, Rights::LISTEN);
    wait_for(
        || {
            report_error(&report)
                .is_some_and(|e| e.contains("ConsumerGroups/late-group") && e.contains("could not be found"))
        },
        Duration::from_secs(60),
    )
    .await;
    eprintln!("reported: {:?}", report_error(&report));

    // 3. Group created: events flow and the error clears.
    s.state.add_group("entra-logs", "late-group");
    wait_for(|| delivered_ids(&[&out]).len() == 100, Duration::from_secs(60)).await;
    wait_for(|| report_error(&report).is_none(), Duration::from_secs(30)).await;
    stop.cancel();
    handle.await.unwrap().expect("collector ran");
}

/// Entra app credentials: tokens come from siembridge's own provider (pointed at the Entra
/// stand-in) through the SDK's TokenCredential; short-lived tokens are renewed on the
/// connection (the stand-in detaches links whose token expired).
#[tokio::test]
async fn entra_credentials_read_the_hub_and_survive_token_expiry() {
    std::env::set_var("SIEMBRIDGE_EVENTHUB_BALANCE_INTERVAL_MS", "200");
    std::env::set_var("SIEMBRIDGE_EVENTHUB_OWNERSHIP_EXPIRY_MS", "3000");
    const TENANT: &str = "11111111-2222-3333-4444-555555555555";
    const APP: &str = "bbbbbbbb-0000-0000-0000-000000000002";
    let entra = common::entra::Entra::start(TENANT, APP, "app-secret").await;
    entra.state.expires_in.store(4, Ordering::Relaxed);
    let s = standin(2).await;
    *s.state.entra.lock().unwrap() = Some(entra.state.clone());
    let secret = siembridge::api::SecretKeySelector {
        name: "entra-app".into(),
        key: "client-secret".into(),
    };
    std::env::set_var(siembridge::config::SecretSource::env_var_name(&secret), "app-secret");
    let mut spec = consumer_group_spec(NS, "entra-logs", "siem", &s.endpoint());
    spec.credentials = siembridge::api::EventHubCredentials {
        connection_string: None,
        entra: Some(siembridge::api::EntraCredentials {
            tenant_id: TENANT.into(),
            client_id: APP.into(),
            client_secret: Some(secret),
            authority_host: Some(entra.authority.clone()),
            ..Default::default()
        }),
    };
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("out.ndjson");
    let stop = CancellationToken::new();
    let handle = tokio::spawn(Collector::new(eventhub_config(spec, dir.path(), &out, None)).run(stop.clone()));
    s.state
        .publish("entra-logs", None, (0..200).map(diagnostic_body).collect());
    wait_for(|| delivered_ids(&[&out]).len() == 200, Duration::from_secs(60)).await;
    // Past several token lifetimes, new events still flow.
    tokio::time::sleep(Duration::from_secs(9)).await;
    s.state
        .publish("entra-logs", None, (200..400).map(diagnostic_body).collect());
    wait_for(|| delivered_ids(&[&out]).len() == 400, Duration::from_secs(60)).await;
    stop.cancel();
    handle.await.unwrap().expect("collector ran");
    let issued = entra.state.issued.lock().unwrap().len();
    eprintln!("entra tokens issued: {issued}");
    assert!(issued >= 2, "tokens were renewed");
}

/// Keeps the id of every event it is sent.
#[derive(Default)]
struct IdCapture(std::sync::Mutex<Vec<String>>);

#[async_trait::async_trait]
impl siembridge::collector::destinations::Destination for IdCapture {
    async fn send(
        &self,
        batch: &[siembridge::collector::destinations::Event],
    ) -> siembridge::collector::destinations::SendOutcome {
        self.0.lock().unwrap().extend(batch.iter().map(|e| e.id.to_string()));
        siembridge::collector::destinations::SendOutcome::Delivered
    }
}

/// Run a collector of `config` into an [`IdCapture`] until it holds `n` ids (60 s at most), stop
/// it, and return the ids in delivery order.
async fn capture_ids(config: siembridge::config::CollectorConfig, n: usize) -> Vec<String> {
    let capture = std::sync::Arc::new(IdCapture::default());
    let stop = CancellationToken::new();
    let handle = tokio::spawn(
        Collector::new(config)
            .with_destination("file", capture.clone())
            .run(stop.clone()),
    );
    wait_for(|| capture.0.lock().unwrap().len() >= n, Duration::from_secs(60)).await;
    stop.cancel();
    handle.await.unwrap().expect("collector ran");
    let ids = capture.0.lock().unwrap().clone();
    ids
}

/// A destination that takes nothing until the gate opens, then records ids like [`IdCapture`].
#[derive(Default)]
struct Gated {
    open: std::sync::atomic::AtomicBool,
    ids: IdCapture,
}

#[async_trait::async_trait]
impl siembridge::collector::destinations::Destination for Gated {
    async fn send(
        &self,
        batch: &[siembridge::collector::destinations::Event],
    ) -> siembridge::collector::destinations::SendOutcome {
        while !self.open.load(Ordering::Relaxed) {
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        self.ids.send(batch).await
    }
}

/// Value of gauge `name` for `partition` in `registry`, if the series exists.
fn partition_gauge(registry: &prometheus::Registry, name: &str, partition: &str) -> Option<f64> {
    let families = registry.gather();
    let family = families.iter().find(|f| f.name() == name)?;
    family
        .get_metric()
        .iter()
        .find(|m| {
            m.get_label()
                .iter()
                .any(|l| l.name() == "partition" && l.value() == partition)
        })
        .map(|m| m.get_gauge().get_value())
}

/// The Event Hubs lag gauges the `SiembridgeEventHubLagging` alert reads: with the destination
/// holding everything, each partition shows the events not yet read (the newest sequence number
/// the hub reports minus the one read); once delivered, 0 in events and seconds.
#[tokio::test]
async fn partition_lag_gauges_follow_what_is_unread() {
    std::env::set_var("SIEMBRIDGE_EVENTHUB_BALANCE_INTERVAL_MS", "200");
    std::env::set_var("SIEMBRIDGE_EVENTHUB_OWNERSHIP_EXPIRY_MS", "3000");
    let s = standin(2).await;
    set_connection_string(&s, KEY);
    s.state
        .publish("entra-logs", None, (0..2000).map(diagnostic_body).collect());
    let dir = tempfile::tempdir().unwrap();
    let mut spec = consumer_group_spec(NS, "entra-logs", "siem", &s.endpoint());
    spec.prefetch = 10;
    spec.lag_threshold.events = 50;
    let mut config = eventhub_config(spec, dir.path(), &dir.path().join("unused.ndjson"), None);
    config.destinations.values_mut().for_each(|d| d.buffer.max_events = 100);
    let gated = std::sync::Arc::new(Gated::default());
    let registry = prometheus::Registry::new();
    let stop = CancellationToken::new();
    let handle = tokio::spawn(
        Collector::new(config)
            .with_destination("file", gated.clone())
            .with_registry(registry.clone())
            .with_report_interval(Duration::from_millis(500))
            .run(stop.clone()),
    );
    // Held back: the partitions' progress (every 10 s) shows most of each partition unread.
    let lag = |p: &str| partition_gauge(&registry, "siembridge_eventhub_partition_lag_events", p);
    wait_for(
        || ["0", "1"].iter().all(|p| lag(p).is_some_and(|l| l > 500.0)),
        Duration::from_secs(40),
    )
    .await;
    println!(
        "held back: lag events p0 {:?} p1 {:?}, threshold {:?}",
        lag("0"),
        lag("1"),
        registry
            .gather()
            .iter()
            .find(|f| f.name() == "siembridge_eventhub_lag_threshold_events")
            .map(|f| f.get_metric()[0].get_gauge().get_value())
    );
    gated.open.store(true, Ordering::Relaxed);
    wait_for(|| gated.ids.0.lock().unwrap().len() >= 2000, Duration::from_secs(60)).await;
    let seconds = |p: &str| partition_gauge(&registry, "siembridge_eventhub_partition_lag_seconds", p);
    wait_for(
        || {
            ["0", "1"]
                .iter()
                .all(|p| lag(p) == Some(0.0) && seconds(p) == Some(0.0))
        },
        Duration::from_secs(40),
    )
    .await;
    println!(
        "delivered: lag events p0 {:?} p1 {:?}, seconds p0 {:?} p1 {:?}",
        lag("0"),
        lag("1"),
        seconds("0"),
        seconds("1")
    );
    stop.cancel();
    handle.await.unwrap().expect("collector ran");
}

/// Records without an id of their own are identified by namespace, hub, partition, sequence
/// number and index in the event, so destinations that dedupe on ids drop re-deliveries.
#[tokio::test]
async fn records_are_identified_by_namespace_hub_partition_sequence_and_index() {
    std::env::set_var("SIEMBRIDGE_EVENTHUB_BALANCE_INTERVAL_MS", "200");
    std::env::set_var("SIEMBRIDGE_EVENTHUB_OWNERSHIP_EXPIRY_MS", "3000");
    let s = standin(2).await;
    set_connection_string(&s, KEY);
    let two_records = |n: u64| {
        bytes::Bytes::from(format!(
            "{{\"records\":[{{\"time\":\"2026-01-01T10:00:05Z\",\"category\":\"SignInLogs\",\"correlationId\":\"{n}a\"}},\
             {{\"time\":\"2026-01-01T10:00:06Z\",\"category\":\"SignInLogs\",\"correlationId\":\"{n}b\"}}]}}"
        ))
    };
    s.state
        .publish("entra-logs", Some(0), (0..3).map(two_records).collect());
    s.state
        .publish("entra-logs", Some(1), (3..5).map(two_records).collect());
    let dir = tempfile::tempdir().unwrap();
    let spec = consumer_group_spec(NS, "entra-logs", "siem", &s.endpoint());
    let config = eventhub_config(spec, dir.path(), &dir.path().join("unused.ndjson"), None);
    let mut ids = capture_ids(config, 10).await;
    ids.sort();
    let mut expected: Vec<String> = [(0, 0), (0, 1), (0, 2), (1, 0), (1, 1)]
        .iter()
        .flat_map(|(p, seq)| (0..2).map(move |i| format!("{NS}/entra-logs/{p}/{seq}/{i}")))
        .collect();
    expected.sort();
    assert_eq!(ids, expected);
}

/// Events near the 1 MB Event Hubs limit span many AMQP frames (the client's max-frame-size is
/// far smaller): each arrives whole, every record in it delivered. A stand-in that wrote frames
/// over the client's limit once made the collector reconnect forever without reading them.
#[tokio::test]
async fn events_spanning_many_frames_arrive_whole() {
    std::env::set_var("SIEMBRIDGE_EVENTHUB_BALANCE_INTERVAL_MS", "200");
    std::env::set_var("SIEMBRIDGE_EVENTHUB_OWNERSHIP_EXPIRY_MS", "3000");
    let s = standin(2).await;
    set_connection_string(&s, KEY);
    let padding = "x".repeat(1800);
    let big = |n: u64| {
        let records: Vec<String> = (0..450)
            .map(|i| {
                format!(
                    "{{\"time\":\"2026-01-01T10:00:05Z\",\"category\":\"SignInLogs\",\"correlationId\":\"{n}-{i}\",\"note\":\"{padding}\"}}"
                )
            })
            .collect();
        bytes::Bytes::from(format!("{{\"records\":[{}]}}", records.join(",")))
    };
    let events: Vec<bytes::Bytes> = (0..4).map(big).collect();
    assert!(events.iter().all(|e| e.len() > 800_000 && e.len() < 1_000_000));
    s.state.publish("entra-logs", None, events);
    let dir = tempfile::tempdir().unwrap();
    let spec = consumer_group_spec(NS, "entra-logs", "siem", &s.endpoint());
    let config = eventhub_config(spec, dir.path(), &dir.path().join("unused.ndjson"), None);
    let ids: std::collections::BTreeSet<String> = capture_ids(config, 1800).await.into_iter().collect();
    assert_eq!(ids.len(), 1800, "every record of the four events, once");
}

/// An Event Hub that does not exist (yet): a clear error naming it in the report, retries with
/// backoff, and events flow once it is created.
#[tokio::test]
async fn unknown_hub_is_reported_and_read_once_created() {
    std::env::set_var("SIEMBRIDGE_EVENTHUB_BALANCE_INTERVAL_MS", "200");
    std::env::set_var("SIEMBRIDGE_EVENTHUB_OWNERSHIP_EXPIRY_MS", "3000");
    let s = standin(2).await;
    set_connection_string(&s, KEY);
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("out.ndjson");
    let report = dir.path().join("report.json");
    let spec = consumer_group_spec(NS, "intune-logs", "siem", &s.endpoint());
    let config = eventhub_config(spec, dir.path(), &out, Some(&report));
    let stop = CancellationToken::new();
    let handle = tokio::spawn(Collector::new(config).run(stop.clone()));

    wait_for(
        || {
            report_error(&report)
                .is_some_and(|e| e.contains("'contoso-ns.servicebus.windows.net/intune-logs' could not be found"))
        },
        Duration::from_secs(40),
    )
    .await;
    eprintln!("reported: {:?}", report_error(&report));
    assert!(!handle.is_finished(), "the collector retries instead of exiting");

    s.state.add_hub("intune-logs", 2, &["siem"]);
    s.state
        .publish("intune-logs", None, (0..50).map(diagnostic_body).collect());
    wait_for(|| delivered_ids(&[&out]).len() == 50, Duration::from_secs(60)).await;
    wait_for(|| report_error(&report).is_none(), Duration::from_secs(30)).await;
    stop.cancel();
    handle.await.unwrap().expect("collector ran");
}
