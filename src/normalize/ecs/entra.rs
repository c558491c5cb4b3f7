//! Entra ID diagnostic records (and the Graph objects that share their `properties` shape).
//!
//! Vendor detail is kept as Elastic's Azure integration names it: envelope fields under
//! `azure.<dataset>.*` (snake_case), the payload under `azure.<dataset>.properties.*` with
//! snake_case keys.

use serde_json::Value;

use super::common::{
    change_type, duration_ns, int, join, outcome_word, put_entra_geo, put_severity, put_tenant, put_url, put_user, s,
    s_any, sp, timestamp, Doc,
};

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
        "AuditLogs" => {
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

/// The result code of an Entra record: `resultType` (string, sometimes a number) else
/// `properties.status.errorCode`.
fn result_code(env: Option<&Value>, p: &Value) -> Option<String> {
    let from_env = env.and_then(|e| match e.get("resultType") {
        Some(Value::String(t)) if !t.is_empty() => Some(t.clone()),
        Some(Value::Number(n)) => Some(n.to_string()),
        _ => None,
    });
    from_env.or_else(|| match p.get("status").and_then(|st| st.get("errorCode")) {
        Some(Value::Number(n)) => Some(n.to_string()),
        Some(Value::String(t)) if !t.is_empty() => Some(t.clone()),
        _ => None,
    })
}

/// Sign-ins of every kind (interactive, non-interactive, service principal, managed
/// identity, AD FS). `category` is the diagnostic category or the Graph kind.
pub fn sign_in<'a>(doc: &mut Doc<'a>, p: &'a Value, env: Option<&'a Value>, category: &'a str) {
    doc.put_string(
        "@timestamp",
        env.and_then(|e| timestamp(e.get("time")))
            .or_else(|| timestamp(p.get("createdDateTime"))),
    );
    doc.put_str("event.dataset", Some("azure.signinlogs"));
    doc.put_str("event.module", Some(MODULE));
    doc.put_str("cloud.service.name", Some(SERVICE));
    doc.put_list("event.category", &["authentication"]);
    doc.put_list("event.type", &["start"]);
    doc.put_str(
        "event.action",
        env.and_then(|e| s(e, "operationName")).or(Some("Sign-in activity")),
    );
    doc.put_str("event.id", s(p, "id"));
    let code = result_code(env, p);
    if let Some(code) = code.as_deref() {
        let ok = code == "0";
        doc.put_str("event.outcome", Some(if ok { "success" } else { "failure" }));
        if !ok {
            doc.put_string("error.code", Some(code.to_string()));
            doc.put_str(
                "error.message",
                sp(p, &["status", "failureReason"]).or_else(|| env.and_then(|e| s(e, "resultDescription"))),
            );
        }
    }
    doc.put_i64("event.duration", env.and_then(|e| duration_ns(e.get("durationMs"))));
    let service = matches!(category, "ServicePrincipalSignInLogs" | "ManagedIdentitySignInLogs")
        || (s(p, "userPrincipalName").is_none() && s(p, "servicePrincipalId").is_some());
    if service {
        put_user(
            doc,
            "user",
            s_any(p, &["servicePrincipalName", "appDisplayName"]),
            s(p, "servicePrincipalId"),
            None,
        );
    } else {
        put_user(
            doc,
            "user",
            s(p, "userPrincipalName"),
            s(p, "userId"),
            s(p, "userDisplayName"),
        );
    }
    let ip = s(p, "ipAddress").or_else(|| env.and_then(|e| s(e, "callerIpAddress")));
    doc.put_ip("source.ip", ip);
    put_entra_geo(doc, p.get("location"));
    doc.put_i64("source.as.number", int(p.get("autonomousSystemNumber")));
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

/// Directory audits (`AuditLogs` from `microsoft.aadiam`, Graph `directoryAudit`).
pub fn directory_audit<'a>(doc: &mut Doc<'a>, p: &'a Value, env: Option<&'a Value>) {
    doc.put_string(
        "@timestamp",
        env.and_then(|e| timestamp(e.get("time")))
            .or_else(|| timestamp(p.get("activityDateTime"))),
    );
    doc.put_str("event.dataset", Some("azure.auditlogs"));
    doc.put_str("event.module", Some(MODULE));
    doc.put_str("cloud.service.name", Some(SERVICE));
    doc.put_str("event.id", s(p, "id"));
    let action = env
        .and_then(|e| s(e, "operationName"))
        .or_else(|| s(p, "activityDisplayName"));
    doc.put_str("event.action", action);
    doc.put_str("event.provider", s(p, "loggedByService"));
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
    if let Some(result) = s(p, "result").or_else(|| env.and_then(|e| s(e, "resultSignature"))) {
        doc.put_str("event.outcome", outcome_word(result).or(Some("unknown")));
    }
    doc.put_str("event.reason", s(p, "resultReason"));
    if let Some(user) = p
        .get("initiatedBy")
        .and_then(|i| i.get("user"))
        .filter(|u| u.is_object())
    {
        put_user(
            doc,
            "user",
            s(user, "userPrincipalName"),
            s(user, "id"),
            s(user, "displayName"),
        );
        doc.put_ip("source.ip", s(user, "ipAddress"));
    } else if let Some(app) = p
        .get("initiatedBy")
        .and_then(|i| i.get("app"))
        .filter(|u| u.is_object())
    {
        put_user(
            doc,
            "user",
            s_any(app, &["servicePrincipalName", "displayName"]),
            s(app, "servicePrincipalId"),
            None,
        );
    }
    if let Some(targets) = targets {
        if let Some(t) = targets
            .iter()
            .find(|t| s(t, "type").is_some_and(|x| x.eq_ignore_ascii_case("user")))
        {
            put_user(
                doc,
                "user.target",
                s_any(t, &["userPrincipalName", "displayName"]),
                s(t, "id"),
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
    let status = sp(p, &["provisioningStatusInfo", "status"]);
    doc.put_str("event.outcome", status.map(|st| outcome_word(st).unwrap_or("unknown")));
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
        put_user(doc, "user.target", s(t, "displayName"), s(t, "id"), None);
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
    doc.put_str(
        "event.action",
        env.and_then(|e| s(e, "operationName")).or(Some("Risky user")),
    );
    doc.put_str("event.id", s(p, "id"));
    doc.put_str("event.reason", s(p, "riskDetail").filter(|d| *d != "none"));
    put_risk_level(doc, p);
    put_user(
        doc,
        "user",
        s(p, "userPrincipalName"),
        s(p, "id"),
        s(p, "userDisplayName"),
    );
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
    put_user(doc, "user", s(p, "displayName"), s(p, "id"), None);
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
    doc.put_str("event.action", s(p, "riskEventType"));
    doc.put_str("event.id", s(p, "id"));
    doc.put_str("event.reason", s(p, "riskDetail").filter(|d| *d != "none"));
    doc.put_string("event.start", timestamp(p.get("activityDateTime")));
    put_risk_level(doc, p);
    doc.put_str("rule.name", s(p, "riskEventType"));
    if service_principal {
        put_user(
            doc,
            "user",
            s(p, "servicePrincipalDisplayName"),
            s(p, "servicePrincipalId"),
            None,
        );
        if let Some(ips) = p.get("ipAddresses").and_then(Value::as_array) {
            if let Some(first) = ips.iter().find_map(Value::as_str) {
                doc.put_ip("source.ip", Some(first));
            }
            for ip in ips.iter().filter_map(Value::as_str) {
                if let Some((ip, _)) = super::common::parse_ip(ip) {
                    doc.relate_ip(&ip.to_string());
                }
            }
        }
    } else {
        put_user(
            doc,
            "user",
            s(p, "userPrincipalName"),
            s(p, "userId"),
            s(p, "userDisplayName"),
        );
        doc.put_ip("source.ip", s(p, "ipAddress"));
    }
    put_entra_geo(doc, p.get("location"));
    if env.is_none() {
        put_tenant(doc, s(p, "tenantId"));
    }
}

/// `MicrosoftGraphActivityLogs`: one record per Graph HTTP request.
fn graph_activity<'a>(doc: &mut Doc<'a>, p: &'a Value, env: &'a Value) {
    doc.put_string(
        "@timestamp",
        timestamp(env.get("time")).or_else(|| timestamp(p.get("timeGenerated"))),
    );
    doc.put_str("event.dataset", Some("azure.graphactivitylogs"));
    doc.put_str("event.module", Some(MODULE));
    doc.put_str("cloud.service.name", Some("Microsoft Graph"));
    doc.put_list("event.category", &["web"]);
    doc.put_list("event.type", &["access"]);
    doc.put_str(
        "event.action",
        s(env, "operationName").or(Some("Microsoft Graph Activity")),
    );
    doc.put_str("event.id", s_any(p, &["requestId", "operationId"]));
    doc.put_i64(
        "event.duration",
        duration_ns(p.get("durationMs")).or_else(|| duration_ns(env.get("durationMs"))),
    );
    doc.put_str("http.request.method", s(p, "requestMethod"));
    doc.put_str("http.request.id", s(p, "clientRequestId"));
    let status = int(p.get("responseStatusCode"));
    doc.put_i64("http.response.status_code", status);
    doc.put_i64("http.response.bytes", int(p.get("responseSizeBytes")));
    if let Some(st) = status {
        doc.put_str("event.outcome", Some(if st < 400 { "success" } else { "failure" }));
    }
    put_url(doc, s(p, "requestUri"));
    doc.put_ip("source.ip", s(p, "ipAddress"));
    doc.put_str("user_agent.original", s(p, "userAgent"));
    doc.put_str("user.id", s(p, "userId"));
    doc.put_str("device.id", s(p, "deviceId"));
    doc.put_str("client.user.id", s(p, "servicePrincipalId"));
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
