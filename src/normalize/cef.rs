//! ArcSight CEF encoding of ECS documents.
//!
//! `CEF:0|Vendor|Product|Version|SignatureID|Name|Severity|Extension`
//!
//! - Vendor `Microsoft`; Product from `observer.product` (`EntraID`, `Intune`, `DefenderXDR`,
//!   `Office365`); Version the crate version.
//! - SignatureID: `event.code`, else `event.action`, else `rule.id`, else `event.dataset`.
//! - Name: `message`, else `rule.name`, else `event.action`, else `event.dataset`.
//! - Severity (0-10): `event.severity` clamped to 0-10; without one, 5 for alerts and
//!   failures, 3 otherwise.
//! - Header fields escape `\` as `\\` and `|` as `\|`; CR/LF become spaces.
//! - Extension values escape `\` as `\\`, `=` as `\=`, LF as `\n`, CR as `\r`. Lists are
//!   joined with `,`. Keys appear in the order of [`FIELDS`], absent fields are omitted.
//! - The extension is cut to [`CefOptions::max_extension_len`] bytes at a character
//!   boundary and never inside an escape sequence; the pair that overflows is cut, the
//!   following pairs are dropped.

use serde_json::Value;

/// ECS field to CEF extension key (and custom-field label for `csN`), in output order.
pub const FIELDS: &[(&str, &str, Option<&str>)] = &[
    ("@timestamp", "rt", None),
    ("event.id", "externalId", None),
    ("event.action", "act", None),
    ("event.outcome", "outcome", None),
    ("event.dataset", "cat", None),
    ("source.ip", "src", None),
    ("source.port", "spt", None),
    ("destination.ip", "dst", None),
    ("destination.port", "dpt", None),
    ("destination.domain", "dhost", None),
    ("network.transport", "proto", None),
    ("user.name", "suser", None),
    ("user.id", "suid", None),
    ("user.target.name", "duser", None),
    ("user.target.id", "duid", None),
    ("host.name", "dvchost", None),
    ("host.id", "deviceExternalId", None),
    ("url.original", "request", None),
    ("http.request.method", "requestMethod", None),
    ("user_agent.original", "requestClientApplication", None),
    ("file.name", "fname", None),
    ("file.path", "filePath", None),
    ("file.hash.sha256", "fileHash", None),
    ("file.size", "fsize", None),
    ("process.name", "dproc", None),
    ("process.pid", "dpid", None),
    ("process.parent.name", "sproc", None),
    ("process.parent.pid", "spid", None),
    ("event.reason", "reason", None),
    ("rule.name", "cs1", Some("ruleName")),
    ("cloud.account.id", "cs2", Some("tenantId")),
    ("email.subject", "cs3", Some("emailSubject")),
    ("email.from.address", "cs4", Some("emailFrom")),
    ("threat.technique.id", "cs5", Some("mitreTechniques")),
    ("process.command_line", "cs6", Some("commandLine")),
    ("event.risk_score", "cn1", Some("riskScore")),
    ("error.message", "msg", None),
];

/// Settings of the CEF encoder.
#[derive(Clone, Debug)]
pub struct CefOptions {
    /// Device vendor (default `Microsoft`).
    pub vendor: String,
    /// Device product; `None`: `observer.product` of the document.
    pub product: Option<String>,
    /// Device version (default: the crate version).
    pub version: String,
    /// Maximum length of the extension in bytes (default 8000).
    pub max_extension_len: usize,
}

impl Default for CefOptions {
    fn default() -> Self {
        CefOptions {
            vendor: "Microsoft".into(),
            product: None,
            version: env!("CARGO_PKG_VERSION").into(),
            max_extension_len: 8000,
        }
    }
}

/// Encode an ECS document as one CEF line (without a syslog header).
pub fn encode(ecs: &Value, opts: &CefOptions) -> String {
    let product = opts
        .product
        .clone()
        .or_else(|| text(ecs, "observer.product"))
        .unwrap_or_else(|| "Unknown".into());
    let signature = text(ecs, "event.code")
        .or_else(|| text(ecs, "event.action"))
        .or_else(|| text(ecs, "rule.id"))
        .or_else(|| text(ecs, "event.dataset"))
        .unwrap_or_else(|| "unknown".into());
    let name = text(ecs, "message")
        .or_else(|| text(ecs, "rule.name"))
        .or_else(|| text(ecs, "event.action"))
        .or_else(|| text(ecs, "event.dataset"))
        .unwrap_or_else(|| "unknown".into());
    let mut out = String::with_capacity(512);
    out.push_str("CEF:0|");
    for part in [&opts.vendor, &product, &opts.version, &signature, &name] {
        escape_header(&mut out, part);
        out.push('|');
    }
    out.push_str(&severity(ecs).to_string());
    out.push('|');
    let mut ext = String::with_capacity(256);
    let max = opts.max_extension_len;
    'fields: for (path, key, label) in FIELDS {
        let value = if *path == "@timestamp" {
            epoch_millis(ecs)
        } else {
            text(ecs, path)
        };
        let Some(value) = value else { continue };
        let mut pairs: Vec<(String, String)> = Vec::with_capacity(2);
        if let Some(label) = label {
            pairs.push((format!("{key}Label"), (*label).to_string()));
        }
        pairs.push(((*key).to_string(), value));
        for (k, v) in pairs {
            let sep = usize::from(!ext.is_empty());
            if ext.len() + sep + k.len() + 1 >= max {
                break 'fields;
            }
            if sep == 1 {
                ext.push(' ');
            }
            ext.push_str(&k);
            ext.push('=');
            if !push_escaped(&mut ext, &v, max) {
                break 'fields;
            }
        }
    }
    out.push_str(&ext);
    out
}

/// Append `v` escaped for an extension value, stopping before `max` bytes. `false` when cut.
fn push_escaped(ext: &mut String, v: &str, max: usize) -> bool {
    let mut buf = [0u8; 4];
    for ch in v.chars() {
        let piece: &str = match ch {
            '\\' => "\\\\",
            '=' => "\\=",
            '\n' => "\\n",
            '\r' => "\\r",
            c => c.encode_utf8(&mut buf),
        };
        if ext.len() + piece.len() > max {
            return false;
        }
        ext.push_str(piece);
    }
    true
}

fn escape_header(out: &mut String, v: &str) {
    for ch in v.chars() {
        match ch {
            '\\' => out.push_str("\\\\"),
            '|' => out.push_str("\\|"),
            '\n' | '\r' => out.push(' '),
            c => out.push(c),
        }
    }
}

/// CEF severity 0-10, see the module documentation.
pub fn severity(ecs: &Value) -> i64 {
    if let Some(sev) = get(ecs, "event.severity").and_then(Value::as_i64) {
        return sev.clamp(0, 10);
    }
    let alert = get(ecs, "event.kind").and_then(Value::as_str) == Some("alert");
    let failure = get(ecs, "event.outcome").and_then(Value::as_str) == Some("failure");
    if alert || failure {
        5
    } else {
        3
    }
}

/// The value at a dotted path of an ECS document.
pub(crate) fn get<'a>(ecs: &'a Value, path: &str) -> Option<&'a Value> {
    if let Some(v) = ecs.get(path) {
        return Some(v);
    }
    let mut cur = ecs;
    for part in path.split('.') {
        cur = cur.get(part)?;
    }
    Some(cur)
}

/// A scalar or a list of scalars as text (lists joined with `,`).
pub(crate) fn text(ecs: &Value, path: &str) -> Option<String> {
    fn scalar(v: &Value) -> Option<String> {
        match v {
            Value::String(s) if !s.is_empty() => Some(s.clone()),
            Value::Number(n) => Some(n.to_string()),
            Value::Bool(b) => Some(b.to_string()),
            _ => None,
        }
    }
    match get(ecs, path)? {
        Value::Array(list) => {
            let parts: Vec<String> = list.iter().filter_map(scalar).collect();
            if parts.is_empty() {
                None
            } else {
                Some(parts.join(","))
            }
        }
        other => scalar(other),
    }
}

/// `@timestamp` as milliseconds since the epoch.
pub(crate) fn epoch_millis(ecs: &Value) -> Option<String> {
    let t = get(ecs, "@timestamp")?.as_str()?;
    chrono::DateTime::parse_from_rfc3339(t)
        .ok()
        .map(|d| d.timestamp_millis().to_string())
}
