//! `file`: NDJSON appended to a file, rotated by size to `<path>.1`, `<path>.2`, ...; each batch
//! is synced to disk before it counts as delivered.
//!
//! Only a regular file is rotated. A path that is something else (`/dev/null`, a FIFO, a
//! symlink to a device) is opened for appending and written to, never renamed: renaming
//! `/dev/null` moves the device node away and puts an ever-growing regular file in its place.

use std::io::Write;
use std::path::PathBuf;
use std::sync::Mutex;

use async_trait::async_trait;

use super::{Destination, Event, SendOutcome};
use crate::api::FileSpec;

/// Appends events to a file.
#[derive(Debug)]
pub struct FileDestination {
    path: PathBuf,
    max_bytes: u64,
    /// The open file, the bytes in it, and whether it is a regular file (rotated by size).
    open: Mutex<Option<(std::fs::File, u64, bool)>>,
}

impl FileDestination {
    pub fn new(spec: &FileSpec) -> Self {
        FileDestination {
            path: PathBuf::from(&spec.path),
            max_bytes: spec.max_bytes.max(1024),
            open: Mutex::new(None),
        }
    }

    fn write(&self, buf: &[u8]) -> std::io::Result<()> {
        let mut guard = self.open.lock().unwrap_or_else(|p| p.into_inner());
        if guard.is_none() {
            if let Some(parent) = self.path.parent() {
                std::fs::create_dir_all(parent)?;
            }
            let f = std::fs::OpenOptions::new().create(true).append(true).open(&self.path)?;
            let meta = f.metadata()?;
            *guard = Some((f, meta.len(), meta.is_file()));
        }
        if let Some((_, size, true)) = guard.as_ref() {
            if *size > 0 && size + buf.len() as u64 > self.max_bytes {
                *guard = None;
                let mut n = 1;
                while self.rotated(n).exists() {
                    n += 1;
                }
                std::fs::rename(&self.path, self.rotated(n))?;
                let f = std::fs::OpenOptions::new().create(true).append(true).open(&self.path)?;
                let regular = f.metadata()?.is_file();
                *guard = Some((f, 0, regular));
            }
        }
        if let Some((f, size, regular)) = guard.as_mut() {
            f.write_all(buf)?;
            f.flush()?;
            // Delivered means on disk: this file may be the dead-letter archive on a volume. A
            // device or FIFO cannot be synced (EINVAL) and has nothing to sync.
            if *regular {
                f.sync_data()?;
            }
            *size += buf.len() as u64;
        }
        Ok(())
    }

    fn rotated(&self, n: u32) -> PathBuf {
        let mut p = self.path.clone().into_os_string();
        p.push(format!(".{n}"));
        PathBuf::from(p)
    }
}

#[async_trait]
impl Destination for FileDestination {
    async fn send(&self, batch: &[Event]) -> SendOutcome {
        let mut buf = Vec::with_capacity(batch.iter().map(|e| e.body.len() + 1).sum());
        for e in batch {
            buf.extend_from_slice(&e.body);
            buf.push(b'\n');
        }
        match self.write(&buf) {
            Ok(()) => SendOutcome::Delivered,
            Err(e) => {
                // Reopen on the next attempt (the file may have been moved or the disk freed).
                *self.open.lock().unwrap_or_else(|p| p.into_inner()) = None;
                SendOutcome::Retry {
                    reason: format!("file {}: {e}", self.path.display()),
                    after: None,
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn appends_ndjson_and_rotates_by_size() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("out.ndjson");
        let d = FileDestination::new(&FileSpec {
            path: path.display().to_string(),
            max_bytes: 1024,
        });
        let body = format!("{{\"pad\":\"{}\"}}", "x".repeat(300));
        for _ in 0..8 {
            let batch = vec![Event::detached(body.clone(), "ls")];
            assert_eq!(d.send(&batch).await, SendOutcome::Delivered);
        }
        let mut total = 0;
        for p in [path.clone(), d.rotated(1), d.rotated(2)] {
            let text = std::fs::read_to_string(&p).unwrap();
            assert!(text.len() as u64 <= 1024);
            total += text.lines().count();
        }
        assert_eq!(total, 8);
    }

    /// A path that is not a regular file (here a symlink to `/dev/null`, as a user pointing the
    /// destination at a device would) is written to, never renamed away: rotating `/dev/null`
    /// once moved the device node and then filled `/dev` with rotated files.
    #[cfg(unix)]
    #[tokio::test]
    async fn a_path_that_is_not_a_regular_file_is_never_rotated() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("null");
        std::os::unix::fs::symlink("/dev/null", &path).unwrap();
        let d = FileDestination::new(&FileSpec {
            path: path.display().to_string(),
            max_bytes: 1024,
        });
        let body = format!("{{\"pad\":\"{}\"}}", "x".repeat(300));
        for _ in 0..8 {
            let batch = vec![Event::detached(body.clone(), "ls")];
            assert_eq!(d.send(&batch).await, SendOutcome::Delivered);
        }
        let meta = std::fs::symlink_metadata(&path).unwrap();
        assert!(meta.file_type().is_symlink(), "the link was replaced by a regular file");
        assert_eq!(std::fs::read_link(&path).unwrap(), std::path::Path::new("/dev/null"));
        let entries: Vec<_> = std::fs::read_dir(dir.path())
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        assert_eq!(entries, ["null"], "nothing was rotated next to it");
    }
}
