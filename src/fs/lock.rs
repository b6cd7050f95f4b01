//! The filesystem's view of cluster locks: every metadata access goes through here.
//!
//! A lock is named by the resource it guards (see [`LockName`]) and taken at a level. What
//! backs it is a [`LockBackend`]: on a local volume, or on a read-only open without a cluster
//! stack, nothing crosses the process and [`NoClusterLocks`] grants at once. The cluster issue
//! backs it with the DLM. Each grant returns an *epoch*: it changes whenever this node lost the
//! lock since its previous grant, which is the signal to drop everything cached under it.
//!
//! In front of the backend, [`Locks`] orders the threads of this process, as the kernel's inode
//! semaphores do: many readers or one writer per name, and a waiting writer holds back new
//! readers. Rule for callers: take inode locks before beginning a transaction, never while one
//! is open (a transaction holds the volume's write lock, and a writer holding an inode lock may
//! be waiting for it).

use super::error::{Error, Result};
use parking_lot::{Condvar, Mutex};
use std::collections::HashMap;
use std::thread::ThreadId;

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

/// Who holds one name in this process.
#[derive(Debug, Default)]
struct Holders {
    readers: u32,
    writer: Option<ThreadId>,
    waiting_writers: u32,
}

/// The locks of one volume: local ordering between threads, then the backend.
pub(crate) struct Locks {
    backend: Box<dyn LockBackend>,
    table: Mutex<HashMap<LockName, Holders>>,
    changed: Condvar,
}

/// A lock held by this thread; dropping it releases it.
pub(crate) struct Grant<'a> {
    locks: &'a Locks,
    name: LockName,
    level: LockLevel,
    cluster: Option<Box<dyn LockGrant>>,
}

impl Grant<'_> {
    /// See [`LockGrant::epoch`].
    pub fn epoch(&self) -> u64 {
        self.cluster.as_ref().map_or(0, |g| g.epoch())
    }
}

impl Drop for Grant<'_> {
    fn drop(&mut self) {
        // The cluster lock goes first: the next local holder then asks the backend anew.
        self.cluster.take();
        let mut table = self.locks.table.lock();
        if let Some(h) = table.get_mut(&self.name) {
            match self.level {
                LockLevel::Shared => h.readers = h.readers.saturating_sub(1),
                LockLevel::Exclusive => h.writer = None,
            }
            if h.readers == 0 && h.writer.is_none() && h.waiting_writers == 0 {
                table.remove(&self.name);
            }
        }
        self.locks.changed.notify_all();
    }
}

impl Locks {
    pub fn new(backend: Box<dyn LockBackend>) -> Locks {
        Locks { backend, table: Mutex::new(HashMap::new()), changed: Condvar::new() }
    }

    /// Takes `name` at `level`, waiting for other threads of this process first. A thread that
    /// asks for a name it holds exclusively gets [`Error::Busy`] rather than waiting forever.
    pub fn lock(&self, name: LockName, level: LockLevel) -> Result<Grant<'_>> {
        let me = std::thread::current().id();
        {
            let mut table = self.table.lock();
            if table.get(&name).is_some_and(|h| h.writer == Some(me)) {
                return Err(Error::Busy(format!("{name:?} is already held exclusively by this thread")));
            }
            match level {
                LockLevel::Shared => {
                    while table.get(&name).is_some_and(|h| h.writer.is_some() || h.waiting_writers > 0) {
                        self.changed.wait(&mut table);
                    }
                    table.entry(name).or_default().readers += 1;
                }
                LockLevel::Exclusive => {
                    table.entry(name).or_default().waiting_writers += 1;
                    while table.get(&name).is_some_and(|h| h.writer.is_some() || h.readers > 0) {
                        self.changed.wait(&mut table);
                    }
                    let h = table.entry(name).or_default();
                    h.waiting_writers -= 1;
                    h.writer = Some(me);
                }
            }
        }
        let mut grant = Grant { locks: self, name, level, cluster: None };
        grant.cluster = Some(self.backend.lock(name, level)?);
        Ok(grant)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicU32, Ordering};
    use std::sync::Arc;

    #[test]
    fn writers_exclude_readers_and_each_other() {
        let locks = Arc::new(Locks::new(Box::new(NoClusterLocks)));
        let inside = Arc::new(AtomicU32::new(0));
        let mut threads = Vec::new();
        for t in 0..6 {
            let (locks, inside) = (locks.clone(), inside.clone());
            threads.push(std::thread::spawn(move || {
                for _ in 0..2000 {
                    let name = LockName::Meta { blkno: 7 };
                    if t % 3 == 0 {
                        let _g = locks.lock(name, LockLevel::Exclusive).unwrap();
                        assert_eq!(inside.fetch_add(1000, Ordering::SeqCst), 0, "a writer is alone");
                        inside.fetch_sub(1000, Ordering::SeqCst);
                    } else {
                        let _g = locks.lock(name, LockLevel::Shared).unwrap();
                        assert!(inside.fetch_add(1, Ordering::SeqCst) < 1000, "no writer beside a reader");
                        inside.fetch_sub(1, Ordering::SeqCst);
                    }
                }
            }));
        }
        for t in threads {
            t.join().unwrap();
        }
        assert!(locks.table.lock().is_empty(), "released names leave the table");
    }

    #[test]
    fn relocking_a_name_held_exclusively_fails_instead_of_hanging() {
        let locks = Locks::new(Box::new(NoClusterLocks));
        let name = LockName::Meta { blkno: 3 };
        let _g = locks.lock(name, LockLevel::Exclusive).unwrap();
        assert!(matches!(locks.lock(name, LockLevel::Shared), Err(Error::Busy(_))));
        let _other = locks.lock(LockName::Meta { blkno: 4 }, LockLevel::Exclusive).unwrap();
    }
}
