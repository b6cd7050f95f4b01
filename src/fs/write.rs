//! Changing file contents: writes at any offset, truncate, hole punching, preallocation, and
//! inline data with its conversion to extents.
//!
//! Rules kept, as the kernel keeps them (`fs/ocfs2/aops.c`, `file.c`):
//! - A new cluster is written in full before the transaction that maps it commits: the bytes
//!   the caller gave, zeros around them (ordered mode; a crash never shows stale data). The same
//!   holds for the first write into an unwritten extent, which then becomes written.
//! - Bytes past `i_size` inside an allocated cluster may hold anything; whatever moves `i_size`
//!   up first zeroes them from the old size, as `ocfs2_zero_tail` does.
//! - An empty regular file on a volume with inline data takes its first write inline when it
//!   fits (`ocfs2_try_to_write_inline_data`); it moves into a cluster when it outgrows the inode.
//! - Without sparse allocation every cluster below `i_size` is allocated, so extending a file
//!   allocates zeroed clusters up to its new end.
//! - A shrinking file gives its clusters to the truncate log, from the end, a bounded number of
//!   records per transaction. On sparse volumes `i_size` moves after the clusters are gone (a
//!   crash in between leaves a hole, not clusters past the end, which fsck.ocfs2 would flag); on
//!   others it moves first (holes are not allowed there).
//! - Each operation holds the inode's lock exclusively, so readers never see half a write.

use super::alloc::{local_alloc, truncate_log};
use super::dirwrite::now;
use super::error::{Error, Result};
use super::extent_tree::{Run, Tree};
use super::lock::{LockLevel, LockName};
use super::tx::{run, Tx};
use super::volume::{Volume, VolumeInner};
use crate::format::dinode::{Dinode, DINODE_ID2_OFFSET};
use crate::format::extent::{extent_recs_per_inode_with_xattr, ExtentList};
use crate::format::inline::{max_inline_data_with_xattr, InlineData};
use crate::format::{
    EXT_UNWRITTEN, FEATURE_INCOMPAT_INLINE_DATA, FEATURE_INCOMPAT_SPARSE_ALLOC, FEATURE_RO_COMPAT_UNWRITTEN,
    INLINE_DATA_FL,
};

/// File data one transaction of a long write allocates at most.
const TX_DATA_BYTES: u64 = 64 << 20;
/// Truncate log records one shrinking transaction may add.
const TX_FREE_RUNS: usize = 64;
/// Largest zero buffer written at once.
const ZERO_CHUNK: usize = 1 << 20;

/// Volume features that decide how data is laid out.
#[derive(Debug, Clone, Copy)]
struct Features {
    sparse: bool,
    unwritten: bool,
    inline: bool,
}

fn features(vol: &VolumeInner) -> Features {
    Features {
        sparse: vol.sb.s_feature_incompat & FEATURE_INCOMPAT_SPARSE_ALLOC != 0,
        unwritten: vol.sb.s_feature_ro_compat & FEATURE_RO_COMPAT_UNWRITTEN != 0,
        inline: vol.sb.s_feature_incompat & FEATURE_INCOMPAT_INLINE_DATA != 0,
    }
}

/// The largest file the volume can address: 2^32 clusters.
fn max_file_size(vol: &VolumeInner) -> u64 {
    (u64::from(u32::MAX) << vol.geo.cluster_bits).min(i64::MAX as u64)
}

fn check_range(vol: &VolumeInner, ino: u64, offset: u64, len: u64) -> Result<u64> {
    offset
        .checked_add(len)
        .filter(|&end| end <= max_file_size(vol))
        .ok_or_else(|| Error::FileTooLarge(format!("offset {offset} + {len} of inode {ino}")))
}

/// Checks that `di` is a regular file whose data this module may change.
fn regular(di: &Dinode) -> Result<()> {
    if di.is_dir() {
        return Err(Error::IsDir(format!("inode {}", di.i_blkno)));
    }
    if !di.is_reg() {
        return Err(Error::InvalidArgument(format!("inode {} is not a regular file", di.i_blkno)));
    }
    if di.has_refcount() {
        return Err(Error::Unsupported(format!("writing reflinked inode {}", di.i_blkno)));
    }
    Ok(())
}

/// Inline data capacity of `di`'s inode.
fn inline_capacity(vol: &VolumeInner, di: &Dinode) -> u64 {
    u64::from(max_inline_data_with_xattr(vol.geo.block_size as usize, di.inline_xattr_size()))
}

fn cluster_bytes(vol: &VolumeInner) -> u64 {
    u64::from(vol.geo.cluster_size)
}

/// Logical cluster of byte `pos`.
fn cpos_of(vol: &VolumeInner, pos: u64) -> u32 {
    (pos >> vol.geo.cluster_bits) as u32
}

/// Writes `len` zero bytes at device byte `pos`.
fn write_zeros(tx: &mut Tx, pos: u64, len: u64, ordered: bool) -> Result<()> {
    let zeros = vec![0u8; (len as usize).min(ZERO_CHUNK)];
    let mut done = 0u64;
    while done < len {
        let n = (len - done).min(zeros.len() as u64) as usize;
        tx.write_data_at(pos + done, &zeros[..n], ordered)?;
        done += n as u64;
    }
    Ok(())
}

/// Writes the part of `data` (which starts at file byte `offset`) that falls in the clusters of
/// `run`; with `fill`, the rest of those clusters gets zeros.
fn write_run(tx: &mut Tx, run: &Run, offset: u64, data: &[u8], fill: bool, ordered: bool) -> Result<()> {
    let vol = tx.vol;
    let cs = cluster_bytes(vol);
    let run_start = u64::from(run.cpos) * cs;
    let run_end = run_start + u64::from(run.clusters) * cs;
    let end = offset + data.len() as u64;
    let (ds, de) = (offset.max(run_start), end.min(run_end));
    let base = vol.geo.block_offset(run.blkno);
    if fill && ds > run_start {
        write_zeros(tx, base, ds.min(run_end) - run_start, ordered)?;
    }
    if ds < de {
        tx.write_data_at(base + (ds - run_start), &data[(ds - offset) as usize..(de - offset) as usize], ordered)?;
    }
    if fill && de < run_end {
        let from = de.max(run_start);
        write_zeros(tx, base + (from - run_start), run_end - from, ordered)?;
    }
    Ok(())
}

/// Zeroes file bytes `[from, to)` where they are mapped to written clusters.
fn zero_mapped(tx: &mut Tx, tree: &Tree, from: u64, to: u64) -> Result<()> {
    if from >= to {
        return Ok(());
    }
    let vol = tx.vol;
    let cs = cluster_bytes(vol);
    let first = cpos_of(vol, from);
    let last = cpos_of(vol, to - 1);
    for run in tree.runs_in(first, last - first + 1) {
        if run.flags & EXT_UNWRITTEN != 0 {
            continue;
        }
        let run_start = u64::from(run.cpos) * cs;
        let run_end = run_start + u64::from(run.clusters) * cs;
        let (a, b) = (from.max(run_start), to.min(run_end));
        if a < b {
            write_zeros(tx, vol.geo.block_offset(run.blkno) + (a - run_start), b - a, true)?;
        }
    }
    Ok(())
}

/// Maps every hole of `[first, first + count)` to new clusters, written with the bytes of
/// `data` (at file byte `offset`) and zeros, or left unwritten with `unwritten`. Mapped runs
/// that are unwritten get the data and become written, unless `unwritten`; written runs get
/// their part of `data` in place.
fn fill_range(
    tx: &mut Tx,
    tree: &mut Tree,
    first: u32,
    count: u32,
    offset: u64,
    data: &[u8],
    unwritten: bool,
) -> Result<()> {
    let end = u64::from(first) + u64::from(count);
    let mut c = u64::from(first);
    while c < end {
        let cpos = c as u32;
        let left = (end - c) as u32;
        let next = tree.runs_in(cpos, left).into_iter().next();
        match next {
            Some(run) if run.cpos == cpos => {
                if run.flags & EXT_UNWRITTEN != 0 && !unwritten {
                    write_run(tx, &run, offset, data, true, true)?;
                    tree.set_range(run.cpos, run.clusters, Some((run.blkno, run.flags & !EXT_UNWRITTEN)))?;
                } else if !unwritten {
                    write_run(tx, &run, offset, data, false, false)?;
                }
                c += u64::from(run.clusters);
            }
            other => {
                let hole_end = other.map_or(end, |r| u64::from(r.cpos));
                let want = (hole_end - c) as u32;
                let (cluster, got) = local_alloc::claim_data(tx, want)?;
                let blkno = tx.vol.geo.cluster_to_block(u64::from(cluster));
                let flags = if unwritten { EXT_UNWRITTEN } else { 0 };
                let run = Run { cpos, clusters: got, blkno, flags };
                if !unwritten {
                    write_run(tx, &run, offset, data, true, true)?;
                }
                tree.set_range(cpos, got, Some((blkno, flags)))?;
                c += u64::from(got);
            }
        }
    }
    Ok(())
}

/// Moves an inline file's bytes into a cluster and gives it an extent list
/// (`ocfs2_convert_inline_data_to_extents`).
fn uninline(tx: &mut Tx, ino: u64) -> Result<()> {
    let vol = tx.vol;
    let bs = vol.geo.block_size as usize;
    let di = tx.dinode(ino)?;
    let block = tx.block(ino, super::meta::BlockKind::Inode)?;
    let inline = InlineData::decode(&block[DINODE_ID2_OFFSET..]).map_err(|e| Error::format(ino, e))?;
    let size = (di.i_size as usize).min(inline.data.len());
    let bytes = inline.data[..size].to_vec();
    let count = extent_recs_per_inode_with_xattr(bs, di.inline_xattr_size());
    let id2_end = bs - usize::from(di.inline_xattr_size());
    tx.update_dinode(ino, |d, block| {
        d.i_dyn_features &= !INLINE_DATA_FL;
        block[DINODE_ID2_OFFSET..id2_end].fill(0);
        ExtentList::new(count).encode(&mut block[DINODE_ID2_OFFSET..id2_end]).map_err(|e| Error::format(ino, e))
    })?;
    if !bytes.is_empty() {
        let mut tree = Tree::load(tx, ino)?;
        fill_range(tx, &mut tree, 0, 1, 0, &bytes, false)?;
        tree.store(tx)?;
    }
    Ok(())
}

/// Makes an empty extent-mapped file inline.
fn make_inline(tx: &mut Tx, ino: u64, capacity: u64) -> Result<()> {
    let bs = tx.vol.geo.block_size as usize;
    tx.update_dinode(ino, |d, block| {
        let id2_end = bs - usize::from(d.inline_xattr_size());
        d.i_dyn_features |= INLINE_DATA_FL;
        block[DINODE_ID2_OFFSET..id2_end].fill(0);
        InlineData::new(capacity as u16)
            .encode(&mut block[DINODE_ID2_OFFSET..id2_end])
            .map_err(|e| Error::format(ino, e))
    })
}

/// Changes bytes `[offset, offset + data.len())` of an inline file and its size to at least
/// the end of them (or exactly `new_size` when given).
fn write_inline(tx: &mut Tx, ino: u64, offset: u64, data: &[u8], new_size: Option<u64>) -> Result<()> {
    let (secs, nsecs) = now();
    tx.update_dinode(ino, |d, block| {
        let mut inline = InlineData::decode(&block[DINODE_ID2_OFFSET..]).map_err(|e| Error::format(ino, e))?;
        let old = (d.i_size as usize).min(inline.data.len());
        let end = offset as usize + data.len();
        let size = new_size.map_or(end.max(old), |s| s as usize);
        if size > inline.data.len() || end > inline.data.len() {
            return Err(Error::corrupt(ino, "inline write past the inline capacity"));
        }
        // Bytes between the old end and the new one read as zeros.
        if size > old {
            inline.data[old..size].fill(0);
        }
        inline.data[offset as usize..end].copy_from_slice(data);
        if size < old {
            inline.data[size..old].fill(0);
        }
        inline.encode(&mut block[DINODE_ID2_OFFSET..]).map_err(|e| Error::format(ino, e))?;
        d.i_size = size as u64;
        (d.i_mtime, d.i_mtime_nsec, d.i_ctime, d.i_ctime_nsec) = (secs, nsecs, secs, nsecs);
        Ok(())
    })
}

/// Sets `i_size` and the modification times.
fn set_size(tx: &mut Tx, ino: u64, size: u64) -> Result<()> {
    let (secs, nsecs) = now();
    tx.update_dinode(ino, |d, _| {
        d.i_size = size;
        (d.i_mtime, d.i_mtime_nsec, d.i_ctime, d.i_ctime_nsec) = (secs, nsecs, secs, nsecs);
        Ok(())
    })
}

/// One transaction's share of a write: `data` at `offset`. Returns the bytes written.
fn write_step(tx: &mut Tx, ino: u64, offset: u64, data: &[u8]) -> Result<()> {
    let vol = tx.vol;
    let f = features(vol);
    let di = tx.dinode(ino)?;
    regular(&di)?;
    let end = offset + data.len() as u64;
    let cap = inline_capacity(vol, &di);
    if di.has_inline_data() {
        if end <= cap {
            return write_inline(tx, ino, offset, data, None);
        }
        uninline(tx, ino)?;
    } else if f.inline && di.i_size == 0 && di.i_clusters == 0 && end <= cap && Tree::load(tx, ino)?.end() == 0 {
        make_inline(tx, ino, cap)?;
        return write_inline(tx, ino, offset, data, None);
    }
    let di = tx.dinode(ino)?;
    let old_size = di.i_size;
    let mut tree = Tree::load(tx, ino)?;
    if offset > old_size {
        extend_to(tx, &mut tree, old_size, offset, f)?;
    }
    let first = cpos_of(vol, offset);
    let last = cpos_of(vol, end - 1);
    fill_range(tx, &mut tree, first, last - first + 1, offset, data, false)?;
    tree.store(tx)?;
    set_size(tx, ino, old_size.max(end))
}

/// Prepares the bytes `[old_size, new_size)` to read as zeros before `i_size` grows over them:
/// zeroes the old tail, and without sparse allocation maps zeroed clusters up to `new_size`.
fn extend_to(tx: &mut Tx, tree: &mut Tree, old_size: u64, new_size: u64, f: Features) -> Result<()> {
    let vol = tx.vol;
    let cs = cluster_bytes(vol);
    let tail_end = old_size.div_ceil(cs) * cs;
    zero_mapped(tx, tree, old_size, tail_end.min(new_size))?;
    if !f.sparse && new_size > tail_end {
        let first = cpos_of(vol, tail_end);
        let count = new_size.div_ceil(cs) - tail_end / cs;
        fill_range(tx, tree, first, count as u32, tail_end, &[], false)?;
    }
    Ok(())
}

impl Volume {
    /// Writes `data` into file `ino` at byte `offset`, allocating what it needs; returns the
    /// bytes written (all of them, or an error).
    pub fn write(&self, ino: u64, offset: u64, data: &[u8]) -> Result<usize> {
        let inner = &*self.inner;
        check_range(inner, ino, offset, data.len() as u64)?;
        let _grant = inner.locks.lock(LockName::Meta { blkno: ino }, LockLevel::Exclusive)?;
        self.write_locked(ino, offset, data)
    }

    /// Writes `data` at the end of file `ino` (`O_APPEND`): no other write of this node lands
    /// between finding the end and writing there. Returns where the data went.
    pub fn append(&self, ino: u64, data: &[u8]) -> Result<u64> {
        let inner = &*self.inner;
        let _grant = inner.locks.lock(LockName::Meta { blkno: ino }, LockLevel::Exclusive)?;
        let offset = run(inner, |tx| {
            let di = tx.dinode(ino)?;
            regular(&di)?;
            Ok(di.i_size)
        })?;
        check_range(inner, ino, offset, data.len() as u64)?;
        self.write_locked(ino, offset, data)?;
        Ok(offset)
    }

    /// [`Volume::write`] for a caller that holds the inode's lock.
    fn write_locked(&self, ino: u64, offset: u64, data: &[u8]) -> Result<usize> {
        let inner = &*self.inner;
        if data.is_empty() {
            run(inner, |tx| regular(&tx.dinode(ino)?))?;
            return Ok(0);
        }
        let mut done = 0usize;
        while done < data.len() {
            // Steps end on cluster boundaries so that each maps whole clusters.
            let pos = offset + done as u64;
            let cs = cluster_bytes(inner);
            let step_end = ((pos + TX_DATA_BYTES) / cs * cs).max(pos + 1).min(offset + data.len() as u64);
            let chunk = &data[done..(step_end - offset) as usize];
            run(inner, |tx| write_step(tx, ino, pos, chunk))?;
            done += chunk.len();
        }
        Ok(done)
    }

    /// Sets the size of file `ino`: a shorter file loses its clusters past the end, a longer
    /// one reads zeros up to the new end.
    pub fn truncate(&self, ino: u64, size: u64) -> Result<()> {
        let inner = &*self.inner;
        check_range(inner, ino, size, 0)?;
        let _grant = inner.locks.lock(LockName::Meta { blkno: ino }, LockLevel::Exclusive)?;
        let f = features(inner);
        let di = run(inner, |tx| {
            let di = tx.dinode(ino)?;
            regular(&di)?;
            Ok(di)
        })?;
        if di.has_inline_data() {
            if size <= inline_capacity(inner, &di) {
                return run(inner, |tx| write_inline(tx, ino, size.min(di.i_size), &[], Some(size)));
            }
            run(inner, |tx| uninline(tx, ino))?;
        }
        let old_size = di.i_size;
        if size >= old_size {
            return self.grow(ino, old_size, size, f);
        }
        if !f.sparse {
            run(inner, |tx| {
                let tree = Tree::load(tx, ino)?;
                zero_mapped(tx, &tree, size, size.div_ceil(cluster_bytes(inner)) * cluster_bytes(inner))?;
                set_size(tx, ino, size)
            })?;
        }
        let keep = size.div_ceil(cluster_bytes(inner));
        let keep = u32::try_from(keep).map_err(|_| Error::FileTooLarge(format!("size {size}")))?;
        self.unmap_from_end(ino, keep, u32::MAX)?;
        if f.sparse {
            run(inner, |tx| {
                let tree = Tree::load(tx, ino)?;
                zero_mapped(tx, &tree, size, u64::from(keep) * cluster_bytes(inner))?;
                set_size(tx, ino, size)
            })?;
        }
        Ok(())
    }

    fn grow(&self, ino: u64, old_size: u64, size: u64, f: Features) -> Result<()> {
        let inner = &*self.inner;
        let cs = cluster_bytes(inner);
        let mut at = old_size;
        loop {
            let step_end = if f.sparse { size } else { ((at + TX_DATA_BYTES) / cs * cs).max(at).min(size) };
            run(inner, |tx| {
                let mut tree = Tree::load(tx, ino)?;
                extend_to(tx, &mut tree, at, step_end, f)?;
                tree.store(tx)?;
                set_size(tx, ino, step_end)
            })?;
            if step_end >= size {
                return Ok(());
            }
            at = step_end;
        }
    }

    /// Unmaps logical clusters `[first, first + count)` of `ino` into the truncate log, from
    /// the end, a bounded number of records per transaction.
    fn unmap_from_end(&self, ino: u64, first: u32, count: u32) -> Result<()> {
        let inner = &*self.inner;
        let end = u64::from(first) + u64::from(count);
        let capacity = {
            let tx = inner.begin()?;
            let slot = tx.ws.slot;
            truncate_log::usage(&tx, slot)?.1
        };
        let batch = usize::from(capacity).clamp(1, TX_FREE_RUNS);
        loop {
            truncate_log::make_room(inner, batch as u16)?;
            let more = run(inner, |tx| {
                let mut tree = Tree::load(tx, ino)?;
                let limit = (end.min(u64::from(u32::MAX)) - u64::from(first)) as u32;
                let runs = tree.runs_in(first, limit);
                if runs.is_empty() {
                    return Ok(false);
                }
                let from = runs[runs.len().saturating_sub(batch)].cpos;
                let removed = tree.set_range(from, (end.min(u64::from(u32::MAX)) - u64::from(from)) as u32, None)?;
                free_runs(tx, &removed)?;
                tree.store(tx)?;
                Ok(runs.len() > batch)
            })?;
            if !more {
                return Ok(());
            }
        }
    }

    /// Deallocates bytes `[offset, offset + len)` of file `ino`: they read as zeros afterwards
    /// and whole clusters among them are freed. The size does not change.
    pub fn punch_hole(&self, ino: u64, offset: u64, len: u64) -> Result<()> {
        let inner = &*self.inner;
        let end = check_range(inner, ino, offset, len)?;
        if !features(inner).sparse {
            return Err(Error::Unsupported("punching holes needs the sparse feature".into()));
        }
        let _grant = inner.locks.lock(LockName::Meta { blkno: ino }, LockLevel::Exclusive)?;
        let di = run(inner, |tx| {
            let di = tx.dinode(ino)?;
            regular(&di)?;
            Ok(di)
        })?;
        let end = end.min(di.i_size);
        if offset >= end {
            return Ok(());
        }
        if di.has_inline_data() {
            let zeros = vec![0u8; (end - offset) as usize];
            return run(inner, |tx| write_inline(tx, ino, offset, &zeros, Some(di.i_size)));
        }
        let cs = cluster_bytes(inner);
        let (first_full, end_full) = (offset.div_ceil(cs), end / cs);
        run(inner, |tx| {
            let tree = Tree::load(tx, ino)?;
            zero_mapped(tx, &tree, offset, end.min(first_full * cs))?;
            zero_mapped(tx, &tree, (end_full * cs).max(offset), end)?;
            let (secs, nsecs) = now();
            tx.update_dinode(ino, |d, _| {
                (d.i_mtime, d.i_mtime_nsec, d.i_ctime, d.i_ctime_nsec) = (secs, nsecs, secs, nsecs);
                Ok(())
            })
        })?;
        if end_full > first_full {
            self.unmap_from_end(ino, first_full as u32, (end_full - first_full) as u32)?;
        }
        Ok(())
    }

    /// Allocates clusters for bytes `[offset, offset + len)` of file `ino` as unwritten extents
    /// (they read as zeros); the size grows to the end of the range unless `keep_size`.
    pub fn fallocate(&self, ino: u64, offset: u64, len: u64, keep_size: bool) -> Result<()> {
        let inner = &*self.inner;
        let end = check_range(inner, ino, offset, len)?;
        let f = features(inner);
        if !f.unwritten || !f.sparse {
            return Err(Error::Unsupported("preallocation needs the unwritten and sparse features".into()));
        }
        if len == 0 {
            return Err(Error::InvalidArgument("preallocation of 0 bytes".into()));
        }
        let _grant = inner.locks.lock(LockName::Meta { blkno: ino }, LockLevel::Exclusive)?;
        let cs = cluster_bytes(inner);
        let mut at = offset;
        while at < end {
            let step_end = ((at + TX_DATA_BYTES * 16) / cs * cs).max(at + 1).min(end);
            run(inner, |tx| {
                let di = tx.dinode(ino)?;
                regular(&di)?;
                if di.has_inline_data() {
                    if keep_size && end <= inline_capacity(inner, &di) {
                        return Ok(());
                    }
                    uninline(tx, ino)?;
                }
                let mut tree = Tree::load(tx, ino)?;
                let first = cpos_of(inner, at);
                let last = cpos_of(inner, step_end - 1);
                fill_range(tx, &mut tree, first, last - first + 1, at, &[], true)?;
                let old_size = tx.dinode(ino)?.i_size;
                if !keep_size && step_end > old_size {
                    extend_to(tx, &mut tree, old_size, step_end, f)?;
                    tree.store(tx)?;
                    return set_size(tx, ino, step_end);
                }
                tree.store(tx)
            })?;
            at = step_end;
        }
        Ok(())
    }

    /// Makes bytes `[offset, offset + len)` of file `ino` read as zeros (`FALLOC_FL_ZERO_RANGE`);
    /// the size grows to the end of the range unless `keep_size`. With unwritten extents the
    /// range is deallocated and preallocated again; without them zeros are written.
    pub fn zero_range(&self, ino: u64, offset: u64, len: u64, keep_size: bool) -> Result<()> {
        let inner = &*self.inner;
        let end = check_range(inner, ino, offset, len)?;
        if len == 0 {
            return Err(Error::InvalidArgument("zeroing 0 bytes".into()));
        }
        let f = features(inner);
        let size = self.metadata(ino)?.size;
        // Past the end with keep_size nothing needs zeroing, so nothing is allocated there.
        let end = if keep_size { end.min(size) } else { end };
        if end <= offset {
            return Ok(());
        }
        if f.sparse && f.unwritten {
            self.punch_hole(ino, offset, end - offset)?;
            return self.fallocate(ino, offset, end - offset, keep_size);
        }
        let zeros = vec![0u8; ZERO_CHUNK.min(end.saturating_sub(offset) as usize)];
        let mut at = offset;
        while at < end {
            let n = zeros.len().min((end - at) as usize);
            self.write(ino, at, &zeros[..n])?;
            at += n as u64;
        }
        Ok(())
    }

    /// Makes the data and metadata of file `ino` durable (fdatasync): everything this node
    /// committed goes to the journal and the device flushes its cache.
    pub fn sync_data(&self, ino: u64) -> Result<()> {
        self.inode(ino)?;
        super::tx::sync(&self.inner)
    }

    /// Makes file `ino` durable with all its metadata (fsync). The journal holds every change in
    /// order, so this is [`Volume::sync_data`].
    pub fn sync_all(&self, ino: u64) -> Result<()> {
        self.sync_data(ino)
    }

    /// Makes everything committed so far durable (syncfs).
    pub fn sync(&self) -> Result<()> {
        super::tx::sync(&self.inner)
    }
}

/// Gives the clusters of `runs` to the truncate log.
fn free_runs(tx: &mut Tx, runs: &[Run]) -> Result<()> {
    let geo = tx.vol.geo;
    for run in runs {
        if run.flags & crate::format::EXT_REFCOUNTED != 0 {
            return Err(Error::Unsupported("freeing shared clusters".into()));
        }
        let cluster = u32::try_from(run.blkno >> (geo.cluster_bits - geo.block_bits))
            .map_err(|_| Error::corrupt(run.blkno, "extent past the volume"))?;
        truncate_log::append(tx, cluster, run.clusters)?;
    }
    Ok(())
}
