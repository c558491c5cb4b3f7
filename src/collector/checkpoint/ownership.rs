//! Partition ownership: who reads which Event Hubs partition, shared by every collector replica
//! of one consumer group.
//!
//! A store keeps one record per partition: the owner (empty when free), when the owner last
//! renewed it, an optional hand-over request from another replica, and an opaque version used
//! for optimistic concurrency (Lease `resourceVersion`, Blob ETag, a counter in a file). Every
//! write names the version it read; a stale version is a [`OwnershipError::Conflict`], so two
//! replicas never both win the same partition. The balancing logic lives in the Event Hubs
//! source; a store only lists and compares-and-writes.
//!
//! Stores: [`FileOwnership`] here (standalone mode, several processes on one machine share a
//! directory: an exclusive `flock` around read-compare-write), the Lease store in
//! [`super::lease`], the Azure SDK ownership blobs in [`super::blob`].

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

/// One partition's ownership record.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Ownership {
    /// Partition id.
    pub partition: String,
    /// Owner identity; empty when the partition is free.
    pub owner: String,
    /// When the owner last wrote the record.
    pub renewed: DateTime<Utc>,
    /// Another replica asking the owner to hand the partition over (load balancing).
    pub requested_by: Option<String>,
    /// Opaque version for compare-and-write.
    pub version: String,
}

/// What a replica writes.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct OwnershipClaim<'a> {
    /// New owner (empty to release).
    pub owner: &'a str,
    /// Hand-over request to record.
    pub requested_by: Option<&'a str>,
    /// Keep the record's renewal time (a request written by another replica must not keep a
    /// dead owner's record alive).
    pub keep_renewed: bool,
}

impl<'a> OwnershipClaim<'a> {
    /// `owner` takes or keeps the partition (renews it).
    pub fn owner(owner: &'a str) -> Self {
        OwnershipClaim {
            owner,
            requested_by: None,
            keep_renewed: false,
        }
    }

    /// Free the partition.
    pub fn release() -> Self {
        Self::owner("")
    }

    /// Ask `owner` to hand the partition over to `requester`.
    pub fn request(owner: &'a str, requester: &'a str) -> Self {
        OwnershipClaim {
            owner,
            requested_by: Some(requester),
            keep_renewed: true,
        }
    }
}

/// Why an ownership operation failed.
#[derive(Debug, thiserror::Error)]
pub enum OwnershipError {
    /// Someone else wrote the record since it was read.
    #[error("ownership of partition {partition} changed concurrently")]
    Conflict { partition: String },
    #[error("ownership store {store}: {message}")]
    Store { store: String, message: String },
}

/// A store of partition ownership records.
#[async_trait]
pub trait PartitionOwnership: Send + Sync {
    /// Every record (partitions never claimed have none).
    async fn list(&self) -> Result<Vec<Ownership>, OwnershipError>;
    /// Write the record of `partition` if its version is still `expected` (`None`: the record
    /// must not exist yet). The store sets `renewed` to now. Returns the new record.
    async fn write(
        &self,
        partition: &str,
        expected: Option<&str>,
        claim: OwnershipClaim<'_>,
    ) -> Result<Ownership, OwnershipError>;
    /// A short description for logs.
    fn describe(&self) -> String;
}

#[derive(Clone, Debug, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
struct FileRecord {
    owner: String,
    renewed: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    requested_by: Option<String>,
    version: u64,
}

/// Ownership records of all partitions in one JSON file, changed under an exclusive lock on a
/// sibling lock file so that several collector processes on one machine can share it.
#[derive(Clone, Debug)]
pub struct FileOwnership {
    dir: PathBuf,
}

impl FileOwnership {
    /// Records under `dir` (created on first write).
    pub fn new(dir: impl AsRef<Path>) -> Self {
        FileOwnership {
            dir: dir.as_ref().to_path_buf(),
        }
    }

    fn error(&self, e: impl std::fmt::Display) -> OwnershipError {
        OwnershipError::Store {
            store: self.describe(),
            message: e.to_string(),
        }
    }

    /// Run `op` on the records with the lock held, writing them back when it returns `Some`.
    async fn locked<T: Send + 'static>(
        &self,
        op: impl FnOnce(&mut BTreeMap<String, FileRecord>) -> Result<(T, bool), OwnershipError> + Send + 'static,
    ) -> Result<T, OwnershipError> {
        let dir = self.dir.clone();
        let me = self.clone();
        tokio::task::spawn_blocking(move || {
            std::fs::create_dir_all(&dir).map_err(|e| me.error(e))?;
            let lock = std::fs::OpenOptions::new()
                .create(true)
                .truncate(false)
                .write(true)
                .open(dir.join("ownership.lock"))
                .map_err(|e| me.error(e))?;
            lock.lock().map_err(|e| me.error(e))?;
            let path = dir.join("ownership.json");
            let mut records: BTreeMap<String, FileRecord> = match std::fs::read(&path) {
                Ok(bytes) => serde_json::from_slice(&bytes).map_err(|e| me.error(e))?,
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => BTreeMap::new(),
                Err(e) => return Err(me.error(e)),
            };
            let (out, changed) = op(&mut records)?;
            if changed {
                let body = serde_json::to_vec_pretty(&records).map_err(|e| me.error(e))?;
                super::file::write_atomically_blocking(&path, &body).map_err(|e| me.error(e))?;
            }
            let _ = lock.unlock();
            Ok(out)
        })
        .await
        .map_err(|e| self.error(e))?
    }
}

fn record_of(partition: &str, r: &FileRecord) -> Ownership {
    Ownership {
        partition: partition.to_string(),
        owner: r.owner.clone(),
        renewed: DateTime::parse_from_rfc3339(&r.renewed)
            .map(|t| t.with_timezone(&Utc))
            .unwrap_or(DateTime::<Utc>::UNIX_EPOCH),
        requested_by: r.requested_by.clone(),
        version: r.version.to_string(),
    }
}

#[async_trait]
impl PartitionOwnership for FileOwnership {
    async fn list(&self) -> Result<Vec<Ownership>, OwnershipError> {
        self.locked(|records| Ok((records.iter().map(|(p, r)| record_of(p, r)).collect(), false)))
            .await
    }

    async fn write(
        &self,
        partition: &str,
        expected: Option<&str>,
        claim: OwnershipClaim<'_>,
    ) -> Result<Ownership, OwnershipError> {
        let partition = partition.to_string();
        let expected = expected.map(str::to_string);
        let owner = claim.owner.to_string();
        let requested_by = claim.requested_by.map(str::to_string);
        let keep_renewed = claim.keep_renewed;
        self.locked(move |records| {
            let current = records.get(&partition).map(|r| r.version.to_string());
            if current != expected {
                return Err(OwnershipError::Conflict { partition });
            }
            let version = records.get(&partition).map(|r| r.version + 1).unwrap_or(1);
            let renewed = match records.get(&partition) {
                Some(r) if keep_renewed => r.renewed.clone(),
                _ => Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Millis, true),
            };
            let record = FileRecord {
                owner,
                renewed,
                requested_by,
                version,
            };
            let out = record_of(&partition, &record);
            records.insert(partition, record);
            Ok((out, true))
        })
        .await
    }

    fn describe(&self) -> String {
        format!("file:{}", self.dir.display())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn file_ownership_compares_versions() {
        let dir = tempfile::tempdir().unwrap();
        let store = FileOwnership::new(dir.path());
        assert!(store.list().await.unwrap().is_empty());
        let claim = OwnershipClaim::owner("a");
        let first = store.write("0", None, claim.clone()).await.unwrap();
        assert_eq!(first.owner, "a");
        // A second claim of a new record loses.
        let b = OwnershipClaim::owner("b");
        assert!(matches!(
            store.write("0", None, b.clone()).await,
            Err(OwnershipError::Conflict { .. })
        ));
        let renewed = store.write("0", Some(&first.version), claim).await.unwrap();
        assert_ne!(renewed.version, first.version);
        // The old version is stale now.
        assert!(matches!(
            store.write("0", Some(&first.version), b.clone()).await,
            Err(OwnershipError::Conflict { .. })
        ));
        // A hand-over request keeps the renewal time.
        let asked = store
            .write("0", Some(&renewed.version), OwnershipClaim::request("a", "b"))
            .await
            .unwrap();
        assert_eq!(asked.renewed, renewed.renewed);
        assert_eq!(asked.requested_by.as_deref(), Some("b"));
        store.write("0", Some(&asked.version), b).await.unwrap();
        let all = store.list().await.unwrap();
        assert_eq!(all.len(), 1);
        assert_eq!(all[0].owner, "b");
    }
}
