//! Defender XDR streaming records (`AdvancedHunting-<Table>`); Defender for Endpoint API
//! alerts (category `mde_alert`) are mapped by `mde.rs`.
//!
//! Vendor detail: the Advanced Hunting row under `m365_defender.event.*` with snake_case
//! column names (values untouched), plus `m365_defender.event.category` and
//! `m365_defender.event.operation_name` from the envelope.

use std::borrow::Cow;

use serde_json::{Map, Value};

use super::common::{
    basename, boolean, id_text, int, join, os_type, put_severity, put_techniques, put_tenant, put_url, registry_hive,
    s, s_any, string_list, technique_ids, timestamp, Doc,
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
    doc.put_str("event.action", s(p, "ActionType"));
    let host_name = s(p, "DeviceName");
    doc.put_str("host.name", host_name);
    doc.relate_host(host_name);
    doc.put_str("host.id", s(p, "DeviceId"));
    match table {
        "DeviceProcessEvents" => process_events(doc, p),
        "DeviceNetworkEvents" => network_events(doc, p),
        "DeviceFileEvents" => file_events(doc, p),
        "DeviceLogonEvents" => logon_events(doc, p),
        "DeviceRegistryEvents" => registry_events(doc, p),
        "DeviceImageLoadEvents" => image_load_events(doc, p),
        "DeviceEvents" => device_events(doc, p),
        "DeviceInfo" => device_info(doc, p),
        "DeviceNetworkInfo" => device_network_info(doc, p),
        "DeviceFileCertificateInfo" => certificate_info(doc, p),
        "AlertInfo" => alert_info(doc, p),
        "AlertEvidence" => alert_evidence(doc, p),
        "EmailEvents" => email_events(doc, p),
        "EmailAttachmentInfo" => email_attachment(doc, p),
        "EmailUrlInfo" => email_url(doc, p),
        "EmailPostDeliveryEvents" => email_post_delivery(doc, p),
        "IdentityLogonEvents" => identity_logon(doc, p),
        "IdentityQueryEvents" => identity_query(doc, p),
        "IdentityDirectoryEvents" => identity_directory(doc, p),
        "CloudAppEvents" => cloud_app(doc, p),
        "UrlClickEvents" => url_click(doc, p),
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

/// `(path, directory)` from a Defender `FolderPath` that may or may not end with the file name.
fn path_of(folder: Option<&str>, name: Option<&str>) -> (Option<String>, Option<String>) {
    match (folder, name) {
        (Some(f), Some(n)) if basename(f).eq_ignore_ascii_case(n) => {
            let dir = f[..f.len() - basename(f).len()].trim_end_matches(['\\', '/']);
            (Some(f.to_string()), Some(dir.to_string()).filter(|d| !d.is_empty()))
        }
        (Some(f), Some(n)) => {
            let sep = if f.contains('/') && !f.contains('\\') {
                '/'
            } else {
                '\\'
            };
            let dir = f.trim_end_matches(['\\', '/']);
            (Some(format!("{dir}{sep}{n}")), Some(dir.to_string()))
        }
        (Some(f), None) => (Some(f.to_string()), None),
        _ => (None, None),
    }
}

fn put_hashes<'a>(doc: &mut Doc<'a>, prefix: &'a str, p: &'a Value, sha1: &'a str, sha256: &'a str, md5: &'a str) {
    doc.put_str(join(prefix, "hash.sha1"), s(p, sha1));
    doc.put_str(join(prefix, "hash.sha256"), s(p, sha256));
    doc.put_str(join(prefix, "hash.md5"), s(p, md5));
}

/// `file.*` (or `dll.*`) from the row's FileName / FolderPath / hashes / size.
fn put_file<'a>(doc: &mut Doc<'a>, prefix: &'a str, p: &'a Value) {
    let name = s(p, "FileName");
    let (path, dir) = path_of(s(p, "FolderPath"), name);
    doc.put_str(join(prefix, "name"), name);
    doc.put_string(join(prefix, "path"), path);
    if prefix == "file" {
        doc.put_string("file.directory", dir);
        doc.put_i64("file.size", int(p.get("FileSize")));
    }
    put_hashes(doc, prefix, p, "SHA1", "SHA256", "MD5");
}

/// `process.*` from the InitiatingProcess* columns, `process.parent.*` from its parent.
fn put_initiating_process<'a>(doc: &mut Doc<'a>, prefix: &'a str, p: &'a Value) {
    let name = s(p, "InitiatingProcessFileName");
    let (path, _) = path_of(s(p, "InitiatingProcessFolderPath"), name);
    doc.put_str(join(prefix, "name"), name);
    doc.put_string(join(prefix, "executable"), path);
    doc.put_str(join(prefix, "command_line"), s(p, "InitiatingProcessCommandLine"));
    doc.put_i64(join(prefix, "pid"), int(p.get("InitiatingProcessId")));
    doc.put_string(join(prefix, "start"), timestamp(p.get("InitiatingProcessCreationTime")));
    put_hashes(
        doc,
        prefix,
        p,
        "InitiatingProcessSHA1",
        "InitiatingProcessSHA256",
        "InitiatingProcessMD5",
    );
    if prefix == "process" {
        doc.put_str("process.parent.name", s(p, "InitiatingProcessParentFileName"));
        doc.put_i64("process.parent.pid", int(p.get("InitiatingProcessParentId")));
        doc.put_string(
            "process.parent.start",
            timestamp(p.get("InitiatingProcessParentCreationTime")),
        );
    }
}

/// `user.*` from the account columns with a given prefix (`InitiatingProcessAccount`, `Account`).
fn put_account<'a>(doc: &mut Doc<'a>, p: &'a Value, prefix: &'a str) {
    // Column names as literals for the two prefixes in use: no allocation per lookup.
    let cols: [Cow<'static, str>; 5] = match prefix {
        "Account" => [
            "AccountName".into(),
            "AccountUpn".into(),
            "AccountDomain".into(),
            "AccountSid".into(),
            "AccountObjectId".into(),
        ],
        "InitiatingProcessAccount" => [
            "InitiatingProcessAccountName".into(),
            "InitiatingProcessAccountUpn".into(),
            "InitiatingProcessAccountDomain".into(),
            "InitiatingProcessAccountSid".into(),
            "InitiatingProcessAccountObjectId".into(),
        ],
        _ => ["Name", "Upn", "Domain", "Sid", "ObjectId"].map(|suffix| Cow::Owned(format!("{prefix}{suffix}"))),
    };
    let name = s(p, &cols[0]);
    let upn = s(p, &cols[1]);
    doc.put_str("user.name", name.or(upn));
    doc.put_str("user.domain", s(p, &cols[2]));
    doc.put_str("user.id", s(p, &cols[3]).or_else(|| s(p, &cols[4])));
    doc.put_str("user.email", upn.filter(|u| u.contains('@')));
    doc.relate_user(name.or(upn));
    if name.is_some() {
        doc.relate_user(upn);
    }
}

fn process_events<'a>(doc: &mut Doc<'a>, p: &'a Value) {
    doc.put_list("event.category", &["process"]);
    doc.put_list("event.type", &["start"]);
    let name = s(p, "FileName");
    let (path, _) = path_of(s(p, "FolderPath"), name);
    doc.put_str("process.name", name);
    doc.put_string("process.executable", path);
    doc.put_str("process.command_line", s(p, "ProcessCommandLine"));
    doc.put_i64("process.pid", int(p.get("ProcessId")));
    doc.put_string("process.start", timestamp(p.get("ProcessCreationTime")));
    put_hashes(doc, "process", p, "SHA1", "SHA256", "MD5");
    put_initiating_process(doc, "process.parent", p);
    put_account(doc, p, "Account");
}

fn network_events<'a>(doc: &mut Doc<'a>, p: &'a Value) {
    let action = s(p, "ActionType").unwrap_or("");
    let inbound = action.starts_with("Inbound") || action.starts_with("Listening");
    doc.put_list("event.category", &["network"]);
    match action {
        "ConnectionFailed" | "ConnectionAttempt" => doc.put_list("event.type", &["connection"]),
        "ConnectionSuccess" | "InboundConnectionAccepted" | "ListeningConnectionCreated" => {
            doc.put_list("event.type", &["connection", "start"])
        }
        _ => doc.put_list("event.type", &["info"]),
    }
    match action {
        "ConnectionFailed" => doc.put_str("event.outcome", Some("failure")),
        "ConnectionSuccess" | "InboundConnectionAccepted" => doc.put_str("event.outcome", Some("success")),
        _ => {}
    }
    let (local, remote) = if inbound {
        ("destination", "source")
    } else {
        ("source", "destination")
    };
    doc.put_ip(join(local, "ip"), s(p, "LocalIP"));
    doc.put_i64(join(local, "port"), int(p.get("LocalPort")));
    doc.put_ip(join(remote, "ip"), s(p, "RemoteIP"));
    doc.put_i64(join(remote, "port"), int(p.get("RemotePort")));
    if let Some(url) = s(p, "RemoteUrl") {
        if url.contains("://") {
            put_url(doc, Some(url));
        } else {
            doc.put_str(join(remote, "domain"), Some(url));
            doc.relate_host(Some(url));
        }
    }
    doc.put_string(
        "network.transport",
        s(p, "Protocol").map(|t| t.to_ascii_lowercase().trim_end_matches("v6").to_string()),
    );
    doc.put_str("network.direction", Some(if inbound { "inbound" } else { "outbound" }));
    put_initiating_process(doc, "process", p);
    put_account(doc, p, "InitiatingProcessAccount");
}

fn file_events<'a>(doc: &mut Doc<'a>, p: &'a Value) {
    let action = s(p, "ActionType").unwrap_or("");
    let kind = match action {
        "FileCreated" => "creation",
        "FileDeleted" => "deletion",
        "FileModified" | "FileRenamed" => "change",
        _ => "info",
    };
    doc.put_list("event.category", &["file"]);
    doc.put_list("event.type", &[kind]);
    put_file(doc, "file", p);
    doc.put_ip("source.ip", s(p, "RequestSourceIP"));
    doc.put_i64("source.port", int(p.get("RequestSourcePort")));
    put_initiating_process(doc, "process", p);
    put_account(doc, p, "InitiatingProcessAccount");
}

fn logon_events<'a>(doc: &mut Doc<'a>, p: &'a Value) {
    doc.put_list("event.category", &["authentication"]);
    doc.put_list("event.type", &["start"]);
    match s(p, "ActionType") {
        Some("LogonSuccess") => doc.put_str("event.outcome", Some("success")),
        Some("LogonFailed") => doc.put_str("event.outcome", Some("failure")),
        _ => doc.put_str("event.outcome", Some("unknown")),
    }
    doc.put_str("event.reason", s(p, "FailureReason"));
    put_account(doc, p, "Account");
    doc.put_ip("source.ip", s(p, "RemoteIP"));
    doc.put_i64("source.port", int(p.get("RemotePort")));
    let remote = s(p, "RemoteDeviceName");
    doc.put_str("source.domain", remote);
    doc.relate_host(remote);
    put_initiating_process(doc, "process", p);
}

fn registry_events<'a>(doc: &mut Doc<'a>, p: &'a Value) {
    let kind = match s(p, "ActionType").unwrap_or("") {
        "RegistryKeyCreated" => "creation",
        "RegistryKeyDeleted" | "RegistryValueDeleted" => "deletion",
        "RegistryValueSet" | "RegistryKeyRenamed" => "change",
        _ => "info",
    };
    doc.put_list("event.category", &["registry"]);
    doc.put_list("event.type", &[kind]);
    if let Some(key) = s(p, "RegistryKey") {
        let value = s(p, "RegistryValueName");
        match registry_hive(key) {
            Some((hive, rest)) => {
                doc.put_str("registry.hive", Some(hive));
                doc.put_str("registry.key", Some(rest));
            }
            None => doc.put_str("registry.key", Some(key)),
        }
        let path = match value {
            Some(v) => format!("{key}\\{v}"),
            None => key.to_string(),
        };
        doc.put_string("registry.path", Some(path));
        doc.put_str("registry.value", value);
    }
    if let Some(data) = s(p, "RegistryValueData") {
        doc.put(
            "registry.data.strings",
            Value::Array(vec![Value::String(data.to_string())]),
        );
    }
    doc.put_str("registry.data.type", s(p, "RegistryValueType").map(registry_type));
    put_initiating_process(doc, "process", p);
    put_account(doc, p, "InitiatingProcessAccount");
}

fn registry_type(t: &str) -> &str {
    match t {
        "String" => "REG_SZ",
        "ExpandString" => "REG_EXPAND_SZ",
        "Binary" => "REG_BINARY",
        "Dword" => "REG_DWORD",
        "Qword" => "REG_QWORD",
        "MultiString" => "REG_MULTI_SZ",
        "None" => "REG_NONE",
        other => other,
    }
}

fn image_load_events<'a>(doc: &mut Doc<'a>, p: &'a Value) {
    doc.put_list("event.category", &["library"]);
    doc.put_list("event.type", &["start"]);
    put_file(doc, "dll", p);
    put_initiating_process(doc, "process", p);
    put_account(doc, p, "InitiatingProcessAccount");
}

fn device_events<'a>(doc: &mut Doc<'a>, p: &'a Value) {
    doc.put_list("event.category", &["host"]);
    doc.put_list("event.type", &["info"]);
    if s(p, "FileName").is_some() {
        put_file(doc, "file", p);
    }
    put_initiating_process(doc, "process", p);
    put_account(doc, p, "InitiatingProcessAccount");
    if s(p, "AccountName").is_some() {
        doc.put_str("user.target.name", s(p, "AccountName"));
        doc.put_str("user.target.domain", s(p, "AccountDomain"));
        doc.put_str("user.target.id", s(p, "AccountSid"));
        doc.relate_user(s(p, "AccountName"));
    }
    doc.put_ip("source.ip", s(p, "LocalIP"));
    doc.put_i64("source.port", int(p.get("LocalPort")));
    doc.put_ip("destination.ip", s(p, "RemoteIP"));
    doc.put_i64("destination.port", int(p.get("RemotePort")));
    if let Some(url) = s(p, "RemoteUrl") {
        put_url(doc, Some(url));
    }
    if let Some(key) = s(p, "RegistryKey") {
        doc.put_str("registry.path", Some(key));
    }
}

fn put_os<'a>(doc: &mut Doc<'a>, p: &'a Value) {
    let platform = s(p, "OSPlatform");
    doc.put_str("host.os.platform", platform);
    doc.put_str("host.os.type", platform.and_then(os_type));
    doc.put_str("host.os.name", platform);
    doc.put_str("host.os.version", s(p, "OSVersion"));
    doc.put_string("host.os.kernel", id_text(p.get("OSBuild")));
    doc.put_str("host.architecture", s(p, "OSArchitecture"));
}

fn device_info<'a>(doc: &mut Doc<'a>, p: &'a Value) {
    doc.put_str("event.kind", Some("state"));
    doc.put_list("event.category", &["host"]);
    doc.put_list("event.type", &["info"]);
    put_os(doc, p);
    doc.put_str("host.type", s(p, "DeviceType"));
    if let Some(ip) = s(p, "PublicIP") {
        if let Some((ip, _)) = super::common::parse_ip(ip) {
            let text = ip.to_string();
            doc.relate_ip(&text);
            doc.put("host.ip", Value::Array(vec![Value::String(text)]));
        }
    }
    doc.put_str("device.model.name", s(p, "Model"));
    doc.put_str("device.manufacturer", s(p, "Vendor"));
}

fn device_network_info<'a>(doc: &mut Doc<'a>, p: &'a Value) {
    doc.put_str("event.kind", Some("state"));
    doc.put_list("event.category", &["host"]);
    doc.put_list("event.type", &["info"]);
    if let Some(mac) = s(p, "MacAddress") {
        let hex: String = mac.chars().filter(char::is_ascii_hexdigit).collect();
        if hex.len() == 12 {
            let pairs: Vec<String> = (0..6).map(|i| hex[i * 2..i * 2 + 2].to_ascii_uppercase()).collect();
            doc.put("host.mac", Value::Array(vec![Value::String(pairs.join("-"))]));
        }
    }
    let addresses = match p.get("IPAddresses") {
        Some(Value::String(t)) => serde_json::from_str::<Value>(t).ok(),
        Some(v @ Value::Array(_)) => Some(v.clone()),
        _ => None,
    };
    let mut ips: Vec<Value> = Vec::new();
    if let Some(Value::Array(list)) = addresses {
        for entry in &list {
            if let Some((ip, _)) = s(entry, "IPAddress").and_then(super::common::parse_ip) {
                let text = ip.to_string();
                doc.relate_ip(&text);
                ips.push(Value::String(text));
            }
        }
    }
    if !ips.is_empty() {
        doc.put("host.ip", Value::Array(ips));
    }
    doc.put_str("network.name", s(p, "NetworkAdapterName"));
}

fn certificate_info<'a>(doc: &mut Doc<'a>, p: &'a Value) {
    doc.put_list("event.category", &["file"]);
    doc.put_list("event.type", &["info"]);
    doc.put_str("file.hash.sha1", s(p, "SHA1"));
    doc.put_str("file.x509.issuer.distinguished_name", s(p, "Issuer"));
    doc.put_str(
        "file.x509.subject.distinguished_name",
        s(p, "CertificateSubject").or_else(|| s(p, "Signer")),
    );
    doc.put_str("file.x509.serial_number", s(p, "CertificateSerialNumber"));
    doc.put_string("file.x509.not_before", timestamp(p.get("CertificateCreationTime")));
    doc.put_string("file.x509.not_after", timestamp(p.get("CertificateExpirationTime")));
    doc.put_str("file.code_signature.subject_name", s(p, "Signer"));
    doc.put_bool("file.code_signature.exists", boolean(p.get("IsSigned")));
    doc.put_bool("file.code_signature.trusted", boolean(p.get("IsTrusted")));
}

fn alert_category<'a>(doc: &mut Doc<'a>, category: Option<&'a str>) {
    if category.is_some_and(|c| c.eq_ignore_ascii_case("malware") || c.eq_ignore_ascii_case("ransomware")) {
        doc.put_list("event.category", &["malware"]);
    } else {
        doc.put_list("event.category", &["intrusion_detection"]);
    }
    doc.put_list("event.type", &["info"]);
}

fn alert_info<'a>(doc: &mut Doc<'a>, p: &'a Value) {
    doc.put_str("event.kind", Some("alert"));
    alert_category(doc, s(p, "Category"));
    doc.put_str("event.id", s(p, "AlertId"));
    doc.put_str("rule.name", s(p, "Title"));
    doc.put_str("message", s(p, "Title"));
    doc.put_str("event.provider", s(p, "ServiceSource"));
    doc.put_str("observer.name", s(p, "DetectionSource"));
    put_severity(doc, s(p, "Severity"));
    put_techniques(doc, technique_ids(p.get("AttackTechniques")));
    doc.put_str(
        "threat.tactic.name",
        s(p, "Category").and_then(super::common::mitre_tactic),
    );
}

fn alert_evidence<'a>(doc: &mut Doc<'a>, p: &'a Value) {
    doc.put_str("event.kind", Some("alert"));
    alert_category(doc, s(p, "Categories").or_else(|| s(p, "Category")));
    doc.put_str("event.id", s(p, "AlertId"));
    doc.put_str("rule.name", s(p, "Title"));
    doc.put_str("message", s(p, "Title"));
    doc.put_str("event.provider", s(p, "ServiceSource"));
    doc.put_str("observer.name", s(p, "DetectionSource"));
    put_severity(doc, s(p, "Severity"));
    put_techniques(doc, technique_ids(p.get("AttackTechniques")));
    if s(p, "FileName").is_some() || s(p, "SHA256").is_some() || s(p, "SHA1").is_some() {
        put_file(doc, "file", p);
    }
    doc.put_str("process.command_line", s(p, "ProcessCommandLine"));
    put_account(doc, p, "Account");
    doc.put_ip("source.ip", s(p, "LocalIP"));
    doc.put_ip("destination.ip", s(p, "RemoteIP"));
    if let Some(url) = s(p, "RemoteUrl") {
        put_url(doc, Some(url));
    }
    doc.put_str("email.subject", s(p, "EmailSubject"));
    doc.put_str("registry.path", s(p, "RegistryKey"));
}

fn email_addresses(v: Option<&str>) -> Option<Value> {
    v.map(|a| Value::Array(vec![Value::String(a.to_string())]))
}

fn email_direction(p: &Value) -> Option<&'static str> {
    match s(p, "EmailDirection")?.to_ascii_lowercase().as_str() {
        "inbound" => Some("inbound"),
        "outbound" => Some("outbound"),
        "intra-org" | "intraorg" => Some("internal"),
        _ => Some("unknown"),
    }
}

fn put_email_parties<'a>(doc: &mut Doc<'a>, p: &'a Value) {
    if let Some(from) = email_addresses(s(p, "SenderFromAddress")) {
        doc.put("email.from.address", from);
    }
    if let Some(sender) = email_addresses(s(p, "SenderMailFromAddress")) {
        doc.put("email.sender.address", sender);
    }
    if let Some(to) = email_addresses(s(p, "RecipientEmailAddress")) {
        doc.put("email.to.address", to);
    }
    doc.relate_user(s(p, "SenderFromAddress"));
    doc.relate_user(s(p, "RecipientEmailAddress"));
}

fn email_events<'a>(doc: &mut Doc<'a>, p: &'a Value) {
    doc.put_list("event.category", &["email"]);
    doc.put_list("event.type", &["info"]);
    doc.put_str("event.action", s(p, "DeliveryAction").or_else(|| s(p, "ActionType")));
    put_email_parties(doc, p);
    doc.put_str("email.subject", s(p, "Subject"));
    doc.put_str("email.message_id", s(p, "InternetMessageId"));
    doc.put_str("email.direction", email_direction(p));
    doc.put_ip("source.ip", s_any(p, &["SenderIPv4", "SenderIPv6"]));
    doc.put_str("source.domain", s(p, "SenderFromDomain"));
    let threats = string_list(p.get("ThreatTypes"));
    if !threats.is_empty() {
        doc.put_string("event.reason", Some(threats.join(",")));
    }
}

fn email_attachment<'a>(doc: &mut Doc<'a>, p: &'a Value) {
    doc.put_list("event.category", &["email"]);
    doc.put_list("event.type", &["info"]);
    put_email_parties(doc, p);
    let name = s(p, "FileName");
    doc.put_str("file.name", name);
    doc.put_str(
        "file.extension",
        s(p, "FileExtension")
            .or_else(|| s(p, "FileType"))
            .map(|e| e.trim_start_matches('.')),
    );
    doc.put_i64("file.size", int(p.get("FileSize")));
    doc.put_str("file.hash.sha256", s(p, "SHA256"));
    let mut file = Map::new();
    if let Some(n) = name {
        file.insert("name".into(), Value::String(n.to_string()));
    }
    if let Some(size) = int(p.get("FileSize")) {
        file.insert("size".into(), Value::from(size));
    }
    if let Some(sha) = s(p, "SHA256") {
        let mut h = Map::new();
        h.insert("sha256".into(), Value::String(sha.to_string()));
        file.insert("hash".into(), Value::Object(h));
    }
    if !file.is_empty() {
        let mut att = Map::new();
        att.insert("file".into(), Value::Object(file));
        doc.put("email.attachments", Value::Array(vec![Value::Object(att)]));
    }
    let threats = string_list(p.get("ThreatTypes"));
    if !threats.is_empty() {
        doc.put_string("event.reason", Some(threats.join(",")));
    }
}

fn email_url<'a>(doc: &mut Doc<'a>, p: &'a Value) {
    doc.put_list("event.category", &["email"]);
    doc.put_list("event.type", &["info"]);
    put_url(doc, s(p, "Url"));
    if !doc.has_path(&["url", "domain"]) {
        doc.put_str("url.domain", s(p, "UrlDomain"));
    }
}

fn email_post_delivery<'a>(doc: &mut Doc<'a>, p: &'a Value) {
    doc.put_list("event.category", &["email"]);
    doc.put_list("event.type", &["info"]);
    doc.put_str("email.message_id", s(p, "InternetMessageId"));
    if let Some(to) = email_addresses(s(p, "RecipientEmailAddress")) {
        doc.put("email.to.address", to);
    }
    doc.relate_user(s(p, "RecipientEmailAddress"));
    doc.put_str(
        "event.outcome",
        s(p, "ActionResult").and_then(super::common::outcome_word),
    );
    doc.put_str("event.reason", s(p, "ActionTrigger"));
}

fn identity_common<'a>(doc: &mut Doc<'a>, p: &'a Value) {
    let upn = s(p, "AccountUpn");
    let name = s(p, "AccountName").or(upn);
    doc.put_str("user.name", name);
    doc.put_str("user.domain", s(p, "AccountDomain"));
    doc.put_str("user.id", s_any(p, &["AccountObjectId", "AccountSid"]));
    doc.put_str("user.email", upn.filter(|u| u.contains('@')));
    doc.put_str("user.full_name", s(p, "AccountDisplayName"));
    doc.relate_user(name);
    doc.relate_user(upn);
    doc.put_ip("source.ip", s(p, "IPAddress"));
    doc.put_i64("source.port", int(p.get("Port")));
    doc.put_ip("destination.ip", s(p, "DestinationIPAddress"));
    doc.put_i64("destination.port", int(p.get("DestinationPort")));
    let target = s(p, "TargetDeviceName");
    doc.put_str("destination.domain", target);
    doc.relate_host(target);
    doc.put_str("source.geo.country_iso_code", s(p, "Location").filter(|l| l.len() == 2));
    doc.put_str("source.as.organization.name", s(p, "ISP"));
    doc.put_string("network.protocol", s(p, "Protocol").map(str::to_ascii_lowercase));
    doc.put_str("event.provider", s(p, "Application"));
}

fn identity_logon<'a>(doc: &mut Doc<'a>, p: &'a Value) {
    doc.put_list("event.category", &["authentication"]);
    doc.put_list("event.type", &["start"]);
    match s(p, "ActionType") {
        Some("LogonSuccess") => doc.put_str("event.outcome", Some("success")),
        Some("LogonFailed") => doc.put_str("event.outcome", Some("failure")),
        _ => doc.put_str("event.outcome", Some("unknown")),
    }
    doc.put_str("event.reason", s(p, "FailureReason"));
    identity_common(doc, p);
}

fn identity_query<'a>(doc: &mut Doc<'a>, p: &'a Value) {
    doc.put_list("event.category", &["network"]);
    doc.put_list("event.type", &["protocol", "info"]);
    identity_common(doc, p);
    if s(p, "Protocol").is_some_and(|x| x.eq_ignore_ascii_case("dns")) {
        doc.put_str("dns.question.name", s(p, "QueryTarget"));
        doc.put_str("dns.question.type", s(p, "QueryType"));
    }
}

fn identity_directory<'a>(doc: &mut Doc<'a>, p: &'a Value) {
    doc.put_list("event.category", &["iam"]);
    let action = s(p, "ActionType").unwrap_or("");
    let group = action.to_ascii_lowercase().contains("group");
    doc.put_list(
        "event.type",
        &[if group { "group" } else { "user" }, super::common::change_type(action)],
    );
    identity_common(doc, p);
    let target = s(p, "TargetAccountUpn").or_else(|| s(p, "TargetAccountDisplayName"));
    doc.put_str("user.target.name", target);
    doc.put_str(
        "user.target.email",
        s(p, "TargetAccountUpn").filter(|u| u.contains('@')),
    );
    doc.put_str("user.target.full_name", s(p, "TargetAccountDisplayName"));
    doc.relate_user(target);
}

fn cloud_app<'a>(doc: &mut Doc<'a>, p: &'a Value) {
    doc.put_list("event.category", &["web"]);
    doc.put_list("event.type", &["info"]);
    let account = s(p, "AccountId");
    let display = s(p, "AccountDisplayName");
    if let Some(a) = account.filter(|a| a.contains('@')) {
        doc.put_str("user.name", Some(a));
        doc.put_str("user.email", Some(a));
        doc.put_str("user.domain", super::common::domain_of(a));
        doc.relate_user(Some(a));
    } else {
        doc.put_str("user.name", display);
        doc.relate_user(display);
    }
    doc.put_str("user.id", s(p, "AccountObjectId"));
    doc.put_str("user.full_name", display);
    doc.put_ip("source.ip", s(p, "IPAddress"));
    doc.put_str("source.geo.country_iso_code", s(p, "CountryCode"));
    doc.put_str("source.geo.city_name", s(p, "City"));
    doc.put_str("source.as.organization.name", s(p, "ISP"));
    doc.put_str("user_agent.original", s(p, "UserAgent"));
    doc.put_str("event.provider", s(p, "Application"));
    doc.put_str("host.os.platform", s(p, "OSPlatform"));
}

fn url_click<'a>(doc: &mut Doc<'a>, p: &'a Value) {
    doc.put_list("event.category", &["web"]);
    doc.put_list("event.type", &["access"]);
    put_url(doc, s(p, "Url"));
    let upn = s(p, "AccountUpn");
    doc.put_str("user.name", upn);
    doc.put_str("user.email", upn.filter(|u| u.contains('@')));
    doc.put_str("user.domain", upn.and_then(super::common::domain_of));
    doc.relate_user(upn);
    doc.put_ip("source.ip", s(p, "IPAddress"));
    doc.put_str("event.provider", s(p, "Workload"));
    if let Some(action) = s(p, "ActionType") {
        if action.starts_with("ClickBlocked") {
            doc.put_str("event.outcome", Some("failure"));
        } else if action == "ClickAllowed" {
            doc.put_str("event.outcome", Some("success"));
        }
    }
}
