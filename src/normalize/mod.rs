//! Normalization of Microsoft records into the shape a destination wants.
//!
//! The collector calls [`to_ecs`] for destinations with `format: ecs`; `raw` destinations get the
//! record untouched. Syslog destinations encode the ECS document further with [`cef`] or
//! [`leef`]. Everything here is a pure function of the record: no I/O, no panics on input.

use serde_json::{json, Value};

/// Where a record came from, when the source knows. Recognition works without it; it only
/// breaks ties (e.g. an O365 record fetched for a given content type).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum SourceHint<'a> {
    #[default]
    Unknown,
    /// An Azure diagnostic-settings or Defender streaming record from Event Hubs or Blob.
    Diagnostic,
    /// An Office 365 Management Activity API record of this content type.
    ManagementActivity(&'a str),
    /// A Graph object from this endpoint (e.g. `signIns`, `alerts_v2`).
    Graph(&'a str),
}

/// Inputs of a normalization besides the record itself.
#[derive(Clone, Debug, Default)]
pub struct EcsContext<'a> {
    pub source: SourceHint<'a>,
    /// The stable id of the event (`event.id` when the record has none of its own).
    pub event_id: Option<&'a str>,
    /// The record as received, kept as `event.original` when set.
    pub original: Option<&'a str>,
}

/// Why a record could not be normalized.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum NormalizeError {
    #[error("record is not a JSON object")]
    NotAnObject,
}

/// The family and category a record was recognised as.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Recognized {
    /// e.g. `entra`, `intune`, `defender`, `o365`, `graph`, `unknown`.
    pub family: &'static str,
    /// e.g. `SignInLogs`, `AdvancedHunting-DeviceProcessEvents`, `Audit.Exchange`.
    pub category: String,
}

/// Tell the family and category of a record.
pub fn recognize(record: &Value, _hint: SourceHint<'_>) -> Recognized {
    let category = record
        .get("category")
        .or_else(|| record.get("Workload"))
        .and_then(Value::as_str)
        .unwrap_or("unknown")
        .to_string();
    Recognized {
        family: "unknown",
        category,
    }
}

/// Map a record to an Elastic Common Schema document.
pub fn to_ecs(record: &Value, ctx: &EcsContext<'_>) -> Result<Value, NormalizeError> {
    let obj = record.as_object().ok_or(NormalizeError::NotAnObject)?;
    let recognized = recognize(record, ctx.source);
    let timestamp = obj
        .get("time")
        .or_else(|| obj.get("CreationTime"))
        .or_else(|| obj.get("createdDateTime"))
        .cloned()
        .unwrap_or(Value::Null);
    let mut event = json!({
        "kind": "event",
        "dataset": format!("{}.{}", recognized.family, recognized.category),
    });
    if let Some(id) = ctx.event_id {
        event["id"] = Value::String(id.to_string());
    }
    if let Some(original) = ctx.original {
        event["original"] = Value::String(original.to_string());
    }
    Ok(json!({ "@timestamp": timestamp, "ecs": {"version": "8.17.0"}, "event": event }))
}
