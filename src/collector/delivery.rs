//! The shared delivery machinery of every destination: bounded buffer, batching, concurrency,
//! retries (exponential backoff, full jitter, `Retry-After`), dead-lettering, acknowledgements,
//! metrics and health.
//!
//! Two answers get special care, the same for every destination:
//! - **Refused credentials** ([`SendOutcome::Unauthorized`], 401/403 and the vendors' token error
//!   codes) are an outage, not a verdict on the events: the batch is retried with backoff for as
//!   long as it takes (`maxAttempts` does not count these attempts), never dead-lettered, and
//!   stays unacknowledged so the checkpoint does not pass it. The bounded buffer fills up and the
//!   source slows down (`whenFull: block`, the default). The health report carries the reason
//!   (`Unauthorized` / `Forbidden`) until a send succeeds again.
//! - **A batch rejected as a whole** ([`SendOutcome::Rejected`] for more than one event: the
//!   receiver refused the request but did not say which record is at fault) is split in two and
//!   each half delivered the same way, down to single events: only the events refused on their
//!   own are dead-lettered. Each poison record costs at most two requests per halving
//!   (`2 * ceil(log2 n)` for a batch of `n`); a batch whose every record is refused costs
//!   `2n - 1` requests before all of it is dead-lettered.

use std::collections::{HashMap, VecDeque};
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
use crate::collector::destinations::{AuthFailure, Destination, Event, EventOutcome, SendOutcome};
use crate::collector::metrics::DestinationMetrics;

/// What the collector knows of a destination's health, for the report.
#[derive(Debug, Default)]
pub struct DestinationHealth {
    pub events_sent: AtomicU64,
    pub events_dead_lettered: AtomicU64,
    pub healthy: AtomicBool,
    pub last_success_time: Mutex<Option<String>>,
    pub last_error: Mutex<Option<String>>,
    /// Set while the destination refuses the credentials (the last answer said so), cleared by
    /// any other answer.
    pub refused: Mutex<Option<AuthFailure>>,
    /// Events delivered, per LogSource (dead letters are counted by [`DeadLetters`]).
    pub done_per_log_source: Mutex<HashMap<Arc<str>, u64>>,
    /// The destination's buffer and its capacity, for the live queue depth.
    buffer: Option<(Arc<Semaphore>, usize)>,
}

impl DestinationHealth {
    fn success(&self) {
        self.healthy.store(true, Ordering::Relaxed);
        *self.last_success_time.lock().unwrap_or_else(|p| p.into_inner()) = Some(now());
        *self.refused.lock().unwrap_or_else(|p| p.into_inner()) = None;
    }
    fn failure(&self, reason: &str) {
        self.failure_because(reason, None);
    }
    fn failure_because(&self, reason: &str, refused: Option<AuthFailure>) {
        self.healthy.store(false, Ordering::Relaxed);
        *self.last_error.lock().unwrap_or_else(|p| p.into_inner()) = Some(reason.to_string());
        *self.refused.lock().unwrap_or_else(|p| p.into_inner()) = refused;
    }
    /// The machine-readable reason of the report: `Unauthorized` or `Forbidden` while the
    /// credentials are refused.
    pub fn reason(&self) -> Option<&'static str> {
        self.refused
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .map(AuthFailure::as_str)
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
    /// Events buffered or in flight now (a backlog held while the destination is down shows).
    pub fn queue_depth(&self) -> u64 {
        self.buffer.as_ref().map_or(0, |(slots, capacity)| {
            capacity.saturating_sub(slots.available_permits()) as u64
        })
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

/// The sending side of a destination's queue: events go over in runs (a router batch, a dead
/// letter), one wake-up of the sender task per run rather than per event.
pub(crate) type QueueSender = mpsc::UnboundedSender<Vec<Event>>;

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
    tx: QueueSender,
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
            .send(vec![event])
            .map_err(|_| EnqueueError::Stopped(self.name.to_string()))?;
        self.metrics.queue_depth.set(self.depth() as i64);
        Ok(())
    }

    /// Put a run of events in the buffer, handed to the sender task together. With `block`, it
    /// waits for room for the run (in chunks of at most the buffer's size); with `deadLetter`,
    /// a run that does not fit whole goes event by event (what fits is buffered, the rest
    /// dead-lettered).
    pub async fn enqueue_all(&self, mut events: Vec<Event>) -> Result<(), EnqueueError> {
        while !events.is_empty() {
            let rest = events.split_off(events.len().min(self.capacity));
            let n = u32::try_from(events.len()).unwrap_or(u32::MAX);
            let permit = match self.policy {
                OverflowPolicy::Block => Some(
                    self.slots
                        .clone()
                        .acquire_many_owned(n)
                        .await
                        .map_err(|_| EnqueueError::Stopped(self.name.to_string()))?,
                ),
                OverflowPolicy::DeadLetter => self.slots.clone().try_acquire_many_owned(n).ok(),
            };
            match permit {
                Some(mut permit) => {
                    for e in &mut events {
                        e._slot = permit.split(1);
                    }
                    self.tx
                        .send(std::mem::take(&mut events))
                        .map_err(|_| EnqueueError::Stopped(self.name.to_string()))?;
                }
                None => {
                    for e in std::mem::take(&mut events) {
                        self.enqueue(e).await?;
                    }
                }
            }
            events = rest;
        }
        self.metrics.queue_depth.set(self.depth() as i64);
        Ok(())
    }

    /// Events buffered or in flight.
    pub fn depth(&self) -> usize {
        self.capacity.saturating_sub(self.slots.available_permits())
    }

    /// Free slots in the buffer.
    pub fn room(&self) -> usize {
        self.slots.available_permits()
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
    pub(crate) fn dead_letter_sender(&self) -> QueueSender {
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
    let slots = Arc::new(Semaphore::new(capacity));
    let health = Arc::new(DestinationHealth {
        healthy: AtomicBool::new(true),
        buffer: Some((slots.clone(), capacity)),
        ..Default::default()
    });
    let queue = DestinationQueue {
        name: Arc::from(settings.name.as_str()),
        tx,
        slots,
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
    async fn run(self: Arc<Self>, mut rx: mpsc::UnboundedReceiver<Vec<Event>>) {
        let max_events = self.settings.batch.max_events.max(1) as usize;
        let max_bytes = self.settings.batch.max_bytes.max(1) as usize;
        let latency = Duration::from_millis(self.settings.batch.max_latency_ms.max(1));
        let in_flight = Arc::new(Semaphore::new(self.settings.concurrency.max(1) as usize));
        let mut tasks = JoinSet::new();
        // Events received and not yet batched (runs arrive whole).
        let mut received: VecDeque<Event> = VecDeque::new();
        loop {
            let first = match received.pop_front() {
                Some(e) => e,
                None => match rx.recv().await {
                    Some(run) => {
                        received.extend(run);
                        continue;
                    }
                    None => break,
                },
            };
            let deadline = Instant::now() + latency;
            let mut bytes = first.body.len();
            let mut batch = vec![first];
            while batch.len() < max_events {
                if received.is_empty() {
                    let run = match rx.try_recv() {
                        Ok(run) => Some(run),
                        Err(mpsc::error::TryRecvError::Disconnected) => None,
                        Err(mpsc::error::TryRecvError::Empty) => {
                            tokio::select! {
                                run = rx.recv() => run,
                                _ = tokio::time::sleep_until(deadline) => None,
                            }
                        }
                    };
                    match run {
                        Some(run) => received.extend(run),
                        None => break,
                    }
                }
                let Some(e) = received.pop_front() else { continue };
                if bytes + e.body.len() > max_bytes {
                    received.push_front(e);
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
    async fn deliver(&self, batch: Vec<Event>) {
        let started = Instant::now();
        self.deliver_part(batch).await;
        self.settings
            .metrics
            .batch_duration
            .observe(started.elapsed().as_secs_f64());
        self.update_depth();
    }

    /// Send events until each is delivered or dead-lettered: retried while the failure is
    /// transient (up to `maxAttempts`) or the credentials are refused (without limit), split in
    /// halves delivered in turn when the destination rejects them as a whole.
    fn deliver_part(&self, mut pending: Vec<Event>) -> futures::future::BoxFuture<'_, ()> {
        Box::pin(async move {
            let s = &self.settings;
            let timeout = Duration::from_millis(s.retry.request_timeout_ms.max(1)) + Duration::from_secs(1);
            // Attempts so far (the backoff grows with them) and those that count toward
            // `maxAttempts` (not the ones refused for their credentials).
            let mut attempt: u32 = 0;
            let mut counted: u32 = 0;
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
                if let SendOutcome::Rejected { reason } = &outcome {
                    if pending.len() > 1 {
                        s.metrics.failed.inc_by(pending.len() as u64);
                        tracing::debug!(destination = %s.name, events = pending.len(), reason = %reason,
                            "batch rejected as a whole; splitting it to find the events at fault");
                        let second = pending.split_off(pending.len() / 2);
                        self.deliver_part(pending).await;
                        self.deliver_part(second).await;
                        return;
                    }
                }
                let (retry, reason, after, refused) = self.apply(outcome, pending);
                if retry.is_empty() {
                    return;
                }
                s.metrics.failed.inc_by(retry.len() as u64);
                s.metrics.up.set(0);
                s.metrics.refused.set(i64::from(refused.is_some()));
                self.health.failure_because(&reason, refused);
                if refused.is_none() {
                    counted += 1;
                    if s.retry.max_attempts.is_some_and(|max| counted >= max) {
                        let why = format!("gave up after {counted} attempts: {reason}");
                        self.reject(&retry, &why);
                        return;
                    }
                }
                // A server's `Retry-After` is honoured up to `maxBackoffMs`: a huge one must not
                // stall the pipeline.
                let delay = after
                    .map(|a| a.min(Duration::from_millis(s.retry.max_backoff_ms.max(1))))
                    .unwrap_or_else(|| backoff(&s.retry, attempt));
                tracing::warn!(
                    destination = %s.name,
                    attempt,
                    events = retry.len(),
                    delay_ms = delay.as_millis() as u64,
                    reason = %reason,
                    credentials_refused = refused.map(AuthFailure::as_str),
                    "send failed; retrying"
                );
                tokio::time::sleep(delay).await;
                pending = retry;
            }
        })
    }

    /// Settle what an outcome settles; returns the events to retry, the reason, the wait, and
    /// whether they wait for refused credentials.
    fn apply(
        &self,
        outcome: SendOutcome,
        pending: Vec<Event>,
    ) -> (Vec<Event>, String, Option<Duration>, Option<AuthFailure>) {
        match outcome {
            SendOutcome::Delivered => {
                self.delivered(&pending);
                (Vec::new(), String::new(), None, None)
            }
            SendOutcome::Rejected { reason } => {
                // Refused alone: dead-letter it. The health report shows the reason until the
                // next success (a configuration error refuses every event).
                self.settings.metrics.up.set(0);
                self.settings.metrics.refused.set(0);
                self.health.failure(&reason);
                self.reject(&pending, &reason);
                (Vec::new(), String::new(), None, None)
            }
            SendOutcome::Retry { reason, after } => (pending, reason, after, None),
            SendOutcome::Unauthorized { kind, reason } => (pending, reason, None, Some(kind)),
            SendOutcome::PerEvent(outcomes) => {
                let mut delivered = Vec::new();
                let mut retry = Vec::new();
                let mut reason = String::new();
                let mut refused = None;
                let mut outcomes = outcomes.into_iter();
                for e in pending {
                    match outcomes.next() {
                        Some(EventOutcome::Delivered) => delivered.push(e),
                        Some(EventOutcome::Rejected { reason }) => self.reject(std::slice::from_ref(&e), &reason),
                        Some(EventOutcome::Retry { reason: r }) => {
                            if refused.is_none() {
                                reason = r;
                            }
                            retry.push(e);
                        }
                        Some(EventOutcome::Unauthorized { kind, reason: r }) => {
                            refused = Some(kind);
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
                (retry, reason, None, refused)
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
        m.refused.set(0);
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
