//! The router: decodes a source batch, parses and recognizes each record once, routes it to
//! the LogSources that take it and hands one event per destination to the destination queues;
//! what cannot be delivered is dead-lettered ([`super::letters`]).

use std::sync::Arc;
use std::time::Instant;

use bytes::Bytes;

use super::letters::decode_letters;
use super::record::stable_record_id;
use super::CompiledRoute;
use crate::collector::ack::Streams;
use crate::collector::dead_letter::{DeadLetters, Letter, Stage};
use crate::collector::decode::decode_bytes;
use crate::collector::delivery::{DestinationQueue, EnqueueError};
use crate::collector::destinations::Event;
use crate::collector::metrics::CollectorMetrics;
use crate::collector::sources::SourceBatch;

/// Decode, normalize and route source batches into the destination queues.
pub(crate) struct Router {
    pub(super) routes: Vec<CompiledRoute>,
    /// The largest `maxRecordBytes` of the routes: longer records are not even parsed.
    pub(super) largest_record: usize,
    pub(super) queues: Vec<DestinationQueue>,
    pub(super) dead_letter: Arc<DeadLetters>,
    pub(super) metrics: CollectorMetrics,
    pub(super) source_kind: &'static str,
    pub(super) streams: Streams,
    pub(super) units: u64,
    pub(super) records: u64,
    pub(super) started: Instant,
}

/// Events gathered for a destination before they are handed over as one run.
const HAND_OVER_EVENTS: usize = 256;

impl Router {
    /// A router over compiled routes and the destination queues they index.
    pub(crate) fn new(
        routes: Vec<CompiledRoute>,
        queues: Vec<DestinationQueue>,
        dead_letter: Arc<DeadLetters>,
        metrics: CollectorMetrics,
        source_kind: &'static str,
        streams: Streams,
    ) -> Self {
        Router {
            largest_record: routes.iter().map(|r| r.max_record_bytes).max().unwrap_or(0),
            routes,
            queues,
            dead_letter,
            metrics,
            source_kind,
            streams,
            units: 0,
            records: 0,
            started: Instant::now(),
        }
    }

    /// Source units and records routed so far.
    pub(crate) fn counts(&self) -> (u64, u64) {
        (self.units, self.records)
    }

    /// When the router started.
    pub(crate) fn started(&self) -> Instant {
        self.started
    }

    /// Decode, recognize, normalize and route one source batch into the destination queues
    /// (waiting for room in a full one), dead-lettering what cannot be delivered.
    pub(crate) async fn process(&mut self, batch: SourceBatch) -> Result<(), EnqueueError> {
        let tracker = self.streams.tracker(&batch.stream);
        let hint = batch.origin.hint();
        let received: Vec<_> = self
            .routes
            .iter()
            .map(|r| {
                (
                    self.metrics
                        .events_received
                        .with_label_values(&[&*r.log_source, self.source_kind]),
                    self.metrics
                        .bytes_received
                        .with_label_values(&[&*r.log_source, self.source_kind]),
                )
            })
            .collect();
        self.metrics
            .source_units
            .with_label_values(&[self.source_kind])
            .inc_by(batch.units.len() as u64);
        // Events per destination, handed over in runs; deliveries a unit waits for, registered
        // with its tracker once per unit (or before a run is handed over).
        let mut pending: Vec<Vec<Event>> = self.queues.iter().map(|_| Vec::new()).collect();
        for unit in batch.units {
            let mut owed = 0u32;
            self.units += 1;
            // The unit is held open by one guard delivery until every record is routed.
            let position = unit.position.clone();
            let unit_id = unit.id;
            let guard = tracker.register_with_state(unit.position, unit.state, 1);
            let decoded = decode_bytes(&unit.payload);
            if !decoded.failures.is_empty() {
                self.metrics
                    .decode_errors
                    .with_label_values(&[self.source_kind])
                    .inc_by(decoded.failures.len() as u64);
                let unit_name = unit_id
                    .as_deref()
                    .map(str::to_string)
                    .unwrap_or_else(|| format!("{}/{}", batch.stream, position));
                let letters = decode_letters(&unit.payload, &decoded, &self.routes, &unit_name, &guard);
                guard.expect(letters.len() as u32);
                self.dead_letter.submit(letters);
            }
            for (index_in_unit, raw) in decoded.records.into_iter().enumerate() {
                self.records += 1;
                let record = self.parse(&raw, hint);
                // Stable across restarts and replays of the same unit: destinations that can
                // (Elasticsearch `_id`, Splunk, blob names) use it to drop re-deliveries.
                let record_id = record
                    .parsed
                    .as_ref()
                    .ok()
                    .and_then(|p| stable_record_id(&batch.origin, &p.value))
                    .unwrap_or_else(|| match &unit_id {
                        Some(id) => format!("{id}/{index_in_unit}"),
                        None => format!("{}/{}#{}", batch.stream, position, index_in_unit),
                    });
                let event_id: Arc<str> = Arc::from(record_id.as_str());
                let recognized = record.recognized.clone().map(Arc::new);
                let mut bodies: [Option<Result<Bytes, String>>; 3] = [None, None, None];
                let mut routed = false;
                for (ri, route) in self.routes.iter().enumerate() {
                    if !route.takes(&record.category) {
                        continue;
                    }
                    routed = true;
                    received[ri].0.inc();
                    received[ri].1.inc_by(raw.len() as u64);
                    if raw.len() > route.max_record_bytes {
                        self.dead_letter_too_large(&guard, route, &raw, &event_id);
                        continue;
                    }
                    for &(di, shape) in &route.destinations {
                        let body = bodies[shape.slot()]
                            .get_or_insert_with(|| self.body(shape, &raw, &record, hint, &record_id))
                            .clone();
                        let queue = &self.queues[di];
                        match body {
                            Ok(body) => {
                                owed += 1;
                                pending[di].push(Event {
                                    body,
                                    id: event_id.clone(),
                                    log_source: route.log_source.clone(),
                                    recognized: recognized.clone(),
                                    record: raw.bytes().clone(),
                                    ack: guard.clone(),
                                    dead_letter: None,
                                    _slot: None,
                                });
                            }
                            Err(reason) => {
                                let reason = format!("normalization failed: {reason}");
                                self.dead_letter_record(
                                    di,
                                    Letter {
                                        stage: Stage::Normalize,
                                        reason,
                                        log_source: route.log_source.clone(),
                                        destination: Some(Arc::from(queue.name())),
                                        id: Some(event_id.clone()),
                                        record: raw.bytes().clone(),
                                        ack: guard.clone(),
                                    },
                                );
                            }
                        }
                    }
                }
                if !routed {
                    self.metrics
                        .events_dropped_unrouted
                        .with_label_values(&[self.source_kind])
                        .inc();
                }
                // A run is handed over when it is long enough or would no longer fit in the
                // destination's buffer: the router never holds more than one event beyond it.
                let due = pending
                    .iter()
                    .zip(&self.queues)
                    .any(|(p, q)| !p.is_empty() && p.len() >= HAND_OVER_EVENTS.min(q.room().max(1)));
                if due {
                    // The unit waits for its events before any can be acknowledged.
                    guard.expect(std::mem::take(&mut owed));
                    self.hand_over(&mut pending).await?;
                }
            }
            guard.expect(owed);
            guard.ack();
        }
        self.hand_over(&mut pending).await
    }

    /// Hand the events gathered for each destination to its queue, one run per destination.
    async fn hand_over(&self, pending: &mut [Vec<Event>]) -> Result<(), EnqueueError> {
        for (di, events) in pending.iter_mut().enumerate() {
            if !events.is_empty() {
                self.queues[di].enqueue_all(std::mem::take(events)).await?;
            }
        }
        Ok(())
    }
}
