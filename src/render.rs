//! Rendering of collector configurations from resources: pure functions of the specs, shared by
//! the operator and the standalone mode so both run exactly the same thing.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

use kube::ResourceExt;

use crate::api::{
    CheckpointStoreKind, CollectorPodTemplate, ConsumerGroup, InvalidSpec, LogSource, ReplaySource, Resources,
    SiemDestination, SourceKind,
};
use crate::config::{
    CheckpointConfig, CollectorConfig, DeadLetterConfig, ReportTarget, Route, SecretSource, SourceConfig,
    TelemetryConfig, CONFIG_VERSION,
};

/// Why a resource cannot be rendered into a collector. Each variant is a condition reason.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RenderError {
    #[error("SiemDestination {0:?} not found in namespace {1:?}")]
    DestinationNotFound(String, String),
    #[error("ConsumerGroup {0:?} not found in namespace {1:?}")]
    ConsumerGroupNotFound(String, String),
    #[error("invalid spec: {0}")]
    InvalidSpec(#[from] InvalidSpec),
    #[error("SiemDestination {name:?} is invalid: {reason}")]
    InvalidDestination { name: String, reason: InvalidSpec },
    #[error("source kind {0} is not supported by this version of the collector")]
    SourceNotSupported(&'static str),
}

impl RenderError {
    /// The condition reason for this error.
    pub fn reason(&self) -> &'static str {
        use crate::api::conditions::reasons;
        match self {
            RenderError::DestinationNotFound(..) => reasons::DESTINATION_NOT_FOUND,
            RenderError::ConsumerGroupNotFound(..) => reasons::CONSUMER_GROUP_NOT_FOUND,
            RenderError::InvalidSpec(_) | RenderError::InvalidDestination { .. } => reasons::INVALID_SPEC,
            RenderError::SourceNotSupported(_) => reasons::SOURCE_NOT_SUPPORTED,
        }
    }
}

/// Where the rendered collector will run.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum RenderTarget {
    /// A collector pod made by the operator: Secrets mounted, Lease checkpoints, report in a
    /// ConfigMap, replay files from a mounted ConfigMap.
    Cluster,
    /// The standalone mode: Secrets from the environment, file checkpoints and report under
    /// `state_dir`, replay paths relative to the manifests' folder.
    Standalone { state_dir: PathBuf, manifest_dir: PathBuf },
}

/// Directory a replay ConfigMap is mounted at in collector pods.
pub const REPLAY_MOUNT_DIR: &str = "/etc/siembridge/replay";
/// Directory of writable state (dead letters) in collector pods: an `emptyDir`, lost with the
/// pod, so dead letters there are not durable (a LogSource's `deadLetter.destination` is).
pub const POD_STATE_DIR: &str = "/var/lib/siembridge";
/// `sizeLimit` of the pod's state `emptyDir`, in bytes; the dead-letter files stay under
/// [`POD_DEAD_LETTER_BYTES`] so the kubelet never evicts the pod for them.
pub const POD_STATE_BYTES: u64 = 1024 * 1024 * 1024;
/// Cap of the dead-letter files in a collector pod.
pub const POD_DEAD_LETTER_BYTES: u64 = 768 * 1024 * 1024;
/// Port of `/metrics` and `/healthz` in collector pods.
pub const COLLECTOR_METRICS_PORT: u16 = 9464;

/// A collector ready to run: its config and what the operator needs to build its pods.
#[derive(Clone, Debug, PartialEq)]
pub struct RenderedCollector {
    /// Name of the collector (Deployment, ConfigMap, ServiceAccount).
    pub name: String,
    pub config: CollectorConfig,
    /// Pods to run.
    pub replicas: i32,
    /// Secrets the collector reads (by name), for mounts, RBAC and the rollout hash.
    pub secret_names: BTreeSet<String>,
    /// ConfigMap of replay files to mount, if any.
    pub replay_config_map: Option<String>,
    /// Resources of the collector container.
    pub resources: Option<Resources>,
    /// The resource's `podTemplate` (overrides of the operator's collector pod defaults).
    pub pod_template: Option<CollectorPodTemplate>,
}

/// The Entra app a collector signs in as with Azure workload identity.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct WorkloadIdentity {
    pub client_id: String,
    pub tenant_id: String,
}

impl RenderedCollector {
    /// The app of every credential with `workloadIdentity: true` in this collector's source and
    /// destinations. A pod has one ServiceAccount and so one federated app: two different apps
    /// are a spec error.
    pub fn workload_identity(&self) -> Result<Option<WorkloadIdentity>, InvalidSpec> {
        fn walk(value: &serde_json::Value, found: &mut Vec<WorkloadIdentity>) {
            match value {
                serde_json::Value::Object(map) => {
                    if map.get("workloadIdentity") == Some(&serde_json::Value::Bool(true)) {
                        let text = |k: &str| map.get(k).and_then(|v| v.as_str()).unwrap_or_default().to_string();
                        found.push(WorkloadIdentity {
                            client_id: text("clientId"),
                            tenant_id: text("tenantId"),
                        });
                    }
                    map.values().for_each(|v| walk(v, found));
                }
                serde_json::Value::Array(items) => items.iter().for_each(|v| walk(v, found)),
                _ => {}
            }
        }
        let mut found = Vec::new();
        if let Ok(source) = serde_json::to_value(&self.config.source) {
            walk(&source, &mut found);
        }
        if let Ok(destinations) = serde_json::to_value(&self.config.destinations) {
            walk(&destinations, &mut found);
        }
        found.dedup();
        match found.as_slice() {
            [] => Ok(None),
            [one] => Ok(Some(one.clone())),
            [a, b, ..] => Err(InvalidSpec::new(format!(
                "workload identity with two apps in one collector ({} and {}): a pod has one \
                 ServiceAccount, federated with one app",
                a.client_id, b.client_id
            ))),
        }
    }
}

/// Name of the collector of a ConsumerGroup.
pub fn consumer_group_collector_name(cg: &str) -> String {
    bounded_name("sb-cg", cg)
}

/// Name of the collector of an API-polled or replay LogSource.
pub fn log_source_collector_name(ls: &str) -> String {
    bounded_name("sb-ls", ls)
}

/// `<prefix>-<name>`, shortened with a hash so it stays a valid label value (63 characters)
/// with room for suffixes such as `-report`.
fn bounded_name(prefix: &str, name: &str) -> String {
    let full = format!("{prefix}-{name}");
    if full.len() <= 52 {
        return full;
    }
    use sha2::Digest;
    let digest = hex::encode(sha2::Sha256::digest(name.as_bytes()));
    let keep: String = full.chars().take(43).collect();
    format!("{}-{}", keep.trim_end_matches('-'), &digest[..8])
}

/// Render the collector of a ConsumerGroup from the LogSources that name it.
///
/// `log_sources` and `destinations` are the resources of the ConsumerGroup's namespace; the
/// LogSources that do not name this group are ignored, suspended ones get no route. LogSources
/// with a broken reference are left out and returned in the second element, so one bad source
/// does not stop the others.
pub fn render_consumer_group(
    cg: &ConsumerGroup,
    log_sources: &[LogSource],
    destinations: &[SiemDestination],
    target: &RenderTarget,
) -> Result<(RenderedCollector, Vec<(String, RenderError)>), RenderError> {
    let namespace = cg.namespace().unwrap_or_default();
    let name = consumer_group_collector_name(&cg.name_any());
    let mut routes = Vec::new();
    let mut used = BTreeMap::new();
    let mut skipped = Vec::new();
    let mut secret_names: BTreeSet<String> = cg.spec.secret_refs().into_iter().map(|s| s.name.clone()).collect();
    let mut members: Vec<&LogSource> = log_sources
        .iter()
        .filter(|ls| {
            ls.spec
                .event_hub
                .as_ref()
                .is_some_and(|e| e.consumer_group_ref == cg.name_any())
        })
        .filter(|ls| ls.namespace() == cg.namespace())
        .collect();
    members.sort_by_key(|ls| ls.name_any());
    for ls in members {
        if ls.spec.suspend {
            continue;
        }
        match route_for(ls, destinations, &namespace) {
            Ok((route, dests)) => {
                for (dname, d) in dests {
                    secret_names.extend(d.spec.secret_refs().into_iter().map(|s| s.name.clone()));
                    used.insert(dname, d.spec.clone());
                }
                routes.push(route);
            }
            Err(e) => skipped.push((ls.name_any(), e)),
        }
    }
    let checkpoint = match (&cg.spec.checkpoint_store.kind, target) {
        (CheckpointStoreKind::AzureBlob, _) => match &cg.spec.checkpoint_store.azure_blob {
            Some(b) => CheckpointConfig::AzureBlob(b.clone()),
            None => {
                return Err(InvalidSpec::new(
                    "checkpointStore.kind is azureBlob but checkpointStore.azureBlob is not set",
                )
                .into())
            }
        },
        (CheckpointStoreKind::Kubernetes, RenderTarget::Cluster) => CheckpointConfig::Kubernetes {
            namespace: namespace.clone(),
            lease_prefix: name.clone(),
            owner: lease_owner(cg, cg.spec.keep_checkpoints_on_delete),
        },
        (CheckpointStoreKind::Kubernetes, RenderTarget::Standalone { state_dir, .. }) => CheckpointConfig::File {
            dir: state_dir.join(&name).join("checkpoints").display().to_string(),
        },
    };
    let config = CollectorConfig {
        version: CONFIG_VERSION.to_string(),
        collector: name.clone(),
        namespace: namespace.clone(),
        source: SourceConfig::EventHub {
            consumer_group: cg.name_any(),
            spec: cg.spec.clone(),
        },
        routes,
        destinations: used,
        checkpoint,
        secrets: secret_source(target),
        dead_letter: dead_letter(target, &name),
        telemetry: telemetry(target),
        report: Some(report(target, &namespace, &name)),
    };
    let collector = RenderedCollector {
        name,
        config,
        replicas: cg.spec.replicas,
        secret_names,
        replay_config_map: None,
        resources: cg.spec.resources.clone(),
        pod_template: cg.spec.pod_template.clone(),
    };
    collector.workload_identity()?;
    Ok((collector, skipped))
}

/// The owner reference the checkpoint Leases of `resource` carry, so they are garbage-collected
/// with it; `None` when it keeps them on deletion, or has no uid yet (an object that was never
/// stored). Not `blockOwnerDeletion`: deleting the resource never waits for its Leases.
fn lease_owner<K>(resource: &K, keep: bool) -> Option<k8s_openapi::apimachinery::pkg::apis::meta::v1::OwnerReference>
where
    K: kube::Resource<DynamicType = ()>,
{
    if keep {
        return None;
    }
    resource.controller_owner_ref(&()).map(|mut owner| {
        owner.controller = None;
        owner.block_owner_deletion = None;
        owner
    })
}

/// Render the collector of a LogSource that runs its own (every kind but `eventHub`).
/// Returns `Ok(None)` for an `eventHub` LogSource, which its ConsumerGroup's collector serves.
pub fn render_log_source(
    ls: &LogSource,
    destinations: &[SiemDestination],
    target: &RenderTarget,
) -> Result<Option<RenderedCollector>, RenderError> {
    let namespace = ls.namespace().unwrap_or_default();
    let name = log_source_collector_name(&ls.name_any());
    let (route, dests) = route_for(ls, destinations, &namespace)?;
    let mut secret_names: BTreeSet<String> = ls.spec.secret_refs().into_iter().map(|s| s.name.clone()).collect();
    let mut used = BTreeMap::new();
    for (dname, d) in dests {
        secret_names.extend(d.spec.secret_refs().into_iter().map(|s| s.name.clone()));
        used.insert(dname, d.spec.clone());
    }
    let mut replay_config_map = None;
    let source = match ls.spec.kind()? {
        SourceKind::EventHub(_) => return Ok(None),
        SourceKind::ManagementActivityApi(s) => SourceConfig::ManagementActivityApi(s.clone()),
        SourceKind::Graph(s) => SourceConfig::Graph(s.clone()),
        SourceKind::AzureBlob(s) => {
            s.validate()?;
            SourceConfig::AzureBlob(s.clone())
        }
        SourceKind::Replay(s) => {
            replay_config_map = match target {
                RenderTarget::Cluster => s.config_map.clone(),
                RenderTarget::Standalone { .. } => None,
            };
            SourceConfig::Replay(resolve_replay(s, target)?)
        }
    };
    if !crate::collector::sources::supports(&source) {
        return Err(RenderError::SourceNotSupported(source.kind_name()));
    }
    let checkpoint = match target {
        RenderTarget::Cluster => CheckpointConfig::Kubernetes {
            namespace: namespace.clone(),
            lease_prefix: name.clone(),
            owner: lease_owner(ls, ls.spec.keep_checkpoints_on_delete),
        },
        RenderTarget::Standalone { state_dir, .. } => CheckpointConfig::File {
            dir: state_dir.join(&name).join("checkpoints").display().to_string(),
        },
    };
    let config = CollectorConfig {
        version: CONFIG_VERSION.to_string(),
        collector: name.clone(),
        namespace: namespace.clone(),
        source,
        routes: if ls.spec.suspend { Vec::new() } else { vec![route] },
        destinations: used,
        checkpoint,
        secrets: secret_source(target),
        dead_letter: dead_letter(target, &name),
        telemetry: telemetry(target),
        report: Some(report(target, &namespace, &name)),
    };
    let collector = RenderedCollector {
        name,
        config,
        replicas: if ls.spec.suspend { 0 } else { 1 },
        secret_names,
        replay_config_map,
        resources: ls.spec.resources.clone(),
        pod_template: ls.spec.pod_template.clone(),
    };
    collector.workload_identity()?;
    Ok(Some(collector))
}

/// A LogSource's route and the destinations it names, by name.
type RouteWithDestinations<'a> = (Route, Vec<(String, &'a SiemDestination)>);

fn route_for<'a>(
    ls: &LogSource,
    destinations: &'a [SiemDestination],
    namespace: &str,
) -> Result<RouteWithDestinations<'a>, RenderError> {
    let kind = ls.spec.kind()?;
    if ls.spec.destinations.is_empty() {
        return Err(InvalidSpec::new("destinations is empty; name at least one SiemDestination").into());
    }
    let find = |name: &str| -> Result<&'a SiemDestination, RenderError> {
        let d = destinations
            .iter()
            .find(|d| d.name_any() == name && d.namespace().as_deref() == Some(namespace))
            .or_else(|| {
                destinations
                    .iter()
                    .find(|d| d.name_any() == name && d.namespace().is_none())
            })
            .ok_or_else(|| RenderError::DestinationNotFound(name.to_string(), namespace.to_string()))?;
        d.spec.kind().map_err(|reason| RenderError::InvalidDestination {
            name: name.to_string(),
            reason,
        })?;
        Ok(d)
    };
    let mut dests = Vec::new();
    let mut names = Vec::new();
    for r in &ls.spec.destinations {
        let d = find(&r.name)?;
        if !names.contains(&r.name) {
            names.push(r.name.clone());
            dests.push((r.name.clone(), d));
        }
    }
    // The dead-letter destination runs in the collector like the others (its own queue,
    // retries, Secrets) but receives only dead letters, unless it is also in `destinations`.
    let dead_letter = ls.spec.dead_letter.as_ref().map(|dl| dl.destination.clone());
    if let Some(name) = &dead_letter {
        let d = find(name)?;
        if !dests.iter().any(|(n, _)| n == name) {
            dests.push((name.clone(), d));
        }
    }
    let categories = match kind {
        SourceKind::EventHub(e) => e.categories.clone(),
        _ => Vec::new(),
    };
    Ok((
        Route {
            log_source: ls.name_any(),
            categories,
            filter: ls.spec.filter.clone(),
            destinations: names,
            dead_letter,
            max_record_bytes: ls.spec.max_record_bytes,
            silence_threshold_seconds: Some(u64::from(ls.spec.silence_threshold_minutes()) * 60),
        },
        dests,
    ))
}

fn resolve_replay(s: &ReplaySource, target: &RenderTarget) -> Result<ReplaySource, RenderError> {
    let base: &Path = match target {
        RenderTarget::Cluster => Path::new(REPLAY_MOUNT_DIR),
        RenderTarget::Standalone { manifest_dir, .. } => manifest_dir,
    };
    let mut paths: Vec<String> = s
        .paths
        .iter()
        .map(|p| {
            let p = Path::new(p);
            if p.is_absolute() { p.to_path_buf() } else { base.join(p) }
                .display()
                .to_string()
        })
        .collect();
    if paths.is_empty() {
        match (target, &s.config_map) {
            (RenderTarget::Cluster, Some(_)) => paths.push(REPLAY_MOUNT_DIR.to_string()),
            (RenderTarget::Standalone { .. }, Some(cm)) => {
                return Err(InvalidSpec::new(format!(
                    "replay.configMap {cm:?} is only available in a cluster; set replay.paths for standalone mode"
                ))
                .into())
            }
            _ => return Err(InvalidSpec::new("replay needs paths or configMap").into()),
        }
    }
    Ok(ReplaySource {
        paths,
        config_map: None,
        ..s.clone()
    })
}

fn secret_source(target: &RenderTarget) -> SecretSource {
    match target {
        RenderTarget::Cluster => SecretSource::Mounted {
            dir: SecretSource::MOUNT_DIR.to_string(),
        },
        RenderTarget::Standalone { .. } => SecretSource::Environment,
    }
}

fn dead_letter(target: &RenderTarget, name: &str) -> DeadLetterConfig {
    match target {
        RenderTarget::Cluster => DeadLetterConfig {
            max_total_bytes: POD_DEAD_LETTER_BYTES,
            durable: false,
            ..DeadLetterConfig::in_dir(format!("{POD_STATE_DIR}/dead-letter"))
        },
        RenderTarget::Standalone { state_dir, .. } => {
            DeadLetterConfig::in_dir(state_dir.join(name).join("dead-letter").display().to_string())
        }
    }
}

fn telemetry(target: &RenderTarget) -> TelemetryConfig {
    match target {
        RenderTarget::Cluster => TelemetryConfig {
            listen: Some(format!("0.0.0.0:{COLLECTOR_METRICS_PORT}")),
        },
        RenderTarget::Standalone { .. } => TelemetryConfig { listen: None },
    }
}

fn report(target: &RenderTarget, namespace: &str, name: &str) -> ReportTarget {
    match target {
        RenderTarget::Cluster => ReportTarget::ConfigMap {
            namespace: namespace.to_string(),
            name: format!("{name}-report"),
        },
        RenderTarget::Standalone { state_dir, .. } => ReportTarget::File {
            path: state_dir.join(name).join("report.json").display().to_string(),
        },
    }
}
