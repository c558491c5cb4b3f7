//! Entra ID app-only access tokens: the OAuth 2.0 client-credentials grant of the Microsoft
//! identity platform v2.0 (docs/PROTOCOLS.md section 1), with a per-scope cache refreshed before expiry.
//!
//! Written on `reqwest` rather than `azure_identity` because the latter refuses a non-https
//! authority, so it cannot be pointed at a local token endpoint in tests.
//!
//! The client never follows a redirect (a 307 would post the client secret wherever it points):
//! a 3xx is a transient failure naming the `Location`; `Retry-After` is honoured up to
//! [`http_client::MAX_RETRY_AFTER`](crate::collector::destinations::http_client::MAX_RETRY_AFTER)
//! and the API clients cut it to their longest backoff. Tokens received are registered for
//! redaction ([`secrets::redact`]).
//!
//! One [`TokenProvider`] serves every audience of one app (Graph, Management API, Event Hubs,
//! Azure Monitor); each scope has its own cached token and at most one request in flight.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde::Deserialize;

use crate::api::{Cloud, EntraCredentials};
use crate::collector::secrets::{self, SecretError, SecretValue};
use crate::config::SecretSource;

/// Hosts of one Microsoft cloud (docs/PROTOCOLS.md section 1, national clouds table).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct CloudEndpoints {
    /// Entra token authority, `https://login.microsoftonline.com`.
    pub login: &'static str,
    /// Microsoft Graph root; its scope is `<root>/.default`.
    pub graph: &'static str,
    /// Office 365 Management Activity API root.
    pub management: &'static str,
    /// Azure Monitor (Logs Ingestion API) token audience.
    pub monitor: &'static str,
    /// Azure Storage token audience.
    pub storage: &'static str,
    /// Event Hubs token audience.
    pub eventhubs: &'static str,
}

impl CloudEndpoints {
    /// The endpoints of `cloud`.
    pub fn of(cloud: Cloud) -> Self {
        match cloud {
            Cloud::Commercial => CloudEndpoints {
                login: "https://login.microsoftonline.com",
                graph: "https://graph.microsoft.com",
                management: "https://manage.office.com",
                monitor: "https://monitor.azure.com",
                storage: "https://storage.azure.com",
                eventhubs: "https://eventhubs.azure.net",
            },
            Cloud::Gcc => CloudEndpoints {
                login: "https://login.microsoftonline.com",
                graph: "https://graph.microsoft.com",
                management: "https://manage-gcc.office.com",
                monitor: "https://monitor.azure.com",
                storage: "https://storage.azure.com",
                eventhubs: "https://eventhubs.azure.net",
            },
            Cloud::GccHigh => CloudEndpoints {
                login: "https://login.microsoftonline.us",
                graph: "https://graph.microsoft.us",
                management: "https://manage.office365.us",
                monitor: "https://monitor.azure.us",
                storage: "https://storage.azure.com",
                eventhubs: "https://eventhubs.azure.net",
            },
            Cloud::Dod => CloudEndpoints {
                login: "https://login.microsoftonline.us",
                graph: "https://dod-graph.microsoft.us",
                management: "https://manage.protection.apps.mil",
                monitor: "https://monitor.azure.us",
                storage: "https://storage.azure.com",
                eventhubs: "https://eventhubs.azure.net",
            },
            Cloud::China => CloudEndpoints {
                login: "https://login.chinacloudapi.cn",
                graph: "https://microsoftgraph.chinacloudapi.cn",
                management: "https://manage.office.cn",
                monitor: "https://monitor.azure.cn",
                storage: "https://storage.azure.com",
                eventhubs: "https://eventhubs.azure.net",
            },
        }
    }
}

/// The `.default` scope of a resource root: `https://graph.microsoft.com/.default`.
pub fn default_scope(resource: &str) -> String {
    format!("{}/.default", resource.trim_end_matches('/'))
}

/// How the app proves who it is.
#[derive(Clone, Debug)]
pub enum ClientCredential {
    /// A client secret.
    Secret(SecretValue),
    /// A PEM certificate and private key, used to sign a client assertion (RS256 JWT).
    Certificate {
        certificate: SecretValue,
        private_key: SecretValue,
    },
    /// A federated token in a file (Azure workload identity), re-read at every request since the
    /// kubelet rotates it.
    FederatedTokenFile(String),
}

/// An access token. `Debug` does not print it.
#[derive(Clone)]
pub struct AccessToken {
    value: SecretValue,
    /// When the token stops being accepted.
    pub expires_at: Instant,
    /// When the cache renews it: 5 minutes before expiry, or at 80 % of a short lifetime.
    refresh_at: Instant,
}

impl AccessToken {
    /// The bearer token, for the one place that sends it.
    pub fn secret(&self) -> &str {
        self.value.expose()
    }
}

impl std::fmt::Debug for AccessToken {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AccessToken")
            .field("expires_at", &self.expires_at)
            .finish_non_exhaustive()
    }
}

/// Why no token could be had. Carries the `AADSTS` codes and the first line of Entra's
/// description (which names the problem, never the secret).
#[derive(Debug, thiserror::Error)]
pub enum AuthError {
    /// Entra refused the request; retrying will not help until the configuration is fixed.
    #[error("Entra token request for app {client_id} rejected: {error}: {description}")]
    Rejected {
        client_id: String,
        error: String,
        description: String,
        codes: Vec<u64>,
    },
    /// A failure a later attempt may not have (5xx, 429, `temporarily_unavailable`, network).
    #[error("Entra token request for app {client_id} failed, will retry: {message}")]
    Transient {
        client_id: String,
        message: String,
        retry_after: Option<Duration>,
    },
    #[error("Entra credentials: {0}")]
    Secret(#[from] SecretError),
    #[error("Entra credentials: {0}")]
    Invalid(String),
}

impl AuthError {
    /// Whether a later attempt may succeed without a configuration change.
    pub fn is_transient(&self) -> bool {
        matches!(self, AuthError::Transient { .. })
    }
    /// The server's `Retry-After`, if it gave one.
    pub fn retry_after(&self) -> Option<Duration> {
        match self {
            AuthError::Transient { retry_after, .. } => *retry_after,
            _ => None,
        }
    }
    /// The `AADSTS` codes of a rejection (empty otherwise).
    pub fn codes(&self) -> &[u64] {
        match self {
            AuthError::Rejected { codes, .. } => codes,
            _ => &[],
        }
    }
}

#[derive(Deserialize)]
struct TokenResponse {
    access_token: String,
    /// Integer on v2.0; the v1 endpoint sends a string.
    expires_in: serde_json::Value,
}

#[derive(Deserialize, Default)]
struct ErrorResponse {
    #[serde(default)]
    error: String,
    #[serde(default)]
    error_description: String,
    #[serde(default)]
    error_codes: Vec<u64>,
}

type Slot = Arc<tokio::sync::Mutex<Option<AccessToken>>>;

/// Client-credentials token provider of one app in one tenant.
pub struct TokenProvider {
    http: reqwest::Client,
    token_url: String,
    client_id: String,
    credential: ClientCredential,
    cache: Mutex<HashMap<String, Slot>>,
}

impl std::fmt::Debug for TokenProvider {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TokenProvider")
            .field("token_url", &self.token_url)
            .field("client_id", &self.client_id)
            .finish_non_exhaustive()
    }
}

/// Env var naming the federated token file of Azure workload identity.
pub const FEDERATED_TOKEN_FILE_ENV: &str = "AZURE_FEDERATED_TOKEN_FILE";

impl TokenProvider {
    /// A provider for the app `credentials` describe, its secret keys read from `secrets`.
    pub fn from_spec(credentials: &EntraCredentials, secrets: &SecretSource) -> Result<Self, AuthError> {
        let credential = if let Some(sel) = &credentials.client_secret {
            ClientCredential::Secret(secrets::resolve(secrets, sel)?)
        } else if let Some(cert) = &credentials.client_certificate {
            ClientCredential::Certificate {
                certificate: secrets::resolve(secrets, &cert.certificate)?,
                private_key: secrets::resolve(secrets, &cert.private_key)?,
            }
        } else if credentials.workload_identity == Some(true) {
            let file = std::env::var(FEDERATED_TOKEN_FILE_ENV).map_err(|_| {
                AuthError::Invalid(format!(
                    "workloadIdentity is set but {FEDERATED_TOKEN_FILE_ENV} is not: is the pod's ServiceAccount \
                     federated and labelled for workload identity?"
                ))
            })?;
            ClientCredential::FederatedTokenFile(file)
        } else {
            return Err(AuthError::Invalid(
                "set one of clientSecret, clientCertificate or workloadIdentity".into(),
            ));
        };
        let authority = credentials
            .authority_host
            .clone()
            .unwrap_or_else(|| CloudEndpoints::of(credentials.cloud).login.to_string());
        Self::new(&authority, &credentials.tenant_id, &credentials.client_id, credential)
    }

    /// A provider against `authority` (`https://login.microsoftonline.com`, or a test endpoint).
    pub fn new(
        authority: &str,
        tenant_id: &str,
        client_id: &str,
        credential: ClientCredential,
    ) -> Result<Self, AuthError> {
        if tenant_id.is_empty() || tenant_id.contains('/') || tenant_id == "common" || tenant_id == "consumers" {
            return Err(AuthError::Invalid(format!(
                "tenant id {tenant_id:?} is not a tenant: the client-credentials grant needs the tenant's GUID or \
                 verified domain"
            )));
        }
        // Never follows a redirect: a 307 would post the client secret wherever it points.
        let http = crate::collector::destinations::http_client::builder(Duration::from_secs(30))
            .build()
            .map_err(|e| AuthError::Invalid(format!("HTTP client: {e}")))?;
        Ok(TokenProvider {
            http,
            token_url: format!("{}/{}/oauth2/v2.0/token", authority.trim_end_matches('/'), tenant_id),
            client_id: client_id.to_string(),
            credential,
            cache: Mutex::new(HashMap::new()),
        })
    }

    /// The token endpoint this provider posts to.
    pub fn token_url(&self) -> &str {
        &self.token_url
    }

    /// The app's client id.
    pub fn client_id(&self) -> &str {
        &self.client_id
    }

    /// A valid token for `scope` (`<resource>/.default`), from the cache unless it is near
    /// expiry. Concurrent callers for one scope share one request.
    pub async fn token(&self, scope: &str) -> Result<AccessToken, AuthError> {
        let slot = self.slot(scope);
        let mut cached = slot.lock().await;
        if let Some(token) = cached.as_ref() {
            if Instant::now() < token.refresh_at {
                return Ok(token.clone());
            }
        }
        let token = self.request(scope).await?;
        *cached = Some(token.clone());
        Ok(token)
    }

    /// Forget the cached token of `scope` (after a 401 from the resource).
    pub async fn invalidate(&self, scope: &str) {
        *self.slot(scope).lock().await = None;
    }

    fn slot(&self, scope: &str) -> Slot {
        let mut cache = self.cache.lock().unwrap_or_else(|p| p.into_inner());
        cache.entry(scope.to_string()).or_default().clone()
    }

    async fn request(&self, scope: &str) -> Result<AccessToken, AuthError> {
        let mut form: Vec<(&str, String)> = vec![
            ("grant_type", "client_credentials".into()),
            ("client_id", self.client_id.clone()),
            ("scope", scope.to_string()),
        ];
        match &self.credential {
            ClientCredential::Secret(secret) => form.push(("client_secret", secret.expose().to_string())),
            ClientCredential::Certificate {
                certificate,
                private_key,
            } => {
                let assertion = client_assertion(&self.token_url, &self.client_id, certificate, private_key)?;
                form.push(("client_assertion_type", JWT_BEARER.into()));
                form.push(("client_assertion", assertion));
            }
            ClientCredential::FederatedTokenFile(path) => {
                let assertion = std::fs::read_to_string(path)
                    .map_err(|e| AuthError::Invalid(format!("federated token file {path}: {e}")))?;
                form.push(("client_assertion_type", JWT_BEARER.into()));
                form.push(("client_assertion", assertion.trim().to_string()));
            }
        }
        let started = Instant::now();
        let response = crate::collector::destinations::http_client::send(self.http.post(&self.token_url).form(&form))
            .await
            .map_err(|reason| self.transient(format!("{}: {reason}", self.token_url), None))?;
        let status = response.status();
        let retry_after = crate::collector::destinations::http_client::retry_after(response.headers());
        let body = response
            .bytes()
            .await
            .map_err(|e| self.transient(format!("reading the token response: {}", e.without_url()), None))?;
        if status.is_success() {
            let parsed: TokenResponse = serde_json::from_slice(&body)
                .map_err(|e| self.transient(format!("token response is not the expected JSON: {e}"), None))?;
            let seconds = match &parsed.expires_in {
                serde_json::Value::Number(n) => n.as_u64(),
                serde_json::Value::String(s) => s.parse().ok(),
                _ => None,
            }
            .ok_or_else(|| self.transient("token response has no valid expires_in".into(), None))?;
            tracing::debug!(client_id = %self.client_id, scope, expires_in = seconds, "Entra token acquired");
            secrets::register_rotating(&parsed.access_token);
            let lifetime = Duration::from_secs(seconds);
            let margin = Duration::from_secs(300).min(lifetime / 5);
            return Ok(AccessToken {
                value: SecretValue::new(parsed.access_token),
                expires_at: started + lifetime,
                refresh_at: started + lifetime - margin,
            });
        }
        let error: ErrorResponse = serde_json::from_slice(&body).unwrap_or_default();
        let description = secrets::redacted(error.error_description.lines().next().unwrap_or("").trim());
        let throttled = error.error_codes.contains(&90055);
        if status.is_server_error()
            || status == reqwest::StatusCode::TOO_MANY_REQUESTS
            || error.error == "temporarily_unavailable"
            || throttled
        {
            let message = if description.is_empty() {
                format!("HTTP {status}")
            } else {
                format!("HTTP {status}: {description}")
            };
            return Err(self.transient(message, retry_after));
        }
        Err(AuthError::Rejected {
            client_id: self.client_id.clone(),
            error: if error.error.is_empty() {
                format!("HTTP {status}")
            } else {
                error.error
            },
            description,
            codes: error.error_codes,
        })
    }

    fn transient(&self, message: String, retry_after: Option<Duration>) -> AuthError {
        AuthError::Transient {
            client_id: self.client_id.clone(),
            message,
            retry_after,
        }
    }
}

const JWT_BEARER: &str = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer";

/// Lifetime of a signed client assertion; Entra only needs it for the one token request.
const ASSERTION_LIFETIME_SECONDS: i64 = 600;

/// The signed client assertion of a certificate credential (docs/PROTOCOLS.md section 1): an RS256
/// JWT whose header names the certificate by its SHA-1 (`x5t`) and SHA-256 (`x5t#S256`)
/// thumbprints, with `aud` the token URL, `iss` = `sub` the client id, a fresh `jti`, and a short
/// `nbf`..`exp` validity.
///
/// The certificate is the first `CERTIFICATE` block of `certificate`; the key is a PKCS#8
/// (`PRIVATE KEY`) or PKCS#1 (`RSA PRIVATE KEY`) block of `private_key` (or of `certificate`, when
/// both are in one PEM file). Errors name the block that is missing, never the key material.
pub fn client_assertion(
    token_url: &str,
    client_id: &str,
    certificate: &SecretValue,
    private_key: &SecretValue,
) -> Result<String, AuthError> {
    use base64::engine::general_purpose::URL_SAFE_NO_PAD;
    use base64::Engine as _;
    use ring::{digest, rand::SecureRandom, signature};

    let invalid = |m: &str| AuthError::Invalid(format!("clientCertificate: {m}"));
    let cert_blocks =
        pem::parse_many(certificate.expose().as_bytes()).map_err(|_| invalid("the certificate is not PEM"))?;
    let cert_der = cert_blocks
        .iter()
        .find(|b| b.tag() == "CERTIFICATE")
        .ok_or_else(|| invalid("no CERTIFICATE block in the certificate"))?
        .contents()
        .to_vec();
    let mut key_blocks =
        pem::parse_many(private_key.expose().as_bytes()).map_err(|_| invalid("the private key is not PEM"))?;
    key_blocks.extend(cert_blocks);
    let key = key_blocks
        .iter()
        .find_map(|b| match b.tag() {
            "PRIVATE KEY" => Some(signature::RsaKeyPair::from_pkcs8(b.contents())),
            "RSA PRIVATE KEY" => Some(signature::RsaKeyPair::from_der(b.contents())),
            _ => None,
        })
        .ok_or_else(|| invalid("no PRIVATE KEY or RSA PRIVATE KEY block in the private key"))?
        .map_err(|_| invalid("the private key is not a usable RSA key"))?;

    let x5t = URL_SAFE_NO_PAD.encode(digest::digest(&digest::SHA1_FOR_LEGACY_USE_ONLY, &cert_der));
    let x5t_s256 = URL_SAFE_NO_PAD.encode(digest::digest(&digest::SHA256, &cert_der));
    let rng = ring::rand::SystemRandom::new();
    let mut jti = [0u8; 16];
    rng.fill(&mut jti)
        .map_err(|_| invalid("no randomness for the assertion id"))?;
    let jti = format!(
        "{}-{}-{}-{}-{}",
        hex::encode(&jti[0..4]),
        hex::encode(&jti[4..6]),
        hex::encode(&jti[6..8]),
        hex::encode(&jti[8..10]),
        hex::encode(&jti[10..16])
    );
    let now = chrono::Utc::now().timestamp();
    let header = serde_json::json!({"alg": "RS256", "typ": "JWT", "x5t": x5t, "x5t#S256": x5t_s256});
    let claims = serde_json::json!({
        "aud": token_url,
        "iss": client_id,
        "sub": client_id,
        "jti": jti,
        "nbf": now,
        "iat": now,
        "exp": now + ASSERTION_LIFETIME_SECONDS,
    });
    let signing_input = format!(
        "{}.{}",
        URL_SAFE_NO_PAD.encode(header.to_string()),
        URL_SAFE_NO_PAD.encode(claims.to_string())
    );
    let mut sig = vec![0u8; key.public().modulus_len()];
    key.sign(&signature::RSA_PKCS1_SHA256, &rng, signing_input.as_bytes(), &mut sig)
        .map_err(|_| invalid("signing the client assertion failed"))?;
    Ok(format!("{signing_input}.{}", URL_SAFE_NO_PAD.encode(sig)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_cloud_has_https_endpoints() {
        for cloud in [Cloud::Commercial, Cloud::Gcc, Cloud::GccHigh, Cloud::Dod, Cloud::China] {
            let e = CloudEndpoints::of(cloud);
            for host in [e.login, e.graph, e.management, e.monitor, e.storage, e.eventhubs] {
                assert!(
                    host.starts_with("https://") && !host.ends_with('/'),
                    "{cloud:?}: {host}"
                );
            }
        }
        assert_eq!(
            CloudEndpoints::of(Cloud::GccHigh).management,
            "https://manage.office365.us"
        );
        assert_eq!(
            default_scope("https://graph.microsoft.com/"),
            "https://graph.microsoft.com/.default"
        );
    }

    #[test]
    fn multi_tenant_authorities_are_refused() {
        for tenant in ["common", "consumers", "", "a/b"] {
            let err = TokenProvider::new(
                "http://127.0.0.1:1",
                tenant,
                "app",
                ClientCredential::Secret(SecretValue::new("s")),
            )
            .unwrap_err();
            assert!(matches!(err, AuthError::Invalid(_)), "{tenant}: {err}");
        }
    }

    #[test]
    fn access_token_debug_hides_the_value() {
        let t = AccessToken {
            value: SecretValue::new("eyJ-secret-token"),
            expires_at: Instant::now(),
            refresh_at: Instant::now(),
        };
        assert!(!format!("{t:?}").contains("eyJ"));
    }
}
