//! Kubernetes checkpoint store: one `coordination.k8s.io/v1` Lease per stream, named
//! `<leasePrefix>-<stream>`, holding both the partition ownership and the checkpoint.
//!
//! - Ownership: `spec.holderIdentity` (empty when free), `spec.renewTime`,
//!   `spec.leaseDurationSeconds` (the ownership expiry, so `kubectl get lease` and the operator
//!   see whether the holder is live), `spec.leaseTransitions`; a hand-over request in the
//!   annotation `siembridge.io/requested-by`.
//! - Checkpoint: annotations `siembridge.io/position`, `siembridge.io/state` (JSON),
//!   `siembridge.io/updated`, and for Event Hubs also `siembridge.io/offset`,
//!   `siembridge.io/sequence-number`, `siembridge.io/enqueued-time` (what the operator shows).
//!   The record's layout has one owner, [`crate::config::lease::LeaseRecord`], which the
//!   operator reads too.
//!
//! A checkpoint whose annotations would pass the API server's 256 KiB limit is refused here
//! ([`CheckpointError::TooLarge`]) rather than sent; the API sources keep theirs far below it
//! (a per-minute digest, [`crate::collector::sources::delivered`]).
//!
//! Every write is a replace carrying the `resourceVersion` read, so the API server refuses a
//! stale write with 409 Conflict: ownership claims are compare-and-write; checkpoint writes
//! re-read and retry. A checkpoint write is refused when another live holder owns the Lease
//! (fencing a replica that lost its partition).

use std::collections::BTreeMap;
use std::sync::Arc;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use k8s_openapi::api::coordination::v1::{Lease, LeaseSpec};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{MicroTime, ObjectMeta, OwnerReference};
use k8s_openapi::jiff::Timestamp;
use kube::api::{Api, ListParams, PostParams};
use kube::{Client, ResourceExt};

use super::ownership::{Ownership, OwnershipClaim, OwnershipError, PartitionOwnership};
use super::{Checkpoint, CheckpointError, CheckpointStore};

use crate::config::lease::{LeaseRecord, ANNOTATIONS_LIMIT, PREFIX_LABEL, REQUESTED_BY};

/// Checkpoints and ownership in Leases of one namespace.
#[derive(Clone)]
pub struct LeaseStore {
    api: Api<Lease>,
    namespace: String,
    prefix: String,
    /// This replica, for fencing checkpoint writes.
    identity: String,
    /// `leaseDurationSeconds` written with ownership.
    duration_seconds: i32,
    /// The resource whose deletion garbage-collects the Leases (`None`: they outlive it).
    owner: Option<OwnerReference>,
}

fn io(store: &str, e: impl std::fmt::Display) -> CheckpointError {
    CheckpointError::Io {
        store: store.to_string(),
        source: std::io::Error::other(e.to_string()),
    }
}

impl LeaseStore {
    /// Connect with the in-cluster (or kubeconfig) client.
    pub async fn connect(namespace: &str, prefix: &str) -> Result<Self, CheckpointError> {
        let client = Client::try_default()
            .await
            .map_err(|e| io(&format!("lease:{namespace}/{prefix}"), e))?;
        let expiry = crate::collector::sources::eventhub::BalanceSettings::from_env().expiry;
        Ok(Self::new(
            client,
            namespace,
            prefix,
            &crate::collector::sources::eventhub::owner_identity(),
            expiry.as_secs().max(1) as i32,
        ))
    }

    /// A store over `client`.
    pub fn new(client: Client, namespace: &str, prefix: &str, identity: &str, duration_seconds: i32) -> Self {
        LeaseStore {
            api: Api::namespaced(client, namespace),
            namespace: namespace.to_string(),
            prefix: prefix.to_string(),
            identity: identity.to_string(),
            duration_seconds,
            owner: None,
        }
    }

    /// Leases written from now on carry `owner`'s reference (and lose a siembridge owner
    /// reference they had), so they are garbage-collected with that resource; `None` removes a
    /// siembridge owner reference, so they outlive it.
    pub fn owned_by(mut self, owner: Option<OwnerReference>) -> Self {
        self.owner = owner;
        self
    }

    /// `lease` with the owner references this store wants: references to siembridge resources
    /// replaced by `owner`, any other reference (someone else's) kept.
    fn adopted(&self, lease: &Lease) -> Lease {
        let mut lease = lease.clone();
        let mut refs: Vec<OwnerReference> = lease
            .metadata
            .owner_references
            .take()
            .unwrap_or_default()
            .into_iter()
            .filter(|r| !r.api_version.starts_with("siembridge.io/"))
            .collect();
        refs.extend(self.owner.clone());
        lease.metadata.owner_references = (!refs.is_empty()).then_some(refs);
        lease
    }

    fn label(&self) -> String {
        format!("lease:{}/{}", self.namespace, self.prefix)
    }

    /// Lease name of a stream: `<prefix>-<stream>`, made a DNS label (with a short hash when
    /// characters had to change, so two streams never share a Lease).
    pub fn lease_name(&self, stream: &str) -> String {
        let clean: String = stream
            .chars()
            .map(|c| {
                if c.is_ascii_alphanumeric() || c == '-' {
                    c.to_ascii_lowercase()
                } else {
                    '-'
                }
            })
            .collect();
        if clean == stream {
            format!("{}-{stream}", self.prefix)
        } else {
            use sha2::Digest;
            let digest = hex::encode(sha2::Sha256::digest(stream.as_bytes()));
            format!("{}-{}-{}", self.prefix, clean.trim_matches('-'), &digest[..8])
        }
    }

    fn record_of(&self, lease: &Lease) -> Option<LeaseRecord> {
        LeaseRecord::read(lease, &self.prefix, |id| id.bytes().all(|b| b.is_ascii_alphanumeric()))
    }

    fn fresh(&self, stream: &str) -> Lease {
        Lease {
            metadata: ObjectMeta {
                name: Some(self.lease_name(stream)),
                namespace: Some(self.namespace.clone()),
                labels: Some(BTreeMap::from([(PREFIX_LABEL.to_string(), self.prefix.clone())])),
                ..Default::default()
            },
            spec: Some(LeaseSpec::default()),
        }
    }

    async fn get(&self, stream: &str) -> Result<Option<Lease>, kube::Error> {
        self.api.get_opt(&self.lease_name(stream)).await
    }

    /// Create the Lease, or replace it (the API server compares its `resourceVersion`: a stale
    /// one is a 409 conflict).
    /// Every write carries the owner references of [`Self::owned_by`].
    async fn put(&self, lease: &Lease, creating: bool) -> Result<Lease, kube::Error> {
        let lease = self.adopted(lease);
        if creating {
            self.api.create(&PostParams::default(), &lease).await
        } else {
            self.api
                .replace(&lease.name_any(), &PostParams::default(), &lease)
                .await
        }
    }

    fn ownership_of(&self, lease: &Lease) -> Option<Ownership> {
        let r = self.record_of(lease)?;
        let renewed = r
            .renewed
            .and_then(|t| DateTime::<Utc>::from_timestamp_micros(t.as_microsecond()))
            .unwrap_or(DateTime::<Utc>::UNIX_EPOCH);
        Some(Ownership {
            partition: r.stream,
            owner: r.holder.unwrap_or_default(),
            renewed,
            requested_by: r.requested_by,
            version: r.version,
        })
    }
}

fn is_conflict(e: &kube::Error) -> bool {
    matches!(e, kube::Error::Api(s) if s.code == 409)
}

fn now_micro() -> MicroTime {
    MicroTime(Timestamp::now())
}

#[async_trait]
impl CheckpointStore for LeaseStore {
    async fn load(&self, stream: &str) -> Result<Option<Checkpoint>, CheckpointError> {
        let Some(lease) = self.get(stream).await.map_err(|e| io(&self.label(), e))? else {
            return Ok(None);
        };
        let Some(record) = LeaseRecord::read(&lease, &self.prefix, |_| true) else {
            return Ok(None);
        };
        let Some(position) = record.position else {
            return Ok(None);
        };
        let state = match &record.state {
            Some(s) => Some(serde_json::from_str(s).map_err(|e| CheckpointError::Corrupt {
                stream: stream.to_string(),
                message: e.to_string(),
            })?),
            None => None,
        };
        Ok(Some(Checkpoint {
            position,
            state,
            updated: record.updated.unwrap_or_default(),
        }))
    }

    async fn save(&self, stream: &str, checkpoint: &Checkpoint) -> Result<(), CheckpointError> {
        checkpoint.check_size(stream)?;
        for _ in 0..8 {
            let existing = self.get(stream).await.map_err(|e| io(&self.label(), e))?;
            let creating = existing.is_none();
            let mut lease = existing.unwrap_or_else(|| self.fresh(stream));
            if let Some(record) = LeaseRecord::read(&lease, &self.prefix, |_| true) {
                if let Some(holder) = record.live_holder(Timestamp::now()) {
                    if holder != self.identity {
                        return Err(io(
                            &self.label(),
                            format!("stream {stream} is owned by {holder}; checkpoint not written"),
                        ));
                    }
                }
            }
            LeaseRecord::set_checkpoint(
                lease.annotations_mut(),
                &checkpoint.position,
                checkpoint.state.as_ref(),
                &checkpoint.updated,
            );
            let bytes: usize = lease.annotations().iter().map(|(k, v)| k.len() + v.len()).sum();
            if bytes > ANNOTATIONS_LIMIT {
                return Err(CheckpointError::TooLarge {
                    stream: stream.to_string(),
                    bytes,
                    limit: ANNOTATIONS_LIMIT,
                });
            }
            match self.put(&lease, creating).await {
                Ok(_) => return Ok(()),
                Err(e) if is_conflict(&e) => continue,
                Err(e) => return Err(io(&self.label(), format!("stream {stream}: {e}"))),
            }
        }
        Err(io(
            &self.label(),
            format!("stream {stream}: too many concurrent writes"),
        ))
    }

    fn describe(&self) -> String {
        self.label()
    }

    fn partition_ownership(&self) -> Option<Arc<dyn PartitionOwnership>> {
        Some(Arc::new(self.clone()))
    }
}

fn store_error(store: String, e: impl std::fmt::Display) -> OwnershipError {
    OwnershipError::Store {
        store,
        message: e.to_string(),
    }
}

#[async_trait]
impl PartitionOwnership for LeaseStore {
    async fn list(&self) -> Result<Vec<Ownership>, OwnershipError> {
        let leases = self
            .api
            .list(&ListParams::default().labels(&format!("{PREFIX_LABEL}={}", self.prefix)))
            .await
            .map_err(|e| store_error(self.label(), e))?;
        Ok(leases.items.iter().filter_map(|l| self.ownership_of(l)).collect())
    }

    async fn write(
        &self,
        partition: &str,
        expected: Option<&str>,
        claim: OwnershipClaim<'_>,
    ) -> Result<Ownership, OwnershipError> {
        let conflict = || OwnershipError::Conflict {
            partition: partition.to_string(),
        };
        let current = self.get(partition).await.map_err(|e| store_error(self.label(), e))?;
        let mut lease = match (current, expected) {
            (None, None) => self.fresh(partition),
            (Some(l), Some(v)) if l.resource_version().as_deref() == Some(v) => l,
            // A record that exists only as a checkpoint (no holder yet) may be claimed as new.
            (Some(l), None) if l.spec.as_ref().and_then(|s| s.holder_identity.as_ref()).is_none() => l,
            _ => return Err(conflict()),
        };
        let creating = lease.resource_version().is_none();
        let spec = lease.spec.get_or_insert_with(LeaseSpec::default);
        let previous = spec.holder_identity.clone().unwrap_or_default();
        if previous != claim.owner {
            spec.lease_transitions = Some(spec.lease_transitions.unwrap_or(0) + 1);
            spec.acquire_time = Some(now_micro());
        }
        spec.holder_identity = Some(claim.owner.to_string());
        if !claim.keep_renewed || spec.renew_time.is_none() {
            spec.renew_time = Some(now_micro());
        }
        spec.lease_duration_seconds = Some(self.duration_seconds);
        let a = lease.annotations_mut();
        match claim.requested_by {
            Some(r) => {
                a.insert(REQUESTED_BY.into(), r.to_string());
            }
            None => {
                a.remove(REQUESTED_BY);
            }
        }
        match self.put(&lease, creating).await {
            Ok(l) => self
                .ownership_of(&l)
                .ok_or_else(|| store_error(self.label(), "written Lease has an unexpected name")),
            Err(e) if is_conflict(&e) => Err(conflict()),
            Err(e) => Err(store_error(self.label(), e)),
        }
    }

    fn describe(&self) -> String {
        self.label()
    }
}
