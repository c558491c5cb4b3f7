//! Office 365 Management Activity API records.
//!
//! Vendor detail: the whole record under `o365.audit.*` with its own PascalCase names, as
//! Elastic's o365 integration keeps it. `event.code` is the RecordType name.

use serde_json::Value;

use super::common::{
    canonical_ip, change_type, domain_of, int, outcome_word, put_severity, put_tenant, put_url, put_user, s, s_any,
    string_list, timestamp, Doc,
};

/// Map an O365 record. Unknown record types still get the common fields; `false` then.
pub fn map<'a>(record: &'a Value, category: &'a str, doc: &mut Doc<'a>) -> bool {
    common(record, doc, "o365.audit");
    match category {
        "AzureActiveDirectory" => aad(doc, record),
        "AzureActiveDirectoryStsLogon" | "AzureActiveDirectoryAccountLogon" => sts_logon(doc, record),
        "ExchangeAdmin" => exchange_admin(doc, record),
        "ExchangeItem" | "ExchangeItemGroup" | "ExchangeItemAggregated" => exchange_item(doc, record),
        "SharePoint" | "SharePointFileOperation" | "OneDrive" | "SharePointListOperation" => {
            file_operation(doc, record)
        }
        "SharePointSharingOperation" => sharing(doc, record),
        "MicrosoftTeams" | "MicrosoftTeamsAdmin" => teams(doc, record),
        "ComplianceDLPSharePoint" | "ComplianceDLPExchange" | "DLPEndpoint" => dlp(doc, record, category),
        "SecurityComplianceAlerts" => compliance_alert(doc, record),
        "ThreatIntelligence" => threat_intelligence(doc, record),
        "ThreatIntelligenceUrl" => threat_url(doc, record),
        _ => return false,
    }
    true
}

/// Fields of the common AuditRecord schema.
pub fn common<'a>(record: &'a Value, doc: &mut Doc<'a>, ns: &'static str) {
    doc.put_string("@timestamp", timestamp(record.get("CreationTime")));
    doc.put_str("event.dataset", Some("o365.audit"));
    doc.put_str("event.module", Some("o365"));
    doc.put_str("event.id", s(record, "Id"));
    doc.put_str("event.action", s(record, "Operation"));
    let workload = s(record, "Workload");
    doc.put_str("event.provider", workload);
    doc.put_str("cloud.service.name", workload);
    let record_type = int(record.get("RecordType"));
    doc.put_str(
        "event.code",
        record_type.and_then(crate::normalize::recognize::o365_record_type),
    );
    if let Some(status) = s(record, "ResultStatus") {
        doc.put_str("event.outcome", Some(outcome_word(status).unwrap_or("unknown")));
    }
    put_tenant(doc, s(record, "OrganizationId"));
    let user = s(record, "UserId");
    put_user(
        doc,
        "user",
        user,
        s(record, "UserKey").filter(|k| Some(*k) != user),
        None,
    );
    let ip = s_any(
        record,
        &["ClientIP", "ClientIPAddress", "ActorIpAddress", "SenderIp", "UserIp"],
    );
    if let Some((text, port)) = ip.and_then(canonical_ip) {
        doc.relate_ip_text(text.clone());
        doc.put_cow("client.ip", text.clone());
        doc.put_cow("client.address", text.clone());
        doc.put_i64("client.port", port.map(i64::from));
        doc.put_i64("source.port", port.map(i64::from));
        doc.put_cow("source.ip", text);
    }
    doc.put_str("user_agent.original", s_any(record, &["UserAgent", "ClientInfoString"]));
    doc.keep(ns, false, 0);
}

/// `user.target.*` from an AAD `Target` list (`[{"Type":5,"ID":"alex@…"}]`) or ObjectId.
fn aad_target<'a>(doc: &mut Doc<'a>, record: &'a Value) {
    let from_list = record
        .get("Target")
        .and_then(Value::as_array)
        .and_then(|list| list.iter().filter_map(|t| s(t, "ID")).find(|id| id.contains('@')));
    let target = from_list.or_else(|| s(record, "ObjectId").filter(|o| o.contains('@')));
    if target.is_some() {
        put_user(doc, "user.target", target, None, None);
    }
}

fn aad<'a>(doc: &mut Doc<'a>, record: &'a Value) {
    let op = s(record, "Operation").unwrap_or("");
    doc.put_list("event.category", &["iam"]);
    let lower = op.to_ascii_lowercase();
    let object = if lower.contains("group") {
        Some("group")
    } else if lower.contains("user") || lower.contains("password") {
        Some("user")
    } else if lower.contains("role") {
        Some("admin")
    } else {
        None
    };
    let change = change_type(op);
    match object {
        Some(o) => doc.put_list("event.type", &[o, change]),
        None => doc.put_list("event.type", &[change]),
    }
    aad_target(doc, record);
}

fn sts_logon<'a>(doc: &mut Doc<'a>, record: &'a Value) {
    doc.put_list("event.category", &["authentication"]);
    doc.put_list("event.type", &["start"]);
    // ResultStatus on STS logons is not the logon result: ErrorNumber / LogonError is.
    let code = match record.get("ErrorNumber").or_else(|| record.get("ErrorCode")) {
        Some(Value::String(t)) if !t.is_empty() => Some(t.clone()),
        Some(Value::Number(n)) => Some(n.to_string()),
        _ => None,
    };
    let error = s(record, "LogonError");
    let failed = code.as_deref().is_some_and(|c| c != "0") || error.is_some();
    if code.is_some() || error.is_some() {
        doc.put_str("event.outcome", Some(if failed { "failure" } else { "success" }));
    }
    if failed {
        doc.put_string("error.code", code);
        doc.put_str("error.message", error);
    }
    doc.put_str("event.reason", error);
    if let Some(props) = record.get("ExtendedProperties").and_then(Value::as_array) {
        let ua = props
            .iter()
            .find(|p| s(p, "Name") == Some("UserAgent"))
            .and_then(|p| s(p, "Value"));
        if ua.is_some() && s(record, "UserAgent").is_none() {
            doc.put_str("user_agent.original", ua);
        }
    }
}

fn exchange_admin<'a>(doc: &mut Doc<'a>, record: &'a Value) {
    let op = s(record, "Operation").unwrap_or("");
    doc.put_list("event.category", &["configuration"]);
    doc.put_list("event.type", &[change_type(op)]);
    if let Some(params) = record.get("Parameters").and_then(Value::as_array) {
        let identity = params
            .iter()
            .find(|p| s(p, "Name") == Some("Identity"))
            .and_then(|p| s(p, "Value"));
        if let Some(id) = identity.filter(|i| i.contains('@')) {
            put_user(doc, "user.target", Some(id), None, None);
        }
    }
}

fn exchange_item<'a>(doc: &mut Doc<'a>, record: &'a Value) {
    doc.put_list("event.category", &["email"]);
    doc.put_list("event.type", &["info"]);
    if let Some(item) = record.get("Item").filter(|i| i.is_object()) {
        doc.put_str("email.subject", s(item, "Subject"));
        doc.put_str("email.message_id", s(item, "InternetMessageId"));
    }
    let owner = s(record, "MailboxOwnerUPN");
    if owner.is_some() && owner != s(record, "UserId") {
        put_user(doc, "user.target", owner, s(record, "MailboxOwnerSid"), None);
    }
}

fn file_operation<'a>(doc: &mut Doc<'a>, record: &'a Value) {
    let op = s(record, "Operation").unwrap_or("");
    let kind = match op {
        "FileAccessed" | "FileDownloaded" | "FilePreviewed" | "FileAccessedExtended" | "FileSyncDownloadedFull" => {
            "access"
        }
        "FileUploaded" | "FileSyncUploadedFull" | "FolderCreated" => "creation",
        "FileDeleted" | "FileRecycled" | "FolderDeleted" | "FileDeletedFirstStageRecycleBin" => "deletion",
        "FileModified" | "FileModifiedExtended" | "FileRenamed" | "FileMoved" | "FileCopied" | "FileRestored" => {
            "change"
        }
        _ => "info",
    };
    doc.put_list("event.category", &["file"]);
    doc.put_list("event.type", &[kind]);
    doc.put_str("file.name", s(record, "SourceFileName"));
    doc.put_str("file.extension", s(record, "SourceFileExtension"));
    doc.put_str("file.directory", s(record, "SourceRelativeUrl"));
    let object = s(record, "ObjectId");
    doc.put_str("file.path", object);
    if object.is_some_and(|o| o.contains("://")) {
        put_url(doc, object);
    }
    if let Some(site) = s(record, "SiteUrl") {
        if let Some(host) = site.split("://").nth(1).and_then(|r| r.split('/').next()) {
            doc.relate_host(Some(host));
        }
    }
}

fn sharing<'a>(doc: &mut Doc<'a>, record: &'a Value) {
    doc.put_list("event.category", &["file"]);
    doc.put_list("event.type", &["change"]);
    doc.put_str("file.name", s(record, "SourceFileName"));
    doc.put_str("file.path", s(record, "ObjectId"));
    let target = s(record, "TargetUserOrGroupName");
    if target.is_some() {
        put_user(doc, "user.target", target, None, None);
    }
}

fn teams<'a>(doc: &mut Doc<'a>, record: &'a Value) {
    let op = s(record, "Operation").unwrap_or("");
    match op {
        "MemberAdded" | "MemberRemoved" | "MemberRoleChanged" => {
            doc.put_list("event.category", &["iam"]);
            let kind = match op {
                "MemberAdded" => "creation",
                "MemberRemoved" => "deletion",
                _ => "change",
            };
            doc.put_list("event.type", &["group", kind]);
            if let Some(member) = record.get("Members").and_then(Value::as_array).and_then(|m| m.first()) {
                put_user(doc, "user.target", s(member, "UPN"), None, s(member, "DisplayName"));
            }
            doc.put_str("user.target.group.name", s(record, "TeamName"));
            doc.put_str("user.target.group.id", s(record, "TeamGuid"));
        }
        "TeamsSessionStarted" => {
            doc.put_list("event.category", &["session"]);
            doc.put_list("event.type", &["start"]);
        }
        _ => {
            let kind = change_type(op);
            if kind == "info" {
                doc.put_list("event.category", &["web"]);
                doc.put_list("event.type", &["info"]);
            } else {
                doc.put_list("event.category", &["configuration"]);
                doc.put_list("event.type", &[kind]);
            }
        }
    }
}

fn dlp<'a>(doc: &mut Doc<'a>, record: &'a Value, category: &'a str) {
    doc.put_str("event.kind", Some("alert"));
    doc.put_list(
        "event.category",
        &[if category == "ComplianceDLPExchange" {
            "email"
        } else {
            "file"
        }],
    );
    doc.put_list("event.type", &["info"]);
    if let Some(policy) = record
        .get("PolicyDetails")
        .and_then(Value::as_array)
        .and_then(|p| p.first())
    {
        doc.put_str("rule.ruleset", s(policy, "PolicyName"));
        doc.put_str("rule.uuid", s(policy, "PolicyId"));
        if let Some(rule) = policy.get("Rules").and_then(Value::as_array).and_then(|r| r.first()) {
            doc.put_str("rule.name", s(rule, "RuleName"));
            doc.put_str("rule.id", s(rule, "RuleId"));
            put_severity(doc, s(rule, "Severity"));
            if let Some(actions) = rule.get("Actions") {
                let list = string_list(Some(actions));
                if !list.is_empty() {
                    doc.put_string("event.reason", Some(list.join(",")));
                }
            }
        }
    }
    if let Some(meta) = record.get("ExchangeMetaData").filter(|m| m.is_object()) {
        doc.put_str("email.subject", s(meta, "Subject"));
        doc.put_str("email.message_id", s(meta, "MessageID"));
        if let Some(from) = s(meta, "From") {
            doc.put(
                "email.from.address",
                Value::Array(vec![Value::String(from.to_string())]),
            );
            doc.relate_user(Some(from));
        }
        let to = string_list(meta.get("To"));
        if !to.is_empty() {
            for t in &to {
                doc.relate_user_owned(t);
            }
            doc.put(
                "email.to.address",
                Value::Array(to.into_iter().map(Value::String).collect()),
            );
        }
    }
    if let Some(meta) = record.get("SharePointMetaData").filter(|m| m.is_object()) {
        doc.put_str("file.name", s(meta, "FileName"));
        doc.put_str("file.path", s(meta, "FilePathUrl"));
        put_url(doc, s(meta, "FilePathUrl"));
    }
    if category == "DLPEndpoint" {
        doc.put_str("file.path", s(record, "ObjectId"));
        doc.put_str("host.name", s(record, "DeviceName"));
        doc.relate_host(s(record, "DeviceName"));
    }
}

fn compliance_alert<'a>(doc: &mut Doc<'a>, record: &'a Value) {
    doc.put_str("event.kind", Some("alert"));
    let category = s(record, "Category").unwrap_or("");
    doc.put_list(
        "event.category",
        &[if category.eq_ignore_ascii_case("DataLossPrevention") {
            "file"
        } else {
            "intrusion_detection"
        }],
    );
    doc.put_list("event.type", &["info"]);
    doc.put_str("rule.name", s(record, "Name"));
    doc.put_str("rule.id", s(record, "PolicyId"));
    doc.put_str("rule.category", s(record, "Category"));
    doc.put_str("message", s(record, "Name"));
    put_severity(doc, s(record, "Severity"));
    doc.put_str("event.reason", s(record, "Status"));
    if let Some(link) = record
        .get("AlertLinks")
        .and_then(Value::as_array)
        .and_then(|l| l.first())
        .and_then(|l| s(l, "AlertLinkHref"))
    {
        doc.put_str("event.url", Some(link));
    }
}

fn threat_intelligence<'a>(doc: &mut Doc<'a>, record: &'a Value) {
    doc.put_str("event.kind", Some("alert"));
    let verdict = s(record, "Verdict").unwrap_or("");
    if verdict.eq_ignore_ascii_case("malware") {
        doc.put_list("event.category", &["email", "malware"]);
    } else {
        doc.put_list("event.category", &["email"]);
    }
    doc.put_list("event.type", &["info"]);
    doc.put_str("event.reason", s(record, "Verdict"));
    doc.put_str("email.subject", s(record, "Subject"));
    doc.put_str("email.message_id", s(record, "InternetMessageId"));
    if let Some(from) = s(record, "P2Sender") {
        doc.put(
            "email.from.address",
            Value::Array(vec![Value::String(from.to_string())]),
        );
        doc.relate_user(Some(from));
    }
    if let Some(sender) = s(record, "P1Sender") {
        doc.put(
            "email.sender.address",
            Value::Array(vec![Value::String(sender.to_string())]),
        );
    }
    let to = string_list(record.get("Recipients"));
    if !to.is_empty() {
        for t in &to {
            doc.relate_user_owned(t);
        }
        doc.put(
            "email.to.address",
            Value::Array(to.into_iter().map(Value::String).collect()),
        );
    }
    doc.put_string(
        "email.direction",
        s(record, "Directionality").map(|d| match d.to_ascii_lowercase().as_str() {
            "inbound" => "inbound".to_string(),
            "outbound" => "outbound".to_string(),
            "intraorg" | "intra-org" => "internal".to_string(),
            _ => "unknown".to_string(),
        }),
    );
    doc.put_str("source.domain", s(record, "P2Sender").and_then(domain_of));
    if let Some(atts) = record.get("AttachmentData").and_then(Value::as_array) {
        let list: Vec<Value> = atts
            .iter()
            .filter(|a| a.is_object())
            .map(|a| {
                let mut file = serde_json::Map::new();
                if let Some(n) = s(a, "FileName") {
                    file.insert("name".into(), Value::String(n.to_string()));
                }
                if let Some(t) = s(a, "FileType") {
                    file.insert("mime_type".into(), Value::String(t.to_string()));
                }
                if let Some(h) = s(a, "SHA256") {
                    let mut hash = serde_json::Map::new();
                    hash.insert("sha256".into(), Value::String(h.to_string()));
                    file.insert("hash".into(), Value::Object(hash));
                }
                let mut att = serde_json::Map::new();
                att.insert("file".into(), Value::Object(file));
                Value::Object(att)
            })
            .collect();
        if !list.is_empty() {
            doc.put("email.attachments", Value::Array(list));
        }
    }
}

fn threat_url<'a>(doc: &mut Doc<'a>, record: &'a Value) {
    doc.put_list("event.category", &["web"]);
    doc.put_list("event.type", &["access"]);
    put_url(doc, s(record, "Url"));
    if let Some(t) = timestamp(record.get("TimeOfClick")) {
        doc.put_string("event.start", Some(t));
    }
}
