//! Pure builders of the objects that run one collector: `RenderedCollector -> ConfigMap /
//! Deployment / ServiceAccount / Role / RoleBinding`.
//!
//! Nothing here talks to the API server, so every child object is unit-tested as data. The
//! controllers apply what these functions return with server-side apply.

use std::collections::BTreeMap;

use k8s_openapi::api::apps::v1::{Deployment, DeploymentSpec, DeploymentStrategy, RollingUpdateDeployment};
use k8s_openapi::api::core::v1::{
    Capabilities, ConfigMap, ConfigMapVolumeSource, Container, ContainerPort, EmptyDirVolumeSource, EnvVar,
    EnvVarSource, HTTPGetAction, ObjectFieldSelector, PodSecurityContext, PodSpec, PodTemplateSpec, Probe,
    ResourceRequirements, SeccompProfile, SecretVolumeSource, SecurityContext, ServiceAccount, Volume, VolumeMount,
};
use k8s_openapi::api::policy::v1::{PodDisruptionBudget, PodDisruptionBudgetSpec};
use k8s_openapi::api::rbac::v1::{PolicyRule, Role, RoleBinding, RoleRef, Subject};
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{LabelSelector, ObjectMeta, OwnerReference};
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use sha2::{Digest, Sha256};

use crate::api::CollectorPodTemplate;
use crate::config::{CheckpointConfig, SecretSource};
use crate::render::{RenderedCollector, COLLECTOR_METRICS_PORT, POD_STATE_DIR, REPLAY_MOUNT_DIR};

/// Label every object made by the operator carries.
pub const MANAGED_BY_LABEL: &str = "app.kubernetes.io/managed-by";
/// Value of [`MANAGED_BY_LABEL`].
pub const MANAGED_BY: &str = "siembridge";
/// Kind of the resource a child belongs to (`LogSource`, `ConsumerGroup`).
pub const OWNER_KIND_LABEL: &str = "siembridge.io/owner-kind";
/// Name of the resource a child belongs to.
pub const OWNER_NAME_LABEL: &str = "siembridge.io/owner-name";
/// Name of the collector (selector of its pods).
pub const INSTANCE_LABEL: &str = "app.kubernetes.io/instance";
/// Component name of collector pods.
pub const NAME_LABEL: &str = "app.kubernetes.io/name";
/// Value of [`NAME_LABEL`] on collector objects.
pub const COLLECTOR_APP: &str = "siembridge-collector";
/// Pod template annotation whose change rolls the collector pods.
pub const CONFIG_HASH_ANNOTATION: &str = "siembridge.io/config-hash";
/// Key of the rendered configuration in the collector ConfigMap.
pub const CONFIG_KEY: &str = "collector.yaml";
/// Directory the collector ConfigMap is mounted at.
pub const CONFIG_MOUNT_DIR: &str = "/etc/siembridge";
/// User and group the collector runs as (the distroless `nonroot` user).
pub const COLLECTOR_UID: i64 = 65532;
/// Pod label the Azure workload identity webhook selects pods by (it then projects the
/// federated token file and sets `AZURE_FEDERATED_TOKEN_FILE`, `AZURE_CLIENT_ID`, ...).
pub const WORKLOAD_IDENTITY_USE_LABEL: &str = "azure.workload.identity/use";
/// ServiceAccount annotation naming the Entra app the pods' federated token is exchanged for.
pub const WORKLOAD_IDENTITY_CLIENT_ID_ANNOTATION: &str = "azure.workload.identity/client-id";
/// ServiceAccount annotation naming the app's tenant.
pub const WORKLOAD_IDENTITY_TENANT_ID_ANNOTATION: &str = "azure.workload.identity/tenant-id";

/// The resource a collector belongs to: labels and the controller owner reference.
#[derive(Clone, Debug, PartialEq)]
pub struct CollectorOwner {
    /// `LogSource` or `ConsumerGroup`.
    pub kind: &'static str,
    /// Name of the resource.
    pub name: String,
    /// Namespace of the resource and of every child.
    pub namespace: String,
    /// Owner reference with `controller: true`, so deleting the resource deletes the children.
    pub reference: OwnerReference,
}

impl CollectorOwner {
    /// The owner of a custom resource's children.
    pub fn of<K>(obj: &K) -> Option<Self>
    where
        K: kube::Resource<DynamicType = ()>,
    {
        use kube::ResourceExt;
        Some(CollectorOwner {
            kind: leak_kind(&K::kind(&())),
            name: obj.name_any(),
            namespace: obj.namespace()?,
            reference: obj.controller_owner_ref(&())?,
        })
    }

    /// Labels of every child of this owner.
    pub fn labels(&self, collector: &str) -> BTreeMap<String, String> {
        let mut labels = selector_labels(collector);
        labels.insert(MANAGED_BY_LABEL.into(), MANAGED_BY.into());
        labels.insert(OWNER_KIND_LABEL.into(), self.kind.into());
        labels.insert(OWNER_NAME_LABEL.into(), label_value(&self.name));
        labels
    }

    /// The labels of [`Self::children_selector`].
    pub fn children_labels(&self) -> BTreeMap<String, String> {
        BTreeMap::from([
            (MANAGED_BY_LABEL.to_string(), MANAGED_BY.to_string()),
            (OWNER_KIND_LABEL.to_string(), self.kind.to_string()),
            (OWNER_NAME_LABEL.to_string(), label_value(&self.name)),
        ])
    }

    /// Label selector of every child of this owner, for the clean-up of unwanted children.
    pub fn children_selector(&self) -> String {
        format!(
            "{MANAGED_BY_LABEL}={MANAGED_BY},{OWNER_KIND_LABEL}={},{OWNER_NAME_LABEL}={}",
            self.kind,
            label_value(&self.name)
        )
    }

    fn metadata(&self, name: &str, collector: &str) -> ObjectMeta {
        ObjectMeta {
            name: Some(name.to_string()),
            namespace: Some(self.namespace.clone()),
            labels: Some(self.labels(collector)),
            owner_references: Some(vec![self.reference.clone()]),
            ..ObjectMeta::default()
        }
    }
}

/// The two kinds that own collectors, as `'static` strings for labels.
fn leak_kind(kind: &str) -> &'static str {
    match kind {
        "LogSource" => "LogSource",
        "ConsumerGroup" => "ConsumerGroup",
        _ => "Unknown",
    }
}

/// A label value is at most 63 characters; resource names may be longer (253).
fn label_value(name: &str) -> String {
    if name.len() <= 63 {
        return name.to_string();
    }
    let digest = hex::encode(Sha256::digest(name.as_bytes()));
    let keep: String = name.chars().take(54).collect();
    format!("{}-{}", keep.trim_end_matches(['-', '.', '_']), &digest[..8])
}

/// Labels that select the pods of one collector (immutable in a Deployment).
pub fn selector_labels(collector: &str) -> BTreeMap<String, String> {
    BTreeMap::from([
        (NAME_LABEL.to_string(), COLLECTOR_APP.to_string()),
        (INSTANCE_LABEL.to_string(), collector.to_string()),
    ])
}

/// Name of the ConfigMap a collector writes its progress to.
pub fn report_config_map_name(collector: &str) -> String {
    format!("{collector}-report")
}

/// Name of the pod volume of a mounted Secret (volume names are DNS labels, Secret names may not
/// fit, so volumes are numbered in the sorted order of the Secret names).
fn secret_volume_name(index: usize) -> String {
    format!("secret-{index}")
}

/// Why the children of a collector cannot be built.
#[derive(Debug, thiserror::Error)]
pub enum BuildError {
    #[error("cannot serialize the collector configuration: {0}")]
    SerializeConfig(#[from] serde_yaml::Error),
}

/// Everything one collector needs, ready to be applied.
#[derive(Clone, Debug, PartialEq)]
pub struct CollectorChildren {
    pub service_account: ServiceAccount,
    pub role: Role,
    pub role_binding: RoleBinding,
    pub config_map: ConfigMap,
    /// The report ConfigMap with metadata only: the operator owns its labels and owner
    /// reference (so it is garbage-collected), the collector owns `data`.
    pub report_config_map: ConfigMap,
    pub deployment: Deployment,
    /// With more than one replica: at most one collector pod down at a time in a voluntary
    /// disruption (node drain), so the others keep reading their partitions.
    pub pod_disruption_budget: Option<PodDisruptionBudget>,
}

/// Build every child of a collector.
///
/// `secret_versions` maps each Secret of `collector.secret_names` to its `resourceVersion`, so a
/// rotation changes the pod template hash and rolls the pods. `pod` is the operator's collector
/// pod defaults already overridden by the resource's `podTemplate`.
pub fn collector_children(
    collector: &RenderedCollector,
    owner: &CollectorOwner,
    image: &str,
    pod: &CollectorPodTemplate,
    secret_versions: &BTreeMap<String, String>,
) -> Result<CollectorChildren, BuildError> {
    let config_yaml = serde_yaml::to_string(&collector.config)?;
    let hash = config_hash(&config_yaml, collector, secret_versions);
    Ok(CollectorChildren {
        service_account: service_account(collector, owner, pod),
        role: role(collector, owner),
        role_binding: role_binding(collector, owner),
        config_map: config_map(collector, owner, config_yaml),
        report_config_map: report_config_map(collector, owner),
        deployment: deployment(collector, owner, image, pod, &hash),
        pod_disruption_budget: pod_disruption_budget(collector, owner),
    })
}

/// `maxUnavailable: 1` over the collector's pods when it runs more than one.
pub fn pod_disruption_budget(collector: &RenderedCollector, owner: &CollectorOwner) -> Option<PodDisruptionBudget> {
    (collector.replicas > 1).then(|| PodDisruptionBudget {
        metadata: owner.metadata(&collector.name, &collector.name),
        spec: Some(PodDisruptionBudgetSpec {
            max_unavailable: Some(IntOrString::Int(1)),
            selector: Some(LabelSelector {
                match_labels: Some(selector_labels(&collector.name)),
                ..LabelSelector::default()
            }),
            ..PodDisruptionBudgetSpec::default()
        }),
        ..PodDisruptionBudget::default()
    })
}

/// sha256 of the rendered configuration and of the `resourceVersion` of each Secret the
/// collector reads, in the order of the Secret names.
pub fn config_hash(
    config_yaml: &str,
    collector: &RenderedCollector,
    secret_versions: &BTreeMap<String, String>,
) -> String {
    let mut hasher = Sha256::new();
    hasher.update(config_yaml.as_bytes());
    for name in &collector.secret_names {
        let version = secret_versions.get(name).map(String::as_str).unwrap_or("");
        hasher.update(b"\0secret\0");
        hasher.update(name.as_bytes());
        hasher.update(b"\0");
        hasher.update(version.as_bytes());
    }
    hex::encode(hasher.finalize())
}

/// The ConfigMap holding `collector.yaml`.
pub fn config_map(collector: &RenderedCollector, owner: &CollectorOwner, config_yaml: String) -> ConfigMap {
    ConfigMap {
        metadata: owner.metadata(&collector.name, &collector.name),
        data: Some(BTreeMap::from([(CONFIG_KEY.to_string(), config_yaml)])),
        ..ConfigMap::default()
    }
}

/// The report ConfigMap, metadata only (see [`CollectorChildren::report_config_map`]).
pub fn report_config_map(collector: &RenderedCollector, owner: &CollectorOwner) -> ConfigMap {
    ConfigMap {
        metadata: owner.metadata(&report_config_map_name(&collector.name), &collector.name),
        ..ConfigMap::default()
    }
}

/// The ServiceAccount collector pods run as: the pod template's annotations, and with Azure
/// workload identity the app it is federated with (federated credential subject
/// `system:serviceaccount:<namespace>:<collector name>`).
pub fn service_account(
    collector: &RenderedCollector,
    owner: &CollectorOwner,
    pod: &CollectorPodTemplate,
) -> ServiceAccount {
    let mut metadata = owner.metadata(&collector.name, &collector.name);
    let mut annotations = pod.service_account_annotations.clone();
    if let Ok(Some(identity)) = collector.workload_identity() {
        annotations.insert(WORKLOAD_IDENTITY_CLIENT_ID_ANNOTATION.into(), identity.client_id);
        if !identity.tenant_id.is_empty() {
            annotations.insert(WORKLOAD_IDENTITY_TENANT_ID_ANNOTATION.into(), identity.tenant_id);
        }
    }
    metadata.annotations = (!annotations.is_empty()).then_some(annotations);
    ServiceAccount {
        metadata,
        ..ServiceAccount::default()
    }
}

/// The least a collector needs from the API server.
pub fn role(collector: &RenderedCollector, owner: &CollectorOwner) -> Role {
    let report = report_config_map_name(&collector.name);
    let mut rules = Vec::new();
    if matches!(collector.config.checkpoint, CheckpointConfig::Kubernetes { .. }) {
        // Checkpoints live in one Lease per partition or stream, named `<collector>-<stream>`.
        // The streams (Event Hub partition ids, API content types) are only known at run time,
        // and `resourceNames` can restrict neither `create` nor `list`/`watch`, so the tightest
        // correct rule is leases of this namespace. Collectors of one namespace can therefore see
        // each other's checkpoints; they cannot read anything else.
        rules.push(PolicyRule {
            api_groups: Some(vec!["coordination.k8s.io".into()]),
            resources: Some(vec!["leases".into()]),
            verbs: strings(&["create", "get", "list", "watch", "update", "patch"]),
            ..PolicyRule::default()
        });
    }
    rules.push(PolicyRule {
        api_groups: Some(vec![String::new()]),
        resources: Some(vec!["configmaps".into()]),
        resource_names: Some(vec![report]),
        verbs: strings(&["get", "patch", "update"]),
        ..PolicyRule::default()
    });
    // `create` cannot be limited by name; the operator creates the report ConfigMap before the
    // pods start, this only lets a collector recreate it if someone deleted it.
    rules.push(PolicyRule {
        api_groups: Some(vec![String::new()]),
        resources: Some(vec!["configmaps".into()]),
        verbs: strings(&["create"]),
        ..PolicyRule::default()
    });
    if !collector.secret_names.is_empty() {
        rules.push(PolicyRule {
            api_groups: Some(vec![String::new()]),
            resources: Some(vec!["secrets".into()]),
            resource_names: Some(collector.secret_names.iter().cloned().collect()),
            verbs: strings(&["get"]),
            ..PolicyRule::default()
        });
    }
    Role {
        metadata: owner.metadata(&collector.name, &collector.name),
        rules: Some(rules),
    }
}

/// Binds the collector Role to its ServiceAccount.
pub fn role_binding(collector: &RenderedCollector, owner: &CollectorOwner) -> RoleBinding {
    RoleBinding {
        metadata: owner.metadata(&collector.name, &collector.name),
        role_ref: RoleRef {
            api_group: Some("rbac.authorization.k8s.io".into()),
            kind: "Role".into(),
            name: collector.name.clone(),
        },
        subjects: Some(vec![Subject {
            kind: "ServiceAccount".into(),
            name: collector.name.clone(),
            namespace: Some(owner.namespace.clone()),
            ..Subject::default()
        }]),
    }
}

/// Requests 50m CPU / 64Mi memory, limit 512Mi memory, unless the spec says otherwise.
pub fn default_resources() -> ResourceRequirements {
    ResourceRequirements {
        requests: Some(BTreeMap::from([
            ("cpu".to_string(), Quantity("50m".into())),
            ("memory".to_string(), Quantity("64Mi".into())),
        ])),
        limits: Some(BTreeMap::from([("memory".to_string(), Quantity("512Mi".into()))])),
        ..ResourceRequirements::default()
    }
}

/// The Deployment running the collector pods.
pub fn deployment(
    collector: &RenderedCollector,
    owner: &CollectorOwner,
    image: &str,
    pod: &CollectorPodTemplate,
    config_hash: &str,
) -> Deployment {
    let mut volumes = vec![
        Volume {
            name: "config".into(),
            config_map: Some(ConfigMapVolumeSource {
                name: collector.name.clone(),
                ..ConfigMapVolumeSource::default()
            }),
            ..Volume::default()
        },
        Volume {
            name: "state".into(),
            // Bounded: the dead-letter files stop below it (`POD_DEAD_LETTER_BYTES`).
            empty_dir: Some(EmptyDirVolumeSource {
                size_limit: Some(Quantity(crate::render::POD_STATE_BYTES.to_string())),
                ..EmptyDirVolumeSource::default()
            }),
            ..Volume::default()
        },
    ];
    let mut mounts = vec![
        VolumeMount {
            name: "config".into(),
            mount_path: CONFIG_MOUNT_DIR.into(),
            read_only: Some(true),
            ..VolumeMount::default()
        },
        VolumeMount {
            name: "state".into(),
            mount_path: POD_STATE_DIR.into(),
            ..VolumeMount::default()
        },
    ];
    for (index, secret) in collector.secret_names.iter().enumerate() {
        volumes.push(Volume {
            name: secret_volume_name(index),
            secret: Some(SecretVolumeSource {
                secret_name: Some(secret.clone()),
                optional: Some(false),
                ..SecretVolumeSource::default()
            }),
            ..Volume::default()
        });
        mounts.push(VolumeMount {
            name: secret_volume_name(index),
            mount_path: format!("{}/{secret}", SecretSource::MOUNT_DIR),
            read_only: Some(true),
            ..VolumeMount::default()
        });
    }
    if let Some(replay) = &collector.replay_config_map {
        volumes.push(Volume {
            name: "replay".into(),
            config_map: Some(ConfigMapVolumeSource {
                name: replay.clone(),
                ..ConfigMapVolumeSource::default()
            }),
            ..Volume::default()
        });
        mounts.push(VolumeMount {
            name: "replay".into(),
            mount_path: REPLAY_MOUNT_DIR.into(),
            read_only: Some(true),
            ..VolumeMount::default()
        });
    }
    let health_probe = |initial_delay: i32| Probe {
        http_get: Some(HTTPGetAction {
            path: Some("/healthz".into()),
            port: IntOrString::String("metrics".into()),
            ..HTTPGetAction::default()
        }),
        initial_delay_seconds: Some(initial_delay),
        period_seconds: Some(10),
        ..Probe::default()
    };
    let field_env = |name: &str, path: &str| EnvVar {
        name: name.into(),
        value_from: Some(EnvVarSource {
            field_ref: Some(ObjectFieldSelector {
                field_path: path.into(),
                ..ObjectFieldSelector::default()
            }),
            ..EnvVarSource::default()
        }),
        ..EnvVar::default()
    };
    let container = Container {
        name: "collector".into(),
        image: Some(image.into()),
        command: Some(vec!["siembridge".into()]),
        args: Some(vec![
            "collector".into(),
            "--config".into(),
            format!("{CONFIG_MOUNT_DIR}/{CONFIG_KEY}"),
            "--log-format".into(),
            "json".into(),
        ]),
        env: Some({
            let mut env = vec![
                field_env("POD_NAME", "metadata.name"),
                field_env("POD_NAMESPACE", "metadata.namespace"),
            ];
            // The pod template's environment (a proxy, say) may not replace what the collector
            // relies on.
            env.extend(
                pod.env
                    .iter()
                    .filter(|e| e.name != "POD_NAME" && e.name != "POD_NAMESPACE")
                    .cloned(),
            );
            env
        }),
        ports: Some(vec![ContainerPort {
            name: Some("metrics".into()),
            container_port: i32::from(COLLECTOR_METRICS_PORT),
            protocol: Some("TCP".into()),
            ..ContainerPort::default()
        }]),
        liveness_probe: Some(health_probe(10)),
        readiness_probe: Some(health_probe(2)),
        resources: Some(
            collector
                .resources
                .clone()
                .or_else(|| pod.resources.clone())
                .unwrap_or_else(default_resources),
        ),
        security_context: Some(SecurityContext {
            allow_privilege_escalation: Some(false),
            read_only_root_filesystem: Some(true),
            run_as_non_root: Some(true),
            run_as_user: Some(COLLECTOR_UID),
            run_as_group: Some(COLLECTOR_UID),
            capabilities: Some(Capabilities {
                drop: Some(vec!["ALL".into()]),
                ..Capabilities::default()
            }),
            seccomp_profile: Some(SeccompProfile {
                type_: "RuntimeDefault".into(),
                ..SeccompProfile::default()
            }),
            ..SecurityContext::default()
        }),
        volume_mounts: Some(mounts),
        ..Container::default()
    };
    // The template's labels first: the ones the operator selects pods by always win.
    let mut pod_labels = pod.labels.clone();
    pod_labels.extend(owner.labels(&collector.name));
    if matches!(collector.workload_identity(), Ok(Some(_))) {
        pod_labels.insert(WORKLOAD_IDENTITY_USE_LABEL.into(), "true".into());
    }
    let mut pod_annotations = pod.annotations.clone();
    pod_annotations.insert(CONFIG_HASH_ANNOTATION.to_string(), config_hash.to_string());
    Deployment {
        metadata: owner.metadata(&collector.name, &collector.name),
        spec: DeploymentSpec {
            replicas: Some(collector.replicas),
            selector: LabelSelector {
                match_labels: Some(selector_labels(&collector.name)),
                ..LabelSelector::default()
            },
            // Never more pods than replicas: two pods of one API-polled collector would poll
            // the same tenant twice while they hand over the checkpoint Lease.
            strategy: Some(DeploymentStrategy {
                type_: Some("RollingUpdate".into()),
                rolling_update: Some(RollingUpdateDeployment {
                    max_surge: Some(IntOrString::Int(0)),
                    max_unavailable: Some(IntOrString::Int(1)),
                }),
            }),
            template: PodTemplateSpec {
                metadata: Some(ObjectMeta {
                    labels: Some(pod_labels),
                    annotations: Some(pod_annotations),
                    ..ObjectMeta::default()
                }),
                spec: Some(PodSpec {
                    service_account_name: Some(collector.name.clone()),
                    security_context: Some(PodSecurityContext {
                        run_as_non_root: Some(true),
                        run_as_user: Some(COLLECTOR_UID),
                        run_as_group: Some(COLLECTOR_UID),
                        fs_group: Some(COLLECTOR_UID),
                        seccomp_profile: Some(SeccompProfile {
                            type_: "RuntimeDefault".into(),
                            ..SeccompProfile::default()
                        }),
                        ..PodSecurityContext::default()
                    }),
                    containers: vec![container],
                    volumes: Some(volumes),
                    image_pull_secrets: (!pod.image_pull_secrets.is_empty()).then(|| pod.image_pull_secrets.clone()),
                    node_selector: (!pod.node_selector.is_empty()).then(|| pod.node_selector.clone()),
                    tolerations: (!pod.tolerations.is_empty()).then(|| pod.tolerations.clone()),
                    affinity: pod.affinity.clone(),
                    topology_spread_constraints: (!pod.topology_spread_constraints.is_empty())
                        .then(|| pod.topology_spread_constraints.clone()),
                    priority_class_name: pod.priority_class_name.clone(),
                    ..PodSpec::default()
                }),
            },
            ..DeploymentSpec::default()
        },
        ..Deployment::default()
    }
}

fn strings(items: &[&str]) -> Vec<String> {
    items.iter().map(|s| s.to_string()).collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::api::{
        DestinationRef, LogSource, LogSourceSpec, ReplaySource, SecretKeySelector, SiemDestination,
        SiemDestinationSpec, SplunkHecSpec,
    };
    use crate::render::{render_log_source, RenderTarget};

    fn rendered() -> (RenderedCollector, CollectorOwner) {
        let mut ls = LogSource::new(
            "quickstart",
            LogSourceSpec {
                replay: Some(ReplaySource {
                    config_map: Some("sample-events".into()),
                    ..ReplaySource::default()
                }),
                destinations: vec![DestinationRef { name: "splunk".into() }],
                ..LogSourceSpec::default()
            },
        );
        ls.metadata.namespace = Some("soc".into());
        ls.metadata.uid = Some("11111111-2222-3333-4444-555555555555".into());
        let mut dest = SiemDestination::new(
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
        dest.metadata.namespace = Some("soc".into());
        let collector = render_log_source(&ls, &[dest], &RenderTarget::Cluster)
            .unwrap()
            .unwrap();
        let owner = CollectorOwner::of(&ls).unwrap();
        (collector, owner)
    }

    fn versions(v: &str) -> BTreeMap<String, String> {
        BTreeMap::from([("hec-token".to_string(), v.to_string())])
    }

    #[test]
    fn every_child_carries_labels_and_a_controller_owner_reference() {
        let (collector, owner) = rendered();
        let children = collector_children(
            &collector,
            &owner,
            "img:1",
            &CollectorPodTemplate::default(),
            &versions("1"),
        )
        .unwrap();
        let metas = [
            &children.service_account.metadata,
            &children.role.metadata,
            &children.role_binding.metadata,
            &children.config_map.metadata,
            &children.report_config_map.metadata,
            &children.deployment.metadata,
        ];
        for meta in metas {
            assert_eq!(meta.namespace.as_deref(), Some("soc"));
            let labels = meta.labels.as_ref().unwrap();
            assert_eq!(labels[MANAGED_BY_LABEL], "siembridge");
            assert_eq!(labels[OWNER_KIND_LABEL], "LogSource");
            assert_eq!(labels[OWNER_NAME_LABEL], "quickstart");
            let refs = meta.owner_references.as_ref().unwrap();
            assert_eq!(refs.len(), 1);
            assert_eq!(refs[0].kind, "LogSource");
            assert_eq!(refs[0].uid, "11111111-2222-3333-4444-555555555555");
            assert_eq!(refs[0].controller, Some(true));
        }
        assert_eq!(
            children.report_config_map.metadata.name.as_deref(),
            Some("sb-ls-quickstart-report")
        );
        assert!(
            children.report_config_map.data.is_none(),
            "the collector owns the report data"
        );
    }

    #[test]
    fn config_map_holds_the_rendered_config_as_yaml() {
        let (collector, owner) = rendered();
        let children = collector_children(
            &collector,
            &owner,
            "img:1",
            &CollectorPodTemplate::default(),
            &versions("1"),
        )
        .unwrap();
        let yaml = &children.config_map.data.as_ref().unwrap()[CONFIG_KEY];
        let parsed: crate::config::CollectorConfig = serde_yaml::from_str(yaml).unwrap();
        assert_eq!(parsed, collector.config);
        assert_eq!(children.config_map.metadata.name.as_deref(), Some("sb-ls-quickstart"));
    }

    #[test]
    fn deployment_runs_a_restricted_collector_with_its_mounts() {
        let (collector, owner) = rendered();
        let d = collector_children(
            &collector,
            &owner,
            "ghcr.io/siembridge/siembridge:9.9.9",
            &CollectorPodTemplate::default(),
            &versions("1"),
        )
        .unwrap()
        .deployment;
        assert_eq!(d.spec.replicas, Some(1));
        let pod = d.spec.template.spec.as_ref().unwrap();
        assert_eq!(pod.service_account_name.as_deref(), Some("sb-ls-quickstart"));
        let psc = pod.security_context.as_ref().unwrap();
        assert_eq!(psc.run_as_non_root, Some(true));
        assert_eq!(psc.run_as_user, Some(65532));
        assert_eq!(psc.seccomp_profile.as_ref().unwrap().type_, "RuntimeDefault");
        let c = &pod.containers[0];
        assert_eq!(c.image.as_deref(), Some("ghcr.io/siembridge/siembridge:9.9.9"));
        assert_eq!(c.command.as_deref(), Some(&["siembridge".to_string()][..]));
        assert_eq!(
            c.args.as_ref().unwrap().join(" "),
            "collector --config /etc/siembridge/collector.yaml --log-format json"
        );
        let sc = c.security_context.as_ref().unwrap();
        assert_eq!(sc.allow_privilege_escalation, Some(false));
        assert_eq!(sc.read_only_root_filesystem, Some(true));
        assert_eq!(sc.run_as_non_root, Some(true));
        assert_eq!(
            sc.capabilities.as_ref().unwrap().drop.as_deref(),
            Some(&["ALL".to_string()][..])
        );
        assert_eq!(sc.seccomp_profile.as_ref().unwrap().type_, "RuntimeDefault");

        let mounts: BTreeMap<&str, (&str, Option<bool>)> = c
            .volume_mounts
            .as_ref()
            .unwrap()
            .iter()
            .map(|m| (m.mount_path.as_str(), (m.name.as_str(), m.read_only)))
            .collect();
        assert_eq!(mounts["/etc/siembridge"].1, Some(true));
        assert_eq!(mounts["/var/run/secrets/siembridge/hec-token"].1, Some(true));
        assert!(mounts.contains_key(POD_STATE_DIR));
        assert!(mounts.contains_key(REPLAY_MOUNT_DIR));
        let volumes = pod.volumes.as_ref().unwrap();
        let secret_volume = volumes
            .iter()
            .find(|v| v.name == mounts["/var/run/secrets/siembridge/hec-token"].0)
            .unwrap();
        assert_eq!(
            secret_volume.secret.as_ref().unwrap().secret_name.as_deref(),
            Some("hec-token")
        );
        let state = volumes.iter().find(|v| v.name == mounts[POD_STATE_DIR].0).unwrap();
        assert!(state.empty_dir.is_some());
        let replay = volumes.iter().find(|v| v.name == mounts[REPLAY_MOUNT_DIR].0).unwrap();
        assert_eq!(replay.config_map.as_ref().unwrap().name, "sample-events");

        let port = &c.ports.as_ref().unwrap()[0];
        assert_eq!(port.name.as_deref(), Some("metrics"));
        assert_eq!(port.container_port, i32::from(COLLECTOR_METRICS_PORT));
        for probe in [c.liveness_probe.as_ref().unwrap(), c.readiness_probe.as_ref().unwrap()] {
            assert_eq!(probe.http_get.as_ref().unwrap().path.as_deref(), Some("/healthz"));
        }
        let env: Vec<(&str, &str)> = c
            .env
            .as_ref()
            .unwrap()
            .iter()
            .map(|e| {
                let field = e.value_from.as_ref().unwrap().field_ref.as_ref().unwrap();
                (e.name.as_str(), field.field_path.as_str())
            })
            .collect();
        assert_eq!(
            env,
            vec![("POD_NAME", "metadata.name"), ("POD_NAMESPACE", "metadata.namespace")]
        );

        let resources = c.resources.as_ref().unwrap();
        assert_eq!(resources.requests.as_ref().unwrap()["cpu"].0, "50m");
        assert_eq!(resources.requests.as_ref().unwrap()["memory"].0, "64Mi");
        assert_eq!(resources.limits.as_ref().unwrap()["memory"].0, "512Mi");

        // The selector is a subset of the pod labels, as a Deployment requires.
        let selector = d.spec.selector.match_labels.as_ref().unwrap();
        let pod_labels = d.spec.template.metadata.as_ref().unwrap().labels.as_ref().unwrap();
        for (k, v) in selector {
            assert_eq!(pod_labels.get(k), Some(v));
        }
    }

    #[test]
    fn resources_from_the_spec_replace_the_defaults() {
        let (mut collector, owner) = rendered();
        collector.resources = Some(ResourceRequirements {
            limits: Some(BTreeMap::from([("memory".to_string(), Quantity("2Gi".into()))])),
            ..ResourceRequirements::default()
        });
        let d = deployment(&collector, &owner, "img", &CollectorPodTemplate::default(), "h");
        let c = &d.spec.template.spec.as_ref().unwrap().containers[0];
        assert_eq!(
            c.resources.as_ref().unwrap().limits.as_ref().unwrap()["memory"].0,
            "2Gi"
        );
    }

    fn hash_of(d: &Deployment) -> String {
        d.spec.template.metadata.as_ref().unwrap().annotations.as_ref().unwrap()[CONFIG_HASH_ANNOTATION].clone()
    }

    #[test]
    fn config_hash_changes_with_the_config_and_with_a_secret_rotation_only() {
        let (collector, owner) = rendered();
        let build = |c: &RenderedCollector, v: &str| {
            collector_children(c, &owner, "img", &CollectorPodTemplate::default(), &versions(v))
                .unwrap()
                .deployment
        };
        let first = hash_of(&build(&collector, "100"));
        assert_eq!(first.len(), 64);
        assert_eq!(first, hash_of(&build(&collector, "100")), "same inputs, same hash");
        assert_ne!(
            first,
            hash_of(&build(&collector, "101")),
            "a Secret rotation rolls the pods"
        );
        let mut edited = collector.clone();
        edited.config.routes[0].categories = vec!["SignInLogs".into()];
        assert_ne!(first, hash_of(&build(&edited, "100")), "a config edit rolls the pods");
        // The image is not part of the config hash: an operator upgrade rolls pods through the
        // image field itself.
        assert_eq!(
            first,
            hash_of(
                &collector_children(
                    &collector,
                    &owner,
                    "other",
                    &CollectorPodTemplate::default(),
                    &versions("100")
                )
                .unwrap()
                .deployment
            )
        );
    }

    #[test]
    fn role_grants_leases_the_own_report_and_the_named_secrets_only() {
        let (collector, owner) = rendered();
        let role = role(&collector, &owner);
        let rules = role.rules.unwrap();
        let leases = rules
            .iter()
            .find(|r| r.resources.as_deref() == Some(&["leases".to_string()][..]))
            .unwrap();
        assert_eq!(
            leases.api_groups.as_deref(),
            Some(&["coordination.k8s.io".to_string()][..])
        );
        assert_eq!(
            leases.verbs,
            strings(&["create", "get", "list", "watch", "update", "patch"])
        );
        let report_rule = rules
            .iter()
            .find(|r| r.resource_names.as_deref() == Some(&["sb-ls-quickstart-report".to_string()][..]))
            .unwrap();
        assert_eq!(report_rule.verbs, strings(&["get", "patch", "update"]));
        let create_cm = rules
            .iter()
            .find(|r| r.resources.as_deref() == Some(&["configmaps".to_string()][..]) && r.resource_names.is_none())
            .unwrap();
        assert_eq!(create_cm.verbs, strings(&["create"]));
        let secrets = rules
            .iter()
            .find(|r| r.resources.as_deref() == Some(&["secrets".to_string()][..]))
            .unwrap();
        assert_eq!(secrets.verbs, strings(&["get"]));
        assert_eq!(secrets.resource_names.as_deref(), Some(&["hec-token".to_string()][..]));
        // Nothing else: no wildcard, no list of Secrets.
        assert_eq!(rules.len(), 4);
        for r in &rules {
            assert!(!r.verbs.iter().any(|v| v == "*" || v == "delete"));
        }

        let binding = role_binding(&collector, &owner);
        assert_eq!(binding.role_ref.kind, "Role");
        assert_eq!(binding.role_ref.name, "sb-ls-quickstart");
        let subject = &binding.subjects.unwrap()[0];
        assert_eq!(subject.kind, "ServiceAccount");
        assert_eq!(subject.name, "sb-ls-quickstart");
        assert_eq!(subject.namespace.as_deref(), Some("soc"));
    }

    #[test]
    fn long_owner_names_become_valid_label_values() {
        let long = "a".repeat(200);
        let value = label_value(&long);
        assert!(value.len() <= 63);
        assert_ne!(label_value(&format!("{long}b")), value);
    }

    #[test]
    fn pod_template_overrides_defaults_but_not_the_selector_labels_or_pod_env() {
        let (collector, owner) = rendered();
        let defaults: CollectorPodTemplate = serde_json::from_value(serde_json::json!({
            "labels": {"team": "soc", "app.kubernetes.io/instance": "stolen"},
            "env": [{"name": "HTTPS_PROXY", "value": "http://a"}, {"name": "POD_NAME", "value": "x"}],
            "tolerations": [{"key": "a", "operator": "Exists"}],
            "resources": {"limits": {"memory": "1Gi"}}
        }))
        .unwrap();
        let over: CollectorPodTemplate = serde_json::from_value(serde_json::json!({
            "env": [{"name": "HTTPS_PROXY", "value": "http://b"}, {"name": "NO_PROXY", "value": ".svc"}],
            "tolerations": [{"key": "b", "operator": "Exists"}]
        }))
        .unwrap();
        let pod = defaults.overridden_by(Some(&over));
        let d = deployment(&collector, &owner, "img", &pod, "h");
        let labels = d.spec.template.metadata.as_ref().unwrap().labels.clone().unwrap();
        assert_eq!(labels["team"], "soc");
        assert_eq!(labels["app.kubernetes.io/instance"], collector.name);
        let spec = d.spec.template.spec.unwrap();
        let env = spec.containers[0].env.clone().unwrap();
        let value = |n: &str| {
            env.iter()
                .filter(|e| e.name == n)
                .map(|e| e.value.clone())
                .collect::<Vec<_>>()
        };
        assert_eq!(value("HTTPS_PROXY"), vec![Some("http://b".to_string())]);
        assert_eq!(value("NO_PROXY"), vec![Some(".svc".to_string())]);
        assert_eq!(value("POD_NAME"), vec![None], "the downward-API POD_NAME stays");
        assert_eq!(spec.tolerations.unwrap()[0].key.as_deref(), Some("b"));
        let limits = spec.containers[0].resources.clone().unwrap().limits.unwrap();
        assert_eq!(limits["memory"].0, "1Gi");
        assert!(
            pod_disruption_budget(&collector, &owner).is_none(),
            "one replica, no budget"
        );
        let two = RenderedCollector {
            replicas: 2,
            ..collector
        };
        assert!(pod_disruption_budget(&two, &owner).is_some());
    }
}
