//! Reconciles against a scripted API server (tower-test mock behind `kube::Client`): every test
//! asserts the exact calls a reconcile makes, in order, with their field manager, content type
//! and bodies, and the `Action` it returns.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use http::{Request, Response};
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::{ConfigMap, Secret};
use k8s_openapi::ByteString;
use kube::client::Body;
use kube::runtime::controller::Action;
use kube::Client;
use serde_json::{json, Value};
use siembridge::api::conditions::{reasons, types};
use siembridge::api::{
    BlobCredentials, BlobSource, ConsumerGroup, ConsumerGroupSpec, DestinationRef, EntraCredentials,
    EventHubCredentials, EventHubRef, EventHubSource, GraphEndpoint, GraphSource, LogSource, LogSourceSpec,
    ReplaySource, SecretKeySelector, SiemDestination, SiemDestinationSpec, SplunkHecSpec, StdoutSpec,
};
use siembridge::operator::connectivity::ConnectivityCheck;
use siembridge::operator::context::{secret_meta, Context, Stores};
use siembridge::operator::metrics::Metrics;
use siembridge::operator::{consumer_group, destination, log_source};

const NS: &str = "soc";
const APPLY: &str = "application/apply-patch+yaml";

/// One request the reconcile made.
#[derive(Clone, Debug)]
struct Call {
    method: String,
    path: String,
    query: String,
    content_type: Option<String>,
    body: Option<Value>,
}

impl Call {
    /// `METHOD path` for the ordered call list.
    fn line(&self) -> String {
        format!("{} {}", self.method, self.path)
    }

    fn is_field_manager_apply(&self) -> bool {
        self.method == "PATCH"
            && self.content_type.as_deref() == Some(APPLY)
            && self.query.split('&').any(|p| p == "fieldManager=siembridge-operator")
            && self.query.split('&').any(|p| p == "force=true")
    }
}

type Responder = Box<dyn Fn(&Call) -> Option<(u16, Value)> + Send + Sync>;

/// A scripted API server: answers applies by echoing the object (plus what the server adds),
/// lists with `lists` (empty by default), events by echoing, deletes with success; `override_`
/// answers first when it returns `Some`.
struct ApiServer {
    calls: Arc<Mutex<Vec<Call>>>,
}

impl ApiServer {
    fn start(
        objects: Vec<Value>,
        lists: BTreeMap<String, Vec<Value>>,
        deployment_ready: bool,
        override_: Option<Responder>,
    ) -> (Client, ApiServer) {
        let (service, mut handle) = tower_test::mock::pair::<Request<Body>, Response<Body>>();
        let calls: Arc<Mutex<Vec<Call>>> = Arc::default();
        let recorded = calls.clone();
        tokio::spawn(async move {
            while let Some((request, send)) = handle.next_request().await {
                let (parts, body) = request.into_parts();
                let bytes = body.collect_bytes().await.unwrap_or_default();
                let body: Option<Value> = if bytes.is_empty() {
                    None
                } else {
                    Some(
                        serde_json::from_slice(&bytes)
                            .unwrap_or_else(|_| serde_yaml::from_slice(&bytes).expect("request body is JSON or YAML")),
                    )
                };
                let call = Call {
                    method: parts.method.to_string(),
                    path: parts.uri.path().to_string(),
                    query: parts.uri.query().unwrap_or("").to_string(),
                    content_type: parts
                        .headers
                        .get("content-type")
                        .and_then(|v| v.to_str().ok())
                        .map(str::to_string),
                    body,
                };
                recorded.lock().unwrap().push(call.clone());
                let (code, answer) = override_
                    .as_ref()
                    .and_then(|o| o(&call))
                    .unwrap_or_else(|| default_answer(&call, &objects, &lists, deployment_ready));
                let response = Response::builder()
                    .status(code)
                    .header("content-type", "application/json")
                    .body(Body::from(serde_json::to_vec(&answer).unwrap()))
                    .unwrap();
                send.send_response(response);
            }
        });
        (Client::new(service, "default"), ApiServer { calls })
    }

    fn calls(&self) -> Vec<Call> {
        self.calls.lock().unwrap().clone()
    }

    fn lines(&self) -> Vec<String> {
        self.calls().iter().map(Call::line).collect()
    }
}

fn default_answer(
    call: &Call,
    objects: &[Value],
    lists: &BTreeMap<String, Vec<Value>>,
    deployment_ready: bool,
) -> (u16, Value) {
    match call.method.as_str() {
        "PATCH" if call.path.ends_with("/status") => {
            let name_path = call.path.trim_end_matches("/status");
            let mut obj = objects
                .iter()
                .find(|o| name_path.ends_with(&format!("/{}", o["metadata"]["name"].as_str().unwrap())))
                .cloned()
                .expect("status patch of a known object");
            obj["status"] = call.body.as_ref().unwrap()["status"].clone();
            (200, obj)
        }
        "PATCH" => {
            let mut obj = call.body.clone().unwrap();
            obj["metadata"]["resourceVersion"] = json!("1");
            obj["metadata"]["uid"] = json!("99999999-0000-0000-0000-000000000001");
            obj["metadata"]["generation"] = json!(1);
            if call.path.contains("/deployments/") && deployment_ready {
                let replicas = obj["spec"]["replicas"].clone();
                obj["status"] = json!({
                    "observedGeneration": 1,
                    "replicas": replicas,
                    "readyReplicas": replicas,
                    "updatedReplicas": replicas,
                    "availableReplicas": replicas,
                });
            }
            (200, obj)
        }
        "GET" => {
            let items = lists
                .iter()
                .find(|(suffix, _)| call.path.ends_with(suffix.as_str()))
                .map(|(_, items)| items.clone())
                .unwrap_or_default();
            (
                200,
                json!({"apiVersion": "meta.k8s.io/v1", "kind": "PartialObjectMetadataList", "metadata": {}, "items": items}),
            )
        }
        "POST" => (201, call.body.clone().unwrap()),
        "DELETE" => (
            200,
            json!({"apiVersion": "v1", "kind": "Status", "metadata": {}, "status": "Success", "code": 200}),
        ),
        other => panic!("unexpected {other} {}", call.path),
    }
}

/// Connectivity stub: answers from a table and counts the checks.
struct StubCheck {
    reachable: bool,
    checks: AtomicUsize,
}

#[async_trait::async_trait]
impl ConnectivityCheck for StubCheck {
    async fn check(&self, host: &str, port: u16) -> Result<(), String> {
        self.checks.fetch_add(1, Ordering::SeqCst);
        if self.reachable {
            Ok(())
        } else {
            Err(format!("cannot connect to {host}:{port}: connection refused"))
        }
    }
}

fn stub(reachable: bool) -> Arc<StubCheck> {
    Arc::new(StubCheck {
        reachable,
        checks: AtomicUsize::new(0),
    })
}

fn context(client: Client, stores: Stores, check: Arc<StubCheck>) -> Arc<Context> {
    Arc::new(Context::new(
        client,
        Metrics::unregistered(),
        stores,
        "ghcr.io/siembridge/siembridge:test".into(),
        check,
        Some("test".into()),
    ))
}

fn meta<K: kube::Resource>(obj: &mut K, uid: &str) {
    let m = obj.meta_mut();
    m.namespace = Some(NS.into());
    m.uid = Some(uid.into());
    m.generation = Some(1);
    m.resource_version = Some("10".into());
}

fn ready_status() -> Value {
    json!({"conditions": [{"type": "Ready", "status": "True", "reason": "Reachable", "message": "ok",
        "lastTransitionTime": "2026-11-01T00:00:00Z"}]})
}

fn stdout_destination() -> SiemDestination {
    let mut d = SiemDestination::new(
        "console",
        SiemDestinationSpec {
            stdout: Some(StdoutSpec::default()),
            ..SiemDestinationSpec::default()
        },
    );
    meta(&mut d, "33333333-0000-0000-0000-000000000001");
    d.status = Some(serde_json::from_value(ready_status()).unwrap());
    d
}

fn splunk_destination() -> SiemDestination {
    let mut d = SiemDestination::new(
        "splunk",
        SiemDestinationSpec {
            splunk_hec: Some(SplunkHecSpec {
                url: "https://splunk.contoso.example:8088".into(),
                token: SecretKeySelector {
                    name: "hec-token".into(),
                    key: "token".into(),
                },
                ..SplunkHecSpec::default()
            }),
            ..SiemDestinationSpec::default()
        },
    );
    meta(&mut d, "33333333-0000-0000-0000-000000000002");
    d
}

/// A collector Deployment left from an earlier spec of LogSource `log_source`, as the operator's
/// Deployment watch holds it (the clean-up looks for children only when the stores hold one).
fn stale_in_store(log_source: &str) -> Deployment {
    serde_json::from_value(json!({"apiVersion": "apps/v1", "kind": "Deployment",
        "metadata": {"name": format!("sb-ls-{log_source}"), "namespace": NS, "labels": {
            "app.kubernetes.io/managed-by": "siembridge",
            "siembridge.io/owner-kind": "LogSource",
            "siembridge.io/owner-name": log_source}}}))
    .unwrap()
}

fn secret(name: &str, key: &str, version: &str) -> Secret {
    let mut s = Secret {
        data: Some(BTreeMap::from([(key.to_string(), ByteString(b"synthetic".to_vec()))])),
        ..Secret::default()
    };
    s.metadata.name = Some(name.into());
    meta(&mut s, "44444444-0000-0000-0000-000000000001");
    s.metadata.resource_version = Some(version.into());
    s
}

fn replay_log_source(destination: &str) -> LogSource {
    let mut ls = LogSource::new(
        "quickstart",
        LogSourceSpec {
            replay: Some(ReplaySource {
                config_map: Some("sample-events".into()),
                ..ReplaySource::default()
            }),
            destinations: vec![DestinationRef {
                name: destination.into(),
            }],
            ..LogSourceSpec::default()
        },
    );
    meta(&mut ls, "11111111-2222-3333-4444-555555555555");
    ls
}

fn graph_log_source() -> LogSource {
    let mut ls = LogSource::new(
        "entra-signins",
        LogSourceSpec {
            graph: Some(GraphSource {
                credentials: EntraCredentials {
                    tenant_id: "11111111-2222-3333-4444-555555555555".into(),
                    client_id: "22222222-3333-4444-5555-666666666666".into(),
                    client_secret: Some(SecretKeySelector {
                        name: "graph-app".into(),
                        key: "client-secret".into(),
                    }),
                    ..EntraCredentials::default()
                },
                endpoints: vec![GraphEndpoint::SignIns],
                ..GraphSource::default()
            }),
            destinations: vec![DestinationRef { name: "console".into() }],
            ..LogSourceSpec::default()
        },
    );
    meta(&mut ls, "11111111-0000-0000-0000-000000000002");
    ls
}

fn event_hub_log_source(cg: &str) -> LogSource {
    let mut ls = LogSource::new(
        "intune",
        LogSourceSpec {
            event_hub: Some(EventHubSource {
                consumer_group_ref: cg.into(),
                categories: vec!["DeviceComplianceOrg".into()],
            }),
            destinations: vec![DestinationRef { name: "console".into() }],
            ..LogSourceSpec::default()
        },
    );
    meta(&mut ls, "11111111-0000-0000-0000-000000000003");
    ls
}

fn consumer_group(replicas: i32) -> ConsumerGroup {
    let mut cg = ConsumerGroup::new(
        "intune-hub",
        ConsumerGroupSpec {
            event_hub: EventHubRef {
                fully_qualified_namespace: "contoso-ns.servicebus.windows.net".into(),
                hub_name: "insights-logs".into(),
                consumer_group: "siembridge".into(),
                custom_endpoint: None,
            },
            credentials: EventHubCredentials {
                connection_string: Some(SecretKeySelector {
                    name: "hub-listen".into(),
                    key: "connection-string".into(),
                }),
                entra: None,
            },
            replicas,
            ..serde_json::from_value(json!({
                "eventHub": {"fullyQualifiedNamespace": "x", "hubName": "y"},
                "credentials": {}
            }))
            .unwrap()
        },
    );
    meta(&mut cg, "55555555-0000-0000-0000-000000000001");
    cg
}

fn stores(
    log_sources: Vec<LogSource>,
    cgs: Vec<ConsumerGroup>,
    dests: Vec<SiemDestination>,
    secrets: Vec<Secret>,
    config_maps: Vec<ConfigMap>,
    deployments: Vec<Deployment>,
) -> Stores {
    Stores::from_objects(log_sources, cgs, dests, secrets, config_maps, deployments)
}

fn children_lines(kind_paths: &[(&str, &str)]) -> Vec<String> {
    kind_paths
        .iter()
        .map(|(prefix, name)| format!("PATCH {prefix}/namespaces/{NS}/{name}"))
        .collect()
}

fn list_lines() -> Vec<String> {
    [
        "/apis/apps/v1/namespaces/soc/deployments",
        "/api/v1/namespaces/soc/configmaps",
        "/apis/rbac.authorization.k8s.io/v1/namespaces/soc/rolebindings",
        "/apis/rbac.authorization.k8s.io/v1/namespaces/soc/roles",
        "/api/v1/namespaces/soc/serviceaccounts",
        "/apis/policy/v1/namespaces/soc/poddisruptionbudgets",
    ]
    .iter()
    .map(|p| format!("GET {p}"))
    .collect()
}

fn collector_apply_lines(collector: &str) -> Vec<String> {
    let report = format!("configmaps/{collector}-report");
    children_lines(&[
        ("/api/v1", &format!("serviceaccounts/{collector}")),
        ("/apis/rbac.authorization.k8s.io/v1", &format!("roles/{collector}")),
        (
            "/apis/rbac.authorization.k8s.io/v1",
            &format!("rolebindings/{collector}"),
        ),
        ("/api/v1", &format!("configmaps/{collector}")),
        ("/api/v1", &report),
        ("/apis/apps/v1", &format!("deployments/{collector}")),
    ])
}

fn condition<'a>(status: &'a Value, type_: &str) -> &'a Value {
    status["conditions"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["type"] == type_)
        .unwrap_or_else(|| panic!("no {type_} condition in {status}"))
}

const EVENTS: &str = "POST /apis/events.k8s.io/v1/namespaces/soc/events";
const LEASES: &str = "GET /apis/coordination.k8s.io/v1/namespaces/soc/leases";

#[tokio::test]
async fn replay_log_source_applies_its_collector_with_the_field_manager_and_reports_status() {
    let ls = replay_log_source("console");
    let (client, server) = ApiServer::start(vec![serde_json::to_value(&ls).unwrap()], BTreeMap::new(), false, None);
    let ctx = context(
        client,
        stores(
            vec![ls.clone()],
            vec![],
            vec![stdout_destination()],
            vec![],
            vec![],
            vec![],
        ),
        stub(true),
    );

    let action = log_source::reconcile(Arc::new(ls), ctx).await.unwrap();
    assert_eq!(action, Action::requeue(Duration::from_secs(30)), "pods are starting");

    let mut expected = collector_apply_lines("sb-ls-quickstart");
    expected.extend(list_lines());
    expected.push(EVENTS.into());
    expected.push("PATCH /apis/siembridge.io/v1alpha1/namespaces/soc/logsources/quickstart/status".into());
    assert_eq!(server.lines(), expected);

    let calls = server.calls();
    for call in calls.iter().filter(|c| c.method == "PATCH") {
        assert!(
            call.is_field_manager_apply(),
            "not an apply under siembridge-operator: {call:?}"
        );
    }
    for call in calls.iter().filter(|c| c.method == "GET") {
        assert!(
            call.query.contains("labelSelector=app.kubernetes.io%2Fmanaged-by%3Dsiembridge%2Csiembridge.io%2Fowner-kind%3DLogSource%2Csiembridge.io%2Fowner-name%3Dquickstart"),
            "{}",
            call.query
        );
    }
    let deployment = calls[5].body.as_ref().unwrap();
    assert_eq!(deployment["kind"], "Deployment");
    assert_eq!(deployment["metadata"]["ownerReferences"][0]["kind"], "LogSource");
    assert_eq!(deployment["metadata"]["ownerReferences"][0]["controller"], true);
    let pod = &deployment["spec"]["template"];
    assert_eq!(
        pod["spec"]["containers"][0]["image"],
        "ghcr.io/siembridge/siembridge:test"
    );
    assert_eq!(
        pod["metadata"]["annotations"]["siembridge.io/config-hash"]
            .as_str()
            .unwrap()
            .len(),
        64
    );
    let config_map = calls[3].body.as_ref().unwrap();
    let yaml = config_map["data"]["collector.yaml"].as_str().unwrap();
    assert!(yaml.contains("kind: replay"), "{yaml}");
    assert!(
        calls[4].body.as_ref().unwrap().get("data").is_none(),
        "report data belongs to the collector"
    );

    let event = calls[12].body.as_ref().unwrap();
    assert_eq!(event["reason"], "CollectorCreated");
    assert_eq!(event["regarding"]["name"], "quickstart");

    let status = &calls[13].body.as_ref().unwrap()["status"];
    assert_eq!(status["sourceType"], "replay");
    assert_eq!(status["observedGeneration"], 1);
    assert_eq!(condition(status, types::READY)["status"], "False");
    assert_eq!(
        condition(status, types::READY)["reason"],
        reasons::DEPLOYMENT_PROGRESSING
    );
    assert_eq!(condition(status, types::PROGRESSING)["status"], "True");
    assert_eq!(condition(status, types::DESTINATIONS_READY)["status"], "True");
    assert_eq!(
        condition(status, types::SOURCE_CONNECTED)["reason"],
        reasons::AWAITING_REPORT
    );
    for c in status["conditions"].as_array().unwrap() {
        assert_eq!(c["observedGeneration"], 1);
    }
}

#[tokio::test]
async fn unchanged_state_writes_no_status_and_publishes_no_event() {
    // First pass: the Deployment is ready and the collector has reported.
    let mut ls = replay_log_source("console");
    let report = json!({"reporter": "sb-ls-quickstart-0", "time": "2026-11-22T10:00:00Z",
        "logSources": {"quickstart": {"eventsForwarded": 42, "lagSeconds": 3, "lastEventTime": "2026-11-22T09:59:58Z"}}});
    let mut report_cm = ConfigMap {
        data: Some(BTreeMap::from([("report.json".to_string(), report.to_string())])),
        ..ConfigMap::default()
    };
    report_cm.metadata.name = Some("sb-ls-quickstart-report".into());
    report_cm.metadata.namespace = Some(NS.into());
    let mut existing = Deployment::default();
    existing.metadata.name = Some("sb-ls-quickstart".into());
    existing.metadata.namespace = Some(NS.into());
    let make_stores = |ls: &LogSource| {
        stores(
            vec![ls.clone()],
            vec![],
            vec![stdout_destination()],
            vec![],
            vec![report_cm.clone()],
            vec![existing.clone()],
        )
    };

    let (client, server) = ApiServer::start(vec![serde_json::to_value(&ls).unwrap()], BTreeMap::new(), true, None);
    let action = log_source::reconcile(Arc::new(ls.clone()), context(client, make_stores(&ls), stub(true)))
        .await
        .unwrap();
    assert_eq!(action, Action::requeue(Duration::from_secs(120)));
    let calls = server.calls();
    let status_call = calls.iter().find(|c| c.path.ends_with("/status")).unwrap();
    let status = status_call.body.as_ref().unwrap()["status"].clone();
    assert_eq!(condition(&status, types::READY)["status"], "True", "{status}");
    assert_eq!(condition(&status, types::READY)["reason"], reasons::COLLECTING);
    assert_eq!(status["eventsForwarded"], 42);
    assert_eq!(status["lag"], "3s");
    // Became ready: one Normal event before nothing else.
    let ready_events: Vec<&Call> = calls
        .iter()
        .filter(|c| c.line() == EVENTS && c.body.as_ref().unwrap()["reason"] == "Ready")
        .collect();
    assert_eq!(ready_events.len(), 1);
    assert!(
        !calls
            .iter()
            .any(|c| c.line() == EVENTS && c.body.as_ref().unwrap()["reason"] == "CollectorCreated"),
        "the Deployment existed"
    );

    // Second pass with that status: children are applied again (idempotent), no status write,
    // no event.
    ls.status = Some(serde_json::from_value(status).unwrap());
    let (client, server) = ApiServer::start(vec![serde_json::to_value(&ls).unwrap()], BTreeMap::new(), true, None);
    let action = log_source::reconcile(Arc::new(ls.clone()), context(client, make_stores(&ls), stub(true)))
        .await
        .unwrap();
    assert_eq!(action, Action::requeue(Duration::from_secs(120)));
    let mut expected = collector_apply_lines("sb-ls-quickstart");
    expected.extend(list_lines());
    assert_eq!(server.lines(), expected);
}

/// A blocked LogSource: only a status patch (and a Warning event), no child touched, a slow
/// requeue.
async fn assert_blocked(ls: LogSource, stores: Stores, reason: &str, message_part: &str) {
    let name = ls.metadata.name.clone().unwrap();
    let (client, server) = ApiServer::start(vec![serde_json::to_value(&ls).unwrap()], BTreeMap::new(), false, None);
    let ctx = context(client, stores, stub(true));
    let action = log_source::reconcile(Arc::new(ls), ctx.clone()).await.unwrap();
    assert_eq!(action, Action::requeue(Duration::from_secs(300)));
    assert_eq!(
        server.lines(),
        vec![
            format!("PATCH /apis/siembridge.io/v1alpha1/namespaces/soc/logsources/{name}/status"),
            EVENTS.to_string(),
        ]
    );
    let calls = server.calls();
    assert!(calls[0].is_field_manager_apply());
    let status = &calls[0].body.as_ref().unwrap()["status"];
    let ready = condition(status, types::READY);
    assert_eq!(ready["status"], "False");
    assert_eq!(ready["reason"], reason);
    assert!(ready["message"].as_str().unwrap().contains(message_part), "{ready}");
    let event = calls[1].body.as_ref().unwrap();
    assert_eq!(event["type"], "Warning");
    assert_eq!(event["reason"], reason);
    let blocked = ctx.metrics.failures.with_label_values(&["logsource", reason]).get();
    assert_eq!(blocked, 1, "counted under its reason");
}

#[tokio::test]
async fn missing_secret_gives_secret_not_found_and_a_slow_requeue() {
    let ls = graph_log_source();
    let stores = stores(
        vec![ls.clone()],
        vec![],
        vec![stdout_destination()],
        vec![],
        vec![],
        vec![],
    );
    assert_blocked(ls, stores, reasons::SECRET_NOT_FOUND, "graph-app").await;
}

#[tokio::test]
async fn the_operator_sees_secret_metadata_only_so_a_missing_key_is_the_collectors_check() {
    // The operator watches Secrets as metadata (no data, no keys): a Secret that exists does not
    // block, whatever its keys; the collector reading `<Secret>/<key>` reports a missing key.
    let stores = stores(
        vec![],
        vec![],
        vec![],
        vec![secret("graph-app", "wrong-key", "5")],
        vec![],
        vec![],
    );
    let stored = stores.secrets.state();
    assert_eq!(stored.len(), 1);
    assert_eq!(stored[0].metadata.resource_version.as_deref(), Some("5"));
    let wanted = siembridge::api::SecretKeySelector {
        name: "graph-app".into(),
        key: "client-secret".into(),
    };
    let namespace = stored[0].metadata.namespace.clone().unwrap();
    assert_eq!(stores.missing_secret_key(&namespace, [&wanted]), None);
}

#[tokio::test]
async fn missing_destination_gives_destination_not_found() {
    let ls = replay_log_source("nowhere");
    let stores = stores(
        vec![ls.clone()],
        vec![],
        vec![stdout_destination()],
        vec![],
        vec![],
        vec![],
    );
    assert_blocked(ls, stores, reasons::DESTINATION_NOT_FOUND, "nowhere").await;
}

#[tokio::test]
async fn invalid_spec_gives_invalid_spec() {
    let mut ls = replay_log_source("console");
    ls.spec.graph = graph_log_source().spec.graph;
    let stores = stores(
        vec![ls.clone()],
        vec![],
        vec![stdout_destination()],
        vec![],
        vec![],
        vec![],
    );
    assert_blocked(ls, stores, reasons::INVALID_SPEC, "more than one source kind").await;
}

#[tokio::test]
async fn missing_consumer_group_gives_consumer_group_not_found() {
    let ls = event_hub_log_source("absent-hub");
    let stores = stores(
        vec![ls.clone()],
        vec![],
        vec![stdout_destination()],
        vec![],
        vec![],
        vec![],
    );
    assert_blocked(ls, stores, reasons::CONSUMER_GROUP_NOT_FOUND, "absent-hub").await;
}

#[tokio::test]
async fn event_hub_log_source_deletes_a_collector_it_no_longer_needs() {
    let ls = event_hub_log_source("intune-hub");
    let stale = json!({"apiVersion": "apps/v1", "kind": "Deployment",
        "metadata": {"name": "sb-ls-intune", "namespace": NS}});
    let lists = BTreeMap::from([("/deployments".to_string(), vec![stale])]);
    let (client, server) = ApiServer::start(vec![serde_json::to_value(&ls).unwrap()], lists, false, None);
    let ctx = context(
        client,
        stores(
            vec![ls.clone()],
            vec![consumer_group(2)],
            vec![stdout_destination()],
            vec![],
            vec![],
            vec![stale_in_store("intune")],
        ),
        stub(true),
    );
    let action = log_source::reconcile(Arc::new(ls), ctx).await.unwrap();
    assert_eq!(
        action,
        Action::requeue(Duration::from_secs(30)),
        "its ConsumerGroup is not ready yet"
    );
    let mut expected = vec![
        "GET /apis/apps/v1/namespaces/soc/deployments".to_string(),
        "DELETE /apis/apps/v1/namespaces/soc/deployments/sb-ls-intune".to_string(),
    ];
    expected.extend(list_lines().into_iter().skip(1));
    expected.push(EVENTS.into());
    expected.push("PATCH /apis/siembridge.io/v1alpha1/namespaces/soc/logsources/intune/status".into());
    assert_eq!(server.lines(), expected);
    let calls = server.calls();
    assert_eq!(calls[7].body.as_ref().unwrap()["reason"], "CollectorDeleted");
    let status = &calls[8].body.as_ref().unwrap()["status"];
    assert_eq!(status["sourceType"], "eventHub");
    assert!(condition(status, types::READY)["message"]
        .as_str()
        .unwrap()
        .contains("intune-hub"));
}

#[tokio::test]
async fn consumer_group_runs_one_collector_with_its_replicas_and_secrets() {
    let cg = consumer_group(2);
    let ls = event_hub_log_source("intune-hub");
    let now = k8s_openapi::jiff::Timestamp::now().to_string();
    let lease = |name: &str, holder: &str| {
        json!({"apiVersion": "coordination.k8s.io/v1", "kind": "Lease",
            "metadata": {"name": name, "namespace": NS,
                "annotations": {"siembridge.io/sequence-number": "100", "siembridge.io/offset": "4096"}},
            "spec": {"holderIdentity": holder, "leaseDurationSeconds": 30, "renewTime": now}})
    };
    // Each replica reports the partitions it reads under its own key of the report ConfigMap.
    let replica_report = |pod: &str, partition: &str, last: i64| {
        json!({"reporter": pod, "time": "2026-11-22T10:00:00Z",
            "logSources": {"intune": {"eventsForwarded": 10}},
            "partitions": {partition: {"owner": pod, "lastEnqueuedSequenceNumber": last}}})
        .to_string()
    };
    let mut report_cm = ConfigMap {
        data: Some(BTreeMap::from([
            (
                "report-sb-cg-intune-hub-7d9f-a.json".to_string(),
                replica_report("sb-cg-intune-hub-7d9f-a", "0", 150),
            ),
            (
                "report-sb-cg-intune-hub-7d9f-b.json".to_string(),
                replica_report("sb-cg-intune-hub-7d9f-b", "1", 130),
            ),
        ])),
        ..Default::default()
    };
    report_cm.metadata.name = Some("sb-cg-intune-hub-report".into());
    report_cm.metadata.namespace = Some(NS.into());
    let leases = vec![
        lease("sb-cg-intune-hub-1", "sb-cg-intune-hub-7d9f-b"),
        lease("sb-cg-intune-hub-0", "sb-cg-intune-hub-7d9f-a"),
        // A longer-named group's Lease shares the prefix: not a partition of this group.
        lease("sb-cg-intune-hub-eu-0", "someone-else"),
    ];
    let lists = BTreeMap::from([("/leases".to_string(), leases)]);
    let (client, server) = ApiServer::start(vec![serde_json::to_value(&cg).unwrap()], lists, true, None);
    let ctx = context(
        client,
        stores(
            vec![ls],
            vec![cg.clone()],
            vec![stdout_destination()],
            vec![secret("hub-listen", "connection-string", "7")],
            vec![report_cm],
            vec![],
        ),
        stub(true),
    );
    let action = consumer_group::reconcile(Arc::new(cg), ctx).await.unwrap();
    assert_eq!(action, Action::requeue(Duration::from_secs(120)));
    let mut expected = collector_apply_lines("sb-cg-intune-hub");
    // Two replicas: a PodDisruptionBudget keeps one reading through a node drain.
    expected.push("PATCH /apis/policy/v1/namespaces/soc/poddisruptionbudgets/sb-cg-intune-hub".into());
    expected.extend(list_lines());
    expected.push(EVENTS.into());
    expected.push(LEASES.into());
    expected.push("PATCH /apis/siembridge.io/v1alpha1/namespaces/soc/consumergroups/intune-hub/status".into());
    // Ready transition event after the status write.
    expected.push(EVENTS.into());
    assert_eq!(server.lines(), expected);
    let calls = server.calls();
    let deployment = calls[5].body.as_ref().unwrap();
    assert_eq!(deployment["spec"]["replicas"], 2);
    let mounts = deployment["spec"]["template"]["spec"]["containers"][0]["volumeMounts"].to_string();
    assert!(mounts.contains("/var/run/secrets/siembridge/hub-listen"), "{mounts}");
    let config = calls[3].body.as_ref().unwrap()["data"]["collector.yaml"]
        .as_str()
        .unwrap()
        .to_string();
    assert!(config.contains("logSource: intune"), "{config}");
    let status = &calls[15].body.as_ref().unwrap()["status"];
    assert_eq!(condition(status, types::READY)["status"], "True");
    assert_eq!(condition(status, types::BALANCED)["status"], "True", "{status}");
    assert_eq!(status["replicasSummary"], "2/2");
    assert_eq!(status["partitionsSummary"], "2/2");
    assert_eq!(status["partitions"][0]["id"], "0");
    assert_eq!(status["partitions"][0]["owner"], "sb-cg-intune-hub-7d9f-a");
    assert_eq!(status["partitions"].as_array().unwrap().len(), 2);
    // Lag from both replicas' reports, not only the last one written.
    assert_eq!(status["partitions"][0]["lagEvents"], 50, "{status}");
    assert_eq!(status["partitions"][1]["lagEvents"], 30, "{status}");
    assert_eq!(status["maxLagEvents"], 50, "{status}");
}

#[tokio::test]
async fn consumer_group_without_log_sources_scales_to_zero() {
    let cg = consumer_group(3);
    let (client, server) = ApiServer::start(vec![serde_json::to_value(&cg).unwrap()], BTreeMap::new(), true, None);
    let ctx = context(
        client,
        stores(
            vec![],
            vec![cg.clone()],
            vec![],
            vec![secret("hub-listen", "connection-string", "7")],
            vec![],
            vec![],
        ),
        stub(true),
    );
    consumer_group::reconcile(Arc::new(cg), ctx).await.unwrap();
    let calls = server.calls();
    assert_eq!(calls[5].body.as_ref().unwrap()["spec"]["replicas"], 0);
    let status = &calls
        .iter()
        .find(|c| c.path.ends_with("/status"))
        .unwrap()
        .body
        .as_ref()
        .unwrap()["status"];
    assert_eq!(condition(status, types::READY)["reason"], reasons::NO_CONSUMERS);
}

#[tokio::test]
async fn consumer_group_with_missing_secret_is_blocked() {
    let cg = consumer_group(1);
    let (client, server) = ApiServer::start(vec![serde_json::to_value(&cg).unwrap()], BTreeMap::new(), true, None);
    let ctx = context(
        client,
        stores(vec![], vec![cg.clone()], vec![], vec![], vec![], vec![]),
        stub(true),
    );
    let action = consumer_group::reconcile(Arc::new(cg), ctx).await.unwrap();
    assert_eq!(action, Action::requeue(Duration::from_secs(300)));
    assert_eq!(
        server.lines(),
        vec![
            "PATCH /apis/siembridge.io/v1alpha1/namespaces/soc/consumergroups/intune-hub/status".to_string(),
            EVENTS.to_string()
        ]
    );
    let status = &server.calls()[0].body.clone().unwrap()["status"].clone();
    assert_eq!(condition(status, types::READY)["reason"], reasons::SECRET_NOT_FOUND);
}

#[tokio::test]
async fn destination_ready_comes_from_the_connectivity_check_at_most_every_few_minutes() {
    let dest = splunk_destination();
    let ls = replay_log_source("splunk");
    let check = stub(true);
    let (client, server) = ApiServer::start(vec![serde_json::to_value(&dest).unwrap()], BTreeMap::new(), false, None);
    let ctx = context(
        client,
        stores(
            vec![ls],
            vec![],
            vec![dest.clone()],
            vec![secret("hec-token", "token", "3")],
            vec![],
            vec![],
        ),
        check.clone(),
    );
    let action = destination::reconcile(Arc::new(dest.clone()), ctx.clone())
        .await
        .unwrap();
    assert_eq!(action, Action::requeue(Duration::from_secs(180)));
    assert_eq!(check.checks.load(Ordering::SeqCst), 1);
    let calls = server.calls();
    assert_eq!(
        calls[0].line(),
        "PATCH /apis/siembridge.io/v1alpha1/namespaces/soc/siemdestinations/splunk/status"
    );
    assert!(calls[0].is_field_manager_apply());
    let status = &calls[0].body.as_ref().unwrap()["status"];
    assert_eq!(condition(status, types::READY)["status"], "True");
    assert_eq!(condition(status, types::READY)["reason"], reasons::REACHABLE);
    assert!(condition(status, types::READY)["message"]
        .as_str()
        .unwrap()
        .contains("splunk.contoso.example:8088"));
    assert_eq!(status["destinationType"], "splunkHec");
    assert_eq!(status["usedBy"], json!(["quickstart"]));
    assert_eq!(status["usedByCount"], 1);

    // A second reconcile right away reuses the check.
    destination::reconcile(Arc::new(dest), ctx).await.unwrap();
    assert_eq!(check.checks.load(Ordering::SeqCst), 1);
}

#[tokio::test]
async fn unreachable_destination_names_the_host_and_never_the_secret() {
    let dest = splunk_destination();
    let (client, server) = ApiServer::start(vec![serde_json::to_value(&dest).unwrap()], BTreeMap::new(), false, None);
    let ctx = context(
        client,
        stores(
            vec![],
            vec![],
            vec![dest.clone()],
            vec![secret("hec-token", "token", "3")],
            vec![],
            vec![],
        ),
        stub(false),
    );
    destination::reconcile(Arc::new(dest), ctx).await.unwrap();
    let body = server.calls()[0].body.clone().unwrap();
    let status = &body["status"];
    let ready = condition(status, types::READY);
    assert_eq!(ready["status"], "False");
    assert_eq!(ready["reason"], reasons::UNREACHABLE);
    assert!(ready["message"].as_str().unwrap().contains("splunk.contoso.example"));
    assert!(!body.to_string().contains("synthetic"), "no secret value in status");
}

#[tokio::test]
async fn destination_with_missing_secret_is_not_checked() {
    let dest = splunk_destination();
    let check = stub(true);
    let (client, server) = ApiServer::start(vec![serde_json::to_value(&dest).unwrap()], BTreeMap::new(), false, None);
    let ctx = context(
        client,
        stores(vec![], vec![], vec![dest.clone()], vec![], vec![], vec![]),
        check.clone(),
    );
    let action = destination::reconcile(Arc::new(dest), ctx).await.unwrap();
    assert_eq!(action, Action::requeue(Duration::from_secs(300)));
    assert_eq!(check.checks.load(Ordering::SeqCst), 0);
    let status = &server.calls()[0].body.clone().unwrap()["status"].clone();
    assert_eq!(condition(status, types::READY)["reason"], reasons::SECRET_NOT_FOUND);
}

#[tokio::test]
async fn api_failure_becomes_an_error_with_a_bounded_requeue_and_a_metric() {
    let ls = replay_log_source("console");
    let fail: Responder = Box::new(|call: &Call| {
        (call.method == "PATCH").then(|| {
            (
                500,
                json!({"apiVersion": "v1", "kind": "Status", "metadata": {}, "status": "Failure",
                    "message": "etcd unavailable", "reason": "InternalError", "code": 500}),
            )
        })
    });
    let (client, server) = ApiServer::start(vec![], BTreeMap::new(), false, Some(fail));
    let ctx = context(
        client,
        stores(
            vec![ls.clone()],
            vec![],
            vec![stdout_destination()],
            vec![],
            vec![],
            vec![],
        ),
        stub(true),
    );
    let ls = Arc::new(ls);
    let error = log_source::reconcile(ls.clone(), ctx.clone()).await.unwrap_err();
    assert_eq!(server.lines().len(), 1, "stops at the first failed call");
    assert_eq!(error.metric_label(), "api_error");
    let action = log_source::error_policy(ls, &error, ctx.clone());
    assert_eq!(action, Action::requeue(Duration::from_secs(15)));
    assert_eq!(
        ctx.metrics
            .failures
            .with_label_values(&["logsource", "api_error"])
            .get(),
        1
    );
}

#[tokio::test]
async fn secret_rotation_changes_the_pod_template_hash() {
    let ls = replay_log_source("splunk");
    let hash_with = |version: &str| {
        let ls = ls.clone();
        let version = version.to_string();
        async move {
            let (client, server) =
                ApiServer::start(vec![serde_json::to_value(&ls).unwrap()], BTreeMap::new(), false, None);
            let ctx = context(
                client,
                stores(
                    vec![ls.clone()],
                    vec![],
                    vec![splunk_destination()],
                    vec![secret("hec-token", "token", &version)],
                    vec![],
                    vec![],
                ),
                stub(true),
            );
            log_source::reconcile(Arc::new(ls), ctx).await.unwrap();
            let calls = server.calls();
            let deployment = calls.iter().find(|c| c.path.contains("/deployments/")).unwrap();
            deployment.body.as_ref().unwrap()["spec"]["template"]["metadata"]["annotations"]
                ["siembridge.io/config-hash"]
                .as_str()
                .unwrap()
                .to_string()
        }
    };
    let before = hash_with("100").await;
    assert_eq!(before, hash_with("100").await);
    assert_ne!(before, hash_with("101").await);
}

#[tokio::test]
async fn a_destination_that_stays_reachable_writes_no_status() {
    let mut dest = splunk_destination();
    let ls = replay_log_source("splunk");
    let secrets = vec![secret("hec-token", "token", "3")];
    let (client, server) = ApiServer::start(vec![serde_json::to_value(&dest).unwrap()], BTreeMap::new(), false, None);
    let ctx = context(
        client,
        stores(
            vec![ls.clone()],
            vec![],
            vec![dest.clone()],
            secrets.clone(),
            vec![],
            vec![],
        ),
        stub(true),
    );
    destination::reconcile(Arc::new(dest.clone()), ctx).await.unwrap();
    let first = server.calls()[0].body.clone().unwrap()["status"].clone();
    dest.status = Some(serde_json::from_value(first).unwrap());

    // A new check (fresh operator, empty cache) that finds the same: nothing to write.
    let check = stub(true);
    let (client, server) = ApiServer::start(vec![serde_json::to_value(&dest).unwrap()], BTreeMap::new(), false, None);
    let ctx = context(
        client,
        stores(vec![ls], vec![], vec![dest.clone()], secrets, vec![], vec![]),
        check.clone(),
    );
    destination::reconcile(Arc::new(dest), ctx).await.unwrap();
    assert_eq!(check.checks.load(Ordering::SeqCst), 1, "the check ran");
    assert!(server.lines().is_empty(), "no status churn: {:?}", server.lines());
}

#[test]
fn watch_mappers_find_the_resources_a_change_concerns() {
    use siembridge::operator::triggers;
    let graph = graph_log_source();
    let replay = replay_log_source("splunk");
    let hub = event_hub_log_source("intune-hub");
    let cg = consumer_group(1);
    let stores = stores(
        vec![graph.clone(), replay.clone(), hub.clone()],
        vec![cg.clone()],
        vec![stdout_destination(), splunk_destination()],
        vec![],
        vec![],
        vec![],
    );
    let names = |refs: Vec<kube::runtime::reflector::ObjectRef<LogSource>>| {
        let mut v: Vec<String> = refs.into_iter().map(|r| r.name).collect();
        v.sort();
        v
    };
    assert_eq!(
        names(triggers::log_sources_of_destination(&stores, &stdout_destination())),
        vec!["entra-signins", "intune"]
    );
    // A Secret of a destination concerns the LogSources delivering there.
    assert_eq!(
        names(triggers::log_sources_of_secret(
            &stores,
            &secret_meta(secret("hec-token", "token", "1"))
        )),
        vec!["quickstart"]
    );
    // A Secret of the source itself.
    assert_eq!(
        names(triggers::log_sources_of_secret(
            &stores,
            &secret_meta(secret("graph-app", "client-secret", "1"))
        )),
        vec!["entra-signins"]
    );
    assert_eq!(
        names(triggers::log_sources_of_consumer_group(&stores, &cg)),
        vec!["intune"]
    );
    assert_eq!(triggers::consumer_group_of_log_source(&hub).unwrap().name, "intune-hub");
    assert!(triggers::consumer_group_of_log_source(&replay).is_none());
    let cgs: Vec<String> = triggers::consumer_groups_of_destination(&stores, &stdout_destination())
        .into_iter()
        .map(|r| r.name)
        .collect();
    assert_eq!(cgs, vec!["intune-hub"]);
    let cgs: Vec<String> =
        triggers::consumer_groups_of_secret(&stores, &secret_meta(secret("hub-listen", "connection-string", "1")))
            .into_iter()
            .map(|r| r.name)
            .collect();
    assert_eq!(cgs, vec!["intune-hub"]);
    let dests: Vec<String> = triggers::destinations_of_secret(&stores, &secret_meta(secret("hec-token", "token", "1")))
        .into_iter()
        .map(|r| r.name)
        .collect();
    assert_eq!(dests, vec!["splunk"]);
    let dests: Vec<String> = triggers::destinations_of_log_source(&replay)
        .into_iter()
        .map(|r| r.name)
        .collect();
    assert_eq!(dests, vec!["splunk"]);
}

#[tokio::test]
async fn a_new_collector_is_announced_once_even_before_the_watch_sees_it() {
    let ls = replay_log_source("console");
    let (client, server) = ApiServer::start(vec![serde_json::to_value(&ls).unwrap()], BTreeMap::new(), false, None);
    let ctx = context(
        client,
        stores(
            vec![ls.clone()],
            vec![],
            vec![stdout_destination()],
            vec![],
            vec![],
            vec![],
        ),
        stub(true),
    );
    let ls = Arc::new(ls);
    log_source::reconcile(ls.clone(), ctx.clone()).await.unwrap();
    log_source::reconcile(ls, ctx).await.unwrap();
    let created = server
        .calls()
        .iter()
        .filter(|c| c.line() == EVENTS && c.body.as_ref().unwrap()["reason"] == "CollectorCreated")
        .count();
    assert_eq!(created, 1);
}

#[tokio::test]
async fn a_blocked_log_source_keeps_the_progress_of_its_running_collector() {
    let ls = graph_log_source();
    let report = json!({"reporter": "sb-ls-entra-signins-0", "time": "2026-11-22T10:00:00Z",
        "logSources": {"entra-signins": {"eventsForwarded": 7, "throttled": true}}});
    let mut report_cm = ConfigMap {
        data: Some(BTreeMap::from([("report.json".to_string(), report.to_string())])),
        ..ConfigMap::default()
    };
    report_cm.metadata.name = Some("sb-ls-entra-signins-report".into());
    report_cm.metadata.namespace = Some(NS.into());
    let (client, server) = ApiServer::start(vec![serde_json::to_value(&ls).unwrap()], BTreeMap::new(), false, None);
    let ctx = context(
        client,
        stores(
            vec![ls.clone()],
            vec![],
            vec![stdout_destination()],
            vec![],
            vec![report_cm],
            vec![],
        ),
        stub(true),
    );
    log_source::reconcile(Arc::new(ls), ctx).await.unwrap();
    let status = server.calls()[0].body.clone().unwrap()["status"].clone();
    assert_eq!(condition(&status, types::READY)["reason"], reasons::SECRET_NOT_FOUND);
    assert_eq!(status["eventsForwarded"], 7);
    assert_eq!(condition(&status, types::THROTTLED)["status"], "True");
}

/// A LogSource the collector cannot honour (an `azureBlob` window whose `from` is after its
/// `to`) gets an `InvalidSpec` condition and no collector built from it: its pod would only
/// crash-loop.
#[tokio::test]
async fn a_source_spec_the_collector_cannot_honour_is_a_condition_not_a_crash_loop() {
    let mut ls = LogSource::new(
        "archive",
        LogSourceSpec {
            azure_blob: Some(BlobSource {
                account_url: "https://example.blob.core.windows.net".into(),
                containers: vec!["insights-logs-signinlogs".into()],
                from: Some("2026-12-02T00:00:00Z".into()),
                to: Some("2026-12-01T00:00:00Z".into()),
                credentials: BlobCredentials {
                    connection_string: Some(SecretKeySelector {
                        name: "archive".into(),
                        key: "cs".into(),
                    }),
                    ..BlobCredentials::default()
                },
                ..BlobSource::default()
            }),
            destinations: vec![DestinationRef { name: "console".into() }],
            ..LogSourceSpec::default()
        },
    );
    meta(&mut ls, "11111111-2222-3333-4444-666666666666");
    let stale = json!({"apiVersion": "apps/v1", "kind": "Deployment",
        "metadata": {"name": "sb-ls-archive", "namespace": NS}});
    let lists = BTreeMap::from([("/deployments".to_string(), vec![stale])]);
    let (client, server) = ApiServer::start(vec![serde_json::to_value(&ls).unwrap()], lists, false, None);
    let ctx = context(
        client,
        stores(
            vec![ls.clone()],
            vec![],
            vec![stdout_destination()],
            vec![secret("archive", "cs", "1")],
            vec![],
            vec![stale_in_store("archive")],
        ),
        stub(true),
    );
    let action = log_source::reconcile(Arc::new(ls), ctx.clone()).await.unwrap();
    assert_eq!(action, Action::requeue(Duration::from_secs(300)));
    // No collector built from this spec: only the status and a Warning. (A collector of an
    // earlier, valid spec is left running, as for any invalid edit.)
    assert_eq!(
        server.lines(),
        vec![
            "PATCH /apis/siembridge.io/v1alpha1/namespaces/soc/logsources/archive/status".to_string(),
            EVENTS.to_string(),
        ]
    );
    let calls = server.calls();
    assert!(calls[0].is_field_manager_apply());
    let status = &calls[0].body.as_ref().unwrap()["status"];
    assert_eq!(status["sourceType"], "azureBlob");
    let ready = condition(status, types::READY);
    assert_eq!(ready["status"], "False");
    assert_eq!(ready["reason"], reasons::INVALID_SPEC);
    let warning = calls[1].body.as_ref().unwrap();
    assert_eq!(warning["type"], "Warning");
    assert_eq!(warning["reason"], reasons::INVALID_SPEC);
    assert!(
        ready["message"].as_str().unwrap().contains("from must be before to"),
        "{ready}"
    );
}
