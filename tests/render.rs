//! Rendering of collector configurations from resources (src/render.rs).

use std::path::PathBuf;

use siembridge::api::*;
use siembridge::config::{CheckpointConfig, SecretSource, SourceConfig};
use siembridge::render::*;

fn ns(mut meta: kube::api::ObjectMeta) -> kube::api::ObjectMeta {
    meta.namespace = Some("sec".into());
    meta
}

fn destination(name: &str, spec: SiemDestinationSpec) -> SiemDestination {
    let mut d = SiemDestination::new(name, spec);
    d.metadata = ns(d.metadata);
    d
}

fn hec(name: &str, secret: &str) -> SiemDestination {
    destination(
        name,
        SiemDestinationSpec {
            splunk_hec: Some(SplunkHecSpec {
                url: "https://splunk.contoso.example:8088".into(),
                token: SecretKeySelector {
                    name: secret.into(),
                    key: "token".into(),
                },
                ..Default::default()
            }),
            ..Default::default()
        },
    )
}

fn eventhub_source(name: &str, cg: &str, categories: &[&str], dests: &[&str]) -> LogSource {
    let mut ls = LogSource::new(
        name,
        LogSourceSpec {
            event_hub: Some(EventHubSource {
                consumer_group_ref: cg.into(),
                categories: categories.iter().map(|c| c.to_string()).collect(),
            }),
            destinations: dests.iter().map(|d| DestinationRef { name: d.to_string() }).collect(),
            ..Default::default()
        },
    );
    ls.metadata = ns(ls.metadata);
    ls
}

fn consumer_group(name: &str) -> ConsumerGroup {
    let mut cg = ConsumerGroup::new(
        name,
        ConsumerGroupSpec {
            event_hub: EventHubRef {
                fully_qualified_namespace: "contoso-ns.servicebus.windows.net".into(),
                hub_name: "entra-logs".into(),
                consumer_group: "siembridge".into(),
                custom_endpoint: None,
            },
            credentials: EventHubCredentials {
                connection_string: Some(SecretKeySelector {
                    name: "eh-conn".into(),
                    key: "connectionString".into(),
                }),
                entra: None,
            },
            replicas: 3,
            ..Default::default()
        },
    );
    cg.metadata = ns(cg.metadata);
    cg
}

#[test]
fn consumer_group_routes_each_log_source_by_category_and_collects_secrets() {
    let mut cg = consumer_group("entra");
    cg.metadata.uid = Some("00000000-0000-4000-8000-0000000000c9".into());
    let sources = vec![
        eventhub_source("signins", "entra", &["SignInLogs"], &["splunk"]),
        eventhub_source("audits", "entra", &["AuditLogs"], &["splunk", "archive"]),
        eventhub_source("other-hub", "intune", &[], &["splunk"]),
    ];
    let dests = vec![hec("splunk", "hec-token"), hec("archive", "archive-token")];
    let (rendered, skipped) = render_consumer_group(&cg, &sources, &dests, &RenderTarget::Cluster).unwrap();
    assert!(skipped.is_empty());
    assert_eq!(rendered.name, "sb-cg-entra");
    assert_eq!(rendered.replicas, 3);
    let routes: Vec<_> = rendered
        .config
        .routes
        .iter()
        .map(|r| (r.log_source.as_str(), r.categories.clone(), r.destinations.clone()))
        .collect();
    assert_eq!(
        routes,
        vec![
            (
                "audits",
                vec!["AuditLogs".to_string()],
                vec!["splunk".to_string(), "archive".to_string()]
            ),
            ("signins", vec!["SignInLogs".to_string()], vec!["splunk".to_string()]),
        ]
    );
    assert_eq!(
        rendered.secret_names.iter().map(String::as_str).collect::<Vec<_>>(),
        vec!["archive-token", "eh-conn", "hec-token"]
    );
    assert!(matches!(rendered.config.source, SourceConfig::EventHub { .. }));
    assert_eq!(
        rendered.config.checkpoint,
        CheckpointConfig::Kubernetes {
            namespace: "sec".into(),
            lease_prefix: "sb-cg-entra".into(),
            // The partition Leases are garbage-collected with the ConsumerGroup.
            owner: Some(k8s_openapi::apimachinery::pkg::apis::meta::v1::OwnerReference {
                api_version: "siembridge.io/v1alpha1".into(),
                kind: "ConsumerGroup".into(),
                name: "entra".into(),
                uid: "00000000-0000-4000-8000-0000000000c9".into(),
                ..Default::default()
            })
        }
    );
    assert!(matches!(rendered.config.secrets, SecretSource::Mounted { .. }));
}

#[test]
fn broken_log_source_is_skipped_with_its_reason_and_others_still_render() {
    let cg = consumer_group("entra");
    let sources = vec![
        eventhub_source("good", "entra", &[], &["splunk"]),
        eventhub_source("bad", "entra", &[], &["nowhere"]),
    ];
    let (rendered, skipped) =
        render_consumer_group(&cg, &sources, &[hec("splunk", "hec-token")], &RenderTarget::Cluster).unwrap();
    assert_eq!(rendered.config.routes.len(), 1);
    assert_eq!(skipped.len(), 1);
    assert_eq!(skipped[0].0, "bad");
    assert_eq!(skipped[0].1.reason(), "DestinationNotFound");
    assert!(skipped[0].1.to_string().contains("nowhere"));
}

#[test]
fn log_source_with_two_kinds_is_invalid_spec() {
    let mut ls = eventhub_source("both", "entra", &[], &["splunk"]);
    ls.spec.replay = Some(ReplaySource {
        paths: vec!["records".into()],
        ..Default::default()
    });
    let err = render_log_source(&ls, &[hec("splunk", "t")], &RenderTarget::Cluster).unwrap_err();
    assert_eq!(err.reason(), "InvalidSpec");
    assert!(err.to_string().contains("eventHub, replay"), "{err}");
}

#[test]
fn event_hub_log_source_has_no_collector_of_its_own() {
    let ls = eventhub_source("signins", "entra", &[], &["splunk"]);
    assert_eq!(
        render_log_source(&ls, &[hec("splunk", "t")], &RenderTarget::Cluster).unwrap(),
        None
    );
}

#[test]
fn standalone_replay_paths_are_relative_to_the_manifest_and_state_is_local() {
    let mut ls = LogSource::new(
        "quick",
        LogSourceSpec {
            replay: Some(ReplaySource {
                paths: vec!["records".into()],
                ..Default::default()
            }),
            destinations: vec![DestinationRef { name: "out".into() }],
            ..Default::default()
        },
    );
    ls.metadata = ns(ls.metadata);
    let out = destination(
        "out",
        SiemDestinationSpec {
            stdout: Some(StdoutSpec::default()),
            ..Default::default()
        },
    );
    let target = RenderTarget::Standalone {
        state_dir: PathBuf::from("/state"),
        manifest_dir: PathBuf::from("/manifests/quickstart"),
    };
    let rendered = render_log_source(&ls, &[out], &target).unwrap().unwrap();
    match &rendered.config.source {
        SourceConfig::Replay(r) => assert_eq!(r.paths, vec!["/manifests/quickstart/records".to_string()]),
        other => panic!("unexpected source {other:?}"),
    }
    assert_eq!(
        rendered.config.checkpoint,
        CheckpointConfig::File {
            dir: "/state/sb-ls-quick/checkpoints".into()
        }
    );
    assert_eq!(rendered.config.secrets, SecretSource::Environment);
    // The rendered config round-trips through YAML, as it does through the ConfigMap.
    let yaml = serde_yaml::to_string(&rendered.config).unwrap();
    let back: siembridge::config::CollectorConfig = serde_yaml::from_str(&yaml).unwrap();
    assert_eq!(back, rendered.config);
}

#[test]
fn long_names_stay_valid_label_values() {
    let name = consumer_group_collector_name(&"x".repeat(200));
    assert!(name.len() <= 52, "{name}");
    assert_ne!(name, consumer_group_collector_name(&"x".repeat(199)));
}

#[test]
fn suspended_log_source_renders_zero_replicas_and_no_route() {
    let mut ls = LogSource::new(
        "o365",
        LogSourceSpec {
            management_activity_api: Some(ManagementActivitySource {
                credentials: EntraCredentials {
                    tenant_id: "11111111-2222-3333-4444-555555555555".into(),
                    client_id: "bbbbbbbb-0000-0000-0000-000000000001".into(),
                    client_secret: Some(SecretKeySelector {
                        name: "o365-app".into(),
                        key: "clientSecret".into(),
                    }),
                    ..Default::default()
                },
                ..Default::default()
            }),
            destinations: vec![DestinationRef { name: "splunk".into() }],
            suspend: true,
            ..Default::default()
        },
    );
    ls.metadata = ns(ls.metadata);
    let r = render_log_source(&ls, &[hec("splunk", "hec-token")], &RenderTarget::Cluster)
        .unwrap()
        .unwrap();
    assert_eq!(r.replicas, 0);
    assert!(r.config.routes.is_empty());
    assert!(r.secret_names.contains("o365-app"));
}
