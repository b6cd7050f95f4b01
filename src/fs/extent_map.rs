//! Finding where a file's clusters live: lookups in an extent tree of any depth.
//!
//! Interior records cover `[e_cpos, e_cpos + e_int_clusters)` and point at extent blocks one
//! level down; leaf records cover `[e_cpos, e_cpos + e_leaf_clusters)` of data. A logical cluster
//! that no leaf covers is a hole. Every step checks what it reads (signature, block number,
//! generation, depth), so a corrupt tree ends in an error, never a loop.

use super::error::{Error, Result};
use super::meta::BlockKind;
use super::volume::VolumeInner;
use crate::format::extent::{ExtentBlock, ExtentList};

/// The deepest tree the kernel builds (`OCFS2_MAX_PATH_DEPTH`).
pub(crate) const MAX_TREE_DEPTH: u16 = 5;

/// What lives at a logical cluster.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Mapping {
    /// Allocated: the first block of the asked cluster, and how many clusters of the same
    /// extent follow it (the asked one included).
    Data { blkno: u64, clusters: u32, unwritten: bool },
    /// Not allocated: how many clusters from the asked one on are certainly unallocated.
    Hole { clusters: u32 },
}

/// Index of the last record whose start is at or before `cpos`.
fn covering_index(starts: impl Iterator<Item = u32>, cpos: u32) -> Option<usize> {
    let mut found = None;
    for (i, start) in starts.enumerate() {
        if start <= cpos {
            found = Some(i);
        } else {
            break;
        }
    }
    found
}

/// The leaf that would hold `cpos`, reached from `root`.
pub(crate) struct Leaf {
    pub list: ExtentList,
    /// Block holding the leaf list (`owner` for a tree of depth 0).
    pub at: u64,
    /// Exclusive upper bound on where the leaf's authority ends, from the interior records.
    pub bound: u64,
}

/// Walks from `root` down to the leaf covering `cpos`. `None` means `cpos` lies before every
/// record of an interior level, with the start of the first record as the bound.
pub(crate) fn descend(
    vol: &VolumeInner,
    owner: u64,
    root: &ExtentList,
    cpos: u32,
) -> Result<std::result::Result<Leaf, u64>> {
    let mut list = root.clone();
    let mut depth = list.l_tree_depth;
    if depth > MAX_TREE_DEPTH {
        return Err(Error::corrupt(owner, format!("extent tree depth {depth} exceeds {MAX_TREE_DEPTH}")));
    }
    let mut bound = u64::from(u32::MAX) + 1;
    let mut at = owner;
    while depth > 0 {
        let recs = &list.recs;
        let Some(i) = covering_index(recs.iter().map(|r| r.e_cpos), cpos) else {
            return Ok(Err(recs.first().map_or(bound, |r| u64::from(r.e_cpos).min(bound))));
        };
        if let Some(next) = recs.get(i + 1) {
            bound = bound.min(u64::from(next.e_cpos));
        }
        let child = recs[i].e_blkno;
        let block = vol.meta.read(child, BlockKind::ExtentBlock)?;
        let eb = ExtentBlock::decode(&block).map_err(|e| Error::format(child, e))?;
        eb.validate(child, vol.meta.fs_generation).map_err(|e| Error::format(child, e))?;
        if eb.h_list.l_tree_depth + 1 != depth {
            return Err(Error::corrupt(
                child,
                format!(
                    "extent block at depth {} under a node of depth {depth} (from block {at})",
                    eb.h_list.l_tree_depth
                ),
            ));
        }
        at = child;
        list = eb.h_list;
        depth -= 1;
    }
    Ok(Ok(Leaf { list, at, bound }))
}

/// Looks up logical cluster `cpos` in the tree rooted at `root`, which belongs to `owner`.
pub(crate) fn map_cluster(vol: &VolumeInner, owner: u64, root: &ExtentList, cpos: u32) -> Result<Mapping> {
    let leaf = match descend(vol, owner, root, cpos)? {
        Ok(leaf) => leaf,
        Err(next) => return Ok(hole(cpos, next)),
    };
    for rec in &leaf.list.recs {
        let len = u32::from(rec.e_leaf_clusters());
        if len == 0 {
            continue;
        }
        let start = rec.e_cpos;
        if cpos < start {
            return Ok(hole(cpos, u64::from(start).min(leaf.bound)));
        }
        let off = cpos - start;
        if off < len {
            let blkno = rec
                .e_blkno
                .checked_add(vol.geo.cluster_to_block(u64::from(off)))
                .ok_or_else(|| Error::corrupt(leaf.at, "extent record points past the end of the address space"))?;
            return Ok(Mapping::Data { blkno, clusters: len - off, unwritten: rec.is_unwritten() });
        }
    }
    Ok(hole(cpos, leaf.bound))
}

fn hole(cpos: u32, bound: u64) -> Mapping {
    let clusters = bound.saturating_sub(u64::from(cpos)).clamp(1, u64::from(u32::MAX)) as u32;
    Mapping::Hole { clusters }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn covering_index_picks_last_start_not_after_cpos() {
        assert_eq!(covering_index([0u32, 10, 20].into_iter(), 15), Some(1));
        assert_eq!(covering_index([5u32, 10].into_iter(), 3), None);
        assert_eq!(covering_index([0u32, 10].into_iter(), 99), Some(1));
    }
}
