//! Changing indexed directories inside a transaction, by the rules of the kernel's
//! `fs/ocfs2/dir.c`.
//!
//! An indexed directory keeps its names in ordinary directory blocks, each ending with a
//! trailer, and beside them an index of (major hash, minor hash, block) entries: inline in the
//! dx root while they fit, else in leaf clusters that the root's extent list maps by major hash,
//! the minor hash choosing the block inside a cluster. Blocks that can take another record form
//! a list headed by the root's `dr_free_blk` and chained through the trailers' `db_free_next`.
//!
//! Invariants every change keeps:
//! - `dr_num_entries` is the number of index entries: one per live record, "." and ".."
//!   included (both hash to (0, 0)).
//! - A block's trailer `db_free_rec_len` is its largest hole (`ocfs2_find_max_rec_len`: free
//!   records whole, live records past their name, 0 below the smallest record); a block whose
//!   hole drops to 0 leaves the free list, a block whose hole was 0 joins it when a removal
//!   opens one, new blocks join at its head. Blocks written by other tools may sit off the list
//!   with room; they are left there, as the kernel leaves them.
//! - The root's extent list stays at depth 0: a new leaf cluster gets its own record, or
//!   lengthens the previous one when it follows it both in hash and on disk. When the list is
//!   full the insert fails (`Error::Unsupported`) before anything changed.
//!
//! Names are indexed with the hash of x86 ocfs2-tools (signed chars), which fsck.ocfs2 checks
//! every entry against; lookups also try the unsigned packing for names with bytes >= 0x80,
//! as the read side does, so indexes written by newer kernels stay usable.

use super::alloc::{global, local_alloc, suballoc, SubAlloc, SubBlock};
use super::dirwrite::{self, Found};
use super::error::{Error, Result};
use super::extent_tree::Tree;
use super::meta::BlockKind;
use super::tx::{Tx, MAX_TX_BLOCKS};
use crate::format::dinode::Dinode;
use crate::format::dir::{dir_entries, dir_rec_len};
use crate::format::dir_trailer::{trailer_offset, DirBlockTrailer};
use crate::format::dx::{
    dx_entries_per_root, dx_hash_block_index, dx_hash_with, dx_seeds, DxEntry, DxEntryList, DxLeaf, DxRootBlock,
    DxRootBody, HashChar, DX_FLAG_INLINE, DX_ROOT_UNION_OFFSET,
};
use crate::format::extent::{extent_recs_per_dx_root, ExtentList, ExtentRec};
use crate::format::INDEXED_DIR_FL;

const DIR_BLOCK: BlockKind = BlockKind::DirBlockWithTrailer;
/// The smallest hole worth keeping a block on the free list for (`OCFS2_DIR_MIN_REC_LEN`).
const MIN_HOLE: usize = dir_rec_len(1);

/// A directory's dx root as this transaction sees it; written back by [`store_root`].
struct Index {
    blkno: u64,
    root: DxRootBlock,
}

/// Where the entry for one hash lives.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Place {
    /// The root's inline list.
    Root,
    /// Leaf block `blkno`, in the cluster starting at `cluster` that serves hashes from `cpos`.
    Leaf { blkno: u64, cluster: u64, cpos: u32 },
}

/// An entry list read for change.
enum Slot {
    Root(DxEntryList),
    Leaf(DxLeaf),
}

impl Slot {
    fn list(&self) -> &DxEntryList {
        match self {
            Slot::Root(l) => l,
            Slot::Leaf(leaf) => &leaf.dl_list,
        }
    }

    fn list_mut(&mut self) -> &mut DxEntryList {
        match self {
            Slot::Root(l) => l,
            Slot::Leaf(leaf) => &mut leaf.dl_list,
        }
    }
}

fn seeds(tx: &Tx) -> [u32; 4] {
    dx_seeds(tx.vol.sb.s_dx_seed, tx.vol.sb.s_uuid_hash)
}

/// The hashes a name may be indexed under: the tools' packing first, then (for names with
/// bytes >= 0x80 only) the unsigned one.
fn hashes(tx: &Tx, name: &[u8]) -> Vec<(u32, u32)> {
    let s = seeds(tx);
    let mut out = vec![dx_hash_with(name, s, HashChar::Signed)];
    if !name.is_ascii() {
        out.push(dx_hash_with(name, s, HashChar::Unsigned));
    }
    out
}

fn bpc(tx: &Tx) -> u32 {
    tx.vol.geo.blocks_per_cluster() as u32
}

fn load_root(tx: &Tx, di: &Dinode) -> Result<Index> {
    let blkno = di.i_dx_root;
    if blkno == 0 {
        return Err(Error::corrupt(di.i_blkno, "indexed directory without an index root"));
    }
    let block = tx.block(blkno, BlockKind::DxRoot)?;
    let root = DxRootBlock::decode(&block).map_err(|e| Error::format(blkno, e))?;
    root.check_owner(blkno, tx.vol.meta.fs_generation, di.i_blkno).map_err(|e| Error::format(blkno, e))?;
    Ok(Index { blkno, root })
}

fn store_root(tx: &mut Tx, ix: &Index) -> Result<()> {
    let block = tx.block_mut(ix.blkno, BlockKind::DxRoot)?;
    // The body's two shapes differ in length: clear what the old one may leave behind.
    block[DX_ROOT_UNION_OFFSET..].fill(0);
    ix.root.encode(block).map_err(|e| Error::format(ix.blkno, e))
}

fn read_leaf(tx: &Tx, blkno: u64) -> Result<DxLeaf> {
    let block = tx.block(blkno, BlockKind::DxLeaf)?;
    let leaf = DxLeaf::decode(&block).map_err(|e| Error::format(blkno, e))?;
    leaf.check_owner(blkno, tx.vol.meta.fs_generation).map_err(|e| Error::format(blkno, e))?;
    Ok(leaf)
}

fn write_leaf(tx: &mut Tx, leaf: &DxLeaf) -> Result<()> {
    let blkno = leaf.dl_blkno;
    let block = tx.block_mut(blkno, BlockKind::DxLeaf)?;
    leaf.encode(block).map_err(|e| Error::format(blkno, e))
}

/// The trailer of directory block `blkno`, checked to belong to `dir`.
fn read_trailer(tx: &Tx, dir: u64, blkno: u64) -> Result<DirBlockTrailer> {
    tx.vol.meta.check_range(blkno, 1)?;
    let block = tx.block(blkno, DIR_BLOCK)?;
    let t = DirBlockTrailer::decode(&block).map_err(|e| Error::format(blkno, e))?;
    t.check_owner(blkno, dir).map_err(|e| Error::format(blkno, e))?;
    Ok(t)
}

fn write_trailer(tx: &mut Tx, blkno: u64, t: &DirBlockTrailer) -> Result<()> {
    let block = tx.block_mut(blkno, DIR_BLOCK)?;
    t.encode(block).map_err(|e| Error::format(blkno, e))
}

/// The largest record a new name could take in `area` (`ocfs2_find_max_rec_len`), or 0 when
/// even the shortest name would not fit.
pub(crate) fn max_hole(area: &[u8], at: u64) -> Result<u16> {
    let mut largest = 0usize;
    for item in dir_entries(area, true) {
        let (_, de) = item.map_err(|e| Error::format(at, e))?;
        largest = largest.max(de.slack());
    }
    Ok(if largest >= MIN_HOLE { largest as u16 } else { 0 })
}

/// The first block of the leaf cluster serving major hash `major`, and the hash it starts at
/// (`ocfs2_dx_dir_lookup`): the cluster at `major` within the last record starting at or before
/// it, or that record's last cluster when `major` lies beyond it.
fn leaf_cluster(tx: &Tx, dir: u64, tree: &ExtentList, major: u32) -> Result<(u64, u32)> {
    let deeper;
    let list = if tree.l_tree_depth == 0 {
        tree
    } else {
        // Read through the transaction: the tree may have grown in it.
        let mut leaves = ExtentList::new(u16::MAX);
        leaves.recs = Tree::from_root(tx, dir, tree.clone())?.records().copied().collect();
        deeper = leaves;
        &deeper
    };
    let rec = list
        .recs
        .iter()
        .rev()
        .find(|r| r.e_cpos <= major)
        .ok_or_else(|| Error::corrupt(dir, format!("no index cluster serves hash {major:#x}")))?;
    let len = u32::from(rec.e_leaf_clusters());
    if len == 0 {
        return Err(Error::corrupt(dir, "index extent of zero clusters"));
    }
    let off = (major - rec.e_cpos).min(len - 1);
    let blkno = rec
        .e_blkno
        .checked_add(tx.vol.geo.cluster_to_block(u64::from(off)))
        .ok_or_else(|| Error::corrupt(dir, "index extent past the address space"))?;
    tx.vol.meta.check_range(blkno, u64::from(bpc(tx)))?;
    Ok((blkno, rec.e_cpos + off))
}

fn place(tx: &Tx, dir: u64, root: &DxRootBlock, hash: (u32, u32)) -> Result<Place> {
    match &root.body {
        DxRootBody::Inline(_) => Ok(Place::Root),
        DxRootBody::Extents(tree) => {
            let (cluster, cpos) = leaf_cluster(tx, dir, tree, hash.0)?;
            let blkno = cluster + u64::from(dx_hash_block_index(hash.1, bpc(tx)));
            Ok(Place::Leaf { blkno, cluster, cpos })
        }
    }
}

fn load_slot(tx: &Tx, ix: &Index, at: Place) -> Result<Slot> {
    match (at, &ix.root.body) {
        (Place::Root, DxRootBody::Inline(list)) => Ok(Slot::Root(list.clone())),
        (Place::Leaf { blkno, .. }, DxRootBody::Extents(_)) => Ok(Slot::Leaf(read_leaf(tx, blkno)?)),
        _ => Err(Error::corrupt(ix.blkno, "index changed shape under an operation")),
    }
}

fn store_slot(tx: &mut Tx, ix: &mut Index, slot: Slot) -> Result<()> {
    match slot {
        Slot::Root(list) => {
            ix.root.body = DxRootBody::Inline(list);
            Ok(())
        }
        Slot::Leaf(leaf) => write_leaf(tx, &leaf),
    }
}

/// Looks for `name` in directory block `blkno` of `dir`.
fn find_in_block(tx: &Tx, dir: u64, blkno: u64, name: &[u8]) -> Result<Option<Found>> {
    tx.vol.meta.check_range(blkno, 1)?;
    let block = tx.block(blkno, DIR_BLOCK)?;
    let t = DirBlockTrailer::decode(&block).map_err(|e| Error::format(blkno, e))?;
    t.check_owner(blkno, dir).map_err(|e| Error::format(blkno, e))?;
    for item in dir_entries(&block[..trailer_offset(block.len())], false) {
        let (offset, entry) = item.map_err(|e| Error::format(blkno, e))?;
        if entry.name == name {
            return Ok(Some(Found { blkno, offset, entry }));
        }
    }
    Ok(None)
}

/// The entry called `name` in indexed directory `di`, found through the index
/// (`ocfs2_dx_dir_search`).
pub(crate) fn find(tx: &Tx, di: &Dinode, name: &[u8]) -> Result<Option<Found>> {
    let dir = di.i_blkno;
    let ix = load_root(tx, di)?;
    for hash in hashes(tx, name) {
        let slot = load_slot(tx, &ix, place(tx, dir, &ix.root, hash)?)?;
        for e in &slot.list().de_entries {
            if (e.dx_major_hash, e.dx_minor_hash) != hash {
                continue;
            }
            if let Some(found) = find_in_block(tx, dir, e.dx_dirent_blk, name)? {
                return Ok(Some(found));
            }
        }
    }
    Ok(None)
}

/// True when the indexed directory holds only "." and ".." (`ocfs2_empty_dir_dx`).
pub(crate) fn is_empty(tx: &Tx, di: &Dinode) -> Result<bool> {
    Ok(load_root(tx, di)?.root.dr_num_entries <= 2)
}

/// Claims one cluster for index leaves and formats its blocks empty
/// (`__ocfs2_dx_dir_new_cluster`); returns them, the first at the cluster's start.
fn new_cluster(tx: &mut Tx) -> Result<Vec<DxLeaf>> {
    let per = bpc(tx);
    // A split rewrites every block of two clusters in one transaction.
    if 2 * per as usize + 32 > MAX_TX_BLOCKS {
        return Err(Error::Unsupported(format!(
            "directory index clusters of {per} blocks: a leaf split would not fit one transaction"
        )));
    }
    let (cluster, _) = local_alloc::claim_data(tx, 1)?;
    let first = tx.vol.geo.cluster_to_block(u64::from(cluster));
    let bs = tx.vol.geo.block_size as usize;
    let generation = tx.vol.meta.fs_generation;
    let mut leaves = Vec::with_capacity(per as usize);
    for i in 0..u64::from(per) {
        let leaf = DxLeaf::new(first + i, generation, bs);
        let block = tx.new_block(first + i, BlockKind::DxLeaf)?;
        leaf.encode(block).map_err(|e| Error::format(first + i, e))?;
        leaves.push(leaf);
    }
    Ok(leaves)
}

/// Puts `entries` into the leaves of a new cluster by minor hash, in order.
fn distribute(tx: &Tx, leaves: &mut [DxLeaf], entries: &[DxEntry]) -> Result<()> {
    let per = bpc(tx);
    for e in entries {
        let leaf = &mut leaves[dx_hash_block_index(e.dx_minor_hash, per) as usize];
        if leaf.dl_list.is_full() {
            return Err(Error::corrupt(leaf.dl_blkno, "a new index leaf overflows"));
        }
        leaf.dl_list.de_entries.push(*e);
    }
    Ok(())
}

/// Moves a full inline index into a first leaf cluster at hash 0
/// (`ocfs2_expand_inline_dx_root`).
fn expand_root(tx: &mut Tx, ix: &mut Index) -> Result<()> {
    let DxRootBody::Inline(list) = &ix.root.body else {
        return Ok(());
    };
    let entries = list.de_entries.clone();
    let mut leaves = new_cluster(tx)?;
    distribute(tx, &mut leaves, &entries)?;
    for leaf in &leaves {
        write_leaf(tx, leaf)?;
    }
    let bs = tx.vol.geo.block_size as usize;
    let mut tree = ExtentList::new(extent_recs_per_dx_root(bs));
    tree.recs.push(ExtentRec::leaf(0, 1, 0, leaves[0].dl_blkno));
    ix.root.body = DxRootBody::Extents(tree);
    ix.root.dr_flags &= !DX_FLAG_INLINE;
    ix.root.dr_clusters = ix.root.dr_clusters.checked_add(1).ok_or_else(|| Error::corrupt(ix.blkno, "dr_clusters"))?;
    Ok(())
}

/// The major hash at which a full leaf's cluster splits (`ocfs2_dx_dir_find_leaf_split`):
/// `sorted` is the leaf's entries by hash, `leaf_cpos` the first hash its cluster serves.
/// `None` when no split can make room for `insert_hash`.
fn split_hash(sorted: &[DxEntry], leaf_cpos: u32, insert_hash: u32) -> Option<u32> {
    let first = sorted.first()?.dx_major_hash;
    if sorted.iter().all(|e| e.dx_major_hash == first) {
        // Every entry shares one hash: the split can only separate it from the new one.
        return if first == insert_hash {
            None
        } else if first == leaf_cpos {
            leaf_cpos.checked_add(1)
        } else if first > insert_hash {
            Some(first)
        } else {
            Some(insert_hash)
        };
    }
    sorted[sorted.len() / 2..].iter().map(|e| e.dx_major_hash).find(|&h| h > leaf_cpos)
}

/// Records new leaf cluster `blkno` for hashes from `cpos` in the depth-0 list `tree`: it
/// lengthens the record before it when it follows that one in hash and on disk, else takes a
/// record of its own. False when the list has no free record.
fn add_leaf_record(tree: &mut ExtentList, cpos: u32, blkno: u64, per_cluster: u64) -> bool {
    let at = tree.recs.iter().position(|r| r.e_cpos > cpos).unwrap_or(tree.recs.len());
    if at > 0 {
        let prev = &mut tree.recs[at - 1];
        let len = prev.e_leaf_clusters();
        if len < u16::MAX
            && prev.e_flags() == 0
            && u64::from(prev.e_cpos) + u64::from(len) == u64::from(cpos)
            && prev.e_blkno + u64::from(len) * per_cluster == blkno
        {
            prev.set_leaf_clusters(len + 1);
            return true;
        }
    }
    if tree.recs.len() >= usize::from(tree.l_count) {
        return false;
    }
    tree.recs.insert(at, ExtentRec::leaf(cpos, 1, 0, blkno));
    true
}

/// Splits the cluster of full leaf `full` at the median hash into a new cluster
/// (`ocfs2_dx_dir_rebalance`).
fn rebalance(
    tx: &mut Tx,
    dir: u64,
    ix: &mut Index,
    full: DxLeaf,
    cluster: u64,
    leaf_cpos: u32,
    insert: u32,
) -> Result<()> {
    let DxRootBody::Extents(tree) = &ix.root.body else {
        return Err(Error::corrupt(ix.blkno, "splitting a leaf of an inline index"));
    };
    if ix.root.dr_clusters == u32::MAX {
        return Err(Error::NoSpace(format!("the index of directory {dir} has the most clusters it can")));
    }
    let full_list = tree.l_count;
    let mut sorted = full.dl_list.de_entries.clone();
    sorted.sort_by_key(|e| (e.dx_major_hash, e.dx_minor_hash));
    let split = split_hash(&sorted, leaf_cpos, insert)
        .ok_or_else(|| Error::NoSpace(format!("directory {dir}: too many names share the index hash {insert:#x}")))?;
    let mut new_leaves = new_cluster(tx)?;
    let new_blkno = new_leaves[0].dl_blkno;
    let per = tx.vol.geo.blocks_per_cluster();
    let DxRootBody::Extents(tree) = &mut ix.root.body else {
        return Err(Error::corrupt(ix.blkno, "index changed shape under a split"));
    };
    if tree.l_tree_depth != 0 || !add_leaf_record(tree, split, new_blkno, per) {
        // The root's list is full (or the tree is already deeper): the records move into
        // extent blocks below the root, as an inode's do.
        let mut grown = Tree::from_root(tx, ix.blkno, tree.clone())?;
        grown.set_range(split, 1, Some((new_blkno, 0)))?;
        let (list, last_eb, _) = grown.lay_out(tx).map_err(|e| match e {
            Error::NoSpace(why) => {
                Error::NoSpace(format!("directory {dir} (index of {full_list} root records): {why}"))
            }
            other => other,
        })?;
        *tree = list;
        ix.root.dr_last_eb_blk = last_eb;
    }
    ix.root.dr_clusters += 1;
    for (i, new_leaf) in new_leaves.iter_mut().enumerate() {
        let blkno = cluster + i as u64;
        let mut old = if blkno == full.dl_blkno {
            // The kernel leaves the split leaf sorted.
            let mut f = full.clone();
            f.dl_list.de_entries = sorted.clone();
            f
        } else {
            read_leaf(tx, blkno)?
        };
        let (go, stay): (Vec<DxEntry>, Vec<DxEntry>) =
            old.dl_list.de_entries.iter().partition(|e| e.dx_major_hash >= split);
        old.dl_list.de_entries = stay;
        new_leaf.dl_list.de_entries = go;
        write_leaf(tx, &old)?;
        write_leaf(tx, new_leaf)?;
    }
    Ok(())
}

/// The first block on the free list with room for a record of `need` bytes, and the block
/// before it on the list (`None`: the root) (`ocfs2_search_dx_free_list`).
fn search_free_list(tx: &Tx, di: &Dinode, ix: &Index, need: usize) -> Result<Option<(u64, Option<u64>)>> {
    let dir = di.i_blkno;
    let bound = di.i_size / u64::from(tx.vol.geo.block_size) + 1;
    let mut prev = None;
    let mut next = ix.root.dr_free_blk;
    let mut steps = 0u64;
    while next != 0 {
        steps += 1;
        if steps > bound {
            return Err(Error::corrupt(ix.blkno, "the free space list of the directory loops"));
        }
        let t = read_trailer(tx, dir, next)?;
        if need <= usize::from(t.db_free_rec_len) {
            return Ok(Some((next, prev)));
        }
        prev = Some(next);
        next = t.db_free_next;
    }
    Ok(None)
}

/// Puts directory block `blkno` at the head of the free list (`ocfs2_dx_dir_link_trailer`).
fn link_head(tx: &mut Tx, dir: u64, ix: &mut Index, blkno: u64) -> Result<()> {
    let mut t = read_trailer(tx, dir, blkno)?;
    t.db_free_next = ix.root.dr_free_blk;
    ix.root.dr_free_blk = blkno;
    write_trailer(tx, blkno, &t)
}

/// Brings block `blkno`'s free space up to date after an insert, taking it off the free list
/// when it is full (`ocfs2_recalc_free_list`); `prev` is the block before it on the list.
fn recalc_free(tx: &mut Tx, dir: u64, ix: &mut Index, blkno: u64, prev: Option<u64>) -> Result<()> {
    let block = tx.block(blkno, DIR_BLOCK)?;
    let hole = max_hole(&block[..trailer_offset(block.len())], blkno)?;
    let mut t = read_trailer(tx, dir, blkno)?;
    if hole > 0 {
        t.db_free_rec_len = hole;
        return write_trailer(tx, blkno, &t);
    }
    match prev {
        None => ix.root.dr_free_blk = t.db_free_next,
        Some(p) => {
            let mut pt = read_trailer(tx, dir, p)?;
            pt.db_free_next = t.db_free_next;
            write_trailer(tx, p, &pt)?;
        }
    }
    t.db_free_rec_len = 0;
    t.db_free_next = 0;
    write_trailer(tx, blkno, &t)
}

/// Adds (`name` → `ino`) to indexed directory `dir`: room in the index first (moving an inline
/// index into a leaf cluster, splitting a full leaf), then a block with room from the free list
/// or a new block, then the record and its index entry (`ocfs2_prepare_dx_dir_for_insert`,
/// `__ocfs2_add_entry`). The caller has checked that the name is valid and not taken.
pub(crate) fn add(tx: &mut Tx, dir: u64, name: &[u8], ino: u64, file_type: u8) -> Result<()> {
    let di = tx.dinode(dir)?;
    let mut ix = load_root(tx, &di)?;
    if ix.root.dr_num_entries == u32::MAX {
        return Err(Error::NoSpace(format!("directory {dir} has the most entries its index can count")));
    }
    let hash = dx_hash_with(name, seeds(tx), HashChar::Signed);
    if matches!(&ix.root.body, DxRootBody::Inline(list) if list.is_full()) {
        expand_root(tx, &mut ix)?;
    }
    let mut split = false;
    let at = loop {
        let at = place(tx, dir, &ix.root, hash)?;
        let Place::Leaf { blkno, cluster, cpos } = at else {
            break at;
        };
        let leaf = read_leaf(tx, blkno)?;
        if !leaf.dl_list.is_full() {
            break at;
        }
        if split {
            return Err(Error::NoSpace(format!("directory {dir}: index leaf {blkno} is still full after a split")));
        }
        rebalance(tx, dir, &mut ix, leaf, cluster, cpos, hash.0)?;
        split = true;
    };

    let need = dir_rec_len(name.len());
    let usable = trailer_offset(tx.vol.geo.block_size as usize);
    let bound = di.i_size / u64::from(tx.vol.geo.block_size) + 2;
    let mut placed = None;
    for _ in 0..bound {
        // Read again each time: a block added by `extend` lengthens the list's bound.
        let di = tx.dinode(dir)?;
        let (blkno, prev) = match search_free_list(tx, &di, &ix, need)? {
            Some(found) => found,
            None => {
                let new = dirwrite::extend(tx, dir, true)?;
                link_head(tx, dir, &mut ix, new)?;
                (new, None)
            }
        };
        let block = tx.block_mut(blkno, DIR_BLOCK)?;
        let fits = dirwrite::insert_in_area(&mut block[..usable], blkno, ino, name, file_type)?;
        // Either way the trailer now tells the truth: a block whose trailer promised more room
        // than it had is corrected (or leaves the list) and the search goes on.
        recalc_free(tx, dir, &mut ix, blkno, prev)?;
        if fits {
            placed = Some(blkno);
            break;
        }
    }
    let blkno = placed.ok_or_else(|| Error::corrupt(ix.blkno, "no directory block takes the new entry"))?;

    let mut slot = load_slot(tx, &ix, at)?;
    if slot.list().is_full() {
        return Err(Error::corrupt(ix.blkno, "the index entry list filled up under an insert"));
    }
    slot.list_mut().de_entries.push(DxEntry { dx_major_hash: hash.0, dx_minor_hash: hash.1, dx_dirent_blk: blkno });
    store_slot(tx, &mut ix, slot)?;
    ix.root.dr_num_entries += 1;
    store_root(tx, &ix)?;
    dirwrite::touch(tx, dir)
}

/// Removes the entry `found` (from [`find`]) and its index entry from indexed directory `dir`,
/// putting its block on the free list if it was off it (`ocfs2_delete_entry_dx`).
pub(crate) fn remove(tx: &mut Tx, dir: u64, found: &Found) -> Result<()> {
    let di = tx.dinode(dir)?;
    let mut ix = load_root(tx, &di)?;
    let mut target = None;
    for hash in hashes(tx, &found.entry.name) {
        let slot = load_slot(tx, &ix, place(tx, dir, &ix.root, hash)?)?;
        let pos = slot
            .list()
            .de_entries
            .iter()
            .position(|e| (e.dx_major_hash, e.dx_minor_hash) == hash && e.dx_dirent_blk == found.blkno);
        if let Some(i) = pos {
            target = Some((slot, i));
            break;
        }
    }
    let (mut slot, i) = target.ok_or_else(|| {
        Error::corrupt(found.blkno, format!("{:?} has no index entry", String::from_utf8_lossy(&found.entry.name)))
    })?;
    let blkno = found.blkno;
    let old = read_trailer(tx, dir, blkno)?;
    let usable = trailer_offset(tx.vol.geo.block_size as usize);
    dirwrite::remove_record(tx, blkno, DIR_BLOCK, 0..usable, found)?;
    let block = tx.block(blkno, DIR_BLOCK)?;
    let mut t = old.clone();
    t.db_free_rec_len = max_hole(&block[..usable], blkno)?;
    if old.db_free_rec_len == 0 {
        t.db_free_next = ix.root.dr_free_blk;
        ix.root.dr_free_blk = blkno;
    }
    write_trailer(tx, blkno, &t)?;
    slot.list_mut().de_entries.remove(i);
    store_slot(tx, &mut ix, slot)?;
    ix.root.dr_num_entries = ix
        .root
        .dr_num_entries
        .checked_sub(1)
        .ok_or_else(|| Error::corrupt(ix.blkno, "dr_num_entries below the entries indexed"))?;
    store_root(tx, &ix)?;
    dirwrite::touch(tx, dir)
}

/// Gives directory `dir`, whose only block is `blkno`, an index over that block's entries
/// (`ocfs2_dx_dir_attach_index` with `ocfs2_dx_dir_index_root_block` or
/// `ocfs2_dx_dir_index_block`): inline in the root when fewer entries than the root holds,
/// else in a first leaf cluster. The block joins the free list if it has room.
pub(crate) fn attach_index(tx: &mut Tx, dir: u64, blkno: u64) -> Result<()> {
    let bs = tx.vol.geo.block_size as usize;
    let block = tx.block(blkno, DIR_BLOCK)?;
    let s = seeds(tx);
    let mut entries = Vec::new();
    for item in dir_entries(&block[..trailer_offset(bs)], false) {
        let (_, de) = item.map_err(|e| Error::format(blkno, e))?;
        if de.name_len > 0 {
            let (major, minor) = dx_hash_with(&de.name, s, HashChar::Signed);
            entries.push(DxEntry { dx_major_hash: major, dx_minor_hash: minor, dx_dirent_blk: blkno });
        }
    }
    let t = read_trailer(tx, dir, blkno)?;
    let per_root = dx_entries_per_root(bs);
    let (body, clusters) = if entries.len() < usize::from(per_root) {
        let mut list = DxEntryList::new(per_root);
        list.de_entries = entries.clone();
        (DxRootBody::Inline(list), 0)
    } else {
        let mut leaves = new_cluster(tx)?;
        distribute(tx, &mut leaves, &entries)?;
        for leaf in &leaves {
            write_leaf(tx, leaf)?;
        }
        let mut tree = ExtentList::new(extent_recs_per_dx_root(bs));
        tree.recs.push(ExtentRec::leaf(0, 1, 0, leaves[0].dl_blkno));
        (DxRootBody::Extents(tree), 1)
    };
    let sub = suballoc::claim_block(tx, SubAlloc::Extent)?;
    let root = DxRootBlock {
        dr_check: Default::default(),
        dr_suballoc_slot: sub.slot,
        dr_suballoc_bit: sub.bit,
        dr_fs_generation: tx.vol.meta.fs_generation,
        dr_blkno: sub.blkno,
        dr_last_eb_blk: 0,
        dr_clusters: clusters,
        dr_flags: 0,
        dr_reserved0: 0,
        dr_reserved1: 0,
        dr_dir_blkno: dir,
        dr_num_entries: entries.len() as u32,
        dr_reserved2: 0,
        dr_free_blk: if t.db_free_rec_len != 0 { blkno } else { 0 },
        dr_suballoc_loc: sub.loc,
        dr_reserved3: [0; 14],
        body,
    };
    let out = tx.new_block(sub.blkno, BlockKind::DxRoot)?;
    root.encode(out).map_err(|e| Error::format(sub.blkno, e))?;
    tx.update_dinode(dir, |d, _| {
        d.i_dx_root = sub.blkno;
        d.i_dyn_features |= INDEXED_DIR_FL;
        Ok(())
    })
}

/// Frees the index of directory `dir` (nothing when it has none): its leaf clusters go back to
/// the global bitmap, its extent blocks and root to their suballocators, every block of them is
/// revoked from the journal, and the inode forgets the index (`ocfs2_dx_dir_truncate`). For
/// freeing a directory whose last link is gone.
pub(crate) fn free_index(tx: &mut Tx, dir: u64) -> Result<()> {
    let di = tx.dinode(dir)?;
    if !di.is_dir() || !di.is_indexed_dir() || di.has_inline_data() {
        return Ok(());
    }
    let ix = load_root(tx, &di)?;
    if let DxRootBody::Extents(tree) = &ix.root.body {
        let whole = Tree::from_root(tx, ix.blkno, tree.clone())?;
        let (leaves, blocks): (Vec<ExtentRec>, _) = (whole.records().copied().collect(), whole.blocks());
        let geo = tx.vol.geo;
        let per = geo.blocks_per_cluster();
        for rec in leaves {
            let clusters = u32::from(rec.e_leaf_clusters());
            if clusters == 0 {
                continue;
            }
            tx.vol.meta.check_range(rec.e_blkno, u64::from(clusters) * per)?;
            for k in 0..u64::from(clusters) * per {
                tx.free_block(rec.e_blkno + k)?;
            }
            let cluster = u32::try_from(rec.e_blkno >> (geo.cluster_bits - geo.block_bits))
                .map_err(|_| Error::corrupt(ix.blkno, "index cluster past the volume"))?;
            global::free_clusters(tx, cluster, clusters)?;
        }
        for b in blocks {
            tx.free_block(b.blkno)?;
            suballoc::free_block(tx, SubAlloc::Extent, b)?;
        }
    }
    let r = &ix.root;
    let b = SubBlock { blkno: ix.blkno, slot: r.dr_suballoc_slot, bit: r.dr_suballoc_bit, loc: r.dr_suballoc_loc };
    tx.free_block(ix.blkno)?;
    suballoc::free_block(tx, SubAlloc::Extent, b)?;
    tx.update_dinode(dir, |d, _| {
        d.i_dx_root = 0;
        d.i_dyn_features &= !INDEXED_DIR_FL;
        Ok(())
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::format::dir::{encode_empty_record, DirEntry};

    fn e(major: u32) -> DxEntry {
        DxEntry { dx_major_hash: major, dx_minor_hash: 0, dx_dirent_blk: 1 }
    }

    #[test]
    fn split_hash_takes_the_median_or_separates_a_shared_hash() {
        let sorted: Vec<DxEntry> = [5, 6, 7, 8, 9, 10].into_iter().map(e).collect();
        assert_eq!(split_hash(&sorted, 0, 3), Some(8), "first hash above the cluster's from the median on");
        assert_eq!(split_hash(&sorted, 9, 3), Some(10));
        assert_eq!(split_hash(&sorted, 10, 3), None);
        let same: Vec<DxEntry> = [7, 7, 7].into_iter().map(e).collect();
        assert_eq!(split_hash(&same, 0, 7), None, "the new name shares the full leaf's only hash");
        assert_eq!(split_hash(&same, 7, 9), Some(8), "the hash after the cluster's own");
        assert_eq!(split_hash(&same, 0, 3), Some(7), "the shared hash moves away from the new one");
        assert_eq!(split_hash(&same, 0, 9), Some(9), "the new hash moves away from the shared one");
        assert_eq!(split_hash(&[e(u32::MAX)], u32::MAX, 1), None);
        assert_eq!(split_hash(&[], 0, 1), None);
    }

    #[test]
    fn leaf_records_merge_only_when_contiguous_in_hash_and_on_disk() {
        let mut tree = ExtentList::new(3);
        tree.recs.push(ExtentRec::leaf(0, 1, 0, 100));
        assert!(add_leaf_record(&mut tree, 1, 108, 8), "follows cluster at 100 in hash and on disk");
        assert_eq!((tree.recs.len(), tree.recs[0].e_leaf_clusters()), (1, 2));
        assert!(add_leaf_record(&mut tree, 50, 116, 8), "a hash gap: a record of its own");
        assert!(add_leaf_record(&mut tree, 20, 124, 8), "inserted in hash order");
        let cpos: Vec<u32> = tree.recs.iter().map(|r| r.e_cpos).collect();
        assert_eq!(cpos, vec![0, 20, 50]);
        assert!(!add_leaf_record(&mut tree, 60, 900, 8), "the list is full");
        assert!(add_leaf_record(&mut tree, 51, 124, 8), "but a contiguous cluster still merges");
        assert_eq!(tree.recs[2].e_leaf_clusters(), 2);
    }

    #[test]
    fn max_hole_counts_free_records_and_slack_but_not_crumbs() {
        let mut area = vec![0u8; 128];
        encode_empty_record(&mut area, 0, 128).unwrap();
        assert_eq!(max_hole(&area, 1).unwrap(), 128);
        let mut a = DirEntry::new(5, b"abc", 1);
        a.rec_len = 116;
        a.encode_at(&mut area, 0).unwrap();
        encode_empty_record(&mut area, 116, 12).unwrap();
        assert_eq!(max_hole(&area, 1).unwrap(), 100, "the slack after \"abc\" beats a 12-byte free record");
        a.rec_len = 28;
        a.encode_at(&mut area, 0).unwrap();
        let mut b = DirEntry::new(6, &[b'b'; 80], 1);
        b.rec_len = 100;
        b.encode_at(&mut area, 28).unwrap();
        assert_eq!(max_hole(&area, 1).unwrap(), 0, "12 + 8 spare bytes take no name");
    }

    /// Checks every invariant of the module docs on directory `dir`, whose blocks were all
    /// written by us, against `names`; returns (leaf clusters, extent records) of its index.
    fn check_index(tx: &Tx, dir: u64, names: &std::collections::BTreeSet<Vec<u8>>) -> (u32, usize) {
        use std::collections::BTreeSet;
        let di = tx.dinode(dir).unwrap();
        let ix = load_root(tx, &di).unwrap();
        let s = seeds(tx);
        let mut records = Vec::new();
        let mut roomy = BTreeSet::new();
        let mut listed = BTreeSet::new();
        for blkno in dirwrite::dir_blocks(tx, &di).unwrap() {
            let block = tx.block(blkno, DIR_BLOCK).unwrap();
            let t = read_trailer(tx, dir, blkno).unwrap();
            let area = &block[..trailer_offset(block.len())];
            assert_eq!(t.db_free_rec_len, max_hole(area, blkno).unwrap(), "db_free_rec_len of block {blkno}");
            if t.db_free_rec_len != 0 {
                roomy.insert(blkno);
            }
            for item in dir_entries(area, false) {
                let (_, de) = item.unwrap();
                let (major, minor) = dx_hash_with(&de.name, s, HashChar::Signed);
                records.push(DxEntry { dx_major_hash: major, dx_minor_hash: minor, dx_dirent_blk: blkno });
                if de.name != b"." && de.name != b".." {
                    assert!(listed.insert(de.name.clone()), "a name twice");
                }
            }
        }
        assert_eq!(&listed, names, "the directory holds the model's names");
        let mut next = ix.root.dr_free_blk;
        let mut on_list = BTreeSet::new();
        while next != 0 {
            assert!(on_list.insert(next), "the free list loops at {next}");
            next = read_trailer(tx, dir, next).unwrap().db_free_next;
        }
        assert_eq!(on_list, roomy, "the free list holds exactly the blocks with room");

        let per = bpc(tx);
        let mut indexed = Vec::new();
        let (clusters, recs) = match &ix.root.body {
            DxRootBody::Inline(list) => {
                indexed.extend_from_slice(&list.de_entries);
                (0, 0)
            }
            DxRootBody::Extents(tree) => {
                assert_eq!(tree.l_tree_depth, 0);
                let mut total = 0;
                for (r, rec) in tree.recs.iter().enumerate() {
                    let len = u32::from(rec.e_leaf_clusters());
                    total += len;
                    let end = tree.recs.get(r + 1).map_or(1u64 << 32, |n| u64::from(n.e_cpos));
                    assert!(u64::from(rec.e_cpos) + u64::from(len) <= end, "records overlap");
                    for k in 0..len {
                        let cpos = u64::from(rec.e_cpos + k);
                        let upto = if k + 1 < len { cpos + 1 } else { end };
                        for b in 0..per {
                            let blkno = rec.e_blkno + u64::from(k * per + b);
                            let leaf = read_leaf(tx, blkno).unwrap();
                            for e in &leaf.dl_list.de_entries {
                                let h = u64::from(e.dx_major_hash);
                                assert!(cpos <= h && h < upto, "hash {h:#x} in the cluster for {cpos:#x}..{upto:#x}");
                                assert_eq!(dx_hash_block_index(e.dx_minor_hash, per), b, "minor hash picks the block");
                            }
                            indexed.extend_from_slice(&leaf.dl_list.de_entries);
                        }
                    }
                }
                (total, tree.recs.len())
            }
        };
        assert_eq!(ix.root.dr_clusters, clusters, "dr_clusters");
        assert_eq!(ix.root.dr_num_entries as usize, indexed.len(), "dr_num_entries");
        indexed.sort_unstable();
        records.sort_unstable();
        assert!(indexed == records, "the index holds one entry per record, naming its block");
        (clusters, recs)
    }

    /// The image opened writable in memory (no fsync per operation); write the device back
    /// to the image before the tools look at it.
    fn in_memory(img: &crate::fs::testkit::Img) -> (std::sync::Arc<crate::device::MemDevice>, crate::fs::Volume) {
        let dev = std::sync::Arc::new(crate::device::MemDevice::from_bytes(std::fs::read(&img.path).unwrap()));
        let vol = crate::fs::Volume::open(dev.clone(), crate::fs::MountOptions::writable()).unwrap();
        (dev, vol)
    }

    /// A random valid name of 1 to 255 bytes; never "." or "..", which every directory has.
    fn name(rng: &mut crate::testing::Rng) -> Vec<u8> {
        loop {
            let len = 1 + rng.below(255) as usize;
            let n: Vec<u8> =
                (0..len).map(|_| 1 + rng.below(255) as u8).map(|b| if b == b'/' { b'+' } else { b }).collect();
            if n != b"." && n != b".." {
                return n;
            }
        }
    }

    /// Names come and go in an indexed directory of 512-byte blocks, whose index moves out of
    /// its root into leaf clusters and splits them many times; after every batch the trailers,
    /// the free list, the entry counts and the index match the records exactly. Removing the
    /// directory frees its index: the allocators end where they started.
    #[test]
    fn index_and_free_list_stay_exact_as_names_come_and_go() {
        use crate::fs::testkit::Img;
        use std::collections::BTreeSet;
        let img = Img::tools(
            "dxw",
            96,
            &["-M", "local", "-b", "512", "-C", "4096", "-N", "1", "-J", "size=4M", "--fs-features=noinline-data"],
        );
        let before = (img.bitmap_counts("global_bitmap"), img.bitmap_counts("extent_alloc:0000"));
        let (dev, vol) = in_memory(&img);
        let seed = crate::testing::seed();
        println!("seed {seed}");
        let mut rng = crate::testing::Rng::new(seed);
        let dir = vol.mkdir(vol.root(), b"d", 0o755).unwrap();
        let mut names = BTreeSet::new();
        let mut most = (0, 0);
        for round in 0..12 {
            for _ in 0..250 {
                let n = name(&mut rng);
                if names.insert(n.clone()) {
                    vol.create(dir, &n, 0o644).unwrap();
                }
            }
            if round % 3 == 2 {
                let all: Vec<Vec<u8>> = names.iter().cloned().collect();
                for n in all.into_iter().filter(|_| rng.below(2) == 0) {
                    vol.unlink(dir, &n).unwrap();
                    names.remove(&n);
                }
            }
            let tx = vol.inner.begin().unwrap();
            let got = check_index(&tx, dir, &names);
            most = (most.0.max(got.0), most.1.max(got.1));
        }
        assert!(most.0 >= 4 && most.1 >= 2, "the index grew leaf clusters and split them: {most:?}");
        for n in names.clone() {
            vol.unlink(dir, &n).unwrap();
        }
        names.clear();
        check_index(&vol.inner.begin().unwrap(), dir, &names);
        vol.rmdir(vol.root(), b"d").unwrap();
        vol.close().unwrap();
        std::fs::write(&img.path, dev.to_bytes()).unwrap();
        img.assert_clean();
        assert_eq!((img.bitmap_counts("global_bitmap"), img.bitmap_counts("extent_alloc:0000")), before);
    }

    /// An inline directory too full of short names for an inline index moves into a block with
    /// its index in a leaf cluster at once (`ocfs2_expand_inline_dir` without `dx_inline`); a
    /// roomier one keeps its index in the root.
    #[test]
    fn inline_directories_become_indexed_block_directories() {
        use crate::fs::testkit::Img;
        use std::collections::BTreeSet;
        let img = Img::tools("dxi", 64, &["-M", "local", "-b", "512", "-C", "4096", "-N", "1", "-J", "size=4M"]);
        let (dev, vol) = in_memory(&img);
        for (dirname, len, leaves) in [(&b"short"[..], 2usize, 1u32), (&b"long"[..], 40, 0)] {
            let dir = vol.mkdir(vol.root(), dirname, 0o755).unwrap();
            let mut names = BTreeSet::new();
            let mut k = 0u32;
            while vol.metadata(dir).unwrap().size < 512 {
                let mut n = format!("{k:0len$}").into_bytes();
                n.truncate(len.max(2));
                vol.create(dir, &n, 0o644).unwrap();
                names.insert(n);
                k += 1;
            }
            let tx = vol.inner.begin().unwrap();
            let di = tx.dinode(dir).unwrap();
            assert!(di.is_indexed_dir() && !di.has_inline_data(), "{dirname:?} moved into a block");
            assert_eq!(check_index(&tx, dir, &names).0, leaves, "{dirname:?}: leaf clusters of the new index");
        }
        vol.close().unwrap();
        std::fs::write(&img.path, dev.to_bytes()).unwrap();
        img.assert_clean();
    }
}
