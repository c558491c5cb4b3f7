//! TLS options of the HTTP SIEM destinations against stand-ins served over TLS with a CA made at
//! test time: server certificates are verified by default (an unknown CA fails), `tls.ca` adds
//! a CA, `tls.clientCertificate`/`tls.clientKey` answer a server that requires mutual TLS.

use siembridge::api::{ElasticsearchSpec, SiemDestinationSpec, SplunkHecSpec, TlsSpec};
use siembridge::collector::destinations::{build, Event, SendOutcome};
use siembridge::config::SecretSource;

mod common;
#[path = "common/siem/mod.rs"]
mod siem;

use siem::elasticsearch::Elasticsearch;
use siem::hec::Hec;

fn batch(run: &str) -> Vec<Event> {
    (0..3)
        .map(|i| Event::detached_with_id(format!("{{\"id\":{i}}}"), "entra", &format!("{run}-{i}")))
        .collect()
}

fn es(url: &str, tls: Option<TlsSpec>) -> SiemDestinationSpec {
    let mut spec = SiemDestinationSpec {
        elasticsearch: Some(ElasticsearchSpec {
            urls: vec![url.to_string()],
            // Raw records are no data stream documents (no `@timestamp`): a plain index.
            index: Some("siembridge-raw".into()),
            tls,
            ..Default::default()
        }),
        ..Default::default()
    };
    spec.retry.request_timeout_ms = 3000;
    spec
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn server_certificates_are_verified_and_a_ca_from_a_secret_is_trusted() {
    let pki = siem::tls::pki();
    let server = Elasticsearch::start_tls(&[], &pki, false).await;
    assert!(server.url.starts_with("https://"));

    // Verification is on by default: the test CA is unknown to the system roots.
    let untrusting = build("es", &es(&server.url, None), &SecretSource::Environment).unwrap();
    match untrusting.send(&batch("a")).await {
        SendOutcome::Retry { reason, .. } => {
            println!("tls without the CA: {reason}");
            assert!(
                reason.to_lowercase().contains("certificate") || reason.contains("UnknownIssuer"),
                "{reason}"
            );
        }
        other => panic!("expected a retriable TLS failure, got {other:?}"),
    }
    assert!(server.state.docs.lock().unwrap().is_empty());

    let ca = siem::set_secret("tls-es-ca", "ca.crt", &pki.ca_pem);
    let trusting = build(
        "es",
        &es(
            &server.url,
            Some(TlsSpec {
                ca: Some(ca),
                ..Default::default()
            }),
        ),
        &SecretSource::Environment,
    )
    .unwrap();
    assert_eq!(trusting.send(&batch("b")).await, SendOutcome::Delivered);
    assert_eq!(server.state.docs.lock().unwrap().len(), 3);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_certificate_answers_a_server_that_requires_mutual_tls() {
    let pki = siem::tls::pki();
    let hec = Hec::start_tls("tok-mtls", &pki, true).await;
    let spec = |with_client: bool| {
        let mut tls = TlsSpec {
            ca: Some(siem::set_secret("tls-hec-ca", "ca.crt", &pki.ca_pem)),
            ..Default::default()
        };
        if with_client {
            tls.client_certificate = Some(siem::set_secret("tls-hec-client", "tls.crt", &pki.client_cert_pem));
            tls.client_key = Some(siem::set_secret("tls-hec-client", "tls.key", &pki.client_key_pem));
        }
        let mut s = SiemDestinationSpec {
            splunk_hec: Some(SplunkHecSpec {
                url: hec.url.clone(),
                token: siem::set_secret("tls-hec", "token", "tok-mtls"),
                tls: Some(tls),
                ..Default::default()
            }),
            ..Default::default()
        };
        s.retry.request_timeout_ms = 3000;
        s
    };
    let anonymous = build("hec", &spec(false), &SecretSource::Environment).unwrap();
    assert!(matches!(anonymous.send(&batch("c")).await, SendOutcome::Retry { .. }));
    assert!(hec.state.indexed.lock().unwrap().is_empty());
    let mutual = build("hec", &spec(true), &SecretSource::Environment).unwrap();
    assert_eq!(mutual.send(&batch("d")).await, SendOutcome::Delivered);
    assert_eq!(hec.state.indexed.lock().unwrap().len(), 3);
}
