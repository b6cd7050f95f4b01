//! The filesystem's view of cluster locks: every metadata access goes through here.
//!
//! A lock is named by the resource it guards (see [`LockName`]) and taken at a level. What
//! backs it is a [`LockBackend`]: on a local volume, or on a read-only open without a cluster
//! stack, nothing crosses the process and [`NoClusterLocks`] grants at once. The cluster issue
//! backs it with the DLM. Each grant returns an *epoch*: it changes whenever this node lost the
//! lock since its previous grant, which is the signal to drop everything cached under it.

use super::error::Result;

/// The level a lock is taken at: the two dlmglue modes the filesystem asks for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum LockLevel {
    /// Protected read: many nodes at once.
    Shared,
    /// Exclusive: one node, for changes.
    Exclusive,
}

/// The resource a cluster lock guards, in the kernel's dlmglue naming (`ocfs2_lock_type`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum LockName {
    /// Inode metadata ('M'): the dinode block and everything reached from it.
    Meta { blkno: u64 },
    /// The superblock ('S'): mount, slots and recovery.
    Super,
}

/// A granted lock. Dropping the grant releases it (to the cache of the backend).
pub trait LockGrant: Send {
    /// Changes when the lock was lost between two grants: cached metadata is stale then.
    fn epoch(&self) -> u64;
}

/// What provides cluster locks to the filesystem.
pub trait LockBackend: Send + Sync {
    fn lock(&self, name: LockName, level: LockLevel) -> Result<Box<dyn LockGrant>>;
}

/// The backend for local volumes and lock-free read-only opens: grants at once, never loses a
/// lock, so caches stay valid for the life of the volume.
pub struct NoClusterLocks;

struct StableGrant;

impl LockGrant for StableGrant {
    fn epoch(&self) -> u64 {
        0
    }
}

impl LockBackend for NoClusterLocks {
    fn lock(&self, _name: LockName, _level: LockLevel) -> Result<Box<dyn LockGrant>> {
        Ok(Box::new(StableGrant))
    }
}
