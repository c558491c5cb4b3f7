//! Background tasks of a run: the checkpoint writer's tick, the report's tick and the telemetry
//! server (metrics, health).

use std::sync::Arc;
use std::time::Duration;

use prometheus::Registry;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use super::checkpointer::Checkpointer;
use super::report_state::ReportState;
use super::CollectorError;
use crate::collector::report::ReportWriter;
use crate::telemetry::Health;

/// The running background tasks.
pub(super) struct Background {
    stop: CancellationToken,
    checkpoints: JoinHandle<()>,
    report: JoinHandle<()>,
}

/// What the background tasks work on.
pub(super) struct BackgroundSettings {
    pub checkpointer: Arc<Checkpointer>,
    pub checkpoint_interval: Duration,
    pub state: Arc<ReportState>,
    pub reporter: Arc<ReportWriter>,
    pub report_interval: Duration,
    /// `host:port` of the telemetry server, if any.
    pub listen: Option<String>,
    pub registry: Registry,
    pub health: Arc<Health>,
}

impl Background {
    /// Start the tasks; fails only on an invalid listen address.
    pub(super) fn start(s: BackgroundSettings) -> Result<Self, CollectorError> {
        let stop = CancellationToken::new();
        let telemetry_addr = match &s.listen {
            Some(listen) => Some(listen.parse().map_err(|_| CollectorError::Listen(listen.clone()))?),
            None => None,
        };
        let checkpoints = {
            let (cp, stop, every) = (s.checkpointer.clone(), stop.clone(), s.checkpoint_interval);
            tokio::spawn(async move {
                let mut tick = tokio::time::interval(every);
                tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
                loop {
                    tokio::select! {
                        _ = stop.cancelled() => break,
                        _ = tick.tick() => cp.flush().await,
                    }
                }
            })
        };
        let report = {
            let (st, rw, stop, every) = (s.state.clone(), s.reporter.clone(), stop.clone(), s.report_interval);
            tokio::spawn(async move {
                let mut tick = tokio::time::interval(every);
                loop {
                    tokio::select! {
                        _ = stop.cancelled() => break,
                        _ = tick.tick() => rw.publish(&st.build()).await,
                    }
                }
            })
        };
        if let Some(addr) = telemetry_addr {
            let (registry, health, stop) = (s.registry.clone(), s.health.clone(), stop.clone());
            tokio::spawn(async move {
                if let Err(e) =
                    crate::telemetry::serve(addr, registry, health, async move { stop.cancelled().await }).await
                {
                    tracing::error!(error = %e, "metrics endpoint failed");
                }
            });
        }
        Ok(Background {
            stop,
            checkpoints,
            report,
        })
    }

    /// Stop every task and wait for the checkpoint and report ticks to end.
    pub(super) async fn stop(self) {
        self.stop.cancel();
        let _ = self.checkpoints.await;
        let _ = self.report.await;
    }
}
