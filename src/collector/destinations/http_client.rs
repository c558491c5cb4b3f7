//! What every HTTP client of siembridge shares: the client builder (redirects refused, no
//! `Referer`, timeouts) that every `reqwest::Client` of the crate is built from, and, for the
//! destinations, TLS options from Secrets, Secret look-ups with the destination's name in the
//! error, `Retry-After`, error excerpts without URLs and with secrets redacted, gzip bodies and
//! size-bounded splitting of a batch.
//!
//! # Redirects
//! No client follows a redirect. A receiver answering 302 would otherwise turn a POST into a
//! bodiless GET whose 200 counts as delivered, and a 307 to another host would get the records and
//! every header (an `x-api-key`, a token); reqwest also sets `Referer`, which carries a SAS token.
//! So every client is built by [`builder`] with `redirect::Policy::none()` and `referer(false)`, and
//! [`send`] turns any 3xx answer into an error that names where it pointed (the `Location`
//! without its query string): for a destination a retried failure, never a delivery and never a
//! dead letter (the records are fine; the address is wrong or the receiver misbehaves), shown in
//! the health report until the URL is fixed.
//!
//! # `Retry-After`
//! Honoured, but never beyond [`MAX_RETRY_AFTER`] (one hour, the largest `retry.maxBackoffMs`);
//! the delivery loop cuts it further to the destination's `retry.maxBackoffMs` and the API
//! sources to their longest backoff, so a hostile or broken `Retry-After: 100000` cannot stall
//! a pipeline for a day.

use std::io::Write;
use std::ops::Range;
use std::time::{Duration, SystemTime};

use reqwest::header::{HeaderMap, LOCATION, RETRY_AFTER};

use super::{BuildError, EventOutcome, SendOutcome};
use crate::api::{RetrySpec, SecretKeySelector, TlsSpec};
use crate::collector::secrets::{redacted, resolve, SecretValue};
use crate::config::SecretSource;

/// Longest `Retry-After` honoured by any client; longer values are cut to it.
pub const MAX_RETRY_AFTER: Duration = Duration::from_secs(3600);

/// Longest part of an error body kept in a dead-letter reason or a health report.
pub const BODY_EXCERPT: usize = 256;

/// A `BuildError::Invalid` for destination `name`.
pub fn invalid(name: &str, message: impl Into<String>) -> BuildError {
    BuildError::Invalid {
        name: name.to_string(),
        message: message.into(),
    }
}

/// Read one Secret key for destination `name`.
pub fn secret(name: &str, secrets: &SecretSource, selector: &SecretKeySelector) -> Result<SecretValue, BuildError> {
    resolve(secrets, selector).map_err(|source| BuildError::Secret {
        name: name.to_string(),
        source,
    })
}

/// The one builder every HTTP client of siembridge starts from: redirects are never followed
/// (see the module documentation), no `Referer` header, `timeout` per request, a connect timeout
/// of at most 10 s and idle connections closed after 30 s. Callers add TLS options or pool sizes.
pub fn builder(timeout: Duration) -> reqwest::ClientBuilder {
    // Tests and benchmarks build clients without going through `main`.
    crate::tls::install_crypto_provider();
    reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .referer(false)
        .timeout(timeout)
        .connect_timeout(timeout.min(Duration::from_secs(10)))
        .pool_idle_timeout(Duration::from_secs(30))
}

/// An HTTP client with the request timeout of `retry` and the TLS options of `tls`. Server
/// certificates are verified against the system roots plus `tls.ca` unless the spec explicitly
/// disables verification.
pub fn client(
    name: &str,
    retry: &RetrySpec,
    tls: Option<&TlsSpec>,
    secrets: &SecretSource,
) -> Result<reqwest::Client, BuildError> {
    let mut builder = builder(Duration::from_millis(retry.request_timeout_ms));
    if let Some(tls) = tls {
        builder = apply_tls(builder, tls, secrets, name)?;
    }
    builder.build().map_err(|e| invalid(name, format!("HTTP client: {e}")))
}

/// Send a request built on a [`builder`] client. `Err` is the reason of a failure to retry: the
/// request got no answer ([`request_error`]) or the answer was a redirect ([`redirect_refused`]).
/// Any other answer, success or not, is the caller's to read.
pub async fn send(request: reqwest::RequestBuilder) -> Result<reqwest::Response, String> {
    let response = request.send().await.map_err(|e| request_error(&e))?;
    match redirect_refused(&response) {
        Some(reason) => Err(reason),
        None => Ok(response),
    }
}

/// The reason for a 3xx answer, naming its `Location` (resolved against the request's URL;
/// scheme, host, port and path: the query and any user info are left out, they may carry a
/// credential); `None` for any other answer.
pub fn redirect_refused(response: &reqwest::Response) -> Option<String> {
    redirect_reason(response.status(), response.headers(), Some(response.url()))
}

/// [`redirect_refused`] from a status and headers; a relative `Location` is resolved against
/// `base` when given.
pub fn redirect_reason(
    status: reqwest::StatusCode,
    headers: &HeaderMap,
    base: Option<&reqwest::Url>,
) -> Option<String> {
    if !status.is_redirection() {
        return None;
    }
    let location = match headers.get(LOCATION).map(|v| v.to_str()) {
        None => "no Location".to_string(),
        Some(Err(_)) => "a Location that is not text".to_string(),
        Some(Ok(raw)) => format!("Location {}", location_without_secrets(raw, base)),
    };
    Some(redacted(format!(
        "HTTP {}: redirect to {location} not followed (siembridge never follows redirects: set the \
         final address in the spec)",
        status.as_u16()
    )))
}

/// A `Location` value, resolved against `base`, without query, fragment and user info.
fn location_without_secrets(raw: &str, base: Option<&reqwest::Url>) -> String {
    let parsed = match base {
        Some(b) => b.join(raw),
        None => reqwest::Url::parse(raw),
    };
    match parsed {
        Ok(mut url) => {
            url.set_query(None);
            url.set_fragment(None);
            let _ = url.set_username("");
            let _ = url.set_password(None);
            url.to_string()
        }
        // A relative reference without a base: its path only.
        Err(_) => raw
            .split(['?', '#'])
            .next()
            .unwrap_or_default()
            .chars()
            .take(200)
            .collect(),
    }
}

/// Add the CA, client certificate and verification options of `tls` to a client builder.
pub fn apply_tls(
    mut builder: reqwest::ClientBuilder,
    tls: &TlsSpec,
    secrets: &SecretSource,
    name: &str,
) -> Result<reqwest::ClientBuilder, BuildError> {
    if let Some(ca) = &tls.ca {
        let pem = secret(name, secrets, ca)?;
        let certs = reqwest::Certificate::from_pem_bundle(pem.expose().as_bytes())
            .map_err(|e| invalid(name, format!("tls.ca: {e}")))?;
        for c in certs {
            builder = builder.add_root_certificate(c);
        }
    }
    if let (Some(cert), Some(key)) = (&tls.client_certificate, &tls.client_key) {
        let mut pem = secret(name, secrets, cert)?.expose().as_bytes().to_vec();
        pem.push(b'\n');
        pem.extend_from_slice(secret(name, secrets, key)?.expose().as_bytes());
        let id =
            reqwest::Identity::from_pem(&pem).map_err(|e| invalid(name, format!("tls client certificate: {e}")))?;
        builder = builder.identity(id);
    }
    if tls.insecure_skip_verify {
        builder = builder.tls_danger_accept_invalid_certs(true);
    }
    Ok(builder)
}

/// A base URL from a spec, checked, without a trailing `/`.
pub fn base_url(name: &str, field: &str, raw: &str) -> Result<String, BuildError> {
    let url = reqwest::Url::parse(raw).map_err(|e| invalid(name, format!("{field} {raw:?}: {e}")))?;
    if !matches!(url.scheme(), "http" | "https") || url.host_str().is_none() {
        return Err(invalid(
            name,
            format!("{field} {raw:?}: not an http(s) URL with a host"),
        ));
    }
    Ok(raw.trim_end_matches('/').to_string())
}

/// `Retry-After` as a duration: delta-seconds (fractions accepted) or an HTTP date, at most
/// [`MAX_RETRY_AFTER`].
pub fn parse_retry_after(value: &str, now: SystemTime) -> Option<Duration> {
    let value = value.trim();
    let wait = if let Ok(secs) = value.parse::<f64>() {
        if !(secs >= 0.0 && secs.is_finite()) {
            return None;
        }
        Duration::try_from_secs_f64(secs).unwrap_or(MAX_RETRY_AFTER)
    } else {
        let at = httpdate::parse_http_date(value).ok()?;
        at.duration_since(now).unwrap_or(Duration::ZERO)
    };
    Some(wait.min(MAX_RETRY_AFTER))
}

/// The `Retry-After` of a response, if it has a valid one, at most [`MAX_RETRY_AFTER`].
pub fn retry_after(headers: &HeaderMap) -> Option<Duration> {
    headers
        .get(RETRY_AFTER)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| parse_retry_after(v, SystemTime::now()))
}

/// The start of an error body, for a reason string, with registered secrets redacted (a
/// receiver may echo the request headers).
pub fn excerpt(body: &str) -> String {
    // Redact before cutting, so that a secret at the cut is not left half visible.
    let body = redacted(body);
    let e: String = body.chars().take(BODY_EXCERPT).collect();
    e.trim().to_string()
}

/// A request error without its URL (which might carry a token in a query string).
pub fn request_error(e: &reqwest::Error) -> String {
    let kind = if e.is_timeout() {
        "timeout"
    } else if e.is_connect() {
        "connection error"
    } else {
        "error"
    };
    let mut msg = format!("HTTP request failed: {kind}");
    let mut src = std::error::Error::source(e);
    while let Some(s) = src {
        msg.push_str(": ");
        msg.push_str(&s.to_string());
        src = s.source();
    }
    redacted(msg)
}

/// A random (version 4) GUID, for HEC channels and request ids.
pub fn random_guid() -> String {
    let b: [u8; 16] = rand::random();
    format!(
        "{:08x}-{:04x}-4{:03x}-{:04x}-{:012x}",
        u32::from_be_bytes([b[0], b[1], b[2], b[3]]),
        u16::from_be_bytes([b[4], b[5]]),
        u16::from_be_bytes([b[6], b[7]]) & 0x0fff,
        (u16::from_be_bytes([b[8], b[9]]) & 0x3fff) | 0x8000,
        u64::from_be_bytes([0, 0, b[10], b[11], b[12], b[13], b[14], b[15]]),
    )
}

/// Gzip a request body.
pub fn gzip(body: &[u8]) -> Vec<u8> {
    let mut enc = flate2::write::GzEncoder::new(Vec::with_capacity(body.len() / 4 + 64), flate2::Compression::fast());
    // Writing to a Vec cannot fail.
    let _ = enc.write_all(body);
    enc.finish().unwrap_or_default()
}

/// Split `sizes` (encoded size of each event) into consecutive ranges whose total, with
/// `overhead` bytes per request and `per_event` bytes per event, stays within `limit`. An event
/// that alone exceeds the limit gets a range of its own (the caller rejects it).
pub fn split_by_size(sizes: &[usize], limit: usize, overhead: usize, per_event: usize) -> Vec<Range<usize>> {
    let mut ranges = Vec::new();
    let mut start = 0;
    let mut total = overhead;
    for (i, &size) in sizes.iter().enumerate() {
        let add = size + per_event;
        if i > start && total + add > limit {
            ranges.push(start..i);
            start = i;
            total = overhead;
        }
        total += add;
    }
    if start < sizes.len() {
        ranges.push(start..sizes.len());
    }
    ranges
}

/// A batch of which some events were refused before sending (`outcomes[i]` set) and the others
/// encoded (item `k`, of `sizes[k]` bytes, being event `sendable[k]`), sent as JSON arrays of at
/// most `limit` bytes by `post` (given the range of items to send). Once a request is throttled the rest is not sent (it waits with the
/// throttled part: `Retry`); once the credentials are refused, neither (it waits for them).
pub async fn send_json_chunks<F, Fut>(
    mut outcomes: Vec<Option<EventOutcome>>,
    sendable: &[usize],
    sizes: &[usize],
    limit: usize,
    mut post: F,
) -> SendOutcome
where
    F: FnMut(Range<usize>) -> Fut,
    Fut: std::future::Future<Output = (Vec<EventOutcome>, Option<Duration>)>,
{
    let mut after = None;
    let mut refused = None;
    for range in split_by_size(sizes, limit, 2, 1) {
        if after.is_some() || refused.is_some() {
            break;
        }
        let (chunk, chunk_after) = post(range.clone()).await;
        after = chunk_after;
        for (k, o) in range.zip(chunk) {
            if matches!(o, EventOutcome::Unauthorized { .. }) {
                refused = Some(o.clone());
            }
            outcomes[sendable[k]] = Some(o);
        }
    }
    // With the credentials refused, the rest waits for them (and is not sent for nothing).
    let unsent = refused.unwrap_or(EventOutcome::Retry {
        reason: "not sent: the receiver asked to wait".into(),
    });
    uniform(
        outcomes
            .into_iter()
            .map(|o| o.unwrap_or_else(|| unsent.clone()))
            .collect(),
        after,
    )
}

/// Per-event outcomes that are all the same keep a batch-level form, so the health report gets
/// the reason and a retry the server's `Retry-After` (events all to retry count as the same, with
/// the first reason; events all to retry of which some for refused credentials count as refused
/// credentials, so the destination reports it).
pub fn uniform(outcomes: Vec<EventOutcome>, after: Option<Duration>) -> SendOutcome {
    let Some(first) = outcomes.first() else {
        return SendOutcome::Delivered;
    };
    let all_retry = outcomes
        .iter()
        .all(|o| matches!(o, EventOutcome::Retry { .. } | EventOutcome::Unauthorized { .. }));
    if all_retry {
        if let Some(EventOutcome::Unauthorized { kind, reason }) =
            outcomes.iter().find(|o| matches!(o, EventOutcome::Unauthorized { .. }))
        {
            return SendOutcome::Unauthorized {
                kind: *kind,
                reason: reason.clone(),
            };
        }
    } else if outcomes.iter().any(|o| o != first) {
        return SendOutcome::PerEvent(outcomes);
    }
    match first.clone() {
        EventOutcome::Delivered => SendOutcome::Delivered,
        EventOutcome::Retry { reason } => SendOutcome::Retry { reason, after },
        EventOutcome::Rejected { reason } => SendOutcome::Rejected { reason },
        EventOutcome::Unauthorized { kind, reason } => SendOutcome::Unauthorized { kind, reason },
    }
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
        assert_eq!(parse_retry_after("-1", now), None);
        assert_eq!(parse_retry_after("1.5", now), Some(Duration::from_millis(1500)));
    }

    #[test]
    fn huge_retry_after_is_cut_to_the_ceiling() {
        let now = SystemTime::UNIX_EPOCH + Duration::from_secs(1_700_000_000);
        assert_eq!(parse_retry_after("100000", now), Some(MAX_RETRY_AFTER));
        assert_eq!(parse_retry_after("1e300", now), Some(MAX_RETRY_AFTER));
        let far = httpdate::fmt_http_date(now + Duration::from_secs(100_000));
        assert_eq!(parse_retry_after(&far, now), Some(MAX_RETRY_AFTER));
    }

    #[test]
    fn redirects_are_refused_naming_the_location_without_its_query() {
        use reqwest::StatusCode;
        let mut h = HeaderMap::new();
        assert_eq!(redirect_reason(StatusCode::OK, &h, None), None);
        assert!(redirect_reason(StatusCode::FOUND, &h, None)
            .unwrap()
            .contains("no Location"));
        h.insert(
            LOCATION,
            "http://user:pw@other.example:8080/ingest?sig=abc#f".parse().unwrap(),
        );
        let r = redirect_reason(StatusCode::TEMPORARY_REDIRECT, &h, None).unwrap();
        assert!(
            r.starts_with("HTTP 307: redirect to Location http://other.example:8080/ingest "),
            "{r}"
        );
        assert!(!r.contains("sig") && !r.contains("pw"), "{r}");
        h.insert(LOCATION, "/elsewhere?token=x".parse().unwrap());
        let r = redirect_reason(StatusCode::FOUND, &h, None).unwrap();
        assert!(r.contains("Location /elsewhere ") && !r.contains("token"), "{r}");
        let base = reqwest::Url::parse("https://h.example:8088/services/collector/event?sas=secret").unwrap();
        let r = redirect_reason(StatusCode::FOUND, &h, Some(&base)).unwrap();
        assert!(r.contains("Location https://h.example:8088/elsewhere "), "{r}");
        assert!(!r.contains("secret") && !r.contains("token"), "{r}");
    }

    #[test]
    fn batches_split_within_the_limit_and_oversized_events_stand_alone() {
        assert_eq!(split_by_size(&[4, 4, 4], 20, 2, 1), vec![0..3]);
        assert_eq!(split_by_size(&[4, 4, 4], 12, 2, 1), vec![0..2, 2..3]);
        assert_eq!(split_by_size(&[4, 50, 4], 12, 2, 1), vec![0..1, 1..2, 2..3]);
        assert_eq!(split_by_size(&[], 12, 2, 1), Vec::<Range<usize>>::new());
    }

    #[test]
    fn guids_are_random_version_4() {
        let c = random_guid();
        assert_eq!(c.len(), 36);
        assert_eq!(c.as_bytes()[14], b'4');
        assert_ne!(c, random_guid());
    }

    #[test]
    fn gzip_round_trips() {
        use std::io::Read;
        let z = gzip(b"hello hello hello");
        let mut out = String::new();
        flate2::read::GzDecoder::new(&z[..]).read_to_string(&mut out).unwrap();
        assert_eq!(out, "hello hello hello");
    }

    #[test]
    fn base_urls_lose_their_trailing_slash_and_must_be_http() {
        assert_eq!(
            base_url("d", "url", "https://h.example:8088/").unwrap(),
            "https://h.example:8088"
        );
        assert!(base_url("d", "url", "ftp://h.example").is_err());
        assert!(base_url("d", "url", "not a url").is_err());
    }
}
