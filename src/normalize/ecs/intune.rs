//! Intune diagnostic records (`microsoft.intune`): admin audits, operational (enrollment)
//! logs, device compliance and device inventory.
//!
//! Vendor detail goes under `microsoft_intune.<stream>.*`: envelope fields in snake_case,
//! the PascalCase payload under `properties.*` with snake_case keys.
//!
//! `AuditLogs` and `Devices` follow the ingest pipelines of Elastic's `microsoft_intune`
//! package (`packages/microsoft_intune/data_stream/{audit,managed_device}/elasticsearch/
//! ingest_pipeline/default.yml` in `elastic/integrations`): datasets `microsoft_intune.audit`
//! and `microsoft_intune.managed_device`. Elastic has no stream for `OperationalLogs` and
//! `DeviceComplianceOrg`; those follow ECS in the same style (`FIELDS.md`).

use serde_json::Value;

use super::common::{int, join, os_type, outcome_word, put_tenant, s, s_any, timestamp, Doc};

const MODULE: &str = "microsoft_intune";
const SERVICE: &str = "Microsoft Intune";

/// Map an Intune diagnostic record. `false` when the category has no specific mapping.
pub fn map<'a>(record: &'a Value, category: &'a str, doc: &mut Doc<'a>) -> bool {
    let props = record.get("properties").filter(|p| p.is_object());
    let p = props.unwrap_or(&super::common::NULL);
    let dataset = match category {
        "AuditLogs" => {
            audit(doc, record, p);
            "audit"
        }
        "OperationalLogs" => {
            operational(doc, record, p);
            "operational"
        }
        "DeviceComplianceOrg" => {
            device(doc, p, true);
            "device_compliance_org"
        }
        "Devices" => {
            device(doc, p, false);
            "managed_device"
        }
        _ => return false,
    };
    let ns = format!("{MODULE}.{dataset}");
    doc.put_string("event.dataset", Some(ns.clone()));
    doc.put_str("event.module", Some(MODULE));
    doc.put_str("cloud.service.name", Some(SERVICE));
    // `date json.time` -> `@timestamp`; `set cloud.account.id from tenantId`.
    doc.put_string("@timestamp", timestamp(record.get("time")));
    put_tenant(doc, s(record, "tenantId").or_else(|| s(p, "AADTenantId")));
    // `set event.action from operationName`, then `lowercase`, `split \s+`, `join -`.
    doc.put_string("event.action", s(record, "operationName").map(dashed));
    doc.put_str(join(&ns, "operation_name"), s(record, "operationName"));
    doc.put_str(join(&ns, "category"), s(record, "category"));
    doc.put_str(join(&ns, "result_type"), s(record, "resultType"));
    doc.put_str(join(&ns, "result_description"), s(record, "resultDescription"));
    doc.put_str(join(&ns, "identity"), s(record, "identity"));
    doc.put_str("azure.correlation_id", s(record, "correlationId"));
    doc.put_str("azure.resource.id", s(record, "resourceId"));
    if props.is_some() {
        doc.keep(join(&ns, "properties"), true, 12);
    }
    true
}

/// `Delete ManagedDevice` -> `delete-manageddevice`: Elastic's lowercase, split on
/// whitespace, join with `-`.
fn dashed(action: &str) -> String {
    action.to_lowercase().split_whitespace().collect::<Vec<_>>().join("-")
}

fn audit<'a>(doc: &mut Doc<'a>, record: &'a Value, p: &'a Value) {
    // `append event.category: configuration`, `append event.type: change`.
    doc.put_list("event.category", &["configuration"]);
    doc.put_list("event.type", &["change"]);
    // `set event.id from properties.AuditEventId`.
    doc.put_str("event.id", s(p, "AuditEventId"));
    // `set event.outcome from resultType` + `lowercase`; values other than success/failure
    // are mapped to ECS words (Elastic would keep e.g. `failed`), ActivityResultStatus when
    // resultType is missing.
    let outcome = s(record, "resultType")
        .and_then(outcome_word)
        .or_else(|| match int(p.get("ActivityResultStatus")) {
            Some(1) => Some("success"),
            Some(2) => Some("failure"),
            _ => None,
        });
    doc.put_str("event.outcome", outcome);
    // `set event.reason from resultDescription`; `set event.provider from loggedByService`.
    doc.put_str("event.reason", s(record, "resultDescription"));
    doc.put_str("event.provider", s(p, "loggedByService"));
    let actor = p.get("Actor").filter(|a| a.is_object());
    // `set user.email from identity`, `set user.name from Actor.Name`, `set user.id from
    // Actor.ObjectId`; `append related.user` identity and Actor.UPN; `set service.name from
    // Actor.ApplicationName`.
    let identity = s(record, "identity");
    doc.put_str("user.email", identity);
    doc.put_str("user.name", actor.and_then(|a| s(a, "Name")));
    doc.put_str("user.id", actor.and_then(|a| s(a, "ObjectId")));
    doc.relate_user(identity);
    doc.relate_user(actor.and_then(|a| s(a, "UPN")));
    doc.put_str("service.name", actor.and_then(|a| s(a, "ApplicationName")));
}

fn operational<'a>(doc: &mut Doc<'a>, record: &'a Value, p: &'a Value) {
    doc.put_list("event.category", &["host"]);
    doc.put_list("event.type", &["info"]);
    doc.put_str("event.id", s(p, "ActivityId"));
    doc.put_str("event.outcome", s(record, "resultType").and_then(outcome_word));
    doc.put_str("error.code", s(p, "FailureCategory"));
    doc.put_str("error.message", s(p, "FailureReason"));
    // As managed_device: the Intune device id is `device.id`.
    doc.put_str("device.id", s_any(p, &["IntuneDeviceId", "DeviceId"]));
    let os = s_any(p, &["Os", "OS", "Platform"]);
    doc.put_str("host.os.name", os);
    doc.put_str("host.os.type", os.and_then(os_type));
    doc.put_str("host.os.version", s_any(p, &["OsVersion", "OSVersion"]));
    let upn = s_any(p, &["UserPrincipalName", "UPN"]);
    doc.put_str("user.email", upn.filter(|u| u.contains('@')));
    doc.put_str("user.id", s_any(p, &["IntuneUserId", "UserId"]));
    doc.relate_user(upn);
    doc.relate_user(s_any(p, &["IntuneUserId", "UserId"]));
}

/// `Devices` (Elastic's managed_device stream) and `DeviceComplianceOrg` (same device
/// columns, mapped alike).
fn device<'a>(doc: &mut Doc<'a>, p: &'a Value, compliance: bool) {
    // `append event.category: host`, `append event.type: info`.
    doc.put_str("event.kind", Some("state"));
    doc.put_list("event.category", &["host"]);
    doc.put_list("event.type", &["info"]);
    // `set event.created from CreatedDate`.
    doc.put_string("event.created", timestamp(p.get("CreatedDate")));
    // `set device.id from DeviceId`; `set host.name from DeviceName`; `append related.hosts`.
    doc.put_str("device.id", s(p, "DeviceId"));
    let name = s(p, "DeviceName");
    doc.put_str("host.name", name);
    doc.relate_host(name);
    // `set device.model.name from Model`, `host.os.name from OS`, `host.os.version from
    // OSVersion`, `device.serial_number from SerialNumber`.
    doc.put_str("device.model.name", s(p, "Model"));
    doc.put_str("device.manufacturer", s(p, "Manufacturer"));
    doc.put_str("device.serial_number", s(p, "SerialNumber"));
    let os = s_any(p, &["OS", "Os"]);
    doc.put_str("host.os.name", os);
    doc.put_str("host.os.type", os.and_then(os_type));
    doc.put_str("host.os.version", s_any(p, &["OSVersion", "OsVersion"]));
    doc.put_str("host.os.full", s(p, "OSDescription"));
    // `append host.mac from WifiMacAddress` (`AA-BB-CC-DD-EE-FF`); `append related.hosts`.
    if let Some(mac) = s(p, "WifiMacAddress") {
        doc.put_string("host.mac", Some(mac_dashed(mac)));
        doc.relate_host(Some(mac));
    }
    // `set user.id from PrimaryUser` (DeviceComplianceOrg: UserId), `set user.email from
    // UPN` + `append UserEmail`, `set user.name from UserName`; each appended to related.user.
    let primary = s_any(p, &["PrimaryUser", "UserId"]);
    let upn = s(p, "UPN");
    let email = s(p, "UserEmail");
    let user_name = s(p, "UserName");
    doc.put_str("user.id", primary);
    match (upn, email) {
        (Some(u), Some(e)) if u != e => doc.put_list("user.email", &[u, e]),
        (Some(u), _) => doc.put_str("user.email", Some(u)),
        (None, e) => doc.put_str("user.email", e),
    }
    doc.put_str("user.name", user_name);
    for u in [primary, upn, email, user_name] {
        doc.relate_user(u);
    }
    let state = if compliance {
        s(p, "ComplianceState")
    } else {
        s(p, "CompliantState")
    };
    doc.put_str("event.reason", state);
}

/// A MAC written without separators (`A1B2C3D4E5F6`) in ECS form (`A1-B2-C3-D4-E5-F6`),
/// uppercased; other layouts are only uppercased (as Elastic's gsub + uppercase).
fn mac_dashed(mac: &str) -> String {
    let up = mac.trim().to_ascii_uppercase();
    if up.len() == 12 && up.bytes().all(|c| c.is_ascii_hexdigit()) {
        let b = up.as_bytes();
        let pairs: Vec<&str> = (0..6)
            .map(|i| std::str::from_utf8(&b[2 * i..2 * i + 2]).unwrap_or(""))
            .collect();
        pairs.join("-")
    } else {
        up
    }
}
