//! Dead letters of the router: payloads that do not decode, records over `maxRecordBytes`, and
//! records a destination's format cannot be made of. Each holds its unit open until written.

use std::sync::atomic::Ordering;
use std::sync::Arc;

use bytes::Bytes;

use super::router::Router;
use super::CompiledRoute;
use crate::collector::ack::AckRef;
use crate::collector::dead_letter::{Letter, Stage};
use crate::collector::decode::{Decoded, RawRecord};

/// How much of a record over `maxRecordBytes` (or of an undecodable part) a dead letter keeps.
pub const DEAD_LETTER_KEEP_BYTES: usize = 64 * 1024;

/// The longest prefix of `text` of at most `max` bytes that ends on a character boundary.
pub(super) fn char_prefix(text: &str, max: usize) -> &str {
    let mut end = text.len().min(max);
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    &text[..end]
}

impl Router {
    /// Dead-letter a record larger than its LogSource's `maxRecordBytes` for each destination of
    /// the route, keeping only its first [`DEAD_LETTER_KEEP_BYTES`].
    pub(super) fn dead_letter_too_large(&self, guard: &AckRef, route: &CompiledRoute, raw: &RawRecord, id: &Arc<str>) {
        let keep = char_prefix(raw.get(), DEAD_LETTER_KEEP_BYTES).len();
        let reason = format!(
            "record of {} bytes is larger than maxRecordBytes ({}) of LogSource {}; the dead letter keeps its first {keep} bytes",
            raw.len(),
            route.max_record_bytes,
            route.log_source
        );
        for &(di, _) in &route.destinations {
            self.dead_letter_record(
                di,
                Letter {
                    stage: Stage::Decode,
                    reason: reason.clone(),
                    log_source: route.log_source.clone(),
                    destination: Some(Arc::from(self.queues[di].name())),
                    id: Some(id.clone()),
                    record: raw.bytes().slice(..keep),
                    ack: guard.clone(),
                },
            );
        }
    }

    /// Write one record to the dead-letter sink for one destination and count it (metric and
    /// the destination's report). If the sink fails, the unit stays open: its checkpoint is not
    /// passed and the record is read again after a restart.
    pub(super) fn dead_letter_record(&self, di: usize, letter: Letter) {
        let queue = &self.queues[di];
        // The unit waits for the dead letter: acknowledged once it is safe (written and synced,
        // or delivered by the LogSource's dead-letter destination), never if it cannot be.
        letter.ack.expect(1);
        self.metrics
            .events_dead_lettered
            .with_label_values(&[queue.name(), letter.stage.as_str()])
            .inc();
        queue.health().events_dead_lettered.fetch_add(1, Ordering::Relaxed);
        self.dead_letter.submit(vec![letter]);
    }
}

/// The dead letters of a payload that failed to decode, in whole or in part. A payload nothing
/// could be read from is one dead letter with every original byte (a truncated envelope is not
/// cut into line fragments); otherwise each failed part is. Each goes to every LogSource of the
/// collector: the router cannot tell which of them the bytes were meant for.
pub(super) fn decode_letters(
    payload: &Bytes,
    decoded: &Decoded,
    routes: &[CompiledRoute],
    unit: &str,
    guard: &AckRef,
) -> Vec<Letter> {
    let parts: Vec<(String, Bytes)> = if decoded.records.is_empty() {
        let mut reasons: Vec<String> = decoded.failures.iter().map(|f| f.error.to_string()).collect();
        reasons.dedup();
        vec![(reasons.join("; "), payload.clone())]
    } else {
        decoded
            .failures
            .iter()
            .map(|f| (f.error.to_string(), Bytes::copy_from_slice(f.text.as_bytes())))
            .collect()
    };
    let mut letters = Vec::new();
    for (i, (reason, bytes)) in parts.into_iter().enumerate() {
        for r in routes {
            letters.push(Letter {
                stage: Stage::Decode,
                reason: reason.clone(),
                log_source: r.log_source.clone(),
                destination: None,
                id: Some(Arc::from(format!("{unit}/undecodable/{i}").as_str())),
                record: bytes.clone(),
                ack: guard.clone(),
            });
        }
    }
    letters
}
