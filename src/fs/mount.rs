//! Opening a volume for writing and closing it, as the kernel's mount and unmount do.
//!
//! Open: refuse what cannot be written safely; take a slot in the slot map (the one already
//! holding this node's number, else the preferred or first empty one) and write the map; open
//! the slot's journal, replay it if the last user crashed and mark it recovered; mark the
//! journal in use (`OCFS2_JOURNAL_DIRTY_FL`); then, through transactions, return the slot's
//! local alloc window and empty its truncate log. On a local volume every other slot whose
//! journal is dirty is recovered the same way and its slot freed.
//!
//! Close: return the window, empty the truncate log, checkpoint the journal, clear the dirty
//! flag, and only then free the slot, so a crash at any point leaves either a clean volume or
//! one the next open (ours, the kernel's, or fsck.ocfs2's) recovers.
//!
//! This node is node 0 on local volumes (as the kernel's local mount is) and, until the
//! cluster stack exists, on cluster volumes too; a cluster volume whose slot map shows another
//! node is refused, since that node may be alive.

use super::alloc::{local_alloc, truncate_log, AllocState};
use super::error::{Error, Result};
use super::extent_map::{map_cluster, Mapping};
use super::meta::BlockKind;
use super::tx::{write_direct, WriteState};
use super::volume::{MountOptions, VolumeInner};
use crate::format::bytes::put_le32;
use crate::format::dinode::{Dinode, DINODE_ID2_OFFSET};
use crate::format::extent::ExtentList;
use crate::format::local_alloc::LaGeometry;
use crate::format::slot_map::{self, SlotMap};
use crate::format::superblock::SuperBlock;
use crate::format::*;
use crate::journal::{self, Journal, JournalMap};
use std::sync::atomic::Ordering;

/// The node number this library uses until it joins a cluster.
const LOCAL_NODE: u32 = 0;

/// Read-only compatible features this library keeps correct when it writes.
const RO_COMPAT_WRITE_SUPP: u32 = FEATURE_RO_COMPAT_UNWRITTEN;

/// Refuses volumes this library cannot write without damaging them.
pub(crate) fn check_writable_features(sb: &SuperBlock) -> Result<()> {
    let ro = sb.s_feature_ro_compat;
    let quota = ro & (FEATURE_RO_COMPAT_USRQUOTA | FEATURE_RO_COMPAT_GRPQUOTA);
    if quota != 0 {
        return Err(Error::Unsupported("writing a volume with quotas (usrquota/grpquota) is not supported".into()));
    }
    let unknown = ro & !RO_COMPAT_WRITE_SUPP;
    if unknown != 0 {
        return Err(Error::Unsupported(format!("read-only compatible feature bits {unknown:#x}; open read-only")));
    }
    if sb.s_feature_incompat & FEATURE_INCOMPAT_HEARTBEAT_DEV != 0 {
        return Err(Error::Unsupported("a heartbeat device holds no filesystem".into()));
    }
    Ok(())
}

/// What the open found to recover once transactions can run.
#[derive(Debug, Clone, Default)]
pub(crate) struct Recovery {
    /// Other slots whose journals were replayed: their windows and truncate logs go back.
    pub other_slots: Vec<u16>,
}

/// Device blocks of the first `blocks` logical blocks of file `ino`, as runs.
fn file_runs(vol: &VolumeInner, ino: u64, di: &Dinode, block: &[u8], blocks: u64) -> Result<Vec<(u64, u64)>> {
    let list = ExtentList::decode(&block[DINODE_ID2_OFFSET..]).map_err(|e| Error::format(ino, e))?;
    let per_cluster = vol.geo.blocks_per_cluster();
    if blocks > u64::from(di.i_clusters) * per_cluster {
        return Err(Error::corrupt(ino, format!("{blocks} blocks wanted from a file of {} clusters", di.i_clusters)));
    }
    let mut runs: Vec<(u64, u64)> = Vec::new();
    let mut lblk = 0u64;
    while lblk < blocks {
        let cpos = (lblk / per_cluster) as u32;
        match map_cluster(vol, ino, &list, cpos)? {
            Mapping::Hole { .. } => return Err(Error::corrupt(ino, format!("system file has a hole at block {lblk}"))),
            Mapping::Data { blkno, clusters, .. } => {
                let skip = lblk % per_cluster;
                let n = (u64::from(clusters) * per_cluster - skip).min(blocks - lblk);
                let first = blkno + skip;
                vol.meta.check_range(first, n)?;
                match runs.last_mut() {
                    Some((s, c)) if *s + *c == first => *c += n,
                    _ => runs.push((first, n)),
                }
                lblk += n;
            }
        }
    }
    Ok(runs)
}

fn read_inode(vol: &VolumeInner, ino: u64) -> Result<(Dinode, std::sync::Arc<[u8]>)> {
    let block = vol.meta.read(ino, BlockKind::Inode)?;
    let di = Dinode::decode(&block).map_err(|e| Error::format(ino, e))?;
    di.validate(ino, vol.meta.fs_generation).map_err(|e| Error::format(ino, e))?;
    Ok((di, block))
}

/// The slot map file: its blocks and their bytes.
struct SlotMapFile {
    blocks: Vec<u64>,
    bytes: Vec<u8>,
    extended: bool,
    map: SlotMap,
}

fn read_slot_map(vol: &VolumeInner) -> Result<SlotMapFile> {
    let ino = vol.system_inode(SystemInode::SlotMap, 0)?;
    let (di, block) = read_inode(vol, ino)?;
    let extended = vol.sb.s_feature_incompat & FEATURE_INCOMPAT_EXTENDED_SLOT_MAP != 0;
    let slots = vol.sb.s_max_slots;
    slot_map::check_file_size(di.i_size, slots, extended, vol.geo.block_size).map_err(|e| Error::format(ino, e))?;
    let nblocks = slot_map::blocks_needed(slots, extended, vol.geo.block_size);
    let runs = file_runs(vol, ino, &di, &block, nblocks)?;
    let blocks: Vec<u64> = runs.iter().flat_map(|&(s, c)| s..s + c).collect();
    let mut bytes = Vec::with_capacity(blocks.len() * vol.geo.block_size as usize);
    for &b in &blocks {
        bytes.extend_from_slice(&vol.meta.read(b, BlockKind::Raw)?);
    }
    let map = SlotMap::decode(&bytes, usize::from(slots), extended).map_err(|e| Error::format(ino, e))?;
    Ok(SlotMapFile { blocks, bytes, extended, map })
}

/// Sets slot `slot` to `node` (or empty) the way the kernel writes the map: the extended map
/// changes only that slot's entry, the old map is rewritten whole. Returns the changed blocks.
fn set_slot(f: &mut SlotMapFile, slot: usize, node: Option<u32>) -> Result<Vec<(u64, Vec<u8>)>> {
    f.map.slots[slot] = node;
    let bs = f.bytes.len() / f.blocks.len().max(1);
    let changed_block = if f.extended {
        let off = slot * slot_map::EXTENDED_SLOT_SIZE;
        f.bytes[off] = node.is_some() as u8;
        if let Some(n) = node {
            put_le32(&mut f.bytes, off + 4, n);
        }
        off / bs
    } else {
        f.map.encode(&mut f.bytes, false).map_err(|e| Error::format(f.blocks[0], e))?;
        0
    };
    let b = changed_block;
    Ok(vec![(f.blocks[b], f.bytes[b * bs..(b + 1) * bs].to_vec())])
}

/// Writes a block home directly, before the volume has a write state (the slot map at open).
fn write_now(vol: &VolumeInner, blkno: u64, kind: BlockKind, mut block: Vec<u8>) -> Result<()> {
    if vol.metaecc {
        kind.seal(&mut block);
    }
    let dev = vol.meta.device();
    dev.write_at(vol.geo.block_offset(blkno), &block)?;
    dev.flush()?;
    vol.meta.install_written(blkno, block.into());
    Ok(())
}

/// The journal of `slot`: its inode, whether it is marked dirty, and where its blocks are.
fn journal_of(vol: &VolumeInner, slot: u16) -> Result<(u64, bool, JournalMap)> {
    let ino = vol.system_inode(SystemInode::Journal, slot)?;
    let (di, block) = read_inode(vol, ino)?;
    if !di.is_journal() {
        return Err(Error::corrupt(ino, "journal inode lacks OCFS2_JOURNAL_FL"));
    }
    let blocks = di.i_size >> vol.geo.block_bits;
    let runs = file_runs(vol, ino, &di, &block, blocks)?;
    let map = JournalMap::from_runs(&runs)?;
    Ok((ino, di.ij_flags() & JOURNAL_DIRTY_FL != 0, map))
}

/// Replays the journal of another slot and marks it recovered (`ocfs2_replay_journal`).
fn replay_other(vol: &VolumeInner, slot: u16) -> Result<bool> {
    let (ino, dirty, map) = journal_of(vol, slot)?;
    if !dirty {
        return Ok(false);
    }
    let dev = vol.meta.shared_device();
    let mut j = Journal::open(dev.clone(), map, vol.geo.block_size, vol.sb.s_uuid)?;
    if j.needs_recovery() {
        let report = j.replay()?;
        log::info!("replayed {} transactions of slot {slot}'s journal", report.transactions);
    }
    drop(j);
    vol.meta.clear_cache();
    journal::mark_recovered(dev.as_ref(), ino, vol.geo.block_size, vol.metaecc)?;
    vol.meta.forget(ino);
    Ok(true)
}

/// Takes a slot, opens and recovers its journal, and marks it in use. See the module docs.
pub(crate) fn mount(vol: &VolumeInner, options: &MountOptions) -> Result<(WriteState, Recovery)> {
    let local = vol.sb.s_feature_incompat & FEATURE_INCOMPAT_LOCAL_MOUNT != 0;
    let mut smf = read_slot_map(vol)?;
    if !local {
        if let Some((slot, node)) =
            smf.map.slots.iter().enumerate().find_map(|(i, s)| s.filter(|&n| n != LOCAL_NODE).map(|n| (i, n)))
        {
            return Err(Error::Busy(format!(
                "slot {slot} is held by node {node}: a cluster volume in use by others needs the cluster stack"
            )));
        }
    }
    let slot = match smf.map.slot_of(LOCAL_NODE) {
        Some(s) => {
            log::info!("slot {s} was already allocated to this node");
            s
        }
        None => smf
            .map
            .find_empty(options.preferred_slot.map(usize::from))
            .ok_or_else(|| Error::Busy("no free slot in the slot map".into()))?,
    };
    for (blkno, block) in set_slot(&mut smf, slot, Some(LOCAL_NODE))? {
        write_now(vol, blkno, BlockKind::Raw, block)?;
    }
    let slot = slot as u16;

    // Our own journal, as ocfs2_check_volume loads it.
    let (ji, dirty, map) = journal_of(vol, slot)?;
    let dev = vol.meta.shared_device();
    let mut j = Journal::open(dev.clone(), map, vol.geo.block_size, vol.sb.s_uuid)?;
    if j.needs_recovery() {
        // mkfs.ocfs2 leaves s_start at 1 in a fresh journal, so an empty log is usual here;
        // only transactions found in a journal not marked dirty are worth a warning.
        let report = j.replay()?;
        if report.transactions > 0 {
            if !dirty {
                log::warn!("journal of slot {slot} held transactions but was not marked dirty; replayed them");
            }
            log::info!(
                "slot {slot}: replayed {} transactions ({} blocks) of a journal not closed cleanly",
                report.transactions,
                report.blocks_replayed
            );
        }
        vol.meta.clear_cache();
    }
    if dirty {
        // ocfs2_journal_toggle_dirty(osb, 1, replayed): the recovery generation moves on.
        journal::mark_recovered(dev.as_ref(), ji, vol.geo.block_size, vol.metaecc)?;
    }
    journal::set_dirty_flag(dev.as_ref(), ji, vol.geo.block_size, vol.metaecc, true)?;
    vol.meta.forget(ji);

    // Other slots: on a local volume nobody else can be using them.
    let mut recovery = Recovery::default();
    for other in 0..vol.sb.s_max_slots {
        if other == slot {
            continue;
        }
        let held = smf.map.slots[usize::from(other)].is_some();
        if !local && held {
            continue;
        }
        if replay_other(vol, other)? {
            recovery.other_slots.push(other);
        }
        if local && held {
            for (blkno, block) in set_slot(&mut smf, usize::from(other), None)? {
                write_now(vol, blkno, BlockKind::Raw, block)?;
            }
        }
    }
    vol.write_seq.fetch_add(1, Ordering::AcqRel);

    let la_geo = LaGeometry {
        blocksize: vol.geo.block_size,
        clustersize_bits: vol.geo.cluster_bits,
        total_clusters: vol.geo.clusters,
        max_slots: vol.sb.s_max_slots,
    };
    let la_bits = match options.local_alloc_mb {
        Some(0) => 0,
        mb => la_geo.la_default_bits(mb),
    };
    let ws = WriteState {
        journal: j,
        slot,
        journal_inode: ji,
        alloc: AllocState::new(la_bits),
        next_generation: first_generation(),
        stopped: None,
        closed: false,
        running: Default::default(),
    };
    Ok((ws, recovery))
}

/// A hard-to-guess start for new inodes' generations, as the kernel seeds its counter at mount.
fn first_generation() -> u32 {
    let t = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap_or_default();
    let x = t.as_nanos() as u64 ^ (u64::from(std::process::id()) << 32);
    (x.wrapping_mul(0x9E37_79B9_7F4A_7C15) >> 32) as u32
}

/// Returns the windows and empties the truncate logs of our slot and of the recovered slots
/// (`ocfs2_complete_local_alloc_recovery`, `ocfs2_complete_truncate_log_recovery`).
pub(crate) fn recover(vol: &VolumeInner, recovery: &Recovery) -> Result<()> {
    let own = vol.write.as_ref().map(|w| w.lock().slot).ok_or(Error::ReadOnly)?;
    for slot in std::iter::once(own).chain(recovery.other_slots.iter().copied()) {
        let mut tx = vol.begin()?;
        local_alloc::sync_to_main(&mut tx, slot)?;
        tx.commit()?;
        truncate_log::flush(vol, slot)?;
    }
    super::orphan::recover_orphans(vol, &[&[own][..], &recovery.other_slots].concat())?;
    Ok(())
}

/// Closes the volume cleanly. See the module docs.
pub(crate) fn shutdown(vol: &VolumeInner) -> Result<()> {
    let Some(w) = vol.write.as_ref() else {
        return Ok(());
    };
    let committer = vol.committer.lock().take();
    if let Some(committer) = committer {
        committer.stop();
    }
    let slot = {
        let ws = w.lock();
        if ws.closed {
            return Ok(());
        }
        ws.check_usable()?;
        ws.slot
    };
    let mut tx = vol.begin()?;
    local_alloc::sync_to_main(&mut tx, slot)?;
    tx.commit()?;
    truncate_log::flush(vol, slot)?;

    let mut ws = w.lock();
    ws.check_usable()?;
    super::tx::commit_running(vol, &mut ws)?;
    if let Err(e) = ws.journal.checkpoint() {
        ws.stop(format!("journal checkpoint at close failed: {e}"));
        return Err(e.into());
    }
    vol.meta.retain_pending(|_| false);
    let dev = vol.meta.shared_device();
    if let Err(e) = journal::set_dirty_flag(dev.as_ref(), ws.journal_inode, vol.geo.block_size, vol.metaecc, false) {
        ws.stop(format!("clearing the journal's dirty flag failed: {e}"));
        return Err(e.into());
    }
    vol.meta.forget(ws.journal_inode);
    let mut smf = match read_slot_map(vol) {
        Ok(f) => f,
        Err(e) => {
            ws.stop(format!("reading the slot map at close failed: {e}"));
            return Err(e);
        }
    };
    for (blkno, block) in set_slot(&mut smf, usize::from(slot), None)? {
        write_direct(vol, &mut ws, blkno, BlockKind::Raw, block)?;
    }
    ws.closed = true;
    vol.write_seq.fetch_add(1, Ordering::AcqRel);
    Ok(())
}
