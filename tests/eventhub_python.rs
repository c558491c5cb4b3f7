//! The Event Hubs stand-in against a second official client: the Python SDK (`azure-eventhub`,
//! pure-Python AMQP stack) in emulator mode, driven by `e2e/eventhub_interop.py`. The Python
//! producer publishes (a batch to a partition, a batch with a partition key) and the events are
//! checked in the stand-in and read back with the Rust SDK; the Python consumer reads events the
//! stand-in holds from the start and after a sequence number, and the hub and partition
//! properties, which are compared with the stand-in's log.
//!
//! Needs `SIEMBRIDGE_TEST_PYTHON` (or `e2e/.venv`, created by `e2e/test-all.sh`) with the
//! packages of `e2e/requirements.txt`. Without them the test is skipped, except with `CI=true`.
//!
//! Run: `cargo test --test eventhub_python -- --nocapture`.

mod common;
#[path = "common/eventhubs.rs"]
mod eventhubs;
#[path = "common/python.rs"]
mod python;

use std::collections::HashMap;
use std::path::PathBuf;
use std::process::Stdio;
use std::time::Duration;

use azure_messaging_eventhubs::models::{AmqpSimpleValue, ReceivedEventData};
use azure_messaging_eventhubs::{ConsumerClient, OpenReceiverOptions, StartLocation, StartPosition};
use futures::StreamExt;
use serde_json::{json, Value};

use eventhubs::{EventHubsStandIn, Rights, StoredEvent};

const NS: &str = "contoso-ns.servicebus.windows.net";
const HUB: &str = "entra-logs";
const KEY: &str = "c2VjcmV0LWtleS1mb3ItdGVzdHM=";
const PARTITION_KEY: &str = "contoso-key";
/// Events per Python batch and events seeded for the Python consumer.
const COUNT: usize = 5;
const SEEDED: usize = 6;
/// Exit status of the script when `azure.eventhub` cannot be imported.
const NOT_INSTALLED: i32 = 3;
const SETUP: &str = "run e2e/test-all.sh once (it creates e2e/.venv with azure-eventhub) and export \
                     SIEMBRIDGE_TEST_PYTHON=$PWD/e2e/.venv/bin/python";

fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// Skip (outside CI) or fail (in CI) when Python or the SDK is missing.
fn missing(what: &str) -> bool {
    let msg = format!("{what}: {SETUP}");
    if std::env::var("CI").is_ok_and(|v| v == "true") {
        panic!("{msg}");
    }
    eprintln!("SKIPPED: {msg}");
    true
}

/// Run the interop script; `None` when the SDK is not installed (skip outside CI).
async fn script(python: &str, args: &[&str]) -> Option<Value> {
    let child = tokio::process::Command::new(python)
        .arg(repo().join("e2e/eventhub_interop.py"))
        .args(args)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn();
    let child = match child {
        Ok(c) => c,
        Err(e) => {
            missing(&format!("cannot run {python} ({e})"));
            return None;
        }
    };
    let out = tokio::time::timeout(Duration::from_secs(180), child.wait_with_output())
        .await
        .expect("the Python SDK finished within 180 s")
        .expect("python ran");
    let stderr = String::from_utf8_lossy(&out.stderr);
    if out.status.code() == Some(NOT_INSTALLED) {
        missing(&format!("{python} cannot import azure-eventhub ({})", stderr.trim()));
        return None;
    }
    assert!(
        out.status.success(),
        "eventhub_interop.py {} failed ({:?}):\n{stderr}",
        args[0],
        out.status
    );
    Some(
        serde_json::from_slice(&out.stdout).unwrap_or_else(|e| panic!("{e}: {}", String::from_utf8_lossy(&out.stdout))),
    )
}

fn emulator_connection_string(s: &EventHubsStandIn, policy: &str) -> String {
    format!(
        "Endpoint=sb://{}/;SharedAccessKeyName={policy};SharedAccessKey={KEY};EntityPath={HUB};UseDevelopmentEmulator=true",
        s.addr
    )
}

/// Application properties of a stored event as JSON (strings and integers).
fn stored_properties(e: &StoredEvent) -> Value {
    use fe2o3_amqp::types::primitives::SimpleValue;
    let mut map = serde_json::Map::new();
    for (k, v) in e.properties.iter().flat_map(|p| p.0.iter()) {
        let v = match v {
            SimpleValue::String(s) => json!(s),
            SimpleValue::Long(n) => json!(n),
            SimpleValue::Int(n) => json!(n),
            other => json!(format!("{other:?}")),
        };
        map.insert(k.clone(), v);
    }
    Value::Object(map)
}

fn rust_sdk_properties(p: Option<&HashMap<String, AmqpSimpleValue>>) -> Value {
    let mut map = serde_json::Map::new();
    for (k, v) in p.into_iter().flatten() {
        let v = match v {
            AmqpSimpleValue::String(s) => json!(s),
            AmqpSimpleValue::Long(n) => json!(n),
            AmqpSimpleValue::Int(n) => json!(n),
            other => json!(format!("{other:?}")),
        };
        map.insert(k.clone(), v);
    }
    Value::Object(map)
}

fn body_json(body: &[u8]) -> Value {
    serde_json::from_slice(body).unwrap_or_else(|e| panic!("{e}: {}", String::from_utf8_lossy(body)))
}

/// Every event of a partition, from the start, with the official Rust SDK. A receive error is
/// printed and the read starts over (at most three attempts), so a transient link error on a
/// loaded machine shows in the log instead of failing the interop check.
async fn read_with_rust_sdk(s: &EventHubsStandIn, partition: usize, n: usize) -> Vec<ReceivedEventData> {
    let mut last_error = String::new();
    for attempt in 1..=3 {
        match try_read_with_rust_sdk(s, partition, n).await {
            Ok(events) => return events,
            Err(e) => {
                eprintln!("Rust SDK read of partition {partition}, attempt {attempt}: {e}");
                last_error = e;
            }
        }
    }
    panic!("Rust SDK could not read partition {partition}: {last_error}");
}

async fn try_read_with_rust_sdk(
    s: &EventHubsStandIn,
    partition: usize,
    n: usize,
) -> Result<Vec<ReceivedEventData>, String> {
    let client = ConsumerClient::builder()
        .with_consumer_group("siem".to_string())
        .with_custom_endpoint(s.endpoint())
        .open_with_connection_string(&s.connection_string("listen", KEY, Some(HUB)), None)
        .await
        .map_err(|e| format!("open: {e:?}"))?;
    let receiver = client
        .open_receiver_on_partition(
            partition.to_string(),
            Some(OpenReceiverOptions {
                start_position: Some(StartPosition {
                    location: StartLocation::Earliest,
                    inclusive: false,
                }),
                ..Default::default()
            }),
        )
        .await
        .map_err(|e| format!("receiver: {e:?}"))?;
    let mut out = Vec::new();
    let mut failure = None;
    {
        let mut stream = std::pin::pin!(receiver.stream_events());
        while out.len() < n {
            match tokio::time::timeout(Duration::from_secs(10), stream.next()).await {
                Ok(Some(Ok(ev))) => out.push(ev),
                Ok(Some(Err(e))) => {
                    failure = Some(format!("receive: {e:?}"));
                    break;
                }
                Ok(None) => {
                    failure = Some("stream closed".to_string());
                    break;
                }
                Err(_) => {
                    failure = Some(format!("{} of {n} events in 10 s", out.len()));
                    break;
                }
            }
        }
    }
    let _ = receiver.close().await;
    let _ = client.close().await;
    match failure {
        Some(f) => Err(f),
        None => Ok(out),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn python_sdk_publishes_to_and_reads_from_the_standin() {
    siembridge::tls::install_crypto_provider();
    let python = python::python();
    let s = EventHubsStandIn::start(NS).await;
    s.state.add_hub(HUB, 4, &["siem"]);
    s.state.add_policy("listen", KEY, Rights::LISTEN);
    s.state.add_policy("send", KEY, Rights::SEND);

    // (a) The Python producer publishes: a batch to partition 1, a batch with a partition key.
    let Some(sent) = script(
        &python,
        &[
            "publish",
            &emulator_connection_string(&s, "send"),
            "1",
            PARTITION_KEY,
            &COUNT.to_string(),
        ],
    )
    .await
    else {
        return;
    };
    assert_eq!(sent, json!({"partition": COUNT, "key": COUNT}));
    let lengths = s.state.partition_lengths(HUB);
    let keyed: Vec<usize> = (0..lengths.len())
        .filter(|&p| {
            s.state
                .partition(HUB, p)
                .events()
                .iter()
                .any(|e| e.partition_key.as_deref() == Some(PARTITION_KEY))
        })
        .collect();
    assert_eq!(keyed.len(), 1, "one partition holds the keyed batch: {lengths:?}");
    let key_partition = keyed[0];
    assert_eq!(lengths.iter().sum::<usize>(), 2 * COUNT, "{lengths:?}");

    // In the stand-in: bodies and application properties as sent, the key on every keyed event.
    let by_partition: Vec<StoredEvent> = s
        .state
        .partition(HUB, 1)
        .events()
        .into_iter()
        .filter(|e| e.partition_key.is_none())
        .collect();
    assert_eq!(by_partition.len(), COUNT);
    for (n, e) in by_partition.iter().enumerate() {
        assert_eq!(body_json(&e.body), json!({"interop": "partition", "n": n}));
        assert_eq!(stored_properties(e), json!({"source": "python-sdk", "n": n}));
    }
    let by_key: Vec<StoredEvent> = s.state.partition(HUB, key_partition).events();
    let by_key: Vec<&StoredEvent> = by_key.iter().filter(|e| e.partition_key.is_some()).collect();
    assert_eq!(by_key.len(), COUNT);
    for (n, e) in by_key.iter().enumerate() {
        assert_eq!(e.partition_key.as_deref(), Some(PARTITION_KEY));
        assert_eq!(body_json(&e.body), json!({"interop": "key", "n": n}));
        assert_eq!(
            stored_properties(e),
            json!({"source": "python-sdk", "n": n, "key": PARTITION_KEY})
        );
    }

    // Read back with the official Rust SDK consumer.
    let read = read_with_rust_sdk(&s, 1, lengths[1]).await;
    let read: Vec<&ReceivedEventData> = read.iter().filter(|e| e.partition_key().is_none()).collect();
    assert_eq!(read.len(), COUNT);
    for (n, e) in read.iter().enumerate() {
        assert_eq!(
            body_json(e.event_data().body().expect("body")),
            json!({"interop": "partition", "n": n})
        );
        assert_eq!(
            rust_sdk_properties(e.event_data().properties()),
            json!({"source": "python-sdk", "n": n})
        );
    }
    let read = read_with_rust_sdk(&s, key_partition, lengths[key_partition]).await;
    let read: Vec<&ReceivedEventData> = read.iter().filter(|e| e.partition_key().is_some()).collect();
    assert_eq!(read.len(), COUNT);
    for (n, e) in read.iter().enumerate() {
        assert_eq!(e.partition_key().as_deref(), Some(PARTITION_KEY));
        assert_eq!(
            body_json(e.event_data().body().expect("body")),
            json!({"interop": "key", "n": n})
        );
        assert_eq!(
            rust_sdk_properties(e.event_data().properties()),
            json!({"source": "python-sdk", "n": n, "key": PARTITION_KEY})
        );
    }
    println!(
        "python producer: {COUNT} events to partition 1, {COUNT} with key {PARTITION_KEY:?} (partition \
         {key_partition}); stand-in holds {lengths:?}; Rust SDK read both batches back intact"
    );

    // (b) The Python consumer reads what the stand-in holds: events seeded in-process on an
    // empty partition, from the start and after a sequence number.
    let seeded = (0..lengths.len())
        .find(|&p| lengths[p] == 0)
        .expect("an empty partition");
    let bodies: Vec<bytes::Bytes> = (0..SEEDED)
        .map(|n| bytes::Bytes::from(json!({"seeded": n, "pad": "x".repeat(n * 3)}).to_string()))
        .collect();
    s.state.publish(HUB, Some(seeded), bodies[..3].to_vec());
    tokio::time::sleep(Duration::from_millis(20)).await; // a later enqueued time for the rest
    s.state.publish(HUB, Some(seeded), bodies[3..].to_vec());
    let from_sequence = 2;
    let Some(got) = script(
        &python,
        &[
            "receive",
            &emulator_connection_string(&s, "listen"),
            "siem",
            &seeded.to_string(),
            &from_sequence.to_string(),
            &SEEDED.to_string(),
        ],
    )
    .await
    else {
        return;
    };
    let log = s.state.partition(HUB, seeded).events();
    let last = log.last().expect("seeded events");
    assert_eq!(got["hub"]["name"], json!(HUB));
    assert_eq!(got["hub"]["partition_ids"], json!(["0", "1", "2", "3"]));
    assert_eq!(
        got["partition"],
        json!({
            "id": seeded.to_string(),
            "beginning_sequence_number": 0,
            "last_enqueued_sequence_number": last.sequence_number,
            "last_enqueued_offset": last.offset.to_string(),
            "last_enqueued_ms": last.enqueued_ms,
            "is_empty": false,
        })
    );
    let expected = |e: &StoredEvent| {
        json!({
            "sequence_number": e.sequence_number,
            "offset": e.offset.to_string(),
            "enqueued_ms": e.enqueued_ms,
            "body": String::from_utf8_lossy(&e.body),
            "partition_key": null,
            "properties": {},
        })
    };
    let earliest: Vec<Value> = log.iter().map(expected).collect();
    assert_eq!(got["earliest"], json!(earliest), "from '-1'");
    let after: Vec<Value> = log[from_sequence + 1..].iter().map(expected).collect();
    assert_eq!(
        got["after_sequence"],
        json!(after),
        "after sequence number {from_sequence}"
    );
    println!(
        "python consumer: {} events from '-1' and {} after sequence number {from_sequence} on partition \
         {seeded} (sequence numbers {:?}, offsets {:?}), hub and partition properties match, {} s",
        earliest.len(),
        after.len(),
        log.iter().map(|e| e.sequence_number).collect::<Vec<_>>(),
        log.iter().map(|e| e.offset).collect::<Vec<_>>(),
        got["seconds"]
    );

    // And the Python consumer reads back what the Python producer sent (properties included).
    let Some(own) = script(
        &python,
        &[
            "receive",
            &emulator_connection_string(&s, "listen"),
            "$Default",
            "1",
            "0",
            &COUNT.to_string(),
        ],
    )
    .await
    else {
        return;
    };
    let own_events = own["earliest"].as_array().expect("events");
    assert_eq!(own_events.len(), COUNT);
    for (n, e) in own_events.iter().enumerate() {
        assert_eq!(e["properties"], json!({"source": "python-sdk", "n": n}));
        assert_eq!(
            serde_json::from_str::<Value>(e["body"].as_str().unwrap_or_default()).ok(),
            Some(json!({"interop": "partition", "n": n}))
        );
    }
    println!(
        "python round trip: {} events the Python producer sent read back by the Python consumer",
        own_events.len()
    );
}
