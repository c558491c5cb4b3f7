//! A record's one parse and what is made of it: its category, its stable id, and its body in
//! each shape a destination wants.

use bytes::Bytes;

use super::router::Router;
use super::{category_from, category_of_unparsed, Shape};
use crate::collector::decode::RawRecord;
use crate::collector::sources::RecordOrigin;
use crate::normalize::{
    normalize_json_recognized, parse_record, recognize, EcsContext, ParsedRecord, Recognized, SourceHint,
};

/// A record as the router sees it after its one parse.
pub(super) struct RecordView {
    pub(super) category: String,
    pub(super) recognized: Option<Recognized>,
    /// The parsed record, or why it cannot be normalized.
    pub(super) parsed: Result<ParsedRecord, String>,
}

impl Router {
    /// Parse a record once for every route and shape. A record larger than every route allows
    /// is not parsed at all (it is dead-lettered by size); one that does not parse keeps the
    /// reason, and its `category` field for routing.
    pub(super) fn parse(&self, raw: &RawRecord, hint: SourceHint<'_>) -> RecordView {
        let text = raw.get();
        if raw.len() > self.largest_record {
            return RecordView {
                category: category_of_unparsed(text),
                recognized: None,
                parsed: Err(format!(
                    "record of {} bytes is larger than any LogSource takes",
                    raw.len()
                )),
            };
        }
        match parse_record(text) {
            Ok(p) => {
                if p.repaired {
                    self.metrics
                        .records_repaired
                        .with_label_values(&[self.source_kind])
                        .inc();
                }
                let recognized = recognize(&p.value, hint);
                RecordView {
                    category: category_from(&recognized, &p.value),
                    recognized: Some(recognized),
                    parsed: Ok(p),
                }
            }
            Err(e) => RecordView {
                category: category_of_unparsed(text),
                recognized: None,
                parsed: Err(e.to_string()),
            },
        }
    }

    /// The body of one shape: `raw` is the record's own bytes (shared, not copied), whether or
    /// not it parsed; `ecs` needs the parsed record.
    pub(super) fn body(
        &self,
        shape: Shape,
        raw: &RawRecord,
        record: &RecordView,
        hint: SourceHint<'_>,
        record_id: &str,
    ) -> Result<Bytes, String> {
        match shape {
            Shape::Raw => Ok(raw.bytes().clone()),
            Shape::Ecs | Shape::EcsWithOriginal => {
                let (p, recognized) = match (&record.parsed, &record.recognized) {
                    (Ok(p), Some(r)) => (p, r),
                    (Err(reason), _) => return Err(reason.clone()),
                    (Ok(_), None) => return Err("record was not recognised".to_string()),
                };
                let ctx = EcsContext {
                    source: hint,
                    event_id: Some(record_id),
                    original: (shape == Shape::EcsWithOriginal).then(|| raw.get()),
                };
                let n = normalize_json_recognized(&p.value, recognized.clone(), &ctx).map_err(|e| e.to_string())?;
                if !n.mapped {
                    self.metrics.count_unmapped(&n.recognized.category);
                }
                Ok(Bytes::from(n.json))
            }
        }
    }
}

/// The record's own id where its source guarantees one (O365 `Id`, Graph `id`): the same record
/// read twice (overlapping windows, two content blobs) then has the same id downstream.
pub(super) fn stable_record_id(origin: &RecordOrigin, value: &serde_json::Value) -> Option<String> {
    let field = match origin {
        RecordOrigin::ManagementActivity(_) => "Id",
        RecordOrigin::Graph(_) => "id",
        // siembridge's archive: the id ECS carries, else the API record's own.
        RecordOrigin::Archive => {
            let ecs = value.get("event").and_then(|e| e.get("id"));
            return [ecs, value.get("Id"), value.get("id")]
                .into_iter()
                .flatten()
                .find_map(|v| v.as_str().filter(|s| !s.is_empty()).map(str::to_string));
        }
        RecordOrigin::Diagnostic | RecordOrigin::Unknown => return None,
    };
    match value.get(field)? {
        serde_json::Value::String(s) if !s.is_empty() => Some(s.clone()),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn api_records_keep_their_own_id_and_others_get_none() {
        let o365 = serde_json::json!({"Id": "aaaaaaaa-0000-0000-0000-000000000001", "RecordType": 15});
        let graph = serde_json::json!({"id": "g-1"});
        let ma = RecordOrigin::ManagementActivity("Audit.General".into());
        assert_eq!(
            stable_record_id(&ma, &o365).as_deref(),
            Some("aaaaaaaa-0000-0000-0000-000000000001")
        );
        assert_eq!(
            stable_record_id(&RecordOrigin::Graph("signIns".into()), &graph).as_deref(),
            Some("g-1")
        );
        assert_eq!(stable_record_id(&RecordOrigin::Diagnostic, &o365), None);
        assert_eq!(stable_record_id(&ma, &serde_json::json!({"Id": 5})), None);
        assert_eq!(stable_record_id(&ma, &serde_json::json!({"Id": ""})), None);
    }
}
