//! Transactions: the only way metadata changes reach the disk.
//!
//! An operation begins a [`Tx`], which holds the volume's write lock for its whole life. It
//! reads metadata through the transaction (its own changes first, then blocks committed to the
//! journal but not yet home, then the cache and the device), changes copies of the blocks, and
//! commits. Commit seals every changed block with metaecc (when the volume has it) and adds the
//! blocks to the volume's *running* journal transaction, which readers see at once. The running
//! transaction goes to the journal as one JBD2 transaction (group commit, as jbd2 does): when it
//! grows past a quarter of the journal, when it is five seconds old, when a caller syncs, and at
//! close. An operation is therefore atomic when it returns and durable after the next sync.
//! File data an operation wrote reached the device before any journal block that maps it, and
//! the journal flushes before its commit block, so data is durable before the metadata that
//! points at it (ordered mode). Dropping a transaction without committing discards its changes.
//!
//! Invariants:
//! - Nothing but the journal writes a block a transaction changed; home blocks are written by
//!   the journal's checkpoint.
//! - A failed journal write stops the volume: every later transaction is refused
//!   ([`Error::Stopped`]) until the volume is opened again.
//! - Clusters freed in a transaction are not handed out again until the running transaction
//!   holding the free is in the journal, so that data written into them cannot land in blocks
//!   that the last metadata on disk still points at.

use super::alloc::AllocState;
use super::error::{Error, Result};
use super::meta::BlockKind;
use super::volume::VolumeInner;
use crate::device::BlockDevice;
use crate::format::dinode::Dinode;
use crate::journal::Journal;
use parking_lot::MutexGuard;
use std::collections::{BTreeMap, BTreeSet};
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// How long committed operations may wait in the running transaction (jbd2's commit interval).
pub(crate) const COMMIT_INTERVAL: Duration = Duration::from_secs(5);
/// The running transaction is written once it holds this share of the journal's blocks.
const RUNNING_SHARE_OF_JOURNAL: u32 = 4;
/// ... and at most this many blocks, whatever the journal's size.
const MAX_RUNNING_BLOCKS: usize = 8192;

/// Operations committed in memory and not yet written to the journal.
#[derive(Debug, Default)]
pub(crate) struct Running {
    /// Sealed block contents by block number.
    blocks: BTreeMap<u64, Vec<u8>>,
    revoked: BTreeSet<u64>,
    /// Cluster runs freed by these operations: not allocatable until they are in the journal.
    freed_clusters: Vec<(u32, u32)>,
    /// When the oldest operation in it committed.
    since: Option<Instant>,
}

impl Running {
    pub fn is_empty(&self) -> bool {
        self.blocks.is_empty() && self.revoked.is_empty()
    }
}

/// What a writable volume keeps between transactions, behind its write lock.
pub(crate) struct WriteState {
    pub journal: Journal<Arc<dyn BlockDevice>>,
    /// The slot this node took in the slot map.
    pub slot: u16,
    /// The slot's journal inode.
    pub journal_inode: u64,
    pub alloc: AllocState,
    /// `i_generation` of the next inode this node creates.
    pub next_generation: u32,
    /// Why the volume stopped writing, if it did.
    pub stopped: Option<String>,
    /// Set once the volume was closed cleanly.
    pub closed: bool,
    pub running: Running,
}

impl WriteState {
    /// Fails unless the volume may still be written.
    pub fn check_usable(&self) -> Result<()> {
        if let Some(why) = &self.stopped {
            return Err(Error::Stopped(why.clone()));
        }
        if self.closed {
            return Err(Error::ReadOnly);
        }
        Ok(())
    }

    /// Records a failed write: nothing is written any more.
    pub fn stop(&mut self, why: impl Into<String>) {
        let why = why.into();
        log::error!("volume stops writing: {why}");
        if self.stopped.is_none() {
            self.stopped = Some(why);
        }
    }
}

/// One changed block of a transaction.
struct TxBlock {
    kind: BlockKind,
    data: Vec<u8>,
}

/// The changes of one atomic operation. See the module documentation.
pub(crate) struct Tx<'v> {
    pub vol: &'v VolumeInner,
    pub ws: MutexGuard<'v, WriteState>,
    blocks: BTreeMap<u64, TxBlock>,
    revoked: BTreeSet<u64>,
    data_written: bool,
    /// Cluster runs (start, count) freed by this transaction: not allocatable until it commits.
    freed_clusters: Vec<(u32, u32)>,
}

/// Metadata blocks a transaction may change at most, so that it stays far below the smallest
/// journal (4 MB, 1024 blocks of 4K) and commits without a checkpoint in between.
pub(crate) const MAX_TX_BLOCKS: usize = 512;
/// Blocks a transaction may revoke at most (a revoke takes 8 bytes of a revoke block).
pub(crate) const MAX_TX_REVOKES: usize = 16384;

impl VolumeInner {
    /// Starts a transaction; fails on a read-only, closed or stopped volume.
    pub(crate) fn begin(&self) -> Result<Tx<'_>> {
        let w = self.write.as_ref().ok_or(Error::ReadOnly)?;
        let mut ws = w.lock();
        ws.check_usable()?;
        commit_if_due(self, &mut ws)?;
        Ok(Tx {
            vol: self,
            ws,
            blocks: BTreeMap::new(),
            revoked: BTreeSet::new(),
            data_written: false,
            freed_clusters: Vec::new(),
        })
    }
}

impl<'v> Tx<'v> {
    /// The current contents of metadata block `blkno`, as this transaction sees them.
    pub fn block(&self, blkno: u64, kind: BlockKind) -> Result<Arc<[u8]>> {
        if let Some(b) = self.blocks.get(&blkno) {
            return Ok(b.data.as_slice().into());
        }
        if self.revoked.contains(&blkno) {
            return Err(Error::corrupt(blkno, "block read after this transaction freed it"));
        }
        self.vol.meta.read(blkno, kind)
    }

    /// A copy of block `blkno` that this transaction changes; read first if needed.
    pub fn block_mut(&mut self, blkno: u64, kind: BlockKind) -> Result<&mut [u8]> {
        if !self.blocks.contains_key(&blkno) {
            let data = self.block(blkno, kind)?.to_vec();
            self.insert(blkno, kind, data)?;
        }
        let b = self.blocks.get_mut(&blkno).expect("inserted above");
        b.kind = kind;
        Ok(&mut b.data)
    }

    /// A new metadata block at `blkno`, all zeros, which this transaction fills: its old
    /// contents are never read (the block was just allocated).
    pub fn new_block(&mut self, blkno: u64, kind: BlockKind) -> Result<&mut [u8]> {
        self.vol.meta.check_range(blkno, 1)?;
        self.revoked.remove(&blkno);
        let data = vec![0u8; self.vol.geo.block_size as usize];
        self.blocks.remove(&blkno);
        self.insert(blkno, kind, data)?;
        Ok(&mut self.blocks.get_mut(&blkno).expect("inserted above").data)
    }

    /// Records that metadata block `blkno` was freed: no earlier logged copy of it will be
    /// replayed over whatever it holds next.
    pub fn free_block(&mut self, blkno: u64) -> Result<()> {
        if self.revoked.len() >= MAX_TX_REVOKES {
            return Err(Error::NoSpace(format!("an operation freeing more than {MAX_TX_REVOKES} metadata blocks")));
        }
        self.blocks.remove(&blkno);
        self.revoked.insert(blkno);
        Ok(())
    }

    fn insert(&mut self, blkno: u64, kind: BlockKind, data: Vec<u8>) -> Result<()> {
        if self.blocks.len() >= MAX_TX_BLOCKS {
            return Err(Error::NoSpace(format!(
                "an operation touching more than {MAX_TX_BLOCKS} metadata blocks does not fit one transaction"
            )));
        }
        self.blocks.insert(blkno, TxBlock { kind, data });
        Ok(())
    }

    /// The decoded inode at `blkno` as this transaction sees it, checked like the read path
    /// checks inodes.
    pub fn dinode(&self, blkno: u64) -> Result<Dinode> {
        let block = self.block(blkno, BlockKind::Inode)?;
        let di = Dinode::decode(&block).map_err(|e| Error::format(blkno, e))?;
        di.validate(blkno, self.vol.meta.fs_generation).map_err(|e| Error::format(blkno, e))?;
        Ok(di)
    }

    /// Changes the inode at `blkno`: `f` gets the decoded head and the whole block (whose id2
    /// it may change); the head is encoded back afterwards.
    pub fn update_dinode<R>(&mut self, blkno: u64, f: impl FnOnce(&mut Dinode, &mut [u8]) -> Result<R>) -> Result<R> {
        let generation = self.vol.meta.fs_generation;
        let block = self.block_mut(blkno, BlockKind::Inode)?;
        let mut di = Dinode::decode(block).map_err(|e| Error::format(blkno, e))?;
        di.validate(blkno, generation).map_err(|e| Error::format(blkno, e))?;
        let out = f(&mut di, block)?;
        di.encode(block).map_err(|e| Error::format(blkno, e))?;
        Ok(out)
    }

    /// Writes file data at device block `blkno` now; commit flushes it before the metadata
    /// that points at it.
    pub fn write_data(&mut self, blkno: u64, data: &[u8]) -> Result<()> {
        self.write_data_at(self.vol.geo.block_offset(blkno), data, true)
    }

    /// Writes file data at device byte `pos` now. `ordered` data (in clusters this transaction
    /// maps or marks written) is flushed before the transaction commits; an overwrite of data
    /// already in place needs no such ordering.
    pub fn write_data_at(&mut self, pos: u64, data: &[u8], ordered: bool) -> Result<()> {
        if data.is_empty() {
            return Ok(());
        }
        let bs = u64::from(self.vol.geo.block_size);
        let first = pos / bs;
        let blocks = (pos + data.len() as u64).div_ceil(bs) - first;
        self.vol.meta.check_range(first, blocks)?;
        // A block the journal still holds would be overwritten again by the next checkpoint;
        // freeing journaled metadata must revoke it, and the revoke must commit first.
        let journaled = |b: u64| self.ws.journal.pending(b).is_some() || self.ws.running.blocks.contains_key(&b);
        if let Some(b) = (first..first + blocks).find(|&b| journaled(b)) {
            return Err(Error::corrupt(b, "file data written over a block the journal still holds"));
        }
        self.data_written |= ordered;
        self.vol.meta.device().write_at(pos, data)?;
        // A cached metadata copy of these blocks (from their life before they were freed) is
        // stale now.
        for b in first..first + blocks {
            self.vol.meta.forget(b);
        }
        Ok(())
    }

    /// Records clusters this transaction freed, which it must not hand out again.
    pub fn note_freed_clusters(&mut self, start: u32, count: u32) {
        if count > 0 {
            self.freed_clusters.push((start, count));
        }
    }

    /// True if `cluster` was freed by this transaction or by one not yet in the journal.
    pub fn cluster_freed_here(&self, cluster: u32) -> bool {
        let within = |&(s, n): &(u32, u32)| cluster >= s && cluster - s < n;
        self.freed_clusters.iter().any(within) || self.ws.running.freed_clusters.iter().any(within)
    }

    /// True if any clusters wait for a commit before they can be handed out again (searches
    /// then check each candidate).
    pub fn has_freed_clusters(&self) -> bool {
        !self.freed_clusters.is_empty() || !self.ws.running.freed_clusters.is_empty()
    }

    /// Metadata blocks changed so far.
    #[cfg(test)]
    pub fn changed_blocks(&self) -> usize {
        self.blocks.len()
    }

    /// Makes the transaction visible and part of the running journal transaction. See the
    /// module documentation.
    pub fn commit(mut self) -> Result<()> {
        self.ws.check_usable()?;
        let vol = self.vol;
        if self.blocks.is_empty() && self.revoked.is_empty() {
            return Ok(());
        }
        let blocks = std::mem::take(&mut self.blocks);
        let revoked = std::mem::take(&mut self.revoked);
        let freed = std::mem::take(&mut self.freed_clusters);
        let running = &mut self.ws.running;
        running.since.get_or_insert_with(Instant::now);
        for (blkno, mut b) in blocks {
            if vol.metaecc {
                b.kind.seal(&mut b.data);
            }
            // Logged again after a revoke in the same journal transaction: jbd2 would skip
            // every copy of it at replay, so the revoke goes (older copies are replayed first).
            running.revoked.remove(&blkno);
            vol.meta.install_committed(blkno, b.data.as_slice().into());
            running.blocks.insert(blkno, b.data);
        }
        for blkno in revoked {
            running.blocks.remove(&blkno);
            running.revoked.insert(blkno);
            vol.meta.forget(blkno);
        }
        running.freed_clusters.extend(freed);
        vol.write_seq.fetch_add(1, Ordering::AcqRel);
        let limit =
            ((self.ws.journal.position().capacity() / RUNNING_SHARE_OF_JOURNAL) as usize).min(MAX_RUNNING_BLOCKS);
        let running = &self.ws.running;
        if running.blocks.len() + running.revoked.len() / 64 >= limit {
            commit_running(vol, &mut self.ws)?;
        }
        Ok(())
    }
}

/// Writes the running transaction to the journal as one JBD2 transaction. A failure stops the
/// volume.
pub(crate) fn commit_running(vol: &VolumeInner, ws: &mut WriteState) -> Result<()> {
    ws.check_usable()?;
    if ws.running.is_empty() {
        ws.running = Running::default();
        return Ok(());
    }
    let running = std::mem::take(&mut ws.running);
    let mut jtx = ws.journal.begin();
    for (&blkno, data) in &running.blocks {
        jtx.log(blkno, data)?;
    }
    for &blkno in &running.revoked {
        jtx.revoke(blkno);
    }
    let info = match ws.journal.commit(jtx) {
        Ok(info) => info,
        Err(e) => {
            ws.stop(format!("journal commit failed: {e}"));
            return Err(e.into());
        }
    };
    if info.is_some_and(|i| i.checkpointed_first) {
        let journal = &ws.journal;
        vol.meta.retain_pending(|b| journal.pending(b).is_some());
    }
    Ok(())
}

/// Writes the running transaction to the journal if its oldest operation waited long enough.
pub(crate) fn commit_if_due(vol: &VolumeInner, ws: &mut WriteState) -> Result<()> {
    if ws.running.since.is_some_and(|t| t.elapsed() >= COMMIT_INTERVAL) {
        commit_running(vol, ws)?;
    }
    Ok(())
}

/// Starts the thread that writes the running transaction of a writable volume to the journal
/// once it is [`COMMIT_INTERVAL`] old, as jbd2's commit thread does. It ends soon after the
/// volume is closed or dropped.
pub(crate) fn start_committer(vol: &Arc<VolumeInner>) {
    let weak = Arc::downgrade(vol);
    let stop = Arc::new((parking_lot::Mutex::new(false), parking_lot::Condvar::new()));
    let told = stop.clone();
    let spawned = std::thread::Builder::new().name("ocfs2-commit".into()).spawn(move || loop {
        {
            let (stopped, wake) = &*told;
            let mut stopped = stopped.lock();
            if !*stopped {
                wake.wait_for(&mut stopped, Duration::from_millis(500));
            }
            if *stopped {
                return;
            }
        }
        let Some(vol) = weak.upgrade() else {
            return;
        };
        let Some(w) = vol.write.as_ref() else {
            return;
        };
        let mut ws = w.lock();
        if ws.closed || ws.stopped.is_some() {
            return;
        }
        if let Err(e) = commit_if_due(&vol, &mut ws) {
            log::error!("periodic journal commit failed: {e}");
            return;
        }
    });
    match spawned {
        Ok(thread) => *vol.committer.lock() = Some(Committer { stop, thread }),
        Err(e) => log::warn!(
            "no commit thread ({e}): committed operations reach the journal at sync, close or when the next operation begins"
        ),
    }
}

/// The commit thread of a writable volume, kept so that closing the volume ends it: a library
/// that is unloaded or a program checked for leaks finds no thread left behind.
pub(crate) struct Committer {
    stop: Arc<(parking_lot::Mutex<bool>, parking_lot::Condvar)>,
    thread: std::thread::JoinHandle<()>,
}

impl Committer {
    /// Tells the thread to end and waits for it, unless this is that thread (it drops the
    /// last reference to a volume nobody closed), which then ends when it returns.
    pub(crate) fn stop(self) {
        *self.stop.0.lock() = true;
        self.stop.1.notify_all();
        if self.thread.thread().id() != std::thread::current().id() {
            let _ = self.thread.join();
        }
    }
}

/// Makes everything this node committed durable: the running transaction goes to the journal,
/// and file data written in place reaches stable storage.
pub(crate) fn sync(vol: &VolumeInner) -> Result<()> {
    if let Some(w) = vol.write.as_ref() {
        let mut ws = w.lock();
        commit_running(vol, &mut ws)?;
    }
    vol.meta.device().flush().map_err(Error::Io)
}

/// Runs `op` in a transaction and commits it; when space runs out and the truncate log holds
/// clusters, empties the log and tries once more (`ocfs2_try_to_free_truncate_log`).
pub(crate) fn run<T>(vol: &VolumeInner, mut op: impl FnMut(&mut Tx) -> Result<T>) -> Result<T> {
    let attempt = |op: &mut dyn FnMut(&mut Tx) -> Result<T>| -> Result<T> {
        let mut tx = vol.begin()?;
        let v = op(&mut tx)?;
        tx.commit()?;
        Ok(v)
    };
    match attempt(&mut op) {
        Err(Error::NoSpace(why)) => {
            let slot = vol.write.as_ref().map(|w| w.lock().slot).ok_or(Error::ReadOnly)?;
            let flushed = super::alloc::truncate_log::flush(vol, slot)?;
            // Clusters freed by operations not yet in the journal become usable once they are.
            let waiting = vol.write.as_ref().is_some_and(|w| !w.lock().running.freed_clusters.is_empty());
            if flushed == 0 && !waiting {
                return Err(Error::NoSpace(why));
            }
            if let Some(w) = vol.write.as_ref() {
                commit_running(vol, &mut w.lock())?;
            }
            attempt(&mut op)
        }
        other => other,
    }
}

/// Writes the home copy of a metadata block directly, outside the journal, as the kernel does
/// for the slot map and the journal inode's flags: sealed, written, flushed, and shown to
/// readers. A failure stops the volume.
pub(crate) fn write_direct(
    vol: &VolumeInner,
    ws: &mut WriteState,
    blkno: u64,
    kind: BlockKind,
    mut block: Vec<u8>,
) -> Result<()> {
    ws.check_usable()?;
    if ws.journal.pending(blkno).is_some() || ws.running.blocks.contains_key(&blkno) {
        return Err(Error::corrupt(blkno, "a journaled block must not be written home directly"));
    }
    if vol.metaecc {
        kind.seal(&mut block);
    }
    let dev = vol.meta.device();
    let r = dev.write_at(vol.geo.block_offset(blkno), &block).and_then(|_| dev.flush());
    if let Err(e) = r {
        ws.stop(format!("write of metadata block {blkno} failed: {e}"));
        return Err(Error::Io(e));
    }
    vol.meta.install_written(blkno, block.into());
    vol.write_seq.fetch_add(1, Ordering::AcqRel);
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::super::alloc::{global, local_alloc};
    use super::super::meta::BlockKind;
    use super::super::testkit::Img;
    use super::super::volume::MountOptions;
    use super::Error;
    use crate::format::SystemInode;

    /// Many transactions through a small journal: it checkpoints and wraps several times, and
    /// every read in between sees the newest committed contents.
    #[test]
    fn commits_beyond_the_journal_size_checkpoint_and_stay_readable() {
        let img = Img::tools("tx-wrap", 64, &["-M", "local", "-b", "4096", "-C", "4096", "-N", "1", "-J", "size=4M"]);
        let base = img.bitmap_counts("global_bitmap").1;
        let vol = img.open(MountOptions { local_alloc_mb: Some(0), ..MountOptions::writable() });
        let inner = &*vol.inner;
        let mut held: Vec<(u32, u32)> = Vec::new();
        let mut sequences = Vec::new();
        for i in 0..900u32 {
            let mut tx = inner.begin().unwrap();
            if i % 3 == 2 {
                let (s, n) = held.remove((i as usize * 7) % held.len());
                global::free_clusters(&mut tx, s, n).unwrap();
            } else {
                held.push(global::claim_clusters(&mut tx, 1, 1 + i % 5).unwrap());
            }
            tx.commit().unwrap();
            super::sync(inner).unwrap();
            let tx = inner.begin().unwrap();
            let (used, _) = global::usage(&tx).unwrap();
            let want = base + held.iter().map(|&(_, n)| u64::from(n)).sum::<u64>();
            assert_eq!(u64::from(used), want, "transaction {i}");
            sequences.push(tx.ws.journal.position().tail);
        }
        let tails: std::collections::BTreeSet<u32> = sequences.into_iter().collect();
        assert!(tails.len() > 2, "the log was checkpointed several times: tails {tails:?}");
        assert!(inner.meta.pending_len() < 1024, "the overlay is trimmed at checkpoints");
        let mut tx = inner.begin().unwrap();
        for &(s, n) in &held {
            global::free_clusters(&mut tx, s, n).unwrap();
        }
        tx.commit().unwrap();
        vol.close().unwrap();
        assert_eq!(img.bitmap_counts("global_bitmap").1, base);
        img.assert_clean();
    }

    /// A dropped transaction leaves nothing behind, and a freed cluster is not handed out again
    /// by the transaction that freed it.
    #[test]
    fn dropped_transactions_change_nothing_and_frees_wait_for_commit() {
        let img = Img::tools("tx-drop", 48, &["-M", "local", "-b", "4096", "-C", "4096", "-N", "1"]);
        let vol = img.open(MountOptions { local_alloc_mb: Some(0), ..MountOptions::writable() });
        let inner = &*vol.inner;
        let gb = inner.system_inode(SystemInode::GlobalBitmap, 0).unwrap();
        let before = inner.begin().unwrap().block(gb, BlockKind::Inode).unwrap();
        let mut tx = inner.begin().unwrap();
        let (s, n) = global::claim_clusters(&mut tx, 3, 3).unwrap();
        assert_eq!(n, 3);
        drop(tx);
        assert_eq!(inner.begin().unwrap().block(gb, BlockKind::Inode).unwrap(), before);

        let mut tx = inner.begin().unwrap();
        assert_eq!(global::claim_clusters(&mut tx, 3, 3).unwrap(), (s, 3), "the same run again");
        tx.commit().unwrap();
        let mut tx = inner.begin().unwrap();
        global::free_clusters(&mut tx, s, 3).unwrap();
        let (s2, _) = local_alloc::claim_data(&mut tx, 1).unwrap();
        assert!(!(s..s + 3).contains(&s2), "cluster {s2} was freed by this very transaction");
        tx.commit().unwrap();
        let mut tx = inner.begin().unwrap();
        global::free_clusters(&mut tx, s2, 1).unwrap();
        tx.commit().unwrap();
        vol.close().unwrap();
        img.assert_clean();
    }

    /// After a failed journal write the volume refuses every transaction.
    #[test]
    fn a_failed_commit_stops_the_volume() {
        use crate::device::{FaultDevice, FaultKind, FaultPlan, MemDevice};
        use std::sync::Arc;
        let img = Img::tools("tx-fail", 48, &["-M", "local", "-b", "4096", "-C", "4096", "-N", "1"]);
        let dev =
            Arc::new(FaultDevice::new(MemDevice::from_bytes(std::fs::read(&img.path).unwrap()), FaultPlan::new()));
        let vol = super::super::volume::Volume::open(dev.clone(), MountOptions::writable()).unwrap();
        let writes = dev.writes();
        dev.set_plan(FaultPlan::new().with(FaultKind::FailWrite(writes)));
        let mut tx = vol.inner.begin().unwrap();
        local_alloc::claim_data(&mut tx, 2).unwrap();
        tx.commit().unwrap();
        let err = super::sync(&vol.inner).unwrap_err();
        assert_eq!(err.errno(), 5, "{err}");
        dev.set_plan(FaultPlan::new());
        assert!(matches!(vol.inner.begin().err(), Some(Error::Stopped(_))));
        assert!(!vol.is_writable());
        assert!(matches!(vol.close(), Err(Error::Stopped(_))));
    }
}
