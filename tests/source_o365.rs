//! The Management Activity API source against the Entra and Management Activity API stand-ins,
//! through a whole collector into a file destination: a 7-day backfill of all five content types
//! delivered exactly once within the request budget, throttling honoured, restart from the
//! checkpoint, expired content and an old cursor reported as data loss, a bad secret reported
//! with its AADSTS code, short-lived tokens renewed.

mod common;

use std::collections::HashSet;
use std::path::Path;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use chrono::Utc;
use common::entra::Entra;
use common::o365::{O365State, O365};
use siembridge::api::{ContentType, EntraCredentials, ManagementActivitySource, PollingSpec, SecretKeySelector};
use siembridge::collector::Collector;
use siembridge::config::{CollectorConfig, CollectorReport, SourceConfig};
use tokio_util::sync::CancellationToken;

const TENANT: &str = "11111111-2222-3333-4444-555555555555";
const APP: &str = "aaaaaaaa-bbbb-cccc-dddd-eeeeeeeeeeee";
const SECRET: &str = "o365-test-secret-never-logged";

fn source(o365: &O365, entra: &Entra, requests_per_minute: u32, types: &[ContentType]) -> SourceConfig {
    SourceConfig::ManagementActivityApi(ManagementActivitySource {
        credentials: EntraCredentials {
            tenant_id: TENANT.into(),
            client_id: APP.into(),
            client_secret: Some(SecretKeySelector {
                name: "o365".into(),
                key: "clientSecret".into(),
            }),
            authority_host: Some(entra.authority.clone()),
            ..Default::default()
        },
        content_types: types.to_vec(),
        requests_per_minute,
        polling: PollingSpec {
            interval_seconds: 1,
            backfill_hours: 168,
            overlap_minutes: 120,
        },
        endpoint: Some(o365.root.clone()),
        ..Default::default()
    })
}

fn record(ct: ContentType, n: usize, created: chrono::DateTime<Utc>) -> serde_json::Value {
    let (record_type, workload) = match ct {
        ContentType::AuditAzureActiveDirectory => (15, "AzureActiveDirectory"),
        ContentType::AuditExchange => (2, "Exchange"),
        ContentType::AuditSharePoint => (6, "SharePoint"),
        ContentType::AuditGeneral => (25, "MicrosoftTeams"),
        ContentType::DlpAll => (11, "SharePoint"),
    };
    serde_json::json!({
        "Id": format!("{:08x}-1111-4111-8111-{:012x}", record_type, n),
        "RecordType": record_type,
        "CreationTime": created.format("%Y-%m-%dT%H:%M:%S").to_string(),
        "Operation": "FileAccessed",
        "OrganizationId": TENANT,
        "UserType": 0,
        "UserKey": "aaaaaaaa-1111-4111-8111-0000000000aa",
        "Workload": workload,
        "UserId": "alex@contoso.example",
        "ClientIP": "203.0.113.10",
    })
}

/// Seed `blobs` blobs of `per_blob` records per content type over the last 7 days; every 20th
/// blob repeats a record of the previous blob (cross-blob duplicate). Returns the distinct ids.
fn seed(state: &O365State, types: &[ContentType], blobs: usize, per_blob: usize) -> HashSet<String> {
    let now = Utc::now();
    let span = chrono::TimeDelta::days(7) - chrono::TimeDelta::minutes(30);
    let mut ids = HashSet::new();
    let mut n = 0usize;
    for &ct in types {
        let mut previous: Option<serde_json::Value> = None;
        for b in 0..blobs {
            let created = now - span + span * (b as i32) / (blobs as i32);
            let mut records: Vec<serde_json::Value> = (0..per_blob)
                .map(|_| {
                    n += 1;
                    record(ct, n, created - chrono::TimeDelta::minutes(70))
                })
                .collect();
            if b % 20 == 19 {
                if let Some(p) = &previous {
                    records.insert(0, p.clone());
                }
            }
            // Out of order inside the blob.
            records.reverse();
            for r in &records {
                ids.insert(r["Id"].as_str().unwrap().to_string());
            }
            previous = records.first().cloned();
            state.add_blob(ct.as_str(), created, records);
        }
    }
    ids
}

async fn start(dir: &Path) -> (Entra, O365) {
    let entra = Entra::start(TENANT, APP, SECRET).await;
    let o365 = O365::start(TENANT, entra.state.clone()).await;
    common::write_secret(dir, "o365", "clientSecret", SECRET);
    (entra, o365)
}

/// Run a collector until `done` says so (or the timeout), then stop it gracefully.
async fn run_until(
    config: CollectorConfig,
    timeout: Duration,
    mut done: impl FnMut() -> bool,
) -> Result<siembridge::collector::RunSummary, siembridge::collector::CollectorError> {
    let stop = CancellationToken::new();
    let handle = tokio::spawn(Collector::new(config).run(stop.clone()));
    let deadline = Instant::now() + timeout;
    while !handle.is_finished() && !done() && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    stop.cancel();
    handle.await.unwrap()
}

fn report(dir: &Path) -> CollectorReport {
    serde_json::from_slice(&std::fs::read(dir.join("report.json")).unwrap()).unwrap()
}

fn assert_exactly_once(dir: &Path, expected: &HashSet<String>) {
    let delivered = common::delivered_ids(dir, "Id");
    let distinct: HashSet<&String> = delivered.iter().collect();
    assert_eq!(
        distinct.len(),
        delivered.len(),
        "{} records delivered more than once",
        delivered.len() - distinct.len()
    );
    let missing: Vec<_> = expected.iter().filter(|id| !distinct.contains(id)).take(5).collect();
    assert!(
        missing.is_empty(),
        "{} records lost, e.g. {missing:?}",
        expected.len() - distinct.len()
    );
    assert_eq!(distinct.len(), expected.len());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn seven_day_backfill_of_all_content_types_is_delivered_exactly_once_within_the_budget() {
    let dir = tempfile::tempdir().unwrap();
    let (entra, o365) = start(dir.path()).await;
    o365.state.page_size.store(40, Ordering::SeqCst);
    let mut expected = seed(&o365.state, &ContentType::ALL, 420, 3);
    // Content listed late: created 30 minutes ago, visible only after the backfill has passed it.
    let late_created = Utc::now() - chrono::TimeDelta::minutes(30);
    for n in 0..5 {
        let ct = ContentType::ALL[n % 5];
        let r = record(ct, 900_000 + n, late_created);
        expected.insert(r["Id"].as_str().unwrap().to_string());
        o365.state.add_blob(ct.as_str(), late_created, vec![r]);
        let mut blobs = o365.state.blobs.lock().unwrap();
        let last = blobs.len() - 1;
        blobs[last].listed_after = Some(Instant::now() + Duration::from_secs(4));
    }
    let blob_count = o365.state.blobs.lock().unwrap().len();
    assert!(blob_count >= 2000);

    let rpm = 30_000;
    let config = common::api_config(dir.path(), source(&o365, &entra, rpm, &[]), "o365-audit");
    let started = Instant::now();
    let out = dir.path().to_path_buf();
    let want = expected.len();
    let summary = run_until(config, Duration::from_secs(90), || {
        common::delivered_ids(&out, "Id").len() >= want
    })
    .await
    .unwrap();
    let elapsed = started.elapsed();
    assert!(summary.fully_checkpointed);
    assert_exactly_once(dir.path(), &expected);

    let log = o365.state.requests();
    assert!(
        log.iter().all(|r| r.publisher.as_deref() == Some(TENANT)),
        "PublisherIdentifier on every call"
    );
    let times: Vec<Instant> = log.iter().map(|r| r.at).collect();
    // 30,000 per minute (the budget), spread as about 500 per second (10 % allowance for
    // requests bunched up in transit on a loaded machine).
    common::assert_within_window(&times, rpm as usize, Duration::from_secs(60));
    common::assert_within_window(&times, rpm as usize / 60 + rpm as usize / 600, Duration::from_secs(1));
    let blob_gets = log.iter().filter(|r| r.path == "audit").count();
    assert_eq!(blob_gets, blob_count, "every blob fetched once");
    assert_eq!(
        o365.state.starts.load(Ordering::SeqCst),
        5,
        "one subscription start per content type"
    );
    let r = report(dir.path());
    let ls = &r.log_sources["o365-audit"];
    assert_eq!(ls.cursors.len(), 5);
    assert_eq!(ls.backfill_percent, Some(100));
    assert!(ls.data_loss.is_empty(), "{:?}", ls.data_loss);
    eprintln!(
        "backfill: {} records from {blob_count} blobs in {:.1}s, {} requests",
        expected.len(),
        elapsed.as_secs_f64(),
        log.len()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn throttling_is_honoured_without_loss_or_early_requests() {
    for with_403 in [false, true] {
        let dir = tempfile::tempdir().unwrap();
        let (entra, o365) = start(dir.path()).await;
        let types = [ContentType::AuditExchange, ContentType::AuditSharePoint];
        let expected = seed(&o365.state, &types, 12, 2);
        o365.state.throttle_every.store(3, Ordering::SeqCst);
        o365.state.throttle_with_403.store(with_403, Ordering::SeqCst);
        let config = common::api_config(dir.path(), source(&o365, &entra, 6000, &types), "o365");
        let out = dir.path().to_path_buf();
        let want = expected.len();
        run_until(config, Duration::from_secs(90), || {
            common::delivered_ids(&out, "Id").len() >= want
        })
        .await
        .unwrap();
        assert_exactly_once(dir.path(), &expected);
        let log = o365.state.requests();
        let throttled = log.iter().filter(|r| r.status == 429 || r.status == 403).count();
        assert!(
            throttled * 4 >= log.len(),
            "a large share was throttled: {throttled} of {}",
            log.len()
        );
        assert_eq!(
            o365.state.early.load(Ordering::SeqCst),
            0,
            "a request came before Retry-After"
        );
        assert!(report(dir.path()).log_sources["o365"].throttled);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_restart_mid_backfill_resumes_from_the_checkpoint_without_loss_or_duplicates() {
    let dir = tempfile::tempdir().unwrap();
    let (entra, o365) = start(dir.path()).await;
    let types = [ContentType::AuditGeneral, ContentType::DlpAll];
    let expected = seed(&o365.state, &types, 300, 2);
    // Slow enough to stop in the middle.
    let config = common::api_config(dir.path(), source(&o365, &entra, 3000, &types), "o365");
    let out = dir.path().to_path_buf();
    let want = expected.len();
    run_until(config.clone(), Duration::from_secs(60), || {
        common::delivered_ids(&out, "Id").len() >= want / 3
    })
    .await
    .unwrap();
    let first = common::delivered_ids(dir.path(), "Id").len();
    assert!(first < want, "stopped mid-backfill ({first} of {want})");
    let fetched_first = o365.state.requests().iter().filter(|r| r.path == "audit").count();
    run_until(config, Duration::from_secs(60), || {
        common::delivered_ids(&out, "Id").len() >= want
    })
    .await
    .unwrap();
    assert_exactly_once(dir.path(), &expected);
    let fetched = o365.state.requests().iter().filter(|r| r.path == "audit").count();
    // At most the one chunk being fetched when the stop came (not delivered) is fetched again.
    assert!(
        (600..=608).contains(&fetched),
        "blobs delivered before the restart are not fetched again: {fetched} fetches ({fetched_first} before)"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn expired_content_and_an_old_cursor_are_reported_as_data_loss_with_their_range() {
    let dir = tempfile::tempdir().unwrap();
    let (entra, o365) = start(dir.path()).await;
    let types = [ContentType::AuditExchange, ContentType::AuditGeneral];
    let mut expected = seed(&o365.state, &types, 10, 2);
    let (expired_id, expired_created) = {
        let mut blobs = o365.state.blobs.lock().unwrap();
        let b = blobs.iter_mut().find(|b| b.content_type == "Audit.Exchange").unwrap();
        b.expired = true;
        for r in &b.records {
            expected.remove(r["Id"].as_str().unwrap());
        }
        (b.content_id.clone(), b.created)
    };
    // Audit.General was last read 10 days ago.
    let old = Utc::now() - chrono::TimeDelta::days(10);
    std::fs::create_dir_all(dir.path().join("checkpoints")).unwrap();
    let store = siembridge::collector::checkpoint::file::FileCheckpointStore::open(dir.path().join("checkpoints"))
        .await
        .unwrap();
    use siembridge::collector::checkpoint::{Checkpoint, CheckpointStore};
    store
        .save(
            "Audit.General",
            &Checkpoint {
                position: old.to_rfc3339_opts(chrono::SecondsFormat::Millis, true),
                state: None,
                updated: String::new(),
            },
        )
        .await
        .unwrap();
    let config = common::api_config(dir.path(), source(&o365, &entra, 6000, &types), "o365");
    let want = expected.len();
    let registry = prometheus::Registry::new();
    let stop = CancellationToken::new();
    let handle = tokio::spawn(Collector::new(config).with_registry(registry.clone()).run(stop.clone()));
    let deadline = Instant::now() + Duration::from_secs(60);
    while common::delivered_ids(dir.path(), "Id").len() < want && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    stop.cancel();
    handle.await.unwrap().unwrap();
    assert_exactly_once(dir.path(), &expected);
    // Three days of Audit.General are counted in the metric.
    let text = prometheus::TextEncoder::new()
        .encode_to_string(&registry.gather())
        .unwrap();
    let lost_seconds: f64 = text
        .lines()
        .find(|l| l.starts_with("siembridge_collector_data_loss_seconds_total{stream=\"Audit.General\"}"))
        .and_then(|l| l.rsplit(' ').next())
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(|| panic!("no data loss metric in {text}"));
    assert!((lost_seconds - 3.0 * 86400.0).abs() < 900.0, "{lost_seconds}");
    let ls = report(dir.path()).log_sources["o365"].clone();
    let blob_loss = ls
        .data_loss
        .iter()
        .find(|l| l.stream == "Audit.Exchange")
        .expect("expired blob reported");
    assert!(
        blob_loss.reason.contains("AF20051") && blob_loss.reason.contains(&expired_id),
        "{blob_loss:?}"
    );
    assert_eq!(
        blob_loss.from,
        expired_created.to_rfc3339_opts(chrono::SecondsFormat::Millis, true)
    );
    let cursor_loss = ls
        .data_loss
        .iter()
        .find(|l| l.stream == "Audit.General")
        .expect("old cursor reported");
    assert_eq!(
        cursor_loss.from,
        old.to_rfc3339_opts(chrono::SecondsFormat::Millis, true)
    );
    let to = chrono::DateTime::parse_from_rfc3339(&cursor_loss.to).unwrap();
    let retention_start = Utc::now() - chrono::TimeDelta::days(7);
    assert!(
        (to.with_timezone(&Utc) - retention_start).num_minutes().abs() < 10,
        "{cursor_loss:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_bad_secret_stops_with_its_aadsts_code_and_the_secret_is_never_printed() {
    let dir = tempfile::tempdir().unwrap();
    let (entra, o365) = start(dir.path()).await;
    let wrong = "wrong-secret-value-3f9a";
    common::write_secret(dir.path(), "o365", "clientSecret", wrong);
    let config = common::api_config(
        dir.path(),
        source(&o365, &entra, 600, &[ContentType::AuditExchange]),
        "o365",
    );
    let err = run_until(config, Duration::from_secs(30), || false).await.unwrap_err();
    let text = err.to_string();
    assert!(text.contains("AADSTS7000215") || text.contains("7000215"), "{text}");
    assert!(!text.contains(wrong) && !text.contains(SECRET), "{text}");
    let report_text = std::fs::read_to_string(dir.path().join("report.json")).unwrap();
    assert!(report_text.contains("7000215"), "{report_text}");
    assert!(!report_text.contains(wrong));
    assert_eq!(o365.state.requests().len(), 0, "no API call without a token");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn short_lived_tokens_are_renewed_without_a_failed_request() {
    let dir = tempfile::tempdir().unwrap();
    let (entra, o365) = start(dir.path()).await;
    entra.state.expires_in.store(2, Ordering::SeqCst);
    let types = [ContentType::AuditAzureActiveDirectory];
    let expected = seed(&o365.state, &types, 150, 1);
    // 150 blobs at 20 requests/s: about 8 s, four token lifetimes.
    let config = common::api_config(dir.path(), source(&o365, &entra, 1200, &types), "o365");
    let out = dir.path().to_path_buf();
    let want = expected.len();
    run_until(config, Duration::from_secs(60), || {
        common::delivered_ids(&out, "Id").len() >= want
    })
    .await
    .unwrap();
    assert_exactly_once(dir.path(), &expected);
    let issued = entra.state.issued.lock().unwrap().len();
    assert!(issued >= 3, "tokens renewed: {issued}");
    let unauthorized = o365.state.requests().iter().filter(|r| r.status == 401).count();
    assert_eq!(unauthorized, 0, "renewed before expiry, never refused");
}
