//! What every reconcile gets: the client, metrics, the shared reflector stores (Linkerd style:
//! one store per watched kind, read by every controller instead of listing the API), the event
//! recorder and the collector image.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::{ConfigMap, ObjectReference, Secret};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition;
use kube::core::PartialObjectMeta;
use kube::runtime::events::{Event, EventType, Recorder, Reporter};
use kube::runtime::reflector::{ObjectRef, Store};
use kube::Client;

use super::connectivity::ConnectivityCheck;
use super::metrics::Metrics;
use crate::api::{ConsumerGroup, LogSource, SecretKeySelector, SiemDestination};
use crate::config::CollectorReport;

/// Field manager of every server-side apply of the operator.
pub const FIELD_MANAGER: &str = "siembridge-operator";

/// Requeue of a resource blocked by something only the user can fix (missing Secret, missing
/// destination, invalid spec). A watch on the missing object triggers the fix earlier.
pub const BLOCKED_REQUEUE: Duration = Duration::from_secs(300);
/// Requeue of a healthy resource, to refresh progress from the collector's report.
pub const HEALTHY_REQUEUE: Duration = Duration::from_secs(120);
/// Requeue while collector pods are starting.
pub const PROGRESSING_REQUEUE: Duration = Duration::from_secs(30);
/// Time between two connectivity checks of one destination.
pub const CONNECTIVITY_INTERVAL: Duration = Duration::from_secs(180);

/// What the operator knows of a Secret: its metadata.
pub type SecretMeta = PartialObjectMeta<Secret>;

/// The metadata of `secret`, its data dropped (for tests and tools that start from whole
/// Secrets).
pub fn secret_meta(secret: Secret) -> SecretMeta {
    PartialObjectMeta {
        types: Some(kube::api::TypeMeta {
            api_version: "v1".into(),
            kind: "PartialObjectMetadata".into(),
        }),
        metadata: secret.metadata,
        _phantom: Default::default(),
    }
}

/// In-memory indexes of the watched kinds, shared by the controllers.
#[derive(Clone)]
pub struct Stores {
    pub log_sources: Store<LogSource>,
    pub consumer_groups: Store<ConsumerGroup>,
    pub destinations: Store<SiemDestination>,
    /// Secrets as metadata only (`PartialObjectMetadata`): the operator never receives a
    /// Secret's data, only that it exists and its `resourceVersion`.
    pub secrets: Store<SecretMeta>,
    /// ConfigMaps made by the operator (collector configs and reports).
    pub config_maps: Store<ConfigMap>,
    /// Deployments made by the operator.
    pub deployments: Store<Deployment>,
}

impl Stores {
    /// Stores filled with fixed objects, for tests and tools that do not watch.
    pub fn from_objects(
        log_sources: Vec<LogSource>,
        consumer_groups: Vec<ConsumerGroup>,
        destinations: Vec<SiemDestination>,
        secrets: Vec<Secret>,
        config_maps: Vec<ConfigMap>,
        deployments: Vec<Deployment>,
    ) -> Self {
        fn fill<K>(objects: Vec<K>) -> Store<K>
        where
            K: kube::Resource<DynamicType = ()> + Clone + 'static,
        {
            let mut writer = kube::runtime::reflector::store::Writer::<K>::default();
            writer.apply_watcher_event(&kube::runtime::watcher::Event::Init);
            for obj in objects {
                writer.apply_watcher_event(&kube::runtime::watcher::Event::InitApply(obj));
            }
            writer.apply_watcher_event(&kube::runtime::watcher::Event::InitDone);
            writer.as_reader()
        }
        let secrets = secrets.into_iter().map(secret_meta).collect();
        Stores {
            log_sources: fill(log_sources),
            consumer_groups: fill(consumer_groups),
            destinations: fill(destinations),
            secrets: fill(secrets),
            config_maps: fill(config_maps),
            deployments: fill(deployments),
        }
    }

    /// The progress report of a collector, when it has written one.
    pub fn report(&self, namespace: &str, collector: &str) -> Option<CollectorReport> {
        let name = super::builders::report_config_map_name(collector);
        let cm = self.config_maps.get(&ObjectRef::new(&name).within(namespace))?;
        let reports = cm
            .data
            .as_ref()?
            .iter()
            .filter(|(key, _)| crate::config::is_report_key(key))
            .filter_map(|(key, raw)| match serde_json::from_str(raw) {
                Ok(report) => Some(report),
                Err(error) => {
                    tracing::warn!(%error, configmap = name, key = %key, "collector report is not valid JSON; ignored");
                    None
                }
            })
            .collect();
        CollectorReport::merge(reports)
    }

    /// Credentials refused by destination `name`, as reported by a collector that delivers to
    /// it (the collector of each LogSource naming it, or of the ConsumerGroup reading that
    /// LogSource).
    pub fn credentials_refused(&self, namespace: &str, name: &str) -> Option<super::status::CredentialsRefused> {
        let now = chrono::Utc::now();
        let mut collectors: Vec<String> = self
            .log_sources_in(namespace)
            .iter()
            .filter(|ls| ls.spec.destinations.iter().any(|d| d.name == name))
            .map(|ls| match &ls.spec.event_hub {
                Some(e) => crate::render::consumer_group_collector_name(&e.consumer_group_ref),
                None => crate::render::log_source_collector_name(&kube::ResourceExt::name_any(ls)),
            })
            .collect();
        collectors.sort();
        collectors.dedup();
        collectors.iter().find_map(|c| {
            let report = self.report(namespace, c)?;
            super::status::CredentialsRefused::from_report(c, &report, name, now)
        })
    }

    /// The Deployment of a collector, as last seen.
    pub fn deployment(&self, namespace: &str, collector: &str) -> Option<Arc<Deployment>> {
        self.deployments.get(&ObjectRef::new(collector).within(namespace))
    }

    /// The LogSources of a namespace.
    pub fn log_sources_in(&self, namespace: &str) -> Vec<LogSource> {
        let mut out: Vec<LogSource> = self
            .log_sources
            .state()
            .iter()
            .filter(|ls| ls.metadata.namespace.as_deref() == Some(namespace))
            .map(|ls| (**ls).clone())
            .collect();
        out.sort_by(|a, b| a.metadata.name.cmp(&b.metadata.name));
        out
    }

    /// The SiemDestinations of a namespace.
    pub fn destinations_in(&self, namespace: &str) -> Vec<SiemDestination> {
        let mut out: Vec<SiemDestination> = self
            .destinations
            .state()
            .iter()
            .filter(|d| d.metadata.namespace.as_deref() == Some(namespace))
            .map(|d| (**d).clone())
            .collect();
        out.sort_by(|a, b| a.metadata.name.cmp(&b.metadata.name));
        out
    }

    /// A SiemDestination by name.
    pub fn destination(&self, namespace: &str, name: &str) -> Option<Arc<SiemDestination>> {
        self.destinations.get(&ObjectRef::new(name).within(namespace))
    }

    /// A ConsumerGroup by name.
    pub fn consumer_group(&self, namespace: &str, name: &str) -> Option<Arc<ConsumerGroup>> {
        self.consumer_groups.get(&ObjectRef::new(name).within(namespace))
    }

    /// The first Secret of `refs` that does not exist, as a message naming it. Whether the key
    /// is in it is the collector's check: the operator sees no Secret data (a collector that
    /// cannot read `<Secret>/<key>` from its mount says so, naming both, in its report and log).
    pub fn missing_secret_key<'a>(
        &self,
        namespace: &str,
        refs: impl IntoIterator<Item = &'a SecretKeySelector>,
    ) -> Option<String> {
        for selector in refs {
            if self
                .secrets
                .get(&ObjectRef::new(&selector.name).within(namespace))
                .is_none()
            {
                return Some(format!(
                    "Secret {:?} not found in namespace {namespace:?}",
                    selector.name
                ));
            }
        }
        None
    }

    /// `resourceVersion` of each named Secret that exists.
    pub fn secret_versions<'a>(
        &self,
        namespace: &str,
        names: impl IntoIterator<Item = &'a String>,
    ) -> BTreeMap<String, String> {
        names
            .into_iter()
            .filter_map(|name| {
                let secret = self.secrets.get(&ObjectRef::new(name).within(namespace))?;
                Some((
                    name.clone(),
                    secret.metadata.resource_version.clone().unwrap_or_default(),
                ))
            })
            .collect()
    }
}

/// The last connectivity check of a destination.
#[derive(Clone, Debug)]
pub struct CheckRecord {
    /// Generation of the spec that was checked.
    pub generation: Option<i64>,
    /// When the check ran.
    pub at: Instant,
    /// RFC 3339 time of the check.
    pub time: String,
    /// What the check found (a message naming the host, never a secret).
    pub result: Result<String, String>,
}

/// Shared state of the controllers.
pub struct Context {
    pub client: Client,
    pub metrics: Metrics,
    pub stores: Stores,
    pub recorder: Recorder,
    /// Image of collector pods.
    pub collector_image: String,
    /// Defaults of every collector pod (the chart's `collectorPod`), overridden per resource by
    /// its `podTemplate`.
    pub collector_pod_defaults: crate::api::CollectorPodTemplate,
    /// Connectivity check of destinations (a TCP connect; a stub in tests).
    pub connectivity: Arc<dyn ConnectivityCheck>,
    /// Last connectivity check per destination, so a destination is checked at most every
    /// [`CONNECTIVITY_INTERVAL`].
    pub checks: Mutex<HashMap<ObjectRef<SiemDestination>, CheckRecord>>,
    /// `generation` of each collector Deployment (`namespace/name`) as this process applied it:
    /// a Deployment whose generation moved since was changed by someone else and is applied
    /// again.
    applied: Mutex<HashMap<String, Option<i64>>>,
    /// Collectors announced as created but not yet seen by the Deployment watch, so a second
    /// reconcile before the watch catches up does not announce them again.
    announced: Mutex<std::collections::HashSet<String>>,
}

impl Context {
    /// A context for the controllers.
    pub fn new(
        client: Client,
        metrics: Metrics,
        stores: Stores,
        collector_image: String,
        connectivity: Arc<dyn ConnectivityCheck>,
        instance: Option<String>,
    ) -> Self {
        let recorder = Recorder::new(
            client.clone(),
            Reporter {
                controller: FIELD_MANAGER.into(),
                instance,
            },
        );
        Context {
            client,
            metrics,
            stores,
            recorder,
            collector_image,
            collector_pod_defaults: Default::default(),
            connectivity,
            checks: Mutex::new(HashMap::new()),
            applied: Mutex::new(HashMap::new()),
            announced: Mutex::new(std::collections::HashSet::new()),
        }
    }

    /// Publish a Kubernetes Event about `regarding`. A failure is logged, never fatal: an event
    /// is a courtesy, the condition is the record.
    pub async fn publish(
        &self,
        regarding: &ObjectReference,
        type_: EventType,
        reason: &str,
        action: &str,
        note: String,
    ) {
        let event = Event {
            type_,
            reason: reason.to_string(),
            note: Some(note),
            action: action.to_string(),
            secondary: None,
        };
        if let Err(error) = self.recorder.publish(&event, regarding).await {
            tracing::warn!(%error, reason, "cannot publish event");
        }
    }

    /// An Event when `Ready` changes: became ready, a reference went missing, or stopped being
    /// ready. Nothing when it did not change, so a reconcile loop does not spam events.
    pub async fn announce_ready_transition(
        &self,
        regarding: &ObjectReference,
        before: &[Condition],
        after: &[Condition],
    ) {
        use crate::api::conditions::{find, reasons, types};
        let old = find(before, types::READY);
        let Some(new) = find(after, types::READY) else {
            return;
        };
        if old.is_some_and(|o| o.status == new.status && o.reason == new.reason) {
            return;
        }
        let blocked = [
            reasons::SECRET_NOT_FOUND,
            reasons::DESTINATION_NOT_FOUND,
            reasons::CONSUMER_GROUP_NOT_FOUND,
            reasons::INVALID_SPEC,
            reasons::SOURCE_NOT_SUPPORTED,
        ];
        if new.status == "True" {
            self.publish(regarding, EventType::Normal, "Ready", "Reconcile", new.message.clone())
                .await;
        } else if blocked.contains(&new.reason.as_str()) {
            self.publish(
                regarding,
                EventType::Warning,
                &new.reason,
                "Reconcile",
                new.message.clone(),
            )
            .await;
        } else if old.is_some_and(|o| o.status == "True") {
            self.publish(
                regarding,
                EventType::Warning,
                "NotReady",
                "Reconcile",
                new.message.clone(),
            )
            .await;
        }
    }

    /// Events when a LogSource's `DataLoss`, `Throttled`, `Lagging` or `SourceSilent` turns
    /// `True` (a Warning with the condition's reason and message) or back to `False` after being
    /// `True` (Normal, reason `<Type>Resolved`). Nothing for `Unknown` or an unchanged status,
    /// so a reconcile loop does not repeat them. (`DeadLettered` has its own Event with the
    /// growth of the count; `Ready` has [`Self::announce_ready_transition`].)
    pub async fn announce_condition_transitions(
        &self,
        regarding: &ObjectReference,
        before: &[Condition],
        after: &[Condition],
    ) {
        for (type_, action) in condition_transitions(before, after) {
            let Some(new) = crate::api::conditions::find(after, type_) else {
                continue;
            };
            match action {
                Transition::Raised => {
                    self.publish(
                        regarding,
                        EventType::Warning,
                        &new.reason,
                        "Collect",
                        new.message.clone(),
                    )
                    .await
                }
                Transition::Resolved => {
                    self.publish(
                        regarding,
                        EventType::Normal,
                        &format!("{type_}Resolved"),
                        "Collect",
                        new.message.clone(),
                    )
                    .await
                }
            }
        }
    }

    /// Whether the collector Deployment is new: neither in the Deployment store nor announced
    /// already. Call once per reconcile, before applying it.
    pub fn is_new_collector(&self, namespace: &str, collector: &str) -> bool {
        let key = format!("{namespace}/{collector}");
        let in_store = self.stores.deployment(namespace, collector).is_some();
        let Ok(mut announced) = self.announced.lock() else {
            return !in_store;
        };
        if in_store {
            announced.remove(&key);
            false
        } else {
            announced.insert(key)
        }
    }

    /// The collector Deployment as last seen, when its children need no apply: the watched
    /// Deployment carries `hash` (every child unchanged since it was applied), it was not
    /// changed by anyone since this process applied it, and both ConfigMaps exist.
    pub fn unchanged_collector(
        &self,
        namespace: &str,
        collector: &str,
        children: &super::builders::CollectorChildren,
        hash: &str,
    ) -> Option<Arc<Deployment>> {
        use kube::ResourceExt;
        let current = self.stores.deployment(namespace, collector)?;
        if current
            .annotations()
            .get(super::children::CHILDREN_HASH_ANNOTATION)
            .map(String::as_str)
            != Some(hash)
        {
            return None;
        }
        let key = format!("{namespace}/{collector}");
        let recorded = self.applied.lock().ok()?.get(&key).cloned();
        if recorded.is_some_and(|generation| generation != current.metadata.generation) {
            return None;
        }
        for cm in [&children.config_map, &children.report_config_map] {
            let name = cm.name_any();
            self.stores.config_maps.get(&ObjectRef::new(&name).within(namespace))?;
        }
        Some(current)
    }

    /// Record the `generation` of a collector Deployment this process just applied.
    pub fn applied_collector(&self, namespace: &str, deployment: &Deployment) {
        use kube::ResourceExt;
        if let Ok(mut applied) = self.applied.lock() {
            applied.insert(
                format!("{namespace}/{}", deployment.name_any()),
                deployment.metadata.generation,
            );
        }
    }

    /// Whether the stores hold a Deployment or ConfigMap made for `owner`: only then can a
    /// clean-up of its children find anything (one LIST per child kind otherwise, per reconcile).
    pub fn has_children(&self, owner: &super::builders::CollectorOwner) -> bool {
        let labels = owner.children_labels();
        let matches = |l: &std::collections::BTreeMap<String, String>| labels.iter().all(|(k, v)| l.get(k) == Some(v));
        self.stores.deployments.state().iter().any(|d| {
            d.metadata.namespace.as_deref() == Some(owner.namespace.as_str())
                && d.metadata.labels.as_ref().is_some_and(matches)
        }) || self.stores.config_maps.state().iter().any(|c| {
            c.metadata.namespace.as_deref() == Some(owner.namespace.as_str())
                && c.metadata.labels.as_ref().is_some_and(matches)
        })
    }

    /// An Event listing children deleted because they are no longer wanted.
    pub async fn announce_deleted(&self, regarding: &ObjectReference, deleted: &[String]) {
        if !deleted.is_empty() {
            self.publish(
                regarding,
                EventType::Normal,
                "CollectorDeleted",
                "Delete",
                format!("deleted children no longer wanted: {}", deleted.join(", ")),
            )
            .await;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::ByteString;

    #[test]
    fn stored_secrets_keep_metadata_and_version_but_no_data() {
        let mut secret = Secret {
            data: Some(std::collections::BTreeMap::from([(
                "token".to_string(),
                ByteString(b"synthetic-value".to_vec()),
            )])),
            ..Secret::default()
        };
        secret.metadata.name = Some("hec-token".into());
        secret.metadata.namespace = Some("soc".into());
        secret.metadata.resource_version = Some("42".into());
        let stores = Stores::from_objects(vec![], vec![], vec![], vec![secret], vec![], vec![]);
        let stored = stores.secrets.get(&ObjectRef::new("hec-token").within("soc")).unwrap();
        // Metadata only: the type has no field a value could be in.
        assert_eq!(stored.metadata.resource_version.as_deref(), Some("42"));
        let wanted = SecretKeySelector {
            name: "hec-token".into(),
            key: "token".into(),
        };
        assert_eq!(stores.missing_secret_key("soc", [&wanted]), None);
        assert!(stores
            .missing_secret_key("other-ns", [&wanted])
            .unwrap()
            .contains("not found"));
        let versions = stores.secret_versions("soc", [&"hec-token".to_string(), &"absent".to_string()]);
        assert_eq!(
            versions,
            std::collections::BTreeMap::from([("hec-token".to_string(), "42".to_string())])
        );
    }
}

/// How a problem condition changed between two statuses.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Transition {
    /// Turned `True`.
    Raised,
    /// Back to `False` after `True`.
    Resolved,
}

/// The problem conditions of a LogSource that get an Event when they change.
pub const ANNOUNCED_CONDITIONS: [&str; 4] = [
    crate::api::conditions::types::DATA_LOSS,
    crate::api::conditions::types::THROTTLED,
    crate::api::conditions::types::LAGGING,
    crate::api::conditions::types::SOURCE_SILENT,
];

/// Which of [`ANNOUNCED_CONDITIONS`] were raised or resolved from `before` to `after`.
pub fn condition_transitions(before: &[Condition], after: &[Condition]) -> Vec<(&'static str, Transition)> {
    use crate::api::conditions::find;
    ANNOUNCED_CONDITIONS
        .iter()
        .filter_map(|&t| {
            let old = find(before, t).map(|c| c.status.as_str());
            match (old, find(after, t).map(|c| c.status.as_str())) {
                (Some("True"), Some("True")) => None,
                (_, Some("True")) => Some((t, Transition::Raised)),
                (Some("True"), Some("False")) => Some((t, Transition::Resolved)),
                _ => None,
            }
        })
        .collect()
}

#[cfg(test)]
mod transition_tests {
    use super::*;

    fn cond(t: &str, status: &str) -> Condition {
        Condition {
            type_: t.into(),
            status: status.into(),
            reason: "R".into(),
            message: String::new(),
            last_transition_time: k8s_openapi::apimachinery::pkg::apis::meta::v1::Time(Default::default()),
            observed_generation: None,
        }
    }

    #[test]
    fn raised_and_resolved_once_and_unknown_is_neither() {
        use crate::api::conditions::types::*;
        let before = [
            cond(DATA_LOSS, "False"),
            cond(THROTTLED, "True"),
            cond(LAGGING, "Unknown"),
        ];
        let after = [
            cond(DATA_LOSS, "True"),
            cond(THROTTLED, "False"),
            cond(LAGGING, "False"),
            cond(SOURCE_SILENT, "True"),
        ];
        assert_eq!(
            condition_transitions(&before, &after),
            vec![
                (DATA_LOSS, Transition::Raised),
                (THROTTLED, Transition::Resolved),
                (SOURCE_SILENT, Transition::Raised)
            ]
        );
        // Unchanged: nothing again.
        assert!(condition_transitions(&after, &after).is_empty());
        // Unknown after True is not a resolution.
        assert!(condition_transitions(&[cond(LAGGING, "True")], &[cond(LAGGING, "Unknown")]).is_empty());
    }
}
