//! Behaviour of the scheduler through its public API: fairness, bounds, withdrawal, threads.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::thread;
use std::time::{Duration, Instant};

use tenken_sched::{ChunkRef, FairQueue, QueueFull, SharedQueue};

fn chunks(submission: i64, count: u32, cost: u32) -> impl Iterator<Item = ChunkRef> {
    (0..count).map(move |index| ChunkRef { submission, index, cost })
}

#[test]
fn fifo_within_one_tenant() {
    let mut q = FairQueue::new(5, 1000);
    // Costs above and below the quantum, so deficit carry-over is exercised too.
    let pushed: Vec<ChunkRef> =
        (0..50u32).map(|i| ChunkRef { submission: i64::from(i % 3), index: i, cost: (i * 7) % 13 + 1 }).collect();
    for c in &pushed {
        q.push("clinic".to_string(), *c).unwrap();
    }
    let popped: Vec<ChunkRef> = std::iter::from_fn(|| q.pop())
        .map(|(tenant, c)| {
            assert_eq!(tenant, "clinic");
            c
        })
        .collect();
    assert_eq!(popped, pushed);
}

#[test]
fn small_clinic_file_is_not_stuck_behind_hospital_backlog() {
    let mut q = FairQueue::new(256, 10_000);
    q.push_all("hospital", chunks(1, 400, 256)).unwrap(); // 102,400 receipts
    // Workers are already busy with the hospital file when the clinic submits.
    for _ in 0..3 {
        assert_eq!(q.pop().unwrap().0, "hospital");
    }
    q.push("clinic", ChunkRef { submission: 2, index: 0, cost: 20 }).unwrap();
    let next_two: Vec<_> = (0..2).map(|_| q.pop().unwrap()).collect();
    assert!(
        next_two.contains(&("clinic", ChunkRef { submission: 2, index: 0, cost: 20 })),
        "clinic chunk not within 2 pops: {next_two:?}"
    );
    // The hospital keeps the rest of the queue to itself afterwards.
    assert_eq!(q.len(), 400 - 3 - 1);
    assert!(std::iter::from_fn(|| q.pop()).all(|(t, _)| t == "hospital"));
}

#[test]
fn long_run_share_is_equal_in_cost_whatever_the_chunk_size() {
    const QUANTUM: u32 = 256;
    let costs = [("big", 256u32), ("mid", 100), ("small", 7)];
    let mut q = FairQueue::new(QUANTUM, 1_000_000);
    // Equal backlogs of about 51,200 receipts each.
    for (submission, (tenant, cost)) in costs.iter().enumerate() {
        q.push_all(*tenant, chunks(submission as i64, 51_200u32.div_ceil(*cost), *cost)).unwrap();
    }
    let bound = u64::from(QUANTUM) + 256; // one quantum + the largest chunk cost
    let mut served: HashMap<&str, u64> = HashMap::new();
    let mut pops = 0;
    // Only while every tenant is still backlogged: after that the others rightly take more.
    while q.tenants() == costs.len() {
        let (tenant, c) = q.pop().unwrap();
        *served.entry(tenant).or_default() += u64::from(c.cost);
        pops += 1;
        let (lo, hi) = costs.iter().fold((u64::MAX, 0), |(lo, hi), (t, _)| {
            let s = served.get(t).copied().unwrap_or(0);
            (lo.min(s), hi.max(s))
        });
        assert!(hi - lo <= bound, "after {pops} pops served {served:?}, spread {}", hi - lo);
    }
    assert!(pops > 7_000, "the run should cover many rounds, was {pops} pops");
    assert!(served.values().all(|&s| s > 50_000), "{served:?}");
}

#[test]
fn depth_max_refuses_and_push_all_is_all_or_nothing() {
    let mut q = FairQueue::new(10, 5);
    q.push_all("a", chunks(1, 3, 1)).unwrap();
    assert_eq!(q.push_all("b", chunks(2, 3, 1)), Err(QueueFull { depth_max: 5 }));
    assert_eq!((q.len(), q.tenants(), q.cost_queued()), (3, 1, 3), "nothing of b queued");
    q.push_all("b", chunks(2, 2, 1)).unwrap();
    assert_eq!(q.push("c", ChunkRef { submission: 3, index: 0, cost: 1 }), Err(QueueFull { depth_max: 5 }));
    assert_eq!((q.len(), q.tenants()), (5, 2));
    assert!(QueueFull { depth_max: 5 }.to_string().contains('5'));
    // Room frees up as chunks are popped.
    q.pop().unwrap();
    q.push("c", ChunkRef { submission: 3, index: 0, cost: 1 }).unwrap();
    assert_eq!(q.len(), 5);
}

#[test]
fn remove_submission_drops_only_that_submission() {
    let mut q = FairQueue::new(10, 100);
    q.push_all("a", chunks(1, 4, 3)).unwrap();
    q.push_all("a", chunks(2, 2, 5)).unwrap();
    q.push_all("b", chunks(3, 3, 2)).unwrap();
    assert_eq!(q.remove_submission(1), 4);
    assert_eq!(q.remove_submission(1), 0, "already gone");
    assert_eq!(q.remove_submission(99), 0);
    assert_eq!((q.len(), q.cost_queued(), q.tenants()), (5, 2 * 5 + 3 * 2, 2));
    assert_eq!(q.remove_submission(3), 3);
    assert_eq!(q.tenants(), 1, "b had nothing else queued and leaves the ring");
    let rest: Vec<_> = std::iter::from_fn(|| q.pop()).collect();
    assert_eq!(rest, chunks(2, 2, 5).map(|c| ("a", c)).collect::<Vec<_>>());
}

#[test]
fn cost_far_above_quantum_terminates_and_is_served() {
    let mut q = FairQueue::new(1, 100);
    let huge = ChunkRef { submission: 1, index: 0, cost: u32::MAX };
    q.push("huge", huge).unwrap();
    q.push_all("small", chunks(2, 3, 1)).unwrap();
    let start = Instant::now();
    let order: Vec<_> = std::iter::from_fn(|| q.pop()).collect();
    assert!(start.elapsed() < Duration::from_secs(1), "pop must not loop per quantum");
    assert_eq!(order.len(), 4);
    // The small tenant is not held up by the huge chunk; the huge one still gets served.
    assert_eq!(order[0].0, "small");
    assert_eq!(order[3], ("huge", huge));
    assert_eq!(q.cost_queued(), 0);
}

#[test]
fn shared_queue_hands_every_chunk_to_exactly_one_worker() {
    const TENANTS: u32 = 7;
    const PER_TENANT: u32 = 300;
    let q = Arc::new(SharedQueue::new(50, 256));
    let workers: Vec<_> = (0..4)
        .map(|_| {
            let q = Arc::clone(&q);
            thread::spawn(move || {
                let mut got = Vec::new();
                loop {
                    match q.pop_wait(Duration::from_millis(20)) {
                        Some((tenant, c)) => got.push((tenant, c.submission, c.index)),
                        None if q.is_closed() => return got,
                        None => {}
                    }
                }
            })
        })
        .collect();
    // Pushed while the workers run, in batches under depth_max, retrying when full.
    for tenant in 0..TENANTS {
        for batch in 0..PER_TENANT / 30 {
            let batch_chunks: Vec<_> = (0..30)
                .map(|i| ChunkRef { submission: i64::from(tenant), index: batch * 30 + i, cost: 1 + i % 9 })
                .collect();
            while q.push_all(tenant, batch_chunks.iter().copied()).is_err() {
                thread::sleep(Duration::from_millis(1));
            }
        }
    }
    let deadline = Instant::now() + Duration::from_secs(30);
    while !q.is_empty() {
        assert!(Instant::now() < deadline, "workers stalled with {} queued", q.len());
        thread::sleep(Duration::from_millis(5));
    }
    q.close();
    let mut seen = HashSet::new();
    let mut total = 0;
    for w in workers {
        for item in w.join().unwrap() {
            assert_eq!(i64::from(item.0), item.1, "chunk returned with the wrong tenant");
            assert!(seen.insert(item), "chunk handed out twice: {item:?}");
            total += 1;
        }
    }
    assert_eq!(total, TENANTS * PER_TENANT);
    assert_eq!(q.cost_queued(), 0);
}

#[test]
fn pop_wait_times_out_on_an_empty_queue() {
    let q: SharedQueue<String> = SharedQueue::new(10, 10);
    let start = Instant::now();
    assert_eq!(q.pop_wait(Duration::from_millis(50)), None);
    assert!(start.elapsed() >= Duration::from_millis(50));
    assert_eq!(q.pop_wait(Duration::ZERO), None);
}

#[test]
fn push_wakes_a_waiting_worker() {
    let q = Arc::new(SharedQueue::new(10, 10));
    let worker = {
        let q = Arc::clone(&q);
        thread::spawn(move || q.pop_wait(Duration::from_secs(30)))
    };
    thread::sleep(Duration::from_millis(50));
    let start = Instant::now();
    let c = ChunkRef { submission: 1, index: 0, cost: 3 };
    q.push("a", c).unwrap();
    assert_eq!(worker.join().unwrap(), Some(("a", c)));
    assert!(start.elapsed() < Duration::from_secs(10));
}

#[test]
fn close_wakes_all_waiters_and_stops_handing_out_work() {
    let q: Arc<SharedQueue<&str>> = Arc::new(SharedQueue::new(10, 10));
    let waiters: Vec<_> = (0..3)
        .map(|_| {
            let q = Arc::clone(&q);
            thread::spawn(move || q.pop_wait(Duration::from_secs(60)))
        })
        .collect();
    thread::sleep(Duration::from_millis(50));
    let start = Instant::now();
    q.close();
    for w in waiters {
        assert_eq!(w.join().unwrap(), None);
    }
    assert!(start.elapsed() < Duration::from_secs(10), "close did not wake the waiters");
    // Work still queued after close is not handed out, and no one waits for it.
    q.push("a", ChunkRef { submission: 1, index: 0, cost: 1 }).unwrap();
    let start = Instant::now();
    assert_eq!(q.pop_wait(Duration::from_secs(60)), None);
    assert!(start.elapsed() < Duration::from_secs(10));
    assert!(q.is_closed());
    assert_eq!(q.len(), 1);
}

#[test]
fn shared_remove_submission_and_counters() {
    let q = SharedQueue::new(10, 10);
    q.push_all("a", chunks(1, 3, 4)).unwrap();
    q.push_all("b", chunks(2, 2, 1)).unwrap();
    assert_eq!((q.len(), q.cost_queued(), q.tenants()), (5, 14, 2));
    assert_eq!(q.remove_submission(1), 3);
    assert_eq!((q.len(), q.cost_queued(), q.tenants()), (2, 2, 1));
    assert_eq!(q.pop_wait(Duration::ZERO).map(|(t, _)| t), Some("b"));
}
