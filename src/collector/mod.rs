//! The collector: the data plane. source -> decode -> normalize -> route -> per-destination
//! batch, encode, send with retry -> acknowledge -> checkpoint.
//!
//! It depends on `api`, `config` and `normalize`, never on `operator`.

/// Options of `siembridge collector`.
#[derive(Clone, Debug, clap::Args)]
pub struct CollectorArgs {
    /// Collector configuration file (YAML), as rendered by the operator.
    #[arg(long, env = "SIEMBRIDGE_CONFIG")]
    pub config: std::path::PathBuf,
}

/// Run a collector until SIGTERM or Ctrl-C; drain and checkpoint on the way out.
pub async fn run(_args: CollectorArgs) -> anyhow::Result<()> {
    anyhow::bail!("the collector is not built yet")
}
