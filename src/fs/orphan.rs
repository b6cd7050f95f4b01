//! Orphans: inodes whose last name is gone while something still holds them open.
//!
//! A hold ([`Volume::hold`]) is this node's way of saying "the inode is open": holds are
//! counted per inode in memory. Removing the last name of a held inode (unlink, or a rename
//! over it) does not free it; the same transaction links it into this slot's orphan
//! directory under its block number as 16 lowercase hex digits, sets `OCFS2_ORPHANED_FL` and
//! `i_orphaned_slot`, and leaves its link count at 0, as the kernel's `ocfs2_orphan_add` does.
//! Until then the inode stays readable through the hold. Dropping the last hold frees it in one
//! transaction: its orphan entry goes (`ocfs2_orphan_del`) and the inode with everything it
//! owns is freed.
//!
//! Directories are the exception: a removed directory is freed at once even while held (it is
//! empty; see `namespace::drop_name` for why fsck.ocfs2 wants it so). Orphaned directories
//! that the kernel left are still recovered.
//!
//! A node that dies holding orphans leaves them in its orphan directory; whoever opens the
//! slot next (or recovers it) frees every inode found there (`ocfs2_recover_orphans`). A
//! volume closed while holds remain behaves the same: its orphans wait for the next open.
//!
//! Invariants:
//! - The hold count of an inode is read only inside a transaction, and a hold is dropped before
//!   the transaction that looks for its orphan begins: since transactions run one at a time,
//!   an unlink either sees the hold (and orphans) or not (and frees), and a release either sees
//!   the orphan committed or finds nothing to do.
//! - An orphan has links 0 and `OCFS2_ORPHANED_FL`; directories in an orphan directory count
//!   as one link of it each, as the kernel counts them.

use super::alloc::truncate_log;
use super::dirwrite;
use super::error::{Error, Result};
use super::inode::Metadata;
use super::lock::{LockLevel, LockName};
use super::meta::BlockKind;
use super::namespace::{delete_inode, live_dinode, records_of};
use super::tx::{run, Tx};
use super::volume::{Volume, VolumeInner};
use crate::format::dinode::Dinode;
use crate::format::*;
use parking_lot::Mutex;
use std::collections::HashMap;

/// How many holds each inode has on this node.
#[derive(Default)]
pub(crate) struct Holds {
    map: Mutex<HashMap<u64, u32>>,
}

impl Holds {
    /// The holds on `ino` now.
    pub fn count(&self, ino: u64) -> u32 {
        self.map.lock().get(&ino).copied().unwrap_or(0)
    }

    /// Gives up one hold; true when it was the last.
    fn release(&self, ino: u64) -> bool {
        let mut map = self.map.lock();
        match map.get_mut(&ino) {
            Some(n) if *n > 1 => {
                *n -= 1;
                false
            }
            Some(_) => {
                map.remove(&ino);
                true
            }
            None => false,
        }
    }
}

/// An inode held open: while it lives, removing the inode's last name orphans it instead of
/// freeing it (directories excepted, see the module docs). Dropping the last hold of an orphan
/// frees it; [`OpenInode::close`] does the same and reports what went wrong. A hold keeps its
/// volume open; once the volume is closed, dropping it writes nothing.
pub struct OpenInode {
    vol: Volume,
    ino: u64,
    released: bool,
}

impl std::fmt::Debug for OpenInode {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("OpenInode").field("ino", &self.ino).finish()
    }
}

impl OpenInode {
    /// The inode held.
    pub fn ino(&self) -> u64 {
        self.ino
    }

    /// The volume the inode is on.
    pub(crate) fn volume(&self) -> &Volume {
        &self.vol
    }

    /// `fstat`: works after the last name is gone.
    pub fn metadata(&self) -> Result<Metadata> {
        self.vol.metadata(self.ino)
    }

    /// Reads the held file at `offset` (see [`Volume::read`]).
    pub fn read(&self, offset: u64, buf: &mut [u8]) -> Result<usize> {
        self.vol.read(self.ino, offset, buf)
    }

    /// The target of a held symbolic link.
    pub fn read_link(&self) -> Result<Vec<u8>> {
        self.vol.read_link(self.ino)
    }

    /// Gives the hold up; frees the inode if it was the last hold of an orphan.
    pub fn close(mut self) -> Result<()> {
        self.released = true;
        self.vol.release(self.ino)
    }
}

impl Drop for OpenInode {
    fn drop(&mut self) {
        if !self.released {
            if let Err(e) = self.vol.release(self.ino) {
                log::error!("freeing orphan inode {} at its last close failed: {e}", self.ino);
            }
        }
    }
}

impl Volume {
    /// Holds inode `ino` open (see [`OpenInode`]). An inode that has lost its last name can
    /// only be held again while another hold keeps it.
    pub fn hold(&self, ino: u64) -> Result<OpenInode> {
        let inner = &*self.inner;
        // On a writable volume the hold is counted inside a transaction, so that an unlink
        // running at the same time either sees it or has already freed the inode.
        let tx = if inner.write.is_some() { Some(inner.begin()?) } else { None };
        let nlink = match &tx {
            Some(tx) => live_dinode(tx, ino)?.links_count(),
            None => self.metadata(ino)?.nlink,
        };
        let mut map = inner.holds.map.lock();
        let n = map.entry(ino).or_insert(0);
        if *n == 0 && nlink == 0 {
            map.remove(&ino);
            return Err(Error::NotFound(format!("inode {ino} has no name left")));
        }
        *n += 1;
        Ok(OpenInode { vol: self.clone(), ino, released: false })
    }

    /// Drops one hold of `ino`; the last one frees the inode if it is an orphan.
    fn release(&self, ino: u64) -> Result<()> {
        if !self.inner.holds.release(ino) || self.inner.write.is_none() {
            return Ok(());
        }
        let inner = &*self.inner;
        let _grant = inner.locks.lock(LockName::Meta { blkno: ino }, LockLevel::Exclusive)?;
        let records = {
            let tx = inner.begin()?;
            if !is_free_orphan(&tx, ino)? {
                return Ok(());
            }
            records_of(&tx, ino)?
        };
        truncate_log::make_room(inner, records)?;
        run(inner, |tx| {
            if !is_free_orphan(tx, ino)? {
                return Ok(());
            }
            let slot = tx.dinode(ino)?.i_orphaned_slot;
            free_orphan(tx, ino, slot)
        })
    }
}

/// The name of `ino`'s entry in an orphan directory.
pub(crate) fn orphan_name(ino: u64) -> Vec<u8> {
    format!("{ino:016x}").into_bytes()
}

/// True when `ino` is an orphan nobody holds any more.
fn is_free_orphan(tx: &Tx, ino: u64) -> Result<bool> {
    if tx.vol.holds.count(ino) > 0 {
        return Ok(false);
    }
    let block = tx.block(ino, BlockKind::Inode)?;
    let di = Dinode::decode(&block).map_err(|e| Error::format(ino, e))?;
    if di.i_blkno != ino || !di.is_valid() || di.i_fs_generation != tx.vol.meta.fs_generation {
        return Ok(false);
    }
    Ok(di.is_orphaned() && di.links_count() == 0)
}

/// Moves `ino`, whose last name the caller just removed, into this slot's orphan directory
/// (`ocfs2_orphan_add`): links 0, `OCFS2_ORPHANED_FL`, `i_orphaned_slot`.
pub(crate) fn orphan_add(tx: &mut Tx, ino: u64) -> Result<()> {
    let slot = tx.ws.slot;
    let dir = tx.vol.system_inode(SystemInode::OrphanDir, slot)?;
    let di = tx.dinode(ino)?;
    if di.is_dir() {
        tx.update_dinode(dir, |d, _| {
            d.set_links_count(d.links_count() + 1);
            Ok(())
        })?;
    }
    dirwrite::add(tx, dir, &orphan_name(ino), ino, file_type_of_mode(di.i_mode))?;
    let (secs, nsecs) = dirwrite::now();
    tx.update_dinode(ino, |d, _| {
        d.set_links_count(0);
        d.i_flags |= ORPHANED_FL;
        d.i_orphaned_slot = slot;
        d.i_ctime = secs;
        d.i_ctime_nsec = nsecs;
        Ok(())
    })
}

/// Takes `ino` out of the orphan directory of `slot` (`ocfs2_orphan_del`) and frees it.
fn free_orphan(tx: &mut Tx, ino: u64, slot: u16) -> Result<()> {
    remove_entry(tx, ino, slot)?;
    delete_inode(tx, ino)
}

/// Removes `ino`'s entry from the orphan directory of `slot`, with the link a directory
/// orphan counts there.
fn remove_entry(tx: &mut Tx, ino: u64, slot: u16) -> Result<()> {
    let dir = tx.vol.system_inode(SystemInode::OrphanDir, slot)?;
    let Some(found) = dirwrite::find(tx, dir, &orphan_name(ino))? else {
        log::warn!("orphan inode {ino} has no entry in orphan directory {slot}");
        return Ok(());
    };
    dirwrite::remove(tx, dir, &found)?;
    let block = tx.block(ino, BlockKind::Inode)?;
    let is_dir = Dinode::decode(&block).is_ok_and(|d| d.is_dir());
    if is_dir {
        tx.update_dinode(dir, |d, _| {
            d.set_links_count(d.links_count().saturating_sub(1).max(2));
            Ok(())
        })?;
    }
    Ok(())
}

/// Frees every inode left in the orphan directories of `slots` (`ocfs2_recover_orphans`): at a
/// writable open nothing of this node holds them any more. An entry whose inode still has
/// links (a crash between two steps of a rename, say) only loses its entry and flag.
pub(crate) fn recover_orphans(vol: &VolumeInner, slots: &[u16]) -> Result<()> {
    for &slot in slots {
        // A slot without an orphan directory (an interrupted tunefs.ocfs2 can leave one) has
        // no orphans to free; fsck.ocfs2 makes the directory again.
        let Ok(dir) = vol.system_inode(SystemInode::OrphanDir, slot) else {
            log::warn!("slot {slot} has no orphan directory");
            continue;
        };
        let found = dirwrite::entries(&vol.begin()?, dir)?;
        for (ino, name) in found {
            if name != orphan_name(ino) {
                log::warn!(
                    "orphan directory {slot} holds {:?} for inode {ino}; left alone",
                    String::from_utf8_lossy(&name)
                );
                continue;
            }
            match recover_one(vol, ino, slot) {
                Ok(()) => log::info!("freed orphan inode {ino} of slot {slot}"),
                Err(Error::Unsupported(why)) => log::warn!("orphan inode {ino} of slot {slot} stays: {why}"),
                Err(e) => return Err(e),
            }
        }
    }
    Ok(())
}

fn recover_one(vol: &VolumeInner, ino: u64, slot: u16) -> Result<()> {
    let records = {
        let tx = vol.begin()?;
        let block = tx.block(ino, BlockKind::Inode)?;
        match Dinode::decode(&block) {
            Ok(di) if di.is_valid() && di.links_count() == 0 => records_of(&tx, ino)?,
            _ => 0,
        }
    };
    truncate_log::make_room(vol, records)?;
    run(vol, |tx| {
        let block = tx.block(ino, BlockKind::Inode)?;
        let di = Dinode::decode(&block)
            .ok()
            .filter(|d| d.i_blkno == ino && d.is_valid() && d.i_fs_generation == tx.vol.meta.fs_generation);
        match di {
            Some(di) if di.links_count() == 0 => free_orphan(tx, ino, slot),
            Some(_) => {
                remove_entry(tx, ino, slot)?;
                tx.update_dinode(ino, |d, _| {
                    d.i_flags &= !ORPHANED_FL;
                    d.i_orphaned_slot = 0;
                    Ok(())
                })
            }
            None => {
                let dir = tx.vol.system_inode(SystemInode::OrphanDir, slot)?;
                match dirwrite::find(tx, dir, &orphan_name(ino))? {
                    Some(found) => dirwrite::remove(tx, dir, &found),
                    None => Ok(()),
                }
            }
        }
    })
}
