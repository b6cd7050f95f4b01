//! Block suballocators: `inode_alloc:NNNN` hands out inode blocks and `extent_alloc:NNNN`
//! extent blocks (and other metadata blocks), one bit per block, from groups of `cl_cpg`
//! clusters claimed from the global bitmap.
//!
//! A slot's allocator grows by one group when it has no free bit, as `ocfs2_block_group_alloc`
//! does: a contiguous run of `cl_cpg` clusters if the global bitmap has one, else (with
//! discontig-bg) a group made of several runs listed in the descriptor's `bg_list`. The new
//! group heads the chain with the fewest bits, and its first bit (the descriptor) is in use.
//! When the slot's allocator cannot grow, bits are taken from the other slots' allocators
//! without growing them (`ocfs2_steal_resource`). A block is freed back to the allocator, group
//! and bit it records (`*_suballoc_slot`, `*_suballoc_bit`, `*_suballoc_loc`).

use super::super::error::{Error, Result};
use super::super::meta::BlockKind;
use super::super::tx::Tx;
use super::chain::{self, Space};
use super::global;
use crate::format::extent::{extent_recs_per_gd, ExtentList, ExtentRec};
use crate::format::group::{group_bitmap_size, GroupDesc};
use crate::format::{SystemInode, FEATURE_INCOMPAT_DISCONTIG_BG};

/// Which kind of block suballocator.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum SubAlloc {
    Inode,
    Extent,
}

impl SubAlloc {
    fn system_inode(self) -> SystemInode {
        match self {
            SubAlloc::Inode => SystemInode::InodeAlloc,
            SubAlloc::Extent => SystemInode::ExtentAlloc,
        }
    }
}

/// Where a suballocated block came from: what its owner records so that it can be freed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct SubBlock {
    pub blkno: u64,
    /// `*_suballoc_slot`.
    pub slot: u16,
    /// `*_suballoc_bit`.
    pub bit: u16,
    /// `*_suballoc_loc`: the group descriptor of a discontiguous group, else 0.
    pub loc: u64,
}

/// The block that bit `bit` of `gd` stands for.
fn bit_to_blkno(gd: &GroupDesc, bpc: u16, bit: u32) -> Result<u64> {
    match &gd.bg_list {
        Some(list) if !list.recs.is_empty() => {
            let bpc = u32::from(bpc);
            for rec in &list.recs {
                let first = rec.e_cpos * bpc;
                let len = u32::from(rec.e_leaf_clusters()) * bpc;
                if bit >= first && bit - first < len {
                    return Ok(rec.e_blkno + u64::from(bit - first));
                }
            }
            Err(Error::corrupt(gd.bg_blkno, format!("bit {bit} is in none of the group's pieces")))
        }
        _ => Ok(gd.bg_blkno + u64::from(bit)),
    }
}

/// Claims one block from the slot's `kind` allocator, growing it when full, or else from
/// another slot's allocator.
pub(crate) fn claim_block(tx: &mut Tx, kind: SubAlloc) -> Result<SubBlock> {
    let own = tx.ws.slot;
    match claim_from(tx, kind, own, true) {
        Err(Error::NoSpace(why)) => {
            let slots = tx.vol.sb.s_max_slots;
            for k in 1..slots {
                let slot = (own + k) % slots;
                match claim_from(tx, kind, slot, false) {
                    Err(Error::NoSpace(_)) => continue,
                    other => return other,
                }
            }
            Err(Error::NoSpace(why))
        }
        other => other,
    }
}

fn claim_from(tx: &mut Tx, kind: SubAlloc, slot: u16, may_grow: bool) -> Result<SubBlock> {
    let alloc = tx.vol.system_inode(kind.system_inode(), slot)?;
    let ch = chain::load(tx, alloc)?;
    if ch.free_bits() == 0 {
        if !may_grow {
            return Err(Error::NoSpace(format!("{} has no free block", kind.system_inode().name(slot))));
        }
        grow(tx, kind, alloc)?;
    }
    let c = chain::claim(tx, alloc, Space::Blocks, 1, 1, None)?;
    let ch = chain::load(tx, alloc)?;
    let gd = chain::read_group(tx, &ch, c.group)?;
    let blkno = bit_to_blkno(&gd, ch.cl.cl_bpc, c.bit)?;
    let bit = u16::try_from(c.bit).map_err(|_| Error::corrupt(c.group, "suballocator bit beyond 16 bits"))?;
    Ok(SubBlock { blkno, slot, bit, loc: if gd.is_discontig() { gd.bg_blkno } else { 0 } })
}

/// Frees a block that `claim_block` handed out.
pub(crate) fn free_block(tx: &mut Tx, kind: SubAlloc, b: SubBlock) -> Result<()> {
    let alloc = tx.vol.system_inode(kind.system_inode(), b.slot)?;
    let group = if b.loc != 0 { b.loc } else { b.blkno - u64::from(b.bit) };
    chain::free(tx, alloc, Space::Blocks, group, u32::from(b.bit), 1)
}

/// Adds one group to the allocator at `alloc` (`ocfs2_block_group_alloc`).
fn grow(tx: &mut Tx, kind: SubAlloc, alloc: u64) -> Result<()> {
    let mut ch = chain::load(tx, alloc)?;
    let cpg = u32::from(ch.cl.cl_cpg);
    let bpc = u32::from(ch.cl.cl_bpc);
    // The chain with the fewest bits; an unused record (no bits at all) wins while there is one.
    let chain_idx = if usize::from(ch.cl.cl_count) > ch.cl.recs.len() {
        ch.cl.recs.len()
    } else {
        (0..ch.cl.recs.len()).fold(0, |best, i| if ch.cl.recs[i].c_total < ch.cl.recs[best].c_total { i } else { best })
    };
    let pieces = match global::claim_clusters(tx, cpg, cpg) {
        Ok((start, n)) => vec![(start, n)],
        Err(Error::NoSpace(why)) => {
            if tx.vol.sb.s_feature_incompat & FEATURE_INCOMPAT_DISCONTIG_BG == 0 {
                return Err(Error::NoSpace(why));
            }
            claim_pieces(tx, cpg)?
        }
        Err(e) => return Err(e),
    };
    let geo = tx.vol.geo;
    let gd_blkno = geo.cluster_to_block(u64::from(pieces[0].0));
    let bs = geo.block_size as usize;
    let bg_size = group_bitmap_size(bs, true, tx.vol.sb.s_feature_incompat);
    let bits = cpg * bpc;
    if bits > u32::from(bg_size) * 8 || bits > u32::from(u16::MAX) {
        return Err(Error::corrupt(alloc, format!("groups of {bits} bits do not fit a {bg_size}-byte bitmap")));
    }
    let bg_list = if pieces.len() > 1 {
        let mut list = ExtentList::new(extent_recs_per_gd(bs));
        let mut cpos = 0u32;
        for &(start, n) in &pieces {
            let len = u16::try_from(n).map_err(|_| Error::corrupt(alloc, "group piece beyond 16 bits"))?;
            list.recs.push(ExtentRec::leaf(cpos, len, 0, geo.cluster_to_block(u64::from(start))));
            cpos += n;
        }
        Some(list)
    } else {
        None
    };
    let mut gd = GroupDesc {
        bg_bits: bits as u16,
        bg_free_bits_count: (bits - 1) as u16,
        bg_chain: chain_idx as u16,
        bg_generation: tx.vol.meta.fs_generation,
        bg_contig_free_bits: 0,
        bg_reserved1: 0,
        bg_next_group: ch.cl.recs.get(chain_idx).map_or(0, |r| r.c_blkno),
        bg_parent_dinode: alloc,
        bg_blkno: gd_blkno,
        bg_check: Default::default(),
        bg_reserved2: 0,
        bitmap: vec![0; usize::from(bg_size)],
        bg_list,
    };
    gd.set_bit(0).map_err(|e| Error::format(gd_blkno, e))?;
    if kind == SubAlloc::Inode {
        // Free inode slots must never look like valid inodes to fsck.ocfs2, whatever the
        // clusters held before.
        zero_pieces(tx, &pieces, gd_blkno)?;
    }
    let block = tx.new_block(gd_blkno, BlockKind::GroupDesc)?;
    gd.encode(block).map_err(|e| Error::format(gd_blkno, e))?;

    if chain_idx == ch.cl.recs.len() {
        ch.cl.recs.push(Default::default());
    }
    let rec = &mut ch.cl.recs[chain_idx];
    rec.c_free += bits - 1;
    rec.c_total += bits;
    rec.c_blkno = gd_blkno;
    let used = ch.di.i_used() + 1;
    let total = ch.di.i_total() + bits;
    ch.di.set_bitmap1(used, total);
    ch.di.i_clusters += cpg;
    ch.di.i_size = u64::from(ch.di.i_clusters) << geo.cluster_bits;
    chain::store(tx, &ch)
}

/// Claims `cpg` clusters in up to `extent_recs_per_gd` runs, halving the run size asked for
/// until the global bitmap yields (`ocfs2_block_group_alloc_discontig`). On failure every run
/// already claimed goes back.
fn claim_pieces(tx: &mut Tx, cpg: u32) -> Result<Vec<(u32, u32)>> {
    let max_pieces = usize::from(extent_recs_per_gd(tx.vol.geo.block_size as usize));
    let mut pieces: Vec<(u32, u32)> = Vec::new();
    let mut min = (cpg >> 1).max(1);
    let mut got = 0u32;
    let result = loop {
        let needed = cpg - got;
        if needed == 0 {
            break Ok(());
        }
        if pieces.len() >= max_pieces {
            break Err(Error::NoSpace("no room for a discontiguous group's pieces".into()));
        }
        min = min.min(needed);
        let run = loop {
            match global::claim_clusters(tx, min, needed) {
                Err(Error::NoSpace(_)) if min > 1 => min >>= 1,
                other => break other,
            }
        };
        match run {
            Ok((start, n)) => {
                pieces.push((start, n));
                got += n;
                min = n;
            }
            Err(e) => break Err(e),
        }
    };
    if let Err(e) = result {
        for (start, n) in pieces {
            global::release_clusters(tx, start, n)?;
        }
        return Err(e);
    }
    Ok(pieces)
}

/// Zeroes every block of a new group but its descriptor.
fn zero_pieces(tx: &mut Tx, pieces: &[(u32, u32)], gd_blkno: u64) -> Result<()> {
    let geo = tx.vol.geo;
    for &(start, n) in pieces {
        let first = geo.cluster_to_block(u64::from(start));
        let blocks = geo.cluster_to_block(u64::from(n));
        let (first, blocks) = if first == gd_blkno { (first + 1, blocks - 1) } else { (first, blocks) };
        if blocks > 0 {
            let zeros = vec![0u8; (blocks as usize) << geo.block_bits];
            tx.write_data(first, &zeros)?;
        }
    }
    Ok(())
}

/// Used and total blocks of the `kind` allocator of `slot`.
#[cfg(test)]
pub(crate) fn usage(tx: &Tx, kind: SubAlloc, slot: u16) -> Result<(u32, u32)> {
    let alloc = tx.vol.system_inode(kind.system_inode(), slot)?;
    let ch = chain::load(tx, alloc)?;
    Ok((ch.di.i_used(), ch.di.i_total()))
}
