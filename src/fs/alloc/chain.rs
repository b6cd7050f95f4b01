//! The chain allocator shared by the global cluster bitmap and the block suballocators.
//!
//! An allocator inode (`OCFS2_CHAIN_FL`) holds a chain list; each chain record heads a linked
//! list of group descriptors and sums their bits. Claiming follows the kernel's
//! `ocfs2_claim_suballoc_bits`: an optional hinted group first, then the chain with the most
//! free bits, then every other chain with free bits, taking in each chain the first group that
//! has a run of at least `min` free bits (the first run of `wanted`, else the longest one).
//!
//! Invariants kept by every claim and free, in one transaction: the group's bitmap,
//! `bg_free_bits_count`, the chain record's `c_free` and the inode's `i_used` change together,
//! so `sum(c_free) == i_total - i_used` and each `c_free` equals the free bits of its groups.
//! `bg_contig_free_bits` is the longest free run for cluster groups and 0 (unknown) for block
//! groups, as the kernel keeps it. Freeing a bit that is already free is reported as
//! corruption, never ignored.

use super::super::error::{Error, Result};
use super::super::meta::BlockKind;
use super::super::tx::Tx;
use crate::format::chain::ChainList;
use crate::format::dinode::{Dinode, DINODE_ID2_OFFSET};
use crate::format::group::GroupDesc;
use crate::format::{BITMAP_FL, CHAIN_FL};
use std::collections::HashSet;

/// An allocator inode as a transaction sees it.
#[derive(Debug, Clone)]
pub(crate) struct Chain {
    pub blkno: u64,
    pub di: Dinode,
    pub cl: ChainList,
}

impl Chain {
    /// Free bits (`i_total - i_used`).
    pub fn free_bits(&self) -> u32 {
        self.di.i_total().saturating_sub(self.di.i_used())
    }

    /// Bits in one full group.
    pub fn bits_per_group(&self) -> u32 {
        self.cl.bits_per_group()
    }
}

/// Reads and checks the allocator inode at `blkno`.
pub(crate) fn load(tx: &Tx, blkno: u64) -> Result<Chain> {
    let di = tx.dinode(blkno)?;
    if di.i_flags & (CHAIN_FL | BITMAP_FL) != (CHAIN_FL | BITMAP_FL) {
        return Err(Error::corrupt(blkno, "allocator inode is not a chain allocator"));
    }
    let block = tx.block(blkno, BlockKind::Inode)?;
    let cl = ChainList::decode(&block[DINODE_ID2_OFFSET..]).map_err(|e| Error::format(blkno, e))?;
    if cl.cl_cpg == 0 || cl.cl_bpc == 0 {
        return Err(Error::corrupt(blkno, "chain allocator with empty groups"));
    }
    // A suballocator may have no group yet (mkfs leaves extent_alloc:NNNN empty).
    let (chain_free, chain_total) = cl.totals();
    if chain_total != u64::from(di.i_total()) || chain_free != u64::from(di.i_total() - di.i_used().min(di.i_total())) {
        return Err(Error::corrupt(
            blkno,
            format!(
                "chains hold {chain_free} free of {chain_total} bits, the inode says {} used of {}",
                di.i_used(),
                di.i_total()
            ),
        ));
    }
    if di.i_used() > di.i_total() {
        return Err(Error::corrupt(blkno, format!("allocator uses {} of {} bits", di.i_used(), di.i_total())));
    }
    Ok(Chain { blkno, di, cl })
}

/// Writes the allocator inode back into the transaction.
pub(crate) fn store(tx: &mut Tx, chain: &Chain) -> Result<()> {
    let blkno = chain.blkno;
    let block = tx.block_mut(blkno, BlockKind::Inode)?;
    chain.di.encode(block).map_err(|e| Error::format(blkno, e))?;
    chain.cl.encode(&mut block[DINODE_ID2_OFFSET..]).map_err(|e| Error::format(blkno, e))
}

/// Reads group descriptor `blkno` of `chain` and checks it as `ocfs2_read_group_descriptor`
/// does: signature, counts, block number, generation, parent, size and chain index.
pub(crate) fn read_group(tx: &Tx, chain: &Chain, blkno: u64) -> Result<GroupDesc> {
    if blkno == 0 {
        return Err(Error::corrupt(chain.blkno, "chain points at block 0"));
    }
    let block = tx.block(blkno, BlockKind::GroupDesc)?;
    let gd = GroupDesc::decode(&block).map_err(|e| Error::format(blkno, e))?;
    gd.validate(blkno, tx.vol.meta.fs_generation).map_err(|e| Error::format(blkno, e))?;
    if gd.bg_parent_dinode != chain.blkno {
        return Err(Error::corrupt(
            blkno,
            format!("group belongs to inode {}, not to allocator {}", gd.bg_parent_dinode, chain.blkno),
        ));
    }
    if u32::from(gd.bg_bits) > chain.bits_per_group() {
        return Err(Error::corrupt(
            blkno,
            format!("group of {} bits in a chain of {}-bit groups", gd.bg_bits, chain.bits_per_group()),
        ));
    }
    if usize::from(gd.bg_chain) >= chain.cl.recs.len() {
        return Err(Error::corrupt(blkno, format!("group on chain {} of {}", gd.bg_chain, chain.cl.recs.len())));
    }
    Ok(gd)
}

/// Writes group descriptor `gd` back into the transaction.
pub(crate) fn store_group(tx: &mut Tx, gd: &GroupDesc) -> Result<()> {
    let blkno = gd.bg_blkno;
    let block = tx.block_mut(blkno, BlockKind::GroupDesc)?;
    gd.encode(block).map_err(|e| Error::format(blkno, e))
}

/// How the bits of an allocator map to space.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Space {
    /// The global bitmap: one bit per cluster; `volume_clusters` bounds the last group.
    Clusters { volume_clusters: u32, first_group: u64 },
    /// A block suballocator: one bit per block.
    Blocks,
}

/// A run of bits claimed from one group.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Claimed {
    /// The group descriptor's block.
    pub group: u64,
    pub chain: u16,
    pub bit: u32,
    pub count: u32,
    /// Free bits the group has left.
    pub left: u32,
}

/// The first cluster a cluster group describes.
pub(crate) fn group_first_cluster(tx: &Tx, first_group: u64, group: u64) -> u32 {
    if group == first_group {
        0
    } else {
        (group >> (tx.vol.geo.cluster_bits - tx.vol.geo.block_bits)) as u32
    }
}

/// Finds a run of free bits among the first `total` bits of `gd`: the first run of `wanted`,
/// else the longest. `blocked` marks free bits that must not be handed out.
fn find_clear_bits(gd: &GroupDesc, total: u32, wanted: u32, blocked: &dyn Fn(u32) -> bool) -> Option<(u32, u32)> {
    let (mut best_off, mut best_len) = (0u32, 0u32);
    let (mut start, mut found) = (0u32, 0u32);
    let mut bit = 0u32;
    while bit < total {
        if bit & 7 == 0 && bit + 8 <= total && gd.bitmap.get((bit / 8) as usize) == Some(&0xFF) {
            found = 0;
            bit += 8;
            continue;
        }
        if gd.test_bit(bit) || blocked(bit) {
            found = 0;
        } else {
            if found == 0 {
                start = bit;
            }
            found += 1;
            if found > best_len {
                best_len = found;
                best_off = start;
            }
            if found == wanted {
                break;
            }
        }
        bit += 1;
    }
    (best_len > 0).then_some((best_off, best_len))
}

/// Bits of `gd` a search may use: for cluster groups, none past the volume's last cluster
/// (a failed resize may have left the last group longer than the volume).
fn usable_bits(tx: &Tx, space: Space, gd: &GroupDesc) -> u32 {
    let bits = u32::from(gd.bg_bits);
    match space {
        Space::Blocks => bits,
        Space::Clusters { volume_clusters, first_group } => {
            let first = group_first_cluster(tx, first_group, gd.bg_blkno);
            bits.min(volume_clusters.saturating_sub(first))
        }
    }
}

/// Keeps `bg_contig_free_bits` as the kernel does: exact for cluster groups, unknown (0) for
/// block groups, which hand out one bit at a time.
fn update_contig(space: Space, gd: &mut GroupDesc) {
    gd.bg_contig_free_bits = match space {
        Space::Clusters { .. } => gd.longest_free_run() as u16,
        Space::Blocks => 0,
    };
}

/// Searches one group for a run; `None` when it has none of at least `min` bits.
fn search_group(tx: &Tx, space: Space, gd: &GroupDesc, wanted: u32, min: u32) -> Option<(u32, u32)> {
    if gd.bg_free_bits_count == 0 {
        return None;
    }
    let total = usable_bits(tx, space, gd);
    let first_cluster = match space {
        Space::Clusters { first_group, .. } => Some(group_first_cluster(tx, first_group, gd.bg_blkno)),
        Space::Blocks => None,
    };
    let blocked = |bit: u32| match first_cluster {
        Some(first) if tx.has_freed_clusters() => tx.cluster_freed_here(first + bit),
        _ => false,
    };
    let (off, len) = find_clear_bits(gd, total, wanted, &blocked)?;
    (len >= min).then_some((off, len))
}

/// Marks `count` bits from `bit` used in `gd` and the allocator's counters.
fn take_bits(tx: &mut Tx, space: Space, chain: &mut Chain, mut gd: GroupDesc, bit: u32, count: u32) -> Result<Claimed> {
    let blkno = gd.bg_blkno;
    let free = u32::from(gd.bg_free_bits_count);
    if count > free {
        return Err(Error::corrupt(blkno, format!("claiming {count} bits of a group with {free} free")));
    }
    for b in bit..bit + count {
        if gd.test_bit(b) {
            return Err(Error::corrupt(blkno, format!("bit {b} is already in use")));
        }
        gd.set_bit(b).map_err(|e| Error::format(blkno, e))?;
    }
    gd.bg_free_bits_count = (free - count) as u16;
    update_contig(space, &mut gd);
    let idx = usize::from(gd.bg_chain);
    let rec = &mut chain.cl.recs[idx];
    rec.c_free = rec
        .c_free
        .checked_sub(count)
        .ok_or_else(|| Error::corrupt(chain.blkno, format!("chain {idx} has fewer free bits than its groups")))?;
    let used = chain.di.i_used() + count;
    let total = chain.di.i_total();
    if used > total {
        return Err(Error::corrupt(chain.blkno, format!("allocator would use {used} of {total} bits")));
    }
    chain.di.set_bitmap1(used, total);
    store_group(tx, &gd)?;
    store(tx, chain)?;
    Ok(Claimed { group: blkno, chain: gd.bg_chain, bit, count, left: u32::from(gd.bg_free_bits_count) })
}

/// Claims between `min` and `wanted` contiguous bits from the allocator at `alloc`, trying
/// group `hint` first. Fails with [`Error::NoSpace`] when no group has a run of `min` bits.
pub(crate) fn claim(
    tx: &mut Tx,
    alloc: u64,
    space: Space,
    wanted: u32,
    min: u32,
    hint: Option<u64>,
) -> Result<Claimed> {
    debug_assert!(min >= 1 && min <= wanted);
    let mut chain = load(tx, alloc)?;
    if chain.free_bits() < min || chain.cl.recs.is_empty() {
        return Err(Error::NoSpace(format!("allocator {alloc} has {} free bits", chain.free_bits())));
    }
    if let Some(h) = hint.filter(|&h| h != 0) {
        let gd = read_group(tx, &chain, h)?;
        if let Some((off, len)) = search_group(tx, space, &gd, wanted, min) {
            return take_bits(tx, space, &mut chain, gd, off, len);
        }
    }
    let victim =
        (0..chain.cl.recs.len()).fold(
            0,
            |best, i| {
                if chain.cl.recs[i].c_free > chain.cl.recs[best].c_free {
                    i
                } else {
                    best
                }
            },
        );
    let mut order = vec![victim];
    order.extend((0..chain.cl.recs.len()).filter(|&i| i != victim && chain.cl.recs[i].c_free > 0));
    for c in order {
        if let Some((gd, off, len)) = search_chain(tx, space, &chain, c, wanted, min)? {
            return take_bits(tx, space, &mut chain, gd, off, len);
        }
    }
    Err(Error::NoSpace(format!("no run of {min} free bits in allocator {alloc}")))
}

/// Walks chain `c` for the first group with a run of `min` bits.
fn search_chain(
    tx: &Tx,
    space: Space,
    chain: &Chain,
    c: usize,
    wanted: u32,
    min: u32,
) -> Result<Option<(GroupDesc, u32, u32)>> {
    let rec = chain.cl.recs[c];
    // Every group holds at least one bit, so a chain has at most c_total groups.
    let bound = u64::from(rec.c_total) + 1;
    let mut seen = HashSet::new();
    let mut next = rec.c_blkno;
    while next != 0 {
        if !seen.insert(next) || seen.len() as u64 > bound {
            return Err(Error::corrupt(chain.blkno, format!("chain {c} loops or is longer than its bits allow")));
        }
        let gd = read_group(tx, chain, next)?;
        if usize::from(gd.bg_chain) != c {
            return Err(Error::corrupt(next, format!("group on chain {} found in chain {c}", gd.bg_chain)));
        }
        if let Some((off, len)) = search_group(tx, space, &gd, wanted, min) {
            return Ok(Some((gd, off, len)));
        }
        next = gd.bg_next_group;
    }
    Ok(None)
}

/// Frees `count` bits from `bit` in group `group` of the allocator at `alloc`.
pub(crate) fn free(tx: &mut Tx, alloc: u64, space: Space, group: u64, bit: u32, count: u32) -> Result<()> {
    if count == 0 {
        return Ok(());
    }
    let mut chain = load(tx, alloc)?;
    let mut gd = read_group(tx, &chain, group)?;
    let end = bit
        .checked_add(count)
        .filter(|&e| e <= u32::from(gd.bg_bits))
        .ok_or_else(|| Error::corrupt(group, format!("freeing bits {bit}+{count} of a {}-bit group", gd.bg_bits)))?;
    for b in bit..end {
        if !gd.test_bit(b) {
            return Err(Error::corrupt(group, format!("freeing bit {b}, which is already free")));
        }
        gd.clear_bit(b).map_err(|e| Error::format(group, e))?;
    }
    let free = u32::from(gd.bg_free_bits_count) + count;
    if free > u32::from(gd.bg_bits) {
        return Err(Error::corrupt(group, format!("{free} free bits in a {}-bit group", gd.bg_bits)));
    }
    gd.bg_free_bits_count = free as u16;
    update_contig(space, &mut gd);
    let idx = usize::from(gd.bg_chain);
    chain.cl.recs[idx].c_free += count;
    let used = chain
        .di
        .i_used()
        .checked_sub(count)
        .ok_or_else(|| Error::corrupt(alloc, "allocator frees more bits than it uses"))?;
    let total = chain.di.i_total();
    chain.di.set_bitmap1(used, total);
    store_group(tx, &gd)?;
    store(tx, &chain)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::format::blockcheck::BlockCheck;

    fn group(bits: u16, used: &[u32]) -> GroupDesc {
        let mut gd = GroupDesc {
            bg_bits: bits,
            bg_free_bits_count: bits - used.len() as u16,
            bg_chain: 0,
            bg_generation: 0,
            bg_contig_free_bits: 0,
            bg_reserved1: 0,
            bg_next_group: 0,
            bg_parent_dinode: 0,
            bg_blkno: 0,
            bg_check: BlockCheck::default(),
            bg_reserved2: 0,
            bitmap: vec![0; usize::from(bits).div_ceil(8)],
            bg_list: None,
        };
        for &b in used {
            gd.set_bit(b).unwrap();
        }
        gd
    }

    #[test]
    fn find_clear_bits_takes_first_full_run_else_longest() {
        let gd = group(32, &[0, 1, 5, 6, 7, 8, 20]);
        let none = |_| false;
        assert_eq!(find_clear_bits(&gd, 32, 3, &none), Some((2, 3)));
        assert_eq!(find_clear_bits(&gd, 32, 11, &none), Some((9, 11)));
        assert_eq!(find_clear_bits(&gd, 32, 100, &none), Some((9, 11)), "longest run when none is long enough");
        assert_eq!(find_clear_bits(&gd, 10, 100, &none), Some((2, 3)), "bits past total are not used");
        let blocked = |b| b == 3;
        assert_eq!(find_clear_bits(&gd, 32, 3, &blocked), Some((9, 3)));
        let full = group(16, &(0..16).collect::<Vec<_>>());
        assert_eq!(find_clear_bits(&full, 16, 1, &none), None);
    }
}
