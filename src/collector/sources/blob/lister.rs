//! The Blob calls of the source, each retried until it works: bounded in flight by one semaphore
//! for every container, `Retry-After` of a 429 / 503 `ServerBusy` honoured (the source shows
//! `Throttled`), exponential backoff otherwise. Refused credentials and missing containers are
//! outages retried too (a key rotated, a container created later): the error shows in the
//! collector report meanwhile, and the checkpoint does not move.
//!
//! Listing (docs/PROTOCOLS.md, Blob section): resource roots are found with one List Blobs per
//! container and poll grouped at the delimiter `/y=` (each root is a `BlobPrefix`, e.g.
//! `tenantId=<tenant>/y=` or `resourceId=/SUBSCRIPTIONS/<sub>/.../y=`); the blobs of an hour are
//! listed with the prefix `<root><yyyy>/m=<MM>/d=<dd>/h=<HH>/`, never the whole container.

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::Semaphore;

use crate::collector::azure_blob::{BlobError, BlobItem, BlobRange, BlobService};
use crate::collector::sources::{SourceHealth, SourceStatus};

/// Longest wait between two attempts (and the wait after a throttling answer without
/// `Retry-After`).
const MAX_BACKOFF: Duration = Duration::from_secs(60);
const FIRST_BACKOFF: Duration = Duration::from_millis(200);

/// The delimiter that ends a resource root in a diagnostic-settings blob name.
pub const ROOT_DELIMITER: &str = "/y=";

/// The client, shared by the containers of one source.
#[derive(Debug)]
pub struct BlobCalls {
    pub service: BlobService,
    pub in_flight: Semaphore,
    pub status: Arc<SourceStatus>,
    pub health: Arc<SourceHealth>,
}

impl BlobCalls {
    /// Run `call` until it succeeds. Only a configuration error (which no retry fixes) returns.
    pub async fn retry<T, F, Fut>(&self, what: &str, mut call: F) -> Result<T, BlobError>
    where
        F: FnMut() -> Fut,
        Fut: std::future::Future<Output = Result<T, BlobError>>,
    {
        let mut failures: u32 = 0;
        loop {
            let outcome = {
                let _permit = self.in_flight.acquire().await;
                self.status.count_request();
                call().await
            };
            let e = match outcome {
                Ok(v) => {
                    if failures > 0 {
                        self.health.set_error(None);
                    }
                    self.status.set_connected(true);
                    return Ok(v);
                }
                Err(e) => e,
            };
            if matches!(e, BlobError::Invalid(_)) {
                return Err(e);
            }
            failures += 1;
            let throttled = matches!(e.status(), Some(429 | 503));
            let wait = match e.retry_after() {
                Some(w) => w.min(MAX_BACKOFF),
                None if throttled => backoff(failures).max(Duration::from_secs(1)),
                None => backoff(failures),
            };
            if throttled {
                self.status.throttled();
            }
            if matches!(e.status(), Some(401 | 403)) || matches!(e, BlobError::Auth(_)) {
                self.status.set_connected(false);
            }
            // Each failure is retried; one that persists is shown in the report.
            if failures >= 3 || !throttled {
                self.health.set_error(Some(format!("{what}: {e}")));
            }
            tracing::warn!(what, error = %e, wait_ms = wait.as_millis() as u64, failures, "Blob call failed; retrying");
            tokio::time::sleep(wait).await;
        }
    }

    /// Every blob under `prefix` (all pages).
    pub async fn list_all(&self, container: &str, prefix: &str) -> Result<Vec<BlobItem>, BlobError> {
        let mut items = Vec::new();
        let mut marker: Option<String> = None;
        loop {
            let page = self
                .retry("listing blobs", || {
                    self.service.list_page(container, prefix, None, marker.as_deref())
                })
                .await?;
            items.extend(page.items);
            match page.next_marker.filter(|m| !m.is_empty()) {
                Some(m) => marker = Some(m),
                None => return Ok(items),
            }
        }
    }

    /// The resource roots under `prefix`: names up to and including `/y=`.
    pub async fn roots(&self, container: &str, prefix: &str) -> Result<Vec<String>, BlobError> {
        let mut roots = Vec::new();
        let mut marker: Option<String> = None;
        loop {
            let page = self
                .retry("listing resource roots", || {
                    self.service
                        .list_page(container, prefix, Some(ROOT_DELIMITER), marker.as_deref())
                })
                .await?;
            // The service answers each prefix up to and including the delimiter; Azurite
            // (3.37.0) cuts it one character after the delimiter's start (`.../` for `.../y=`).
            roots.extend(page.prefixes.into_iter().filter_map(|p| {
                if p.ends_with(ROOT_DELIMITER) {
                    Some(p)
                } else if p.ends_with('/') {
                    Some(format!("{p}y="))
                } else {
                    None
                }
            }));
            match page.next_marker.filter(|m| !m.is_empty()) {
                Some(m) => marker = Some(m),
                None => break,
            }
        }
        roots.sort();
        roots.dedup();
        Ok(roots)
    }

    /// Bytes `[start, end]` of a blob; `None` when it is gone.
    pub async fn range(
        &self,
        container: &str,
        blob: &str,
        start: u64,
        end: u64,
    ) -> Result<Option<BlobRange>, BlobError> {
        self.retry("reading a blob", || {
            self.service.get_range(container, blob, start, Some(end))
        })
        .await
    }
}

/// Exponential backoff with jitter, capped.
fn backoff(failures: u32) -> Duration {
    let exp = FIRST_BACKOFF.saturating_mul(1u32 << failures.min(10));
    exp.min(MAX_BACKOFF).mul_f64(rand::random::<f64>().max(0.5))
}
