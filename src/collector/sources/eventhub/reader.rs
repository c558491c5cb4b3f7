//! A partition reader: one task per owned partition, on an AMQP connection of its own, from
//! the checkpoint (or where this replica got to) into the pipeline's channel.

use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use azure_messaging_eventhubs::models::ReceivedEventData;
use azure_messaging_eventhubs::{EventHubsError, OpenReceiverOptions, StartLocation, StartPosition};
use bytes::Bytes;
use futures::{FutureExt, StreamExt};
use tokio::sync::mpsc;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use super::client::{classify, describe_error, open_client, FailureKind};
use super::Shared;
use crate::api::StartFrom;
use crate::collector::sources::{RecordOrigin, SourceBatch, SourceUnit};
use crate::config::lease::EventHubPosition;

/// Most events in one batch handed to the pipeline.
const MAX_BATCH: usize = 500;

/// How a reader ended.
#[derive(Debug)]
pub(super) enum ReaderEnd {
    /// Asked to stop.
    Stopped,
    /// Another reader took the partition (`amqp:link:stolen`).
    Lost(String),
    /// Could not read; retried after a backoff. With `reconnect`, the shared client may be
    /// unusable too (credentials, entity, transport) and is opened afresh.
    Failed { reason: String, reconnect: bool },
}

pub(super) struct RunningReader {
    pub(super) stop: CancellationToken,
    pub(super) task: JoinHandle<ReaderEnd>,
    /// Offset of the last event handed to the pipeline.
    pub(super) last: Arc<Mutex<Option<String>>>,
    /// The receiver attached and delivered.
    pub(super) healthy: Arc<std::sync::atomic::AtomicBool>,
    /// Sequence number and enqueued time of the last event handed to the pipeline.
    pub(super) last_sequence: Arc<Mutex<(Option<i64>, Option<String>)>>,
}

/// Start reading a partition: after `resume` (the last event this replica's pipeline took, when
/// it held the partition throughout), else after the checkpoint or at the configured start.
pub(super) fn start_reader(
    partition: String,
    resume: Option<String>,
    shared: Arc<Shared>,
    tx: mpsc::Sender<SourceBatch>,
) -> RunningReader {
    let stop = CancellationToken::new();
    let last = Arc::new(Mutex::new(None));
    let healthy = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let last_sequence = Arc::new(Mutex::new((None, None)));
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
    last_sequence: Arc<Mutex<(Option<i64>, Option<String>)>>,
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
    let state = EventHubPosition {
        offset: offset.clone(),
        sequence_number: sequence,
        enqueued_time: enqueued,
    }
    .state();
    let id: Arc<str> = match sequence {
        Some(s) => format!("{scope}/{s}").into(),
        None => format!("{scope}/@{offset}").into(),
    };
    Some(SourceUnit {
        payload,
        position: offset,
        state: Some(Arc::new(state)),
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
            Err(reason) => {
                return ReaderEnd::Failed {
                    reason,
                    reconnect: false,
                }
            }
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
            Err(e) => {
                return ReaderEnd::Failed {
                    reason: format!("connection: {}", describe_error(&e)),
                    reconnect: true,
                }
            }
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
            return ended_by(&e);
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
                    failure = Some(ended_by(&e));
                    false
                }
                None => {
                    failure = Some(ReaderEnd::Failed {
                        reason: "receiver closed".into(),
                        reconnect: false,
                    });
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
                let sequence = u.state.as_ref().map(|s| {
                    let p = EventHubPosition::from_checkpoint(&position, Some(&s.to_json()));
                    (p.sequence_number, p.enqueued_time)
                });
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
                *progress.last_sequence.lock().unwrap_or_else(|p| p.into_inner()) = sequence.unwrap_or_default();
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

/// How a reader ends on an SDK error: lost ownership, or a failure retried after a backoff.
fn ended_by(e: &EventHubsError) -> ReaderEnd {
    match classify(e) {
        FailureKind::Stolen => ReaderEnd::Lost(describe_error(e)),
        kind => ReaderEnd::Failed {
            reason: describe_error(e),
            reconnect: kind.reconnect(),
        },
    }
}
