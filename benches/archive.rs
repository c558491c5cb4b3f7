//! Throughput of the syslog and azureBlob destinations against their real receivers (plain
//! binary, `cargo bench --bench archive`), as a ratio to plain `serde_json` parse + serialize of
//! the same records in the same run.
//!
//! - syslog TCP to rsyslog (Debian), JSON payload and LEEF payload: batches of 1000 sent one
//!   after the other on one connection; the clock stops when rsyslog has written every message
//!   to its file.
//! - azureBlob to Azurite (npm `azurite@3.37.0`, in memory): gzip NDJSON objects of 2000 events,
//!   one write at a time; and the encoding alone (NDJSON + gzip), to show where the time goes.
//!
//! Receivers missing: that part is reported as skipped (outside CI). `BENCH_EVENTS` sets the
//! event count (default 100000; 2000 when `cargo test --all-targets` runs it as a smoke test).

#[path = "../tests/common/azurite.rs"]
mod azurite;
#[path = "../tests/common/rsyslog.rs"]
mod rsyslog;

use std::time::{Duration, Instant};

use siembridge::api::{AzureBlobArchiveSpec, BlobCredentials, SyslogPayload, SyslogSpec, SyslogTransport};
use siembridge::collector::azure_blob::BlobService;
use siembridge::collector::destinations::azure_blob::{encode, AzureBlobDestination};
use siembridge::collector::destinations::syslog::SyslogDestination;
use siembridge::collector::destinations::{Destination, Event, SendOutcome};
use siembridge::collector::secrets::SecretValue;
use siembridge::config::SecretSource;

const TENANT: &str = "11111111-2222-3333-4444-555555555555";

fn signin(i: usize) -> String {
    let category = ["SignInLogs", "NonInteractiveUserSignInLogs"][i % 2];
    serde_json::json!({
        "time": format!("2026-01-15T{:02}:{:02}:{:02}.{:07}Z", i / 3600 % 24, i / 60 % 60, i % 60, i % 9_999_999),
        "resourceId": format!("/tenants/{TENANT}/providers/Microsoft.aadiam"),
        "operationName": "Sign-in activity", "category": category,
        "tenantId": TENANT, "resultType": if i.is_multiple_of(7) { "50126" } else { "0" },
        "callerIpAddress": format!("198.51.100.{}", i % 250),
        "correlationId": format!("aaaaaaaa-2222-4222-8222-{i:012}"),
        "properties": {
            "id": format!("aaaaaaaa-3333-4333-8333-{i:012}"),
            "createdDateTime": format!("2026-01-15T08:{:02}:{:02}+00:00", i / 60 % 60, i % 60),
            "userDisplayName": format!("User {}", i % 1000),
            "userPrincipalName": format!("user{}@contoso.example", i % 1000),
            "userId": format!("cccccccc-0000-4000-8000-{:012}", i % 1000),
            "appId": "bbbbbbbb-0000-0000-0000-000000000002", "appDisplayName": "Microsoft Teams",
            "ipAddress": format!("198.51.100.{}", i % 250), "clientAppUsed": "Mobile Apps and Desktop clients",
            "status": {"errorCode": if i.is_multiple_of(7) { 50126 } else { 0 }, "failureReason": "Other."},
            "deviceDetail": {"operatingSystem": "Windows10", "browser": "Edge 120.0.0", "isCompliant": false},
            "location": {"city": "Paris", "countryOrRegion": "FR", "geoCoordinates": {"latitude": 48.85, "longitude": 2.35}},
            "conditionalAccessStatus": "notApplied", "riskLevelDuringSignIn": "none",
            "authenticationRequirement": "singleFactorAuthentication",
        }
    })
    .to_string()
}

/// An ECS document of the same sign-in (what LEEF is encoded from).
fn ecs(i: usize) -> String {
    serde_json::json!({
        "@timestamp": format!("2026-01-15T08:{:02}:{:02}.000Z", i / 60 % 60, i % 60),
        "event": {"action": "Sign-in activity", "dataset": "azure.signinlogs", "category": ["authentication"],
                  "outcome": if i.is_multiple_of(7) { "failure" } else { "success" }, "id": format!("aaaaaaaa-3333-4333-8333-{i:012}")},
        "source": {"ip": format!("198.51.100.{}", i % 250), "geo": {"city_name": "Paris", "country_iso_code": "FR"}},
        "user": {"name": format!("user{}@contoso.example", i % 1000), "id": format!("cccccccc-0000-4000-8000-{:012}", i % 1000)},
        "user_agent": {"original": "Edge 120.0.0"},
        "cloud": {"provider": "azure", "account": {"id": TENANT}},
        "observer": {"vendor": "Microsoft", "product": "EntraID"},
        "azure": {"signinlogs": {"properties": {"app_display_name": "Microsoft Teams", "status": {"error_code": 0}}}},
    })
    .to_string()
}

struct Rate {
    events: usize,
    bytes: usize,
    elapsed: Duration,
}

impl Rate {
    fn eps(&self) -> f64 {
        self.events as f64 / self.elapsed.as_secs_f64()
    }
    fn mbps(&self) -> f64 {
        self.bytes as f64 / 1e6 / self.elapsed.as_secs_f64()
    }
    fn print(&self, what: &str, baseline: Option<&Rate>) {
        let ratio = baseline
            .map(|b| format!("  ({:.3} x baseline)", self.eps() / b.eps()))
            .unwrap_or_default();
        println!(
            "{what:<44} {:>10.0} events/s {:>8.1} MB/s  ({} events, {:.2} s){ratio}",
            self.eps(),
            self.mbps(),
            self.events,
            self.elapsed.as_secs_f64()
        );
    }
}

fn baseline(records: &[String]) -> Rate {
    let started = Instant::now();
    let mut out = 0usize;
    for r in records {
        let v: serde_json::Value = serde_json::from_str(r).expect("record");
        out += serde_json::to_vec(&v).expect("serialize").len();
    }
    std::hint::black_box(out);
    Rate {
        events: records.len(),
        bytes: records.iter().map(String::len).sum(),
        elapsed: started.elapsed(),
    }
}

async fn syslog(records: &[String], payload: SyslogPayload) -> Option<Rate> {
    let rs = rsyslog::start(rsyslog::Listeners {
        tcp: true,
        ..Default::default()
    })?;
    let spec = SyslogSpec {
        host: "127.0.0.1".into(),
        port: rs.tcp_port,
        transport: SyslogTransport::Tcp,
        payload,
        app_name: "siembridge".into(),
        facility: 13,
        max_message_bytes: 65_536,
        tls: None,
        // The bench measures encoding and the wire; the confirmation delay is a fixed wait per
        // batch that the destination's `concurrency` overlaps, not work.
        confirm_delay_ms: 0,
        hostname: None,
    };
    let dest = SyslogDestination::new("bench", &spec, &SecretSource::Environment).expect("syslog destination");
    let started = Instant::now();
    for (b, chunk) in records.chunks(1000).enumerate() {
        let batch: Vec<Event> = chunk
            .iter()
            .enumerate()
            .map(|(i, r)| Event::detached_with_id(r.clone(), "bench", &format!("{b}-{i}")))
            .collect();
        assert_eq!(dest.send(&batch).await, SendOutcome::Delivered);
    }
    let lines = rs.wait_for(records.len(), Duration::from_secs(120));
    let elapsed = started.elapsed();
    assert_eq!(lines.len(), records.len(), "rsyslog wrote every message");
    let bytes = std::fs::metadata(&rs.out).map(|m| m.len() as usize).unwrap_or(0);
    Some(Rate {
        events: records.len(),
        bytes,
        elapsed,
    })
}

fn archive_spec() -> AzureBlobArchiveSpec {
    AzureBlobArchiveSpec {
        account_url: String::new(),
        container: "bench".into(),
        path_template: "{source}/{category}/y={yyyy}/m={MM}/d={dd}/h={HH}".into(),
        gzip: true,
        credentials: BlobCredentials::default(),
    }
}

fn encode_only(records: &[String]) -> Rate {
    let started = Instant::now();
    let mut out = 0usize;
    for chunk in records.chunks(2000) {
        let events: Vec<Event> = chunk.iter().map(|r| Event::detached(r.clone(), "bench")).collect();
        let refs: Vec<&Event> = events.iter().collect();
        out += encode(&refs, true).len();
    }
    std::hint::black_box(out);
    Rate {
        events: records.len(),
        bytes: records.iter().map(String::len).sum(),
        elapsed: started.elapsed(),
    }
}

async fn blob(records: &[String]) -> Option<(Rate, usize)> {
    let az = azurite::start()?;
    let service = BlobService::from_connection_string(&SecretValue::new(az.connection_string()), None).expect("client");
    let dest = AzureBlobDestination::with_service(service, &archive_spec());
    dest.check().await.expect("container");
    let started = Instant::now();
    for (b, chunk) in records.chunks(2000).enumerate() {
        let batch: Vec<Event> = chunk
            .iter()
            .enumerate()
            .map(|(i, r)| Event::detached_with_id(r.clone(), "bench", &format!("{b}-{i}")))
            .collect();
        assert_eq!(dest.send(&batch).await, SendOutcome::Delivered);
    }
    let elapsed = started.elapsed();
    let service = BlobService::from_connection_string(&SecretValue::new(az.connection_string()), None).expect("client");
    let objects = service.list_blobs("bench", "").await.expect("list");
    let stored: u64 = objects.iter().map(|o| o.content_length).sum();
    Some((
        Rate {
            events: records.len(),
            bytes: records.iter().map(String::len).sum(),
            elapsed,
        },
        stored as usize,
    ))
}

fn main() {
    siembridge::tls::install_crypto_provider();
    // `cargo bench` passes `--bench`; `cargo test --all-targets` runs this binary without it, as
    // a quick smoke test of the same code.
    let bench_mode = std::env::args().any(|a| a == "--bench");
    let n: usize = std::env::var("BENCH_EVENTS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(if bench_mode { 100_000 } else { 2_000 });
    let raw: Vec<String> = (0..n).map(signin).collect();
    let ecs_docs: Vec<String> = (0..n).map(ecs).collect();
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    println!(
        "archive bench: {n} events, raw sign-ins of {} bytes on average",
        raw.iter().map(String::len).sum::<usize>() / n.max(1)
    );
    let base = baseline(&raw);
    base.print("baseline: serde_json parse + serialize", None);
    match rt.block_on(syslog(&raw, SyslogPayload::Json)) {
        Some(r) => r.print("syslog TCP -> rsyslog, JSON (bytes written)", Some(&base)),
        None => println!("syslog TCP -> rsyslog: skipped (rsyslogd not installed)"),
    }
    match rt.block_on(syslog(&ecs_docs, SyslogPayload::Leef)) {
        Some(r) => r.print("syslog TCP -> rsyslog, LEEF from ECS", Some(&base)),
        None => println!("syslog TCP -> rsyslog LEEF: skipped (rsyslogd not installed)"),
    }
    encode_only(&raw).print("azureBlob encode only (NDJSON + gzip)", Some(&base));
    match rt.block_on(blob(&raw)) {
        Some((r, stored)) => {
            r.print("azureBlob -> Azurite, gzip NDJSON", Some(&base));
            println!(
                "azureBlob stored {stored} bytes for {} bytes of records (gzip ratio {:.1})",
                r.bytes,
                r.bytes as f64 / stored.max(1) as f64
            );
        }
        None => println!("azureBlob -> Azurite: skipped (azurite not installed)"),
    }
}
