//! Metrics, health and logging shared by the operator and the collector.
//!
//! Metric names follow one scheme: `siembridge_<component>_<what>_<unit>` with labels naming the
//! domain object (`logsource`, `destination`, `partition`, `controller`).

use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use axum::extract::State;
use axum::http::StatusCode;
use axum::response::IntoResponse;
use axum::routing::get;
use axum::Router;
use prometheus::{Encoder, Registry, TextEncoder};

/// Liveness and readiness flags served on `/healthz` and `/readyz`.
#[derive(Debug, Default)]
pub struct Health {
    live: AtomicBool,
    ready: AtomicBool,
}

impl Health {
    pub fn new() -> Arc<Self> {
        Arc::new(Health {
            live: AtomicBool::new(true),
            ready: AtomicBool::new(false),
        })
    }
    pub fn set_ready(&self, ready: bool) {
        self.ready.store(ready, Ordering::Relaxed);
    }
    pub fn set_live(&self, live: bool) {
        self.live.store(live, Ordering::Relaxed);
    }
    pub fn is_ready(&self) -> bool {
        self.ready.load(Ordering::Relaxed)
    }
    pub fn is_live(&self) -> bool {
        self.live.load(Ordering::Relaxed)
    }
}

#[derive(Clone)]
struct ServerState {
    registry: Registry,
    health: Arc<Health>,
}

/// A registry for a whole process (operator or collector): `siembridge_build_info{component,
/// version}` (always 1, so an alert can tell which version runs where) and the standard
/// `process_*` metrics (CPU seconds, resident memory, open file descriptors, start time) of this
/// process.
pub fn process_registry(component: &str) -> Result<Registry, prometheus::Error> {
    let registry = Registry::new();
    let info = prometheus::IntGaugeVec::new(
        prometheus::Opts::new(
            "siembridge_build_info",
            "1, labelled with the version of siembridge that runs",
        ),
        &["component", "version"],
    )?;
    info.with_label_values(&[component, env!("CARGO_PKG_VERSION")]).set(1);
    registry.register(Box::new(info))?;
    #[cfg(target_os = "linux")]
    registry.register(Box::new(prometheus::process_collector::ProcessCollector::for_self()))?;
    Ok(registry)
}

/// The `/metrics`, `/healthz` and `/readyz` routes.
pub fn router(registry: Registry, health: Arc<Health>) -> Router {
    Router::new()
        .route("/metrics", get(metrics))
        .route("/healthz", get(healthz))
        .route("/readyz", get(readyz))
        .with_state(ServerState { registry, health })
}

/// Serve [`router`] on `addr` until `shutdown` resolves.
pub async fn serve(
    addr: SocketAddr,
    registry: Registry,
    health: Arc<Health>,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    let listener = tokio::net::TcpListener::bind(addr).await?;
    axum::serve(listener, router(registry, health))
        .with_graceful_shutdown(shutdown)
        .await
}

async fn metrics(State(state): State<ServerState>) -> impl IntoResponse {
    let mut buf = Vec::new();
    match TextEncoder::new().encode(&state.registry.gather(), &mut buf) {
        Ok(()) => (StatusCode::OK, [("content-type", "text/plain; version=0.0.4")], buf).into_response(),
        Err(e) => (StatusCode::INTERNAL_SERVER_ERROR, e.to_string()).into_response(),
    }
}

async fn healthz(State(state): State<ServerState>) -> impl IntoResponse {
    if state.health.is_live() {
        (StatusCode::OK, "ok")
    } else {
        (StatusCode::SERVICE_UNAVAILABLE, "unhealthy")
    }
}

async fn readyz(State(state): State<ServerState>) -> impl IntoResponse {
    if state.health.is_ready() {
        (StatusCode::OK, "ready")
    } else {
        (StatusCode::SERVICE_UNAVAILABLE, "not ready")
    }
}

/// Log format of the process.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum LogFormat {
    /// One JSON object a line (pods).
    Json,
    /// Human-readable lines (terminals).
    Text,
}

/// Install the global tracing subscriber, writing to stderr; `RUST_LOG` sets the filter.
pub fn init_logging(format: LogFormat) {
    use tracing_subscriber::EnvFilter;
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info"));
    use std::io::IsTerminal;
    // Colours only for a person at a terminal, never in files or pod logs.
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        // Secret values a remote party handed back never reach a log line.
        .with_writer(crate::collector::secrets::RedactingStderr)
        .with_ansi(std::io::stderr().is_terminal());
    let _ = match format {
        LogFormat::Json => builder.json().flatten_event(true).with_current_span(false).try_init(),
        LogFormat::Text => builder.try_init(),
    };
}
