//! Entra ID diagnostic records (and the Graph objects that share their `properties` shape).
//!
//! Vendor detail is kept as Elastic's Azure integration names it: envelope fields under
//! `azure.<dataset>.*` (snake_case), the payload under `azure.<dataset>.properties.*` with
//! snake_case keys.
//!
//! The core ECS fields follow the ingest pipelines of Elastic's `azure` package
//! (`packages/azure/data_stream/{signinlogs,auditlogs,provisioning,identity_protection,
//! graphactivitylogs}/elasticsearch/ingest_pipeline/default.yml` in `elastic/integrations`);
//! each function says which pipeline step a field follows, and `FIELDS.md` lists every
//! deliberate difference with its reason.

use serde_json::Value;

use super::common::{
    change_type, duration_ns, int, join, outcome_word, put_entra_geo, put_severity, put_tenant, put_url, put_user, s,
    s_any, sp, timestamp, Doc,
};

/// Split a user principal name as Elastic's sign-in pipeline does with the grok patterns
/// `%{USERNAME:user.name}@%{HOSTNAME:user.domain}` then `%{GREEDYDATA:user.name}`: the first
/// `@` preceded by `[A-Za-z0-9._-]+` and followed by a host name gives name and domain (grok
/// is not anchored, so the name is the run of those characters just before the `@`);
/// otherwise the whole value is the name (guest `…#EXT#@…` UPNs, object ids).
pub fn split_upn(upn: &str) -> (&str, Option<&str>) {
    let b = upn.as_bytes();
    let user_char = |c: u8| c.is_ascii_alphanumeric() || matches!(c, b'.' | b'_' | b'-');
    for (at, _) in upn.match_indices('@') {
        let mut start = at;
        while start > 0 && user_char(b[start - 1]) {
            start -= 1;
        }
        if start == at {
            continue;
        }
        if let Some(end) = hostname_end(b, at + 1) {
            return (&upn[start..at], Some(&upn[at + 1..end]));
        }
    }
    (upn, None)
}

/// End of the grok `HOSTNAME` match starting at `from`: labels of `[0-9A-Za-z][0-9A-Za-z-]{0,62}`
/// joined by dots, then an optional trailing dot.
fn hostname_end(b: &[u8], from: usize) -> Option<usize> {
    let label = |i: usize| -> Option<usize> {
        if i < b.len() && b[i].is_ascii_alphanumeric() {
            let mut j = i + 1;
            while j < b.len() && j - i < 63 && (b[j].is_ascii_alphanumeric() || b[j] == b'-') {
                j += 1;
            }
            Some(j)
        } else {
            None
        }
    };
    let mut end = label(from)?;
    while end < b.len() && b[end] == b'.' {
        match label(end + 1) {
            Some(next) => end = next,
            None => {
                end += 1; // `(\.?|\b)`: a trailing dot is part of the match
                break;
            }
        }
    }
    Some(end)
}

/// Elastic's outcome from a result word: only `success` / `failure` (any case) give an
/// outcome, lowercased (auditlogs `properties.result`, provisioning `resultType`).
fn success_or_failure(word: Option<&str>) -> Option<&'static str> {
    let w = word?.trim();
    if w.eq_ignore_ascii_case("success") {
        Some("success")
    } else if w.eq_ignore_ascii_case("failure") {
        Some("failure")
    } else {
        None
    }
}

/// `user.*` of a record that names a user by UPN, object id and display name (sign-ins,
/// risk detections, risky users): the UPN split as Elastic's sign-in grok does, `user.email`
/// when the UPN is an address, `related.user` with every identifier.
fn put_upn_user<'a>(doc: &mut Doc<'a>, upn: Option<&'a str>, id: Option<&'a str>, display: Option<&'a str>) {
    if let Some(upn) = upn {
        let (name, domain) = split_upn(upn);
        doc.put_str("user.name", Some(name));
        doc.put_str("user.domain", domain);
        if domain.is_some() {
            doc.put_str("user.email", Some(upn));
        }
        doc.relate_user(Some(name));
        doc.relate_user(Some(upn));
    }
    doc.put_str("user.id", id);
    doc.put_str("user.full_name", display);
    doc.relate_user(id);
    doc.relate_user(display);
}

/// `client.ip` = `source.ip`, as Elastic's `set client.ip from {{source.ip}}` steps.
fn client_ip_from_source<'a>(doc: &mut Doc<'a>, ip: Option<&'a str>) {
    doc.put_ip("source.ip", ip);
    doc.put_ip("client.ip", ip);
}

const MODULE: &str = "azure";
const SERVICE: &str = "Microsoft Entra ID";

/// Map an Entra diagnostic record. `false` when the category has no specific mapping.
pub fn map<'a>(record: &'a Value, category: &'a str, doc: &mut Doc<'a>) -> bool {
    let props = record.get("properties").filter(|p| p.is_object());
    let p = props.unwrap_or(&super::common::NULL);
    let ns = match category {
        "SignInLogs"
        | "NonInteractiveUserSignInLogs"
        | "ServicePrincipalSignInLogs"
        | "ManagedIdentitySignInLogs"
        | "ADFSSignInLogs" => {
            sign_in(doc, p, Some(record), category);
            "azure.signinlogs"
        }
        // Custom security attribute audits are "a subset of the standard audit logs" (same
        // `properties` shape); Elastic's auditlogs pipeline keeps only `AuditLogs`, so they take
        // the auditlogs mapping under their own category.
        "AuditLogs" | "CustomSecurityAttributeAuditLogs" => {
            directory_audit(doc, p, Some(record));
            "azure.auditlogs"
        }
        "ProvisioningLogs" => {
            provisioning(doc, p, Some(record));
            "azure.provisioning"
        }
        "RiskyUsers" => {
            risky_user(doc, p, Some(record));
            "azure.identity_protection"
        }
        "UserRiskEvents" => {
            risk_detection(doc, p, Some(record), false);
            "azure.identity_protection"
        }
        "RiskyServicePrincipals" => {
            risky_service_principal(doc, p, Some(record));
            "azure.identity_protection"
        }
        "ServicePrincipalRiskEvents" => {
            risk_detection(doc, p, Some(record), true);
            "azure.identity_protection"
        }
        "MicrosoftGraphActivityLogs" => {
            graph_activity(doc, p, record);
            "azure.graphactivitylogs"
        }
        "NetworkAccessTrafficLogs" => {
            network_access(doc, p, record);
            "azure.network_access_traffic"
        }
        "EnrichedOffice365AuditLogs" => {
            enriched_office365(doc, p, record);
            "azure.enriched_office365_audit"
        }
        "RemoteNetworkHealthLogs" => {
            remote_network_health(doc, p, record);
            "azure.remote_network_health"
        }
        _ => return false,
    };
    envelope(doc, record, ns);
    if props.is_some() {
        doc.keep(join(ns, "properties"), true, 12);
    }
    true
}

/// Common fields of Azure diagnostic records.
fn envelope<'a>(doc: &mut Doc<'a>, record: &'a Value, ns: &'a str) {
    if !doc.has("@timestamp") {
        doc.put_string("@timestamp", timestamp(record.get("time")));
    }
    let tenant = s(record, "tenantId");
    put_tenant(doc, tenant);
    doc.put_str("azure.tenant_id", tenant);
    doc.put_str("azure.correlation_id", s(record, "correlationId"));
    if let Some(rid) = s(record, "resourceId") {
        doc.put_str("azure.resource.id", Some(rid));
        doc.put_str(
            "azure.resource.provider",
            rid.rsplit("/providers/").next().filter(|p| *p != rid),
        );
    }
    doc.put_str(join(ns, "category"), s(record, "category"));
    doc.put_str(join(ns, "operation_name"), s(record, "operationName"));
    doc.put_str(join(ns, "operation_version"), s(record, "operationVersion"));
    if let Some(rt) = record.get("resultType") {
        match rt {
            Value::String(_) => doc.put(join(ns, "result_type"), rt.clone()),
            Value::Number(n) => doc.put(join(ns, "result_type"), Value::String(n.to_string())),
            _ => {}
        }
    }
    doc.put_str(join(ns, "result_signature"), s(record, "resultSignature"));
    doc.put_str(join(ns, "result_description"), s(record, "resultDescription"));
    doc.put_str(join(ns, "identity"), s(record, "identity"));
    if let Some(level) = record.get("Level").or_else(|| record.get("level")) {
        if level.is_number() || level.is_string() {
            doc.put(join(ns, "level"), level.clone());
        }
    }
    if !doc.has_path(&["event", "duration"]) {
        doc.put_i64("event.duration", duration_ns(record.get("durationMs")));
    }
    if !doc.has("source") {
        doc.put_ip("source.ip", s(record, "callerIpAddress"));
    }
}

/// `properties.status.errorCode` as a number (Graph and diagnostics give a number; a numeric
/// string is read too).
fn error_code(p: &Value) -> Option<i64> {
    match p.get("status").and_then(|st| st.get("errorCode")) {
        Some(v @ Value::Number(_)) => int(Some(v)),
        Some(Value::String(t)) => t.trim().parse::<i64>().ok(),
        _ => None,
    }
}

/// Sign-ins of every kind (interactive, non-interactive, service principal, managed
/// identity, AD FS: Elastic's signinlogs pipeline keeps every category ending in
/// `SignInLogs`). `category` is the diagnostic category or the Graph kind.
pub fn sign_in<'a>(doc: &mut Doc<'a>, p: &'a Value, env: Option<&'a Value>, category: &'a str) {
    // `date` of `azure.signinlogs.time` (Graph objects have only `createdDateTime`).
    doc.put_string(
        "@timestamp",
        env.and_then(|e| timestamp(e.get("time")))
            .or_else(|| timestamp(p.get("createdDateTime"))),
    );
    doc.put_str("event.dataset", Some("azure.signinlogs"));
    doc.put_str("event.module", Some(MODULE));
    doc.put_str("cloud.service.name", Some(SERVICE));
    // `set event.category: [authentication]`, `set event.type: [info]`.
    doc.put_list("event.category", &["authentication"]);
    doc.put_list("event.type", &["info"]);
    // `convert operation_name -> event.action`.
    doc.put_str(
        "event.action",
        env.and_then(|e| s(e, "operationName")).or(Some("Sign-in activity")),
    );
    // `set event.id from properties.id`.
    doc.put_str("event.id", s(p, "id"));
    // `set event.outcome`: success when `status.error_code` is null or 0, failure when > 0.
    let code = error_code(p);
    match code {
        None | Some(0) => doc.put_str("event.outcome", Some("success")),
        Some(c) if c > 0 => {
            doc.put_str("event.outcome", Some("failure"));
            doc.put_string("error.code", Some(c.to_string()));
            doc.put_str(
                "error.message",
                sp(p, &["status", "failureReason"]).or_else(|| env.and_then(|e| s(e, "resultDescription"))),
            );
        }
        Some(_) => {}
    }
    // The `message` script: failureReason, "(additionalDetails)" appended when both exist.
    let reason = sp(p, &["status", "failureReason"]);
    let details = sp(p, &["status", "additionalDetails"]);
    match (reason, details) {
        (Some(r), Some(d)) => doc.put_string("message", Some(format!("{r} ({d})"))),
        (Some(r), None) => doc.put_str("message", Some(r)),
        (None, d) => doc.put_str("message", d),
    }
    // `rename duration_ms -> event.duration` times 1,000,000.
    doc.put_i64("event.duration", env.and_then(|e| duration_ns(e.get("durationMs"))));
    // `grok user_principal_name` -> user.name / user.domain; `convert user_display_name ->
    // user.full_name`; `convert user_id -> user.id`.
    put_upn_user(doc, s(p, "userPrincipalName"), s(p, "userId"), s(p, "userDisplayName"));
    // Service principal and managed identity sign-ins name no user; Elastic leaves `user.*`
    // empty and so do we, but their identifiers go to `related.user`.
    let service = matches!(category, "ServicePrincipalSignInLogs" | "ManagedIdentitySignInLogs")
        || s(p, "userPrincipalName").is_none();
    if service {
        doc.relate_user(s(p, "servicePrincipalName"));
        doc.relate_user(s(p, "servicePrincipalId"));
    }
    // `set source.address` from the first of properties.ipAddress, callerIpAddress;
    // `convert -> source.ip`; `append related.ip`; `set client.ip from source.ip`.
    let ip = s(p, "ipAddress").or_else(|| env.and_then(|e| s(e, "callerIpAddress")));
    client_ip_from_source(doc, ip);
    put_entra_geo(doc, p.get("location"));
    doc.put_i64("source.as.number", int(p.get("autonomousSystemNumber")));
    // `rename properties.user_agent -> user_agent.original`.
    doc.put_str("user_agent.original", s(p, "userAgent"));
    doc.put_str("device.id", sp(p, &["deviceDetail", "deviceId"]));
    put_tenant(
        doc,
        env.and_then(|e| s(e, "tenantId")).or_else(|| s(p, "resourceTenantId")),
    );
    if let Some(level) = s(p, "riskLevelDuringSignIn").filter(|l| *l != "none" && *l != "hidden") {
        put_severity(doc, Some(level));
    }
}

/// Directory audits (`AuditLogs` and `CustomSecurityAttributeAuditLogs` from
/// `microsoft.aadiam`, Graph `directoryAudit`).
pub fn directory_audit<'a>(doc: &mut Doc<'a>, p: &'a Value, env: Option<&'a Value>) {
    // `date azure.auditlogs.time -> @timestamp` (Graph objects: `activityDateTime`).
    doc.put_string(
        "@timestamp",
        env.and_then(|e| timestamp(e.get("time")))
            .or_else(|| timestamp(p.get("activityDateTime"))),
    );
    doc.put_str("event.dataset", Some("azure.auditlogs"));
    doc.put_str("event.module", Some(MODULE));
    doc.put_str("cloud.service.name", Some(SERVICE));
    doc.put_str("event.id", s(p, "id"));
    // `convert azure.auditlogs.operationName -> event.action`.
    let action = env
        .and_then(|e| s(e, "operationName"))
        .or_else(|| s(p, "activityDisplayName"));
    doc.put_str("event.action", action);
    doc.put_str("event.provider", s(p, "loggedByService"));
    // Elastic sets no event.category / event.type for audit logs; ECS categorisation from
    // the operation and the first target (a deliberate addition, see FIELDS.md).
    let verb = s(p, "operationType").or(action).unwrap_or("");
    let change = change_type(verb);
    let targets = p.get("targetResources").and_then(Value::as_array);
    let first_type = targets.and_then(|t| t.first()).and_then(|t| s(t, "type")).unwrap_or("");
    let (category, kind_type) = match first_type.to_ascii_lowercase().as_str() {
        "user" => ("iam", Some("user")),
        "group" => ("iam", Some("group")),
        "role" => ("iam", Some("admin")),
        "serviceprincipal" | "application" | "device" => ("iam", None),
        "" => ("iam", None),
        _ => ("configuration", None),
    };
    doc.put_list("event.category", &[category]);
    match kind_type {
        Some(t) => doc.put_list("event.type", &[t, change]),
        None => doc.put_list("event.type", &[change]),
    }
    // `rename properties.result -> event.outcome` only for success / failure, lowercased by
    // the shared pipeline.
    doc.put_str("event.outcome", success_or_failure(s(p, "result")));
    doc.put_str("event.reason", s(p, "resultReason"));
    // initiated_by.user: userPrincipalName -> user.name, id -> user.id, displayName ->
    // user.full_name, all three appended to related.user (elastic/integrations#20075). An app
    // initiator sets no user.
    let initiator = p
        .get("initiatedBy")
        .and_then(|i| i.get("user"))
        .filter(|u| u.is_object());
    if let Some(user) = initiator {
        let upn = s(user, "userPrincipalName");
        doc.put_str("user.name", upn);
        doc.put_str("user.id", s(user, "id"));
        doc.put_str("user.full_name", s(user, "displayName"));
        doc.relate_user(upn);
        doc.relate_user(s(user, "id"));
        doc.relate_user(s(user, "displayName"));
    }
    // `convert callerIpAddress -> source.ip`; `set client.ip`; `append related.ip`. Graph
    // objects have no envelope: the initiating user's address stands in.
    let ip = env
        .and_then(|e| s(e, "callerIpAddress"))
        .or_else(|| initiator.and_then(|u| s(u, "ipAddress")));
    client_ip_from_source(doc, ip);
    if let Some(targets) = targets {
        if let Some(t) = targets
            .iter()
            .find(|t| s(t, "type").is_some_and(|x| x.eq_ignore_ascii_case("user")))
        {
            // user.target.* only: Elastic's related.user holds the initiator alone.
            let name = s_any(t, &["userPrincipalName", "displayName"]);
            doc.put_str("user.target.name", name);
            if let Some((_, domain)) = name.filter(|n| n.contains('@')).map(split_upn) {
                doc.put_str("user.target.email", name);
                doc.put_str("user.target.domain", domain);
            }
            doc.put_str("user.target.id", s(t, "id"));
            doc.put_str(
                "user.target.full_name",
                s(t, "displayName").filter(|_| s(t, "userPrincipalName").is_some()),
            );
        }
        if let Some(g) = targets
            .iter()
            .find(|t| s(t, "type").is_some_and(|x| x.eq_ignore_ascii_case("group")))
        {
            doc.put_str("user.target.group.name", s(g, "displayName"));
            doc.put_str("user.target.group.id", s(g, "id"));
        }
    }
    put_tenant(doc, env.and_then(|e| s(e, "tenantId")).or_else(|| s(p, "tenantId")));
}

/// Provisioning records (`ProvisioningLogs`, Graph `provisioningObjectSummary`).
pub fn provisioning<'a>(doc: &mut Doc<'a>, p: &'a Value, env: Option<&'a Value>) {
    doc.put_string(
        "@timestamp",
        env.and_then(|e| timestamp(e.get("time")))
            .or_else(|| timestamp(p.get("activityDateTime"))),
    );
    doc.put_str("event.dataset", Some("azure.provisioning"));
    doc.put_str("event.module", Some(MODULE));
    doc.put_str("cloud.service.name", Some(SERVICE));
    doc.put_str("event.id", s(p, "id"));
    let action = s(p, "provisioningAction");
    // `convert operation_name -> event.action`; `convert callerIpAddress -> source.ip` is done
    // by the envelope (Elastic sets no client.ip here).
    doc.put_str("event.action", env.and_then(|e| s(e, "operationName")).or(action));
    let change = match action.map(str::to_ascii_lowercase).as_deref() {
        Some("create") => "creation",
        Some("delete") => "deletion",
        Some("update") | Some("disable") | Some("enable") => "change",
        _ => "info",
    };
    let is_user = sp(p, &["targetIdentity", "identityType"])
        .or_else(|| sp(p, &["sourceIdentity", "identityType"]))
        .is_some_and(|t| t.eq_ignore_ascii_case("user"));
    doc.put_list("event.category", &["iam"]);
    if is_user {
        doc.put_list("event.type", &["user", change]);
    } else {
        doc.put_list("event.type", &[change]);
    }
    // `convert resultType -> event.outcome` when it is success / failure (lowercased by the
    // shared pipeline). Graph objects have no envelope: `provisioningStatusInfo.status`.
    let outcome = match env {
        Some(e) => success_or_failure(s(e, "resultType")),
        None => sp(p, &["provisioningStatusInfo", "status"]).and_then(outcome_word),
    };
    doc.put_str("event.outcome", outcome);
    if let Some(err) = p
        .get("provisioningStatusInfo")
        .and_then(|i| i.get("errorInformation"))
        .filter(|e| e.is_object())
    {
        doc.put_str("error.code", s(err, "errorCode"));
        doc.put_str("error.message", s(err, "reason"));
    }
    doc.put_str("event.provider", sp(p, &["servicePrincipal", "displayName"]));
    if let Some(t) = p.get("targetIdentity").filter(|t| t.is_object()) {
        // user.target.* only (Elastic's provisioning pipeline fills no related.user).
        let name = s(t, "displayName");
        doc.put_str("user.target.name", name);
        if let Some((_, domain)) = name.filter(|n| n.contains('@')).map(split_upn) {
            doc.put_str("user.target.email", name);
            doc.put_str("user.target.domain", domain);
        }
        doc.put_str("user.target.id", s(t, "id"));
    }
    put_tenant(doc, env.and_then(|e| s(e, "tenantId")).or_else(|| s(p, "tenantId")));
}

fn risk_common<'a>(doc: &mut Doc<'a>, env: Option<&'a Value>) {
    doc.put_str("event.dataset", Some("azure.identity_protection"));
    doc.put_str("event.module", Some(MODULE));
    doc.put_str("cloud.service.name", Some(SERVICE));
    put_tenant(doc, env.and_then(|e| s(e, "tenantId")));
}

fn put_risk_level<'a>(doc: &mut Doc<'a>, p: &'a Value) {
    let level = s(p, "riskLevel").filter(|l| *l != "none" && *l != "hidden");
    put_severity(doc, level);
}

/// Risky users (`RiskyUsers`, Graph `riskyUser`): the state of a user's risk.
pub fn risky_user<'a>(doc: &mut Doc<'a>, p: &'a Value, env: Option<&'a Value>) {
    doc.put_string(
        "@timestamp",
        env.and_then(|e| timestamp(e.get("time")))
            .or_else(|| timestamp(p.get("riskLastUpdatedDateTime"))),
    );
    risk_common(doc, env);
    doc.put_str("event.kind", Some("state"));
    doc.put_list("event.category", &["iam"]);
    doc.put_list("event.type", &["user", "info"]);
    // identity_protection: `convert operation_name -> event.action`.
    doc.put_str(
        "event.action",
        env.and_then(|e| s(e, "operationName")).or(Some("Risky user")),
    );
    doc.put_str("event.id", s(p, "id"));
    doc.put_str("event.reason", s(p, "riskDetail").filter(|d| *d != "none"));
    put_risk_level(doc, p);
    // Elastic keeps the user under azure.identityprotection.properties.* only; ECS user.*
    // as the sign-in pipeline does (see FIELDS.md).
    put_upn_user(doc, s(p, "userPrincipalName"), s(p, "id"), s(p, "userDisplayName"));
    caller_ip(doc, env);
    if env.is_none() {
        put_tenant(doc, s(p, "tenantId"));
    }
}

/// Risky service principals (`RiskyServicePrincipals`, Graph `riskyServicePrincipal`).
pub fn risky_service_principal<'a>(doc: &mut Doc<'a>, p: &'a Value, env: Option<&'a Value>) {
    doc.put_string(
        "@timestamp",
        env.and_then(|e| timestamp(e.get("time")))
            .or_else(|| timestamp(p.get("riskLastUpdatedDateTime"))),
    );
    risk_common(doc, env);
    doc.put_str("event.kind", Some("state"));
    doc.put_list("event.category", &["iam"]);
    doc.put_list("event.type", &["info"]);
    doc.put_str(
        "event.action",
        env.and_then(|e| s(e, "operationName"))
            .or(Some("Risky service principal")),
    );
    doc.put_str("event.id", s(p, "id"));
    doc.put_str("event.reason", s(p, "riskDetail").filter(|d| *d != "none"));
    put_risk_level(doc, p);
    // Not a user: the service principal's identifiers go to related.user only.
    doc.relate_user(s(p, "displayName"));
    doc.relate_user(s(p, "id"));
    caller_ip(doc, env);
}

/// `convert callerIpAddress -> source.ip` (identity_protection; no client.ip there).
fn caller_ip<'a>(doc: &mut Doc<'a>, env: Option<&'a Value>) {
    doc.put_ip("source.ip", env.and_then(|e| s(e, "callerIpAddress")));
}

/// Risk detections for users (`UserRiskEvents`, Graph `riskDetection`) and service
/// principals (`ServicePrincipalRiskEvents`, Graph `servicePrincipalRiskDetection`).
pub fn risk_detection<'a>(doc: &mut Doc<'a>, p: &'a Value, env: Option<&'a Value>, service_principal: bool) {
    doc.put_string(
        "@timestamp",
        env.and_then(|e| timestamp(e.get("time")))
            .or_else(|| timestamp(p.get("detectedDateTime")))
            .or_else(|| timestamp(p.get("activityDateTime"))),
    );
    risk_common(doc, env);
    doc.put_str("event.kind", Some("alert"));
    doc.put_list("event.category", &["intrusion_detection"]);
    doc.put_list("event.type", &["info"]);
    // `convert operation_name -> event.action` (e.g. "User Risk Detection"); Graph objects,
    // which have no operation name, keep the risk event type.
    doc.put_str(
        "event.action",
        env.and_then(|e| s(e, "operationName"))
            .or_else(|| s(p, "riskEventType")),
    );
    doc.put_str("event.id", s(p, "id"));
    doc.put_str("event.reason", s(p, "riskDetail").filter(|d| *d != "none"));
    doc.put_string("event.start", timestamp(p.get("activityDateTime")));
    put_risk_level(doc, p);
    doc.put_str("rule.name", s(p, "riskEventType"));
    caller_ip(doc, env);
    if service_principal {
        doc.relate_user(s(p, "servicePrincipalDisplayName"));
        doc.relate_user(s(p, "servicePrincipalId"));
        if let Some(ips) = p.get("ipAddresses").and_then(Value::as_array) {
            if let Some(first) = ips.iter().find_map(Value::as_str) {
                if !doc.has("source") {
                    doc.put_ip("source.ip", Some(first));
                }
            }
            for ip in ips.iter().filter_map(Value::as_str) {
                if let Some((ip, _)) = super::common::parse_ip(ip) {
                    doc.relate_ip(&ip.to_string());
                }
            }
        }
    } else {
        put_upn_user(doc, s(p, "userPrincipalName"), s(p, "userId"), s(p, "userDisplayName"));
        if !doc.has("source") {
            doc.put_ip("source.ip", s(p, "ipAddress"));
        }
    }
    put_entra_geo(doc, p.get("location"));
    if env.is_none() {
        put_tenant(doc, s(p, "tenantId"));
    }
}

/// `MicrosoftGraphActivityLogs`: one record per Graph HTTP request (graphactivitylogs
/// pipeline).
fn graph_activity<'a>(doc: &mut Doc<'a>, p: &'a Value, env: &'a Value) {
    // `date time -> @timestamp`.
    doc.put_string(
        "@timestamp",
        timestamp(env.get("time")).or_else(|| timestamp(p.get("timeGenerated"))),
    );
    doc.put_str("event.dataset", Some("azure.graphactivitylogs"));
    doc.put_str("event.module", Some(MODULE));
    // `set cloud.service.name: Microsoft Graph`.
    doc.put_str("cloud.service.name", Some("Microsoft Graph"));
    // `append event.type: access`; Elastic sets no category (ECS `web` added, see FIELDS.md).
    doc.put_list("event.category", &["web"]);
    doc.put_list("event.type", &["access"]);
    // `convert operation_name -> event.action`.
    doc.put_str(
        "event.action",
        s(env, "operationName").or(Some("Microsoft Graph Activity")),
    );
    doc.put_str("event.id", s_any(p, &["requestId", "operationId"]));
    // `rename duration_ms -> event.duration` (envelope first, then properties) times 1e6.
    doc.put_i64(
        "event.duration",
        duration_ns(env.get("durationMs")).or_else(|| duration_ns(p.get("durationMs"))),
    );
    // `rename properties.request_id -> http.request.id`, `request_method ->
    // http.request.method`, `response_size_bytes -> http.response.bytes`,
    // `response_status_code -> http.response.status_code`.
    doc.put_str("http.request.id", s(p, "requestId"));
    doc.put_str("http.request.method", s(p, "requestMethod"));
    let status = int(p.get("responseStatusCode"));
    doc.put_i64("http.response.status_code", status);
    doc.put_i64("http.response.bytes", int(p.get("responseSizeBytes")));
    if let Some(st) = status {
        doc.put_str("event.outcome", Some(if st < 400 { "success" } else { "failure" }));
    }
    // `uri_parts properties.request_uri` (keep_original -> url.original).
    put_url(doc, s(p, "requestUri"));
    // `convert caller_ip_address -> source.ip`, else `properties.ip_address`; `set client.ip`.
    client_ip_from_source(doc, s(env, "callerIpAddress").or_else(|| s(p, "ipAddress")));
    // `rename location -> destination.geo.region_name`; `set cloud.region` from it.
    let region = s(env, "location").or_else(|| s(p, "location"));
    doc.put_str("destination.geo.region_name", region);
    doc.put_str("cloud.region", region);
    // `user_agent properties.user_agent` (sets user_agent.original).
    doc.put_str("user_agent.original", s(p, "userAgent"));
    // `rename properties.user_id -> user.id`; `set client.user.id`; `append related.user`.
    let user = s(p, "userId");
    doc.put_str("user.id", user);
    doc.put_str("client.user.id", user);
    doc.relate_user(user);
    doc.put_str("device.id", s(p, "deviceId"));
    // `set cloud.account.id from azure.tenant_id` (envelope tenantId, else properties).
    put_tenant(doc, s(env, "tenantId").or_else(|| s(p, "tenantId")));
}

/// `NetworkAccessTrafficLogs` (Global Secure Access). Accepts camelCase and PascalCase.
fn network_access<'a>(doc: &mut Doc<'a>, p: &'a Value, env: &'a Value) {
    let g = |camel: &str, pascal: &str| s(p, camel).or_else(|| s(p, pascal));
    let gv = |camel: &str, pascal: &str| p.get(camel).or_else(|| p.get(pascal));
    doc.put_string(
        "@timestamp",
        timestamp(env.get("time")).or_else(|| timestamp(gv("createdDateTime", "TimeGenerated"))),
    );
    doc.put_str("event.dataset", Some("azure.network_access_traffic"));
    doc.put_str("event.module", Some(MODULE));
    doc.put_str("cloud.service.name", Some("Global Secure Access"));
    let action = g("action", "Action");
    let denied = action.is_some_and(|a| a.eq_ignore_ascii_case("block") || a.eq_ignore_ascii_case("deny"));
    let allowed = action.is_some_and(|a| a.eq_ignore_ascii_case("allow"));
    doc.put_list("event.category", &["network"]);
    if denied {
        doc.put_list("event.type", &["connection", "denied"]);
    } else if allowed {
        doc.put_list("event.type", &["connection", "allowed"]);
    } else {
        doc.put_list("event.type", &["connection"]);
    }
    doc.put_string("event.action", action.map(str::to_ascii_lowercase));
    doc.put_str("event.id", g("transactionId", "TransactionId"));
    doc.put_ip("source.ip", g("sourceIp", "SourceIp"));
    doc.put_i64("source.port", int(gv("sourcePort", "SourcePort")));
    doc.put_ip("destination.ip", g("destinationIp", "DestinationIp"));
    doc.put_i64("destination.port", int(gv("destinationPort", "DestinationPort")));
    let fqdn = g("destinationFQDN", "DestinationFqdn").or_else(|| s(p, "destinationFqdn"));
    doc.put_str("destination.domain", fqdn);
    doc.relate_host(fqdn);
    doc.put_i64("source.bytes", int(gv("sentBytes", "SentBytes")));
    doc.put_i64("destination.bytes", int(gv("receivedBytes", "ReceivedBytes")));
    doc.put_string(
        "network.transport",
        g("transportProtocol", "TransportProtocol").map(str::to_ascii_lowercase),
    );
    doc.put_string(
        "network.protocol",
        g("networkProtocol", "NetworkProtocol").map(str::to_ascii_lowercase),
    );
    put_user(
        doc,
        "user",
        g("userPrincipalName", "UserPrincipalName"),
        g("userId", "UserId"),
        None,
    );
    doc.put_str("host.id", g("deviceId", "DeviceId"));
    doc.put_str(
        "host.os.platform",
        g("deviceOperatingSystem", "DeviceOperatingSystem")
            .map(|o| o.trim())
            .filter(|o| !o.is_empty()),
    );
    doc.put_str(
        "host.os.version",
        g("deviceOperatingSystemVersion", "DeviceOperatingSystemVersion"),
    );
    doc.put_str("rule.id", g("policyRuleId", "PolicyRuleId"));
    doc.put_str(
        "rule.name",
        g("ruleName", "RuleName").or_else(|| g("policyRuleName", "PolicyRuleName")),
    );
    doc.put_str("rule.ruleset", g("policyName", "PolicyName"));
    put_url(doc, g("destinationUrl", "DestinationUrl"));
    put_tenant(doc, s(env, "tenantId").or_else(|| g("tenantId", "TenantId")));
}

/// `EnrichedOffice365AuditLogs` (Global Secure Access): Office 365 audit records enriched
/// with the network and device of the connection. No Elastic data stream reads them; the
/// fields follow ECS and the o365 audit mapping (`event.action` = Operation, `event.provider`
/// = Workload, `user.id` = UserId). Accepts camelCase and PascalCase properties.
fn enriched_office365<'a>(doc: &mut Doc<'a>, p: &'a Value, env: &'a Value) {
    let g = |camel: &str, pascal: &str| s(p, camel).or_else(|| s(p, pascal));
    let gv = |camel: &str, pascal: &str| p.get(camel).or_else(|| p.get(pascal));
    doc.put_string(
        "@timestamp",
        timestamp(env.get("time"))
            .or_else(|| timestamp(gv("createdDateTime", "CreationTime")))
            .or_else(|| timestamp(gv("timeGenerated", "TimeGenerated"))),
    );
    doc.put_str("event.dataset", Some("azure.enriched_office365_audit"));
    doc.put_str("event.module", Some(MODULE));
    doc.put_str("cloud.service.name", Some("Global Secure Access"));
    doc.put_str(
        "event.action",
        g("operation", "Operation").or_else(|| s(env, "operationName")),
    );
    doc.put_str("event.provider", g("workload", "Workload"));
    doc.put_str("event.id", g("id", "Id"));
    doc.put_str("event.code", g("recordType", "RecordType"));
    doc.put_list("event.category", &["web"]);
    doc.put_list("event.type", &["access"]);
    let user = g("userId", "UserId");
    doc.put_str("user.id", user);
    if let Some(u) = user.filter(|u| u.contains('@')) {
        doc.put_str("user.email", Some(u));
        let (name, domain) = split_upn(u);
        doc.put_str("user.name", Some(name));
        doc.put_str("user.domain", domain);
        doc.relate_user(Some(name));
    }
    doc.relate_user(user);
    let source = g("sourceIp", "SourceIp").or_else(|| g("clientIp", "ClientIp"));
    doc.put_ip("source.ip", source);
    doc.put_i64("source.port", int(gv("sourcePort", "SourcePort")));
    doc.put_ip("destination.ip", g("destinationIp", "DestinationIp"));
    doc.put_i64("destination.port", int(gv("destinationPort", "DestinationPort")));
    doc.put_str("host.id", g("deviceId", "DeviceId"));
    doc.put_str(
        "host.os.platform",
        g("deviceOperatingSystem", "DeviceOperatingSystem")
            .map(str::trim)
            .filter(|o| !o.is_empty()),
    );
    doc.put_str(
        "host.os.version",
        g("deviceOperatingSystemVersion", "DeviceOperatingSystemVersion"),
    );
    doc.put_str("user_agent.original", g("userAgent", "UserAgent"));
    put_tenant(
        doc,
        s(env, "tenantId")
            .or_else(|| g("tenantId", "TenantId"))
            .or_else(|| g("organizationId", "OrganizationId")),
    );
}

/// `RemoteNetworkHealthLogs` (Global Secure Access): health events of a remote network's
/// tunnel and BGP session. No Elastic data stream; ECS network fields. Accepts camelCase and
/// PascalCase properties.
fn remote_network_health<'a>(doc: &mut Doc<'a>, p: &'a Value, env: &'a Value) {
    let g = |camel: &str, pascal: &str| s(p, camel).or_else(|| s(p, pascal));
    let gv = |camel: &str, pascal: &str| p.get(camel).or_else(|| p.get(pascal));
    doc.put_string(
        "@timestamp",
        timestamp(env.get("time"))
            .or_else(|| timestamp(gv("createdDateTime", "CreatedDateTime")))
            .or_else(|| timestamp(gv("timeGenerated", "TimeGenerated"))),
    );
    doc.put_str("event.dataset", Some("azure.remote_network_health"));
    doc.put_str("event.module", Some(MODULE));
    doc.put_str("cloud.service.name", Some("Global Secure Access"));
    doc.put_list("event.category", &["network"]);
    doc.put_list("event.type", &["info"]);
    let status = g("status", "Status");
    doc.put_str("event.action", status.or_else(|| s(env, "operationName")));
    doc.put_str("event.id", g("id", "Id"));
    doc.put_str("message", g("description", "Description"));
    doc.put_str("network.name", g("remoteNetworkId", "RemoteNetworkId"));
    doc.put_ip("source.ip", g("sourceIp", "SourceIp"));
    doc.put_ip("destination.ip", g("destinationIp", "DestinationIp"));
    doc.put_i64("source.bytes", int(gv("sentBytes", "SentBytes")));
    doc.put_i64("destination.bytes", int(gv("receivedBytes", "ReceivedBytes")));
    put_tenant(doc, s(env, "tenantId").or_else(|| g("tenantId", "TenantId")));
}

#[cfg(test)]
mod tests {
    use super::split_upn;

    /// `split_upn` gives what Elastic's grok `%{USERNAME:user.name}@%{HOSTNAME:user.domain}`,
    /// then `%{GREEDYDATA:user.name}`, gives (grok searches, it does not anchor).
    #[test]
    fn upn_split_follows_elastic_grok() {
        let cases: &[(&str, (&str, Option<&str>))] = &[
            ("alex@contoso.example", ("alex", Some("contoso.example"))),
            (
                "first.last-2@sub.example.org",
                ("first.last-2", Some("sub.example.org")),
            ),
            // Guest UPNs: `#` before the `@`, so USERNAME cannot reach it; GREEDYDATA wins.
            (
                "pat_example.org#EXT#@example.onmicrosoft.com",
                ("pat_example.org#EXT#@example.onmicrosoft.com", None),
            ),
            // Unanchored: the USERNAME run just before the `@`.
            ("john.o'neil@example.com", ("neil", Some("example.com"))),
            // HOSTNAME stops at a character it cannot hold; a trailing dot is kept.
            ("a@b_c.example", ("a", Some("b"))),
            ("x@host.", ("x", Some("host."))),
            // Object ids and other non-UPNs are the name whole.
            (
                "c3813493-bf92-5123-2717-8a8b2979c38b",
                ("c3813493-bf92-5123-2717-8a8b2979c38b", None),
            ),
            ("@example.com", ("@example.com", None)),
            ("x@-bad", ("x@-bad", None)),
            ("", ("", None)),
            // The first `@` that fits wins.
            ("a@@b.example", ("a@@b.example", None)),
            ("é@x.example", ("é@x.example", None)),
        ];
        for (upn, want) in cases {
            assert_eq!(split_upn(upn), *want, "{upn}");
        }
    }
}
