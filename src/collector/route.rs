//! Routing: which LogSources take a record, and the [`router::Router`] that routes them.
//!
//! - [`router`]: a source batch in, events into the destination queues out.
//! - `record`: a record's one parse, its category, stable id and bodies per shape.
//! - `letters`: what the router dead-letters (undecodable parts, records over
//!   `maxRecordBytes`, records a format cannot be made of).

mod letters;
mod record;
pub(crate) mod router;

pub use letters::DEAD_LETTER_KEEP_BYTES;

use std::sync::Arc;

use serde_json::Value;

use crate::api::{EventFormat, RecordFilter};
use crate::normalize::{recognize, Recognized, SourceHint};

/// A LogSource as the router sees it.
#[derive(Debug, Clone)]
pub struct CompiledRoute {
    pub log_source: Arc<str>,
    pub categories: Vec<String>,
    pub filter: Option<RecordFilter>,
    /// Indexes into the collector's destination list, with the shape each wants.
    pub destinations: Vec<(usize, Shape)>,
    /// Records longer than this (bytes of JSON text) are dead-lettered, not delivered.
    pub max_record_bytes: usize,
}

/// The document a destination receives; one record is encoded at most once per shape, however
/// many destinations want it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Shape {
    /// The record as received.
    Raw,
    /// ECS without `event.original`.
    Ecs,
    /// ECS with the untouched record as `event.original` (`keepOriginal`).
    EcsWithOriginal,
}

impl Shape {
    pub fn of(format: EventFormat, keep_original: bool) -> Shape {
        match (format, keep_original) {
            (EventFormat::Raw, _) => Shape::Raw,
            (EventFormat::Ecs, false) => Shape::Ecs,
            (EventFormat::Ecs, true) => Shape::EcsWithOriginal,
        }
    }

    /// Slot of this shape in a per-record cache of encoded bodies.
    pub fn slot(self) -> usize {
        self as usize
    }
}

fn contains(list: &[String], category: &str) -> bool {
    list.iter().any(|c| c.eq_ignore_ascii_case(category))
}

impl CompiledRoute {
    /// Whether this LogSource takes a record of `category`.
    pub fn takes(&self, category: &str) -> bool {
        if !self.categories.is_empty() && !contains(&self.categories, category) {
            return false;
        }
        match &self.filter {
            None => true,
            Some(f) => {
                (f.include_categories.is_empty() || contains(&f.include_categories, category))
                    && !contains(&f.exclude_categories, category)
            }
        }
    }
}

/// The category of a record: what the normalizer recognises, else its `category` field.
pub fn category_of(record: &Value, hint: SourceHint<'_>) -> String {
    category_from(&recognize(record, hint), record)
}

/// [`category_of`] from a recognition already made, so a record is recognised once.
pub fn category_from(recognized: &Recognized, record: &Value) -> String {
    if !recognized.category.is_empty() && recognized.category != "unknown" {
        return recognized.category.clone();
    }
    record
        .get("category")
        .and_then(Value::as_str)
        .unwrap_or("unknown")
        .to_string()
}

/// The category of a record that could not be parsed for normalization (see
/// [`crate::normalize::parse_record`]): its `category` field if that much can be read, else
/// `unknown`. It is still routed, so `raw` destinations receive it and `ecs` ones dead-letter it.
pub fn category_of_unparsed(text: &str) -> String {
    crate::normalize::category_field(text).unwrap_or_else(|| "unknown".to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn route(categories: &[&str], include: &[&str], exclude: &[&str]) -> CompiledRoute {
        CompiledRoute {
            log_source: Arc::from("ls"),
            categories: categories.iter().map(|s| s.to_string()).collect(),
            filter: Some(RecordFilter {
                include_categories: include.iter().map(|s| s.to_string()).collect(),
                exclude_categories: exclude.iter().map(|s| s.to_string()).collect(),
            }),
            destinations: vec![],
            max_record_bytes: 1024,
        }
    }

    #[test]
    fn categories_and_filters_select_records() {
        assert!(route(&[], &[], &[]).takes("SignInLogs"));
        assert!(route(&["SignInLogs"], &[], &[]).takes("signinlogs"));
        assert!(!route(&["SignInLogs"], &[], &[]).takes("AuditLogs"));
        assert!(!route(&[], &["AuditLogs"], &[]).takes("SignInLogs"));
        assert!(!route(&[], &[], &["AuditLogs"]).takes("AuditLogs"));
        assert!(route(&["AuditLogs", "SignInLogs"], &[], &["AuditLogs"]).takes("SignInLogs"));
    }

    #[test]
    fn category_comes_from_the_record() {
        let v = serde_json::json!({"category": "DeviceComplianceOrg"});
        assert_eq!(category_of(&v, SourceHint::Unknown), "DeviceComplianceOrg");
        assert_eq!(category_of(&serde_json::json!({}), SourceHint::Unknown), "unknown");
        assert_eq!(
            category_of_unparsed(r#"{"category":"SignInLogs","n":1e400}"#),
            "SignInLogs"
        );
        assert_eq!(category_of_unparsed(r#"{"n":1e400}"#), "unknown");
    }
}
