//! Rename (`ocfs2_rename`): moving a name within a directory or to another one, replacing
//! what the new name held, all in one transaction.
//!
//! What changes, as in the kernel: the new entry is added (or the existing one pointed at the
//! moved inode), then the old entry goes; the moved inode's ctime moves to now; a directory
//! moved to another parent has its `..` pointed at the new parent, the old parent loses a link
//! and the new one gains one (unless the directory replaced another directory, whose `..` link
//! the new parent loses at the same time). A replaced inode loses a name, a replaced directory
//! (which must be empty) all its links; the last link frees it, or makes a file an orphan
//! while it is held.
//!
//! Locks: the four inodes involved are locked before the transaction, directories before
//! files and ancestors before descendants, as every other operation locks a parent before its
//! child; the names are looked up again inside the transaction, and a rename whose names
//! changed while it waited for its locks starts over.

use super::alloc::truncate_log;
use super::dir::check_name;
use super::dirwrite;
use super::error::{Error, Result};
use super::namespace::{add_dir_links, drop_name, link_max, live_dinode, lock_all, records_to_free};
use super::tx::{run, Tx};
use super::volume::Volume;
use crate::format::dinode::Dinode;
use crate::format::*;

/// Steps from a directory up to the root a rename follows at most before it calls the tree
/// damaged (far beyond any real depth: every step needs a directory of its own).
const MAX_DEPTH: u32 = 1 << 16;

/// True if directory `dir` is `ancestor` or lies below it, following `..` entries.
fn is_within(tx: &Tx, dir: u64, ancestor: u64) -> Result<bool> {
    let root = tx.vol.info.root_blkno;
    let mut cur = dir;
    for _ in 0..MAX_DEPTH {
        if cur == ancestor {
            return Ok(true);
        }
        if cur == root {
            return Ok(false);
        }
        let parent = dirwrite::find(tx, cur, b"..")?
            .ok_or_else(|| Error::corrupt(cur, "directory without a \"..\" entry"))?
            .entry
            .inode;
        if parent == cur {
            return Ok(false);
        }
        cur = parent;
    }
    Err(Error::corrupt(dir, "directory chain to the root is longer than any tree can be"))
}

fn shown(name: &[u8]) -> String {
    String::from_utf8_lossy(name).into_owned()
}

impl Volume {
    /// Renames `old_name` in directory `old_dir` to `new_name` in directory `new_dir`,
    /// replacing what `new_name` names as POSIX `rename(2)` does: a file by a file, an empty
    /// directory by a directory (a non-empty one gives ENOTEMPTY; a directory over a file
    /// ENOTDIR, a file over a directory EISDIR). Moving a directory below itself gives EINVAL;
    /// `.` and `..` cannot be renamed (EBUSY). When both names already lead to the same inode,
    /// nothing changes.
    pub fn rename(&self, old_dir: u64, old_name: &[u8], new_dir: u64, new_name: &[u8]) -> Result<()> {
        self.rename_with(old_dir, old_name, new_dir, new_name, false)
    }

    /// [`Volume::rename`] that refuses (EEXIST) when `new_name` exists, checked in the rename's
    /// own transaction (`RENAME_NOREPLACE`).
    pub fn rename_noreplace(&self, old_dir: u64, old_name: &[u8], new_dir: u64, new_name: &[u8]) -> Result<()> {
        self.rename_with(old_dir, old_name, new_dir, new_name, true)
    }

    fn rename_with(&self, old_dir: u64, old_name: &[u8], new_dir: u64, new_name: &[u8], noreplace: bool) -> Result<()> {
        check_name(old_name)?;
        check_name(new_name)?;
        for name in [old_name, new_name] {
            if name == b"." || name == b".." {
                return Err(Error::Busy(format!("renaming {:?}", shown(name))));
            }
        }
        let inner = &*self.inner;
        // The names are looked up before their locks are taken; if they changed meanwhile
        // (another thread renamed or removed them), look again.
        let mut tries = 0;
        loop {
            let (peeked, order) = {
                let tx = inner.begin()?;
                let peeked = (peek_in(&tx, old_dir, old_name)?, peek_in(&tx, new_dir, new_name)?);
                let order = lock_order(&tx, [old_dir, new_dir], peeked)?;
                (peeked, order)
            };
            let _grants = lock_all(inner, &order, &[])?;
            truncate_log::make_room(inner, records_to_free(inner, new_dir, new_name)?)?;
            let names = Names { old_dir, old_name, new_dir, new_name, noreplace };
            match run(inner, |tx| rename_in(tx, &names, peeked)) {
                Err(Error::Busy(_)) if tries < 3 => tries += 1,
                other => return other,
            }
        }
    }
}

/// The inode `name` names in `dir`, if `dir` is a directory and has it.
fn peek_in(tx: &Tx, dir: u64, name: &[u8]) -> Result<Option<u64>> {
    if !live_dinode(tx, dir)?.is_dir() {
        return Ok(None);
    }
    Ok(dirwrite::find(tx, dir, name)?.map(|f| f.entry.inode))
}

/// Steps from directory `dir` up to the root (bounded like [`is_within`]).
fn depth(tx: &Tx, dir: u64) -> Result<u32> {
    let root = tx.vol.info.root_blkno;
    let mut cur = dir;
    for d in 0..MAX_DEPTH {
        if cur == root {
            return Ok(d);
        }
        let Some(parent) = dirwrite::find(tx, cur, b"..")? else { return Ok(d) };
        if parent.entry.inode == cur {
            return Ok(d);
        }
        cur = parent.entry.inode;
    }
    Err(Error::corrupt(dir, "directory chain to the root is longer than any tree can be"))
}

/// The order to lock the parents and the two named inodes in, as every operation locks:
/// directories before files, an ancestor before its descendants (`ocfs2_double_lock` locks
/// the ancestor first), else by block number.
fn lock_order(tx: &Tx, parents: [u64; 2], children: (Option<u64>, Option<u64>)) -> Result<Vec<u64>> {
    let mut keyed = Vec::new();
    for ino in parents.into_iter().chain([children.0, children.1].into_iter().flatten()) {
        let di = tx.dinode(ino)?;
        let key = if di.is_dir() { (0, depth(tx, ino)?) } else { (1, 0) };
        keyed.push((key, ino));
    }
    keyed.sort_unstable();
    let mut order: Vec<u64> = Vec::with_capacity(keyed.len());
    for (_, ino) in keyed {
        if !order.contains(&ino) {
            order.push(ino);
        }
    }
    Ok(order)
}

/// What a rename moves where.
struct Names<'a> {
    old_dir: u64,
    old_name: &'a [u8],
    new_dir: u64,
    new_name: &'a [u8],
    /// Refuse to replace an existing `new_name`.
    noreplace: bool,
}

/// The rename itself; `peeked` are the inodes the two names held when their locks were taken.
fn rename_in(tx: &mut Tx, names: &Names, peeked: (Option<u64>, Option<u64>)) -> Result<()> {
    let Names { old_dir, old_name, new_dir, new_name, noreplace } = *names;
    for dir in [old_dir, new_dir] {
        if !tx.dinode(dir)?.is_dir() {
            return Err(Error::NotDir(format!("inode {dir}")));
        }
    }
    if tx.dinode(new_dir)?.links_count() == 0 {
        return Err(Error::NotFound(format!("directory {new_dir} was removed")));
    }
    let src = dirwrite::find(tx, old_dir, old_name)?.ok_or_else(|| Error::NotFound(shown(old_name)))?;
    let ino = src.entry.inode;
    let di = tx.dinode(ino)?;
    let moving_dir = di.is_dir();
    let dst = dirwrite::find(tx, new_dir, new_name)?;
    if (Some(ino), dst.as_ref().map(|d| d.entry.inode)) != peeked {
        return Err(Error::Busy("the names changed while the rename took its locks".into()));
    }
    if noreplace && dst.is_some() {
        return Err(Error::Exists(shown(new_name)));
    }
    if dst.as_ref().is_some_and(|d| d.entry.inode == ino) {
        return Ok(());
    }
    if moving_dir && is_within(tx, new_dir, ino)? {
        return Err(Error::InvalidArgument(format!("moving directory {:?} below itself", shown(old_name))));
    }
    let target: Option<(u64, Dinode)> = match &dst {
        Some(found) => {
            let t = found.entry.inode;
            let tdi = tx.dinode(t)?;
            match (moving_dir, tdi.is_dir()) {
                (true, false) => return Err(Error::NotDir(shown(new_name))),
                (false, true) => return Err(Error::IsDir(shown(new_name))),
                (true, true) if !dirwrite::is_empty(tx, t)? => return Err(Error::NotEmpty(shown(new_name))),
                _ => {}
            }
            Some((t, tdi))
        }
        None => None,
    };
    let changes_parent = moving_dir && old_dir != new_dir;
    if changes_parent && target.is_none() && tx.dinode(new_dir)?.links_count() >= link_max(tx.vol) {
        return Err(Error::TooManyLinks(format!("directory {new_dir}")));
    }
    let ft = file_type_of_mode(di.i_mode);

    // The new name first, then the old one goes: found again, since adding may have moved
    // the entries of a directory that is both old and new parent.
    match &dst {
        Some(found) => dirwrite::replace_inode(tx, new_dir, found, ino, ft)?,
        None => dirwrite::add(tx, new_dir, new_name, ino, ft)?,
    }
    let src = dirwrite::find(tx, old_dir, old_name)?
        .filter(|f| f.entry.inode == ino)
        .ok_or_else(|| Error::corrupt(old_dir, "the renamed entry vanished during the rename"))?;
    dirwrite::remove(tx, old_dir, &src)?;

    let (secs, nsecs) = dirwrite::now();
    tx.update_dinode(ino, |d, _| {
        d.i_ctime = secs;
        d.i_ctime_nsec = nsecs;
        Ok(())
    })?;
    if changes_parent {
        let dotdot =
            dirwrite::find(tx, ino, b"..")?.ok_or_else(|| Error::corrupt(ino, "directory without a \"..\" entry"))?;
        dirwrite::replace_inode(tx, ino, &dotdot, new_dir, FT_DIR)?;
        // Pointing `..` elsewhere is no change of the moved directory's contents: its mtime
        // stays, as the kernel's `ocfs2_update_entry` leaves it.
        let (mtime, mtime_nsec) = (di.i_mtime, di.i_mtime_nsec);
        tx.update_dinode(ino, |d, _| {
            d.i_mtime = mtime;
            d.i_mtime_nsec = mtime_nsec;
            Ok(())
        })?;
    }
    if moving_dir {
        // The old parent loses the moved directory's `..`; the new parent gains it, unless
        // it loses the replaced directory's at the same time.
        add_dir_links(tx, old_dir, -1)?;
        if target.is_none() {
            add_dir_links(tx, new_dir, 1)?;
        }
    }
    if let Some((t, _)) = target {
        drop_name(tx, t)?;
    }
    Ok(())
}
