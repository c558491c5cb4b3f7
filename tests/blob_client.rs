//! The hand-written Blob REST client against real Azurite (npm `azurite@3.37.0`): Shared Key
//! and SAS auth, Put / Get / Set Metadata / List with metadata, and the conditional writes the
//! checkpoint store relies on (409 on a repeated `If-None-Match: *`, 412 on a stale `If-Match`).

#[path = "common/azurite.rs"]
mod azurite;

use bytes::Bytes;
use siembridge::collector::azure_blob::{BlobService, Condition};
use siembridge::collector::secrets::SecretValue;

fn rt() -> tokio::runtime::Runtime {
    siembridge::tls::install_crypto_provider();
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
}

async fn exercise(svc: &BlobService, container: &str) {
    svc.create_container(container).await.unwrap();
    assert!(
        !svc.create_container(container).await.unwrap(),
        "second create reports existing"
    );

    // Names with characters that need encoding, as the checkpoint layout has (`$default`).
    let name = "ns.servicebus.windows.net/hub/$default/ownership/0";
    let etag = svc
        .put_block_blob(
            container,
            name,
            Bytes::new(),
            "application/octet-stream",
            &[("ownerid", "a")],
            &Condition::IfNotExists,
        )
        .await
        .unwrap();
    let again = svc
        .put_block_blob(
            container,
            name,
            Bytes::new(),
            "application/octet-stream",
            &[("ownerid", "b")],
            &Condition::IfNotExists,
        )
        .await
        .unwrap_err();
    assert!(again.is_conflict(), "repeated If-None-Match: * create: {again}");

    let etag2 = svc
        .set_metadata(container, name, &[("ownerid", "c")], &Condition::IfMatch(etag.clone()))
        .await
        .unwrap();
    assert_ne!(etag, etag2);
    let stale = svc
        .set_metadata(container, name, &[("ownerid", "d")], &Condition::IfMatch(etag.clone()))
        .await
        .unwrap_err();
    assert!(stale.is_precondition_failed(), "stale If-Match: {stale}");

    let props = svc.blob_properties(container, name).await.unwrap().unwrap();
    assert_eq!(props.metadata.get("ownerid").map(String::as_str), Some("c"));
    assert_eq!(props.etag, etag2);

    let body = Bytes::from_static(b"{\"a\":1}\n{\"b\":\"\xc3\xa9 & <x>\"}\n");
    svc.put_block_blob(
        container,
        "archive/y=2026/x.ndjson",
        body.clone(),
        "application/x-ndjson",
        &[],
        &Condition::None,
    )
    .await
    .unwrap();
    let (item, got) = svc
        .get_blob(container, "archive/y=2026/x.ndjson")
        .await
        .unwrap()
        .unwrap();
    assert_eq!(got, body);
    assert_eq!(item.content_length, body.len() as u64);
    assert!(svc.get_blob(container, "archive/none").await.unwrap().is_none());

    let listed = svc
        .list_blobs(container, "ns.servicebus.windows.net/hub/$default/")
        .await
        .unwrap();
    assert_eq!(listed.len(), 1);
    assert_eq!(listed[0].name, name);
    assert_eq!(listed[0].etag, etag2, "list ETag is in header form");
    assert_eq!(listed[0].metadata.get("ownerid").map(String::as_str), Some("c"));
    assert!(listed[0].last_modified.is_some());
    assert_eq!(svc.list_blobs(container, "").await.unwrap().len(), 2);
}

#[test]
fn shared_key_from_connection_string_against_azurite() {
    let Some(az) = azurite::start() else { return };
    rt().block_on(async {
        let svc = BlobService::from_connection_string(&SecretValue::new(az.connection_string()), None).unwrap();
        exercise(&svc, "sharedkey").await;
    });
}

#[test]
fn sas_token_against_azurite() {
    let Some(az) = azurite::start() else { return };
    rt().block_on(async {
        let svc = BlobService::with_sas(&az.account_url(), SecretValue::new(azurite::account_sas("rwdlac"))).unwrap();
        exercise(&svc, "sas").await;
    });
}

#[test]
fn wrong_account_key_is_refused_without_printing_the_key() {
    let Some(az) = azurite::start() else { return };
    rt().block_on(async {
        let bad_key = "c2llbWJyaWRnZS13cm9uZy1rZXktMDAwMDAwMDAwMDAwMDAwMDAwMDA=";
        let cs = format!(
            "DefaultEndpointsProtocol=http;AccountName=devstoreaccount1;AccountKey={bad_key};BlobEndpoint={};",
            az.account_url()
        );
        let svc = BlobService::from_connection_string(&SecretValue::new(cs), None).unwrap();
        let err = svc.create_container("wrongkey").await.unwrap_err();
        assert_eq!(err.status(), Some(403), "{err}");
        assert!(!err.is_transient());
        let text = format!("{err} {err:?} {svc:?}");
        assert!(!text.contains(bad_key), "key leaked: {text}");

        let sas = azurite::account_sas("r");
        let svc = BlobService::with_sas(&az.account_url(), SecretValue::new(sas.clone())).unwrap();
        let err = svc.create_container("readonly").await.unwrap_err();
        assert_eq!(err.status(), Some(403), "{err}");
        let sig = sas.split("sig=").nth(1).unwrap();
        let text = format!("{err} {err:?} {svc:?}");
        assert!(!text.contains(sig), "SAS signature leaked: {text}");
    });
}
