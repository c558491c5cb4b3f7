//! Pipeline throughput and memory benchmark (plain binary, `cargo bench --bench pipeline`).
//!
//! 1. Peak RSS of a collector whose destination is stalled: the replay file is much larger than
//!    the destination buffer, so memory must stay near the buffer's size (measured first, so the
//!    rest of the run does not raise the high-water mark).
//! 2. Throughput of one collector on one core (current-thread runtime): replay of realistic
//!    diagnostic records (Entra sign-ins and audit, Intune, Defender; 1-2 KB each, ten to an Event
//!    Hubs body) through decode -> normalize (ECS) -> encode (NDJSON) to a destination that
//!    discards, against plain `serde_json` parse + serialize of the same bytes in the same run.
//!
//! `BENCH_RECORDS` sets the record count (default 100000).

#![recursion_limit = "256"]

use std::collections::BTreeMap;
use std::io::Write;
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use async_trait::async_trait;
use siembridge::api::{BatchSpec, BufferSpec, EventFormat, ReplaySource, SiemDestinationSpec, StdoutSpec};
use siembridge::collector::destinations::{http::encode, Destination, Event, SendOutcome};
use siembridge::collector::Collector;
use siembridge::config::{
    CheckpointConfig, CollectorConfig, DeadLetterConfig, Route, SecretSource, SourceConfig, CONFIG_VERSION,
};
use tokio_util::sync::CancellationToken;

const PER_BODY: usize = 10;
const TENANT: &str = "11111111-2222-3333-4444-555555555555";

fn signin(i: usize) -> serde_json::Value {
    let cat = [
        "SignInLogs",
        "NonInteractiveUserSignInLogs",
        "ServicePrincipalSignInLogs",
    ][i % 3];
    serde_json::json!({
        "time": format!("2026-01-15T08:{:02}:{:02}.{:07}Z", i / 60 % 60, i % 60, i % 9_999_999),
        "resourceId": format!("/tenants/{TENANT}/providers/Microsoft.aadiam"),
        "operationName": "Sign-in activity", "operationVersion": "1.0", "category": cat,
        "tenantId": TENANT, "resultType": if i.is_multiple_of(7) { "50126" } else { "0" }, "resultSignature": "None",
        "resultDescription": if i.is_multiple_of(7) { "Invalid username or password." } else { "" },
        "durationMs": i % 500, "callerIpAddress": format!("198.51.100.{}", i % 250),
        "correlationId": format!("aaaaaaaa-2222-4222-8222-{i:012}"), "identity": format!("User {}", i % 1000),
        "Level": 4, "location": "FR",
        "properties": {
            "id": format!("aaaaaaaa-3333-4333-8333-{i:012}"),
            "createdDateTime": format!("2026-01-15T08:{:02}:{:02}+00:00", i / 60 % 60, i % 60),
            "userDisplayName": format!("User {}", i % 1000), "userPrincipalName": format!("user{}@contoso.example", i % 1000),
            "userId": format!("cccccccc-0000-4000-8000-{:012}", i % 1000), "appId": "bbbbbbbb-0000-0000-0000-000000000002",
            "appDisplayName": "Microsoft Teams", "ipAddress": format!("198.51.100.{}", i % 250),
            "clientAppUsed": "Mobile Apps and Desktop clients", "isInteractive": i.is_multiple_of(3),
            "status": {"errorCode": if i.is_multiple_of(7) { 50126 } else { 0 }, "failureReason": "Other."},
            "deviceDetail": {"deviceId": "", "displayName": "", "operatingSystem": "Windows10", "browser": "Edge 120.0.0", "isCompliant": false, "isManaged": false, "trustType": ""},
            "location": {"city": "Paris", "state": "Paris", "countryOrRegion": "FR", "geoCoordinates": {"latitude": 48.85, "longitude": 2.35}},
            "conditionalAccessStatus": "notApplied", "riskLevelDuringSignIn": "none", "riskLevelAggregated": "none",
            "riskState": "none", "riskDetail": "none", "authenticationRequirement": "singleFactorAuthentication",
            "tokenIssuerType": "AzureAD", "resourceDisplayName": "Microsoft Graph",
            "resourceId": "00000003-0000-0000-c000-000000000000",
            "authenticationDetails": [{"authenticationMethod": "Password", "succeeded": !i.is_multiple_of(7), "authenticationStepResultDetail": "Correct password"}]
        }
    })
}

fn audit(i: usize) -> serde_json::Value {
    serde_json::json!({
        "time": format!("2026-01-15T09:{:02}:{:02}.0000000Z", i / 60 % 60, i % 60),
        "resourceId": format!("/tenants/{TENANT}/providers/Microsoft.aadiam"), "operationName": "Add member to group",
        "operationVersion": "1.0", "category": "AuditLogs", "tenantId": TENANT, "resultSignature": "None",
        "durationMs": 0, "callerIpAddress": "203.0.113.25", "correlationId": format!("dddddddd-2222-4222-8222-{i:012}"), "Level": 4,
        "properties": {
            "id": format!("Directory_{i:08}"), "category": "GroupManagement", "result": "success", "resultReason": "",
            "activityDisplayName": "Add member to group", "activityDateTime": "2026-01-15T09:00:11+00:00",
            "loggedByService": "Core Directory", "operationType": "Assign",
            "initiatedBy": {"user": {"id": "cccccccc-0000-4000-8000-000000000001", "userPrincipalName": "admin@contoso.example", "ipAddress": "203.0.113.25"}},
            "targetResources": [
                {"id": format!("eeeeeeee-0000-4000-8000-{:012}", i % 50), "displayName": "Finance Team", "type": "Group",
                 "modifiedProperties": [{"displayName": "Group.DisplayName", "oldValue": null, "newValue": "\"Finance Team\""}]},
                {"id": format!("cccccccc-0000-4000-8000-{:012}", i % 1000), "userPrincipalName": format!("user{}@contoso.example", i % 1000), "type": "User"}
            ],
            "additionalDetails": [{"key": "User-Agent", "value": "Mozilla/5.0 (Windows NT 10.0; Win64; x64)"}]
        }
    })
}

fn intune(i: usize) -> serde_json::Value {
    serde_json::json!({
        "time": format!("2026-01-15T11:{:02}:{:02}.0000000Z", i / 60 % 60, i % 60), "tenantId": TENANT,
        "resourceId": format!("/tenants/{TENANT}/providers/Microsoft.Intune"), "operationName": "DeviceComplianceOrg",
        "category": "DeviceComplianceOrg", "resultType": "None", "identity": "",
        "properties": {
            "DeviceId": format!("77777777-0000-4000-8000-{i:012}"), "DeviceName": format!("WS-{}", i % 5000), "DeviceType": "Desktop",
            "OSDescription": "Windows", "OSVersion": "10.0.22631.3007", "OwnerType": "Company", "UPN": format!("user{}@contoso.example", i % 1000),
            "UserName": format!("User {}", i % 1000), "ComplianceState": if i.is_multiple_of(3) { "Noncompliant" } else { "Compliant" },
            "ManagedBy": "Intune", "LastContact": "2026-01-15T11:00:00Z", "SerialNumber": format!("SN{i:08}"),
            "PrimaryUser": "cccccccc-0000-4000-8000-000000000002", "DeviceHealthThreatLevel": "Secured",
            "EncryptionStatusString": "True", "JailBroken": "False", "IMEI": "", "MEID": "", "Model": "Latitude 7440", "Manufacturer": "Dell Inc."
        }
    })
}

fn defender(i: usize) -> serde_json::Value {
    serde_json::json!({
        "time": format!("2026-01-15T10:{:02}:{:02}.0000000Z", i / 60 % 60, i % 60), "tenantId": TENANT,
        "operationName": "Publish", "category": "AdvancedHunting-DeviceProcessEvents",
        "_TimeReceivedBySvc": "2026-01-15T09:59:58.0000000Z",
        "properties": {
            "Timestamp": "2026-01-15T09:59:57.5000000Z", "DeviceId": format!("{:040x}", i), "DeviceName": format!("ws-{}.contoso.example", i % 5000),
            "ActionType": "ProcessCreated", "FileName": "cmd.exe", "FolderPath": "C:\\Windows\\System32\\cmd.exe",
            "SHA1": "0123456789abcdef0123456789abcdef01234567", "SHA256": "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef",
            "ProcessId": 4000 + i % 1000, "ProcessCommandLine": "cmd.exe /c whoami /all", "AccountDomain": "contoso", "AccountName": format!("user{}", i % 1000),
            "AccountSid": "S-1-5-21-1111111111-2222222222-3333333333-1001", "InitiatingProcessFileName": "explorer.exe",
            "InitiatingProcessCommandLine": "explorer.exe", "InitiatingProcessParentFileName": "userinit.exe",
            "ReportId": i, "MachineGroup": "Workstations", "AppGuardContainerId": ""
        }
    })
}

fn record(i: usize) -> serde_json::Value {
    match i % 10 {
        0..=3 => signin(i),
        4 | 5 => audit(i),
        6 | 7 => intune(i),
        _ => defender(i),
    }
}

/// Write `n` records, ten to an Event Hubs body, one body a line; returns (bytes, bodies).
fn write_records(path: &Path, n: usize) -> u64 {
    let mut f = std::io::BufWriter::new(std::fs::File::create(path).expect("create records"));
    let mut bytes = 0;
    let mut i = 0;
    while i < n {
        let records: Vec<_> = (i..(i + PER_BODY).min(n)).map(record).collect();
        let line = serde_json::to_string(&serde_json::json!({ "records": records })).expect("json");
        bytes += line.len() as u64 + 1;
        writeln!(f, "{line}").expect("write");
        i += PER_BODY;
    }
    f.flush().expect("flush");
    bytes
}

/// Discards batches after encoding them as the `http` destination would.
#[derive(Default)]
struct Discard {
    events: AtomicU64,
    bytes: AtomicU64,
}

#[async_trait]
impl Destination for Discard {
    async fn send(&self, batch: &[Event]) -> SendOutcome {
        let body = encode(batch, siembridge::api::HttpEncoding::Ndjson);
        self.events.fetch_add(batch.len() as u64, Ordering::Relaxed);
        self.bytes
            .fetch_add(std::hint::black_box(body).len() as u64, Ordering::Relaxed);
        SendOutcome::Delivered
    }
}

/// Never answers.
struct Stalled;

#[async_trait]
impl Destination for Stalled {
    async fn send(&self, _batch: &[Event]) -> SendOutcome {
        std::future::pending().await
    }
}

fn config(dir: &Path, records: &Path, format: EventFormat, buffer: BufferSpec) -> CollectorConfig {
    let dest = SiemDestinationSpec {
        stdout: Some(StdoutSpec::default()), // replaced by the benchmark's destination
        format,
        batch: BatchSpec {
            max_events: 500,
            max_bytes: 4 * 1024 * 1024,
            max_latency_ms: 100,
        },
        buffer,
        ..Default::default()
    };
    CollectorConfig {
        version: CONFIG_VERSION.to_string(),
        collector: "bench".into(),
        namespace: "default".into(),
        source: SourceConfig::Replay(ReplaySource {
            paths: vec![records.display().to_string()],
            ..Default::default()
        }),
        routes: vec![Route {
            log_source: "bench".into(),
            destinations: vec!["sink".into()],
            ..Default::default()
        }],
        destinations: BTreeMap::from([("sink".to_string(), dest)]),
        checkpoint: CheckpointConfig::File {
            dir: dir.join(format!("checkpoints-{format:?}")).display().to_string(),
        },
        secrets: SecretSource::Environment,
        dead_letter: DeadLetterConfig::in_dir(dir.join("dead-letter").display().to_string()),
        telemetry: Default::default(),
        report: None,
    }
}

fn vm_hwm_kb() -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    status
        .lines()
        .find(|l| l.starts_with("VmHWM:"))?
        .split_whitespace()
        .nth(1)?
        .parse()
        .ok()
}

fn main() {
    // `cargo bench` passes `--bench`; `cargo test --all-targets` runs this binary without it,
    // as a quick smoke test of the same code.
    let bench_mode = std::env::args().any(|a| a == "--bench");
    let n: usize = std::env::var("BENCH_RECORDS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(if bench_mode { 100_000 } else { 2_000 });
    let stall = if bench_mode {
        Duration::from_secs(2)
    } else {
        Duration::from_millis(300)
    };
    let dir = tempfile::tempdir().expect("tempdir");
    let records = dir.path().join("records.ndjson");
    let file_bytes = write_records(&records, n);
    println!(
        "pipeline bench: {n} records, {:.1} MB ({:.0} bytes/record, {PER_BODY} per Event Hubs body)",
        file_bytes as f64 / 1e6,
        file_bytes as f64 / n as f64
    );

    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");

    // 1. Memory under a stalled destination.
    let buffer = BufferSpec::default();
    let bound = buffer.max_events;
    let hwm_before = vm_hwm_kb().unwrap_or(0);
    let (depth, hwm) = rt.block_on(async {
        let collector = Collector::new(config(dir.path(), &records, EventFormat::Ecs, buffer))
            .with_destination("sink", Arc::new(Stalled))
            .with_drain_timeout(Duration::from_millis(10));
        let registry = collector.registry().clone();
        let stop = CancellationToken::new();
        let run = tokio::spawn(collector.run(stop.clone()));
        tokio::time::sleep(stall).await;
        let depth: i64 = registry
            .gather()
            .iter()
            .filter(|m| m.name() == "siembridge_destination_queue_depth")
            .flat_map(|m| m.get_metric().iter().map(|x| x.get_gauge().get_value() as i64))
            .sum();
        let hwm = vm_hwm_kb().unwrap_or(0);
        stop.cancel();
        let _ = run.await;
        (depth, hwm)
    });
    println!(
        "stalled destination: queue depth {depth} (bound {bound}), peak RSS {:.1} MB (VmHWM; {:.1} MB before the collector started; replay file {:.1} MB)",
        hwm as f64 / 1024.0,
        hwm_before as f64 / 1024.0,
        file_bytes as f64 / 1e6
    );

    // 2. Throughput, one core.
    for format in [EventFormat::Ecs, EventFormat::Raw] {
        let discard = Arc::new(Discard::default());
        let started = Instant::now();
        let summary = rt
            .block_on(
                Collector::new(config(dir.path(), &records, format, BufferSpec::default()))
                    .with_destination("sink", discard.clone())
                    .with_checkpoint_interval(Duration::from_secs(1))
                    .run(CancellationToken::new()),
            )
            .expect("collector run");
        let secs = started.elapsed().as_secs_f64();
        assert_eq!(summary.records as usize, n);
        assert_eq!(discard.events.load(Ordering::Relaxed) as usize, n);
        let pipeline_mbps = file_bytes as f64 / 1e6 / secs;

        // Baseline: parse and serialize the same bytes with serde_json alone.
        let text = std::fs::read_to_string(&records).expect("read");
        let started = Instant::now();
        let mut out = 0usize;
        for line in text.lines() {
            let v: serde_json::Value = serde_json::from_str(line).expect("json");
            out += serde_json::to_vec(&v).expect("ser").len();
        }
        std::hint::black_box(out);
        let base_secs = started.elapsed().as_secs_f64();
        let base_mbps = file_bytes as f64 / 1e6 / base_secs;
        println!(
            "format {format:?}: {:.0} events/s, {pipeline_mbps:.1} MB/s in; output {:.1} MB; serde_json parse+serialize {base_mbps:.1} MB/s; ratio pipeline/serde_json {:.2}",
            n as f64 / secs,
            discard.bytes.load(Ordering::Relaxed) as f64 / 1e6,
            pipeline_mbps / base_mbps
        );
    }
}
