//! siembridge: a Kubernetes operator that moves Microsoft security and audit logs into
//! third-party SIEMs.
//!
//! - [`api`]: the `siembridge.io/v1alpha1` resources and condition helpers.
//! - [`config`]: the collector configuration, the contract between operator and collector.
//! - [`render`]: resources to collector configurations, shared by operator and standalone mode.
//! - [`operator`]: controllers (control plane).
//! - [`collector`]: the pipeline (data plane); never imports `operator`.
//! - [`normalize`]: Microsoft records to ECS, CEF and LEEF.
//! - [`standalone`]: `siembridge run`, rendering plus collectors in one process.
//! - [`progress`]: the live progress line of `siembridge run` on a terminal.
//! - [`normalize_command`]: `siembridge normalize`, records on stdin to what a SIEM receives.
//! - [`telemetry`]: metrics, health and logging.
//! - [`crdgen`]: the CRD manifests.
//! - [`tls`]: process-wide TLS set-up.

pub mod api;
pub mod collector;
pub mod config;
pub mod crdgen;
pub mod normalize;
pub mod normalize_command;
pub mod operator;
pub mod progress;
pub mod render;
pub mod standalone;
pub mod telemetry;
pub mod tls;
