//! Which resources a change of another object concerns: the mappers of
//! `Controller::watches`, reading the shared stores instead of the API.

use k8s_openapi::api::core::v1::ConfigMap;
use kube::runtime::reflector::ObjectRef;
use kube::ResourceExt;

use super::context::{SecretMeta, Stores};
use crate::api::{ConsumerGroup, LogSource, SiemDestination};

fn log_source_names_secret(stores: &Stores, ls: &LogSource, secret: &str) -> bool {
    let namespace = ls.namespace().unwrap_or_default();
    ls.spec.secret_refs().iter().any(|s| s.name == secret)
        || ls.spec.destination_names().any(|d| {
            stores
                .destination(&namespace, d)
                .is_some_and(|dest| dest.spec.secret_refs().iter().any(|s| s.name == secret))
        })
}

/// LogSources that deliver to a destination.
pub fn log_sources_of_destination(stores: &Stores, dest: &SiemDestination) -> Vec<ObjectRef<LogSource>> {
    let namespace = dest.namespace().unwrap_or_default();
    let name = dest.name_any();
    stores
        .log_sources_in(&namespace)
        .iter()
        .filter(|ls| ls.spec.destination_names().any(|d| d == name))
        .map(ObjectRef::from_obj)
        .collect()
}

/// LogSources that read a Secret themselves or through a destination.
pub fn log_sources_of_secret(stores: &Stores, secret: &SecretMeta) -> Vec<ObjectRef<LogSource>> {
    let namespace = secret.namespace().unwrap_or_default();
    let name = secret.name_any();
    stores
        .log_sources_in(&namespace)
        .iter()
        .filter(|ls| log_source_names_secret(stores, ls, &name))
        .map(ObjectRef::from_obj)
        .collect()
}

/// LogSources read by a ConsumerGroup (they mirror its readiness).
pub fn log_sources_of_consumer_group(stores: &Stores, cg: &ConsumerGroup) -> Vec<ObjectRef<LogSource>> {
    let namespace = cg.namespace().unwrap_or_default();
    let name = cg.name_any();
    stores
        .log_sources_in(&namespace)
        .iter()
        .filter(|ls| ls.spec.event_hub.as_ref().is_some_and(|e| e.consumer_group_ref == name))
        .map(ObjectRef::from_obj)
        .collect()
}

/// The ConsumerGroup a LogSource names.
pub fn consumer_group_of_log_source(ls: &LogSource) -> Option<ObjectRef<ConsumerGroup>> {
    let e = ls.spec.event_hub.as_ref()?;
    Some(ObjectRef::new(&e.consumer_group_ref).within(&ls.namespace()?))
}

fn consumer_groups_of(stores: &Stores, log_sources: Vec<ObjectRef<LogSource>>) -> Vec<ObjectRef<ConsumerGroup>> {
    let mut out: Vec<ObjectRef<ConsumerGroup>> = log_sources
        .iter()
        .filter_map(|r| stores.log_sources.get(r))
        .filter_map(|ls| consumer_group_of_log_source(&ls))
        .collect();
    out.sort_by(|a, b| a.name.cmp(&b.name));
    out.dedup();
    out
}

/// ConsumerGroups whose LogSources deliver to a destination.
pub fn consumer_groups_of_destination(stores: &Stores, dest: &SiemDestination) -> Vec<ObjectRef<ConsumerGroup>> {
    consumer_groups_of(stores, log_sources_of_destination(stores, dest))
}

/// ConsumerGroups that read a Secret themselves or through their LogSources' destinations.
pub fn consumer_groups_of_secret(stores: &Stores, secret: &SecretMeta) -> Vec<ObjectRef<ConsumerGroup>> {
    let namespace = secret.namespace().unwrap_or_default();
    let name = secret.name_any();
    let mut out = consumer_groups_of(stores, log_sources_of_secret(stores, secret));
    out.extend(
        stores
            .consumer_groups
            .state()
            .iter()
            .filter(|cg| cg.namespace().as_deref() == Some(namespace.as_str()))
            .filter(|cg| cg.spec.secret_refs().iter().any(|s| s.name == name))
            .map(|cg| ObjectRef::from_obj(cg.as_ref())),
    );
    out.sort_by(|a, b| a.name.cmp(&b.name));
    out.dedup();
    out
}

/// Destinations that read a Secret.
pub fn destinations_of_secret(stores: &Stores, secret: &SecretMeta) -> Vec<ObjectRef<SiemDestination>> {
    let namespace = secret.namespace().unwrap_or_default();
    let name = secret.name_any();
    stores
        .destinations_in(&namespace)
        .iter()
        .filter(|d| d.spec.secret_refs().iter().any(|s| s.name == name))
        .map(ObjectRef::from_obj)
        .collect()
}

/// Destinations a LogSource names (their `usedBy` changes with it).
pub fn destinations_of_log_source(ls: &LogSource) -> Vec<ObjectRef<SiemDestination>> {
    let Some(namespace) = ls.namespace() else {
        return Vec::new();
    };
    ls.spec
        .destinations
        .iter()
        .map(|d| ObjectRef::new(&d.name).within(&namespace))
        .collect()
}

/// Destinations named in the collector reports of a report ConfigMap: their `Ready` follows
/// credentials refused (and accepted again) as soon as a collector reports it, rather than at the
/// next periodic check. The reconcile is cheap: the connectivity check is cached.
pub fn destinations_in_report(cm: &ConfigMap) -> Vec<ObjectRef<SiemDestination>> {
    let Some(namespace) = cm.namespace() else {
        return Vec::new();
    };
    let mut out: Vec<ObjectRef<SiemDestination>> = cm
        .data
        .iter()
        .flatten()
        .filter(|(key, _)| crate::config::is_report_key(key))
        .filter_map(|(_, raw)| serde_json::from_str::<crate::config::CollectorReport>(raw).ok())
        .flat_map(|report| report.destinations.into_keys().collect::<Vec<_>>())
        .map(|name| ObjectRef::new(&name).within(&namespace))
        .collect();
    out.sort_by(|a, b| a.name.cmp(&b.name));
    out.dedup();
    out
}
