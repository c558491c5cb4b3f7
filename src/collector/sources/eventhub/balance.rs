//! Load balancing of partitions over the replicas of one consumer group, as a pure function of
//! the ownership records.
//!
//! Every replica runs [`plan`] each cycle over the records it listed. With `n` partitions and
//! `k` live replicas (owners of unexpired records, replicas asking for a hand-over, and itself),
//! each replica aims at `n / k` partitions, `extra = n % k` of them at one more. A replica below
//! its share first claims free or expired partitions; when none is left it asks an over-loaded
//! owner to hand one over (writes `requestedBy` on one of its records). The owner stops reading
//! that partition, waits until its checkpoint has caught up, and writes the requester as the new
//! owner: the partition changes hands without two readers at any time and without re-reading.
//! A dead replica's partitions are taken once its records expire.

use std::collections::{BTreeMap, BTreeSet};

use chrono::{DateTime, Duration, Utc};

use crate::collector::checkpoint::ownership::Ownership;

/// What a replica does this cycle.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Plan {
    /// Partitions to claim: (partition, version read or `None` for a new record).
    pub claim: Vec<(String, Option<String>)>,
    /// Own partitions to keep (renew): (partition, version).
    pub renew: Vec<(String, String)>,
    /// Own partitions to hand over: (partition, version, new owner).
    pub hand_over: Vec<(String, String, String)>,
    /// A hand-over to ask for: (partition, version, current owner).
    pub request: Option<(String, String, String)>,
}

/// Whether a record's owner is alive.
pub fn live(record: &Ownership, now: DateTime<Utc>, expiry: Duration) -> bool {
    !record.owner.is_empty() && now - record.renewed < expiry
}

/// Plan one balancing cycle of replica `me` over `partitions`.
pub fn plan(me: &str, partitions: &[String], records: &[Ownership], now: DateTime<Utc>, expiry: Duration) -> Plan {
    let by_partition: BTreeMap<&str, &Ownership> = records
        .iter()
        .filter(|r| partitions.contains(&r.partition))
        .map(|r| (r.partition.as_str(), r))
        .collect();
    let mut counts: BTreeMap<&str, usize> = BTreeMap::new();
    let mut replicas: BTreeSet<&str> = BTreeSet::new();
    replicas.insert(me);
    for r in by_partition.values() {
        if live(r, now, expiry) {
            *counts.entry(r.owner.as_str()).or_default() += 1;
            replicas.insert(r.owner.as_str());
            if let Some(q) = &r.requested_by {
                replicas.insert(q.as_str());
            }
        }
    }
    let n = partitions.len();
    let k = replicas.len().max(1);
    let base = n / k;
    let extra = n % k;
    let mine: Vec<&Ownership> = by_partition
        .values()
        .filter(|r| r.owner == me && live(r, now, expiry))
        .copied()
        .collect();
    let owned = mine.len();
    // Owners already at base + 1 take the `extra` slots.
    let at_plus_one = counts.values().filter(|c| **c > base).count();

    let mut plan = Plan::default();
    let mut keep = owned;
    for r in &mine {
        match &r.requested_by {
            // Give a partition away only while we would still have no fewer than the requester.
            Some(q) if q != me && keep >= counts.get(q.as_str()).copied().unwrap_or(0) + 2 => {
                plan.hand_over.push((r.partition.clone(), r.version.clone(), q.clone()));
                keep -= 1;
            }
            _ => plan.renew.push((r.partition.clone(), r.version.clone())),
        }
    }

    let target = if owned < base {
        base
    } else if owned == base && extra > 0 && at_plus_one < extra {
        base + 1
    } else {
        owned
    };
    if target > owned {
        let want = target - owned;
        let free: Vec<(String, Option<String>)> = partitions
            .iter()
            .filter_map(|p| match by_partition.get(p.as_str()) {
                None => Some((p.clone(), None)),
                Some(r) if !live(r, now, expiry) => Some((p.clone(), Some(r.version.clone()))),
                Some(_) => None,
            })
            .collect();
        // Spread first picks so replicas starting together rarely race for the same one.
        let offset = stable_hash(me) % free.len().max(1);
        plan.claim = free
            .iter()
            .cycle()
            .skip(offset)
            .take(want.min(free.len()))
            .cloned()
            .collect();
        if plan.claim.is_empty() {
            // Ask the most loaded owner, if it has two more than us, for one partition.
            let donor = counts
                .iter()
                .filter(|(o, c)| **o != me && **c >= owned + 2)
                .max_by_key(|(o, c)| (**c, std::cmp::Reverse(**o)))
                .map(|(o, _)| *o);
            if let Some(donor) = donor {
                let pending = by_partition
                    .values()
                    .any(|r| r.requested_by.as_deref() == Some(me) && live(r, now, expiry));
                if !pending {
                    plan.request = by_partition
                        .values()
                        .filter(|r| r.owner == donor && live(r, now, expiry))
                        .find(|r| r.requested_by.is_none())
                        .map(|r| (r.partition.clone(), r.version.clone(), donor.to_string()));
                }
            }
        }
    }
    plan
}

fn stable_hash(s: &str) -> usize {
    s.bytes().fold(5381usize, |h, b| h.wrapping_mul(33) ^ b as usize)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parts(n: usize) -> Vec<String> {
        (0..n).map(|i| i.to_string()).collect()
    }

    fn rec(p: usize, owner: &str, age_s: i64, now: DateTime<Utc>) -> Ownership {
        Ownership {
            partition: p.to_string(),
            owner: owner.into(),
            renewed: now - Duration::seconds(age_s),
            requested_by: None,
            version: format!("v{p}"),
        }
    }

    /// Run cycles of every replica over a shared record map, applying plans as a store would.
    fn converge(replicas: &[&str], mut records: BTreeMap<String, Ownership>, n: usize) -> BTreeMap<String, usize> {
        let now = Utc::now();
        let expiry = Duration::seconds(10);
        for _round in 0..20 {
            for me in replicas {
                let list: Vec<Ownership> = records.values().cloned().collect();
                let p = plan(me, &parts(n), &list, now, expiry);
                for (part, _) in p.claim {
                    records.insert(part.clone(), rec(part.parse().unwrap(), me, 0, now));
                }
                for (part, _, to) in p.hand_over {
                    records.insert(part.clone(), rec(part.parse().unwrap(), &to, 0, now));
                }
                if let Some((part, _, _)) = p.request {
                    records.get_mut(&part).unwrap().requested_by = Some(me.to_string());
                }
            }
        }
        let mut counts = BTreeMap::new();
        for r in records.values() {
            *counts.entry(r.owner.clone()).or_insert(0) += 1;
        }
        counts
    }

    #[test]
    fn replicas_starting_together_spread_evenly() {
        let counts = converge(&["a", "b", "c"], BTreeMap::new(), 8);
        let mut v: Vec<usize> = counts.values().copied().collect();
        v.sort();
        assert_eq!(v, vec![2, 3, 3], "{counts:?}");
    }

    #[test]
    fn a_new_replica_gets_partitions_by_hand_over() {
        let now = Utc::now();
        let mut records = BTreeMap::new();
        for p in 0..8 {
            let owner = if p < 4 { "a" } else { "b" };
            records.insert(p.to_string(), rec(p, owner, 0, now));
        }
        let counts = converge(&["a", "b", "d"], records, 8);
        let mut v: Vec<usize> = counts.values().copied().collect();
        v.sort();
        assert_eq!(v, vec![2, 3, 3], "{counts:?}");
        assert!(counts.get("d").copied().unwrap_or(0) >= 2);
    }

    #[test]
    fn expired_records_are_claimed_and_live_ones_are_not() {
        let now = Utc::now();
        let records = vec![rec(0, "dead", 60, now), rec(1, "b", 1, now)];
        let p = plan("a", &parts(2), &records, now, Duration::seconds(10));
        assert_eq!(p.claim, vec![("0".to_string(), Some("v0".to_string()))]);
        assert!(p.request.is_none());
        assert!(p.renew.is_empty());
    }

    #[test]
    fn owner_renews_what_it_keeps() {
        let now = Utc::now();
        let records = vec![rec(0, "a", 1, now), rec(1, "b", 1, now)];
        let p = plan("a", &parts(2), &records, now, Duration::seconds(10));
        assert_eq!(p.renew, vec![("0".to_string(), "v0".to_string())]);
        assert!(p.claim.is_empty() && p.hand_over.is_empty() && p.request.is_none());
    }
}
