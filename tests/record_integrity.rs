//! Every record of a file of awkward but real-world input is accounted for at every
//! destination: delivered, or dead-lettered with its reason, never skipped.
//!
//! The file mixes valid records with lone UTF-16 surrogate escapes, numbers beyond `f64`,
//! nesting of 120 to 5,000 levels, a record over `maxRecordBytes`, records inside an Azure
//! envelope and a malformed line. It is replayed by the collector to a `raw` file, an `ecs` file
//! and a CEF syslog receiver (TCP on 127.0.0.1). The test prints delivered / dead-lettered / lost
//! per destination by record id; lost must be 0, `raw` must get the original bytes of every
//! record the decoder could split, and CEF messages must never be empty.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;
use std::sync::{Arc, Mutex};

use siembridge::api::{
    BatchSpec, EventFormat, FileSpec, ReplaySource, SiemDestinationSpec, SyslogPayload, SyslogSpec, SyslogTransport,
};
use siembridge::collector::Collector;
use siembridge::config::{
    CheckpointConfig, CollectorConfig, DeadLetterConfig, Route, SecretSource, SourceConfig, TelemetryConfig,
    CONFIG_VERSION,
};
use tokio::io::AsyncReadExt;
use tokio_util::sync::CancellationToken;

const MAX_RECORD_BYTES: u64 = 16384;

/// A record `rid` of a diagnostic category, with `extra` fields (JSON text) added at the top
/// and `props` in `properties` (which the ECS document copies, `rid` included).
fn record_with(rid: &str, extra: &str, props: &str) -> String {
    format!(
        r#"{{"time":"2026-11-02T10:00:00Z","category":"SignInLogs","operationName":"Sign-in activity","rid":"{rid}","resourceId":"/tenants/00000000-0000-0000-0000-000000000000/providers/Microsoft.aadiam"{extra},"properties":{{"rid":"{rid}"{props}}}}}"#
    )
}

fn record(rid: &str, extra: &str) -> String {
    record_with(rid, extra, "")
}

/// A record whose `properties` nests `levels` containers in all (the record object included).
fn deep(rid: &str, levels: usize) -> String {
    let inner = levels - 2; // the record and `properties`
    record_with(
        rid,
        "",
        &format!(r#","d":{}"x"{}"#, "[".repeat(inner), "]".repeat(inner)),
    )
}

/// The input lines, and what each record should become: `(rid, raw_delivered, ecs_delivered)`.
fn input() -> (Vec<String>, Vec<(String, bool, bool)>) {
    let mut lines = Vec::new();
    let mut expect = Vec::new();
    fn add(
        line: String,
        rid: &str,
        raw: bool,
        ecs: bool,
        lines: &mut Vec<String>,
        expect: &mut Vec<(String, bool, bool)>,
    ) {
        lines.push(line);
        expect.push((rid.to_string(), raw, ecs));
    }
    let mut n = 0;
    let mut next = || {
        n += 1;
        format!("r-{n:03}")
    };
    for i in 0..40 {
        let rid = next();
        add(
            record(&rid, &format!(r#","n":{i}"#)),
            &rid,
            true,
            true,
            &mut lines,
            &mut expect,
        );
        match i % 4 {
            0 => {
                let rid = next();
                add(
                    record_with(&rid, "", r#","userAgent":"bad \ud800 end""#),
                    &rid,
                    true,
                    true,
                    &mut lines,
                    &mut expect,
                );
            }
            1 => {
                let rid = next();
                add(
                    record(&rid, r#","durationMs":1e400"#),
                    &rid,
                    true,
                    false,
                    &mut lines,
                    &mut expect,
                );
            }
            2 => {
                let rid = next();
                add(
                    record_with(&rid, "", r#","low":"\uDC00","pair":"\ud83d\ude00""#),
                    &rid,
                    true,
                    true,
                    &mut lines,
                    &mut expect,
                );
            }
            _ => {
                let rid = next();
                add(
                    record(&rid, r#","big":-1e400,"s":"\ud800""#),
                    &rid,
                    true,
                    false,
                    &mut lines,
                    &mut expect,
                );
            }
        }
    }
    for levels in [120, 125, 126, 127] {
        let rid = next();
        add(deep(&rid, levels), &rid, true, true, &mut lines, &mut expect);
    }
    for levels in [128, 129, 130, 5000] {
        let rid = next();
        add(deep(&rid, levels), &rid, true, false, &mut lines, &mut expect);
    }
    // An envelope of three: each record is handled on its own.
    let (a, b, c) = (next(), next(), next());
    lines.push(format!(
        r#"{{"records":[{},{},{}]}}"#,
        record(&a, ""),
        record(&b, r#","x":1e999"#),
        record(&c, r#","m":"\udbff""#)
    ));
    expect.push((a, true, true));
    expect.push((b, true, false));
    expect.push((c, true, true));
    // Larger than maxRecordBytes: dead-lettered everywhere.
    let rid = next();
    let pad = "p".repeat(MAX_RECORD_BYTES as usize);
    add(
        record(&rid, &format!(r#","pad":"{pad}""#)),
        &rid,
        false,
        false,
        &mut lines,
        &mut expect,
    );
    // Not JSON: dead-lettered at decode (no destination).
    let rid = next();
    lines.push(format!(r#"{{"rid":"{rid}","broken":"#));
    expect.push((rid, false, false));
    (lines, expect)
}

/// The `rid` named in a piece of text (raw record, ECS document, dead letter).
fn rids_in(text: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut rest = text;
    while let Some(i) = rest.find(r#""rid":"#) {
        rest = &rest[i + 6..];
        let value = rest.trim_start_matches('\\').trim_start_matches('"');
        let id: String = value
            .chars()
            .take_while(|c| c.is_ascii_alphanumeric() || *c == '-')
            .collect();
        if id.starts_with("r-") {
            out.push(id);
        }
    }
    out
}

fn file_destination(path: &Path, format: EventFormat) -> SiemDestinationSpec {
    SiemDestinationSpec {
        file: Some(FileSpec {
            path: path.display().to_string(),
            max_bytes: 1 << 30,
        }),
        format,
        batch: BatchSpec {
            max_events: 50,
            max_bytes: 1 << 20,
            max_latency_ms: 20,
        },
        ..Default::default()
    }
}

/// An RFC 6587 octet-counting receiver: every message received, in order.
async fn syslog_receiver() -> (u16, Arc<Mutex<Vec<String>>>) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let messages: Arc<Mutex<Vec<String>>> = Arc::default();
    let out = messages.clone();
    tokio::spawn(async move {
        while let Ok((mut conn, _)) = listener.accept().await {
            let out = out.clone();
            tokio::spawn(async move {
                let mut buf = Vec::new();
                let mut chunk = vec![0u8; 65536];
                while let Ok(n) = conn.read(&mut chunk).await {
                    if n == 0 {
                        break;
                    }
                    buf.extend_from_slice(&chunk[..n]);
                    // Complete frames `<len> <msg>`.
                    while let Some(sp) = buf.iter().position(|&b| b == b' ') {
                        let Some(len) = std::str::from_utf8(&buf[..sp])
                            .ok()
                            .and_then(|s| s.parse::<usize>().ok())
                        else {
                            break;
                        };
                        if buf.len() < sp + 1 + len {
                            break;
                        }
                        let msg = String::from_utf8_lossy(&buf[sp + 1..sp + 1 + len]).into_owned();
                        out.lock().unwrap().push(msg);
                        buf.drain(..sp + 1 + len);
                    }
                }
            });
        }
    });
    (port, messages)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_record_of_awkward_input_is_delivered_or_dead_lettered_with_its_reason() {
    let dir = tempfile::tempdir().unwrap();
    let (lines, expect) = input();
    let records = dir.path().join("records.ndjson");
    std::fs::write(&records, lines.join("\n") + "\n").unwrap();
    let (port, cef_messages) = syslog_receiver().await;
    let destinations = BTreeMap::from([
        (
            "raw".to_string(),
            file_destination(&dir.path().join("raw.ndjson"), EventFormat::Raw),
        ),
        (
            "ecs".to_string(),
            file_destination(&dir.path().join("ecs.ndjson"), EventFormat::Ecs),
        ),
        (
            "cef".to_string(),
            SiemDestinationSpec {
                syslog: Some(SyslogSpec {
                    host: "127.0.0.1".into(),
                    port: Some(port),
                    transport: SyslogTransport::Tcp,
                    payload: SyslogPayload::Cef,
                    app_name: "siembridge".into(),
                    facility: 13,
                    max_message_bytes: 65536,
                    tls: None,
                    confirm_delay_ms: 0,
                    hostname: None,
                }),
                format: EventFormat::Ecs,
                ..Default::default()
            },
        ),
    ]);
    let config = CollectorConfig {
        version: CONFIG_VERSION.to_string(),
        collector: "integrity".into(),
        namespace: "default".into(),
        source: SourceConfig::Replay(ReplaySource {
            paths: vec![records.display().to_string()],
            ..Default::default()
        }),
        routes: vec![Route {
            log_source: "entra".into(),
            destinations: destinations.keys().cloned().collect(),
            max_record_bytes: Some(MAX_RECORD_BYTES),
            ..Default::default()
        }],
        destinations,
        checkpoint: CheckpointConfig::File {
            dir: dir.path().join("checkpoints").display().to_string(),
        },
        secrets: SecretSource::Environment,
        dead_letter: DeadLetterConfig::in_dir(dir.path().join("dead-letter").display().to_string()),
        telemetry: TelemetryConfig::default(),
        report: None,
    };
    let summary = tokio::time::timeout(
        std::time::Duration::from_secs(120),
        Collector::new(config).run(CancellationToken::new()),
    )
    .await
    .expect("collector finished in time")
    .unwrap();
    assert!(summary.source_finished && summary.fully_checkpointed, "{summary:?}");
    // Wait until the syslog receiver has read what the collector sent.
    for _ in 0..100 {
        if cef_messages.lock().unwrap().len() >= expect.iter().filter(|e| e.2).count() {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }

    // What each destination got.
    let read = |name: &str| std::fs::read_to_string(dir.path().join(name)).unwrap_or_default();
    let raw_text = read("raw.ndjson");
    let ecs_text = read("ecs.ndjson");
    let mut delivered: BTreeMap<&str, Vec<String>> = BTreeMap::new();
    let first_rid = |l: &str| rids_in(l).into_iter().next();
    delivered.insert("raw", raw_text.lines().filter_map(first_rid).collect());
    delivered.insert("ecs", ecs_text.lines().filter_map(first_rid).collect());
    // CEF carries no vendor copy: map its `id` back through the ECS documents' `event.id`.
    let rid_of_event: BTreeMap<String, String> = ecs_text
        .lines()
        .filter_map(|l| {
            let v: serde_json::Value = siembridge::normalize::parse_document(l.as_bytes())?;
            Some((v["event"]["id"].as_str()?.to_string(), rids_in(l).pop()?))
        })
        .collect();
    let cef = cef_messages.lock().unwrap().clone();
    let mut cef_rids = Vec::new();
    for m in &cef {
        let cef_part = m.split_once("CEF:0|").map(|(_, c)| c).unwrap_or("");
        assert!(cef_part.split('|').count() >= 7, "CEF message without its fields: {m}");
        let id = m
            .split_once("id=\"")
            .and_then(|(_, r)| r.split_once('"'))
            .map(|(id, _)| id.to_string());
        cef_rids.push(
            id.and_then(|id| rid_of_event.get(&id).cloned())
                .unwrap_or_else(|| format!("?{m}")),
        );
    }
    delivered.insert("cef", cef_rids);

    // Dead letters, by destination (decode failures have none: they count for all).
    let mut dead: BTreeMap<String, Vec<(String, String, String)>> = BTreeMap::new();
    for f in std::fs::read_dir(dir.path().join("dead-letter")).unwrap() {
        for line in std::fs::read_to_string(f.unwrap().path()).unwrap().lines() {
            // Dead letters hold records as they are (maybe not `Value`-parsable): read them raw.
            // `record` when the bytes are one JSON value on one line, else `recordBase64`.
            #[derive(serde::Deserialize)]
            struct Line {
                stage: String,
                reason: String,
                destination: Option<String>,
                record: Option<Box<serde_json::value::RawValue>>,
                #[serde(rename = "recordBase64")]
                record_base64: Option<String>,
            }
            let v: Line = serde_json::from_str(line).unwrap();
            let record = match (&v.record, &v.record_base64) {
                (Some(raw), _) => raw.get().to_string(),
                (None, Some(b64)) => {
                    use base64::Engine;
                    let bytes = base64::engine::general_purpose::STANDARD.decode(b64).unwrap();
                    String::from_utf8_lossy(&bytes).into_owned()
                }
                (None, None) => panic!("a dead letter without its record: {line}"),
            };
            let (reason, stage) = (v.reason, v.stage);
            let rid = rids_in(&record).pop().unwrap_or_else(|| format!("?{record:.40}"));
            let dests: Vec<String> = match v.destination {
                Some(d) => vec![d],
                None => vec!["raw".into(), "ecs".into(), "cef".into()],
            };
            for d in dests {
                dead.entry(d)
                    .or_default()
                    .push((rid.clone(), stage.clone(), reason.clone()));
            }
        }
    }

    let all: BTreeSet<&str> = expect.iter().map(|(r, _, _)| r.as_str()).collect();
    let mut total_lost = 0;
    for dest in ["raw", "ecs", "cef"] {
        let got = &delivered[dest];
        let got_set: BTreeSet<&str> = got.iter().map(String::as_str).collect();
        let dl = dead.get(dest).cloned().unwrap_or_default();
        let dl_set: BTreeSet<&str> = dl.iter().map(|(r, _, _)| r.as_str()).collect();
        let lost: Vec<&&str> = all
            .iter()
            .filter(|r| !got_set.contains(**r) && !dl_set.contains(**r))
            .collect();
        let duplicated = got.len() - got_set.len();
        println!(
            "{dest}: {} records, delivered {}, dead-lettered {}, duplicated {duplicated}, lost {} {:?}",
            all.len(),
            got_set.len(),
            dl_set.len(),
            lost.len(),
            lost
        );
        total_lost += lost.len();
        assert!(
            got_set.is_disjoint(&dl_set),
            "{dest}: a record both delivered and dead-lettered"
        );
        assert_eq!(duplicated, 0, "{dest}");
        for (rid, raw_ok, ecs_ok) in &expect {
            let want = if dest == "raw" { *raw_ok } else { *ecs_ok };
            assert_eq!(got_set.contains(rid.as_str()), want, "{dest}: {rid} delivered?");
        }
        for (rid, stage, reason) in &dl {
            assert!(
                !reason.is_empty(),
                "{dest}: {rid} dead-lettered at {stage} without a reason"
            );
        }
    }
    assert_eq!(total_lost, 0, "records neither delivered nor dead-lettered");

    // `raw` gets the exact bytes of each record the decoder split out.
    let raw_lines: Vec<&str> = raw_text.lines().collect();
    for l in &lines {
        if l.starts_with(r#"{"records""#) {
            continue;
        }
        let Some(rid) = rids_in(l).into_iter().next() else {
            continue;
        };
        let wanted_raw = expect.iter().any(|(r, raw, _)| *r == rid && *raw);
        if wanted_raw {
            assert!(
                raw_lines.contains(&l.as_str()),
                "raw: {rid} not delivered byte for byte"
            );
        }
    }
    // Reasons say what is wrong.
    let reasons_of = |rid: &str| -> Vec<String> {
        dead.get("ecs")
            .into_iter()
            .flatten()
            .filter(|(r, _, _)| r == rid)
            .map(|(_, _, why)| why.clone())
            .collect()
    };
    let ecs_dead: Vec<&(String, String, String)> = dead.get("ecs").into_iter().flatten().collect();
    assert!(
        ecs_dead.iter().any(|(_, _, why)| why.contains("number out of range")),
        "{ecs_dead:?}"
    );
    assert!(
        ecs_dead
            .iter()
            .any(|(_, _, why)| why.contains("deeper than 127 levels")),
        "{ecs_dead:?}"
    );
    let big = &expect[expect.len() - 2].0;
    assert!(
        reasons_of(big).iter().any(|why| why.contains("maxRecordBytes")),
        "{:?}",
        reasons_of(big)
    );
    // A repaired record keeps U+FFFD in ECS, and its original bytes elsewhere.
    assert!(
        ecs_text.contains("bad \u{fffd} end"),
        "lone surrogate replaced in the ECS document"
    );
    assert!(raw_text.contains(r"bad \ud800 end"));
}
