//! Transactions: the only way metadata changes reach the disk.
//!
//! An operation begins a [`Tx`], which holds the volume's write lock for its whole life. It
//! reads metadata through the transaction (its own changes first, then blocks committed to the
//! journal but not yet home, then the cache and the device), changes copies of the blocks, and
//! commits. Commit seals every changed block with metaecc (when the volume has it), flushes the
//! file data the operation wrote (ordered mode: data is durable before the metadata that points
//! at it), logs all blocks in one journal transaction, and only then shows the new contents to
//! readers. Dropping a transaction without committing discards its metadata changes.
//!
//! Invariants:
//! - Nothing but the journal writes a block a transaction changed; home blocks are written by
//!   the journal's checkpoint.
//! - A failed journal write stops the volume: every later transaction is refused
//!   ([`Error::Stopped`]) until the volume is opened again.
//! - Clusters freed in a transaction are not handed out again by the same transaction, so that
//!   data written into them before the commit cannot land in blocks that the last committed
//!   metadata still points at.

use super::alloc::AllocState;
use super::error::{Error, Result};
use super::meta::BlockKind;
use super::volume::VolumeInner;
use crate::device::BlockDevice;
use crate::format::dinode::Dinode;
use crate::journal::{Journal, JournalError};
use parking_lot::MutexGuard;
use std::collections::{BTreeMap, BTreeSet};
use std::sync::atomic::Ordering;
use std::sync::Arc;

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
        let ws = w.lock();
        ws.check_usable()?;
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
        let blocks = (data.len() as u64).div_ceil(u64::from(self.vol.geo.block_size));
        self.vol.meta.check_range(blkno, blocks)?;
        // A block the journal still holds would be overwritten again by the next checkpoint;
        // freeing journaled metadata must revoke it, and the revoke must commit first.
        if let Some(b) = (blkno..blkno + blocks).find(|&b| self.ws.journal.pending(b).is_some()) {
            return Err(Error::corrupt(b, "file data written over a block the journal still holds"));
        }
        self.data_written = true;
        self.vol.meta.device().write_at(self.vol.geo.block_offset(blkno), data)?;
        // A cached metadata copy of these blocks (from their life before they were freed) is
        // stale now.
        for b in blkno..blkno + blocks {
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

    /// True if `cluster` was freed by this transaction.
    pub fn cluster_freed_here(&self, cluster: u32) -> bool {
        self.freed_clusters.iter().any(|&(s, n)| cluster >= s && cluster - s < n)
    }

    /// True if the transaction freed any clusters (searches then check each candidate).
    pub fn has_freed_clusters(&self) -> bool {
        !self.freed_clusters.is_empty()
    }

    /// Metadata blocks changed so far.
    #[cfg(test)]
    pub fn changed_blocks(&self) -> usize {
        self.blocks.len()
    }

    /// Makes the transaction durable and visible. See the module documentation.
    pub fn commit(mut self) -> Result<()> {
        self.ws.check_usable()?;
        let vol = self.vol;
        if self.data_written {
            if let Err(e) = vol.meta.device().flush() {
                return Err(Error::Io(e));
            }
        }
        if self.blocks.is_empty() && self.revoked.is_empty() {
            return Ok(());
        }
        let blocks = std::mem::take(&mut self.blocks);
        let revoked = std::mem::take(&mut self.revoked);
        let mut jtx = self.ws.journal.begin();
        let mut sealed = Vec::with_capacity(blocks.len());
        for (blkno, mut b) in blocks {
            if vol.metaecc {
                b.kind.seal(&mut b.data);
            }
            jtx.log(blkno, &b.data)?;
            sealed.push((blkno, b.data));
        }
        for &blkno in &revoked {
            jtx.revoke(blkno);
        }
        let info = match self.ws.journal.commit(jtx) {
            Ok(info) => info,
            Err(e) => {
                if matches!(e, JournalError::Device(_) | JournalError::Aborted(_))
                    || self.ws.journal.failure().is_some()
                {
                    self.ws.stop(format!("journal commit failed: {e}"));
                }
                return Err(e.into());
            }
        };
        for (blkno, data) in sealed {
            vol.meta.install_committed(blkno, data.into());
        }
        for blkno in revoked {
            vol.meta.forget(blkno);
        }
        if info.is_some_and(|i| i.checkpointed_first) {
            let journal = &self.ws.journal;
            vol.meta.retain_pending(|b| journal.pending(b).is_some());
        }
        vol.write_seq.fetch_add(1, Ordering::AcqRel);
        Ok(())
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
    if ws.journal.pending(blkno).is_some() {
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
    use super::super::volume::OpenOptions;
    use super::Error;
    use crate::format::SystemInode;

    /// Many transactions through a small journal: it checkpoints and wraps several times, and
    /// every read in between sees the newest committed contents.
    #[test]
    fn commits_beyond_the_journal_size_checkpoint_and_stay_readable() {
        let img = Img::tools("tx-wrap", 64, &["-M", "local", "-b", "4096", "-C", "4096", "-N", "1", "-J", "size=4M"]);
        let base = img.bitmap_counts("global_bitmap").1;
        let vol = img.open(OpenOptions { local_alloc_mb: Some(0), ..OpenOptions::writable() });
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
        let vol = img.open(OpenOptions { local_alloc_mb: Some(0), ..OpenOptions::writable() });
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
        let vol = super::super::volume::Volume::open(dev.clone(), OpenOptions::writable()).unwrap();
        let writes = dev.writes();
        dev.set_plan(FaultPlan::new().with(FaultKind::FailWrite(writes)));
        let mut tx = vol.inner.begin().unwrap();
        local_alloc::claim_data(&mut tx, 2).unwrap();
        let err = tx.commit().unwrap_err();
        assert_eq!(err.errno(), 5, "{err}");
        dev.set_plan(FaultPlan::new());
        assert!(matches!(vol.inner.begin().err(), Some(Error::Stopped(_))));
        assert!(!vol.is_writable());
        assert!(matches!(vol.close(), Err(Error::Stopped(_))));
    }
}
