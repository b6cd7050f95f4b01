//! The truncate log (`truncate_log:NNNN`): clusters freed by truncation are recorded here
//! first, in the transaction that stops the file from using them, and reach the global bitmap
//! later, one record per transaction (`ocfs2_replay_truncate_records`), when the log is full,
//! when space runs out, at close, and when a slot is recovered after a crash.
//!
//! fsck.ocfs2 counts clusters in a truncate log as in use, so the volume is consistent at every
//! step. A record whose start is 0 is skipped as the kernel skips it.

use super::super::error::{Error, Result};
use super::super::tx::Tx;
use super::super::volume::VolumeInner;
use super::global;
use crate::format::dinode::DINODE_ID2_OFFSET;
use crate::format::truncate_log::{TruncateLog, TruncateRec};
use crate::format::{SystemInode, DEALLOC_FL};

fn load(tx: &Tx, slot: u16) -> Result<(u64, TruncateLog)> {
    let ino = tx.vol.system_inode(SystemInode::TruncateLog, slot)?;
    let di = tx.dinode(ino)?;
    if di.i_flags & DEALLOC_FL == 0 {
        return Err(Error::corrupt(ino, "truncate log inode lacks OCFS2_DEALLOC_FL"));
    }
    let block = tx.block(ino, super::super::meta::BlockKind::Inode)?;
    let tl = TruncateLog::decode(&block[DINODE_ID2_OFFSET..]).map_err(|e| Error::format(ino, e))?;
    Ok((ino, tl))
}

fn store(tx: &mut Tx, ino: u64, tl: &TruncateLog) -> Result<()> {
    tx.update_dinode(ino, |_, block| tl.encode(&mut block[DINODE_ID2_OFFSET..]).map_err(|e| Error::format(ino, e)))
}

/// Records clusters `start .. start + count` as freed in this node's truncate log, merging
/// with the last record when they follow it. Fails with [`Error::NoSpace`] when the log is
/// full: callers make room with [`make_room`] before they begin their transaction.
pub(crate) fn append(tx: &mut Tx, start: u32, count: u32) -> Result<()> {
    if count == 0 {
        return Ok(());
    }
    if start == 0 || u64::from(start) + u64::from(count) > u64::from(tx.vol.geo.clusters) {
        return Err(Error::InvalidArgument(format!("clusters {start}+{count} cannot be freed")));
    }
    let slot = tx.ws.slot;
    let (ino, mut tl) = load(tx, slot)?;
    match tl.tl_recs.last_mut() {
        Some(last) if u64::from(last.t_start) + u64::from(last.t_clusters) == u64::from(start) => {
            last.t_clusters = last
                .t_clusters
                .checked_add(count)
                .ok_or_else(|| Error::corrupt(ino, "truncate log record overflows"))?;
        }
        _ => {
            if tl.is_full() {
                return Err(Error::NoSpace("the truncate log is full".into()));
            }
            tl.tl_recs.push(TruncateRec { t_start: start, t_clusters: count });
            tl.tl_used += 1;
        }
    }
    store(tx, ino, &tl)
}

/// (records used, record slots) of `slot`'s truncate log.
pub(crate) fn usage(tx: &Tx, slot: u16) -> Result<(u16, u16)> {
    let (_, tl) = load(tx, slot)?;
    Ok((tl.tl_used, tl.tl_count))
}

/// Frees the last record of `slot`'s log into the global bitmap, in this transaction.
/// Returns false when the log was empty.
fn flush_one(tx: &mut Tx, slot: u16) -> Result<bool> {
    let (ino, mut tl) = load(tx, slot)?;
    let Some(rec) = tl.tl_recs.pop() else {
        return Ok(false);
    };
    tl.tl_used -= 1;
    store(tx, ino, &tl)?;
    if rec.t_start != 0 {
        global::free_clusters(tx, rec.t_start, rec.t_clusters)?;
    }
    Ok(true)
}

/// Moves every record of `slot`'s truncate log into the global bitmap, one transaction per
/// record. Returns the records flushed.
pub(crate) fn flush(vol: &VolumeInner, slot: u16) -> Result<u32> {
    let mut n = 0;
    loop {
        let mut tx = vol.begin()?;
        if !flush_one(&mut tx, slot)? {
            return Ok(n);
        }
        tx.commit()?;
        n += 1;
    }
}

/// Flushes this node's truncate log unless at least `records` more records fit.
pub(crate) fn make_room(vol: &VolumeInner, records: u16) -> Result<()> {
    let tx = vol.begin()?;
    let slot = tx.ws.slot;
    let (used, count) = usage(&tx, slot)?;
    drop(tx);
    if count.saturating_sub(used) < records.max(1) {
        flush(vol, slot)?;
    }
    Ok(())
}
