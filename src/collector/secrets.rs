//! Secret values, read where [`SecretSource`] says, held in a type that cannot be printed.

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

/// Read one Secret key.
pub fn resolve(source: &SecretSource, selector: &SecretKeySelector) -> Result<SecretValue, SecretError> {
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
    fn missing_environment_secret_names_the_variable() {
        let sel = SecretKeySelector {
            name: "no-such-secret-xyz".into(),
            key: "k".into(),
        };
        let err = resolve(&SecretSource::Environment, &sel).unwrap_err().to_string();
        assert!(err.contains("SIEMBRIDGE_SECRET_NO_SUCH_SECRET_XYZ_K"));
    }
}
