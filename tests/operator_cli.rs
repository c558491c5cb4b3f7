//! `siembridge operator` as a process: an unreachable API server gives one clear line and a
//! non-zero exit, not a panic trace.

use std::process::Command;

#[test]
fn unreachable_api_server_is_one_clear_line_and_a_failure() {
    let dir = tempfile::tempdir().unwrap();
    let kubeconfig = dir.path().join("config");
    std::fs::write(
        &kubeconfig,
        r#"apiVersion: v1
kind: Config
clusters:
- name: nowhere
  cluster:
    server: https://127.0.0.1:1
    insecure-skip-tls-verify: true
contexts:
- name: nowhere
  context:
    cluster: nowhere
    user: nobody
current-context: nowhere
users:
- name: nobody
  user:
    token: synthetic-token
"#,
    )
    .unwrap();
    let output = Command::new(env!("CARGO_BIN_EXE_siembridge"))
        .arg("operator")
        .arg("--metrics-addr")
        .arg("127.0.0.1:0")
        .env("KUBECONFIG", &kubeconfig)
        .env_remove("KUBERNETES_SERVICE_HOST")
        .env_remove("KUBERNETES_SERVICE_PORT")
        .env_remove("RUST_LOG")
        .output()
        .unwrap();
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(!stderr.contains("panicked"), "{stderr}");
    let lines: Vec<&str> = stderr.lines().filter(|l| !l.trim().is_empty()).collect();
    assert_eq!(lines.len(), 1, "exactly one line: {stderr}");
    assert!(lines[0].contains("Kubernetes API server"), "{stderr}");
    assert!(lines[0].contains("127.0.0.1:1"), "{stderr}");
    assert!(
        !stderr.contains("synthetic-token"),
        "no credential in the error: {stderr}"
    );
}
