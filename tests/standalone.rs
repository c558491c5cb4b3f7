//! `siembridge run -f`: the quickstart prints its records, resumes from its checkpoint, and bad
//! input ends with a one-line error.

use std::path::Path;
use std::process::Command;

const BIN: &str = env!("CARGO_BIN_EXE_siembridge");

/// Records in the quickstart files, counted independently of the collector.
fn quickstart_record_count() -> usize {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("examples/quickstart/records");
    let mut n = 0;
    for entry in std::fs::read_dir(dir).unwrap() {
        let text = std::fs::read_to_string(entry.unwrap().path()).unwrap();
        let values: Vec<serde_json::Value> = match serde_json::from_str::<serde_json::Value>(&text) {
            Ok(v) => vec![v],
            Err(_) => text
                .lines()
                .filter(|l| !l.trim().is_empty())
                .map(|l| serde_json::from_str(l).unwrap())
                .collect(),
        };
        for v in values {
            n += v["records"].as_array().map(Vec::len).unwrap_or(1);
        }
    }
    n
}

fn run(args: &[&str], state: &Path) -> std::process::Output {
    Command::new(BIN)
        .args(args)
        .arg("--state-dir")
        .arg(state)
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .env("RUST_LOG", "info")
        .output()
        .unwrap()
}

#[test]
fn quickstart_prints_every_record_then_resumes_from_its_checkpoint() {
    let state = tempfile::tempdir().unwrap();
    let out = run(&["run", "-f", "examples/quickstart"], state.path());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let lines: Vec<serde_json::Value> = stdout
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("not JSON: {l}: {e}")))
        .collect();
    let expected = quickstart_record_count();
    assert!(expected >= 10);
    assert_eq!(lines.len(), expected, "{stdout}");
    assert!(lines.iter().all(|d| d.is_object()));

    // The report the operator would read, written to the state dir in standalone mode.
    let report_path = state.path().join("sb-ls-quickstart-entra-intune/report.json");
    let report: serde_json::Value = serde_json::from_slice(&std::fs::read(&report_path).unwrap()).unwrap();
    assert_eq!(
        report["logSources"]["quickstart-entra-intune"]["eventsForwarded"],
        expected
    );
    assert_eq!(report["destinations"]["console"]["eventsSent"], expected);
    assert_eq!(report["destinations"]["console"]["healthy"], true);

    let again = run(&["run", "-f", "examples/quickstart"], state.path());
    assert!(again.status.success());
    assert!(again.stdout.is_empty(), "second run must resume after the checkpoint");
    assert!(String::from_utf8_lossy(&again.stderr).contains("resumes from checkpoint"));

    let fresh = run(&["run", "-f", "examples/quickstart", "--from-start"], state.path());
    assert!(fresh.status.success());
    assert_eq!(String::from_utf8_lossy(&fresh.stdout).lines().count(), expected);
}

fn one_line_error(out: &std::process::Output) -> String {
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!stderr.contains("panicked"), "{stderr}");
    let last = stderr.lines().last().unwrap_or_default().to_string();
    assert!(last.starts_with("siembridge: error:"), "{stderr}");
    last
}

#[test]
fn bad_manifests_end_with_a_one_line_error() {
    let dir = tempfile::tempdir().unwrap();
    let state = dir.path().join("state");
    let bad_yaml = dir.path().join("bad.yaml");
    std::fs::write(
        &bad_yaml,
        "apiVersion: siembridge.io/v1alpha1\nkind: LogSource\nmetadata:\n  name: [x\n",
    )
    .unwrap();
    let line = one_line_error(&run(&["run", "-f", bad_yaml.to_str().unwrap()], &state));
    assert!(line.contains("bad.yaml:"), "{line}");

    let unknown = dir.path().join("unknown.yaml");
    std::fs::write(&unknown, "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: x}\n").unwrap();
    let line = one_line_error(&run(&["run", "-f", unknown.to_str().unwrap()], &state));
    assert!(line.contains("unknown kind \"ConfigMap\""), "{line}");

    let dangling = dir.path().join("dangling.yaml");
    std::fs::write(
        &dangling,
        "apiVersion: siembridge.io/v1alpha1\nkind: LogSource\nmetadata: {name: entra}\nspec:\n  replay: {paths: [records]}\n  destinations: [{name: nowhere}]\n",
    )
    .unwrap();
    let line = one_line_error(&run(&["run", "-f", dangling.to_str().unwrap()], &state));
    assert!(line.contains("SiemDestination \"nowhere\" not found"), "{line}");

    let line = one_line_error(&run(&["run", "-f", "/nonexistent/manifests"], &state));
    assert!(line.contains("/nonexistent/manifests"), "{line}");
}

#[test]
fn event_hub_collector_is_a_clear_error_not_a_panic() {
    let dir = tempfile::tempdir().unwrap();
    let m = dir.path().join("eh.yaml");
    std::fs::write(
        &m,
        r#"apiVersion: siembridge.io/v1alpha1
kind: SiemDestination
metadata: {name: console}
spec: {stdout: {}}
---
apiVersion: siembridge.io/v1alpha1
kind: ConsumerGroup
metadata: {name: hub}
spec:
  eventHub:
    fullyQualifiedNamespace: ns.servicebus.windows.net
    hubName: insights-logs
  credentials:
    connectionString: {name: eh, key: cs}
---
apiVersion: siembridge.io/v1alpha1
kind: LogSource
metadata: {name: entra}
spec:
  eventHub: {consumerGroupRef: hub}
  destinations: [{name: console}]
"#,
    )
    .unwrap();
    let out = run(&["run", "-f", m.to_str().unwrap()], &dir.path().join("state"));
    let line = one_line_error(&out);
    // The Event Hubs source exists now: without its connection string the run names the
    // missing environment variable.
    assert!(line.contains("SIEMBRIDGE_SECRET_EH_CS"), "{line}");
}

#[test]
fn collector_with_bad_config_ends_with_a_one_line_error() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = dir.path().join("c.yaml");
    std::fs::write(&cfg, "version: nope\n").unwrap();
    let out = Command::new(BIN)
        .args(["collector", "--config"])
        .arg(&cfg)
        .output()
        .unwrap();
    one_line_error(&out);
    let out = Command::new(BIN)
        .args(["collector", "--config", "/nonexistent/config.yaml"])
        .output()
        .unwrap();
    assert!(one_line_error(&out).contains("/nonexistent/config.yaml"));
}

/// Every delivered event carries an id that is the same when the same record is delivered again,
/// and `keepOriginal` puts the untouched record in `event.original`.
#[test]
fn events_carry_stable_ids_and_keep_original_on_request() {
    let dir = tempfile::tempdir().unwrap();
    let records = dir.path().join("records");
    std::fs::create_dir(&records).unwrap();
    let original = r#"{"time":"2026-01-15T08:00:05Z","category":"SignInLogs","properties":{"note":"a"}}"#;
    std::fs::write(
        records.join("a.json"),
        format!("{{\"records\":[{original},{{\"time\":\"2026-01-15T08:00:06Z\",\"category\":\"SignInLogs\"}}]}}\n"),
    )
    .unwrap();
    let out_file = dir.path().join("out.ndjson");
    std::fs::write(
        dir.path().join("manifests.yaml"),
        format!(
            "apiVersion: siembridge.io/v1alpha1\nkind: SiemDestination\nmetadata: {{name: out}}\nspec:\n  keepOriginal: true\n  file: {{path: {}}}\n---\napiVersion: siembridge.io/v1alpha1\nkind: LogSource\nmetadata: {{name: replay}}\nspec:\n  replay: {{paths: [records]}}\n  destinations: [{{name: out}}]\n",
            out_file.display()
        ),
    )
    .unwrap();
    let state = dir.path().join("state");
    let manifests = dir.path().join("manifests.yaml");
    let manifests = manifests.to_str().unwrap();
    let read = |path: &Path| -> Vec<serde_json::Value> {
        std::fs::read_to_string(path)
            .unwrap()
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect()
    };
    assert!(run(&["run", "-f", manifests], &state).status.success());
    let first = read(&out_file);
    std::fs::remove_file(&out_file).unwrap();
    assert!(run(&["run", "-f", manifests, "--from-start"], &state).status.success());
    let second = read(&out_file);

    assert_eq!(first.len(), 2);
    let ids = |docs: &[serde_json::Value]| -> Vec<String> {
        docs.iter()
            .map(|d| d["event"]["id"].as_str().unwrap().to_string())
            .collect()
    };
    assert_eq!(ids(&first), ids(&second), "ids change between deliveries");
    assert_ne!(ids(&first)[0], ids(&first)[1], "two records share an id");
    assert_eq!(first[0]["event"]["original"].as_str(), Some(original));
}
