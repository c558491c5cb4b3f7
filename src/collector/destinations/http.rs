//! `http`: a generic receiver that takes NDJSON or a JSON array in a POST.
//!
//! 2xx: delivered. 408, 429, 5xx and connection errors: retried; on 429 and 503 the
//! `Retry-After` header (seconds or HTTP date) sets the wait. Any other status: the batch is
//! rejected and its events dead-lettered with the status and an excerpt of the body.

use std::time::{Duration, SystemTime};

use async_trait::async_trait;
use reqwest::header::{HeaderMap, HeaderName, HeaderValue, CONTENT_TYPE, RETRY_AFTER};
use reqwest::StatusCode;

use super::{BuildError, Destination, Event, SendOutcome};
use crate::api::{HttpEncoding, HttpSpec, RetrySpec, TlsSpec};
use crate::collector::secrets::{resolve, SecretValue};
use crate::config::SecretSource;

/// Longest part of an error body kept in a dead-letter reason.
const BODY_EXCERPT: usize = 256;

/// POSTs batches to a URL.
#[derive(Debug)]
pub struct HttpDestination {
    client: reqwest::Client,
    url: reqwest::Url,
    encoding: HttpEncoding,
    headers: HeaderMap,
}

impl HttpDestination {
    /// Build from the spec; Secrets (headers, TLS) are read now.
    pub fn new(name: &str, spec: &HttpSpec, retry: &RetrySpec, secrets: &SecretSource) -> Result<Self, BuildError> {
        let invalid = |message: String| BuildError::Invalid {
            name: name.to_string(),
            message,
        };
        let url = reqwest::Url::parse(&spec.url).map_err(|e| invalid(format!("url {:?}: {e}", spec.url)))?;
        let mut headers = HeaderMap::new();
        for h in &spec.headers {
            let hname = HeaderName::from_bytes(h.name.as_bytes())
                .map_err(|e| invalid(format!("header name {:?}: {e}", h.name)))?;
            let value = match (&h.value, &h.value_from) {
                (Some(v), None) => {
                    HeaderValue::from_str(v).map_err(|e| invalid(format!("header {:?}: {e}", h.name)))?
                }
                (None, Some(sel)) => {
                    let secret = resolve(secrets, sel).map_err(|source| BuildError::Secret {
                        name: name.to_string(),
                        source,
                    })?;
                    let mut v = HeaderValue::from_str(secret.expose()).map_err(|_| {
                        invalid(format!("header {:?}: secret value is not a valid header value", h.name))
                    })?;
                    v.set_sensitive(true);
                    v
                }
                _ => {
                    return Err(invalid(format!(
                        "header {:?}: set exactly one of value or valueFrom",
                        h.name
                    )))
                }
            };
            headers.insert(hname, value);
        }
        let mut builder = reqwest::Client::builder()
            .timeout(Duration::from_millis(retry.request_timeout_ms))
            .connect_timeout(Duration::from_millis(retry.request_timeout_ms.min(10_000)))
            .pool_idle_timeout(Duration::from_secs(30));
        if let Some(tls) = &spec.tls {
            builder = apply_tls(builder, tls, secrets, name)?;
        }
        let client = builder.build().map_err(|e| invalid(format!("HTTP client: {e}")))?;
        Ok(HttpDestination {
            client,
            url,
            encoding: spec.encoding,
            headers,
        })
    }
}

fn apply_tls(
    mut builder: reqwest::ClientBuilder,
    tls: &TlsSpec,
    secrets: &SecretSource,
    name: &str,
) -> Result<reqwest::ClientBuilder, BuildError> {
    let secret = |sel| {
        resolve(secrets, sel).map_err(|source| BuildError::Secret {
            name: name.to_string(),
            source,
        })
    };
    let invalid = |message: String| BuildError::Invalid {
        name: name.to_string(),
        message,
    };
    if let Some(ca) = &tls.ca {
        let pem: SecretValue = secret(ca)?;
        let certs = reqwest::Certificate::from_pem_bundle(pem.expose().as_bytes())
            .map_err(|e| invalid(format!("tls.ca: {e}")))?;
        for c in certs {
            builder = builder.add_root_certificate(c);
        }
    }
    if let (Some(cert), Some(key)) = (&tls.client_certificate, &tls.client_key) {
        let mut pem = secret(cert)?.expose().as_bytes().to_vec();
        pem.push(b'\n');
        pem.extend_from_slice(secret(key)?.expose().as_bytes());
        let id = reqwest::Identity::from_pem(&pem).map_err(|e| invalid(format!("tls client certificate: {e}")))?;
        builder = builder.identity(id);
    }
    if tls.insecure_skip_verify {
        builder = builder.tls_danger_accept_invalid_certs(true);
    }
    Ok(builder)
}

/// Encode a batch as the receiver expects.
pub fn encode(batch: &[Event], encoding: HttpEncoding) -> Vec<u8> {
    let mut body = Vec::with_capacity(batch.iter().map(|e| e.body.len() + 1).sum::<usize>() + 2);
    match encoding {
        HttpEncoding::Ndjson => {
            for e in batch {
                body.extend_from_slice(&e.body);
                body.push(b'\n');
            }
        }
        HttpEncoding::JsonArray => {
            body.push(b'[');
            for (i, e) in batch.iter().enumerate() {
                if i > 0 {
                    body.push(b',');
                }
                body.extend_from_slice(&e.body);
            }
            body.push(b']');
        }
    }
    body
}

/// `Retry-After` as a duration: delta-seconds or an HTTP date.
pub fn parse_retry_after(value: &str, now: SystemTime) -> Option<Duration> {
    let value = value.trim();
    if let Ok(secs) = value.parse::<u64>() {
        return Some(Duration::from_secs(secs));
    }
    let at = httpdate::parse_http_date(value).ok()?;
    Some(at.duration_since(now).unwrap_or(Duration::ZERO))
}

/// Map a response status (and its headers and body) to an outcome.
pub fn classify(status: StatusCode, retry_after: Option<&str>, body: &str) -> SendOutcome {
    if status.is_success() {
        return SendOutcome::Delivered;
    }
    let excerpt: String = body.chars().take(BODY_EXCERPT).collect();
    let reason = format!("HTTP {}: {}", status.as_u16(), excerpt.trim());
    let retriable =
        status == StatusCode::REQUEST_TIMEOUT || status == StatusCode::TOO_MANY_REQUESTS || status.is_server_error();
    if retriable {
        let after = if status == StatusCode::TOO_MANY_REQUESTS || status == StatusCode::SERVICE_UNAVAILABLE {
            retry_after.and_then(|v| parse_retry_after(v, SystemTime::now()))
        } else {
            None
        };
        SendOutcome::Retry { reason, after }
    } else {
        SendOutcome::Rejected { reason }
    }
}

#[async_trait]
impl Destination for HttpDestination {
    async fn send(&self, batch: &[Event]) -> SendOutcome {
        let content_type = match self.encoding {
            HttpEncoding::Ndjson => "application/x-ndjson",
            HttpEncoding::JsonArray => "application/json",
        };
        let request = self
            .client
            .post(self.url.clone())
            .headers(self.headers.clone())
            .header(CONTENT_TYPE, content_type)
            .body(encode(batch, self.encoding));
        match request.send().await {
            Ok(resp) => {
                let status = resp.status();
                let retry_after = resp
                    .headers()
                    .get(RETRY_AFTER)
                    .and_then(|v| v.to_str().ok())
                    .map(str::to_string);
                let body = if status.is_success() {
                    String::new()
                } else {
                    resp.text().await.unwrap_or_default()
                };
                classify(status, retry_after.as_deref(), &body)
            }
            Err(e) => SendOutcome::Retry {
                reason: format!("HTTP request failed: {}", without_url(&e)),
                after: None,
            },
        }
    }
}

/// The error without its URL (which might carry a token in a query string).
fn without_url(e: &reqwest::Error) -> String {
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
    msg
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn retry_after_seconds_and_http_date() {
        let now = SystemTime::UNIX_EPOCH + Duration::from_secs(1_700_000_000);
        assert_eq!(parse_retry_after("3", now), Some(Duration::from_secs(3)));
        let later = httpdate::fmt_http_date(now + Duration::from_secs(7));
        assert_eq!(parse_retry_after(&later, now), Some(Duration::from_secs(7)));
        let past = httpdate::fmt_http_date(now - Duration::from_secs(7));
        assert_eq!(parse_retry_after(&past, now), Some(Duration::ZERO));
        assert_eq!(parse_retry_after("soon", now), None);
    }

    #[test]
    fn statuses_map_to_outcomes() {
        assert_eq!(classify(StatusCode::OK, None, ""), SendOutcome::Delivered);
        assert!(matches!(
            classify(StatusCode::TOO_MANY_REQUESTS, Some("2"), ""),
            SendOutcome::Retry { after: Some(d), .. } if d == Duration::from_secs(2)
        ));
        assert!(matches!(
            classify(StatusCode::INTERNAL_SERVER_ERROR, Some("2"), ""),
            SendOutcome::Retry { after: None, .. }
        ));
        assert!(matches!(
            classify(StatusCode::REQUEST_TIMEOUT, None, ""),
            SendOutcome::Retry { .. }
        ));
        match classify(StatusCode::BAD_REQUEST, None, &"e".repeat(1000)) {
            SendOutcome::Rejected { reason } => {
                assert!(reason.starts_with("HTTP 400: eee"));
                assert!(reason.len() < 300);
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn encodes_ndjson_and_arrays() {
        let batch = vec![Event::detached("{\"a\":1}", "ls"), Event::detached("{\"b\":2}", "ls")];
        assert_eq!(encode(&batch, HttpEncoding::Ndjson), b"{\"a\":1}\n{\"b\":2}\n");
        assert_eq!(encode(&batch, HttpEncoding::JsonArray), b"[{\"a\":1},{\"b\":2}]");
    }
}
