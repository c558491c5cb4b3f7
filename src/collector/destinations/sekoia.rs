//! `sekoia`: the Sekoia.io HTTP intake (docs/PROTOCOLS.md section 7.5).
//!
//! A batch is one or more `POST {intake}/jsons` of a JSON array of events, each event a JSON
//! string (the form Sekoia parses as structured), the intake key in `X-SEKOIAIO-INTAKE-KEY`. As
//! the Sekoia SDK does, an event over 250 000 bytes is not sent (dead-lettered with the reason) and
//! requests are cut at 90 % of the 10 MiB payload limit. 429, 408 and 5xx are retried
//! (`Retry-After` honoured), 413 split, 401/403 (unknown or disabled intake key; which of the two
//! Sekoia answers is unconfirmed) are refused credentials, retried until the key works and never
//! dead-lettered; other 4xx reject the request (the delivery machinery splits the batch to find
//! the events at fault).

use async_trait::async_trait;
use reqwest::header::{HeaderValue, CONTENT_TYPE};
use reqwest::StatusCode;

use super::http_client::{self, excerpt, send_json_chunks};
use super::{AuthFailure, BuildError, Destination, Event, EventOutcome, SendOutcome};
use crate::api::{RetrySpec, SekoiaSpec};
use crate::config::SecretSource;

/// Largest event Sekoia takes, in bytes.
pub const MAX_EVENT_BYTES: usize = 250_000;
/// Largest request payload, in bytes.
pub const MAX_PAYLOAD_BYTES: usize = 10_485_760;
/// Requests are cut at 90 % of the payload limit.
const CHUNK_BYTES: usize = MAX_PAYLOAD_BYTES / 10 * 9;
/// Header carrying the intake key.
pub const INTAKE_KEY_HEADER: &str = "X-SEKOIAIO-INTAKE-KEY";

/// Sends batches to one Sekoia intake.
#[derive(Debug)]
pub struct SekoiaDestination {
    client: reqwest::Client,
    jsons_url: String,
    intake_key: HeaderValue,
}

impl SekoiaDestination {
    /// Build from the spec; the intake key and TLS Secrets are read now.
    pub fn new(name: &str, spec: &SekoiaSpec, retry: &RetrySpec, secrets: &SecretSource) -> Result<Self, BuildError> {
        let base = http_client::base_url(name, "url", spec.intake_url())?;
        let key = http_client::secret(name, secrets, &spec.intake_key)?;
        let mut intake_key = HeaderValue::from_str(key.expose())
            .map_err(|_| http_client::invalid(name, "the intake key is not a valid header value"))?;
        intake_key.set_sensitive(true);
        Ok(SekoiaDestination {
            client: http_client::client(name, retry, spec.tls.as_ref(), secrets)?,
            jsons_url: format!("{base}/jsons"),
            intake_key,
        })
    }

    /// The `/jsons` body of some events: a JSON array of JSON strings.
    pub fn encode(events: &[String]) -> Vec<u8> {
        let mut body = Vec::with_capacity(events.iter().map(|e| e.len() + 1).sum::<usize>() + 2);
        body.push(b'[');
        for (i, e) in events.iter().enumerate() {
            if i > 0 {
                body.push(b',');
            }
            body.extend_from_slice(e.as_bytes());
        }
        body.push(b']');
        body
    }

    /// Send already encoded events; one outcome per event and the server's `Retry-After`.
    async fn post(&self, events: &[String]) -> (Vec<EventOutcome>, Option<std::time::Duration>) {
        let all = |o: EventOutcome| vec![o; events.len()];
        let request = self
            .client
            .post(&self.jsons_url)
            .header(INTAKE_KEY_HEADER, self.intake_key.clone())
            .header(CONTENT_TYPE, "application/json")
            .body(Self::encode(events));
        let response = match http_client::send(request).await {
            Ok(r) => r,
            Err(reason) => return (all(EventOutcome::Retry { reason }), None),
        };
        let status = response.status();
        if status.is_success() {
            return (all(EventOutcome::Delivered), None);
        }
        let after = http_client::retry_after(response.headers());
        let body = response.text().await.unwrap_or_default();
        let reason = format!("Sekoia intake HTTP {}: {}", status.as_u16(), excerpt(&body));
        if status == StatusCode::PAYLOAD_TOO_LARGE && events.len() > 1 {
            let (a, b) = events.split_at(events.len() / 2);
            let (mut out, after_a) = Box::pin(self.post(a)).await;
            let (rest, after_b) = Box::pin(self.post(b)).await;
            out.extend(rest);
            return (out, after_a.max(after_b));
        }
        if status == StatusCode::TOO_MANY_REQUESTS || status == StatusCode::REQUEST_TIMEOUT || status.is_server_error()
        {
            return (all(EventOutcome::Retry { reason }), after);
        }
        if let Some(kind) = AuthFailure::of_status(status.as_u16()) {
            let reason = format!("{reason} (check the intake key Secret)");
            return (all(EventOutcome::Unauthorized { kind, reason }), None);
        }
        (all(EventOutcome::Rejected { reason }), None)
    }
}

#[async_trait]
impl Destination for SekoiaDestination {
    async fn send(&self, batch: &[Event]) -> SendOutcome {
        let mut outcomes: Vec<Option<EventOutcome>> = vec![None; batch.len()];
        // Each event as the JSON string Sekoia expects; oversized ones never leave.
        let mut sendable = Vec::new();
        let mut encoded = Vec::new();
        for (i, e) in batch.iter().enumerate() {
            if e.body.len() > MAX_EVENT_BYTES {
                outcomes[i] = Some(EventOutcome::Rejected {
                    reason: format!(
                        "event of {} bytes is over Sekoia's limit of {MAX_EVENT_BYTES} bytes",
                        e.body.len()
                    ),
                });
                continue;
            }
            match std::str::from_utf8(&e.body)
                .ok()
                .and_then(|s| serde_json::to_string(s).ok())
            {
                Some(s) => {
                    sendable.push(i);
                    encoded.push(s);
                }
                None => {
                    outcomes[i] = Some(EventOutcome::Rejected {
                        reason: "event is not UTF-8 text".into(),
                    })
                }
            }
        }
        let sizes: Vec<usize> = encoded.iter().map(String::len).collect();
        send_json_chunks(outcomes, &sendable, &sizes, CHUNK_BYTES, |r| self.post(&encoded[r])).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::api::SekoiaRegion;

    #[test]
    fn regions_have_intakes_and_a_url_wins() {
        let mut spec = SekoiaSpec::default();
        assert_eq!(spec.intake_url(), "https://intake.sekoia.io");
        spec.region = Some(SekoiaRegion::Usa1);
        assert_eq!(spec.intake_url(), "https://app.usa1.sekoia.io/api/v1/intake-http");
        spec.url = Some("http://127.0.0.1:1".into());
        assert_eq!(spec.intake_url(), "http://127.0.0.1:1");
    }

    #[test]
    fn events_are_sent_as_json_strings() {
        let events = vec![serde_json::to_string("{\"a\":1}").unwrap(), "\"x\"".to_string()];
        assert_eq!(SekoiaDestination::encode(&events), b"[\"{\\\"a\\\":1}\",\"x\"]");
    }
}
