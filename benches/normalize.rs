//! Throughput of normalization on a realistic mix of Microsoft records (sign-ins, audits,
//! Intune, Defender, O365; ~1-2 KB each): parse + to_ecs + serialize, compared with plain
//! serde_json parse + serialize of the same bytes in the same run. Single thread.
//!
//! Run: `cargo bench --bench normalize` (about 10 s). `SIEMBRIDGE_BENCH_SECS` sets the time per
//! measurement (default 2).
//! `normalize_owned` is the variant the collector should call when it owns the parsed record.

use std::hint::black_box;
use std::time::{Duration, Instant};

use serde_json::Value;
use siembridge::normalize::{normalize_owned, to_ecs, EcsContext};

const MIX: &[&str] = &[
    include_str!("../tests/normalize/fixtures/entra/SignInLogs/typical.input.json"),
    include_str!("../tests/normalize/fixtures/entra/NonInteractiveUserSignInLogs/typical.input.json"),
    include_str!("../tests/normalize/fixtures/entra/NonInteractiveUserSignInLogs/failed-password.input.json"),
    include_str!("../tests/normalize/fixtures/entra/AuditLogs/update-user.input.json"),
    include_str!("../tests/normalize/fixtures/entra/ServicePrincipalSignInLogs/typical.input.json"),
    include_str!("../tests/normalize/fixtures/intune/AuditLogs/delete-device.input.json"),
    include_str!("../tests/normalize/fixtures/intune/Devices/macbook.input.json"),
    include_str!("../tests/normalize/fixtures/defender/AdvancedHunting-DeviceProcessEvents/cmd-whoami.input.json"),
    include_str!(
        "../tests/normalize/fixtures/defender/AdvancedHunting-DeviceNetworkEvents/outbound-success.input.json"
    ),
    include_str!("../tests/normalize/fixtures/defender/AdvancedHunting-DeviceFileEvents/created.input.json"),
    include_str!("../tests/normalize/fixtures/defender/AdvancedHunting-EmailEvents/delivered.input.json"),
    include_str!("../tests/normalize/fixtures/o365/SharePointFileOperation/download.input.json"),
    include_str!("../tests/normalize/fixtures/o365/ExchangeItem/send.input.json"),
    include_str!("../tests/normalize/fixtures/o365/AzureActiveDirectoryStsLogon/logged-in.input.json"),
    include_str!("../tests/normalize/fixtures/o365/ExchangeAdmin/set-mailbox-forwarding.input.json"),
];

struct Run {
    records: u64,
    bytes: u64,
    elapsed: Duration,
}

fn measure(records: &[Vec<u8>], budget: Duration, mut f: impl FnMut(&[u8]) -> usize) -> Run {
    let start = Instant::now();
    let mut run = Run {
        records: 0,
        bytes: 0,
        elapsed: Duration::ZERO,
    };
    while start.elapsed() < budget {
        for r in records {
            black_box(f(r));
            run.records += 1;
            run.bytes += r.len() as u64;
        }
    }
    run.elapsed = start.elapsed();
    run
}

fn report(name: &str, run: &Run) -> f64 {
    let secs = run.elapsed.as_secs_f64();
    let rps = run.records as f64 / secs;
    println!(
        "{name:<42} {:>10.0} records/s  {:>8.1} MB/s",
        rps,
        run.bytes as f64 / secs / 1_000_000.0
    );
    rps
}

fn main() {
    // Compact the fixtures so sizes are what arrives on the wire.
    let records: Vec<Vec<u8>> = MIX
        .iter()
        .map(|t| {
            let v: Value = serde_json::from_str(t).expect("fixture JSON");
            serde_json::to_vec(&v).expect("serialize")
        })
        .collect();
    let avg = records.iter().map(Vec::len).sum::<usize>() / records.len();
    println!("mix: {} records, average {} bytes", records.len(), avg);
    let secs = std::env::var("SIEMBRIDGE_BENCH_SECS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(2.0);
    let budget = Duration::from_secs_f64(secs);
    let ctx = EcsContext {
        event_id: Some("bench"),
        ..Default::default()
    };

    let _ = measure(&records, Duration::from_millis(300), |r| {
        let v: Value = serde_json::from_slice(r).expect("JSON");
        serde_json::to_vec(&v).expect("serialize").len()
    });
    let baseline = measure(&records, budget, |r| {
        let v: Value = serde_json::from_slice(r).expect("JSON");
        serde_json::to_vec(&v).expect("serialize").len()
    });
    let ecs = measure(&records, budget, |r| {
        let v: Value = serde_json::from_slice(r).expect("JSON");
        let doc = to_ecs(&v, &ctx).expect("object");
        serde_json::to_vec(&doc).expect("serialize").len()
    });
    let ecs_original = measure(&records, budget, |r| {
        let v: Value = serde_json::from_slice(r).expect("JSON");
        let c = EcsContext {
            original: std::str::from_utf8(r).ok(),
            ..ctx.clone()
        };
        let doc = to_ecs(&v, &c).expect("object");
        serde_json::to_vec(&doc).expect("serialize").len()
    });
    let owned = measure(&records, budget, |r| {
        let v: Value = serde_json::from_slice(r).expect("JSON");
        let n = normalize_owned(v, &ctx).expect("object");
        serde_json::to_vec(&n.doc).expect("serialize").len()
    });
    let base = report("serde_json parse + serialize", &baseline);
    let mapped = report("parse + to_ecs + serialize", &ecs);
    let with_original = report("parse + to_ecs (+event.original) + serialize", &ecs_original);
    let moved = report("parse + normalize_owned + serialize", &owned);
    println!("ratio to_ecs / baseline:            {:.2}", mapped / base);
    println!("ratio normalize_owned / baseline:   {:.2}", moved / base);
    println!("ratio to_ecs+original / baseline:   {:.2}", with_original / base);
}
