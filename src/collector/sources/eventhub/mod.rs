//! The Event Hubs source: reads one consumer group of one Event Hub with the official Azure SDK
//! (`azure_messaging_eventhubs`), sharing the partitions with the other replicas of the same
//! ConsumerGroup.
//!
//! Modules: [`client`] (credentials, opening, SDK errors classified by kind), [`balancer`] (the
//! [`balancer::Balancer`] and its `cycle()`), [`reader`] (one task per owned partition),
//! [`balance`] (the pure plan).
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
mod balancer;
mod client;
pub mod credential;
mod reader;

use std::collections::BTreeSet;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use tokio::sync::mpsc;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use super::{Source, SourceBatch, SourceContext, SourceError};
use crate::api::ConsumerGroupSpec;
use crate::collector::auth::TokenProvider;
use crate::collector::checkpoint::ownership::PartitionOwnership;
use crate::collector::checkpoint::CheckpointStore;
use crate::collector::secrets;
use crate::config::SecretSource;
use client::Credentials;

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
        let balancer = tokio::spawn(balancer::Balancer::new(shared.clone(), tx).run(stop.clone()));
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
