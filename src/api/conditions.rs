//! Conditions that follow the Kubernetes API conventions: `type`, `status`, `reason`, `message`,
//! `lastTransitionTime`, `observedGeneration`.

use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, Time};
use k8s_openapi::jiff::Timestamp;

/// Condition types used by siembridge resources.
pub mod types {
    pub const READY: &str = "Ready";
    pub const PROGRESSING: &str = "Progressing";
    pub const DEGRADED: &str = "Degraded";
    pub const SOURCE_CONNECTED: &str = "SourceConnected";
    pub const DESTINATIONS_READY: &str = "DestinationsReady";
    pub const LAGGING: &str = "Lagging";
    pub const THROTTLED: &str = "Throttled";
    pub const DATA_LOSS: &str = "DataLoss";
    pub const BALANCED: &str = "Balanced";
    pub const DEAD_LETTERED: &str = "DeadLettered";
    pub const DEAD_LETTERS_DURABLE: &str = "DeadLettersDurable";
    /// No record received for longer than the LogSource's silence threshold.
    pub const SOURCE_SILENT: &str = "SourceSilent";
}

/// Reasons, in CamelCase as the conventions ask.
pub mod reasons {
    pub const SECRET_NOT_FOUND: &str = "SecretNotFound";
    pub const DESTINATION_NOT_FOUND: &str = "DestinationNotFound";
    pub const CONSUMER_GROUP_NOT_FOUND: &str = "ConsumerGroupNotFound";
    pub const INVALID_SPEC: &str = "InvalidSpec";
    /// The spec is valid but this collector cannot run its source kind (yet).
    pub const SOURCE_NOT_SUPPORTED: &str = "SourceNotSupported";
    pub const SUSPENDED: &str = "Suspended";
    pub const DEPLOYMENT_READY: &str = "DeploymentReady";
    pub const DEPLOYMENT_PROGRESSING: &str = "DeploymentProgressing";
    pub const DEPLOYMENT_UNAVAILABLE: &str = "DeploymentUnavailable";
    pub const COLLECTING: &str = "Collecting";
    pub const CONFIGURED: &str = "Configured";
    pub const DESTINATION_NOT_READY: &str = "DestinationNotReady";
    pub const ALL_READY: &str = "AllReady";
    pub const NO_CONSUMERS: &str = "NoLogSources";
    pub const AS_EXPECTED: &str = "AsExpected";
    pub const SOURCE_ERROR: &str = "SourceError";
    pub const LAG_ABOVE_THRESHOLD: &str = "LagAboveThreshold";
    pub const THROTTLED: &str = "Throttled";
    pub const RECORDS_LOST: &str = "RecordsLost";
    pub const AWAITING_REPORT: &str = "AwaitingReport";
    pub const UNREACHABLE: &str = "Unreachable";
    pub const REACHABLE: &str = "Reachable";
    pub const PARTITIONS_UNOWNED: &str = "PartitionsUnowned";
    pub const UNBALANCED: &str = "Unbalanced";
    pub const RECORDS_DEAD_LETTERED: &str = "RecordsDeadLettered";
    pub const DEAD_LETTER_FAILED: &str = "DeadLetterFailed";
    pub const DEAD_LETTER_DESTINATION: &str = "DeadLetterDestination";
    pub const DEAD_LETTERS_IN_POD: &str = "DeadLettersInPod";
    /// A collector reports that the destination refuses the credentials (401-like).
    pub const UNAUTHORIZED: &str = "Unauthorized";
    /// A collector reports that the destination refuses the credentials (403-like).
    pub const FORBIDDEN: &str = "Forbidden";
    /// `SourceSilent`: no record received for longer than the threshold.
    pub const NO_RECORDS_RECEIVED: &str = "NoRecordsReceived";
    /// `SourceSilent=False`: records arrive within the threshold.
    pub const RECEIVING: &str = "Receiving";
}

/// Condition status values.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Status {
    True,
    False,
    Unknown,
}

impl Status {
    pub fn as_str(&self) -> &'static str {
        match self {
            Status::True => "True",
            Status::False => "False",
            Status::Unknown => "Unknown",
        }
    }
}

impl From<bool> for Status {
    fn from(value: bool) -> Self {
        if value {
            Status::True
        } else {
            Status::False
        }
    }
}

/// A condition as computed by a controller, before it is merged into the existing list.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DesiredCondition {
    pub type_: &'static str,
    pub status: Status,
    pub reason: &'static str,
    pub message: String,
}

/// Longest condition message kept in a status (bytes). Messages quote collector errors and
/// server answers; a status is read by every watcher of the resource, so it stays small.
pub const MAX_MESSAGE_BYTES: usize = 1024;

/// `text` cut to at most `max` bytes on a character boundary, marked with `…` when cut.
pub fn bounded(text: &str, max: usize) -> String {
    if text.len() <= max {
        return text.to_string();
    }
    let mut end = max.saturating_sub('…'.len_utf8());
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}…", &text[..end])
}

impl DesiredCondition {
    /// A condition; its message is cut to [`MAX_MESSAGE_BYTES`].
    pub fn new(
        type_: &'static str,
        status: impl Into<Status>,
        reason: &'static str,
        message: impl Into<String>,
    ) -> Self {
        DesiredCondition {
            type_,
            status: status.into(),
            reason,
            message: bounded(&message.into(), MAX_MESSAGE_BYTES),
        }
    }
}

/// Merge computed conditions into the current list. A condition whose status is unchanged keeps
/// its `lastTransitionTime`, so re-applying the same state causes no status churn; conditions of
/// other types are kept as they are.
pub fn merge(
    current: &[Condition],
    desired: &[DesiredCondition],
    generation: Option<i64>,
    now: Timestamp,
) -> Vec<Condition> {
    let mut out: Vec<Condition> = current
        .iter()
        .filter(|c| !desired.iter().any(|d| d.type_ == c.type_))
        .cloned()
        .collect();
    for d in desired {
        let previous = current.iter().find(|c| c.type_ == d.type_);
        let last_transition_time = match previous {
            Some(p) if p.status == d.status.as_str() => p.last_transition_time.clone(),
            _ => Time(now),
        };
        out.push(Condition {
            type_: d.type_.to_string(),
            status: d.status.as_str().to_string(),
            reason: d.reason.to_string(),
            message: bounded(&d.message, MAX_MESSAGE_BYTES),
            last_transition_time,
            observed_generation: generation,
        });
    }
    out.sort_by(|a, b| {
        order(&a.type_)
            .cmp(&order(&b.type_))
            .then_with(|| a.type_.cmp(&b.type_))
    });
    out
}

/// `Ready` first, then the generic ones, then kind-specific ones, so `kubectl describe` reads well.
fn order(type_: &str) -> u8 {
    match type_ {
        types::READY => 0,
        types::PROGRESSING => 1,
        types::DEGRADED => 2,
        _ => 3,
    }
}

/// The condition of a type in a list, if present.
pub fn find<'a>(conditions: &'a [Condition], type_: &str) -> Option<&'a Condition> {
    conditions.iter().find(|c| c.type_ == type_)
}

/// Whether a condition of that type is present with status `True`.
pub fn is_true(conditions: &[Condition], type_: &str) -> bool {
    find(conditions, type_).is_some_and(|c| c.status == "True")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn messages_are_bounded_on_a_character_boundary() {
        let long = "é".repeat(4000);
        let d = DesiredCondition::new(types::READY, false, reasons::SOURCE_ERROR, long.clone());
        assert!(d.message.len() <= MAX_MESSAGE_BYTES, "{}", d.message.len());
        assert!(d.message.ends_with('…'));
        let merged = merge(
            &[],
            &[DesiredCondition {
                message: long,
                ..d.clone()
            }],
            Some(1),
            t(1),
        );
        assert!(merged[0].message.len() <= MAX_MESSAGE_BYTES);
        assert_eq!(bounded("short", MAX_MESSAGE_BYTES), "short");
    }

    fn t(secs: i64) -> Timestamp {
        Timestamp::from_second(secs).unwrap()
    }

    #[test]
    fn unchanged_status_keeps_transition_time() {
        let first = merge(
            &[],
            &[DesiredCondition::new(types::READY, true, reasons::ALL_READY, "ok")],
            Some(1),
            t(100),
        );
        let second = merge(
            &first,
            &[DesiredCondition::new(
                types::READY,
                true,
                reasons::ALL_READY,
                "still ok",
            )],
            Some(2),
            t(200),
        );
        assert_eq!(second[0].last_transition_time, Time(t(100)));
        assert_eq!(second[0].message, "still ok");
        assert_eq!(second[0].observed_generation, Some(2));
    }

    #[test]
    fn changed_status_moves_transition_time() {
        let first = merge(
            &[],
            &[DesiredCondition::new(types::READY, true, reasons::ALL_READY, "ok")],
            Some(1),
            t(100),
        );
        let second = merge(
            &first,
            &[DesiredCondition::new(
                types::READY,
                false,
                reasons::SECRET_NOT_FOUND,
                "missing",
            )],
            Some(1),
            t(200),
        );
        assert_eq!(second[0].last_transition_time, Time(t(200)));
        assert_eq!(second[0].reason, "SecretNotFound");
        assert_eq!(second[0].status, "False");
    }

    #[test]
    fn other_types_are_kept_and_ready_sorts_first() {
        let first = merge(
            &[],
            &[DesiredCondition::new(types::DATA_LOSS, false, reasons::AS_EXPECTED, "")],
            Some(1),
            t(1),
        );
        let second = merge(
            &first,
            &[DesiredCondition::new(types::READY, true, reasons::ALL_READY, "")],
            Some(1),
            t(2),
        );
        let kinds: Vec<_> = second.iter().map(|c| c.type_.as_str()).collect();
        assert_eq!(kinds, vec!["Ready", "DataLoss"]);
        assert!(is_true(&second, types::READY));
        assert!(!is_true(&second, types::DATA_LOSS));
    }
}
