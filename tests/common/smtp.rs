//! A local SMTP server for the notification tests: `aiosmtpd` (PyPI, in `e2e/requirements.txt`)
//! on 127.0.0.1, STARTTLS required (a certificate for `127.0.0.1` and `localhost` from a CA made
//! by the test) and AUTH required (user `notifier`, password [`PASSWORD`]), writing each message
//! it accepts as one JSON line (`to`, `tls`, `authenticated`, `data`) to a file.
#![allow(dead_code)]

use std::path::PathBuf;
use std::time::Duration;

use serde_json::Value;

pub const USER: &str = "notifier";
pub const PASSWORD: &str = "synthetic-smtp-password";

const SMTP_SERVER: &str = r#"
import json, ssl, sys
from aiosmtpd.controller import Controller
from aiosmtpd.smtp import AuthResult, LoginPassword

cert, key, port, user, password, out = sys.argv[1:7]

class Handler:
    async def handle_DATA(self, server, session, envelope):
        record = {"to": envelope.rcpt_tos, "tls": session.ssl is not None,
                  "authenticated": bool(session.authenticated),
                  "data": envelope.content.decode("utf8", "replace")}
        with open(out, "a") as f:
            f.write(json.dumps(record) + "\n")
        return "250 OK"

def authenticator(server, session, envelope, mechanism, auth_data):
    ok = (isinstance(auth_data, LoginPassword) and auth_data.login.decode() == user
          and auth_data.password.decode() == password)
    return AuthResult(success=ok, handled=False)

context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
context.load_cert_chain(cert, key)
controller = Controller(Handler(), hostname="127.0.0.1", port=int(port), tls_context=context,
                        require_starttls=True, authenticator=authenticator, auth_required=True,
                        auth_require_tls=True)
controller.start()
print("ready", flush=True)
sys.stdin.read()
controller.stop()
"#;

pub struct Pki {
    pub ca: String,
    pub cert: String,
    pub key: String,
}

pub fn pki() -> Pki {
    use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, Issuer, KeyPair, KeyUsagePurpose};
    let mut ca_params = CertificateParams::new(Vec::<String>::new()).unwrap();
    ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    ca_params
        .distinguished_name
        .push(DnType::CommonName, "siembridge notifications test CA");
    ca_params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::DigitalSignature];
    let ca_key = KeyPair::generate().unwrap();
    let ca = ca_params.self_signed(&ca_key).unwrap();
    let issuer = Issuer::new(ca_params, ca_key);
    let mut p = CertificateParams::new(vec!["localhost".to_string(), "127.0.0.1".to_string()]).unwrap();
    p.distinguished_name.push(DnType::CommonName, "localhost");
    p.extended_key_usages = vec![rcgen::ExtendedKeyUsagePurpose::ServerAuth];
    p.use_authority_key_identifier_extension = true;
    let key = KeyPair::generate().unwrap();
    let cert = p.signed_by(&key, &issuer).unwrap();
    Pki {
        ca: ca.pem(),
        cert: cert.pem(),
        key: key.serialize_pem(),
    }
}

/// A running server; killed when dropped.
pub struct Smtp {
    pub port: u16,
    pub pki: Pki,
    mail_file: PathBuf,
    _dir: tempfile::TempDir,
    _child: tokio::process::Child,
}

impl Smtp {
    /// Start the server with `python` (which must import `aiosmtpd`).
    pub async fn start(python: &str) -> Smtp {
        let dir = tempfile::tempdir().unwrap();
        let pki = pki();
        std::fs::write(dir.path().join("cert.pem"), &pki.cert).unwrap();
        std::fs::write(dir.path().join("key.pem"), &pki.key).unwrap();
        let mail_file = dir.path().join("mails.ndjson");
        let port = {
            let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
            l.local_addr().unwrap().port()
        };
        let mut child = tokio::process::Command::new(python)
            .arg("-c")
            .arg(SMTP_SERVER)
            .arg(dir.path().join("cert.pem"))
            .arg(dir.path().join("key.pem"))
            .arg(port.to_string())
            .arg(USER)
            .arg(PASSWORD)
            .arg(&mail_file)
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            // aiosmtpd logs a traceback for every refused TLS handshake (tests refuse some on
            // purpose): kept in the temporary folder, not in the test's output.
            .stderr(std::fs::File::create(dir.path().join("smtpd.log")).unwrap())
            .kill_on_drop(true)
            .spawn()
            .expect("the SMTP server starts");
        use tokio::io::AsyncBufReadExt;
        let mut lines = tokio::io::BufReader::new(child.stdout.take().unwrap()).lines();
        let line = tokio::time::timeout(Duration::from_secs(30), lines.next_line())
            .await
            .expect("the SMTP server is ready within 30 s")
            .unwrap();
        assert_eq!(line.as_deref(), Some("ready"));
        Smtp {
            port,
            pki,
            mail_file,
            _dir: dir,
            _child: child,
        }
    }

    /// Every message accepted so far.
    pub fn mails(&self) -> Vec<Value> {
        std::fs::read_to_string(&self.mail_file)
            .unwrap_or_default()
            .lines()
            .filter_map(|l| serde_json::from_str(l).ok())
            .collect()
    }

    /// The messages to `to`.
    pub fn mails_to(&self, to: &str) -> Vec<Value> {
        self.mails()
            .into_iter()
            .filter(|m| m["to"].as_array().is_some_and(|a| a.iter().any(|t| t == to)))
            .collect()
    }
}
