//! The Notifier's receivers against real local servers, without a cluster: a generic webhook and
//! Slack/Teams payloads to an axum receiver, and e-mail to `aiosmtpd` (PyPI) requiring STARTTLS
//! and AUTH. The e-mail receiver trusts the server through `caSecretRef` and refuses it without;
//! wrong credentials fail; a redirect is not followed; no error shows a webhook token or the SMTP
//! password. The Secrets come from an in-memory reader (the API server's GET is exercised by
//! `cluster_notifications`).

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use axum::extract::State;
use axum::http::StatusCode;
use axum::response::IntoResponse;
use axum::routing::post;
use axum::{Json, Router};
use serde_json::{json, Value};
use siembridge::api::{Receiver, SecretKeySelector};
use siembridge::operator::notifier::{send, Kind, Message, Notification, SecretReader};

#[path = "common/python.rs"]
mod python;
#[path = "common/smtp.rs"]
mod smtp;

struct Secrets(HashMap<(String, String), String>);

#[async_trait::async_trait]
impl SecretReader for Secrets {
    async fn read(&self, _namespace: &str, s: &SecretKeySelector) -> Result<String, String> {
        self.0
            .get(&(s.name.clone(), s.key.clone()))
            .cloned()
            .ok_or_else(|| format!("Secret {:?} has no key {:?}", s.name, s.key))
    }
}

fn notification() -> Notification {
    Notification {
        key: "audit/Ready/False/2026-12-08T01:00:00Z".into(),
        log_source: "audit".into(),
        namespace: "soc".into(),
        condition: "Ready".into(),
        status: "False".into(),
        reason: "DestinationNotFound".into(),
        message: "SiemDestination \"splunk\" not found in namespace \"soc\"".into(),
        since: "2026-12-08T01:00:00Z".into(),
        kind: Kind::Firing,
    }
}

fn receiver(value: Value) -> Receiver {
    serde_json::from_value(value).unwrap()
}

type Posts = Arc<Mutex<Vec<(String, Value)>>>;

async fn receiver_server() -> (u16, Posts) {
    let posts: Posts = Arc::default();
    async fn ok(State(posts): State<Posts>, Json(body): Json<Value>) -> &'static str {
        posts.lock().unwrap().push(("ok".into(), body));
        "ok"
    }
    async fn fail(State(posts): State<Posts>, Json(body): Json<Value>) -> impl IntoResponse {
        posts.lock().unwrap().push(("fail".into(), body));
        (StatusCode::INTERNAL_SERVER_ERROR, "backend down")
    }
    async fn moved() -> impl IntoResponse {
        (
            StatusCode::FOUND,
            [(
                "location",
                "https://elsewhere.example/hook?token=synthetic-redirect-token",
            )],
        )
    }
    let app = Router::new()
        .route("/ok", post(ok))
        .route("/fail", post(fail))
        .route("/moved", post(moved))
        .with_state(posts.clone());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    tokio::spawn(async move { axum::serve(listener, app).await });
    (port, posts)
}

#[tokio::test]
async fn webhooks_post_their_payloads_and_errors_hide_the_url() {
    siembridge::tls::install_crypto_provider();
    let (port, posts) = receiver_server().await;
    let token = "synthetic-webhook-token";
    let url = |path: &str| format!("http://127.0.0.1:{port}/{path}?token={token}");
    let secrets = Secrets(
        [
            (("hooks".to_string(), "ok".to_string()), url("ok")),
            (("hooks".to_string(), "fail".to_string()), url("fail")),
            (("hooks".to_string(), "moved".to_string()), url("moved")),
        ]
        .into(),
    );
    let one = Message::One(notification());
    let by_ref =
        |kind: &str, key: &str| receiver(json!({"name": "r", kind: {"urlSecretRef": {"name": "hooks", "key": key}}}));
    send(&by_ref("webhook", "ok"), "soc", &secrets, &one).await.unwrap();
    send(&by_ref("slack", "ok"), "soc", &secrets, &one).await.unwrap();
    send(&by_ref("teams", "ok"), "soc", &secrets, &one).await.unwrap();
    let got = posts.lock().unwrap().clone();
    println!("webhook POSTs received: {}", got.len());
    assert_eq!(got.len(), 3);
    assert_eq!(got[0].1["kind"], "firing");
    assert_eq!(got[0].1["reason"], "DestinationNotFound");
    assert!(got[1].1["text"].as_str().unwrap().contains("soc/audit"));
    assert_eq!(got[2].1["attachments"][0]["content"]["type"], "AdaptiveCard");

    let failed = send(&by_ref("webhook", "fail"), "soc", &secrets, &one)
        .await
        .unwrap_err();
    println!("500: {failed}");
    assert!(
        failed.contains("HTTP 500") && failed.contains("backend down"),
        "{failed}"
    );
    let moved = send(&by_ref("webhook", "moved"), "soc", &secrets, &one)
        .await
        .unwrap_err();
    println!("302: {moved}");
    assert!(moved.contains("not followed"), "{moved}");
    let refused = send(
        &receiver(json!({"name": "r", "webhook": {"url": "http://127.0.0.1:1/x?token=synthetic-webhook-token"}})),
        "soc",
        &secrets,
        &one,
    )
    .await
    .unwrap_err();
    println!("connection refused: {refused}");
    for error in [&failed, &moved, &refused] {
        assert!(
            !error.contains(token) && !error.contains("synthetic-redirect-token"),
            "{error}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn email_needs_starttls_a_trusted_certificate_and_the_credentials() {
    let py = python::python();
    if !python::can_import(&py, "aiosmtpd") {
        return;
    }
    let smtp = smtp::Smtp::start(&py).await;
    let mut secrets = Secrets(
        [
            (("smtp".to_string(), "username".to_string()), smtp::USER.to_string()),
            (("smtp".to_string(), "password".to_string()), smtp::PASSWORD.to_string()),
            (
                ("smtp".to_string(), "wrong".to_string()),
                "synthetic-wrong-password".to_string(),
            ),
            (("smtp".to_string(), "ca.pem".to_string()), smtp.pki.ca.clone()),
        ]
        .into(),
    );
    let email = |to: &str, ca: bool, password_key: &str| {
        let mut e = json!({
            "host": "127.0.0.1", "port": smtp.port, "from": "siembridge@example.test", "to": [to],
            "credentialsSecretRef": {"name": "smtp", "usernameKey": "username", "passwordKey": password_key}
        });
        if ca {
            e["caSecretRef"] = json!({"name": "smtp", "key": "ca.pem"});
        }
        receiver(json!({"name": "mail", "email": e}))
    };
    let one = Message::One(notification());
    send(&email("soc@example.test", true, "password"), "soc", &secrets, &one)
        .await
        .unwrap();
    let summary = Message::Summary(vec![
        notification(),
        Notification {
            kind: Kind::Resolved,
            status: "True".into(),
            ..notification()
        },
    ]);
    send(&email("soc@example.test", true, "password"), "soc", &secrets, &summary)
        .await
        .unwrap();
    let untrusted = send(
        &email("untrusted@example.test", false, "password"),
        "soc",
        &secrets,
        &one,
    )
    .await
    .unwrap_err();
    println!("without caSecretRef: {untrusted}");
    assert!(untrusted.to_lowercase().contains("certificate"), "{untrusted}");
    let wrong = send(&email("wrong@example.test", true, "wrong"), "soc", &secrets, &one)
        .await
        .unwrap_err();
    println!("wrong password: {wrong}");
    for error in [&untrusted, &wrong] {
        assert!(
            !error.contains(smtp::PASSWORD) && !error.contains("synthetic-wrong-password"),
            "{error}"
        );
    }
    // Another CA than the server's is refused too.
    let other = smtp::pki();
    secrets.0.insert(("smtp".into(), "ca.pem".into()), other.ca);
    let wrong_ca = send(&email("other-ca@example.test", true, "password"), "soc", &secrets, &one)
        .await
        .unwrap_err();
    println!("another CA: {wrong_ca}");

    let mails = smtp.mails();
    println!(
        "e-mails accepted: {} (soc {}, untrusted {}, wrong {}, other-ca {})",
        mails.len(),
        smtp.mails_to("soc@example.test").len(),
        smtp.mails_to("untrusted@example.test").len(),
        smtp.mails_to("wrong@example.test").len(),
        smtp.mails_to("other-ca@example.test").len()
    );
    assert_eq!(mails.len(), 2, "only the trusted, authenticated receiver delivered");
    for m in &mails {
        assert_eq!(
            (m["tls"].as_bool(), m["authenticated"].as_bool()),
            (Some(true), Some(true))
        );
    }
    let first = mails[0]["data"].as_str().unwrap();
    assert!(
        first.contains("Subject: [FIRING] LogSource soc/audit: Ready=False (DestinationNotFound)"),
        "{first}"
    );
    let second = mails[1]["data"].as_str().unwrap();
    assert!(
        second.contains("Subject: [SUMMARY] 2 LogSource transitions"),
        "{second}"
    );
    assert!(second.contains("[RESOLVED]"), "{second}");
}
