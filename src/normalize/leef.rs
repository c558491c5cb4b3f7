//! IBM QRadar LEEF 2.0 encoding of ECS documents.
//!
//! `LEEF:2.0|Vendor|Product|Version|EventID|Delimiter|key=value<delim>key=value...`
//!
//! - Vendor `Microsoft`; Product from `observer.product`; Version the crate version.
//! - EventID (what QRadar maps to a QID) tells category, activity and outcome apart:
//!   `<category>:<activity>:<result>`, see [`event_id`]; at most 255 characters.
//! - Delimiter: configurable, default `^`. In the header it is written as the character when
//!   it is printable ASCII, else as hex (`x09` for tab).
//! - Header fields: `|` is escaped as `\|`, CR/LF become spaces.
//! - Values: LEEF has no escape for the delimiter, so **the delimiter is replaced by a
//!   space**, and CR/LF/tab (when not the delimiter) by a space too (one event per line).
//!   `=` is left as is (QRadar splits a pair at its first `=`). Lists are joined with `,`.
//! - `devTime` is `@timestamp` as `yyyy-MM-dd'T'HH:mm:ss.SSSZ` (e.g.
//!   `2025-01-01T10:03:19.000+0000`), announced with `devTimeFormat`.
//! - `sev` is 1-10: `event.severity` clamped, else 5 for alerts and failures, 3 otherwise.
//! - `identSrc` (the IP QRadar maps identities to) is written for authentication events.
//! - The attributes are cut to [`LeefOptions::max_attributes_len`] bytes at a character
//!   boundary; the pair that overflows is cut, the following pairs are dropped.

use serde_json::Value;

use super::cef::{get, severity, text};

/// ECS field to LEEF key, in output order (after `devTime`, `devTimeFormat`, `sev`).
pub const FIELDS: &[(&str, &str)] = &[
    ("event.dataset", "cat"),
    ("source.ip", "src"),
    ("source.port", "srcPort"),
    ("destination.ip", "dst"),
    ("destination.port", "dstPort"),
    ("network.transport", "proto"),
    ("user.name", "usrName"),
    ("user.domain", "domain"),
    ("event.id", "externalId"),
    ("event.action", "action"),
    ("event.outcome", "outcome"),
    ("user.id", "userId"),
    ("user.target.name", "targetUser"),
    ("host.name", "identHostName"),
    ("host.id", "deviceId"),
    ("url.original", "url"),
    ("user_agent.original", "userAgent"),
    ("file.name", "fileName"),
    ("file.path", "filePath"),
    ("file.hash.sha256", "fileHash"),
    ("process.name", "processName"),
    ("process.command_line", "commandLine"),
    ("rule.name", "policy"),
    ("email.subject", "emailSubject"),
    ("email.from.address", "emailFrom"),
    ("email.to.address", "emailTo"),
    ("threat.technique.id", "mitreTechniques"),
    ("cloud.account.id", "tenantId"),
    ("event.reason", "reason"),
    ("error.message", "errorMessage"),
    ("message", "msg"),
];

/// Settings of the LEEF encoder.
#[derive(Clone, Debug)]
pub struct LeefOptions {
    /// Device vendor (default `Microsoft`).
    pub vendor: String,
    /// Device product; `None`: `observer.product` of the document.
    pub product: Option<String>,
    /// Device version (default: the crate version).
    pub version: String,
    /// Attribute delimiter (default `^`; tab is the other usual choice).
    pub delimiter: char,
    /// Maximum length of the attributes in bytes (default 8000).
    pub max_attributes_len: usize,
}

impl Default for LeefOptions {
    fn default() -> Self {
        LeefOptions {
            vendor: "Microsoft".into(),
            product: None,
            version: env!("CARGO_PKG_VERSION").into(),
            delimiter: '^',
            max_attributes_len: 8000,
        }
    }
}

/// Encode an ECS document as one LEEF 2.0 line (without a syslog header).
pub fn encode(ecs: &Value, opts: &LeefOptions) -> String {
    let product = opts
        .product
        .clone()
        .or_else(|| text(ecs, "observer.product"))
        .unwrap_or_else(|| "Unknown".into());
    let event_id = event_id(ecs);
    let d = opts.delimiter;
    let mut out = String::with_capacity(512);
    out.push_str("LEEF:2.0|");
    for part in [&opts.vendor, &product, &opts.version, &event_id] {
        for ch in part.chars() {
            match ch {
                '|' => out.push_str("\\|"),
                '\n' | '\r' => out.push(' '),
                c => out.push(c),
            }
        }
        out.push('|');
    }
    if d.is_ascii_graphic() && d != '|' {
        out.push(d);
    } else {
        out.push_str(&format!("x{:02X}", d as u32));
    }
    out.push('|');

    let mut pairs: Vec<(&str, String)> = Vec::with_capacity(FIELDS.len() + 4);
    if let Some(t) = dev_time(ecs) {
        pairs.push(("devTime", t));
        pairs.push(("devTimeFormat", "yyyy-MM-dd'T'HH:mm:ss.SSSZ".into()));
    }
    pairs.push(("sev", severity(ecs).clamp(1, 10).to_string()));
    let authentication = get(ecs, "event.category")
        .and_then(Value::as_array)
        .is_some_and(|c| c.iter().any(|x| x.as_str() == Some("authentication")));
    for (path, key) in FIELDS {
        if let Some(v) = text(ecs, path) {
            pairs.push((key, v.clone()));
            if *key == "src" && authentication {
                pairs.push(("identSrc", v));
            }
        }
    }
    let max = opts.max_attributes_len;
    let mut attrs = String::with_capacity(256);
    let mut dbuf = [0u8; 4];
    let dstr: &str = d.encode_utf8(&mut dbuf);
    'pairs: for (key, value) in pairs {
        let sep = if attrs.is_empty() { 0 } else { dstr.len() };
        if attrs.len() + sep + key.len() + 1 >= max {
            break;
        }
        if sep > 0 {
            attrs.push_str(dstr);
        }
        attrs.push_str(key);
        attrs.push('=');
        for ch in value.chars() {
            let c = if ch == d || ch == '\n' || ch == '\r' || ch == '\t' {
                ' '
            } else {
                ch
            };
            if attrs.len() + c.len_utf8() > max {
                break 'pairs;
            }
            attrs.push(c);
        }
    }
    out.push_str(&attrs);
    out
}

/// Longest EventID written, in characters.
const MAX_EVENT_ID: usize = 255;

/// The LEEF EventID of an ECS document: `<category>:<activity>:<result>`, parts absent from the
/// document left out, so that QRadar's QID map can tell a failed sign-in from a successful one
/// and an interactive sign-in from a non-interactive one.
/// - category: the record's category as the document keeps it (`<event.dataset>.category`, e.g.
///   `azure.signinlogs.category` = `NonInteractiveUserSignInLogs`), else `event.code` (the
///   Office 365 RecordType name, the Defender table) when it is not the activity itself;
/// - activity: `event.action`, else `rule.id`, else `event.code`, else `event.dataset`, else
///   `unknown`;
/// - result: `error.code` (Entra's error code of a failed sign-in, e.g. `50126`), else
///   `event.outcome` (`success`, `failure`, `unknown`).
///
/// E.g. `SignInLogs:Sign-in activity:50126`, `SignInLogs:Sign-in activity:success`,
/// `ExchangeAdmin:New-InboxRule:success`.
pub fn event_id(ecs: &Value) -> String {
    let activity = text(ecs, "event.action")
        .or_else(|| text(ecs, "rule.id"))
        .or_else(|| text(ecs, "event.code"))
        .or_else(|| text(ecs, "event.dataset"))
        .unwrap_or_else(|| "unknown".into());
    let category = text(ecs, "event.dataset")
        .and_then(|d| text(ecs, &format!("{d}.category")))
        .or_else(|| text(ecs, "event.code").filter(|c| *c != activity));
    let result = text(ecs, "error.code").or_else(|| text(ecs, "event.outcome"));
    let mut id = String::with_capacity(64);
    for part in [category, Some(activity), result].into_iter().flatten() {
        if !id.is_empty() {
            id.push(':');
        }
        id.push_str(&part);
    }
    match id.char_indices().nth(MAX_EVENT_ID) {
        Some((cut, _)) => id[..cut].to_string(),
        None => id,
    }
}

/// `@timestamp` as `yyyy-MM-dd'T'HH:mm:ss.SSSZ`.
fn dev_time(ecs: &Value) -> Option<String> {
    let t = get(ecs, "@timestamp")?.as_str()?;
    chrono::DateTime::parse_from_rfc3339(t).ok().map(|d| {
        d.with_timezone(&chrono::Utc)
            .format("%Y-%m-%dT%H:%M:%S%.3f+0000")
            .to_string()
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn event_ids_tell_category_activity_and_outcome_apart() {
        let sign_in = |category: &str, code: Option<&str>, outcome: &str| {
            let mut d = json!({"event": {"action": "Sign-in activity", "dataset": "azure.signinlogs", "outcome": outcome},
                               "azure": {"signinlogs": {"category": category}}});
            if let Some(c) = code {
                d["error"] = json!({"code": c});
            }
            event_id(&d)
        };
        let ok = sign_in("SignInLogs", None, "success");
        let failed = sign_in("SignInLogs", Some("50126"), "failure");
        let other_failure = sign_in("SignInLogs", Some("50053"), "failure");
        let non_interactive = sign_in("NonInteractiveUserSignInLogs", None, "success");
        assert_eq!(ok, "SignInLogs:Sign-in activity:success");
        assert_eq!(failed, "SignInLogs:Sign-in activity:50126");
        let all = [&ok, &failed, &other_failure, &non_interactive];
        for (i, a) in all.iter().enumerate() {
            for b in &all[i + 1..] {
                assert_ne!(a, b);
            }
        }
        let o365 = json!({"event": {"action": "New-InboxRule", "code": "ExchangeAdmin", "outcome": "success", "dataset": "o365.audit"}});
        assert_eq!(event_id(&o365), "ExchangeAdmin:New-InboxRule:success");
        assert_eq!(event_id(&json!({"event": {"dataset": "x.y"}})), "x.y");
        assert_eq!(event_id(&json!({})), "unknown");
        let long = json!({"event": {"action": "a".repeat(400)}});
        assert_eq!(event_id(&long).chars().count(), 255);
        let line = encode(&o365, &LeefOptions::default());
        assert!(line.contains("|ExchangeAdmin:New-InboxRule:success|^|"), "{line}");
    }
}
