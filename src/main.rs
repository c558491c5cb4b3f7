use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};
use siembridge::telemetry::{init_logging, LogFormat};

/// siembridge moves Microsoft security and audit logs into third-party SIEMs.
#[derive(Parser)]
#[command(name = "siembridge", version, about)]
struct Cli {
    /// Log format on stderr.
    #[arg(
        long,
        global = true,
        value_enum,
        default_value = "text",
        env = "SIEMBRIDGE_LOG_FORMAT"
    )]
    log_format: LogFormat,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run the Kubernetes operator (controllers for the siembridge.io resources).
    Operator(siembridge::operator::OperatorArgs),
    /// Run one collector from a rendered configuration file (what operator-made pods run).
    Collector(siembridge::collector::CollectorArgs),
    /// Run the pipelines of LogSource/ConsumerGroup/SiemDestination manifests in this process.
    Run(siembridge::standalone::RunArgs),
    /// Show what a SIEM would receive: records on stdin (one a line, or an envelope, Graph page
    /// or array), one ECS, CEF, LEEF or raw line per record on stdout, in order; an error line
    /// for a record that cannot be read. Exits non-zero when any record failed.
    Normalize(siembridge::normalize_command::NormalizeArgs),
    /// Write the CustomResourceDefinitions (to stdout, or one file per CRD into --out).
    Crdgen {
        /// Folder to write the CRD files into (e.g. `crds/`).
        #[arg(long)]
        out: Option<PathBuf>,
    },
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    init_logging(cli.log_format);
    siembridge::tls::install_crypto_provider();
    let result = match cli.command {
        Command::Crdgen { out } => crdgen(out),
        Command::Normalize(args) => siembridge::normalize_command::main(&args).map_err(anyhow::Error::from),
        Command::Operator(args) => block_on(siembridge::operator::run(args)),
        Command::Collector(args) => block_on(siembridge::collector::run(args)),
        Command::Run(args) => block_on(siembridge::standalone::run(args)),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            // One line a person can act on, not a panic trace.
            eprintln!("siembridge: error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

fn block_on(fut: impl std::future::Future<Output = anyhow::Result<()>>) -> anyhow::Result<()> {
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?
        .block_on(fut)
}

fn crdgen(out: Option<PathBuf>) -> anyhow::Result<()> {
    match out {
        Some(dir) => siembridge::crdgen::write_all(&dir)?,
        None => {
            for (_, yaml) in siembridge::crdgen::crds() {
                print!("---\n{yaml}");
            }
        }
    }
    Ok(())
}
