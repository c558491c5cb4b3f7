//! Blob checkpoint store in the layout of the Azure SDK event processors (docs/PROTOCOLS.md section 6,
//! "Checkpoint store"), so siembridge resumes from checkpoints that Logstash, Elastic Agent,
//! Sekoia or QRadar readers of the same consumer group left, and they from siembridge's.
//!
//! In one container, names lower-cased as the SDKs write them:
//! - `<fqns>/<hub>/<consumer group>/checkpoint/<partition>`: an empty block blob whose metadata
//!   `offset` and `sequencenumber` (decimal) are the checkpoint. siembridge also writes
//!   `enqueuedtime` (RFC 3339), which the SDKs ignore and overwrite.
//! - `<fqns>/<hub>/<consumer group>/ownership/<partition>`: an empty block blob whose metadata
//!   `ownerid` names the processor that owns the partition; its ETag and `Last-Modified` make
//!   claims optimistic: [`BlobCheckpointStore::claim_ownership`] with the ETag last seen
//!   (`If-Match`, 412 when someone else claimed first) or none for a partition never owned
//!   (`If-None-Match: *`, 409 when someone created it first).
//!
//! As [`CheckpointStore`], `stream` is the partition id, `position` the offset and `state`
//! `{"sequenceNumber", "enqueuedTime"}` (the contract in [`super`]). A checkpoint update is an
//! unconditional Set Blob Metadata, as in the SDKs, and an upload of the empty blob when it does
//! not exist yet.

use std::sync::Arc;
use std::time::SystemTime;

use async_trait::async_trait;
use bytes::Bytes;

use super::ownership::{Ownership, OwnershipClaim, OwnershipError, PartitionOwnership as OwnershipStore};
use super::{Checkpoint, CheckpointError, CheckpointStore};
use crate::api::{BlobCheckpointStore as BlobCheckpointStoreSpec, EventHubRef};
use crate::collector::azure_blob::{BlobError, BlobItem, BlobService, Condition};
use crate::config::lease::EventHubPosition;
use crate::config::SecretSource;

/// Who owns a partition, as the ownership blob says.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PartitionOwnership {
    /// Partition id.
    pub partition_id: String,
    /// Processor instance that owns it; empty when relinquished.
    pub owner_id: String,
    /// ETag of the ownership blob, for the next claim (`If-Match`).
    pub etag: String,
    /// When the ownership was last claimed or renewed; older than the expiry interval means
    /// claimable.
    pub last_modified: Option<SystemTime>,
}

/// Checkpoints and ownership of one consumer group in one container.
#[derive(Clone, Debug)]
pub struct BlobCheckpointStore {
    service: Arc<BlobService>,
    container: String,
    /// `<fqns>/<hub>/<consumer group>/`, lower-cased.
    prefix: String,
}

impl BlobCheckpointStore {
    /// A store over `service` for one consumer group.
    pub fn new(
        service: BlobService,
        container: &str,
        fully_qualified_namespace: &str,
        hub: &str,
        consumer_group: &str,
    ) -> Self {
        BlobCheckpointStore {
            service: Arc::new(service),
            container: container.to_string(),
            prefix: format!("{fully_qualified_namespace}/{hub}/{consumer_group}/").to_lowercase(),
        }
    }

    /// A store from the ConsumerGroup's `checkpointStore.azureBlob` and its Event Hub.
    pub fn from_spec(
        spec: &BlobCheckpointStoreSpec,
        event_hub: &EventHubRef,
        secrets: &SecretSource,
    ) -> Result<Self, CheckpointError> {
        let service = BlobService::from_credentials(&spec.account_url, &spec.credentials, secrets)
            .map_err(|e| io_error(&spec.container, e))?;
        Ok(Self::new(
            service,
            &spec.container,
            &event_hub.fully_qualified_namespace,
            &event_hub.hub_name,
            &event_hub.consumer_group,
        ))
    }

    /// Name of the checkpoint blob of a partition.
    pub fn checkpoint_blob(&self, partition: &str) -> String {
        format!("{}checkpoint/{}", self.prefix, partition.to_lowercase())
    }

    /// Name of the ownership blob of a partition.
    pub fn ownership_blob(&self, partition: &str) -> String {
        format!("{}ownership/{}", self.prefix, partition.to_lowercase())
    }

    fn err(&self, e: BlobError) -> CheckpointError {
        io_error(&self.container, e)
    }

    /// Create the container if it does not exist (a store may be the first to use it).
    pub async fn ensure_container(&self) -> Result<(), CheckpointError> {
        self.service
            .create_container(&self.container)
            .await
            .map(|_| ())
            .map_err(|e| self.err(e))
    }

    /// Every checkpoint of the consumer group: (partition, checkpoint).
    pub async fn list_checkpoints(&self) -> Result<Vec<(String, Checkpoint)>, CheckpointError> {
        let prefix = format!("{}checkpoint/", self.prefix);
        let items = match self.service.list_blobs(&self.container, &prefix).await {
            Err(e) if e.code() == "ContainerNotFound" => return Ok(Vec::new()),
            other => other.map_err(|e| self.err(e))?,
        };
        let mut out = Vec::new();
        for item in items {
            let partition = item.name.rsplit('/').next().unwrap_or_default().to_string();
            let cp = checkpoint_from(&partition, &item.metadata, item.last_modified)?;
            out.push((partition, cp));
        }
        Ok(out)
    }

    /// Every ownership record of the consumer group.
    pub async fn list_ownership(&self) -> Result<Vec<PartitionOwnership>, CheckpointError> {
        let prefix = format!("{}ownership/", self.prefix);
        let items = match self.service.list_blobs(&self.container, &prefix).await {
            Err(e) if e.code() == "ContainerNotFound" => return Ok(Vec::new()),
            other => other.map_err(|e| self.err(e))?,
        };
        Ok(items
            .into_iter()
            .map(|item| PartitionOwnership {
                partition_id: item.name.rsplit('/').next().unwrap_or_default().to_string(),
                owner_id: item.metadata.get("ownerid").cloned().unwrap_or_default(),
                etag: item.etag,
                last_modified: item.last_modified,
            })
            .collect())
    }

    /// Claim (or renew, or with an empty `owner_id` relinquish) a partition. `etag` is the one
    /// last seen in [`Self::list_ownership`], `None` for a partition without an ownership blob.
    /// `Ok(None)` means another processor changed the ownership first (412 / 409): the claim
    /// is lost, not an error.
    pub async fn claim_ownership(
        &self,
        partition_id: &str,
        owner_id: &str,
        etag: Option<&str>,
    ) -> Result<Option<PartitionOwnership>, CheckpointError> {
        let written = match OwnershipStore::write(self, partition_id, etag, OwnershipClaim::owner(owner_id)).await {
            Ok(record) => record,
            Err(OwnershipError::Conflict { .. }) => {
                tracing::debug!(partition = partition_id, owner = owner_id, "ownership claim lost");
                return Ok(None);
            }
            Err(e) => {
                return Err(CheckpointError::Io {
                    store: format!("azureBlob:{}", self.container),
                    source: std::io::Error::other(e),
                })
            }
        };
        let last_modified = self
            .service
            .blob_properties(&self.container, &self.ownership_blob(partition_id))
            .await
            .ok()
            .flatten()
            .filter(|p| p.etag == written.version)
            .and_then(|p| p.last_modified)
            .or_else(|| Some(SystemTime::now()));
        Ok(Some(PartitionOwnership {
            partition_id: partition_id.to_string(),
            owner_id: owner_id.to_string(),
            etag: written.version,
            last_modified,
        }))
    }
}

fn io_error(container: &str, e: BlobError) -> CheckpointError {
    CheckpointError::Io {
        store: format!("azureBlob:{container}"),
        source: std::io::Error::other(e),
    }
}

fn checkpoint_from(
    partition: &str,
    metadata: &std::collections::BTreeMap<String, String>,
    last_modified: Option<SystemTime>,
) -> Result<Checkpoint, CheckpointError> {
    let corrupt = |message: String| CheckpointError::Corrupt {
        stream: partition.to_string(),
        message,
    };
    let offset = metadata
        .get("offset")
        .ok_or_else(|| corrupt("checkpoint blob has no offset metadata".into()))?;
    let sequence: i64 = metadata
        .get("sequencenumber")
        .ok_or_else(|| corrupt("checkpoint blob has no sequencenumber metadata".into()))?
        .trim()
        .parse()
        .map_err(|_| corrupt("sequencenumber metadata is not a number".into()))?;
    let position = EventHubPosition {
        offset: offset.clone(),
        sequence_number: Some(sequence),
        enqueued_time: metadata.get("enqueuedtime").cloned(),
    };
    Ok(Checkpoint {
        state: Some(position.state()),
        position: position.offset,
        updated: last_modified
            .map(|t| chrono::DateTime::<chrono::Utc>::from(t).to_rfc3339_opts(chrono::SecondsFormat::Secs, true))
            .unwrap_or_default(),
    })
}

#[async_trait]
impl CheckpointStore for BlobCheckpointStore {
    async fn load(&self, stream: &str) -> Result<Option<Checkpoint>, CheckpointError> {
        let blob = self.checkpoint_blob(stream);
        match self.service.blob_properties(&self.container, &blob).await {
            Ok(Some(item)) => checkpoint_from(stream, &item.metadata, item.last_modified).map(Some),
            Ok(None) => Ok(None),
            Err(e) => Err(self.err(e)),
        }
    }

    async fn save(&self, stream: &str, checkpoint: &Checkpoint) -> Result<(), CheckpointError> {
        let position = EventHubPosition::from_checkpoint(&checkpoint.position, checkpoint.state.as_ref());
        let sequence = position
            .sequence_number
            .ok_or_else(|| CheckpointError::Corrupt {
                stream: stream.to_string(),
                message: "an Event Hubs checkpoint needs state.sequenceNumber".into(),
            })?
            .to_string();
        let enqueued = position.enqueued_time;
        let mut metadata: Vec<(&str, &str)> = vec![("offset", &checkpoint.position), ("sequencenumber", &sequence)];
        if let Some(t) = &enqueued {
            metadata.push(("enqueuedtime", t));
        }
        let blob = self.checkpoint_blob(stream);
        let mut created_container = false;
        loop {
            let updated = self
                .service
                .set_metadata(&self.container, &blob, &metadata, &Condition::None)
                .await;
            let e = match updated {
                Ok(_) => return Ok(()),
                Err(e) if e.is_not_found() => e,
                Err(e) => return Err(self.err(e)),
            };
            if e.code() == "ContainerNotFound" && !created_container {
                created_container = true;
                self.ensure_container().await?;
                continue;
            }
            let uploaded = self
                .service
                .put_block_blob(
                    &self.container,
                    &blob,
                    Bytes::new(),
                    "application/octet-stream",
                    &metadata,
                    &Condition::None,
                )
                .await;
            return match uploaded {
                Ok(_) => Ok(()),
                Err(e) if e.code() == "ContainerNotFound" && !created_container => {
                    created_container = true;
                    self.ensure_container().await?;
                    continue;
                }
                Err(e) => Err(self.err(e)),
            };
        }
    }

    fn describe(&self) -> String {
        format!("azureBlob:{}/{}", self.container, self.prefix.trim_end_matches('/'))
    }

    fn partition_ownership(&self) -> Option<Arc<dyn OwnershipStore>> {
        Some(Arc::new(self.clone()))
    }
}

/// Metadata of siembridge's load balancer beside the SDKs' `ownerid`: a replica asking for the
/// partition, and the owner's last renewal when a request was written after it (`Last-Modified`
/// moves with every write; the request must not keep a dead owner's claim alive). The SDKs
/// ignore both and drop them when they claim.
const REQUESTED_BY: &str = "siembridgerequestedby";
const RENEWED_AT: &str = "siembridgerenewedat";

fn ownership_record(partition: String, item: &BlobItem) -> Ownership {
    let renewed = item
        .metadata
        .get(RENEWED_AT)
        .and_then(|t| chrono::DateTime::parse_from_rfc3339(t).ok())
        .map(|t| t.with_timezone(&chrono::Utc))
        .or_else(|| item.last_modified.map(chrono::DateTime::<chrono::Utc>::from))
        .unwrap_or(chrono::DateTime::<chrono::Utc>::UNIX_EPOCH);
    Ownership {
        partition,
        owner: item.metadata.get("ownerid").cloned().unwrap_or_default(),
        renewed,
        requested_by: item.metadata.get(REQUESTED_BY).filter(|r| !r.is_empty()).cloned(),
        version: item.etag.clone(),
    }
}

/// The ownership blobs as the Event Hubs balancer's records: ETag for the version, `ownerid`
/// for the owner, `Last-Modified` for the renewal, so replicas of siembridge share partitions
/// through the same blobs the Azure SDK processors use.
#[async_trait]
impl OwnershipStore for BlobCheckpointStore {
    async fn list(&self) -> Result<Vec<Ownership>, OwnershipError> {
        let prefix = format!("{}ownership/", self.prefix);
        let items = match self.service.list_blobs(&self.container, &prefix).await {
            Err(e) if e.code() == "ContainerNotFound" => return Ok(Vec::new()),
            other => other.map_err(|e| self.ownership_error(e))?,
        };
        Ok(items
            .iter()
            .map(|item| ownership_record(item.name.rsplit('/').next().unwrap_or_default().to_string(), item))
            .collect())
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
        let blob = self.ownership_blob(partition);
        let kept_renewal = match (claim.keep_renewed, expected) {
            (true, Some(etag)) => {
                let current = self
                    .service
                    .blob_properties(&self.container, &blob)
                    .await
                    .map_err(|e| self.ownership_error(e))?
                    .ok_or_else(conflict)?;
                if current.etag != etag {
                    return Err(conflict());
                }
                Some(ownership_record(partition.to_string(), &current).renewed)
            }
            _ => None,
        };
        let kept_text = kept_renewal.map(|t| t.to_rfc3339_opts(chrono::SecondsFormat::Millis, true));
        let mut metadata: Vec<(&str, &str)> = vec![("ownerid", claim.owner)];
        if let Some(r) = claim.requested_by {
            metadata.push((REQUESTED_BY, r));
        }
        if let Some(t) = &kept_text {
            metadata.push((RENEWED_AT, t));
        }
        let mut created_container = false;
        let written = loop {
            let outcome = match expected {
                Some(etag) => {
                    self.service
                        .set_metadata(&self.container, &blob, &metadata, &Condition::IfMatch(etag.to_string()))
                        .await
                }
                None => {
                    self.service
                        .put_block_blob(
                            &self.container,
                            &blob,
                            Bytes::new(),
                            "application/octet-stream",
                            &metadata,
                            &Condition::IfNotExists,
                        )
                        .await
                }
            };
            match outcome {
                Err(e) if e.code() == "ContainerNotFound" && !created_container => {
                    created_container = true;
                    self.ensure_container().await.map_err(|e| OwnershipError::Store {
                        store: CheckpointStore::describe(self),
                        message: e.to_string(),
                    })?;
                }
                other => break other,
            }
        };
        match written {
            Ok(etag) => Ok(Ownership {
                partition: partition.to_string(),
                owner: claim.owner.to_string(),
                renewed: kept_renewal.unwrap_or_else(chrono::Utc::now),
                requested_by: claim.requested_by.map(str::to_string),
                version: etag,
            }),
            Err(e) if e.is_precondition_failed() || e.is_conflict() || (expected.is_some() && e.is_not_found()) => {
                Err(conflict())
            }
            Err(e) => Err(self.ownership_error(e)),
        }
    }

    fn describe(&self) -> String {
        CheckpointStore::describe(self)
    }
}

impl BlobCheckpointStore {
    fn ownership_error(&self, e: BlobError) -> OwnershipError {
        OwnershipError::Store {
            store: CheckpointStore::describe(self),
            message: e.to_string(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::collector::secrets::SecretValue;
    use serde_json::json;

    fn store() -> BlobCheckpointStore {
        let svc = BlobService::from_connection_string(&SecretValue::new("UseDevelopmentStorage=true"), None).unwrap();
        BlobCheckpointStore::new(svc, "c", "Contoso-NS.servicebus.windows.net", "Entra-Logs", "$Default")
    }

    #[test]
    fn names_follow_the_sdk_layout_lower_cased() {
        let s = store();
        assert_eq!(
            s.checkpoint_blob("3"),
            "contoso-ns.servicebus.windows.net/entra-logs/$default/checkpoint/3"
        );
        assert_eq!(
            s.ownership_blob("3"),
            "contoso-ns.servicebus.windows.net/entra-logs/$default/ownership/3"
        );
    }

    #[test]
    fn metadata_maps_to_the_event_hubs_checkpoint_contract() {
        let md = std::collections::BTreeMap::from([
            ("offset".to_string(), "8589934592".to_string()),
            ("sequencenumber".to_string(), "41873".to_string()),
        ]);
        let cp = checkpoint_from("3", &md, None).unwrap();
        assert_eq!(cp.position, "8589934592");
        assert_eq!(cp.state, Some(json!({"sequenceNumber": 41873})));
        let bad = std::collections::BTreeMap::from([("offset".to_string(), "1".to_string())]);
        assert!(matches!(
            checkpoint_from("3", &bad, None),
            Err(CheckpointError::Corrupt { .. })
        ));
    }
}
