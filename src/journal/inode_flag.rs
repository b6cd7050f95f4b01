//! `OCFS2_JOURNAL_DIRTY_FL` in a slot's journal inode: set while the slot's journal is in use,
//! so that whoever finds it set after a crash (the kernel, fsck.ocfs2, or us) replays the
//! journal. The journal layer never sets it by itself; the filesystem sets it before the first
//! commit and clears it after the last checkpoint of a clean unmount, as the kernel's
//! `ocfs2_journal_toggle_dirty` does.

use super::error::{JournalError, Result};
use crate::device::BlockDevice;
use crate::format::blockcheck::{self, INODE_CHECK_OFFSET};
use crate::format::constants::JOURNAL_DIRTY_FL;
use crate::format::dinode::Dinode;

/// What `id1.journal1` of a journal inode says.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct JournalInodeState {
    pub dirty: bool,
    /// `ij_recovery_generation`: bumped each time another node recovers this slot.
    pub recovery_generation: u32,
}

fn read_journal_inode<D: BlockDevice + ?Sized>(
    dev: &D,
    blkno: u64,
    block_size: u32,
    metaecc: bool,
) -> Result<(Vec<u8>, Dinode)> {
    let mut block = vec![0u8; block_size as usize];
    dev.read_at(blkno * u64::from(block_size), &mut block)?;
    if metaecc {
        blockcheck::verify(&mut block, INODE_CHECK_OFFSET, "journal inode")?;
    }
    let di = Dinode::decode(&block)?;
    if di.i_blkno != blkno || !di.is_valid() || !di.is_journal() {
        return Err(JournalError::InvalidArgument(format!("block {blkno} is not a journal inode")));
    }
    Ok((block, di))
}

/// The dirty flag and recovery generation of the journal inode at `blkno`.
pub fn journal_inode_state<D: BlockDevice + ?Sized>(
    dev: &D,
    blkno: u64,
    block_size: u32,
    metaecc: bool,
) -> Result<JournalInodeState> {
    let (_, di) = read_journal_inode(dev, blkno, block_size, metaecc)?;
    Ok(JournalInodeState {
        dirty: di.ij_flags() & JOURNAL_DIRTY_FL != 0,
        recovery_generation: di.ij_recovery_generation(),
    })
}

/// Rewrites the journal inode with `change` applied to (flags, recovery generation), metaecc
/// recomputed when the volume has it, and flushes. Returns the state before.
fn update<D: BlockDevice + ?Sized>(
    dev: &D,
    blkno: u64,
    block_size: u32,
    metaecc: bool,
    change: impl FnOnce(u32, u32) -> (u32, u32),
) -> Result<JournalInodeState> {
    let (mut block, mut di) = read_journal_inode(dev, blkno, block_size, metaecc)?;
    let before = JournalInodeState {
        dirty: di.ij_flags() & JOURNAL_DIRTY_FL != 0,
        recovery_generation: di.ij_recovery_generation(),
    };
    let (flags, generation) = change(di.ij_flags(), di.ij_recovery_generation());
    di.set_journal1(flags, generation);
    di.encode(&mut block)?;
    if metaecc {
        blockcheck::compute(&mut block, INODE_CHECK_OFFSET);
    }
    dev.write_at(blkno * u64::from(block_size), &block)?;
    dev.flush()?;
    Ok(before)
}

/// Sets or clears `OCFS2_JOURNAL_DIRTY_FL` in the journal inode at `journal_inode_blkno`
/// (read-modify-write, metaecc recomputed when `metaecc`), and flushes. Returns whether the
/// flag was set before.
pub fn set_dirty_flag<D: BlockDevice + ?Sized>(
    dev: &D,
    journal_inode_blkno: u64,
    block_size: u32,
    metaecc: bool,
    dirty: bool,
) -> Result<bool> {
    let before = update(dev, journal_inode_blkno, block_size, metaecc, |flags, generation| {
        (if dirty { flags | JOURNAL_DIRTY_FL } else { flags & !JOURNAL_DIRTY_FL }, generation)
    })?;
    Ok(before.dirty)
}

/// After replaying another slot's journal: clears the dirty flag and bumps the recovery
/// generation, as the kernel's `ocfs2_replay_journal` does, so that the slot's owner can tell
/// it was recovered. Returns the state before.
pub fn mark_recovered<D: BlockDevice + ?Sized>(
    dev: &D,
    journal_inode_blkno: u64,
    block_size: u32,
    metaecc: bool,
) -> Result<JournalInodeState> {
    update(dev, journal_inode_blkno, block_size, metaecc, |flags, generation| {
        (flags & !JOURNAL_DIRTY_FL, generation.wrapping_add(1))
    })
}
