//! The SiemDestination controller: validates the spec and its Secrets, checks that the
//! destination accepts connections (at most every few minutes), shows credentials refused as
//! the collectors delivering to it report them (`Ready=False`, reason `Unauthorized` or
//! `Forbidden`: the connectivity check has no credentials and cannot see it), and lists the
//! LogSources that deliver to it.

use std::sync::Arc;
use std::time::{Duration, Instant};

use k8s_openapi::jiff::Timestamp;
use kube::api::{Api, Patch};
use kube::runtime::controller::Action;
use kube::runtime::reflector::ObjectRef;
use kube::{Resource, ResourceExt};

use super::children::apply_params;
use super::connectivity::check_destination;
use super::context::{CheckRecord, Context, BLOCKED_REQUEUE, CONNECTIVITY_INTERVAL, PROGRESSING_REQUEUE};
use super::error::{Error, Result};
use super::status::{destination_ready, Blocked};
use crate::api::conditions::{self, reasons};
use crate::api::{SiemDestination, SiemDestinationStatus};

/// Name of this controller in metrics and logs.
pub const CONTROLLER: &str = "siemdestination";

/// Reconcile one SiemDestination.
pub async fn reconcile(dest: Arc<SiemDestination>, ctx: Arc<Context>) -> Result<Action> {
    let _timer = ctx.metrics.reconcile_started(CONTROLLER);
    let namespace = dest.namespace().ok_or(Error::NoNamespace)?;
    let name = dest.name_any();

    // 1. A spec we can act on, and the Secrets it names.
    let blocked = match dest.spec.kind() {
        Err(e) => Some(Blocked::new(reasons::INVALID_SPEC, e.to_string())),
        Ok(_) => ctx
            .stores
            .missing_secret_key(&namespace, dest.spec.secret_refs())
            .map(|m| Blocked::new(reasons::SECRET_NOT_FOUND, m)),
    };

    // 2. Connectivity, reusing a recent check of the same generation.
    let (blocked, check) = match blocked {
        Some(b) => (Some(b), None),
        None => match connectivity(&ctx, &dest).await {
            Ok(record) => (None, Some(record)),
            Err(b) => (Some(b), None),
        },
    };
    if let Some(b) = &blocked {
        ctx.metrics.failure(CONTROLLER, b.reason);
    }

    // 3. Who uses it.
    let mut used_by: Vec<String> = ctx
        .stores
        .log_sources_in(&namespace)
        .iter()
        .filter(|ls| ls.spec.destination_names().any(|d| d == name))
        .map(|ls| ls.name_any())
        .collect();
    used_by.sort();

    // 4. What the collectors delivering to it report: refused credentials, which the
    // credential-free connectivity check cannot see.
    let refused = ctx.stores.credentials_refused(&namespace, &name);
    if let Some(r) = &refused {
        ctx.metrics.failure(CONTROLLER, r.reason);
    }

    let current = dest.status.clone().unwrap_or_default();
    let ready = destination_ready(blocked.as_ref(), refused.as_ref(), check.as_ref().map(|c| &c.result));
    let status = SiemDestinationStatus {
        conditions: conditions::merge(
            &current.conditions,
            &[ready],
            dest.metadata.generation,
            Timestamp::now(),
        ),
        observed_generation: dest.metadata.generation,
        destination_type: dest.spec.kind().ok().map(|k| k.name().to_string()),
        used_by_count: Some(i32::try_from(used_by.len()).unwrap_or(i32::MAX)),
        used_by,
        last_success_time: last_success_time(&current, check.as_ref()),
        last_error: match (&blocked, &check) {
            (Some(b), _) => Some(b.message.clone()),
            (None, _) if refused.is_some() => refused.as_ref().map(|r| r.message.clone()),
            (None, Some(CheckRecord { result: Err(e), .. })) => Some(e.clone()),
            _ => None,
        },
    };
    if status != current {
        let api: Api<SiemDestination> = Api::namespaced(ctx.client.clone(), &namespace);
        let patch = serde_json::json!({
            "apiVersion": SiemDestination::api_version(&()),
            "kind": SiemDestination::kind(&()),
            "status": status,
        });
        api.patch_status(&name, &apply_params(), &Patch::Apply(&patch)).await?;
        ctx.announce_ready_transition(&dest.object_ref(&()), &current.conditions, &status.conditions)
            .await;
    }
    Ok(Action::requeue(if blocked.is_some() {
        BLOCKED_REQUEUE
    } else if refused.is_some() {
        // Collectors report every few seconds; see the fix soon without a watch event.
        PROGRESSING_REQUEUE
    } else {
        CONNECTIVITY_INTERVAL
    }))
}

/// How stale `lastSuccessTime` may get while the destination stays reachable.
const SUCCESS_TIME_REFRESH: Duration = Duration::from_secs(30 * 60);

/// `lastSuccessTime`: the time of the check when readiness is new, refreshed at most every
/// [`SUCCESS_TIME_REFRESH`] while it lasts. Writing it after every check would write status
/// every few minutes and wake every LogSource that watches this destination.
fn last_success_time(current: &SiemDestinationStatus, check: Option<&CheckRecord>) -> Option<String> {
    let Some(CheckRecord {
        result: Ok(_), time, ..
    }) = check
    else {
        return current.last_success_time.clone();
    };
    let was_ready = conditions::is_true(&current.conditions, crate::api::conditions::types::READY);
    let previous: Option<Timestamp> = current.last_success_time.as_deref().and_then(|t| t.parse().ok());
    let fresh = previous.is_some_and(|p| Timestamp::now().duration_since(p).unsigned_abs() < SUCCESS_TIME_REFRESH);
    if was_ready && fresh {
        current.last_success_time.clone()
    } else {
        Some(time.clone())
    }
}

/// The connectivity of a destination: the cached result when it is recent and of the current
/// generation, a new check otherwise.
async fn connectivity(ctx: &Context, dest: &SiemDestination) -> Result<CheckRecord, Blocked> {
    let key = ObjectRef::from_obj(dest);
    let cached = ctx
        .checks
        .lock()
        .ok()
        .and_then(|checks| checks.get(&key).cloned())
        .filter(|c| c.generation == dest.metadata.generation && c.at.elapsed() < CONNECTIVITY_INTERVAL);
    if let Some(record) = cached {
        return Ok(record);
    }
    let result = check_destination(ctx.connectivity.as_ref(), &dest.spec)
        .await
        .map_err(|e| Blocked::new(reasons::INVALID_SPEC, e.to_string()))?;
    let record = CheckRecord {
        generation: dest.metadata.generation,
        at: Instant::now(),
        time: Timestamp::now().to_string(),
        result,
    };
    if let Ok(mut checks) = ctx.checks.lock() {
        // Destinations deleted since their last check leave nothing behind for long.
        checks.retain(|_, c| c.at.elapsed() < CONNECTIVITY_INTERVAL * 2);
        checks.insert(key, record.clone());
    }
    Ok(record)
}

/// Retry policy: each error variant gives a bounded requeue and a metric label.
pub fn error_policy(dest: Arc<SiemDestination>, error: &Error, ctx: Arc<Context>) -> Action {
    tracing::warn!(destination = %dest.name_any(), namespace = ?dest.namespace(), %error, "reconcile failed");
    ctx.metrics.failure(CONTROLLER, error.metric_label());
    error.requeue()
}
