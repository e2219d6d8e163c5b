//! Running verifications at scale: the batch engine, the memo of results,
//! and the bounds on the work the process accepts.

pub mod admission;
pub mod engine;
pub mod inflight;
pub mod memo;
pub mod pool;
pub(crate) mod sync;
pub mod token_key;
