//! The leader elector against a scripted API server: take a free or expired Lease, never a
//! fresh one held by another replica, lose on a conflicting write, step down on shutdown.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use http::{Request, Response};
use k8s_openapi::jiff::{SignedDuration, Timestamp};
use kube::client::Body;
use kube::Client;
use serde_json::{json, Value};
use siembridge::operator::leader::{LeaderElector, TermEnd, LEASE_NAME};
use tokio_util::sync::CancellationToken;

const LEASE_PATH: &str = "/apis/coordination.k8s.io/v1/namespaces/siembridge-system/leases";

#[derive(Clone, Debug)]
struct Call {
    method: String,
    path: String,
    body: Option<Value>,
}

/// Serve calls with `answer`, recording them.
fn server(answer: impl Fn(&Call) -> (u16, Value) + Send + 'static) -> (Client, Arc<Mutex<Vec<Call>>>) {
    let (service, mut handle) = tower_test::mock::pair::<Request<Body>, Response<Body>>();
    let calls: Arc<Mutex<Vec<Call>>> = Arc::default();
    let recorded = calls.clone();
    tokio::spawn(async move {
        while let Some((request, send)) = handle.next_request().await {
            let (parts, body) = request.into_parts();
            let bytes = body.collect_bytes().await.unwrap_or_default();
            let call = Call {
                method: parts.method.to_string(),
                path: parts.uri.path().to_string(),
                body: serde_json::from_slice(&bytes).ok(),
            };
            recorded.lock().unwrap().push(call.clone());
            let (code, value) = answer(&call);
            send.send_response(
                Response::builder()
                    .status(code)
                    .header("content-type", "application/json")
                    .body(Body::from(serde_json::to_vec(&value).unwrap()))
                    .unwrap(),
            );
        }
    });
    (Client::new(service, "default"), calls)
}

fn lease(holder: &str, renewed: Timestamp, transitions: i32) -> Value {
    json!({
        "apiVersion": "coordination.k8s.io/v1", "kind": "Lease",
        "metadata": {"name": LEASE_NAME, "namespace": "siembridge-system", "resourceVersion": "41"},
        "spec": {"holderIdentity": holder, "leaseDurationSeconds": 15,
                 "renewTime": renewed.to_string(), "leaseTransitions": transitions}
    })
}

fn status(code: u16, reason: &str) -> Value {
    json!({"apiVersion": "v1", "kind": "Status", "metadata": {}, "status": "Failure", "reason": reason,
           "message": reason, "code": code})
}

fn echo(call: &Call) -> (u16, Value) {
    (200, call.body.clone().unwrap())
}

fn elector(client: Client, identity: &str) -> LeaderElector {
    LeaderElector::new(client, "siembridge-system", identity.into())
        .with_timing(Duration::from_millis(300), Duration::from_millis(20))
}

#[tokio::test]
async fn a_missing_lease_is_created_with_this_replica_as_holder() {
    let (client, calls) = server(|call| match call.method.as_str() {
        "GET" => (404, status(404, "NotFound")),
        _ => (201, call.body.clone().unwrap()),
    });
    assert!(elector(client, "operator-a").try_acquire_or_renew().await.unwrap());
    let calls = calls.lock().unwrap().clone();
    assert_eq!(calls.len(), 2);
    assert_eq!(calls[1].method, "POST");
    assert_eq!(calls[1].path, LEASE_PATH);
    assert_eq!(calls[1].body.as_ref().unwrap()["spec"]["holderIdentity"], "operator-a");
}

#[tokio::test]
async fn a_fresh_lease_of_another_replica_is_left_alone() {
    let (client, calls) = server(|call| match call.method.as_str() {
        "GET" => (200, lease("operator-b", Timestamp::now(), 3)),
        other => panic!("no write expected, got {other}"),
    });
    assert!(!elector(client, "operator-a").try_acquire_or_renew().await.unwrap());
    assert_eq!(calls.lock().unwrap().len(), 1);
}

#[tokio::test]
async fn an_expired_lease_is_taken_over_with_its_resource_version() {
    let expired = Timestamp::now() - SignedDuration::from_secs(60);
    let (client, calls) = server(move |call| match call.method.as_str() {
        "GET" => (200, lease("operator-b", expired, 3)),
        "PUT" => echo(call),
        other => panic!("unexpected {other}"),
    });
    assert!(elector(client, "operator-a").try_acquire_or_renew().await.unwrap());
    let calls = calls.lock().unwrap().clone();
    let put = calls[1].body.as_ref().unwrap();
    assert_eq!(calls[1].path, format!("{LEASE_PATH}/{LEASE_NAME}"));
    assert_eq!(put["spec"]["holderIdentity"], "operator-a");
    assert_eq!(put["spec"]["leaseTransitions"], 4);
    assert_eq!(
        put["metadata"]["resourceVersion"], "41",
        "optimistic concurrency on the Lease"
    );
}

#[tokio::test]
async fn a_conflicting_write_loses_the_race() {
    let expired = Timestamp::now() - SignedDuration::from_secs(60);
    let (client, _) = server(move |call| match call.method.as_str() {
        "GET" => (200, lease("operator-b", expired, 3)),
        _ => (409, status(409, "Conflict")),
    });
    assert!(!elector(client, "operator-a").try_acquire_or_renew().await.unwrap());
}

#[tokio::test]
async fn leadership_is_lost_when_another_replica_took_the_lease() {
    let (client, _) = server(|call| match call.method.as_str() {
        "GET" => (200, lease("operator-b", Timestamp::now(), 4)),
        other => panic!("unexpected {other}"),
    });
    let stop = CancellationToken::new();
    let end = tokio::time::timeout(Duration::from_secs(5), elector(client, "operator-a").hold(&stop))
        .await
        .unwrap();
    assert!(matches!(end, TermEnd::Lost(_)), "{end:?}");
}

#[tokio::test]
async fn leadership_is_lost_when_renewals_fail_for_a_lease_duration() {
    let (client, calls) = server(|_| (500, status(500, "InternalError")));
    let stop = CancellationToken::new();
    let end = tokio::time::timeout(Duration::from_secs(5), elector(client, "operator-a").hold(&stop))
        .await
        .unwrap();
    assert!(
        matches!(end, TermEnd::Lost(ref why) if why.contains("cannot renew")),
        "{end:?}"
    );
    assert!(calls.lock().unwrap().len() >= 2, "retried before giving up");
}

#[tokio::test]
async fn shutdown_releases_the_lease() {
    let current = Arc::new(Mutex::new(lease("operator-a", Timestamp::now(), 0)));
    let state = current.clone();
    let (client, calls) = server(move |call| match call.method.as_str() {
        "GET" => (200, state.lock().unwrap().clone()),
        "PUT" => {
            *state.lock().unwrap() = call.body.clone().unwrap();
            echo(call)
        }
        other => panic!("unexpected {other}"),
    });
    let stop = CancellationToken::new();
    let elector = elector(client, "operator-a");
    let holding = tokio::spawn({
        let stop = stop.clone();
        async move { elector.hold(&stop).await }
    });
    tokio::time::sleep(Duration::from_millis(100)).await;
    stop.cancel();
    assert_eq!(holding.await.unwrap(), TermEnd::Released);
    let last = calls.lock().unwrap().last().cloned().unwrap();
    assert_eq!(last.method, "PUT");
    assert!(
        last.body.unwrap()["spec"].get("holderIdentity").is_none(),
        "holder cleared"
    );
}
