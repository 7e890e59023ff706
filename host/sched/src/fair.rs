//! [`FairQueue`]: per-tenant FIFO queues of chunks, interleaved by deficit round robin.

use std::collections::hash_map::Entry;
use std::collections::{HashMap, VecDeque};
use std::fmt;
use std::hash::Hash;

/// One unit of work a worker pulls: a chunk of a submission.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ChunkRef {
    /// The submission (claim file) the chunk belongs to.
    pub submission: i64,
    /// Position of the chunk within its submission.
    pub index: u32,
    /// Cost in receipts (a file-level chunk, such as a file check, costs 1). DRR shares
    /// cost, not chunk count, between tenants.
    pub cost: u32,
}

/// A push was refused because the queue would hold more than `depth_max` chunks.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct QueueFull {
    /// The queue's bound, in chunks.
    pub depth_max: usize,
}

impl fmt::Display for QueueFull {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "work queue is full (at most {} chunks queued)", self.depth_max)
    }
}

impl std::error::Error for QueueFull {}

/// One tenant's queued chunks and its DRR deficit (cost it may still take).
#[derive(Debug)]
struct Lane {
    chunks: VecDeque<ChunkRef>,
    deficit: u64,
}

/// Chunks of many tenants, served fairly by deficit round robin (DRR).
///
/// Within a tenant chunks are served in push order. Across tenants, each tenant with queued
/// chunks sits in the *active ring*; per round it may take `quantum` cost units, and unused
/// allowance (deficit) carries over while it stays queued, so a chunk costlier than the
/// quantum is served after enough rounds. A tenant whose queue empties leaves the ring and
/// forgets its deficit, so idling earns no credit.
///
/// Invariant: a tenant is a key of `lanes` iff it is in `ring` iff its lane is non-empty.
#[derive(Debug)]
pub struct FairQueue<K> {
    quantum: u64,
    depth_max: usize,
    lanes: HashMap<K, Lane>,
    ring: VecDeque<K>,
    len: usize,
    cost_queued: u64,
}

impl<K: Eq + Hash + Clone> FairQueue<K> {
    /// A queue where each tenant may take `quantum` cost units per round and at most
    /// `depth_max` chunks are queued in total. A `quantum` of 0 is treated as 1, since
    /// with no allowance nothing could ever be served.
    pub fn new(quantum: u32, depth_max: usize) -> Self {
        Self {
            quantum: u64::from(quantum.max(1)),
            depth_max,
            lanes: HashMap::new(),
            ring: VecDeque::new(),
            len: 0,
            cost_queued: 0,
        }
    }

    /// Queues `chunk` behind `tenant`'s other chunks. A tenant with nothing queued joins the
    /// back of the active ring with deficit 0.
    pub fn push(&mut self, tenant: K, chunk: ChunkRef) -> Result<(), QueueFull> {
        self.check_room(1)?;
        self.lane(tenant).chunks.push_back(chunk);
        self.len += 1;
        self.cost_queued += u64::from(chunk.cost);
        Ok(())
    }

    /// Queues all `chunks` in order, or none if they would not all fit under `depth_max`
    /// (a submission is accepted whole or refused whole). Pushing nothing is a no-op.
    pub fn push_all(&mut self, tenant: K, chunks: impl IntoIterator<Item = ChunkRef>) -> Result<(), QueueFull> {
        // Collected first: the count must be known before anything is queued.
        let chunks: Vec<ChunkRef> = chunks.into_iter().collect();
        if chunks.is_empty() {
            return Ok(());
        }
        self.check_room(chunks.len())?;
        self.len += chunks.len();
        self.cost_queued += chunks.iter().map(|c| u64::from(c.cost)).sum::<u64>();
        self.lane(tenant).chunks.extend(chunks);
        Ok(())
    }

    /// The next chunk by DRR, with its tenant; `None` when nothing is queued.
    ///
    /// The front tenant takes its head chunk if its deficit covers the cost (and stays at
    /// the front, to spend the rest of its deficit on later pops); otherwise it gains
    /// `quantum` and moves to the back. Runs in O(tenants) steps whatever the ratio of cost
    /// to quantum: rounds in which nobody could be served are skipped arithmetically.
    pub fn pop(&mut self) -> Option<(K, ChunkRef)> {
        let mut skipped = false;
        loop {
            let key = self.ring.front()?;
            let Some(lane) = self.lanes.get_mut(key) else {
                // Unreachable by the invariant; heal rather than loop forever.
                debug_assert!(false, "tenant in ring without a lane");
                self.ring.pop_front();
                continue;
            };
            let Some(head) = lane.chunks.front().copied() else {
                debug_assert!(false, "empty lane in ring");
                if let Some(key) = self.ring.pop_front() {
                    self.lanes.remove(&key);
                }
                continue;
            };
            let cost = u64::from(head.cost);
            if lane.deficit < cost {
                if !skipped {
                    // Jump over the whole rounds in which no tenant can pay for its head
                    // chunk, then re-examine the same front tenant: after this, someone
                    // can be served within one pass of the ring.
                    skipped = true;
                    self.skip_idle_rounds();
                } else {
                    lane.deficit += self.quantum;
                    self.ring.rotate_left(1);
                }
                continue;
            }
            lane.deficit -= cost;
            lane.chunks.pop_front();
            let emptied = lane.chunks.is_empty();
            self.len -= 1;
            self.cost_queued -= cost;
            if emptied {
                // Standard DRR: leaving the ring forfeits the deficit (the lane is dropped).
                let key = self.ring.pop_front()?;
                self.lanes.remove(&key);
                return Some((key, head));
            }
            return Some((key.clone(), head));
        }
    }

    /// Drops every queued chunk of `submission` (it was withdrawn) and returns how many.
    /// Tenants left with nothing queued leave the ring.
    pub fn remove_submission(&mut self, submission: i64) -> usize {
        let mut removed = 0;
        let mut cost_removed = 0u64;
        for lane in self.lanes.values_mut() {
            lane.chunks.retain(|c| {
                let keep = c.submission != submission;
                if !keep {
                    removed += 1;
                    cost_removed += u64::from(c.cost);
                }
                keep
            });
        }
        if removed > 0 {
            self.len -= removed;
            self.cost_queued -= cost_removed;
            self.lanes.retain(|_, lane| !lane.chunks.is_empty());
            let lanes = &self.lanes;
            self.ring.retain(|k| lanes.contains_key(k));
        }
        removed
    }

    /// Chunks queued, over all tenants.
    pub fn len(&self) -> usize {
        self.len
    }

    /// Whether no chunk is queued.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Total cost (receipts) of the queued chunks: the backlog in work, not in chunks.
    pub fn cost_queued(&self) -> u64 {
        self.cost_queued
    }

    /// Tenants with at least one queued chunk (the size of the active ring).
    pub fn tenants(&self) -> usize {
        self.ring.len()
    }

    fn check_room(&self, extra: usize) -> Result<(), QueueFull> {
        match self.len.checked_add(extra) {
            Some(n) if n <= self.depth_max => Ok(()),
            _ => Err(QueueFull { depth_max: self.depth_max }),
        }
    }

    /// `tenant`'s lane, creating it (deficit 0, back of the ring) if it had nothing queued.
    fn lane(&mut self, tenant: K) -> &mut Lane {
        match self.lanes.entry(tenant) {
            Entry::Occupied(e) => e.into_mut(),
            Entry::Vacant(e) => {
                self.ring.push_back(e.key().clone());
                e.insert(Lane { chunks: VecDeque::new(), deficit: 0 })
            }
        }
    }

    /// Adds the quantum for every full round of the ring in which no tenant could have paid
    /// for its head chunk. In such a round each tenant gains `quantum` once and the ring
    /// returns to its order, so `r` rounds are exactly "every deficit += r * quantum". This
    /// keeps `pop` bounded when cost ≫ quantum (e.g. 100,000 vs 1).
    fn skip_idle_rounds(&mut self) {
        let q = self.quantum;
        let rounds = self
            .lanes
            .values()
            .filter_map(|lane| {
                let cost = u64::from(lane.chunks.front()?.cost);
                Some(cost.saturating_sub(lane.deficit).div_ceil(q))
            })
            .min()
            .unwrap_or(0);
        if rounds > 0 {
            for lane in self.lanes.values_mut() {
                lane.deficit += rounds * q;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn chunk(submission: i64, index: u32, cost: u32) -> ChunkRef {
        ChunkRef { submission, index, cost }
    }

    /// Textbook DRR as specified, looping one step at a time (no round skipping): the
    /// oracle for `pop`'s arithmetic shortcut. Only usable with small cost/quantum ratios.
    struct Naive {
        quantum: u64,
        ring: VecDeque<(u8, VecDeque<ChunkRef>, u64)>,
    }

    impl Naive {
        fn push(&mut self, tenant: u8, c: ChunkRef) {
            match self.ring.iter_mut().find(|(t, _, _)| *t == tenant) {
                Some((_, q, _)) => q.push_back(c),
                None => self.ring.push_back((tenant, VecDeque::from([c]), 0)),
            }
        }

        fn pop(&mut self) -> Option<(u8, ChunkRef)> {
            loop {
                let (tenant, q, deficit) = self.ring.front_mut()?;
                let cost = u64::from(q[0].cost);
                if *deficit < cost {
                    *deficit += self.quantum;
                    self.ring.rotate_left(1);
                    continue;
                }
                *deficit -= cost;
                let (tenant, c) = (*tenant, q.pop_front()?);
                if q.is_empty() {
                    self.ring.pop_front();
                }
                return Some((tenant, c));
            }
        }
    }

    #[test]
    fn pop_matches_step_by_step_drr() {
        // Deterministic LCG so the mix of pushes and pops is reproducible without `rand`.
        let mut seed: u64 = 0x2545_f491_4f6c_dd1d;
        let mut next = move |m: u64| {
            seed = seed.wrapping_mul(6_364_136_223_846_793_005).wrapping_add(1_442_695_040_888_963_407);
            (seed >> 33) % m
        };
        for quantum in [1u32, 3, 10, 64] {
            let mut fast = FairQueue::new(quantum, usize::MAX);
            let mut naive = Naive { quantum: u64::from(quantum), ring: VecDeque::new() };
            for step in 0..5_000u32 {
                if next(3) == 0 {
                    let tenant = next(5) as u8;
                    let c = chunk(i64::from(tenant), step, next(200) as u32);
                    fast.push(tenant, c).unwrap();
                    naive.push(tenant, c);
                } else {
                    assert_eq!(fast.pop(), naive.pop(), "quantum {quantum}, step {step}");
                }
            }
            while let Some(expected) = naive.pop() {
                assert_eq!(fast.pop(), Some(expected));
            }
            assert_eq!(fast.pop(), None);
            assert!(fast.is_empty());
            assert_eq!(fast.cost_queued(), 0);
        }
    }

    #[test]
    fn returning_tenant_starts_with_zero_deficit() {
        let mut q = FairQueue::new(100, 16);
        q.push("a", chunk(1, 0, 30)).unwrap();
        assert_eq!(q.pop().map(|(t, _)| t), Some("a"));
        assert!(q.lanes.is_empty(), "emptied tenant must be forgotten, deficit included");
        q.push("a", chunk(2, 0, 30)).unwrap();
        assert_eq!(q.lanes["a"].deficit, 0);
    }

    #[test]
    fn zero_quantum_is_treated_as_one() {
        let mut q = FairQueue::new(0, 4);
        q.push(1u8, chunk(1, 0, 5)).unwrap();
        assert_eq!(q.pop(), Some((1, chunk(1, 0, 5))));
    }

    #[test]
    fn counters_follow_pushes_pops_and_removals() {
        let mut q = FairQueue::new(10, 100);
        q.push_all("a", [chunk(1, 0, 4), chunk(1, 1, 6)]).unwrap();
        q.push("b", chunk(2, 0, 9)).unwrap();
        assert_eq!((q.len(), q.cost_queued(), q.tenants()), (3, 19, 2));
        q.pop().unwrap();
        assert_eq!((q.len(), q.cost_queued()), (2, 19 - 4));
        assert_eq!(q.remove_submission(2), 1);
        assert_eq!((q.len(), q.cost_queued(), q.tenants()), (1, 6, 1));
        assert_eq!(q.ring.len(), q.lanes.len());
    }
}
