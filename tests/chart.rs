//! The Helm chart, rendered and linted by Helm's own Go engine (the `helm-python-sdk` wheel, through
//! `e2e/helm_render.py`), yields valid Kubernetes objects: a restricted operator Deployment,
//! least-privilege RBAC, a metrics Service, an optional ServiceMonitor, and the CRDs `crdgen`
//! writes. `values.schema.json` rejects bad values.
//!
//! Needs a Python with `helm_python`: run `e2e/test-all.sh` once (it creates `e2e/.venv`) and
//! export `SIEMBRIDGE_TEST_PYTHON=$PWD/e2e/.venv/bin/python`.

use std::path::Path;
use std::process::Command;

use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::{Container, Service, ServiceAccount};
use k8s_openapi::api::policy::v1::PodDisruptionBudget;
use k8s_openapi::api::rbac::v1::{ClusterRole, ClusterRoleBinding, PolicyRule, Role, RoleBinding};
use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use serde::de::DeserializeOwned;
use serde::Deserialize;
use serde_json::{json, Value};

const NAMESPACE: &str = "siembridge";
const SETUP: &str = "run e2e/test-all.sh once (it creates e2e/.venv with helm-python-sdk) and export \
                     SIEMBRIDGE_TEST_PYTHON=$PWD/e2e/.venv/bin/python";

fn repo() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

/// Exit status of `helm_render.py` when `helm_python` cannot be imported.
const EXIT_NO_MODULE: i32 = 3;

/// `$SIEMBRIDGE_TEST_PYTHON`, else the venv `e2e/test-all.sh` creates, else `python3`.
fn test_python() -> String {
    if let Ok(python) = std::env::var("SIEMBRIDGE_TEST_PYTHON") {
        return python;
    }
    let venv = repo().join("e2e/.venv/bin/python");
    if venv.exists() {
        return venv.to_string_lossy().into_owned();
    }
    "python3".to_string()
}

/// What the driver printed, or the reason Helm refused the values or the chart.
fn helm_render(values: &Value) -> Result<RenderOutput, String> {
    let python = test_python();
    let output = Command::new(&python)
        .current_dir(repo())
        .arg("e2e/helm_render.py")
        .arg("charts/siembridge")
        .args(["--namespace", NAMESPACE, "--name", "siembridge", "--json"])
        .arg("--set-json")
        .arg(values.to_string())
        .output()
        .unwrap_or_else(|e| panic!("cannot run {python} ({e}); {SETUP}"));
    let stderr = String::from_utf8_lossy(&output.stderr).into_owned();
    match output.status.code() {
        Some(0) => Ok(serde_json::from_slice(&output.stdout).expect("helm_render.py --json prints JSON")),
        Some(EXIT_NO_MODULE) => panic!("{python} cannot import helm_python: {stderr}\n{SETUP}"),
        Some(1) => Err(stderr),
        other => panic!("helm_render.py failed unexpectedly ({other:?}): {stderr}"),
    }
}

#[derive(Deserialize)]
struct RenderOutput {
    lint: Value,
    crds: std::collections::BTreeMap<String, String>,
    manifests: std::collections::BTreeMap<String, String>,
}

/// Every rendered object of the chart's templates, CRDs apart.
struct Rendered {
    objects: Vec<Value>,
    crds: Vec<CustomResourceDefinition>,
}

impl Rendered {
    fn of(values: Value) -> Rendered {
        let out = helm_render(&values).unwrap_or_else(|e| panic!("chart does not render with {values}: {e}"));
        assert_eq!(out.lint["total_charts_linted"], 1, "lint report: {}", out.lint);
        let mut objects = Vec::new();
        let mut crds: Vec<CustomResourceDefinition> = Vec::new();
        for (template, text) in &out.manifests {
            for doc in serde_yaml::Deserializer::from_str(text) {
                let value = Value::deserialize(doc).unwrap_or_else(|e| panic!("{template} is not YAML: {e}"));
                if !value.is_null() {
                    assert!(
                        value["kind"].is_string(),
                        "{template} renders an object without kind: {value}"
                    );
                    if value["kind"] == "CustomResourceDefinition" {
                        crds.push(
                            serde_json::from_value(value)
                                .unwrap_or_else(|e| panic!("{template} renders a bad CRD: {e}")),
                        );
                    } else {
                        objects.push(value);
                    }
                }
            }
        }
        // Helm's own crds/ folder is not used (the CRDs are templates, see templates/crds.yaml).
        assert!(
            out.crds.is_empty(),
            "the chart's crds/ folder is not used: {:?}",
            out.crds.keys()
        );
        Rendered { objects, crds }
    }

    fn all<T: DeserializeOwned>(&self, kind: &str) -> Vec<T> {
        self.objects
            .iter()
            .filter(|o| o["kind"] == kind)
            .map(|o| {
                serde_json::from_value(o.clone()).unwrap_or_else(|e| panic!("{kind} does not deserialize: {e}: {o}"))
            })
            .collect()
    }

    fn one<T: DeserializeOwned>(&self, kind: &str) -> T {
        let mut all = self.all::<T>(kind);
        assert_eq!(all.len(), 1, "expected one {kind}, kinds rendered: {:?}", self.kinds());
        all.remove(0)
    }

    fn kinds(&self) -> Vec<String> {
        let mut kinds: Vec<String> = self
            .objects
            .iter()
            .map(|o| o["kind"].as_str().unwrap_or("").to_string())
            .collect();
        kinds.sort();
        kinds
    }

    fn operator(&self) -> (Deployment, Container) {
        let deployment: Deployment = self.one("Deployment");
        let container = deployment
            .spec
            .template
            .spec
            .as_ref()
            .and_then(|s| s.containers.first())
            .cloned()
            .expect("the Deployment has a container");
        (deployment, container)
    }
}

fn env_value(container: &Container, name: &str) -> Option<String> {
    container.env.as_deref()?.iter().find(|e| e.name == name)?.value.clone()
}

fn env_field_ref(container: &Container, name: &str) -> Option<String> {
    let var = container.env.as_deref()?.iter().find(|e| e.name == name)?;
    Some(var.value_from.as_ref()?.field_ref.as_ref()?.field_path.clone())
}

#[test]
fn default_values_render_the_operator_deployment_service_and_account() {
    let r = Rendered::of(json!({}));
    assert_eq!(
        r.kinds(),
        [
            "ClusterRole",
            "ClusterRoleBinding",
            "Deployment",
            "Service",
            "ServiceAccount"
        ],
        "default install: no ServiceMonitor, no namespaced Role"
    );

    let (deployment, container) = r.operator();
    assert_eq!(deployment.metadata.namespace.as_deref(), Some(NAMESPACE));
    assert_eq!(deployment.spec.replicas, Some(1));
    assert_eq!(
        container.args.as_deref().unwrap_or_default(),
        ["operator", "--log-format", "json"]
    );
    let image = container.image.clone().expect("image");
    assert!(image.starts_with("ghcr.io/siembridge/siembridge:"), "{image}");
    assert!(!image.ends_with(':'), "the tag defaults to the appVersion: {image}");
    assert_eq!(env_field_ref(&container, "POD_NAME").as_deref(), Some("metadata.name"));
    assert_eq!(
        env_field_ref(&container, "POD_NAMESPACE").as_deref(),
        Some("metadata.namespace")
    );
    assert_eq!(
        env_value(&container, "SIEMBRIDGE_COLLECTOR_IMAGE").as_deref(),
        Some(image.as_str()),
        "collectors run the operator's image by default"
    );
    assert_eq!(env_value(&container, "SIEMBRIDGE_WATCH_NAMESPACES"), None);

    let ports = container.ports.as_deref().unwrap_or_default();
    assert_eq!(ports.len(), 1);
    assert_eq!(ports[0].name.as_deref(), Some("metrics"));
    assert_eq!(ports[0].container_port, 8080);
    for (probe, path) in [
        (&container.liveness_probe, "/healthz"),
        (&container.readiness_probe, "/readyz"),
    ] {
        let get = probe.as_ref().and_then(|p| p.http_get.as_ref()).expect("HTTP probe");
        assert_eq!(get.path.as_deref(), Some(path));
        assert_eq!(get.port, IntOrString::String("metrics".into()));
    }

    let account: ServiceAccount = r.one("ServiceAccount");
    let pod = deployment.spec.template.spec.as_ref().expect("pod spec");
    assert_eq!(pod.service_account_name, account.metadata.name);

    let service: Service = r.one("Service");
    let spec = service.spec.expect("service spec");
    let port = &spec.ports.as_deref().unwrap_or_default()[0];
    assert_eq!(port.name.as_deref(), Some("metrics"));
    assert_eq!(port.port, 8080);
    let selector = spec.selector.expect("selector");
    let pod_labels = deployment
        .spec
        .template
        .metadata
        .as_ref()
        .and_then(|m| m.labels.clone())
        .expect("pod labels");
    for (k, v) in &selector {
        assert_eq!(
            pod_labels.get(k),
            Some(v),
            "the metrics Service selects the operator pods"
        );
    }
    assert_eq!(
        deployment.spec.selector.match_labels.as_ref(),
        Some(&selector),
        "Service and Deployment select the same pods"
    );
}

#[test]
fn operator_runs_under_the_restricted_pod_security_standard_by_default() {
    let (deployment, container) = Rendered::of(json!({})).operator();
    let pod = deployment
        .spec
        .template
        .spec
        .expect("pod spec")
        .security_context
        .expect("pod securityContext");
    assert_eq!(pod.run_as_non_root, Some(true));
    assert_eq!(pod.seccomp_profile.map(|s| s.type_).as_deref(), Some("RuntimeDefault"));
    let sc = container.security_context.expect("container securityContext");
    assert_eq!(sc.run_as_non_root, Some(true));
    assert_eq!(sc.read_only_root_filesystem, Some(true));
    assert_eq!(sc.allow_privilege_escalation, Some(false));
    assert_eq!(sc.capabilities.and_then(|c| c.drop).unwrap_or_default(), ["ALL"]);
    assert_eq!(sc.seccomp_profile.map(|s| s.type_).as_deref(), Some("RuntimeDefault"));
    assert!(sc.privileged.is_none() || sc.privileged == Some(false));
}

/// Whether `rules` grant `verb` on `resource` of API group `group`.
fn allows(rules: &[PolicyRule], group: &str, resource: &str, verb: &str) -> bool {
    rules.iter().any(|r| {
        r.api_groups
            .as_deref()
            .unwrap_or_default()
            .iter()
            .any(|g| g == group || g == "*")
            && r.resources
                .as_deref()
                .unwrap_or_default()
                .iter()
                .any(|x| x == resource || x == "*")
            && r.verbs.iter().any(|v| v == verb || v == "*")
    })
}

const MANAGE: [&str; 7] = ["get", "list", "watch", "create", "patch", "update", "delete"];

fn assert_operator_rules(rules: &[PolicyRule]) {
    for r in rules {
        for field in [&r.api_groups, &r.resources] {
            assert!(
                !field.as_deref().unwrap_or_default().contains(&"*".to_string()),
                "no wildcard: {r:?}"
            );
        }
        assert!(!r.verbs.contains(&"*".to_string()), "no wildcard verb: {r:?}");
        assert!(!r.verbs.contains(&"escalate".to_string()) && !r.verbs.contains(&"bind".to_string()));
    }
    for resource in ["logsources", "consumergroups", "siemdestinations", "notifiers"] {
        for verb in ["get", "list", "watch"] {
            assert!(allows(rules, "siembridge.io", resource, verb), "{verb} {resource}");
        }
        for verb in ["create", "update", "patch", "delete"] {
            assert!(
                !allows(rules, "siembridge.io", resource, verb),
                "the operator never {verb}s {resource}"
            );
        }
        for verb in ["get", "patch", "update"] {
            assert!(
                allows(rules, "siembridge.io", &format!("{resource}/status"), verb),
                "{verb} {resource}/status"
            );
        }
    }
    for (group, resource) in [
        ("", "configmaps"),
        ("", "serviceaccounts"),
        ("apps", "deployments"),
        ("rbac.authorization.k8s.io", "roles"),
        ("rbac.authorization.k8s.io", "rolebindings"),
        ("coordination.k8s.io", "leases"),
    ] {
        for verb in MANAGE {
            assert!(allows(rules, group, resource, verb), "{verb} {group}/{resource}");
        }
    }
    for verb in ["get", "list", "watch"] {
        assert!(
            allows(rules, "", "secrets", verb),
            "{verb} secrets (rollout hash of referenced Secrets)"
        );
    }
    for verb in ["create", "update", "patch", "delete"] {
        assert!(
            !allows(rules, "", "secrets", verb),
            "the operator must not {verb} Secrets"
        );
    }
    for group in ["", "events.k8s.io"] {
        for verb in ["create", "patch"] {
            assert!(allows(rules, group, "events", verb), "{verb} {group}/events");
        }
    }
    for (group, resource) in [
        ("", "pods/exec"),
        ("", "nodes"),
        ("rbac.authorization.k8s.io", "clusterroles"),
    ] {
        assert!(!allows(rules, group, resource, "get"), "nothing on {group}/{resource}");
    }
}

#[test]
fn cluster_rbac_grants_the_operator_least_privilege() {
    let r = Rendered::of(json!({}));
    let role: ClusterRole = r.one("ClusterRole");
    assert_operator_rules(role.rules.as_deref().unwrap_or_default());

    let binding: ClusterRoleBinding = r.one("ClusterRoleBinding");
    assert_eq!(binding.role_ref.kind, "ClusterRole");
    assert_eq!(Some(&binding.role_ref.name), role.metadata.name.as_ref());
    let account: ServiceAccount = r.one("ServiceAccount");
    let subjects = binding.subjects.unwrap_or_default();
    assert_eq!(subjects.len(), 1);
    assert_eq!(subjects[0].kind, "ServiceAccount");
    assert_eq!(Some(&subjects[0].name), account.metadata.name.as_ref());
    assert_eq!(subjects[0].namespace.as_deref(), Some(NAMESPACE));
}

#[test]
fn watch_namespaces_switch_to_a_role_per_namespace() {
    let r = Rendered::of(json!({"watchNamespaces": ["tenant-b", "tenant-a", "tenant-b"]}));
    assert!(
        r.all::<ClusterRole>("ClusterRole").is_empty(),
        "no cluster-wide rights: {:?}",
        r.kinds()
    );
    assert!(r.all::<ClusterRoleBinding>("ClusterRoleBinding").is_empty());

    let roles: Vec<Role> = r.all("Role");
    let bindings: Vec<RoleBinding> = r.all("RoleBinding");
    let in_ns = |ns: &str| {
        roles
            .iter()
            .find(|x| x.metadata.namespace.as_deref() == Some(ns))
            .cloned()
    };
    let watched = in_ns("tenant-a").expect("a Role in the watched namespace");
    assert_operator_rules(watched.rules.as_deref().unwrap_or_default());
    let second = in_ns("tenant-b").expect("a Role in the second watched namespace");
    assert_operator_rules(second.rules.as_deref().unwrap_or_default());
    assert_eq!(
        roles.len(),
        3,
        "one Role per watched namespace (duplicates once) and one for leader election"
    );
    let own = in_ns(NAMESPACE).expect("a leader-election Role in the operator's namespace");
    let own_rules = own.rules.as_deref().unwrap_or_default();
    assert!(allows(own_rules, "coordination.k8s.io", "leases", "update"));
    assert!(
        !allows(own_rules, "", "secrets", "get"),
        "nothing but leader election in the operator's namespace"
    );

    for role in [&watched, &second, &own] {
        let binding = bindings
            .iter()
            .find(|b| b.metadata.namespace == role.metadata.namespace)
            .expect("a RoleBinding beside each Role");
        assert_eq!(binding.role_ref.kind, "Role");
        assert_eq!(Some(&binding.role_ref.name), role.metadata.name.as_ref());
        let subject = &binding.subjects.as_deref().unwrap_or_default()[0];
        assert_eq!(subject.namespace.as_deref(), Some(NAMESPACE));
    }

    let (_, container) = r.operator();
    assert_eq!(
        env_value(&container, "SIEMBRIDGE_WATCH_NAMESPACES").as_deref(),
        Some("tenant-a,tenant-b")
    );
}

#[test]
fn watching_the_release_namespace_needs_a_single_role() {
    let r = Rendered::of(json!({"watchNamespaces": [NAMESPACE]}));
    let roles: Vec<Role> = r.all("Role");
    assert_eq!(roles.len(), 1, "{:?}", r.kinds());
    assert_operator_rules(roles[0].rules.as_deref().unwrap_or_default());
}

#[test]
fn rbac_create_false_renders_no_rbac() {
    let r = Rendered::of(json!({"rbac": {"create": false}, "serviceAccount": {"create": false, "name": "ops"}}));
    assert_eq!(r.kinds(), ["Deployment", "Service"]);
    let (deployment, _) = r.operator();
    assert_eq!(
        deployment
            .spec
            .template
            .spec
            .and_then(|s| s.service_account_name)
            .as_deref(),
        Some("ops")
    );
}

#[test]
fn values_configure_image_replicas_resources_and_scheduling() {
    let r = Rendered::of(json!({
        "replicaCount": 2,
        "image": {"repository": "registry.contoso.example/siembridge", "tag": "1.2.3", "pullPolicy": "Always"},
        "collectorImage": "registry.contoso.example/siembridge-collector:1.2.3",
        "logFormat": "text",
        "resources": {"requests": {"cpu": "100m", "memory": "128Mi"}, "limits": {"memory": "512Mi"}},
        "podAnnotations": {"example.com/team": "secops"},
        "nodeSelector": {"kubernetes.io/os": "linux"},
        "tolerations": [{"key": "dedicated", "operator": "Equal", "value": "security", "effect": "NoSchedule"}],
        "affinity": {"podAntiAffinity": {"preferredDuringSchedulingIgnoredDuringExecution": [{
            "weight": 100,
            "podAffinityTerm": {"topologyKey": "kubernetes.io/hostname",
                                "labelSelector": {"matchLabels": {"app.kubernetes.io/name": "siembridge"}}}}]}},
        "service": {"port": 9090},
    }));
    let (deployment, container) = r.operator();
    assert_eq!(deployment.spec.replicas, Some(2), "two replicas, one leader");
    let pdb: PodDisruptionBudget = r.one("PodDisruptionBudget");
    let pdb = pdb.spec.expect("PDB spec");
    assert_eq!(
        pdb.min_available,
        Some(IntOrString::Int(1)),
        "a drain keeps one operator running"
    );
    assert_eq!(
        pdb.selector.and_then(|s| s.match_labels),
        deployment.spec.selector.match_labels.clone()
    );
    assert_eq!(
        container.image.as_deref(),
        Some("registry.contoso.example/siembridge:1.2.3")
    );
    assert_eq!(container.image_pull_policy.as_deref(), Some("Always"));
    assert_eq!(
        env_value(&container, "SIEMBRIDGE_COLLECTOR_IMAGE").as_deref(),
        Some("registry.contoso.example/siembridge-collector:1.2.3")
    );
    assert_eq!(
        container.args.as_deref().unwrap_or_default(),
        ["operator", "--log-format", "text"]
    );
    let resources = container.resources.clone().expect("resources");
    assert_eq!(resources.requests.expect("requests")["memory"].0, "128Mi");
    assert_eq!(resources.limits.expect("limits")["memory"].0, "512Mi");
    assert_eq!(container.ports.as_deref().unwrap_or_default()[0].container_port, 9090);
    assert_eq!(
        env_value(&container, "SIEMBRIDGE_METRICS_ADDR").as_deref(),
        Some("0.0.0.0:9090")
    );

    let annotations = deployment
        .spec
        .template
        .metadata
        .and_then(|m| m.annotations)
        .unwrap_or_default();
    assert_eq!(annotations.get("example.com/team").map(String::as_str), Some("secops"));
    let pod = deployment.spec.template.spec.expect("pod spec");
    assert_eq!(
        pod.node_selector
            .unwrap_or_default()
            .get("kubernetes.io/os")
            .map(String::as_str),
        Some("linux")
    );
    assert_eq!(pod.tolerations.unwrap_or_default()[0].key.as_deref(), Some("dedicated"));
    assert!(pod.affinity.and_then(|a| a.pod_anti_affinity).is_some());

    let service: Service = r.one("Service");
    assert_eq!(service.spec.and_then(|s| s.ports).unwrap_or_default()[0].port, 9090);
}

#[test]
fn service_monitor_is_rendered_only_when_enabled() {
    let off = Rendered::of(json!({"serviceMonitor": {"enabled": false}}));
    assert!(!off.kinds().contains(&"ServiceMonitor".to_string()));

    let on = Rendered::of(
        json!({"serviceMonitor": {"enabled": true, "interval": "15s", "labels": {"release": "kube-prometheus"}}}),
    );
    let monitors: Vec<Value> = on.all("ServiceMonitor");
    assert_eq!(monitors.len(), 1, "{:?}", on.kinds());
    let monitor = &monitors[0];
    assert_eq!(monitor["apiVersion"], "monitoring.coreos.com/v1");
    assert_eq!(monitor["metadata"]["namespace"], NAMESPACE);
    assert_eq!(monitor["metadata"]["labels"]["release"], "kube-prometheus");
    let endpoint = &monitor["spec"]["endpoints"][0];
    assert_eq!(endpoint["port"], "metrics");
    assert_eq!(endpoint["path"], "/metrics");
    assert_eq!(endpoint["interval"], "15s");
    let service: Service = on.one("Service");
    let selector = serde_json::to_value(service.metadata.labels.unwrap_or_default()).expect("labels");
    for (k, v) in monitor["spec"]["selector"]["matchLabels"]
        .as_object()
        .expect("matchLabels")
    {
        assert_eq!(&selector[k], v, "the ServiceMonitor selects the metrics Service");
    }
}

#[test]
fn values_schema_rejects_bad_values() {
    for (values, needle) in [
        (json!({"replicaCount": "two"}), "replicaCount"),
        (json!({"replicas": 2}), "replicas"),
        (json!({"image": {"pullPolicy": "Sometimes"}}), "pullPolicy"),
        (json!({"serviceMonitor": {"enabled": "yes"}}), "enabled"),
        (json!({"watchNamespaces": ["Not_A_Namespace"]}), "watchNamespaces"),
        (json!({"watchNamespaces": "tenant-a"}), "watchNamespaces"),
        (json!({"logFormat": "xml"}), "logFormat"),
        (json!({"collectorPod": {"nodeSelectr": {"a": "b"}}}), "nodeSelectr"),
    ] {
        match helm_render(&values) {
            Ok(_) => panic!("values.schema.json accepted {values}"),
            Err(reason) => assert!(
                reason.contains(needle),
                "the error for {values} names {needle}: {reason}"
            ),
        }
    }
}

#[test]
fn collector_pod_defaults_reach_the_operator_as_the_template_it_parses() {
    let pod = json!({
        "labels": {"team": "soc"},
        "imagePullSecrets": [{"name": "registry-credentials"}],
        "env": [{"name": "HTTPS_PROXY", "value": "http://proxy.contoso.example:3128"}],
        "serviceAccountAnnotations": {"example.com/owner": "platform"}
    });
    let rendered = Rendered::of(json!({"collectorPod": pod}));
    let (_, container) = rendered.operator();
    let text = env_value(&container, "SIEMBRIDGE_COLLECTOR_POD_DEFAULTS").expect("collector pod defaults are passed");
    let parsed = siembridge::operator::collector_pod_defaults(Some(&text)).unwrap();
    assert_eq!(parsed.labels["team"], "soc");
    assert_eq!(parsed.image_pull_secrets[0].name, "registry-credentials");
    assert_eq!(
        parsed.env[0].value.as_deref(),
        Some("http://proxy.contoso.example:3128")
    );
    assert_eq!(parsed.service_account_annotations["example.com/owner"], "platform");
    // No value, no variable: the operator's defaults are empty.
    let (_, plain) = Rendered::of(json!({})).operator();
    assert!(env_value(&plain, "SIEMBRIDGE_COLLECTOR_POD_DEFAULTS").is_none());
    let rules: Vec<PolicyRule> = rendered.one::<ClusterRole>("ClusterRole").rules.unwrap_or_default();
    for verb in ["create", "patch", "delete", "list"] {
        assert!(
            allows(&rules, "policy", "poddisruptionbudgets", verb),
            "{verb} poddisruptionbudgets"
        );
    }
}

#[test]
fn chart_crds_are_the_generated_crds() {
    let r = Rendered::of(json!({}));
    let mut names: Vec<String> = r.crds.iter().filter_map(|c| c.metadata.name.clone()).collect();
    names.sort();
    assert_eq!(
        names,
        [
            "consumergroups.siembridge.io",
            "logsources.siembridge.io",
            "notifiers.siembridge.io",
            "siemdestinations.siembridge.io"
        ]
    );
    for (_, yaml) in siembridge::crdgen::crds() {
        let generated: CustomResourceDefinition = serde_yaml::from_str(&yaml).expect("crdgen output");
        let shipped = r
            .crds
            .iter()
            .find(|c| c.metadata.name == generated.metadata.name)
            .expect("every generated CRD is shipped");
        assert!(
            shipped.spec == generated.spec,
            "Helm ships a different {:?}; run `cargo run -- crdgen --out charts/siembridge/files/crds`",
            generated.metadata.name
        );
        let annotations = shipped.metadata.annotations.clone().unwrap_or_default();
        assert_eq!(
            annotations.get("helm.sh/resource-policy").map(String::as_str),
            Some("keep"),
            "kept on uninstall by default"
        );
        let labels = shipped.metadata.labels.clone().unwrap_or_default();
        assert_eq!(
            labels.get("app.kubernetes.io/name").map(String::as_str),
            Some("siembridge")
        );
    }
    let unkept = Rendered::of(json!({"crds": {"keep": false}}));
    assert_eq!(unkept.crds.len(), 4);
    assert!(unkept.crds.iter().all(|c| !c
        .metadata
        .annotations
        .clone()
        .unwrap_or_default()
        .contains_key("helm.sh/resource-policy")));
    assert!(
        Rendered::of(json!({"crds": {"install": false}})).crds.is_empty(),
        "crds.install=false ships none"
    );
}

/// Dotted paths of the values a user sets one by one; free-form maps and objects stop the descent.
fn value_paths(prefix: &str, value: &serde_yaml::Value, out: &mut Vec<String>) {
    const FREE_FORM: [&str; 9] = [
        "podAnnotations",
        "podLabels",
        "podSecurityContext",
        "securityContext",
        "resources",
        "nodeSelector",
        "affinity",
        "serviceAccount.annotations",
        "serviceMonitor.labels",
    ];
    match value.as_mapping() {
        Some(map) if !map.is_empty() && !FREE_FORM.contains(&prefix) => {
            for (k, v) in map {
                let key = k.as_str().expect("string keys in values.yaml");
                let path = if prefix.is_empty() {
                    key.to_string()
                } else {
                    format!("{prefix}.{key}")
                };
                value_paths(&path, v, out);
            }
        }
        _ => out.push(prefix.to_string()),
    }
}

#[test]
fn every_value_is_in_the_schema_and_the_readme() {
    let chart = repo().join("charts/siembridge");
    let values: serde_yaml::Value =
        serde_yaml::from_str(&std::fs::read_to_string(chart.join("values.yaml")).expect("values.yaml")).expect("YAML");
    let schema: Value =
        serde_json::from_str(&std::fs::read_to_string(chart.join("values.schema.json")).expect("schema"))
            .expect("JSON");
    let readme = std::fs::read_to_string(chart.join("README.md")).expect("charts/siembridge/README.md");
    assert_eq!(
        schema["additionalProperties"], false,
        "the schema refuses unknown top-level values"
    );
    let mut paths = Vec::new();
    value_paths("", &values, &mut paths);
    assert!(paths.len() > 20, "{paths:?}");
    for path in paths {
        let mut node = &schema;
        for part in path.split('.') {
            node = &node["properties"][part];
        }
        assert!(
            node["type"].is_string() || node["type"].is_array(),
            "values.schema.json types `{path}`"
        );
        assert!(
            readme.contains(&format!("| `{path}` |")),
            "charts/siembridge/README.md documents `{path}`"
        );
    }
}

#[test]
fn pod_monitor_alert_rules_and_dashboard_are_rendered_only_when_enabled() {
    let off = Rendered::of(json!({}));
    for kind in ["PodMonitor", "PrometheusRule"] {
        assert!(!off.kinds().contains(&kind.to_string()), "{kind} is opt-in");
    }
    assert!(
        off.all::<Value>("ConfigMap").is_empty(),
        "no dashboard ConfigMap by default"
    );

    let on = Rendered::of(json!({
        "podMonitor": {"enabled": true, "labels": {"release": "kube-prometheus"}},
        "prometheusRule": {"enabled": true, "labels": {"release": "kube-prometheus"}},
        "grafanaDashboard": {"enabled": true}
    }));
    // The PodMonitor selects the pods the operator creates (their labels, from the builder) on
    // their `metrics` port, and labels them for the alert rules.
    let monitor: Value = on.one("PodMonitor");
    let selector = &monitor["spec"]["selector"]["matchLabels"];
    assert_eq!(
        selector["app.kubernetes.io/name"],
        siembridge::operator::builders::COLLECTOR_APP
    );
    assert_eq!(
        selector["app.kubernetes.io/managed-by"],
        siembridge::operator::builders::MANAGED_BY
    );
    assert_eq!(monitor["spec"]["namespaceSelector"]["any"], true);
    let endpoint = &monitor["spec"]["podMetricsEndpoints"][0];
    assert_eq!(endpoint["port"], "metrics");
    assert_eq!(endpoint["relabelings"][0]["targetLabel"], "siembridge_component");
    assert_eq!(endpoint["relabelings"][0]["replacement"], "collector");

    // The PrometheusRule carries the rule file as promtool checks it, `{{ $labels }}` intact.
    let rule: Value = on.one("PrometheusRule");
    assert_eq!(rule["metadata"]["labels"]["release"], "kube-prometheus");
    let file: Value = serde_yaml::from_str(
        &std::fs::read_to_string(repo().join("charts/siembridge/files/prometheus/alerts.yaml")).unwrap(),
    )
    .unwrap();
    assert_eq!(rule["spec"]["groups"], file["groups"]);
    assert!(rule["spec"]["groups"][0]["rules"][0]["annotations"]["summary"]
        .as_str()
        .unwrap()
        .contains("{{ $labels.pod }}"));

    // The dashboard ConfigMap, labelled for Grafana's sidecar, holds the JSON unchanged.
    let maps: Vec<Value> = on.all("ConfigMap");
    assert_eq!(maps.len(), 1);
    assert_eq!(maps[0]["metadata"]["labels"]["grafana_dashboard"], "1");
    let shipped: Value = serde_json::from_str(maps[0]["data"]["siembridge.json"].as_str().unwrap()).unwrap();
    let file: Value = serde_json::from_str(
        &std::fs::read_to_string(repo().join("charts/siembridge/files/grafana/siembridge.json")).unwrap(),
    )
    .unwrap();
    assert_eq!(shipped, file);
}
