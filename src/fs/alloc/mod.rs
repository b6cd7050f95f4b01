//! Allocation: the global cluster bitmap, the per-slot block suballocators, the local alloc
//! window and the truncate log, all changed only inside transactions.
//!
//! Every allocator keeps its on-disk counters consistent within the transaction that changes
//! it (see [`chain`]); the only state kept in memory is policy (the window size and whether
//! local alloc is on, search hints), so a transaction that is dropped leaves nothing to undo.
//! A full volume gives [`Error::NoSpace`](super::error::Error::NoSpace), never a partial
//! change: callers drop the transaction.

pub(crate) mod chain;
pub(crate) mod global;
pub(crate) mod local_alloc;
pub(crate) mod suballoc;
pub(crate) mod truncate_log;

#[cfg(test)]
mod tests;

pub(crate) use local_alloc::LaState;
pub(crate) use suballoc::{SubAlloc, SubBlock};

/// The allocation policy a writable volume keeps in memory.
#[derive(Debug, Clone)]
pub(crate) struct AllocState {
    pub la: LaState,
}

impl AllocState {
    /// `la_default_bits` is the local alloc window in clusters (0 disables local alloc).
    pub fn new(la_default_bits: u32) -> Self {
        AllocState { la: LaState::new(la_default_bits) }
    }
}
