//! What the collector report is built from: routes, destination health, dead letters, source
//! status and the checkpoint writer.

use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};

use super::checkpointer::Checkpointer;
use crate::collector::dead_letter::DeadLetters;
use crate::collector::delivery::DestinationHealth;
use crate::collector::metrics::StateGauges;
use crate::collector::route::CompiledRoute;
use crate::collector::sources::{self, SourceHealth};
use crate::config::{CollectorReport, DestinationReport, LogSourceReport};

/// What the report is built from.
pub(super) struct ReportState {
    pub(super) collector: String,
    pub(super) routes: Vec<CompiledRoute>,
    pub(super) destinations: Vec<(String, Arc<DestinationHealth>)>,
    pub(super) dead_letters: Arc<DeadLetters>,
    pub(super) source_error: Mutex<Option<String>>,
    pub(super) source_status: Arc<sources::SourceStatus>,
    pub(super) source_health: Arc<SourceHealth>,
    /// Cursors come from what it saved, never from acknowledged positions ahead of it.
    pub(super) checkpointer: Arc<Checkpointer>,
    /// The alerting gauges, refreshed with every report.
    pub(super) gauges: Mutex<StateGauges>,
}

impl ReportState {
    /// The report as of now.
    pub(super) fn build(&self) -> CollectorReport {
        let cursors = self.checkpointer.positions();
        let checkpoint_failures = self.checkpointer.failures();
        let source_error = self
            .source_error
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
            .or_else(|| self.source_health.error())
            .into_iter()
            .chain(checkpoint_failures)
            .reduce(|a, b| format!("{a}; {b}"));
        let progress = self.source_status.snapshot();
        let throttled = self.source_status.is_throttled();
        let now = chrono::Utc::now();
        let mut report = CollectorReport {
            reporter: std::env::var("HOSTNAME").unwrap_or_else(|_| self.collector.clone()),
            time: now.to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
            partitions: self.source_health.partitions(),
            ..Default::default()
        };
        let mut gauges = self.gauges.lock().unwrap_or_else(|p| p.into_inner());
        gauges.observe(throttled, &progress, &report.partitions, now.timestamp());
        for r in &self.routes {
            let done: Vec<u64> = r
                .destinations
                .iter()
                .map(|(i, _)| {
                    let (name, health) = &self.destinations[*i];
                    let done = health.done_for(&r.log_source);
                    gauges.delivered(name, &r.log_source, done);
                    done
                })
                .collect();
            let forwarded = done.into_iter().min().unwrap_or(0);
            let dead = self.dead_letters.tally(&r.log_source);
            report.log_sources.insert(
                r.log_source.to_string(),
                LogSourceReport {
                    events_forwarded: forwarded,
                    events_dead_lettered: dead.count,
                    last_dead_letter_reason: dead.last_reason,
                    dead_letter_error: dead.error,
                    dead_letters_durable: self.dead_letters.durable_for(&r.log_source),
                    cursors: cursors.clone(),
                    source_error: source_error.clone(),
                    throttled,
                    data_loss: progress.data_loss.clone(),
                    backfill_percent: progress.backfill_percent,
                    lag_seconds: progress.lag_seconds,
                    blobs_read: progress.blobs_read,
                    bytes_read: progress.bytes_read,
                    last_received_time: gauges
                        .last_received(&r.log_source)
                        .and_then(|t| chrono::DateTime::from_timestamp(t, 0))
                        .map(|t| t.to_rfc3339_opts(chrono::SecondsFormat::Secs, true)),
                    ..Default::default()
                },
            );
        }
        for (name, h) in &self.destinations {
            report.destinations.insert(
                name.clone(),
                DestinationReport {
                    healthy: h.healthy.load(Ordering::Relaxed),
                    events_sent: h.events_sent.load(Ordering::Relaxed),
                    events_dead_lettered: h.events_dead_lettered.load(Ordering::Relaxed),
                    queue_depth: h.queue_depth(),
                    last_success_time: h.last_success_time.lock().unwrap_or_else(|p| p.into_inner()).clone(),
                    last_error: h.last_error.lock().unwrap_or_else(|p| p.into_inner()).clone(),
                    reason: h.reason().map(str::to_string),
                },
            );
        }
        report
    }
}
