//! The checkpoint writer: saves each stream's watermark when it moves, and remembers what it
//! saved (the report's cursors and the run's positions come from there, never from
//! acknowledged positions ahead of it) and which streams it cannot write.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex};
use std::time::Instant;

use crate::collector::ack::{SharedState, Streams};
use crate::collector::checkpoint::{Checkpoint, CheckpointStore};
use crate::collector::metrics::CollectorMetrics;

/// Position and source state of the checkpoint last saved for a stream, and when.
type SavedCheckpoint = (String, Option<SharedState>, Instant);

/// Writes the watermark of every stream that moved.
pub(super) struct Checkpointer {
    store: Arc<dyn CheckpointStore>,
    streams: Streams,
    /// Per stream, the position and source state last saved, and when.
    saved: Mutex<HashMap<String, SavedCheckpoint>>,
    /// Per stream whose last write failed: since when (RFC 3339) and why.
    failing: Mutex<BTreeMap<String, (String, String)>>,
    metrics: CollectorMetrics,
}

impl Checkpointer {
    pub(super) fn new(store: Arc<dyn CheckpointStore>, streams: Streams, metrics: CollectorMetrics) -> Self {
        Checkpointer {
            store,
            streams,
            saved: Mutex::default(),
            failing: Mutex::default(),
            metrics,
        }
    }

    /// Write the checkpoint of every stream whose watermark moved since it was last written.
    pub(super) async fn flush(&self) {
        let due: Vec<(String, String, Option<SharedState>)> = {
            let watermarks = self.streams.watermarks();
            let saved = self.saved.lock().unwrap_or_else(|p| p.into_inner());
            watermarks
                .into_iter()
                .filter_map(|(id, (w, state))| {
                    // The state moves without the position too: a Graph window's pages all carry
                    // the window's start, each with more delivered ids in its state.
                    let moved = saved.get(&id).is_none_or(|(p, s, _)| {
                        *p != w
                            || match (s, &state) {
                                (Some(a), Some(b)) => !Arc::ptr_eq(a, b),
                                (None, None) => false,
                                _ => true,
                            }
                    });
                    if !moved {
                        self.metrics.checkpoint_age_seconds.with_label_values(&[&id]).set(
                            saved
                                .get(&id)
                                .map(|(_, _, at)| at.elapsed().as_secs() as i64)
                                .unwrap_or(0),
                        );
                    }
                    moved.then_some((id, w, state))
                })
                .collect()
        };
        for (id, position, state) in due {
            let cp = Checkpoint {
                position: position.clone(),
                state: state.as_ref().map(|s| s.to_json()),
                updated: chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Millis, true),
            };
            match self.store.save(&id, &cp).await {
                Ok(()) => {
                    tracing::debug!(stream = %id, position = %position, "checkpoint written");
                    self.metrics.checkpoints_written.with_label_values(&[&id]).inc();
                    self.metrics.checkpoint_age_seconds.with_label_values(&[&id]).set(0);
                    self.failing.lock().unwrap_or_else(|p| p.into_inner()).remove(&id);
                    self.saved
                        .lock()
                        .unwrap_or_else(|p| p.into_inner())
                        .insert(id, (position, state, Instant::now()));
                }
                Err(e) => {
                    self.metrics.checkpoint_failures.with_label_values(&[&id]).inc();
                    let age = self
                        .saved
                        .lock()
                        .unwrap_or_else(|p| p.into_inner())
                        .get(&id)
                        .map(|(_, _, at)| at.elapsed());
                    if let Some(age) = age {
                        self.metrics
                            .checkpoint_age_seconds
                            .with_label_values(&[&id])
                            .set(age.as_secs() as i64);
                    }
                    let message = e.to_string();
                    let mut failing = self.failing.lock().unwrap_or_else(|p| p.into_inner());
                    let known = failing.get(&id).is_some_and(|(_, m)| *m == message);
                    if known {
                        // Already logged, counted and in the report: no log line every second.
                        tracing::debug!(stream = %id, error = %message, "checkpoint still not written");
                    } else {
                        tracing::error!(stream = %id, error = %message, "checkpoint could not be written; it stays at the last saved position");
                        let since = failing
                            .get(&id)
                            .map(|(s, _)| s.clone())
                            .unwrap_or_else(|| cp.updated.clone());
                        failing.insert(id.clone(), (since, message));
                    }
                }
            }
        }
    }

    /// Position last saved per stream.
    pub(super) fn positions(&self) -> BTreeMap<String, String> {
        let saved = self.saved.lock().unwrap_or_else(|p| p.into_inner());
        saved.iter().map(|(id, (p, _, _))| (id.clone(), p.clone())).collect()
    }

    /// Streams whose checkpoint is not being written, as report lines.
    pub(super) fn failures(&self) -> Vec<String> {
        let failing = self.failing.lock().unwrap_or_else(|p| p.into_inner());
        failing
            .iter()
            .map(|(id, (since, why))| format!("checkpoint of {id} not written since {since}: {why}"))
            .collect()
    }
}
