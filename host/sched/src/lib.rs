//! The server's fair work scheduler: submissions split into chunks, served by deficit round robin.
//!
//! Why: a claim file is split into chunks of receipts and worker threads *pull* chunks. If
//! chunks were served in arrival order, a 20-receipt clinic file submitted after a
//! 100,000-receipt hospital file would wait for the whole hospital file. [`FairQueue`]
//! interleaves tenants (institutions) with deficit round robin (DRR), weighting each chunk
//! by its cost (receipts), so every tenant with queued work gets an equal share of receipts
//! per round whatever its chunk sizes.
//!
//! The server keeps one queue per payer (a bulkhead: one payer's backlog cannot starve
//! another's); this crate knows nothing about payers, HTTP, storage or wasm, and does no
//! I/O. [`SharedQueue`] wraps a [`FairQueue`] for worker threads that block waiting for work.

mod fair;
mod shared;

pub use fair::{ChunkRef, FairQueue, QueueFull};
pub use shared::SharedQueue;
