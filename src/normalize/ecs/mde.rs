//! Defender for Endpoint API alerts (`GET /api/alerts`, the alert object with `id`,
//! `incidentId`, `alertCreationTime`, `computerDnsName`, `machineId`, `evidence`, ...), mapped
//! as Elastic's `microsoft_defender_endpoint.log` pipeline
//! (`packages/microsoft_defender_endpoint/data_stream/log/elasticsearch/ingest_pipeline/default.yml`)
//! maps them. Elastic's input splits an alert into one document per evidence item (`evidence`
//! is then an object); a whole alert (`evidence` a list) is mapped here as one document whose
//! evidence fields come from the first item of each kind. Differences: `FIELDS.md`.
//!
//! Vendor detail: the alert under `microsoft.defender_endpoint.*` (keys as received, as Elastic).

use serde_json::Value;

use super::common::{int, put_techniques, put_url, s, technique_ids, timestamp, Doc};

/// Map an MDE alert.
pub fn map<'a>(a: &'a Value, doc: &mut Doc<'a>) {
    // `@timestamp` from alertUpdateTime (Elastic); the API's lastUpdateTime, then
    // alertCreationTime, when there is none (Elastic would use the ingest time).
    doc.put_string(
        "@timestamp",
        timestamp(a.get("alertUpdateTime"))
            .or_else(|| timestamp(a.get("lastUpdateTime")))
            .or_else(|| timestamp(a.get("alertCreationTime"))),
    );
    doc.put_str("event.dataset", Some("microsoft_defender_endpoint.log"));
    doc.put_str("event.module", Some("microsoft_defender_endpoint"));
    doc.put_str("cloud.service.name", Some("Microsoft Defender for Endpoint"));
    // `rename aadTenantId → cloud.account.id`, `machineId → cloud.instance.id`, `title → message`.
    doc.put_str("cloud.account.id", s(a, "aadTenantId"));
    doc.put_str("cloud.instance.id", s(a, "machineId"));
    doc.put_str("message", s(a, "title"));
    // `set event.kind: alert`, `event.timezone: UTC`, `event.action` = category,
    // `event.provider: defender_endpoint`, `event.created` = alertCreationTime.
    doc.put_str("event.kind", Some("alert"));
    doc.put_str("event.timezone", Some("UTC"));
    let category = s(a, "category");
    doc.put_str("event.action", category);
    doc.put_str("event.provider", Some("defender_endpoint"));
    doc.put_string("event.created", timestamp(a.get("alertCreationTime")));
    let evidence: Vec<&Value> = match a.get("evidence") {
        Some(Value::Array(list)) => list.iter().filter(|e| e.is_object()).collect(),
        Some(e @ Value::Object(_)) => vec![e],
        _ => Vec::new(),
    };
    let has_entity = |t: &str| evidence.iter().any(|e| s(e, "entityType") == Some(t));
    // `append event.category`: host; malware when category is Malware; process for Process evidence.
    let mut cats = vec!["host"];
    if category == Some("Malware") {
        cats.push("malware");
    }
    if has_entity("Process") {
        cats.push("process");
    }
    doc.put_list("event.category", &cats);
    // `append event.type`: access for User evidence, start when New, end when Resolved.
    let mut types = Vec::new();
    if has_entity("User") {
        types.push("access");
    }
    match s(a, "status") {
        Some("New") => types.push("start"),
        Some("Resolved") => types.push("end"),
        _ => {}
    }
    doc.put_list("event.type", &types);
    // `rename id → event.id`, firstEventTime / lastEventTime → event.start / event.end.
    doc.put_str("event.id", s(a, "id"));
    let start = timestamp(a.get("firstEventTime"));
    let end = timestamp(a.get("lastEventTime"));
    if let (Some(st), Some(en)) = (&start, &end) {
        if let (Ok(st), Ok(en)) = (
            chrono::DateTime::parse_from_rfc3339(st),
            chrono::DateTime::parse_from_rfc3339(en),
        ) {
            doc.put_i64("event.duration", (en - st).num_nanoseconds());
        }
    }
    doc.put_string("event.start", start);
    doc.put_string("event.end", end);
    // event.severity: Unspecified 0, Informational 1, Low 2, Medium 3, High 4.
    let sev = match s(a, "severity") {
        Some("Unspecified") => Some(0),
        Some("Informational") => Some(1),
        Some("Low") => Some(2),
        Some("Medium") => Some(3),
        Some("High") => Some(4),
        _ => None,
    };
    doc.put_i64("event.severity", sev);
    // threat.framework and threat.technique.name = [category]; threat.technique.id from
    // mitreTechniques (not in Elastic's pipeline: ECS technique ids).
    if let Some(c) = category {
        doc.put_str("threat.framework", Some("MITRE ATT&CK"));
        doc.put(
            "threat.technique.name",
            Value::Array(vec![Value::String(c.to_string())]),
        );
    }
    put_techniques(doc, technique_ids(a.get("mitreTechniques")));
    if let Some(d) = s(a, "description").filter(|d| d.len() < 1020) {
        doc.put_str("rule.description", Some(d));
    }
    // Not in Elastic's pipeline: the alert title as rule.name (as the other alert shapes).
    doc.put_str("rule.name", s(a, "title"));
    // File, process, URL, user id and IPs from the evidence.
    let first = |pred: &dyn Fn(&Value) -> bool| evidence.iter().copied().find(|e| pred(e));
    if let Some(f) = first(&|e| s(e, "fileName").is_some() || s(e, "sha1").is_some() || s(e, "sha256").is_some()) {
        doc.put_str("file.name", s(f, "fileName"));
        doc.put_str("file.hash.sha256", s(f, "sha256"));
        doc.put_str("file.hash.sha1", s(f, "sha1"));
        doc.put_str("file.path", s(f, "filePath"));
    }
    if let Some(p) =
        first(&|e| e.get("processId").is_some_and(|v| !v.is_null()) || s(e, "processCommandLine").is_some())
    {
        doc.put_i64("process.pid", int(p.get("processId")));
        doc.put_str("process.command_line", s(p, "processCommandLine"));
        doc.put_string("process.start", timestamp(p.get("processCreationTime")));
        doc.put_i64("process.parent.pid", int(p.get("parentProcessId")));
        doc.put_string("process.parent.start", timestamp(p.get("parentProcessCreationTime")));
    }
    if let Some(u) = first(&|e| s(e, "url").is_some()) {
        // `rename evidence.url → url.full`, uri_parts (url.original, scheme, domain, path, ...).
        doc.put_str("url.full", s(u, "url"));
        put_url(doc, s(u, "url"));
    }
    // observer.name = detectionSource (observer.vendor/product are set for every document).
    doc.put_str("observer.name", s(a, "detectionSource"));
    // host.hostname = computerDnsName; host.name = its lowercase.
    let host = s(a, "computerDnsName");
    doc.put_str("host.hostname", host);
    if let Some(h) = host {
        let lower = h.to_lowercase();
        doc.put_string("host.name", Some(lower.clone()));
        doc.relate_host_owned(&lower);
    }
    // user.name / user.domain from relatedUser; user.id = evidence userSid.
    let related = a.get("relatedUser").filter(|u| u.is_object());
    let user = related.and_then(|u| s(u, "userName"));
    doc.put_str("user.name", user);
    doc.put_str("user.domain", related.and_then(|u| s(u, "domainName")));
    doc.put_str(
        "user.id",
        first(&|e| s(e, "userSid").is_some()).and_then(|e| s(e, "userSid")),
    );
    // related.ip from evidence ipAddress, related.user = user.name, related.hash.
    for e in &evidence {
        if let Some(ip) = s(e, "ipAddress").and_then(super::common::parse_ip) {
            doc.relate_ip(&ip.0.to_string());
        }
    }
    doc.relate_user(user);
    let mut hashes: Vec<Value> = Vec::new();
    if let Some(f) = first(&|e| s(e, "fileName").is_some() || s(e, "sha1").is_some() || s(e, "sha256").is_some()) {
        for h in [s(f, "sha1"), s(f, "sha256")].into_iter().flatten() {
            hashes.push(Value::String(h.to_string()));
        }
    }
    if !hashes.is_empty() {
        doc.put("related.hash", Value::Array(hashes));
    }
    doc.keep("microsoft.defender_endpoint", false, 0);
}
