//! `siembridge run -f DIR|FILE`: the operator's rendering plus the collector in one process.

/// Options of `siembridge run`.
#[derive(Clone, Debug, clap::Args)]
pub struct RunArgs {
    /// Manifest files or folders (LogSource, ConsumerGroup, SiemDestination YAML).
    #[arg(short = 'f', long = "filename", required = true)]
    pub files: Vec<std::path::PathBuf>,
    /// Folder of checkpoints, dead letters and reports.
    #[arg(long, default_value = ".siembridge", env = "SIEMBRIDGE_STATE_DIR")]
    pub state_dir: std::path::PathBuf,
}

/// Run every collector the manifests describe until they finish or Ctrl-C.
pub async fn run(_args: RunArgs) -> anyhow::Result<()> {
    anyhow::bail!("standalone mode is not built yet")
}
