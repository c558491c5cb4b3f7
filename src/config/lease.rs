//! The Event Hubs position and the Kubernetes Lease record: one owner for what the collector
//! writes and the operator reads (part of the configuration contract between them).
//!
//! - [`EventHubPosition`]: where a partition was checkpointed: the service `offset` (the
//!   checkpoint's `position`) with its `sequenceNumber` and `enqueuedTime` (the checkpoint's
//!   `state`, `{"sequenceNumber": <i64>, "enqueuedTime": "<RFC 3339>"}`).
//! - [`LeaseRecord`]: one `coordination.k8s.io/v1` Lease per stream, named `<leasePrefix>-<stream>`
//!   and labelled [`PREFIX_LABEL`]: ownership in the spec (`holderIdentity`, `renewTime`,
//!   `leaseDurationSeconds`), the checkpoint and the hand-over request in annotations
//!   ([`POSITION`], [`STATE`], [`UPDATED`], [`OFFSET`], [`SEQUENCE_NUMBER`], [`ENQUEUED_TIME`],
//!   [`REQUESTED_BY`]).

use std::collections::BTreeMap;

use k8s_openapi::api::coordination::v1::Lease;
use k8s_openapi::jiff::{SignedDuration, Timestamp};
use kube::ResourceExt;
use serde_json::Value;

/// Label on every Lease of a store, with the lease prefix as value.
pub const PREFIX_LABEL: &str = "siembridge.io/lease-prefix";
/// Annotations.
pub const POSITION: &str = "siembridge.io/position";
pub const STATE: &str = "siembridge.io/state";
pub const UPDATED: &str = "siembridge.io/updated";
pub const OFFSET: &str = "siembridge.io/offset";
pub const SEQUENCE_NUMBER: &str = "siembridge.io/sequence-number";
pub const ENQUEUED_TIME: &str = "siembridge.io/enqueued-time";
pub const REQUESTED_BY: &str = "siembridge.io/requested-by";
/// What the API server accepts of an object's annotations, keys and values together.
pub const ANNOTATIONS_LIMIT: usize = 256 * 1024;

/// Where an Event Hubs partition was read or checkpointed.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct EventHubPosition {
    /// The service offset (the checkpoint's `position`).
    pub offset: String,
    pub sequence_number: Option<i64>,
    /// RFC 3339, milliseconds.
    pub enqueued_time: Option<String>,
}

impl EventHubPosition {
    /// The checkpoint state: `{"sequenceNumber", "enqueuedTime"}` (each only when known).
    pub fn state(&self) -> Value {
        let mut state = serde_json::Map::new();
        if let Some(s) = self.sequence_number {
            state.insert("sequenceNumber".into(), s.into());
        }
        if let Some(t) = &self.enqueued_time {
            state.insert("enqueuedTime".into(), t.clone().into());
        }
        Value::Object(state)
    }

    /// From a checkpoint's position and state.
    pub fn from_checkpoint(position: &str, state: Option<&Value>) -> Self {
        EventHubPosition {
            offset: position.to_string(),
            sequence_number: state.and_then(|s| s.get("sequenceNumber")).and_then(Value::as_i64),
            enqueued_time: state
                .and_then(|s| s.get("enqueuedTime"))
                .and_then(Value::as_str)
                .map(str::to_string),
        }
    }

    /// The sequence number in a checkpoint state, if it has one.
    pub fn sequence_in(state: &Value) -> Option<i64> {
        state.get("sequenceNumber").and_then(Value::as_i64)
    }
}

/// A stream's Lease as the collector and the operator read it.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct LeaseRecord {
    /// The stream (`<prefix>-` removed from the Lease name).
    pub stream: String,
    /// `holderIdentity` (empty or absent when free).
    pub holder: Option<String>,
    pub renewed: Option<Timestamp>,
    pub duration_seconds: Option<i32>,
    /// A replica asking for a hand-over.
    pub requested_by: Option<String>,
    /// The checkpoint: position, state (JSON text) and when written.
    pub position: Option<String>,
    pub state: Option<String>,
    pub updated: Option<String>,
    /// The Event Hubs position as written beside the checkpoint for people and the operator.
    pub event_hub: Option<EventHubPosition>,
    /// `resourceVersion`, for compare-and-write.
    pub version: String,
}

impl LeaseRecord {
    /// The record of `lease` if its name is `<prefix>-<stream>`; `stream_ok` says which stream
    /// names belong to the store (Event Hubs partition ids are numbers).
    pub fn read(lease: &Lease, prefix: &str, stream_ok: impl Fn(&str) -> bool) -> Option<Self> {
        let name = lease.name_any();
        let stream = name.strip_prefix(prefix)?.strip_prefix('-')?;
        if stream.is_empty() || !stream_ok(stream) {
            return None;
        }
        let spec = lease.spec.clone().unwrap_or_default();
        let a = lease.annotations();
        let event_hub = a.get(OFFSET).map(|offset| EventHubPosition {
            offset: offset.clone(),
            sequence_number: a.get(SEQUENCE_NUMBER).and_then(|s| s.parse().ok()),
            enqueued_time: a.get(ENQUEUED_TIME).cloned(),
        });
        Some(LeaseRecord {
            stream: stream.to_string(),
            holder: spec.holder_identity.filter(|h| !h.is_empty()),
            renewed: spec.renew_time.map(|t| t.0),
            duration_seconds: spec.lease_duration_seconds,
            requested_by: a.get(REQUESTED_BY).cloned(),
            position: a.get(POSITION).cloned(),
            state: a.get(STATE).cloned(),
            updated: a.get(UPDATED).cloned(),
            event_hub,
            version: lease.resource_version().unwrap_or_default(),
        })
    }

    /// The holder, if its ownership has not expired at `now`.
    pub fn live_holder(&self, now: Timestamp) -> Option<&str> {
        let (renewed, secs) = (self.renewed?, self.duration_seconds?);
        (renewed + SignedDuration::from_secs(i64::from(secs)) > now)
            .then_some(self.holder.as_deref())
            .flatten()
    }

    /// Write a checkpoint into a Lease's annotations: position, state and time, and for an Event
    /// Hubs state the offset, sequence number and enqueued time beside them.
    pub fn set_checkpoint(
        annotations: &mut BTreeMap<String, String>,
        position: &str,
        state: Option<&Value>,
        updated: &str,
    ) {
        annotations.insert(POSITION.into(), position.to_string());
        annotations.insert(UPDATED.into(), updated.to_string());
        match state {
            Some(s) => {
                annotations.insert(STATE.into(), s.to_string());
                let p = EventHubPosition::from_checkpoint(position, Some(s));
                if let Some(seq) = p.sequence_number {
                    annotations.insert(OFFSET.into(), p.offset);
                    annotations.insert(SEQUENCE_NUMBER.into(), seq.to_string());
                }
                if let Some(t) = p.enqueued_time {
                    annotations.insert(ENQUEUED_TIME.into(), t);
                }
            }
            None => {
                annotations.remove(STATE);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::api::coordination::v1::LeaseSpec;
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::{MicroTime, ObjectMeta};

    #[test]
    fn a_checkpoint_written_is_read_back_typed() {
        let position = EventHubPosition {
            offset: "4096".into(),
            sequence_number: Some(41),
            enqueued_time: Some("2026-01-01T00:00:00.000Z".into()),
        };
        let mut annotations = BTreeMap::new();
        LeaseRecord::set_checkpoint(
            &mut annotations,
            "4096",
            Some(&position.state()),
            "2026-01-01T00:00:01Z",
        );
        let now = Timestamp::now();
        let lease = Lease {
            metadata: ObjectMeta {
                name: Some("sb-cg-3".into()),
                annotations: Some(annotations),
                resource_version: Some("7".into()),
                ..Default::default()
            },
            spec: Some(LeaseSpec {
                holder_identity: Some("pod-a".into()),
                renew_time: Some(MicroTime(now)),
                lease_duration_seconds: Some(60),
                ..Default::default()
            }),
        };
        let r = LeaseRecord::read(&lease, "sb-cg", |s| s.bytes().all(|b| b.is_ascii_digit())).unwrap();
        assert_eq!(r.stream, "3");
        assert_eq!(r.event_hub, Some(position.clone()));
        assert_eq!(
            EventHubPosition::from_checkpoint(
                r.position.as_deref().unwrap(),
                Some(&serde_json::from_str(r.state.as_deref().unwrap()).unwrap())
            ),
            position
        );
        assert_eq!(r.live_holder(now), Some("pod-a"));
        assert_eq!(r.live_holder(now + SignedDuration::from_secs(61)), None);
        assert_eq!(r.version, "7");
        // Another group whose name extends this prefix is not this store's.
        assert!(LeaseRecord::read(&lease, "sb-c", |s| s.bytes().all(|b| b.is_ascii_digit())).is_none());
    }
}
