//! Name lookup through the hash index of an indexed directory.
//!
//! The index maps a name's (major, minor) hash to the entry block that holds it. Small indexes
//! sit inline in the dx root; larger ones are an extent tree of leaf clusters keyed by the
//! major hash, with the minor hash choosing the block inside the cluster (`ocfs2_dx_dir_lookup`).

use super::dir::find_in_block;
use super::error::{Error, Result};
use super::extent_map::descend;
use super::inode::InodeView;
use super::meta::BlockKind;
use super::volume::VolumeInner;
use crate::format::dx::{
    dx_hash_block_index, dx_hash_with, dx_seeds, DxEntryList, DxLeaf, DxRootBlock, DxRootBody, HashChar,
};
use crate::format::extent::ExtentList;

/// Looks `name` up in the indexed directory seen in `view`.
pub(crate) fn lookup(vol: &VolumeInner, view: &InodeView, name: &[u8]) -> Result<Option<u64>> {
    let dir = view.dinode.i_blkno;
    let root_blkno = view.dinode.i_dx_root;
    let block = vol.meta.read(root_blkno, BlockKind::DxRoot)?;
    let root = DxRootBlock::decode(&block).map_err(|e| Error::format(root_blkno, e))?;
    root.check_owner(root_blkno, vol.meta.fs_generation, dir).map_err(|e| Error::format(root_blkno, e))?;
    let seeds = dx_seeds(vol.sb.s_dx_seed, vol.sb.s_uuid_hash);
    // Kernels differ in how they widen bytes >= 0x80 into the hash (see `HashChar`); names
    // made only of ASCII hash the same both ways, so the second probe costs nothing for them.
    let ascii = name.is_ascii();
    for sign in [HashChar::Signed, HashChar::Unsigned] {
        if sign == HashChar::Unsigned && ascii {
            break;
        }
        let hash = dx_hash_with(name, seeds, sign);
        let found = match &root.body {
            DxRootBody::Inline(list) => search_list(vol, list, hash, name)?,
            DxRootBody::Extents(tree) => search_tree(vol, dir, tree, hash, name)?,
        };
        if found.is_some() {
            return Ok(found);
        }
    }
    Ok(None)
}

/// Checks every entry block the list names for `hash`.
fn search_list(vol: &VolumeInner, list: &DxEntryList, hash: (u32, u32), name: &[u8]) -> Result<Option<u64>> {
    for e in &list.de_entries {
        if (e.dx_major_hash, e.dx_minor_hash) != hash {
            continue;
        }
        if let Some(ino) = find_in_block(vol, e.dx_dirent_blk, name)? {
            return Ok(Some(ino));
        }
    }
    Ok(None)
}

/// Finds the leaf block for `hash` in the index tree and searches it.
fn search_tree(vol: &VolumeInner, dir: u64, tree: &ExtentList, hash: (u32, u32), name: &[u8]) -> Result<Option<u64>> {
    let (major, minor) = hash;
    // The leaf cluster is the one mapped at cpos = major hash, or the last cluster of the
    // extent that starts at or before it.
    let Some((blkno_of_cluster, _)) = leaf_cluster(vol, dir, tree, major)? else {
        return Ok(None);
    };
    let per_cluster = vol.geo.blocks_per_cluster() as u32;
    let leaf_blkno = blkno_of_cluster
        .checked_add(u64::from(dx_hash_block_index(minor, per_cluster)))
        .ok_or_else(|| Error::corrupt(dir, "index leaf beyond the address space"))?;
    let block = vol.meta.read(leaf_blkno, BlockKind::DxLeaf)?;
    let leaf = DxLeaf::decode(&block).map_err(|e| Error::format(leaf_blkno, e))?;
    leaf.check_owner(leaf_blkno, vol.meta.fs_generation).map_err(|e| Error::format(leaf_blkno, e))?;
    search_list(vol, &leaf.dl_list, hash, name)
}

/// The first block of the index cluster responsible for `major`: the cluster at `major` in
/// the last leaf extent starting at or before it, or that extent's last cluster when `major`
/// lies past its end (`ocfs2_dx_dir_lookup_rec`).
fn leaf_cluster(vol: &VolumeInner, dir: u64, tree: &ExtentList, major: u32) -> Result<Option<(u64, u32)>> {
    let leaf = match descend(vol, dir, tree, major)? {
        Ok(leaf) => leaf,
        Err(_) => return Ok(None),
    };
    let Some(rec) = leaf.list.recs.iter().rev().find(|r| r.e_cpos <= major) else {
        return Ok(None);
    };
    let len = u32::from(rec.e_leaf_clusters());
    if len == 0 {
        return Err(Error::corrupt(leaf.at, "indexed directory leaf extent of zero clusters"));
    }
    let off = (major - rec.e_cpos).min(len - 1);
    let blkno = rec
        .e_blkno
        .checked_add(vol.geo.cluster_to_block(u64::from(off)))
        .ok_or_else(|| Error::corrupt(leaf.at, "index extent points past the end of the address space"))?;
    Ok(Some((blkno, rec.e_cpos + off)))
}
