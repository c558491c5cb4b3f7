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
