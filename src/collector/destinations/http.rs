//! `http`: a generic receiver that takes NDJSON or a JSON array in a POST.
//!
//! 2xx: delivered. 408, 429, 5xx and connection errors: retried; on 429 and 503 the
//! `Retry-After` header (seconds or HTTP date) sets the wait. A 3xx is never followed: it is
//! retried with a reason naming its `Location` (see [`http_client`]). 401 and 403: the credentials
//! (headers from Secrets) are refused, an outage retried until they work, nothing dead-lettered.
//! Any other status: the batch is rejected; the delivery machinery splits it until the events
//! the receiver refuses are alone, and dead-letters those with the status and an excerpt of the
//! body.

use std::time::SystemTime;

use async_trait::async_trait;
use reqwest::header::{HeaderMap, HeaderName, HeaderValue, CONTENT_TYPE, RETRY_AFTER};
use reqwest::StatusCode;

use super::{http_client, AuthFailure, BuildError, Destination, Event, SendOutcome};
use crate::api::{HttpEncoding, HttpSpec, RetrySpec};
use crate::collector::secrets::resolve;
use crate::config::SecretSource;

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
        let client = http_client::client(name, retry, spec.tls.as_ref(), secrets)?;
        Ok(HttpDestination {
            client,
            url,
            encoding: spec.encoding,
            headers,
        })
    }
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

pub use super::http_client::parse_retry_after;

/// Map a response status (and its headers and body) to an outcome.
pub fn classify(status: StatusCode, retry_after: Option<&str>, body: &str) -> SendOutcome {
    if status.is_success() {
        return SendOutcome::Delivered;
    }
    if status.is_redirection() {
        // `send` answers redirects before this; a 3xx is never a rejection of the records.
        return SendOutcome::Retry {
            reason: http_client::redirect_reason(status, &HeaderMap::new(), None).unwrap_or_default(),
            after: None,
        };
    }
    let reason = format!("HTTP {}: {}", status.as_u16(), http_client::excerpt(body));
    if let Some(kind) = AuthFailure::of_status(status.as_u16()) {
        return SendOutcome::Unauthorized {
            kind,
            reason: format!("{reason} (check the credentials in the headers' Secrets)"),
        };
    }
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
        match http_client::send(request).await {
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
            Err(reason) => SendOutcome::Retry { reason, after: None },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

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
        assert!(matches!(
            classify(StatusCode::FOUND, None, ""),
            SendOutcome::Retry { reason, after: None } if reason.contains("redirect")
        ));
        assert!(matches!(
            classify(StatusCode::UNAUTHORIZED, None, ""),
            SendOutcome::Unauthorized {
                kind: AuthFailure::Unauthorized,
                ..
            }
        ));
        assert!(matches!(
            classify(StatusCode::FORBIDDEN, None, "no"),
            SendOutcome::Unauthorized {
                kind: AuthFailure::Forbidden,
                ..
            }
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
