//! Azurite (Microsoft's storage emulator, npm `azurite@3.37.0`), started by a test on 127.0.0.1
//! with a free port and in-memory storage, killed (by its own PID) when dropped.
//!
//! `e2e/test-all.sh` installs it under `e2e/.azurite`; `SIEMBRIDGE_AZURITE` may name another
//! `azurite-blob` executable. Missing locally: the test prints why and skips. Missing with
//! `CI=true`: the test fails.
#![allow(dead_code)]

use std::net::TcpListener;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use base64::Engine;
use hmac::{Hmac, Mac};
use sha2::Sha256;

/// The emulator's documented account and key (public, not a secret).
pub const ACCOUNT: &str = "devstoreaccount1";
pub const ACCOUNT_KEY: &str =
    "Eby8vdM02xNOcqFlqUwJPLlmEtlCDXJ1OUzFT50uSRZ6IFsuFq2UVErCz4I6tq/K1SZFPTOtr/KBHBeksoGMGw==";

/// A running Azurite Blob service.
pub struct Azurite {
    child: Child,
    /// Blob port on 127.0.0.1.
    pub port: u16,
    _dir: tempfile::TempDir,
}

impl Azurite {
    /// `http://127.0.0.1:PORT/devstoreaccount1`.
    pub fn account_url(&self) -> String {
        format!("http://127.0.0.1:{}/{ACCOUNT}", self.port)
    }

    /// A connection string with the account key and an explicit Blob endpoint.
    pub fn connection_string(&self) -> String {
        format!(
            "DefaultEndpointsProtocol=http;AccountName={ACCOUNT};AccountKey={ACCOUNT_KEY};BlobEndpoint={};",
            self.account_url()
        )
    }

    /// PID of the emulator process.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }
}

impl Drop for Azurite {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// The `azurite-blob` executable, if installed.
pub fn executable() -> Option<PathBuf> {
    if let Ok(p) = std::env::var("SIEMBRIDGE_AZURITE") {
        return Some(PathBuf::from(p));
    }
    let local = repo().join("e2e/.azurite/node_modules/.bin/azurite-blob");
    local.exists().then_some(local)
}

/// A free TCP port on 127.0.0.1 (bound, read, released).
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("no free port on 127.0.0.1")
}

/// Start Azurite, or `None` (with a printed reason) when it is not installed outside CI.
pub fn start() -> Option<Azurite> {
    let Some(exe) = executable() else {
        let msg = "azurite is not installed: run e2e/test-all.sh (npm azurite@3.37.0 into e2e/.azurite) or set \
                   SIEMBRIDGE_AZURITE";
        if std::env::var("CI").is_ok_and(|v| v == "true") {
            panic!("{msg}");
        }
        eprintln!("SKIPPED: {msg}");
        return None;
    };
    Some(start_with(&exe))
}

fn start_with(exe: &PathBuf) -> Azurite {
    for _ in 0..3 {
        let port = free_port();
        let dir = tempfile::tempdir().expect("temp dir");
        let mut cmd = Command::new(exe);
        // SIEMBRIDGE_AZURITE_DEBUG=<file>: Azurite's request log, to see why it refused a call.
        if let Ok(log) = std::env::var("SIEMBRIDGE_AZURITE_DEBUG") {
            cmd.arg("--debug").arg(log);
        }
        let child = cmd
            .args(["--blobHost", "127.0.0.1", "--blobPort", &port.to_string()])
            .args(["--inMemoryPersistence", "--skipApiVersionCheck", "--silent", "--loose"])
            .current_dir(dir.path())
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start azurite");
        let mut azurite = Azurite { child, port, _dir: dir };
        let deadline = Instant::now() + Duration::from_secs(30);
        while Instant::now() < deadline {
            if std::net::TcpStream::connect(("127.0.0.1", port)).is_ok() {
                return azurite;
            }
            if let Ok(Some(_)) = azurite.child.try_wait() {
                break; // port taken in the meantime: try another
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }
    panic!("azurite did not start listening");
}

/// An account SAS (version 2019-12-12, blob service, all resource types) signed with the
/// emulator's key, valid for an hour.
pub fn account_sas(permissions: &str) -> String {
    let expiry = (chrono::Utc::now() + chrono::Duration::hours(1))
        .format("%Y-%m-%dT%H:%M:%SZ")
        .to_string();
    let version = "2019-12-12";
    let to_sign = format!("{ACCOUNT}\n{permissions}\nb\nsco\n\n{expiry}\n\nhttps,http\n{version}\n");
    let key = base64::engine::general_purpose::STANDARD.decode(ACCOUNT_KEY).unwrap();
    let mut mac = <Hmac<Sha256> as Mac>::new_from_slice(&key).unwrap();
    mac.update(to_sign.as_bytes());
    let sig = base64::engine::general_purpose::STANDARD.encode(mac.finalize().into_bytes());
    let enc = |s: &str| percent_encoding::utf8_percent_encode(s, percent_encoding::NON_ALPHANUMERIC).to_string();
    format!(
        "sv={version}&ss=b&srt=sco&sp={permissions}&se={}&spr=https,http&sig={}",
        enc(&expiry),
        enc(&sig)
    )
}
