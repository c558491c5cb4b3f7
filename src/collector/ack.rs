//! Acknowledgement tracking: which source positions may be checkpointed.
//!
//! A source delivers *units* (an Event Hubs event, a replay line, a content blob), each with the
//! position to checkpoint once it is done. A unit fans out into records and each record into one
//! delivery per destination of every LogSource it matches. The unit is done when every one of
//! those deliveries is acknowledged (delivered, or dead-lettered). Acknowledgements arrive out of
//! order (concurrent requests, retries), so each stream keeps its units in order and the
//! checkpoint is the position of the last unit of the longest fully acknowledged prefix.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex, MutexGuard};

/// Source state saved with a unit's position (e.g. the ids an API source has seen). It is
/// turned into JSON only when a checkpoint is written, so the many units in flight can share
/// what their states have in common instead of each holding a full copy.
pub trait UnitState: std::fmt::Debug + Send + Sync {
    /// The state as saved in the checkpoint.
    fn to_json(&self) -> serde_json::Value;
}

/// A state that is already JSON.
impl UnitState for serde_json::Value {
    fn to_json(&self) -> serde_json::Value {
        self.clone()
    }
}

/// A unit's state, shared.
pub type SharedState = Arc<dyn UnitState>;

/// Units of one stream (a partition, a content type, the replay) in source order.
#[derive(Debug, Default)]
pub struct InFlight {
    /// Sequence number of the unit at the front of `units`.
    front_seq: u64,
    units: VecDeque<Unit>,
    /// Position after the longest fully acknowledged prefix.
    watermark: Option<String>,
    /// Source state that goes with the watermark (see [`crate::collector::checkpoint::Checkpoint`]).
    watermark_state: Option<SharedState>,
    /// Units fully acknowledged, over the tracker's life.
    completed: u64,
}

#[derive(Debug)]
struct Unit {
    position: String,
    state: Option<SharedState>,
    pending: u32,
}

/// An acknowledgement handle for one delivery of one unit of a stream.
#[derive(Clone, Debug)]
pub struct AckRef {
    stream: StreamTracker,
    seq: u64,
}

impl AckRef {
    /// Acknowledge this delivery.
    pub fn ack(&self) {
        self.stream.lock().ack(self.seq, 1);
    }

    /// The stream this delivery belongs to.
    pub fn stream(&self) -> &StreamTracker {
        &self.stream
    }

    /// Sequence number of the unit in its stream.
    pub fn seq(&self) -> u64 {
        self.seq
    }

    /// The unit waits for `n` more deliveries (records fanned out, dead letters written), each
    /// acknowledged through a clone of this handle.
    pub fn expect(&self, n: u32) {
        if n > 0 {
            self.stream.lock().add_pending(self.seq, n);
        }
    }
}

/// Acknowledge many deliveries with one lock per run of the same stream.
pub fn ack_all<'a>(refs: impl IntoIterator<Item = &'a AckRef>) {
    let mut current: Option<(&StreamTracker, MutexGuard<'_, InFlight>)> = None;
    for r in refs {
        match &mut current {
            Some((s, guard)) if Arc::ptr_eq(&s.0, &r.stream.0) => guard.ack(r.seq, 1),
            _ => {
                drop(current.take());
                let mut guard = r.stream.lock();
                guard.ack(r.seq, 1);
                current = Some((&r.stream, guard));
            }
        }
    }
}

impl InFlight {
    /// A tracker whose watermark starts at the checkpointed `position`, if any.
    pub fn starting_at(position: Option<String>) -> Self {
        InFlight {
            watermark: position,
            ..Default::default()
        }
    }

    /// Register the next unit with the number of deliveries it waits for; returns its sequence.
    /// A unit with no delivery (filtered out, or dead-lettered at decode) is done at once.
    pub fn register(&mut self, position: String, pending: u32) -> u64 {
        self.register_with_state(position, None, pending)
    }

    /// [`InFlight::register`] with a source state to checkpoint along with the position.
    pub fn register_with_state(&mut self, position: String, state: Option<SharedState>, pending: u32) -> u64 {
        let seq = self.front_seq + self.units.len() as u64;
        self.units.push_back(Unit {
            position,
            state,
            pending,
        });
        self.advance();
        seq
    }

    /// Add deliveries to a unit still open (records fanned out after registration).
    pub fn add_pending(&mut self, seq: u64, n: u32) {
        if let Some(u) = self.unit_mut(seq) {
            u.pending += n;
        }
    }

    /// Acknowledge `n` deliveries of unit `seq`. Unknown or already complete units are ignored,
    /// so a late duplicate ack cannot move the watermark.
    pub fn ack(&mut self, seq: u64, n: u32) {
        if let Some(u) = self.unit_mut(seq) {
            u.pending = u.pending.saturating_sub(n);
            if seq == self.front_seq {
                self.advance();
            }
        }
    }

    fn unit_mut(&mut self, seq: u64) -> Option<&mut Unit> {
        let idx = seq.checked_sub(self.front_seq)?;
        self.units.get_mut(usize::try_from(idx).ok()?)
    }

    fn advance(&mut self) {
        while let Some(front) = self.units.front() {
            if front.pending > 0 {
                break;
            }
            if let Some(u) = self.units.pop_front() {
                self.watermark = Some(u.position);
                if u.state.is_some() {
                    self.watermark_state = u.state;
                }
                self.front_seq += 1;
                self.completed += 1;
            }
        }
    }

    /// Position that may be checkpointed: every unit up to it is fully acknowledged.
    pub fn watermark(&self) -> Option<&str> {
        self.watermark.as_deref()
    }

    /// Source state of the watermark, if the source keeps one.
    pub fn watermark_state(&self) -> Option<SharedState> {
        self.watermark_state.clone()
    }

    /// Units registered and not yet fully acknowledged.
    pub fn open_units(&self) -> usize {
        self.units.len()
    }

    /// Deliveries still awaited by the open units.
    pub fn pending_deliveries(&self) -> u64 {
        self.units.iter().map(|u| u64::from(u.pending)).sum()
    }

    /// Units fully acknowledged since the tracker was made.
    pub fn completed(&self) -> u64 {
        self.completed
    }
}

/// Shared handle to the [`InFlight`] units of one stream.
#[derive(Clone, Debug)]
pub struct StreamTracker(Arc<Mutex<InFlight>>, Arc<str>);

impl StreamTracker {
    /// A tracker for stream `id`, starting at its checkpointed position.
    pub fn new(id: &str, position: Option<String>) -> Self {
        StreamTracker(Arc::new(Mutex::new(InFlight::starting_at(position))), Arc::from(id))
    }

    /// The stream id (partition, content type, replay).
    pub fn id(&self) -> &str {
        &self.1
    }

    /// Lock the units; a poisoned lock (a panic elsewhere) is recovered, the data stays valid.
    pub fn lock(&self) -> MutexGuard<'_, InFlight> {
        self.0.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Register a unit and get the handle its deliveries acknowledge through.
    pub fn register(&self, position: String, pending: u32) -> AckRef {
        self.register_with_state(position, None, pending)
    }

    /// [`StreamTracker::register`] with a source state for the checkpoint.
    pub fn register_with_state(&self, position: String, state: Option<SharedState>, pending: u32) -> AckRef {
        let seq = self.lock().register_with_state(position, state, pending);
        AckRef {
            stream: self.clone(),
            seq,
        }
    }

    /// Current watermark.
    pub fn watermark(&self) -> Option<String> {
        self.lock().watermark().map(str::to_string)
    }
}

/// The streams of one collector run, by id: the router registers units in them, the checkpoint
/// writer reads their watermarks, and the run's summary what is still open.
#[derive(Clone, Debug, Default)]
pub struct Streams(Arc<Mutex<std::collections::BTreeMap<String, StreamTracker>>>);

/// A stream's watermark and the source state that goes with it.
pub type Watermark = (String, Option<SharedState>);

/// What is still open across the streams: units and the deliveries they wait for.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Outstanding {
    pub units: u64,
    pub deliveries: u64,
}

impl Streams {
    /// The tracker of stream `id`, made on first use.
    pub fn tracker(&self, id: &str) -> StreamTracker {
        let mut map = self.0.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(t) = map.get(id) {
            return t.clone();
        }
        let t = StreamTracker::new(id, None);
        map.insert(id.to_string(), t.clone());
        t
    }

    /// The watermark of every stream that has one.
    pub fn watermarks(&self) -> Vec<(String, Watermark)> {
        let map = self.0.lock().unwrap_or_else(|p| p.into_inner());
        map.iter()
            .filter_map(|(id, t)| {
                let inflight = t.lock();
                let w = inflight.watermark()?.to_string();
                Some((id.clone(), (w, inflight.watermark_state())))
            })
            .collect()
    }

    /// Units not fully acknowledged and the deliveries they wait for, over every stream.
    pub fn outstanding(&self) -> Outstanding {
        let map = self.0.lock().unwrap_or_else(|p| p.into_inner());
        let mut out = Outstanding::default();
        for t in map.values() {
            let inflight = t.lock();
            out.units += inflight.open_units() as u64;
            out.deliveries += inflight.pending_deliveries();
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn out_of_order_acks_never_pass_an_unacknowledged_unit() {
        let mut f = InFlight::starting_at(Some("p0".into()));
        let a = f.register("p1".into(), 1);
        let b = f.register("p2".into(), 1);
        let c = f.register("p3".into(), 1);
        f.ack(c, 1);
        assert_eq!(f.watermark(), Some("p0"));
        f.ack(b, 1);
        assert_eq!(f.watermark(), Some("p0"), "unit 1 is still open");
        f.ack(a, 1);
        assert_eq!(f.watermark(), Some("p3"));
        assert_eq!(f.open_units(), 0);
    }

    #[test]
    fn a_unit_waits_for_every_destination() {
        let mut f = InFlight::default();
        let a = f.register("p1".into(), 3);
        f.ack(a, 1);
        f.ack(a, 1);
        assert_eq!(f.watermark(), None);
        f.ack(a, 1);
        assert_eq!(f.watermark(), Some("p1"));
    }

    #[test]
    fn units_without_deliveries_complete_only_behind_open_ones() {
        let mut f = InFlight::default();
        let a = f.register("p1".into(), 1);
        f.register("p2".into(), 0);
        assert_eq!(f.watermark(), None);
        f.ack(a, 1);
        assert_eq!(f.watermark(), Some("p2"));
        f.register("p3".into(), 0);
        assert_eq!(f.watermark(), Some("p3"));
    }

    #[test]
    fn stale_or_duplicate_acks_are_ignored() {
        let mut f = InFlight::default();
        let a = f.register("p1".into(), 1);
        f.ack(a, 1);
        let b = f.register("p2".into(), 2);
        f.ack(a, 1); // duplicate of a completed unit
        f.ack(b + 10, 1); // never registered
        assert_eq!(f.watermark(), Some("p1"));
        f.ack(b, 1);
        assert_eq!(f.watermark(), Some("p1"));
        f.ack(b, 1);
        assert_eq!(f.watermark(), Some("p2"));
    }

    #[test]
    fn add_pending_holds_the_unit_open() {
        let mut f = InFlight::default();
        let a = f.register("p1".into(), 1);
        f.add_pending(a, 2);
        f.ack(a, 2);
        assert_eq!(f.watermark(), None);
        f.ack(a, 1);
        assert_eq!(f.watermark(), Some("p1"));
    }

    #[test]
    fn ack_all_groups_by_stream_and_handles_interleaving() {
        let s1 = StreamTracker::new("s1", None);
        let s2 = StreamTracker::new("s2", None);
        let refs = [
            s1.register("a1".into(), 1),
            s2.register("b1".into(), 1),
            s1.register("a2".into(), 1),
        ];
        ack_all(refs.iter().rev());
        assert_eq!(s1.watermark().as_deref(), Some("a2"));
        assert_eq!(s2.watermark().as_deref(), Some("b1"));
    }

    proptest::proptest! {
        /// Whatever order acks arrive in, the watermark is always the position of the last unit
        /// of the fully acknowledged prefix.
        #[test]
        fn watermark_is_the_acknowledged_prefix(order in proptest::collection::vec(0usize..50, 0..200)) {
            let mut f = InFlight::default();
            let n = 50;
            let seqs: Vec<u64> = (0..n).map(|i| f.register(format!("p{i}"), 2)).collect();
            let mut acked = vec![0u32; n];
            for i in order {
                f.ack(seqs[i], 1);
                acked[i] = (acked[i] + 1).min(2);
                let prefix = acked.iter().take_while(|&&a| a == 2).count();
                let expected = if prefix == 0 { None } else { Some(format!("p{}", prefix - 1)) };
                proptest::prop_assert_eq!(f.watermark().map(str::to_string), expected);
            }
        }
    }
}
