//! The distributed lock manager in the o2dlm model (kernel `fs/ocfs2/dlm`).
//!
//! - [`wire`]: the o2dlm messages at the kernel's offsets; pure, never panics on any bytes.
//! - [`core`]: the DLM of one node as a deterministic state machine over `(now, event)`
//!   returning [`Action`]s: domain join and leave, mastery, the granted/converting/blocked
//!   queues of the resources this node masters, ASTs and BASTs, LVBs, recovery after a death.
//! - [`sim`]: N cores on a seeded, lossy, reordering network with deaths and restarts.
//! - [`driver`]: [`Dlm`], the core on a running [`Cluster`](crate::Cluster).
//!
//! Invariants the core keeps (and the simulator checks):
//! - two locks of different nodes on one resource are granted at once only if their modes are
//!   compatible (NL with all, PR with PR);
//! - a request ends in a grant, a refusal (trylock), a cancel, or the death of its node;
//! - an LVB handed out is either all zero (invalid: recovery could not know it) or not older
//!   than the last EX release that reached a live node.

pub mod core;
pub mod driver;
#[doc(hidden)]
pub mod sim;
pub mod wire;

pub use self::core::{Action, DlmCore, DomainState, LockId, Millis, Stats};
pub use self::driver::{Dlm, LockHandle};
pub use self::wire::{Lvb, Mode, DLM_LOCKID_NAME_MAX, DLM_LVB_LEN};

use std::fmt;

/// Why a DLM call failed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DlmError {
    /// The node is not (or no longer) a member of the domain.
    NotJoined,
    /// Lock names are 1 to 32 bytes; domain names 1 to 64.
    BadName(usize),
    /// No lock with this id.
    UnknownLock(LockId),
    /// The lock has a request in progress.
    Busy(LockId),
    /// A trylock (NOQUEUE) could not be granted at once.
    NotQueued,
    /// The request was cancelled.
    Cancelled,
    /// The node is leaving the domain, or still holds locks and cannot leave.
    Leaving,
    /// Another node speaks an incompatible DLM or fs locking protocol.
    ProtocolMismatch(String),
    /// No answer in time.
    Timeout,
    /// The messaging layer failed.
    Net(String),
}

impl DlmError {
    /// The errno an fs caller would return for it.
    pub fn errno(&self) -> i32 {
        match self {
            DlmError::NotJoined => libc::ENOTCONN,
            DlmError::BadName(_) => libc::ENAMETOOLONG,
            DlmError::UnknownLock(_) => libc::EINVAL,
            DlmError::Busy(_) => libc::EBUSY,
            DlmError::NotQueued => libc::EAGAIN,
            DlmError::Cancelled => libc::ECANCELED,
            DlmError::Leaving => libc::ESHUTDOWN,
            DlmError::ProtocolMismatch(_) => libc::EPROTO,
            DlmError::Timeout => libc::ETIMEDOUT,
            DlmError::Net(_) => libc::EIO,
        }
    }
}

impl fmt::Display for DlmError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            DlmError::NotJoined => write!(f, "not a member of the DLM domain"),
            DlmError::BadName(n) => write!(f, "name of {n} bytes is out of range"),
            DlmError::UnknownLock(id) => write!(f, "no lock {:#x}", id.0),
            DlmError::Busy(id) => write!(f, "lock {:#x} has a request in progress", id.0),
            DlmError::NotQueued => write!(f, "the lock could not be granted at once"),
            DlmError::Cancelled => write!(f, "the request was cancelled"),
            DlmError::Leaving => write!(f, "the domain is being left, or locks are still held"),
            DlmError::ProtocolMismatch(m) => write!(f, "protocol mismatch: {m}"),
            DlmError::Timeout => write!(f, "timed out"),
            DlmError::Net(m) => write!(f, "o2net: {m}"),
        }
    }
}

impl std::error::Error for DlmError {}

pub type Result<T> = std::result::Result<T, DlmError>;
