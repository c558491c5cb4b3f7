//! What the API server itself refuses, on a real one (`KUBECONFIG`, which `e2e/test-all.sh`
//! points at the control plane of `../shared/k8s`): each invalid spec of the table is rejected at
//! `kubectl apply` time (server-side apply with strict field validation, as kubectl sends it) by the CRD schema or its CEL rules, with the message a user reads, and
//! nothing is stored. A valid base of each kind is accepted first, so a rejection comes from the
//! one change the case makes. Without `KUBECONFIG` it prints `skipped: KUBECONFIG not set`.

use kube::api::{Api, ApiResource, DynamicObject, GroupVersionKind, Patch, PatchParams, PostParams};
use serde_json::{json, Value};

#[path = "common/cluster.rs"]
mod cluster_env;
use cluster_env::{install_crds, TestNamespace};

fn resource(kind: &str) -> ApiResource {
    ApiResource::from_gvk(&GroupVersionKind::gvk("siembridge.io", "v1alpha1", kind))
}

/// A LogSource reading the Office 365 Management Activity API: valid as it is.
fn log_source() -> Value {
    json!({
        "apiVersion": "siembridge.io/v1alpha1", "kind": "LogSource",
        "metadata": {"name": "o365"},
        "spec": {
            "managementActivityApi": {
                "credentials": {
                    "tenantId": "00000000-0000-4000-8000-000000000001",
                    "clientId": "00000000-0000-4000-8000-000000000002",
                    "clientSecret": {"name": "o365-app", "key": "clientSecret"}
                },
                "contentTypes": ["Audit.AzureActiveDirectory", "Audit.General"],
                "polling": {"intervalSeconds": 60, "backfillHours": 24}
            },
            "destinations": [{"name": "splunk"}]
        }
    })
}

/// A SiemDestination posting to an HTTP endpoint: valid as it is.
fn destination() -> Value {
    json!({
        "apiVersion": "siembridge.io/v1alpha1", "kind": "SiemDestination",
        "metadata": {"name": "webhook"},
        "spec": {
            "http": {"url": "https://siem.contoso.example/ingest"},
            "format": "ecs"
        }
    })
}

/// A ConsumerGroup of an Event Hub with Lease checkpoints: valid as it is.
fn consumer_group() -> Value {
    json!({
        "apiVersion": "siembridge.io/v1alpha1", "kind": "ConsumerGroup",
        "metadata": {"name": "entra"},
        "spec": {
            "eventHub": {
                "fullyQualifiedNamespace": "contoso.servicebus.windows.net",
                "hubName": "entra-diagnostics",
                "consumerGroup": "siembridge"
            },
            "credentials": {"connectionString": {"name": "entra-hub", "key": "connectionString"}},
            "replicas": 2
        }
    })
}

/// Set `value` at the JSON pointer `path` (creating objects on the way); `Value::Null` removes.
fn set(mut doc: Value, path: &str, value: Value) -> Value {
    let mut parts: Vec<&str> = path.trim_start_matches('/').split('/').collect();
    let last = parts.pop().unwrap();
    let mut at = &mut doc;
    for p in parts {
        at = at.as_object_mut().unwrap().entry(p).or_insert_with(|| json!({}));
    }
    if value.is_null() {
        at.as_object_mut().unwrap().remove(last);
    } else {
        at[last] = value;
    }
    doc
}

struct Case {
    what: &'static str,
    object: Value,
    /// Part of the message a user reads from `kubectl apply`.
    message: &'static str,
    /// The status code: 422 Invalid, except where server-side apply answers 500 for a field the
    /// schema does not declare (what `kubectl apply --server-side` prints).
    code: u16,
}

fn cases() -> Vec<Case> {
    let secret = |name: &str, key: &str| json!({"name": name, "key": key});
    vec![
        Case {
            what: "LogSource with two source kinds",
            object: set(
                log_source(),
                "/spec/graph",
                json!({"credentials": {"tenantId": "00000000-0000-4000-8000-000000000001",
                    "clientId": "00000000-0000-4000-8000-000000000002",
                    "clientSecret": secret("graph-app", "clientSecret")},
                    "endpoints": ["signIns"]}),
            ),
            message: "set exactly one of eventHub, managementActivityApi, graph, azureBlob, replay",
            code: 422,
        },
        Case {
            what: "LogSource with no source",
            object: set(log_source(), "/spec/managementActivityApi", Value::Null),
            message: "set exactly one of eventHub, managementActivityApi, graph, azureBlob, replay",
            code: 422,
        },
        Case {
            what: "LogSource with both credential kinds",
            object: set(
                log_source(),
                "/spec/managementActivityApi/credentials/clientCertificate",
                json!({"certificate": secret("o365-cert", "tls.crt"), "privateKey": secret("o365-cert", "tls.key")}),
            ),
            message: "set exactly one of clientSecret, clientCertificate or workloadIdentity",
            code: 422,
        },
        Case {
            what: "LogSource with no credential",
            object: set(
                log_source(),
                "/spec/managementActivityApi/credentials/clientSecret",
                Value::Null,
            ),
            message: "set exactly one of clientSecret, clientCertificate or workloadIdentity",
            code: 422,
        },
        Case {
            what: "LogSource with an unknown content type",
            object: set(
                log_source(),
                "/spec/managementActivityApi/contentTypes",
                json!(["Audit.Exchange", "Audit.Teams"]),
            ),
            message: "Unsupported value: \"Audit.Teams\"",
            code: 422,
        },
        Case {
            what: "LogSource polling every 5 s",
            object: set(
                log_source(),
                "/spec/managementActivityApi/polling/intervalSeconds",
                json!(5),
            ),
            message: "should be greater than or equal to 10",
            code: 422,
        },
        Case {
            what: "LogSource backfilling beyond the API's retention",
            object: set(
                log_source(),
                "/spec/managementActivityApi/polling/backfillHours",
                json!(1000),
            ),
            message: "should be less than or equal to 720",
            code: 422,
        },
        Case {
            what: "eventHub LogSource with a pod template",
            object: set(
                set(log_source(), "/spec/managementActivityApi", Value::Null),
                "/spec",
                json!({"eventHub": {"consumerGroupRef": "entra", "categories": ["SignInLogs"]},
                    "podTemplate": {"labels": {"team": "soc"}},
                    "destinations": [{"name": "splunk"}]}),
            ),
            message: "an eventHub LogSource is read by its ConsumerGroup's collector",
            code: 422,
        },
        Case {
            what: "SiemDestination with two kinds",
            object: set(destination(), "/spec/stdout", json!({})),
            message:
                "set exactly one of splunkHec, elasticsearch, syslog, sekoia, sentinel, azureBlob, http, stdout, file",
            code: 422,
        },
        Case {
            what: "http destination URL without a scheme",
            object: set(destination(), "/spec/http/url", json!("siem.contoso.example/ingest")),
            message: "should match '^https?://'",
            code: 422,
        },
        Case {
            what: "Elasticsearch destination with basic auth and an API key",
            object: set(
                destination(),
                "/spec",
                json!({"elasticsearch": {
                    "urls": ["https://es.contoso.example:9200"],
                    "basicAuth": {"username": "siembridge", "password": secret("es", "password")},
                    "apiKey": secret("es", "apiKey")}}),
            ),
            message: "basicAuth and apiKey are mutually exclusive",
            code: 422,
        },
        Case {
            what: "http destination with a misspelt field (kubectl validates strictly)",
            object: set(
                destination(),
                "/spec/http/header",
                json!([{"name": "X-Team", "value": "soc"}]),
            ),
            message: ".spec.http.header: field not declared in schema",
            code: 500,
        },
        Case {
            what: "SiemDestination with an unknown format",
            object: set(destination(), "/spec/format", json!("json")),
            message: "Unsupported value: \"json\"",
            code: 422,
        },
        Case {
            what: "ConsumerGroup with no link credit",
            object: set(consumer_group(), "/spec/prefetch", json!(0)),
            message: "should be greater than or equal to 1",
            code: 422,
        },
        Case {
            what: "ConsumerGroup with more replicas than an Event Hub has partitions",
            object: set(consumer_group(), "/spec/replicas", json!(33)),
            message: "should be less than or equal to 32",
            code: 422,
        },
        Case {
            what: "ConsumerGroup with both credential kinds",
            object: set(
                consumer_group(),
                "/spec/credentials/entra",
                json!({"tenantId": "00000000-0000-4000-8000-000000000001",
                    "clientId": "00000000-0000-4000-8000-000000000002",
                    "workloadIdentity": true}),
            ),
            message: "set exactly one of connectionString or entra",
            code: 422,
        },
        Case {
            what: "ConsumerGroup with a Blob checkpoint store but no Blob",
            object: set(consumer_group(), "/spec/checkpointStore", json!({"kind": "azureBlob"})),
            message: "azureBlob is set exactly when kind is azureBlob",
            code: 422,
        },
        Case {
            what: "ConsumerGroup starting at an enqueued time it does not give",
            object: set(consumer_group(), "/spec/startPosition", json!({"from": "enqueuedTime"})),
            message: "enqueuedTime is set exactly when from is enqueuedTime",
            code: 422,
        },
    ]
}

#[tokio::test]
async fn the_api_server_rejects_each_invalid_spec_with_a_readable_message() {
    let Some(client) = cluster_env::client("cluster_validation").await else {
        return;
    };
    install_crds(&client).await;
    let ns = TestNamespace::create(&client, "sb-valid").await;
    let api = |kind: &str| Api::<DynamicObject>::namespaced_with(client.clone(), &ns.name, &resource(kind));

    // The bases are accepted (dry run: nothing is stored, so the cases below start clean).
    let dry = PostParams {
        dry_run: true,
        ..PostParams::default()
    };
    for base in [log_source(), destination(), consumer_group()] {
        let kind = base["kind"].as_str().unwrap().to_string();
        let object: DynamicObject = serde_json::from_value(base).unwrap();
        if let Err(e) = api(&kind).create(&dry, &object).await {
            panic!("the valid {kind} base is refused: {e}");
        }
    }

    let cases = cases();
    assert!(cases.len() >= 12);
    let mut failures = Vec::new();
    for case in &cases {
        let kind = case.object["kind"].as_str().unwrap().to_string();
        let name = case.object["metadata"]["name"].as_str().unwrap().to_string();
        let object: DynamicObject = serde_json::from_value(case.object.clone()).unwrap();
        let apply = PatchParams::apply("siembridge-e2e-validation").validation_strict();
        match api(&kind).patch(&name, &apply, &Patch::Apply(&object)).await {
            Ok(_) => {
                failures.push(format!("{}: accepted", case.what));
                let _ = api(&kind).delete(&name, &Default::default()).await;
            }
            Err(kube::Error::Api(status)) => {
                println!("{:<60} {} {}", case.what, status.code, status.message);
                if status.code != case.code || !status.message.contains(case.message) {
                    failures.push(format!(
                        "{}: {} {:?}, expected {} containing {:?}",
                        case.what, status.code, status.message, case.code, case.message
                    ));
                }
            }
            Err(e) => failures.push(format!("{}: {e}", case.what)),
        }
    }
    // Nothing of the table was stored.
    for kind in ["LogSource", "SiemDestination", "ConsumerGroup"] {
        let left = api(kind).list(&Default::default()).await.unwrap();
        assert!(
            left.items.is_empty(),
            "{kind} objects were stored: {:?}",
            left.items.len()
        );
    }
    assert!(
        failures.is_empty(),
        "{} of {} cases:\n{}",
        failures.len(),
        cases.len(),
        failures.join("\n")
    );
    println!("{} invalid specs rejected by the API server", cases.len());
}
