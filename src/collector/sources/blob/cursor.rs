//! Where one container stands, as saved in its checkpoint.
//!
//! Diagnostic-settings archives: the position is the first hour not yet closed
//! (`2026-12-07T10:00:00Z`); the state holds the byte offset reached in every blob of that hour
//! and later hours read so far (`{"offsets": {"<blob name>": 1234}}`). An hour is closed once it
//! ended more than `overlapMinutes` ago and every blob listed under it was read to its end; its
//! offsets then leave the state, which so holds only the blobs of the open hours.
//!
//! siembridge archives: the position is the name of the last object read whole (objects are
//! immutable and read in name order); there is no state.

use std::collections::BTreeMap;
use std::sync::Arc;

use chrono::{DateTime, DurationRound, TimeDelta, Utc};

use crate::collector::ack::UnitState;
use crate::collector::checkpoint::Checkpoint;

/// Byte offsets of the blobs of the open hours, shared by the units that carry them.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Offsets(pub BTreeMap<String, u64>);

impl UnitState for Offsets {
    fn to_json(&self) -> serde_json::Value {
        serde_json::json!({ "offsets": self.0 })
    }
}

/// A diagnostic-settings container's cursor.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct HourCursor {
    /// First hour not yet closed.
    pub hour: DateTime<Utc>,
    /// Offset reached per blob of the open hours.
    pub offsets: Arc<Offsets>,
}

/// The hour `t` falls in.
pub fn hour_of(t: DateTime<Utc>) -> DateTime<Utc> {
    t.duration_trunc(TimeDelta::hours(1)).unwrap_or(t)
}

/// `2026-12-07T10:00:00Z`: the position of a cursor.
pub fn hour_text(hour: DateTime<Utc>) -> String {
    hour.to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
}

/// `y=2026/m=12/d=07/h=10/`: what follows a resource root ending with `y=` in a blob name.
pub fn hour_path(hour: DateTime<Utc>) -> String {
    hour.format("%Y/m=%m/d=%d/h=%H/").to_string()
}

impl HourCursor {
    /// A cursor at `hour` with nothing read.
    pub fn at(hour: DateTime<Utc>) -> Self {
        HourCursor {
            hour: hour_of(hour),
            offsets: Arc::new(Offsets::default()),
        }
    }

    /// The cursor a checkpoint holds.
    pub fn from_checkpoint(stream: &str, cp: &Checkpoint) -> Result<Self, String> {
        let hour = crate::collector::sources::api::parse_time(&cp.position)
            .ok_or_else(|| format!("checkpoint of {stream} has position {:?}, not an hour", cp.position))?;
        let mut offsets = BTreeMap::new();
        if let Some(map) = cp
            .state
            .as_ref()
            .and_then(|s| s.get("offsets"))
            .and_then(|o| o.as_object())
        {
            for (k, v) in map {
                let Some(n) = v.as_u64() else {
                    return Err(format!("checkpoint of {stream}: offset of {k:?} is not a number"));
                };
                offsets.insert(k.clone(), n);
            }
        }
        Ok(HourCursor {
            hour: hour_of(hour),
            offsets: Arc::new(Offsets(offsets)),
        })
    }

    /// Offset reached in `blob` (0 when never read).
    pub fn offset(&self, blob: &str) -> u64 {
        self.offsets.0.get(blob).copied().unwrap_or(0)
    }

    /// Record that `blob` is read up to `offset`.
    pub fn set_offset(&mut self, blob: &str, offset: u64) {
        Arc::make_mut(&mut self.offsets).0.insert(blob.to_string(), offset);
    }

    /// Close the cursor's hour: move to the next one and forget the offsets of `closed` blobs.
    pub fn close_hour(&mut self, closed: &[String]) {
        let offsets = Arc::make_mut(&mut self.offsets);
        for b in closed {
            offsets.0.remove(b);
        }
        self.hour += TimeDelta::hours(1);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_cursor_round_trips_through_its_checkpoint() {
        let mut c = HourCursor::at("2026-12-07T10:42:00Z".parse().unwrap());
        assert_eq!(hour_text(c.hour), "2026-12-07T10:00:00Z");
        assert_eq!(hour_path(c.hour), "2026/m=12/d=07/h=10/");
        c.set_offset("tenantId=t/y=2026/m=12/d=07/h=10/m=00/PT1H.json", 120);
        let cp = Checkpoint {
            position: hour_text(c.hour),
            state: Some(c.offsets.to_json()),
            updated: String::new(),
        };
        let back = HourCursor::from_checkpoint("s", &cp).unwrap();
        assert_eq!(back, c);
        let mut next = back.clone();
        next.close_hour(&["tenantId=t/y=2026/m=12/d=07/h=10/m=00/PT1H.json".to_string()]);
        assert_eq!(hour_text(next.hour), "2026-12-07T11:00:00Z");
        assert!(next.offsets.0.is_empty());
        // The unit that carried the earlier state still holds it.
        assert_eq!(back.offsets.0.len(), 1);
        let bad = Checkpoint {
            position: "yesterday".into(),
            ..Default::default()
        };
        assert!(HourCursor::from_checkpoint("s", &bad).is_err());
    }
}
