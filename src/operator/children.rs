//! The one apply step of a collector's children (Stackable's "cluster resources"): every child
//! is applied with server-side apply under [`FIELD_MANAGER`] with `force`, and the labelled
//! children of the owner that are no longer wanted are deleted.

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
    let children = collector_children(collector, owner, &ctx.collector_image, &pod, &secret_versions)?;
    let created = ctx.is_new_collector(namespace, &collector.name);
    let deployment = apply_collector(&ctx.client, namespace, &children).await?;
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
    ctx.announce_deleted(regarding, &deleted).await;
    let pods = CollectorPods::of(&deployment);
    let requeue = if pods.is_ready() {
        HEALTHY_REQUEUE
    } else {
        PROGRESSING_REQUEUE
    };
    Ok((pods, requeue))
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
