//! What a polled API stream delivered lately, so the overlap it re-reads for late arrivals never
//! becomes duplicates downstream — within bounds that hold for a large tenant (100,000 records
//! per hour per stream, a 3-hour overlap) and a checkpoint that must fit a Lease (annotations
//! hold 256 KiB in total).
//!
//! - **In memory, exact.** Every id delivered in the overlap window is kept as a 128-bit
//!   fingerprint (SHA-256 of the id, truncated) with its time, pruned by time and bounded by
//!   [`MAX_EXACT_IDS`]. While the process runs, the overlap re-read drops exactly what was
//!   delivered.
//! - **In the checkpoint, a digest.** No exact set fits a Lease (300,000 ids of 8 bytes are
//!   2.4 MB), and a probabilistic one small enough would drop real records as false positives.
//!   So the checkpoint keeps, per time bucket (one minute of the item's time: `contentCreated`
//!   of a content blob, the time property of a Graph object), the number of items delivered
//!   and the wrapping sum of their fingerprints: about 27 bytes per minute, 6.5 KB for a 3-hour
//!   overlap whatever the volume ([`STATE_BUDGET_BYTES`] at most; past it the buckets are
//!   merged in pairs until the digest fits, see [`DeliveredIds::to_state`]).
//! - **After a restart, verified.** The first re-scan of the overlap is compared bucket by
//!   bucket with the restored digest ([`DeliveredIds::verify`]): a bucket whose items have the
//!   same count and fingerprint sum was delivered whole, and its items are skipped; a bucket
//!   that differs (late arrivals, or a part of it not yet checkpointed) is delivered again
//!   whole. So a restart never loses a record, and re-delivers at most the items of the buckets
//!   that changed since the checkpoint (in practice the last minutes before it), plus the units
//!   read after the last checkpoint. Two different sets of ids match only if 128-bit sums of
//!   SHA-256 fingerprints collide.

use std::collections::{BTreeMap, HashSet, VecDeque};

use base64::Engine;
use sha2::{Digest, Sha256};

/// Width of a digest bucket, in seconds of the items' time.
pub const BUCKET_SECONDS: i64 = 60;
/// Largest state string a stream saves with its checkpoint (the Lease store refuses a whole
/// checkpoint above [`crate::collector::checkpoint::MAX_STATE_BYTES`]).
pub const STATE_BUDGET_BYTES: usize = 64 * 1024;
/// Ids kept exactly in memory per stream (about 50 bytes each): four hours of 250,000 records
/// per hour. Past it the oldest are forgotten first, and an overlap re-read delivers them again.
pub const MAX_EXACT_IDS: usize = 1_000_000;
/// Prefix of the encoded digest (format version 1).
const PREFIX: &str = "sbd1:";

fn fingerprint(id: &str) -> u128 {
    let d = Sha256::digest(id.as_bytes());
    let mut b = [0u8; 16];
    b.copy_from_slice(&d[..16]);
    u128::from_le_bytes(b)
}

/// Count and fingerprint sum of the items of one bucket.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
struct Bucket {
    count: u64,
    sum: u128,
}

impl Bucket {
    fn add(&mut self, fp: u128) {
        self.count += 1;
        self.sum = self.sum.wrapping_add(fp);
    }

    fn merge(&mut self, other: Bucket) {
        self.count += other.count;
        self.sum = self.sum.wrapping_add(other.sum);
    }
}

/// Per time bucket (`index * width` seconds since the epoch), what was delivered.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BucketDigest {
    width: i64,
    buckets: BTreeMap<i64, Bucket>,
}

impl BucketDigest {
    fn new(width: i64) -> Self {
        BucketDigest {
            width: width.max(1),
            buckets: BTreeMap::new(),
        }
    }

    fn index(&self, at: i64) -> i64 {
        at.div_euclid(self.width)
    }

    fn add(&mut self, at: i64, fp: u128) {
        let i = self.index(at);
        self.buckets.entry(i).or_default().add(fp);
    }

    /// The same digest with buckets twice as wide.
    fn coarsen(&self) -> Self {
        let mut out = BucketDigest::new(self.width * 2);
        for (i, b) in &self.buckets {
            let j = (i * self.width).div_euclid(out.width);
            out.buckets.entry(j).or_default().merge(*b);
        }
        out
    }

    /// `self` plus `other` re-bucketed to `self`'s width (which must be a multiple of its).
    fn absorb(&mut self, other: &BucketDigest) {
        for (i, b) in &other.buckets {
            let j = (i * other.width).div_euclid(self.width);
            self.buckets.entry(j).or_default().merge(*b);
        }
    }

    /// Number of items recorded.
    pub fn items(&self) -> u64 {
        self.buckets.values().map(|b| b.count).sum()
    }

    /// Binary: width, bucket count, then per bucket the index (first absolute, then the gap to
    /// the previous one), the count (LEB128 varints) and the 16-byte sum (little endian).
    fn encode(&self) -> String {
        let mut out = Vec::with_capacity(8 + self.buckets.len() * 20);
        put_varint(&mut out, self.width as u64);
        put_varint(&mut out, self.buckets.len() as u64);
        let mut previous = 0i64;
        for (n, (i, b)) in self.buckets.iter().enumerate() {
            let i = (*i).max(0);
            put_varint(&mut out, if n == 0 { i as u64 } else { (i - previous) as u64 });
            previous = i;
            put_varint(&mut out, b.count);
            out.extend_from_slice(&b.sum.to_le_bytes());
        }
        let mut s = String::from(PREFIX);
        base64::engine::general_purpose::STANDARD_NO_PAD.encode_string(&out, &mut s);
        s
    }

    fn decode(s: &str) -> Option<Self> {
        let bytes = base64::engine::general_purpose::STANDARD_NO_PAD
            .decode(s.strip_prefix(PREFIX)?)
            .ok()?;
        let mut r = &bytes[..];
        let width = i64::try_from(get_varint(&mut r)?).ok().filter(|w| *w > 0)?;
        let n = get_varint(&mut r)?;
        let mut d = BucketDigest::new(width);
        let mut index = 0i64;
        for k in 0..n {
            let step = i64::try_from(get_varint(&mut r)?).ok()?;
            index = if k == 0 { step } else { index.checked_add(step)? };
            let count = get_varint(&mut r)?;
            let (sum, rest) = r.split_first_chunk::<16>()?;
            r = rest;
            d.buckets.insert(
                index,
                Bucket {
                    count,
                    sum: u128::from_le_bytes(*sum),
                },
            );
        }
        r.is_empty().then_some(d)
    }
}

fn put_varint(out: &mut Vec<u8>, mut v: u64) {
    loop {
        let byte = (v & 0x7f) as u8;
        v >>= 7;
        if v == 0 {
            out.push(byte);
            return;
        }
        out.push(byte | 0x80);
    }
}

fn get_varint(r: &mut &[u8]) -> Option<u64> {
    let mut v = 0u64;
    for shift in (0..64).step_by(7) {
        let (b, rest) = r.split_first()?;
        *r = rest;
        v |= u64::from(b & 0x7f) << shift;
        if b & 0x80 == 0 {
            return Some(v);
        }
    }
    None
}

/// Per bucket index, the digest and the items a re-scan found.
type Rescanned<'a> = BTreeMap<i64, (Bucket, Vec<(&'a str, i64)>)>;

/// What a re-scan after a restart found, compared with the restored digest.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Verified {
    /// Buckets delivered whole before the restart: their items are skipped.
    pub unchanged_buckets: usize,
    /// Items of those buckets (recognised, not delivered again).
    pub skipped_items: u64,
    /// Buckets that differ: delivered again whole.
    pub changed_buckets: usize,
    /// Items of the changed buckets delivered before the restart: the duplicates this restart
    /// may cause.
    pub redelivered_items: u64,
}

/// The ids a stream delivered lately: exact in memory, a [`BucketDigest`] in its checkpoint.
#[derive(Clone, Debug)]
pub struct DeliveredIds {
    order: VecDeque<(i64, u128)>,
    set: HashSet<u128>,
    max: usize,
    digest: BucketDigest,
    /// The digest of the checkpoint this stream resumed from, until the first re-scan is
    /// compared with it.
    restored: Option<BucketDigest>,
}

impl Default for DeliveredIds {
    fn default() -> Self {
        DeliveredIds::new(MAX_EXACT_IDS)
    }
}

impl DeliveredIds {
    /// Nothing delivered yet; at most `max` ids kept in memory.
    pub fn new(max: usize) -> Self {
        DeliveredIds {
            order: VecDeque::new(),
            set: HashSet::new(),
            max: max.max(1),
            digest: BucketDigest::new(BUCKET_SECONDS),
            restored: None,
        }
    }

    /// Resume from a checkpoint's state string ([`DeliveredIds::to_state`]). The state of
    /// earlier releases (`<unix seconds> <id>` lines) is read as exact ids. A state that cannot
    /// be read is an error, not a reset: starting over would re-deliver the whole overlap.
    pub fn from_state(state: Option<&str>, max: usize) -> Result<Self, String> {
        let mut ids = DeliveredIds::new(max);
        let Some(state) = state.filter(|s| !s.is_empty()) else {
            return Ok(ids);
        };
        if state.starts_with(PREFIX) {
            let d = BucketDigest::decode(state).ok_or("the delivered-ids digest is not readable")?;
            ids.restored = Some(d);
            return Ok(ids);
        }
        for line in state.lines() {
            if let Some((t, id)) = line.split_once(' ') {
                if let Ok(t) = t.parse() {
                    ids.insert(id, t);
                }
            }
        }
        Ok(ids)
    }

    pub fn contains(&self, id: &str) -> bool {
        self.set.contains(&fingerprint(id))
    }

    /// Remember `id`, delivered with item time `at` (unix seconds); false if already known.
    pub fn insert(&mut self, id: &str, at: i64) -> bool {
        let fp = fingerprint(id);
        if !self.set.insert(fp) {
            return false;
        }
        self.order.push_back((at, fp));
        self.digest.add(at, fp);
        while self.order.len() > self.max {
            if let Some((_, old)) = self.order.pop_front() {
                self.set.remove(&old);
            }
        }
        true
    }

    /// Forget items older than `before` (unix seconds): they are not read again.
    pub fn prune_before(&mut self, before: i64) {
        while self.order.front().is_some_and(|(t, _)| *t < before) {
            if let Some((_, old)) = self.order.pop_front() {
                self.set.remove(&old);
            }
        }
        let first = before.div_euclid(self.digest.width);
        self.digest.buckets = self.digest.buckets.split_off(&first);
        if let Some(r) = &mut self.restored {
            let first = before.div_euclid(r.width);
            r.buckets = r.buckets.split_off(&first);
        }
    }

    /// Ids held in memory.
    pub fn len(&self) -> usize {
        self.order.len()
    }

    pub fn is_empty(&self) -> bool {
        self.order.is_empty()
    }

    /// Whether the stream resumed from a digest that no re-scan was compared with yet.
    pub fn needs_verification(&self) -> bool {
        self.restored.is_some()
    }

    /// `at` rounded down to a bucket of the restored digest: a re-scan that starts there covers
    /// its first bucket whole.
    pub fn bucket_floor(&self, at: i64) -> i64 {
        let w = self.restored.as_ref().map_or(BUCKET_SECONDS, |r| r.width);
        at.div_euclid(w) * w
    }

    /// Compare the items of a re-scan of `[from, to)` (id, time) with the restored digest; the
    /// items of every bucket that lies whole in the range and matches are remembered as
    /// delivered. Buckets that differ, or that the range cuts, are left to be delivered again.
    /// Ends the verification.
    pub fn verify<'a>(&mut self, items: impl IntoIterator<Item = (&'a str, i64)>, from: i64, to: i64) -> Verified {
        let Some(restored) = self.restored.take() else {
            return Verified::default();
        };
        let w = restored.width;
        let mut found: Rescanned<'a> = BTreeMap::new();
        for (id, at) in items {
            let e = found.entry(at.div_euclid(w)).or_default();
            e.0.add(fingerprint(id));
            e.1.push((id, at));
        }
        let whole = |i: i64| i * w >= from && (i + 1) * w <= to;
        let mut out = Verified::default();
        let indexes: std::collections::BTreeSet<i64> = found
            .keys()
            .chain(restored.buckets.keys())
            .copied()
            .filter(|i| whole(*i))
            .collect();
        for i in indexes {
            let saved = restored.buckets.get(&i).copied().unwrap_or_default();
            let (now, items) = found.remove(&i).unwrap_or_default();
            if now == saved {
                out.unchanged_buckets += 1;
                out.skipped_items += now.count;
                for (id, at) in items {
                    self.insert(id, at);
                }
            } else {
                out.changed_buckets += 1;
                out.redelivered_items += saved.count;
            }
        }
        // Buckets the range cuts: their delivered items (if any) may come again.
        out.redelivered_items += restored
            .buckets
            .iter()
            .filter(|(i, _)| !whole(**i) && (**i + 1) * w > from && **i * w < to)
            .map(|(_, b)| b.count)
            .sum::<u64>();
        out
    }

    /// The checkpoint state: the digest of what was delivered (with the restored one while it
    /// is not verified), at most [`STATE_BUDGET_BYTES`]: while larger, buckets are merged in
    /// pairs (coarser buckets only mean more re-delivery after a restart, never a loss).
    pub fn to_state(&self) -> String {
        let mut d = self.digest.clone();
        if let Some(r) = &self.restored {
            // Unverified: keep what the checkpoint said, at the coarser of the two widths.
            while d.width < r.width {
                d = d.coarsen();
            }
            d.absorb(r);
        }
        loop {
            let s = d.encode();
            if s.len() <= STATE_BUDGET_BYTES {
                return s;
            }
            d = d.coarsen();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exact_in_memory_bounded_and_pruned() {
        let mut ids = DeliveredIds::new(3);
        assert!(ids.insert("a", 10));
        assert!(!ids.insert("a", 11));
        ids.insert("b", 20);
        ids.insert("c", 30);
        ids.insert("d", 40);
        assert!(!ids.contains("a"), "oldest dropped at the bound");
        ids.prune_before(30);
        assert!(!ids.contains("b") && ids.contains("c") && ids.contains("d"));
        assert_eq!(ids.len(), 2);
    }

    #[test]
    fn digest_round_trips_and_earlier_state_is_read() {
        let mut ids = DeliveredIds::new(100);
        for (i, t) in [(1, 60), (2, 61), (3, 200), (4, 100_000)] {
            ids.insert(&format!("id-{i}"), t);
        }
        let s = ids.to_state();
        assert!(s.starts_with(PREFIX));
        let back = DeliveredIds::from_state(Some(&s), 100).unwrap();
        assert_eq!(back.restored.as_ref(), Some(&ids.digest));
        assert!(DeliveredIds::from_state(Some("sbd1:!!"), 100).is_err());
        let old = DeliveredIds::from_state(Some("10 a\n20 b\n"), 100).unwrap();
        assert!(old.contains("a") && old.contains("b") && !old.needs_verification());
    }

    #[test]
    fn a_large_tenant_fits_the_budget_and_a_larger_one_is_coarsened() {
        // 100,000 ids per hour for 4 hours: the digest is per minute, not per id.
        let mut ids = DeliveredIds::default();
        for n in 0..400_000i64 {
            ids.insert(&format!("rec-{n}"), 1_800_000_000 + n * 36 / 1000);
        }
        let s = ids.to_state();
        assert!(s.len() < 8 * 1024, "{} bytes", s.len());
        // 30 days of minutes would be 1.1 MB: merged until it fits, nothing forgotten.
        let mut wide = DeliveredIds::new(10);
        for m in 0..43_200i64 {
            wide.insert(&format!("x-{m}"), m * 60);
        }
        let s = wide.to_state();
        assert!(s.len() <= STATE_BUDGET_BYTES);
        let d = BucketDigest::decode(&s).unwrap();
        assert!(d.width > BUCKET_SECONDS);
        assert_eq!(d.items(), 43_200);
    }

    #[test]
    fn verify_skips_unchanged_buckets_and_redelivers_changed_ones() {
        let mut before = DeliveredIds::new(1000);
        for n in 0..120 {
            before.insert(&format!("r{n}"), 6000 + n); // minutes 100 and 101
        }
        let mut after = DeliveredIds::from_state(Some(&before.to_state()), 1000).unwrap();
        // The re-scan finds the same records plus one late arrival in minute 101.
        let mut rescan: Vec<(String, i64)> = (0..120).map(|n| (format!("r{n}"), 6000 + n)).collect();
        rescan.push(("late".into(), 6065));
        let v = after.verify(rescan.iter().map(|(i, t)| (i.as_str(), *t)), 6000, 6120);
        assert_eq!(
            v,
            Verified {
                unchanged_buckets: 1,
                skipped_items: 60,
                changed_buckets: 1,
                redelivered_items: 60
            }
        );
        assert!(after.contains("r0") && !after.contains("r60") && !after.contains("late"));
        assert!(!after.needs_verification());
    }
}
