//! The live progress line of `siembridge run` on a terminal.
//!
//! Each collector of a standalone run writes its report file (every second while the line is
//! shown); this reads them and redraws one line on stderr: per LogSource the records forwarded,
//! the rate over the last second, the backfill percentage and dead letters when there are any.
//! When stderr is not a terminal nothing is drawn and the logs stay plain
//! (`SIEMBRIDGE_PROGRESS=always|never` overrides the detection).

use std::collections::BTreeMap;
use std::io::{IsTerminal, Write};
use std::path::PathBuf;
use std::time::{Duration, Instant};

use tokio_util::sync::CancellationToken;

use crate::config::{CollectorReport, LogSourceReport};

/// How often the line is redrawn (and the reports are written while it is shown).
pub const INTERVAL: Duration = Duration::from_secs(1);

/// Whether to draw the line: `SIEMBRIDGE_PROGRESS` (`always` / `never`), else whether stderr
/// is a terminal.
pub fn enabled() -> bool {
    match std::env::var("SIEMBRIDGE_PROGRESS").as_deref() {
        Ok("always") => true,
        Ok("never") => false,
        _ => std::io::stderr().is_terminal(),
    }
}

/// One LogSource's part of the line.
#[derive(Clone, Debug, PartialEq)]
pub struct Part {
    pub log_source: String,
    pub forwarded: u64,
    pub dead_lettered: u64,
    /// Records per second since the previous reading; `None` on the first.
    pub rate: Option<f64>,
    pub backfill_percent: Option<i32>,
}

impl Part {
    fn of(log_source: &str, report: &LogSourceReport, before: Option<(u64, Instant)>, now: Instant) -> Part {
        let rate = before.map(|(count, at)| {
            let secs = now.duration_since(at).as_secs_f64().max(0.001);
            report.events_forwarded.saturating_sub(count) as f64 / secs
        });
        Part {
            log_source: log_source.to_string(),
            forwarded: report.events_forwarded,
            dead_lettered: report.events_dead_lettered,
            rate,
            backfill_percent: report.backfill_percent,
        }
    }
}

/// The line for `parts`, e.g. `audit: 12034 records, 2311/s, backfill 42% | entra: 80 records,
/// 0/s, 3 dead-lettered`.
pub fn line(parts: &[Part]) -> String {
    parts
        .iter()
        .map(|p| {
            let mut s = format!("{}: {} records", p.log_source, p.forwarded);
            if let Some(rate) = p.rate {
                s.push_str(&format!(", {rate:.0}/s"));
            }
            if let Some(b) = p.backfill_percent {
                s.push_str(&format!(", backfill {b}%"));
            }
            if p.dead_lettered > 0 {
                s.push_str(&format!(", {} dead-lettered", p.dead_lettered));
            }
            s
        })
        .collect::<Vec<_>>()
        .join(" | ")
}

/// Redraw the line from `reports` (the collectors' report files) every [`INTERVAL`] until
/// `stop`, then once more from the final reports, and end it with a newline.
pub async fn show(reports: Vec<PathBuf>, stop: CancellationToken) {
    let mut seen: BTreeMap<String, (u64, Instant)> = BTreeMap::new();
    let mut tick = tokio::time::interval(INTERVAL);
    let mut drawn = false;
    loop {
        let stopping = tokio::select! {
            _ = stop.cancelled() => true,
            _ = tick.tick() => false,
        };
        drawn |= draw(&reports, &mut seen).await;
        if stopping {
            break;
        }
    }
    if drawn {
        let _ = writeln!(std::io::stderr().lock());
    }
}

/// Draw the line from the reports as they are now; whether there was anything to draw.
async fn draw(reports: &[PathBuf], seen: &mut BTreeMap<String, (u64, Instant)>) -> bool {
    let now = Instant::now();
    let mut parts = Vec::new();
    for path in reports {
        let Ok(text) = tokio::fs::read(path).await else {
            continue;
        };
        let Ok(report) = serde_json::from_slice::<CollectorReport>(&text) else {
            continue;
        };
        for (name, ls) in &report.log_sources {
            parts.push(Part::of(name, ls, seen.get(name).copied(), now));
            seen.insert(name.clone(), (ls.events_forwarded, now));
        }
    }
    if parts.is_empty() {
        return false;
    }
    parts.sort_by(|a, b| a.log_source.cmp(&b.log_source));
    let mut err = std::io::stderr().lock();
    // Clear the line and draw it again; the cursor goes back to its start, so the next log line
    // or redraw overwrites it.
    let _ = write!(err, "\r\x1b[2K{}\r", line(&parts));
    let _ = err.flush();
    true
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_line_shows_records_rate_backfill_and_dead_letters() {
        let t0 = Instant::now();
        let report = LogSourceReport {
            events_forwarded: 1500,
            events_dead_lettered: 3,
            backfill_percent: Some(42),
            ..Default::default()
        };
        let first = Part::of("audit", &report, None, t0);
        let second = Part::of("audit", &report, Some((500, t0)), t0 + Duration::from_secs(2));
        let quiet = Part::of(
            "entra",
            &LogSourceReport {
                events_forwarded: 80,
                ..Default::default()
            },
            Some((80, t0)),
            t0 + Duration::from_secs(1),
        );
        assert_eq!(line(&[first]), "audit: 1500 records, backfill 42%, 3 dead-lettered");
        assert_eq!(
            line(&[second, quiet]),
            "audit: 1500 records, 500/s, backfill 42%, 3 dead-lettered | entra: 80 records, 0/s"
        );
    }
}
