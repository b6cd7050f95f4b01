//! Changing an inode's extent tree inside a transaction: mapping a range of logical clusters
//! to new physical clusters, unmapping it, or changing its flags.
//!
//! An edit loads the whole tree (the root list in the inode, every extent block below it),
//! rewrites the leaf records it touches, and lays the tree out again:
//! - records that meet logically and physically with the same flags merge, up to the 65,535
//!   clusters a leaf record can count;
//! - when every record fits the inode's list the tree has depth 0 and no extent blocks;
//!   otherwise leaves keep the boundaries they had, a leaf that overflows at its end stays full
//!   and starts a new leaf (so that appends fill one leaf after another), one that overflows
//!   inside splits in halves (so that random inserts leave room on both sides), empty leaves
//!   are freed, and interior levels are packed above them until the root list holds the top
//!   level;
//! - along the leftmost path interior records start at cluster 0 and every interior record
//!   reaches the next one's start, the shape the kernel builds (`ocfs2_shift_tree_depth`,
//!   `ocfs2_adjust_adjacent_records`) and relies on when it searches a path.
//!
//! Only blocks whose bytes change are written, so an edit at one end of a large tree logs the
//! leaf, its parents and the inode. Extent blocks come from and go back to the slot's extent
//! suballocator; leaves chain through `h_next_leaf_blk` and the inode records the last leaf in
//! `i_last_eb_blk`.

use super::alloc::{suballoc, SubAlloc, SubBlock};
use super::error::{Error, Result};
use super::extent_map::MAX_TREE_DEPTH;
use super::meta::BlockKind;
use super::tx::Tx;
use crate::format::blockcheck::BlockCheck;
use crate::format::dinode::DINODE_ID2_OFFSET;
use crate::format::extent::{extent_recs_per_eb, ExtentBlock, ExtentList, ExtentRec};

/// The most clusters one leaf record counts (`e_leaf_clusters` is 16 bits).
const MAX_REC_CLUSTERS: u32 = u16::MAX as u32;

/// An extent block of the tree as loaded: where it lives and where it came from.
#[derive(Debug, Clone, Copy)]
struct Node {
    sub: SubBlock,
}

impl Node {
    fn of(eb: &ExtentBlock) -> Node {
        Node {
            sub: SubBlock {
                blkno: eb.h_blkno,
                slot: eb.h_suballoc_slot,
                bit: eb.h_suballoc_bit,
                loc: eb.h_suballoc_loc,
            },
        }
    }
}

/// One leaf: its block (none for the inode's own list at depth 0) and its records.
#[derive(Debug, Clone)]
struct Leaf {
    node: Option<Node>,
    recs: Vec<ExtentRec>,
    touched: bool,
    /// The last edit added records at the end of this leaf (a file growing): an overflow then
    /// leaves this leaf full and starts a new one, where otherwise the leaf splits in halves.
    appended: bool,
}

/// A run of logical clusters mapped somewhere: what an edit removed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Run {
    pub cpos: u32,
    pub clusters: u32,
    /// First block of the run.
    pub blkno: u64,
    pub flags: u8,
}

/// An inode's extent tree, loaded for editing.
pub(crate) struct Tree {
    owner: u64,
    root_count: u16,
    leaves: Vec<Leaf>,
    /// Interior extent blocks by level (index 0: the parents of leaves), in logical order.
    interior: Vec<Vec<Node>>,
    blocks_per_cluster: u64,
}

impl Tree {
    /// Loads the extent tree of inode `ino` as this transaction sees it.
    pub fn load(tx: &Tx, ino: u64) -> Result<Tree> {
        let block = tx.block(ino, BlockKind::Inode)?;
        let root = ExtentList::decode(&block[DINODE_ID2_OFFSET..]).map_err(|e| Error::format(ino, e))?;
        Tree::from_root(tx, ino, root)
    }

    /// Loads the tree whose root list `root` lives in a block of `owner` (an inode, or the
    /// root of a directory index).
    pub fn from_root(tx: &Tx, owner: u64, root: ExtentList) -> Result<Tree> {
        if root.l_tree_depth > MAX_TREE_DEPTH {
            return Err(Error::corrupt(owner, format!("extent tree depth {}", root.l_tree_depth)));
        }
        let mut tree = Tree {
            owner,
            root_count: root.l_count,
            leaves: Vec::new(),
            interior: vec![Vec::new(); usize::from(root.l_tree_depth.saturating_sub(1))],
            blocks_per_cluster: tx.vol.geo.blocks_per_cluster(),
        };
        if root.l_tree_depth == 0 {
            tree.leaves.push(Leaf { node: None, recs: root.recs, touched: false, appended: false });
        } else {
            for rec in &root.recs {
                tree.walk(tx, rec.e_blkno, root.l_tree_depth - 1)?;
            }
        }
        for leaf in &tree.leaves {
            for pair in leaf.recs.windows(2) {
                if u64::from(pair[1].e_cpos) < pair[0].end_cpos(0) {
                    return Err(Error::corrupt(owner, "overlapping extent records"));
                }
            }
        }
        Ok(tree)
    }

    fn walk(&mut self, tx: &Tx, blkno: u64, depth: u16) -> Result<()> {
        if self.leaves.len() + self.interior.iter().map(Vec::len).sum::<usize>() > 1 << 20 {
            return Err(Error::corrupt(self.owner, "extent tree with more than a million blocks"));
        }
        let block = tx.block(blkno, BlockKind::ExtentBlock)?;
        let eb = ExtentBlock::decode(&block).map_err(|e| Error::format(blkno, e))?;
        eb.validate(blkno, tx.vol.meta.fs_generation).map_err(|e| Error::format(blkno, e))?;
        if eb.h_list.l_tree_depth != depth {
            return Err(Error::corrupt(blkno, "extent block at the wrong depth"));
        }
        if depth == 0 {
            self.leaves.push(Leaf { node: Some(Node::of(&eb)), recs: eb.h_list.recs, touched: false, appended: false });
            return Ok(());
        }
        self.interior[usize::from(depth) - 1].push(Node::of(&eb));
        for rec in &eb.h_list.recs {
            self.walk(tx, rec.e_blkno, depth - 1)?;
        }
        Ok(())
    }

    /// Every leaf record in logical order.
    pub fn records(&self) -> impl Iterator<Item = &ExtentRec> {
        self.leaves.iter().flat_map(|l| l.recs.iter())
    }

    /// Every extent block of the tree, leaves and interior, with where it came from.
    pub fn blocks(&self) -> Vec<SubBlock> {
        let leaves = self.leaves.iter().filter_map(|l| l.node);
        leaves.chain(self.interior.iter().flatten().copied()).map(|n| n.sub).collect()
    }

    /// Clusters mapped by the tree (what `i_clusters` counts).
    pub fn clusters(&self) -> u64 {
        self.records().map(|r| u64::from(r.e_leaf_clusters())).sum()
    }

    /// One past the last mapped logical cluster (0 for an empty tree).
    pub fn end(&self) -> u64 {
        self.records().map(|r| r.end_cpos(0)).max().unwrap_or(0)
    }

    /// The mapped runs that overlap `[cpos, cpos + len)`, clipped to it.
    pub fn runs_in(&self, cpos: u32, len: u32) -> Vec<Run> {
        let (a, b) = (u64::from(cpos), u64::from(cpos) + u64::from(len));
        let mut out = Vec::new();
        for r in self.records() {
            let (s, e) = (u64::from(r.e_cpos), r.end_cpos(0));
            if e <= a || s >= b {
                continue;
            }
            let from = s.max(a);
            let to = e.min(b);
            out.push(Run {
                cpos: from as u32,
                clusters: (to - from) as u32,
                blkno: r.e_blkno + (from - s) * self.blocks_per_cluster,
                flags: r.e_flags(),
            });
        }
        out
    }

    /// Maps `[cpos, cpos + len)` to the clusters starting at block `blkno` with `flags`, or
    /// unmaps it (`to` is `None`); returns what the range was mapped to before. The caller frees
    /// the returned runs when they are no longer used.
    pub fn set_range(&mut self, cpos: u32, len: u32, to: Option<(u64, u8)>) -> Result<Vec<Run>> {
        if len == 0 {
            return Ok(Vec::new());
        }
        let (a, b) = (u64::from(cpos), u64::from(cpos) + u64::from(len));
        if b > u64::from(u32::MAX) {
            return Err(Error::FileTooLarge(format!("cluster {b} of inode {}", self.owner)));
        }
        let per = self.blocks_per_cluster;
        let mut removed = Vec::new();
        // The leaf whose records are nearest before `a`: the new record goes there.
        let mut target = 0;
        for (i, leaf) in self.leaves.iter_mut().enumerate() {
            if leaf.recs.first().is_some_and(|r| u64::from(r.e_cpos) < a) {
                target = i;
            }
            if !leaf.recs.iter().any(|r| r.end_cpos(0) > a && u64::from(r.e_cpos) < b) {
                continue;
            }
            leaf.touched = true;
            let mut kept = Vec::with_capacity(leaf.recs.len() + 1);
            for r in leaf.recs.drain(..) {
                let (s, e) = (u64::from(r.e_cpos), r.end_cpos(0));
                if e <= a || s >= b {
                    kept.push(r);
                    continue;
                }
                if s < a {
                    kept.push(ExtentRec::leaf(r.e_cpos, (a - s) as u16, r.e_flags(), r.e_blkno));
                }
                let from = s.max(a);
                let to_end = e.min(b);
                removed.push(Run {
                    cpos: from as u32,
                    clusters: (to_end - from) as u32,
                    blkno: r.e_blkno + (from - s) * per,
                    flags: r.e_flags(),
                });
                if e > b {
                    kept.push(ExtentRec::leaf(b as u32, (e - b) as u16, r.e_flags(), r.e_blkno + (b - s) * per));
                }
            }
            leaf.recs = kept;
        }
        if let Some((blkno, flags)) = to {
            let leaf = &mut self.leaves[target];
            leaf.touched = true;
            let mut at = leaf.recs.partition_point(|r| u64::from(r.e_cpos) < a);
            leaf.appended = at == leaf.recs.len();
            let mut done = 0u32;
            while done < len {
                let n = (len - done).min(MAX_REC_CLUSTERS);
                let rec = ExtentRec::leaf(cpos + done, n as u16, flags, blkno + u64::from(done) * per);
                leaf.recs.insert(at, rec);
                at += 1;
                done += n;
            }
        }
        for leaf in self.leaves.iter_mut().filter(|l| l.touched) {
            merge_adjacent(&mut leaf.recs, per);
        }
        Ok(removed)
    }

    /// Writes the edited tree back: lays it out (see the module documentation), allocating and
    /// freeing extent blocks, and updates the inode's list, `i_last_eb_blk` and `i_clusters`.
    pub fn store(self, tx: &mut Tx) -> Result<()> {
        let owner = self.owner;
        let (list, last_eb, clusters) = self.lay_out(tx)?;
        store_root(tx, owner, &list, last_eb, clusters)
    }

    /// Writes the extent blocks of the edited tree and returns what its owner records: the
    /// root list, the last leaf block (0 at depth 0) and the clusters mapped.
    pub fn lay_out(mut self, tx: &mut Tx) -> Result<(ExtentList, u64, u32)> {
        let bs = tx.vol.geo.block_size as usize;
        let eb_cap = usize::from(extent_recs_per_eb(bs));
        let root_cap = usize::from(self.root_count);
        if eb_cap < 2 || root_cap < 1 {
            return Err(Error::corrupt(self.owner, "extent lists too small to hold a tree"));
        }
        let total: usize = self.leaves.iter().map(|l| l.recs.len()).sum();
        let clusters = self.clusters();
        let i_clusters = u32::try_from(clusters).map_err(|_| Error::corrupt(self.owner, "too many clusters"))?;
        let owner = self.owner;
        if total <= root_cap {
            let recs: Vec<ExtentRec> = self.leaves.iter().flat_map(|l| l.recs.iter().copied()).collect();
            for node in self.leaves.iter().filter_map(|l| l.node).chain(self.interior.iter().flatten().copied()) {
                release(tx, node)?;
            }
            return Ok((list_of(0, self.root_count, recs), 0, i_clusters));
        }

        // Leaves: drop the empty ones, split the full ones to the right.
        let mut leaves: Vec<Leaf> = Vec::with_capacity(self.leaves.len() + 1);
        for mut leaf in std::mem::take(&mut self.leaves) {
            if leaf.recs.is_empty() {
                if let Some(node) = leaf.node {
                    release(tx, node)?;
                }
                continue;
            }
            while leaf.recs.len() > eb_cap {
                let at = if leaf.appended { eb_cap } else { leaf.recs.len().div_ceil(2) };
                let rest = leaf.recs.split_off(at);
                leaf.touched = true;
                let appended = leaf.appended;
                leaves.push(leaf);
                leaf = Leaf { node: None, recs: rest, touched: true, appended };
            }
            leaves.push(leaf);
        }
        for leaf in &mut leaves {
            if leaf.node.is_none() {
                leaf.node = Some(claim(tx)?);
                leaf.touched = true;
            }
        }
        let gen = tx.vol.meta.fs_generation;
        let eb_count = extent_recs_per_eb(bs);
        for i in 0..leaves.len() {
            let next = leaves.get(i + 1).and_then(|l| l.node).map_or(0, |n| n.sub.blkno);
            let leaf = &leaves[i];
            let node = leaf.node.expect("every leaf has a block now");
            let list = list_of(0, eb_count, leaf.recs.clone());
            write_eb(tx, node, gen, next, list)?;
        }
        let last_leaf = leaves.last().and_then(|l| l.node).map_or(0, |n| n.sub.blkno);

        // Interior levels, bottom up, reusing the blocks each level had.
        let mut children: Vec<(u64, u64, u64)> = leaves
            .iter()
            .map(|l| {
                let first = l.recs.first().map_or(0, |r| u64::from(r.e_cpos));
                let end = l.recs.last().map_or(0, |r| r.end_cpos(0));
                (first, end, l.node.expect("block assigned").sub.blkno)
            })
            .collect();
        let mut depth: u16 = 1;
        let mut old_levels = std::mem::take(&mut self.interior).into_iter();
        while children.len() > root_cap {
            if depth >= MAX_TREE_DEPTH {
                return Err(Error::NoSpace(format!("inode {owner} has too many extents for the deepest tree")));
            }
            let mut old = old_levels.next().unwrap_or_default().into_iter();
            let mut parents = Vec::with_capacity(children.len().div_ceil(eb_cap));
            for (k, group) in children.chunks(eb_cap).enumerate() {
                let node = match old.next() {
                    Some(n) => n,
                    None => claim(tx)?,
                };
                let recs = interior_records(group, k == 0);
                let list = list_of(depth, eb_count, recs);
                write_eb(tx, node, gen, 0, list)?;
                let first = if k == 0 { 0 } else { group[0].0 };
                let end = group.last().map_or(0, |c| c.1);
                parents.push((first, end, node.sub.blkno));
            }
            for node in old {
                release(tx, node)?;
            }
            children = parents;
            depth += 1;
        }
        for level in old_levels {
            for node in level {
                release(tx, node)?;
            }
        }
        Ok((list_of(depth, self.root_count, interior_records(&children, true)), last_leaf, i_clusters))
    }
}

fn list_of(depth: u16, count: u16, recs: Vec<ExtentRec>) -> ExtentList {
    let mut list = ExtentList::new(count);
    list.l_tree_depth = depth;
    list.recs = recs;
    list
}

/// Interior records over `children` (first cpos, end, block): each reaches the next one's
/// start; on the leftmost path the first starts at 0.
fn interior_records(children: &[(u64, u64, u64)], leftmost: bool) -> Vec<ExtentRec> {
    let mut recs = Vec::with_capacity(children.len());
    for (i, &(first, end, blkno)) in children.iter().enumerate() {
        let start = if i == 0 && leftmost { 0 } else { first };
        let stop = children.get(i + 1).map_or(end, |c| c.0);
        recs.push(ExtentRec::interior(start as u32, stop.saturating_sub(start) as u32, blkno));
    }
    recs
}

/// Merges records that continue each other logically and physically with equal flags.
fn merge_adjacent(recs: &mut Vec<ExtentRec>, per: u64) {
    let mut out: Vec<ExtentRec> = Vec::with_capacity(recs.len());
    for r in recs.drain(..) {
        if r.e_leaf_clusters() == 0 {
            continue;
        }
        if let Some(last) = out.last_mut() {
            let len = u64::from(last.e_leaf_clusters());
            let sum = u32::from(last.e_leaf_clusters()) + u32::from(r.e_leaf_clusters());
            if last.end_cpos(0) == u64::from(r.e_cpos)
                && last.e_blkno + len * per == r.e_blkno
                && last.e_flags() == r.e_flags()
                && sum <= MAX_REC_CLUSTERS
            {
                last.set_leaf_clusters(sum as u16);
                continue;
            }
        }
        out.push(r);
    }
    *recs = out;
}

fn claim(tx: &mut Tx) -> Result<Node> {
    let sub = suballoc::claim_block(tx, SubAlloc::Extent)?;
    tx.new_block(sub.blkno, BlockKind::ExtentBlock)?;
    Ok(Node { sub })
}

fn release(tx: &mut Tx, node: Node) -> Result<()> {
    tx.free_block(node.sub.blkno)?;
    suballoc::free_block(tx, SubAlloc::Extent, node.sub)
}

/// Writes extent block `node` with `list`, logging it only when its bytes change.
fn write_eb(tx: &mut Tx, node: Node, gen: u32, next_leaf: u64, list: ExtentList) -> Result<()> {
    let blkno = node.sub.blkno;
    let old = tx.block(blkno, BlockKind::ExtentBlock)?;
    let h_check = if old.iter().all(|&b| b == 0) {
        BlockCheck::default()
    } else {
        ExtentBlock::decode(&old).map(|eb| eb.h_check).unwrap_or_default()
    };
    let eb = ExtentBlock {
        h_check,
        h_suballoc_slot: node.sub.slot,
        h_suballoc_bit: node.sub.bit,
        h_fs_generation: gen,
        h_blkno: blkno,
        h_suballoc_loc: node.sub.loc,
        h_next_leaf_blk: next_leaf,
        h_list: list,
    };
    let mut new = old.to_vec();
    eb.encode(&mut new).map_err(|e| Error::format(blkno, e))?;
    if new[..] != old[..] {
        tx.block_mut(blkno, BlockKind::ExtentBlock)?.copy_from_slice(&new);
    }
    Ok(())
}

fn store_root(tx: &mut Tx, ino: u64, list: &ExtentList, last_eb: u64, clusters: u32) -> Result<()> {
    tx.update_dinode(ino, |d, block| {
        list.encode(&mut block[DINODE_ID2_OFFSET..]).map_err(|e| Error::format(ino, e))?;
        d.i_last_eb_blk = last_eb;
        d.i_clusters = clusters;
        Ok(())
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn merging_joins_only_contiguous_runs_with_equal_flags() {
        let mut recs = vec![
            ExtentRec::leaf(0, 2, 0, 100),
            ExtentRec::leaf(2, 3, 0, 108),
            ExtentRec::leaf(5, 1, 0, 120),
            ExtentRec::leaf(6, 1, 1, 124),
            ExtentRec::leaf(8, 1, 0, 128),
        ];
        merge_adjacent(&mut recs, 4);
        assert_eq!(recs.len(), 3, "{recs:?}");
        assert_eq!(recs[0].e_leaf_clusters(), 6, "three runs that meet become one");
        assert!(recs[1].is_unwritten() && recs[2].e_cpos == 8, "other flags and a gap stay apart");
        let mut big = vec![ExtentRec::leaf(0, u16::MAX, 0, 0), ExtentRec::leaf(u32::from(u16::MAX), 1, 0, 65535)];
        merge_adjacent(&mut big, 1);
        assert_eq!(big.len(), 2, "a record never counts more than 65,535 clusters");
    }

    #[test]
    fn interior_records_cover_up_to_the_next_child() {
        let recs = interior_records(&[(3, 10, 50), (12, 20, 51), (30, 31, 52)], true);
        assert_eq!((recs[0].e_cpos, recs[0].e_int_clusters), (0, 12));
        assert_eq!((recs[1].e_cpos, recs[1].e_int_clusters), (12, 18));
        assert_eq!((recs[2].e_cpos, recs[2].e_int_clusters), (30, 1));
        let inner = interior_records(&[(40, 45, 60)], false);
        assert_eq!((inner[0].e_cpos, inner[0].e_int_clusters), (40, 5));
    }
}
