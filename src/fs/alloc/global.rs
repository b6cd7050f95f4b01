//! The global bitmap: one bit per cluster of the volume, in cluster groups.
//!
//! Group *k* covers clusters `k * cpg .. (k + 1) * cpg`; its descriptor sits in the first block
//! of its first cluster, except group 0, whose descriptor is at `s_first_cluster_group`
//! (`ocfs2_which_cluster_group`). A claim never spans groups, so a run handed out is at most
//! `cpg - 1` clusters (as `__ocfs2_claim_clusters` clamps it); a free may span groups and is
//! split at their boundaries.

use super::super::error::{Error, Result};
use super::super::tx::Tx;
use super::chain::{self, Claimed, Space};
use crate::format::SystemInode;

/// The global bitmap inode and how its bits map to clusters.
pub(crate) fn bitmap(tx: &Tx) -> Result<(u64, Space)> {
    let blkno = tx.vol.system_inode(SystemInode::GlobalBitmap, 0)?;
    let space = Space::Clusters { volume_clusters: tx.vol.geo.clusters, first_group: tx.vol.sb.s_first_cluster_group };
    Ok((blkno, space))
}

/// Clusters per group of the global bitmap.
pub(crate) fn clusters_per_group(tx: &Tx) -> Result<u32> {
    let (blkno, _) = bitmap(tx)?;
    Ok(u32::from(chain::load(tx, blkno)?.cl.cl_cpg))
}

/// The group descriptor block and bit of `cluster`.
pub(crate) fn cluster_group(tx: &Tx, cpg: u32, cluster: u32) -> (u64, u32) {
    let group_no = cluster / cpg;
    let first = group_no * cpg;
    let blkno =
        if group_no == 0 { tx.vol.sb.s_first_cluster_group } else { tx.vol.geo.cluster_to_block(u64::from(first)) };
    (blkno, cluster - first)
}

/// The first cluster of a claimed run.
fn claimed_cluster(tx: &Tx, c: &Claimed) -> u32 {
    chain::group_first_cluster(tx, tx.vol.sb.s_first_cluster_group, c.group) + c.bit
}

/// Claims a run of `min..=max` contiguous clusters, trying the group of cluster `hint` first.
/// Returns (first cluster, clusters, group used).
pub(crate) fn claim_clusters_near(tx: &mut Tx, min: u32, max: u32, hint: Option<u64>) -> Result<(u32, u32, u64)> {
    if min == 0 || max < min {
        return Err(Error::InvalidArgument(format!("a claim of {min}..={max} clusters")));
    }
    let (blkno, space) = bitmap(tx)?;
    let cpg = clusters_per_group(tx)?;
    if min > cpg.saturating_sub(1) {
        return Err(Error::NoSpace(format!("{min} contiguous clusters exceed a cluster group")));
    }
    let max = max.min(cpg - 1);
    let c = chain::claim(tx, blkno, space, max, min, hint)?;
    Ok((claimed_cluster(tx, &c), c.count, c.group))
}

/// Claims a run of `min..=max` contiguous clusters; returns (first cluster, clusters).
pub(crate) fn claim_clusters(tx: &mut Tx, min: u32, max: u32) -> Result<(u32, u32)> {
    let (start, n, _) = claim_clusters_near(tx, min, max, None)?;
    Ok((start, n))
}

/// Frees clusters `start .. start + count`, which this transaction will not hand out again
/// (their old contents stay referenced until it commits).
pub(crate) fn free_clusters(tx: &mut Tx, start: u32, count: u32) -> Result<()> {
    free_runs(tx, start, count)?;
    tx.note_freed_clusters(start, count);
    super::local_alloc::seen_free_bits(tx, count);
    Ok(())
}

/// Gives back clusters that were never used (a local alloc window's unused bits): they need no
/// protection until commit.
pub(crate) fn release_clusters(tx: &mut Tx, start: u32, count: u32) -> Result<()> {
    free_runs(tx, start, count)?;
    super::local_alloc::seen_free_bits(tx, count);
    Ok(())
}

fn free_runs(tx: &mut Tx, start: u32, count: u32) -> Result<()> {
    let (blkno, space) = bitmap(tx)?;
    let end = start
        .checked_add(count)
        .filter(|&e| e <= tx.vol.geo.clusters)
        .ok_or_else(|| Error::corrupt(blkno, format!("freeing clusters {start}+{count} past the volume's end")))?;
    let cpg = clusters_per_group(tx)?;
    let mut c = start;
    while c < end {
        let (group, bit) = cluster_group(tx, cpg, c);
        let n = (cpg - bit).min(end - c);
        chain::free(tx, blkno, space, group, bit, n)?;
        c += n;
    }
    Ok(())
}

/// Used and total clusters, as the global bitmap inode counts them.
#[cfg(test)]
pub(crate) fn usage(tx: &Tx) -> Result<(u32, u32)> {
    let (blkno, _) = bitmap(tx)?;
    let ch = chain::load(tx, blkno)?;
    Ok((ch.di.i_used(), ch.di.i_total()))
}
