//! The operator: kube-runtime controllers for LogSource, ConsumerGroup and SiemDestination.

/// Options of `siembridge operator`.
#[derive(Clone, Debug, clap::Args)]
pub struct OperatorArgs {
    /// Address of `/metrics`, `/healthz` and `/readyz`.
    #[arg(long, default_value = "0.0.0.0:8080", env = "SIEMBRIDGE_METRICS_ADDR")]
    pub metrics_addr: std::net::SocketAddr,
}

/// Run the operator until SIGTERM or Ctrl-C.
pub async fn run(_args: OperatorArgs) -> anyhow::Result<()> {
    anyhow::bail!("the operator is not built yet")
}
