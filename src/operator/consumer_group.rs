//! The ConsumerGroup controller: one collector Deployment per ConsumerGroup, rendered from the
//! LogSources that name it, with `replicas` pods sharing the hub's partitions.

use std::sync::Arc;

use k8s_openapi::api::coordination::v1::Lease;
use k8s_openapi::jiff::Timestamp;
use kube::api::{Api, ListParams, Patch};
use kube::runtime::controller::Action;
use kube::Client;
use kube::{Resource, ResourceExt};

use super::builders::{self, CollectorOwner};
use super::children::{apply_params, run_collector};
use super::context::{Context, Stores, BLOCKED_REQUEUE};
use super::error::{Error, Result};
use super::status::{consumer_group_conditions, max_lag_seconds, Blocked, CollectorPods, ConsumerGroupObservation};
use crate::api::conditions::{self, reasons};
use crate::api::{ConsumerGroup, ConsumerGroupStatus, LogSource, PartitionStatus};
use crate::config::lease::LeaseRecord;
use crate::config::CheckpointConfig;
use crate::render::{render_consumer_group, RenderTarget, RenderedCollector};

/// Name of this controller in metrics and logs.
pub const CONTROLLER: &str = "consumergroup";

/// Reconcile one ConsumerGroup.
pub async fn reconcile(cg: Arc<ConsumerGroup>, ctx: Arc<Context>) -> Result<Action> {
    let _timer = ctx.metrics.reconcile_started(CONTROLLER);
    let namespace = cg.namespace().ok_or(Error::NoNamespace)?;
    let owner = CollectorOwner::of(cg.as_ref()).ok_or(Error::NoOwnerReference)?;

    // 1. Render from the LogSources that name this group; the ones with a broken reference
    // are left out and reported, the others keep flowing.
    let plan = plan(&cg, &ctx.stores, &namespace);

    let (pods, routes, skipped, report, partitions, action) = match plan {
        Err(blocked) => {
            ctx.metrics.failure(CONTROLLER, blocked.reason);
            let status = status_of(&cg, Some(blocked), None, 0, Vec::new(), None, None);
            write_status(&ctx, &cg, &namespace, status).await?;
            return Ok(Action::requeue(BLOCKED_REQUEUE));
        }
        Ok((collector, skipped)) => {
            // 2. Children: apply, delete what is no longer wanted.
            let (pods, action) = run_collector(&ctx, &cg.object_ref(&()), &owner, &namespace, &collector).await?;
            let partitions = match &collector.config.checkpoint {
                CheckpointConfig::Kubernetes { lease_prefix, .. } => {
                    Some(partition_ownership(&ctx.client, &namespace, lease_prefix).await?)
                }
                _ => None,
            };
            let report = ctx.stores.report(&namespace, &collector.name);
            (pods, collector.config.routes.len(), skipped, report, partitions, action)
        }
    };
    for (_, why) in &skipped {
        ctx.metrics.failure(CONTROLLER, why.reason);
    }
    let status = status_of(&cg, None, Some(pods), routes, skipped, report.as_ref(), partitions);
    write_status(&ctx, &cg, &namespace, status).await?;
    Ok(Action::requeue(action))
}

/// Render the collector, or say what blocks the whole group.
fn plan(
    cg: &ConsumerGroup,
    stores: &Stores,
    namespace: &str,
) -> Result<(RenderedCollector, Vec<(String, Blocked)>), Blocked> {
    if let Some(message) = stores.missing_secret_key(namespace, cg.spec.secret_refs()) {
        return Err(Blocked::new(reasons::SECRET_NOT_FOUND, message));
    }
    let destinations = stores.destinations_in(namespace);
    // A LogSource whose destinations lack a Secret would stop the pods from starting (the
    // Secret volume cannot mount): leave it out rather than stop every other LogSource.
    let mut skipped = Vec::new();
    let mut members: Vec<LogSource> = Vec::new();
    for ls in stores.log_sources_in(namespace) {
        let names_this_group = ls
            .spec
            .event_hub
            .as_ref()
            .is_some_and(|e| e.consumer_group_ref == cg.name_any());
        if !names_this_group {
            continue;
        }
        let refs = ls
            .spec
            .destination_names()
            .filter_map(|d| destinations.iter().find(|x| x.name_any() == d))
            .flat_map(|d| d.spec.secret_refs());
        match stores.missing_secret_key(namespace, refs) {
            Some(message) => skipped.push((ls.name_any(), Blocked::new(reasons::SECRET_NOT_FOUND, message))),
            None => members.push(ls),
        }
    }
    let (mut collector, render_skipped) = render_consumer_group(cg, &members, &destinations, &RenderTarget::Cluster)
        .map_err(|e| Blocked::new(e.reason(), e.to_string()))?;
    skipped.extend(
        render_skipped
            .into_iter()
            .map(|(name, e)| (name, Blocked::new(e.reason(), e.to_string()))),
    );
    skipped.sort_by(|a, b| a.0.cmp(&b.0));
    if collector.config.routes.is_empty() {
        // Reading with nobody to deliver to would checkpoint past unread events.
        collector.replicas = 0;
    }
    Ok((collector, skipped))
}

fn status_of(
    cg: &ConsumerGroup,
    blocked: Option<Blocked>,
    pods: Option<CollectorPods>,
    routes: usize,
    skipped: Vec<(String, Blocked)>,
    report: Option<&crate::config::CollectorReport>,
    partitions: Option<Vec<PartitionStatus>>,
) -> ConsumerGroupStatus {
    let current = cg.status.clone().unwrap_or_default();
    let mut partitions = partitions.unwrap_or_else(|| current.partitions.clone());
    with_lag(&mut partitions, report);
    let desired = consumer_group_conditions(&ConsumerGroupObservation {
        blocked,
        pods,
        routes,
        skipped,
        report,
        lag_threshold: &cg.spec.lag_threshold,
        partitions: &partitions,
    });
    ConsumerGroupStatus {
        conditions: conditions::merge(&current.conditions, &desired, cg.metadata.generation, Timestamp::now()),
        observed_generation: cg.metadata.generation,
        replicas: pods.map(|p| p.current),
        selector: Some(
            builders::selector_labels(&crate::render::consumer_group_collector_name(&cg.name_any()))
                .iter()
                .map(|(k, v)| format!("{k}={v}"))
                .collect::<Vec<_>>()
                .join(","),
        ),
        ready_replicas: pods.map(|p| p.ready),
        replicas_summary: pods.map(|p| format!("{}/{}", p.ready, p.desired)),
        partitions_summary: (!partitions.is_empty()).then(|| {
            let owned = partitions.iter().filter(|p| p.owner.is_some()).count();
            format!("{owned}/{}", partitions.len())
        }),
        max_lag_events: partitions.iter().filter_map(|p| p.lag_events).max(),
        max_lag_seconds: partitions
            .iter()
            .filter_map(|p| p.lag_seconds)
            .chain(max_lag_seconds(report))
            .max(),
        partitions,
    }
}

async fn write_status(ctx: &Context, cg: &ConsumerGroup, namespace: &str, status: ConsumerGroupStatus) -> Result<()> {
    let current = cg.status.clone().unwrap_or_default();
    if status == current {
        return Ok(());
    }
    let api: Api<ConsumerGroup> = Api::namespaced(ctx.client.clone(), namespace);
    let patch = serde_json::json!({
        "apiVersion": ConsumerGroup::api_version(&()),
        "kind": ConsumerGroup::kind(&()),
        "status": status,
    });
    api.patch_status(&cg.name_any(), &apply_params(), &Patch::Apply(&patch))
        .await?;
    ctx.announce_ready_transition(&cg.object_ref(&()), &current.conditions, &status.conditions)
        .await;
    Ok(())
}

/// Owner of each partition from the checkpoint Leases `<leasePrefix>-<partition>` the
/// collector keeps (the contract of `CheckpointConfig::Kubernetes`). A Lease whose holder let
/// it expire counts as unowned.
async fn partition_ownership(client: &Client, namespace: &str, lease_prefix: &str) -> Result<Vec<PartitionStatus>> {
    let api: Api<Lease> = Api::namespaced(client.clone(), namespace);
    let now = Timestamp::now();
    let mut out: Vec<PartitionStatus> = api
        .list(&ListParams::default())
        .await?
        .items
        .iter()
        // Event Hub partition ids are numbers; this also keeps out the Leases of another group
        // whose name extends this one (`sb-cg-a-` is a prefix of `sb-cg-a-b-0`).
        .filter_map(|lease| LeaseRecord::read(lease, lease_prefix, |id| id.bytes().all(|b| b.is_ascii_digit())))
        .map(|r| {
            let position = r.event_hub.clone();
            PartitionStatus {
                owner: r.live_holder(now).map(str::to_string),
                id: r.stream,
                offset: position.as_ref().map(|p| p.offset.clone()),
                sequence_number: position.as_ref().and_then(|p| p.sequence_number),
                enqueued_time: position.and_then(|p| p.enqueued_time),
                ..PartitionStatus::default()
            }
        })
        .collect();
    // Partition ids are numbers on Event Hubs: "2" before "10".
    out.sort_by(|a, b| match (a.id.parse::<u64>(), b.id.parse::<u64>()) {
        (Ok(x), Ok(y)) => x.cmp(&y),
        _ => a.id.cmp(&b.id),
    });
    Ok(out)
}

/// Fill each partition's last enqueued sequence number (reported by the collector that reads
/// it) and the lag of its checkpoint behind it, in events and seconds.
fn with_lag(partitions: &mut [PartitionStatus], report: Option<&crate::config::CollectorReport>) {
    let Some(report) = report else { return };
    for p in partitions.iter_mut() {
        let Some(r) = report.partitions.get(&p.id) else {
            continue;
        };
        p.last_enqueued_sequence_number = r.last_enqueued_sequence_number;
        if let (Some(last), Some(done)) = (r.last_enqueued_sequence_number, p.sequence_number) {
            p.lag_events = Some((last - done).max(0));
        } else if let Some(last) = r.last_enqueued_sequence_number {
            // Nothing checkpointed yet: everything up to the last event is behind.
            p.lag_events = Some(last + 1);
        }
        let parse = |t: &str| chrono::DateTime::parse_from_rfc3339(t).ok();
        if let (Some(last), Some(done)) = (
            r.last_enqueued_time.as_deref().and_then(parse),
            p.enqueued_time.as_deref().and_then(parse),
        ) {
            p.lag_seconds = Some((last - done).num_seconds().max(0));
        }
    }
}

/// Retry policy: each error variant gives a bounded requeue and a metric label.
pub fn error_policy(cg: Arc<ConsumerGroup>, error: &Error, ctx: Arc<Context>) -> Action {
    tracing::warn!(consumergroup = %cg.name_any(), namespace = ?cg.namespace(), %error, "reconcile failed");
    ctx.metrics.failure(CONTROLLER, error.metric_label());
    error.requeue()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::{CollectorReport, PartitionReport};

    #[test]
    fn lag_is_the_distance_from_the_checkpoint_to_the_last_enqueued_event() {
        let mut partitions = vec![
            PartitionStatus {
                id: "0".into(),
                owner: Some("pod-a".into()),
                offset: Some("4096".into()),
                sequence_number: Some(90),
                enqueued_time: Some("2026-01-01T10:00:00Z".into()),
                ..Default::default()
            },
            PartitionStatus {
                id: "1".into(),
                ..Default::default()
            },
        ];
        let mut report = CollectorReport::default();
        report.partitions.insert(
            "0".into(),
            PartitionReport {
                owner: "pod-a".into(),
                last_enqueued_sequence_number: Some(100),
                last_enqueued_time: Some("2026-01-01T10:02:30Z".into()),
                ..Default::default()
            },
        );
        report.partitions.insert(
            "1".into(),
            PartitionReport {
                owner: "pod-a".into(),
                last_enqueued_sequence_number: Some(4),
                ..Default::default()
            },
        );
        with_lag(&mut partitions, Some(&report));
        assert_eq!(partitions[0].last_enqueued_sequence_number, Some(100));
        assert_eq!(partitions[0].lag_events, Some(10));
        assert_eq!(partitions[0].lag_seconds, Some(150));
        // Never checkpointed: the whole partition is behind.
        assert_eq!(partitions[1].lag_events, Some(5));
        assert_eq!(partitions[1].lag_seconds, None);
    }
}
