//! The collector runtime: wires a source, the router, the destinations, the checkpointer, the
//! report and telemetry, and runs them until the source ends or shutdown is asked.

use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::Bytes;
use prometheus::Registry;
use tokio_util::sync::CancellationToken;

use crate::collector::ack::{AckRef, SharedState, StreamTracker};
use crate::collector::checkpoint::{self, Checkpoint, CheckpointError, CheckpointStore};
use crate::collector::dead_letter::{DeadLetters, Letter, Stage};
use crate::collector::decode::{decode_bytes, RawRecord};
use crate::collector::delivery::{self, DeliverySettings, DestinationHealth, DestinationQueue};
use crate::collector::destinations::{self, BuildError, Destination, Event};
use crate::collector::metrics::{CollectorMetrics, StateGauges};
use crate::collector::report::ReportWriter;
use crate::collector::route::{self, category_from, CompiledRoute, Shape};
use crate::collector::sources::{self, RecordOrigin, SourceBatch, SourceContext, SourceError, SourceHealth};
use crate::config::{CollectorConfig, CollectorReport, DestinationReport, LogSourceReport, CONFIG_VERSION};
use crate::normalize::{
    normalize_json_recognized, parse_record, recognize, EcsContext, ParsedRecord, Recognized, SourceHint,
};
use crate::telemetry::Health;

/// Why a collector could not start or stopped with an error.
#[derive(Debug, thiserror::Error)]
pub enum CollectorError {
    #[error("config version {found:?} is not supported (expected {CONFIG_VERSION:?})")]
    Version { found: String },
    #[error("route of LogSource {log_source:?} names destination {destination:?}, which the config does not define")]
    UnknownDestination { log_source: String, destination: String },
    #[error(transparent)]
    Destination(#[from] BuildError),
    #[error("checkpoints: {0}")]
    Checkpoint(#[from] CheckpointError),
    #[error("source: {0}")]
    Source(#[from] SourceError),
    #[error("metrics: {0}")]
    Metrics(#[from] prometheus::Error),
    #[error("telemetry listen address {0:?} is invalid")]
    Listen(String),
}

/// What a run did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RunSummary {
    /// Source units read.
    pub units: u64,
    /// Records decoded.
    pub records: u64,
    /// The source reached its end (replay done), as opposed to a shutdown.
    pub source_finished: bool,
    /// Every unit read was acknowledged and checkpointed.
    pub fully_checkpointed: bool,
    /// Final checkpoint position per stream.
    pub positions: BTreeMap<String, String>,
    /// Deliveries (a record to one destination) neither delivered nor dead-lettered when the run
    /// ended: the drain timeout passed, or their dead letter could not be written. The checkpoint
    /// holds before them; the next run reads them again.
    pub undelivered: u64,
    /// Source units held open by those deliveries.
    pub unfinished_units: u64,
    /// Records whose dead-letter write failed (counted in `undelivered` too).
    pub dead_letter_failures: u64,
}

impl RunSummary {
    /// What a run left undone, as a message for a non-zero exit; `None` when nothing.
    pub fn shortfall(&self) -> Option<String> {
        if self.undelivered == 0 && self.dead_letter_failures == 0 {
            return None;
        }
        let mut message = format!(
            "stopped with {} records not delivered in {} source units; they will be read again from the checkpoint on the next start",
            self.undelivered, self.unfinished_units
        );
        if self.dead_letter_failures > 0 {
            message.push_str(&format!(" ({} dead-letter writes failed)", self.dead_letter_failures));
        }
        Some(message)
    }
}

/// A collector ready to run: its config plus test and benchmark hooks.
pub struct Collector {
    config: CollectorConfig,
    overrides: HashMap<String, Arc<dyn Destination>>,
    registry: Registry,
    health: Arc<Health>,
    checkpoint_interval: Duration,
    report_interval: Duration,
    drain_timeout: Duration,
}

impl Collector {
    pub fn new(config: CollectorConfig) -> Self {
        Collector {
            config,
            overrides: HashMap::new(),
            registry: Registry::new(),
            health: Health::new(),
            checkpoint_interval: Duration::from_secs(1),
            report_interval: Duration::from_secs(10),
            drain_timeout: Duration::from_secs(10),
        }
    }

    /// Use this destination instead of building the one named `name` from its spec.
    pub fn with_destination(mut self, name: &str, destination: Arc<dyn Destination>) -> Self {
        self.overrides.insert(name.to_string(), destination);
        self
    }

    /// Register metrics in this registry (default: a private one).
    pub fn with_registry(mut self, registry: Registry) -> Self {
        self.registry = registry;
        self
    }

    /// How often checkpoints are written (default 1 s).
    pub fn with_checkpoint_interval(mut self, interval: Duration) -> Self {
        self.checkpoint_interval = interval;
        self
    }

    /// How often the report is published (default 10 s).
    pub fn with_report_interval(mut self, interval: Duration) -> Self {
        self.report_interval = interval;
        self
    }

    /// How long a shutdown waits for destinations to drain (default 10 s).
    pub fn with_drain_timeout(mut self, timeout: Duration) -> Self {
        self.drain_timeout = timeout;
        self
    }

    /// The metrics registry.
    pub fn registry(&self) -> &Registry {
        &self.registry
    }

    /// Run until the source ends (then drain everything) or `shutdown` is cancelled (then drain
    /// for at most the drain timeout). Checkpoints are flushed on the way out.
    pub async fn run(self, shutdown: CancellationToken) -> Result<RunSummary, CollectorError> {
        let config = &self.config;
        if config.version != CONFIG_VERSION {
            return Err(CollectorError::Version {
                found: config.version.clone(),
            });
        }
        let collector = config.collector.clone();
        if config.routes.is_empty() {
            // Suspended LogSources get no route: reading the source would move its checkpoint
            // past records nobody received.
            tracing::info!(collector = %collector, "no LogSource to feed (suspended?); the source is not read");
            return Ok(RunSummary {
                fully_checkpointed: true,
                ..Default::default()
            });
        }
        let metrics = CollectorMetrics::register(&self.registry)?;
        let store = checkpoint::open(&config.checkpoint, &config.source, &config.secrets).await?;
        let dead_letter = Arc::new(dead_letters(config, &metrics)?);

        // Destinations (only those a route uses).
        let mut queues: Vec<DestinationQueue> = Vec::new();
        let mut senders = Vec::new();
        let mut shapes: Vec<Shape> = Vec::new();
        let mut index: HashMap<&str, usize> = HashMap::new();
        for (name, spec) in &config.destinations {
            let destination = match self.overrides.get(name) {
                Some(d) => d.clone(),
                None => destinations::build(name, spec, &config.secrets)?,
            };
            let (queue, task) = delivery::start(DeliverySettings {
                name: name.clone(),
                destination,
                batch: spec.batch.clone(),
                retry: spec.retry.clone(),
                buffer: spec.buffer.clone(),
                concurrency: spec.concurrency,
                metrics: metrics.destination(name),
                dead_letter: dead_letter.clone(),
            });
            index.insert(name.as_str(), queues.len());
            queues.push(queue);
            senders.push(task);
            shapes.push(Shape::of(spec.format, spec.keep_original));
        }
        for name in dead_letter.destinations() {
            if let Some(&i) = index.get(name) {
                dead_letter.attach(name, queues[i].dead_letter_sender());
            }
        }
        // Dead-letter destinations drain last: the others may still dead-letter into them.
        let (senders, dead_letter_senders): (Vec<_>, Vec<_>) = senders
            .into_iter()
            .zip(queues.iter())
            .partition(|(_, q)| !dead_letter.destinations().any(|d| d == q.name()));
        let mut senders: Vec<_> = senders.into_iter().map(|(s, _)| s).collect();
        let mut dead_letter_senders: Vec<_> = dead_letter_senders.into_iter().map(|(s, _)| s).collect();
        let mut routes = Vec::new();
        for r in &config.routes {
            let mut dests = Vec::new();
            for d in &r.destinations {
                let i = *index
                    .get(d.as_str())
                    .ok_or_else(|| CollectorError::UnknownDestination {
                        log_source: r.log_source.clone(),
                        destination: d.clone(),
                    })?;
                dests.push((i, shapes[i]));
            }
            routes.push(CompiledRoute {
                log_source: Arc::from(r.log_source.as_str()),
                categories: r.categories.clone(),
                filter: r.filter.clone(),
                destinations: dests,
                max_record_bytes: usize::try_from(r.max_record_bytes.unwrap_or(crate::api::DEFAULT_MAX_RECORD_BYTES))
                    .unwrap_or(usize::MAX),
            });
        }
        let health_of: Vec<(String, Arc<DestinationHealth>)> = queues
            .iter()
            .map(|q| (q.name().to_string(), q.health().clone()))
            .collect();

        let source_kind = config.source.kind_name();
        let data_loss_seconds = prometheus::IntCounterVec::new(
            prometheus::Opts::new(
                "siembridge_collector_data_loss_seconds_total",
                "Seconds of source time that could not be collected (expired content, retention passed)",
            ),
            &["stream"],
        )?;
        self.registry.register(Box::new(data_loss_seconds.clone()))?;
        let source_status = Arc::new(sources::SourceStatus::with_metric(data_loss_seconds));
        let source_health = Arc::new(SourceHealth::default());
        let mut source = sources::build(
            &config.source,
            &config.secrets,
            SourceContext {
                collector: collector.clone(),
                checkpoints: store.clone(),
                status: source_status.clone(),
                secrets: config.secrets.clone(),
                health: source_health.clone(),
            },
        )
        .await?;

        let trackers: Arc<Mutex<BTreeMap<String, StreamTracker>>> = Arc::default();
        let checkpointer = Arc::new(Checkpointer {
            store: store.clone(),
            trackers: trackers.clone(),
            saved: Mutex::default(),
            failing: Mutex::default(),
            metrics: metrics.clone(),
        });
        let state = Arc::new(ReportState {
            collector: collector.clone(),
            routes: routes.clone(),
            destinations: health_of,
            dead_letters: dead_letter.clone(),
            source_error: Mutex::default(),
            source_status: source_status.clone(),
            source_health: source_health.clone(),
            checkpointer: checkpointer.clone(),
            gauges: Mutex::new(StateGauges::register(
                &self.registry,
                &metrics,
                config,
                chrono::Utc::now().timestamp(),
            )?),
        });
        let reporter = Arc::new(ReportWriter::new(config.report.clone()));

        // Background: checkpoints, report, telemetry.
        let background = CancellationToken::new();
        let cp_task = {
            let (cp, stop, every) = (checkpointer.clone(), background.clone(), self.checkpoint_interval);
            tokio::spawn(async move {
                let mut tick = tokio::time::interval(every);
                tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
                loop {
                    tokio::select! {
                        _ = stop.cancelled() => break,
                        _ = tick.tick() => cp.flush().await,
                    }
                }
            })
        };
        let report_task = {
            let (st, rw, stop, every) = (
                state.clone(),
                reporter.clone(),
                background.clone(),
                self.report_interval,
            );
            tokio::spawn(async move {
                let mut tick = tokio::time::interval(every);
                loop {
                    tokio::select! {
                        _ = stop.cancelled() => break,
                        _ = tick.tick() => rw.publish(&st.build()).await,
                    }
                }
            })
        };
        if let Some(listen) = &config.telemetry.listen {
            let addr = listen.parse().map_err(|_| CollectorError::Listen(listen.clone()))?;
            let (registry, health, stop) = (self.registry.clone(), self.health.clone(), background.clone());
            tokio::spawn(async move {
                if let Err(e) =
                    crate::telemetry::serve(addr, registry, health, async move { stop.cancelled().await }).await
                {
                    tracing::error!(error = %e, "metrics endpoint failed");
                }
            });
        }
        self.health.set_ready(true);
        tracing::info!(collector = %collector, source = source_kind, checkpoints = %store.describe(), "collector started");

        // The pipeline.
        let mut router = Router {
            largest_record: routes.iter().map(|r| r.max_record_bytes).max().unwrap_or(0),
            routes,
            queues,
            dead_letter: dead_letter.clone(),
            metrics: metrics.clone(),
            source_kind,
            trackers: trackers.clone(),
            units: 0,
            records: 0,
            started: Instant::now(),
        };
        let mut source_finished = false;
        let mut failure = None;
        loop {
            let batch = tokio::select! {
                _ = shutdown.cancelled() => break,
                b = source.next_batch() => b,
            };
            match batch {
                Ok(Some(batch)) => {
                    let queues_depth = tokio::select! {
                        _ = shutdown.cancelled() => break,
                        r = router.process(batch) => r,
                    };
                    if let Err(e) = queues_depth {
                        tracing::error!(collector = %collector, error = %e, "pipeline stopped");
                        break;
                    }
                }
                Ok(None) => {
                    source_finished = true;
                    break;
                }
                Err(e) => {
                    tracing::error!(collector = %collector, error = %e, "source failed");
                    *state.source_error.lock().unwrap_or_else(|p| p.into_inner()) = Some(e.to_string());
                    failure = Some(e);
                    break;
                }
            }
        }
        let (units, records) = (router.units, router.records);
        tracing::info!(collector = %collector, units, records, elapsed_ms = router.started.elapsed().as_millis() as u64,
            "source {}; draining destinations", if source_finished { "finished" } else { "stopped" });
        drop(router); // closes the destination queues: senders finish what they hold
        let drain = async {
            futures::future::join_all(senders.iter_mut()).await;
            dead_letter.close();
            futures::future::join_all(dead_letter_senders.iter_mut()).await;
        };
        let drained = if source_finished {
            tokio::select! {
                _ = drain => true,
                _ = async { shutdown.cancelled().await; tokio::time::sleep(self.drain_timeout).await } => false,
            }
        } else {
            tokio::time::timeout(self.drain_timeout, drain).await.is_ok()
        };
        dead_letter.close();
        if !drained {
            tracing::warn!(collector = %collector, "destinations did not drain in time; undelivered events will be read again on restart");
            for s in senders.iter().chain(&dead_letter_senders) {
                s.abort();
            }
        }
        background.cancel();
        let _ = cp_task.await;
        let _ = report_task.await;
        checkpointer.flush().await;
        source.close().await;
        reporter.publish(&state.build()).await;
        let mut fully = checkpointer.failures().is_empty();
        let (mut undelivered, mut unfinished_units) = (0, 0);
        for t in trackers.lock().unwrap_or_else(|p| p.into_inner()).values() {
            let inflight = t.lock();
            fully &= inflight.open_units() == 0;
            undelivered += inflight.pending_deliveries();
            unfinished_units += inflight.open_units() as u64;
        }
        // What was saved, never an acknowledged position the store did not take.
        let positions = checkpointer.positions();
        if let Some(e) = failure {
            return Err(e.into());
        }
        Ok(RunSummary {
            units,
            records,
            source_finished,
            fully_checkpointed: fully && drained,
            positions,
            undelivered,
            unfinished_units,
            dead_letter_failures: dead_letter.failed_records(),
        })
    }
}

/// Decode, normalize and route source batches into the destination queues.
struct Router {
    routes: Vec<CompiledRoute>,
    /// The largest `maxRecordBytes` of the routes: longer records are not even parsed.
    largest_record: usize,
    queues: Vec<DestinationQueue>,
    dead_letter: Arc<DeadLetters>,
    metrics: CollectorMetrics,
    source_kind: &'static str,
    trackers: Arc<Mutex<BTreeMap<String, StreamTracker>>>,
    units: u64,
    records: u64,
    started: Instant,
}

impl Router {
    fn tracker(&self, stream: &str) -> StreamTracker {
        let mut map = self.trackers.lock().unwrap_or_else(|p| p.into_inner());
        map.entry(stream.to_string())
            .or_insert_with(|| StreamTracker::new(stream, None))
            .clone()
    }

    async fn process(&mut self, batch: SourceBatch) -> Result<(), delivery::EnqueueError> {
        let tracker = self.tracker(&batch.stream);
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
        for unit in batch.units {
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
                guard.stream().lock().add_pending(guard.seq(), letters.len() as u32);
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
                                guard.stream().lock().add_pending(guard.seq(), 1);
                                queue
                                    .enqueue(Event {
                                        body,
                                        id: event_id.clone(),
                                        log_source: route.log_source.clone(),
                                        recognized: recognized.clone(),
                                        record: raw.bytes().clone(),
                                        ack: guard.clone(),
                                        dead_letter: None,
                                        _slot: None,
                                    })
                                    .await?;
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
            }
            guard.ack();
        }
        Ok(())
    }

    /// Parse a record once for every route and shape. A record larger than every route allows
    /// is not parsed at all (it is dead-lettered by size); one that does not parse keeps the
    /// reason, and its `category` field for routing.
    fn parse(&self, raw: &RawRecord, hint: SourceHint<'_>) -> RecordView {
        let text = raw.get();
        if raw.len() > self.largest_record {
            return RecordView {
                category: route::category_of_unparsed(text),
                recognized: None,
                parsed: Err(format!(
                    "record of {} bytes is larger than any LogSource takes",
                    raw.len()
                )),
            };
        }
        match parse_record(text) {
            Ok(p) => {
                if p.repaired {
                    self.metrics
                        .records_repaired
                        .with_label_values(&[self.source_kind])
                        .inc();
                }
                let recognized = recognize(&p.value, hint);
                RecordView {
                    category: category_from(&recognized, &p.value),
                    recognized: Some(recognized),
                    parsed: Ok(p),
                }
            }
            Err(e) => RecordView {
                category: route::category_of_unparsed(text),
                recognized: None,
                parsed: Err(e.to_string()),
            },
        }
    }

    /// The body of one shape: `raw` is the record's own bytes (shared, not copied), whether or
    /// not it parsed; `ecs` needs the parsed record.
    fn body(
        &self,
        shape: Shape,
        raw: &RawRecord,
        record: &RecordView,
        hint: SourceHint<'_>,
        record_id: &str,
    ) -> Result<Bytes, String> {
        match shape {
            Shape::Raw => Ok(raw.bytes().clone()),
            Shape::Ecs | Shape::EcsWithOriginal => {
                let (p, recognized) = match (&record.parsed, &record.recognized) {
                    (Ok(p), Some(r)) => (p, r),
                    (Err(reason), _) => return Err(reason.clone()),
                    (Ok(_), None) => return Err("record was not recognised".to_string()),
                };
                let ctx = EcsContext {
                    source: hint,
                    event_id: Some(record_id),
                    original: (shape == Shape::EcsWithOriginal).then(|| raw.get()),
                };
                let n = normalize_json_recognized(&p.value, recognized.clone(), &ctx).map_err(|e| e.to_string())?;
                if !n.mapped {
                    self.metrics.count_unmapped(&n.recognized.category);
                }
                Ok(Bytes::from(n.json))
            }
        }
    }

    /// Dead-letter a record larger than its LogSource's `maxRecordBytes` for each destination of
    /// the route, keeping only its first [`DEAD_LETTER_KEEP_BYTES`].
    fn dead_letter_too_large(&self, guard: &AckRef, route: &CompiledRoute, raw: &RawRecord, id: &Arc<str>) {
        let keep = char_prefix(raw.get(), DEAD_LETTER_KEEP_BYTES).len();
        let reason = format!(
            "record of {} bytes is larger than maxRecordBytes ({}) of LogSource {}; the dead letter keeps its first {keep} bytes",
            raw.len(),
            route.max_record_bytes,
            route.log_source
        );
        for &(di, _) in &route.destinations {
            self.dead_letter_record(
                di,
                Letter {
                    stage: Stage::Decode,
                    reason: reason.clone(),
                    log_source: route.log_source.clone(),
                    destination: Some(Arc::from(self.queues[di].name())),
                    id: Some(id.clone()),
                    record: raw.bytes().slice(..keep),
                    ack: guard.clone(),
                },
            );
        }
    }

    /// Write one record to the dead-letter sink for one destination and count it (metric and
    /// the destination's report). If the sink fails, the unit stays open: its checkpoint is not
    /// passed and the record is read again after a restart.
    fn dead_letter_record(&self, di: usize, letter: Letter) {
        let queue = &self.queues[di];
        // The unit waits for the dead letter: acknowledged once it is safe (written and synced,
        // or delivered by the LogSource's dead-letter destination), never if it cannot be.
        letter.ack.stream().lock().add_pending(letter.ack.seq(), 1);
        self.metrics
            .events_dead_lettered
            .with_label_values(&[queue.name(), letter.stage.as_str()])
            .inc();
        queue.health().events_dead_lettered.fetch_add(1, Ordering::Relaxed);
        self.dead_letter.submit(vec![letter]);
    }
}

/// How much of a record over `maxRecordBytes` (or of an undecodable part) a dead letter keeps.
pub const DEAD_LETTER_KEEP_BYTES: usize = 64 * 1024;

/// The longest prefix of `text` of at most `max` bytes that ends on a character boundary.
fn char_prefix(text: &str, max: usize) -> &str {
    let mut end = text.len().min(max);
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    &text[..end]
}

/// A record as the router sees it after its one parse.
struct RecordView {
    category: String,
    recognized: Option<Recognized>,
    /// The parsed record, or why it cannot be normalized.
    parsed: Result<ParsedRecord, String>,
}

/// The collector's dead letters: files from its config, and the dead-letter destination of each
/// route that names one.
fn dead_letters(config: &CollectorConfig, metrics: &CollectorMetrics) -> Result<DeadLetters, CollectorError> {
    let mut targets = HashMap::new();
    for r in &config.routes {
        if let Some(d) = &r.dead_letter {
            if !config.destinations.contains_key(d) {
                return Err(CollectorError::UnknownDestination {
                    log_source: r.log_source.clone(),
                    destination: d.clone(),
                });
            }
            targets.insert(Arc::from(r.log_source.as_str()), Arc::from(d.as_str()));
        }
    }
    Ok(DeadLetters::new(
        &config.dead_letter,
        targets,
        Some(metrics.log_source_dead_lettered.clone()),
    ))
}

/// The dead letters of a payload that failed to decode, in whole or in part. A payload nothing
/// could be read from is one dead letter with every original byte (a truncated envelope is not
/// cut into line fragments); otherwise each failed part is. Each goes to every LogSource of the
/// collector: the router cannot tell which of them the bytes were meant for.
fn decode_letters(
    payload: &Bytes,
    decoded: &crate::collector::decode::Decoded,
    routes: &[CompiledRoute],
    unit: &str,
    guard: &crate::collector::ack::AckRef,
) -> Vec<Letter> {
    let parts: Vec<(String, Bytes)> = if decoded.records.is_empty() {
        let mut reasons: Vec<String> = decoded.failures.iter().map(|f| f.error.to_string()).collect();
        reasons.dedup();
        vec![(reasons.join("; "), payload.clone())]
    } else {
        decoded
            .failures
            .iter()
            .map(|f| (f.error.to_string(), Bytes::copy_from_slice(f.text.as_bytes())))
            .collect()
    };
    let mut letters = Vec::new();
    for (i, (reason, bytes)) in parts.into_iter().enumerate() {
        for r in routes {
            letters.push(Letter {
                stage: Stage::Decode,
                reason: reason.clone(),
                log_source: r.log_source.clone(),
                destination: None,
                id: Some(Arc::from(format!("{unit}/undecodable/{i}").as_str())),
                record: bytes.clone(),
                ack: guard.clone(),
            });
        }
    }
    letters
}

/// Position and source state of the checkpoint last saved for a stream, and when.
type SavedCheckpoint = (String, Option<crate::collector::ack::SharedState>, Instant);

/// Writes the watermark of every stream that moved.
struct Checkpointer {
    store: Arc<dyn CheckpointStore>,
    trackers: Arc<Mutex<BTreeMap<String, StreamTracker>>>,
    /// Per stream, the position and source state last saved, and when.
    saved: Mutex<HashMap<String, SavedCheckpoint>>,
    /// Per stream whose last write failed: since when (RFC 3339) and why.
    failing: Mutex<BTreeMap<String, (String, String)>>,
    metrics: CollectorMetrics,
}

impl Checkpointer {
    async fn flush(&self) {
        let due: Vec<(String, String, Option<SharedState>)> = {
            let trackers = self.trackers.lock().unwrap_or_else(|p| p.into_inner());
            let saved = self.saved.lock().unwrap_or_else(|p| p.into_inner());
            trackers
                .iter()
                .filter_map(|(id, t)| {
                    let inflight = t.lock();
                    let w = inflight.watermark()?;
                    let state = inflight.watermark_state();
                    // The state moves without the position too: a Graph window's pages all carry
                    // the window's start, each with more delivered ids in its state.
                    let moved = saved.get(id).is_none_or(|(p, s, _)| {
                        p != w
                            || match (s, &state) {
                                (Some(a), Some(b)) => !Arc::ptr_eq(a, b),
                                (None, None) => false,
                                _ => true,
                            }
                    });
                    if !moved {
                        self.metrics.checkpoint_age_seconds.with_label_values(&[id]).set(
                            saved
                                .get(id)
                                .map(|(_, _, at)| at.elapsed().as_secs() as i64)
                                .unwrap_or(0),
                        );
                    }
                    moved.then(|| (id.clone(), w.to_string(), state))
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
    fn positions(&self) -> BTreeMap<String, String> {
        let saved = self.saved.lock().unwrap_or_else(|p| p.into_inner());
        saved.iter().map(|(id, (p, _, _))| (id.clone(), p.clone())).collect()
    }

    /// Streams whose checkpoint is not being written, as report lines.
    fn failures(&self) -> Vec<String> {
        let failing = self.failing.lock().unwrap_or_else(|p| p.into_inner());
        failing
            .iter()
            .map(|(id, (since, why))| format!("checkpoint of {id} not written since {since}: {why}"))
            .collect()
    }
}

/// What the report is built from.
struct ReportState {
    collector: String,
    routes: Vec<CompiledRoute>,
    destinations: Vec<(String, Arc<DestinationHealth>)>,
    dead_letters: Arc<DeadLetters>,
    source_error: Mutex<Option<String>>,
    source_status: Arc<sources::SourceStatus>,
    source_health: Arc<SourceHealth>,
    /// Cursors come from what it saved, never from acknowledged positions ahead of it.
    checkpointer: Arc<Checkpointer>,
    /// The alerting gauges, refreshed with every report.
    gauges: Mutex<StateGauges>,
}

impl ReportState {
    fn build(&self) -> CollectorReport {
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
        drop(gauges);
        let mut gauges = self.gauges.lock().unwrap_or_else(|p| p.into_inner());
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

/// The record's own id where its source guarantees one (O365 `Id`, Graph `id`): the same record
/// read twice (overlapping windows, two content blobs) then has the same id downstream.
fn stable_record_id(origin: &RecordOrigin, value: &serde_json::Value) -> Option<String> {
    let field = match origin {
        RecordOrigin::ManagementActivity(_) => "Id",
        RecordOrigin::Graph(_) => "id",
        RecordOrigin::Diagnostic | RecordOrigin::Unknown => return None,
    };
    match value.get(field)? {
        serde_json::Value::String(s) if !s.is_empty() => Some(s.clone()),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn api_records_keep_their_own_id_and_others_get_none() {
        let o365 = serde_json::json!({"Id": "aaaaaaaa-0000-0000-0000-000000000001", "RecordType": 15});
        let graph = serde_json::json!({"id": "g-1"});
        let ma = RecordOrigin::ManagementActivity("Audit.General".into());
        assert_eq!(
            stable_record_id(&ma, &o365).as_deref(),
            Some("aaaaaaaa-0000-0000-0000-000000000001")
        );
        assert_eq!(
            stable_record_id(&RecordOrigin::Graph("signIns".into()), &graph).as_deref(),
            Some("g-1")
        );
        assert_eq!(stable_record_id(&RecordOrigin::Diagnostic, &o365), None);
        assert_eq!(stable_record_id(&ma, &serde_json::json!({"Id": 5})), None);
        assert_eq!(stable_record_id(&ma, &serde_json::json!({"Id": ""})), None);
    }
}
