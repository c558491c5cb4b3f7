//! Normalization of Microsoft records into the shape a destination wants.
//!
//! The collector calls [`to_ecs`] (or [`normalize`], which also says whether a specific
//! mapping applied) for destinations with `format: ecs`; `raw` destinations get the record
//! untouched. Syslog destinations encode the ECS document further with [`cef`] or [`leef`].
//! Everything here is a pure function of the record: no I/O, no panics on input.
//!
//! Three ways to the same document: [`normalize`] / [`to_ecs`] (borrowed record, `Value`
//! out), [`normalize_owned`] (the record is moved into the document: fewer copies) and
//! [`normalize_json`] / [`to_ecs_json`] (ECS JSON bytes written directly, the fastest for JSON
//! destinations). Tests assert the three agree byte for byte.
//!
//! Records are parsed once, by [`parse_record`] (what does not parse, and why, is in
//! `parse.rs`); the `Value` then serves recognition, routing and every shape.
//!
//! Layout: [`recognize()`] tells the family and category of a record; `ecs/*` maps each
//! family (one file per family, shared helpers in `ecs/common.rs`); `cef.rs` and `leef.rs`
//! encode ECS documents. The field tables are in `FIELDS.md` next to this file.

pub mod cef;
pub mod content;
mod ecs;
pub mod leef;
mod parse;
mod recognize;

use serde_json::Value;

pub use self::ecs::common::ECS_VERSION;
pub use self::parse::{
    category_field, parse_document, parse_record, replace_lone_surrogates, ParsedRecord, RecordError, MAX_DEPTH,
    MAX_DOCUMENT_DEPTH,
};
pub use self::recognize::{
    o365_record_type, DEFENDER_TABLES, ENTRA_CATEGORIES, GRAPH_KINDS, INTUNE_CATEGORIES, MDE_ALERT,
};

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
    /// Only JSON objects are records; arrays, strings, numbers, booleans and null are not.
    #[error("record is not a JSON object")]
    NotAnObject,
}

/// The family and category a record was recognised as.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Recognized {
    /// `entra`, `intune`, `defender`, `o365`, `graph`, `azure` (another Azure diagnostic
    /// category) or `unknown`.
    pub family: &'static str,
    /// e.g. `SignInLogs`, `AdvancedHunting-DeviceProcessEvents`, `ExchangeAdmin` (O365
    /// RecordType name), `signIn` (Graph object kind), `unknown`.
    pub category: String,
}

/// A normalized record.
#[derive(Clone, Debug, PartialEq)]
pub struct Normalized {
    /// The ECS document.
    pub doc: Value,
    /// What the record was recognised as (labels for metrics).
    pub recognized: Recognized,
    /// Whether a category-specific mapping applied; `false` means the generic fallback
    /// (count these as "unmapped" per category).
    pub mapped: bool,
}

/// Tell the family and category of a record.
pub fn recognize(record: &Value, hint: SourceHint<'_>) -> Recognized {
    recognize::recognize(record, hint)
}

/// Map a record to an ECS document, saying what it was recognised as and whether a specific
/// mapping applied. Fails only when the record is not a JSON object.
pub fn normalize(record: &Value, ctx: &EcsContext<'_>) -> Result<Normalized, NormalizeError> {
    if !record.is_object() {
        return Err(NormalizeError::NotAnObject);
    }
    let recognized = recognize::recognize(record, ctx.source);
    let (doc, mapped) = ecs::map(ecs::Input::Borrowed(record), &recognized, ctx);
    Ok(Normalized {
        doc,
        recognized,
        mapped,
    })
}

/// Like [`normalize`] but consuming the record: its detail is moved into the document
/// instead of copied, which is markedly faster. Same output as [`normalize`].
pub fn normalize_owned(record: Value, ctx: &EcsContext<'_>) -> Result<Normalized, NormalizeError> {
    if !record.is_object() {
        return Err(NormalizeError::NotAnObject);
    }
    let recognized = recognize::recognize(&record, ctx.source);
    let (doc, mapped) = ecs::map(ecs::Input::Owned(record), &recognized, ctx);
    Ok(Normalized {
        doc,
        recognized,
        mapped,
    })
}

/// A record normalized straight to ECS JSON.
#[derive(Clone, Debug, PartialEq)]
pub struct NormalizedJson {
    /// The ECS document, serialized (the bytes `serde_json::to_vec` gives for [`to_ecs`]).
    pub json: Vec<u8>,
    /// What the record was recognised as.
    pub recognized: Recognized,
    /// Whether a category-specific mapping applied.
    pub mapped: bool,
}

/// Like [`normalize`] but writing the ECS document as JSON bytes without building it as a
/// `Value` (the record's detail is written from the record itself). The fastest path for
/// destinations that send JSON.
pub fn normalize_json(record: &Value, ctx: &EcsContext<'_>) -> Result<NormalizedJson, NormalizeError> {
    normalize_json_recognized(record, recognize::recognize(record, ctx.source), ctx)
}

/// [`normalize_json`] for a record the caller has already recognised (the collector recognises
/// each record once, to route it, and reuses the result here).
pub fn normalize_json_recognized(
    record: &Value,
    recognized: Recognized,
    ctx: &EcsContext<'_>,
) -> Result<NormalizedJson, NormalizeError> {
    if !record.is_object() {
        return Err(NormalizeError::NotAnObject);
    }
    let mut json = Vec::with_capacity(4096);
    let mapped = ecs::map_json(record, &recognized, ctx, &mut json);
    Ok(NormalizedJson {
        json,
        recognized,
        mapped,
    })
}

/// [`to_ecs`], serialized: the bytes of the ECS document.
pub fn to_ecs_json(record: &Value, ctx: &EcsContext<'_>) -> Result<Vec<u8>, NormalizeError> {
    normalize_json(record, ctx).map(|n| n.json)
}

/// Map a record to an Elastic Common Schema document.
pub fn to_ecs(record: &Value, ctx: &EcsContext<'_>) -> Result<Value, NormalizeError> {
    normalize(record, ctx).map(|n| n.doc)
}
