//! Graph objects: Entra audit/sign-in/provisioning/risk objects (same shape as the Entra
//! diagnostic `properties`) and Defender XDR `alert_v2` / `incident`.
//!
//! Vendor detail: Entra objects under the same names as their diagnostic twins
//! (`azure.signinlogs.properties.*`, ...); alerts under `m365_defender.alert.*` and incidents
//! under `m365_defender.incident.*` with snake_case top-level keys.

use serde_json::Value;

use super::common::{int, parse_ip, put_severity, put_techniques, put_tenant, s, sp, timestamp, Doc};
use super::entra;

/// Map a Graph object. `false` when the kind has no specific mapping.
pub fn map<'a>(record: &'a Value, kind: &'a str, doc: &mut Doc<'a>) -> bool {
    let ns = match kind {
        "signIn" => {
            entra::sign_in(doc, record, None, kind);
            "azure.signinlogs.properties"
        }
        "directoryAudit" => {
            entra::directory_audit(doc, record, None);
            "azure.auditlogs.properties"
        }
        "provisioning" => {
            entra::provisioning(doc, record, None);
            "azure.provisioning.properties"
        }
        "riskDetection" => {
            entra::risk_detection(doc, record, None, false);
            "azure.identity_protection.properties"
        }
        "servicePrincipalRiskDetection" => {
            entra::risk_detection(doc, record, None, true);
            "azure.identity_protection.properties"
        }
        "riskyUser" => {
            entra::risky_user(doc, record, None);
            "azure.identity_protection.properties"
        }
        "riskyServicePrincipal" => {
            entra::risky_service_principal(doc, record, None);
            "azure.identity_protection.properties"
        }
        "alert_v2" => {
            alert(doc, record);
            doc.keep("m365_defender.alert", false, 1);
            return true;
        }
        "incident" => {
            incident(doc, record);
            doc.keep("m365_defender.incident", false, 1);
            return true;
        }
        _ => return false,
    };
    doc.keep(ns, false, 12);
    true
}

fn alert<'a>(doc: &mut Doc<'a>, a: &'a Value) {
    doc.put_string(
        "@timestamp",
        timestamp(a.get("createdDateTime")).or_else(|| timestamp(a.get("lastUpdateDateTime"))),
    );
    doc.put_str("event.dataset", Some("m365_defender.alert"));
    doc.put_str("event.module", Some("m365_defender"));
    doc.put_str("cloud.service.name", Some("Microsoft Defender XDR"));
    doc.put_str("event.kind", Some("alert"));
    let category = s(a, "category");
    if category.is_some_and(|c| c.eq_ignore_ascii_case("malware") || c.eq_ignore_ascii_case("ransomware")) {
        doc.put_list("event.category", &["malware"]);
    } else {
        doc.put_list("event.category", &["intrusion_detection"]);
    }
    doc.put_list("event.type", &["info"]);
    doc.put_str("event.id", s(a, "id"));
    doc.put_str("event.provider", s(a, "serviceSource"));
    doc.put_str("event.url", s(a, "alertWebUrl"));
    doc.put_string("event.start", timestamp(a.get("firstActivityDateTime")));
    doc.put_string("event.end", timestamp(a.get("lastActivityDateTime")));
    doc.put_str("message", s(a, "title"));
    doc.put_str("rule.name", s(a, "title"));
    doc.put_str("rule.id", s(a, "detectorId"));
    doc.put_str("rule.description", s(a, "description"));
    doc.put_str("threat.tactic.name", category.and_then(super::common::mitre_tactic));
    put_severity(doc, s(a, "severity"));
    put_techniques(doc, super::common::technique_ids(a.get("mitreTechniques")));
    put_tenant(doc, s(a, "tenantId"));
    if let Some(evidence) = a.get("evidence").and_then(Value::as_array) {
        evidence_fields(doc, evidence);
    }
}

/// Hosts, users, IPs, files and processes named in alert evidence.
fn evidence_fields<'a>(doc: &mut Doc<'a>, evidence: &'a [Value]) {
    let mut host_done = false;
    let mut user_done = false;
    let mut file_done = false;
    let mut process_done = false;
    for e in evidence {
        let kind = s(e, "@odata.type").unwrap_or("");
        match kind.rsplit('.').next().unwrap_or("") {
            "deviceEvidence" => {
                let name = s(e, "deviceDnsName");
                doc.relate_host(name);
                if !host_done {
                    doc.put_str("host.name", name);
                    doc.put_str("host.id", s(e, "mdeDeviceId"));
                    doc.put_str("host.os.platform", s(e, "osPlatform"));
                    doc.put_string("host.os.kernel", int(e.get("osBuild")).map(|b| b.to_string()));
                    host_done = true;
                }
                if let Some(ips) = e.get("ipInterfaces").and_then(Value::as_array) {
                    for ip in ips.iter().filter_map(Value::as_str) {
                        if let Some((ip, _)) = parse_ip(ip) {
                            doc.relate_ip(&ip.to_string());
                        }
                    }
                }
            }
            "userEvidence" => {
                let acct = e.get("userAccount").filter(|u| u.is_object());
                let upn = acct.and_then(|u| s(u, "userPrincipalName"));
                let name = acct.and_then(|u| s(u, "accountName"));
                if !user_done {
                    doc.put_str("user.name", name.or(upn));
                    doc.put_str("user.domain", acct.and_then(|u| s(u, "domainName")));
                    doc.put_str("user.id", acct.and_then(|u| s(u, "azureAdUserId")));
                    doc.put_str("user.email", upn.filter(|u| u.contains('@')));
                    user_done = true;
                }
                doc.relate_user(name);
                doc.relate_user(upn);
            }
            "ipEvidence" => {
                if let Some((ip, _)) = s(e, "ipAddress").and_then(parse_ip) {
                    doc.relate_ip(&ip.to_string());
                }
            }
            "fileEvidence" if !file_done => {
                if let Some(f) = e.get("fileDetails").filter(|f| f.is_object()) {
                    doc.put_str("file.name", s(f, "fileName"));
                    let path = match (s(f, "filePath"), s(f, "fileName")) {
                        (Some(dir), Some(name)) => Some(format!("{}\\{}", dir.trim_end_matches('\\'), name)),
                        _ => None,
                    };
                    doc.put_str("file.directory", s(f, "filePath"));
                    doc.put_string("file.path", path);
                    doc.put_str("file.hash.sha1", s(f, "sha1"));
                    doc.put_str("file.hash.sha256", s(f, "sha256"));
                    doc.put_i64("file.size", int(f.get("fileSize")));
                    file_done = true;
                }
            }
            "processEvidence" if !process_done => {
                doc.put_i64("process.pid", int(e.get("processId")));
                doc.put_str("process.command_line", s(e, "processCommandLine"));
                doc.put_str("process.name", sp(e, &["imageFile", "fileName"]));
                doc.put_i64("process.parent.pid", int(e.get("parentProcessId")));
                doc.put_str("process.parent.name", sp(e, &["parentProcessImageFile", "fileName"]));
                process_done = true;
            }
            _ => {}
        }
    }
}

fn incident<'a>(doc: &mut Doc<'a>, i: &'a Value) {
    doc.put_string(
        "@timestamp",
        timestamp(i.get("createdDateTime")).or_else(|| timestamp(i.get("lastUpdateDateTime"))),
    );
    doc.put_str("event.dataset", Some("m365_defender.incident"));
    doc.put_str("event.module", Some("m365_defender"));
    doc.put_str("cloud.service.name", Some("Microsoft Defender XDR"));
    doc.put_str("event.kind", Some("alert"));
    doc.put_list("event.category", &["intrusion_detection"]);
    doc.put_list("event.type", &["info"]);
    doc.put_str("event.id", s(i, "id"));
    doc.put_str("event.url", s(i, "incidentWebUrl"));
    doc.put_str("message", s(i, "displayName"));
    doc.put_str("event.reason", s(i, "classification").filter(|c| *c != "unknown"));
    put_severity(doc, s(i, "severity"));
    put_tenant(doc, s(i, "tenantId"));
    let assigned = s(i, "assignedTo");
    doc.relate_user(assigned);
    if let Some(alerts) = i.get("alerts").and_then(Value::as_array) {
        for a in alerts {
            if let Some(evidence) = a.get("evidence").and_then(Value::as_array) {
                for e in evidence {
                    if let Some(name) = s(e, "deviceDnsName") {
                        doc.relate_host(Some(name));
                    }
                    if let Some(upn) = sp(e, &["userAccount", "userPrincipalName"]) {
                        doc.relate_user(Some(upn));
                    }
                }
            }
        }
    }
}
