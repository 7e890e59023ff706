//! [`SharedQueue`]: a [`FairQueue`] behind a mutex, for worker threads that pull and wait.

use std::hash::Hash;
use std::sync::{Condvar, Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant};

use crate::fair::{ChunkRef, FairQueue, QueueFull};

#[derive(Debug)]
struct State<K> {
    queue: FairQueue<K>,
    closed: bool,
}

/// A thread-safe [`FairQueue`] for the pull model: submitters push, workers block in
/// [`pop_wait`](Self::pop_wait) until a chunk is ready, the timeout passes, or the queue is
/// closed for shutdown.
#[derive(Debug)]
pub struct SharedQueue<K> {
    state: Mutex<State<K>>,
    ready: Condvar,
}

impl<K: Eq + Hash + Clone> SharedQueue<K> {
    /// See [`FairQueue::new`].
    pub fn new(quantum: u32, depth_max: usize) -> Self {
        Self {
            state: Mutex::new(State { queue: FairQueue::new(quantum, depth_max), closed: false }),
            ready: Condvar::new(),
        }
    }

    /// Queues one chunk (see [`FairQueue::push`]) and wakes one waiting worker.
    pub fn push(&self, tenant: K, chunk: ChunkRef) -> Result<(), QueueFull> {
        self.push_all(tenant, [chunk])
    }

    /// Queues all chunks or none (see [`FairQueue::push_all`]) and wakes waiting workers.
    /// Chunks pushed after [`close`](Self::close) are queued but never handed out.
    pub fn push_all(&self, tenant: K, chunks: impl IntoIterator<Item = ChunkRef>) -> Result<(), QueueFull> {
        let added = {
            let mut state = self.lock();
            let before = state.queue.len();
            state.queue.push_all(tenant, chunks)?;
            state.queue.len() - before
        };
        // Notified after unlocking so a woken worker does not block on the mutex at once.
        match added {
            0 => {}
            1 => self.ready.notify_one(),
            _ => self.ready.notify_all(),
        }
        Ok(())
    }

    /// The next chunk by DRR, waiting up to `timeout` for one. `None` on timeout or once the
    /// queue is closed (even with chunks still queued: closing means stop taking work).
    pub fn pop_wait(&self, timeout: Duration) -> Option<(K, ChunkRef)> {
        // No deadline if it would overflow `Instant`: such a timeout means "wait forever".
        let deadline = Instant::now().checked_add(timeout);
        let mut state = self.lock();
        loop {
            if state.closed {
                return None;
            }
            if let Some(item) = state.queue.pop() {
                return Some(item);
            }
            // Loop rather than trust one wakeup: wakeups may be spurious, or another worker
            // may have taken the chunk first.
            state = match deadline {
                None => self.ready.wait(state).unwrap_or_else(PoisonError::into_inner),
                Some(deadline) => {
                    let left = deadline.checked_duration_since(Instant::now())?;
                    if left.is_zero() {
                        return None;
                    }
                    self.ready.wait_timeout(state, left).unwrap_or_else(PoisonError::into_inner).0
                }
            };
        }
    }

    /// Stops handing out work: wakes every waiting worker, and every later
    /// [`pop_wait`](Self::pop_wait) returns `None` at once.
    pub fn close(&self) {
        self.lock().closed = true;
        self.ready.notify_all();
    }

    /// Whether [`close`](Self::close) was called.
    pub fn is_closed(&self) -> bool {
        self.lock().closed
    }

    /// See [`FairQueue::remove_submission`].
    pub fn remove_submission(&self, submission: i64) -> usize {
        self.lock().queue.remove_submission(submission)
    }

    /// Chunks queued.
    pub fn len(&self) -> usize {
        self.lock().queue.len()
    }

    /// Whether no chunk is queued.
    pub fn is_empty(&self) -> bool {
        self.lock().queue.is_empty()
    }

    /// Total cost (receipts) of the queued chunks.
    pub fn cost_queued(&self) -> u64 {
        self.lock().queue.cost_queued()
    }

    /// Tenants with queued chunks.
    pub fn tenants(&self) -> usize {
        self.lock().queue.tenants()
    }

    /// Poisoning is ignored: `FairQueue` methods do not panic midway, so a panic in another
    /// thread holding the lock cannot have left the queue inconsistent, and refusing all
    /// further work would turn one worker's crash into the whole payer's outage.
    fn lock(&self) -> MutexGuard<'_, State<K>> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }
}
