//! Graph objects: Entra audit/sign-in/provisioning/risk objects (same shape as the Entra
//! diagnostic `properties`) and Defender XDR `alert_v2` / `incident`.
//!
//! Vendor detail: Entra objects under the same names as their diagnostic twins
//! (`azure.signinlogs.properties.*`, ...); alerts under `m365_defender.alert.*` and incidents
//! under `m365_defender.incident.*` with snake_case top-level keys.

use serde_json::Value;

use super::common::{int, parse_ip, put_severity, put_techniques, put_tenant, put_url, s, sp, timestamp, Doc};
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

/// An ordered list without duplicates (the pipeline's `append … allow_duplicates: false`).
#[derive(Default)]
struct Set(Vec<Value>);

impl Set {
    fn add(&mut self, v: Option<&str>) {
        if let Some(v) = v.filter(|v| !v.is_empty()) {
            let v = Value::String(v.to_string());
            if !self.0.contains(&v) {
                self.0.push(v);
            }
        }
    }
    fn add_value(&mut self, v: Value) {
        if !self.0.contains(&v) {
            self.0.push(v);
        }
    }
    /// Sorted, as the pipeline's `convertToOrderedArray`.
    fn sorted(mut self) -> Self {
        self.0.sort_by(|a, b| match (a, b) {
            (Value::Number(x), Value::Number(y)) => {
                x.as_f64().partial_cmp(&y.as_f64()).unwrap_or(std::cmp::Ordering::Equal)
            }
            _ => a.to_string().cmp(&b.to_string()),
        });
        self
    }
    fn put<'a>(self, doc: &mut Doc<'a>, path: &'static str) {
        if !self.0.is_empty() {
            doc.put(path, Value::Array(self.0));
        }
    }
}

/// The evidence kind (`#microsoft.graph.security.deviceEvidence` → `deviceEvidence`).
fn evidence_kind(e: &Value) -> &str {
    s(e, "@odata.type").map_or("", |t| t.rsplit('.').next().unwrap_or(""))
}

/// A Graph security alert (`alerts_v2`), mapped as Elastic's `m365_defender.alert` pipeline
/// (`packages/m365_defender/data_stream/alert/elasticsearch/ingest_pipeline/default.yml`);
/// steps named in the comments, differences in `FIELDS.md`.
fn alert<'a>(doc: &mut Doc<'a>, a: &'a Value) {
    // `date json.lastUpdateDateTime` → @timestamp (createdDateTime when there is none).
    doc.put_string(
        "@timestamp",
        timestamp(a.get("lastUpdateDateTime")).or_else(|| timestamp(a.get("createdDateTime"))),
    );
    doc.put_str("event.dataset", Some("m365_defender.alert"));
    doc.put_str("event.module", Some("m365_defender"));
    doc.put_str("cloud.service.name", Some("Microsoft Defender XDR"));
    doc.put_str("event.kind", Some("alert"));
    let evidence: &[Value] = a.get("evidence").and_then(Value::as_array).map_or(&[], Vec::as_slice);
    // Script "map event.category and event.type from evidence": categories per evidence type
    // and determination, types info / access (registry) / indicator (threat); both sorted.
    if a.get("evidence").is_some_and(Value::is_array) {
        let mut cats: Vec<&str> = Vec::new();
        let mut types: Vec<&str> = Vec::new();
        let note = |c: &'static str, cats: &mut Vec<&str>, types: &mut Vec<&str>, with_access: bool| {
            if !cats.contains(&c) {
                cats.push(c);
            }
            let t = if with_access && cats.contains(&"registry") {
                "access"
            } else if cats.contains(&"threat") {
                "indicator"
            } else {
                "info"
            };
            if !types.contains(&t) {
                types.push(t);
            }
        };
        for e in evidence {
            let c = match s(e, "@odata.type") {
                Some(
                    "#microsoft.graph.security.analyzedMessageEvidence"
                    | "#microsoft.graph.security.mailboxEvidence"
                    | "#microsoft.graph.security.mailClusterEvidence",
                ) => "email",
                Some("#microsoft.graph.security.deviceEvidence") => "host",
                Some("#microsoft.graph.security.fileEvidence") => "file",
                Some("#microsoft.graph.security.ipEvidence") => "network",
                Some("#microsoft.graph.security.processEvidence") => "process",
                Some(
                    "#microsoft.graph.security.registryValueEvidence" | "#microsoft.graph.security.registryKeyEvidence",
                ) => "registry",
                Some("#microsoft.graph.security.userEvidence" | "#microsoft.graph.security.securityGroupEvidence") => {
                    "iam"
                }
                _ => continue,
            };
            note(c, &mut cats, &mut types, true);
        }
        if let Some(d) = s(a, "determination") {
            let c = match d.to_ascii_lowercase().as_str() {
                "malware" | "malicioususeractivity" => Some("malware"),
                "phishing" => Some("email"),
                "apt" => Some("threat"),
                _ => None,
            };
            if let Some(c) = c {
                note(c, &mut cats, &mut types, false);
            }
        }
        cats.sort_unstable();
        types.sort_unstable();
        doc.put_list("event.category", &cats);
        doc.put_list("event.type", &types);
    }
    // description → message; tenantId → cloud.account.id; createdDateTime → event.created;
    // lastActivityDateTime → event.end; id → event.id; serviceSource → event.provider.
    doc.put_str("message", s(a, "description"));
    put_tenant(doc, s(a, "tenantId"));
    doc.put_string("event.created", timestamp(a.get("createdDateTime")));
    let end = timestamp(a.get("lastActivityDateTime"));
    let start = timestamp(a.get("firstActivityDateTime"));
    if let (Some(st), Some(en)) = (&start, &end) {
        if let (Ok(st), Ok(en)) = (
            chrono::DateTime::parse_from_rfc3339(st),
            chrono::DateTime::parse_from_rfc3339(en),
        ) {
            doc.put_i64("event.duration", (en - st).num_nanoseconds());
        }
    }
    doc.put_string("event.end", end);
    doc.put_string("event.start", start);
    doc.put_str("event.id", s(a, "id"));
    doc.put_str("event.provider", s(a, "serviceSource"));
    put_severity(doc, s(a, "severity"));
    // alertWebUrl → event.url.
    doc.put_str("event.url", s(a, "alertWebUrl"));
    // assignedTo → related.user and source.user.name.
    let assigned = s(a, "assignedTo");
    doc.relate_user(assigned);
    doc.put_str("source.user.name", assigned);
    // threatFamilyName → threat.group.name; category → threat.tactic.name (a list).
    doc.put_str("threat.group.name", s(a, "threatFamilyName"));
    if let Some(c) = s(a, "category") {
        doc.put("threat.tactic.name", Value::Array(vec![Value::String(c.to_string())]));
    }
    // mitreTechniques: Elastic copies them all to threat.technique.subtechnique.id; here
    // technique ids go to threat.technique.id and sub-technique ids to .subtechnique.id (ECS).
    put_techniques(doc, super::common::technique_ids(a.get("mitreTechniques")));
    // Not in Elastic's pipeline: the title as rule.name, detectorId as rule.id.
    doc.put_str("rule.name", s(a, "title"));
    doc.put_str("rule.id", s(a, "detectorId"));
    doc.put_str("rule.description", s(a, "description"));
    // comments[].createdByDisplayName → related.user.
    if let Some(comments) = a.get("comments").and_then(Value::as_array) {
        for c in comments {
            doc.relate_user(s(c, "createdByDisplayName"));
        }
    }
    evidence_fields(doc, evidence);
}

/// The evidence steps of the pipeline, each over every evidence item in order.
fn evidence_fields<'a>(doc: &mut Doc<'a>, evidence: &'a [Value]) {
    let each = |f: &dyn Fn(&'a Value) -> Option<&'a str>| -> Vec<&'a str> { evidence.iter().filter_map(f).collect() };
    let (mut delivery, mut direction, mut subject, mut to, mut message_id, mut local_id) = (
        Set::default(),
        Set::default(),
        Set::default(),
        Set::default(),
        Set::default(),
        Set::default(),
    );
    for e in evidence {
        if let Some(t) = timestamp(e.get("receivedDateTime")) {
            delivery.add(Some(&t));
        }
        direction.add(s(e, "antiSpamDirection"));
        subject.add(s(e, "subject"));
    }
    for u in each(&|e| s(e, "recipientEmailAddress")) {
        doc.relate_user(Some(u));
        to.add(Some(u));
    }
    for e in evidence {
        message_id.add(s(e, "internetMessageId"));
        local_id.add(s(e, "networkMessageId"));
    }
    let (mut from, mut sender) = (Set::default(), Set::default());
    for e in evidence {
        doc.relate_user(sp(e, &["p1Sender", "displayName"]));
        doc.relate_host(sp(e, &["p1Sender", "domainName"]));
        let p1 = sp(e, &["p1Sender", "emailAddress"]);
        from.add(p1);
        sender.add(p1);
        doc.relate_user(p1);
    }
    for e in evidence {
        doc.relate_user(sp(e, &["p2Sender", "displayName"]));
        doc.relate_host(sp(e, &["p2Sender", "domainName"]));
        let p2 = sp(e, &["p2Sender", "emailAddress"]);
        from.add(p2);
        doc.relate_user(p2);
    }
    let mut source_ip = Set::default();
    for e in evidence {
        if let Some((ip, _)) = s(e, "senderIp").and_then(parse_ip) {
            let text = ip.to_string();
            source_ip.add(Some(&text));
            doc.relate_ip(&text);
        }
    }
    let (mut instance_id, mut instance_name) = (Set::default(), Set::default());
    for e in evidence {
        if let Some(i) = e.get("instanceId") {
            match i {
                Value::String(t) => instance_id.add(Some(t)),
                Value::Number(n) => instance_id.add(Some(&n.to_string())),
                _ => {}
            }
        }
        instance_name.add(s(e, "instanceName"));
    }
    let (mut os_name, mut os_version, mut device_id, mut host_name) =
        (Set::default(), Set::default(), Set::default(), Set::default());
    for h in each(&|e| s(e, "mdeDeviceId")) {
        doc.relate_host(Some(h));
    }
    for p in each(&|e| s(e, "osPlatform")) {
        os_name.add(Some(p));
        doc.relate_host(Some(p));
    }
    for v in each(&|e| s(e, "version")) {
        os_version.add(Some(v));
        doc.relate_host(Some(v));
    }
    for d in each(&|e| s(e, "azureAdDeviceId")) {
        device_id.add(Some(d));
    }
    for d in each(&|e| s(e, "deviceDnsName")) {
        doc.relate_host(Some(d));
        host_name.add(Some(d));
    }
    for e in evidence {
        if let Some(users) = e.get("loggedOnUsers").and_then(Value::as_array) {
            for u in users {
                doc.relate_user(s(u, "accountName"));
            }
        }
    }
    for e in evidence {
        if let Some(users) = e.get("loggedOnUsers").and_then(Value::as_array) {
            for u in users {
                doc.relate_host(s(u, "domainName"));
            }
        }
    }
    let mut action = Set::default();
    for v in each(&|e| s(e, "detectionStatus")) {
        action.add(Some(v));
    }
    let (mut sha1, mut sha256, mut file_name, mut file_path) =
        (Set::default(), Set::default(), Set::default(), Set::default());
    let mut related_hash = Set::default();
    for h in each(&|e| sp(e, &["fileDetails", "sha1"])) {
        sha1.add(Some(h));
        related_hash.add(Some(h));
    }
    for h in each(&|e| sp(e, &["fileDetails", "sha256"])) {
        sha256.add(Some(h));
        related_hash.add(Some(h));
    }
    for v in each(&|e| sp(e, &["fileDetails", "fileName"])) {
        file_name.add(Some(v));
    }
    for v in each(&|e| sp(e, &["fileDetails", "filePath"])) {
        file_path.add(Some(v));
    }
    let mut host_ip = Set::default();
    for e in evidence {
        if let Some((ip, _)) = s(e, "ipAddress").and_then(parse_ip) {
            let text = ip.to_string();
            host_ip.add(Some(&text));
            doc.relate_ip(&text);
        }
    }
    for v in each(&|e| sp(e, &["userAccount", "domainName"])) {
        doc.relate_host(Some(v));
    }
    for v in each(&|e| sp(e, &["userAccount", "azureAdUserId"])) {
        doc.relate_user(Some(v));
    }
    for v in each(&|e| sp(e, &["userAccount", "userPrincipalName"])) {
        doc.relate_user(Some(v));
    }
    for v in each(&|e| sp(e, &["userAccount", "accountName"])) {
        doc.relate_user(Some(v));
    }
    for v in each(&|e| sp(e, &["userAccount", "userSid"])) {
        doc.relate_user(Some(v));
    }
    let mut command_line = Set::default();
    for v in each(&|e| s(e, "processCommandLine")) {
        command_line.add(Some(v));
    }
    let (mut p_sha1, mut p_sha256, mut pp_sha1, mut pp_sha256) =
        (Set::default(), Set::default(), Set::default(), Set::default());
    for h in each(&|e| sp(e, &["imageFile", "sha1"])) {
        p_sha1.add(Some(h));
        related_hash.add(Some(h));
    }
    for h in each(&|e| sp(e, &["imageFile", "sha256"])) {
        p_sha256.add(Some(h));
        related_hash.add(Some(h));
    }
    for h in each(&|e| sp(e, &["parentProcessImageFile", "sha1"])) {
        pp_sha1.add(Some(h));
        related_hash.add(Some(h));
    }
    for h in each(&|e| sp(e, &["parentProcessImageFile", "sha256"])) {
        pp_sha256.add(Some(h));
        related_hash.add(Some(h));
    }
    let (mut parent_start, mut process_start) = (Set::default(), Set::default());
    for e in evidence {
        if let Some(t) = timestamp(e.get("parentProcessCreationDateTime")) {
            parent_start.add(Some(&t));
        }
    }
    for e in evidence {
        if let Some(t) = timestamp(e.get("processCreationDateTime")) {
            process_start.add(Some(&t));
        }
    }
    let mut process_names: Vec<String> = Vec::new();
    for e in evidence {
        if let Some(n) = sp(e, &["imageFile", "fileName"]) {
            if !process_names.iter().any(|x| x == n) {
                process_names.push(n.to_string());
            }
        }
    }
    let (mut hive, mut key, mut data_type, mut value) =
        (Set::default(), Set::default(), Set::default(), Set::default());
    for e in evidence {
        hive.add(s(e, "registryHive"));
        key.add(s(e, "registryKey"));
        data_type.add(s(e, "registryValueType"));
        value.add(s(e, "registryValue"));
    }
    let mut group_id = Set::default();
    for v in each(&|e| s(e, "securityGroupId")) {
        group_id.add(Some(v));
    }
    // Script "map ecs fields based on evidence type" (sorted lists).
    let (mut group_name, mut host_id, mut user_domain, mut user_id, mut user_name, mut user_email) = (
        Set::default(),
        Set::default(),
        Set::default(),
        Set::default(),
        Set::default(),
        Set::default(),
    );
    let (mut proc_user_id, mut proc_user_name) = (Set::default(), Set::default());
    let mut url = None;
    let (mut file_size, mut pid, mut ppid) = (Set::default(), Set::default(), Set::default());
    for e in evidence {
        match evidence_kind(e) {
            "securityGroupEvidence" => group_name.add(s(e, "displayName")),
            "deviceEvidence" => host_id.add(s(e, "mdeDeviceId")),
            "mailboxEvidence" | "userEvidence" => {
                user_domain.add(sp(e, &["userAccount", "domainName"]));
                user_id.add(sp(e, &["userAccount", "azureAdUserId"]));
                user_email.add(sp(e, &["userAccount", "userPrincipalName"]));
                user_name.add(sp(e, &["userAccount", "accountName"]));
            }
            "processEvidence" => {
                proc_user_id.add(sp(e, &["userAccount", "azureAdUserId"]));
                proc_user_name.add(sp(e, &["userAccount", "accountName"]));
                if let Some(p) = int(e.get("processId")) {
                    pid.add_value(Value::from(p));
                }
                if let Some(p) = int(e.get("parentProcessId")) {
                    ppid.add_value(Value::from(p));
                }
            }
            "fileEvidence" => {
                if let Some(sz) = e.get("fileDetails").and_then(|f| int(f.get("fileSize"))) {
                    file_size.add_value(Value::from(sz));
                }
            }
            // Not in Elastic's pipeline: the first URL evidence as url.* (ECS).
            "urlEvidence" if url.is_none() => url = s(e, "url"),
            _ => {}
        }
    }
    // Script "set process.name from process.command_line": image file names plus the first
    // token of each command line (after the last `/`, quotes removed); one name is a string.
    for cmd in command_line.0.iter().filter_map(Value::as_str) {
        if let Some(first) = cmd.trim().split(' ').next().filter(|f| !f.is_empty()) {
            let exe = first.rsplit('/').next().unwrap_or(first).replace('"', "");
            if !process_names.contains(&exe) {
                process_names.push(exe);
            }
        }
    }
    let pid_entity: Vec<Value> = pid.0.iter().map(|p| Value::String(p.to_string())).collect();
    let ppid_entity: Vec<Value> = ppid.0.iter().map(|p| Value::String(p.to_string())).collect();
    delivery.put(doc, "email.delivery_timestamp");
    direction.put(doc, "email.direction");
    subject.put(doc, "email.subject");
    to.put(doc, "email.to.address");
    message_id.put(doc, "email.message_id");
    local_id.put(doc, "email.local_id");
    from.put(doc, "email.from.address");
    sender.put(doc, "email.sender.address");
    source_ip.put(doc, "source.ip");
    instance_id.put(doc, "cloud.instance.id");
    instance_name.put(doc, "cloud.instance.name");
    os_name.put(doc, "host.os.name");
    os_version.put(doc, "host.os.version");
    device_id.put(doc, "device.id");
    // Not in Elastic's pipeline: host.name from deviceDnsName (ECS; CEF dvchost, LEEF identHostName).
    host_name.put(doc, "host.name");
    action.put(doc, "event.action");
    sha1.put(doc, "file.hash.sha1");
    sha256.put(doc, "file.hash.sha256");
    file_name.put(doc, "file.name");
    file_path.put(doc, "file.path");
    host_ip.put(doc, "host.ip");
    command_line.put(doc, "process.command_line");
    p_sha1.put(doc, "process.hash.sha1");
    p_sha256.put(doc, "process.hash.sha256");
    pp_sha1.put(doc, "process.parent.hash.sha1");
    pp_sha256.put(doc, "process.parent.hash.sha256");
    parent_start.put(doc, "process.parent.start");
    process_start.put(doc, "process.start");
    hive.put(doc, "registry.hive");
    key.put(doc, "registry.key");
    data_type.put(doc, "registry.data.type");
    value.put(doc, "registry.value");
    group_id.put(doc, "group.id");
    related_hash.put(doc, "related.hash");
    group_name.sorted().put(doc, "group.name");
    host_id.sorted().put(doc, "host.id");
    user_domain.sorted().put(doc, "user.domain");
    user_id.sorted().put(doc, "user.id");
    user_name.sorted().put(doc, "user.name");
    user_email.sorted().put(doc, "user.email");
    proc_user_id.sorted().put(doc, "process.user.id");
    proc_user_name.sorted().put(doc, "process.user.name");
    file_size.sorted().put(doc, "file.size");
    pid.sorted().put(doc, "process.pid");
    ppid.sorted().put(doc, "process.parent.pid");
    if !pid_entity.is_empty() {
        doc.put("process.entity_id", Value::Array(pid_entity));
    }
    if !ppid_entity.is_empty() {
        doc.put("process.parent.entity_id", Value::Array(ppid_entity));
    }
    match process_names.len() {
        0 => {}
        1 => doc.put_string("process.name", process_names.pop()),
        _ => doc.put(
            "process.name",
            Value::Array(process_names.into_iter().map(Value::String).collect()),
        ),
    }
    put_url(doc, url);
}

/// A Graph security incident, mapped as Elastic's `m365_defender.incident` pipeline
/// (`packages/m365_defender/data_stream/incident/elasticsearch/ingest_pipeline/default.yml`).
/// Elastic's input splits an incident into one document per alert (`alerts` an object); a
/// whole incident (`alerts` a list) takes the alert-level fields from its first alert and the
/// evidence of all its alerts.
fn incident<'a>(doc: &mut Doc<'a>, i: &'a Value) {
    doc.put_str("event.dataset", Some("m365_defender.incident"));
    doc.put_str("event.module", Some("m365_defender"));
    doc.put_str("cloud.service.name", Some("Microsoft Defender XDR"));
    // `set event.kind: alert`; event.category / event.type from determination.
    doc.put_str("event.kind", Some("alert"));
    let determination = s(i, "determination").map(str::to_ascii_lowercase);
    let cat = match determination.as_deref() {
        Some("malware" | "malicioususeractivity") => Some(("malware", "info")),
        Some("phishing") => Some(("email", "info")),
        Some("apt") => Some(("threat", "indicator")),
        _ => None,
    };
    if let Some((c, t)) = cat {
        doc.put_list("event.category", &[c]);
        doc.put_list("event.type", &[t]);
    }
    // lastUpdateDateTime → @timestamp (createdDateTime when there is none); displayName →
    // message; tenantId → cloud.account.id; createdDateTime → event.created; id → event.id.
    doc.put_string(
        "@timestamp",
        timestamp(i.get("lastUpdateDateTime")).or_else(|| timestamp(i.get("createdDateTime"))),
    );
    doc.put_str("message", s(i, "displayName"));
    put_tenant(doc, s(i, "tenantId"));
    doc.put_string("event.created", timestamp(i.get("createdDateTime")));
    doc.put_str("event.id", s(i, "id"));
    let alerts: Vec<&Value> = match i.get("alerts") {
        Some(Value::Array(list)) => list.iter().filter(|a| a.is_object()).collect(),
        Some(a @ Value::Object(_)) => vec![a],
        _ => Vec::new(),
    };
    let first = alerts.first().copied().unwrap_or(&super::common::NULL);
    // alerts.serviceSource → event.provider; severity; incidentWebUrl → event.url.
    doc.put_str("event.provider", s(first, "serviceSource"));
    put_severity(doc, s(i, "severity"));
    doc.put_str("event.url", s(i, "incidentWebUrl"));
    // assignedTo → source.user.name and related.user.
    let assigned = s(i, "assignedTo");
    doc.put_str("source.user.name", assigned);
    doc.relate_user(assigned);
    // alerts.threatFamilyName → threat.group.name; alerts.category → threat.tactic.name;
    // alerts.mitreTechniques → threat.technique.* (ECS split, as for alerts).
    doc.put_str("threat.group.name", s(first, "threatFamilyName"));
    if let Some(c) = s(first, "category") {
        doc.put("threat.tactic.name", Value::Array(vec![Value::String(c.to_string())]));
    }
    put_techniques(doc, super::common::technique_ids(first.get("mitreTechniques")));
    // alerts.comments, then comments (createdByDisplayName, createdBy) → related.user.
    for a in &alerts {
        if let Some(comments) = a.get("comments").and_then(Value::as_array) {
            for c in comments {
                doc.relate_user(s(c, "createdByDisplayName"));
            }
        }
    }
    if let Some(comments) = i.get("comments").and_then(Value::as_array) {
        for c in comments {
            doc.relate_user(s(c, "createdByDisplayName"));
        }
        for c in comments {
            doc.relate_user(s(c, "createdBy"));
        }
    }
    doc.put_str("event.reason", s(i, "classification").filter(|c| *c != "unknown"));
    // The evidence steps (as for alerts) over the evidence of every alert.
    let evidence: Vec<Value> = alerts
        .iter()
        .filter_map(|a| a.get("evidence").and_then(Value::as_array))
        .flatten()
        .cloned()
        .collect();
    if !evidence.is_empty() {
        let mut sub = Doc::new();
        evidence_fields(&mut sub, &evidence);
        let built = sub.finish();
        for (key, value) in built.as_object().into_iter().flatten() {
            if let Value::Object(inner) = value {
                for (k2, v2) in inner {
                    put_nested(doc, key, k2, v2);
                }
            }
        }
    }
}

/// Copy a built sub-document's `key.k2…` subtree into the document, path by path (the
/// related lists merge with what is already related).
fn put_nested<'a>(doc: &mut Doc<'a>, key: &str, k2: &str, v: &Value) {
    let path = format!("{key}.{k2}");
    match (key, v) {
        ("related", Value::Array(list)) => {
            for item in list.iter().filter_map(Value::as_str) {
                match k2 {
                    "user" => doc.relate_user_owned(item),
                    "ip" => doc.relate_ip(item),
                    "hosts" => doc.relate_host_owned(item),
                    _ => {}
                }
            }
            if k2 == "hash" {
                doc.put(path, v.clone());
            }
        }
        (_, Value::Object(inner)) => {
            for (k3, v3) in inner {
                put_nested(doc, key, &format!("{k2}.{k3}"), v3);
            }
        }
        // Elastic lowercases host.name in incidents.
        ("host", Value::Array(list)) if k2 == "name" => doc.put(
            path,
            Value::Array(
                list.iter()
                    .filter_map(Value::as_str)
                    .map(|h| Value::String(h.to_lowercase()))
                    .collect(),
            ),
        ),
        _ => doc.put(path, v.clone()),
    }
}
