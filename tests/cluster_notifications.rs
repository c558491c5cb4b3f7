//! Notifications without Prometheus, on a real API server (`KUBECONFIG`, which `e2e/test-all.sh`
//! points at the control plane of `../shared/k8s`; without it the suite prints `skipped`, and
//! fails under `CI=true`): a `Notifier` with a generic webhook (a local axum receiver, its URL
//! with a synthetic token in a Secret), an e-mail receiver (a local `aiosmtpd` server requiring
//! STARTTLS and AUTH, its certificate from a test CA given in `caSecretRef`) and a second e-mail
//! receiver that does not trust that CA.
//!
//! A LogSource that is ready (collector pods marked ready by the test, a `stdout` SiemDestination)
//! loses its SiemDestination: exactly one webhook POST and one e-mail
//! (`notReadyMinutes: 0`). The operator is stopped and a new one started: no new notification.
//! The destination comes back: exactly one recovery notification on each receiver. The
//! receiver without the CA never delivers and says why in status; no secret shows in status.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::extract::State;
use axum::routing::post;
use axum::{Json, Router};
use k8s_openapi::api::core::v1::{Pod, Secret};
use kube::api::{Api, DeleteParams, ListParams, Patch, PatchParams, PostParams};
use kube::Client;
use serde_json::{json, Value};
use siembridge::api::{LogSource, Notifier, SiemDestination};

#[path = "common/cluster.rs"]
mod cluster_env;
#[path = "common/python.rs"]
mod python;
#[path = "common/smtp.rs"]
mod smtp;
use cluster_env::{eventually, install_crds};

type Posts = Arc<Mutex<Vec<Value>>>;

async fn webhook_receiver() -> (u16, Posts) {
    let posts: Posts = Arc::default();
    async fn hook(State(posts): State<Posts>, Json(body): Json<Value>) -> &'static str {
        posts.lock().unwrap().push(body);
        "ok"
    }
    let app = Router::new().route("/hook", post(hook)).with_state(posts.clone());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    tokio::spawn(async move { axum::serve(listener, app).await });
    (port, posts)
}

fn ready(ls: &LogSource) -> Option<(String, String)> {
    let c = ls.status.as_ref()?.conditions.iter().find(|c| c.type_ == "Ready")?;
    Some((c.status.clone(), c.reason.clone()))
}

/// Stand in for the kubelet of a cluster without nodes: mark the collector pods running and
/// ready, so the Deployment (through the real controller-manager) and the LogSource become ready.
fn kubelet(client: Client, namespace: String) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        let pods: Api<Pod> = Api::namespaced(client, &namespace);
        loop {
            if let Ok(list) = pods.list(&ListParams::default()).await {
                for pod in list {
                    let is_ready = pod
                        .status
                        .as_ref()
                        .and_then(|s| s.conditions.as_ref())
                        .is_some_and(|c| c.iter().any(|c| c.type_ == "Ready" && c.status == "True"));
                    if is_ready {
                        continue;
                    }
                    let now = k8s_openapi::jiff::Timestamp::now().to_string();
                    let status = json!({"status": {
                        "phase": "Running",
                        "conditions": [
                            {"type": "PodScheduled", "status": "True", "lastTransitionTime": now},
                            {"type": "Initialized", "status": "True", "lastTransitionTime": now},
                            {"type": "ContainersReady", "status": "True", "lastTransitionTime": now},
                            {"type": "Ready", "status": "True", "lastTransitionTime": now},
                        ]
                    }});
                    let name = kube::ResourceExt::name_any(&pod);
                    let _ = pods
                        .patch_status(&name, &PatchParams::default(), &Patch::Merge(&status))
                        .await;
                }
            }
            tokio::time::sleep(Duration::from_millis(500)).await;
        }
    })
}

/// The SiemDestination `siem`: the collector's standard output, which needs no network, so its
/// check passes at once.
async fn create_destination(client: &Client, namespace: &str) {
    let dests: Api<SiemDestination> = Api::namespaced(client.clone(), namespace);
    let dest: SiemDestination = serde_json::from_value(json!({
        "apiVersion": "siembridge.io/v1alpha1", "kind": "SiemDestination",
        "metadata": {"name": "siem"},
        "spec": {"stdout": {}}
    }))
    .unwrap();
    dests.create(&PostParams::default(), &dest).await.unwrap();
}

/// The API-polled LogSource `audit` (Secret `o365-app`) delivering to `siem`.
async fn create_log_source(client: &Client, namespace: &str) {
    let secret: Secret = serde_json::from_value(json!({
        "metadata": {"name": "o365-app"}, "stringData": {"clientSecret": "synthetic-client-secret"}
    }))
    .unwrap();
    Api::<Secret>::namespaced(client.clone(), namespace)
        .create(&PostParams::default(), &secret)
        .await
        .unwrap();
    let ls: LogSource = serde_json::from_value(json!({
        "apiVersion": "siembridge.io/v1alpha1", "kind": "LogSource",
        "metadata": {"name": "audit"},
        "spec": {
            "managementActivityApi": {
                "credentials": {
                    "tenantId": "11111111-2222-3333-4444-555555555555",
                    "clientId": "66666666-7777-8888-9999-aaaaaaaaaaaa",
                    "clientSecret": {"name": "o365-app", "key": "clientSecret"}
                },
                "contentTypes": ["Audit.General"]
            },
            "destinations": [{"name": "siem"}]
        }
    }))
    .unwrap();
    Api::<LogSource>::namespaced(client.clone(), namespace)
        .create(&PostParams::default(), &ls)
        .await
        .unwrap();
}

async fn receiver_status(client: &Client, namespace: &str, receiver: &str) -> Option<Value> {
    let n = Api::<Notifier>::namespaced(client.clone(), namespace)
        .get("soc")
        .await
        .ok()?;
    let status = serde_json::to_value(n.status?).ok()?;
    status["receivers"]
        .as_array()?
        .iter()
        .find(|r| r["name"] == receiver)
        .cloned()
}

/// Wait `quiet` and return the counts then (what arrives late is counted).
async fn settle(quiet: Duration, posts: &Posts, smtp: &smtp::Smtp) -> (usize, usize) {
    tokio::time::sleep(quiet).await;
    (posts.lock().unwrap().len(), smtp.mails_to("soc@example.test").len())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_lost_destination_notifies_once_and_its_recovery_once_across_an_operator_restart() {
    let Some(client) = cluster_env::client("cluster_notifications").await else {
        return;
    };
    let py = python::python();
    if !python::can_import(&py, "aiosmtpd") {
        return;
    }
    install_crds(&client).await;
    let ns = cluster_env::TestNamespace::create(&client, "sb-e2e-notify").await;
    let namespace = ns.name.clone();

    // Receivers: the webhook and the SMTP server (STARTTLS required, AUTH required).
    let (hook_port, posts) = webhook_receiver().await;
    let smtp = smtp::Smtp::start(&py).await;

    // A ready LogSource delivering to a SiemDestination whose connectivity check passes.
    create_destination(&client, &namespace).await;
    create_log_source(&client, &namespace).await;
    let _kubelet = kubelet(client.clone(), namespace.clone());
    let (stop_a, operator_a) = cluster_env::run_operator(&client, &namespace, "notify-a".into());
    let sources: Api<LogSource> = Api::namespaced(client.clone(), &namespace);
    eventually("the LogSource to be Ready", || {
        let sources = sources.clone();
        async move { (ready(&sources.get("audit").await.ok()?)?.0 == "True").then_some(()) }
    })
    .await;

    // The Notifier: its secrets, then the resource.
    let secrets: Api<Secret> = Api::namespaced(client.clone(), &namespace);
    let secret: Secret = serde_json::from_value(json!({
        "metadata": {"name": "notify"},
        "stringData": {
            "url": format!("http://127.0.0.1:{hook_port}/hook?token=synthetic-webhook-token"),
            "username": smtp::USER,
            "password": smtp::PASSWORD,
            "ca.pem": smtp.pki.ca,
        }
    }))
    .unwrap();
    secrets.create(&PostParams::default(), &secret).await.unwrap();
    let email = |to: &str, ca: bool| {
        let mut e = json!({
            "host": "127.0.0.1", "port": smtp.port, "from": "siembridge@example.test", "to": [to],
            "credentialsSecretRef": {"name": "notify", "usernameKey": "username", "passwordKey": "password"}
        });
        if ca {
            e["caSecretRef"] = json!({"name": "notify", "key": "ca.pem"});
        }
        e
    };
    let notifier: Notifier = serde_json::from_value(json!({
        "apiVersion": "siembridge.io/v1alpha1", "kind": "Notifier",
        "metadata": {"name": "soc"},
        "spec": {
            "receivers": [
                {"name": "hook", "webhook": {"urlSecretRef": {"name": "notify", "key": "url"}}},
                {"name": "mail", "email": email("soc@example.test", true)},
                {"name": "mail-untrusted", "email": email("untrusted@example.test", false)},
            ],
            "when": {"notReadyMinutes": 0}
        }
    }))
    .unwrap();
    let notifiers: Api<Notifier> = Api::namespaced(client.clone(), &namespace);
    notifiers.create(&PostParams::default(), &notifier).await.unwrap();
    eventually("the Notifier to have a status", || {
        let notifiers = notifiers.clone();
        async move { (!notifiers.get("soc").await.ok()?.status?.conditions.is_empty()).then_some(()) }
    })
    .await;
    let (hooks, mail) = settle(Duration::from_secs(3), &posts, &smtp).await;
    println!("while Ready: webhook POSTs {hooks}, e-mails {mail}");
    assert_eq!((hooks, mail), (0, 0), "a ready LogSource notifies nothing");

    // The destination is lost: one notification per receiver.
    Api::<SiemDestination>::namespaced(client.clone(), &namespace)
        .delete("siem", &DeleteParams::default())
        .await
        .unwrap();
    // The operator forwards the deletion to the LogSource at once, then the Notifier sends.
    let lost_at = tokio::time::Instant::now();
    loop {
        let n = (posts.lock().unwrap().len(), smtp.mails_to("soc@example.test").len());
        if n.0 >= 1 && n.1 >= 1 {
            break;
        }
        assert!(
            lost_at.elapsed() < Duration::from_secs(60),
            "no notification within 60 s of the loss: webhook POSTs {}, e-mails {}",
            n.0,
            n.1
        );
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
    println!("notified {:?} after the destination was deleted", lost_at.elapsed());
    let ls = sources.get("audit").await.unwrap();
    println!("LogSource Ready: {:?}", ready(&ls));
    let (hooks, mail) = settle(Duration::from_secs(5), &posts, &smtp).await;
    println!("after the destination was deleted: webhook POSTs {hooks}, e-mails {mail}");
    assert_eq!((hooks, mail), (1, 1), "one notification per receiver");
    let first = posts.lock().unwrap()[0].clone();
    println!("webhook body: {first}");
    assert_eq!(first["kind"], "firing");
    assert_eq!(first["logSource"], "audit");
    assert_eq!(first["namespace"], namespace.as_str());
    assert_eq!(
        (first["condition"].as_str(), first["status"].as_str()),
        (Some("Ready"), Some("False"))
    );
    assert_eq!(first["reason"], "DestinationNotFound");
    let m = &smtp.mails_to("soc@example.test")[0];
    assert_eq!(
        (m["tls"].as_bool(), m["authenticated"].as_bool()),
        (Some(true), Some(true))
    );
    assert!(
        m["data"].as_str().unwrap().contains("Subject: [FIRING] LogSource"),
        "{}",
        m["data"]
    );

    // The receiver that does not trust the CA: never delivers, says why.
    let untrusted = eventually("the untrusted receiver to report its error", || {
        let client = client.clone();
        let namespace = namespace.clone();
        async move {
            let r = receiver_status(&client, &namespace, "mail-untrusted").await?;
            (r["failed"].as_i64()? >= 1).then_some(r)
        }
    })
    .await;
    println!("mail-untrusted: {untrusted}");
    assert!(
        untrusted["lastError"]
            .as_str()
            .unwrap_or_default()
            .to_lowercase()
            .contains("certificate"),
        "{untrusted}"
    );
    assert_eq!(smtp.mails_to("untrusted@example.test").len(), 0);

    // Operator restart: a new process, state from the API server only.
    stop_a.cancel();
    operator_a.await.unwrap().unwrap();
    let failed_before_restart = receiver_status(&client, &namespace, "mail-untrusted").await.unwrap()["failed"]
        .as_i64()
        .unwrap();
    let (stop_b, operator_b) = cluster_env::run_operator(&client, &namespace, "notify-b".into());
    // The new operator has reconciled the Notifier once its retry of the failing receiver shows.
    eventually("the new operator to reconcile the Notifier", || {
        let client = client.clone();
        let namespace = namespace.clone();
        async move {
            let r = receiver_status(&client, &namespace, "mail-untrusted").await?;
            (r["failed"].as_i64()? > failed_before_restart).then_some(())
        }
    })
    .await;
    let (hooks, mail) = settle(Duration::from_secs(5), &posts, &smtp).await;
    println!("after the operator restart: webhook POSTs {hooks}, e-mails {mail}");
    assert_eq!((hooks, mail), (1, 1), "a restarted operator does not notify again");

    // Recovery: one resolved notification per receiver.
    create_destination(&client, &namespace).await;
    eventually("the recovery notifications", || {
        let n = (posts.lock().unwrap().len(), smtp.mails_to("soc@example.test").len());
        async move { (n.0 >= 2 && n.1 >= 2).then_some(()) }
    })
    .await;
    let (hooks, mail) = settle(Duration::from_secs(5), &posts, &smtp).await;
    println!("after the destination came back: webhook POSTs {hooks}, e-mails {mail}");
    assert_eq!((hooks, mail), (2, 2), "one recovery notification per receiver");
    let second = posts.lock().unwrap()[1].clone();
    println!("webhook body: {second}");
    assert_eq!(second["kind"], "resolved");
    assert_eq!(
        (second["condition"].as_str(), second["status"].as_str()),
        (Some("Ready"), Some("True"))
    );
    let m = &smtp.mails_to("soc@example.test")[1];
    assert!(m["data"].as_str().unwrap().contains("Subject: [RESOLVED] LogSource"));

    // Status: what was sent, and no secret.
    let n = notifiers.get("soc").await.unwrap();
    let status = serde_json::to_string(&n.status).unwrap();
    let hook = receiver_status(&client, &namespace, "hook").await.unwrap();
    let mail = receiver_status(&client, &namespace, "mail").await.unwrap();
    println!(
        "status: sentTotal {:?}, hook sent {}, mail sent {}, sent records {}",
        n.status.as_ref().and_then(|s| s.sent_total),
        hook["sent"],
        mail["sent"],
        n.status.as_ref().map_or(0, |s| s.sent.len())
    );
    assert_eq!((hook["sent"].as_i64(), mail["sent"].as_i64()), (Some(2), Some(2)));
    for secret in [
        "synthetic-webhook-token",
        "synthetic-smtp-password",
        "BEGIN CERTIFICATE",
    ] {
        assert!(!status.contains(secret), "status shows {secret}: {status}");
    }
    let degraded = n
        .status
        .as_ref()
        .and_then(|s| s.conditions.iter().find(|c| c.type_ == "Degraded").cloned())
        .unwrap();
    println!("Degraded={} {}: {}", degraded.status, degraded.reason, degraded.message);
    assert_eq!(degraded.status, "True");
    assert!(degraded.message.contains("mail-untrusted"));

    stop_b.cancel();
    operator_b.await.unwrap().unwrap();
    drop(smtp);
}
