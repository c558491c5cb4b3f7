//! The client-credentials token provider against the Entra token endpoint stand-in: caching per
//! scope, refresh before expiry, single flight, AADSTS errors that name the code and never the
//! secret, transient failures with `Retry-After`.

mod common;

use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use common::entra::Entra;
use siembridge::collector::auth::{AuthError, ClientCredential, TokenProvider};
use siembridge::collector::secrets::SecretValue;

const TENANT: &str = "11111111-2222-3333-4444-555555555555";
const APP: &str = "aaaaaaaa-bbbb-cccc-dddd-eeeeeeeeeeee";
const SECRET: &str = "test-secret-value-do-not-log";
const GRAPH: &str = "https://graph.microsoft.com/.default";
const MANAGE: &str = "https://manage.office.com/.default";

fn provider(entra: &Entra, secret: &str) -> TokenProvider {
    TokenProvider::new(
        &entra.authority,
        TENANT,
        APP,
        ClientCredential::Secret(SecretValue::new(secret)),
    )
    .unwrap()
}

#[tokio::test]
async fn tokens_are_cached_per_scope_and_shared_by_concurrent_callers() {
    let entra = Entra::start(TENANT, APP, SECRET).await;
    let p = Arc::new(provider(&entra, SECRET));
    let mut tasks = Vec::new();
    for _ in 0..8 {
        let p = p.clone();
        tasks.push(tokio::spawn(async move {
            p.token(GRAPH).await.unwrap().secret().to_string()
        }));
    }
    let mut tokens = Vec::new();
    for t in tasks {
        tokens.push(t.await.unwrap());
    }
    assert!(tokens.windows(2).all(|w| w[0] == w[1]), "one token for one scope");
    assert!(entra.state.valid(&tokens[0], GRAPH));
    let manage = p.token(MANAGE).await.unwrap();
    assert_ne!(manage.secret(), tokens[0]);
    assert!(entra.state.valid(manage.secret(), MANAGE));
    assert_eq!(entra.state.requests.load(Ordering::SeqCst), 2, "one request per scope");
}

#[tokio::test]
async fn a_short_lived_token_is_renewed_before_it_expires() {
    let entra = Entra::start(TENANT, APP, SECRET).await;
    entra.state.expires_in.store(2, Ordering::SeqCst);
    let p = provider(&entra, SECRET);
    let first = p.token(GRAPH).await.unwrap();
    assert_eq!(
        p.token(GRAPH).await.unwrap().secret(),
        first.secret(),
        "fresh token reused"
    );
    // Renewed at 80 % of a 2 s lifetime: before expiry.
    tokio::time::sleep(Duration::from_millis(1700)).await;
    let second = p.token(GRAPH).await.unwrap();
    assert_ne!(second.secret(), first.secret());
    assert!(second.expires_at > first.expires_at);
    p.invalidate(GRAPH).await;
    let third = p.token(GRAPH).await.unwrap();
    assert_ne!(third.secret(), second.secret(), "invalidate forces a new token");
    assert_eq!(entra.state.requests.load(Ordering::SeqCst), 3);
}

#[tokio::test]
async fn a_bad_secret_is_rejected_with_its_aadsts_code_and_never_printed() {
    let entra = Entra::start(TENANT, APP, SECRET).await;
    let wrong = "wrong-secret-value-1234";
    let err = provider(&entra, wrong).token(GRAPH).await.unwrap_err();
    let text = format!("{err} {err:?}");
    assert!(matches!(err, AuthError::Rejected { .. }), "{text}");
    assert!(!err.is_transient());
    assert_eq!(err.codes(), &[7000215]);
    assert!(text.contains("AADSTS7000215"), "{text}");
    assert!(text.contains("invalid_client"), "{text}");
    assert!(!text.contains(wrong) && !text.contains(SECRET), "{text}");

    let unknown_tenant = TokenProvider::new(
        &entra.authority,
        "99999999-2222-3333-4444-555555555555",
        APP,
        ClientCredential::Secret(SecretValue::new(SECRET)),
    )
    .unwrap();
    let err = unknown_tenant.token(GRAPH).await.unwrap_err();
    assert_eq!(err.codes(), &[90002], "{err}");

    let bad_scope = provider(&entra, SECRET)
        .token("https://graph.microsoft.com/User.Read")
        .await
        .unwrap_err();
    assert_eq!(bad_scope.codes(), &[70011], "{bad_scope}");
}

#[tokio::test]
async fn unavailability_is_transient_and_recovers() {
    let entra = Entra::start(TENANT, APP, SECRET).await;
    entra.state.fail_next.store(1, Ordering::SeqCst);
    let p = provider(&entra, SECRET);
    let err = p.token(GRAPH).await.unwrap_err();
    assert!(err.is_transient(), "{err}");
    assert!(err.to_string().contains("AADSTS90006"), "{err}");
    assert!(p.token(GRAPH).await.is_ok());

    let dead = TokenProvider::new(
        "http://127.0.0.1:9",
        TENANT,
        APP,
        ClientCredential::Secret(SecretValue::new(SECRET)),
    )
    .unwrap();
    assert!(dead.token(GRAPH).await.unwrap_err().is_transient());
}

/// A self-signed RSA certificate and its key, made for the test (nothing stored in the repo).
fn test_certificate() -> (String, String, Vec<u8>, Vec<u8>) {
    let key = rcgen::KeyPair::generate_for(&rcgen::PKCS_RSA_SHA256).unwrap();
    let params = rcgen::CertificateParams::new(vec!["siembridge-test.contoso.example".to_string()]).unwrap();
    let cert = params.self_signed(&key).unwrap();
    (
        cert.pem(),
        key.serialize_pem(),
        cert.der().to_vec(),
        key.public_key_raw().to_vec(),
    )
}

#[tokio::test]
async fn certificate_credential_signs_an_assertion_entra_accepts() {
    let entra = Entra::start(TENANT, APP, SECRET).await;
    let (cert_pem, key_pem, cert_der, public_key) = test_certificate();
    entra.state.register_certificate(APP, &cert_der, &public_key);
    let p = TokenProvider::new(
        &entra.authority,
        TENANT,
        APP,
        ClientCredential::Certificate {
            certificate: SecretValue::new(cert_pem.clone()),
            private_key: SecretValue::new(key_pem.clone()),
        },
    )
    .unwrap();
    let graph = p.token(GRAPH).await.unwrap();
    assert!(entra.state.valid(graph.secret(), GRAPH));
    // A second scope needs a second assertion (fresh jti, accepted again).
    let manage = p.token(MANAGE).await.unwrap();
    assert!(entra.state.valid(manage.secret(), MANAGE));
    assert_eq!(entra.state.assertion_ids.lock().unwrap().len(), 2);

    // Another key with the registered certificate's thumbprint fails the signature check.
    let (_, other_key, _, _) = test_certificate();
    let forged = TokenProvider::new(
        &entra.authority,
        TENANT,
        APP,
        ClientCredential::Certificate {
            certificate: SecretValue::new(cert_pem),
            private_key: SecretValue::new(other_key.clone()),
        },
    )
    .unwrap();
    let err = forged.token(GRAPH).await.unwrap_err();
    assert_eq!(err.codes(), &[700027], "{err}");
    assert!(!err.to_string().contains("PRIVATE KEY"), "{err}");
}

#[tokio::test]
async fn certificate_without_a_key_block_is_a_clear_configuration_error() {
    let entra = Entra::start(TENANT, APP, SECRET).await;
    let (cert_pem, _, _, _) = test_certificate();
    let p = TokenProvider::new(
        &entra.authority,
        TENANT,
        APP,
        ClientCredential::Certificate {
            certificate: SecretValue::new(cert_pem.clone()),
            private_key: SecretValue::new("not a key"),
        },
    )
    .unwrap();
    let err = p.token(GRAPH).await.unwrap_err();
    assert!(matches!(err, AuthError::Invalid(_)), "{err}");
    assert!(err.to_string().contains("PRIVATE KEY"), "{err}");
    assert_eq!(entra.state.requests.load(Ordering::SeqCst), 0);
}
