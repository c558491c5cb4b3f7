//! The LogSource controller: renders the collector of an API-polled or replay LogSource, runs
//! it as a Deployment, and reports the LogSource's health from its collector (or from its
//! ConsumerGroup's collector for `eventHub` sources), its destinations and the collector's
//! progress report.

use std::sync::Arc;

use k8s_openapi::jiff::Timestamp;
use kube::api::{Api, Patch};
use kube::runtime::controller::Action;
use kube::runtime::events::EventType;
use kube::{Resource, ResourceExt};

use super::builders::CollectorOwner;
use super::children::{apply_params, delete_unwanted, run_collector};
use super::context::{Context, Stores, BLOCKED_REQUEUE, HEALTHY_REQUEUE, PROGRESSING_REQUEUE};
use super::error::{Error, Result};
use super::status::{
    log_source_conditions, Blocked, CredentialsRefused, DestinationHealth, LogSourceObservation, LogSourceReader,
    SilenceCheck,
};
use crate::api::conditions::{self, reasons, types};
use crate::api::{LagThreshold, LogSource, LogSourceStatus, SourceKind};
use crate::config::{CollectorReport, LogSourceReport};
use crate::render::{
    consumer_group_collector_name, log_source_collector_name, render_log_source, RenderTarget, RenderedCollector,
};

/// Name of this controller in metrics and logs.
pub const CONTROLLER: &str = "logsource";

/// What a LogSource needs, once its references resolve.
enum Plan {
    /// Its own collector.
    Own(Box<RenderedCollector>),
    /// Read by the collector of this ConsumerGroup.
    ConsumerGroup(String),
}

/// Reconcile one LogSource.
pub async fn reconcile(ls: Arc<LogSource>, ctx: Arc<Context>) -> Result<Action> {
    let _timer = ctx.metrics.reconcile_started(CONTROLLER);
    let namespace = ls.namespace().ok_or(Error::NoNamespace)?;
    let owner = CollectorOwner::of(ls.as_ref()).ok_or(Error::NoOwnerReference)?;

    // 1. What the spec asks for, and whether everything it names exists.
    let plan = plan(&ls, &ctx.stores, &namespace);
    let destinations = destination_health(&ls, &ctx.stores, &namespace);

    // The collector that reads it (its own, or its ConsumerGroup's).
    let collector_name = match &ls.spec.event_hub {
        Some(e) => consumer_group_collector_name(&e.consumer_group_ref),
        None => log_source_collector_name(&ls.name_any()),
    };
    let (observation_reader, report, action) = match &plan {
        Err(blocked) => {
            // Keep whatever runs: a missing reference is often a moment in a rollout
            // (Secret applied after the LogSource), not a reason to stop a working collector.
            ctx.metrics.failure(CONTROLLER, blocked.reason);
            if blocked.reason == reasons::SOURCE_NOT_SUPPORTED {
                // Not a moment: a collector of this spec would only crash-loop, and one left
                // from an older spec reads a source no longer asked for.
                if ctx.has_children(&owner) {
                    let deleted = delete_unwanted(&ctx.client, &owner, &[], false).await?;
                    ctx.announce_deleted(&ls.object_ref(&()), &deleted).await;
                }
            }
            // A collector that still runs keeps reporting progress.
            (None, ctx.stores.report(&namespace, &collector_name), BLOCKED_REQUEUE)
        }
        Ok(Plan::Own(collector)) => {
            // 2. Children: apply the wanted ones, delete the rest.
            let (pods, action) = run_collector(&ctx, &ls.object_ref(&()), &owner, &namespace, collector).await?;
            let report = ctx.stores.report(&namespace, &collector.name);
            (Some(LogSourceReader::Own(pods)), report, action)
        }
        Ok(Plan::ConsumerGroup(cg_name)) => {
            // Served by the ConsumerGroup's collector: a LogSource that used to poll an API
            // leaves no collector behind.
            if ctx.has_children(&owner) {
                let deleted = delete_unwanted(&ctx.client, &owner, &[], false).await?;
                ctx.announce_deleted(&ls.object_ref(&()), &deleted).await;
            }
            let (ready, message) = match ctx.stores.consumer_group(&namespace, cg_name) {
                Some(cg) => {
                    let conds = cg.status.as_ref().map(|s| s.conditions.as_slice()).unwrap_or(&[]);
                    let message = conditions::find(conds, types::READY)
                        .map(|c| c.message.clone())
                        .unwrap_or_else(|| "not reconciled yet".into());
                    (conditions::is_true(conds, types::READY), message)
                }
                None => (false, "not found".into()),
            };
            let report = ctx.stores.report(&namespace, &consumer_group_collector_name(cg_name));
            let reader = LogSourceReader::ConsumerGroup {
                name: cg_name.clone(),
                ready,
                message,
            };
            let action = if ready { HEALTHY_REQUEUE } else { PROGRESSING_REQUEUE };
            (Some(reader), report, action)
        }
    };

    // 3. Status from what was observed.
    let destinations = with_refusals(destinations, &collector_name, report.as_ref(), chrono::Utc::now());
    let source_report: Option<LogSourceReport> = report.and_then(|mut r| r.log_sources.remove(&ls.name_any()));
    let lag_threshold_seconds = match ls.spec.event_hub.as_ref() {
        Some(e) => ctx
            .stores
            .consumer_group(&namespace, &e.consumer_group_ref)
            .map(|cg| cg.spec.lag_threshold.seconds)
            .unwrap_or_else(|| LagThreshold::default().seconds),
        None => match ls.spec.azure_blob.as_ref() {
            Some(b) => b.lag_threshold_seconds,
            None => LagThreshold::default().seconds,
        },
    };
    let current = ls.status.clone().unwrap_or_default();
    let dead_lettered_before = conditions::find(&current.conditions, types::DEAD_LETTERED)
        .filter(|c| c.status == "True" && c.observed_generation == ls.metadata.generation)
        .map(|c| c.message.as_str());
    let silence = SilenceCheck {
        threshold_seconds: i64::from(ls.spec.silence_threshold_minutes()) * 60,
        now: chrono::Utc::now(),
    };
    let observation = LogSourceObservation {
        silence: Some(silence),
        blocked: plan.as_ref().err().cloned(),
        suspended: ls.spec.suspend,
        reader: observation_reader,
        destinations,
        report: source_report.as_ref(),
        lag_threshold_seconds,
        dead_letter_destination: ls.spec.dead_letter.as_ref().map(|d| d.destination.as_str()),
        dead_lettered_before,
    };
    let desired = log_source_conditions(&observation);
    let conditions = conditions::merge(&current.conditions, &desired, ls.metadata.generation, Timestamp::now());
    let status = with_progress(
        LogSourceStatus {
            conditions,
            observed_generation: ls.metadata.generation,
            source_type: ls.spec.kind().ok().map(|k| k.name().to_string()),
            last_dead_letter_reason: current.last_dead_letter_reason.clone(),
            ..Default::default()
        },
        source_report.as_ref(),
    );
    if status != current {
        let api: Api<LogSource> = Api::namespaced(ctx.client.clone(), &namespace);
        let patch = serde_json::json!({
            "apiVersion": LogSource::api_version(&()),
            "kind": LogSource::kind(&()),
            "status": status,
        });
        api.patch_status(&ls.name_any(), &apply_params(), &Patch::Apply(&patch))
            .await?;
        ctx.announce_ready_transition(&ls.object_ref(&()), &current.conditions, &status.conditions)
            .await;
        ctx.announce_condition_transitions(&ls.object_ref(&()), &current.conditions, &status.conditions)
            .await;
        if let Some(note) = dead_letter_news(&current, &status) {
            ctx.publish(&ls.object_ref(&()), EventType::Warning, "DeadLettered", "Collect", note)
                .await;
        }
    }
    // Look again when the source would turn silent: no report changes while nothing arrives.
    let action = match silence.due_in(source_report.as_ref()) {
        Some(due) => action.min(due + std::time::Duration::from_secs(1)),
        None => action,
    };
    Ok(Action::requeue(action))
}

/// Lost ranges kept in a LogSource's status (the newest).
pub const MAX_LOST_RANGES: usize = 20;

/// The progress part of a LogSource's status from its collector's report: events forwarded,
/// lag, cursors per content type / endpoint / partition, backfill progress and lost ranges.
fn with_progress(mut status: LogSourceStatus, report: Option<&LogSourceReport>) -> LogSourceStatus {
    let Some(r) = report else { return status };
    status.events_forwarded = Some(i64::try_from(r.events_forwarded).unwrap_or(i64::MAX));
    status.events_dead_lettered = Some(i64::try_from(r.events_dead_lettered).unwrap_or(i64::MAX));
    if r.last_dead_letter_reason.is_some() {
        status.last_dead_letter_reason = r
            .last_dead_letter_reason
            .as_deref()
            .map(|reason| conditions::bounded(reason, conditions::MAX_MESSAGE_BYTES));
    }
    status.last_event_time = r.last_event_time.clone();
    status.lag = r.lag_seconds.map(|s| format!("{s}s"));
    status.cursors = r.cursors.clone();
    status.backfill_percent = r.backfill_percent;
    // The newest lost ranges, each reason bounded: a status stays small whatever the collector
    // reports (its report keeps them all).
    let skip = r.data_loss.len().saturating_sub(MAX_LOST_RANGES);
    status.data_loss = r.data_loss[skip..]
        .iter()
        .cloned()
        .map(|mut range| {
            range.reason = conditions::bounded(&range.reason, conditions::MAX_MESSAGE_BYTES);
            range
        })
        .collect();
    status.blobs_read = r.blobs_read.map(|n| i64::try_from(n).unwrap_or(i64::MAX));
    status.bytes_read = r.bytes_read.map(|n| i64::try_from(n).unwrap_or(i64::MAX));
    status
}

/// The note of a `DeadLettered` Event when the count grew since the last status (a collector
/// restart resets it; growth from there is news again).
fn dead_letter_news(before: &LogSourceStatus, after: &LogSourceStatus) -> Option<String> {
    let now = after.events_dead_lettered.unwrap_or(0);
    let then = before.events_dead_lettered.unwrap_or(0);
    let new = if now >= then { now - then } else { now };
    (new > 0).then(|| {
        format!(
            "{new} more record(s) dead-lettered ({now} since the collectors started); last reason: {}",
            after.last_dead_letter_reason.as_deref().unwrap_or("unknown")
        )
    })
}

/// Render the collector, or say what blocks it.
fn plan(ls: &LogSource, stores: &Stores, namespace: &str) -> Result<Plan, Blocked> {
    let destinations = stores.destinations_in(namespace);
    let rendered = render_log_source(ls, &destinations, &RenderTarget::Cluster)
        .map_err(|e| Blocked::new(e.reason(), e.to_string()))?;
    // Secrets of the source and of its destinations: the collector mounts them all.
    let mut refs = ls.spec.secret_refs();
    for d in ls.spec.destination_names() {
        if let Some(dest) = destinations.iter().find(|x| x.name_any() == d) {
            refs.extend(dest.spec.secret_refs());
        }
    }
    if let Some(message) = stores.missing_secret_key(namespace, refs) {
        return Err(Blocked::new(reasons::SECRET_NOT_FOUND, message));
    }
    match (rendered, ls.spec.kind()) {
        (Some(collector), _) => Ok(Plan::Own(Box::new(collector))),
        (None, Ok(SourceKind::EventHub(e))) => {
            if stores.consumer_group(namespace, &e.consumer_group_ref).is_none() {
                return Err(Blocked::new(
                    reasons::CONSUMER_GROUP_NOT_FOUND,
                    format!(
                        "ConsumerGroup {:?} not found in namespace {namespace:?}",
                        e.consumer_group_ref
                    ),
                ));
            }
            Ok(Plan::ConsumerGroup(e.consumer_group_ref.clone()))
        }
        (None, _) => Err(Blocked::new(reasons::INVALID_SPEC, "nothing to run for this source")),
    }
}

/// Readiness of every destination the LogSource names, from the SiemDestination store.
fn destination_health(ls: &LogSource, stores: &Stores, namespace: &str) -> Vec<DestinationHealth> {
    ls.spec
        .destinations
        .iter()
        .map(|d| match stores.destination(namespace, &d.name) {
            None => DestinationHealth {
                name: d.name.clone(),
                ready: Some(false),
                message: "not found".into(),
            },
            Some(dest) => {
                let conds = dest.status.as_ref().map(|s| s.conditions.as_slice()).unwrap_or(&[]);
                let ready = conditions::find(conds, types::READY);
                DestinationHealth {
                    name: d.name.clone(),
                    ready: ready.map(|c| c.status == "True"),
                    message: ready
                        .map(|c| c.message.clone())
                        .unwrap_or_else(|| "not checked yet".into()),
                }
            }
        })
        .collect()
}

/// Destinations whose credentials the LogSource's collector reports refused are not ready,
/// whatever their SiemDestination's status says (yet).
fn with_refusals(
    mut destinations: Vec<DestinationHealth>,
    collector: &str,
    report: Option<&CollectorReport>,
    now: chrono::DateTime<chrono::Utc>,
) -> Vec<DestinationHealth> {
    let Some(report) = report else {
        return destinations;
    };
    for d in &mut destinations {
        if let Some(refused) = CredentialsRefused::from_report(collector, report, &d.name, now) {
            d.ready = Some(false);
            d.message = refused.message;
        }
    }
    destinations
}

/// Retry policy: each error variant gives a bounded requeue and a metric label.
pub fn error_policy(ls: Arc<LogSource>, error: &Error, ctx: Arc<Context>) -> Action {
    tracing::warn!(logsource = %ls.name_any(), namespace = ?ls.namespace(), %error, "reconcile failed");
    ctx.metrics.failure(CONTROLLER, error.metric_label());
    error.requeue()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::api::conditions::{DesiredCondition, Status};
    use crate::api::LostRange;
    use crate::operator::status::CollectorPods;

    fn conditions_for(report: &LogSourceReport) -> Vec<DesiredCondition> {
        log_source_conditions(&LogSourceObservation {
            silence: None,
            blocked: None,
            suspended: false,
            reader: Some(LogSourceReader::Own(CollectorPods {
                desired: 1,
                current: 1,
                ready: 1,
                updated: 1,
                observed: true,
            })),
            destinations: vec![DestinationHealth {
                name: "splunk".into(),
                ready: Some(true),
                message: String::new(),
            }],
            report: Some(report),
            lag_threshold_seconds: 600,
            dead_letter_destination: None,
            dead_lettered_before: None,
        })
    }

    fn find<'a>(conds: &'a [DesiredCondition], t: &str) -> &'a DesiredCondition {
        conds.iter().find(|c| c.type_ == t).unwrap()
    }

    #[test]
    fn an_api_source_report_shows_cursors_backfill_throttling_and_loss() {
        let report = LogSourceReport {
            events_forwarded: 1200,
            cursors: [
                ("Audit.Exchange".to_string(), "2026-11-20T10:00:00.000Z".to_string()),
                ("Audit.General".to_string(), "2026-11-21T10:00:00.000Z".to_string()),
            ]
            .into(),
            backfill_percent: Some(40),
            lag_seconds: Some(3 * 86400),
            throttled: true,
            data_loss: vec![LostRange {
                stream: "Audit.Exchange".into(),
                from: "2026-11-15T10:00:00.000Z".into(),
                to: "2026-11-15T10:00:00.000Z".into(),
                reason: "content blob x could not be read: HTTP 400: AF20051: expired".into(),
            }],
            ..Default::default()
        };
        let status = with_progress(LogSourceStatus::default(), Some(&report));
        assert_eq!(status.cursors.len(), 2);
        assert_eq!(status.backfill_percent, Some(40));
        assert_eq!(status.lag.as_deref(), Some("259200s"));
        assert_eq!(status.data_loss, report.data_loss);
        let conds = conditions_for(&report);
        assert_eq!(find(&conds, types::THROTTLED).status, Status::True);
        assert_eq!(find(&conds, types::LAGGING).status, Status::True);
        let loss = find(&conds, types::DATA_LOSS);
        assert_eq!(loss.status, Status::True);
        assert!(loss.message.contains("AF20051") && loss.message.contains("2026-11-15T10:00:00.000Z"));
        assert_eq!(find(&conds, types::SOURCE_CONNECTED).status, Status::True);
    }

    #[test]
    fn dead_letters_show_apart_from_forwarded_and_growth_is_news() {
        let report = LogSourceReport {
            events_forwarded: 7,
            events_dead_lettered: 3,
            last_dead_letter_reason: Some("normalization failed: x".into()),
            ..Default::default()
        };
        let before = LogSourceStatus {
            events_dead_lettered: Some(1),
            ..Default::default()
        };
        let after = with_progress(LogSourceStatus::default(), Some(&report));
        assert_eq!((after.events_forwarded, after.events_dead_lettered), (Some(7), Some(3)));
        assert_eq!(
            after.last_dead_letter_reason.as_deref(),
            Some("normalization failed: x")
        );
        let note = dead_letter_news(&before, &after).unwrap();
        assert!(
            note.starts_with("2 more record(s)") && note.contains("normalization failed"),
            "{note}"
        );
        assert_eq!(dead_letter_news(&after, &after), None);
        // After a collector restart the count starts over: 1 new since then.
        let restarted = LogSourceStatus {
            events_dead_lettered: Some(1),
            ..after.clone()
        };
        assert!(dead_letter_news(&after, &restarted).unwrap().starts_with("1 more"));
    }

    #[test]
    fn a_destination_refusing_the_credentials_makes_destinations_ready_false() {
        let now = chrono::Utc::now();
        let mut report = CollectorReport {
            reporter: "sb-ls-o365-7d9f-abcde".into(),
            time: now.to_rfc3339(),
            ..Default::default()
        };
        report.destinations.insert(
            "splunk".into(),
            crate::config::DestinationReport {
                healthy: false,
                last_error: Some("Splunk HEC HTTP 403 code 4: Invalid token (check the HEC token Secret)".into()),
                reason: Some("Forbidden".into()),
                ..Default::default()
            },
        );
        // The SiemDestination still says Ready (its check has no credentials).
        let reachable = vec![DestinationHealth {
            name: "splunk".into(),
            ready: Some(true),
            message: "connected".into(),
        }];
        let destinations = with_refusals(reachable.clone(), "sb-ls-o365", Some(&report), now);
        let conds = log_source_conditions(&LogSourceObservation {
            silence: None,
            blocked: None,
            suspended: false,
            reader: Some(LogSourceReader::Own(CollectorPods {
                desired: 1,
                current: 1,
                ready: 1,
                updated: 1,
                observed: true,
            })),
            destinations,
            report: None,
            lag_threshold_seconds: 600,
            dead_letter_destination: None,
            dead_lettered_before: None,
        });
        let dr = find(&conds, types::DESTINATIONS_READY);
        println!(
            "LogSource DestinationsReady: {} {}: {}",
            dr.status.as_str(),
            dr.reason,
            dr.message
        );
        assert_eq!(dr.status, Status::False);
        assert!(
            dr.message.contains("Forbidden") && dr.message.contains("code 4"),
            "{}",
            dr.message
        );
        assert_eq!(find(&conds, types::READY).status, Status::False);
        // Once the collector delivers again, its report has no reason and the destination counts.
        report.destinations.get_mut("splunk").unwrap().reason = None;
        assert_eq!(
            with_refusals(reachable.clone(), "sb-ls-o365", Some(&report), now),
            reachable
        );
    }

    #[test]
    fn a_rejected_secret_shows_its_aadsts_code_in_source_connected() {
        let report = LogSourceReport {
            source_error: Some(
                "Entra token request for app aaaaaaaa-bbbb-cccc-dddd-eeeeeeeeeeee rejected: invalid_client: \
                 AADSTS7000215: Invalid client secret provided."
                    .into(),
            ),
            ..Default::default()
        };
        let conds = conditions_for(&report);
        let connected = find(&conds, types::SOURCE_CONNECTED);
        assert_eq!(connected.status, Status::False);
        assert!(connected.message.contains("AADSTS7000215"));
        assert_eq!(find(&conds, types::READY).status, Status::False);
    }
}
