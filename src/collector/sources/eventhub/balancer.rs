//! The load balancer: connects, lists the partition ownership records every interval, and
//! claims, renews, hands over or asks for partitions ([`super::balance::plan`]), starting and
//! stopping the partition readers accordingly.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use azure_messaging_eventhubs::ConsumerClient;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use super::client::{describe_error, open_client};
use super::reader::{start_reader, ReaderEnd, RunningReader};
use super::{balance, Shared};
use crate::collector::checkpoint::ownership::{Ownership, OwnershipClaim, OwnershipError};
use crate::collector::sources::SourceBatch;

/// How long a hand-over waits for the checkpoint to reach the last event read before naming
/// the new owner anyway (the new owner then re-reads from the checkpoint: duplicates, no loss).
const HAND_OVER_WAIT: Duration = Duration::from_secs(30);

/// A partition being handed over: its reader is stopping or stopped, the record is still ours
/// (renewed, the request kept) until the checkpoint has caught up.
struct HandOver {
    to: String,
    /// The reader, until it has ended.
    reader: Option<RunningReader>,
    /// Offset of the last event the pipeline took (the checkpoint must reach it).
    last: Option<String>,
    deadline: Instant,
}

/// What this replica holds and runs.
#[derive(Default)]
struct Local {
    /// Partitions this replica holds a record for: partition -> version.
    held: BTreeMap<String, String>,
    readers: HashMap<String, RunningReader>,
    handing: HashMap<String, HandOver>,
    /// Readers told to stop (ownership lost), not ended yet; nothing new starts on their
    /// partitions until they have.
    stopping: Vec<(String, RunningReader)>,
    /// Where a reader restarted on a partition held throughout resumes: the last event the
    /// pipeline took (a restart from the checkpoint would re-read what is still being delivered).
    resume: HashMap<String, String>,
    /// Partitions lost to another reader: not claimed again before this time.
    cooldown: HashMap<String, Instant>,
}

impl Local {
    /// The partition's previous reader, if any, is still running.
    fn busy(&self, partition: &str) -> bool {
        self.readers.contains_key(partition)
            || self.handing.contains_key(partition)
            || self.stopping.iter().any(|(p, _)| p == partition)
    }

    /// Remember where a reader of a partition still held got to.
    fn remember(&mut self, partition: &str, last: &Mutex<Option<String>>) {
        if !self.held.contains_key(partition) {
            return;
        }
        if let Some(last) = last.lock().unwrap_or_else(|p| p.into_inner()).clone() {
            self.resume.insert(partition.to_string(), last);
        }
    }

    /// Stop every reader and wait for them (shutdown, fence); where a held partition's reader
    /// got to is remembered.
    async fn stop_all(&mut self) {
        let readers: Vec<(String, RunningReader)> = self
            .readers
            .drain()
            .chain(self.handing.drain().filter_map(|(p, h)| h.reader.map(|r| (p, r))))
            .chain(self.stopping.drain(..))
            .collect();
        for (_, r) in &readers {
            r.stop.cancel();
        }
        for (p, r) in readers {
            let _ = r.task.await;
            self.remember(&p, &r.last);
        }
    }
}

/// The balancer of one replica: its client, the hub's partitions, what it holds and runs.
pub(super) struct Balancer {
    shared: Arc<Shared>,
    tx: mpsc::Sender<SourceBatch>,
    expiry: chrono::Duration,
    client: Option<Arc<ConsumerClient>>,
    partitions: Vec<String>,
    local: Local,
    /// When ownership was last renewed successfully.
    last_renewed: Instant,
    /// Reader restarts after a failure, per partition: (attempt, not before).
    backoff: HashMap<String, (u32, Instant)>,
    connect_attempt: u32,
    next_connect: Instant,
    last_progress: Instant,
}

impl Balancer {
    pub(super) fn new(shared: Arc<Shared>, tx: mpsc::Sender<SourceBatch>) -> Self {
        let expiry = chrono::Duration::from_std(shared.settings.expiry).unwrap_or(chrono::Duration::seconds(60));
        Balancer {
            shared,
            tx,
            expiry,
            client: None,
            partitions: Vec::new(),
            local: Local::default(),
            last_renewed: Instant::now(),
            backoff: HashMap::new(),
            connect_attempt: 0,
            next_connect: Instant::now(),
            last_progress: Instant::now() - Duration::from_secs(3600),
        }
    }

    /// Cycle every interval until `stop`, then stop the readers and release the partitions.
    /// Only connecting and the wait between cycles are cut short by `stop`: an ownership write
    /// under way completes, so what is held is known and released.
    pub(super) async fn run(mut self, stop: CancellationToken) {
        loop {
            if stop.is_cancelled() {
                break;
            }
            if (self.client.is_none() || self.partitions.is_empty()) && Instant::now() >= self.next_connect {
                tokio::select! {
                    _ = stop.cancelled() => break,
                    _ = self.connect() => {}
                }
            }
            self.cycle().await;
            tokio::select! {
                _ = stop.cancelled() => break,
                _ = tokio::time::sleep(self.shared.settings.interval) => {}
            }
        }
        self.shut_down().await;
    }

    /// One cycle (after connecting): reap ended readers, list the ownership records and apply
    /// the plan, fence, start readers, report progress.
    pub(super) async fn cycle(&mut self) {
        self.reap().await;
        if self.partitions.is_empty() {
            return;
        }
        match self.shared.ownership.list().await {
            Ok(records) => self.apply_plan(records).await,
            Err(e) => {
                tracing::warn!(error = %e, "cannot list partition ownership");
                self.shared.set_error(Some(format!("partition ownership: {e}")));
            }
        }
        // Fence: without a successful renewal for most of the expiry, others may own our
        // partitions already.
        if self.last_renewed.elapsed() > self.shared.settings.expiry.mul_f32(0.8) && !self.local.readers.is_empty() {
            tracing::warn!("ownership not renewed in time; stopping every reader");
            // The records stay in `held`: the next listing tells which are still ours
            // (nobody else read those, so they resume where this replica got to).
            self.local.stop_all().await;
        }
        // Start readers of owned partitions (only while ownership is fresh).
        if self.client.is_some() && self.last_renewed.elapsed() <= self.shared.settings.expiry.mul_f32(0.8) {
            self.start_readers();
        }
        self.report_progress().await;
        let owned: BTreeSet<String> = self.local.readers.keys().cloned().collect();
        self.shared.status.lock().unwrap_or_else(|p| p.into_inner()).owned = owned;
        // A reader that delivers clears its backoff; with none failing, the error clears.
        let readers = &self.local.readers;
        self.backoff.retain(|p, _| {
            !readers
                .get(p)
                .is_some_and(|r| r.healthy.load(std::sync::atomic::Ordering::Relaxed))
        });
        if self.client.is_some() && self.backoff.is_empty() {
            self.shared.set_error(None);
        }
        self.local.cooldown.retain(|_, until| Instant::now() < *until);
    }

    /// Connect and learn the partitions.
    async fn connect(&mut self) {
        let shared = &self.shared;
        let outcome = async {
            let c = match &self.client {
                Some(c) => c.clone(),
                None => Arc::new(open_client(shared).await.map_err(|e| describe_error(&e))?),
            };
            let props = c.get_eventhub_properties().await.map_err(|e| describe_error(&e))?;
            Ok::<_, String>((c, props.partition_ids))
        }
        .await;
        match outcome {
            Ok((c, ids)) => {
                self.client = Some(c);
                self.partitions = ids;
                self.connect_attempt = 0;
                shared.set_error(None);
                shared.status.lock().unwrap_or_else(|p| p.into_inner()).partitions = self.partitions.clone();
            }
            Err(e) => {
                self.client = None;
                self.connect_attempt += 1;
                let wait = backoff_delay(self.connect_attempt);
                self.next_connect = Instant::now() + wait;
                shared.set_error(Some(format!(
                    "cannot open event hub {}/{} (consumer group {}): {e}; retrying in {}s",
                    shared.spec.event_hub.fully_qualified_namespace,
                    shared.hub,
                    shared.spec.event_hub.consumer_group,
                    wait.as_secs()
                )));
            }
        }
    }

    /// Reap readers told to stop, and readers that ended by themselves.
    async fn reap(&mut self) {
        let local = &mut self.local;
        let mut i = 0;
        while i < local.stopping.len() {
            if local.stopping[i].1.task.is_finished() {
                let (p, r) = local.stopping.swap_remove(i);
                let _ = r.task.await;
                local.remember(&p, &r.last);
            } else {
                i += 1;
            }
        }
        let ended: Vec<String> = local
            .readers
            .iter()
            .filter(|(_, r)| r.task.is_finished())
            .map(|(p, _)| p.clone())
            .collect();
        for p in ended {
            let Some(mut r) = self.local.readers.remove(&p) else {
                continue;
            };
            let end = (&mut r.task).await;
            match end {
                Ok(ReaderEnd::Lost(why)) => {
                    tracing::warn!(partition = %p, reason = %why, "partition taken by another reader; giving it up");
                    self.local
                        .cooldown
                        .insert(p.clone(), Instant::now() + self.shared.settings.expiry);
                    self.local.resume.remove(&p);
                    if let Some(v) = self.local.held.remove(&p) {
                        let _ = self
                            .shared
                            .ownership
                            .write(&p, Some(&v), OwnershipClaim::release())
                            .await;
                    }
                }
                Ok(ReaderEnd::Failed { reason, reconnect }) => {
                    self.local.remember(&p, &r.last);
                    let entry = self.backoff.entry(p.clone()).or_insert((0, Instant::now()));
                    entry.0 += 1;
                    let wait = backoff_delay(entry.0);
                    entry.1 = Instant::now() + wait;
                    self.shared.set_error(Some(format!(
                        "partition {p}: {reason}; retrying in {}s",
                        wait.as_secs()
                    )));
                    if reconnect {
                        // The connection itself may be unusable (token, entity): start afresh.
                        self.client = None;
                        self.next_connect = self.next_connect.max(Instant::now() + wait);
                    }
                }
                Ok(ReaderEnd::Stopped) | Err(_) => self.local.remember(&p, &r.last),
            }
        }
    }

    /// Start a reader on every held partition not busy and not backing off.
    fn start_readers(&mut self) {
        let startable: Vec<String> = self
            .local
            .held
            .keys()
            .filter(|p| !self.local.busy(p))
            .cloned()
            .collect();
        for p in startable {
            if self.backoff.get(&p).is_some_and(|(_, at)| Instant::now() < *at) {
                continue;
            }
            let resume = self.local.resume.remove(&p);
            let reader = start_reader(p.clone(), resume, self.shared.clone(), self.tx.clone());
            self.local.readers.insert(p, reader);
        }
    }

    /// Per-partition progress for the report (and the operator's lag): every 10 s.
    async fn report_progress(&mut self) {
        let Some(c) = &self.client else { return };
        if self.last_progress.elapsed() < Duration::from_secs(10).max(self.shared.settings.interval) {
            return;
        }
        self.last_progress = Instant::now();
        let mut progress = BTreeMap::new();
        for (p, r) in self.local.readers.iter() {
            let (read_sequence_number, read_enqueued_time) =
                r.last_sequence.lock().unwrap_or_else(|x| x.into_inner()).clone();
            let mut report = crate::config::PartitionReport {
                owner: self.shared.identity.clone(),
                read_sequence_number,
                read_enqueued_time,
                ..Default::default()
            };
            if let Ok(Ok(props)) = tokio::time::timeout(Duration::from_secs(5), c.get_partition_properties(p)).await {
                report.last_enqueued_sequence_number = Some(props.last_enqueued_sequence_number);
                report.last_enqueued_time = props.last_enqueued_time_utc.map(|t| {
                    chrono::DateTime::<chrono::Utc>::from(t).to_rfc3339_opts(chrono::SecondsFormat::Millis, true)
                });
            }
            progress.insert(p.clone(), report);
        }
        self.shared.health.set_partitions(progress);
    }

    /// Shutdown: stop readers, then release what we hold.
    async fn shut_down(mut self) {
        self.local.stop_all().await;
        drop(self.tx);
        let shared = &self.shared;
        for (p, v) in std::mem::take(&mut self.local.held) {
            // Another replica may have written a hand-over request on the record meanwhile (a
            // new version): release against the current version while the record is still ours.
            let mut outcome = shared.ownership.write(&p, Some(&v), OwnershipClaim::release()).await;
            for _ in 0..3 {
                if !matches!(outcome, Err(OwnershipError::Conflict { .. })) {
                    break;
                }
                let current = match shared.ownership.list().await {
                    Ok(records) => records.into_iter().find(|r| r.partition == p),
                    Err(_) => None,
                };
                match current {
                    Some(r) if r.owner == shared.identity.as_str() => {
                        outcome = shared
                            .ownership
                            .write(&p, Some(&r.version), OwnershipClaim::release())
                            .await;
                    }
                    _ => break,
                }
            }
            match outcome {
                Ok(_) => tracing::info!(partition = %p, "partition released"),
                Err(e) => tracing::warn!(partition = %p, error = %e, "partition could not be released"),
            }
        }
        // A partition another replica handed over to us since our last listing is ours in the
        // store but not yet in `held` (the next cycle would have taken it up): release it too, so
        // the next owner does not wait for it to expire.
        if let Ok(records) = shared.ownership.list().await {
            for r in records.into_iter().filter(|r| r.owner == shared.identity.as_str()) {
                match shared
                    .ownership
                    .write(&r.partition, Some(&r.version), OwnershipClaim::release())
                    .await
                {
                    Ok(_) => tracing::info!(partition = %r.partition, "partition handed to us released unread"),
                    Err(e) => {
                        tracing::warn!(partition = %r.partition, error = %e, "partition could not be released")
                    }
                }
            }
        }
        if let Some(c) = self.client {
            if let Ok(c) = Arc::try_unwrap(c) {
                let _ = c.close().await;
            }
        }
    }

    /// Apply the plan for one listing of the ownership records. Never waits on a
    /// reader or a checkpoint: a slow stop must not delay the renewals that keep the other
    /// partitions ours.
    async fn apply_plan(&mut self, records: Vec<Ownership>) {
        let (shared, partitions, expiry) = (&self.shared, &self.partitions, self.expiry);
        let local = &mut self.local;
        let me = shared.identity.as_str();
        let now = chrono::Utc::now();
        let plan = balance::plan(me, partitions, &records, now, expiry);
        // What the store says we hold.
        let in_store: BTreeSet<String> = records
            .iter()
            .filter(|r| r.owner == me && balance::live(r, now, expiry))
            .map(|r| r.partition.clone())
            .collect();
        // Partitions we read but no longer own (taken after expiry, or by a hand-over we made).
        let gone: Vec<String> = local.held.keys().filter(|p| !in_store.contains(*p)).cloned().collect();
        for p in gone {
            local.held.remove(&p);
            local.resume.remove(&p);
            let reader = local
                .readers
                .remove(&p)
                .or_else(|| local.handing.remove(&p).and_then(|h| h.reader));
            if let Some(r) = reader {
                tracing::warn!(partition = %p, "partition ownership lost; stopping its reader");
                r.stop.cancel();
                local.stopping.push((p, r));
            }
        }
        let mut renew_failed = false;
        for (p, version) in &plan.renew {
            match shared
                .ownership
                .write(p, Some(version), OwnershipClaim::owner(me))
                .await
            {
                Ok(rec) => {
                    if !local.held.contains_key(p) {
                        // Handed to us by its previous owner: start from the checkpoint.
                        local.resume.remove(p);
                    }
                    local.held.insert(p.clone(), rec.version);
                }
                Err(OwnershipError::Conflict { .. }) => {
                    // Usually a hand-over request written meanwhile; the next listing tells whether
                    // the partition is still ours (the epoch receiver fences the meantime).
                    tracing::debug!(partition = %p, "partition renewal raced another write");
                }
                Err(e) => {
                    renew_failed = true;
                    tracing::warn!(partition = %p, error = %e, "cannot renew partition ownership");
                }
            }
        }
        // Hand-overs the plan no longer asks for (the requester left or got enough): read on.
        let wanted: BTreeSet<&str> = plan.hand_over.iter().map(|(p, _, _)| p.as_str()).collect();
        let dropped: Vec<String> = local
            .handing
            .keys()
            .filter(|p| !wanted.contains(p.as_str()))
            .cloned()
            .collect();
        for p in dropped {
            if let Some(h) = local.handing.remove(&p) {
                match h.reader {
                    Some(r) => local.stopping.push((p, r)),
                    None => {
                        if let Some(last) = h.last {
                            local.resume.insert(p, last);
                        }
                    }
                }
            }
        }
        for (p, version, to) in &plan.hand_over {
            // Stop reading; once the reader has ended and the checkpoint has reached the last
            // event the pipeline took, name the new owner. Until then keep renewing the record
            // (with the request) so that nobody takes it as expired.
            if !local.handing.contains_key(p) {
                let reader = local.readers.remove(p);
                if let Some(r) = &reader {
                    r.stop.cancel();
                }
                let last = local.resume.remove(p);
                local.handing.insert(
                    p.clone(),
                    HandOver {
                        to: to.clone(),
                        reader,
                        last,
                        deadline: Instant::now() + HAND_OVER_WAIT,
                    },
                );
            }
            let Some(h) = local.handing.get_mut(p) else { continue };
            h.to.clone_from(to);
            if h.reader.as_ref().is_some_and(|r| r.task.is_finished()) {
                if let Some(mut r) = h.reader.take() {
                    let _ = (&mut r.task).await;
                    if let Some(last) = r.last.lock().unwrap_or_else(|x| x.into_inner()).clone() {
                        h.last = Some(last);
                    }
                }
            }
            let caught_up = h.reader.is_none()
                && match &h.last {
                    None => true,
                    Some(last) => matches!(shared.checkpoints.load(p).await, Ok(Some(cp)) if cp.position == *last),
                };
            let late = Instant::now() >= h.deadline;
            if caught_up || late {
                match shared
                    .ownership
                    .write(p, Some(version), OwnershipClaim::owner(to))
                    .await
                {
                    Ok(_) => {
                        if caught_up {
                            tracing::info!(partition = %p, to = %to, "partition handed over");
                        } else {
                            tracing::warn!(partition = %p, to = %to, "partition handed over before its checkpoint caught up; the new owner re-reads from the checkpoint");
                        }
                        local.held.remove(p);
                        if let Some(h) = local.handing.remove(p) {
                            if let Some(r) = h.reader {
                                local.stopping.push((p.clone(), r));
                            }
                        }
                    }
                    Err(e) => {
                        tracing::warn!(partition = %p, error = %e, "hand-over failed; the next cycle decides");
                    }
                }
            } else {
                let keep = OwnershipClaim {
                    owner: me,
                    requested_by: Some(to),
                    keep_renewed: false,
                };
                match shared.ownership.write(p, Some(version), keep).await {
                    Ok(rec) => {
                        local.held.insert(p.clone(), rec.version);
                    }
                    Err(OwnershipError::Conflict { .. }) => {
                        tracing::debug!(partition = %p, "hand-over renewal raced another write");
                    }
                    Err(e) => {
                        renew_failed = true;
                        tracing::warn!(partition = %p, error = %e, "cannot renew partition ownership");
                    }
                }
            }
        }
        if !renew_failed {
            self.last_renewed = Instant::now();
        }
        for (p, expected) in &plan.claim {
            if local.cooldown.contains_key(p) {
                continue;
            }
            match shared
                .ownership
                .write(p, expected.as_deref(), OwnershipClaim::owner(me))
                .await
            {
                Ok(rec) => {
                    tracing::info!(partition = %p, owner = %me, "partition claimed");
                    // Someone else may have read it since: start from the checkpoint.
                    local.resume.remove(p);
                    local.held.insert(p.clone(), rec.version);
                }
                Err(OwnershipError::Conflict { .. }) => {}
                Err(e) => tracing::warn!(partition = %p, error = %e, "cannot claim partition"),
            }
        }
        if let Some((p, version, owner)) = &plan.request {
            match shared
                .ownership
                .write(p, Some(version), OwnershipClaim::request(owner, me))
                .await
            {
                Ok(_) => tracing::info!(partition = %p, from = %owner, "asked for a partition hand-over"),
                Err(e) => tracing::debug!(partition = %p, error = %e, "hand-over request not written"),
            }
        }
    }
}

fn backoff_delay(attempt: u32) -> Duration {
    let secs = 1u64 << attempt.min(5).saturating_sub(1);
    Duration::from_secs(secs.min(30))
}
