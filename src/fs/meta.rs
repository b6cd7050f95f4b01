//! Reading metadata blocks: bounds, metaecc and a small cache.
//!
//! Every metadata block the filesystem uses comes through [`MetaReader::read`], which checks
//! that the block is inside the volume and, on volumes with metaecc, verifies (and where it
//! can, corrects) the block before anything decodes it. Cached blocks are kept until the cache
//! is cleared, which the lock layer does when a lock guarding them is lost.
//!
//! On a writable volume, blocks committed to the journal but not yet written home are kept in
//! a separate overlay that is never evicted: the device still holds their older version, so
//! the overlay, not the cache, is what makes a later read see the committed contents.

use super::error::{Error, Result};
use super::volume::Geometry;
use crate::device::BlockDevice;
use crate::format::blockcheck::{self, BlockCheckOutcome};
use parking_lot::Mutex;
use std::collections::HashMap;
use std::sync::Arc;

/// What a metadata block holds, which says where its check field sits.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BlockKind {
    SuperBlock,
    Inode,
    ExtentBlock,
    /// A directory block with a trailer at its end.
    DirBlockWithTrailer,
    /// A directory block without a trailer: no checksum.
    DirBlockPlain,
    DxRoot,
    DxLeaf,
    /// An allocation group descriptor.
    GroupDesc,
    /// A block without a check field (slot map blocks).
    Raw,
}

impl BlockKind {
    fn check_offset(self, block_size: usize) -> Option<usize> {
        match self {
            BlockKind::SuperBlock | BlockKind::Inode => Some(blockcheck::INODE_CHECK_OFFSET),
            BlockKind::ExtentBlock => Some(blockcheck::EXTENT_BLOCK_CHECK_OFFSET),
            BlockKind::DirBlockWithTrailer => Some(blockcheck::dir_trailer_check_offset(block_size)),
            BlockKind::DirBlockPlain => None,
            BlockKind::DxRoot => Some(blockcheck::DX_ROOT_CHECK_OFFSET),
            BlockKind::DxLeaf => Some(blockcheck::DX_LEAF_CHECK_OFFSET),
            BlockKind::GroupDesc => Some(blockcheck::GROUP_DESC_CHECK_OFFSET),
            BlockKind::Raw => None,
        }
    }

    /// Fills the block's metaecc field (when the kind has one).
    pub fn seal(self, block: &mut [u8]) {
        if let Some(off) = self.check_offset(block.len()) {
            blockcheck::compute(block, off);
        }
    }

    fn name(self) -> &'static str {
        match self {
            BlockKind::SuperBlock => "superblock",
            BlockKind::Inode => "inode",
            BlockKind::ExtentBlock => "extent block",
            BlockKind::DirBlockWithTrailer | BlockKind::DirBlockPlain => "directory block",
            BlockKind::DxRoot => "indexed directory root",
            BlockKind::DxLeaf => "indexed directory leaf",
            BlockKind::GroupDesc => "group descriptor",
            BlockKind::Raw => "block",
        }
    }
}

/// The fewest metadata blocks the cache holds, whatever its byte budget.
const MIN_CACHE_BLOCKS: usize = 1024;

/// Reads and checks metadata blocks for one volume.
pub(crate) struct MetaReader {
    dev: Arc<dyn BlockDevice>,
    geo: Geometry,
    /// The superblock's i_fs_generation: every metadata block must carry it.
    pub fs_generation: u32,
    metaecc: bool,
    device_blocks: u64,
    cache: Mutex<HashMap<u64, Arc<[u8]>>>,
    cache_blocks: usize,
    /// Committed to the journal, not yet home; consulted before the cache and never evicted.
    pending: Mutex<HashMap<u64, Arc<[u8]>>>,
}

impl MetaReader {
    pub fn new(dev: Arc<dyn BlockDevice>, geo: Geometry, fs_generation: u32, metaecc: bool) -> Self {
        let device_blocks = dev.len() >> geo.block_bits;
        MetaReader {
            dev,
            geo,
            fs_generation,
            metaecc,
            device_blocks,
            cache: Mutex::new(HashMap::new()),
            cache_blocks: (64usize << 20) / geo.block_size as usize,
            pending: Mutex::new(HashMap::new()),
        }
    }

    /// Sets how much memory cached blocks may take.
    pub fn set_cache_bytes(&mut self, bytes: u64) {
        let blocks = (bytes / u64::from(self.geo.block_size)).min(usize::MAX as u64) as usize;
        self.cache_blocks = blocks.max(MIN_CACHE_BLOCKS);
    }

    pub fn device(&self) -> &dyn BlockDevice {
        self.dev.as_ref()
    }

    /// The device, shared (the journal writes through the same one).
    pub fn shared_device(&self) -> Arc<dyn BlockDevice> {
        self.dev.clone()
    }

    /// Records the committed contents of `blkno`, which the journal holds but the device may
    /// not yet: later reads see them.
    pub fn install_committed(&self, blkno: u64, block: Arc<[u8]>) {
        self.pending.lock().insert(blkno, block.clone());
        self.put_cache(blkno, block);
    }

    /// Records what was just written home directly (without the journal).
    pub fn install_written(&self, blkno: u64, block: Arc<[u8]>) {
        self.pending.lock().remove(&blkno);
        self.put_cache(blkno, block);
    }

    /// Drops every copy of `blkno` (a freed metadata block, or one rewritten behind our back).
    pub fn forget(&self, blkno: u64) {
        self.pending.lock().remove(&blkno);
        self.cache.lock().remove(&blkno);
    }

    /// Drops every cached block (after a journal replay rewrote home blocks).
    pub fn clear_cache(&self) {
        self.cache.lock().clear();
    }

    /// Drops overlay entries the journal no longer holds (they reached their home blocks).
    pub fn retain_pending(&self, mut still_pending: impl FnMut(u64) -> bool) {
        self.pending.lock().retain(|&b, _| still_pending(b));
    }

    /// Blocks in the overlay.
    #[cfg(test)]
    pub fn pending_len(&self) -> usize {
        self.pending.lock().len()
    }

    fn put_cache(&self, blkno: u64, block: Arc<[u8]>) {
        let mut cache = self.cache.lock();
        if cache.len() >= self.cache_blocks {
            // Evict a quarter, in the map's (randomly seeded) order: hot blocks mostly stay.
            let victims: Vec<u64> = cache.keys().take(self.cache_blocks / 4 + 1).copied().collect();
            for b in victims {
                cache.remove(&b);
            }
        }
        cache.insert(blkno, block);
    }

    /// Fails unless `[blkno, blkno + count)` lies inside the device.
    pub fn check_range(&self, blkno: u64, count: u64) -> Result<()> {
        match blkno.checked_add(count) {
            Some(end) if (end <= self.device_blocks && blkno > 0) || count == 0 => Ok(()),
            _ => Err(Error::corrupt(blkno, format!("block range of {count} blocks at {blkno} is outside the volume"))),
        }
    }

    /// A metadata block, checked for `kind`.
    pub fn read(&self, blkno: u64, kind: BlockKind) -> Result<Arc<[u8]>> {
        if let Some(b) = self.pending.lock().get(&blkno) {
            return Ok(b.clone());
        }
        if let Some(b) = self.cache.lock().get(&blkno) {
            return Ok(b.clone());
        }
        self.check_range(blkno, 1)?;
        let mut block = vec![0u8; self.geo.block_size as usize];
        self.dev.read_at(self.geo.block_offset(blkno), &mut block)?;
        self.check_block(blkno, kind, &mut block)?;
        let block: Arc<[u8]> = block.into();
        self.put_cache(blkno, block.clone());
        Ok(block)
    }

    /// Verifies metaecc of a block read by other means; may correct it in place.
    pub fn check_block(&self, blkno: u64, kind: BlockKind, block: &mut [u8]) -> Result<()> {
        if !self.metaecc {
            return Ok(());
        }
        let Some(off) = kind.check_offset(block.len()) else {
            return Ok(());
        };
        match blockcheck::verify(block, off, kind.name()).map_err(|e| Error::format(blkno, e))? {
            BlockCheckOutcome::Clean => {}
            BlockCheckOutcome::Corrected { bit } => {
                log::warn!("{} at block {blkno}: corrected a flipped bit ({bit}) by metaecc", kind.name());
            }
        }
        Ok(())
    }
}
