//! Throughput of normalization on a realistic mix of Microsoft records (sign-ins, audits,
//! Intune, Defender, O365; ~1-2 KB each): parse + to_ecs + serialize, compared with plain
//! serde_json parse + serialize of the same bytes in the same run. Single thread.
//!
//! The variants run interleaved in short rounds so that load from other processes on the
//! machine affects them alike; the ratio is the number to watch.
//!
//! Variants: `to_ecs` + `serde_json::to_vec` (document as a Value), `normalize_owned` (record
//! moved into the document), `normalize_json` (ECS bytes written directly, the collector's
//! fast path for JSON destinations).
//!
//! Run: `cargo bench --bench normalize` (about 15 s). `SIEMBRIDGE_BENCH_SECS` sets the total
//! time per variant (default 3). `normalize_owned` is the variant the collector should call
//! when it owns the parsed record.

use std::hint::black_box;
use std::time::{Duration, Instant};

use serde_json::Value;
use siembridge::normalize::{normalize_json, normalize_owned, to_ecs, EcsContext};

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

#[derive(Default)]
struct Tally {
    records: u64,
    bytes: u64,
    elapsed: Duration,
}

type Variant<'a> = (&'static str, Box<dyn Fn(&[u8]) -> usize + 'a>);

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
    // `cargo bench` passes `--bench`; `cargo test --all-targets` runs this binary without it, as
    // a quick smoke test of the same code.
    let bench_mode = std::env::args().any(|a| a == "--bench");
    let secs: f64 = std::env::var("SIEMBRIDGE_BENCH_SECS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(if bench_mode { 3.0 } else { 0.2 });
    let ctx = EcsContext {
        event_id: Some("bench"),
        ..Default::default()
    };
    let variants: Vec<Variant<'_>> = vec![
        (
            "serde_json parse + serialize",
            Box::new(|r: &[u8]| {
                let v: Value = serde_json::from_slice(r).expect("JSON");
                serde_json::to_vec(&v).expect("serialize").len()
            }),
        ),
        (
            "parse + to_ecs + serialize",
            Box::new(|r: &[u8]| {
                let v: Value = serde_json::from_slice(r).expect("JSON");
                let doc = to_ecs(&v, &ctx).expect("object");
                serde_json::to_vec(&doc).expect("serialize").len()
            }),
        ),
        (
            "parse + normalize_owned + serialize",
            Box::new(|r: &[u8]| {
                let v: Value = serde_json::from_slice(r).expect("JSON");
                let n = normalize_owned(v, &ctx).expect("object");
                serde_json::to_vec(&n.doc).expect("serialize").len()
            }),
        ),
        (
            "parse + normalize_json (ECS bytes)",
            Box::new(|r: &[u8]| {
                let v: Value = serde_json::from_slice(r).expect("JSON");
                normalize_json(&v, &ctx).expect("object").json.len()
            }),
        ),
        (
            "... normalize_json + event.original",
            Box::new(|r: &[u8]| {
                let v: Value = serde_json::from_slice(r).expect("JSON");
                let c = EcsContext {
                    original: std::str::from_utf8(r).ok(),
                    ..ctx.clone()
                };
                normalize_json(&v, &c).expect("object").json.len()
            }),
        ),
    ];
    // `SIEMBRIDGE_BENCH_ONLY=<text>`: run only the variants whose name contains it (profiling).
    let only = std::env::var("SIEMBRIDGE_BENCH_ONLY").unwrap_or_default();
    let variants: Vec<Variant<'_>> = variants
        .into_iter()
        .enumerate()
        .filter(|(i, (name, _))| *i == 0 || name.contains(only.as_str()))
        .map(|(_, v)| v)
        .collect();
    // `SIEMBRIDGE_BENCH_ITERS=<n>`: run every selected variant exactly n passes over the mix and
    // no timing (for instruction counts under `valgrind --tool=callgrind`: the difference
    // between two values of n is the cost of the extra passes).
    if let Some(iters) = std::env::var("SIEMBRIDGE_BENCH_ITERS")
        .ok()
        .and_then(|s| s.parse::<usize>().ok())
    {
        let skip_base = std::env::var_os("SIEMBRIDGE_BENCH_SKIP_BASELINE").is_some();
        for (i, (name, f)) in variants.iter().enumerate() {
            if i == 0 && skip_base {
                continue;
            }
            let mut out = 0usize;
            for _ in 0..iters {
                for r in &records {
                    out += black_box(f(r));
                }
            }
            println!("{name}: {iters} passes, {out} bytes out");
        }
        return;
    }
    let mut tallies: Vec<Tally> = variants.iter().map(|_| Tally::default()).collect();
    let round = Duration::from_millis(50);
    let rounds = ((secs * 1000.0) / 50.0).max(1.0) as usize;
    for n in 0..=rounds {
        for ((_, f), tally) in variants.iter().zip(tallies.iter_mut()) {
            let start = Instant::now();
            let (mut count, mut bytes) = (0u64, 0u64);
            while start.elapsed() < round {
                for r in &records {
                    black_box(f(r));
                    count += 1;
                    bytes += r.len() as u64;
                }
            }
            // Round 0 warms up.
            if n > 0 {
                tally.records += count;
                tally.bytes += bytes;
                tally.elapsed += start.elapsed();
            }
        }
    }
    if only.is_empty() {
        breakdown(&records, &ctx);
    }
    let rate = |t: &Tally| t.records as f64 / t.elapsed.as_secs_f64();
    let base = rate(&tallies[0]);
    for ((name, _), t) in variants.iter().zip(&tallies) {
        let secs = t.elapsed.as_secs_f64();
        println!(
            "{name:<40} {:>9.0} records/s {:>7.1} MB/s in  ratio {:.2}",
            rate(t),
            t.bytes as f64 / secs / 1_000_000.0,
            rate(t) / base
        );
    }
    if let Some(kb) = peak_rss_kb() {
        println!("peak RSS of the bench process: {:.1} MB", kb as f64 / 1024.0);
    }
}

/// Peak resident set size (`VmHWM`, Linux), in KiB.
fn peak_rss_kb() -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with("VmHWM:"))?;
    line.split_whitespace().nth(1)?.parse().ok()
}

/// Time per record of each step, to see where the time goes.
fn breakdown(records: &[Vec<u8>], ctx: &EcsContext<'_>) {
    let n = std::env::var("SIEMBRIDGE_BENCH_BREAKDOWN_N")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(20_000)
        / records.len();
    let parsed: Vec<Value> = records
        .iter()
        .map(|r| serde_json::from_slice(r).expect("JSON"))
        .collect();
    let time = |f: &mut dyn FnMut()| {
        let start = Instant::now();
        for _ in 0..n {
            f();
        }
        start.elapsed().as_secs_f64() * 1e6 / (n * records.len()) as f64
    };
    let parse = time(&mut || {
        for r in records {
            black_box(serde_json::from_slice::<Value>(r).expect("JSON"));
        }
    });
    let ser_in = time(&mut || {
        for v in &parsed {
            black_box(serde_json::to_vec(v).expect("serialize"));
        }
    });
    let map = time(&mut || {
        for v in &parsed {
            black_box(to_ecs(v, ctx).expect("object"));
        }
    });
    let docs: Vec<Value> = parsed.iter().map(|v| to_ecs(v, ctx).expect("object")).collect();
    let ser_out = time(&mut || {
        for d in &docs {
            black_box(serde_json::to_vec(d).expect("serialize"));
        }
    });
    let out_bytes: usize = docs
        .iter()
        .map(|d| serde_json::to_vec(d).map(|b| b.len()).unwrap_or(0))
        .sum();
    println!(
        "per record: parse {parse:.2} us, serialize input {ser_in:.2} us, to_ecs {map:.2} us (incl. drop), serialize ECS {ser_out:.2} us ({} bytes avg)",
        out_bytes / docs.len()
    );
}
