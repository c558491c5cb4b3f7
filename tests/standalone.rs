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
    // When a record was last received (what the operator's SourceSilent counts from): this run.
    let received = report["logSources"]["quickstart-entra-intune"]["lastReceivedTime"]
        .as_str()
        .and_then(|t| chrono::DateTime::parse_from_rfc3339(t).ok())
        .unwrap_or_else(|| panic!("lastReceivedTime in {report}"));
    assert!(
        (chrono::Utc::now() - received.with_timezone(&chrono::Utc))
            .num_seconds()
            .abs()
            < 120
    );
    assert_eq!(report["destinations"]["console"]["healthy"], true);

    let again = run(&["run", "-f", "examples/quickstart"], state.path());
    assert!(again.status.success());
    assert!(again.stdout.is_empty(), "second run must resume after the checkpoint");
    assert!(String::from_utf8_lossy(&again.stderr).contains("resumes from checkpoint"));

    let fresh = run(&["run", "-f", "examples/quickstart", "--from-start"], state.path());
    assert!(fresh.status.success());
    assert_eq!(String::from_utf8_lossy(&fresh.stdout).lines().count(), expected);
}

/// On a terminal (forced here with `SIEMBRIDGE_PROGRESS=always`) the run draws a progress line on
/// stderr and ends it with the final tally; piped, as here by default, the logs stay plain.
#[test]
fn the_progress_line_is_drawn_on_a_terminal_only() {
    let state = tempfile::tempdir().unwrap();
    let out = Command::new(BIN)
        .args(["run", "-f", "examples/quickstart", "--state-dir"])
        .arg(state.path())
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .env("SIEMBRIDGE_PROGRESS", "always")
        .output()
        .unwrap();
    assert!(out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    let expected = quickstart_record_count();
    let last = stderr
        .split(['\r', '\n'])
        .rfind(|l| l.contains("quickstart-entra-intune: "))
        .unwrap_or_else(|| panic!("no progress line in {stderr:?}"));
    println!("progress line: {last:?}");
    assert!(
        last.ends_with(&format!("quickstart-entra-intune: {expected} records"))
            || last.contains(&format!("quickstart-entra-intune: {expected} records,")),
        "{last:?}"
    );
    assert_eq!(
        String::from_utf8_lossy(&out.stdout).lines().count(),
        expected,
        "records still go to stdout, the line to stderr"
    );

    let plain = run(&["run", "-f", "examples/quickstart", "--from-start"], state.path());
    let stderr = String::from_utf8_lossy(&plain.stderr);
    assert!(plain.status.success());
    assert!(!stderr.contains("\x1b[2K") && !stderr.contains('\r'), "{stderr:?}");
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

/// A folder of `n` synthetic sign-in records (`rec-0` ...) for a replay LogSource.
fn records_dir(dir: &Path, n: usize) -> std::path::PathBuf {
    let records = dir.join("records");
    std::fs::create_dir_all(&records).unwrap();
    let lines: Vec<String> = (0..n)
        .map(|i| {
            format!(
                r#"{{"time":"2026-01-15T08:00:{:02}Z","category":"SignInLogs","id":"rec-{i}"}}"#,
                i % 60
            )
        })
        .collect();
    std::fs::write(records.join("a.ndjson"), lines.join("\n") + "\n").unwrap();
    records
}

const CONSOLE: &str =
    "apiVersion: siembridge.io/v1alpha1\nkind: SiemDestination\nmetadata: {name: console}\nspec:\n  stdout: {}\n";
const ENTRA: &str = "apiVersion: siembridge.io/v1alpha1\nkind: LogSource\nmetadata: {name: entra}\nspec:\n  replay: {paths: [records]}\n  destinations: [{name: console}]\n";

/// A case name, its manifest files (name, text), and what the error line must say.
type RejectionCase = (&'static str, Vec<(&'static str, String)>, Vec<&'static str>);

/// What the API server rejects, `siembridge run` rejects before reading anything, naming the
/// file, the object and the field path.
#[test]
fn manifests_the_api_server_would_reject_are_rejected_with_the_field_path() {
    let cases: Vec<RejectionCase> = vec![
        (
            "typo in a destination field",
            vec![("m.yaml", format!("{}  fromat: raw\n---\n{ENTRA}", CONSOLE))],
            vec!["m.yaml", "document 1", "SiemDestination \"console\" is invalid", "spec.fromat: unknown field", "did you mean \"format\""],
        ),
        (
            "excludeCategory instead of excludeCategories",
            vec![("m.yaml", format!("{CONSOLE}---\n{ENTRA}  filter: {{excludeCategory: [AuditLogs]}}\n"))],
            vec!["document 2", "LogSource \"entra\" is invalid", "spec.filter.excludeCategory: unknown field", "excludeCategories"],
        ),
        (
            "batch.maxEvents below its minimum",
            vec![("m.yaml", format!("{CONSOLE}  batch: {{maxEvents: 0}}\n---\n{ENTRA}"))],
            vec!["spec.batch.maxEvents: Invalid value: 0: should be greater than or equal to 1"],
        ),
        (
            "retry.maxAttempts below its minimum",
            vec![("m.yaml", format!("{CONSOLE}  retry: {{maxAttempts: 0}}\n---\n{ENTRA}"))],
            vec!["spec.retry.maxAttempts: Invalid value: 0: should be greater than or equal to 1"],
        ),
        (
            "a value outside the enum",
            vec![("m.yaml", format!("{CONSOLE}  format: rwa\n---\n{ENTRA}"))],
            vec!["spec.format: Unsupported value: \"rwa\""],
        ),
        (
            "a missing required field",
            vec![("m.yaml", format!("{CONSOLE}---\napiVersion: siembridge.io/v1alpha1\nkind: LogSource\nmetadata: {{name: entra}}\nspec:\n  replay: {{paths: [records]}}\n"))],
            vec!["spec.destinations: Required value"],
        ),
        (
            "two source kinds (a CEL rule)",
            vec![("m.yaml", format!("{CONSOLE}---\n{ENTRA}  graph: {{credentials: {{tenantId: t, clientId: c, clientSecret: {{name: s, key: k}}}}, endpoints: [signIns]}}\n"))],
            vec!["LogSource \"entra\" is invalid", "spec: Invalid value: set exactly one of"],
        ),
        (
            "a name the API server refuses",
            vec![("m.yaml", format!("{CONSOLE}---\n{}", ENTRA.replace("name: entra", "name: Entra_Logs")))],
            vec!["metadata.name: Invalid value: \"Entra_Logs\""],
        ),
        (
            "a misspelt metadata field",
            vec![("m.yaml", format!("{CONSOLE}---\n{}", ENTRA.replace("metadata: {name: entra}", "metadata: {name: entra, lables: {a: b}}")))],
            vec!["metadata.lables: unknown field"],
        ),
        (
            "two LogSources with one name",
            vec![
                ("a.yaml", format!("{CONSOLE}---\n{ENTRA}")),
                ("b.yaml", ENTRA.to_string()),
            ],
            vec!["LogSource \"entra\"", "a.yaml document 2", "b.yaml document 1"],
        ),
        (
            "two LogSources with one name in two namespaces (one state folder)",
            vec![
                ("a.yaml", format!("{CONSOLE}---\n{ENTRA}")),
                (
                    "b.yaml",
                    format!("{CONSOLE}---\n{ENTRA}").replace("metadata: {name: ", "metadata: {namespace: other, name: "),
                ),
            ],
            vec!["LogSource \"entra\"", "a.yaml document 2", "b.yaml document 2", "names must be unique across namespaces"],
        ),
        (
            "two SiemDestinations with one name",
            vec![("m.yaml", format!("{CONSOLE}---\n{CONSOLE}---\n{ENTRA}"))],
            vec!["SiemDestination \"console\"", "m.yaml document 1", "m.yaml document 2"],
        ),
    ];
    let mut failures = Vec::new();
    for (case, files, expected) in &cases {
        let dir = tempfile::tempdir().unwrap();
        records_dir(dir.path(), 3);
        for (name, text) in files {
            std::fs::write(dir.path().join(name), text).unwrap();
        }
        let out = run(&["run", "-f", dir.path().to_str().unwrap()], &dir.path().join("state"));
        let stderr = String::from_utf8_lossy(&out.stderr);
        let last = stderr.lines().last().unwrap_or_default();
        let delivered = String::from_utf8_lossy(&out.stdout).lines().count();
        let ok = !out.status.success()
            && last.starts_with("siembridge: error:")
            && expected.iter().all(|e| last.contains(e))
            && delivered == 0;
        println!("{case}: exit {:?}, delivered {delivered}: {last}", out.status.code());
        if !ok {
            failures.push(format!(
                "{case}: expected failure with {expected:?}; exit {:?}, delivered {delivered}, stderr: {stderr}",
                out.status.code()
            ));
        }
    }
    assert!(
        failures.is_empty(),
        "{} of {} cases not rejected as expected:\n{}",
        failures.len(),
        cases.len(),
        failures.join("\n")
    );
}

/// Ids (`rec-N`) of the records in an NDJSON output file, however they were shaped.
fn record_ids(path: &Path) -> Vec<String> {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    text.lines()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .filter_map(|v| {
            let s = v.to_string();
            let start = s.find("rec-")?;
            let end = s[start + 4..].find(|c: char| !c.is_ascii_digit())? + start + 4;
            Some(s[start..end].to_string())
        })
        .collect()
}

/// A TCP listener that takes requests and never answers; counts the bytes it was sent.
fn silent_receiver() -> (u16, std::sync::Arc<std::sync::atomic::AtomicUsize>) {
    use std::io::Read;
    use std::sync::atomic::Ordering;
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let received = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let counter = received.clone();
    std::thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(mut stream) = stream else { continue };
            let counter = counter.clone();
            std::thread::spawn(move || {
                let mut buf = [0u8; 8192];
                // Hold the connection open: the request is read, no answer ever comes.
                while let Ok(n) = stream.read(&mut buf) {
                    if n == 0 {
                        break;
                    }
                    counter.fetch_add(n, Ordering::SeqCst);
                }
            });
        }
    });
    (port, received)
}

/// `run` stopped with records still unacknowledged (a destination that never answers, the
/// drain timeout passed) exits non-zero saying how many, and the next run delivers them from
/// the checkpoint: none lost.
#[test]
fn a_run_stopped_with_undelivered_records_exits_non_zero_and_they_are_read_again() {
    use std::sync::atomic::Ordering;
    const N: usize = 5;
    let dir = tempfile::tempdir().unwrap();
    records_dir(dir.path(), N);
    let (port, received) = silent_receiver();
    let silent = format!(
        "apiVersion: siembridge.io/v1alpha1\nkind: SiemDestination\nmetadata: {{name: siem}}\nspec:\n  http: {{url: \"http://127.0.0.1:{port}/\"}}\n  batch: {{maxLatencyMs: 10}}\n  retry: {{requestTimeoutMs: 600000}}\n---\n{}",
        ENTRA.replace("name: console", "name: siem")
    );
    let manifests = dir.path().join("m.yaml");
    std::fs::write(&manifests, silent).unwrap();
    let state = dir.path().join("state");
    let mut child = Command::new(BIN)
        .args([
            "run",
            "-f",
            manifests.to_str().unwrap(),
            "--state-dir",
            state.to_str().unwrap(),
        ])
        .env("RUST_LOG", "info")
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    while received.load(Ordering::SeqCst) == 0 {
        assert!(std::time::Instant::now() < deadline, "the destination was never called");
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    // Ctrl-C: the run drains for its drain timeout, then gives up on the silent destination.
    let kill = Command::new("kill")
        .args(["-INT", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(kill.success());
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
    while child.try_wait().unwrap().is_none() {
        assert!(
            std::time::Instant::now() < deadline,
            "run did not stop after its drain timeout"
        );
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
    let out = child.wait_with_output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    let last = stderr.lines().last().unwrap_or_default();
    println!("stopped run: exit {:?}: {last}", out.status.code());
    assert!(
        !out.status.success(),
        "a run that left records undelivered exited 0: {stderr}"
    );
    assert!(last.starts_with("siembridge: error:"), "{stderr}");
    assert!(
        last.contains(&format!("{N} records not delivered")) && last.contains("read again from the checkpoint"),
        "{last}"
    );

    // The next run, to a destination that works, gets every record: the checkpoint held.
    let out_file = dir.path().join("out.ndjson");
    std::fs::write(
        &manifests,
        format!(
            "apiVersion: siembridge.io/v1alpha1\nkind: SiemDestination\nmetadata: {{name: siem}}\nspec:\n  format: raw\n  file: {{path: {}}}\n---\n{}",
            out_file.display(),
            ENTRA.replace("name: console", "name: siem")
        ),
    )
    .unwrap();
    let again = run(&["run", "-f", manifests.to_str().unwrap()], &state);
    assert!(again.status.success(), "{}", String::from_utf8_lossy(&again.stderr));
    let ids = record_ids(&out_file);
    let expected: Vec<String> = (0..N).map(|i| format!("rec-{i}")).collect();
    let lost: Vec<&String> = expected.iter().filter(|id| !ids.contains(id)).collect();
    let mut seen = std::collections::HashSet::new();
    let duplicated = ids.iter().filter(|id| !seen.insert(*id)).count();
    println!(
        "second run: delivered {}, lost {} {lost:?}, duplicated {duplicated}, dead-lettered 0",
        ids.len(),
        lost.len()
    );
    assert!(lost.is_empty());
}

/// A run whose dead letters could not be written exits non-zero saying how many.
#[test]
fn a_run_whose_dead_letters_could_not_be_written_exits_non_zero() {
    use std::io::{Read, Write};
    const N: usize = 4;
    let dir = tempfile::tempdir().unwrap();
    records_dir(dir.path(), N);
    // A receiver that refuses every request for good: the records go to the dead letters.
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    std::thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(mut stream) = stream else { continue };
            std::thread::spawn(move || {
                let mut buf = [0u8; 65536];
                let mut request = Vec::new();
                loop {
                    let Ok(n) = stream.read(&mut buf) else { return };
                    if n == 0 {
                        return;
                    }
                    request.extend_from_slice(&buf[..n]);
                    let text = String::from_utf8_lossy(&request);
                    let Some(head_end) = text.find("\r\n\r\n") else {
                        continue;
                    };
                    let length: usize = text[..head_end]
                        .lines()
                        .find_map(|l| {
                            l.to_ascii_lowercase()
                                .strip_prefix("content-length:")
                                .map(|v| v.trim().parse().unwrap_or(0))
                        })
                        .unwrap_or(0);
                    if request.len() < head_end + 4 + length {
                        continue;
                    }
                    request.drain(..head_end + 4 + length);
                    let body = "{\"error\":\"refused\"}";
                    let _ = write!(stream, "HTTP/1.1 400 Bad Request\r\ncontent-type: application/json\r\ncontent-length: {}\r\n\r\n{body}", body.len());
                }
            });
        }
    });
    let manifests = dir.path().join("m.yaml");
    std::fs::write(
        &manifests,
        format!(
            "apiVersion: siembridge.io/v1alpha1\nkind: SiemDestination\nmetadata: {{name: siem}}\nspec:\n  format: raw\n  http: {{url: \"http://127.0.0.1:{port}/\"}}\n  batch: {{maxLatencyMs: 10}}\n---\n{}",
            ENTRA.replace("name: console", "name: siem")
        ),
    )
    .unwrap();
    let state = dir.path().join("state");
    // The dead-letter folder cannot be made: a file is in its place.
    std::fs::create_dir_all(state.join("sb-ls-entra")).unwrap();
    std::fs::write(state.join("sb-ls-entra/dead-letter"), b"not a folder").unwrap();
    let out = run(&["run", "-f", manifests.to_str().unwrap()], &state);
    let stderr = String::from_utf8_lossy(&out.stderr);
    let last = stderr.lines().last().unwrap_or_default();
    println!("exit {:?}: {last}", out.status.code());
    assert!(
        !out.status.success(),
        "a run whose dead letters were not written exited 0: {stderr}"
    );
    assert!(last.contains(&format!("{N} records not delivered")), "{last}");
    assert!(last.contains(&format!("{N} dead-letter writes failed")), "{last}");

    // Once the folder can be written, the next run reads the records again and dead-letters them.
    std::fs::remove_file(state.join("sb-ls-entra/dead-letter")).unwrap();
    let again = run(&["run", "-f", manifests.to_str().unwrap()], &state);
    assert!(again.status.success(), "{}", String::from_utf8_lossy(&again.stderr));
    let mut ids = Vec::new();
    for entry in std::fs::read_dir(state.join("sb-ls-entra/dead-letter")).unwrap() {
        ids.extend(record_ids(&entry.unwrap().path()));
    }
    let lost: Vec<String> = (0..N)
        .map(|i| format!("rec-{i}"))
        .filter(|id| !ids.contains(id))
        .collect();
    let mut seen = std::collections::HashSet::new();
    let duplicated = ids.iter().filter(|id| !seen.insert(*id)).count();
    println!(
        "second run: delivered 0, dead-lettered {}, lost {} {lost:?}, duplicated {duplicated}",
        ids.len(),
        lost.len()
    );
    assert!(lost.is_empty());
}

/// Checkpoints and reports hold positions and error text of the user's tenant: owner-only.
#[cfg(unix)]
#[test]
fn state_files_are_readable_by_their_owner_only() {
    use std::os::unix::fs::PermissionsExt;
    let dir = tempfile::tempdir().unwrap();
    records_dir(dir.path(), 3);
    std::fs::write(dir.path().join("m.yaml"), format!("{CONSOLE}---\n{ENTRA}")).unwrap();
    let state = dir.path().join("state");
    let out = run(&["run", "-f", dir.path().join("m.yaml").to_str().unwrap()], &state);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let mut files = Vec::new();
    let mut stack = vec![state.clone()];
    while let Some(d) = stack.pop() {
        for entry in std::fs::read_dir(&d).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                stack.push(path);
            } else {
                files.push(path);
            }
        }
    }
    let checkpoints = files
        .iter()
        .filter(|p| p.to_string_lossy().contains("/checkpoints/"))
        .count();
    assert!(checkpoints >= 1, "{files:?}");
    assert!(files.iter().any(|p| p.ends_with("report.json")), "{files:?}");
    for f in &files {
        let mode = std::fs::metadata(f).unwrap().permissions().mode() & 0o777;
        println!("{:o} {}", mode, f.display());
        assert_eq!(mode, 0o600, "{} is {mode:o}", f.display());
    }
}

/// A source spec the collector cannot honour (an `azureBlob` window whose `from` is after its
/// `to`) is refused before any collector starts.
#[test]
fn a_source_spec_the_collector_cannot_honour_is_refused_before_anything_starts() {
    let dir = tempfile::tempdir().unwrap();
    let archive = "apiVersion: siembridge.io/v1alpha1\nkind: LogSource\nmetadata: {name: archive}\nspec:\n  azureBlob:\n    accountUrl: https://example.blob.core.windows.net\n    containers: [insights-logs-signinlogs]\n    from: '2026-12-02T00:00:00Z'\n    to: '2026-12-01T00:00:00Z'\n    credentials: {connectionString: {name: archive, key: cs}}\n  destinations: [{name: console}]\n";
    std::fs::write(dir.path().join("m.yaml"), format!("{CONSOLE}---\n{archive}")).unwrap();
    let out = Command::new(BIN)
        .args(["run", "-f"])
        .arg(dir.path().join("m.yaml"))
        .arg("--state-dir")
        .arg(dir.path().join("state"))
        .env("RUST_LOG", "info")
        .env("SIEMBRIDGE_SECRET_ARCHIVE_CS", "UseDevelopmentStorage=true")
        .output()
        .unwrap();
    let line = one_line_error(&out);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        line.contains("LogSource archive") && line.contains("from must be before to"),
        "{line}"
    );
    assert!(
        !stderr.contains("standalone run starting"),
        "a collector was started: {stderr}"
    );
    assert!(!dir.path().join("state").exists(), "state was written");
}
