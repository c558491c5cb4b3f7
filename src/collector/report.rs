//! Publication of the [`CollectorReport`] for the operator (ConfigMap) or the user (file).

use std::sync::atomic::{AtomicBool, Ordering};

use crate::collector::checkpoint::file::write_atomically;
use crate::config::{is_report_key, report_key, CollectorReport, ReportTarget};

/// Field manager of the collector's server-side applies; each replica applies as
/// `siembridge-collector-<reporter>` so that replicas own their own keys and never remove each
/// other's.
pub const FIELD_MANAGER: &str = "siembridge-collector";

/// Keys of reports older than this are removed by the next replica that starts (pods that are
/// gone leave theirs behind).
const PRUNE_AFTER_SECONDS: i64 = 3600;

/// Writes reports to their target; failures are logged, never fatal.
#[derive(Debug)]
pub struct ReportWriter {
    target: Option<ReportTarget>,
    no_cluster_logged: AtomicBool,
    pruned: AtomicBool,
}

impl ReportWriter {
    pub fn new(target: Option<ReportTarget>) -> Self {
        ReportWriter {
            target,
            no_cluster_logged: AtomicBool::new(false),
            pruned: AtomicBool::new(false),
        }
    }

    /// Publish one report.
    pub async fn publish(&self, report: &CollectorReport) {
        let Some(target) = &self.target else { return };
        let body = match serde_json::to_vec_pretty(report) {
            // Reasons in the report may quote remote answers that echoed a credential.
            Ok(b) => crate::collector::secrets::redact(&String::from_utf8_lossy(&b))
                .into_owned()
                .into_bytes(),
            Err(e) => {
                tracing::warn!(error = %e, "report could not be serialized");
                return;
            }
        };
        match target {
            ReportTarget::File { path } => {
                if let Err(e) = write_atomically(std::path::Path::new(path), &body).await {
                    tracing::warn!(path, error = %e, "report file could not be written");
                }
            }
            ReportTarget::ConfigMap { namespace, name } => {
                self.apply_config_map(
                    namespace,
                    name,
                    &report.reporter,
                    String::from_utf8_lossy(&body).into_owned(),
                )
                .await
            }
        }
    }

    async fn apply_config_map(&self, namespace: &str, name: &str, reporter: &str, body: String) {
        use k8s_openapi::api::core::v1::ConfigMap;
        use kube::api::{Api, Patch, PatchParams};
        let config = match kube::Config::incluster() {
            Ok(c) => c,
            Err(e) => {
                if !self.no_cluster_logged.swap(true, Ordering::Relaxed) {
                    tracing::info!(error = %e, "not in a cluster; the report ConfigMap is not written");
                }
                return;
            }
        };
        let client = match kube::Client::try_from(config) {
            Ok(c) => c,
            Err(e) => {
                tracing::warn!(error = %e, "kube client could not be built; report not written");
                return;
            }
        };
        let api: Api<ConfigMap> = Api::namespaced(client, namespace);
        let key = report_key(reporter);
        if !self.pruned.swap(true, Ordering::Relaxed) {
            prune_stale_reports(&api, name, &key).await;
        }
        let patch = serde_json::json!({
            "apiVersion": "v1",
            "kind": "ConfigMap",
            "metadata": {"name": name, "namespace": namespace},
            "data": {key.as_str(): body},
        });
        let manager = field_manager(&key);
        if let Err(e) = api
            .patch(name, &PatchParams::apply(&manager).force(), &Patch::Apply(&patch))
            .await
        {
            tracing::warn!(configmap = name, error = %e, "report ConfigMap could not be applied");
        }
    }
}

/// The field manager of the replica writing `key` (at most 128 characters, as the API allows).
fn field_manager(key: &str) -> String {
    let id = key.trim_start_matches("report-").trim_end_matches(".json");
    let mut manager = format!("{FIELD_MANAGER}-{id}");
    manager.truncate(128);
    manager
}

/// Keys of reports that are more than an hour old (or unreadable), except `own`.
pub fn stale_report_keys(
    data: &std::collections::BTreeMap<String, String>,
    own: &str,
    now: chrono::DateTime<chrono::Utc>,
) -> Vec<String> {
    data.iter()
        .filter(|(k, _)| is_report_key(k) && k.as_str() != own)
        .filter(|(_, v)| {
            let time = serde_json::from_str::<CollectorReport>(v)
                .ok()
                .and_then(|r| chrono::DateTime::parse_from_rfc3339(&r.time).ok());
            time.is_none_or(|t| now - t.with_timezone(&chrono::Utc) > chrono::Duration::seconds(PRUNE_AFTER_SECONDS))
        })
        .map(|(k, _)| k.clone())
        .collect()
}

/// Remove the keys of replicas that are long gone, so the ConfigMap does not grow with every
/// pod that ever ran.
async fn prune_stale_reports(api: &kube::Api<k8s_openapi::api::core::v1::ConfigMap>, name: &str, own: &str) {
    use kube::api::{Patch, PatchParams};
    let cm = match api.get_opt(name).await {
        Ok(Some(cm)) => cm,
        Ok(None) => return,
        Err(e) => {
            tracing::debug!(configmap = name, error = %e, "report ConfigMap not read; stale reports kept");
            return;
        }
    };
    let stale = stale_report_keys(&cm.data.unwrap_or_default(), own, chrono::Utc::now());
    if stale.is_empty() {
        return;
    }
    let data: serde_json::Map<String, serde_json::Value> =
        stale.iter().map(|k| (k.clone(), serde_json::Value::Null)).collect();
    let patch = serde_json::json!({ "data": data });
    match api.patch(name, &PatchParams::default(), &Patch::Merge(&patch)).await {
        Ok(_) => tracing::info!(configmap = name, removed = stale.len(), "stale replica reports removed"),
        Err(e) => tracing::debug!(configmap = name, error = %e, "stale reports not removed"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn report_at(time: &str) -> String {
        serde_json::to_string(&CollectorReport {
            reporter: "x".into(),
            time: time.into(),
            ..Default::default()
        })
        .unwrap()
    }

    #[test]
    fn only_old_or_unreadable_reports_of_others_are_stale() {
        let now = chrono::DateTime::parse_from_rfc3339("2026-05-01T12:00:00Z")
            .unwrap()
            .with_timezone(&chrono::Utc);
        let data = std::collections::BTreeMap::from([
            ("report-pod-a.json".to_string(), report_at("2026-05-01T11:59:00Z")),
            ("report-pod-b.json".to_string(), report_at("2026-05-01T10:30:00Z")),
            ("report-pod-c.json".to_string(), "not json".to_string()),
            ("report-me.json".to_string(), report_at("2026-05-01T01:00:00Z")),
            ("report.json".to_string(), report_at("2026-04-30T01:00:00Z")),
            ("other".to_string(), "kept".to_string()),
        ]);
        let stale = stale_report_keys(&data, "report-me.json", now);
        assert_eq!(stale, vec!["report-pod-b.json", "report-pod-c.json", "report.json"]);
    }

    #[test]
    fn each_replica_has_its_own_key_and_field_manager() {
        let a = report_key("sb-cg-entra-7d9f-abcde");
        assert_eq!(a, "report-sb-cg-entra-7d9f-abcde.json");
        assert_eq!(field_manager(&a), "siembridge-collector-sb-cg-entra-7d9f-abcde");
        assert_eq!(report_key("host/1 2"), "report-host-1-2.json");
        assert!(field_manager(&report_key(&"p".repeat(300))).len() <= 128);
    }
}
