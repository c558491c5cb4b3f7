//! Conditions computed in one function per kind from the states of the children and of the
//! referenced resources (Stackable style): the controllers observe, these functions decide.

use k8s_openapi::api::apps::v1::Deployment;

use crate::api::conditions::{reasons, types, DesiredCondition, Status};
use crate::api::{LagThreshold, PartitionStatus};
use crate::config::{CollectorReport, LogSourceReport, REPORT_STALE_SECONDS};

/// Something only the user can fix, reported with a condition reason.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Blocked {
    /// One of `SecretNotFound`, `DestinationNotFound`, `ConsumerGroupNotFound`, `InvalidSpec`,
    /// `SourceNotSupported`.
    pub reason: &'static str,
    /// What is missing or wrong, naming the object.
    pub message: String,
}

impl Blocked {
    pub fn new(reason: &'static str, message: impl Into<String>) -> Self {
        Blocked {
            reason,
            message: message.into(),
        }
    }
}

/// Pods of a collector Deployment.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct CollectorPods {
    pub desired: i32,
    /// Pods that exist (the Deployment's `status.replicas`).
    pub current: i32,
    pub ready: i32,
    pub updated: i32,
    /// Whether the Deployment controller has seen the current spec.
    pub observed: bool,
}

impl CollectorPods {
    /// Pods of an applied Deployment.
    pub fn of(deployment: &Deployment) -> Self {
        let desired = deployment.spec.replicas.unwrap_or(1);
        let status = deployment.status.clone().unwrap_or_default();
        CollectorPods {
            desired,
            current: status.replicas.unwrap_or(0),
            ready: status.ready_replicas.unwrap_or(0),
            updated: status.updated_replicas.unwrap_or(0),
            observed: status.observed_generation.is_some()
                && status.observed_generation == deployment.metadata.generation,
        }
    }

    /// Every desired pod runs the current template and is ready.
    pub fn is_ready(&self) -> bool {
        self.observed && self.ready >= self.desired && self.updated >= self.desired
    }

    fn summary(&self) -> String {
        format!("{}/{} collector pods ready", self.ready, self.desired)
    }

    fn not_ready(&self) -> (Status, &'static str, String) {
        if self.ready == 0 && self.desired > 0 && self.updated >= self.desired && self.observed {
            (Status::False, reasons::DEPLOYMENT_UNAVAILABLE, self.summary())
        } else {
            (Status::False, reasons::DEPLOYMENT_PROGRESSING, self.summary())
        }
    }

    fn progressing(&self) -> DesiredCondition {
        if self.is_ready() {
            DesiredCondition::new(types::PROGRESSING, false, reasons::DEPLOYMENT_READY, self.summary())
        } else {
            DesiredCondition::new(
                types::PROGRESSING,
                true,
                reasons::DEPLOYMENT_PROGRESSING,
                self.summary(),
            )
        }
    }
}

/// A destination refusing the credentials, as a collector that delivers to it reports (its own
/// connectivity check has no credentials and cannot see this).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CredentialsRefused {
    /// `Unauthorized` or `Forbidden`.
    pub reason: &'static str,
    /// Which collector says so, and the destination's answer.
    pub message: String,
}

impl CredentialsRefused {
    /// What `report` (the merged report of `collector`) says of `destination`: a refusal, when
    /// the report is fresh (a collector that stopped reporting says nothing any more).
    pub fn from_report(
        collector: &str,
        report: &CollectorReport,
        destination: &str,
        now: chrono::DateTime<chrono::Utc>,
    ) -> Option<Self> {
        let fresh = chrono::DateTime::parse_from_rfc3339(&report.time)
            .is_ok_and(|t| now.signed_duration_since(t) <= chrono::Duration::seconds(REPORT_STALE_SECONDS));
        if !fresh {
            return None;
        }
        let d = report.destinations.get(destination)?;
        let reason = match d.reason.as_deref()? {
            "Unauthorized" => reasons::UNAUTHORIZED,
            "Forbidden" => reasons::FORBIDDEN,
            _ => return None,
        };
        Some(CredentialsRefused {
            reason,
            message: format!(
                "collector {collector:?}: the destination refuses the credentials ({reason}): {}; its events wait, none is \
                 dead-lettered, until the Secret is fixed",
                d.last_error.as_deref().unwrap_or("no detail")
            ),
        })
    }
}

/// Readiness of a SiemDestination a LogSource names.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DestinationHealth {
    pub name: String,
    /// `None` when the destination has no `Ready` condition yet.
    pub ready: Option<bool>,
    pub message: String,
}

/// Where a LogSource's records are read.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum LogSourceReader {
    /// Its own collector Deployment.
    Own(CollectorPods),
    /// The collector of its ConsumerGroup, ready or not (with the group's `Ready` message).
    ConsumerGroup { name: String, ready: bool, message: String },
}

/// What the LogSource controller observed.
#[derive(Clone, Debug, PartialEq)]
pub struct LogSourceObservation<'a> {
    pub blocked: Option<Blocked>,
    pub suspended: bool,
    /// `None` when blocked before the reader is known.
    pub reader: Option<LogSourceReader>,
    pub destinations: Vec<DestinationHealth>,
    pub report: Option<&'a LogSourceReport>,
    pub lag_threshold_seconds: i64,
    /// `spec.deadLetter.destination`, if set.
    pub dead_letter_destination: Option<&'a str>,
    /// Message of a `DeadLettered=True` already set for this generation of the spec: it stays
    /// `True` when a collector restart resets the counters.
    pub dead_lettered_before: Option<&'a str>,
    /// The silence threshold and the time to judge it at; `None`: no `SourceSilent` condition.
    pub silence: Option<SilenceCheck>,
}

/// When a LogSource counts as silent: no record received for `threshold_seconds` before `now`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SilenceCheck {
    /// `spec.silenceThresholdMinutes` (or the source kind's default), in seconds.
    pub threshold_seconds: i64,
    pub now: chrono::DateTime<chrono::Utc>,
}

impl SilenceCheck {
    /// Seconds from `now` until a LogSource that last received a record at the report's
    /// `lastReceivedTime` turns silent; `None` when it is silent already or nothing is known.
    pub fn due_in(&self, report: Option<&LogSourceReport>) -> Option<std::time::Duration> {
        let last = last_received(report?)?;
        let due = last + chrono::Duration::seconds(self.threshold_seconds);
        (due > self.now).then(|| (due - self.now).to_std().unwrap_or_default())
    }
}

fn last_received(report: &LogSourceReport) -> Option<chrono::DateTime<chrono::Utc>> {
    let t = report.last_received_time.as_deref()?;
    Some(
        chrono::DateTime::parse_from_rfc3339(t)
            .ok()?
            .with_timezone(&chrono::Utc),
    )
}

/// `SourceSilent` from the report's `lastReceivedTime`. The messages hold no running time, so
/// the condition (and the status) only changes when the state does.
fn silence_condition(obs: &LogSourceObservation<'_>, check: &SilenceCheck) -> DesiredCondition {
    let minutes = check.threshold_seconds / 60;
    if obs.suspended {
        return DesiredCondition::new(
            types::SOURCE_SILENT,
            false,
            reasons::SUSPENDED,
            "collection is suspended",
        );
    }
    let Some(report) = obs.report else {
        return DesiredCondition::new(
            types::SOURCE_SILENT,
            Status::Unknown,
            reasons::AWAITING_REPORT,
            "no report yet",
        );
    };
    let Some(last) = last_received(report) else {
        return DesiredCondition::new(
            types::SOURCE_SILENT,
            Status::Unknown,
            reasons::AWAITING_REPORT,
            "the collector does not report when it last received a record",
        );
    };
    if check.now - last > chrono::Duration::seconds(check.threshold_seconds) {
        DesiredCondition::new(
            types::SOURCE_SILENT,
            true,
            reasons::NO_RECORDS_RECEIVED,
            format!(
                "no record received since {} (threshold {minutes}m): check the source (diagnostic setting, \
                 subscription, credentials), see the SiembridgeSourceSilent runbook",
                last.to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
            ),
        )
    } else {
        DesiredCondition::new(
            types::SOURCE_SILENT,
            false,
            reasons::RECEIVING,
            format!("records received within the threshold ({minutes}m)"),
        )
    }
}

/// The conditions of a LogSource.
pub fn log_source_conditions(obs: &LogSourceObservation<'_>) -> Vec<DesiredCondition> {
    let mut out = Vec::new();
    let not_ready_destination = obs.destinations.iter().find(|d| d.ready != Some(true));
    let destinations_ready = match not_ready_destination {
        None => DesiredCondition::new(
            types::DESTINATIONS_READY,
            true,
            reasons::ALL_READY,
            format!("{} destination(s) ready", obs.destinations.len()),
        ),
        Some(d) => DesiredCondition::new(
            types::DESTINATIONS_READY,
            false,
            reasons::DESTINATION_NOT_READY,
            format!("SiemDestination {:?} is not ready: {}", d.name, d.message),
        ),
    };

    if let Some(blocked) = &obs.blocked {
        out.push(DesiredCondition::new(
            types::READY,
            false,
            blocked.reason,
            &blocked.message,
        ));
        out.push(DesiredCondition::new(
            types::PROGRESSING,
            false,
            blocked.reason,
            &blocked.message,
        ));
        out.push(DesiredCondition::new(
            types::DEGRADED,
            true,
            blocked.reason,
            &blocked.message,
        ));
        out.push(DesiredCondition::new(
            types::SOURCE_CONNECTED,
            Status::Unknown,
            blocked.reason,
            &blocked.message,
        ));
        if blocked.reason == reasons::DESTINATION_NOT_FOUND {
            out.push(DesiredCondition::new(
                types::DESTINATIONS_READY,
                false,
                blocked.reason,
                &blocked.message,
            ));
        } else {
            out.push(destinations_ready);
        }
        out.extend(report_conditions(obs.report, obs.lag_threshold_seconds));
        out.extend(dead_letter_conditions(obs));
        out.extend(obs.silence.as_ref().map(|check| silence_condition(obs, check)));
        return out;
    }

    let (reader_ready, reader_condition) = match &obs.reader {
        Some(LogSourceReader::Own(pods)) => (pods.is_ready(), Some(pods.not_ready())),
        Some(LogSourceReader::ConsumerGroup { name, ready, message }) => (
            *ready,
            Some((
                Status::False,
                reasons::DEPLOYMENT_PROGRESSING,
                format!("ConsumerGroup {name:?} is not ready: {message}"),
            )),
        ),
        None => (false, None),
    };
    let source_error = obs.report.and_then(|r| r.source_error.clone());

    // Ready: the story in order of what a user must fix first.
    let ready = if obs.suspended {
        DesiredCondition::new(types::READY, false, reasons::SUSPENDED, "collection is suspended")
    } else if !reader_ready {
        let (status, reason, message) =
            reader_condition.unwrap_or((Status::Unknown, reasons::DEPLOYMENT_PROGRESSING, String::new()));
        DesiredCondition::new(types::READY, status, reason, message)
    } else if let Some(d) = not_ready_destination {
        DesiredCondition::new(
            types::READY,
            false,
            reasons::DESTINATION_NOT_READY,
            format!("SiemDestination {:?} is not ready", d.name),
        )
    } else if let Some(e) = &source_error {
        DesiredCondition::new(types::READY, false, reasons::SOURCE_ERROR, e)
    } else {
        DesiredCondition::new(
            types::READY,
            true,
            reasons::COLLECTING,
            "collector running, destinations ready",
        )
    };
    out.push(ready);

    out.push(match &obs.reader {
        Some(LogSourceReader::Own(pods)) => pods.progressing(),
        Some(LogSourceReader::ConsumerGroup { name, ready, .. }) => DesiredCondition::new(
            types::PROGRESSING,
            !ready,
            if *ready {
                reasons::DEPLOYMENT_READY
            } else {
                reasons::DEPLOYMENT_PROGRESSING
            },
            format!("read by the collector of ConsumerGroup {name:?}"),
        ),
        None => DesiredCondition::new(types::PROGRESSING, false, reasons::AS_EXPECTED, ""),
    });

    out.push(if let Some(e) = &source_error {
        DesiredCondition::new(types::DEGRADED, true, reasons::SOURCE_ERROR, e)
    } else if let Some(d) = not_ready_destination {
        DesiredCondition::new(
            types::DEGRADED,
            true,
            reasons::DESTINATION_NOT_READY,
            format!("SiemDestination {:?} is not ready", d.name),
        )
    } else {
        DesiredCondition::new(types::DEGRADED, false, reasons::AS_EXPECTED, "")
    });

    out.push(if obs.suspended {
        DesiredCondition::new(
            types::SOURCE_CONNECTED,
            Status::Unknown,
            reasons::SUSPENDED,
            "collection is suspended",
        )
    } else {
        match (obs.report, &source_error) {
            (_, Some(e)) => DesiredCondition::new(types::SOURCE_CONNECTED, false, reasons::SOURCE_ERROR, e),
            (Some(_), None) => DesiredCondition::new(
                types::SOURCE_CONNECTED,
                true,
                reasons::COLLECTING,
                "the collector reads the source",
            ),
            (None, None) => DesiredCondition::new(
                types::SOURCE_CONNECTED,
                Status::Unknown,
                reasons::AWAITING_REPORT,
                "the collector has not reported yet",
            ),
        }
    });
    out.push(destinations_ready);
    out.extend(report_conditions(obs.report, obs.lag_threshold_seconds));
    out.extend(dead_letter_conditions(obs));
    out.extend(obs.silence.as_ref().map(|check| silence_condition(obs, check)));
    out
}

/// `DeadLettered` from the report, and `DeadLettersDurable` from the spec.
///
/// `DeadLettered` is `True` once a record was dead-lettered (count and last reason in the
/// message), or when a dead letter could not be written (`DeadLetterFailed`: its record is held
/// unacknowledged). It stays `True` for the current generation of the spec even when a restarted
/// collector reports 0 again; changing the spec (e.g. after fixing the cause) clears it.
fn dead_letter_conditions(obs: &LogSourceObservation<'_>) -> Vec<DesiredCondition> {
    let dead_lettered = match (obs.report, obs.dead_lettered_before) {
        (Some(r), _) if r.dead_letter_error.is_some() => DesiredCondition::new(
            types::DEAD_LETTERED,
            true,
            reasons::DEAD_LETTER_FAILED,
            format!(
                "a dead letter could not be written, its record is held unacknowledged: {}",
                r.dead_letter_error.as_deref().unwrap_or_default()
            ),
        ),
        (Some(r), _) if r.events_dead_lettered > 0 => DesiredCondition::new(
            types::DEAD_LETTERED,
            true,
            reasons::RECORDS_DEAD_LETTERED,
            format!(
                "{} record(s) dead-lettered{}; last reason: {}",
                r.events_dead_lettered,
                match obs.dead_letter_destination {
                    Some(d) => format!(" to SiemDestination {d:?}"),
                    None => String::new(),
                },
                r.last_dead_letter_reason.as_deref().unwrap_or("unknown")
            ),
        ),
        (_, Some(before)) => DesiredCondition::new(types::DEAD_LETTERED, true, reasons::RECORDS_DEAD_LETTERED, before),
        (Some(_), None) => DesiredCondition::new(
            types::DEAD_LETTERED,
            false,
            reasons::AS_EXPECTED,
            "no record dead-lettered",
        ),
        (None, None) => DesiredCondition::new(
            types::DEAD_LETTERED,
            Status::Unknown,
            reasons::AWAITING_REPORT,
            "no report yet",
        ),
    };
    let durable = match obs.dead_letter_destination {
        Some(d) => DesiredCondition::new(
            types::DEAD_LETTERS_DURABLE,
            true,
            reasons::DEAD_LETTER_DESTINATION,
            format!("dead letters go to SiemDestination {d:?}"),
        ),
        None => DesiredCondition::new(
            types::DEAD_LETTERS_DURABLE,
            false,
            reasons::DEAD_LETTERS_IN_POD,
            "no spec.deadLetter.destination: dead letters are files in the collector pod, lost when it is replaced",
        ),
    };
    vec![dead_lettered, durable]
}

/// `Lagging`, `Throttled` and `DataLoss` from a collector's report.
fn report_conditions(report: Option<&LogSourceReport>, lag_threshold_seconds: i64) -> Vec<DesiredCondition> {
    let Some(report) = report else {
        return vec![
            DesiredCondition::new(
                types::LAGGING,
                Status::Unknown,
                reasons::AWAITING_REPORT,
                "no report yet",
            ),
            DesiredCondition::new(
                types::THROTTLED,
                Status::Unknown,
                reasons::AWAITING_REPORT,
                "no report yet",
            ),
            DesiredCondition::new(
                types::DATA_LOSS,
                Status::Unknown,
                reasons::AWAITING_REPORT,
                "no report yet",
            ),
        ];
    };
    let lagging = match report.lag_seconds {
        Some(lag) if lag > lag_threshold_seconds => DesiredCondition::new(
            types::LAGGING,
            true,
            reasons::LAG_ABOVE_THRESHOLD,
            format!("{lag}s behind, threshold {lag_threshold_seconds}s"),
        ),
        _ => DesiredCondition::new(types::LAGGING, false, reasons::AS_EXPECTED, ""),
    };
    let throttled = if report.throttled {
        DesiredCondition::new(
            types::THROTTLED,
            true,
            reasons::THROTTLED,
            "the source API is throttling requests",
        )
    } else {
        DesiredCondition::new(types::THROTTLED, false, reasons::AS_EXPECTED, "")
    };
    let data_loss = if report.data_loss.is_empty() {
        DesiredCondition::new(types::DATA_LOSS, false, reasons::AS_EXPECTED, "")
    } else {
        let ranges: Vec<String> = report
            .data_loss
            .iter()
            .map(|r| format!("{} {}..{} ({})", r.stream, r.from, r.to, r.reason))
            .collect();
        DesiredCondition::new(types::DATA_LOSS, true, reasons::RECORDS_LOST, ranges.join("; "))
    };
    vec![lagging, throttled, data_loss]
}

/// What the ConsumerGroup controller observed.
#[derive(Clone, Debug, PartialEq)]
pub struct ConsumerGroupObservation<'a> {
    pub blocked: Option<Blocked>,
    pub pods: Option<CollectorPods>,
    /// LogSources routed from this group.
    pub routes: usize,
    /// LogSources that name the group but were left out, with why.
    pub skipped: Vec<(String, Blocked)>,
    pub report: Option<&'a CollectorReport>,
    pub lag_threshold: &'a LagThreshold,
    /// Partition ownership from the checkpoint Leases; empty before the collector wrote any.
    pub partitions: &'a [PartitionStatus],
}

/// Largest lag in seconds reported by any LogSource of a collector.
pub fn max_lag_seconds(report: Option<&CollectorReport>) -> Option<i64> {
    report?.log_sources.values().filter_map(|l| l.lag_seconds).max()
}

/// The conditions of a ConsumerGroup.
pub fn consumer_group_conditions(obs: &ConsumerGroupObservation<'_>) -> Vec<DesiredCondition> {
    if let Some(blocked) = &obs.blocked {
        return vec![
            DesiredCondition::new(types::READY, false, blocked.reason, &blocked.message),
            DesiredCondition::new(types::PROGRESSING, false, blocked.reason, &blocked.message),
            DesiredCondition::new(types::DEGRADED, true, blocked.reason, &blocked.message),
            DesiredCondition::new(types::BALANCED, Status::Unknown, blocked.reason, &blocked.message),
            DesiredCondition::new(types::LAGGING, Status::Unknown, blocked.reason, &blocked.message),
        ];
    }
    let pods = obs.pods.unwrap_or_default();
    let mut out = Vec::new();
    out.push(if obs.routes == 0 {
        DesiredCondition::new(
            types::READY,
            false,
            reasons::NO_CONSUMERS,
            "no LogSource takes records from this group; the collector is scaled to 0 so nothing is checkpointed unread",
        )
    } else if !pods.is_ready() {
        let (status, reason, message) = pods.not_ready();
        DesiredCondition::new(types::READY, status, reason, message)
    } else {
        DesiredCondition::new(types::READY, true, reasons::DEPLOYMENT_READY, pods.summary())
    });
    out.push(pods.progressing());
    out.push(match obs.skipped.first() {
        Some((name, why)) => DesiredCondition::new(
            types::DEGRADED,
            true,
            why.reason,
            format!("LogSource {name:?} is left out: {}", why.message),
        ),
        None => DesiredCondition::new(types::DEGRADED, false, reasons::AS_EXPECTED, ""),
    });
    out.push(balanced(&pods, obs.partitions));
    let partition_lag = obs.partitions.iter().filter_map(|p| p.lag_seconds).max();
    let lag_events = obs.partitions.iter().filter_map(|p| p.lag_events).max();
    if let Some(events) = lag_events.filter(|e| *e > obs.lag_threshold.events) {
        out.push(DesiredCondition::new(
            types::LAGGING,
            true,
            reasons::LAG_ABOVE_THRESHOLD,
            format!("{events} events behind, threshold {}", obs.lag_threshold.events),
        ));
        return out;
    }
    out.push(
        match max_lag_seconds(obs.report).into_iter().chain(partition_lag).max() {
            None => DesiredCondition::new(
                types::LAGGING,
                Status::Unknown,
                reasons::AWAITING_REPORT,
                "no report yet",
            ),
            Some(lag) if lag > obs.lag_threshold.seconds => DesiredCondition::new(
                types::LAGGING,
                true,
                reasons::LAG_ABOVE_THRESHOLD,
                format!("{lag}s behind, threshold {}s", obs.lag_threshold.seconds),
            ),
            Some(lag) => DesiredCondition::new(types::LAGGING, false, reasons::AS_EXPECTED, format!("{lag}s behind")),
        },
    );
    out
}

/// `Balanced`: every partition has an owner, and the partitions are spread over as many pods
/// as can share them. Before any Lease exists, the pods being ready is all there is to know.
fn balanced(pods: &CollectorPods, partitions: &[PartitionStatus]) -> DesiredCondition {
    if pods.desired == 0 {
        return DesiredCondition::new(types::BALANCED, false, reasons::NO_CONSUMERS, "no collector pod runs");
    }
    if partitions.is_empty() {
        return if pods.is_ready() {
            DesiredCondition::new(
                types::BALANCED,
                true,
                reasons::AS_EXPECTED,
                format!("{} collector pods ready to share the partitions", pods.desired),
            )
        } else {
            DesiredCondition::new(types::BALANCED, false, reasons::DEPLOYMENT_PROGRESSING, pods.summary())
        };
    }
    let unowned: Vec<&str> = partitions
        .iter()
        .filter(|p| p.owner.is_none())
        .map(|p| p.id.as_str())
        .collect();
    if !unowned.is_empty() {
        return DesiredCondition::new(
            types::BALANCED,
            false,
            reasons::PARTITIONS_UNOWNED,
            format!("partitions without an owner: {}", unowned.join(", ")),
        );
    }
    let mut per_owner: std::collections::BTreeMap<&str, usize> = std::collections::BTreeMap::new();
    for p in partitions {
        if let Some(owner) = &p.owner {
            *per_owner.entry(owner.as_str()).or_default() += 1;
        }
    }
    let expected_owners = usize::try_from(pods.desired).unwrap_or(0).min(partitions.len());
    let most = per_owner.values().max().copied().unwrap_or(0);
    let least = per_owner.values().min().copied().unwrap_or(0);
    if per_owner.len() < expected_owners || most - least > 1 {
        return DesiredCondition::new(
            types::BALANCED,
            false,
            reasons::UNBALANCED,
            format!(
                "{} partitions owned by {} of {} pods ({}..{} each)",
                partitions.len(),
                per_owner.len(),
                pods.desired,
                least,
                most
            ),
        );
    }
    DesiredCondition::new(
        types::BALANCED,
        true,
        reasons::AS_EXPECTED,
        format!("{} partitions spread over {} pods", partitions.len(), per_owner.len()),
    )
}

/// The `Ready` condition of a SiemDestination: what blocks it, else credentials a collector
/// reports refused, else the connectivity check (which has no credentials, so it must not hide a
/// refusal).
pub fn destination_ready(
    blocked: Option<&Blocked>,
    refused: Option<&CredentialsRefused>,
    check: Option<&Result<String, String>>,
) -> DesiredCondition {
    if let (None, Some(r)) = (blocked, refused) {
        return DesiredCondition::new(types::READY, false, r.reason, &r.message);
    }
    match (blocked, check) {
        (Some(b), _) => DesiredCondition::new(types::READY, false, b.reason, &b.message),
        (None, Some(Ok(message))) => DesiredCondition::new(types::READY, true, reasons::REACHABLE, message),
        (None, Some(Err(message))) => DesiredCondition::new(types::READY, false, reasons::UNREACHABLE, message),
        (None, None) => DesiredCondition::new(
            types::READY,
            Status::Unknown,
            reasons::AWAITING_REPORT,
            "not checked yet",
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::api::LostRange;

    fn find<'a>(conds: &'a [DesiredCondition], type_: &str) -> &'a DesiredCondition {
        conds.iter().find(|c| c.type_ == type_).unwrap()
    }

    fn ready_pods() -> CollectorPods {
        CollectorPods {
            desired: 1,
            current: 1,
            ready: 1,
            updated: 1,
            observed: true,
        }
    }

    fn healthy_destination() -> Vec<DestinationHealth> {
        vec![DestinationHealth {
            name: "stdout".into(),
            ready: Some(true),
            message: String::new(),
        }]
    }

    fn silence_conditions(report: Option<&LogSourceReport>, now: &str, suspended: bool) -> Vec<DesiredCondition> {
        log_source_conditions(&LogSourceObservation {
            silence: Some(SilenceCheck {
                threshold_seconds: 3600,
                now: now.parse().unwrap(),
            }),
            blocked: None,
            suspended,
            reader: Some(LogSourceReader::Own(ready_pods())),
            destinations: healthy_destination(),
            report,
            lag_threshold_seconds: 600,
            dead_letter_destination: None,
            dead_lettered_before: None,
        })
    }

    #[test]
    fn a_source_without_records_past_its_threshold_is_silent_and_the_condition_holds_no_running_time() {
        let report = LogSourceReport {
            last_received_time: Some("2026-05-01T10:00:00Z".into()),
            ..LogSourceReport::default()
        };
        let within = silence_conditions(Some(&report), "2026-05-01T10:30:00Z", false);
        let later_within = silence_conditions(Some(&report), "2026-05-01T10:59:00Z", false);
        let c = find(&within, types::SOURCE_SILENT);
        assert_eq!((c.status, c.reason), (Status::False, reasons::RECEIVING));
        // Same condition half an hour later: no status write while nothing changes.
        assert_eq!(find(&later_within, types::SOURCE_SILENT), c);
        let silent = silence_conditions(Some(&report), "2026-05-01T11:00:01Z", false);
        let c = find(&silent, types::SOURCE_SILENT);
        assert_eq!((c.status, c.reason), (Status::True, reasons::NO_RECORDS_RECEIVED));
        assert!(
            c.message.contains("2026-05-01T10:00:00Z") && c.message.contains("60m"),
            "{}",
            c.message
        );
        assert_eq!(
            silence_conditions(Some(&report), "2026-05-01T15:00:00Z", false),
            silent,
            "unchanged while silent"
        );
        // Not silent: suspended, or nothing known.
        let suspended = silence_conditions(Some(&report), "2026-05-01T15:00:00Z", true);
        assert_eq!(find(&suspended, types::SOURCE_SILENT).status, Status::False);
        let none = silence_conditions(None, "2026-05-01T15:00:00Z", false);
        assert_eq!(find(&none, types::SOURCE_SILENT).status, Status::Unknown);
        let old_collector = silence_conditions(Some(&LogSourceReport::default()), "2026-05-01T15:00:00Z", false);
        assert_eq!(find(&old_collector, types::SOURCE_SILENT).status, Status::Unknown);
    }

    #[test]
    fn the_operator_looks_again_when_a_source_would_turn_silent() {
        let report = LogSourceReport {
            last_received_time: Some("2026-05-01T10:00:00Z".into()),
            ..LogSourceReport::default()
        };
        let check = |now: &str| SilenceCheck {
            threshold_seconds: 3600,
            now: now.parse().unwrap(),
        };
        assert_eq!(
            check("2026-05-01T10:59:30Z").due_in(Some(&report)),
            Some(std::time::Duration::from_secs(30))
        );
        assert_eq!(
            check("2026-05-01T11:00:30Z").due_in(Some(&report)),
            None,
            "silent already"
        );
        assert_eq!(check("2026-05-01T10:00:00Z").due_in(None), None);
    }

    #[test]
    fn log_source_is_ready_when_collector_and_destinations_are() {
        let report = LogSourceReport {
            events_forwarded: 10,
            ..LogSourceReport::default()
        };
        let conds = log_source_conditions(&LogSourceObservation {
            silence: None,
            blocked: None,
            suspended: false,
            reader: Some(LogSourceReader::Own(ready_pods())),
            destinations: healthy_destination(),
            report: Some(&report),
            lag_threshold_seconds: 600,
            dead_letter_destination: None,
            dead_lettered_before: None,
        });
        assert_eq!(find(&conds, types::READY).status, Status::True);
        assert_eq!(find(&conds, types::SOURCE_CONNECTED).status, Status::True);
        assert_eq!(find(&conds, types::DESTINATIONS_READY).status, Status::True);
        assert_eq!(find(&conds, types::DEGRADED).status, Status::False);
        assert_eq!(find(&conds, types::LAGGING).status, Status::False);
        assert_eq!(find(&conds, types::DATA_LOSS).status, Status::False);
    }

    #[test]
    fn missing_secret_blocks_with_its_reason() {
        let conds = log_source_conditions(&LogSourceObservation {
            silence: None,
            blocked: Some(Blocked::new(reasons::SECRET_NOT_FOUND, "Secret \"o365\" not found")),
            suspended: false,
            reader: None,
            destinations: healthy_destination(),
            report: None,
            lag_threshold_seconds: 600,
            dead_letter_destination: None,
            dead_lettered_before: None,
        });
        let ready = find(&conds, types::READY);
        assert_eq!(ready.status, Status::False);
        assert_eq!(ready.reason, reasons::SECRET_NOT_FOUND);
        assert!(ready.message.contains("o365"));
        assert_eq!(find(&conds, types::DEGRADED).status, Status::True);
    }

    #[test]
    fn starting_pods_and_report_problems_show() {
        let report = LogSourceReport {
            lag_seconds: Some(4000),
            throttled: true,
            data_loss: vec![LostRange {
                stream: "Audit.General".into(),
                from: "2026-11-01T00:00:00Z".into(),
                to: "2026-11-01T01:00:00Z".into(),
                reason: "content expired".into(),
            }],
            ..LogSourceReport::default()
        };
        let conds = log_source_conditions(&LogSourceObservation {
            silence: None,
            blocked: None,
            suspended: false,
            reader: Some(LogSourceReader::Own(CollectorPods {
                desired: 1,
                current: 1,
                ready: 0,
                updated: 1,
                observed: false,
            })),
            destinations: healthy_destination(),
            report: Some(&report),
            lag_threshold_seconds: 600,
            dead_letter_destination: None,
            dead_lettered_before: None,
        });
        assert_eq!(find(&conds, types::READY).reason, reasons::DEPLOYMENT_PROGRESSING);
        assert_eq!(find(&conds, types::PROGRESSING).status, Status::True);
        assert_eq!(find(&conds, types::LAGGING).status, Status::True);
        assert_eq!(find(&conds, types::THROTTLED).status, Status::True);
        let loss = find(&conds, types::DATA_LOSS);
        assert_eq!(loss.status, Status::True);
        assert!(loss.message.contains("Audit.General"));
    }

    #[test]
    fn destination_not_ready_keeps_log_source_not_ready() {
        let conds = log_source_conditions(&LogSourceObservation {
            silence: None,
            blocked: None,
            suspended: false,
            reader: Some(LogSourceReader::Own(ready_pods())),
            destinations: vec![DestinationHealth {
                name: "splunk".into(),
                ready: Some(false),
                message: "cannot connect to splunk.contoso.example:8088".into(),
            }],
            report: None,
            lag_threshold_seconds: 600,
            dead_letter_destination: None,
            dead_lettered_before: None,
        });
        assert_eq!(find(&conds, types::READY).reason, reasons::DESTINATION_NOT_READY);
        let dr = find(&conds, types::DESTINATIONS_READY);
        assert_eq!(dr.status, Status::False);
        assert!(dr.message.contains("splunk.contoso.example"));
    }

    fn dead_letter_observation<'a>(
        report: Option<&'a LogSourceReport>,
        destination: Option<&'a str>,
        before: Option<&'a str>,
    ) -> Vec<DesiredCondition> {
        log_source_conditions(&LogSourceObservation {
            silence: None,
            blocked: None,
            suspended: false,
            reader: Some(LogSourceReader::Own(ready_pods())),
            destinations: healthy_destination(),
            report,
            lag_threshold_seconds: 600,
            dead_letter_destination: destination,
            dead_lettered_before: before,
        })
    }

    #[test]
    fn dead_letters_raise_dead_lettered_with_count_and_reason_and_it_stays_after_a_restart() {
        let clean = LogSourceReport {
            events_forwarded: 10,
            ..Default::default()
        };
        let conds = dead_letter_observation(Some(&clean), None, None);
        assert_eq!(find(&conds, types::DEAD_LETTERED).status, Status::False);
        assert_eq!(find(&conds, types::DATA_LOSS).status, Status::False);

        let report = LogSourceReport {
            events_forwarded: 8,
            events_dead_lettered: 2,
            last_dead_letter_reason: Some("HTTP 400: mapper_parsing_exception".into()),
            ..Default::default()
        };
        let conds = dead_letter_observation(Some(&report), Some("archive"), None);
        let dl = find(&conds, types::DEAD_LETTERED);
        assert_eq!((dl.status, dl.reason), (Status::True, reasons::RECORDS_DEAD_LETTERED));
        assert!(dl.message.starts_with("2 record(s)"), "{}", dl.message);
        assert!(dl.message.contains("mapper_parsing_exception") && dl.message.contains("archive"));

        // A restarted collector reports 0 again: the condition keeps what it said.
        let conds = dead_letter_observation(Some(&clean), Some("archive"), Some(dl.message.as_str()));
        let again = find(&conds, types::DEAD_LETTERED);
        assert_eq!(again.status, Status::True);
        assert_eq!(again.message, dl.message);
    }

    #[test]
    fn a_dead_letter_that_cannot_be_written_shows_and_durability_follows_the_spec() {
        let report = LogSourceReport {
            dead_letter_error: Some("dead-letter files in /var/lib/siembridge/dead-letter are full".into()),
            ..Default::default()
        };
        let conds = dead_letter_observation(Some(&report), None, None);
        let dl = find(&conds, types::DEAD_LETTERED);
        assert_eq!((dl.status, dl.reason), (Status::True, reasons::DEAD_LETTER_FAILED));
        assert!(dl.message.contains("full"));
        let durable = find(&conds, types::DEAD_LETTERS_DURABLE);
        assert_eq!(
            (durable.status, durable.reason),
            (Status::False, reasons::DEAD_LETTERS_IN_POD)
        );
        let conds = dead_letter_observation(None, Some("archive"), None);
        assert_eq!(find(&conds, types::DEAD_LETTERS_DURABLE).status, Status::True);
        assert_eq!(find(&conds, types::DEAD_LETTERED).status, Status::Unknown);
    }

    #[test]
    fn consumer_group_without_log_sources_is_not_ready_and_lag_is_checked() {
        let threshold = LagThreshold::default();
        let conds = consumer_group_conditions(&ConsumerGroupObservation {
            blocked: None,
            pods: Some(CollectorPods {
                desired: 0,
                current: 0,
                observed: true,
                ..CollectorPods::default()
            }),
            routes: 0,
            skipped: vec![],
            report: None,
            lag_threshold: &threshold,
            partitions: &[],
        });
        assert_eq!(find(&conds, types::READY).reason, reasons::NO_CONSUMERS);

        let mut report = CollectorReport::default();
        report.log_sources.insert(
            "entra".into(),
            LogSourceReport {
                lag_seconds: Some(threshold.seconds + 1),
                ..LogSourceReport::default()
            },
        );
        let conds = consumer_group_conditions(&ConsumerGroupObservation {
            blocked: None,
            pods: Some(CollectorPods {
                desired: 2,
                current: 2,
                ready: 2,
                updated: 2,
                observed: true,
            }),
            routes: 1,
            skipped: vec![(
                "intune".into(),
                Blocked::new(reasons::DESTINATION_NOT_FOUND, "SiemDestination \"sekoia\" not found"),
            )],
            report: Some(&report),
            lag_threshold: &threshold,
            partitions: &[],
        });
        assert_eq!(find(&conds, types::READY).status, Status::True);
        assert_eq!(find(&conds, types::BALANCED).status, Status::True);
        assert_eq!(find(&conds, types::LAGGING).status, Status::True);
        let degraded = find(&conds, types::DEGRADED);
        assert_eq!(degraded.reason, reasons::DESTINATION_NOT_FOUND);
        assert!(degraded.message.contains("intune"));
    }

    #[test]
    fn balanced_needs_every_partition_owned_and_spread() {
        let pods = CollectorPods {
            desired: 2,
            current: 2,
            ready: 2,
            updated: 2,
            observed: true,
        };
        let part = |id: &str, owner: Option<&str>| PartitionStatus {
            id: id.into(),
            owner: owner.map(str::to_string),
            ..PartitionStatus::default()
        };
        let even = [
            part("0", Some("a")),
            part("1", Some("b")),
            part("2", Some("a")),
            part("3", Some("b")),
        ];
        assert_eq!(balanced(&pods, &even).status, Status::True);
        let one_owner = [
            part("0", Some("a")),
            part("1", Some("a")),
            part("2", Some("a")),
            part("3", Some("a")),
        ];
        assert_eq!(balanced(&pods, &one_owner).reason, reasons::UNBALANCED);
        let orphan = [part("0", Some("a")), part("1", None)];
        let c = balanced(&pods, &orphan);
        assert_eq!(c.reason, reasons::PARTITIONS_UNOWNED);
        assert!(c.message.contains('1'));
    }

    #[test]
    fn destination_ready_follows_the_check() {
        assert_eq!(
            destination_ready(
                None,
                None,
                Some(&Err("cannot connect to es.contoso.example:9200".into()))
            )
            .reason,
            reasons::UNREACHABLE
        );
        assert_eq!(
            destination_ready(None, None, Some(&Ok("ok".into()))).status,
            Status::True
        );
        let blocked = Blocked::new(reasons::INVALID_SPEC, "no destination kind is set");
        assert_eq!(
            destination_ready(Some(&blocked), None, None).reason,
            reasons::INVALID_SPEC
        );
    }

    fn report_with(time: &str, reason: Option<&str>) -> CollectorReport {
        let mut report = CollectorReport {
            reporter: "sb-ls-o365-7d9f-abcde".into(),
            time: time.into(),
            ..Default::default()
        };
        report.destinations.insert(
            "splunk".into(),
            crate::config::DestinationReport {
                healthy: reason.is_none(),
                last_error: reason
                    .map(|_| "Splunk HEC HTTP 403 code 4: Invalid token (check the HEC token Secret)".into()),
                reason: reason.map(str::to_string),
                ..Default::default()
            },
        );
        report
    }

    #[test]
    fn refused_credentials_reported_by_a_collector_override_a_reachable_check() {
        let now = chrono::DateTime::parse_from_rfc3339("2026-12-01T10:00:30Z")
            .unwrap()
            .with_timezone(&chrono::Utc);
        let report = report_with("2026-12-01T10:00:20Z", Some("Forbidden"));
        let refused = CredentialsRefused::from_report("sb-ls-o365", &report, "splunk", now).unwrap();
        let ready = destination_ready(None, Some(&refused), Some(&Ok("connected to splunk:8088".into())));
        println!(
            "SiemDestination Ready: {} {}: {}",
            ready.status.as_str(),
            ready.reason,
            ready.message
        );
        assert_eq!(ready.status, Status::False);
        assert_eq!(ready.reason, reasons::FORBIDDEN);
        assert!(ready.message.contains("code 4") && ready.message.contains("sb-ls-o365"));
        let unauthorized = report_with("2026-12-01T10:00:20Z", Some("Unauthorized"));
        assert_eq!(
            CredentialsRefused::from_report("c", &unauthorized, "splunk", now)
                .unwrap()
                .reason,
            reasons::UNAUTHORIZED
        );
        // A missing Secret still comes first: it is what the user must fix.
        let blocked = Blocked::new(reasons::SECRET_NOT_FOUND, "Secret \"hec\" not found");
        assert_eq!(
            destination_ready(Some(&blocked), Some(&refused), None).reason,
            reasons::SECRET_NOT_FOUND
        );
        // Healthy, another destination, or a report of a collector gone silent: no refusal.
        let healthy = report_with("2026-12-01T10:00:20Z", None);
        assert_eq!(CredentialsRefused::from_report("c", &healthy, "splunk", now), None);
        assert_eq!(CredentialsRefused::from_report("c", &report, "elastic", now), None);
        let stale = report_with("2026-12-01T09:00:00Z", Some("Forbidden"));
        assert_eq!(CredentialsRefused::from_report("c", &stale, "splunk", now), None);
    }
}
