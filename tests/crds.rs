//! The CRD manifests committed in `crds/` and in the Helm chart are exactly what `siembridge crdgen`
//! writes, and the generated CRDs are structurally sound: served and stored, with a status
//! subresource, short names, the `siembridge` category, printer columns, a description on every
//! field (what `kubectl explain` shows) and the CEL rules that reject invalid specs.

use std::path::Path;

use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::{
    CustomResourceDefinition, CustomResourceDefinitionVersion,
};
use serde_json::Value;

const REGENERATE: &str =
    "run `cargo run -- crdgen --out crds && cargo run -- crdgen --out charts/siembridge/files/crds`";

fn repo() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

fn assert_folder_matches_crdgen(folder: &str) {
    let dir = repo().join(folder);
    let generated = siembridge::crdgen::crds();
    for (name, yaml) in &generated {
        let path = dir.join(name);
        let committed = std::fs::read_to_string(&path)
            .unwrap_or_else(|e| panic!("{folder}/{name} cannot be read ({e}); {REGENERATE}"));
        assert!(
            committed == *yaml,
            "{folder}/{name} differs from the CRD generated from the Rust types; {REGENERATE}"
        );
    }
    // No stale CRD of a removed or renamed kind may linger next to the generated ones.
    let mut on_disk: Vec<String> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("{folder} cannot be listed ({e}); {REGENERATE}"))
        .filter_map(|entry| entry.ok())
        .map(|entry| entry.file_name().to_string_lossy().into_owned())
        .filter(|name| name.ends_with(".yaml") || name.ends_with(".yml"))
        .collect();
    on_disk.sort();
    let mut expected: Vec<String> = generated.iter().map(|(n, _)| n.to_string()).collect();
    expected.sort();
    assert_eq!(
        on_disk, expected,
        "{folder} holds other CRD files than crdgen writes; {REGENERATE}"
    );
}

#[test]
fn crds_folder_matches_crdgen() {
    assert_folder_matches_crdgen("crds");
}

#[test]
fn chart_crds_folder_matches_crdgen() {
    assert_folder_matches_crdgen("charts/siembridge/files/crds");
}

fn generated_crds() -> Vec<CustomResourceDefinition> {
    siembridge::crdgen::crds()
        .into_iter()
        .map(|(name, yaml)| {
            serde_yaml::from_str(&yaml).unwrap_or_else(|e| panic!("{name} is not a CustomResourceDefinition: {e}"))
        })
        .collect()
}

fn only_version(crd: &CustomResourceDefinition) -> &CustomResourceDefinitionVersion {
    assert_eq!(crd.spec.versions.len(), 1, "{} serves one version", crd.spec.names.kind);
    &crd.spec.versions[0]
}

fn schema_of(crd: &CustomResourceDefinition) -> Value {
    let schema = only_version(crd)
        .schema
        .as_ref()
        .and_then(|s| s.open_api_v3_schema.as_ref())
        .unwrap_or_else(|| panic!("{} has no openAPIV3Schema", crd.spec.names.kind));
    serde_json::to_value(schema).expect("a schema is JSON")
}

#[test]
fn crds_are_namespaced_v1alpha1_with_status_short_names_and_category() {
    let crds = generated_crds();
    let mut kinds: Vec<&str> = crds.iter().map(|c| c.spec.names.kind.as_str()).collect();
    kinds.sort();
    assert_eq!(kinds, ["ConsumerGroup", "LogSource", "Notifier", "SiemDestination"]);
    for crd in &crds {
        let kind = &crd.spec.names.kind;
        assert_eq!(crd.spec.group, "siembridge.io", "{kind}");
        assert_eq!(crd.spec.scope, "Namespaced", "{kind}");
        assert_eq!(
            crd.metadata.name.as_deref(),
            Some(format!("{}.siembridge.io", crd.spec.names.plural).as_str()),
            "{kind}"
        );
        let version = only_version(crd);
        assert_eq!(version.name, "v1alpha1", "{kind}");
        assert!(
            version.served && version.storage,
            "{kind} v1alpha1 is served and stored"
        );
        assert!(
            version.subresources.as_ref().and_then(|s| s.status.as_ref()).is_some(),
            "{kind} has a status subresource, so controllers write status without touching the spec"
        );
        let short = crd.spec.names.short_names.as_deref().unwrap_or_default();
        assert!(!short.is_empty(), "{kind} has short names");
        assert_eq!(
            crd.spec.names.categories.as_deref().unwrap_or_default(),
            ["siembridge".to_string()],
            "{kind}: `kubectl get siembridge` lists every siembridge resource"
        );
        let columns = version.additional_printer_columns.as_deref().unwrap_or_default();
        let names: Vec<&str> = columns.iter().map(|c| c.name.as_str()).collect();
        assert!(names.contains(&"Ready"), "{kind} shows Ready in kubectl get: {names:?}");
        assert!(names.contains(&"Age"), "{kind} shows Age in kubectl get: {names:?}");
        for column in columns {
            assert!(
                column.json_path.starts_with(".status.")
                    || column.json_path.starts_with(".spec.")
                    || column.json_path == ".metadata.creationTimestamp",
                "{kind} column {} reads {}",
                column.name,
                column.json_path
            );
        }
        let schema = schema_of(crd);
        for part in ["spec", "status"] {
            assert!(schema["properties"][part].is_object(), "{kind} schema has {part}");
        }
        assert!(
            schema["required"]
                .as_array()
                .is_some_and(|r| r.contains(&Value::from("spec"))),
            "{kind} requires spec"
        );
    }
}

/// Every property below `node` whose description is missing or blank, as dotted paths.
fn undocumented(node: &Value, path: &str, out: &mut Vec<String>) {
    if let Some(props) = node.get("properties").and_then(Value::as_object) {
        for (name, sub) in props {
            let here = format!("{path}.{name}");
            let documented = sub
                .get("description")
                .and_then(Value::as_str)
                .is_some_and(|d| !d.trim().is_empty());
            if !documented {
                out.push(here.clone());
            }
            undocumented(sub, &here, out);
        }
    }
    if let Some(items) = node.get("items") {
        undocumented(items, &format!("{path}[]"), out);
    }
    if let Some(additional) = node.get("additionalProperties").filter(|v| v.is_object()) {
        undocumented(additional, &format!("{path}{{}}"), out);
    }
    for key in ["anyOf", "oneOf", "allOf"] {
        for (i, sub) in node
            .get(key)
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
            .enumerate()
        {
            undocumented(sub, &format!("{path}<{key}{i}>"), out);
        }
    }
}

#[test]
fn every_field_has_a_description_for_kubectl_explain() {
    for crd in generated_crds() {
        let kind = &crd.spec.names.kind;
        let schema = schema_of(&crd);
        let root = schema["description"].as_str().unwrap_or_default();
        assert!(
            !root.trim().is_empty() && !root.contains("Auto-generated"),
            "{kind}: the top-level description is what `kubectl explain {}` shows first: {root:?}",
            crd.spec.names.plural
        );
        let mut missing = Vec::new();
        undocumented(&schema, kind, &mut missing);
        assert!(
            missing.is_empty(),
            "fields without a doc comment (add one in src/api): {missing:#?}"
        );
    }
}

/// Every `x-kubernetes-validations` rule in the schema, keyed by the path of its node.
fn cel_rules(node: &Value, path: &str, out: &mut Vec<(String, String)>) {
    if let Some(rules) = node.get("x-kubernetes-validations").and_then(Value::as_array) {
        for rule in rules {
            let text = rule["rule"].as_str().unwrap_or_default().to_string();
            let message = rule["message"].as_str().unwrap_or_default();
            assert!(
                !message.is_empty(),
                "CEL rule at {path} has a message for the user: {text}"
            );
            out.push((path.to_string(), text));
        }
    }
    if let Some(props) = node.get("properties").and_then(Value::as_object) {
        for (name, sub) in props {
            cel_rules(sub, &format!("{path}.{name}"), out);
        }
    }
    if let Some(items) = node.get("items") {
        cel_rules(items, &format!("{path}[]"), out);
    }
}

fn rules_of(kind: &str) -> Vec<(String, String)> {
    let crd = generated_crds()
        .into_iter()
        .find(|c| c.spec.names.kind == kind)
        .unwrap_or_else(|| panic!("no CRD for {kind}"));
    let mut out = Vec::new();
    cel_rules(&schema_of(&crd), kind, &mut out);
    out
}

fn assert_rule(rules: &[(String, String)], path: &str, needle: &str) {
    assert!(
        rules.iter().any(|(p, r)| p == path && r.contains(needle)),
        "expected a CEL rule at {path} containing {needle:?}; found {rules:#?}"
    );
}

#[test]
fn cel_rules_guard_one_of_choices_and_credentials() {
    let ls = rules_of("LogSource");
    assert_rule(
        &ls,
        "LogSource.spec",
        "has(self.eventHub), has(self.managementActivityApi)",
    );
    assert_rule(
        &ls,
        "LogSource.spec.managementActivityApi.credentials",
        "has(self.clientSecret)",
    );
    assert_rule(&ls, "LogSource.spec.graph.credentials", "has(self.clientSecret)");
    assert_rule(
        &ls,
        "LogSource.spec.azureBlob.credentials",
        "has(self.connectionString)",
    );
    assert_rule(&ls, "LogSource.spec.replay", "has(self.configMap)");

    let sd = rules_of("SiemDestination");
    assert_rule(
        &sd,
        "SiemDestination.spec",
        "has(self.splunkHec), has(self.elasticsearch)",
    );
    assert_rule(
        &sd,
        "SiemDestination.spec.elasticsearch",
        "!(has(self.basicAuth) && has(self.apiKey))",
    );
    assert_rule(
        &sd,
        "SiemDestination.spec.splunkHec.tls",
        "has(self.clientCertificate) == has(self.clientKey)",
    );
    assert_rule(
        &sd,
        "SiemDestination.spec.http.headers[]",
        "has(self.value) != has(self.valueFrom)",
    );
    assert_rule(&sd, "SiemDestination.spec.azureBlob.credentials", "has(self.sasToken)");
    assert_rule(
        &sd,
        "SiemDestination.spec.sentinel.credentials",
        "has(self.workloadIdentity)",
    );

    let cg = rules_of("ConsumerGroup");
    assert_rule(
        &cg,
        "ConsumerGroup.spec.credentials",
        "has(self.connectionString) != has(self.entra)",
    );
    assert_rule(&cg, "ConsumerGroup.spec.startPosition", "enqueuedTime");
    assert_rule(&cg, "ConsumerGroup.spec.checkpointStore", "azureBlob");
}

#[test]
fn schema_constraints_the_issue_asks_for_are_present() {
    let crds = generated_crds();
    let schema = |kind: &str| schema_of(crds.iter().find(|c| c.spec.names.kind == kind).expect("kind"));
    let cg = schema("ConsumerGroup");
    let replicas = &cg["properties"]["spec"]["properties"]["replicas"];
    assert_eq!(replicas["minimum"], 0.0, "{replicas}");
    assert_eq!(replicas["maximum"], 32.0, "{replicas}");

    let ls = schema("LogSource");
    let destinations = &ls["properties"]["spec"]["properties"]["destinations"];
    assert_eq!(
        destinations["minItems"], 1,
        "a LogSource delivers somewhere: {destinations}"
    );
    assert!(
        ls["properties"]["spec"]["required"]
            .as_array()
            .is_some_and(|r| r.contains(&Value::from("destinations"))),
        "destinations is required"
    );

    let sd = schema("SiemDestination");
    let url = &sd["properties"]["spec"]["properties"]["splunkHec"]["properties"]["url"];
    assert_eq!(url["pattern"], "^https?://", "HEC URL scheme is checked: {url}");
    let es = &sd["properties"]["spec"]["properties"]["elasticsearch"]["properties"]["urls"]["items"];
    assert_eq!(
        es["pattern"], "^https?://",
        "Elasticsearch URL schemes are checked: {es}"
    );
}

/// Compilation errors of every CEL rule under `node`, with the node's path, and the rules whose
/// estimated cost is over the API server's per-rule budget (it refuses to store such a CRD).
/// kube-cel's scope check is not used: it mistakes macro variables (`filter(x, x)`) for free ones.
fn cel_compilation_errors(node: &kube::core::cel::CompiledSchema, path: &str, out: &mut Vec<String>) {
    use kube::core::cel::{estimate_rule_cost, WarningKind};
    out.extend(node.compilation_errors().into_iter().map(|e| format!("{path}: {e}")));
    for compiled in node.validations.iter().flatten() {
        for warning in estimate_rule_cost(&compiled.rule.rule, node) {
            if warning.kind == WarningKind::CostExceeded {
                out.push(format!("{path}: {} ({})", warning.message, warning.rule));
            }
        }
    }
    let mut names: Vec<&String> = node.properties.keys().collect();
    names.sort();
    for name in names {
        cel_compilation_errors(&node.properties[name], &format!("{path}.{name}"), out);
    }
    if let Some(items) = &node.items {
        cel_compilation_errors(items, &format!("{path}[]"), out);
    }
    if let Some(additional) = &node.additional_properties {
        cel_compilation_errors(additional, &format!("{path}{{}}"), out);
    }
}

#[test]
fn every_cel_rule_compiles_within_the_cost_budget() {
    for crd in generated_crds() {
        let kind = crd.spec.names.kind.clone();
        let compiled = kube::core::cel::compile_schema(&schema_of(&crd));
        let mut errors = Vec::new();
        cel_compilation_errors(&compiled, &kind, &mut errors);
        assert!(errors.is_empty(), "CEL rules that do not compile: {errors:#?}");
        let mut rules = Vec::new();
        cel_rules(&schema_of(&crd), &kind, &mut rules);
        assert!(!rules.is_empty(), "{kind} has CEL rules");
    }
}

/// The Notifier's CEL rules, evaluated as the API server would: one kind per receiver, a
/// webhook's `url` or `urlSecretRef`, unique receiver names.
#[test]
fn notifier_cel_rules_refuse_ambiguous_receivers() {
    let crd = generated_crds()
        .into_iter()
        .find(|c| c.spec.names.kind == "Notifier")
        .expect("a Notifier CRD");
    let schema = schema_of(&crd);
    let cel = kube::core::cel::Validator::new();
    let check = |receivers: Value| {
        let object = serde_json::json!({
            "apiVersion": "siembridge.io/v1alpha1", "kind": "Notifier",
            "metadata": {"name": "n"}, "spec": {"receivers": receivers}
        });
        cel.validate(&schema, &object, None)
            .map_err(|errors| errors.iter().map(|e| e.to_string()).collect::<Vec<_>>().join("; "))
    };
    let hook = serde_json::json!({"name": "hook", "webhook": {"url": "https://hooks.contoso.example/x"}});
    let slack = serde_json::json!({"name": "slack", "slack": {"urlSecretRef": {"name": "s", "key": "url"}}});
    assert_eq!(check(serde_json::json!([hook.clone(), slack.clone()])), Ok(()));
    let both = serde_json::json!([{"name": "x", "webhook": {"url": "https://a.example/"},
                                    "slack": {"urlSecretRef": {"name": "s", "key": "url"}}}]);
    let neither = serde_json::json!([{"name": "x"}]);
    let two_urls = serde_json::json!([{"name": "x", "webhook": {"url": "https://a.example/",
                                        "urlSecretRef": {"name": "s", "key": "url"}}}]);
    let same_name = serde_json::json!([hook.clone(), hook]);
    for (what, receivers, message) in [
        ("two kinds", both, "set exactly one of webhook, teams, slack, email"),
        ("no kind", neither, "set exactly one of webhook, teams, slack, email"),
        ("url and urlSecretRef", two_urls, "set exactly one of url, urlSecretRef"),
        ("a name twice", same_name, "receiver names must be unique"),
    ] {
        let refused = check(receivers).expect_err(what);
        println!("{what}: {refused}");
        assert!(refused.contains(message), "{what}: {refused}");
    }
}
