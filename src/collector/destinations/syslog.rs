//! `syslog`: RFC 5424 messages over TCP or TLS (RFC 6587 octet counting; RFC 5425), RELP
//! (plain or in TLS; [`super::relp`]) or UDP (RFC 5426), with the event as JSON, LEEF 2.0 (QRadar)
//! or CEF (docs/PROTOCOLS.md sections 7.3, 7.4).
//!
//! Message: `<PRI>1 TIMESTAMP HOSTNAME APP-NAME - MSGID [siembridge@32473 id=".." logsource=".."] MSG`
//! - PRI = facility * 8 + a syslog severity mapped from the event's 0-10 severity (the CEF rule:
//!   `event.severity`, else 5 for alerts and failures, 3 otherwise): 9-10 critical, 7-8 error,
//!   5-6 warning, 4 notice, 0-3 informational.
//! - TIMESTAMP is the event's time (ECS `@timestamp`, else the record's `time`, ...) in UTC with
//!   milliseconds, else the send time. HOSTNAME is the spec's `hostname`, else the event's
//!   LogSource name: stable across restarts, rollouts and replicas, since QRadar keys its log
//!   sources on it (neither the pod's name nor the host an event is about, which would make a
//!   new log source per pod or per device). MSGID is `event.dataset`, else the record's
//!   `category`. Header fields are cut to the RFC's lengths and limited to printable ASCII
//!   without spaces.
//! - The structured data element carries the event's stable id and its LogSource, so a SIEM can
//!   drop re-deliveries. `32473` is the private enterprise number RFC 5612 reserves for
//!   documentation, used until siembridge has its own.
//! - MSG is sent without a BOM: QRadar and several receivers keep the BOM as part of the payload.
//!
//! Delivery over RELP: each message is one RELP command and the receiver answers each one; a
//! message is delivered when its `200` arrives, and the messages left unanswered by a broken
//! session are retried on a new one (at least once; at most the RELP window of 128 duplicates
//! per broken session, logged with their count).
//!
//! Delivery over TCP and TLS, which have no acknowledgement: a batch is written to one
//! connection as octet-counted frames and flushed, then the connection must stay up for
//! `confirmDelayMs`: a read on it during that time sees a receiver that resets or closes it
//! (a receiver that dies with unread data resets), and the whole batch is sent again on a new
//! connection. Before a pooled connection is reused, a non-blocking read tells whether the
//! receiver closed it. What remains unseen: a receiver that fails later than `confirmDelayMs`
//! after the write while the batch still sat unread in its socket buffer, or read but not yet
//! stored, and bytes still in this side's send buffer after the delay (a stalled network).
//! The `syslog_rsyslog` tests measure both transports against receivers that reset mid-stream.
//!
//! Size limit: a message longer than `maxMessageBytes` is dead-lettered, not truncated, on every
//! transport (UDP datagrams are further capped at 65 507 bytes). A cut JSON, LEEF or CEF payload
//! would be parsed wrongly or dropped by the SIEM; the dead letter keeps the whole record with
//! the reason, where an operator can see and replay it.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer, ServerName};
use serde_json::Value;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::{TcpStream, UdpSocket};
use tokio_rustls::TlsConnector;

use super::relp::{MessageOutcome, RelpSession};
use super::{BuildError, Destination, Event, EventOutcome, SendOutcome};
use crate::api::{SyslogPayload, SyslogSpec, SyslogTransport, TlsSpec};
use crate::collector::destinations::azure_blob::parse_time;
use crate::collector::secrets::resolve;
use crate::config::SecretSource;
use crate::normalize::cef::{self, CefOptions};
use crate::normalize::leef::{self, LeefOptions};

/// Largest UDP payload over IPv4.
const UDP_MAX: usize = 65_507;
/// Connections kept open per destination (one per concurrent sender is enough).
const POOL_MAX: usize = 8;
/// Time allowed for a TCP connect plus the TLS handshake.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
/// Time a new TLS session is given to be refused (client certificate checked after the
/// client's handshake in TLS 1.3).
const TLS_SETTLE: Duration = Duration::from_millis(200);

/// An open stream to the receiver.
trait Stream: AsyncRead + AsyncWrite + Unpin + Send {}
impl<T: AsyncRead + AsyncWrite + Unpin + Send> Stream for T {}

/// Sends events to one syslog receiver.
pub struct SyslogDestination {
    host: String,
    port: u16,
    transport: SyslogTransport,
    payload: SyslogPayload,
    app_name: String,
    facility: u8,
    max_message_bytes: usize,
    /// The spec's HOSTNAME; `None`: each event's LogSource name.
    hostname: Option<String>,
    /// TCP and TLS: how long a connection must stay up after a write for the batch to count.
    confirm_delay: Duration,
    tls: Option<(TlsConnector, ServerName<'static>)>,
    /// Idle TCP or TLS connections.
    pool: Mutex<Vec<Box<dyn Stream>>>,
    /// Idle RELP sessions.
    relp_pool: Mutex<Vec<RelpSession<Box<dyn Stream>>>>,
    udp: tokio::sync::Mutex<Option<Arc<UdpSocket>>>,
    cef: CefOptions,
    leef: LeefOptions,
}

impl std::fmt::Debug for SyslogDestination {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SyslogDestination")
            .field("host", &self.host)
            .field("port", &self.port)
            .field("transport", &self.transport)
            .finish_non_exhaustive()
    }
}

impl SyslogDestination {
    /// Build from the spec; TLS material is read from Secrets now.
    pub fn new(name: &str, spec: &SyslogSpec, secrets: &SecretSource) -> Result<Self, BuildError> {
        let tls = if spec.transport.is_tls() {
            let default = TlsSpec::default();
            let t = spec.tls.as_ref().unwrap_or(&default);
            Some(tls_connector(name, &spec.host, t, secrets)?)
        } else {
            None
        };
        Ok(SyslogDestination {
            host: spec.host.clone(),
            port: spec.port_or_default(),
            transport: spec.transport,
            payload: spec.payload,
            app_name: header_field(&spec.app_name, 48),
            facility: spec.facility.min(23),
            max_message_bytes: spec.max_message_bytes as usize,
            hostname: spec.hostname.as_deref().map(|h| header_field(h, 255)),
            confirm_delay: Duration::from_millis(u64::from(spec.confirm_delay_ms)),
            tls,
            pool: Mutex::new(Vec::new()),
            relp_pool: Mutex::new(Vec::new()),
            udp: tokio::sync::Mutex::new(None),
            cef: CefOptions::default(),
            leef: LeefOptions::default(),
        })
    }

    /// Connectivity check for the SiemDestination `Ready` condition: a TCP connect and, with
    /// TLS, a full handshake (which proves the CA, the server name and a client certificate);
    /// with RELP also the session `open`. UDP has nothing to check.
    pub async fn check(&self) -> Result<(), String> {
        match self.transport {
            SyslogTransport::Udp => Ok(()),
            SyslogTransport::Relp | SyslogTransport::RelpTls => {
                let session = self.relp_session().await?;
                self.relp_pool.lock().unwrap_or_else(|p| p.into_inner()).push(session);
                Ok(())
            }
            SyslogTransport::Tcp | SyslogTransport::Tls => self.connect().await.map(|_| ()),
        }
    }

    /// The RFC 5424 message of one event (without framing).
    pub fn message(&self, event: &Event) -> Vec<u8> {
        // ECS bodies may nest a few levels deeper than serde_json's default limit allows.
        let doc: Value = crate::normalize::parse_document(&event.body).unwrap_or(Value::Null);
        let severity = match cef::severity(&doc) {
            9.. => 2,
            7..=8 => 3,
            5..=6 => 4,
            4 => 5,
            _ => 6,
        };
        let pri = u32::from(self.facility) * 8 + severity;
        let time = [
            "@timestamp",
            "time",
            "CreationTime",
            "createdDateTime",
            "activityDateTime",
            "Timestamp",
        ]
        .iter()
        .find_map(|k| doc.get(*k).and_then(Value::as_str).and_then(parse_time))
        .unwrap_or_else(Utc::now);
        let hostname = match &self.hostname {
            Some(h) => h.clone(),
            None => header_field(&event.log_source, 255),
        };
        let msgid = cef::text(&doc, "event.dataset")
            .or_else(|| doc.get("category").and_then(Value::as_str).map(str::to_string))
            .map(|m| header_field(&m, 32))
            .unwrap_or_else(|| "-".into());
        let mut out = format!(
            "<{pri}>1 {} {hostname} {} - {msgid} [siembridge@32473 id=\"{}\" logsource=\"{}\"] ",
            rfc3339(time),
            self.app_name,
            sd_escape(&event.id),
            sd_escape(&event.log_source),
        )
        .into_bytes();
        match self.payload {
            SyslogPayload::Json => out.extend_from_slice(&event.body),
            SyslogPayload::Cef => out.extend_from_slice(cef::encode(&doc, &self.cef).as_bytes()),
            SyslogPayload::Leef => out.extend_from_slice(leef::encode(&doc, &self.leef).as_bytes()),
        }
        out
    }

    async fn connect(&self) -> Result<Box<dyn Stream>, String> {
        let addr = (self.host.as_str(), self.port);
        let tcp = tokio::time::timeout(CONNECT_TIMEOUT, TcpStream::connect(addr))
            .await
            .map_err(|_| format!("connect to {}:{} timed out", self.host, self.port))?
            .map_err(|e| format!("connect to {}:{}: {e}", self.host, self.port))?;
        let _ = tcp.set_nodelay(true);
        match &self.tls {
            None => Ok(Box::new(tcp)),
            Some((connector, server_name)) => {
                let tls = tokio::time::timeout(CONNECT_TIMEOUT, connector.connect(server_name.clone(), tcp))
                    .await
                    .map_err(|_| format!("TLS handshake with {}:{} timed out", self.host, self.port))?
                    .map_err(|e| format!("TLS handshake with {}:{}: {e}", self.host, self.port))?;
                let mut stream: Box<dyn Stream> = Box::new(tls);
                // In TLS 1.3 the client finishes its handshake before the server has checked the
                // client certificate: a refusal arrives as an alert just after. Wait for it
                // briefly, once per connection, so a refused certificate is an error rather than
                // a batch written into a session the receiver is about to drop.
                let mut buf = [0u8; 64];
                match tokio::time::timeout(TLS_SETTLE, stream.read(&mut buf)).await {
                    Err(_) | Ok(Ok(1..)) => Ok(stream),
                    Ok(Ok(0)) => Err(format!(
                        "TLS session with {}:{} closed by the receiver right after the handshake (client \
                         certificate refused?)",
                        self.host, self.port
                    )),
                    Ok(Err(e)) => Err(format!("TLS session with {}:{}: {e}", self.host, self.port)),
                }
            }
        }
    }

    /// A pooled connection the receiver has not closed, else a new one.
    async fn stream(&self) -> Result<Box<dyn Stream>, String> {
        loop {
            let pooled = self.pool.lock().unwrap_or_else(|p| p.into_inner()).pop();
            let Some(mut s) = pooled else { break };
            if still_open(&mut s).await {
                return Ok(s);
            }
            tracing::debug!(host = %self.host, port = self.port, "syslog receiver closed a pooled connection");
        }
        self.connect().await
    }

    /// TCP or TLS: write the messages as octet-counted frames, then hold the connection for the
    /// confirmation delay. `Err` means none of them counts as delivered.
    async fn send_stream(&self, messages: &[Vec<u8>]) -> Result<(), String> {
        let mut frames = Vec::with_capacity(messages.iter().map(|m| m.len() + 8).sum());
        for m in messages {
            frames.extend_from_slice(m.len().to_string().as_bytes());
            frames.push(b' ');
            frames.extend_from_slice(m);
        }
        let mut s = self.stream().await?;
        let written = async {
            s.write_all(&frames).await?;
            s.flush().await
        }
        .await;
        if let Err(e) = written {
            return Err(format!("write to {}:{}: {e}", self.host, self.port));
        }
        if let Err(why) = stays_up(&mut s, self.confirm_delay).await {
            tracing::warn!(
                host = %self.host,
                port = self.port,
                messages = messages.len(),
                "syslog receiver {why} within confirmDelayMs of the write; the batch is sent again"
            );
            return Err(format!(
                "{}:{} {why} within confirmDelayMs ({} ms) of the write",
                self.host,
                self.port,
                self.confirm_delay.as_millis()
            ));
        }
        let mut pool = self.pool.lock().unwrap_or_else(|p| p.into_inner());
        if pool.len() < POOL_MAX {
            pool.push(s);
        }
        Ok(())
    }

    /// An idle RELP session the receiver has not closed, else a new one.
    async fn relp_session(&self) -> Result<RelpSession<Box<dyn Stream>>, String> {
        loop {
            let pooled = self.relp_pool.lock().unwrap_or_else(|p| p.into_inner()).pop();
            let Some(mut s) = pooled else { break };
            if s.still_open().await {
                return Ok(s);
            }
            tracing::debug!(host = %self.host, port = self.port, "RELP receiver closed a pooled session");
        }
        let stream = self.connect().await?;
        RelpSession::open(stream)
            .await
            .map_err(|e| format!("{}:{}: {e}", self.host, self.port))
    }

    /// RELP: one outcome per message, from the receiver's answers. `Err` when nothing was
    /// answered (no session, or it broke before the first answer).
    async fn send_relp(&self, messages: &[Vec<u8>]) -> Result<Vec<EventOutcome>, String> {
        let mut session = self.relp_session().await?;
        let (outcomes, usable) = session.send(messages).await;
        if usable {
            let mut pool = self.relp_pool.lock().unwrap_or_else(|p| p.into_inner());
            if pool.len() < POOL_MAX {
                pool.push(session);
            }
        }
        let acked = outcomes.iter().filter(|o| **o == MessageOutcome::Acked).count();
        let unanswered = outcomes
            .iter()
            .filter(|o| matches!(o, MessageOutcome::Unanswered(_)))
            .count();
        if unanswered > 0 {
            // The receiver may hold some of these already (answer lost with the connection):
            // sending them again may duplicate at most this many.
            tracing::warn!(
                host = %self.host,
                port = self.port,
                acked,
                unanswered,
                "RELP session ended with messages unanswered; they are sent again (at most {unanswered} duplicates)"
            );
        }
        let first_unanswered = outcomes.iter().find_map(|o| match o {
            MessageOutcome::Unanswered(why) => Some(why.clone()),
            _ => None,
        });
        if let (0, Some(why)) = (acked, &first_unanswered) {
            if unanswered == outcomes.len() {
                return Err(format!("RELP {}:{}: {why}", self.host, self.port));
            }
        }
        Ok(outcomes
            .into_iter()
            .map(|o| match o {
                MessageOutcome::Acked => EventOutcome::Delivered,
                MessageOutcome::Refused(text) => EventOutcome::Retry {
                    reason: format!("RELP receiver {}:{} refused the message: {text}", self.host, self.port),
                },
                MessageOutcome::Unanswered(why) => EventOutcome::Retry {
                    reason: format!("RELP {}:{}: {why}; not acknowledged", self.host, self.port),
                },
            })
            .collect())
    }

    /// UDP: one datagram per message; a failed send is retried.
    async fn send_udp(&self, messages: &[Vec<u8>]) -> Result<Vec<EventOutcome>, String> {
        let socket = self.udp_socket().await?;
        let mut outcomes = Vec::with_capacity(messages.len());
        for m in messages {
            outcomes.push(match socket.send(m).await {
                Ok(_) => EventOutcome::Delivered,
                Err(e) => EventOutcome::Retry {
                    reason: format!("UDP send to {}:{}: {e}", self.host, self.port),
                },
            });
        }
        Ok(outcomes)
    }

    async fn udp_socket(&self) -> Result<Arc<UdpSocket>, String> {
        let mut slot = self.udp.lock().await;
        if let Some(s) = slot.as_ref() {
            return Ok(s.clone());
        }
        let target = tokio::net::lookup_host((self.host.as_str(), self.port))
            .await
            .map_err(|e| format!("resolve {}: {e}", self.host))?
            .next()
            .ok_or_else(|| format!("{} has no address", self.host))?;
        let bind = if target.is_ipv4() { "0.0.0.0:0" } else { "[::]:0" };
        let socket = UdpSocket::bind(bind).await.map_err(|e| format!("UDP socket: {e}"))?;
        socket
            .connect(target)
            .await
            .map_err(|e| format!("UDP connect {target}: {e}"))?;
        let socket = Arc::new(socket);
        *slot = Some(socket.clone());
        Ok(socket)
    }
}

/// Whether the connection stays up for `delay`: reads until then, and an end of stream or an
/// error (a reset) means the receiver let go of it. Returns what it did.
async fn stays_up(s: &mut Box<dyn Stream>, delay: Duration) -> Result<(), &'static str> {
    if delay.is_zero() {
        return Ok(());
    }
    let deadline = tokio::time::Instant::now() + delay;
    let mut buf = [0u8; 256];
    loop {
        match tokio::time::timeout_at(deadline, s.read(&mut buf)).await {
            Err(_) => return Ok(()),
            Ok(Ok(0)) => return Err("closed the connection"),
            Ok(Err(_)) => return Err("reset the connection"),
            // A syslog receiver sends nothing; ignore whatever it did send.
            Ok(Ok(_)) => continue,
        }
    }
}

/// Whether the receiver still holds the connection open: a read that would block means yes;
/// end of stream or an error means it closed (or reset) it.
async fn still_open(s: &mut Box<dyn Stream>) -> bool {
    let mut buf = [0u8; 256];
    match tokio::time::timeout(Duration::ZERO, s.read(&mut buf)).await {
        Err(_) => true,
        Ok(Ok(0)) | Ok(Err(_)) => false,
        // A syslog receiver sends nothing; ignore whatever it did send.
        Ok(Ok(_)) => true,
    }
}

#[async_trait]
impl Destination for SyslogDestination {
    async fn send(&self, batch: &[Event]) -> SendOutcome {
        let limit = match self.transport {
            SyslogTransport::Udp => self.max_message_bytes.min(UDP_MAX),
            _ => self.max_message_bytes,
        };
        let mut outcomes = Vec::with_capacity(batch.len());
        let mut messages = Vec::with_capacity(batch.len());
        for e in batch {
            let m = self.message(e);
            if m.len() > limit {
                outcomes.push(EventOutcome::Rejected {
                    reason: format!(
                        "syslog message of {} bytes exceeds maxMessageBytes {limit}; not truncated",
                        m.len()
                    ),
                });
            } else {
                outcomes.push(EventOutcome::Delivered);
                messages.push(m);
            }
        }
        let all_fit = messages.len() == batch.len();
        if !messages.is_empty() {
            let sent = match self.transport {
                SyslogTransport::Udp => self.send_udp(&messages).await,
                SyslogTransport::Tcp | SyslogTransport::Tls => self
                    .send_stream(&messages)
                    .await
                    .map(|()| vec![EventOutcome::Delivered; messages.len()]),
                SyslogTransport::Relp | SyslogTransport::RelpTls => self.send_relp(&messages).await,
            };
            let sent = match sent {
                Ok(sent) => sent,
                Err(reason) if all_fit => return SendOutcome::Retry { reason, after: None },
                Err(reason) => vec![EventOutcome::Retry { reason }; messages.len()],
            };
            // The messages are the events still marked delivered, in order.
            let mut sent = sent.into_iter();
            for o in outcomes.iter_mut().filter(|o| **o == EventOutcome::Delivered) {
                *o = sent.next().unwrap_or_else(|| EventOutcome::Retry {
                    reason: "fewer outcomes than messages".into(),
                });
            }
        }
        if outcomes.iter().all(|o| *o == EventOutcome::Delivered) {
            SendOutcome::Delivered
        } else {
            SendOutcome::PerEvent(outcomes)
        }
    }
}

/// RFC 3339 UTC with milliseconds: `2025-01-01T10:03:19.123Z`.
fn rfc3339(t: DateTime<Utc>) -> String {
    t.format("%Y-%m-%dT%H:%M:%S%.3fZ").to_string()
}

/// A header field: printable US-ASCII without spaces, at most `max` bytes, `-` when empty.
fn header_field(s: &str, max: usize) -> String {
    let out: String = s.chars().filter(|c| c.is_ascii_graphic()).take(max).collect();
    if out.is_empty() {
        "-".into()
    } else {
        out
    }
}

/// An SD PARAM-VALUE: `"`, `\` and `]` escaped with `\`.
fn sd_escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        if matches!(c, '"' | '\\' | ']') {
            out.push('\\');
        }
        out.push(c);
    }
    out
}

fn tls_connector(
    name: &str,
    host: &str,
    tls: &TlsSpec,
    secrets: &SecretSource,
) -> Result<(TlsConnector, ServerName<'static>), BuildError> {
    let invalid = |message: String| BuildError::Invalid {
        name: name.to_string(),
        message,
    };
    let secret = |sel| {
        resolve(secrets, sel).map_err(|source| BuildError::Secret {
            name: name.to_string(),
            source,
        })
    };
    let mut roots = rustls::RootCertStore::empty();
    let native = rustls_native_certs::load_native_certs();
    roots.add_parsable_certificates(native.certs);
    if let Some(ca) = &tls.ca {
        let pem = secret(ca)?;
        let mut added = 0;
        for cert in CertificateDer::pem_slice_iter(pem.expose().as_bytes()) {
            let cert = cert.map_err(|e| invalid(format!("tls.ca: {e}")))?;
            roots.add(cert).map_err(|e| invalid(format!("tls.ca: {e}")))?;
            added += 1;
        }
        if added == 0 {
            return Err(invalid("tls.ca holds no PEM certificate".into()));
        }
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let builder = rustls::ClientConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()
        .map_err(|e| invalid(format!("TLS: {e}")))?
        .with_root_certificates(roots);
    let mut config = match (&tls.client_certificate, &tls.client_key) {
        (Some(cert), Some(key)) => {
            let certs = CertificateDer::pem_slice_iter(secret(cert)?.expose().as_bytes())
                .collect::<Result<Vec<_>, _>>()
                .map_err(|e| invalid(format!("tls.clientCertificate: {e}")))?;
            let key = PrivateKeyDer::from_pem_slice(secret(key)?.expose().as_bytes())
                .map_err(|_| invalid("tls.clientKey is not a PEM private key".into()))?;
            builder
                .with_client_auth_cert(certs, key)
                .map_err(|e| invalid(format!("tls client certificate: {e}")))?
        }
        _ => builder.with_no_client_auth(),
    };
    if tls.insecure_skip_verify {
        config
            .dangerous()
            .set_certificate_verifier(Arc::new(AcceptAnyCertificate(provider)));
    }
    let server = tls.server_name.clone().unwrap_or_else(|| host.to_string());
    let server_name =
        ServerName::try_from(server.clone()).map_err(|e| invalid(format!("server name {server:?}: {e}")))?;
    Ok((TlsConnector::from(Arc::new(config)), server_name))
}

/// `insecureSkipVerify`: accept any server certificate (signatures are still checked).
#[derive(Debug)]
struct AcceptAnyCertificate(Arc<rustls::crypto::CryptoProvider>);

impl rustls::client::danger::ServerCertVerifier for AcceptAnyCertificate {
    fn verify_server_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        _now: rustls_pki_types::UnixTime,
    ) -> Result<rustls::client::danger::ServerCertVerified, rustls::Error> {
        Ok(rustls::client::danger::ServerCertVerified::assertion())
    }
    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &rustls::DigitallySignedStruct,
    ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(message, cert, dss, &self.0.signature_verification_algorithms)
    }
    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &rustls::DigitallySignedStruct,
    ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(message, cert, dss, &self.0.signature_verification_algorithms)
    }
    fn supported_verify_schemes(&self) -> Vec<rustls::SignatureScheme> {
        self.0.signature_verification_algorithms.supported_schemes()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn dest(payload: SyslogPayload) -> SyslogDestination {
        let spec = SyslogSpec {
            host: "127.0.0.1".into(),
            port: Some(1),
            transport: SyslogTransport::Tcp,
            payload,
            app_name: "siembridge".into(),
            facility: 13,
            max_message_bytes: 65_536,
            tls: None,
            confirm_delay_ms: 100,
            hostname: None,
        };
        SyslogDestination::new("t", &spec, &SecretSource::Environment).unwrap()
    }

    #[test]
    fn rfc5424_header_from_the_event() {
        let d = dest(SyslogPayload::Json);
        let body = r#"{"@timestamp":"2025-01-01T10:03:19Z","event":{"dataset":"azure.signinlogs","outcome":"failure"},"host":{"name":"pc 01"}}"#;
        let e = Event::detached_with_id(body, "entra", "id\"with]\\odd");
        let m = String::from_utf8(d.message(&e)).unwrap();
        assert_eq!(
            m,
            format!(
                "<108>1 2025-01-01T10:03:19.000Z entra siembridge - azure.signinlogs \
                 [siembridge@32473 id=\"id\\\"with\\]\\\\odd\" logsource=\"entra\"] {body}"
            )
        );
    }

    #[test]
    fn hostname_is_the_spec_s_else_the_log_source_never_the_pod_or_the_event_host() {
        let body = r#"{"host":{"name":"pc01"}}"#;
        let header_host = |d: &SyslogDestination, log_source: &str| {
            let m = String::from_utf8(d.message(&Event::detached_with_id(body, log_source, "x"))).unwrap();
            m.split(' ').nth(2).unwrap().to_string()
        };
        let d = dest(SyslogPayload::Json);
        assert_eq!(header_host(&d, "tenant-a entra signins"), "tenant-aentrasignins");
        assert_eq!(header_host(&d, "intune"), "intune");
        let mut spec = SyslogSpec {
            host: "127.0.0.1".into(),
            port: Some(1),
            transport: SyslogTransport::Tcp,
            payload: SyslogPayload::Leef,
            app_name: "siembridge".into(),
            facility: 13,
            max_message_bytes: 65_536,
            tls: None,
            confirm_delay_ms: 100,
            hostname: Some("m365-qradar".into()),
        };
        let fixed = SyslogDestination::new("t", &spec, &SecretSource::Environment).unwrap();
        assert_eq!(header_host(&fixed, "intune"), "m365-qradar");
        spec.hostname = Some("has space".into());
        let cleaned = SyslogDestination::new("t", &spec, &SecretSource::Environment).unwrap();
        assert_eq!(header_host(&cleaned, "intune"), "hasspace");
    }

    #[test]
    fn informational_default_and_nil_msgid() {
        let d = dest(SyslogPayload::Json);
        let e = Event::detached_with_id("{\"a\":1}", "s", "x");
        let m = String::from_utf8(d.message(&e)).unwrap();
        // facility 13 * 8 + informational 6
        assert!(m.starts_with("<110>1 "), "{m}");
        assert!(
            m.contains(" siembridge - - [siembridge@32473 id=\"x\" logsource=\"s\"] {\"a\":1}"),
            "{m}"
        );
    }

    #[test]
    fn header_fields_are_printable_ascii_and_bounded() {
        assert_eq!(header_field("a b\tc\u{e9}", 255), "abc");
        assert_eq!(header_field("", 5), "-");
        assert_eq!(header_field(&"x".repeat(40), 32).len(), 32);
    }

    #[tokio::test]
    async fn oversized_messages_are_dead_lettered_not_truncated() {
        let spec = SyslogSpec {
            host: "127.0.0.1".into(),
            port: Some(9),
            transport: SyslogTransport::Udp,
            payload: SyslogPayload::Json,
            app_name: "siembridge".into(),
            facility: 13,
            max_message_bytes: 480,
            tls: None,
            confirm_delay_ms: 100,
            hostname: None,
        };
        let d = SyslogDestination::new("t", &spec, &SecretSource::Environment).unwrap();
        let big = format!("{{\"a\":\"{}\"}}", "x".repeat(600));
        let batch = [Event::detached(big, "s")];
        match d.send(&batch).await {
            SendOutcome::PerEvent(o) => {
                assert!(
                    matches!(&o[0], EventOutcome::Rejected { reason } if reason.contains("exceeds maxMessageBytes 480"))
                )
            }
            other => panic!("{other:?}"),
        }
    }
}
