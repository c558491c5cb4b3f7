//! Blob checkpoint store in the layout of the Azure SDK event processors (PROTOCOLS.md section 6,
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

use std::time::SystemTime;

use async_trait::async_trait;
use bytes::Bytes;
use serde_json::json;

use super::{Checkpoint, CheckpointError, CheckpointStore};
use crate::api::{BlobCheckpointStore as BlobCheckpointStoreSpec, EventHubRef};
use crate::collector::azure_blob::{BlobError, BlobService, Condition};
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
#[derive(Debug)]
pub struct BlobCheckpointStore {
    service: BlobService,
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
            service,
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
        let blob = self.ownership_blob(partition_id);
        let metadata = [("ownerid", owner_id)];
        let written = match etag {
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
        match written {
            Ok(etag) => {
                let last_modified = self
                    .service
                    .blob_properties(&self.container, &blob)
                    .await
                    .ok()
                    .flatten()
                    .filter(|p| p.etag == etag)
                    .and_then(|p| p.last_modified)
                    .or_else(|| Some(SystemTime::now()));
                Ok(Some(PartitionOwnership {
                    partition_id: partition_id.to_string(),
                    owner_id: owner_id.to_string(),
                    etag,
                    last_modified,
                }))
            }
            Err(e) if e.is_precondition_failed() || e.is_conflict() || (etag.is_some() && e.is_not_found()) => {
                tracing::debug!(partition = partition_id, owner = owner_id, status = ?e.status(), "ownership claim lost");
                Ok(None)
            }
            Err(e) => Err(self.err(e)),
        }
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
    let mut state = json!({ "sequenceNumber": sequence });
    if let Some(t) = metadata.get("enqueuedtime") {
        state["enqueuedTime"] = json!(t);
    }
    Ok(Checkpoint {
        position: offset.clone(),
        state: Some(state),
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
        let state = checkpoint.state.as_ref();
        let sequence = state
            .and_then(|s| s.get("sequenceNumber"))
            .and_then(|v| v.as_i64())
            .ok_or_else(|| CheckpointError::Corrupt {
                stream: stream.to_string(),
                message: "an Event Hubs checkpoint needs state.sequenceNumber".into(),
            })?
            .to_string();
        let enqueued = state
            .and_then(|s| s.get("enqueuedTime"))
            .and_then(|v| v.as_str())
            .map(str::to_string);
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
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::collector::secrets::SecretValue;

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
