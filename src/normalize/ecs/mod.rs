//! Mapping recognised records to ECS documents, one file per Microsoft family.

pub mod common;
mod defender;
mod entra;
mod graph;
mod intune;
mod mde;
mod o365;

use serde_json::Value;

use self::common::{any_timestamp, join, Doc, ECS_VERSION};
use super::{EcsContext, Recognized};

/// A record to map: borrowed (its detail is copied) or owned (its detail is moved into the
/// document, which saves most allocations).
pub enum Input<'a> {
    Borrowed(&'a Value),
    Owned(Value),
}

/// Run the mapping of a record into a [`Doc`], with the fields every document carries.
/// The vendor copy is left planned in the document (`Doc::take_vendor`).
fn prepare<'a>(record: &'a Value, recognized: &'a Recognized, ctx: &EcsContext<'a>) -> (Doc<'a>, bool) {
    let mut doc = Doc::new();
    let category = recognized.category.as_str();
    let mapped = match recognized.family {
        "entra" => entra::map(record, category, &mut doc),
        "intune" => intune::map(record, category, &mut doc),
        "defender" => defender::map(record, category, &mut doc),
        "o365" => o365::map(record, category, &mut doc),
        "graph" => graph::map(record, category, &mut doc),
        _ => false,
    };
    if !mapped {
        fallback(record, recognized, &mut doc);
    }
    doc.put_str("ecs.version", Some(ECS_VERSION));
    if !doc.has_path(&["event", "kind"]) {
        doc.put_str("event.kind", Some("event"));
    }
    if !doc.has_path(&["event", "id"]) {
        doc.put_str("event.id", ctx.event_id);
    }
    if let Some(original) = ctx.original {
        doc.put_str("event.original", Some(original));
    } else if !mapped {
        // Nothing else keeps an unmapped record's detail: keep it whole.
        doc.put_string("event.original", serde_json::to_string(record).ok());
    }
    doc.put_str("cloud.provider", Some("azure"));
    doc.put_str("observer.vendor", Some("Microsoft"));
    doc.put_str("observer.product", Some(product(recognized)));
    (doc, mapped)
}

/// The part of the record a vendor copy takes.
fn vendor_source<'a>(record: &'a Value, copy: &common::VendorCopy) -> Option<&'a Value> {
    if copy.properties {
        record.get("properties")
    } else {
        Some(record)
    }
}

/// Map a record whose family and category are known. Returns the document and whether a
/// category-specific mapping was applied (`false`: generic fallback).
pub fn map(input: Input<'_>, recognized: &Recognized, ctx: &EcsContext<'_>) -> (Value, bool) {
    match input {
        Input::Borrowed(record) => {
            let (mut doc, mapped) = prepare(record, recognized, ctx);
            if let Some(copy) = doc.take_vendor() {
                if let Some(source) = vendor_source(record, &copy) {
                    doc.merge(copy.path, common::snake_keys(source, copy.depth));
                }
            }
            (doc.finish(), mapped)
        }
        Input::Owned(mut record) => {
            let (mut value, copy, mapped) = {
                let (mut doc, mapped) = prepare(&record, recognized, ctx);
                let copy = doc.take_vendor();
                (doc.finish(), copy, mapped)
            };
            if let Some(copy) = copy {
                let source = if copy.properties {
                    record.as_object_mut().and_then(|m| m.remove("properties"))
                } else {
                    Some(record)
                };
                if let Some(v) = source {
                    common::merge_into(&mut value, &copy.path, common::snake_keys_owned(v, copy.depth));
                }
            }
            (value, mapped)
        }
    }
}

/// Map a record straight to ECS JSON bytes (same document as [`map`], serialized), without
/// building the document as a `Value`: the vendor copy is written from the record as it is.
pub fn map_json(record: &Value, recognized: &Recognized, ctx: &EcsContext<'_>, out: &mut Vec<u8>) -> bool {
    let (mut doc, mapped) = prepare(record, recognized, ctx);
    let vendor = doc
        .take_vendor()
        .and_then(|copy| vendor_source(record, &copy).map(|v| (copy.path, v, copy.depth)));
    doc.write_json(out, vendor);
    mapped
}

/// A document for what we cannot map: a time, a kind, a dataset, the record kept.
fn fallback<'a>(record: &'a Value, recognized: &'a Recognized, doc: &mut Doc<'a>) {
    let (module, service) = match recognized.family {
        "intune" => ("microsoft_intune", "Microsoft Intune"),
        "defender" => ("m365_defender", "Microsoft Defender XDR"),
        "o365" => ("o365", "Office 365"),
        "entra" => ("azure", "Microsoft Entra ID"),
        _ => ("azure", ""),
    };
    // O365 records keep their common fields even when the record type is new to us.
    if recognized.family == "o365" {
        o365::common(record, doc, "o365.audit");
        return;
    }
    doc.put_string("@timestamp", any_timestamp(record));
    doc.put_string("event.dataset", Some(join(module, "unknown")));
    doc.put_str("event.module", Some(module));
    doc.put_str("cloud.service.name", Some(service));
    let tenant = common::s_any(record, &["tenantId", "TenantId", "OrganizationId"]);
    common::put_tenant(doc, tenant);
    doc.put_str(join(module, "unknown.category"), Some(recognized.category.as_str()));
}

/// The product name of a family, used for `observer.product` and the CEF/LEEF headers.
pub fn product(recognized: &Recognized) -> &'static str {
    match recognized.family {
        "entra" => "EntraID",
        "intune" => "Intune",
        "defender" if recognized.category == crate::normalize::recognize::MDE_ALERT => "DefenderForEndpoint",
        "defender" => "DefenderXDR",
        "o365" => "Office365",
        "graph" => match recognized.category.as_str() {
            "alert_v2" | "incident" => "DefenderXDR",
            _ => "EntraID",
        },
        "azure" => "Azure",
        _ => "Unknown",
    }
}
