//! The shared delivery machinery of every destination: bounded buffer, batching, concurrency,
//! retries (exponential backoff, full jitter, `Retry-After`), dead-lettering, acknowledgements,
//! metrics and health.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use rand::Rng;
use tokio::sync::{mpsc, Semaphore};
use tokio::task::JoinSet;
use tokio::time::Instant;

use crate::api::{BatchSpec, BufferSpec, OverflowPolicy, RetrySpec};
use crate::collector::ack::ack_all;
use crate::collector::dead_letter::{DeadLetters, Letter, Stage};
use crate::collector::destinations::{Destination, Event, EventOutcome, SendOutcome};
use crate::collector::metrics::DestinationMetrics;

/// What the collector knows of a destination's health, for the report.
#[derive(Debug, Default)]
pub struct DestinationHealth {
    pub events_sent: AtomicU64,
    pub events_dead_lettered: AtomicU64,
    pub healthy: AtomicBool,
    pub last_success_time: Mutex<Option<String>>,
    pub last_error: Mutex<Option<String>>,
    /// Events delivered, per LogSource (dead letters are counted by [`DeadLetters`]).
    pub done_per_log_source: Mutex<HashMap<Arc<str>, u64>>,
}

impl DestinationHealth {
    fn success(&self) {
        self.healthy.store(true, Ordering::Relaxed);
        *self.last_success_time.lock().unwrap_or_else(|p| p.into_inner()) = Some(now());
    }
    fn failure(&self, reason: &str) {
        self.healthy.store(false, Ordering::Relaxed);
        *self.last_error.lock().unwrap_or_else(|p| p.into_inner()) = Some(reason.to_string());
    }
    fn done(&self, events: &[&Event]) {
        let mut map = self.done_per_log_source.lock().unwrap_or_else(|p| p.into_inner());
        for e in events {
            match map.get_mut(&e.log_source) {
                Some(n) => *n += 1,
                None => {
                    map.insert(e.log_source.clone(), 1);
                }
            }
        }
    }
    /// Events of a LogSource delivered by this destination.
    pub fn done_for(&self, log_source: &str) -> u64 {
        self.done_per_log_source
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get(log_source)
            .copied()
            .unwrap_or(0)
    }
}

fn now() -> String {
    chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
}

/// Why an event could not be handed to a destination.
#[derive(Debug, thiserror::Error)]
pub enum EnqueueError {
    #[error("destination {0} stopped")]
    Stopped(String),
}

/// The router's side of a destination: a bounded buffer in front of its sender task.
#[derive(Debug)]
pub struct DestinationQueue {
    name: Arc<str>,
    tx: mpsc::UnboundedSender<Event>,
    slots: Arc<Semaphore>,
    capacity: usize,
    policy: OverflowPolicy,
    metrics: DestinationMetrics,
    health: Arc<DestinationHealth>,
    dead_letter: Arc<DeadLetters>,
}

impl DestinationQueue {
    /// Put an event in the buffer: waits for room (`block`) or dead-letters it (`deadLetter`).
    pub async fn enqueue(&self, mut event: Event) -> Result<(), EnqueueError> {
        let permit = match self.policy {
            OverflowPolicy::Block => self
                .slots
                .clone()
                .acquire_owned()
                .await
                .map_err(|_| EnqueueError::Stopped(self.name.to_string()))?,
            OverflowPolicy::DeadLetter => match self.slots.clone().try_acquire_owned() {
                Ok(p) => p,
                Err(_) => {
                    let reason = format!("buffer of destination {} is full ({} events)", self.name, self.capacity);
                    self.dead_letter
                        .submit(vec![letter(&event, &self.name, Stage::Overflow, &reason)]);
                    self.metrics.dead_lettered_overflow.inc();
                    self.health.events_dead_lettered.fetch_add(1, Ordering::Relaxed);
                    return Ok(());
                }
            },
        };
        event._slot = Some(permit);
        self.tx
            .send(event)
            .map_err(|_| EnqueueError::Stopped(self.name.to_string()))?;
        self.metrics.queue_depth.set(self.depth() as i64);
        Ok(())
    }

    /// Events buffered or in flight.
    pub fn depth(&self) -> usize {
        self.capacity.saturating_sub(self.slots.available_permits())
    }

    /// Largest number of events held.
    pub fn capacity(&self) -> usize {
        self.capacity
    }

    pub fn health(&self) -> &Arc<DestinationHealth> {
        &self.health
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    /// A sender into this destination's queue for dead letters (no buffer slot: see
    /// [`DeadLetters`]). The sender task ends only once every such sender is dropped too.
    pub(crate) fn dead_letter_sender(&self) -> mpsc::UnboundedSender<Event> {
        self.tx.clone()
    }
}

/// Everything a destination's sender task needs.
pub struct DeliverySettings {
    pub name: String,
    pub destination: Arc<dyn Destination>,
    pub batch: BatchSpec,
    pub retry: RetrySpec,
    pub buffer: BufferSpec,
    pub concurrency: u32,
    pub metrics: DestinationMetrics,
    pub dead_letter: Arc<DeadLetters>,
}

/// Start a destination: returns the queue the router writes to and the sender task, which ends
/// once the queue is dropped and everything in it is delivered or dead-lettered.
pub fn start(settings: DeliverySettings) -> (DestinationQueue, tokio::task::JoinHandle<()>) {
    let (tx, rx) = mpsc::unbounded_channel();
    let capacity = settings.buffer.max_events.max(1) as usize;
    let health = Arc::new(DestinationHealth {
        healthy: AtomicBool::new(true),
        ..Default::default()
    });
    let queue = DestinationQueue {
        name: Arc::from(settings.name.as_str()),
        tx,
        slots: Arc::new(Semaphore::new(capacity)),
        capacity,
        policy: settings.buffer.when_full,
        metrics: settings.metrics.clone(),
        health: health.clone(),
        dead_letter: settings.dead_letter.clone(),
    };
    let slots = queue.slots.clone();
    let sender = Arc::new(Sender {
        settings,
        health,
        slots,
        capacity,
    });
    let task = tokio::spawn(sender.run(rx));
    (queue, task)
}

struct Sender {
    settings: DeliverySettings,
    health: Arc<DestinationHealth>,
    slots: Arc<Semaphore>,
    capacity: usize,
}

impl Sender {
    async fn run(self: Arc<Self>, mut rx: mpsc::UnboundedReceiver<Event>) {
        let max_events = self.settings.batch.max_events.max(1) as usize;
        let max_bytes = self.settings.batch.max_bytes.max(1) as usize;
        let latency = Duration::from_millis(self.settings.batch.max_latency_ms.max(1));
        let in_flight = Arc::new(Semaphore::new(self.settings.concurrency.max(1) as usize));
        let mut tasks = JoinSet::new();
        let mut carry: Option<Event> = None;
        loop {
            let first = match carry.take() {
                Some(e) => e,
                None => match rx.recv().await {
                    Some(e) => e,
                    None => break,
                },
            };
            let deadline = Instant::now() + latency;
            let mut bytes = first.body.len();
            let mut batch = vec![first];
            while batch.len() < max_events {
                let next = match rx.try_recv() {
                    Ok(e) => Some(e),
                    Err(mpsc::error::TryRecvError::Disconnected) => None,
                    Err(mpsc::error::TryRecvError::Empty) => {
                        tokio::select! {
                            e = rx.recv() => e,
                            _ = tokio::time::sleep_until(deadline) => None,
                        }
                    }
                };
                let Some(e) = next else { break };
                if bytes + e.body.len() > max_bytes {
                    carry = Some(e);
                    break;
                }
                bytes += e.body.len();
                batch.push(e);
            }
            let Ok(permit) = in_flight.clone().acquire_owned().await else {
                break;
            };
            let me = self.clone();
            tasks.spawn(async move {
                me.deliver(batch).await;
                drop(permit);
            });
            while tasks.try_join_next().is_some() {}
        }
        while tasks.join_next().await.is_some() {}
        self.update_depth();
    }

    fn update_depth(&self) {
        let depth = self.capacity.saturating_sub(self.slots.available_permits());
        self.settings.metrics.queue_depth.set(depth as i64);
    }

    /// Send a batch until every event is delivered or dead-lettered.
    async fn deliver(&self, mut pending: Vec<Event>) {
        let s = &self.settings;
        let started = Instant::now();
        let timeout = Duration::from_millis(s.retry.request_timeout_ms.max(1)) + Duration::from_secs(1);
        let mut attempt: u32 = 0;
        loop {
            attempt += 1;
            if attempt > 1 {
                s.metrics.retried.inc_by(pending.len() as u64);
            }
            let outcome = match tokio::time::timeout(timeout, s.destination.send(&pending)).await {
                Ok(o) => o,
                Err(_) => SendOutcome::Retry {
                    reason: "send timed out".into(),
                    after: None,
                },
            };
            let (retry, reason, after) = self.apply(outcome, pending);
            if retry.is_empty() {
                s.metrics.batch_duration.observe(started.elapsed().as_secs_f64());
                self.update_depth();
                return;
            }
            s.metrics.failed.inc_by(retry.len() as u64);
            s.metrics.up.set(0);
            self.health.failure(&reason);
            if s.retry.max_attempts.is_some_and(|max| attempt >= max) {
                let why = format!("gave up after {attempt} attempts: {reason}");
                self.reject(&retry, &why);
                s.metrics.batch_duration.observe(started.elapsed().as_secs_f64());
                self.update_depth();
                return;
            }
            // A server's `Retry-After` is honoured up to `maxBackoffMs`: a huge one must not stall the pipeline.
            let delay = after
                .map(|a| a.min(Duration::from_millis(s.retry.max_backoff_ms.max(1))))
                .unwrap_or_else(|| backoff(&s.retry, attempt));
            tracing::warn!(
                destination = %s.name,
                attempt,
                events = retry.len(),
                delay_ms = delay.as_millis() as u64,
                reason = %reason,
                "send failed; retrying"
            );
            tokio::time::sleep(delay).await;
            pending = retry;
        }
    }

    /// Settle what an outcome settles; returns the events to retry, the reason and the wait.
    fn apply(&self, outcome: SendOutcome, pending: Vec<Event>) -> (Vec<Event>, String, Option<Duration>) {
        match outcome {
            SendOutcome::Delivered => {
                self.delivered(&pending);
                (Vec::new(), String::new(), None)
            }
            SendOutcome::Rejected { reason } => {
                // A whole batch refused is a destination problem (credentials, configuration):
                // the health report shows it until the next success.
                self.settings.metrics.up.set(0);
                self.health.failure(&reason);
                self.reject(&pending, &reason);
                (Vec::new(), String::new(), None)
            }
            SendOutcome::Retry { reason, after } => (pending, reason, after),
            SendOutcome::PerEvent(outcomes) => {
                let mut delivered = Vec::new();
                let mut retry = Vec::new();
                let mut reason = String::new();
                let mut outcomes = outcomes.into_iter();
                for e in pending {
                    match outcomes.next() {
                        Some(EventOutcome::Delivered) => delivered.push(e),
                        Some(EventOutcome::Rejected { reason }) => self.reject(std::slice::from_ref(&e), &reason),
                        Some(EventOutcome::Retry { reason: r }) => {
                            reason = r;
                            retry.push(e);
                        }
                        None => {
                            reason = "destination returned fewer outcomes than events".into();
                            retry.push(e);
                        }
                    }
                }
                self.delivered(&delivered);
                (retry, reason, None)
            }
        }
    }

    fn delivered(&self, events: &[Event]) {
        if events.is_empty() {
            return;
        }
        let m = &self.settings.metrics;
        m.sent.inc_by(events.len() as u64);
        m.bytes_sent.inc_by(events.iter().map(|e| e.body.len() as u64).sum());
        m.up.set(1);
        self.health
            .events_sent
            .fetch_add(events.len() as u64, Ordering::Relaxed);
        self.health.success();
        // Dead letters this destination took for a LogSource count as dead-lettered there, not
        // as forwarded.
        let (dead, forwarded): (Vec<&Event>, Vec<&Event>) = events.iter().partition(|e| e.dead_letter.is_some());
        self.health.done(&forwarded);
        ack_all(forwarded.iter().map(|e| &e.ack));
        if !dead.is_empty() {
            self.settings.dead_letter.delivered(&dead);
        }
    }

    /// Give up on events: dead-letter them (their acks wait for the dead letter to be safe).
    fn reject(&self, events: &[Event], reason: &str) {
        if events.is_empty() {
            return;
        }
        let name = &self.settings.name;
        let (dead, records): (Vec<&Event>, Vec<&Event>) = events.iter().partition(|e| e.dead_letter.is_some());
        if !dead.is_empty() {
            self.settings.dead_letter.refused(name, &dead, reason);
        }
        if records.is_empty() {
            return;
        }
        tracing::warn!(destination = %name, events = records.len(), reason, "events dead-lettered");
        self.settings.metrics.dead_lettered_deliver.inc_by(records.len() as u64);
        self.health
            .events_dead_lettered
            .fetch_add(records.len() as u64, Ordering::Relaxed);
        let letters = records
            .iter()
            .map(|e| letter(e, name, Stage::Deliver, reason))
            .collect();
        self.settings.dead_letter.submit(letters);
    }
}

/// The dead letter of an event this destination gave up on.
fn letter(e: &Event, destination: &str, stage: Stage, reason: &str) -> Letter {
    Letter {
        stage,
        reason: reason.to_string(),
        log_source: e.log_source.clone(),
        destination: Some(Arc::from(destination)),
        id: Some(e.id.clone()),
        record: e.record.clone(),
        ack: e.ack.clone(),
    }
}

/// Full-jitter exponential backoff: uniform in `[0, min(max, initial * 2^(attempt-1))]`.
pub fn backoff(retry: &RetrySpec, attempt: u32) -> Duration {
    let exp = attempt.saturating_sub(1).min(30);
    let ceiling = retry
        .initial_backoff_ms
        .max(1)
        .saturating_mul(1u64 << exp)
        .min(retry.max_backoff_ms.max(1));
    Duration::from_millis(rand::rng().random_range(0..=ceiling))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_stays_under_the_exponential_ceiling_and_the_cap() {
        let spec = RetrySpec {
            initial_backoff_ms: 100,
            max_backoff_ms: 1000,
            ..Default::default()
        };
        for _ in 0..200 {
            assert!(backoff(&spec, 1) <= Duration::from_millis(100));
            assert!(backoff(&spec, 3) <= Duration::from_millis(400));
            assert!(backoff(&spec, 40) <= Duration::from_millis(1000));
        }
    }
}
