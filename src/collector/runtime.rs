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
use crate::collector::dead_letter::{DeadLetter, DeadLetterSink, Stage};
use crate::collector::decode::{decode_bytes, RawRecord};
use crate::collector::delivery::{self, DeliverySettings, DestinationHealth, DestinationQueue};
use crate::collector::destinations::{self, BuildError, Destination, Event};
use crate::collector::metrics::CollectorMetrics;
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
        let dead_letter = Arc::new(DeadLetterSink::new(&config.dead_letter));

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
            metrics: metrics.clone(),
        });
        let state = Arc::new(ReportState {
            collector: collector.clone(),
            routes: routes.clone(),
            destinations: health_of,
            queue_depths: Mutex::default(),
            trackers: trackers.clone(),
            source_error: Mutex::default(),
            source_status: source_status.clone(),
            source_health: source_health.clone(),
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
                    *state.queue_depths.lock().unwrap_or_else(|p| p.into_inner()) =
                        router.queues.iter().map(|q| q.depth() as u64).collect();
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
        let drain = futures::future::join_all(senders.iter_mut());
        let drained = if source_finished {
            tokio::select! {
                _ = drain => true,
                _ = async { shutdown.cancelled().await; tokio::time::sleep(self.drain_timeout).await } => false,
            }
        } else {
            tokio::time::timeout(self.drain_timeout, drain).await.is_ok()
        };
        if !drained {
            tracing::warn!(collector = %collector, "destinations did not drain in time; undelivered events will be read again on restart");
            for s in &senders {
                s.abort();
            }
        }
        *state.queue_depths.lock().unwrap_or_else(|p| p.into_inner()) = Vec::new();
        background.cancel();
        let _ = cp_task.await;
        let _ = report_task.await;
        checkpointer.flush().await;
        source.close().await;
        reporter.publish(&state.build()).await;
        let mut fully = true;
        let mut positions = BTreeMap::new();
        for (id, t) in trackers.lock().unwrap_or_else(|p| p.into_inner()).iter() {
            let inflight = t.lock();
            fully &= inflight.open_units() == 0;
            if let Some(w) = inflight.watermark() {
                positions.insert(id.clone(), w.to_string());
            }
        }
        if let Some(e) = failure {
            return Err(e.into());
        }
        Ok(RunSummary {
            units,
            records,
            source_finished,
            fully_checkpointed: fully && drained,
            positions,
        })
    }
}

/// Decode, normalize and route source batches into the destination queues.
struct Router {
    routes: Vec<CompiledRoute>,
    /// The largest `maxRecordBytes` of the routes: longer records are not even parsed.
    largest_record: usize,
    queues: Vec<DestinationQueue>,
    dead_letter: Arc<DeadLetterSink>,
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
                // A huge undecodable part is kept in part, and the reason says so.
                let kept: Vec<(&str, String)> = decoded
                    .failures
                    .iter()
                    .map(|f| {
                        let keep = char_prefix(&f.text, DEAD_LETTER_KEEP_BYTES);
                        let mut reason = f.error.to_string();
                        if keep.len() < f.text.len() {
                            reason.push_str(&format!(
                                "; the dead letter keeps the first {} of its {} bytes",
                                keep.len(),
                                f.text.len()
                            ));
                        }
                        (keep, reason)
                    })
                    .collect();
                let entries: Vec<DeadLetter<'_>> = kept
                    .iter()
                    .map(|(record, reason)| DeadLetter {
                        stage: Stage::Decode,
                        reason,
                        log_source: None,
                        destination: None,
                        record: record.as_bytes(),
                    })
                    .collect();
                if let Err(e) = self.dead_letter.write(&entries) {
                    // Keep the unit open: it must not be checkpointed past.
                    tracing::error!(error = %e, "undecodable records could not be dead-lettered");
                    continue;
                }
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
                        self.dead_letter_too_large(&guard, route, &raw);
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
                                        ack: guard.clone(),
                                        _slot: None,
                                    })
                                    .await?;
                            }
                            Err(reason) => {
                                let reason = format!("normalization failed: {reason}");
                                self.dead_letter_record(&guard, route, di, Stage::Normalize, &reason, raw.bytes());
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
    fn dead_letter_too_large(&self, guard: &AckRef, route: &CompiledRoute, raw: &RawRecord) {
        let keep = char_prefix(raw.get(), DEAD_LETTER_KEEP_BYTES).len();
        let reason = format!(
            "record of {} bytes is larger than maxRecordBytes ({}) of LogSource {}; the dead letter keeps its first {keep} bytes",
            raw.len(),
            route.max_record_bytes,
            route.log_source
        );
        for &(di, _) in &route.destinations {
            self.dead_letter_record(guard, route, di, Stage::Decode, &reason, &raw.bytes()[..keep]);
        }
    }

    /// Write one record to the dead-letter sink for one destination and count it (metric and
    /// the destination's report). If the sink fails, the unit stays open: its checkpoint is not
    /// passed and the record is read again after a restart.
    fn dead_letter_record(
        &self,
        guard: &AckRef,
        route: &CompiledRoute,
        di: usize,
        stage: Stage,
        reason: &str,
        record: &[u8],
    ) {
        let queue = &self.queues[di];
        let entry = DeadLetter {
            stage,
            reason,
            log_source: Some(&route.log_source),
            destination: Some(queue.name()),
            record,
        };
        if let Err(e) = self.dead_letter.write(&[entry]) {
            tracing::error!(error = %e, destination = queue.name(), "record could not be dead-lettered; its unit stays open");
            guard.stream().lock().add_pending(guard.seq(), 1); // never acked
            return;
        }
        let stage_label = match stage {
            Stage::Decode => "decode",
            Stage::Normalize => "normalize",
            Stage::Overflow => "overflow",
            Stage::Deliver => "deliver",
        };
        self.metrics
            .events_dead_lettered
            .with_label_values(&[queue.name(), stage_label])
            .inc();
        let health = queue.health();
        health.events_dead_lettered.fetch_add(1, Ordering::Relaxed);
        *health
            .done_per_log_source
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .entry(route.log_source.clone())
            .or_insert(0) += 1;
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

/// Writes the watermark of every stream that moved.
struct Checkpointer {
    store: Arc<dyn CheckpointStore>,
    trackers: Arc<Mutex<BTreeMap<String, StreamTracker>>>,
    saved: Mutex<HashMap<String, (String, Instant)>>,
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
                    let moved = saved.get(id).is_none_or(|(s, _)| s != w);
                    if !moved {
                        self.metrics
                            .checkpoint_age_seconds
                            .with_label_values(&[id])
                            .set(saved.get(id).map(|(_, at)| at.elapsed().as_secs() as i64).unwrap_or(0));
                    }
                    moved.then(|| (id.clone(), w.to_string(), inflight.watermark_state()))
                })
                .collect()
        };
        for (id, position, state) in due {
            let cp = Checkpoint {
                position: position.clone(),
                state: state.map(|s| s.to_json()),
                updated: chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Millis, true),
            };
            match self.store.save(&id, &cp).await {
                Ok(()) => {
                    tracing::debug!(stream = %id, position = %position, "checkpoint written");
                    self.metrics.checkpoints_written.with_label_values(&[&id]).inc();
                    self.metrics.checkpoint_age_seconds.with_label_values(&[&id]).set(0);
                    self.saved
                        .lock()
                        .unwrap_or_else(|p| p.into_inner())
                        .insert(id, (position, Instant::now()));
                }
                Err(e) => tracing::error!(stream = %id, error = %e, "checkpoint could not be written"),
            }
        }
    }
}

/// What the report is built from.
struct ReportState {
    collector: String,
    routes: Vec<CompiledRoute>,
    destinations: Vec<(String, Arc<DestinationHealth>)>,
    queue_depths: Mutex<Vec<u64>>,
    trackers: Arc<Mutex<BTreeMap<String, StreamTracker>>>,
    source_error: Mutex<Option<String>>,
    source_status: Arc<sources::SourceStatus>,
    source_health: Arc<SourceHealth>,
}

impl ReportState {
    fn build(&self) -> CollectorReport {
        let cursors: BTreeMap<String, String> = self
            .trackers
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .iter()
            .filter_map(|(id, t)| t.watermark().map(|w| (id.clone(), w)))
            .collect();
        let source_error = self
            .source_error
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
            .or_else(|| self.source_health.error());
        let depths = self.queue_depths.lock().unwrap_or_else(|p| p.into_inner()).clone();
        let progress = self.source_status.snapshot();
        let throttled = self.source_status.is_throttled();
        let mut report = CollectorReport {
            reporter: std::env::var("HOSTNAME").unwrap_or_else(|_| self.collector.clone()),
            time: chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
            partitions: self.source_health.partitions(),
            ..Default::default()
        };
        for r in &self.routes {
            let forwarded = r
                .destinations
                .iter()
                .map(|(i, _)| self.destinations[*i].1.done_for(&r.log_source))
                .min()
                .unwrap_or(0);
            report.log_sources.insert(
                r.log_source.to_string(),
                LogSourceReport {
                    events_forwarded: forwarded,
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
        for (i, (name, h)) in self.destinations.iter().enumerate() {
            report.destinations.insert(
                name.clone(),
                DestinationReport {
                    healthy: h.healthy.load(Ordering::Relaxed),
                    events_sent: h.events_sent.load(Ordering::Relaxed),
                    events_dead_lettered: h.events_dead_lettered.load(Ordering::Relaxed),
                    queue_depth: depths.get(i).copied().unwrap_or(0),
                    last_success_time: h.last_success_time.lock().unwrap_or_else(|p| p.into_inner()).clone(),
                    last_error: h.last_error.lock().unwrap_or_else(|p| p.into_inner()).clone(),
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
