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
use k8s_openapi::api::rbac::v1::{PolicyRule, Role, RoleBinding, RoleRef, Subject};
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{LabelSelector, ObjectMeta, OwnerReference};
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use sha2::{Digest, Sha256};

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
/// Key of the collector's progress report in its report ConfigMap.
pub const REPORT_KEY: &str = "report.json";
/// Directory the collector ConfigMap is mounted at.
pub const CONFIG_MOUNT_DIR: &str = "/etc/siembridge";
/// User and group the collector runs as (the distroless `nonroot` user).
pub const COLLECTOR_UID: i64 = 65532;

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
}

/// Build every child of a collector.
///
/// `secret_versions` maps each Secret of `collector.secret_names` to its `resourceVersion`, so a
/// rotation changes the pod template hash and rolls the pods.
pub fn collector_children(
    collector: &RenderedCollector,
    owner: &CollectorOwner,
    image: &str,
    secret_versions: &BTreeMap<String, String>,
) -> Result<CollectorChildren, BuildError> {
    let config_yaml = serde_yaml::to_string(&collector.config)?;
    let hash = config_hash(&config_yaml, collector, secret_versions);
    Ok(CollectorChildren {
        service_account: service_account(collector, owner),
        role: role(collector, owner),
        role_binding: role_binding(collector, owner),
        config_map: config_map(collector, owner, config_yaml),
        report_config_map: report_config_map(collector, owner),
        deployment: deployment(collector, owner, image, &hash),
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

/// The ServiceAccount collector pods run as.
pub fn service_account(collector: &RenderedCollector, owner: &CollectorOwner) -> ServiceAccount {
    ServiceAccount {
        metadata: owner.metadata(&collector.name, &collector.name),
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
pub fn deployment(collector: &RenderedCollector, owner: &CollectorOwner, image: &str, config_hash: &str) -> Deployment {
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
            empty_dir: Some(EmptyDirVolumeSource::default()),
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
        env: Some(vec![
            field_env("POD_NAME", "metadata.name"),
            field_env("POD_NAMESPACE", "metadata.namespace"),
        ]),
        ports: Some(vec![ContainerPort {
            name: Some("metrics".into()),
            container_port: i32::from(COLLECTOR_METRICS_PORT),
            protocol: Some("TCP".into()),
            ..ContainerPort::default()
        }]),
        liveness_probe: Some(health_probe(10)),
        readiness_probe: Some(health_probe(2)),
        resources: Some(collector.resources.clone().unwrap_or_else(default_resources)),
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
    let pod_labels = owner.labels(&collector.name);
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
                    annotations: Some(BTreeMap::from([(
                        CONFIG_HASH_ANNOTATION.to_string(),
                        config_hash.to_string(),
                    )])),
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
