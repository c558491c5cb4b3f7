//! The Event Hubs source: reads one consumer group of one Event Hub with the official Azure SDK
//! (`azure_messaging_eventhubs`), sharing the partitions with the other replicas of the same
//! ConsumerGroup.
//!
//! - **Client**: a SAS connection string (with or without `EntityPath`) or an Entra app (tokens
//!   from [`crate::collector::auth::TokenProvider`] through [`credential::EntraCredential`]);
//!   `customEndpoint` is the address actually dialled (private link, local emulator).
//! - **Ownership**: each cycle the balancer lists the partition ownership records, runs
//!   [`balance::plan`] and claims, renews, hands over or asks for partitions with
//!   compare-and-write. It reads only partitions whose record names it, and stops reading one as
//!   soon as a renewal fails, the record expires locally, or the service detaches the link as
//!   stolen (`amqp:link:stolen`, a newer epoch reader): lost ownership, never an error loop.
//! - **Readers**: one task per owned partition, on an AMQP connection of its own (so stopping one
//!   cannot disturb the others' links), opens an epoch receiver (owner level 0, as the
//!   Azure SDK processors do) from the checkpoint (exclusive offset) or the configured start
//!   position, and sends batches into a small channel. The pipeline takes a batch only when it
//!   has room, so a full channel stops the reader from polling, and the SDK only grants AMQP
//!   credit (at most `prefetch`) for events polled: back-pressure reaches the service.
//! - **Checkpoints**: `stream` is the partition id, `position` the service offset, `state`
//!   `{"sequenceNumber", "enqueuedTime"}` (see [`crate::collector::checkpoint`]).
//! - **Shutdown**: [`Source::close`] stops the readers and releases every owned partition, so the
//!   other replicas take them at their next cycle instead of after the expiry.
//!
//! Tuning for tests and small deployments (environment): `SIEMBRIDGE_EVENTHUB_BALANCE_INTERVAL_MS`
//! (default 10 000), `SIEMBRIDGE_EVENTHUB_OWNERSHIP_EXPIRY_MS` (default 60 000),
//! `SIEMBRIDGE_OWNER_ID` (default: the pod name, or `<host>-<pid>` outside Kubernetes).

pub mod balance;
pub mod credential;

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime};

use async_trait::async_trait;
use azure_messaging_eventhubs::error::ErrorKind as SdkErrorKind;
use azure_messaging_eventhubs::models::ReceivedEventData;
use azure_messaging_eventhubs::{ConsumerClient, OpenReceiverOptions, StartLocation, StartPosition};
use bytes::Bytes;
use futures::{FutureExt, StreamExt};
use tokio::sync::mpsc;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use super::{RecordOrigin, Source, SourceBatch, SourceContext, SourceError, SourceUnit};
use crate::api::{ConsumerGroupSpec, StartFrom};
use crate::collector::auth::TokenProvider;
use crate::collector::checkpoint::ownership::{OwnershipClaim, OwnershipError, PartitionOwnership};
use crate::collector::checkpoint::CheckpointStore;
use crate::collector::secrets;
use crate::config::SecretSource;

/// Most events in one batch handed to the pipeline.
const MAX_BATCH: usize = 500;
/// Batches buffered between the readers and the pipeline.
const CHANNEL_BATCHES: usize = 4;

/// Timing of the load balancer.
#[derive(Clone, Debug)]
pub struct BalanceSettings {
    /// How often ownership is listed, renewed and balanced.
    pub interval: Duration,
    /// A record not renewed for this long is free for others.
    pub expiry: Duration,
}

impl BalanceSettings {
    /// From the environment, with the defaults of the Azure SDK processors.
    pub fn from_env() -> Self {
        let ms = |name: &str, default: u64| {
            std::env::var(name)
                .ok()
                .and_then(|v| v.parse::<u64>().ok())
                .unwrap_or(default)
        };
        BalanceSettings {
            interval: Duration::from_millis(ms("SIEMBRIDGE_EVENTHUB_BALANCE_INTERVAL_MS", 10_000).max(50)),
            expiry: Duration::from_millis(ms("SIEMBRIDGE_EVENTHUB_OWNERSHIP_EXPIRY_MS", 60_000).max(200)),
        }
    }
}

/// This replica's identity in ownership records.
pub fn owner_identity() -> String {
    if let Ok(id) = std::env::var("SIEMBRIDGE_OWNER_ID") {
        if !id.is_empty() {
            return id;
        }
    }
    let host = std::env::var("HOSTNAME").unwrap_or_else(|_| "collector".into());
    if std::env::var_os("KUBERNETES_SERVICE_HOST").is_some() {
        host
    } else {
        format!("{host}-{}", std::process::id())
    }
}

/// What the source shows in the collector report.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct EventHubStatus {
    /// Partitions of the hub (empty until read).
    pub partitions: Vec<String>,
    /// Partitions this replica reads.
    pub owned: BTreeSet<String>,
    /// The last error that stops reading (connection, authorization, unknown hub or group).
    pub error: Option<String>,
}

/// How the client authenticates.
enum Credentials {
    ConnectionString(secrets::SecretValue),
    Entra(Arc<credential::EntraCredential>),
}

/// Everything the balancer and the readers share.
struct Shared {
    identity: String,
    spec: ConsumerGroupSpec,
    hub: String,
    credentials: Credentials,
    checkpoints: Arc<dyn CheckpointStore>,
    ownership: Arc<dyn PartitionOwnership>,
    settings: BalanceSettings,
    status: Mutex<EventHubStatus>,
    health: Arc<super::SourceHealth>,
}

impl Shared {
    fn set_error(&self, error: Option<String>) {
        let mut s = self.status.lock().unwrap_or_else(|p| p.into_inner());
        if s.error != error {
            if let Some(e) = &error {
                tracing::error!(hub = %self.hub, consumer_group = %self.spec.event_hub.consumer_group, error = %e, "event hub unavailable");
            } else {
                tracing::info!(hub = %self.hub, "event hub reachable again");
            }
        }
        self.health.set_error(error.clone());
        s.error = error;
    }
}

/// An Event Hubs consumer group reader.
pub struct EventHubSource {
    batches: mpsc::Receiver<SourceBatch>,
    shared: Arc<Shared>,
    stop: CancellationToken,
    balancer: Option<JoinHandle<()>>,
}

impl EventHubSource {
    /// Prepare the source; the connection is made (and retried) in the background.
    pub fn open(
        consumer_group: &str,
        spec: &ConsumerGroupSpec,
        secrets_source: &SecretSource,
        ctx: SourceContext,
    ) -> Result<Self, SourceError> {
        let credentials = match (&spec.credentials.connection_string, &spec.credentials.entra) {
            (Some(sel), None) => Credentials::ConnectionString(
                secrets::resolve(secrets_source, sel).map_err(|e| SourceError::Invalid(e.to_string()))?,
            ),
            (None, Some(entra)) => {
                let provider = TokenProvider::from_spec(entra, secrets_source)
                    .map_err(|e| SourceError::Invalid(format!("Entra credentials: {e}")))?;
                Credentials::Entra(Arc::new(credential::EntraCredential::new(provider)))
            }
            _ => {
                return Err(SourceError::Invalid(format!(
                    "ConsumerGroup {consumer_group}: set exactly one of connectionString or entra"
                )))
            }
        };
        let ownership = ctx.checkpoints.partition_ownership().ok_or_else(|| {
            SourceError::Invalid(format!(
                "checkpoint store {} cannot hold partition ownership",
                ctx.checkpoints.describe()
            ))
        })?;
        let shared = Arc::new(Shared {
            identity: owner_identity(),
            hub: spec.event_hub.hub_name.clone(),
            spec: spec.clone(),
            credentials,
            checkpoints: ctx.checkpoints.clone(),
            ownership,
            settings: BalanceSettings::from_env(),
            status: Mutex::default(),
            health: ctx.health.clone(),
        });
        let (tx, rx) = mpsc::channel(CHANNEL_BATCHES);
        let stop = CancellationToken::new();
        tracing::info!(collector = %ctx.collector, owner = %shared.identity, hub = %shared.hub,
            consumer_group = %spec.event_hub.consumer_group, ownership = %shared.ownership.describe(), "event hub source starting");
        let balancer = tokio::spawn(run_balancer(shared.clone(), tx, stop.clone()));
        Ok(EventHubSource {
            batches: rx,
            shared,
            stop,
            balancer: Some(balancer),
        })
    }

    /// Current status (owned partitions, last error).
    pub fn status(&self) -> EventHubStatus {
        self.shared.status.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }
}

#[async_trait]
impl Source for EventHubSource {
    fn kind(&self) -> &'static str {
        "eventHub"
    }

    async fn next_batch(&mut self) -> Result<Option<SourceBatch>, SourceError> {
        match self.batches.recv().await {
            Some(b) => Ok(Some(b)),
            None => Err(SourceError::Invalid("event hub balancer stopped".into())),
        }
    }

    async fn close(&mut self) {
        self.stop.cancel();
        // Readers may wait on a full channel: drain it so they see the stop.
        self.batches.close();
        while self.batches.try_recv().is_ok() {}
        if let Some(b) = self.balancer.take() {
            let _ = b.await;
        }
    }
}

impl Drop for EventHubSource {
    fn drop(&mut self) {
        self.stop.cancel();
    }
}

/// How a reader ended.
#[derive(Debug)]
enum ReaderEnd {
    /// Asked to stop.
    Stopped,
    /// Another reader took the partition (`amqp:link:stolen`).
    Lost(String),
    /// Could not read; retried after a backoff.
    Failed(String),
}

struct RunningReader {
    stop: CancellationToken,
    task: JoinHandle<ReaderEnd>,
    /// Offset of the last event handed to the pipeline.
    last: Arc<Mutex<Option<String>>>,
    /// The receiver attached and delivered.
    healthy: Arc<std::sync::atomic::AtomicBool>,
    /// Sequence number of the last event handed to the pipeline.
    last_sequence: Arc<Mutex<Option<i64>>>,
}

async fn open_client(shared: &Shared) -> Result<ConsumerClient, String> {
    let ev = &shared.spec.event_hub;
    let mut builder = ConsumerClient::builder()
        .with_consumer_group(ev.consumer_group.clone())
        .with_application_id("siembridge".to_string());
    if let Some(endpoint) = &ev.custom_endpoint {
        builder = builder.with_custom_endpoint(endpoint.clone());
    }
    let result = match &shared.credentials {
        Credentials::ConnectionString(cs) => {
            builder
                .open_with_connection_string(cs.expose(), Some(&ev.hub_name))
                .await
        }
        Credentials::Entra(cred) => {
            builder
                .open(&ev.fully_qualified_namespace, ev.hub_name.clone(), cred.clone())
                .await
        }
    };
    result.map_err(|e| describe_error(&e))
}

/// A one-line description of an SDK error with the AMQP condition when there is one.
fn describe_error(e: &azure_messaging_eventhubs::EventHubsError) -> String {
    let mut text = e.to_string();
    let mut source = std::error::Error::source(e);
    while let Some(s) = source {
        let more = s.to_string();
        if !text.contains(&more) {
            text.push_str(": ");
            text.push_str(&more);
        }
        source = s.source();
    }
    text
}

fn is_stolen(e: &azure_messaging_eventhubs::EventHubsError) -> bool {
    matches!(e.kind, SdkErrorKind::ConsumerDisconnected(_)) || describe_error(e).contains("link:stolen")
}

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

async fn run_balancer(shared: Arc<Shared>, tx: mpsc::Sender<SourceBatch>, stop: CancellationToken) {
    let expiry = chrono::Duration::from_std(shared.settings.expiry).unwrap_or(chrono::Duration::seconds(60));
    let mut client: Option<Arc<ConsumerClient>> = None;
    let mut partitions: Vec<String> = Vec::new();
    let mut local = Local::default();
    let mut last_renewed = Instant::now();
    // Reader restarts after a failure, per partition: (attempt, not before).
    let mut backoff: HashMap<String, (u32, Instant)> = HashMap::new();
    let mut connect_attempt = 0u32;
    let mut last_progress = Instant::now() - Duration::from_secs(3600);
    let mut next_connect = Instant::now();

    loop {
        if stop.is_cancelled() {
            break;
        }
        // Connect and learn the partitions.
        if (client.is_none() || partitions.is_empty()) && Instant::now() >= next_connect {
            let attempt = async {
                let c = match &client {
                    Some(c) => c.clone(),
                    None => Arc::new(open_client(&shared).await?),
                };
                let props = c.get_eventhub_properties().await.map_err(|e| describe_error(&e))?;
                Ok::<_, String>((c, props.partition_ids))
            };
            let outcome = tokio::select! {
                _ = stop.cancelled() => break,
                r = attempt => r,
            };
            match outcome {
                Ok((c, ids)) => {
                    client = Some(c);
                    partitions = ids;
                    connect_attempt = 0;
                    shared.set_error(None);
                    shared.status.lock().unwrap_or_else(|p| p.into_inner()).partitions = partitions.clone();
                }
                Err(e) => {
                    client = None;
                    connect_attempt += 1;
                    let wait = backoff_delay(connect_attempt);
                    next_connect = Instant::now() + wait;
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

        // Reap readers told to stop.
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
        // Reap readers that ended by themselves.
        let ended: Vec<String> = local
            .readers
            .iter()
            .filter(|(_, r)| r.task.is_finished())
            .map(|(p, _)| p.clone())
            .collect();
        for p in ended {
            let Some(mut r) = local.readers.remove(&p) else {
                continue;
            };
            let end = (&mut r.task).await;
            match end {
                Ok(ReaderEnd::Lost(why)) => {
                    tracing::warn!(partition = %p, reason = %why, "partition taken by another reader; giving it up");
                    local
                        .cooldown
                        .insert(p.clone(), Instant::now() + shared.settings.expiry);
                    local.resume.remove(&p);
                    if let Some(v) = local.held.remove(&p) {
                        let _ = shared.ownership.write(&p, Some(&v), OwnershipClaim::release()).await;
                    }
                }
                Ok(ReaderEnd::Failed(why)) => {
                    local.remember(&p, &r.last);
                    let entry = backoff.entry(p.clone()).or_insert((0, Instant::now()));
                    entry.0 += 1;
                    let wait = backoff_delay(entry.0);
                    entry.1 = Instant::now() + wait;
                    shared.set_error(Some(format!("partition {p}: {why}; retrying in {}s", wait.as_secs())));
                    let lower = why.to_ascii_lowercase();
                    if [
                        "unauthorized",
                        "not-found",
                        "not found",
                        "connection",
                        "session",
                        "link name",
                    ]
                    .iter()
                    .any(|k| lower.contains(k))
                    {
                        // The connection itself may be unusable (token, entity): start afresh.
                        client = None;
                        next_connect = next_connect.max(Instant::now() + wait);
                    }
                }
                Ok(ReaderEnd::Stopped) | Err(_) => local.remember(&p, &r.last),
            }
        }

        if !partitions.is_empty() {
            match shared.ownership.list().await {
                Ok(records) => {
                    last_renewed = balance_cycle(&shared, &partitions, records, expiry, &mut local, last_renewed).await;
                }
                Err(e) => {
                    tracing::warn!(error = %e, "cannot list partition ownership");
                    shared.set_error(Some(format!("partition ownership: {e}")));
                }
            }
            // Fence: without a successful renewal for most of the expiry, others may own our
            // partitions already.
            if last_renewed.elapsed() > shared.settings.expiry.mul_f32(0.8) && !local.readers.is_empty() {
                tracing::warn!("ownership not renewed in time; stopping every reader");
                // The records stay in `held`: the next listing tells which are still ours
                // (nobody else read those, so they resume where this replica got to).
                local.stop_all().await;
            }
            // Start readers of owned partitions (only while ownership is fresh).
            if client.is_some() && last_renewed.elapsed() <= shared.settings.expiry.mul_f32(0.8) {
                let startable: Vec<String> = local.held.keys().filter(|p| !local.busy(p)).cloned().collect();
                for p in startable {
                    if backoff.get(&p).is_some_and(|(_, at)| Instant::now() < *at) {
                        continue;
                    }
                    let resume = local.resume.remove(&p);
                    local
                        .readers
                        .insert(p.clone(), start_reader(p, resume, shared.clone(), tx.clone()));
                }
            }
            // Per-partition progress for the report (and the operator's lag): every 10 s.
            if let Some(c) = &client {
                if last_progress.elapsed() >= Duration::from_secs(10).max(shared.settings.interval) {
                    last_progress = Instant::now();
                    let mut progress = BTreeMap::new();
                    for (p, r) in local.readers.iter() {
                        let mut report = crate::config::PartitionReport {
                            owner: shared.identity.clone(),
                            read_sequence_number: *r.last_sequence.lock().unwrap_or_else(|x| x.into_inner()),
                            ..Default::default()
                        };
                        if let Ok(Ok(props)) =
                            tokio::time::timeout(Duration::from_secs(5), c.get_partition_properties(p)).await
                        {
                            report.last_enqueued_sequence_number = Some(props.last_enqueued_sequence_number);
                            report.last_enqueued_time = props.last_enqueued_time_utc.map(|t| {
                                chrono::DateTime::<chrono::Utc>::from(t)
                                    .to_rfc3339_opts(chrono::SecondsFormat::Millis, true)
                            });
                        }
                        progress.insert(p.clone(), report);
                    }
                    shared.health.set_partitions(progress);
                }
            }
            let owned: BTreeSet<String> = local.readers.keys().cloned().collect();
            shared.status.lock().unwrap_or_else(|p| p.into_inner()).owned = owned;
            // A reader that delivers clears its backoff; with none failing, the error clears.
            backoff.retain(|p, _| {
                !local
                    .readers
                    .get(p)
                    .is_some_and(|r| r.healthy.load(std::sync::atomic::Ordering::Relaxed))
            });
            if client.is_some() && backoff.is_empty() {
                shared.set_error(None);
            }
            local.cooldown.retain(|_, until| Instant::now() < *until);
        }

        tokio::select! {
            _ = stop.cancelled() => break,
            _ = tokio::time::sleep(shared.settings.interval) => {}
        }
    }

    // Shutdown: stop readers, then release what we hold.
    local.stop_all().await;
    drop(tx);
    for (p, v) in std::mem::take(&mut local.held) {
        // Another replica may have written a hand-over request on the record meanwhile (a new
        // version): release against the current version while the record is still ours.
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
    if let Some(c) = client {
        if let Ok(c) = Arc::try_unwrap(c) {
            let _ = c.close().await;
        }
    }
}

/// One balancing cycle; returns when ownership was last renewed successfully. Never waits on a
/// reader or a checkpoint: a slow stop must not delay the renewals that keep the other
/// partitions ours.
async fn balance_cycle(
    shared: &Arc<Shared>,
    partitions: &[String],
    records: Vec<crate::collector::checkpoint::ownership::Ownership>,
    expiry: chrono::Duration,
    local: &mut Local,
    mut last_renewed: Instant,
) -> Instant {
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
        last_renewed = Instant::now();
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
    last_renewed
}

fn backoff_delay(attempt: u32) -> Duration {
    let secs = 1u64 << attempt.min(5).saturating_sub(1);
    Duration::from_secs(secs.min(30))
}

/// Start reading a partition: after `resume` (the last event this replica's pipeline took, when
/// it held the partition throughout), else after the checkpoint or at the configured start.
fn start_reader(
    partition: String,
    resume: Option<String>,
    shared: Arc<Shared>,
    tx: mpsc::Sender<SourceBatch>,
) -> RunningReader {
    let stop = CancellationToken::new();
    let last = Arc::new(Mutex::new(None));
    let healthy = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let last_sequence = Arc::new(Mutex::new(None));
    let task = tokio::spawn(read_partition(
        partition,
        resume,
        shared,
        tx,
        stop.clone(),
        ReaderProgress {
            last: last.clone(),
            healthy: healthy.clone(),
            last_sequence: last_sequence.clone(),
        },
    ));
    RunningReader {
        stop,
        task,
        last,
        healthy,
        last_sequence,
    }
}

/// What a reader shares with the balancer.
struct ReaderProgress {
    last: Arc<Mutex<Option<String>>>,
    healthy: Arc<std::sync::atomic::AtomicBool>,
    last_sequence: Arc<Mutex<Option<i64>>>,
}

/// Where to start a partition: after its checkpoint, else the configured start.
async fn start_position(shared: &Shared, partition: &str) -> Result<StartPosition, String> {
    let checkpoint = shared
        .checkpoints
        .load(partition)
        .await
        .map_err(|e| format!("checkpoint: {e}"))?;
    if let Some(cp) = checkpoint {
        if !cp.position.is_empty() {
            return Ok(StartPosition {
                location: StartLocation::Offset(cp.position),
                inclusive: false,
            });
        }
    }
    let start = &shared.spec.start_position;
    Ok(match start.from {
        StartFrom::Earliest => StartPosition {
            location: StartLocation::Earliest,
            inclusive: false,
        },
        StartFrom::Latest => StartPosition {
            location: StartLocation::Latest,
            inclusive: false,
        },
        StartFrom::EnqueuedTime => {
            let at = start
                .enqueued_time
                .as_deref()
                .and_then(|t| chrono::DateTime::parse_from_rfc3339(t).ok())
                .ok_or_else(|| "startPosition.enqueuedTime is not an RFC 3339 time".to_string())?;
            let ms = at.timestamp_millis().max(0) as u64;
            StartPosition {
                location: StartLocation::EnqueuedTime(SystemTime::UNIX_EPOCH + Duration::from_millis(ms)),
                inclusive: false,
            }
        }
    })
}

/// One event as a unit; `scope` is `namespace/hub/partition`, the unit id adds the sequence
/// number (the offset when the service gave none), so records get ids unique across hubs.
fn unit_of(event: ReceivedEventData, scope: &str) -> Option<SourceUnit> {
    let offset = event.offset().clone()?;
    let sequence = event.sequence_number();
    let enqueued = event
        .enqueued_time()
        .map(|t| chrono::DateTime::<chrono::Utc>::from(t).to_rfc3339_opts(chrono::SecondsFormat::Millis, true));
    let payload = Bytes::copy_from_slice(event.event_data().body().unwrap_or_default());
    let mut state = serde_json::Map::new();
    if let Some(s) = sequence {
        state.insert("sequenceNumber".into(), s.into());
    }
    if let Some(t) = enqueued {
        state.insert("enqueuedTime".into(), t.into());
    }
    let id: Arc<str> = match sequence {
        Some(s) => format!("{scope}/{s}").into(),
        None => format!("{scope}/@{offset}").into(),
    };
    Some(SourceUnit {
        payload,
        position: offset,
        state: Some(Arc::new(serde_json::Value::Object(state))),
        id: Some(id),
    })
}

/// Read one partition over a connection of its own: stopping it (hand-over, lost ownership)
/// closes that connection, so transfers still in flight cannot upset other partitions' links.
async fn read_partition(
    partition: String,
    resume: Option<String>,
    shared: Arc<Shared>,
    tx: mpsc::Sender<SourceBatch>,
    stop: CancellationToken,
    progress: ReaderProgress,
) -> ReaderEnd {
    let start = match resume {
        Some(offset) => StartPosition {
            location: StartLocation::Offset(offset),
            inclusive: false,
        },
        None => match start_position(&shared, &partition).await {
            Ok(s) => s,
            Err(e) => return ReaderEnd::Failed(e),
        },
    };
    tracing::info!(partition = %partition, start = ?start.location, "reading partition");
    let options = OpenReceiverOptions {
        owner_level: Some(0),
        prefetch: Some(shared.spec.prefetch.max(1)),
        start_position: Some(start),
        ..Default::default()
    };
    let client = tokio::select! {
        _ = stop.cancelled() => return ReaderEnd::Stopped,
        c = open_client(&shared) => match c {
            Ok(c) => c,
            Err(e) => return ReaderEnd::Failed(format!("connection: {e}")),
        },
    };
    let receiver = tokio::select! {
        _ = stop.cancelled() => {
            let _ = tokio::time::timeout(Duration::from_secs(5), client.close()).await;
            return ReaderEnd::Stopped;
        }
        r = client.open_receiver_on_partition(partition.clone(), Some(options)) => r,
    };
    let receiver = match receiver {
        Ok(r) => r,
        Err(e) => {
            let _ = tokio::time::timeout(Duration::from_secs(5), client.close()).await;
            return if is_stolen(&e) {
                ReaderEnd::Lost(describe_error(&e))
            } else {
                ReaderEnd::Failed(describe_error(&e))
            };
        }
    };
    let max_batch = (shared.spec.prefetch as usize).clamp(1, MAX_BATCH);
    let scope = format!(
        "{}/{}/{}",
        shared.spec.event_hub.fully_qualified_namespace, shared.hub, partition
    );
    let end = {
        let mut stream = std::pin::pin!(receiver.stream_events());
        loop {
            let attached = progress.healthy.load(std::sync::atomic::Ordering::Relaxed);
            let first = tokio::select! {
                _ = stop.cancelled() => break ReaderEnd::Stopped,
                e = stream.next() => e,
                // An idle partition whose link stays up for a while is healthy too.
                _ = tokio::time::sleep(Duration::from_secs(2)), if !attached => {
                    progress.healthy.store(true, std::sync::atomic::Ordering::Relaxed);
                    continue;
                }
            };
            let mut units = Vec::new();
            let mut failure = None;
            let mut push = |item: Option<azure_messaging_eventhubs::Result<ReceivedEventData>>,
                            units: &mut Vec<SourceUnit>| match item {
                Some(Ok(ev)) => {
                    if let Some(u) = unit_of(ev, &scope) {
                        units.push(u);
                    }
                    true
                }
                Some(Err(e)) => {
                    failure = Some(if is_stolen(&e) {
                        ReaderEnd::Lost(describe_error(&e))
                    } else {
                        ReaderEnd::Failed(describe_error(&e))
                    });
                    false
                }
                None => {
                    failure = Some(ReaderEnd::Failed("receiver closed".into()));
                    false
                }
            };
            if push(first, &mut units) {
                while units.len() < max_batch {
                    match stream.next().now_or_never() {
                        Some(item) => {
                            if !push(item, &mut units) {
                                break;
                            }
                        }
                        None => break,
                    }
                }
            }
            if let Some(u) = units.last() {
                let position = u.position.clone();
                let sequence = u
                    .state
                    .as_ref()
                    .and_then(|s| s.to_json().get("sequenceNumber")?.as_i64());
                let batch = SourceBatch {
                    stream: partition.clone(),
                    origin: RecordOrigin::Diagnostic,
                    units,
                };
                let sent = tokio::select! {
                    _ = stop.cancelled() => false,
                    r = tx.send(batch) => r.is_ok(),
                };
                if !sent {
                    break ReaderEnd::Stopped;
                }
                *progress.last.lock().unwrap_or_else(|p| p.into_inner()) = Some(position);
                *progress.last_sequence.lock().unwrap_or_else(|p| p.into_inner()) = sequence;
                progress.healthy.store(true, std::sync::atomic::Ordering::Relaxed);
            }
            if let Some(f) = failure {
                break f;
            }
        }
    };
    drop(receiver);
    let _ = tokio::time::timeout(Duration::from_secs(5), client.close()).await;
    tracing::info!(partition = %partition, end = ?end, "partition reader ended");
    end
}
