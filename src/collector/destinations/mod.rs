//! Destinations: where encoded events are sent.
//!
//! A destination only knows its wire protocol. The shared machinery in
//! [`crate::collector::delivery`] does the rest for every kind: the bounded buffer, batching by
//! events, bytes and latency, concurrency, retries with exponential backoff, full jitter and
//! `Retry-After`, dead-lettering, acknowledgements, metrics and the health report.
//!
//! # Adding a destination
//! 1. Create `destinations/<kind>.rs` with a struct built from its spec (resolve Secrets at build
//!    time, keep them as `SecretValue` or sensitive header values). HTTP receivers share
//!    [`http_client`]: the client with timeouts and TLS options, `Retry-After`, gzip, size-bounded
//!    splitting and [`http_client::uniform`]; [`document`] reads an event's time and dataset.
//! 2. Implement [`Destination::send`]: encode the batch (each [`Event::body`] is the document,
//!    already in the destination's `format`, as compact JSON), send it, and map the answer to a
//!    [`SendOutcome`]: the whole batch delivered / to retry / rejected / refused for its
//!    credentials, or one [`EventOutcome`] per event when the protocol answers per item
//!    (Elasticsearch `_bulk` items, HEC acks). A refused credential (401/403 and the vendor's
//!    token error codes) is [`SendOutcome::Unauthorized`], never `Rejected`: no event is at
//!    fault, so none is dead-lettered; the delivery machinery retries until the credentials work.
//!    A whole batch `Rejected` without saying which event is at fault is split by the delivery
//!    machinery to isolate the culprits; a destination need not do that itself.
//! 3. Add one arm to [`build`]. Tests beside the module against a local stand-in receiver.

pub mod azure_blob;
pub mod document;
pub mod elasticsearch;
pub mod file;
pub mod http;
pub mod http_client;
pub mod relp;
pub mod sekoia;
pub mod sentinel;
pub mod splunk_hec;
pub mod stdout;
pub mod syslog;

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use bytes::Bytes;

use crate::api::{DestinationKind, SiemDestinationSpec};
use crate::collector::ack::AckRef;
use crate::collector::secrets::SecretError;
use crate::config::SecretSource;

/// One event on its way to one destination.
#[derive(Debug)]
pub struct Event {
    /// The document as compact JSON, in the destination's format (`ecs` or `raw`).
    pub body: Bytes,
    /// Stable id of the record, the same on every re-delivery: the record's own id for API
    /// sources (O365 `Id`, Graph `id`), `{stream}/{position}#{index}` otherwise. Destinations that
    /// can drop duplicates use it (Elasticsearch `_id`, blob object names, HEC/Sekoia ids).
    pub id: Arc<str>,
    /// The LogSource it was routed for.
    pub log_source: Arc<str>,
    /// What normalization recognised the record as (family and category), computed once for
    /// every destination: the Splunk sourcetype and the Elasticsearch data stream come from it
    /// ([`crate::normalize::content`]). `None` for a record that could not be parsed.
    pub recognized: Option<Arc<crate::normalize::Recognized>>,
    /// The record as the source delivered it, for a dead letter (the same bytes as `body` for
    /// `format: raw`).
    pub record: Bytes,
    /// Acknowledgement of this delivery (delivered or dead-lettered).
    pub(crate) ack: AckRef,
    /// Set on a dead letter on its way to a dead-letter destination: its delivery counts as
    /// dead-lettered, and a refusal is not dead-lettered again.
    pub(crate) dead_letter: Option<crate::collector::dead_letter::DeadLetterMark>,
    /// The slot it holds in the destination's bounded buffer, released when the event is dropped.
    pub(crate) _slot: Option<tokio::sync::OwnedSemaphorePermit>,
}

impl Event {
    /// An event outside a pipeline (tests, benchmarks of a destination alone).
    pub fn detached(body: impl Into<Bytes>, log_source: &str) -> Self {
        Self::detached_with_id(body, log_source, "detached")
    }

    /// An event outside a pipeline, with the stable id a source would give it.
    pub fn detached_with_id(body: impl Into<Bytes>, log_source: &str, id: &str) -> Self {
        let stream = crate::collector::ack::StreamTracker::new("detached", None);
        let body = body.into();
        Event {
            record: body.clone(),
            body,
            id: Arc::from(id),
            log_source: Arc::from(log_source),
            recognized: None,
            ack: stream.register(String::new(), 1),
            dead_letter: None,
            _slot: None,
        }
    }
}

/// How a destination refused the credentials it was given.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum AuthFailure {
    /// 401-like: the credential is missing, wrong, expired or revoked (HEC codes 2 and 3,
    /// Entra `invalid_client`).
    Unauthorized,
    /// 403-like: the credential is known but may not write here (HEC codes 1 and 4, a missing
    /// role on the index or the DCR).
    Forbidden,
}

impl AuthFailure {
    /// The reason in the collector report and in the SiemDestination's `Ready` condition.
    pub fn as_str(self) -> &'static str {
        match self {
            AuthFailure::Unauthorized => "Unauthorized",
            AuthFailure::Forbidden => "Forbidden",
        }
    }

    /// The refusal an HTTP status means, if it is one (401, 403).
    pub fn of_status(status: u16) -> Option<Self> {
        match status {
            401 => Some(AuthFailure::Unauthorized),
            403 => Some(AuthFailure::Forbidden),
            _ => None,
        }
    }
}

impl std::fmt::Display for AuthFailure {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// What happened to one event of a batch.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum EventOutcome {
    /// The destination has it.
    Delivered,
    /// A transient failure: send it again.
    Retry { reason: String },
    /// The destination will never take it: dead-letter it with the reason.
    Rejected { reason: String },
    /// The destination refused the credentials: send it again once they work, never
    /// dead-letter it.
    Unauthorized { kind: AuthFailure, reason: String },
}

/// What happened to a batch.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum SendOutcome {
    /// Every event was delivered.
    Delivered,
    /// Nothing was delivered and a later attempt may succeed; `after` is the server's
    /// `Retry-After`, which takes precedence over the backoff.
    Retry { reason: String, after: Option<Duration> },
    /// The batch was refused as a whole and the destination did not say which event is at
    /// fault: a batch of one is dead-lettered, a larger one is split to isolate the culprits.
    Rejected { reason: String },
    /// The destination refused the credentials: an outage, retried with backoff until the
    /// credentials work (a fixed Secret rolls the collector pods; see the README), never
    /// dead-lettered, reported as the destination's `reason`.
    Unauthorized { kind: AuthFailure, reason: String },
    /// One outcome per event, in batch order.
    PerEvent(Vec<EventOutcome>),
}

/// A destination's wire protocol. Implementations are shared by the concurrent senders of one
/// destination, hence `&self`.
#[async_trait]
pub trait Destination: Send + Sync {
    /// Encode and send one batch (never empty).
    async fn send(&self, batch: &[Event]) -> SendOutcome;
}

/// Why a destination could not be built from its spec.
#[derive(Debug, thiserror::Error)]
pub enum BuildError {
    #[error("destination {name}: {message}")]
    Invalid { name: String, message: String },
    #[error("destination {name}: {source}")]
    Secret {
        name: String,
        #[source]
        source: SecretError,
    },
    #[error("destination {name}: kind {kind} is not available in this collector yet")]
    NotYetSupported { name: String, kind: &'static str },
}

/// Build the destination a spec describes. The one registration point of destination kinds.
pub fn build(
    name: &str,
    spec: &SiemDestinationSpec,
    secrets: &SecretSource,
) -> Result<Arc<dyn Destination>, BuildError> {
    let kind = spec.kind().map_err(|e| BuildError::Invalid {
        name: name.to_string(),
        message: e.to_string(),
    })?;
    Ok(match kind {
        DestinationKind::Stdout(s) => Arc::new(stdout::StdoutDestination::new(s)),
        DestinationKind::File(s) => Arc::new(file::FileDestination::new(s)),
        DestinationKind::AzureBlob(s) => Arc::new(azure_blob::AzureBlobDestination::new(name, s, secrets)?),
        DestinationKind::Syslog(s) => Arc::new(syslog::SyslogDestination::new(name, s, secrets)?),
        DestinationKind::Http(s) => Arc::new(http::HttpDestination::new(name, s, &spec.retry, secrets)?),
        DestinationKind::Elasticsearch(s) => Arc::new(elasticsearch::ElasticsearchDestination::new(
            name,
            s,
            spec.format,
            &spec.retry,
            secrets,
        )?),
        DestinationKind::Sekoia(s) => Arc::new(sekoia::SekoiaDestination::new(name, s, &spec.retry, secrets)?),
        DestinationKind::Sentinel(s) => Arc::new(sentinel::SentinelDestination::new(name, s, &spec.retry, secrets)?),
        DestinationKind::SplunkHec(s) => Arc::new(splunk_hec::SplunkHecDestination::new(
            name,
            s,
            spec.format,
            &spec.retry,
            secrets,
        )?),
    })
}
