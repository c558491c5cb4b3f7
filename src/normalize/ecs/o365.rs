//! Office 365 Management Activity API records, mapped as Elastic's `o365.audit` ingest pipeline
//! (`packages/o365/data_stream/audit/elasticsearch/ingest_pipeline/default.yml` in
//! `elastic/integrations`) maps them. The steps below follow the pipeline's order; the
//! deliberate differences are listed in `FIELDS.md` ("Office 365").
//!
//! Vendor detail: the whole record under `o365.audit.*` with its own PascalCase names, as
//! Elastic's o365 integration keeps it. `event.code` is the RecordType name.

use std::borrow::Cow;

use serde_json::Value;

use super::common::{int, put_severity, put_url, s, string_list, timestamp, Doc};

/// Map an O365 record. Every record type of Microsoft's AuditLogRecordType table is mapped
/// (the common schema is the whole of Elastic's mapping for most of them); `false` only for
/// record types missing from that table.
pub fn map<'a>(record: &'a Value, category: &'a str, doc: &mut Doc<'a>) -> bool {
    common(record, doc, "o365.audit");
    category != "unknown"
}

/// How the pipeline's `event.category` / `event.type` lists grow: they start as `web` / `info`
/// and each step appends (`allow_duplicates: false` where the pipeline says so).
struct Lists<'a> {
    category: Vec<&'a str>,
    kind: Vec<&'a str>,
}

impl<'a> Lists<'a> {
    fn cat(&mut self, c: &'a str) {
        self.category.push(c);
    }
    fn cat_once(&mut self, c: &'a str) {
        if !self.category.contains(&c) {
            self.category.push(c);
        }
    }
    fn typ(&mut self, t: &'a str) {
        self.kind.push(t);
    }
    fn typ_once(&mut self, t: &'a str) {
        if !self.kind.contains(&t) {
            self.kind.push(t);
        }
    }
}

/// The user part and domain of `local@domain` when there is exactly one `@` (the pipeline's
/// `splitOnToken("@")` with two parts).
fn split_mail(text: &str) -> Option<(&str, &str)> {
    let (local, domain) = text.split_once('@')?;
    if domain.contains('@') {
        return None;
    }
    Some((local, domain))
}

/// A string or a number as text (the pipeline's `convert … type: string`).
fn text_of(v: Option<&Value>) -> Option<Cow<'_, str>> {
    match v? {
        Value::String(t) if !t.is_empty() => Some(Cow::Borrowed(t.as_str())),
        Value::Number(n) => Some(Cow::Owned(n.to_string())),
        _ => None,
    }
}

fn put_text<'a>(doc: &mut Doc<'a>, path: &'static str, v: Option<Cow<'a, str>>) {
    if let Some(v) = v {
        doc.put_cow(path, v);
    }
}

/// The value of the `{Name, Value}` entry called `name` in a list such as `Parameters`.
fn named<'a>(record: &'a Value, list: &str, name: &str) -> Option<&'a str> {
    record
        .get(list)?
        .as_array()?
        .iter()
        .find(|p| s(p, "Name") == Some(name))
        .and_then(|p| s(p, "Value"))
}

/// The client address grok of the pipeline, after its gsub of `::ffff:a.b.c.d` to `a.b.c.d`:
/// `[ip]:port`, `ip`, `[ip]`, `ip:port`, then any text without spaces is a host name
/// (`client.domain`), `host (ip)`, else the whole text is the address.
/// Returns (address, domain, port).
fn client_parts(raw: &str) -> (Option<String>, Option<String>, Option<u16>) {
    let mut t = raw.to_string();
    while let Some(i) = t.find("::ffff:") {
        let start = i + 7;
        let end = t[start..]
            .find(|c: char| !(c.is_ascii_digit() || c == '.'))
            .map_or(t.len(), |e| start + e);
        if t[start..end].parse::<std::net::Ipv4Addr>().is_err() {
            break;
        }
        t.replace_range(i..start, "");
    }
    let is_ip = |x: &str| x.parse::<std::net::IpAddr>().is_ok();
    if let Some(rest) = t.strip_prefix('[') {
        if let Some((inside, after)) = rest.split_once(']') {
            let port = after
                .strip_prefix(':')
                .and_then(|p| p.parse::<u16>().ok())
                .filter(|p| *p > 0);
            if is_ip(inside) && port.is_some() {
                return (Some(inside.to_string()), None, port);
            }
        }
    }
    if is_ip(&t) {
        return (Some(t), None, None);
    }
    if let Some(inside) = t.strip_prefix('[').and_then(|r| r.strip_suffix(']')) {
        if is_ip(inside) {
            return (Some(inside.to_string()), None, None);
        }
    }
    if let Some((ip, port)) = t.split_once(':') {
        if is_ip(ip) {
            if let Ok(port) = port.parse::<u16>() {
                return (Some(ip.to_string()), None, Some(port));
            }
        }
    }
    if !t.contains(char::is_whitespace) {
        return (None, Some(t), None);
    }
    if let Some((host, ip)) = t.split_once(" (") {
        if !host.contains(char::is_whitespace) {
            if let Some(ip) = ip.strip_suffix(')') {
                return (Some(ip.to_string()), Some(host.to_string()), None);
            }
        }
    }
    (Some(t), None, None)
}

/// The common AuditRecord schema and the record-type steps of Elastic's pipeline.
pub fn common<'a>(record: &'a Value, doc: &mut Doc<'a>, ns: &'static str) {
    let code = match record.get("RecordType") {
        Some(Value::String(t)) => t.parse::<i64>().ok(),
        other => int(other),
    }
    .and_then(crate::normalize::recognize::elastic_o365_code);
    let action = s(record, "Operation");
    // `set event.kind: event`, `append event.type: info`, `append event.category: web`.
    let mut lists = Lists {
        category: vec!["web"],
        kind: vec!["info"],
    };
    let mut kind = "event";
    // `date o365audit.CreationTime` → @timestamp.
    doc.put_string("@timestamp", timestamp(record.get("CreationTime")));
    doc.put_str("event.dataset", Some("o365.audit"));
    doc.put_str("event.module", Some("o365"));
    // `rename o365audit.Id → event.id`.
    doc.put_str("event.id", s(record, "Id"));
    // `rename ClientIPAddress / ClientIP / ActorIpAddress → client._temp` (first present wins).
    let client_raw = ["ClientIPAddress", "ClientIP", "ActorIpAddress"]
        .iter()
        .find_map(|k| s(record, k));
    // `convert o365audit.UserId → user.id` (string).
    let mut user_id = text_of(record.get("UserId"));
    // `rename Workload → event.provider`, `Operation → event.action`, `OrganizationId → organization.id`.
    let workload = s(record, "Workload");
    doc.put_str("event.provider", workload);
    doc.put_str("cloud.service.name", workload);
    // `rename UserAgent → user_agent.original`.
    let mut user_agent = s(record, "UserAgent");
    // The RecordType script → event.code.
    doc.put_str("event.code", code);
    // event.outcome from ResultStatus, `success` when it says nothing else.
    let status = s(record, "ResultStatus").map(str::to_ascii_lowercase);
    let mut outcome = match status.as_deref() {
        Some("failed" | "false") => "failure",
        _ => "success",
    };
    let mut action_out: Option<&'a str> = action;
    let mut email: Option<&'a str> = None;
    let mut server_raw: Option<&'a str> = None;
    let mut org_name: Option<&'a str> = None;
    let mut target_id: Option<&'a str> = None;
    let mut related_first: Vec<&'a str> = Vec::new();
    let mut file_owner: Option<&'a str> = None;
    let code_is = |c: &str| code == Some(c);
    // ExchangeAdmin schema.
    if code_is("ExchangeAdmin") {
        org_name = s(record, "OrganizationName");
        server_raw = s(record, "OriginatingServer");
    }
    // ExchangeItem schema.
    if code_is("ExchangeItem") {
        email = s(record, "MailboxOwnerUPN");
        if user_id.is_none() {
            user_id = text_of(record.get("LogonUserSid"));
        }
        doc.put_str("user.full_name", s(record, "LogonUserDisplayName"));
        org_name = s(record, "OrganizationName");
        server_raw = s(record, "OriginatingServer");
        doc.put_str("process.name", s(record, "ClientProcessName"));
    }
    // AzureActiveDirectory schema: user.target.id = ObjectId; three user operations renamed.
    if code_is("AzureActiveDirectory") {
        target_id = s(record, "ObjectId");
        let renamed = match action {
            Some("Add user.") => Some(("added-user-account", "creation")),
            Some("Update user.") => Some(("modified-user-account", "change")),
            Some("Delete user.") => Some(("deleted-user-account", "deletion")),
            _ => None,
        };
        if let Some((a, t)) = renamed {
            action_out = Some(a);
            lists.cat("iam");
            lists.typ("user");
            lists.typ(t);
        }
    }
    // AzureActiveDirectoryStsLogon schema.
    if code_is("AzureActiveDirectoryStsLogon") {
        lists.cat("authentication");
        lists.typ("start");
        lists.typ("access");
    }
    // SharePointFileOperation / SharePointSharingOperation schemas.
    if code_is("SharePointFileOperation") || code_is("SharePointSharingOperation") {
        doc.put_str("url.original", s(record, "ObjectId"));
        doc.put_str("file.directory", s(record, "SourceRelativeUrl"));
        doc.put_str("file.name", s(record, "SourceFileName"));
        doc.put_str("file.extension", s(record, "SourceFileExtension"));
    }
    // File / folder operations of any record type.
    if let Some(a) = action_out {
        const FILE_OPS: [&str; 15] = [
            "FileAccessed",
            "FileDeleted",
            "FileDownloaded",
            "FileModified",
            "FileMoved",
            "FileRenamed",
            "FileRestored",
            "FileUploaded",
            "FolderCopied",
            "FolderCreated",
            "FolderDeleted",
            "FolderModified",
            "FolderMoved",
            "FolderRenamed",
            "FolderRestored",
        ];
        if FILE_OPS.contains(&a) {
            lists.cat("file");
        }
        if a == "ComplianceSettingChanged" {
            lists.cat("configuration");
        }
        match a {
            "FileAccessed" | "FileDownloaded" => lists.typ("access"),
            "ComplianceSettingChanged"
            | "FileModified"
            | "FileMoved"
            | "FileRenamed"
            | "FileRestored"
            | "FolderModified"
            | "FolderMoved"
            | "FolderRenamed"
            | "FolderRestored" => lists.typ("change"),
            "FileDeleted" | "FolderDeleted" => lists.typ("deletion"),
            "FileUploaded" | "FolderCopied" | "FolderCreated" => lists.typ("creation"),
            _ => {}
        }
    }
    // SecurityComplianceAlerts schema.
    if code_is("SecurityComplianceAlerts") {
        doc.put_str("message", s(record, "Comments"));
        doc.put_str("rule.name", s(record, "Name"));
        doc.put_str("rule.id", s(record, "PolicyId"));
        let category = s(record, "Category");
        doc.put_str("rule.category", category);
        let entity_type = s(record, "EntityType");
        doc.put_str("rule.ruleset", entity_type);
        let entity = s(record, "AlertEntityId");
        doc.put_str("rule.description", entity);
        let links: Vec<Value> = record
            .get("AlertLinks")
            .and_then(Value::as_array)
            .map(|l| {
                l.iter()
                    .filter_map(|x| s(x, "AlertLinkHref"))
                    .map(|h| Value::String(h.to_string()))
                    .collect()
            })
            .unwrap_or_default();
        if !links.is_empty() {
            doc.put("rule.reference", Value::Array(links));
        }
        kind = "alert";
        match category {
            Some("AccessGovernance") => lists.cat("authentication"),
            Some("DataGovernance" | "DataLossPrevention") => lists.cat("file"),
            Some("ThreatManagement") => lists.cat("malware"),
            Some(_) => lists.cat_once("authentication"),
            None => {}
        }
        lists.cat_once("web");
        lists.typ_once("info");
        match entity_type {
            Some("User") if user_id.is_none() => user_id = entity.map(Cow::Borrowed),
            Some("Recipients" | "Sender") => email = entity,
            // Elastic writes the malware family to threat.technique.id; ECS keeps technique
            // ids for MITRE techniques, so the family goes to threat.software.name.
            Some("MalwareFamily") => doc.put_str("threat.software.name", entity),
            _ => {}
        }
        put_severity(doc, s(record, "Severity"));
    }
    // DLP schema (SharePoint and Exchange).
    if code_is("ComplianceDLPSharePoint") || code_is("ComplianceDLPExchange") {
        kind = "alert";
        lists.cat("file");
        lists.typ("access");
        let sp = record.get("SharePointMetaData").filter(|m| m.is_object());
        let ex = record.get("ExchangeMetaData").filter(|m| m.is_object());
        if user_id.is_none() {
            user_id = sp.and_then(|m| s(m, "From")).map(Cow::Borrowed);
        }
        if let Some(m) = sp {
            doc.put_str("file.name", s(m, "FileName"));
            doc.put_str("url.original", s(m, "FilePathUrl"));
            doc.put_str("file.inode", s(m, "UniqueId").or_else(|| s(m, "UniqueID")));
            file_owner = s(m, "FileOwner");
            doc.put_str("file.owner", file_owner);
            doc.put_string("file.mtime", timestamp(m.get("LastModifiedTime")));
        }
        if let Some(m) = ex {
            doc.put_str("source.user.email", s(m, "From"));
            doc.put_str("message", s(m, "Subject"));
            let mut to: Vec<Value> = Vec::new();
            for f in ["To", "CC", "BCC"] {
                for a in string_list(m.get(f)) {
                    to.push(Value::String(a));
                }
            }
            if !to.is_empty() {
                doc.put("destination.user.email", Value::Array(to));
            }
        }
        let mut rule_ids: Vec<Value> = Vec::new();
        let mut rule_names: Vec<Value> = Vec::new();
        if let Some(policies) = record.get("PolicyDetails").and_then(Value::as_array) {
            let mut max = 0;
            let mut allowed = true;
            for rule in policies
                .iter()
                .filter_map(|p| p.get("Rules").and_then(Value::as_array))
                .flatten()
            {
                if let (Some(id), Some(name)) = (s(rule, "RuleId"), s(rule, "RuleName")) {
                    rule_ids.push(Value::String(id.to_string()));
                    rule_names.push(Value::String(name.to_string()));
                }
                let sev = match s(rule, "Severity").map(str::to_ascii_lowercase).as_deref() {
                    Some("informational") => 1,
                    Some("low") => 2,
                    Some("medium") => 3,
                    Some("high") => 4,
                    _ => 0,
                };
                max = max.max(sev);
                if allowed && string_list(rule.get("Actions")).iter().any(|a| a == "BlockAccess") {
                    allowed = false;
                }
            }
            doc.put_i64("event.severity", Some(max));
            let exception = record.get("ExceptionInfo").is_some_and(|e| match e {
                Value::String(t) => !t.is_empty(),
                Value::Object(m) => !m.is_empty(),
                Value::Array(a) => !a.is_empty(),
                Value::Null => false,
                _ => true,
            });
            outcome = if allowed || action == Some("DlpRuleUndo") {
                "success"
            } else if action == Some("DlpInfo") {
                "failure"
            } else if exception {
                "success"
            } else {
                "failure"
            };
        }
        // Top-level PolicyId / PolicyName come first, then every rule of PolicyDetails.
        if let Some(id) = s(record, "PolicyId") {
            rule_ids.insert(0, Value::String(id.to_string()));
        }
        if let Some(name) = s(record, "PolicyName") {
            rule_names.insert(0, Value::String(name.to_string()));
        }
        if !rule_ids.is_empty() {
            doc.put("rule.id", Value::Array(rule_ids));
        }
        if !rule_names.is_empty() {
            doc.put("rule.name", Value::Array(rule_names));
        }
    }
    // Yammer schema.
    if code_is("Yammer") {
        email = s(record, "ActorUserId");
        if user_id.is_none() {
            user_id = text_of(record.get("ActorYammerUserId"));
        }
        doc.put_string("file.inode", text_of(record.get("FileId")).map(Cow::into_owned));
        doc.put_str("file.name", s(record, "FileName"));
        doc.put_str("group.name", s(record, "GroupName"));
        doc.put_str("destination.user.email", s(record, "TargetUserId"));
        doc.put_string(
            "destination.user.id",
            text_of(record.get("TargetYammerUserId")).map(Cow::into_owned),
        );
        let a = action.unwrap_or("");
        if [
            "NetworkConfigurationUpdated",
            "NetworkSecurityConfigurationUpdated",
            "SoftDeleteSettingsUpdated",
            "ProcessProfileFields",
            "SupervisorAdminToggled",
        ]
        .contains(&a)
        {
            lists.cat("configuration");
        }
        if [
            "NetworkSecurityConfigurationUpdated",
            "GroupCreation",
            "GroupDeletion",
            "NetworkUserSuspended",
            "UserSuspension",
        ]
        .contains(&a)
        {
            lists.cat("iam");
        }
        if [
            "FileCreated",
            "FileDownloaded",
            "FileShared",
            "FileUpdateDescription",
            "FileUpdateName",
            "FileVisited",
        ]
        .contains(&a)
        {
            lists.cat("file");
        }
        if [
            "NetworkConfigurationUpdated",
            "NetworkSecurityConfigurationUpdated",
            "SoftDeleteSettingsUpdated",
            "ProcessProfileFields",
            "SupervisorAdminToggled",
        ]
        .contains(&a)
        {
            lists.typ("change");
        }
        if a == "NetworkSecurityConfigurationUpdated" {
            lists.typ("admin");
        }
        if ["FileCreated", "GroupCreation", "FileUpdateName"].contains(&a) {
            lists.typ("creation");
        }
        if a == "GroupDeletion" {
            lists.typ("deletion");
        }
        if ["FileDownloaded", "FileShared", "FileUpdateDescription", "FileVisited"].contains(&a) {
            lists.typ("access");
        }
        if ["GroupCreation", "GroupDeletion"].contains(&a) {
            lists.typ("group");
        }
    }
    // Teams schema.
    if code_is("MicrosoftTeams") {
        match action {
            Some("TeamCreated") => {
                action_out = Some("added-group-account-to");
                lists.cat("iam");
                lists.typ("group");
                lists.typ("creation");
            }
            Some("MemberAdded") => {
                action_out = Some("added-users-to-group");
                lists.cat("iam");
                lists.typ("group");
                lists.typ("change");
            }
            Some("Delete user.") => {
                action_out = Some("deleted-user-account");
                lists.cat("iam");
                lists.typ("user");
                lists.typ("deletion");
                target_id = s(record, "ObjectId");
            }
            _ => {}
        }
        doc.put_str("group.name", s(record, "TeamName"));
        if let Some(members) = record.get("Members").and_then(Value::as_array) {
            related_first.extend(members.iter().filter_map(|m| s(m, "UPN")));
        }
    }
    doc.put_str("event.action", action_out);
    doc.put_str("event.kind", Some(kind));
    doc.put_list("event.category", &lists.category);
    doc.put_list("event.type", &lists.kind);
    doc.put_str("event.outcome", Some(outcome));
    for u in related_first {
        doc.relate_user(Some(u));
    }
    // Client address grok → client.address / client.domain / client.port; client.ip when
    // the address is an IP; source.ip / source.port copied from the client.
    if let Some(raw) = client_raw.filter(|r| !r.is_empty()) {
        let (address, domain, port) = client_parts(raw);
        doc.put_i64("client.port", port.map(i64::from));
        if let Some(ip) = address.as_deref().filter(|a| a.parse::<std::net::IpAddr>().is_ok()) {
            doc.put_string("client.ip", Some(ip.to_string()));
            doc.put_string("source.ip", Some(ip.to_string()));
            doc.put_str("network.type", Some(if ip.contains(':') { "ipv6" } else { "ipv4" }));
            doc.relate_ip_text(std::borrow::Cow::Owned(ip.to_string()));
        }
        doc.put_string("client.address", address);
        doc.put_string("client.domain", domain);
        doc.put_i64("source.port", port.map(i64::from));
    }
    // OriginatingServer grok → server.domain / server.address; destination.ip = server.ip.
    if let Some(raw) = server_raw {
        let cleaned: String = raw.chars().filter(|c| *c != '\n' && *c != '\r').collect();
        let inner = cleaned
            .strip_prefix('[')
            .and_then(|t| t.strip_suffix(']'))
            .unwrap_or(&cleaned);
        let (domain, address) = match inner.split_once(" (") {
            Some((d, a)) if !d.contains(char::is_whitespace) => {
                (Some(d.to_string()), a.split(')').next().map(str::to_string))
            }
            _ => (None, Some(cleaned.clone())),
        };
        if let Some(ip) = address.as_deref().filter(|a| a.parse::<std::net::IpAddr>().is_ok()) {
            doc.put_string("server.ip", Some(ip.to_string()));
            doc.put_string("destination.ip", Some(ip.to_string()));
            doc.relate_ip(ip);
        }
        doc.put_string("server.domain", domain);
        doc.put_string("server.address", address);
    }
    // user.id / user.email, then the split of a UPN user.id into email, domain and name.
    let mut user_name: Option<&'a str> = None;
    let mut user_domain: Option<&'a str> = None;
    if let Some(Cow::Borrowed(id)) = &user_id {
        if let Some((local, domain)) = split_mail(id) {
            email = Some(id);
            user_domain = Some(domain);
            user_name = Some(local);
        }
    }
    put_text(doc, "user.id", user_id);
    doc.put_str("user.email", email);
    doc.put_str("user.domain", user_domain);
    doc.put_str("user.name", user_name);
    let mut target_name = None;
    if let Some(t) = target_id {
        doc.put_str("user.target.id", Some(t));
        if let Some((local, domain)) = split_mail(t) {
            doc.put_str("user.target.email", Some(t));
            doc.put_str("user.target.domain", Some(domain));
            doc.put_str("user.target.name", Some(local));
            target_name = Some(local);
        }
    }
    // related.user: user.name, user.target.name, file.owner, Parameters.User.
    doc.relate_user(user_name);
    doc.relate_user(target_name);
    doc.relate_user(file_owner);
    doc.relate_user(named(record, "Parameters", "User"));
    // ExtendedProperties.UserAgent → user_agent.original.
    if user_agent.is_none() {
        user_agent = named(record, "ExtendedProperties", "UserAgent");
    }
    doc.put_str("user_agent.original", user_agent);
    // organization.id lowercased; host.id = organization.id; host.name = organization.name,
    // else user.domain.
    if let Some(org) = s(record, "OrganizationId") {
        let lower = org.to_ascii_lowercase();
        doc.put_string("organization.id", Some(lower.clone()));
        doc.put_string("host.id", Some(lower));
        // Not in Elastic's pipeline: the tenant as ECS cloud.account.id (as every other family).
        doc.put_str("cloud.account.id", Some(org));
    }
    doc.put_str("organization.name", org_name);
    doc.put_str("host.name", org_name.or(user_domain));
    // Kept from before: the STS logon error, ThreatIntelligence mail and URL fields (no
    // Elastic mapping; ECS fields of the same meaning).
    match code {
        Some("AzureActiveDirectoryStsLogon") => {
            if let Some(e) = s(record, "LogonError") {
                doc.put_str("error.message", Some(e));
            }
        }
        Some("ThreatIntelligence") => threat_intelligence(doc, record),
        Some("ThreatIntelligenceUrl") => put_url_once(doc, s(record, "Url")),
        _ => {}
    }
    doc.keep(ns, false, 0);
}

fn put_url_once<'a>(doc: &mut Doc<'a>, url: Option<&'a str>) {
    if !doc.has_path(&["url", "original"]) {
        put_url(doc, url);
    }
}

/// Defender for Office threat-intelligence mail: ECS `email.*` (Elastic keeps these only under
/// `o365.audit.*`).
fn threat_intelligence<'a>(doc: &mut Doc<'a>, record: &'a Value) {
    doc.put_str("email.subject", s(record, "Subject"));
    doc.put_str("email.message_id", s(record, "InternetMessageId"));
    if let Some(from) = s(record, "P2Sender") {
        doc.put(
            "email.from.address",
            Value::Array(vec![Value::String(from.to_string())]),
        );
    }
    if let Some(sender) = s(record, "P1Sender") {
        doc.put(
            "email.sender.address",
            Value::Array(vec![Value::String(sender.to_string())]),
        );
    }
    let to = string_list(record.get("Recipients"));
    if !to.is_empty() {
        doc.put(
            "email.to.address",
            Value::Array(to.into_iter().map(Value::String).collect()),
        );
    }
}
