//! Intune diagnostic records (`microsoft.intune`): admin audits, operational (enrollment)
//! logs, device compliance and device inventory.
//!
//! Vendor detail goes under `microsoft_intune.<stream>.*`: envelope fields in snake_case,
//! the PascalCase payload under `properties.*` with snake_case keys.

use serde_json::Value;

use super::common::{change_type, int, join, os_type, outcome_word, put_tenant, put_user, s, s_any, timestamp, Doc};

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
            "devices"
        }
        _ => return false,
    };
    let ns = format!("{MODULE}.{dataset}");
    doc.put_string("event.dataset", Some(ns.clone()));
    doc.put_str("event.module", Some(MODULE));
    doc.put_str("cloud.service.name", Some(SERVICE));
    doc.put_string("@timestamp", timestamp(record.get("time")));
    put_tenant(doc, s(record, "tenantId").or_else(|| s(p, "AADTenantId")));
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

fn audit<'a>(doc: &mut Doc<'a>, record: &'a Value, p: &'a Value) {
    let action = s(record, "operationName");
    doc.put_str("event.action", action);
    doc.put_list("event.category", &["configuration"]);
    doc.put_list("event.type", &[change_type(action.unwrap_or(""))]);
    doc.put_str("event.id", s(p, "AuditEventId"));
    let outcome = s(record, "resultType")
        .and_then(outcome_word)
        .or_else(|| match int(p.get("ActivityResultStatus")) {
            Some(1) => Some("success"),
            Some(2) => Some("failure"),
            _ => None,
        });
    doc.put_str("event.outcome", outcome);
    let actor = p.get("Actor").filter(|a| a.is_object());
    let upn = actor.and_then(|a| s(a, "UPN")).or_else(|| s(record, "identity"));
    put_user(
        doc,
        "user",
        upn,
        actor.and_then(|a| s(a, "ObjectId")),
        actor.and_then(|a| s(a, "Name")).filter(|n| Some(*n) != upn),
    );
    doc.put_str("client.user.id", actor.and_then(|a| s(a, "Application")));
}

fn operational<'a>(doc: &mut Doc<'a>, record: &'a Value, p: &'a Value) {
    let action = s(record, "operationName");
    doc.put_str("event.action", action);
    doc.put_list("event.category", &["host"]);
    doc.put_list("event.type", &["info"]);
    doc.put_str("event.id", s(p, "ActivityId"));
    doc.put_str("event.outcome", s(record, "resultType").and_then(outcome_word));
    doc.put_str("error.code", s(p, "FailureCategory"));
    doc.put_str("error.message", s(p, "FailureReason"));
    doc.put_str("host.id", s_any(p, &["IntuneDeviceId", "DeviceId"]));
    let os = s_any(p, &["Os", "OS", "Platform"]);
    doc.put_str("host.os.platform", os);
    doc.put_str("host.os.type", os.and_then(os_type));
    doc.put_str("host.os.version", s_any(p, &["OsVersion", "OSVersion"]));
    put_user(
        doc,
        "user",
        s_any(p, &["UserPrincipalName", "UPN"]),
        s_any(p, &["IntuneUserId", "UserId"]),
        None,
    );
}

fn device<'a>(doc: &mut Doc<'a>, p: &'a Value, compliance: bool) {
    doc.put_str("event.kind", Some("state"));
    doc.put_list("event.category", &["host"]);
    doc.put_list("event.type", &["info"]);
    doc.put_str(
        "event.action",
        Some(if compliance {
            "device-compliance"
        } else {
            "device-inventory"
        }),
    );
    let name = s(p, "DeviceName");
    doc.put_str("host.name", name);
    doc.relate_host(name);
    doc.put_str("host.id", s(p, "DeviceId"));
    let os = s_any(p, &["OS", "Os"]);
    doc.put_str("host.os.platform", os);
    doc.put_str("host.os.type", os.and_then(os_type));
    doc.put_str("host.os.version", s_any(p, &["OSVersion", "OsVersion"]));
    doc.put_str("host.os.full", s(p, "OSDescription"));
    doc.put_str("device.model.name", s(p, "Model"));
    doc.put_str("device.manufacturer", s(p, "Manufacturer"));
    doc.put_str("device.id", s(p, "DeviceId"));
    let upn = s_any(p, &["UPN", "UserEmail", "PrimaryUser"]).filter(|u| u.contains('@'));
    put_user(
        doc,
        "user",
        upn,
        s(p, "UserId"),
        s(p, "UserName").filter(|n| Some(*n) != upn),
    );
    let state = if compliance {
        s(p, "ComplianceState")
    } else {
        s(p, "CompliantState")
    };
    doc.put_str("event.reason", state);
}
