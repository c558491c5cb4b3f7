//! Secret values, read where [`SecretSource`] says, held in a type that cannot be printed, and
//! the redaction registry that keeps them out of text the process emits.
//!
//! A [`SecretValue`] cannot be printed, but a remote party can hand a secret back: a receiver that
//! echoes the request headers in an error body, a redirect `Location` carrying a SAS token. So
//! every value [`resolve`] loads is registered, with what is derived from it and sent (a Basic
//! credential, an access token, the `sig` of a SAS), and [`redact`] replaces each registered value
//! (raw, percent-encoded and JSON-escaped) by `<redacted>`. It is applied where remote text becomes
//! a reason (destination errors, dead letters, the health report) and to every log line
//! ([`RedactingStderr`]).

use std::borrow::Cow;
use std::collections::VecDeque;
use std::sync::RwLock;

use crate::api::SecretKeySelector;
use crate::config::SecretSource;

/// A secret value. `Debug` prints `<redacted>`; there is no `Display` and no `Serialize`, so it
/// cannot end up in a log line, a report or an error message by accident.
#[derive(Clone, PartialEq, Eq)]
pub struct SecretValue(String);

impl SecretValue {
    /// Wrap a value.
    pub fn new(value: impl Into<String>) -> Self {
        SecretValue(value.into())
    }
    /// The value, for the one place that sends it.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl std::fmt::Debug for SecretValue {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("SecretValue(<redacted>)")
    }
}

/// What a registered value is replaced with.
pub const REDACTED: &str = "<redacted>";

/// Shorter values are not registered: redacting every `ab` in a reason would hide the reason
/// (and a secret that short is not protected by anything).
const MIN_REDACTED_LEN: usize = 6;

/// Rotating values (access tokens) kept; the oldest is forgotten first.
const ROTATING_KEPT: usize = 64;

#[derive(Default)]
struct Registry {
    /// Loaded Secret values and what is built from them once; kept for the life of the process.
    pinned: Vec<String>,
    /// Short-lived values (access tokens), the last [`ROTATING_KEPT`].
    rotating: VecDeque<String>,
}

static REGISTRY: RwLock<Registry> = RwLock::new(Registry {
    pinned: Vec::new(),
    rotating: VecDeque::new(),
});

/// The forms a value may take in text: as is, percent-encoded (query strings, forms) and
/// JSON-escaped (an echo inside a JSON body); the lines of a multi-line value (PEM) on their own.
fn forms(value: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut add = |v: String| {
        if v.len() >= MIN_REDACTED_LEN && !out.contains(&v) {
            out.push(v);
        }
    };
    add(value.to_string());
    add(percent_encoding::utf8_percent_encode(value, percent_encoding::NON_ALPHANUMERIC).to_string());
    add(form_encode(value));
    if let Ok(json) = serde_json::to_string(value) {
        add(json.trim_matches('"').to_string());
    }
    if value.contains('\n') {
        for line in value.lines().map(str::trim) {
            if line.len() >= 16 && !line.starts_with("-----") {
                add(line.to_string());
            }
        }
    }
    out
}

/// `application/x-www-form-urlencoded` form of a value (what a token request body carries).
fn form_encode(value: &str) -> String {
    const FORM: &percent_encoding::AsciiSet = &percent_encoding::NON_ALPHANUMERIC
        .remove(b'*')
        .remove(b'-')
        .remove(b'.')
        .remove(b'_')
        .remove(b' ');
    percent_encoding::utf8_percent_encode(value, FORM)
        .to_string()
        .replace(' ', "+")
}

/// Register a long-lived secret value (a loaded Secret key, or a credential built from one) so
/// that [`redact`] removes it from any text.
pub fn register(value: &str) {
    let new = forms(value);
    let mut r = REGISTRY.write().unwrap_or_else(|p| p.into_inner());
    for v in new {
        if !r.pinned.contains(&v) {
            r.pinned.push(v);
        }
    }
    // Longest first, so that a value containing another is replaced whole.
    r.pinned.sort_by_key(|v| std::cmp::Reverse(v.len()));
}

/// Register a short-lived secret (an access token); the last [`ROTATING_KEPT`] are kept.
pub fn register_rotating(value: &str) {
    let new = forms(value);
    let mut r = REGISTRY.write().unwrap_or_else(|p| p.into_inner());
    for v in new {
        if r.rotating.contains(&v) {
            continue;
        }
        if r.rotating.len() >= ROTATING_KEPT {
            r.rotating.pop_front();
        }
        r.rotating.push_back(v);
    }
}

/// `text` with every registered secret value replaced by [`REDACTED`].
pub fn redact(text: &str) -> Cow<'_, str> {
    let r = REGISTRY.read().unwrap_or_else(|p| p.into_inner());
    let mut out = Cow::Borrowed(text);
    for v in r.pinned.iter().chain(r.rotating.iter()) {
        if out.contains(v.as_str()) {
            out = Cow::Owned(out.replace(v.as_str(), REDACTED));
        }
    }
    out
}

/// [`redact`] into an owned string, for reasons built from remote text.
pub fn redacted(text: impl AsRef<str>) -> String {
    redact(text.as_ref()).into_owned()
}

/// Standard error with [`redact`] applied to each write: the log writer of the process, so a
/// secret handed back by a remote party never reaches a log line. The log formatter writes one
/// whole line per event, so a value is never split across two writes.
#[derive(Clone, Copy, Debug, Default)]
pub struct RedactingStderr;

impl std::io::Write for RedactingStderr {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        let text = String::from_utf8_lossy(buf);
        std::io::stderr().write_all(redact(&text).as_bytes())?;
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        std::io::stderr().flush()
    }
}

impl<'a> tracing_subscriber::fmt::MakeWriter<'a> for RedactingStderr {
    type Writer = RedactingStderr;
    fn make_writer(&'a self) -> Self::Writer {
        RedactingStderr
    }
}

/// Why a Secret key could not be read. Names the key, never the value.
#[derive(Debug, thiserror::Error)]
pub enum SecretError {
    #[error("secret {name}/{key}: file {path} could not be read: {source}")]
    File {
        name: String,
        key: String,
        path: String,
        #[source]
        source: std::io::Error,
    },
    #[error("secret {name}/{key}: environment variable {var} is not set")]
    MissingEnv { name: String, key: String, var: String },
}

/// Read one Secret key and register its value for [`redact`].
pub fn resolve(source: &SecretSource, selector: &SecretKeySelector) -> Result<SecretValue, SecretError> {
    let value = read(source, selector)?;
    register(value.expose());
    Ok(value)
}

fn read(source: &SecretSource, selector: &SecretKeySelector) -> Result<SecretValue, SecretError> {
    match source {
        SecretSource::Mounted { dir } => {
            let path = std::path::Path::new(dir).join(&selector.name).join(&selector.key);
            std::fs::read_to_string(&path)
                .map(|v| SecretValue(v.trim_end_matches(['\n', '\r']).to_string()))
                .map_err(|source| SecretError::File {
                    name: selector.name.clone(),
                    key: selector.key.clone(),
                    path: path.display().to_string(),
                    source,
                })
        }
        SecretSource::Environment => {
            let var = SecretSource::env_var_name(selector);
            std::env::var(&var)
                .map(SecretValue)
                .map_err(|_| SecretError::MissingEnv {
                    name: selector.name.clone(),
                    key: selector.key.clone(),
                    var,
                })
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secret_value_is_redacted_in_debug() {
        let s = SecretValue::new("hunter2");
        assert!(!format!("{s:?}").contains("hunter2"));
        assert_eq!(s.expose(), "hunter2");
    }

    #[test]
    fn mounted_secret_is_read_from_dir_name_key() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(dir.path().join("hec")).unwrap();
        std::fs::write(dir.path().join("hec/token"), "abc\n").unwrap();
        let src = SecretSource::Mounted {
            dir: dir.path().display().to_string(),
        };
        let sel = SecretKeySelector {
            name: "hec".into(),
            key: "token".into(),
        };
        assert_eq!(resolve(&src, &sel).unwrap().expose(), "abc");
        let missing = SecretKeySelector {
            name: "hec".into(),
            key: "nope".into(),
        };
        let err = resolve(&src, &missing).unwrap_err().to_string();
        assert!(err.contains("hec/nope"));
    }

    #[test]
    fn loaded_values_are_redacted_raw_encoded_and_escaped() {
        std::env::set_var("SIEMBRIDGE_SECRET_REDACT_UNIT_KEY", "k3y/with+sp ecial\"chars");
        let sel = SecretKeySelector {
            name: "redact-unit".into(),
            key: "key".into(),
        };
        let v = resolve(&SecretSource::Environment, &sel).unwrap();
        let text = format!(
            "echo: x-api-key: {} q=k3y%2Fwith%2Bsp%20ecial%22chars f=k3y%2Fwith%2Bsp+ecial%22chars j={}",
            v.expose(),
            serde_json::to_string(v.expose()).unwrap()
        );
        let out = redact(&text);
        assert!(!out.contains("k3y"), "{out}");
        assert_eq!(out.matches(REDACTED).count(), 4, "{out}");
        assert_eq!(redact("nothing secret here"), "nothing secret here");
    }

    #[test]
    fn rotating_values_are_redacted_and_bounded() {
        for i in 0..(ROTATING_KEPT + 5) {
            register_rotating(&format!("rotating-token-{i:04}"));
        }
        assert_eq!(redact("rotating-token-0000"), "rotating-token-0000");
        assert_eq!(
            redact(&format!("t=rotating-token-{:04}", ROTATING_KEPT + 4)),
            "t=<redacted>"
        );
        register("ab");
        assert_eq!(redact("ab"), "ab", "too short to register");
    }

    #[test]
    fn missing_environment_secret_names_the_variable() {
        let sel = SecretKeySelector {
            name: "no-such-secret-xyz".into(),
            key: "k".into(),
        };
        let err = resolve(&SecretSource::Environment, &sel).unwrap_err().to_string();
        assert!(err.contains("SIEMBRIDGE_SECRET_NO_SUCH_SECRET_XYZ_K"));
    }
}
