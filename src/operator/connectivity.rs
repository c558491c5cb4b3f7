//! The connectivity check of a SiemDestination: a TCP connect with a short timeout to the host
//! and port the destination sends to, or, where the receiver has an endpoint that needs no
//! credentials, an HTTP GET of it: Splunk HEC `/services/collector/health` (a busy HEC answers
//! 503) and Elasticsearch `GET /`. The operator never sends a destination's credentials and
//! never writes them in status. Behind a trait so tests never touch the network.

use std::time::Duration;

use crate::api::{DestinationKind, SiemDestinationSpec, SyslogTransport, TlsSpec};

/// Where a destination's connectivity is checked.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum CheckTarget {
    /// Connect to `host:port` over TCP.
    Tcp { host: String, port: u16 },
    /// GET `url` (on `host:port`) without credentials and read the answer as `probe` says.
    Http {
        url: String,
        probe: HttpProbe,
        host: String,
        port: u16,
    },
    /// Nothing to connect to (stdout, file) or nothing a TCP connect can prove (syslog over
    /// UDP): reported as reachable with this note.
    NotNetworked(&'static str),
}

/// What an HTTP check's answer means.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum HttpProbe {
    /// HEC `/services/collector/health`: 200 healthy, 503 busy or unavailable (not ready).
    SplunkHealth,
    /// Elasticsearch `GET /`: 2xx or an authentication challenge (401/403) prove the cluster
    /// answers; 5xx does not.
    ElasticsearchRoot,
}

/// Why the destination cannot be checked from its spec.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error("{0}")]
pub struct TargetError(pub String);

/// The host and port a destination delivers to.
pub fn check_target(spec: &SiemDestinationSpec) -> Result<Vec<CheckTarget>, TargetError> {
    let kind = spec.kind().map_err(|e| TargetError(e.to_string()))?;
    Ok(match kind {
        DestinationKind::SplunkHec(s) => vec![http_target(
            &s.url,
            s.tls.as_ref(),
            HttpProbe::SplunkHealth,
            "/services/collector/health",
        )?],
        DestinationKind::Elasticsearch(s) => s
            .urls
            .iter()
            .map(|u| http_target(u, s.tls.as_ref(), HttpProbe::ElasticsearchRoot, "/"))
            .collect::<Result<_, _>>()?,
        DestinationKind::Syslog(s) => match s.transport {
            SyslogTransport::Udp => vec![CheckTarget::NotNetworked("syslog over UDP is not checked")],
            _ => vec![CheckTarget::Tcp {
                host: s.host.clone(),
                port: s.port_or_default(),
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

/// An HTTP check of `path` under the receiver's root, or a TCP check when the receiver uses TLS
/// settings from Secrets (CA, client certificate), which only the collector reads.
fn http_target(raw: &str, tls: Option<&TlsSpec>, probe: HttpProbe, path: &str) -> Result<CheckTarget, TargetError> {
    let CheckTarget::Tcp { host, port } = url_target(raw)? else {
        return Err(TargetError("URL has no host".to_string()));
    };
    if tls.is_some_and(|t| t.ca.is_some() || t.client_certificate.is_some() || t.insecure_skip_verify) {
        return Ok(CheckTarget::Tcp { host, port });
    }
    let mut root = raw.trim_end_matches('/');
    if probe == HttpProbe::SplunkHealth {
        for suffix in ["/services/collector/event", "/services/collector"] {
            root = root.strip_suffix(suffix).unwrap_or(root);
        }
    }
    Ok(CheckTarget::Http {
        url: format!("{root}{path}"),
        probe,
        host,
        port,
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

    /// An HTTP check: `Ok(what was seen)` when the receiver answers as ready. By default a TCP
    /// check of `host:port`.
    async fn check_http(&self, url: &str, probe: HttpProbe, host: &str, port: u16) -> Result<String, String> {
        let _ = (url, probe);
        self.check(host, port)
            .await
            .map(|()| format!("{host}:{port} accepts connections"))
    }
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

/// The start of an answer body, for a status message.
fn excerpt(body: &str) -> String {
    body.chars().take(160).collect::<String>().trim().to_string()
}

#[async_trait::async_trait]
impl ConnectivityCheck for TcpConnect {
    async fn check_http(&self, url: &str, probe: HttpProbe, host: &str, _port: u16) -> Result<String, String> {
        // The shared builder: a redirect is reported, never followed.
        let client = crate::collector::destinations::http_client::builder(self.timeout)
            .build()
            .map_err(|e| format!("HTTP client: {e}"))?;
        let response = client.get(url).send().await.map_err(|e| {
            let what = if e.is_timeout() {
                format!("no answer within {}s", self.timeout.as_secs())
            } else {
                let mut msg = String::from("cannot connect");
                let mut src = std::error::Error::source(&e);
                while let Some(s) = src {
                    msg.push_str(": ");
                    msg.push_str(&s.to_string());
                    src = s.source();
                }
                msg
            };
            format!("{host}: {what}")
        })?;
        let status = response.status();
        if let Some(reason) = crate::collector::destinations::http_client::redirect_refused(&response) {
            return Err(format!("{host}: {reason}"));
        }
        let body = response.text().await.unwrap_or_default();
        match probe {
            HttpProbe::SplunkHealth if status.is_success() => Ok(format!("Splunk HEC at {host} is healthy")),
            HttpProbe::SplunkHealth => Err(format!(
                "Splunk HEC at {host} is not healthy: HTTP {}: {}",
                status.as_u16(),
                excerpt(&body)
            )),
            HttpProbe::ElasticsearchRoot if status.is_success() => {
                let version = serde_json::from_str::<serde_json::Value>(&body)
                    .ok()
                    .and_then(|v| v["version"]["number"].as_str().map(str::to_string));
                Ok(match version {
                    Some(v) => format!("Elasticsearch {v} at {host} answers"),
                    None => format!("{host} answers"),
                })
            }
            HttpProbe::ElasticsearchRoot if status.as_u16() == 401 || status.as_u16() == 403 => Ok(format!(
                "{host} answers (authentication required; credentials are checked by the collector)"
            )),
            HttpProbe::ElasticsearchRoot => Err(format!(
                "Elasticsearch at {host} answers HTTP {}: {}",
                status.as_u16(),
                excerpt(&body)
            )),
        }
    }

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
            CheckTarget::Http { url, probe, host, port } => match check.check_http(&url, probe, &host, port).await {
                Ok(seen) => reached.push(seen),
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
            vec![CheckTarget::Http {
                url: "https://splunk.contoso.example:8088/services/collector/health".into(),
                probe: HttpProbe::SplunkHealth,
                host: "splunk.contoso.example".into(),
                port: 8088
            }]
        );
        // With a CA from a Secret, which the operator does not read, a TCP connect.
        let mut with_ca = spec.clone();
        with_ca.splunk_hec.as_mut().unwrap().tls = Some(crate::api::TlsSpec {
            ca: Some(SecretKeySelector {
                name: "ca".into(),
                key: "ca.crt".into(),
            }),
            ..Default::default()
        });
        assert!(matches!(check_target(&with_ca).unwrap()[..], [CheckTarget::Tcp { .. }]));
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

    async fn serve(status: u16, body: &'static str) -> (String, u16) {
        let app = axum::Router::new()
            .fallback(move || async move { (axum::http::StatusCode::from_u16(status).unwrap(), body) });
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
        (format!("http://127.0.0.1:{port}"), port)
    }

    #[tokio::test]
    async fn http_checks_read_hec_health_and_elasticsearch_root() {
        let check = TcpConnect::default();
        let (url, port) = serve(200, r#"{"text":"HEC is healthy","code":17}"#).await;
        let ok = check
            .check_http(
                &format!("{url}/services/collector/health"),
                HttpProbe::SplunkHealth,
                "127.0.0.1",
                port,
            )
            .await;
        assert!(ok.unwrap().contains("healthy"));
        let (url, port) = serve(503, r#"{"text":"Server is busy","code":9}"#).await;
        let busy = check
            .check_http(
                &format!("{url}/services/collector/health"),
                HttpProbe::SplunkHealth,
                "127.0.0.1",
                port,
            )
            .await
            .unwrap_err();
        assert!(busy.contains("503") && busy.contains("busy"), "{busy}");
        let (url, port) = serve(200, r#"{"version":{"number":"8.17.0"}}"#).await;
        let es = check
            .check_http(&url, HttpProbe::ElasticsearchRoot, "127.0.0.1", port)
            .await;
        assert!(es.unwrap().contains("8.17.0"));
        let (url, port) = serve(401, "{}").await;
        assert!(check
            .check_http(&url, HttpProbe::ElasticsearchRoot, "127.0.0.1", port)
            .await
            .is_ok());
        let (url, port) = serve(503, "{}").await;
        assert!(check
            .check_http(&url, HttpProbe::ElasticsearchRoot, "127.0.0.1", port)
            .await
            .is_err());
        let refused = check
            .check_http("http://127.0.0.1:9/", HttpProbe::ElasticsearchRoot, "127.0.0.1", 9)
            .await;
        assert!(refused.unwrap_err().starts_with("127.0.0.1: cannot connect"));
    }
}
