//! A minimal Azure Blob Storage REST client: the few calls the Blob archive destination and the
//! Blob checkpoint store need, written by hand on `reqwest`.
//!
//! Why not `azure_storage_blob`: it cannot share an `azure_core` with `azure_messaging_eventhubs`
//! 0.16 (which the Event Hubs source needs) and it has no Shared Key / connection-string auth
//! (docs/DESIGN.md, "Dependency facts"). The calls here are the whole of what siembridge uses:
//! create container, Put Blob (block blob, with metadata and `If-Match` / `If-None-Match`),
//! Get Blob (whole or a byte range with `x-ms-range`), Get Blob Properties, Set Blob Metadata
//! (conditional), List Blobs with a prefix, a delimiter, `include=metadata` and continuation
//! markers, and for append blobs Put Blob (`AppendBlob`) and Append Block (the Blob source reads
//! diagnostic-settings archives, which Azure Monitor writes as append blobs; tests write them).
//!
//! Auth (docs/PROTOCOLS.md section 7.7): Shared Key (HMAC-SHA256 over the canonical request, from an
//! account-key connection string), a SAS token appended to every URL, or an Entra bearer token
//! for `https://storage.azure.com/.default` from [`TokenProvider`]. Connection strings may name a
//! `BlobEndpoint` (Azurite: `UseDevelopmentStorage=true`, or an explicit
//! `BlobEndpoint=http://127.0.0.1:PORT/devstoreaccount1`).
//!
//! Secrets: the account key, the SAS token and the bearer token live in [`SecretValue`]s and are
//! registered for [`secrets::redact`]; errors carry the status, the service's error code and
//! message (redacted), never the URL (which carries the SAS token) nor a header. Redirects are
//! never followed: a 3xx is a transient [`BlobError::Status`] with code [`REDIRECT_NOT_FOLLOWED`]
//! whose message names the `Location` without its query.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use base64::Engine;
use bytes::Bytes;
use hmac::{Hmac, Mac};
use percent_encoding::{utf8_percent_encode, AsciiSet, NON_ALPHANUMERIC};
use reqwest::header::{HeaderMap, HeaderValue};
use reqwest::{Method, StatusCode};
use sha2::Sha256;

use crate::api::BlobCredentials;
use crate::collector::auth::{default_scope, AuthError, CloudEndpoints, TokenProvider};
use crate::collector::destinations::http_client;
use crate::collector::secrets::{self, resolve, SecretError, SecretValue};
use crate::config::SecretSource;

/// REST API version sent as `x-ms-version`.
pub const API_VERSION: &str = "2023-11-03";

/// Account and key of the local storage emulator (Azurite); public, documented by Microsoft.
pub const DEV_ACCOUNT: &str = "devstoreaccount1";
/// The emulator's well-known account key (public, not a secret).
pub const DEV_ACCOUNT_KEY: &str =
    "Eby8vdM02xNOcqFlqUwJPLlmEtlCDXJ1OUzFT50uSRZ6IFsuFq2UVErCz4I6tq/K1SZFPTOtr/KBHBeksoGMGw==";

/// Characters percent-encoded in a blob path (everything but unreserved characters and `/`).
const PATH: &AsciiSet = &NON_ALPHANUMERIC
    .remove(b'-')
    .remove(b'.')
    .remove(b'_')
    .remove(b'~')
    .remove(b'/');
/// Characters percent-encoded in a query value.
const QUERY: &AsciiSet = &NON_ALPHANUMERIC.remove(b'-').remove(b'.').remove(b'_').remove(b'~');

/// Longest excerpt of an error body kept in a [`BlobError`].
const MESSAGE_EXCERPT: usize = 300;

/// Why a Blob call failed. Never holds a URL, a header or a key.
#[derive(Debug, thiserror::Error)]
pub enum BlobError {
    /// The service answered with an error status.
    #[error("Blob service answered {status} {code}: {message}")]
    Status {
        status: u16,
        /// `x-ms-error-code` (e.g. `ContainerNotFound`, `BlobAlreadyExists`, `ConditionNotMet`).
        code: String,
        /// First part of the service's `<Message>`.
        message: String,
        /// The `Retry-After` of a 429 / 503.
        retry_after: Option<Duration>,
    },
    /// The request never got an answer (connect error, timeout, reset).
    #[error("Blob request failed: {0}")]
    Transport(String),
    /// No Entra token could be had.
    #[error("Blob auth: {0}")]
    Auth(#[from] AuthError),
    /// A Secret could not be read.
    #[error("Blob credentials: {0}")]
    Secret(#[from] SecretError),
    /// The configuration cannot work (bad connection string, bad URL).
    #[error("Blob configuration: {0}")]
    Invalid(String),
    /// The service answered something this client does not understand.
    #[error("Blob response: {0}")]
    Response(String),
}

impl BlobError {
    /// The HTTP status of a service answer.
    pub fn status(&self) -> Option<u16> {
        match self {
            BlobError::Status { status, .. } => Some(*status),
            _ => None,
        }
    }
    /// The service's error code (`x-ms-error-code`), empty when there is none.
    pub fn code(&self) -> &str {
        match self {
            BlobError::Status { code, .. } => code,
            _ => "",
        }
    }
    /// 404: the blob or the container does not exist.
    pub fn is_not_found(&self) -> bool {
        self.status() == Some(404)
    }
    /// 409: e.g. a repeated `If-None-Match: *` create (`BlobAlreadyExists`).
    pub fn is_conflict(&self) -> bool {
        self.status() == Some(409)
    }
    /// 412: a stale `If-Match` ETag (someone else changed the blob first).
    pub fn is_precondition_failed(&self) -> bool {
        self.status() == Some(412)
    }
    /// Whether a later attempt may succeed without a configuration change.
    pub fn is_transient(&self) -> bool {
        match self {
            // A 3xx is not followed: retried, like an outage, until the address is fixed.
            BlobError::Status { status, .. } => matches!(status, 300..=399 | 408 | 429 | 500..=599),
            BlobError::Transport(_) => true,
            BlobError::Auth(e) => e.is_transient(),
            _ => false,
        }
    }
    /// The server's `Retry-After`, if it gave one.
    pub fn retry_after(&self) -> Option<Duration> {
        match self {
            BlobError::Status { retry_after, .. } => *retry_after,
            BlobError::Auth(e) => e.retry_after(),
            _ => None,
        }
    }
}

/// Condition of a write.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Condition {
    /// Write whatever is there.
    None,
    /// Only if the blob does not exist (`If-None-Match: *`); 409 otherwise.
    IfNotExists,
    /// Only if the blob still has this ETag (`If-Match`); 412 otherwise.
    IfMatch(String),
}

/// A blob's properties and metadata.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct BlobItem {
    /// Full name in the container.
    pub name: String,
    /// ETag in header form (quoted), usable in `If-Match`.
    pub etag: String,
    /// `Last-Modified`.
    pub last_modified: Option<SystemTime>,
    /// Metadata, names lower-cased.
    pub metadata: BTreeMap<String, String>,
    /// Content length in bytes.
    pub content_length: u64,
}

/// One page of List Blobs: blobs and, with a delimiter, the name prefixes up to it.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ListPage {
    /// Blobs of the page, in name order.
    pub items: Vec<BlobItem>,
    /// `BlobPrefix` names (with a delimiter): each ends with the delimiter.
    pub prefixes: Vec<String>,
    /// Continuation marker of the next page; `None` on the last page.
    pub next_marker: Option<String>,
}

/// A byte range read with Get Blob and `x-ms-range`.
#[derive(Clone, Debug, Default)]
pub struct BlobRange {
    /// Properties of the blob (ETag, Last-Modified; `content_length` is the blob's whole length
    /// from `Content-Range`).
    pub item: BlobItem,
    /// The bytes read (empty when the range starts at or past the end).
    pub body: Bytes,
}

/// How requests are authorized.
enum BlobAuth {
    /// Shared Key: account name and the decoded account key.
    SharedKey { account: String, key: KeyBytes },
    /// A SAS token (query string, without `?`).
    Sas(SecretValue),
    /// An Entra bearer token for `scope`.
    Bearer {
        provider: Arc<TokenProvider>,
        scope: String,
    },
}

/// `x-ms-error-code`-like code of a redirect that was not followed.
pub const REDIRECT_NOT_FOLLOWED: &str = "RedirectNotFollowed";

/// Register the credential a client sends for redaction: the account key as configured
/// (base64), the SAS token and its signature alone (the part that is the secret).
fn register_credential(auth: &BlobAuth) {
    match auth {
        BlobAuth::SharedKey { key, .. } => secrets::register(&base64::engine::general_purpose::STANDARD.encode(&key.0)),
        BlobAuth::Sas(sas) => {
            secrets::register(sas.expose());
            for (k, v) in sas.expose().split('&').filter_map(|p| p.split_once('=')) {
                if k == "sig" {
                    secrets::register(v);
                    if let Ok(decoded) = percent_encoding::percent_decode_str(v).decode_utf8() {
                        secrets::register(&decoded);
                    }
                }
            }
        }
        // Access tokens are registered by the token provider.
        BlobAuth::Bearer { .. } => {}
    }
}

/// Decoded account key; never printed.
struct KeyBytes(Vec<u8>);

impl std::fmt::Debug for BlobAuth {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            BlobAuth::SharedKey { account, .. } => write!(f, "SharedKey({account}, <redacted>)"),
            BlobAuth::Sas(_) => f.write_str("Sas(<redacted>)"),
            BlobAuth::Bearer { scope, .. } => write!(f, "Bearer({scope})"),
        }
    }
}

/// The parts of a storage connection string siembridge uses.
#[derive(Clone, Default)]
pub struct ConnectionString {
    /// `AccountName`.
    pub account_name: Option<String>,
    /// `AccountKey` (base64).
    pub account_key: Option<SecretValue>,
    /// `SharedAccessSignature`.
    pub sas: Option<SecretValue>,
    /// The Blob endpoint: `BlobEndpoint`, or built from protocol, account and suffix.
    pub blob_endpoint: Option<String>,
}

impl std::fmt::Debug for ConnectionString {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ConnectionString")
            .field("account_name", &self.account_name)
            .field("blob_endpoint", &self.blob_endpoint)
            .finish_non_exhaustive()
    }
}

impl ConnectionString {
    /// Parse `Key=Value;...`. Errors name the problem, never a value.
    pub fn parse(text: &str) -> Result<Self, BlobError> {
        let mut fields: BTreeMap<String, String> = BTreeMap::new();
        for part in text.trim().split(';').map(str::trim).filter(|p| !p.is_empty()) {
            let Some((k, v)) = part.split_once('=') else {
                return Err(BlobError::Invalid(
                    "connection string: every part must be Key=Value".to_string(),
                ));
            };
            fields.insert(k.trim().to_ascii_lowercase(), v.trim().to_string());
        }
        if fields
            .get("usedevelopmentstorage")
            .is_some_and(|v| v.eq_ignore_ascii_case("true"))
        {
            let proxy = fields
                .get("developmentstorageproxyuri")
                .map(|u| u.trim_end_matches('/').to_string())
                .unwrap_or_else(|| "http://127.0.0.1:10000".to_string());
            return Ok(ConnectionString {
                account_name: Some(DEV_ACCOUNT.to_string()),
                account_key: Some(SecretValue::new(DEV_ACCOUNT_KEY)),
                sas: None,
                blob_endpoint: Some(format!("{proxy}/{DEV_ACCOUNT}")),
            });
        }
        let account_name = fields.get("accountname").cloned();
        let blob_endpoint = match fields.get("blobendpoint") {
            Some(e) => Some(e.trim_end_matches('/').to_string()),
            None => account_name.as_ref().map(|a| {
                let protocol = fields
                    .get("defaultendpointsprotocol")
                    .map(String::as_str)
                    .unwrap_or("https");
                let suffix = fields
                    .get("endpointsuffix")
                    .map(String::as_str)
                    .unwrap_or("core.windows.net");
                format!("{protocol}://{a}.blob.{suffix}")
            }),
        };
        let cs = ConnectionString {
            account_name,
            account_key: fields.get("accountkey").map(|k| SecretValue::new(k.clone())),
            sas: fields
                .get("sharedaccesssignature")
                .map(|s| SecretValue::new(s.trim_start_matches('?'))),
            blob_endpoint,
        };
        if cs.sas.is_none() && (cs.account_name.is_none() || cs.account_key.is_none()) {
            return Err(BlobError::Invalid(
                "connection string needs AccountName and AccountKey, SharedAccessSignature, or \
                 UseDevelopmentStorage=true"
                    .to_string(),
            ));
        }
        Ok(cs)
    }
}

/// A client of one storage account's Blob service.
#[derive(Debug)]
pub struct BlobService {
    http: reqwest::Client,
    /// `https://account.blob.core.windows.net` or `http://127.0.0.1:PORT/devstoreaccount1`, no
    /// trailing `/`.
    endpoint: String,
    /// Path of the endpoint (`""` or `/devstoreaccount1`), for Shared Key signing.
    endpoint_path: String,
    auth: BlobAuth,
}

impl BlobService {
    /// A client from a connection string; `account_url` overrides its endpoint when set.
    pub fn from_connection_string(text: &SecretValue, account_url: Option<&str>) -> Result<Self, BlobError> {
        let cs = ConnectionString::parse(text.expose())?;
        let endpoint = match (account_url, &cs.blob_endpoint) {
            (Some(u), _) => u.to_string(),
            (None, Some(e)) => e.clone(),
            (None, None) => {
                return Err(BlobError::Invalid(
                    "connection string names no Blob endpoint and no accountUrl is set".to_string(),
                ))
            }
        };
        let auth = match (cs.account_name, cs.account_key, cs.sas) {
            (Some(account), Some(key), _) => BlobAuth::SharedKey {
                account,
                key: decode_key(&key)?,
            },
            (_, _, Some(sas)) => BlobAuth::Sas(sas),
            _ => return Err(BlobError::Invalid("connection string has no usable credential".into())),
        };
        Self::new(&endpoint, auth)
    }

    /// A client with a SAS token (query string, with or without the leading `?`).
    pub fn with_sas(account_url: &str, sas: SecretValue) -> Result<Self, BlobError> {
        let sas = SecretValue::new(sas.expose().trim().trim_start_matches('?'));
        Self::new(account_url, BlobAuth::Sas(sas))
    }

    /// A client with Entra bearer tokens from `provider` for `scope`
    /// (`https://storage.azure.com/.default`).
    pub fn with_token_provider(
        account_url: &str,
        provider: Arc<TokenProvider>,
        scope: String,
    ) -> Result<Self, BlobError> {
        Self::new(account_url, BlobAuth::Bearer { provider, scope })
    }

    /// A client from the credentials of a spec, its Secret keys read from `secrets`.
    pub fn from_credentials(
        account_url: &str,
        credentials: &BlobCredentials,
        secrets: &SecretSource,
    ) -> Result<Self, BlobError> {
        match (
            &credentials.connection_string,
            &credentials.sas_token,
            &credentials.entra,
        ) {
            (Some(sel), None, None) => Self::from_connection_string(&resolve(secrets, sel)?, Some(account_url)),
            (None, Some(sel), None) => Self::with_sas(account_url, resolve(secrets, sel)?),
            (None, None, Some(entra)) => {
                let provider = TokenProvider::from_spec(entra, secrets)?;
                let scope = default_scope(CloudEndpoints::of(entra.cloud).storage);
                Self::with_token_provider(account_url, Arc::new(provider), scope)
            }
            _ => Err(BlobError::Invalid(
                "set exactly one of connectionString, sasToken or entra".to_string(),
            )),
        }
    }

    fn new(endpoint: &str, auth: BlobAuth) -> Result<Self, BlobError> {
        let endpoint = endpoint.trim_end_matches('/').to_string();
        let url =
            reqwest::Url::parse(&endpoint).map_err(|e| BlobError::Invalid(format!("account URL {endpoint:?}: {e}")))?;
        if url.query().is_some() {
            return Err(BlobError::Invalid(
                "account URL must not carry a query string; put a SAS token in credentials.sasToken".into(),
            ));
        }
        let endpoint_path = url.path().trim_end_matches('/').to_string();
        register_credential(&auth);
        // Never follows a redirect: the SAS token, a Shared Key signature or a bearer token would
        // go along (and reqwest's `Referer` carried the SAS in the URL).
        let http = http_client::builder(Duration::from_secs(60))
            .build()
            .map_err(|e| BlobError::Invalid(format!("HTTP client: {e}")))?;
        Ok(BlobService {
            http,
            endpoint,
            endpoint_path,
            auth,
        })
    }

    /// The endpoint requests go to (no credential in it).
    pub fn endpoint(&self) -> &str {
        &self.endpoint
    }

    /// Create a container; `false` when it already exists.
    pub async fn create_container(&self, container: &str) -> Result<bool, BlobError> {
        let req = Request::new(Method::PUT, container, None).query("restype", "container");
        match self.send(req).await {
            Ok(_) => Ok(true),
            Err(e) if e.is_conflict() => Ok(false),
            Err(e) => Err(e),
        }
    }

    /// Put Blob (block blob) with metadata under a condition; returns the new ETag.
    pub async fn put_block_blob(
        &self,
        container: &str,
        blob: &str,
        body: Bytes,
        content_type: &str,
        metadata: &[(&str, &str)],
        condition: &Condition,
    ) -> Result<String, BlobError> {
        let mut req = Request::new(Method::PUT, container, Some(blob))
            .header("x-ms-blob-type", "BlockBlob")
            .header("content-type", content_type)
            .condition(condition);
        for (k, v) in metadata {
            req = req.header(&format!("x-ms-meta-{}", k.to_ascii_lowercase()), v);
        }
        req.body = body;
        let resp = self.send(req).await?;
        etag_of(resp.headers())
    }

    /// Get Blob: the content and properties, or `None` when it does not exist.
    pub async fn get_blob(&self, container: &str, blob: &str) -> Result<Option<(BlobItem, Bytes)>, BlobError> {
        let req = Request::new(Method::GET, container, Some(blob));
        match self.send(req).await {
            Ok(resp) => {
                let item = item_from_headers(blob, resp.headers())?;
                let body = resp
                    .bytes()
                    .await
                    .map_err(|e| BlobError::Transport(e.without_url().to_string()))?;
                Ok(Some((item, body)))
            }
            Err(e) if e.is_not_found() => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// Get Blob Properties (metadata included), or `None` when it does not exist.
    pub async fn blob_properties(&self, container: &str, blob: &str) -> Result<Option<BlobItem>, BlobError> {
        let req = Request::new(Method::HEAD, container, Some(blob));
        match self.send(req).await {
            Ok(resp) => Ok(Some(item_from_headers(blob, resp.headers())?)),
            Err(e) if e.is_not_found() => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// Set Blob Metadata (replacing all of it) under a condition; returns the new ETag.
    pub async fn set_metadata(
        &self,
        container: &str,
        blob: &str,
        metadata: &[(&str, &str)],
        condition: &Condition,
    ) -> Result<String, BlobError> {
        let mut req = Request::new(Method::PUT, container, Some(blob))
            .query("comp", "metadata")
            .condition(condition);
        for (k, v) in metadata {
            req = req.header(&format!("x-ms-meta-{}", k.to_ascii_lowercase()), v);
        }
        let resp = self.send(req).await?;
        etag_of(resp.headers())
    }

    /// List Blobs whose names start with `prefix`, with metadata, every page.
    pub async fn list_blobs(&self, container: &str, prefix: &str) -> Result<Vec<BlobItem>, BlobError> {
        let mut items = Vec::new();
        let mut marker = String::new();
        loop {
            let mut req = Request::new(Method::GET, container, None)
                .query("restype", "container")
                .query("comp", "list")
                .query("include", "metadata");
            if !prefix.is_empty() {
                req = req.query("prefix", prefix);
            }
            if !marker.is_empty() {
                req = req.query("marker", &marker);
            }
            let resp = self.send(req).await?;
            let body = resp
                .text()
                .await
                .map_err(|e| BlobError::Transport(e.without_url().to_string()))?;
            let page = parse_list(&body)?;
            items.extend(page.items);
            match page.next_marker {
                Some(m) if !m.is_empty() => marker = m,
                _ => break,
            }
        }
        Ok(items)
    }

    /// One page of List Blobs under `prefix`, grouped at `delimiter` when set, from `marker`.
    pub async fn list_page(
        &self,
        container: &str,
        prefix: &str,
        delimiter: Option<&str>,
        marker: Option<&str>,
    ) -> Result<ListPage, BlobError> {
        let mut req = Request::new(Method::GET, container, None)
            .query("restype", "container")
            .query("comp", "list");
        if !prefix.is_empty() {
            req = req.query("prefix", prefix);
        }
        if let Some(d) = delimiter {
            req = req.query("delimiter", d);
        }
        if let Some(m) = marker.filter(|m| !m.is_empty()) {
            req = req.query("marker", m);
        }
        let resp = self.send(req).await?;
        let body = resp
            .text()
            .await
            .map_err(|e| BlobError::Transport(e.without_url().to_string()))?;
        parse_list(&body)
    }

    /// Get Blob of the bytes from `start` (to `end`, inclusive, when set) with `x-ms-range`;
    /// `None` when the blob does not exist. A range that starts at the blob's end answers 416
    /// `InvalidRange`, returned as an empty body with the blob's properties read by HEAD.
    pub async fn get_range(
        &self,
        container: &str,
        blob: &str,
        start: u64,
        end: Option<u64>,
    ) -> Result<Option<BlobRange>, BlobError> {
        let range = match end {
            Some(e) => format!("bytes={start}-{e}"),
            None => format!("bytes={start}-"),
        };
        let req = Request::new(Method::GET, container, Some(blob)).header("x-ms-range", &range);
        match self.send(req).await {
            Ok(resp) => {
                let mut item = item_from_headers(blob, resp.headers())?;
                // `Content-Range: bytes 0-99/1234`: the whole length is after the `/`.
                if let Some(total) = resp
                    .headers()
                    .get(reqwest::header::CONTENT_RANGE)
                    .and_then(|v| v.to_str().ok())
                    .and_then(|v| v.rsplit_once('/'))
                    .and_then(|(_, t)| t.trim().parse().ok())
                {
                    item.content_length = total;
                }
                let body = resp
                    .bytes()
                    .await
                    .map_err(|e| BlobError::Transport(e.without_url().to_string()))?;
                Ok(Some(BlobRange { item, body }))
            }
            Err(e) if e.status() == Some(416) => {
                Ok(self.blob_properties(container, blob).await?.map(|item| BlobRange {
                    item,
                    body: Bytes::new(),
                }))
            }
            Err(e) if e.is_not_found() => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// Put Blob of an empty append blob (replacing any blob of that name).
    pub async fn create_append_blob(
        &self,
        container: &str,
        blob: &str,
        content_type: &str,
    ) -> Result<String, BlobError> {
        let req = Request::new(Method::PUT, container, Some(blob))
            .header("x-ms-blob-type", "AppendBlob")
            .header("content-type", content_type);
        let resp = self.send(req).await?;
        etag_of(resp.headers())
    }

    /// Append Block: add `body` at the end of an append blob.
    pub async fn append_block(&self, container: &str, blob: &str, body: Bytes) -> Result<String, BlobError> {
        let mut req = Request::new(Method::PUT, container, Some(blob)).query("comp", "appendblock");
        req.body = body;
        let resp = self.send(req).await?;
        etag_of(resp.headers())
    }

    /// Send a request: dates, version, auth; a non-2xx answer becomes [`BlobError::Status`].
    async fn send(&self, req: Request) -> Result<reqwest::Response, BlobError> {
        let path = format!(
            "/{}{}",
            utf8_percent_encode(&req.container, PATH),
            req.blob
                .as_deref()
                .map(|b| format!("/{}", utf8_percent_encode(b, PATH)))
                .unwrap_or_default()
        );
        let mut query: Vec<String> = req
            .query
            .iter()
            .map(|(k, v)| format!("{k}={}", utf8_percent_encode(v, QUERY)))
            .collect();
        let mut headers: Vec<(String, String)> = req.headers.clone();
        headers.push(("x-ms-date".into(), httpdate::fmt_http_date(SystemTime::now())));
        headers.push(("x-ms-version".into(), API_VERSION.into()));
        let mut authorization: Option<SecretValue> = None;
        match &self.auth {
            BlobAuth::SharedKey { account, key } => {
                let resource = format!("/{account}{}{path}", self.endpoint_path);
                let to_sign = string_to_sign(&req.method, &headers, req.body.len(), &resource, &req.query);
                authorization = Some(SecretValue::new(format!("SharedKey {account}:{}", sign(key, &to_sign))));
            }
            BlobAuth::Sas(sas) => query.push(sas.expose().to_string()),
            BlobAuth::Bearer { provider, scope } => {
                let token = provider.token(scope).await?;
                authorization = Some(SecretValue::new(format!("Bearer {}", token.secret())));
            }
        }
        let mut url = format!("{}{path}", self.endpoint);
        if !query.is_empty() {
            url.push('?');
            url.push_str(&query.join("&"));
        }
        let mut header_map = HeaderMap::new();
        for (k, v) in &headers {
            let name = reqwest::header::HeaderName::from_bytes(k.as_bytes())
                .map_err(|_| BlobError::Invalid(format!("header name {k:?}")))?;
            let value = HeaderValue::from_str(v)
                .map_err(|_| BlobError::Invalid(format!("value of header {k} is not a valid header value")))?;
            header_map.insert(name, value);
        }
        if let Some(a) = &authorization {
            let mut value = HeaderValue::from_str(a.expose())
                .map_err(|_| BlobError::Invalid("authorization is not a valid header value".into()))?;
            value.set_sensitive(true);
            header_map.insert(reqwest::header::AUTHORIZATION, value);
        }
        let is_put = req.method == Method::PUT;
        let mut builder = self.http.request(req.method, url).headers(header_map);
        if is_put {
            // Put Blob and Set Metadata need Content-Length even when 0, which hyper omits.
            builder = builder
                .header(reqwest::header::CONTENT_LENGTH, req.body.len())
                .body(req.body);
        }
        let resp = builder
            .send()
            .await
            .map_err(|e| BlobError::Transport(describe_transport(&e)))?;
        let status = resp.status();
        if status.is_success() {
            return Ok(resp);
        }
        if let Some(reason) = http_client::redirect_refused(&resp) {
            return Err(BlobError::Status {
                status: status.as_u16(),
                code: REDIRECT_NOT_FOLLOWED.to_string(),
                message: reason,
                retry_after: None,
            });
        }
        if status == StatusCode::UNAUTHORIZED {
            if let BlobAuth::Bearer { provider, scope } = &self.auth {
                provider.invalidate(scope).await;
            }
        }
        let code = resp
            .headers()
            .get("x-ms-error-code")
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default()
            .to_string();
        let retry_after = http_client::retry_after(resp.headers());
        let body = resp.text().await.unwrap_or_default();
        let message = secrets::redacted(xml_text(&body, "Message").unwrap_or(body));
        let message: String = message
            .lines()
            .next()
            .unwrap_or_default()
            .chars()
            .take(MESSAGE_EXCERPT)
            .collect();
        Err(BlobError::Status {
            status: status.as_u16(),
            code,
            message,
            retry_after,
        })
    }
}

/// One request before auth.
struct Request {
    method: Method,
    container: String,
    blob: Option<String>,
    query: Vec<(String, String)>,
    headers: Vec<(String, String)>,
    body: Bytes,
}

impl Request {
    fn new(method: Method, container: &str, blob: Option<&str>) -> Self {
        Request {
            method,
            container: container.to_string(),
            blob: blob.map(str::to_string),
            query: Vec::new(),
            headers: Vec::new(),
            body: Bytes::new(),
        }
    }
    fn query(mut self, k: &str, v: &str) -> Self {
        self.query.push((k.to_string(), v.to_string()));
        self
    }
    fn header(mut self, k: &str, v: &str) -> Self {
        self.headers.push((k.to_ascii_lowercase(), v.to_string()));
        self
    }
    fn condition(self, condition: &Condition) -> Self {
        match condition {
            Condition::None => self,
            Condition::IfNotExists => self.header("if-none-match", "*"),
            Condition::IfMatch(etag) => self.header("if-match", etag),
        }
    }
}

/// The Shared Key string-to-sign (Blob service, version 2009-09-19 and later).
fn string_to_sign(
    method: &Method,
    headers: &[(String, String)],
    content_length: usize,
    resource: &str,
    query: &[(String, String)],
) -> String {
    let get = |name: &str| -> &str {
        headers
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
            .unwrap_or("")
    };
    let length = if content_length == 0 {
        String::new()
    } else {
        content_length.to_string()
    };
    let mut s = String::with_capacity(256);
    for part in [
        method.as_str(),
        get("content-encoding"),
        get("content-language"),
        &length,
        get("content-md5"),
        get("content-type"),
        "", // Date: x-ms-date is sent instead
        get("if-modified-since"),
        get("if-match"),
        get("if-none-match"),
        get("if-unmodified-since"),
        get("range"),
    ] {
        s.push_str(part);
        s.push('\n');
    }
    let mut ms: Vec<(&str, &str)> = headers
        .iter()
        .filter(|(k, _)| k.starts_with("x-ms-"))
        .map(|(k, v)| (k.as_str(), v.trim()))
        .collect();
    ms.sort();
    for (k, v) in ms {
        s.push_str(k);
        s.push(':');
        s.push_str(v);
        s.push('\n');
    }
    s.push_str(resource);
    let mut params: BTreeMap<String, Vec<&str>> = BTreeMap::new();
    for (k, v) in query {
        params.entry(k.to_ascii_lowercase()).or_default().push(v);
    }
    for (k, mut vs) in params {
        vs.sort();
        s.push('\n');
        s.push_str(&k);
        s.push(':');
        s.push_str(&vs.join(","));
    }
    s
}

fn decode_key(key: &SecretValue) -> Result<KeyBytes, BlobError> {
    base64::engine::general_purpose::STANDARD
        .decode(key.expose().trim())
        .map(KeyBytes)
        .map_err(|_| BlobError::Invalid("AccountKey is not valid base64".to_string()))
}

fn sign(key: &KeyBytes, to_sign: &str) -> String {
    // HMAC accepts keys of any length, so this cannot fail.
    let mut mac = <Hmac<Sha256> as Mac>::new_from_slice(&key.0).unwrap_or_else(|_| unreachable!());
    mac.update(to_sign.as_bytes());
    base64::engine::general_purpose::STANDARD.encode(mac.finalize().into_bytes())
}

/// A transport error without its URL (which may carry a SAS token).
fn describe_transport(e: &reqwest::Error) -> String {
    let kind = if e.is_timeout() {
        "timeout"
    } else if e.is_connect() {
        "connection error"
    } else {
        "error"
    };
    let mut msg = kind.to_string();
    let mut src = std::error::Error::source(e);
    while let Some(s) = src {
        msg.push_str(": ");
        msg.push_str(&s.to_string());
        src = s.source();
    }
    secrets::redacted(msg)
}

/// An ETag in header form (quoted).
pub fn quoted_etag(etag: &str) -> String {
    let t = etag.trim();
    if t.starts_with('"') || t.starts_with("W/") {
        t.to_string()
    } else {
        format!("\"{t}\"")
    }
}

fn etag_of(headers: &HeaderMap) -> Result<String, BlobError> {
    headers
        .get(reqwest::header::ETAG)
        .and_then(|v| v.to_str().ok())
        .map(quoted_etag)
        .ok_or_else(|| BlobError::Response("answer without ETag".into()))
}

fn item_from_headers(name: &str, headers: &HeaderMap) -> Result<BlobItem, BlobError> {
    let mut metadata = BTreeMap::new();
    for (k, v) in headers {
        if let Some(m) = k.as_str().strip_prefix("x-ms-meta-") {
            metadata.insert(m.to_ascii_lowercase(), v.to_str().unwrap_or_default().to_string());
        }
    }
    Ok(BlobItem {
        name: name.to_string(),
        etag: etag_of(headers)?,
        last_modified: headers
            .get(reqwest::header::LAST_MODIFIED)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| httpdate::parse_http_date(v).ok()),
        metadata,
        content_length: headers
            .get(reqwest::header::CONTENT_LENGTH)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.parse().ok())
            .unwrap_or(0),
    })
}

/// Parse a List Blobs answer (`EnumerationResults`).
fn parse_list(xml: &str) -> Result<ListPage, BlobError> {
    use quick_xml::events::Event as X;
    let mut reader = quick_xml::Reader::from_str(xml);
    let mut path: Vec<String> = Vec::new();
    let mut page = ListPage::default();
    let mut item: Option<BlobItem> = None;
    let bad = |e: &dyn std::fmt::Display| BlobError::Response(format!("List Blobs XML: {e}"));
    loop {
        match reader.read_event().map_err(|e| bad(&e))? {
            X::Start(s) => {
                let name = String::from_utf8_lossy(s.name().as_ref()).into_owned();
                if name == "Blob" && path.last().map(String::as_str) == Some("Blobs") {
                    item = Some(BlobItem::default());
                }
                if name == "BlobPrefix" && path.last().map(String::as_str) == Some("Blobs") {
                    page.prefixes.push(String::new());
                }
                path.push(name);
            }
            X::End(_) => {
                let name = path.pop().unwrap_or_default();
                if name == "Blob" {
                    if let Some(i) = item.take() {
                        page.items.push(i);
                    }
                }
            }
            X::Empty(_) => {}
            X::Text(t) => {
                let text = t.unescape().map_err(|e| bad(&e))?.into_owned();
                set_list_field(&path, &text, &mut item, &mut page);
            }
            X::CData(c) => {
                let text = String::from_utf8_lossy(&c.into_inner()).into_owned();
                set_list_field(&path, &text, &mut item, &mut page);
            }
            X::Eof => break,
            _ => {}
        }
    }
    Ok(page)
}

/// Append `text` to the field `path` names (text may come in several events).
fn set_list_field(path: &[String], text: &str, item: &mut Option<BlobItem>, page: &mut ListPage) {
    let p: Vec<&str> = path.iter().map(String::as_str).collect();
    match p.as_slice() {
        ["EnumerationResults", "NextMarker"] => page.next_marker.get_or_insert_with(String::new).push_str(text),
        ["EnumerationResults", "Blobs", "BlobPrefix", "Name"] => {
            if let Some(last) = page.prefixes.last_mut() {
                last.push_str(text);
            }
        }
        ["EnumerationResults", "Blobs", "Blob", rest @ ..] => {
            let Some(i) = item.as_mut() else { return };
            match rest {
                ["Name"] => i.name.push_str(text),
                ["Properties", "Etag"] => i.etag.push_str(text.trim()),
                ["Properties", "Last-Modified"] => i.last_modified = httpdate::parse_http_date(text.trim()).ok(),
                ["Properties", "Content-Length"] => i.content_length = text.trim().parse().unwrap_or(0),
                ["Metadata", key] => i.metadata.entry(key.to_ascii_lowercase()).or_default().push_str(text),
                _ => {}
            }
        }
        _ => {}
    }
    if let Some(i) = item.as_mut() {
        if !i.etag.is_empty() && !i.etag.starts_with('"') {
            i.etag = quoted_etag(&i.etag);
        }
    }
}

/// Text of the first `<tag>` in an XML error body.
fn xml_text(xml: &str, tag: &str) -> Option<String> {
    let start = xml.find(&format!("<{tag}>"))? + tag.len() + 2;
    let end = xml[start..].find(&format!("</{tag}>"))? + start;
    Some(xml[start..end].to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn development_storage_connection_string_points_at_azurite() {
        let cs = ConnectionString::parse("UseDevelopmentStorage=true").unwrap();
        assert_eq!(cs.account_name.as_deref(), Some(DEV_ACCOUNT));
        assert_eq!(
            cs.blob_endpoint.as_deref(),
            Some("http://127.0.0.1:10000/devstoreaccount1")
        );
        let cs = ConnectionString::parse(&format!(
            "DefaultEndpointsProtocol=http;AccountName=devstoreaccount1;AccountKey={DEV_ACCOUNT_KEY};\
             BlobEndpoint=http://127.0.0.1:4321/devstoreaccount1/;"
        ))
        .unwrap();
        assert_eq!(
            cs.blob_endpoint.as_deref(),
            Some("http://127.0.0.1:4321/devstoreaccount1")
        );
    }

    #[test]
    fn account_connection_string_builds_the_public_endpoint() {
        let cs = ConnectionString::parse(
            "DefaultEndpointsProtocol=https;AccountName=contoso;AccountKey=a2V5;EndpointSuffix=core.chinacloudapi.cn",
        )
        .unwrap();
        assert_eq!(
            cs.blob_endpoint.as_deref(),
            Some("https://contoso.blob.core.chinacloudapi.cn")
        );
        assert!(ConnectionString::parse("AccountName=contoso").is_err());
        let err = ConnectionString::parse("AccountName=contoso;garbage")
            .unwrap_err()
            .to_string();
        assert!(!err.contains("contoso"));
    }

    #[test]
    fn connection_string_debug_hides_the_key() {
        let cs = ConnectionString::parse("AccountName=contoso;AccountKey=c2VjcmV0LWtleQ==").unwrap();
        assert!(!format!("{cs:?}").contains("c2VjcmV0"));
        let svc = BlobService::from_connection_string(
            &SecretValue::new("AccountName=contoso;AccountKey=c2VjcmV0LWtleQ=="),
            Some("https://contoso.blob.core.windows.net"),
        )
        .unwrap();
        assert!(!format!("{svc:?}").contains("c2VjcmV0"));
    }

    /// The canonical form documented for Shared Key ("Authorize with Shared Key", Blob service).
    #[test]
    fn string_to_sign_has_the_documented_shape() {
        let headers = vec![
            ("x-ms-version".to_string(), "2023-11-03".to_string()),
            ("x-ms-date".to_string(), "Fri, 26 Jun 2015 23:39:12 GMT".to_string()),
            ("if-match".to_string(), "\"0x1\"".to_string()),
            ("x-ms-meta-ownerid".to_string(), " a ".to_string()),
        ];
        let query = vec![
            ("restype".to_string(), "container".to_string()),
            ("comp".to_string(), "list".to_string()),
            ("include".to_string(), "metadata".to_string()),
        ];
        let s = string_to_sign(&Method::GET, &headers, 0, "/acct/c", &query);
        assert_eq!(
            s,
            "GET\n\n\n\n\n\n\n\n\"0x1\"\n\n\n\nx-ms-date:Fri, 26 Jun 2015 23:39:12 GMT\nx-ms-meta-ownerid:a\n\
             x-ms-version:2023-11-03\n/acct/c\ncomp:list\ninclude:metadata\nrestype:container"
        );
        let s = string_to_sign(&Method::PUT, &[], 12, "/acct/c/b", &[]);
        assert!(s.starts_with("PUT\n\n\n12\n"));
    }

    #[test]
    fn list_blobs_xml_with_metadata_and_marker() {
        let xml = r#"<?xml version="1.0" encoding="utf-8"?>
<EnumerationResults ServiceEndpoint="http://127.0.0.1:10000/devstoreaccount1" ContainerName="c">
<Prefix>ns/hub/$default/ownership/</Prefix><MaxResults>5000</MaxResults>
<Blobs>
<Blob><Name>ns/hub/$default/ownership/0</Name><Properties><Last-Modified>Sun, 22 Nov 2026 19:00:00 GMT</Last-Modified><Etag>0x8DC1</Etag><Content-Length>0</Content-Length></Properties><Metadata><ownerid>a&amp;b</ownerid></Metadata></Blob>
<Blob><Name>ns/hub/$default/ownership/1</Name><Properties><Etag>"0x8DC2"</Etag></Properties><Metadata/></Blob>
</Blobs><NextMarker>page2</NextMarker></EnumerationResults>"#;
        let page = parse_list(xml).unwrap();
        assert_eq!(page.items.len(), 2);
        assert_eq!(page.items[0].name, "ns/hub/$default/ownership/0");
        assert_eq!(page.items[0].etag, "\"0x8DC1\"");
        assert_eq!(page.items[0].metadata.get("ownerid").map(String::as_str), Some("a&b"));
        assert!(page.items[0].last_modified.is_some());
        assert_eq!(page.items[1].etag, "\"0x8DC2\"");
        assert!(page.items[1].metadata.is_empty());
        assert_eq!(page.next_marker.as_deref(), Some("page2"));
    }

    #[test]
    fn list_blobs_xml_with_blob_prefixes() {
        let xml = r#"<?xml version="1.0" encoding="utf-8"?><EnumerationResults ContainerName="c"><Delimiter>/y=</Delimiter><Blobs><BlobPrefix><Name>resourceId=/SUBSCRIPTIONS/X/y=</Name></BlobPrefix><BlobPrefix><Name>tenantId=t&amp;1/y=</Name></BlobPrefix></Blobs><NextMarker/></EnumerationResults>"#;
        let page = parse_list(xml).unwrap();
        assert!(page.items.is_empty());
        assert_eq!(page.prefixes, vec!["resourceId=/SUBSCRIPTIONS/X/y=", "tenantId=t&1/y="]);
        assert_eq!(page.next_marker, None);
    }

    #[test]
    fn error_classes() {
        let e = |status| BlobError::Status {
            status,
            code: String::new(),
            message: String::new(),
            retry_after: None,
        };
        assert!(e(503).is_transient());
        assert!(e(429).is_transient());
        assert!(!e(403).is_transient());
        assert!(e(409).is_conflict());
        assert!(e(412).is_precondition_failed());
        assert!(e(404).is_not_found());
        assert!(BlobError::Transport("reset".into()).is_transient());
    }
}
