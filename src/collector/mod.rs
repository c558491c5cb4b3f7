//! The collector: the data plane. source -> decode -> normalize -> route -> per-destination
//! batch, encode, send with retry -> acknowledge -> checkpoint.
//!
//! It depends on `api`, `config` and `normalize`, never on `operator`.
//!
//! - [`sources`]: one module per source kind, behind [`sources::Source`].
//! - [`decode`]: envelopes, arrays, NDJSON, single objects.
//! - [`route`]: which LogSources take a record.
//! - [`destinations`]: one module per destination kind, behind [`destinations::Destination`].
//! - [`delivery`]: the shared buffer, batching, retry, dead-letter and ack machinery.
//! - [`ack`]: per-stream in-flight tracking; the checkpoint only passes fully acknowledged units.
//! - [`checkpoint`]: checkpoint stores behind [`checkpoint::CheckpointStore`].
//! - [`runtime`]: the wiring, [`runtime::Collector`].

pub mod ack;
pub mod auth;
pub mod azure_blob;
pub mod checkpoint;
pub mod dead_letter;
pub mod decode;
pub mod delivery;
pub mod destinations;
pub mod metrics;
pub mod report;
pub mod route;
pub mod runtime;
pub mod secrets;
pub mod sources;

use anyhow::Context;
use tokio_util::sync::CancellationToken;

pub use runtime::{Collector, CollectorError, RunSummary};

use crate::config::CollectorConfig;

/// Options of `siembridge collector`.
#[derive(Clone, Debug, clap::Args)]
pub struct CollectorArgs {
    /// Collector configuration file (YAML), as rendered by the operator.
    #[arg(long, env = "SIEMBRIDGE_CONFIG")]
    pub config: std::path::PathBuf,
}

/// Read and parse a collector configuration file.
pub fn load_config(path: &std::path::Path) -> anyhow::Result<CollectorConfig> {
    let text = std::fs::read_to_string(path).with_context(|| format!("cannot read {}", path.display()))?;
    serde_yaml::from_str(&text).with_context(|| format!("{}: invalid collector config", path.display()))
}

/// A token cancelled on Ctrl-C or SIGTERM.
pub fn shutdown_on_signals() -> CancellationToken {
    let token = CancellationToken::new();
    let t = token.clone();
    tokio::spawn(async move {
        #[cfg(unix)]
        {
            use tokio::signal::unix::{signal, SignalKind};
            match signal(SignalKind::terminate()) {
                Ok(mut term) => {
                    tokio::select! {
                        _ = tokio::signal::ctrl_c() => {},
                        _ = term.recv() => {},
                    }
                }
                Err(_) => {
                    let _ = tokio::signal::ctrl_c().await;
                }
            }
        }
        #[cfg(not(unix))]
        {
            let _ = tokio::signal::ctrl_c().await;
        }
        tracing::info!("shutdown requested; draining and checkpointing");
        t.cancel();
    });
    token
}

/// Run a collector until SIGTERM or Ctrl-C; drain and checkpoint on the way out. Records left
/// neither delivered nor dead-lettered make the exit non-zero, with how many.
pub async fn run(args: CollectorArgs) -> anyhow::Result<()> {
    let config = load_config(&args.config)?;
    let name = config.collector.clone();
    let registry = crate::telemetry::process_registry("collector")?;
    let summary = Collector::new(config)
        .with_registry(registry)
        .run(shutdown_on_signals())
        .await
        .with_context(|| format!("collector {name}"))?;
    tracing::info!(
        collector = %name,
        units = summary.units,
        records = summary.records,
        fully_checkpointed = summary.fully_checkpointed,
        undelivered = summary.undelivered,
        dead_letter_failures = summary.dead_letter_failures,
        "collector stopped"
    );
    match summary.shortfall() {
        Some(message) => anyhow::bail!("collector {name}: {message}"),
        None => Ok(()),
    }
}
