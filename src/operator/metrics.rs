//! Prometheus metrics of the controllers: reconciles, failures by reason, reconcile duration.

use prometheus::{HistogramOpts, HistogramVec, IntCounterVec, Opts, Registry};

/// Metrics of the three controllers, labelled by `controller`.
#[derive(Clone)]
pub struct Metrics {
    /// `siembridge_operator_reconciles_total{controller}`.
    pub reconciles: IntCounterVec,
    /// `siembridge_operator_reconcile_failures_total{controller,reason}`: operator errors by
    /// variant, and resources blocked by a condition reason (`SecretNotFound`, ...).
    pub failures: IntCounterVec,
    /// `siembridge_operator_reconcile_duration_seconds{controller}`.
    pub duration: HistogramVec,
    /// `siembridge_notifications_total{notifier,receiver,result}`: messages of the Notifier
    /// controller, `result` `sent` or `error`.
    pub notifications: IntCounterVec,
}

impl Metrics {
    /// Create the metrics and register them in `registry`.
    pub fn new(registry: &Registry) -> Result<Self, prometheus::Error> {
        let reconciles = IntCounterVec::new(
            Opts::new("siembridge_operator_reconciles_total", "Reconciles started"),
            &["controller"],
        )?;
        let failures = IntCounterVec::new(
            Opts::new(
                "siembridge_operator_reconcile_failures_total",
                "Reconciles that failed or found the resource blocked, by reason",
            ),
            &["controller", "reason"],
        )?;
        let duration = HistogramVec::new(
            HistogramOpts::new(
                "siembridge_operator_reconcile_duration_seconds",
                "Duration of a reconcile",
            )
            .buckets(vec![0.01, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0]),
            &["controller"],
        )?;
        let notifications = IntCounterVec::new(
            Opts::new(
                "siembridge_notifications_total",
                "Notification messages sent or failed, by Notifier (namespace/name) and receiver",
            ),
            &["notifier", "receiver", "result"],
        )?;
        registry.register(Box::new(reconciles.clone()))?;
        registry.register(Box::new(notifications.clone()))?;
        registry.register(Box::new(failures.clone()))?;
        registry.register(Box::new(duration.clone()))?;
        Ok(Metrics {
            reconciles,
            failures,
            duration,
            notifications,
        })
    }

    /// Metrics registered in a registry of their own (tests).
    pub fn unregistered() -> Self {
        // Registering in a fresh registry cannot collide.
        Self::new(&Registry::new()).unwrap_or_else(|e| unreachable!("fresh registry: {e}"))
    }

    /// Count a reconcile and time it until the returned guard is dropped.
    pub fn reconcile_started(&self, controller: &str) -> prometheus::HistogramTimer {
        self.reconciles.with_label_values(&[controller]).inc();
        self.duration.with_label_values(&[controller]).start_timer()
    }

    /// Count a notification message sent or failed.
    pub fn notification(&self, notifier: &str, receiver: &str, result: &str) {
        self.notifications
            .with_label_values(&[notifier, receiver, result])
            .inc();
    }

    /// Count a failure or a blocked resource.
    pub fn failure(&self, controller: &str, reason: &str) {
        self.failures.with_label_values(&[controller, reason]).inc();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use prometheus::{Encoder, TextEncoder};

    #[test]
    fn metrics_are_exposed_under_their_names() {
        let registry = Registry::new();
        let metrics = Metrics::new(&registry).unwrap();
        drop(metrics.reconcile_started("logsource"));
        metrics.failure("logsource", "SecretNotFound");
        let mut text = Vec::new();
        TextEncoder::new().encode(&registry.gather(), &mut text).unwrap();
        let text = String::from_utf8(text).unwrap();
        assert!(
            text.contains("siembridge_operator_reconciles_total{controller=\"logsource\"} 1"),
            "{text}"
        );
        assert!(text.contains(
            "siembridge_operator_reconcile_failures_total{controller=\"logsource\",reason=\"SecretNotFound\"} 1"
        ));
        assert!(text.contains("siembridge_operator_reconcile_duration_seconds_count{controller=\"logsource\"} 1"));
        assert!(Metrics::new(&registry).is_err(), "registering twice is refused");
    }
}
