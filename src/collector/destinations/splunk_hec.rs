//! `splunkHec`: Splunk HTTP Event Collector (docs/PROTOCOLS.md section 7.1).
//!
//! A batch is one `POST /services/collector/event` of concatenated JSON envelopes (`time` from
//! the event's time, `host`, `source`, `sourcetype`, `index`, the stable id as the indexed field
//! `siembridge_id`, the document as `event`), authorised by `Authorization: Splunk <token>`.
//!
//! With `indexerAck`, every request carries this collector's `X-Splunk-Request-Channel` and the
//! batch counts as delivered only once `/services/collector/ack` says its `ackId` is indexed;
//! without an answer within the request timeout the batch is sent again (at-least-once). A
//! success without an `ackId` proves nothing: the batch is sent again, and the health report says
//! why. Redirects are never followed (a retried failure naming the `Location`).
//!
//! Answers: code 9 (busy, 503), 8 and other 5xx are retried (`Retry-After` honoured); codes 1-4
//! (token disabled or invalid: Forbidden, 403; token missing or malformed: Unauthorized, 401)
//! and any other 401/403 are refused credentials, retried until the token works and never
//! dead-lettered; configuration errors (7 index, 10/11 channel, 14 ack disabled) reject the
//! batch, which the health report shows; an `invalid-event-number`
//! dead-letters that one event and sends the others again (HEC does not say whether the events
//! before it were indexed, so they may arrive twice); an invalid batch without a number and a
//! 413 are split to isolate the culprit.

use std::future::Future;
use std::pin::Pin;
use std::time::Duration;

use async_trait::async_trait;
use reqwest::header::{HeaderValue, AUTHORIZATION, CONTENT_TYPE};
use reqwest::StatusCode;
use serde::Deserialize;
use tokio::time::Instant;

use super::document::facts;
use super::http_client::{self, excerpt, uniform};
use super::{AuthFailure, BuildError, Destination, Event, EventOutcome, SendOutcome};
use crate::api::{EventFormat, RetrySpec, SplunkHecSpec};
use crate::config::SecretSource;
use crate::normalize::content;

/// Header naming the indexer-acknowledgement channel.
pub const CHANNEL_HEADER: &str = "X-Splunk-Request-Channel";

/// Longest wait between two polls of `/services/collector/ack`.
const MAX_ACK_POLL: Duration = Duration::from_secs(1);

/// Sends batches to one HEC endpoint.
#[derive(Debug)]
pub struct SplunkHecDestination {
    client: reqwest::Client,
    event_url: String,
    ack_url: String,
    authorization: HeaderValue,
    index: Option<String>,
    sourcetype: Option<String>,
    source: Option<String>,
    indexer_ack: bool,
    channel: String,
    ack_timeout: Duration,
    /// The destination's format, which picks the sourcetype.
    format: EventFormat,
}

/// HEC's JSON answer.
#[derive(Debug, Default, Deserialize)]
struct HecReply {
    #[serde(default)]
    text: String,
    #[serde(default)]
    code: Option<i64>,
    #[serde(default, rename = "invalid-event-number")]
    invalid_event_number: Option<usize>,
    #[serde(default, rename = "ackId")]
    ack_id: Option<u64>,
}

/// What one HEC answer means for the events of its request.
#[derive(Debug, PartialEq, Eq)]
enum Verdict {
    /// Accepted; with indexer ack, the id to wait for.
    Accepted(Option<u64>),
    Retry(String, Option<Duration>),
    Rejected(String),
    /// The token was refused.
    Unauthorized(AuthFailure, String),
    /// Event `n` is invalid: dead-letter it, send the others again.
    InvalidEvent(usize, String),
    /// Something in the batch is wrong but HEC does not say what: split it.
    Split(String),
}

fn verdict(status: StatusCode, reply: &HecReply, body: &str, events: usize, after: Option<Duration>) -> Verdict {
    let code = reply.code.unwrap_or(-1);
    let why = if reply.code.is_some() {
        format!("Splunk HEC HTTP {} code {code}: {}", status.as_u16(), reply.text)
    } else {
        format!("Splunk HEC HTTP {}: {}", status.as_u16(), excerpt(body))
    };
    if status.is_success() && (code == 0 || reply.code.is_none()) {
        return Verdict::Accepted(reply.ack_id);
    }
    if code == 9 || code == 8 || status.is_server_error() || status == StatusCode::TOO_MANY_REQUESTS {
        return Verdict::Retry(why, after);
    }
    let refused = match code {
        1 | 4 => Some(AuthFailure::Forbidden),
        2 | 3 => Some(AuthFailure::Unauthorized),
        _ => AuthFailure::of_status(status.as_u16()),
    };
    if let Some(kind) = refused {
        return Verdict::Unauthorized(kind, format!("{why} (check the HEC token Secret)"));
    }
    if matches!(code, 5 | 6 | 12 | 13) {
        if let Some(n) = reply.invalid_event_number.filter(|n| *n < events) {
            return Verdict::InvalidEvent(n, why);
        }
        if events > 1 {
            return Verdict::Split(why);
        }
        return Verdict::Rejected(why);
    }
    if status == StatusCode::PAYLOAD_TOO_LARGE && events > 1 {
        return Verdict::Split(why);
    }
    Verdict::Rejected(why)
}

/// The sourcetype of an event when the spec sets none: the one the Splunk add-ons for Microsoft
/// services parse for its family and category in this format (`crate::normalize::content`),
/// from what normalization recognised, never from the body.
pub fn sourcetype_for(event: &Event, format: EventFormat) -> &'static str {
    match &event.recognized {
        Some(r) => content::splunk_sourcetype(r.family, &r.category, format),
        None => content::splunk_sourcetype("unknown", "unknown", format),
    }
}

fn all_of(outcomes: Vec<EventOutcome>) -> (Vec<EventOutcome>, Option<Duration>) {
    (outcomes, None)
}

/// The HEC root of a configured URL, which may already name `/services/collector[/event]`.
fn hec_root(url: &str) -> &str {
    let url = url.trim_end_matches('/');
    for suffix in [
        "/services/collector/event/1.0",
        "/services/collector/event",
        "/services/collector",
    ] {
        if let Some(root) = url.strip_suffix(suffix) {
            return root;
        }
    }
    url
}

/// One outcome per event, and the server's `Retry-After` when it asked to wait.
type Outcomes<'a> = Pin<Box<dyn Future<Output = (Vec<EventOutcome>, Option<Duration>)> + Send + 'a>>;

impl SplunkHecDestination {
    /// Build from the spec; the token and TLS Secrets are read now. `format` is the
    /// SiemDestination's, which picks the sourcetype of each event.
    pub fn new(
        name: &str,
        spec: &SplunkHecSpec,
        format: EventFormat,
        retry: &RetrySpec,
        secrets: &SecretSource,
    ) -> Result<Self, BuildError> {
        let root = http_client::base_url(name, "url", hec_root(&spec.url))?;
        let token = http_client::secret(name, secrets, &spec.token)?;
        let mut authorization = HeaderValue::from_str(&format!("Splunk {}", token.expose()))
            .map_err(|_| http_client::invalid(name, "the HEC token is not a valid header value"))?;
        authorization.set_sensitive(true);
        Ok(SplunkHecDestination {
            client: http_client::client(name, retry, spec.tls.as_ref(), secrets)?,
            event_url: format!("{root}/services/collector/event"),
            ack_url: format!("{root}/services/collector/ack"),
            authorization,
            index: spec.index.clone(),
            sourcetype: spec.sourcetype.clone(),
            source: spec.source.clone(),
            indexer_ack: spec.indexer_ack,
            channel: http_client::random_guid(),
            ack_timeout: Duration::from_millis(retry.request_timeout_ms),
            format,
        })
    }

    /// The indexer-acknowledgement channel of this destination.
    pub fn channel(&self) -> &str {
        &self.channel
    }

    /// One event's envelope, followed by a newline.
    pub fn envelope(&self, event: &Event, out: &mut Vec<u8>) {
        let f = facts(&event.body);
        out.push(b'{');
        if let Some(t) = f.time {
            let ms = t.timestamp_millis();
            out.extend_from_slice(format!("\"time\":{}.{:03},", ms.div_euclid(1000), ms.rem_euclid(1000)).as_bytes());
        }
        let mut field = |key: &str, value: &str| {
            out.extend_from_slice(b"\"");
            out.extend_from_slice(key.as_bytes());
            out.extend_from_slice(b"\":");
            // Serializing a str cannot fail.
            let _ = serde_json::to_writer(&mut *out, value);
            out.push(b',');
        };
        if let Some(h) = &f.host {
            field("host", h);
        }
        field("source", self.source.as_deref().unwrap_or(&event.log_source));
        field(
            "sourcetype",
            self.sourcetype
                .as_deref()
                .unwrap_or_else(|| sourcetype_for(event, self.format)),
        );
        if let Some(i) = &self.index {
            field("index", i);
        }
        out.extend_from_slice(b"\"fields\":{\"siembridge_id\":");
        let _ = serde_json::to_writer(&mut *out, &*event.id);
        out.extend_from_slice(b"},\"event\":");
        out.extend_from_slice(&event.body);
        out.extend_from_slice(b"}\n");
    }

    /// The request body of a batch.
    pub fn encode(&self, batch: &[Event]) -> Vec<u8> {
        let mut body = Vec::with_capacity(batch.iter().map(|e| e.body.len() + 160).sum());
        for e in batch {
            self.envelope(e, &mut body);
        }
        body
    }

    fn post(&self, url: &str, body: Vec<u8>) -> reqwest::RequestBuilder {
        let mut req = self
            .client
            .post(url)
            .header(AUTHORIZATION, self.authorization.clone())
            .header(CONTENT_TYPE, "application/json")
            .body(body);
        if self.indexer_ack {
            req = req.header(CHANNEL_HEADER, &self.channel);
        }
        req
    }

    /// Send `batch` and return one outcome per event.
    fn send_events<'a>(&'a self, batch: &'a [Event], deadline: Instant) -> Outcomes<'a> {
        Box::pin(async move {
            let all = |o: EventOutcome| (vec![o; batch.len()], None);
            let response = match http_client::send(self.post(&self.event_url, self.encode(batch))).await {
                Ok(r) => r,
                Err(reason) => return all(EventOutcome::Retry { reason }),
            };
            let status = response.status();
            let after = http_client::retry_after(response.headers());
            let body = response.text().await.unwrap_or_default();
            let reply: HecReply = serde_json::from_str(&body).unwrap_or_default();
            match verdict(status, &reply, &body, batch.len(), after) {
                // With indexer ack, only an indexed ackId proves delivery.
                Verdict::Accepted(None) if self.indexer_ack => all(EventOutcome::Retry {
                    reason: format!(
                        "Splunk HEC HTTP {} accepted the batch without an ackId although indexerAck is on \
                         (is indexer acknowledgement enabled on the token?): {}; sending again",
                        status.as_u16(),
                        excerpt(&body)
                    ),
                }),
                Verdict::Accepted(None) => all(EventOutcome::Delivered),
                Verdict::Accepted(Some(id)) if self.indexer_ack => all(self.wait_for_ack(id, deadline).await),
                Verdict::Accepted(Some(_)) => all(EventOutcome::Delivered),
                Verdict::Retry(reason, after) => (vec![EventOutcome::Retry { reason }; batch.len()], after),
                Verdict::Rejected(reason) => all(EventOutcome::Rejected { reason }),
                Verdict::Unauthorized(kind, reason) => all(EventOutcome::Unauthorized { kind, reason }),
                Verdict::InvalidEvent(n, reason) => all_of(
                    (0..batch.len())
                        .map(|i| {
                            if i == n {
                                EventOutcome::Rejected { reason: reason.clone() }
                            } else {
                                EventOutcome::Retry {
                                    reason: format!("resent after event {n} of the batch was refused: {reason}"),
                                }
                            }
                        })
                        .collect(),
                ),
                Verdict::Split(reason) => {
                    tracing::debug!(events = batch.len(), reason = %reason, "splitting a HEC batch");
                    let (a, b) = batch.split_at(batch.len() / 2);
                    let (mut out, after_a) = self.send_events(a, deadline).await;
                    let (rest, after_b) = self.send_events(b, deadline).await;
                    out.extend(rest);
                    (out, after_a.max(after_b))
                }
            }
        })
    }

    /// Poll `/services/collector/ack` until `ack_id` is indexed or `deadline` passes.
    async fn wait_for_ack(&self, ack_id: u64, deadline: Instant) -> EventOutcome {
        let mut pause = Duration::from_millis(20);
        let query = serde_json::json!({ "acks": [ack_id] }).to_string();
        let mut last = String::from("not yet indexed");
        loop {
            let now = Instant::now();
            if now + pause >= deadline {
                return EventOutcome::Retry {
                    reason: format!("Splunk HEC: ackId {ack_id} not acknowledged in time ({last}); sending again"),
                };
            }
            tokio::time::sleep(pause).await;
            pause = (pause * 2).min(MAX_ACK_POLL);
            let request = self.post(
                &format!("{}?channel={}", self.ack_url, self.channel),
                query.clone().into_bytes(),
            );
            let response = match tokio::time::timeout(deadline - Instant::now(), http_client::send(request)).await {
                Ok(Ok(r)) => r,
                Ok(Err(reason)) => {
                    last = reason;
                    continue;
                }
                Err(_) => continue,
            };
            let status = response.status();
            let body = response.text().await.unwrap_or_default();
            if status.is_success() {
                let acked = serde_json::from_str::<serde_json::Value>(&body)
                    .ok()
                    .and_then(|v| v["acks"][ack_id.to_string()].as_bool())
                    .unwrap_or(false);
                if acked {
                    return EventOutcome::Delivered;
                }
                continue;
            }
            let reply: HecReply = serde_json::from_str(&body).unwrap_or_default();
            match verdict(status, &reply, &body, 1, None) {
                Verdict::Rejected(reason) => return EventOutcome::Rejected { reason },
                Verdict::Unauthorized(kind, reason) => return EventOutcome::Unauthorized { kind, reason },
                Verdict::Retry(reason, _) | Verdict::Split(reason) | Verdict::InvalidEvent(_, reason) => last = reason,
                Verdict::Accepted(_) => {}
            }
        }
    }
}

#[async_trait]
impl Destination for SplunkHecDestination {
    async fn send(&self, batch: &[Event]) -> SendOutcome {
        let deadline = Instant::now() + self.ack_timeout;
        let (outcomes, after) = self.send_events(batch, deadline).await;
        uniform(outcomes, after)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn reply(code: i64, n: Option<usize>) -> HecReply {
        HecReply {
            text: "t".into(),
            code: Some(code),
            invalid_event_number: n,
            ack_id: None,
        }
    }

    #[test]
    fn hec_codes_map_to_verdicts() {
        use StatusCode as S;
        assert_eq!(verdict(S::OK, &reply(0, None), "", 3, None), Verdict::Accepted(None));
        assert!(matches!(
            verdict(S::SERVICE_UNAVAILABLE, &reply(9, None), "", 3, None),
            Verdict::Retry(..)
        ));
        assert!(matches!(
            verdict(S::INTERNAL_SERVER_ERROR, &reply(8, None), "", 3, None),
            Verdict::Retry(..)
        ));
        for (s, c, kind) in [
            (S::FORBIDDEN, 1, AuthFailure::Forbidden),
            (S::UNAUTHORIZED, 2, AuthFailure::Unauthorized),
            (S::UNAUTHORIZED, 3, AuthFailure::Unauthorized),
            (S::FORBIDDEN, 4, AuthFailure::Forbidden),
        ] {
            assert!(
                matches!(verdict(s, &reply(c, None), "", 3, None), Verdict::Unauthorized(k, r) if k == kind && r.contains("token")),
                "code {c}"
            );
        }
        // A 401/403 without a HEC body (a proxy in front of HEC) is a refusal too.
        assert!(matches!(
            verdict(S::FORBIDDEN, &HecReply::default(), "denied", 3, None),
            Verdict::Unauthorized(AuthFailure::Forbidden, _)
        ));
        assert!(matches!(
            verdict(S::BAD_REQUEST, &reply(6, Some(1)), "", 3, None),
            Verdict::InvalidEvent(1, _)
        ));
        assert!(matches!(
            verdict(S::BAD_REQUEST, &reply(6, None), "", 3, None),
            Verdict::Split(_)
        ));
        assert!(matches!(
            verdict(S::BAD_REQUEST, &reply(6, None), "", 1, None),
            Verdict::Rejected(_)
        ));
        assert!(matches!(
            verdict(S::BAD_REQUEST, &reply(7, None), "", 3, None),
            Verdict::Rejected(_)
        ));
        assert!(matches!(
            verdict(S::PAYLOAD_TOO_LARGE, &HecReply::default(), "", 3, None),
            Verdict::Split(_)
        ));
    }

    #[test]
    fn urls_may_name_the_collector_path() {
        assert_eq!(hec_root("https://s.example:8088/"), "https://s.example:8088");
        assert_eq!(
            hec_root("https://s.example:8088/services/collector"),
            "https://s.example:8088"
        );
        assert_eq!(
            hec_root("https://s.example:8088/services/collector/event"),
            "https://s.example:8088"
        );
    }

    #[test]
    fn envelopes_carry_time_metadata_id_and_the_document() {
        std::env::set_var("SIEMBRIDGE_SECRET_HEC_UNIT_TOKEN", "tok");
        let spec = SplunkHecSpec {
            url: "http://127.0.0.1:1".into(),
            token: crate::api::SecretKeySelector {
                name: "hec-unit".into(),
                key: "token".into(),
            },
            index: Some("m365".into()),
            ..Default::default()
        };
        let d = SplunkHecDestination::new(
            "hec",
            &spec,
            EventFormat::Ecs,
            &RetrySpec::default(),
            &SecretSource::Environment,
        )
        .unwrap();
        assert!(!format!("{d:?}").contains("tok\""));
        let mut e = Event::detached_with_id(
            r#"{"@timestamp":"2025-01-01T10:03:19.123Z","event":{"dataset":"azure.signinlogs"}}"#,
            "entra",
            "id-1",
        );
        e.recognized = Some(std::sync::Arc::new(crate::normalize::Recognized {
            family: "entra",
            category: "SignInLogs".into(),
        }));
        let text = String::from_utf8(d.encode(&[e])).unwrap();
        let v: serde_json::Value = serde_json::from_str(text.trim()).unwrap();
        assert_eq!(v["time"].as_f64(), Some(1735725799.123));
        assert_eq!(v["sourcetype"], "siembridge:ecs:entra");
        assert_eq!(v["source"], "entra");
        assert_eq!(v["index"], "m365");
        assert_eq!(v["fields"]["siembridge_id"], "id-1");
        assert_eq!(v["event"]["event"]["dataset"], "azure.signinlogs");
    }
}
