//! Making and removing names: create, mkdir, unlink and rmdir, each one transaction, and the
//! pieces the other name operations (symlink, mknod, link, rename) share.
//!
//! A new inode comes from the slot's inode suballocator and is filled as the kernel's
//! `ocfs2_mknod_locked` fills it; new directories start inline where the volume has inline
//! data. Removing the last link frees the inode at once unless it is held open (then it
//! becomes an orphan, see [`super::orphan`]): its clusters go to the truncate log, its extent
//! blocks back to their suballocator, its directory blocks are revoked from the journal, and
//! its inode bit is freed with the inode marked invalid. Link counts of parents follow
//! subdirectories.

use super::alloc::{suballoc, truncate_log, SubAlloc, SubBlock};
use super::dir::check_name;
use super::dirwrite;
use super::error::{Error, Result};
use super::extent_tree::Tree;
use super::lock::{Grant, LockLevel, LockName};
use super::meta::BlockKind;
use super::orphan;
use super::tx::{run, Tx};
use super::volume::{Volume, VolumeInner};
use crate::format::dinode::{Dinode, DINODE_ID2_OFFSET};
use crate::format::extent::{extent_recs_per_inode, ExtentList, ExtentRec};
use crate::format::*;

/// The set-group-ID bit of a mode.
const S_ISGID: u16 = 0o2000;

/// The largest link count a directory may reach on this volume.
pub(super) fn link_max(vol: &VolumeInner) -> u32 {
    if vol.sb.s_feature_incompat & FEATURE_INCOMPAT_INDEXED_DIRS != 0 {
        crate::format::dinode::DX_LINK_MAX
    } else {
        LINK_MAX
    }
}

/// What freeing inode `ino` will free: its leaf records and extent blocks.
fn inode_extents(tx: &Tx, ino: u64, di: &Dinode) -> Result<(Vec<ExtentRec>, Vec<SubBlock>)> {
    let fast_symlink = di.is_symlink() && di.i_clusters == 0;
    if di.has_inline_data() || fast_symlink || di.is_device() || di.file_type() == S_IFIFO || di.file_type() == S_IFSOCK
    {
        return Ok((Vec::new(), Vec::new()));
    }
    let tree = Tree::load(tx, ino)?;
    let leaves = tree.records().filter(|r| r.e_leaf_clusters() > 0).copied().collect();
    Ok((leaves, tree.blocks()))
}

/// Truncate log records freeing inode `ino` takes, read through `tx`.
pub(super) fn records_of(tx: &Tx, ino: u64) -> Result<u16> {
    let di = tx.dinode(ino)?;
    let (leaves, _) = inode_extents(tx, ino, &di)?;
    Ok(u16::try_from(leaves.len()).unwrap_or(u16::MAX))
}

/// Truncate log records that removing `name` from `dir` may take (checked before its
/// transaction begins, since room is made by transactions of its own).
pub(super) fn records_to_free(vol: &VolumeInner, dir: u64, name: &[u8]) -> Result<u16> {
    let tx = vol.begin()?;
    if !tx.dinode(dir)?.is_dir() {
        return Ok(0);
    }
    let Some(found) = dirwrite::find(&tx, dir, name)? else {
        return Ok(0);
    };
    let di = tx.dinode(found.entry.inode)?;
    if di.links_count() > 1 && !di.is_dir() {
        return Ok(0);
    }
    records_of(&tx, found.entry.inode)
}

/// Takes one name away from inode `ino` (a directory loses both of its own links): the last
/// one frees it, or makes it an orphan while it is held open. The caller removed the entry
/// and fixes the parent's link count.
///
/// A removed directory is freed even while held: it is empty, and fsck.ocfs2 -n cannot count
/// the links of a directory in an orphan directory (it takes every orphan for one link, a
/// directory's own `.` makes two), so a kernel that orphans directories leaves volumes that
/// fsck reports until their orphans are replayed.
pub(super) fn drop_name(tx: &mut Tx, ino: u64) -> Result<()> {
    let di = tx.dinode(ino)?;
    let links = if di.is_dir() { 0 } else { di.links_count().saturating_sub(1) };
    if links == 0 {
        if tx.vol.holds.count(ino) > 0 && !di.is_dir() {
            return orphan::orphan_add(tx, ino);
        }
        return delete_inode(tx, ino);
    }
    let (secs, nsecs) = dirwrite::now();
    tx.update_dinode(ino, |d, _| {
        d.set_links_count(links);
        d.i_ctime = secs;
        d.i_ctime_nsec = nsecs;
        Ok(())
    })
}

/// The inode `name` names in directory `dir`, read in a transaction of its own: inode locks
/// are taken before the transaction that changes what they guard, so a caller holding the
/// directory's lock looks the child up, locks it, and checks it again inside that transaction.
pub(super) fn peek(vol: &VolumeInner, dir: u64, name: &[u8]) -> Result<Option<u64>> {
    let tx = vol.begin()?;
    if !live_dinode(&tx, dir)?.is_dir() {
        return Ok(None);
    }
    Ok(dirwrite::find(&tx, dir, name)?.map(|f| f.entry.inode))
}

/// The inode `ino` that an operation names by number; one freed meanwhile (its block still
/// an inode of this volume, but no longer valid) is ENOENT, not damage.
pub(super) fn live_dinode(tx: &Tx, ino: u64) -> Result<Dinode> {
    let block = tx.block(ino, BlockKind::Inode)?;
    if let Ok(di) = Dinode::decode(&block) {
        if di.i_blkno == ino && di.i_fs_generation == tx.vol.meta.fs_generation && !di.is_valid() {
            return Err(Error::NotFound(format!("inode {ino} was freed")));
        }
    }
    tx.dinode(ino)
}

/// Locks the inodes `inos` exclusively in the order given, each once, but those in `held`
/// (which the caller holds already).
pub(super) fn lock_all<'v>(vol: &'v VolumeInner, inos: &[u64], held: &[u64]) -> Result<Vec<Grant<'v>>> {
    let mut grants: Vec<Grant<'v>> = Vec::with_capacity(inos.len());
    let mut taken: Vec<u64> = held.to_vec();
    for &blkno in inos {
        if !taken.contains(&blkno) {
            grants.push(vol.locks.lock(LockName::Meta { blkno }, LockLevel::Exclusive)?);
            taken.push(blkno);
        }
    }
    Ok(grants)
}

/// Adds `delta` to the link count of directory `dir`.
pub(super) fn add_dir_links(tx: &mut Tx, dir: u64, delta: i32) -> Result<()> {
    tx.update_dinode(dir, |d, _| {
        let links = d.links_count().checked_add_signed(delta).unwrap_or(0);
        d.set_links_count(links);
        Ok(())
    })
}

/// What a new inode holds besides its head.
#[derive(Clone, Copy)]
pub(super) enum Body<'a> {
    /// An empty extent list: regular files, fifos and sockets.
    Empty,
    /// `.` and `..`.
    Dir,
    /// A device number in `id1.dev1.i_rdev`, already in the kernel's encoding.
    Device(u64),
    /// The target of a symbolic link.
    Symlink(&'a [u8]),
}

/// Frees inode `ino`, whose last link is gone, with everything it owns.
pub(super) fn delete_inode(tx: &mut Tx, ino: u64) -> Result<()> {
    let di = tx.dinode(ino)?;
    if di.is_system() || di.i_suballoc_slot == INVALID_SLOT {
        return Err(Error::InvalidArgument(format!("inode {ino} is a system file")));
    }
    if di.has_refcount() {
        return Err(Error::Unsupported(format!("freeing reflinked inode {ino}")));
    }
    if di.has_xattr() && di.i_xattr_loc != 0 {
        return Err(Error::Unsupported(format!("freeing the extended attribute block of inode {ino}")));
    }
    let (leaves, blocks) = inode_extents(tx, ino, &di)?;
    super::dxwrite::free_index(tx, ino)?;
    let geo = tx.vol.geo;
    let per = geo.blocks_per_cluster();
    let dir_blocks = if di.is_dir() { di.i_size.div_ceil(u64::from(geo.block_size)) } else { 0 };
    for rec in &leaves {
        if rec.is_refcounted() {
            return Err(Error::Unsupported(format!("freeing shared clusters of inode {ino}")));
        }
        let clusters = u32::from(rec.e_leaf_clusters());
        // Directory blocks were journaled: revoke them before their clusters can hold data.
        let first_lblk = u64::from(rec.e_cpos) * per;
        for k in 0..u64::from(clusters) * per {
            if first_lblk + k < dir_blocks {
                tx.free_block(rec.e_blkno + k)?;
            }
        }
        let cluster = u32::try_from(rec.e_blkno >> (geo.cluster_bits - geo.block_bits))
            .map_err(|_| Error::corrupt(ino, "extent past the volume"))?;
        truncate_log::append(tx, cluster, clusters)?;
    }
    for b in blocks {
        tx.free_block(b.blkno)?;
        suballoc::free_block(tx, SubAlloc::Extent, b)?;
    }
    let (secs, _) = dirwrite::now();
    tx.update_dinode(ino, |d, _| {
        d.set_links_count(0);
        d.i_dtime = secs;
        d.i_flags &= !(VALID_FL | ORPHANED_FL);
        Ok(())
    })?;
    let b = SubBlock { blkno: ino, slot: di.i_suballoc_slot, bit: di.i_suballoc_bit, loc: di.i_suballoc_loc };
    suballoc::free_block(tx, SubAlloc::Inode, b)
}

/// Who a new inode belongs to: the creating process's (fs)uid and (fs)gid. The operations that
/// take an owner (`create_as`, `mkdir_as`, `mknod_as`, `symlink_as`) also apply the kernel's
/// `inode_init_owner` rule for set-group-ID directories; those without one make inodes owned by
/// root with exactly the mode given.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Owner {
    pub uid: u32,
    pub gid: u32,
}

/// The group and mode a new inode takes under `parent`, as the kernel's `inode_init_owner`
/// decides: a parent directory with S_ISGID gives its group, and a new subdirectory keeps
/// S_ISGID so that the rule passes down the tree.
fn inherit(parent: &Dinode, owner: Owner, mode: u16) -> (u32, u16) {
    if parent.i_mode & S_ISGID == 0 {
        return (owner.gid, mode);
    }
    let mode = if mode & S_IFMT == S_IFDIR { mode | S_ISGID } else { mode };
    (parent.i_gid, mode)
}

/// Fills the head of new inode `b` with `mode`; the caller lays out id2.
pub(super) fn new_inode_head(tx: &mut Tx, b: &SubBlock, mode: u16, nlink: u32) -> Result<Dinode> {
    let (secs, nsecs) = dirwrite::now();
    let generation = tx.ws.next_generation;
    tx.ws.next_generation = generation.wrapping_add(1);
    let mut di = Dinode::new();
    di.i_generation = generation;
    di.i_suballoc_slot = b.slot;
    di.i_suballoc_bit = b.bit;
    di.i_suballoc_loc = b.loc;
    di.i_blkno = b.blkno;
    di.i_fs_generation = tx.vol.meta.fs_generation;
    di.i_mode = mode;
    di.set_links_count(nlink);
    di.i_flags = VALID_FL;
    (di.i_atime, di.i_ctime, di.i_mtime) = (secs, secs, secs);
    (di.i_atime_nsec, di.i_ctime_nsec, di.i_mtime_nsec) = (nsecs, nsecs, nsecs);
    let block = tx.new_block(b.blkno, BlockKind::Inode)?;
    di.encode(block).map_err(|e| Error::format(b.blkno, e))?;
    Ok(di)
}

impl Volume {
    /// Creates an empty regular file `name` in directory `dir` with permissions `perm`;
    /// returns its inode number.
    pub fn create(&self, dir: u64, name: &[u8], perm: u16) -> Result<u64> {
        self.make_node(dir, name, S_IFREG | (perm & 0o7777), Body::Empty, None)
    }

    /// [`Volume::create`] for `owner` (the group may come from a set-group-ID `dir`, see
    /// [`Owner`]), in the same one transaction.
    pub fn create_as(&self, dir: u64, name: &[u8], perm: u16, owner: Owner) -> Result<u64> {
        self.make_node(dir, name, S_IFREG | (perm & 0o7777), Body::Empty, Some(owner))
    }

    /// Creates directory `name` in directory `dir` with permissions `perm`; returns its inode
    /// number.
    pub fn mkdir(&self, dir: u64, name: &[u8], perm: u16) -> Result<u64> {
        self.make_node(dir, name, S_IFDIR | (perm & 0o7777), Body::Dir, None)
    }

    /// [`Volume::mkdir`] for `owner`; under a set-group-ID `dir` the new directory takes its
    /// group and S_ISGID.
    pub fn mkdir_as(&self, dir: u64, name: &[u8], perm: u16, owner: Owner) -> Result<u64> {
        self.make_node(dir, name, S_IFDIR | (perm & 0o7777), Body::Dir, Some(owner))
    }

    /// Creates inode `name` in `dir` with `mode` and `body` in one transaction: owned by
    /// `owner` as [`Owner`] says, or by root with `mode` as given when there is none.
    pub(super) fn make_node(&self, dir: u64, name: &[u8], mode: u16, body: Body, owner: Option<Owner>) -> Result<u64> {
        check_name(name)?;
        if name == b"." || name == b".." {
            return Err(Error::Exists(String::from_utf8_lossy(name).into_owned()));
        }
        let inner = &*self.inner;
        let _grant = inner.locks.lock(LockName::Meta { blkno: dir }, LockLevel::Exclusive)?;
        let is_dir = mode & S_IFMT == S_IFDIR;
        run(inner, |tx| {
            let parent = live_dinode(tx, dir)?;
            if !parent.is_dir() {
                return Err(Error::NotDir(format!("inode {dir}")));
            }
            if parent.links_count() == 0 {
                return Err(Error::NotFound(format!("directory {dir} was removed")));
            }
            if dirwrite::find(tx, dir, name)?.is_some() {
                return Err(Error::Exists(String::from_utf8_lossy(name).into_owned()));
            }
            if is_dir && parent.links_count() >= link_max(tx.vol) {
                return Err(Error::TooManyLinks(format!("directory {dir}")));
            }
            let (uid, (gid, mode)) = match owner {
                Some(owner) => (owner.uid, inherit(&parent, owner, mode)),
                None => (0, (0, mode)),
            };
            let b = suballoc::claim_block(tx, SubAlloc::Inode)?;
            let ino = b.blkno;
            new_inode_head(tx, &b, mode, if is_dir { 2 } else { 1 })?;
            tx.update_dinode(ino, |d, _| {
                (d.i_uid, d.i_gid) = (uid, gid);
                Ok(())
            })?;
            if is_dir {
                let (size, clusters, dyn_features) = dirwrite::init_dir(tx, ino, dir)?;
                tx.update_dinode(ino, |d, _| {
                    d.i_size = size;
                    d.i_clusters = clusters;
                    d.i_dyn_features = dyn_features;
                    Ok(())
                })?;
                tx.update_dinode(dir, |d, _| {
                    d.set_links_count(d.links_count() + 1);
                    Ok(())
                })?;
            } else if let Body::Symlink(target) = body {
                super::symlink::fill(tx, ino, target)?;
            } else {
                let bs = tx.vol.geo.block_size as usize;
                let block = tx.block_mut(ino, BlockKind::Inode)?;
                ExtentList::new(extent_recs_per_inode(bs))
                    .encode(&mut block[DINODE_ID2_OFFSET..])
                    .map_err(|e| Error::format(ino, e))?;
                if let Body::Device(rdev) = body {
                    tx.update_dinode(ino, |d, _| {
                        d.set_rdev(rdev);
                        Ok(())
                    })?;
                }
            }
            dirwrite::add(tx, dir, name, ino, file_type_of_mode(mode))?;
            Ok(ino)
        })
    }

    /// Removes `name` (not a directory) from directory `dir`; the inode is freed with its
    /// last link.
    pub fn unlink(&self, dir: u64, name: &[u8]) -> Result<()> {
        check_name(name)?;
        if name == b"." || name == b".." {
            return Err(Error::IsDir(String::from_utf8_lossy(name).into_owned()));
        }
        self.remove_name(dir, name, false)
    }

    /// Removes the empty directory `name` from directory `dir`.
    pub fn rmdir(&self, dir: u64, name: &[u8]) -> Result<()> {
        check_name(name)?;
        if name == b"." {
            return Err(Error::InvalidArgument("rmdir of \".\"".into()));
        }
        if name == b".." {
            return Err(Error::NotEmpty("..".into()));
        }
        self.remove_name(dir, name, true)
    }

    fn remove_name(&self, dir: u64, name: &[u8], want_dir: bool) -> Result<()> {
        let inner = &*self.inner;
        let _grant = inner.locks.lock(LockName::Meta { blkno: dir }, LockLevel::Exclusive)?;
        let peeked = peek(inner, dir, name)?;
        let _child = lock_all(inner, peeked.as_slice(), &[dir])?;
        truncate_log::make_room(inner, records_to_free(inner, dir, name)?)?;
        let shown = || String::from_utf8_lossy(name).into_owned();
        run(inner, |tx| {
            if !tx.dinode(dir)?.is_dir() {
                return Err(Error::NotDir(format!("inode {dir}")));
            }
            let found = dirwrite::find(tx, dir, name)?.ok_or_else(|| Error::NotFound(shown()))?;
            let ino = found.entry.inode;
            if Some(ino) != peeked {
                return Err(Error::Busy(format!("{:?} changed while it was being removed", shown())));
            }
            let child = tx.dinode(ino)?;
            match (want_dir, child.is_dir()) {
                (false, true) => return Err(Error::IsDir(shown())),
                (true, false) => return Err(Error::NotDir(shown())),
                (true, true) if !dirwrite::is_empty(tx, ino)? => return Err(Error::NotEmpty(shown())),
                _ => {}
            }
            dirwrite::remove(tx, dir, &found)?;
            if child.is_dir() {
                add_dir_links(tx, dir, -1)?;
            }
            drop_name(tx, ino)
        })
    }
}
