//! Wiring: the destinations a route uses (each behind its queue and sender task), the compiled
//! routes, and the dead letters, from the collector config.

use std::collections::HashMap;
use std::sync::Arc;

use tokio::task::JoinHandle;

use super::CollectorError;
use crate::collector::dead_letter::DeadLetters;
use crate::collector::delivery::{self, DeliverySettings, DestinationHealth, DestinationQueue};
use crate::collector::destinations::{self, Destination};
use crate::collector::metrics::CollectorMetrics;
use crate::collector::route::{CompiledRoute, Shape};
use crate::config::CollectorConfig;

/// The destinations and routes of a run.
pub(super) struct Wired {
    /// One queue per destination, indexed by the routes.
    pub queues: Vec<DestinationQueue>,
    /// Sender tasks of the destinations that are no dead-letter destination.
    pub senders: Vec<JoinHandle<()>>,
    /// Sender tasks of the dead-letter destinations: they drain last, the others may still
    /// dead-letter into them.
    pub dead_letter_senders: Vec<JoinHandle<()>>,
    pub routes: Vec<CompiledRoute>,
    /// Health of each destination, by name, for the report.
    pub health: Vec<(String, Arc<DestinationHealth>)>,
}

/// Start every destination of the config (`overrides` replace those built from their spec) and
/// compile the routes over them.
pub(super) fn wire(
    config: &CollectorConfig,
    overrides: &HashMap<String, Arc<dyn Destination>>,
    metrics: &CollectorMetrics,
    dead_letter: &Arc<DeadLetters>,
) -> Result<Wired, CollectorError> {
    let mut queues: Vec<DestinationQueue> = Vec::new();
    let mut senders = Vec::new();
    let mut shapes: Vec<Shape> = Vec::new();
    let mut index: HashMap<&str, usize> = HashMap::new();
    for (name, spec) in &config.destinations {
        let destination = match overrides.get(name) {
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
    let (senders, dead_letter_senders): (Vec<_>, Vec<_>) = senders
        .into_iter()
        .zip(queues.iter())
        .partition(|(_, q)| !dead_letter.destinations().any(|d| d == q.name()));
    let senders: Vec<_> = senders.into_iter().map(|(s, _)| s).collect();
    let dead_letter_senders: Vec<_> = dead_letter_senders.into_iter().map(|(s, _)| s).collect();
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
    let health = queues
        .iter()
        .map(|q| (q.name().to_string(), q.health().clone()))
        .collect();
    Ok(Wired {
        queues,
        senders,
        dead_letter_senders,
        routes,
        health,
    })
}

/// The collector's dead letters: files from its config, and the dead-letter destination of each
/// route that names one.
pub(super) fn dead_letters(
    config: &CollectorConfig,
    metrics: &CollectorMetrics,
) -> Result<DeadLetters, CollectorError> {
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
