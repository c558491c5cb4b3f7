//! The Python that runs the official Azure SDKs in interop tests: `$SIEMBRIDGE_TEST_PYTHON`,
//! else the venv `e2e/test-all.sh` creates from `e2e/requirements.txt`, else `python3`.
#![allow(dead_code)]

use std::path::Path;
use std::process::Command;

/// The interpreter to use.
pub fn python() -> String {
    if let Ok(p) = std::env::var("SIEMBRIDGE_TEST_PYTHON") {
        return p;
    }
    let venv = Path::new(env!("CARGO_MANIFEST_DIR")).join("e2e/.venv/bin/python");
    if venv.exists() {
        return venv.display().to_string();
    }
    "python3".into()
}

/// Whether `python` can import `modules` (comma-separated, as in an `import` line). Outside CI
/// a missing package skips the test with a printed reason; with `CI=true` it fails it.
pub fn can_import(python: &str, modules: &str) -> bool {
    let ok = Command::new(python)
        .args(["-c", &format!("import {modules}")])
        .output()
        .map(|o| o.status.success())
        .unwrap_or(false);
    if !ok {
        let msg = format!(
            "{python} cannot import {modules}: run e2e/test-all.sh and export \
             SIEMBRIDGE_TEST_PYTHON=$PWD/e2e/.venv/bin/python"
        );
        if std::env::var("CI").is_ok_and(|v| v == "true") {
            panic!("{msg}");
        }
        eprintln!("SKIPPED: {msg}");
    }
    ok
}
