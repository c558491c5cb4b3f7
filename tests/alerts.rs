//! The chart's alert rules and Grafana dashboard: `promtool check rules` and `promtool test rules`
//! (one unit test per alert, `charts/siembridge/files/prometheus/alerts_test.yaml`), the dashboard
//! JSON parses with a query on every panel, and every metric a rule or a panel uses is one the
//! collector or the operator registers (listed by this test). `promtool` comes from the Debian
//! package `prometheus`, which `e2e/test-all.sh` installs; without it the promtool test skips and
//! says so, except under `CI=true`, where it fails.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::process::Command;

fn chart_file(rel: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("charts/siembridge/files")
        .join(rel)
}

fn promtool() -> Option<PathBuf> {
    let found = std::env::var_os("PATH")
        .map(|p| {
            std::env::split_paths(&p)
                .map(|d| d.join("promtool"))
                .find(|p| p.is_file())
        })
        .unwrap_or_default();
    if found.is_none() {
        assert!(
            std::env::var("CI").as_deref() != Ok("true"),
            "CI=true but promtool is not installed (apt package prometheus; e2e/test-all.sh installs it)"
        );
        println!("skipped: promtool not installed (apt package prometheus)");
    }
    found
}

#[test]
fn promtool_checks_the_rules_and_passes_one_unit_test_per_alert() {
    let Some(promtool) = promtool() else {
        return;
    };
    let dir = chart_file("prometheus");
    for args in [["check", "rules", "alerts.yaml"], ["test", "rules", "alerts_test.yaml"]] {
        let out = Command::new(&promtool).args(args).current_dir(&dir).output().unwrap();
        let text = format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        println!("promtool {}: {}", args.join(" "), text.trim());
        assert!(out.status.success(), "promtool {} failed:\n{text}", args.join(" "));
    }
    // Every alert has a unit test that expects it to fire.
    let rules: serde_yaml::Value =
        serde_yaml::from_str(&std::fs::read_to_string(dir.join("alerts.yaml")).unwrap()).unwrap();
    let tests: serde_yaml::Value =
        serde_yaml::from_str(&std::fs::read_to_string(dir.join("alerts_test.yaml")).unwrap()).unwrap();
    let alerts: BTreeSet<String> = rule_list(&rules)
        .iter()
        .filter_map(|r| r["alert"].as_str().map(String::from))
        .collect();
    let mut firing: BTreeSet<String> = BTreeSet::new();
    for t in tests["tests"].as_sequence().unwrap() {
        for a in t["alert_rule_test"].as_sequence().into_iter().flatten() {
            if a["exp_alerts"].as_sequence().is_some_and(|s| !s.is_empty()) {
                firing.insert(a["alertname"].as_str().unwrap().to_string());
            }
        }
    }
    let untested: Vec<_> = alerts.difference(&firing).collect();
    assert!(untested.is_empty(), "alerts without a firing unit test: {untested:?}");
    println!("{} alerts, each with a unit test that fires it", alerts.len());
}

fn rule_list(rules: &serde_yaml::Value) -> Vec<serde_yaml::Value> {
    rules["groups"]
        .as_sequence()
        .unwrap()
        .iter()
        .flat_map(|g| g["rules"].as_sequence().unwrap().clone())
        .collect()
}

/// Metric names in a PromQL expression: identifiers followed by `{`, `[`, `)` or space that are
/// siembridge's, Prometheus' `up`, or process metrics; histogram series map to their family.
fn metrics_in(expr: &str) -> BTreeSet<String> {
    let mut names = BTreeSet::new();
    let bytes = expr.as_bytes();
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'{' {
            // Label matchers: names and values, no metric.
            while i < bytes.len() && bytes[i] != b'}' {
                i += 1;
            }
        } else if bytes[i].is_ascii_alphabetic() || bytes[i] == b'_' {
            let start = i;
            while i < bytes.len() && (bytes[i].is_ascii_alphanumeric() || bytes[i] == b'_') {
                i += 1;
            }
            let word = &expr[start..i];
            let quoted = start > 0 && matches!(bytes[start - 1], b'"' | b'$');
            if !quoted && (word.starts_with("siembridge_") || word.starts_with("process_") || word == "up") {
                let family = word
                    .strip_suffix("_bucket")
                    .or_else(|| word.strip_suffix("_count"))
                    .or_else(|| word.strip_suffix("_sum"))
                    .filter(|_| word.contains("_duration_"))
                    .unwrap_or(word);
                names.insert(family.to_string());
            }
        } else {
            i += 1;
        }
    }
    names
}

/// Every metric family name the crate registers: the string literals `"siembridge_..."` of
/// `src/`, with the file that registers each.
fn registered_metrics() -> BTreeMap<String, String> {
    let mut found = BTreeMap::new();
    let mut stack = vec![Path::new(env!("CARGO_MANIFEST_DIR")).join("src")];
    while let Some(dir) = stack.pop() {
        for entry in std::fs::read_dir(&dir).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                stack.push(path);
            } else if path.extension().is_some_and(|e| e == "rs") {
                let text = std::fs::read_to_string(&path).unwrap();
                for part in text.split('"').skip(1).step_by(2) {
                    if part.starts_with("siembridge_")
                        && part
                            .bytes()
                            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_')
                    {
                        found.entry(part.to_string()).or_insert_with(|| {
                            path.strip_prefix(env!("CARGO_MANIFEST_DIR"))
                                .unwrap()
                                .display()
                                .to_string()
                        });
                    }
                }
            }
        }
    }
    found
}

#[test]
fn the_dashboard_and_the_rules_use_only_metrics_siembridge_exports() {
    let dashboard: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(chart_file("grafana/siembridge.json")).unwrap())
            .expect("the dashboard is JSON");
    assert_eq!(dashboard["uid"], "siembridge");
    let mut used: BTreeMap<String, Vec<String>> = BTreeMap::new();
    let panels = dashboard["panels"].as_array().unwrap();
    let mut ids = BTreeSet::new();
    for p in panels {
        assert!(ids.insert(p["id"].as_u64().unwrap()), "panel ids are unique");
        if p["type"] == "row" {
            continue;
        }
        let title = p["title"].as_str().unwrap();
        let targets = p["targets"].as_array().unwrap();
        assert!(!targets.is_empty(), "panel {title:?} has no query");
        for t in targets {
            let expr = t["expr"].as_str().unwrap();
            let names = metrics_in(expr);
            assert!(!names.is_empty(), "panel {title:?}: no siembridge metric in {expr:?}");
            for n in names {
                used.entry(n).or_default().push(format!("panel {title:?}"));
            }
        }
    }
    let rules: serde_yaml::Value =
        serde_yaml::from_str(&std::fs::read_to_string(chart_file("prometheus/alerts.yaml")).unwrap()).unwrap();
    for r in rule_list(&rules) {
        for n in metrics_in(r["expr"].as_str().unwrap()) {
            used.entry(n)
                .or_default()
                .push(format!("alert {}", r["alert"].as_str().unwrap()));
        }
    }
    let registered = registered_metrics();
    let mut missing = Vec::new();
    for (name, users) in &used {
        let from = match name.as_str() {
            // Prometheus' own scrape health.
            "up" => Some("Prometheus (scrape)".to_string()),
            n if n.starts_with("process_") => Some("prometheus process collector".to_string()),
            n => registered.get(n).cloned(),
        };
        match from {
            Some(file) => println!("{name:<55} {file:<40} used by {}", users.join(", ")),
            None => missing.push(format!("{name} (used by {})", users.join(", "))),
        }
    }
    assert!(missing.is_empty(), "metrics nobody exports:\n{}", missing.join("\n"));
}

#[path = "common/mod.rs"]
mod common;

/// The value of `name{labels}` in `families`, if the series exists.
fn sample(families: &[prometheus::proto::MetricFamily], name: &str, labels: &[(&str, &str)]) -> Option<f64> {
    let family = families.iter().find(|f| f.name() == name)?;
    family
        .get_metric()
        .iter()
        .find(|m| {
            labels
                .iter()
                .all(|(k, v)| m.get_label().iter().any(|l| l.name() == *k && l.value() == *v))
        })
        .map(|m| match family.get_field_type() {
            prometheus::proto::MetricType::GAUGE => m.get_gauge().get_value(),
            _ => m.get_counter().get_value(),
        })
}

#[tokio::test]
async fn a_collector_exports_the_state_the_alerts_read() {
    use siembridge::api::{FileSpec, SiemDestinationSpec};
    let dir = tempfile::tempdir().unwrap();
    let records = dir.path().join("records.ndjson");
    let lines: Vec<String> = (0..3)
        .map(|n| {
            serde_json::json!({"time": "2026-12-07T10:00:00Z", "category": "SignInLogs",
                "operationName": "Sign-in activity", "correlationId": format!("00000000-0000-4000-8000-00000000000{n}")})
            .to_string()
        })
        .collect();
    std::fs::write(&records, lines.join("\n") + "\n").unwrap();
    let destinations = BTreeMap::from([(
        "out".to_string(),
        SiemDestinationSpec {
            file: Some(FileSpec {
                path: dir.path().join("out.ndjson").display().to_string(),
                max_bytes: 1 << 20,
            }),
            ..Default::default()
        },
    )]);
    let mut config = common::replay_config(dir.path(), &records, "entra-signins", destinations);
    config.routes[0].categories = vec!["SignInLogs".into()];
    config.routes[0].silence_threshold_seconds = Some(1800);
    let mut quiet = config.routes[0].clone();
    quiet.log_source = "entra-audit".into();
    quiet.categories = vec!["AuditLogs".into()];
    quiet.silence_threshold_seconds = Some(3600);
    config.routes.push(quiet);

    let registry = prometheus::Registry::new();
    let started = chrono::Utc::now().timestamp();
    let summary = siembridge::collector::Collector::new(config)
        .with_registry(registry.clone())
        .run(tokio_util::sync::CancellationToken::new())
        .await
        .unwrap();
    assert_eq!(summary.records, 3);
    let families = registry.gather();
    let get = |name: &str, labels: &[(&str, &str)]| {
        sample(&families, name, labels).unwrap_or_else(|| panic!("no series {name}{labels:?}"))
    };
    let busy = [("logsource", "entra-signins")];
    let silent = [("logsource", "entra-audit")];
    assert_eq!(get("siembridge_collector_events_received_total", &busy), 3.0);
    // The quiet LogSource's series exist at 0 (absence-based alerts need them), its last event
    // is the collector's start, and both thresholds come from the routes.
    assert_eq!(get("siembridge_collector_events_received_total", &silent), 0.0);
    assert_eq!(
        get(
            "siembridge_collector_events_dead_lettered_total",
            &[("logsource", "entra-audit"), ("stage", "deliver")]
        ),
        0.0
    );
    let last_busy = get("siembridge_collector_last_event_timestamp_seconds", &busy);
    let last_silent = get("siembridge_collector_last_event_timestamp_seconds", &silent);
    assert!(last_busy >= started as f64, "{last_busy} >= {started}");
    assert!((last_silent - started as f64).abs() <= 2.0, "{last_silent} ~ {started}");
    assert_eq!(get("siembridge_collector_silence_threshold_seconds", &busy), 1800.0);
    assert_eq!(get("siembridge_collector_silence_threshold_seconds", &silent), 3600.0);
    assert_eq!(get("siembridge_collector_throttled", &[]), 0.0);
    println!("last event: entra-signins {last_busy}, entra-audit {last_silent} (started {started})");
}
