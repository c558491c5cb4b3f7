//! The operator at scale on a real API server (`cargo bench --bench operator_scale`, needs
//! `KUBECONFIG`; skips saying so without).
//!
//! Shapes (`SIEMBRIDGE_SCALE_SHAPES`, default `1x1000,100x10`; `1x5` when run without `--bench`, as
//! `cargo test --all-targets` does): `N`x`M` is N namespaces of M
//! API-polled LogSources each, all delivering to one SiemDestination and reading one Secret of
//! their namespace. The operator is the built binary (`SIEMBRIDGE_OPERATOR_BIN` to compare
//! another build), run as a child process watching every namespace; the LogSources are created
//! once it leads and its destinations are ready. Printed per shape:
//! - seconds from the first create until every LogSource has its `Ready` condition for its
//!   current generation and its collector Deployment exists (a control plane without nodes runs
//!   no pod, so `Ready` is `False`/`DeploymentProgressing` there; what is timed is the operator
//!   having done its work);
//! - reconciles by controller (the operator's `siembridge_operator_reconciles_total`);
//! - the operator's API requests by verb during the rollout (its
//!   `siembridge_operator_api_requests_total`, counted on its client);
//! - writes per minute at rest (a minute with nothing changing, after 15 s to settle), leader
//!   Lease renewals apart;
//! - peak RSS of the operator process (`VmHWM` of `/proc/<pid>/status`).
//!
//! Every namespace it makes is deleted at the end.

#[path = "../tests/common/cluster.rs"]
mod cluster;

use std::collections::BTreeMap;
use std::process::Stdio;
use std::time::{Duration, Instant};

use futures::{StreamExt, TryStreamExt};
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::Secret;
use kube::api::{Api, ListParams, PostParams};
use kube::{Client, ResourceExt};
use serde_json::json;
use siembridge::api::{LogSource, SiemDestination};

const BENCH_LABEL: &str = "siembridge.io/scale-bench";
/// Give up on a shape after this long (the before figure for 1,000 was 342 s).
const GIVE_UP: Duration = Duration::from_secs(900);

fn main() {
    if std::env::var_os("KUBECONFIG").is_none() {
        println!(
            "skipped operator_scale: KUBECONFIG not set (e2e/test-all.sh or ../shared/k8s/up.sh starts an API server)"
        );
        return;
    }
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime");
    rt.block_on(run());
}

async fn run() {
    let Some(client) = cluster::client("operator_scale").await else {
        return;
    };
    cluster::install_crds(&client).await;
    // `cargo test --all-targets` runs benches without `--bench`: a small smoke run then.
    let full = std::env::args().any(|a| a == "--bench");
    let default_shapes = if full { "1x1000,100x10" } else { "1x5" };
    let shapes = std::env::var("SIEMBRIDGE_SCALE_SHAPES").unwrap_or_else(|_| default_shapes.into());
    let binary = std::env::var("SIEMBRIDGE_OPERATOR_BIN").unwrap_or_else(|_| env!("CARGO_BIN_EXE_siembridge").into());
    println!("operator binary: {binary}");
    for shape in shapes.split(',').map(str::trim).filter(|s| !s.is_empty()) {
        let (n, m) = shape
            .split_once('x')
            .and_then(|(a, b)| Some((a.parse::<usize>().ok()?, b.parse::<usize>().ok()?)))
            .unwrap_or_else(|| panic!("shape {shape:?} is not NxM"));
        bench_shape(&client, &binary, n, m).await;
    }
}

/// The operator's `/metrics` as `name{labels}` -> value.
async fn scrape(addr: &str) -> Option<BTreeMap<String, f64>> {
    let text = reqwest::get(format!("http://{addr}/metrics"))
        .await
        .ok()?
        .text()
        .await
        .ok()?;
    Some(
        text.lines()
            .filter(|l| !l.starts_with('#'))
            .filter_map(|l| {
                let (k, v) = l.rsplit_once(' ')?;
                Some((k.to_string(), v.parse().ok()?))
            })
            .collect(),
    )
}

/// `label="value"` out of a metric key.
fn label<'a>(key: &'a str, name: &str) -> &'a str {
    let pat = format!("{name}=\"");
    key.find(&pat)
        .map(|i| &key[i + pat.len()..])
        .and_then(|s| s.split('"').next())
        .unwrap_or("")
}

fn delta(after: &BTreeMap<String, f64>, before: &BTreeMap<String, f64>, prefix: &str) -> BTreeMap<String, u64> {
    after
        .iter()
        .filter(|(k, _)| k.starts_with(prefix))
        .map(|(k, v)| (k.clone(), (*v - before.get(k).copied().unwrap_or(0.0)).max(0.0) as u64))
        .filter(|(_, v)| *v > 0)
        .collect()
}

fn by_verb(requests: &BTreeMap<String, u64>) -> BTreeMap<String, u64> {
    let mut out = BTreeMap::new();
    for (k, v) in requests {
        *out.entry(label(k, "verb").to_string()).or_default() += v;
    }
    out
}

fn vm_hwm_kib(pid: u32) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    status
        .lines()
        .find(|l| l.starts_with("VmHWM:"))?
        .split_whitespace()
        .nth(1)?
        .parse()
        .ok()
}

fn log_source(name: &str, run: &str) -> LogSource {
    serde_json::from_value(json!({
        "apiVersion": "siembridge.io/v1alpha1", "kind": "LogSource",
        "metadata": {"name": name, "labels": {BENCH_LABEL: run}},
        "spec": {
            "managementActivityApi": {
                "credentials": {
                    "tenantId": "11111111-2222-3333-4444-555555555555",
                    "clientId": "66666666-7777-8888-9999-aaaaaaaaaaaa",
                    "clientSecret": {"name": "o365-app", "key": "clientSecret"}
                },
                "contentTypes": ["Audit.General"]
            },
            "destinations": [{"name": "splunk"}]
        }
    }))
    .expect("bench LogSource")
}

async fn bench_shape(client: &Client, binary: &str, n: usize, m: usize) {
    let run = format!("{:08x}", rand::random::<u32>());
    let total = n * m;
    println!("\n== shape {n} namespace(s) x {m} LogSource(s) = {total} LogSources (run {run}) ==");
    let mut namespaces = cluster::Namespaces::default();
    let op_ns = format!("sbs-{run}-op");
    let data_ns: Vec<String> = (0..n).map(|i| format!("sbs-{run}-{i}")).collect();
    let ns_api: Api<k8s_openapi::api::core::v1::Namespace> = Api::all(client.clone());
    for name in std::iter::once(&op_ns).chain(&data_ns) {
        ns_api
            .create(
                &PostParams::default(),
                &serde_json::from_value(json!({"metadata": {"name": name}})).unwrap(),
            )
            .await
            .unwrap_or_else(|e| panic!("namespace {name}: {e}"));
        namespaces.0.push(name.clone());
    }

    // The destination: a listener of this process, so its connectivity check passes.
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let accept = tokio::spawn(async move {
        loop {
            if let Ok((conn, _)) = listener.accept().await {
                drop(conn);
            }
        }
    });
    for ns in &data_ns {
        let secrets: Api<Secret> = Api::namespaced(client.clone(), ns);
        for (name, key) in [("splunk-hec", "token"), ("o365-app", "clientSecret")] {
            let secret: Secret = serde_json::from_value(json!({
                "metadata": {"name": name}, "stringData": {key: "synthetic-bench-value"}
            }))
            .unwrap();
            secrets.create(&PostParams::default(), &secret).await.unwrap();
        }
        let dests: Api<SiemDestination> = Api::namespaced(client.clone(), ns);
        let dest: SiemDestination = serde_json::from_value(json!({
            "apiVersion": "siembridge.io/v1alpha1", "kind": "SiemDestination",
            "metadata": {"name": "splunk", "labels": {BENCH_LABEL: &run}},
            "spec": {"splunkHec": {"url": format!("https://127.0.0.1:{port}"),
                                   "token": {"name": "splunk-hec", "key": "token"}}}
        }))
        .unwrap();
        dests.create(&PostParams::default(), &dest).await.unwrap();
    }

    // The operator, the built binary, as a child process.
    let metrics_addr = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap().to_string()
    };
    let log_path = std::env::temp_dir().join(format!("operator-scale-{run}.log"));
    let log = std::fs::File::create(&log_path).unwrap();
    let mut operator = tokio::process::Command::new(binary)
        .args([
            "operator",
            "--metrics-addr",
            &metrics_addr,
            "--leader-namespace",
            &op_ns,
            "--identity",
            "scale-bench",
        ])
        .env("RUST_LOG", "warn")
        .stdout(Stdio::null())
        .stderr(Stdio::from(log))
        .kill_on_drop(true)
        .spawn()
        .expect("operator binary");
    let pid = operator.id().expect("operator pid");

    // Leading, caches filled: every destination of this run has a Ready condition.
    let dest_api: Api<SiemDestination> = Api::all(client.clone());
    let selector = ListParams::default().labels(&format!("{BENCH_LABEL}={run}"));
    let start = Instant::now();
    loop {
        let ready = dest_api
            .list(&selector)
            .await
            .map(|l| {
                l.items
                    .iter()
                    .filter(|d| d.status.as_ref().is_some_and(|s| !s.conditions.is_empty()))
                    .count()
            })
            .unwrap_or(0);
        if ready == n {
            break;
        }
        assert!(
            start.elapsed() < GIVE_UP,
            "operator never reconciled the destinations; log: {}",
            log_path.display()
        );
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    let baseline = scrape(&metrics_addr).await.unwrap_or_default();

    // Apply, and time until every LogSource is reconciled and has its Deployment.
    let t0 = Instant::now();
    let creates = data_ns
        .iter()
        .flat_map(|ns| (0..m).map(move |i| (ns.clone(), format!("o365-{i:04}"))));
    futures::stream::iter(creates)
        .map(|(ns, name)| {
            let api: Api<LogSource> = Api::namespaced(client.clone(), &ns);
            let obj = log_source(&name, &run);
            async move { api.create(&PostParams::default(), &obj).await.map(|_| ()) }
        })
        .buffer_unordered(16)
        .try_collect::<Vec<_>>()
        .await
        .expect("create LogSources");
    let applied = t0.elapsed();
    let ls_api: Api<LogSource> = Api::all(client.clone());
    let dep_api: Api<Deployment> = Api::all(client.clone());
    let deployment_selector = ListParams::default().labels(&format!(
        "{}={},{}=LogSource",
        siembridge::operator::builders::MANAGED_BY_LABEL,
        siembridge::operator::builders::MANAGED_BY,
        siembridge::operator::builders::OWNER_KIND_LABEL
    ));
    let mut peak_kib = 0;
    let (settled, deployments) = loop {
        peak_kib = peak_kib.max(vm_hwm_kib(pid).unwrap_or(0));
        let settled = ls_api
            .list(&selector)
            .await
            .map(|l| {
                l.items
                    .iter()
                    .filter(|ls| {
                        ls.status.as_ref().is_some_and(|s| {
                            s.conditions
                                .iter()
                                .any(|c| c.type_ == "Ready" && c.observed_generation == ls.metadata.generation)
                        })
                    })
                    .count()
            })
            .unwrap_or(0);
        let deployments = dep_api
            .list_metadata(&deployment_selector)
            .await
            .map(|l| {
                l.items
                    .iter()
                    .filter(|d| d.namespace().is_some_and(|ns| ns.starts_with(&format!("sbs-{run}-"))))
                    .count()
            })
            .unwrap_or(0);
        if (settled == total && deployments == total) || t0.elapsed() > GIVE_UP {
            break (settled, deployments);
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    };
    let ready_secs = t0.elapsed().as_secs_f64();
    let rolled_out = scrape(&metrics_addr).await.unwrap_or_default();

    // A minute at rest.
    tokio::time::sleep(Duration::from_secs(15)).await;
    let rest_start = scrape(&metrics_addr).await.unwrap_or_default();
    tokio::time::sleep(Duration::from_secs(60)).await;
    let rest_end = scrape(&metrics_addr).await.unwrap_or_default();
    peak_kib = peak_kib.max(vm_hwm_kib(pid).unwrap_or(0));

    let reconciles = delta(&rolled_out, &baseline, "siembridge_operator_reconciles_total");
    let requests = delta(&rolled_out, &baseline, "siembridge_operator_api_requests_total");
    let rest_requests = delta(&rest_end, &rest_start, "siembridge_operator_api_requests_total");
    let is_write = |k: &String| !["GET", "LIST", "WATCH"].contains(&label(k, "verb"));
    let rest_writes: BTreeMap<&String, &u64> = rest_requests
        .iter()
        .filter(|(k, _)| is_write(k) && label(k, "resource") != "leases")
        .collect();
    let lease_renewals: u64 = rest_requests
        .iter()
        .filter(|(k, _)| is_write(k) && label(k, "resource") == "leases")
        .map(|(_, v)| v)
        .sum();
    let rest_reconciles: u64 = delta(&rest_end, &rest_start, "siembridge_operator_reconciles_total")
        .values()
        .sum();

    println!("LogSources created in {:.1} s", applied.as_secs_f64());
    println!(
        "seconds to all Ready: {ready_secs:.1} ({settled}/{total} LogSources with Ready for their generation, {deployments}/{total} Deployments){}",
        if settled == total && deployments == total { "" } else { "  GAVE UP" }
    );
    println!(
        "reconciles during rollout: {} ({})",
        reconciles.values().sum::<u64>(),
        reconciles
            .iter()
            .map(|(k, v)| format!("{}={v}", label(k, "controller")))
            .collect::<Vec<_>>()
            .join(", ")
    );
    println!(
        "API requests during rollout by verb: {} (total {})",
        by_verb(&requests)
            .iter()
            .map(|(k, v)| format!("{k}={v}"))
            .collect::<Vec<_>>()
            .join(", "),
        requests.values().sum::<u64>()
    );
    println!(
        "  by verb and resource: {}",
        requests
            .iter()
            .map(|(k, v)| format!("{} {}={v}", label(k, "verb"), label(k, "resource")))
            .collect::<Vec<_>>()
            .join(", ")
    );
    println!(
        "at rest (60 s): {rest_reconciles} reconciles, writes per minute: {} {:?}; leader Lease renewals: {lease_renewals}; all requests by verb: {:?}",
        rest_writes.values().copied().sum::<u64>(),
        rest_writes
            .iter()
            .map(|(k, v)| format!("{} {}={v}", label(k, "verb"), label(k, "resource")))
            .collect::<Vec<_>>(),
        by_verb(&rest_requests)
    );
    println!("operator peak RSS (VmHWM): {:.1} MiB", peak_kib as f64 / 1024.0);
    if let Ok(Some(status)) = operator.try_wait() {
        println!("operator exited early: {status}; log: {}", log_path.display());
    }
    let _ = operator.start_kill();
    let _ = operator.wait().await;
    accept.abort();
    drop(namespaces);
    let _ = std::fs::remove_file(&log_path);
}
