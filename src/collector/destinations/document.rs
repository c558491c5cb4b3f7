//! Facts a destination reads from an event's document without decoding all of it: its time, its
//! dataset or category, its host. Works on ECS documents and on raw Microsoft records.

use chrono::{DateTime, NaiveDateTime, SecondsFormat, Utc};
use serde::Deserialize;
use serde_json::value::RawValue;

/// What a destination may need from a document. Absent facts are `None`.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct DocumentFacts {
    /// Event time: ECS `@timestamp`, else the record's own time field.
    pub time: Option<DateTime<Utc>>,
    /// ECS `event.dataset` (`azure.signinlogs`), else the diagnostic `category` (`SignInLogs`),
    /// else `o365` for Management Activity records (they have a `Workload`).
    pub dataset: Option<String>,
    /// ECS `host.name`.
    pub host: Option<String>,
    /// The document already has a `TimeGenerated` field (Log Analytics' time column).
    pub has_time_generated: bool,
}

impl DocumentFacts {
    /// The time as RFC 3339 with milliseconds, `2025-01-01T10:03:19.123Z`.
    pub fn time_rfc3339(&self) -> Option<String> {
        self.time.map(|t| t.to_rfc3339_opts(SecondsFormat::Millis, true))
    }
}

#[derive(Deserialize, Default)]
#[allow(non_snake_case)]
struct Probe<'a> {
    #[serde(rename = "@timestamp", borrow, default)]
    at_timestamp: Option<&'a RawValue>,
    #[serde(borrow, default)]
    time: Option<&'a RawValue>,
    #[serde(borrow, default)]
    TimeGenerated: Option<&'a RawValue>,
    #[serde(borrow, default)]
    CreationTime: Option<&'a RawValue>,
    #[serde(borrow, default)]
    createdDateTime: Option<&'a RawValue>,
    #[serde(borrow, default)]
    activityDateTime: Option<&'a RawValue>,
    #[serde(borrow, default)]
    Timestamp: Option<&'a RawValue>,
    #[serde(borrow, default)]
    event: Option<&'a RawValue>,
    #[serde(borrow, default)]
    host: Option<&'a RawValue>,
    #[serde(borrow, default)]
    category: Option<&'a RawValue>,
    #[serde(borrow, default)]
    Workload: Option<&'a RawValue>,
}

#[derive(Deserialize, Default)]
struct Dataset {
    #[serde(default)]
    dataset: Option<String>,
}

#[derive(Deserialize, Default)]
struct HostName {
    #[serde(default)]
    name: Option<String>,
}

fn string(raw: Option<&RawValue>) -> Option<String> {
    raw.and_then(|r| serde_json::from_str::<String>(r.get()).ok())
}

/// A time as Microsoft records write it: RFC 3339, or without offset (O365 `CreationTime`, UTC).
pub fn parse_time(text: &str) -> Option<DateTime<Utc>> {
    if let Ok(t) = DateTime::parse_from_rfc3339(text) {
        return Some(t.with_timezone(&Utc));
    }
    NaiveDateTime::parse_from_str(text, "%Y-%m-%dT%H:%M:%S%.f")
        .ok()
        .map(|n| n.and_utc())
}

/// Read the facts of a document; a body that is not a JSON object has none.
pub fn facts(body: &[u8]) -> DocumentFacts {
    let Ok(p) = serde_json::from_slice::<Probe<'_>>(body) else {
        return DocumentFacts::default();
    };
    let time = [
        p.at_timestamp,
        p.TimeGenerated,
        p.time,
        p.CreationTime,
        p.createdDateTime,
        p.activityDateTime,
        p.Timestamp,
    ]
    .into_iter()
    .find_map(|raw| string(raw).and_then(|s| parse_time(&s)));
    let dataset = p
        .event
        .and_then(|r| serde_json::from_str::<Dataset>(r.get()).ok())
        .and_then(|d| d.dataset)
        .or_else(|| string(p.category))
        .or_else(|| p.Workload.map(|_| "o365".to_string()));
    let host = p
        .host
        .and_then(|r| serde_json::from_str::<HostName>(r.get()).ok())
        .and_then(|h| h.name);
    DocumentFacts {
        time,
        dataset,
        host,
        has_time_generated: p.TimeGenerated.is_some(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ecs_documents_give_timestamp_dataset_and_host() {
        let f = facts(br#"{"@timestamp":"2025-01-01T10:03:19.123Z","event":{"dataset":"azure.signinlogs","category":["authentication"]},"host":{"name":"dc01"}}"#);
        assert_eq!(f.time_rfc3339().as_deref(), Some("2025-01-01T10:03:19.123Z"));
        assert_eq!(f.dataset.as_deref(), Some("azure.signinlogs"));
        assert_eq!(f.host.as_deref(), Some("dc01"));
        assert!(!f.has_time_generated);
    }

    #[test]
    fn raw_records_give_their_own_time_and_category() {
        let f = facts(br#"{"time":"2025-01-01T10:03:19.1234567Z","category":"AuditLogs","host":"not-an-object"}"#);
        assert_eq!(f.time_rfc3339().as_deref(), Some("2025-01-01T10:03:19.123Z"));
        assert_eq!(f.dataset.as_deref(), Some("AuditLogs"));
        assert_eq!(f.host, None);
        let o365 = facts(br#"{"CreationTime":"2025-01-04T10:03:19","Workload":"Exchange","Id":"x"}"#);
        assert_eq!(o365.time_rfc3339().as_deref(), Some("2025-01-04T10:03:19.000Z"));
        assert_eq!(o365.dataset.as_deref(), Some("o365"));
        let la = facts(br#"{"TimeGenerated":"2025-01-04T10:03:19Z"}"#);
        assert!(la.has_time_generated);
    }

    #[test]
    fn other_bodies_have_no_facts() {
        assert_eq!(facts(b"[1,2]"), DocumentFacts::default());
        assert_eq!(facts(b"\"text\""), DocumentFacts::default());
        assert_eq!(facts(br#"{"time":5}"#).time, None);
    }
}
