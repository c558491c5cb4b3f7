//! Mapping recognised records to ECS documents, one file per Microsoft family.

pub mod common;
mod defender;
mod entra;
mod graph;
mod intune;
mod o365;

use serde_json::{Map, Value};

use self::common::{any_timestamp, Doc, ECS_VERSION};
use super::{EcsContext, Recognized};

/// A record to map: borrowed (its detail is copied) or owned (its detail is moved into the
/// document, which saves most allocations).
pub enum Input<'a> {
    Borrowed(&'a Value),
    Owned(Value),
}

/// Map a record whose family and category are known. Returns the document and whether a
/// category-specific mapping was applied (`false`: generic fallback).
pub fn map(input: Input<'_>, recognized: &Recognized, ctx: &EcsContext<'_>) -> (Value, bool) {
    let mut doc = Doc::new();
    let (mapped, unmapped_original) = {
        let record: &Value = match &input {
            Input::Borrowed(r) => r,
            Input::Owned(r) => r,
        };
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
        // Nothing else keeps an unmapped record's detail: keep it whole.
        let original = if !mapped && ctx.original.is_none() {
            serde_json::to_string(record).ok()
        } else {
            None
        };
        (mapped, original)
    };
    if let Some(copy) = doc.take_vendor() {
        let value = match input {
            Input::Borrowed(r) => {
                let source = if copy.properties { r.get("properties") } else { Some(r) };
                source.map(|v| common::snake_keys(v, copy.depth))
            }
            Input::Owned(mut r) => {
                let source = if copy.properties {
                    r.as_object_mut().and_then(|m| m.remove("properties"))
                } else {
                    Some(r)
                };
                source.map(|v| common::snake_keys_owned(v, copy.depth))
            }
        };
        if let Some(v) = value {
            doc.merge(copy.path, v);
        }
    }
    let mut value = doc.finish();
    if let Value::Object(root) = &mut value {
        finish(root, recognized, ctx, unmapped_original);
    }
    (value, mapped)
}

/// A document for what we cannot map: a time, a kind, a dataset, the record kept.
fn fallback(record: &Value, recognized: &Recognized, doc: &mut Doc) {
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
    doc.put_string("event.dataset", Some(format!("{module}.unknown")));
    doc.put_str("event.module", Some(module));
    doc.put_str("cloud.service.name", Some(service));
    let tenant = common::s_any(record, &["tenantId", "TenantId", "OrganizationId"]);
    common::put_tenant(doc, tenant);
    doc.put_str(format!("{module}.unknown.category"), Some(recognized.category.as_str()));
}

/// Fields every document carries.
fn finish(root: &mut Map<String, Value>, recognized: &Recognized, ctx: &EcsContext<'_>, unmapped: Option<String>) {
    let mut ecs = Map::new();
    ecs.insert("version".into(), Value::String(ECS_VERSION.into()));
    root.insert("ecs".into(), Value::Object(ecs));
    let event = root.entry("event").or_insert_with(|| Value::Object(Map::new()));
    if let Value::Object(event) = event {
        event.entry("kind").or_insert_with(|| Value::String("event".into()));
        if !event.contains_key("id") {
            if let Some(id) = ctx.event_id.filter(|i| !i.is_empty()) {
                event.insert("id".into(), Value::String(id.to_string()));
            }
        }
        if let Some(original) = ctx.original {
            event.insert("original".into(), Value::String(original.to_string()));
        } else if let Some(text) = unmapped {
            event.insert("original".into(), Value::String(text));
        }
    }
    let cloud = root.entry("cloud").or_insert_with(|| Value::Object(Map::new()));
    if let Value::Object(cloud) = cloud {
        cloud.insert("provider".into(), Value::String("azure".into()));
    }
    let observer = root.entry("observer").or_insert_with(|| Value::Object(Map::new()));
    if let Value::Object(observer) = observer {
        observer.insert("vendor".into(), Value::String("Microsoft".into()));
        observer.insert("product".into(), Value::String(product(recognized).to_string()));
    }
}

/// The product name of a family, used for `observer.product` and the CEF/LEEF headers.
pub fn product(recognized: &Recognized) -> &'static str {
    match recognized.family {
        "entra" => "EntraID",
        "intune" => "Intune",
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
