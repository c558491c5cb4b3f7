//! Publication of the [`CollectorReport`] for the operator (ConfigMap) or the user (file).

use std::sync::atomic::{AtomicBool, Ordering};

use crate::collector::checkpoint::file::write_atomically;
use crate::config::{CollectorReport, ReportTarget};

/// Key of the report in its ConfigMap.
pub const REPORT_KEY: &str = "report.json";
/// Field manager of the collector's server-side applies.
pub const FIELD_MANAGER: &str = "siembridge-collector";

/// Writes reports to their target; failures are logged, never fatal.
#[derive(Debug)]
pub struct ReportWriter {
    target: Option<ReportTarget>,
    no_cluster_logged: AtomicBool,
}

impl ReportWriter {
    pub fn new(target: Option<ReportTarget>) -> Self {
        ReportWriter {
            target,
            no_cluster_logged: AtomicBool::new(false),
        }
    }

    /// Publish one report.
    pub async fn publish(&self, report: &CollectorReport) {
        let Some(target) = &self.target else { return };
        let body = match serde_json::to_vec_pretty(report) {
            Ok(b) => b,
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
                self.apply_config_map(namespace, name, String::from_utf8_lossy(&body).into_owned())
                    .await
            }
        }
    }

    async fn apply_config_map(&self, namespace: &str, name: &str, body: String) {
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
        let patch = serde_json::json!({
            "apiVersion": "v1",
            "kind": "ConfigMap",
            "metadata": {"name": name, "namespace": namespace},
            "data": {REPORT_KEY: body},
        });
        if let Err(e) = api
            .patch(name, &PatchParams::apply(FIELD_MANAGER).force(), &Patch::Apply(&patch))
            .await
        {
            tracing::warn!(configmap = name, error = %e, "report ConfigMap could not be applied");
        }
    }
}
