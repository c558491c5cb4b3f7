//! File checkpoint store: one JSON file per stream in one directory per collector, replaced
//! atomically (write to a temporary file, fsync, rename).

use std::path::{Path, PathBuf};

use async_trait::async_trait;

use super::{Checkpoint, CheckpointError, CheckpointStore};

/// Checkpoints as `<dir>/<stream>.json`.
#[derive(Debug, Clone)]
pub struct FileCheckpointStore {
    dir: PathBuf,
}

impl FileCheckpointStore {
    /// Open (and create) the directory.
    pub async fn open(dir: impl AsRef<Path>) -> Result<Self, CheckpointError> {
        let dir = dir.as_ref().to_path_buf();
        tokio::fs::create_dir_all(&dir)
            .await
            .map_err(|source| CheckpointError::Io {
                store: dir.display().to_string(),
                source,
            })?;
        Ok(FileCheckpointStore { dir })
    }

    /// File of a stream. Stream ids may hold `/` or `:`; they are made file-name safe, with a
    /// short hash when anything had to change so two ids never share a file.
    pub fn path_of(&self, stream: &str) -> PathBuf {
        let safe: String = stream
            .chars()
            .map(|c| {
                if c.is_ascii_alphanumeric() || c == '-' || c == '_' || c == '.' {
                    c
                } else {
                    '_'
                }
            })
            .collect();
        let name = if safe == stream && !stream.starts_with('.') && !stream.is_empty() {
            safe
        } else {
            use sha2::Digest;
            let digest = hex::encode(sha2::Sha256::digest(stream.as_bytes()));
            format!("{}-{}", safe.trim_start_matches('.'), &digest[..8])
        };
        self.dir.join(format!("{name}.json"))
    }

    fn io(&self, source: std::io::Error) -> CheckpointError {
        CheckpointError::Io {
            store: self.dir.display().to_string(),
            source,
        }
    }
}

#[async_trait]
impl CheckpointStore for FileCheckpointStore {
    async fn load(&self, stream: &str) -> Result<Option<Checkpoint>, CheckpointError> {
        match tokio::fs::read(self.path_of(stream)).await {
            Ok(bytes) => serde_json::from_slice(&bytes)
                .map(Some)
                .map_err(|e| CheckpointError::Corrupt {
                    stream: stream.to_string(),
                    message: e.to_string(),
                }),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(self.io(e)),
        }
    }

    async fn save(&self, stream: &str, checkpoint: &Checkpoint) -> Result<(), CheckpointError> {
        checkpoint.check_size(stream)?;
        let path = self.path_of(stream);
        let body = serde_json::to_vec_pretty(checkpoint).map_err(|e| CheckpointError::Corrupt {
            stream: stream.to_string(),
            message: e.to_string(),
        })?;
        write_atomically(&path, &body).await.map_err(|e| self.io(e))
    }

    fn describe(&self) -> String {
        format!("file:{}", self.dir.display())
    }

    fn partition_ownership(&self) -> Option<std::sync::Arc<dyn super::ownership::PartitionOwnership>> {
        Some(std::sync::Arc::new(super::ownership::FileOwnership::new(
            self.dir.join("ownership"),
        )))
    }
}

/// Write `body` to `path` so that readers see the old or the new content, never a mix. The file
/// is readable by its owner only (0600 on Unix): checkpoints and reports name the user's tenant,
/// positions and error text.
pub async fn write_atomically(path: &Path, body: &[u8]) -> std::io::Result<()> {
    let path = path.to_path_buf();
    let body = body.to_vec();
    tokio::task::spawn_blocking(move || write_atomically_blocking(&path, &body))
        .await
        .map_err(std::io::Error::other)?
}

/// [`write_atomically`] for code already on a blocking thread.
pub fn write_atomically_blocking(path: &Path, body: &[u8]) -> std::io::Result<()> {
    use std::io::Write;
    if let Some(parent) = path.parent() {
        std::fs::create_dir_all(parent)?;
    }
    let tmp = path.with_extension(format!("tmp-{}", std::process::id()));
    {
        let mut options = std::fs::OpenOptions::new();
        options.write(true).create(true).truncate(true);
        #[cfg(unix)]
        std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
        let mut f = options.open(&tmp)?;
        // A temporary file left by a crash keeps its old mode through `open`: set it.
        #[cfg(unix)]
        f.set_permissions(std::os::unix::fs::PermissionsExt::from_mode(0o600))?;
        f.write_all(body)?;
        f.sync_all()?;
    }
    std::fs::rename(&tmp, path)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn saves_and_loads_per_stream() {
        let dir = tempfile::tempdir().unwrap();
        let store = FileCheckpointStore::open(dir.path().join("cp")).await.unwrap();
        assert_eq!(store.load("replay").await.unwrap(), None);
        let cp = Checkpoint {
            position: "a.json@3".into(),
            state: Some(serde_json::json!({"seen": ["x"]})),
            updated: "2026-01-01T00:00:00Z".into(),
        };
        store.save("replay", &cp).await.unwrap();
        store.save("partition/0", &Checkpoint::default()).await.unwrap();
        assert_eq!(store.load("replay").await.unwrap(), Some(cp));
        assert_eq!(store.load("partition/0").await.unwrap(), Some(Checkpoint::default()));
        assert_ne!(store.path_of("partition/0"), store.path_of("partition_0"));
        let leftovers: Vec<_> = std::fs::read_dir(dir.path().join("cp"))
            .unwrap()
            .filter_map(|e| e.ok())
            .filter(|e| e.file_name().to_string_lossy().contains("tmp"))
            .collect();
        assert!(leftovers.is_empty());
    }

    /// Checkpoints are owner-only, also when they replace a file (or a crash's temporary file)
    /// that was not.
    #[cfg(unix)]
    #[tokio::test]
    async fn checkpoint_files_are_readable_by_their_owner_only() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let store = FileCheckpointStore::open(dir.path()).await.unwrap();
        let path = store.path_of("replay");
        let tmp = path.with_extension(format!("tmp-{}", std::process::id()));
        for old in [&path, &tmp] {
            std::fs::write(old, b"{}").unwrap();
            std::fs::set_permissions(old, std::fs::Permissions::from_mode(0o644)).unwrap();
        }
        store.save("replay", &Checkpoint::default()).await.unwrap();
        store.save("partition/0", &Checkpoint::default()).await.unwrap();
        for p in [path, store.path_of("partition/0")] {
            let mode = std::fs::metadata(&p).unwrap().permissions().mode() & 0o777;
            assert_eq!(mode, 0o600, "{}", p.display());
        }
    }

    #[tokio::test]
    async fn corrupt_checkpoint_is_an_error_not_a_reset() {
        let dir = tempfile::tempdir().unwrap();
        let store = FileCheckpointStore::open(dir.path()).await.unwrap();
        std::fs::write(store.path_of("replay"), b"{not json").unwrap();
        assert!(matches!(
            store.load("replay").await,
            Err(CheckpointError::Corrupt { .. })
        ));
    }
}
