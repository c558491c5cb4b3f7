//! Defender XDR streaming records (`AdvancedHunting-<Table>`); Defender for Endpoint API
//! alerts (category `mde_alert`) are mapped by `mde.rs`.
//!
//! Vendor detail: the Advanced Hunting row under `m365_defender.event.*` with snake_case
//! column names (values untouched), plus `m365_defender.event.category` and
//! `m365_defender.event.operation_name` from the envelope.

use serde_json::Value;

use super::common::{
    boolean, id_text, int, join, put_severity, put_techniques, put_tenant, put_url, registry_hive, s, technique_ids,
    timestamp, Doc,
};
use crate::normalize::recognize::{DEFENDER_TABLES, MDE_ALERT};

const MODULE: &str = "m365_defender";

/// Map a Defender streaming record. `false` when the table has no specific mapping.
pub fn map<'a>(record: &'a Value, category: &'a str, doc: &mut Doc<'a>) -> bool {
    if category == MDE_ALERT {
        super::mde::map(record, doc);
        return true;
    }
    let Some(table) = category.strip_prefix("AdvancedHunting-") else {
        return false;
    };
    if !DEFENDER_TABLES.contains(&table) {
        return false;
    }
    let props = record.get("properties").filter(|p| p.is_object());
    let p = props.unwrap_or(&super::common::NULL);
    doc.put_string(
        "@timestamp",
        timestamp(p.get("Timestamp")).or_else(|| timestamp(record.get("time"))),
    );
    doc.put_str("event.dataset", Some("m365_defender.event"));
    doc.put_str("event.module", Some(MODULE));
    doc.put_str("cloud.service.name", Some("Microsoft Defender XDR"));
    put_tenant(doc, s(record, "tenantId"));
    doc.put_string(
        "event.id",
        id_text(p.get("ReportId")).or_else(|| id_text(p.get("AlertId"))),
    );
    if table.starts_with("Device") {
        device(doc, p, table);
    }
    match table {
        t if t.starts_with("Device") => {}
        "AlertInfo" | "AlertEvidence" => alert_row(doc, p),
        "EmailEvents" | "EmailAttachmentInfo" | "EmailUrlInfo" | "EmailPostDeliveryEvents" | "UrlClickEvents" => {
            email_row(doc, p, table)
        }
        "IdentityLogonEvents" | "IdentityQueryEvents" | "IdentityDirectoryEvents" | "CloudAppEvents" => {
            app_identity(doc, p, table)
        }
        _ => return false,
    }
    // The envelope's table name and operation win over row columns of the same name.
    doc.put_str("m365_defender.event.category", Some(category));
    doc.put_str("m365_defender.event.operation_name", s(record, "operationName"));
    // AlertInfo / AlertEvidence have a `Category` column of their own.
    doc.put_str("m365_defender.event.alert_category", s(p, "Category"));
    if props.is_some() {
        doc.keep("m365_defender.event", true, 1);
    }
    true
}

fn put_hashes<'a>(doc: &mut Doc<'a>, prefix: &'a str, p: &'a Value, sha1: &'a str, sha256: &'a str, md5: &'a str) {
    doc.put_str(join(prefix, "hash.sha1"), s(p, sha1));
    doc.put_str(join(prefix, "hash.sha256"), s(p, sha256));
    doc.put_str(join(prefix, "hash.md5"), s(p, md5));
}

/// The Device* tables as Elastic's `pipeline_device.yml` (m365_defender event data stream)
/// maps them; steps named in the comments, differences in `FIELDS.md`.
fn device<'a>(doc: &mut Doc<'a>, p: &'a Value, table: &str) {
    let action = s(p, "ActionType");
    let act = action.map(str::to_ascii_lowercase).unwrap_or_default();
    // Event categorizations: one category per table, types from the table and ActionType.
    let cat = match table {
        "DeviceLogonEvents" => Some("authentication"),
        "DeviceEvents" | "DeviceInfo" => Some("host"),
        "DeviceFileEvents" | "DeviceFileCertificateInfo" => Some("file"),
        "DeviceProcessEvents" => Some("process"),
        "DeviceImageLoadEvents" => Some("library"),
        "DeviceNetworkEvents" | "DeviceNetworkInfo" => Some("network"),
        "DeviceRegistryEvents" => Some("registry"),
        _ => None,
    };
    if let Some(c) = cat {
        doc.put_list("event.category", &[c]);
    }
    let mut types: Vec<&str> = Vec::new();
    if matches!(cat, Some("authentication" | "host" | "file"))
        || [
            "openprocess",
            "connectionfound",
            "networksignatureinspected",
            "devicenetworkinfo",
        ]
        .iter()
        .any(|x| act.contains(x))
    {
        types.push("info");
    }
    if act.contains("connectionsuccess") {
        types.push("end");
    }
    if act.contains("connectionfailed") {
        types.push("denied");
    }
    if action.is_some()
        && (act.contains("connectionrequest")
            || act.contains("listeningconnectioncreated")
            || act.contains("processcreated")
            || table == "DeviceImageLoadEvents")
    {
        types.push("start");
    }
    if act.contains("inboundconnectionaccepted") {
        types.push("allowed");
    }
    if act.contains("registrykeycreated") {
        types.push("creation");
    }
    if act.contains("registrykeydeleted") || act.contains("registryvaluedeleted") {
        types.push("deletion");
    }
    if act.contains("registrykeyrenamed") || act.contains("registryvalueset") {
        types.push("change");
    }
    doc.put_list("event.type", &types);
    // ActionType → event.action, lowercased, spaces to `-`; ImageLoaded → load.
    let action_out = if act.contains("imageloaded") {
        Some("load".to_string())
    } else {
        action.map(|a| a.to_lowercase().replace(' ', "-"))
    };
    doc.put_string("event.action", action_out);
    // AdditionalFields.direction (In / Out) steers source / destination.
    let additional = match p.get("AdditionalFields") {
        Some(Value::String(text)) => serde_json::from_str::<Value>(text).ok(),
        Some(v @ Value::Object(_)) => Some(v.clone()),
        _ => None,
    };
    let direction = additional
        .as_ref()
        .and_then(|a| a.get("direction"))
        .and_then(Value::as_str)
        .map(str::to_string);
    let is_process = cat == Some("process");
    let is_device_events = table == "DeviceEvents";
    let folder = s(p, "FolderPath");
    // File mappings (not for process events or DeviceEvents): FolderPath → file.directory.
    if !is_process && !is_device_events && cat.is_some() {
        doc.put_str("file.directory", folder);
        put_hashes(doc, "file", p, "SHA1", "SHA256", "MD5");
        doc.put_str("file.name", s(p, "FileName"));
        doc.put_i64("file.size", int(p.get("FileSize")));
    }
    doc.put_string("file.x509.not_after", timestamp(p.get("CertificateExpirationTime")));
    doc.put_str("file.x509.serial_number", s(p, "CertificateSerialNumber"));
    if let Some(issuer) = s(p, "Issuer") {
        doc.put(
            "file.x509.issuer.common_name",
            Value::Array(vec![Value::String(issuer.to_string())]),
        );
    }
    doc.put_str("file.code_signature.subject_name", s(p, "Signer"));
    doc.put_bool("file.code_signature.exists", boolean(p.get("IsSigned")));
    doc.put_bool("file.code_signature.trusted", boolean(p.get("IsTrusted")));
    // DLL mappings (DeviceImageLoadEvents).
    if table == "DeviceImageLoadEvents" {
        doc.put_str("dll.path", folder);
        put_hashes(doc, "dll", p, "SHA1", "SHA256", "MD5");
        doc.put_str("dll.name", s(p, "FileName"));
    }
    // Process mappings: the row's file is the process and InitiatingProcess* its parent for
    // process events and DeviceEvents; elsewhere InitiatingProcess* is the process.
    if (is_process || is_device_events) && table != "DeviceImageLoadEvents" {
        doc.put_str("process.executable", folder);
        put_hashes(doc, "process", p, "SHA1", "SHA256", "MD5");
        doc.put_str("process.name", s(p, "FileName"));
        doc.put_str("process.parent.command_line", s(p, "InitiatingProcessCommandLine"));
        put_hashes(
            doc,
            "process.parent",
            p,
            "InitiatingProcessSHA1",
            "InitiatingProcessSHA256",
            "InitiatingProcessMD5",
        );
        doc.put_i64("process.parent.pid", int(p.get("InitiatingProcessId")));
        doc.put_string(
            "process.parent.start",
            timestamp(p.get("InitiatingProcessCreationTime")),
        );
        doc.put_str("process.parent.name", s(p, "InitiatingProcessFileName"));
        doc.put_str("process.parent.executable", s(p, "InitiatingProcessFolderPath"));
    } else if cat.is_some() {
        doc.put_str("process.command_line", s(p, "InitiatingProcessCommandLine"));
        put_hashes(
            doc,
            "process",
            p,
            "InitiatingProcessSHA1",
            "InitiatingProcessSHA256",
            "InitiatingProcessMD5",
        );
        doc.put_i64("process.parent.pid", int(p.get("InitiatingProcessParentId")));
        doc.put_i64("process.pid", int(p.get("InitiatingProcessId")));
        doc.put_string("process.start", timestamp(p.get("InitiatingProcessCreationTime")));
        doc.put_str("process.name", s(p, "InitiatingProcessFileName"));
        doc.put_str("process.executable", s(p, "InitiatingProcessFolderPath"));
        doc.put_string(
            "process.parent.start",
            timestamp(p.get("InitiatingProcessParentCreationTime")),
        );
        doc.put_str("process.parent.name", s(p, "InitiatingProcessParentFileName"));
    }
    // ProcessCommandLine / ProcessCreationTime / ProcessId always map to process.*.
    doc.put_str("process.command_line", s(p, "ProcessCommandLine").map(str::trim));
    doc.put_string("process.start", timestamp(p.get("ProcessCreationTime")));
    doc.put_i64("process.pid", int(p.get("ProcessId")));
    // Host mappings: DeviceName lowercased → host.name, DeviceId → host.id, PublicIP → host.ip.
    let host_name = s(p, "DeviceName").map(str::to_lowercase);
    doc.put_string("host.name", host_name.clone());
    doc.put_str("host.id", s(p, "DeviceId"));
    let public_ip = s(p, "PublicIP")
        .and_then(super::common::parse_ip)
        .map(|(ip, _)| ip.to_string());
    doc.put_string("host.ip", public_ip.clone());
    doc.put_str("host.architecture", s(p, "OSArchitecture"));
    let platform = s(p, "OSPlatform");
    let lower_platform = platform.map(str::to_ascii_lowercase).unwrap_or_default();
    let os_type = if lower_platform.contains("windows") {
        Some("windows")
    } else if lower_platform.contains("linux") {
        Some("linux")
    } else if lower_platform.contains("macos") {
        Some("macos")
    } else {
        None
    };
    doc.put_str("host.os.type", os_type);
    doc.put_str("host.os.full", platform);
    doc.put_str("host.os.platform", s(p, "OSDistribution"));
    doc.put_str("host.os.version", s(p, "OSVersion"));
    doc.put_str("host.type", s(p, "DeviceType"));
    if let Some(mac) = s(p, "MacAddress") {
        doc.put_string("host.mac", Some(mac.replace([':', '.'], "-").to_uppercase()));
    }
    // Registry mapping.
    doc.put_str("registry.key", s(p, "RegistryKey"));
    // Not in Elastic's pipeline: the abbreviated hive (ECS registry.hive).
    doc.put_str(
        "registry.hive",
        s(p, "RegistryKey").and_then(registry_hive).map(|(h, _)| h),
    );
    doc.put_str("registry.value", s(p, "RegistryValueName"));
    if let Some(data) = s(p, "RegistryValueData") {
        doc.put(
            "registry.data.strings",
            Value::Array(vec![Value::String(data.to_string())]),
        );
    }
    // Source / destination mapping.
    let auth = cat == Some("authentication");
    let network = cat == Some("network");
    let dir = direction.as_deref();
    let local_ip = s(p, "LocalIP");
    let remote_ip = s(p, "RemoteIP");
    let mut source_ip = None;
    if auth || (network && dir == Some("In")) {
        source_ip = remote_ip;
    }
    if cat.is_some() && !auth && dir.is_none() {
        source_ip = local_ip.or(source_ip);
    }
    if network && dir == Some("Out") {
        source_ip = local_ip;
    }
    if cat == Some("file") {
        source_ip = s(p, "RequestSourceIP").or(source_ip);
    }
    let mut source_port = None;
    if (network && dir == Some("In")) || auth {
        source_port = int(p.get("RemotePort"));
    }
    if cat.is_some() && !auth {
        source_port = int(p.get("LocalPort")).or(source_port);
    }
    if network && dir == Some("Out") {
        source_port = int(p.get("LocalPort")).or(source_port);
    }
    source_port = int(p.get("RequestSourcePort")).or(source_port);
    let mut dest_ip = None;
    let mut dest_port = None;
    if (network && dir == Some("Out")) || (cat.is_some() && !auth && dir.is_none()) {
        dest_ip = remote_ip;
        dest_port = int(p.get("RemotePort"));
    }
    if network && dir == Some("In") {
        dest_ip = local_ip;
        dest_port = int(p.get("LocalPort"));
    }
    let source_ip = source_ip
        .and_then(super::common::parse_ip)
        .map(|(ip, _)| ip.to_string());
    let dest_ip = dest_ip.and_then(super::common::parse_ip).map(|(ip, _)| ip.to_string());
    doc.put_string("source.ip", source_ip.clone());
    doc.put_i64("source.port", source_port);
    doc.put_str("source.domain", s(p, "RemoteDeviceName"));
    doc.put_string("destination.ip", dest_ip.clone());
    doc.put_i64("destination.port", dest_port);
    // User fields: AccountName / RequestAccountName, AccountDomain / RequestAccountDomain, AccountSid.
    let user_name = s(p, "RequestAccountName").or_else(|| s(p, "AccountName"));
    let user_domain = s(p, "AccountDomain").or_else(|| s(p, "RequestAccountDomain"));
    doc.put_str("user.name", user_name);
    doc.put_str("user.domain", user_domain);
    doc.put_str("user.id", s(p, "AccountSid"));
    // Network fields.
    doc.put_string(
        "network.protocol",
        s(p, "Protocol")
            .or_else(|| s(p, "RequestProtocol"))
            .map(str::to_lowercase),
    );
    if network {
        doc.put_str(
            "network.direction",
            Some(match dir {
                Some("In") => "inbound",
                Some("Out") => "outbound",
                _ => "unknown",
            }),
        );
    }
    // event.outcome for DeviceLogonEvents: failure when FailureReason is set.
    if table == "DeviceLogonEvents" {
        doc.put_str(
            "event.outcome",
            Some(if s(p, "FailureReason").is_some() {
                "failure"
            } else {
                "success"
            }),
        );
    }
    // RemoteUrl → url.* (uri_parts: only URLs with a scheme parse).
    if let Some(url) = s(p, "RemoteUrl").filter(|u| u.contains("://")) {
        put_url(doc, Some(url));
    }
    // Related fields: hosts (host.id, host.name, user.domain, initiating account domain),
    // users (LoggedOnUsers, user.name, initiating account name), IPs.
    let logged_on = match p.get("LoggedOnUsers") {
        Some(Value::String(text)) => serde_json::from_str::<Value>(text).ok(),
        Some(v @ Value::Array(_)) => Some(v.clone()),
        _ => None,
    };
    doc.relate_host(s(p, "DeviceId"));
    if let Some(h) = &host_name {
        doc.relate_host_owned(h);
    }
    doc.relate_host(user_domain);
    doc.relate_host(s(p, "InitiatingProcessAccountDomain"));
    if let Some(Value::Array(users)) = &logged_on {
        for u in users {
            if let Some(name) = s(u, "UserName") {
                doc.relate_user_owned(name);
            }
        }
    }
    doc.relate_user(user_name);
    doc.relate_user(s(p, "InitiatingProcessAccountName"));
    for ip in [source_ip, dest_ip, public_ip].into_iter().flatten() {
        doc.relate_ip(&ip);
    }
}

/// AlertInfo / AlertEvidence rows as Elastic's `pipeline_alert.yml` (m365_defender event data
/// stream) maps them; differences in `FIELDS.md`.
fn alert_row<'a>(doc: &mut Doc<'a>, p: &'a Value) {
    // `set event.kind: alert`; event.category from EntityType, overridden by Category.
    doc.put_str("event.kind", Some("alert"));
    let entity = s(p, "EntityType").map(str::to_ascii_lowercase);
    let mut cat = match entity.as_deref() {
        Some("file") => Some("file"),
        Some("process") => Some("process"),
        Some("device") => Some("host"),
        Some("user") => Some("iam"),
        _ => None,
    };
    let category = s(p, "Category").map(str::to_ascii_lowercase);
    match category.as_deref() {
        Some("malware" | "ransomware") => cat = Some("malware"),
        Some("persistence" | "privilegeescalation" | "suspiciousactivity" | "threatmanagement") => cat = Some("threat"),
        _ => {}
    }
    if let Some(c) = cat {
        doc.put_list("event.category", &[c]);
    }
    doc.put_list(
        "event.type",
        &[if cat == Some("threat") { "indicator" } else { "info" }],
    );
    // AlertId → event.id; ServiceSource → event.provider; DeviceName → host.domain; DeviceId → host.id.
    doc.put_str("event.id", s(p, "AlertId"));
    doc.put_str("event.provider", s(p, "ServiceSource"));
    doc.put_str("host.domain", s(p, "DeviceName"));
    doc.relate_host(s(p, "DeviceName"));
    doc.put_str("host.id", s(p, "DeviceId"));
    doc.relate_host(s(p, "DeviceId"));
    doc.put_string("network.direction", s(p, "EvidenceDirection").map(str::to_lowercase));
    doc.put_str("process.command_line", s(p, "ProcessCommandLine"));
    doc.put_str("registry.key", s(p, "RegistryKey"));
    doc.put_str("registry.value", s(p, "RegistryValueName"));
    // RemoteIP → source.ip (and related.ip).
    doc.put_ip("source.ip", s(p, "RemoteIP"));
    // File columns → threat.enrichments.indicator.file.*.
    doc.put_str("threat.enrichments.indicator.file.directory", s(p, "FolderPath"));
    doc.put_str("threat.enrichments.indicator.file.hash.sha1", s(p, "SHA1"));
    doc.put_str("threat.enrichments.indicator.file.hash.sha256", s(p, "SHA256"));
    doc.put_str("threat.enrichments.indicator.file.name", s(p, "FileName"));
    doc.put_i64("threat.enrichments.indicator.file.size", int(p.get("FileSize")));
    let mut hashes = Vec::new();
    for h in [s(p, "SHA1"), s(p, "SHA256")].into_iter().flatten() {
        hashes.push(Value::String(h.to_string()));
    }
    if !hashes.is_empty() {
        doc.put("related.hash", Value::Array(hashes));
    }
    doc.put_str("threat.group.name", s(p, "ThreatFamily"));
    // AccountName → user.name; Title → message; AccountDomain → user.domain.
    let user = s(p, "AccountName");
    doc.put_str("user.name", user);
    doc.relate_user(user);
    doc.put_str("message", s(p, "Title"));
    doc.put_str("user.domain", s(p, "AccountDomain"));
    doc.relate_host(s(p, "AccountDomain"));
    // LocalIP → related.ip.
    if let Some((ip, _)) = s(p, "LocalIP").and_then(super::common::parse_ip) {
        doc.relate_ip(&ip.to_string());
    }
    put_severity(doc, s(p, "Severity"));
    // AttackTechniques: ECS technique / sub-technique ids (Elastic: all as sub-technique ids).
    put_techniques(doc, technique_ids(p.get("AttackTechniques")));
    doc.relate_user(s(p, "AccountObjectId"));
    // Not in Elastic's pipeline: the title as rule.name, RemoteUrl as url.*, the category as
    // the MITRE tactic name, DetectionSource as observer.name, EmailSubject as email.subject.
    doc.put_str("rule.name", s(p, "Title"));
    put_url(doc, s(p, "RemoteUrl"));
    doc.put_str(
        "threat.tactic.name",
        s(p, "Category").and_then(super::common::mitre_tactic),
    );
    doc.put_str("observer.name", s(p, "DetectionSource"));
    doc.put_str("email.subject", s(p, "EmailSubject"));
}

/// Email* and UrlClickEvents rows as Elastic's `pipeline_email.yml` (m365_defender event data
/// stream) maps them; differences in `FIELDS.md`.
fn email_row<'a>(doc: &mut Doc<'a>, p: &'a Value, table: &str) {
    // email (not for URL clicks), + file when FileType is set; event.type info.
    let mut cats: Vec<&str> = Vec::new();
    if table != "UrlClickEvents" {
        cats.push("email");
    }
    if p.get("FileType").is_some_and(|v| !v.is_null()) {
        cats.push("file");
    }
    doc.put_list("event.category", &cats);
    doc.put_list("event.type", &["info"]);
    // File mappings: FileType → file.extension, SHA256, FileName, FileSize.
    doc.put_str("file.extension", s(p, "FileType"));
    let sha = s(p, "SHA256");
    doc.put_str("file.hash.sha256", sha);
    doc.put_str("file.name", s(p, "FileName"));
    doc.put_i64("file.size", int(p.get("FileSize")));
    // ActionType → event.action, lowercased, spaces to `-`.
    doc.put_string(
        "event.action",
        s(p, "ActionType").map(|a| a.to_lowercase().replace(' ', "-")),
    );
    // Email mappings.
    let from = s(p, "SenderFromAddress");
    let to = s(p, "RecipientEmailAddress");
    if let Some(f) = from {
        doc.put("email.from.address", Value::Array(vec![Value::String(f.to_string())]));
    }
    if let Some(r) = to {
        doc.put("email.to.address", Value::Array(vec![Value::String(r.to_string())]));
    }
    doc.put_str("email.message_id", s(p, "NetworkMessageId"));
    doc.put_str("email.direction", s(p, "EmailDirection"));
    doc.put_str("email.subject", s(p, "Subject"));
    doc.put_str("email.local_id", s(p, "InternetMessageId"));
    // Source mappings: SenderIPv4, SenderIPv6 → source.ip (a list).
    let mut sources: Vec<String> = Vec::new();
    for col in ["SenderIPv4", "SenderIPv6"] {
        if let Some((ip, _)) = s(p, col).and_then(super::common::parse_ip) {
            let text = ip.to_string();
            if !sources.contains(&text) {
                sources.push(text);
            }
        }
    }
    if !sources.is_empty() {
        doc.put(
            "source.ip",
            Value::Array(sources.iter().cloned().map(Value::String).collect()),
        );
    }
    // Host mapping: IPAddress → host.ip.
    let host_ip = s(p, "IPAddress")
        .and_then(super::common::parse_ip)
        .map(|(ip, _)| ip.to_string());
    doc.put_string("host.ip", host_ip.clone());
    // URL mappings: Url (uri_parts; url.original when it does not parse).
    put_url(doc, s(p, "Url"));
    // Related: sender, recipient / SHA256 / sender IPs, IPAddress / sender domains, URL domain.
    doc.relate_user(from);
    doc.relate_user(to);
    if let Some(h) = sha {
        doc.put("related.hash", Value::Array(vec![Value::String(h.to_string())]));
    }
    for ip in sources.iter().chain(host_ip.iter()) {
        doc.relate_ip(ip);
    }
    doc.relate_host(s(p, "SenderFromDomain"));
    doc.relate_host(s(p, "SenderMailFromDomain"));
    doc.relate_host(s(p, "UrlDomain"));
    // Not in Elastic's pipeline: the envelope sender (ECS email.sender.address).
    if let Some(sender) = s(p, "SenderMailFromAddress") {
        doc.put(
            "email.sender.address",
            Value::Array(vec![Value::String(sender.to_string())]),
        );
    }
}

/// Identity* and CloudAppEvents rows as Elastic's `pipeline_app_and_identity.yml`
/// (m365_defender event data stream) maps them; differences in `FIELDS.md`.
fn app_identity<'a>(doc: &mut Doc<'a>, p: &'a Value, table: &str) {
    // IdentityLogonEvents → authentication; every table → event.type info.
    if table == "IdentityLogonEvents" {
        doc.put_list("event.category", &["authentication"]);
    }
    doc.put_list("event.type", &["info"]);
    // Destination mapping: TargetDeviceName, DestinationIPAddress, DestinationPort.
    let target = s(p, "TargetDeviceName");
    doc.put_str("destination.domain", target);
    let dest_ip = s(p, "DestinationIPAddress")
        .and_then(super::common::parse_ip)
        .map(|(ip, _)| ip.to_string());
    doc.put_string("destination.ip", dest_ip.clone());
    doc.put_i64("destination.port", int(p.get("DestinationPort")));
    // Host mapping: DeviceName lowercased; IPAddress → host.ip (a list); OSPlatform.
    let host = s(p, "DeviceName").map(str::to_lowercase);
    doc.put_string("host.name", host.clone());
    let host_ip = s(p, "IPAddress")
        .and_then(super::common::parse_ip)
        .map(|(ip, _)| ip.to_string());
    if let Some(ip) = &host_ip {
        doc.put("host.ip", Value::Array(vec![Value::String(ip.clone())]));
    }
    let platform = s(p, "OSPlatform");
    let lower = platform.map(str::to_ascii_lowercase).unwrap_or_default();
    doc.put_str(
        "host.os.type",
        if lower.contains("windows") {
            Some("windows")
        } else if lower.contains("linux") {
            Some("linux")
        } else if lower.contains("macos") {
            Some("macos")
        } else {
            None
        },
    );
    doc.put_str("host.os.name", platform);
    doc.put_str("host.type", s(p, "DeviceType"));
    // ActionType → event.action (lowercased, spaces to `-`); IdentityLogonEvents outcome.
    doc.put_string(
        "event.action",
        s(p, "ActionType").map(|a| a.to_lowercase().replace(' ', "-")),
    );
    if table == "IdentityLogonEvents" {
        doc.put_str(
            "event.outcome",
            Some(if s(p, "FailureReason").is_some() {
                "failure"
            } else {
                "success"
            }),
        );
    }
    doc.put_string("network.protocol", s(p, "Protocol").map(str::to_lowercase));
    // User mapping: AccountDomain; id = AccountSid (logons) / AccountId (cloud apps);
    // name = AccountName, else RawEventData.UserId, else AccountDisplayName.
    let domain = s(p, "AccountDomain");
    doc.put_str("user.domain", domain);
    let user_id = match table {
        "IdentityLogonEvents" => s(p, "AccountSid"),
        "CloudAppEvents" => s(p, "AccountId"),
        _ => None,
    };
    doc.put_str("user.id", user_id);
    let raw_user = match p.get("RawEventData") {
        Some(Value::String(text)) => serde_json::from_str::<Value>(text)
            .ok()
            .and_then(|v| v.get("UserId").and_then(Value::as_str).map(str::to_string)),
        Some(v @ Value::Object(_)) => s(v, "UserId").map(str::to_string),
        _ => None,
    };
    let display = s(p, "AccountDisplayName");
    let name = s(p, "AccountName")
        .map(str::to_string)
        .or(raw_user)
        .or_else(|| display.map(str::to_string));
    doc.put_string("user.name", name);
    // UserAgent → user_agent.original (the user_agent processor).
    doc.put_str("user_agent.original", s(p, "UserAgent"));
    // Related: user.id, display names, UPN; hosts: destination.domain, host.name, user.domain;
    // IPs: destination.ip, host.ip; then AccountName.
    doc.relate_user(user_id);
    doc.relate_user(display);
    doc.relate_user(s(p, "TargetAccountDisplayName"));
    doc.relate_user(s(p, "AccountUpn"));
    doc.relate_host(target);
    if let Some(ip) = &dest_ip {
        doc.relate_ip(ip);
    }
    if let Some(h) = &host {
        doc.relate_host_owned(h);
    }
    if let Some(ip) = &host_ip {
        doc.relate_ip(ip);
    }
    doc.relate_host(domain);
    doc.relate_user(s(p, "AccountName"));
    // Not in Elastic's pipeline: the query target of DNS queries, the directory change target.
    if table == "IdentityQueryEvents" && s(p, "Protocol").is_some_and(|x| x.eq_ignore_ascii_case("dns")) {
        doc.put_str("dns.question.name", s(p, "QueryTarget"));
        doc.put_str("dns.question.type", s(p, "QueryType"));
    }
    if table == "IdentityDirectoryEvents" {
        doc.put_str(
            "user.target.name",
            s(p, "TargetAccountUpn").or_else(|| s(p, "TargetAccountDisplayName")),
        );
    }
}
