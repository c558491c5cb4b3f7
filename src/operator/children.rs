//! The one apply step of a collector's children (Stackable's "cluster resources"): every child
//! is applied with server-side apply under [`FIELD_MANAGER`] with `force`, and the labelled
//! children of the owner that are no longer wanted are deleted.

use std::collections::BTreeMap;
use std::fmt::Debug;

use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::{ConfigMap, ServiceAccount};
use k8s_openapi::api::policy::v1::PodDisruptionBudget;
use k8s_openapi::api::rbac::v1::{Role, RoleBinding};
use kube::api::{Api, DeleteParams, ListParams, Patch, PatchParams};
use kube::{Client, Resource, ResourceExt};
use serde::de::DeserializeOwned;
use serde::Serialize;

use std::time::Duration;

use k8s_openapi::api::core::v1::ObjectReference;
use kube::runtime::events::EventType;

use super::builders::{collector_children, report_config_map_name, CollectorChildren, CollectorOwner};
use super::context::{Context, FIELD_MANAGER, HEALTHY_REQUEUE, PROGRESSING_REQUEUE};
use super::error::Result;
use super::status::CollectorPods;
use crate::render::RenderedCollector;

/// Server-side apply parameters of the operator.
pub fn apply_params() -> PatchParams {
    PatchParams::apply(FIELD_MANAGER).force()
}

async fn apply<K>(client: &Client, namespace: &str, obj: &K) -> Result<K>
where
    K: Resource<Scope = k8s_openapi::NamespaceResourceScope, DynamicType = ()>
        + Clone
        + Debug
        + Serialize
        + DeserializeOwned,
{
    let api: Api<K> = Api::namespaced(client.clone(), namespace);
    let name = obj.name_any();
    Ok(api.patch(&name, &apply_params(), &Patch::Apply(obj)).await?)
}

/// Run a rendered collector for its owner: build and apply its children, delete the owner's
/// children no longer wanted, announce what was created or deleted, and say how its pods are
/// doing with the requeue that fits. Shared by the ConsumerGroup and LogSource controllers.
pub async fn run_collector(
    ctx: &Context,
    regarding: &ObjectReference,
    owner: &CollectorOwner,
    namespace: &str,
    collector: &RenderedCollector,
) -> Result<(CollectorPods, Duration)> {
    let secret_versions = ctx.stores.secret_versions(namespace, &collector.secret_names);
    let pod = ctx
        .collector_pod_defaults
        .overridden_by(collector.pod_template.as_ref());
    let mut children = collector_children(collector, owner, &ctx.collector_image, &pod, &secret_versions)?;
    let versions = secret_versions_annotation(&secret_versions);
    children
        .deployment
        .annotations_mut()
        .insert(SECRET_VERSIONS_ANNOTATION.into(), versions.clone());
    let hash = children_hash(&children);
    children
        .deployment
        .annotations_mut()
        .insert(CHILDREN_HASH_ANNOTATION.into(), hash.clone());
    // Unchanged since this operator (or one before it) applied them: nothing to write and
    // nothing to delete. What is compared is in memory, so a reconcile of an unchanged
    // resource makes no API request at all.
    if let Some(current) = ctx.unchanged_collector(namespace, &collector.name, &children, &hash) {
        let pods = CollectorPods::of(&current);
        return Ok((pods, requeue_for(&pods)));
    }
    let created = ctx.is_new_collector(namespace, &collector.name);
    let rotated = ctx
        .stores
        .deployment(namespace, &collector.name)
        .and_then(|d| d.annotations().get(SECRET_VERSIONS_ANNOTATION).cloned())
        .map(|before| rotated_secrets(&before, &versions))
        .unwrap_or_default();
    let deployment = apply_collector(&ctx.client, namespace, &children).await?;
    ctx.applied_collector(namespace, &deployment);
    let keep = [collector.name.clone(), report_config_map_name(&collector.name)];
    let deleted = delete_unwanted(&ctx.client, owner, &keep, children.pod_disruption_budget.is_some()).await?;
    if created {
        ctx.publish(
            regarding,
            EventType::Normal,
            "CollectorCreated",
            "Apply",
            format!("created collector Deployment {:?}", collector.name),
        )
        .await;
    }
    if !rotated.is_empty() {
        ctx.publish(
            regarding,
            EventType::Normal,
            "SecretRotated",
            "Rollout",
            format!(
                "Secret(s) {} changed: rolling out the pods of collector Deployment {:?}",
                rotated.join(", "),
                collector.name
            ),
        )
        .await;
    }
    ctx.announce_deleted(regarding, &deleted).await;
    let pods = CollectorPods::of(&deployment);
    Ok((pods, requeue_for(&pods)))
}

/// Annotation of a collector Deployment: `name=resourceVersion` of each Secret it reads, so a
/// rollout caused by a rotation can be told apart and announced.
pub const SECRET_VERSIONS_ANNOTATION: &str = "siembridge.io/secret-versions";

fn secret_versions_annotation(versions: &BTreeMap<String, String>) -> String {
    versions
        .iter()
        .map(|(name, version)| format!("{name}={version}"))
        .collect::<Vec<_>>()
        .join(",")
}

/// Secrets of `after` whose version differs from `before` (both as in
/// [`SECRET_VERSIONS_ANNOTATION`]); a Secret that was absent and now exists is not a rotation.
fn rotated_secrets(before: &str, after: &str) -> Vec<String> {
    let parse = |s: &str| -> BTreeMap<String, String> {
        s.split(',')
            .filter_map(|kv| kv.split_once('='))
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    };
    let before = parse(before);
    parse(after)
        .into_iter()
        .filter(|(name, version)| before.get(name).is_some_and(|old| !old.is_empty() && old != version))
        .map(|(name, _)| format!("{name:?}"))
        .collect()
}

fn requeue_for(pods: &CollectorPods) -> Duration {
    if pods.is_ready() {
        HEALTHY_REQUEUE
    } else {
        PROGRESSING_REQUEUE
    }
}

/// Annotation of a collector Deployment: sha256 of every child as the operator applied it
/// (the Deployment without this annotation), so a reconcile compares instead of re-applying.
pub const CHILDREN_HASH_ANNOTATION: &str = "siembridge.io/children-hash";

/// sha256 (hex) of the JSON of every child of a collector.
pub fn children_hash(children: &CollectorChildren) -> String {
    use sha2::{Digest, Sha256};
    let mut hasher = Sha256::new();
    let mut add = |value: serde_json::Result<Vec<u8>>| {
        hasher.update(value.unwrap_or_default());
        hasher.update(b"\0");
    };
    add(serde_json::to_vec(&children.service_account));
    add(serde_json::to_vec(&children.role));
    add(serde_json::to_vec(&children.role_binding));
    add(serde_json::to_vec(&children.config_map));
    add(serde_json::to_vec(&children.report_config_map));
    add(serde_json::to_vec(&children.deployment));
    add(serde_json::to_vec(&children.pod_disruption_budget));
    hex::encode(hasher.finalize())
}

/// Apply every child of a collector, in the order a pod needs them: identity and permissions,
/// configuration, then the Deployment. Returns the applied Deployment (with its status).
pub async fn apply_collector(client: &Client, namespace: &str, children: &CollectorChildren) -> Result<Deployment> {
    apply(client, namespace, &children.service_account).await?;
    apply(client, namespace, &children.role).await?;
    apply(client, namespace, &children.role_binding).await?;
    apply(client, namespace, &children.config_map).await?;
    apply(client, namespace, &children.report_config_map).await?;
    let deployment = apply(client, namespace, &children.deployment).await?;
    if let Some(pdb) = &children.pod_disruption_budget {
        apply(client, namespace, pdb).await?;
    }
    Ok(deployment)
}

async fn delete_unwanted_of<K>(client: &Client, owner: &CollectorOwner, keep: &[String]) -> Result<Vec<String>>
where
    K: Resource<Scope = k8s_openapi::NamespaceResourceScope, DynamicType = ()> + Clone + Debug + DeserializeOwned,
{
    let api: Api<K> = Api::namespaced(client.clone(), &owner.namespace);
    let listed = api
        .list_metadata(&ListParams::default().labels(&owner.children_selector()))
        .await?;
    let mut deleted = Vec::new();
    for obj in listed.items {
        let name = obj.name_any();
        if keep.contains(&name) {
            continue;
        }
        match api.delete(&name, &DeleteParams::background()).await {
            Ok(_) => deleted.push(format!("{}/{name}", K::kind(&()))),
            Err(kube::Error::Api(status)) if status.code == 404 => {}
            Err(e) => return Err(e.into()),
        }
    }
    Ok(deleted)
}

/// Delete the children of `owner` (found by label) that are not named in `keep`: the
/// collector name for every kind, and its report ConfigMap. `keep` empty deletes them all.
/// A PodDisruptionBudget is kept only when `keep_budget` (the collector runs more than one pod).
/// Returns `Kind/name` of what was deleted.
pub async fn delete_unwanted(
    client: &Client,
    owner: &CollectorOwner,
    keep: &[String],
    keep_budget: bool,
) -> Result<Vec<String>> {
    let mut deleted = Vec::new();
    deleted.extend(delete_unwanted_of::<Deployment>(client, owner, keep).await?);
    deleted.extend(delete_unwanted_of::<ConfigMap>(client, owner, keep).await?);
    deleted.extend(delete_unwanted_of::<RoleBinding>(client, owner, keep).await?);
    deleted.extend(delete_unwanted_of::<Role>(client, owner, keep).await?);
    deleted.extend(delete_unwanted_of::<ServiceAccount>(client, owner, keep).await?);
    let budget_keep = if keep_budget { keep } else { &[] };
    deleted.extend(delete_unwanted_of::<PodDisruptionBudget>(client, owner, budget_keep).await?);
    Ok(deleted)
}

#[cfg(test)]
mod rotation_tests {
    use super::*;

    #[test]
    fn a_changed_version_is_a_rotation_a_new_secret_is_not() {
        let before = secret_versions_annotation(&BTreeMap::from([
            ("hec-token".to_string(), "41".to_string()),
            ("app".to_string(), "7".to_string()),
        ]));
        assert_eq!(before, "app=7,hec-token=41");
        assert_eq!(
            rotated_secrets(&before, "app=7,hec-token=52"),
            vec!["\"hec-token\"".to_string()]
        );
        assert!(rotated_secrets(&before, &before).is_empty());
        assert!(rotated_secrets("app=7", "app=7,hec-token=52").is_empty());
        assert!(
            rotated_secrets("app=", "app=9").is_empty(),
            "a Secret created after its LogSource"
        );
    }
}
