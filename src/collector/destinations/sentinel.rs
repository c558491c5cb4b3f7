//! `sentinel`: Microsoft Sentinel through the Azure Monitor Logs Ingestion API (docs/PROTOCOLS.md
//! section 7.6).
//!
//! `POST {endpoint}/dataCollectionRules/{dcrImmutableId}/streams/{stream}?api-version=2023-01-01`
//! with a gzip JSON array of rows and an Entra app token for the Azure Monitor audience of the
//! app's cloud. A 401 invalidates the cached token and the request is sent once more with a new
//! one. Requests stay under the 1 MB limit by splitting the batch; a row alone over it is
//! dead-lettered. Rows get a `TimeGenerated` from the event time when they have none, since
//! custom tables require it. 429, 408 and 5xx are retried (`Retry-After` honoured), 413 split.
//! Refused credentials are an outage, retried until they work and never dead-lettered: a 401
//! again with a new token (Unauthorized), a 403 (Forbidden: the app lacks *Monitoring Metrics
//! Publisher* on the DCR), and any token the Entra token endpoint will not issue (Unauthorized
//! for `invalid_client` such as AADSTS7000215 / 7000222 and every other refusal, Forbidden for
//! `unauthorized_client` and Conditional Access blocks AADSTS53003 / 530032). 400/404 reject
//! the request (schema, wrong DCR or stream); the delivery machinery splits a rejected batch to
//! find the rows at fault.

use std::time::Duration;

use async_trait::async_trait;
use reqwest::header::{AUTHORIZATION, CONTENT_ENCODING, CONTENT_TYPE};
use reqwest::StatusCode;

use super::document::facts;
use super::http_client::{self, excerpt, send_json_chunks};
use super::{AuthFailure, BuildError, Destination, Event, EventOutcome, SendOutcome};
use crate::api::{RetrySpec, SentinelSpec};
use crate::collector::auth::{default_scope, AuthError, CloudEndpoints, TokenProvider};
use crate::config::SecretSource;

/// Largest request the API takes, in bytes (1 MB; counted before compression, which is the
/// stricter reading of "compressed or not").
pub const MAX_REQUEST_BYTES: usize = 1_000_000;
/// API version of the Logs Ingestion API.
pub const API_VERSION: &str = "2023-01-01";

/// Sends batches to one DCR stream.
#[derive(Debug)]
pub struct SentinelDestination {
    client: reqwest::Client,
    url: String,
    tokens: TokenProvider,
    scope: String,
}

/// What one request's answer means.
enum Answer {
    Outcomes(Vec<EventOutcome>, Option<Duration>),
    /// 401: the token was refused.
    Unauthorized(String),
}

impl SentinelDestination {
    /// Build from the spec; the app's credentials are read now, tokens fetched at the first send.
    pub fn new(name: &str, spec: &SentinelSpec, retry: &RetrySpec, secrets: &SecretSource) -> Result<Self, BuildError> {
        let endpoint = http_client::base_url(name, "endpoint", &spec.endpoint)?;
        if spec.dcr_immutable_id.is_empty() || spec.dcr_immutable_id.contains('/') {
            return Err(http_client::invalid(
                name,
                "dcrImmutableId must be the DCR's immutable id (dcr-...)",
            ));
        }
        if !(spec.stream_name.starts_with("Custom-") || spec.stream_name.starts_with("Microsoft-"))
            || spec.stream_name.contains('/')
        {
            return Err(http_client::invalid(
                name,
                "streamName must start with Custom- or Microsoft-",
            ));
        }
        let tokens = TokenProvider::from_spec(&spec.credentials, secrets).map_err(|e| match e {
            AuthError::Secret(source) => BuildError::Secret {
                name: name.to_string(),
                source,
            },
            other => http_client::invalid(name, other.to_string()),
        })?;
        Ok(SentinelDestination {
            client: http_client::client(name, retry, None, secrets)?,
            url: format!(
                "{endpoint}/dataCollectionRules/{}/streams/{}?api-version={API_VERSION}",
                spec.dcr_immutable_id, spec.stream_name
            ),
            tokens,
            scope: default_scope(CloudEndpoints::of(spec.credentials.cloud).monitor),
        })
    }

    /// One row: the document, with `TimeGenerated` from the event time when it has none.
    pub fn row(body: &[u8]) -> Vec<u8> {
        let f = facts(body);
        let (Some(time), false, Some(b'{')) = (f.time_rfc3339(), f.has_time_generated, body.first()) else {
            return body.to_vec();
        };
        let rest = &body[1..];
        let mut out = Vec::with_capacity(body.len() + 48);
        out.extend_from_slice(b"{\"TimeGenerated\":\"");
        out.extend_from_slice(time.as_bytes());
        out.push(b'"');
        if rest.iter().find(|b| !b.is_ascii_whitespace()) != Some(&b'}') {
            out.push(b',');
        }
        out.extend_from_slice(rest);
        out
    }

    fn encode(rows: &[Vec<u8>]) -> Vec<u8> {
        let mut body = Vec::with_capacity(rows.iter().map(|r| r.len() + 1).sum::<usize>() + 2);
        body.push(b'[');
        for (i, r) in rows.iter().enumerate() {
            if i > 0 {
                body.push(b',');
            }
            body.extend_from_slice(r);
        }
        body.push(b']');
        body
    }

    async fn post(&self, rows: &[Vec<u8>]) -> Answer {
        let all = |o: EventOutcome, after| Answer::Outcomes(vec![o; rows.len()], after);
        let token = match self.tokens.token(&self.scope).await {
            Ok(t) => t,
            Err(e) if e.is_transient() => {
                return all(EventOutcome::Retry { reason: e.to_string() }, e.retry_after());
            }
            Err(e) => {
                return all(
                    EventOutcome::Unauthorized {
                        kind: token_refusal(&e),
                        reason: e.to_string(),
                    },
                    None,
                )
            }
        };
        let request = self
            .client
            .post(&self.url)
            .header(AUTHORIZATION, format!("Bearer {}", token.secret()))
            .header(CONTENT_TYPE, "application/json")
            .header(CONTENT_ENCODING, "gzip")
            .header("x-ms-client-request-id", http_client::random_guid())
            .body(http_client::gzip(&Self::encode(rows)));
        let response = match http_client::send(request).await {
            Ok(r) => r,
            Err(reason) => return all(EventOutcome::Retry { reason }, None),
        };
        let status = response.status();
        if status.is_success() {
            return all(EventOutcome::Delivered, None);
        }
        let after = http_client::retry_after(response.headers());
        let body = response.text().await.unwrap_or_default();
        let reason = format!("Logs Ingestion API HTTP {}: {}", status.as_u16(), excerpt(&body));
        if status == StatusCode::UNAUTHORIZED {
            return Answer::Unauthorized(reason);
        }
        if status == StatusCode::PAYLOAD_TOO_LARGE && rows.len() > 1 {
            let (a, b) = rows.split_at(rows.len() / 2);
            return Answer::Outcomes(
                [self.send_rows(a).await, self.send_rows(b).await]
                    .into_iter()
                    .flat_map(|(o, _)| o)
                    .collect(),
                None,
            );
        }
        if status == StatusCode::TOO_MANY_REQUESTS || status == StatusCode::REQUEST_TIMEOUT || status.is_server_error()
        {
            return all(EventOutcome::Retry { reason }, after);
        }
        if status == StatusCode::FORBIDDEN {
            let reason = format!("{reason} (does the app have Monitoring Metrics Publisher on the DCR?)");
            return all(
                EventOutcome::Unauthorized {
                    kind: AuthFailure::Forbidden,
                    reason,
                },
                None,
            );
        }
        let reason = match status {
            StatusCode::NOT_FOUND => format!("{reason} (check dcrImmutableId, streamName and endpoint)"),
            _ => reason,
        };
        all(EventOutcome::Rejected { reason }, None)
    }

    /// Send rows; on a 401 forget the token and try once more with a new one.
    async fn send_rows(&self, rows: &[Vec<u8>]) -> (Vec<EventOutcome>, Option<Duration>) {
        for attempt in 0..2 {
            match Box::pin(self.post(rows)).await {
                Answer::Outcomes(o, after) => return (o, after),
                Answer::Unauthorized(reason) if attempt == 0 => {
                    tracing::debug!(reason = %reason, "Logs Ingestion API refused the token; fetching a new one");
                    self.tokens.invalidate(&self.scope).await;
                }
                Answer::Unauthorized(reason) => {
                    let reason = format!("{reason} (refused again with a new token: check the app and tenant)");
                    let refused = EventOutcome::Unauthorized {
                        kind: AuthFailure::Unauthorized,
                        reason,
                    };
                    return (vec![refused; rows.len()], None);
                }
            }
        }
        (
            vec![
                EventOutcome::Retry {
                    reason: "not sent".into()
                };
                rows.len()
            ],
            None,
        )
    }
}

/// Which refusal a token error is: the app is known but not allowed (`unauthorized_client`,
/// app disabled AADSTS7000112, Conditional Access AADSTS53003 / 530032) is Forbidden; anything
/// else (a wrong or expired secret, an unknown tenant or app, an unreadable federated token) is
/// Unauthorized. Either way no row is at fault.
fn token_refusal(e: &AuthError) -> AuthFailure {
    let forbidden_codes = [7000112, 53003, 530032];
    match e {
        AuthError::Rejected { error, codes, .. }
            if error == "unauthorized_client" || codes.iter().any(|c| forbidden_codes.contains(c)) =>
        {
            AuthFailure::Forbidden
        }
        _ => AuthFailure::Unauthorized,
    }
}

#[async_trait]
impl Destination for SentinelDestination {
    async fn send(&self, batch: &[Event]) -> SendOutcome {
        let mut outcomes: Vec<Option<EventOutcome>> = vec![None; batch.len()];
        let mut sendable = Vec::new();
        let mut rows = Vec::new();
        for (i, e) in batch.iter().enumerate() {
            let row = Self::row(&e.body);
            if row.len() + 2 > MAX_REQUEST_BYTES {
                outcomes[i] = Some(EventOutcome::Rejected {
                    reason: format!(
                        "row of {} bytes is over the Logs Ingestion API limit of {MAX_REQUEST_BYTES} bytes per request",
                        row.len()
                    ),
                });
            } else {
                sendable.push(i);
                rows.push(row);
            }
        }
        let sizes: Vec<usize> = rows.iter().map(Vec::len).collect();
        send_json_chunks(outcomes, &sendable, &sizes, MAX_REQUEST_BYTES, |r| {
            self.send_rows(&rows[r])
        })
        .await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rows_get_time_generated_once() {
        let row = SentinelDestination::row(br#"{"@timestamp":"2025-01-01T10:03:19Z","a":1}"#);
        assert_eq!(
            String::from_utf8(row).unwrap(),
            r#"{"TimeGenerated":"2025-01-01T10:03:19.000Z","@timestamp":"2025-01-01T10:03:19Z","a":1}"#
        );
        let has = br#"{"TimeGenerated":"2025-01-01T10:03:19Z"}"#;
        assert_eq!(SentinelDestination::row(has), has.to_vec());
        let no_time = br#"{"a":1}"#;
        assert_eq!(SentinelDestination::row(no_time), no_time.to_vec());
    }

    #[test]
    fn token_refusals_are_unauthorized_or_forbidden() {
        let rejected = |error: &str, code: u64| AuthError::Rejected {
            client_id: "app".into(),
            error: error.into(),
            description: String::new(),
            codes: vec![code],
        };
        assert_eq!(
            token_refusal(&rejected("invalid_client", 7000215)),
            AuthFailure::Unauthorized
        );
        assert_eq!(
            token_refusal(&rejected("invalid_client", 7000222)),
            AuthFailure::Unauthorized
        );
        assert_eq!(
            token_refusal(&rejected("unauthorized_client", 700016)),
            AuthFailure::Forbidden
        );
        assert_eq!(token_refusal(&rejected("invalid_grant", 53003)), AuthFailure::Forbidden);
        assert_eq!(
            token_refusal(&AuthError::Invalid("federated token file".into())),
            AuthFailure::Unauthorized
        );
    }

    #[test]
    fn the_url_names_dcr_stream_and_api_version() {
        std::env::set_var("SIEMBRIDGE_SECRET_SENTINEL_UNIT_SECRET", "s");
        let spec = SentinelSpec {
            endpoint: "https://dce-1.westeurope-1.ingest.monitor.azure.com/".into(),
            dcr_immutable_id: "dcr-00000000000000000000000000000001".into(),
            stream_name: "Custom-SiembridgeEvents".into(),
            credentials: crate::api::EntraCredentials {
                tenant_id: "11111111-2222-3333-4444-555555555555".into(),
                client_id: "66666666-7777-8888-9999-aaaaaaaaaaaa".into(),
                client_secret: Some(crate::api::SecretKeySelector {
                    name: "sentinel-unit".into(),
                    key: "secret".into(),
                }),
                ..Default::default()
            },
        };
        let d = SentinelDestination::new("s", &spec, &RetrySpec::default(), &SecretSource::Environment).unwrap();
        assert_eq!(
            d.url,
            "https://dce-1.westeurope-1.ingest.monitor.azure.com/dataCollectionRules/dcr-00000000000000000000000000000001/streams/Custom-SiembridgeEvents?api-version=2023-01-01"
        );
        assert_eq!(d.scope, "https://monitor.azure.com/.default");
        let mut bad = spec.clone();
        bad.stream_name = "Events".into();
        assert!(SentinelDestination::new("s", &bad, &RetrySpec::default(), &SecretSource::Environment).is_err());
    }
}
