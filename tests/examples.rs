//! Every manifest under `examples/` is one a user can `kubectl apply` as is: each document
//! (i) validates against its CRD's openAPIV3Schema (unknown fields rejected, as `kubectl apply`'s
//! strict field validation does), (ii) passes the CRD's CEL rules (`x-kubernetes-validations`,
//! evaluated client-side with kube's `cel` feature), (iii) deserializes into the Rust type, and
//! (iv) every LogSource and ConsumerGroup of an example folder renders into a collector with the
//! folder's own destinations, so the references inside each example are consistent.
//!
//! New example folders (e.g. `examples/quickstart`) are picked up without listing them here.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use kube::core::cel::Validator;
use kube::ResourceExt;
use serde::Deserialize;
use serde_json::{json, Value};
use siembridge::api::{ConsumerGroup, LogSource, SiemDestination};
use siembridge::render::{render_consumer_group, render_log_source, RenderTarget};

/// Namespace given to manifests without one, as `kubectl apply -n` would.
const NAMESPACE: &str = "examples";

fn repo() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

/// The openAPIV3Schema of every siembridge kind, as generated from the Rust types.
fn crd_schemas() -> BTreeMap<String, Value> {
    siembridge::crdgen::crds()
        .into_iter()
        .map(|(file, yaml)| {
            let crd: Value = serde_yaml::from_str(&yaml).unwrap_or_else(|e| panic!("{file}: {e}"));
            let kind = crd["spec"]["names"]["kind"].as_str().expect("kind").to_string();
            let schema = crd["spec"]["versions"][0]["schema"]["openAPIV3Schema"].clone();
            assert!(schema.is_object(), "{file} has an openAPIV3Schema");
            (kind, schema)
        })
        .collect()
}

/// A Kubernetes structural schema as a JSON Schema (draft 7) that rejects what the API server
/// rejects: `nullable` becomes a `null` type, `x-kubernetes-int-or-string` an integer-or-string,
/// objects with declared properties refuse unknown fields unless they preserve unknown fields,
/// and the other `x-kubernetes-*` extensions (CEL rules, list types) are left to the CEL check.
fn to_json_schema(node: &Value) -> Value {
    let Some(map) = node.as_object() else {
        return node.clone();
    };
    let flag = |key: &str| map.get(key).and_then(Value::as_bool).unwrap_or(false);
    let mut out = serde_json::Map::new();
    for (key, value) in map {
        if key.starts_with("x-kubernetes-") || key == "nullable" {
            continue;
        }
        let converted = match key.as_str() {
            "properties" => Value::Object(
                value
                    .as_object()
                    .into_iter()
                    .flatten()
                    .map(|(name, sub)| (name.clone(), to_json_schema(sub)))
                    .collect(),
            ),
            "items" | "additionalProperties" | "not" => to_json_schema(value),
            "anyOf" | "oneOf" | "allOf" => {
                Value::Array(value.as_array().into_iter().flatten().map(to_json_schema).collect())
            }
            _ => value.clone(),
        };
        out.insert(key.clone(), converted);
    }
    if flag("x-kubernetes-int-or-string") {
        out.remove("type");
        out.insert("anyOf".into(), json!([{"type": "integer"}, {"type": "string"}]));
    }
    if flag("nullable") {
        if let Some(Value::String(t)) = out.get("type").cloned() {
            out.insert("type".into(), json!([t, "null"]));
        }
        if let Some(Value::Array(values)) = out.get_mut("enum") {
            values.push(Value::Null);
        }
    }
    let is_object = out
        .get("type")
        .is_some_and(|t| t == "object" || t.as_array().is_some_and(|a| a.contains(&json!("object"))));
    if is_object
        && out.contains_key("properties")
        && !out.contains_key("additionalProperties")
        && !flag("x-kubernetes-preserve-unknown-fields")
    {
        out.insert("additionalProperties".into(), Value::Bool(false));
    }
    Value::Object(out)
}

/// JSON Schema of a whole object of a kind: the CRD schema plus the envelope the API server adds.
fn object_schema(crd_schema: &Value) -> Value {
    let mut schema = to_json_schema(crd_schema);
    let props = schema["properties"].as_object_mut().expect("root properties");
    props.insert("apiVersion".into(), json!({"const": "siembridge.io/v1alpha1"}));
    props.insert("kind".into(), json!({"type": "string"}));
    props.insert("metadata".into(), json!({"type": "object"}));
    schema["required"] = json!(["apiVersion", "kind", "metadata", "spec"]);
    schema
}

/// Checks a document of a siembridge kind against its CRD, as the API server would at admission.
struct Admission {
    schemas: BTreeMap<String, Value>,
    validators: BTreeMap<String, jsonschema::Validator>,
    cel: Validator,
}

impl Admission {
    fn new() -> Admission {
        let schemas = crd_schemas();
        let validators = schemas
            .iter()
            .map(|(kind, schema)| {
                let validator = jsonschema::options()
                    .with_draft(jsonschema::Draft::Draft7)
                    .should_validate_formats(true)
                    .build(&object_schema(schema))
                    .unwrap_or_else(|e| panic!("{kind}: the converted schema is not a JSON Schema: {e}"));
                (kind.clone(), validator)
            })
            .collect();
        Admission {
            schemas,
            validators,
            cel: Validator::new(),
        }
    }

    /// Every reason the object would be refused; empty when it is admitted.
    fn refusals(&self, object: &Value) -> Vec<String> {
        let kind = object["kind"].as_str().unwrap_or_default();
        let Some(validator) = self.validators.get(kind) else {
            return vec![format!("kind {kind:?} is not a siembridge kind")];
        };
        let mut out: Vec<String> = validator
            .iter_errors(object)
            .map(|e| format!("schema: {} at {}", e, e.instance_path()))
            .collect();
        if out.is_empty() {
            if let Err(errors) = self.cel.validate(&self.schemas[kind], object, None) {
                out.extend(errors.iter().map(|e| format!("CEL: {e} (rule `{}`)", e.rule)));
            }
        }
        out
    }
}

/// One document of an example file.
struct Doc {
    file: PathBuf,
    object: Value,
}

impl Doc {
    fn kind(&self) -> &str {
        self.object["kind"].as_str().unwrap_or_default()
    }
    fn name(&self) -> &str {
        self.object["metadata"]["name"].as_str().unwrap_or_default()
    }
    fn at(&self) -> String {
        format!(
            "{} ({} {})",
            self.file.strip_prefix(repo()).unwrap_or(&self.file).display(),
            self.kind(),
            self.name()
        )
    }
}

fn yaml_files(dir: &Path, out: &mut Vec<PathBuf>) {
    let mut entries: Vec<PathBuf> = std::fs::read_dir(dir)
        .unwrap_or_else(|e| panic!("cannot list {}: {e}", dir.display()))
        .filter_map(|entry| entry.ok().map(|e| e.path()))
        .collect();
    entries.sort();
    for path in entries {
        if path.is_dir() {
            yaml_files(&path, out);
        } else if path.extension().is_some_and(|e| e == "yaml" || e == "yml") {
            out.push(path);
        }
    }
}

/// The documents of every example folder, by folder name.
fn examples() -> BTreeMap<String, Vec<Doc>> {
    let root = repo().join("examples");
    let mut folders: BTreeMap<String, Vec<Doc>> = BTreeMap::new();
    let mut files = Vec::new();
    yaml_files(&root, &mut files);
    for file in files {
        let folder = file
            .strip_prefix(&root)
            .ok()
            .and_then(|p| p.components().next())
            .map(|c| c.as_os_str().to_string_lossy().into_owned())
            .expect("a file under examples/");
        let text = std::fs::read_to_string(&file).unwrap_or_else(|e| panic!("{}: {e}", file.display()));
        for doc in serde_yaml::Deserializer::from_str(&text) {
            let object = Value::deserialize(doc).unwrap_or_else(|e| panic!("{} is not YAML: {e}", file.display()));
            if object.is_null() {
                continue;
            }
            folders.entry(folder.clone()).or_default().push(Doc {
                file: file.clone(),
                object,
            });
        }
    }
    folders
}

const FIELD_EXAMPLES: [&str; 5] = [
    "entra-blob-splunk",
    "entra-eventhub-qradar",
    "intune-eventhub-sekoia",
    "o365-blob-archive",
    "o365-splunk",
];

#[test]
fn the_field_examples_are_present() {
    let folders = examples();
    for name in FIELD_EXAMPLES {
        let docs = folders
            .get(name)
            .unwrap_or_else(|| panic!("examples/{name} has no manifests"));
        assert!(
            docs.iter().any(|d| d.kind() == "LogSource"),
            "examples/{name} has a LogSource"
        );
        assert!(
            docs.iter().any(|d| d.kind() == "SiemDestination"),
            "examples/{name} has a SiemDestination"
        );
        assert!(
            repo().join("examples").join(name).join("README.md").is_file(),
            "examples/{name}/README.md"
        );
    }
}

#[test]
fn every_example_document_is_admitted_by_its_crd() {
    let admission = Admission::new();
    let mut refused = Vec::new();
    let mut checked = 0;
    for docs in examples().values() {
        for doc in docs {
            match doc.kind() {
                "LogSource" | "ConsumerGroup" | "SiemDestination" => {
                    checked += 1;
                    for reason in admission.refusals(&doc.object) {
                        refused.push(format!("{}: {reason}", doc.at()));
                    }
                    if let Err(e) = run_validator_refuses(&doc.object) {
                        refused.push(format!("{}: siembridge run refuses it: {e}", doc.at()));
                    }
                }
                "Notifier" => {
                    checked += 1;
                    for reason in admission.refusals(&doc.object) {
                        refused.push(format!("{}: {reason}", doc.at()));
                    }
                    serde_json::from_value::<siembridge::api::Notifier>(doc.object.clone())
                        .unwrap_or_else(|e| panic!("{}: {e}", doc.at()));
                }
                // Examples document `kubectl create secret` instead of committing Secrets.
                "Secret" => refused.push(format!(
                    "{}: commit no Secret; document `kubectl create secret`",
                    doc.at()
                )),
                "ConfigMap" => {
                    serde_json::from_value::<k8s_openapi::api::core::v1::ConfigMap>(doc.object.clone())
                        .unwrap_or_else(|e| panic!("{}: {e}", doc.at()));
                }
                other => refused.push(format!("{}: unexpected kind {other:?} in an example", doc.at())),
            }
        }
    }
    assert!(
        checked >= 10,
        "only {checked} siembridge documents found under examples/"
    );
    assert!(
        refused.is_empty(),
        "example manifests the API server would refuse:\n{}",
        refused.join("\n")
    );
}

fn typed<T: serde::de::DeserializeOwned>(doc: &Doc) -> T {
    let mut object = doc.object.clone();
    if object["metadata"]["namespace"].is_null() {
        object["metadata"]["namespace"] = json!(NAMESPACE);
    }
    serde_json::from_value(object).unwrap_or_else(|e| panic!("{} does not deserialize: {e}", doc.at()))
}

#[test]
fn every_example_deserializes_and_renders_with_its_own_destinations() {
    for (folder, docs) in examples() {
        let of_kind = |kind: &'static str| docs.iter().filter(move |d| d.kind() == kind);
        let destinations: Vec<SiemDestination> = of_kind("SiemDestination").map(typed).collect();
        let log_sources: Vec<LogSource> = of_kind("LogSource").map(typed).collect();
        let consumer_groups: Vec<ConsumerGroup> = of_kind("ConsumerGroup").map(typed).collect();

        for d in &destinations {
            d.spec
                .kind()
                .unwrap_or_else(|e| panic!("{folder}: SiemDestination {}: {e}", d.name_any()));
        }
        for ls in &log_sources {
            let rendered = render_log_source(ls, &destinations, &RenderTarget::Cluster)
                .unwrap_or_else(|e| panic!("{folder}: LogSource {} does not render: {e}", ls.name_any()));
            if rendered.is_none() {
                let group = &ls
                    .spec
                    .event_hub
                    .as_ref()
                    .expect("only eventHub sources render to None")
                    .consumer_group_ref;
                assert!(
                    consumer_groups.iter().any(|cg| &cg.name_any() == group),
                    "{folder}: LogSource {} reads ConsumerGroup {group:?}, which the example does not define",
                    ls.name_any()
                );
            }
        }
        for cg in &consumer_groups {
            let (collector, skipped) = render_consumer_group(cg, &log_sources, &destinations, &RenderTarget::Cluster)
                .unwrap_or_else(|e| panic!("{folder}: ConsumerGroup {} does not render: {e}", cg.name_any()));
            assert!(
                skipped.is_empty(),
                "{folder}: LogSources left out of {}: {skipped:?}",
                cg.name_any()
            );
            assert!(
                !collector.config.routes.is_empty(),
                "{folder}: no LogSource reads ConsumerGroup {}",
                cg.name_any()
            );
        }
        for d in &destinations {
            assert!(
                log_sources
                    .iter()
                    .any(|ls| ls.spec.destination_names().any(|r| r == d.name_any())),
                "{folder}: SiemDestination {} is not used by any LogSource of the example",
                d.name_any()
            );
        }
    }
}

#[test]
fn intune_example_takes_the_four_intune_categories_to_sekoia() {
    let folders = examples();
    let docs = &folders["intune-eventhub-sekoia"];
    let ls: LogSource = typed(docs.iter().find(|d| d.kind() == "LogSource").expect("LogSource"));
    let categories = &ls.spec.event_hub.as_ref().expect("eventHub source").categories;
    assert_eq!(
        categories,
        &["AuditLogs", "OperationalLogs", "DeviceComplianceOrg", "Devices"]
    );
    let sd: SiemDestination = typed(
        docs.iter()
            .find(|d| d.kind() == "SiemDestination")
            .expect("SiemDestination"),
    );
    assert!(sd.spec.sekoia.is_some());
}

#[test]
fn entra_example_sends_sign_ins_and_audit_as_leef_over_tls() {
    let folders = examples();
    let docs = &folders["entra-eventhub-qradar"];
    let mut categories: Vec<String> = docs
        .iter()
        .filter(|d| d.kind() == "LogSource")
        .map(typed::<LogSource>)
        .flat_map(|ls| ls.spec.event_hub.map(|e| e.categories).unwrap_or_default())
        .collect();
    categories.sort();
    assert_eq!(
        categories,
        [
            "AuditLogs",
            "ManagedIdentitySignInLogs",
            "NonInteractiveUserSignInLogs",
            "ServicePrincipalSignInLogs",
            "SignInLogs"
        ]
    );
    let sd: SiemDestination = typed(
        docs.iter()
            .find(|d| d.kind() == "SiemDestination")
            .expect("SiemDestination"),
    );
    let syslog = sd.spec.syslog.expect("syslog destination");
    assert_eq!(syslog.transport, siembridge::api::SyslogTransport::Tls);
    assert_eq!(syslog.payload, siembridge::api::SyslogPayload::Leef);
}

#[test]
fn o365_examples_collect_all_five_content_types() {
    let folders = examples();
    for (folder, check) in [("o365-splunk", "splunkHec"), ("o365-blob-archive", "azureBlob")] {
        let docs = &folders[folder];
        let ls: LogSource = typed(docs.iter().find(|d| d.kind() == "LogSource").expect("LogSource"));
        let api = ls.spec.management_activity_api.expect("managementActivityApi source");
        assert_eq!(api.content_types, siembridge::api::ContentType::ALL, "{folder}");
        let sd: SiemDestination = typed(
            docs.iter()
                .find(|d| d.kind() == "SiemDestination")
                .expect("SiemDestination"),
        );
        assert_eq!(sd.spec.kind().expect("one kind").name(), check, "{folder}");
        if let Some(hec) = sd.spec.splunk_hec {
            assert!(hec.indexer_ack, "{folder}: Splunk HEC with indexer acknowledgement");
        }
    }
}

#[test]
fn entra_blob_example_reads_diagnostic_archives_to_splunk() {
    let docs = &examples()["entra-blob-splunk"];
    let ls: LogSource = typed(docs.iter().find(|d| d.kind() == "LogSource").expect("LogSource"));
    let blob = ls.spec.azure_blob.expect("azureBlob source");
    assert_eq!(blob.format, siembridge::api::BlobFormat::DiagnosticSettings);
    assert_eq!(
        blob.all_containers(),
        [
            "insights-logs-signinlogs",
            "insights-logs-noninteractiveusersigninlogs",
            "insights-logs-auditlogs"
        ]
    );
    blob.validate().expect("a spec the collector can run");
}

// ---- negative cases: the CRDs refuse what they should ----

fn log_source(spec: Value) -> Value {
    json!({"apiVersion": "siembridge.io/v1alpha1", "kind": "LogSource", "metadata": {"name": "x"}, "spec": spec})
}

fn destination(spec: Value) -> Value {
    json!({"apiVersion": "siembridge.io/v1alpha1", "kind": "SiemDestination", "metadata": {"name": "x"}, "spec": spec})
}

fn consumer_group(spec: Value) -> Value {
    json!({"apiVersion": "siembridge.io/v1alpha1", "kind": "ConsumerGroup", "metadata": {"name": "x"}, "spec": spec})
}

fn event_hub_source() -> Value {
    json!({"consumerGroupRef": "hub"})
}

fn o365_source() -> Value {
    json!({"credentials": {"tenantId": "11111111-2222-3333-4444-555555555555",
                           "clientId": "66666666-7777-8888-9999-aaaaaaaaaaaa",
                           "clientSecret": {"name": "app", "key": "clientSecret"}}})
}

fn cg_spec(replicas: i64) -> Value {
    json!({"eventHub": {"fullyQualifiedNamespace": "contoso.servicebus.windows.net", "hubName": "logs"},
           "credentials": {"connectionString": {"name": "hub", "key": "connectionString"}},
           "replicas": replicas})
}

/// `siembridge run`'s own validator (src/api/validation.rs) must agree with this independent
/// one: both refuse or both admit.
fn run_validator_refuses(object: &Value) -> Result<(), String> {
    siembridge::api::validation::SchemaValidator::new()
        .validate(object.clone())
        .map(|_| ())
        .map_err(|e| e.to_string())
}

fn assert_refused(admission: &Admission, object: &Value, needle: &str) {
    let refusals = admission.refusals(object);
    assert!(
        refusals.iter().any(|r| r.contains(needle)),
        "expected a refusal mentioning {needle:?} for {object}, got {refusals:?}"
    );
    assert!(
        run_validator_refuses(object).is_err(),
        "siembridge run's validator admits {object}, which the CRD refuses: {refusals:?}"
    );
}

fn assert_admitted(admission: &Admission, object: &Value) {
    let refusals = admission.refusals(object);
    assert!(refusals.is_empty(), "{object} is refused: {refusals:?}");
    if let Err(e) = run_validator_refuses(object) {
        panic!("siembridge run's validator refuses {object}, which the CRD admits: {e}");
    }
}

#[test]
fn cel_refuses_a_log_source_with_two_source_kinds_or_none() {
    let admission = Admission::new();
    let dests = json!([{"name": "siem"}]);
    assert_admitted(
        &admission,
        &log_source(json!({"eventHub": event_hub_source(), "destinations": dests})),
    );
    assert_refused(
        &admission,
        &log_source(
            json!({"eventHub": event_hub_source(), "managementActivityApi": o365_source(), "destinations": dests}),
        ),
        "set exactly one of eventHub, managementActivityApi",
    );
    assert_refused(
        &admission,
        &log_source(json!({"destinations": dests})),
        "set exactly one of eventHub",
    );
}

#[test]
fn cel_refuses_mutually_exclusive_credentials() {
    let admission = Admission::new();
    let es = |auth: Value| {
        let mut spec = json!({"urls": ["https://es.contoso.example:9200"]});
        spec.as_object_mut()
            .expect("object")
            .extend(auth.as_object().expect("object").clone());
        destination(json!({"elasticsearch": spec}))
    };
    let basic = json!({"basicAuth": {"username": "siembridge", "password": {"name": "es", "key": "password"}}});
    let api_key = json!({"apiKey": {"name": "es", "key": "apiKey"}});
    assert_admitted(&admission, &es(basic.clone()));
    assert_admitted(&admission, &es(api_key.clone()));
    let mut both = basic;
    both.as_object_mut()
        .expect("object")
        .extend(api_key.as_object().expect("object").clone());
    assert_refused(&admission, &es(both), "basicAuth and apiKey are mutually exclusive");

    // An Entra app with a client secret and workload identity at once.
    let mut o365 = o365_source();
    o365["credentials"]["workloadIdentity"] = json!(true);
    assert_refused(
        &admission,
        &log_source(json!({"managementActivityApi": o365, "destinations": [{"name": "siem"}]})),
        "set exactly one of clientSecret, clientCertificate or workloadIdentity",
    );
    // workloadIdentity: false is no credential at all.
    let mut none = o365_source();
    none["credentials"]
        .as_object_mut()
        .expect("object")
        .remove("clientSecret");
    none["credentials"]["workloadIdentity"] = json!(false);
    assert_refused(
        &admission,
        &log_source(json!({"managementActivityApi": none, "destinations": [{"name": "siem"}]})),
        "set exactly one of clientSecret",
    );
}

#[test]
fn cel_refuses_a_destination_with_two_kinds() {
    let admission = Admission::new();
    let stdout = json!({"stdout": {}});
    assert_admitted(&admission, &destination(stdout));
    assert_refused(
        &admission,
        &destination(json!({"stdout": {}, "file": {"path": "/tmp/out.ndjson"}})),
        "set exactly one of splunkHec",
    );
}

#[test]
fn schema_refuses_bad_url_schemes() {
    let admission = Admission::new();
    let hec = |url: &str| destination(json!({"splunkHec": {"url": url, "token": {"name": "hec", "key": "token"}}}));
    assert_admitted(&admission, &hec("https://splunk.contoso.example:8088"));
    assert_refused(&admission, &hec("ftp://splunk.contoso.example"), "^https?://");
    assert_refused(&admission, &hec("splunk.contoso.example:8088"), "^https?://");
    let es = destination(json!({"elasticsearch": {"urls": ["https://a.contoso.example", "tcp://b.contoso.example"]}}));
    assert_refused(&admission, &es, "/spec/elasticsearch/urls/1");
}

#[test]
fn schema_refuses_replicas_out_of_range() {
    let admission = Admission::new();
    assert_admitted(&admission, &consumer_group(cg_spec(0)));
    assert_admitted(&admission, &consumer_group(cg_spec(32)));
    assert_refused(&admission, &consumer_group(cg_spec(33)), "/spec/replicas");
    assert_refused(&admission, &consumer_group(cg_spec(-1)), "/spec/replicas");
}

#[test]
fn schema_refuses_missing_or_empty_destinations_and_unknown_fields() {
    let admission = Admission::new();
    assert_refused(
        &admission,
        &log_source(json!({"eventHub": event_hub_source()})),
        "destinations",
    );
    assert_refused(
        &admission,
        &log_source(json!({"eventHub": event_hub_source(), "destinations": []})),
        "/spec/destinations",
    );
    // A typo is refused, not silently dropped (kubectl apply validates fields strictly).
    assert_refused(
        &admission,
        &log_source(
            json!({"eventHub": {"consumerGroupRef": "hub", "categorys": ["AuditLogs"]}, "destinations": [{"name": "siem"}]}),
        ),
        "categorys",
    );
}
