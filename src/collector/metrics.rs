//! Collector metrics, one naming scheme: `siembridge_collector_*` for the source side (labels
//! `logsource`, `source`, `stream`) and `siembridge_destination_*` for the delivery side (label
//! `destination`). Counters of events and bytes: received, sent, failed (attempts), retried,
//! dead-lettered; a batch latency histogram; checkpoint age and queue depth gauges.
//!
//! Label values come from the configuration (LogSource, destination, source kind, stream),
//! except `category`, which comes from record content: it goes through [`ContentLabels`], so at
//! most [`MAX_CONTENT_LABELS`] distinct values get a series of their own and the rest count
//! under `other`.

use std::collections::HashSet;
use std::sync::{Arc, Mutex};

use prometheus::{
    Histogram, HistogramOpts, HistogramVec, IntCounter, IntCounterVec, IntGauge, IntGaugeVec, Opts, Registry,
};

/// Every metric of one collector.
#[derive(Clone, Debug)]
pub struct CollectorMetrics {
    pub events_received: IntCounterVec,
    pub bytes_received: IntCounterVec,
    pub source_units: IntCounterVec,
    pub decode_errors: IntCounterVec,
    pub records_unmapped: IntCounterVec,
    /// Label values of `records_unmapped`, bounded.
    pub unmapped_categories: Arc<ContentLabels>,
    pub records_repaired: IntCounterVec,
    pub events_dropped_unrouted: IntCounterVec,
    pub checkpoint_age_seconds: IntGaugeVec,
    pub checkpoints_written: IntCounterVec,
    pub checkpoint_failures: IntCounterVec,
    pub events_sent: IntCounterVec,
    pub bytes_sent: IntCounterVec,
    pub events_failed: IntCounterVec,
    pub events_retried: IntCounterVec,
    pub events_dead_lettered: IntCounterVec,
    pub log_source_dead_lettered: IntCounterVec,
    pub batch_duration_seconds: HistogramVec,
    pub queue_depth: IntGaugeVec,
    pub destination_up: IntGaugeVec,
    pub credentials_refused: IntGaugeVec,
}

fn counter(r: &Registry, name: &str, help: &str, labels: &[&str]) -> Result<IntCounterVec, prometheus::Error> {
    let c = IntCounterVec::new(Opts::new(name, help), labels)?;
    r.register(Box::new(c.clone()))?;
    Ok(c)
}

fn gauge(r: &Registry, name: &str, help: &str, labels: &[&str]) -> Result<IntGaugeVec, prometheus::Error> {
    let g = IntGaugeVec::new(Opts::new(name, help), labels)?;
    r.register(Box::new(g.clone()))?;
    Ok(g)
}

impl CollectorMetrics {
    /// Register the metrics in `registry`.
    pub fn register(r: &Registry) -> Result<Self, prometheus::Error> {
        let batch = HistogramVec::new(
            HistogramOpts::new(
                "siembridge_destination_batch_duration_seconds",
                "Time from the first send attempt of a batch to its last outcome",
            )
            .buckets(vec![
                0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0,
            ]),
            &["destination"],
        )?;
        r.register(Box::new(batch.clone()))?;
        Ok(CollectorMetrics {
            events_received: counter(
                r,
                "siembridge_collector_events_received_total",
                "Records routed to a LogSource",
                &["logsource", "source"],
            )?,
            bytes_received: counter(
                r,
                "siembridge_collector_bytes_received_total",
                "Bytes of records routed to a LogSource",
                &["logsource", "source"],
            )?,
            source_units: counter(
                r,
                "siembridge_collector_source_units_total",
                "Units (events, lines, blobs) read from the source",
                &["source"],
            )?,
            decode_errors: counter(
                r,
                "siembridge_collector_decode_errors_total",
                "Payload parts that could not be decoded (dead-lettered)",
                &["source"],
            )?,
            records_unmapped: counter(
                r,
                "siembridge_collector_records_unmapped_total",
                "Records of a category without a specific ECS mapping (sent with the generic one)",
                &["category"],
            )?,
            unmapped_categories: Arc::new(ContentLabels::new(MAX_CONTENT_LABELS)),
            records_repaired: counter(
                r,
                "siembridge_collector_records_repaired_total",
                "Records whose unpaired UTF-16 surrogate escapes became U+FFFD in the normalized document",
                &["source"],
            )?,
            events_dropped_unrouted: counter(
                r,
                "siembridge_collector_events_unrouted_total",
                "Records no LogSource takes (category or filter)",
                &["source"],
            )?,
            checkpoint_age_seconds: gauge(
                r,
                "siembridge_collector_checkpoint_age_seconds",
                "Seconds since the checkpoint of a stream last moved",
                &["stream"],
            )?,
            checkpoints_written: counter(
                r,
                "siembridge_collector_checkpoints_written_total",
                "Checkpoints written",
                &["stream"],
            )?,
            checkpoint_failures: counter(
                r,
                "siembridge_collector_checkpoint_failures_total",
                "Checkpoint writes the store refused or could not take (the checkpoint stays behind)",
                &["stream"],
            )?,
            events_sent: counter(
                r,
                "siembridge_destination_events_sent_total",
                "Events delivered",
                &["destination"],
            )?,
            bytes_sent: counter(
                r,
                "siembridge_destination_bytes_sent_total",
                "Encoded bytes of delivered events",
                &["destination"],
            )?,
            events_failed: counter(
                r,
                "siembridge_destination_events_failed_total",
                "Events in a failed send attempt",
                &["destination"],
            )?,
            events_retried: counter(
                r,
                "siembridge_destination_events_retried_total",
                "Events sent again after a failed attempt",
                &["destination"],
            )?,
            events_dead_lettered: counter(
                r,
                "siembridge_destination_events_dead_lettered_total",
                "Events written to the dead-letter sink",
                &["destination", "stage"],
            )?,
            log_source_dead_lettered: counter(
                r,
                "siembridge_collector_events_dead_lettered_total",
                "Records of a LogSource dead-lettered durably (files synced, or taken by its dead-letter destination)",
                &["logsource", "stage"],
            )?,
            batch_duration_seconds: batch,
            queue_depth: gauge(
                r,
                "siembridge_destination_queue_depth",
                "Events buffered or in flight for a destination",
                &["destination"],
            )?,
            destination_up: gauge(
                r,
                "siembridge_destination_up",
                "1 when the last send attempt succeeded",
                &["destination"],
            )?,
            credentials_refused: gauge(
                r,
                "siembridge_destination_credentials_refused",
                "1 while the destination refuses the credentials (401/403): its events wait, none is dead-lettered",
                &["destination"],
            )?,
        })
    }

    /// Count a record of `category` normalized with the generic mapping.
    pub fn count_unmapped(&self, category: &str) {
        let label = self.unmapped_categories.label(category);
        self.records_unmapped.with_label_values(&[label]).inc();
    }

    /// Per-destination handles, resolved once.
    pub fn destination(&self, name: &str) -> DestinationMetrics {
        DestinationMetrics {
            sent: self.events_sent.with_label_values(&[name]),
            bytes_sent: self.bytes_sent.with_label_values(&[name]),
            failed: self.events_failed.with_label_values(&[name]),
            retried: self.events_retried.with_label_values(&[name]),
            dead_lettered_deliver: self.events_dead_lettered.with_label_values(&[name, "deliver"]),
            dead_lettered_overflow: self.events_dead_lettered.with_label_values(&[name, "overflow"]),
            dead_lettered_normalize: self.events_dead_lettered.with_label_values(&[name, "normalize"]),
            batch_duration: self.batch_duration_seconds.with_label_values(&[name]),
            queue_depth: self.queue_depth.with_label_values(&[name]),
            up: self.destination_up.with_label_values(&[name]),
            refused: self.credentials_refused.with_label_values(&[name]),
        }
    }
}

/// Metric handles of one destination.
#[derive(Clone, Debug)]
pub struct DestinationMetrics {
    pub sent: IntCounter,
    pub bytes_sent: IntCounter,
    pub failed: IntCounter,
    pub retried: IntCounter,
    pub dead_lettered_deliver: IntCounter,
    pub dead_lettered_overflow: IntCounter,
    pub dead_lettered_normalize: IntCounter,
    pub batch_duration: Histogram,
    pub queue_depth: IntGauge,
    pub up: IntGauge,
    pub refused: IntGauge,
}

/// Gauges of the collector's state for alerting (`charts/siembridge/files/prometheus/alerts.yaml`),
/// refreshed from the source status on every report tick, so the record path pays nothing:
/// the last time each LogSource received a record (from its `events_received` counter, which
/// this also initialises at 0, as it does every series an absence-based alert reads), its
/// silence threshold, throttling, cursor lag and backfill progress, and per Event Hubs
/// partition the lag in events and seconds with the ConsumerGroup's thresholds.
#[derive(Debug)]
pub struct StateGauges {
    /// Per LogSource: its name, its received counter, the count at the last tick, its last-event
    /// gauge.
    log_sources: Vec<(String, IntCounter, u64, IntGauge)>,
    throttled: IntGauge,
    source_lag_seconds: IntGauge,
    backfill_percent: IntGauge,
    partition_lag_events: IntGaugeVec,
    partition_lag_seconds: IntGaugeVec,
    /// Per (destination, LogSource): events delivered, and the total at the last tick.
    delivered: IntCounterVec,
    delivered_seen: std::collections::HashMap<(String, String), u64>,
}

impl StateGauges {
    /// Register the gauges for `config`'s LogSources and source, with `now` (Unix seconds) as
    /// every LogSource's last event: silence counts from the collector's start.
    pub fn register(
        r: &Registry,
        metrics: &CollectorMetrics,
        config: &crate::config::CollectorConfig,
        now: i64,
    ) -> Result<Self, prometheus::Error> {
        let last_event = gauge(
            r,
            "siembridge_collector_last_event_timestamp_seconds",
            "Unix time a record of the LogSource was last received (the collector's start until one is)",
            &["logsource"],
        )?;
        let silence = gauge(
            r,
            "siembridge_collector_silence_threshold_seconds",
            "Seconds without a record after which the LogSource counts as silent (spec.silenceThresholdMinutes)",
            &["logsource"],
        )?;
        let kind = config.source.kind_name();
        let mut log_sources = Vec::new();
        for route in &config.routes {
            let ls = route.log_source.as_str();
            let received = metrics.events_received.with_label_values(&[ls, kind]);
            metrics.bytes_received.with_label_values(&[ls, kind]);
            for stage in ["deliver", "normalize", "overflow"] {
                metrics.log_source_dead_lettered.with_label_values(&[ls, stage]);
            }
            let gauge = last_event.with_label_values(&[ls]);
            gauge.set(now);
            if let Some(t) = route.silence_threshold_seconds {
                silence
                    .with_label_values(&[ls])
                    .set(i64::try_from(t).unwrap_or(i64::MAX));
            }
            log_sources.push((ls.to_string(), received.clone(), received.get(), gauge));
        }
        let single = |name: &str, help: &str| -> Result<IntGauge, prometheus::Error> {
            let g = IntGauge::new(name, help)?;
            r.register(Box::new(g.clone()))?;
            Ok(g)
        };
        if let crate::config::SourceConfig::EventHub { spec, .. } = &config.source {
            single(
                "siembridge_eventhub_lag_threshold_events",
                "The ConsumerGroup's lagThreshold.events",
            )?
            .set(spec.lag_threshold.events);
            single(
                "siembridge_eventhub_lag_threshold_seconds",
                "The ConsumerGroup's lagThreshold.seconds",
            )?
            .set(spec.lag_threshold.seconds);
        }
        let delivered = counter(
            r,
            "siembridge_destination_events_delivered_total",
            "Events of a LogSource acknowledged by a destination",
            &["destination", "logsource"],
        )?;
        for route in &config.routes {
            for d in &route.destinations {
                delivered.with_label_values(&[d.as_str(), route.log_source.as_str()]);
            }
        }
        Ok(StateGauges {
            delivered,
            delivered_seen: Default::default(),
            log_sources,
            throttled: single(
                "siembridge_collector_throttled",
                "1 while the source throttles requests (429, AF429, 503 within the last 2 minutes)",
            )?,
            source_lag_seconds: single(
                "siembridge_collector_source_lag_seconds",
                "Seconds the slowest stream's cursor is behind now (API sources)",
            )?,
            backfill_percent: single(
                "siembridge_collector_backfill_percent",
                "Progress of the backfill window, 0 to 100 (API sources)",
            )?,
            partition_lag_events: gauge(
                r,
                "siembridge_eventhub_partition_lag_events",
                "Events between the last event read and the last event enqueued, per partition this replica reads",
                &["partition"],
            )?,
            partition_lag_seconds: gauge(
                r,
                "siembridge_eventhub_partition_lag_seconds",
                "Seconds between the last event read and the last event enqueued, per partition this replica reads",
                &["partition"],
            )?,
        })
    }

    /// `total` events of `log_source` delivered by `destination` so far (a running total the
    /// destination keeps); the counter moves by the difference.
    pub fn delivered(&mut self, destination: &str, log_source: &str, total: u64) {
        let seen = self
            .delivered_seen
            .entry((destination.to_string(), log_source.to_string()))
            .or_insert(0);
        if total > *seen {
            self.delivered
                .with_label_values(&[destination, log_source])
                .inc_by(total - *seen);
            *seen = total;
        }
    }

    /// Refresh from the source's state at `now` (Unix seconds).
    /// Unix time a record of `log_source` was last received (the collector's start until one
    /// is), as of the last [`Self::observe`].
    pub fn last_received(&self, log_source: &str) -> Option<i64> {
        self.log_sources
            .iter()
            .find(|(name, ..)| name == log_source)
            .map(|(.., gauge)| gauge.get())
    }

    pub fn observe(
        &mut self,
        throttled: bool,
        progress: &crate::collector::sources::SourceProgress,
        partitions: &std::collections::BTreeMap<String, crate::config::PartitionReport>,
        now: i64,
    ) {
        for (_, counter, seen, gauge) in &mut self.log_sources {
            let count = counter.get();
            if count != *seen {
                *seen = count;
                gauge.set(now);
            }
        }
        self.throttled.set(i64::from(throttled));
        if let Some(lag) = progress.lag_seconds {
            self.source_lag_seconds.set(lag);
        }
        if let Some(p) = progress.backfill_percent {
            self.backfill_percent.set(i64::from(p));
        }
        self.partition_lag_events.reset();
        self.partition_lag_seconds.reset();
        for (id, p) in partitions {
            if let (Some(read), Some(last)) = (p.read_sequence_number, p.last_enqueued_sequence_number) {
                self.partition_lag_events
                    .with_label_values(&[id])
                    .set((last - read).max(0));
            }
            let time = |t: &Option<String>| {
                t.as_deref()
                    .and_then(|t| chrono::DateTime::parse_from_rfc3339(t).ok())
                    .map(|t| t.timestamp())
            };
            // Nothing read yet: unknown (reading may start at `latest`), no series.
            if let (Some(read), Some(last)) = (time(&p.read_enqueued_time), time(&p.last_enqueued_time)) {
                let caught_up =
                    p.read_sequence_number.is_some() && p.read_sequence_number == p.last_enqueued_sequence_number;
                let lag = if caught_up { 0 } else { (last - read).max(0) };
                self.partition_lag_seconds.with_label_values(&[id]).set(lag);
            }
        }
    }
}

/// Most distinct values of a label taken from record content.
pub const MAX_CONTENT_LABELS: usize = 200;

/// Label values taken from record content, bounded: the first `max` distinct plain values
/// (at most 64 bytes of letters, digits, `-`, `_`, `.`) keep their own series; any other value
/// is `other`. Microsoft's category names all fit; a stream of made-up ones cannot grow the
/// registry.
#[derive(Debug)]
pub struct ContentLabels {
    seen: Mutex<HashSet<Box<str>>>,
    max: usize,
}

impl ContentLabels {
    pub fn new(max: usize) -> Self {
        ContentLabels {
            seen: Mutex::default(),
            max,
        }
    }

    /// The label to use for `value`.
    pub fn label<'a>(&self, value: &'a str) -> &'a str {
        let plain = !value.is_empty()
            && value.len() <= 64
            && value.bytes().all(|b| b.is_ascii_alphanumeric() || b"-_.".contains(&b));
        if !plain {
            return "other";
        }
        let mut seen = self.seen.lock().unwrap_or_else(|p| p.into_inner());
        if seen.contains(value) {
            return value;
        }
        if seen.len() < self.max {
            seen.insert(value.into());
            return value;
        }
        "other"
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn content_labels_are_bounded_with_an_other_bucket() {
        let labels = ContentLabels::new(2);
        assert_eq!(labels.label("SignInLogs"), "SignInLogs");
        assert_eq!(labels.label("AuditLogs"), "AuditLogs");
        assert_eq!(labels.label("Third"), "other");
        assert_eq!(labels.label("SignInLogs"), "SignInLogs");
        assert_eq!(labels.label("has space"), "other");
        assert_eq!(labels.label(&"x".repeat(65)), "other");
    }
}
