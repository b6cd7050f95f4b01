//! Space accounting, as the kernel's `ocfs2_statfs` reports it from the global bitmap.

use super::error::{Error, Result};
use super::lock::LockLevel;
use super::volume::Volume;
use crate::format::{BITMAP_FL, CHAIN_FL};

/// Sizes and counts of a volume, in the units `statvfs` uses.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct StatFs {
    pub block_size: u32,
    pub cluster_size: u32,
    pub total_clusters: u64,
    pub free_clusters: u64,
    /// Total and free space in blocks (`f_blocks`, `f_bfree`).
    pub total_blocks: u64,
    pub free_blocks: u64,
    /// The kernel reports the cluster counts as the inode counts too, since inodes are
    /// allocated from the same space.
    pub files: u64,
    pub free_files: u64,
    pub name_max: u32,
}

impl Volume {
    /// Space used and free, read from the global bitmap.
    pub fn statfs(&self) -> Result<StatFs> {
        let blkno = self.system_file("global_bitmap")?;
        let inode = self.inode(blkno)?;
        let (used, total) = inode.with_meta(&self.inner, LockLevel::Shared, |view| {
            let d = &view.dinode;
            if d.i_flags & (BITMAP_FL | CHAIN_FL) != (BITMAP_FL | CHAIN_FL) {
                return Err(Error::corrupt(blkno, "the global bitmap inode is not a chain allocator"));
            }
            Ok((d.i_used() as u64, d.i_total() as u64))
        })?;
        if used > total {
            return Err(Error::corrupt(blkno, format!("global bitmap uses {used} of {total} clusters")));
        }
        let geo = self.geometry();
        let per = geo.blocks_per_cluster();
        let free = total - used;
        Ok(StatFs {
            block_size: geo.block_size,
            cluster_size: geo.cluster_size,
            total_clusters: total,
            free_clusters: free,
            total_blocks: total * per,
            free_blocks: free * per,
            files: total,
            free_files: free,
            name_max: crate::format::MAX_FILENAME_LEN as u32,
        })
    }
}
