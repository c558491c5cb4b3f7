//! The connectivity check of a SiemDestination: a TCP connect with a short timeout to the host
//! and port the destination sends to. Behind a trait so tests never touch the network.

use std::time::Duration;

use crate::api::{DestinationKind, SiemDestinationSpec, SyslogTransport};

/// Where a destination's connectivity is checked.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum CheckTarget {
    /// Connect to `host:port` over TCP.
    Tcp { host: String, port: u16 },
    /// Nothing to connect to (stdout, file) or nothing a TCP connect can prove (syslog over
    /// UDP): reported as reachable with this note.
    NotNetworked(&'static str),
}

/// Why the destination cannot be checked from its spec.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error("{0}")]
pub struct TargetError(pub String);

/// The host and port a destination delivers to.
pub fn check_target(spec: &SiemDestinationSpec) -> Result<Vec<CheckTarget>, TargetError> {
    let kind = spec.kind().map_err(|e| TargetError(e.to_string()))?;
    Ok(match kind {
        DestinationKind::SplunkHec(s) => vec![url_target(&s.url)?],
        DestinationKind::Elasticsearch(s) => s.urls.iter().map(|u| url_target(u)).collect::<Result<_, _>>()?,
        DestinationKind::Syslog(s) => match s.transport {
            SyslogTransport::Udp => vec![CheckTarget::NotNetworked("syslog over UDP is not checked")],
            SyslogTransport::Tcp => vec![CheckTarget::Tcp {
                host: s.host.clone(),
                port: s.port.unwrap_or(514),
            }],
            SyslogTransport::Tls => vec![CheckTarget::Tcp {
                host: s.host.clone(),
                port: s.port.unwrap_or(6514),
            }],
        },
        DestinationKind::Sekoia(s) => vec![url_target(s.url.as_deref().unwrap_or("https://intake.sekoia.io"))?],
        DestinationKind::Sentinel(s) => vec![url_target(&s.endpoint)?],
        DestinationKind::AzureBlob(s) => vec![url_target(&s.account_url)?],
        DestinationKind::Http(s) => vec![url_target(&s.url)?],
        DestinationKind::Stdout(_) => vec![CheckTarget::NotNetworked("stdout is always reachable")],
        DestinationKind::File(_) => vec![CheckTarget::NotNetworked("a file is always reachable")],
    })
}

fn url_target(raw: &str) -> Result<CheckTarget, TargetError> {
    let url = reqwest::Url::parse(raw).map_err(|e| TargetError(format!("invalid URL: {e}")))?;
    let host = url
        .host_str()
        .ok_or_else(|| TargetError("URL has no host".to_string()))?
        .trim_start_matches('[')
        .trim_end_matches(']')
        .to_string();
    let port = url
        .port_or_known_default()
        .ok_or_else(|| TargetError(format!("URL of {host} has no port")))?;
    Ok(CheckTarget::Tcp { host, port })
}

/// Checks that a host accepts connections. The error names the host, never a credential.
#[async_trait::async_trait]
pub trait ConnectivityCheck: Send + Sync {
    /// `Ok(())` when `host:port` accepts a TCP connection.
    async fn check(&self, host: &str, port: u16) -> Result<(), String>;
}

/// A real TCP connect with a timeout.
#[derive(Clone, Debug)]
pub struct TcpConnect {
    /// Longest wait for the connection.
    pub timeout: Duration,
}

impl Default for TcpConnect {
    fn default() -> Self {
        TcpConnect {
            timeout: Duration::from_secs(3),
        }
    }
}

#[async_trait::async_trait]
impl ConnectivityCheck for TcpConnect {
    async fn check(&self, host: &str, port: u16) -> Result<(), String> {
        match tokio::time::timeout(self.timeout, tokio::net::TcpStream::connect((host, port))).await {
            Ok(Ok(_stream)) => Ok(()),
            Ok(Err(e)) => Err(format!("cannot connect to {host}:{port}: {e}")),
            Err(_) => Err(format!(
                "cannot connect to {host}:{port}: no answer within {}s",
                self.timeout.as_secs()
            )),
        }
    }
}

/// Run the check of every target; the destination is reachable when each target is (for
/// Elasticsearch, when any node is).
pub async fn check_destination(
    check: &dyn ConnectivityCheck,
    spec: &SiemDestinationSpec,
) -> Result<Result<String, String>, TargetError> {
    let targets = check_target(spec)?;
    let any_is_enough = spec.elasticsearch.is_some();
    let mut errors = Vec::new();
    let mut reached = Vec::new();
    for target in targets {
        match target {
            CheckTarget::NotNetworked(note) => reached.push(note.to_string()),
            CheckTarget::Tcp { host, port } => match check.check(&host, port).await {
                Ok(()) => reached.push(format!("{host}:{port} accepts connections")),
                Err(e) => errors.push(e),
            },
        }
    }
    Ok(if errors.is_empty() || (any_is_enough && !reached.is_empty()) {
        Ok(reached.join("; "))
    } else {
        Err(errors.join("; "))
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::api::{SecretKeySelector, SplunkHecSpec, StdoutSpec, SyslogSpec};

    #[test]
    fn splunk_target_is_the_url_host_and_port() {
        let spec = SiemDestinationSpec {
            splunk_hec: Some(SplunkHecSpec {
                url: "https://splunk.contoso.example:8088/services/collector".into(),
                token: SecretKeySelector {
                    name: "hec".into(),
                    key: "token".into(),
                },
                ..SplunkHecSpec::default()
            }),
            ..SiemDestinationSpec::default()
        };
        assert_eq!(
            check_target(&spec).unwrap(),
            vec![CheckTarget::Tcp {
                host: "splunk.contoso.example".into(),
                port: 8088
            }]
        );
    }

    #[test]
    fn syslog_tls_defaults_to_6514_and_https_to_443() {
        let syslog: SyslogSpec = serde_json::from_value(serde_json::json!({"host": "qradar.contoso.example"})).unwrap();
        let spec = SiemDestinationSpec {
            syslog: Some(syslog),
            ..SiemDestinationSpec::default()
        };
        assert_eq!(
            check_target(&spec).unwrap(),
            vec![CheckTarget::Tcp {
                host: "qradar.contoso.example".into(),
                port: 6514
            }]
        );
        assert_eq!(
            url_target("https://intake.sekoia.io").unwrap(),
            CheckTarget::Tcp {
                host: "intake.sekoia.io".into(),
                port: 443
            }
        );
    }

    #[test]
    fn stdout_needs_no_network() {
        let spec = SiemDestinationSpec {
            stdout: Some(StdoutSpec::default()),
            ..SiemDestinationSpec::default()
        };
        assert!(matches!(
            check_target(&spec).unwrap()[..],
            [CheckTarget::NotNetworked(_)]
        ));
    }

    #[tokio::test]
    async fn tcp_connect_reaches_a_local_listener_and_reports_a_closed_port() {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let check = TcpConnect::default();
        assert_eq!(check.check("127.0.0.1", port).await, Ok(()));
        drop(listener);
        let err = check.check("127.0.0.1", port).await.unwrap_err();
        assert!(err.contains("127.0.0.1"), "{err}");
    }
}
