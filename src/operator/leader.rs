//! Leader election on a `coordination.k8s.io` Lease, so two operator replicas never reconcile
//! at the same time. kube 5 ships no elector, so this is the small client-go algorithm: take
//! the Lease when it is free or expired, renew it well before it expires, and stop the
//! controllers as soon as a renewal shows someone else holds it (or renewals failed for a
//! whole lease duration).

use std::time::Duration;

use k8s_openapi::api::coordination::v1::{Lease, LeaseSpec};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{MicroTime, ObjectMeta};
use k8s_openapi::jiff::{SignedDuration, Timestamp};
use kube::api::{Api, PostParams};
use kube::Client;
use tokio_util::sync::CancellationToken;

/// Name of the operator's leader Lease.
pub const LEASE_NAME: &str = "siembridge-operator-leader";

/// How a term as leader ended.
#[derive(Debug, PartialEq, Eq)]
pub enum TermEnd {
    /// Shutdown was requested; the Lease was released.
    Released,
    /// Another replica holds the Lease, or it could not be renewed in time.
    Lost(String),
}

/// A lease-based leader elector.
#[derive(Clone)]
pub struct LeaderElector {
    api: Api<Lease>,
    identity: String,
    lease_duration: Duration,
    retry_every: Duration,
}

impl LeaderElector {
    /// An elector for `identity` on the Lease [`LEASE_NAME`] in `namespace`.
    pub fn new(client: Client, namespace: &str, identity: String) -> Self {
        LeaderElector {
            api: Api::namespaced(client, namespace),
            identity,
            lease_duration: Duration::from_secs(15),
            retry_every: Duration::from_secs(5),
        }
    }

    /// Change the lease duration and the time between attempts (renewals happen every
    /// `retry_every`, which must be well under `lease_duration`).
    pub fn with_timing(mut self, lease_duration: Duration, retry_every: Duration) -> Self {
        self.lease_duration = lease_duration;
        self.retry_every = retry_every;
        self
    }

    /// Identity written as the Lease holder.
    pub fn identity(&self) -> &str {
        &self.identity
    }

    fn lease_seconds(&self) -> i32 {
        i32::try_from(self.lease_duration.as_secs()).unwrap_or(15)
    }

    /// One attempt to take or renew the Lease. `Ok(true)` when this replica holds it now.
    pub async fn try_acquire_or_renew(&self) -> Result<bool, kube::Error> {
        let now = Timestamp::now();
        let Some(mut lease) = self.api.get_opt(LEASE_NAME).await? else {
            let lease = Lease {
                metadata: ObjectMeta {
                    name: Some(LEASE_NAME.into()),
                    ..ObjectMeta::default()
                },
                spec: Some(LeaseSpec {
                    holder_identity: Some(self.identity.clone()),
                    lease_duration_seconds: Some(self.lease_seconds()),
                    acquire_time: Some(MicroTime(now)),
                    renew_time: Some(MicroTime(now)),
                    lease_transitions: Some(0),
                    ..LeaseSpec::default()
                }),
            };
            return match self.api.create(&PostParams::default(), &lease).await {
                Ok(_) => Ok(true),
                Err(kube::Error::Api(s)) if s.code == 409 => Ok(false),
                Err(e) => Err(e),
            };
        };
        let mut spec = lease.spec.clone().unwrap_or_default();
        let holder = spec.holder_identity.clone().unwrap_or_default();
        if holder != self.identity {
            let duration = SignedDuration::from_secs(i64::from(spec.lease_duration_seconds.unwrap_or(15)));
            let expired = match &spec.renew_time {
                Some(MicroTime(renewed)) => *renewed + duration < now,
                None => true,
            };
            if !holder.is_empty() && !expired {
                return Ok(false);
            }
            spec.holder_identity = Some(self.identity.clone());
            spec.acquire_time = Some(MicroTime(now));
            spec.lease_transitions = Some(spec.lease_transitions.unwrap_or(0) + 1);
        }
        spec.renew_time = Some(MicroTime(now));
        spec.lease_duration_seconds = Some(self.lease_seconds());
        lease.spec = Some(spec);
        // `replace` carries the resourceVersion read above: if another replica wrote in
        // between, the API server answers 409 and this attempt is lost, never both win.
        match self.api.replace(LEASE_NAME, &PostParams::default(), &lease).await {
            Ok(_) => Ok(true),
            Err(kube::Error::Api(s)) if s.code == 409 => Ok(false),
            Err(e) => Err(e),
        }
    }

    /// Wait until this replica is the leader. Returns `false` when `stop` fired first.
    pub async fn acquire(&self, stop: &CancellationToken) -> bool {
        loop {
            match self.try_acquire_or_renew().await {
                Ok(true) => return true,
                Ok(false) => tracing::debug!(lease = LEASE_NAME, "another replica leads; standing by"),
                Err(error) => tracing::warn!(%error, lease = LEASE_NAME, "cannot read or take the leader lease"),
            }
            tokio::select! {
                _ = stop.cancelled() => return false,
                _ = tokio::time::sleep(self.retry_every) => {}
            }
        }
    }

    /// Renew the Lease until `stop` fires (then release it) or leadership is lost.
    pub async fn hold(&self, stop: &CancellationToken) -> TermEnd {
        let mut last_renewal = tokio::time::Instant::now();
        loop {
            tokio::select! {
                _ = stop.cancelled() => {
                    self.step_down().await;
                    return TermEnd::Released;
                }
                _ = tokio::time::sleep(self.retry_every) => {}
            }
            match self.try_acquire_or_renew().await {
                Ok(true) => last_renewal = tokio::time::Instant::now(),
                Ok(false) => return TermEnd::Lost("another replica holds the leader lease".into()),
                Err(error) => {
                    tracing::warn!(%error, lease = LEASE_NAME, "cannot renew the leader lease");
                    if last_renewal.elapsed() >= self.lease_duration {
                        return TermEnd::Lost(format!("cannot renew the leader lease: {error}"));
                    }
                }
            }
        }
    }

    /// Release the Lease so another replica takes over without waiting for it to expire.
    pub async fn step_down(&self) {
        let Ok(Some(mut lease)) = self.api.get_opt(LEASE_NAME).await else {
            return;
        };
        let mut spec = lease.spec.clone().unwrap_or_default();
        if spec.holder_identity.as_deref() != Some(self.identity.as_str()) {
            return;
        }
        spec.holder_identity = None;
        spec.lease_duration_seconds = Some(1);
        lease.spec = Some(spec);
        if let Err(error) = self.api.replace(LEASE_NAME, &PostParams::default(), &lease).await {
            tracing::warn!(%error, lease = LEASE_NAME, "cannot release the leader lease");
        }
    }
}
