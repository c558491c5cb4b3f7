//! The collector runtime: wires a source, the router, the destinations, the checkpointer, the
//! report and telemetry, and runs them until the source ends or shutdown is asked.
//!
//! - `wiring`: destinations, queues and compiled routes from the config.
//! - `background`: checkpoint and report ticks, the telemetry server.
//! - `checkpointer`: writes each stream's watermark when it moves.
//! - `report_state`: what the collector report is built from.
//! - The main loop and the drain are here ([`Collector::run`]); routing is
//!   [`crate::collector::route::router`].

mod background;
mod checkpointer;
mod report_state;
mod wiring;

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use prometheus::Registry;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use crate::collector::ack::Streams;
use crate::collector::checkpoint::{self, CheckpointError};
use crate::collector::dead_letter::DeadLetters;
use crate::collector::destinations::{BuildError, Destination};
use crate::collector::metrics::CollectorMetrics;
use crate::collector::report::ReportWriter;
use crate::collector::route::router::Router;
use crate::collector::sources::{self, Source, SourceContext, SourceError, SourceHealth};
use crate::config::{CollectorConfig, CONFIG_VERSION};
use crate::telemetry::Health;
use background::{Background, BackgroundSettings};
use checkpointer::Checkpointer;
use report_state::ReportState;

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
        let dead_letter = Arc::new(wiring::dead_letters(config, &metrics)?);
        let wired = wiring::wire(config, &self.overrides, &metrics, &dead_letter)?;

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

        let streams = Streams::default();
        let checkpointer = Arc::new(Checkpointer::new(store.clone(), streams.clone(), metrics.clone()));
        let state = Arc::new(ReportState {
            collector: collector.clone(),
            routes: wired.routes.clone(),
            destinations: wired.health,
            dead_letters: dead_letter.clone(),
            source_error: Mutex::default(),
            source_status: source_status.clone(),
            source_health: source_health.clone(),
            checkpointer: checkpointer.clone(),
            gauges: Mutex::new(crate::collector::metrics::StateGauges::register(
                &self.registry,
                &metrics,
                config,
                chrono::Utc::now().timestamp(),
            )?),
        });
        let reporter = Arc::new(ReportWriter::new(config.report.clone()));
        let background = Background::start(BackgroundSettings {
            checkpointer: checkpointer.clone(),
            checkpoint_interval: self.checkpoint_interval,
            state: state.clone(),
            reporter: reporter.clone(),
            report_interval: self.report_interval,
            listen: config.telemetry.listen.clone(),
            registry: self.registry.clone(),
            health: self.health.clone(),
        })?;
        self.health.set_ready(true);
        tracing::info!(collector = %collector, source = source_kind, checkpoints = %store.describe(), "collector started");

        let mut router = Router::new(
            wired.routes,
            wired.queues,
            dead_letter.clone(),
            metrics.clone(),
            source_kind,
            streams.clone(),
        );
        let pumped = pump(&mut *source, &mut router, &shutdown, &collector).await;
        if let Err(e) = &pumped {
            *state.source_error.lock().unwrap_or_else(|p| p.into_inner()) = Some(e.to_string());
        }
        let source_finished = matches!(pumped, Ok(true));
        let (units, records) = router.counts();
        tracing::info!(collector = %collector, units, records, elapsed_ms = router.started().elapsed().as_millis() as u64,
            "source {}; draining destinations", if source_finished { "finished" } else { "stopped" });
        drop(router); // closes the destination queues: senders finish what they hold
        let drained = self
            .drain(
                wired.senders,
                wired.dead_letter_senders,
                &dead_letter,
                source_finished,
                &shutdown,
            )
            .await;
        if !drained {
            tracing::warn!(collector = %collector, "destinations did not drain in time; undelivered events will be read again on restart");
        }
        background.stop().await;
        checkpointer.flush().await;
        source.close().await;
        reporter.publish(&state.build()).await;
        let open = streams.outstanding();
        let fully = checkpointer.failures().is_empty() && open.units == 0;
        // What was saved, never an acknowledged position the store did not take.
        let positions = checkpointer.positions();
        let failure = pumped.err();
        if let Some(e) = failure {
            return Err(e.into());
        }
        Ok(RunSummary {
            units,
            records,
            source_finished,
            fully_checkpointed: fully && drained,
            positions,
            undelivered: open.deliveries,
            unfinished_units: open.units,
            dead_letter_failures: dead_letter.failed_records(),
        })
    }

    /// Wait for the destinations to deliver what they hold, the dead-letter destinations last:
    /// all of it when the source finished (unless a shutdown comes, then for the drain timeout),
    /// else for at most the drain timeout. Senders still running then are aborted; returns
    /// whether everything drained.
    async fn drain(
        &self,
        mut senders: Vec<JoinHandle<()>>,
        mut dead_letter_senders: Vec<JoinHandle<()>>,
        dead_letter: &DeadLetters,
        source_finished: bool,
        shutdown: &CancellationToken,
    ) -> bool {
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
            for s in senders.iter().chain(&dead_letter_senders) {
                s.abort();
            }
        }
        drained
    }
}

/// The main loop: source batches into the router until the source ends (`Ok(true)`), a shutdown
/// or a stopped destination (`Ok(false)`), or the source fails.
async fn pump(
    source: &mut dyn Source,
    router: &mut Router,
    shutdown: &CancellationToken,
    collector: &str,
) -> Result<bool, SourceError> {
    loop {
        let batch = tokio::select! {
            _ = shutdown.cancelled() => return Ok(false),
            b = source.next_batch() => b,
        };
        match batch {
            Ok(Some(batch)) => {
                let routed = tokio::select! {
                    _ = shutdown.cancelled() => return Ok(false),
                    r = router.process(batch) => r,
                };
                if let Err(e) = routed {
                    tracing::error!(collector = %collector, error = %e, "pipeline stopped");
                    return Ok(false);
                }
            }
            Ok(None) => return Ok(true),
            Err(e) => {
                tracing::error!(collector = %collector, error = %e, "source failed");
                return Err(e);
            }
        }
    }
}
